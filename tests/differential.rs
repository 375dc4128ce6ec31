//! Differential test: the same corpus of odd requests sent through nginx and through
//! Switchboard to one recording backend, comparing what reached it (method, target byte for
//! byte, body) or that the proxy refused. Each row says whether the two must agree (every
//! framing row does: nginx 1.22 refuses the smuggling shapes too) or where Switchboard forwards
//! unchanged what nginx refuses (invalid `%` escapes, lower-case methods). nginx comes from `integration/backends.sh install`
//! (Debian's nginx-light); without it the test prints SKIPPED, and fails when
//! SWITCHBOARD_REQUIRE_BACKENDS is set (as `.ci/run` sets it).

#[path = "support/recorder.rs"]
mod recorder;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use recorder::{Recorder, Seen};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const WAIT: Duration = Duration::from_secs(5);

fn nginx_bin() -> Option<std::path::PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nginx(bin: &std::path::Path, upstream: SocketAddr) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           server {{ listen 127.0.0.1:{port};\n\
             location / {{ proxy_pass http://{upstream}; proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\"; proxy_set_header Host $http_host; }} }} }}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Nginx {
        child,
        addr,
        _dir: dir,
    }
}

/// What one proxy did with a request: refused it (its status), or forwarded it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Refused(u16),
    Forwarded {
        method: String,
        target: String,
        body: Vec<u8>,
    },
}

async fn outcome(proxy: SocketAddr, rec: &Recorder, raw: &[u8]) -> Outcome {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let status = String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // A forwarded request may reach the backend a moment after the answer is read.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let seen: Vec<Seen> = rec.take();
    match seen.first() {
        Some(r) => Outcome::Forwarded {
            method: r.line.split(' ').next().unwrap_or("").to_string(),
            target: r.target().to_string(),
            body: r.body.clone(),
        },
        None => Outcome::Refused(status),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Both forward the same thing, or both refuse.
    Same,
    /// nginx refuses it; Switchboard forwards it unchanged (as HAProxy does). nginx decodes a
    /// path to match its `location`s and so refuses invalid `%` escapes, and takes only
    /// upper-case methods; Switchboard routes by name, decodes nothing, and forwards any
    /// method that is a token (RFC 9110: methods are case-sensitive tokens).
    Lenient,
}

#[tokio::test]
async fn odd_requests_reach_the_backend_as_through_nginx() {
    let Some(bin) = nginx_bin() else {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_BACKENDS").is_none(),
            "nginx not installed: run integration/backends.sh install"
        );
        println!("SKIPPED: nginx not installed (integration/backends.sh install)");
        return;
    };
    let rec = Recorder::start(OK).await;
    let ng = nginx(&bin, rec.addr).await;
    let disco = Disco::new();
    disco.set("web", &[format!("127.0.0.1 {}", rec.addr.port())]);
    let sb = proxy(&config("/svc => /#/io.l5d.fs;", ""), &disco.path()).await;

    let req = |line: &str, headers: &str, body: &str| -> Vec<u8> {
        format!("{line}\r\nHost: web\r\n{headers}Connection: close\r\n\r\n{body}").into_bytes()
    };
    use Expect::*;
    let rows: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("plain", req("GET /x HTTP/1.1", "", ""), Same),
        (
            "json in query",
            req(r#"GET /x?q={"a":1} HTTP/1.1"#, "", ""),
            Same,
        ),
        ("> in query", req("GET /x?a=>b HTTP/1.1", "", ""), Same),
        (
            "| ^ ` \\ in path",
            req("GET /a|b^c`d\\e HTTP/1.1", "", ""),
            Same,
        ),
        (
            "bad percent escape",
            req("GET /p%zz?%g HTTP/1.1", "", ""),
            Lenient,
        ),
        (
            "UTF-8 path",
            {
                let mut v = b"GET /caf\xc3\xa9 HTTP/1.1".to_vec();
                v.extend_from_slice(b"\r\nHost: web\r\nConnection: close\r\n\r\n");
                v
            },
            Same,
        ),
        (
            "dot segments",
            req("GET //a/./b/../c HTTP/1.1", "", ""),
            Same,
        ),
        (
            "repeated query keys",
            req("GET /x?a=1&a=2;b HTTP/1.1", "", ""),
            Same,
        ),
        (
            "extension method",
            req("PROPFIND /dav HTTP/1.1", "", ""),
            Same,
        ),
        ("HTTP/1.0", req("GET /old HTTP/1.0", "", ""), Same),
        (
            "sized body",
            req("POST /u HTTP/1.1", "Content-Length: 5\r\n", "hello"),
            Same,
        ),
        (
            "chunked body",
            req(
                "POST /u HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            Same,
        ),
        (
            "chunk extension",
            req(
                "POST /u HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "5;a=b\r\nhello\r\n0\r\n\r\n",
            ),
            Same,
        ),
        ("space in target", req("GET /a b HTTP/1.1", "", ""), Same),
        (
            "control byte in target",
            req("GET /a\x01b HTTP/1.1", "", ""),
            Same,
        ),
        (
            "invalid chunk size",
            req(
                "POST /u HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "zz\r\nhello\r\n0\r\n\r\n",
            ),
            Same,
        ),
        (
            "CL.TE",
            req(
                "POST /u HTTP/1.1",
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            Same,
        ),
        (
            "TE.CL",
            req(
                "POST /u HTTP/1.1",
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                "0\r\n\r\n",
            ),
            Same,
        ),
        (
            "TE in HTTP/1.0",
            req(
                "POST /u HTTP/1.0",
                "Transfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            Same,
        ),
        (
            "equal Content-Length list",
            req("POST /u HTTP/1.1", "Content-Length: 5, 5\r\n", "hello"),
            Same,
        ),
        (
            "equal Content-Lengths twice",
            req(
                "POST /u HTTP/1.1",
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                "hello",
            ),
            Same,
        ),
        (
            "TE chunked, identity",
            req(
                "POST /u HTTP/1.1",
                "Transfer-Encoding: chunked, identity\r\n",
                "0\r\n\r\n",
            ),
            Same,
        ),
        (
            "space before colon",
            req("POST /u HTTP/1.1", "Content-Length : 5\r\n", "hello"),
            Same,
        ),
        ("lowercase method", req("get /x HTTP/1.1", "", ""), Lenient),
        (
            "fragment in target",
            req("GET /x#frag HTTP/1.1", "", ""),
            Same,
        ),
        (
            "two Content-Lengths",
            req(
                "POST /u HTTP/1.1",
                "Content-Length: 3\r\nContent-Length: 5\r\n",
                "hello",
            ),
            Same,
        ),
        (
            "TE xchunked",
            req(
                "POST /u HTTP/1.1",
                "Transfer-Encoding: xchunked\r\n",
                "0\r\n\r\n",
            ),
            Same,
        ),
        (
            "obs-fold",
            req("GET /f HTTP/1.1", "X-A: a\r\n b\r\n", ""),
            Same,
        ),
        (
            "NUL in a value",
            req("GET /n HTTP/1.1", "X-A: a\0b\r\n", ""),
            Same,
        ),
    ];
    let mut report = Vec::new();
    for (what, raw, expect) in &rows {
        let a = outcome(ng.addr, &rec, raw).await;
        let b = outcome(sb.addr, &rec, raw).await;
        let ok = match expect {
            Same => match (&a, &b) {
                (Outcome::Refused(_), Outcome::Refused(_)) => true,
                (x, y) => x == y,
            },
            Lenient => {
                matches!(a, Outcome::Refused(_))
                    && matches!(&b, Outcome::Forwarded { target, .. } if raw.windows(target.len()).any(|w| w == target.as_bytes()))
            }
        };
        if !ok {
            report.push(format!(
                "{what} ({expect:?}):\n  nginx:       {a:?}\n  switchboard: {b:?}"
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}
