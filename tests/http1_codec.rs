//! The HTTP/1 codec end to end, through Switchboard (in-process, fs namer) to a raw recording
//! backend: request-smuggling shapes refused with 400 and never forwarded (rows after the
//! HTTP desync research: CL.TE, TE.CL, TE.TE obfuscations, duplicate lengths, obs-fold,
//! whitespace before the colon, bad chunk framing); endpoint framing faults not relayed;
//! request targets nginx forwards kept byte for byte; idle connections counted.

#[path = "support/recorder.rs"]
mod recorder;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use recorder::Recorder;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// A safety net for reads that must end; not a measurement.
const WAIT: Duration = Duration::from_secs(10);

async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    raw_exchange(addr, bytes).await
}

async fn world(services: &[(&str, &Recorder)]) -> (Disco, Proxy) {
    let disco = Disco::new();
    for (name, r) in services {
        disco.set(name, &[format!("127.0.0.1 {}", r.addr.port())]);
    }
    let p = proxy(&config("/svc => /#/io.l5d.fs;", ""), &disco.path()).await;
    (disco, p)
}

#[tokio::test]
async fn request_smuggling_shapes_are_refused_and_never_forwarded() {
    let rec = Recorder::start(OK).await;
    let (_disco, p) = world(&[("web", &rec)]).await;
    let head = |extra: &str, body: &str| {
        format!("POST / HTTP/1.1\r\nHost: web\r\n{extra}\r\n{body}").into_bytes()
    };
    let rows: Vec<(&str, Vec<u8>)> = vec![
        (
            "CL.TE",
            head(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nG",
            ),
        ),
        (
            "TE.CL",
            head(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "8\r\nSMUGGLED\r\n0\r\n\r\n",
            ),
        ),
        (
            "TE.TE xchunked",
            head("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
        ),
        (
            "TE.TE twice",
            head(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
        ),
        (
            "TE.TE chunked, identity",
            head("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
        ),
        (
            "TE.TE gzip, chunked",
            head("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
        ),
        (
            "TE with space before colon",
            head("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
        ),
        (
            "TE obs-folded",
            head("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
        ),
        (
            "TE vertical tab",
            head("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"),
        ),
        (
            "TE in HTTP/1.0",
            b"POST / HTTP/1.0\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "two Content-Lengths",
            head("Content-Length: 3\r\nContent-Length: 5\r\n", "abcde"),
        ),
        (
            "Content-Length list",
            head("Content-Length: 3, 5\r\n", "abcde"),
        ),
        ("Content-Length sign", head("Content-Length: +3\r\n", "abc")),
        ("Content-Length hex", head("Content-Length: 0x3\r\n", "abc")),
        (
            "CL with space before colon",
            head("Content-Length : 3\r\n", "abc"),
        ),
        (
            "header folded",
            head("X-A: a\r\n b\r\nContent-Length: 0\r\n", ""),
        ),
        (
            "bare CR in a value",
            head("X-A: a\rb\r\nContent-Length: 0\r\n", ""),
        ),
        (
            "NUL in a value",
            head("X-A: a\0b\r\nContent-Length: 0\r\n", ""),
        ),
        (
            "line starting with space",
            head(" Host: web\r\nContent-Length: 0\r\n", ""),
        ),
        // Refused by the router (the connection stays open for more, hence the close).
        (
            "two Hosts",
            head(
                "Host: api\r\nContent-Length: 0\r\nConnection: close\r\n",
                "",
            ),
        ),
    ];
    for (what, raw) in &rows {
        let (status, text) = exchange(p.addr, raw).await;
        assert_eq!(status, 400, "{what}: {text}");
        // A reason is given, not an empty 400.
        assert!(
            text.contains("l5d-err") || text.contains("\r\n\r\n"),
            "{what}: {text}"
        );
    }
    assert!(
        rec.take().is_empty(),
        "a refused request reached the endpoint"
    );

    // Bad chunk framing in the body: 400 (or closed), never a complete request upstream; the
    // invalid bytes themselves never reach it (the proxy writes its own chunk framing).
    let bodies = [
        "zz\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "10000000000000000\r\nx\r\n0\r\n\r\n",
        "5;a\0b\r\nhello\r\n0\r\n\r\n",
    ];
    for b in bodies {
        let raw = head("Transfer-Encoding: chunked\r\n", b);
        let (status, text) = exchange(p.addr, &raw).await;
        assert!(status == 400 || status == 0, "{b:?}: {text}");
    }
    assert!(rec.take().is_empty(), "a malformed body completed upstream");

    // Good framing still passes, chunked and sized, pipelined on one connection.
    let raw = b"POST /a HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nPOST /b HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    let (status, text) = exchange(p.addr, raw).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    let seen = rec.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].target(), "/a");
    assert_eq!(seen[0].body, b"hello world");
    assert_eq!(seen[1].body, b"abc");
}

#[tokio::test]
async fn endpoint_framing_faults_are_not_relayed() {
    // Transfer-Encoding beside Content-Length: chunked wins, the length is dropped, and the
    // connection is not reused.
    let both = Recorder::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    )
    .await;
    // Two lengths: 502.
    let two =
        Recorder::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
            .await;
    // A folded header: 502.
    let folded =
        Recorder::start(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok").await;
    // A second response smuggled after the first: never delivered to anyone.
    let split = Recorder::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
    )
    .await;
    // A bad chunk after the head: the client's response is cut short, never completed.
    let badchunk =
        Recorder::start(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n")
            .await;
    let (_disco, p) = world(&[
        ("both", &both),
        ("two", &two),
        ("folded", &folded),
        ("split", &split),
        ("badchunk", &badchunk),
    ])
    .await;

    for _ in 0..2 {
        let r = get(p.addr, "both", "/", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "ok");
    }
    assert_eq!(
        both.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    assert_eq!(get(p.addr, "two", "/", &[]).await.status, 502);
    assert_eq!(get(p.addr, "folded", "/", &[]).await.status, 502);

    // Two requests on one client connection: both answered "ok", never "smuggled".
    let raw = b"GET / HTTP/1.1\r\nHost: split\r\n\r\nGET / HTTP/1.1\r\nHost: split\r\nConnection: close\r\n\r\n";
    let (status, text) = exchange(p.addr, raw).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("\r\n\r\nok").count(), 2, "{text}");
    assert!(!text.contains("smuggled"), "{text}");
    assert_eq!(
        split.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    let (status, text) = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: badchunk\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a broken body was completed: {text:?}"
    );
}

#[tokio::test]
async fn targets_nginx_forwards_reach_the_endpoint_unchanged() {
    let rec = Recorder::start(OK).await;
    let (_disco, p) = world(&[("web", &rec)]).await;
    let targets: [&[u8]; 8] = [
        br#"/x?q={"a":1}"#,
        b"/x?a=>b",
        b"/a|b^c`d\\e",
        b"/p%zz?%",
        b"/x?<script>",
        b"/caf\xc3\xa9",
        b"/x?a=1&a=2;b",
        b"//double//slash/./../",
    ];
    for t in targets {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(t);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
        let (status, text) = exchange(p.addr, &raw).await;
        let shown = String::from_utf8_lossy(t).into_owned();
        assert_eq!(status, 200, "{shown}: {text}");
        let seen = rec.take();
        assert_eq!(seen.len(), 1, "{shown}");
        assert_eq!(seen[0].target(), shown, "{shown}");
    }
    // Control bytes and spaces are not a target: 400.
    let (status, _) = exchange(p.addr, b"GET /a\x01b HTTP/1.1\r\nHost: web\r\n\r\n").await;
    assert_eq!(status, 400);
    assert!(rec.take().is_empty());
}

#[tokio::test]
async fn open_idle_connections_are_counted() {
    let rec = Recorder::start(OK).await;
    let (_disco, p) = world(&[("web", &rec)]).await;
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        conns.push(s);
    }
    let key = format!("rt/http/server/127.0.0.1/{}/connections", p.addr.port());
    let m = metrics(p.admin).await;
    assert_eq!(m[&key], 20, "{m}");
    drop(conns);
    until_metric(p.admin, &key, |v| *v == 0).await;
}
