//! The `switchboard` binary as an operator runs it: every subcommand's output and exit status,
//! error texts on stderr, and `dtab bind` following a live edit of an fs-namer file.

use std::path::Path as FsPath;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run switchboard")
}

/// Runs `args`; `Ok(stdout line)` on success or `Err(stderr)` on exit 1.
fn outcome(args: &[&str]) -> Result<String, String> {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(1) => {
            assert!(stdout.is_empty(), "{args:?}: stdout on failure: {stdout}");
            Err(stderr)
        }
        other => panic!("{args:?}: exit {other:?}\n{stderr}"),
    }
}

fn check(args: &[&str], want: Result<&str, &str>) {
    match (outcome(args), want) {
        (Ok(got), Ok(w)) => assert_eq!(got, w, "{args:?}"),
        (Err(got), Err(w)) => assert_eq!(got, w, "{args:?}"),
        (got, w) => panic!("{args:?}: got {got:?}, want {w:?}"),
    }
}

#[test]
fn language_commands() {
    check(&["path", "show", "/foo/bar"], Ok("/foo/bar"));
    check(&["path", "show", "/foo/\\x41"], Ok("/foo/A"));
    // An element with any unshowable byte is shown fully escaped (Finagle's `showElem`).
    check(&["path", "show", "/foo/\\x41\\x2f"], Ok("/foo/\\x41\\x2f"));
    check(
        &["path", "show", "invalid-param"],
        Err("'/' expected but 'i' found at '[i]nvalid-param'"),
    );
    check(
        &["tree", "show", "/a | ( /b & 2 * /c ) | ~"],
        Ok("/a | /b & 2.00*/c | ~"),
    );
    check(&["tree", "show", "--simplify", "/a | ~ | !"], Ok("/a | !"));
    check(&["tree", "show", "--simplify", "~ | /a & ~"], Ok("/a"));
    check(
        &["tree", "show", "/a |"],
        Err("simple expected but end of input found at '/a |[]'"),
    );
    check(&["tree", "eval", "/b & /a"], Ok(r#"["/a","/b"]"#));
    check(&["tree", "eval", "~ | /x"], Ok(r#"["/x"]"#));
    check(&["tree", "eval", "~"], Ok("null"));
    check(&["tree", "eval", "!"], Ok("null"));
    check(&["tree", "eval", "$"], Ok("[]"));
    check(
        &["dtab", "show", "/a => /b | /c ; # note\n/d=>/e;"],
        Ok("/a=>/b | /c;/d=>/e"),
    );
    check(
        &[
            "dtab",
            "lookup",
            "--dtab",
            "/a=>/b;/a=>/c;/a/x=>/d",
            "/a/x/y",
        ],
        Ok("/d/y | /c/x/y | /b/x/y"),
    );
    check(&["dtab", "lookup", "--dtab", "/a=>/b", "/z"], Ok("~"));
    check(
        &["dtab", "lookup", "--dtab", "/a=>", "/a"],
        Err("simple expected but end of input found at '/a=>[]'"),
    );
}

#[test]
fn bind_and_delegate_without_config() {
    check(
        &[
            "dtab",
            "bind",
            "--dtab",
            "/s=>/$/inet/127.0.0.1/8080",
            "/s/x",
        ],
        Ok(
            r#"{"type":"leaf","bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},"id":"/$/inet/127.0.0.1/8080","path":"/x"}}"#,
        ),
    );
    check(&["dtab", "bind", "/nowhere"], Ok(r#"{"type":"neg"}"#));
    check(
        &["dtab", "bind", "/$/com.example.Nope/x"],
        Err("Unknown namer: com.example.Nope for path: /$/com.example.Nope/x"),
    );
    check(
        &["dtab", "bind", "--dtab", "/a=>/b;/b=>/a", "/a"],
        Err("Max recursion level: 100 reached in Namer lookup"),
    );
    check(
        &["dtab", "delegate", "--dtab", "/a=>/b;/b=>/a", "/a"],
        Err("Max recursion level reached."),
    );
    check(
        &["dtab", "delegate", "--dtab", "/a=>/$/fail", "/a"],
        Ok(
            r#"{"type":"delegate","path":"/a","delegate":{"type":"fail","path":"/$/fail","dentry":{"prefix":"/a","dst":"/$/fail"}}}"#,
        ),
    );
    check(
        &["dtab", "bind", "--router", "x", "/a"],
        Err("--router needs --config"),
    );
}

fn write(p: &FsPath, text: &str) {
    let tmp = p.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

#[test]
fn bind_follows_the_fs_namer_and_router_dtab() {
    let dir = tempfile::tempdir().unwrap();
    let disco = dir.path().join("disco");
    std::fs::create_dir(&disco).unwrap();
    write(&disco.join("web"), "127.0.0.1 8081\n");
    write(&disco.join("api"), "127.0.0.1 9091 * 0.5\n");
    let config = dir.path().join("linkerd.yaml");
    std::fs::write(
        &config,
        format!(
            "namers:\n- kind: io.l5d.fs\n  rootDir: {}\nrouters:\n- protocol: http\n  label: one\n  dtab: /svc => /#/io.l5d.fs\n  servers: [{{port: 1}}]\n- protocol: http\n  label: two\n  dtab: /svc => /$/inet/127.0.0.1/7000\n  servers: [{{port: 2}}]\n",
            disco.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let leaf = |port: &str, meta: &str| {
        format!(
            r#"{{"type":"leaf","bound":{{"addr":{{"type":"bound","addrs":[{{"ip":"127.0.0.1","port":{port},"meta":{{{meta}}}}}],"meta":{{}}}},"id":"/#/io.l5d.fs/web","path":"/"}}}}"#
        )
    };
    check(
        &["dtab", "bind", "--config", cfg, "/svc/web"],
        Ok(&leaf("8081", "")),
    );
    write(&disco.join("web"), "127.0.0.1 8082 * 3\n");
    check(
        &["dtab", "bind", "--config", cfg, "/svc/web"],
        Ok(&leaf("8082", r#""endpoint_addr_weight":3.0"#)),
    );
    // --dtab is appended after the router's dtab, so it wins.
    check(
        &[
            "dtab",
            "bind",
            "--config",
            cfg,
            "--dtab",
            "/svc/web => /svc/api",
            "/svc/web",
        ],
        Ok(
            r#"{"type":"leaf","bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":9091,"meta":{"endpoint_addr_weight":0.5}}],"meta":{}},"id":"/#/io.l5d.fs/api","path":"/"}}"#,
        ),
    );
    // Another router's dtab.
    check(
        &[
            "dtab", "bind", "--config", cfg, "--router", "two", "/svc/web",
        ],
        Ok(
            r#"{"type":"leaf","bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":7000,"meta":{}}],"meta":{}},"id":"/$/inet/127.0.0.1/7000","path":"/web"}}"#,
        ),
    );
    check(
        &[
            "dtab", "bind", "--config", cfg, "--router", "three", "/svc/web",
        ],
        Err("no router labelled `three`; routers: one, two"),
    );
    // A malformed file with no good set before: the leaf's address is Failed, naming the line.
    write(&disco.join("bad"), "127.0.0.1 8080\nnot-an-address\n");
    let got = outcome(&["dtab", "bind", "--config", cfg, "/svc/bad"]).unwrap();
    assert!(
        got.contains(r#""type":"failed""#)
            && got.contains("bad:2: malformed address: not-an-address"),
        "{got}"
    );
    // Delegation through the fs namer: the neg branch and the bound leaf.
    check(
        &[
            "dtab",
            "delegate",
            "--config",
            cfg,
            "--dtab",
            "/svc => /other",
            "/svc/web",
        ],
        Ok(
            r#"{"type":"alt","path":"/svc/web","alt":[{"type":"neg","path":"/other/web","dentry":{"prefix":"/svc","dst":"/other"}},{"type":"leaf","path":"/#/io.l5d.fs/web","dentry":{"prefix":"/svc","dst":"/#/io.l5d.fs"},"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8082,"meta":{"endpoint_addr_weight":3.0}}],"meta":{}},"id":"/#/io.l5d.fs/web","path":"/"}}]}"#,
        ),
    );
}

#[test]
fn check_reports_every_error_and_warning() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "namers:\n- kind: io.l5d.fs\n  rootDir: /no/such/dir\nrouters:\n- protocol: thrift\n- protocol: http\n  identifier: {kind: io.l5d.path, segmentz: 1}\n",
    )
    .unwrap();
    let b = bad.to_str().unwrap();
    check(
        &["check", b],
        Err(&format!(
            "error: {b}: routers[0].protocol: protocol `thrift` is not supported yet; supported: http, h2\n\
             error: {b}: routers[1].identifier (io.l5d.path).segmentz: unknown field `segmentz`, expected `segments` or `consume`\n\
             warning: {b}: namers[0] (io.l5d.fs).rootDir: `/no/such/dir` is not a directory here"
        )),
    );
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"routers": [{"protocol": "http"}]}"#).unwrap();
    let g = good.to_str().unwrap();
    check(&["check", g], Ok(&format!("{g}: ok (1 router, 0 namers)")));
    check(
        &["check", "/no/such/config.yaml"],
        Err("error: /no/such/config.yaml: cannot read: No such file or directory (os error 2)"),
    );
}
