//! Discovery latency of `io.l5d.serversets` (a benchmark, not a test): the time from a
//! ZooKeeper write being acknowledged to the namer's address set changing, over 200 writes.
//! Needs the test ZooKeeper (`integration/backends.sh start zk`).
//! `SWITCHBOARD_ZK=127.0.0.1:21810 cargo run --release -p switchboard-namer-zk --example zk_latency`

use std::time::{Duration, Instant};

use switchboard_namer_core::testing::{latency_summary, until_first_port};
use switchboard_namer_core::{Name, NameTree, Namer, Path, State};
use switchboard_namer_zk::ServersetsNamer;
use zookeeper_client as zk;

fn member(port: u16) -> String {
    format!(
        r#"{{"serviceEndpoint":{{"host":"127.0.0.1","port":{port}}},"additionalEndpoints":{{}},"status":"ALIVE"}}"#
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("SWITCHBOARD_ZK").unwrap_or_else(|_| "127.0.0.1:21810".into());
    let (host, port) = addr.split_once(':').ok_or("SWITCHBOARD_ZK is host:port")?;
    let c = zk::Client::connect(&addr).await?;
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let root = format!("/zk-latency-{}", std::process::id());
    c.mkdir(&format!("{root}/web"), &opts).await?;
    let node = format!("{root}/web/member_0000000001");
    c.create(&node, member(1).as_bytes(), &opts).await?;
    let n = ServersetsNamer::new(
        vec![(host.to_string(), port.parse()?)],
        Path::read("/#/io.l5d.serversets")?,
    );
    let mut tree = n.lookup(&Path::utf8([&root[1..], "web"]));
    let mut a = loop {
        if let State::Ok(NameTree::Leaf(Name::Bound(b))) = tree.get() {
            break b.addr.clone();
        }
        tokio::time::timeout(Duration::from_secs(10), tree.changed()).await?;
    };
    let mut lat = Vec::new();
    for i in 2..202u16 {
        c.set_data(&node, member(i).as_bytes(), None).await?;
        let acked = Instant::now();
        until_first_port(&mut a, i).await;
        lat.push(acked.elapsed());
    }
    println!(
        "ZooKeeper change → address set, 200 writes: {}",
        latency_summary(&mut lat)
    );
    c.delete(&node, None).await?;
    Ok(())
}
