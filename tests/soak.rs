//! A bounded soak: for `SWITCHBOARD_SOAK_SECS` seconds (default 20), good clients call a
//! service through the router while hostile ones send what the hostile-clients issue lists
//! (exploding and deeply nested `l5d-dtab`s, made-up Host names, oversized heads, broken and
//! stalled uploads, h2c upgrades, slow heads) plus fuzz-like random dtabs. Every good request
//! must succeed, and the process's resident memory must stay under a bound. The peak is
//! printed for BENCHMARKS.md.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory bound for the whole test process (proxy, backends and clients).
const RSS_LIMIT_MB: u64 = 300;

fn rss_mb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

async fn raw(addr: SocketAddr, bytes: Vec<u8>, wait: Duration) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return;
    };
    let _ = s.write_all(&bytes).await;
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(wait, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// A random dtab from the dtab language's pieces: prefixes, wildcards, unions, alternatives,
/// nesting, system namers.
fn random_dtab(rng: &mut fastrand::Rng) -> String {
    let atoms = [
        "/x0",
        "/x1",
        "/x2",
        "/svc/web",
        "/",
        "/*",
        "~",
        "!",
        "$",
        "/$/inet/127.0.0.1/1",
        "/#/io.l5d.fs/web",
    ];
    let mut d = Vec::new();
    for _ in 0..rng.usize(1..12) {
        let prefix = ["/x0", "/x1", "/x2", "/svc", "/", "/*"][rng.usize(..6)];
        let mut dst = atoms[rng.usize(..atoms.len())].to_string();
        for _ in 0..rng.usize(0..4) {
            let op = [" & ", " | "][rng.usize(..2)];
            dst = format!("({dst}){op}{}", atoms[rng.usize(..atoms.len())]);
        }
        d.push(format!("{prefix}=>{dst}"));
    }
    d.join(";")
}

fn doubling(op: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("/x{i}=>/x{} {op} /x{}", i + 1, i + 1))
        .collect::<Vec<_>>()
        .join(";")
        + ";/svc/web=>/x0"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_good_and_hostile_traffic() {
    let secs: u64 = std::env::var("SWITCHBOARD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (a, b) = (backend("web").await, backend("web").await);
    let disco = Disco::new();
    disco.set_backends("web", &[&a, &b]);
    let yaml = config(
        "/svc => /#/io.l5d.fs;",
        "  bodyReadTimeoutMs: 500\n  servers: [{ip: 127.0.0.1, port: 0, headerReadTimeoutMs: 500}]\n",
    )
    .replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", "");
    let p = proxy(&yaml, &disco.path()).await;
    let addr = p.addr;
    let until = Instant::now() + Duration::from_secs(secs);
    let rss0 = rss_mb();

    let mut good = Vec::new();
    for _ in 0..4 {
        good.push(tokio::spawn(async move {
            let (mut ok, mut bad) = (0u64, Vec::new());
            while Instant::now() < until {
                let r = get(addr, "web", "/", &[]).await;
                if r.status == 200 && r.body == "web" {
                    ok += 1;
                } else if bad.len() < 5 {
                    bad.push(format!("{} {}", r.status, r.body));
                }
            }
            (ok, bad)
        }));
    }
    let mut hostile = Vec::new();
    for w in 0..4u64 {
        hostile.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w);
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                match rng.usize(..9) {
                    0 => {
                        let _ = get(addr, "web", "/", &[("l5d-dtab", &doubling("&", 22))]).await;
                    }
                    1 => {
                        let _ = get(addr, "web", "/", &[("l5d-dtab", &doubling("|", 22))]).await;
                    }
                    2 => {
                        let d = random_dtab(&mut rng);
                        let _ = get(addr, "web", "/", &[("l5d-dtab", &d)]).await;
                    }
                    3 => {
                        let host = format!("{}-{}", rng.u64(..), "h".repeat(4000));
                        let _ = get(addr, &host, "/", &[]).await;
                    }
                    4 => {
                        let big = "v".repeat(20_000);
                        let _ = get(addr, "web", "/", &[("x-big", &big)]).await;
                    }
                    5 => {
                        raw(addr, b"POST /count HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), Duration::from_secs(2)).await;
                    }
                    6 => {
                        raw(addr, b"POST /count HTTP/1.1\r\nHost: web\r\nContent-Length: 99\r\n\r\nab".to_vec(), Duration::from_secs(2)).await;
                    }
                    7 => {
                        let _ = get(addr, "web", "/echo", &[("upgrade", "h2c"), ("connection", "upgrade")]).await;
                    }
                    _ => {
                        raw(addr, b"GET / HTTP/1.1\r\n".to_vec(), Duration::from_secs(2)).await;
                    }
                }
            }
            n
        }));
    }
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(rss_mb());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut total_ok = 0;
    for g in good {
        let (ok, bad) = g.await.unwrap();
        assert!(bad.is_empty(), "good requests failed: {bad:?}");
        total_ok += ok;
    }
    let mut total_hostile = 0;
    for h in hostile {
        total_hostile += h.await.unwrap();
    }
    peak = peak.max(rss_mb());
    eprintln!(
        "soak: {secs} s, {total_ok} good requests (all 200), {total_hostile} hostile ones; RSS {rss0} MB at start, peak {peak} MB"
    );
    assert!(total_ok > 0);
    assert!(peak < RSS_LIMIT_MB, "peak RSS {peak} MB");
}
