//! Discovery benchmark for `io.l5d.etcd` (not a test): (1) the time from an etcd write being
//! acknowledged to the namer's address set changing, over 200 writes; (2) N services of E
//! endpoints each, all watched: time to bind them all, this process's RSS, and etcd's watcher
//! count and RSS from its /metrics. Needs the test etcd (`integration/backends.sh start etcd`).
//!
//! `SWITCHBOARD_ETCD=127.0.0.1:23790 cargo run --release -p switchboard-namer-etcd --example etcd_bench -- 10000 10`

use std::time::{Duration, Instant};

use switchboard_namer_core::testing::{latency_summary, until_first_port};
use switchboard_namer_core::{Addr, Name, NameTree, Namer, Path, State};
use switchboard_namer_etcd::client::{pb, Client, ConnectOptions};
use switchboard_namer_etcd::EtcdNamer;

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn etcd_metric(etcd: &str, name: &str) -> Option<f64> {
    let out = tokio::process::Command::new("curl")
        .args(["-s", &format!("http://{etcd}/metrics")])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let etcd = std::env::var("SWITCHBOARD_ETCD").unwrap_or_else(|_| "127.0.0.1:23790".into());
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (services, per) = (
        args.first().copied().unwrap_or(10_000),
        args.get(1).copied().unwrap_or(10),
    );
    let mut c = Client::connect(&[etcd.as_str()], &ConnectOptions::default()).await?;
    let root = format!("/bench{}", std::process::id());

    // 1. Change → address set latency.
    let n = EtcdNamer::new(vec![etcd.clone()], &root, Path::read("/#/io.l5d.etcd")?);
    c.put(format!("{root}/lat/0"), "127.0.0.1:1", 0).await?;
    let mut tree = n.lookup(&Path::read("/lat")?);
    let mut addr = loop {
        if let State::Ok(NameTree::Leaf(Name::Bound(b))) = tree.get() {
            break b.addr.clone();
        }
        tree.changed().await;
    };
    let mut lat = Vec::new();
    for i in 1..=200u16 {
        c.put(format!("{root}/lat/0"), format!("127.0.0.1:{}", i + 1), 0)
            .await?;
        let acked = Instant::now();
        until_first_port(&mut addr, i + 1).await;
        lat.push(acked.elapsed());
    }
    println!(
        "etcd change → address set, 200 writes: {}",
        latency_summary(&mut lat)
    );

    // 2. Many services watched.
    let rss0 = rss_mb();
    let t0 = Instant::now();
    let mut ops = Vec::new();
    for s in 0..services {
        for e in 0..per {
            ops.push(pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: format!("{root}/s{s}/{e}").into_bytes(),
                    value: format!("10.{}.{}.{}:8080", (s >> 8) & 255, s & 255, e).into_bytes(),
                    ..Default::default()
                })),
            });
            if ops.len() == 100 {
                c.txn(pb::TxnRequest {
                    success: std::mem::take(&mut ops),
                    ..Default::default()
                })
                .await?;
            }
        }
    }
    if !ops.is_empty() {
        c.txn(pb::TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await?;
    }
    println!(
        "registered {services} services x {per} endpoints in {:?}",
        t0.elapsed()
    );
    let t1 = Instant::now();
    let mut vars = Vec::with_capacity(services);
    for s in 0..services {
        vars.push(n.lookup(&Path::utf8([format!("s{s}")])));
    }
    for v in vars.iter_mut() {
        while !matches!(v.get(), State::Ok(NameTree::Leaf(_))) {
            tokio::time::timeout(Duration::from_secs(60), v.changed()).await?;
        }
    }
    println!(
        "all {services} bound in {:?}; namer process RSS {:.1} MB (+{:.1} MB)",
        t1.elapsed(),
        rss_mb(),
        rss_mb() - rss0
    );
    println!(
        "etcd: watchers {:?}, watch streams {:?}, RSS {:.1} MB",
        etcd_metric(&etcd, "etcd_debugging_mvcc_watcher_total").await,
        etcd_metric(&etcd, "etcd_debugging_mvcc_watch_stream_total").await,
        etcd_metric(&etcd, "process_resident_memory_bytes")
            .await
            .unwrap_or(0.0)
            / 1e6
    );
    // One endpoint change among them costs one event for one service.
    let t2 = Instant::now();
    c.put(format!("{root}/s7/0"), "10.9.9.9:8080", 0).await?;
    let mut v = n.lookup(&Path::read("/s7")?);
    if let State::Ok(NameTree::Leaf(Name::Bound(b))) = v.get() {
        let mut a = b.addr.clone();
        loop {
            if let Addr::Bound { endpoints, .. } = a.get() {
                if endpoints
                    .iter()
                    .any(|e| e.addr.to_string() == "10.9.9.9:8080")
                {
                    break;
                }
            }
            tokio::time::timeout(Duration::from_secs(5), a.changed()).await?;
        }
    }
    println!(
        "one change among {services} watched services seen in {:?}",
        t2.elapsed()
    );
    c.delete_prefix(root.as_bytes()).await?;
    Ok(())
}
