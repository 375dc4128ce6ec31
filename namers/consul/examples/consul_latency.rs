//! Discovery latency of `io.l5d.consul` (a benchmark, not a test): the time from a Consul
//! registration being acknowledged to the namer's address set changing, over 200
//! re-registrations. Runs against the Consul API stand-in (`integration/backends.sh start
//! consul`), so it measures the namer's blocking-query loop, not a real Consul's raft.
//! `SWITCHBOARD_CONSUL=127.0.0.1:28500 cargo run --release -p switchboard-namer-consul --example consul_latency`

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use switchboard_namer_consul::{ConsulConfig, ConsulNamer};
use switchboard_namer_core::testing::{latency_summary, until_first_port};
use switchboard_namer_core::{Name, NameTree, Namer, Path, State};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let c = std::env::var("SWITCHBOARD_CONSUL").unwrap_or_else(|_| "127.0.0.1:28500".into());
    let (host, port) = c.split_once(':').ok_or("SWITCHBOARD_CONSUL is host:port")?;
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let svc = format!("lat{}", std::process::id());
    let register = |p: u16| {
        let body = format!(r#"{{"Name":"{svc}","ID":"{svc}-1","Address":"127.0.0.1","Port":{p}}}"#);
        hyper::Request::put(format!("http://{c}/v1/agent/service/register"))
            .body(Full::new(Bytes::from(body)))
    };
    http.request(register(1)?).await?;
    let cfg = ConsulConfig {
        host: host.into(),
        port: port.parse()?,
        ..Default::default()
    };
    let n = ConsulNamer::new(cfg, Path::read("/#/io.l5d.consul")?);
    let mut tree = n.lookup(&Path::utf8(["dc1", svc.as_str()]));
    let mut a = loop {
        if let State::Ok(NameTree::Leaf(Name::Bound(b))) = tree.get() {
            break b.addr.clone();
        }
        tokio::time::timeout(Duration::from_secs(10), tree.changed()).await?;
    };
    let mut lat = Vec::new();
    for i in 2..202u16 {
        http.request(register(i)?).await?;
        let acked = Instant::now();
        until_first_port(&mut a, i).await;
        lat.push(acked.elapsed());
    }
    println!(
        "Consul change → address set, 200 registrations: {}",
        latency_summary(&mut lat)
    );
    Ok(())
}
