//! `switchboard demo` as a new user meets it: the built binary on the shipped config (its
//! router and admin ports moved to 0 so the test can run beside anything else), and every
//! `curl` line it prints run as printed, by `sh`, with the real `curl`. A line that fails
//! (connection refused, any 4xx or 5xx, an empty answer) fails the test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn every_printed_curl_line_works_when_pasted() {
    if !have_curl() {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
            "curl is not installed (integration/backends.sh install installs it)"
        );
        eprintln!("curl not installed; skipped");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("config/linkerd.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = shipped
        .replace("port: 9990", "port: 0")
        .replace("port: 4140", "port: 0");
    assert_ne!(config, shipped, "the shipped config's ports moved");
    let cfg = dir.path().join("linkerd.yaml");
    std::fs::write(&cfg, config).unwrap();
    // curl reads $CURL_HOME/.curlrc: fail on HTTP errors, no progress meter, bounded time.
    std::fs::write(
        dir.path().join(".curlrc"),
        "fail-with-body\nsilent\nshow-error\nmax-time = 10\n",
    )
    .unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["demo", "--config"])
        .arg(&cfg)
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let mut demo = Demo(child);
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the demo did not finish its banner: {printed:#?}"));
        let done = line.starts_with("Edit ");
        printed.push(line);
        if done {
            break;
        }
    }
    let curls: Vec<&String> = printed
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    assert!(curls.len() >= 5, "too few curl lines: {printed:#?}");
    for line in curls {
        let out = Command::new("sh")
            .arg("-c")
            .arg(line.trim())
            .env("CURL_HOME", dir.path())
            .output()
            .expect("run sh");
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{line}\nexit {:?}\n{body}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!body.trim().is_empty(), "{line}: empty answer");
        // What each line promises, where the banner says it.
        if line.contains("l5d-dtab: /svc/web=>/svc/api") || line.contains("Host: api") {
            assert!(body.contains("api"), "{line}: {body}");
        } else if line.contains("Host: w") {
            assert!(body.contains("web"), "{line}: {body}");
        } else if line.contains("delegator.json") {
            assert!(body.contains("/svc/web"), "{line}: {body}");
        }
    }
}
