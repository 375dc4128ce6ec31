//! Measures how long a change to a service file takes to reach a subscriber of its address set
//! (write → `Var` update), over a bounded number of edits. Run with
//! `cargo run --release -p switchboard-namer-fs --example fs_latency`.

use std::time::{Duration, Instant};

use switchboard_namer_core::testing::{latency_summary, until_first_port};
use switchboard_namer_core::{Name, NameTree, Namer, Path, State};
use switchboard_namer_fs::FsNamer;

const EDITS: u16 = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("web");
    std::fs::write(&file, "127.0.0.1 1\n")?;
    let namer = FsNamer::new(dir.path(), Path::read("/#/io.l5d.fs")?);
    let State::Ok(NameTree::Leaf(Name::Bound(b))) = namer.lookup(&Path::read("/web")?).sample()
    else {
        anyhow::bail!("/web did not bind");
    };
    let mut addr = b.addr.clone();
    addr.get();
    tokio::time::sleep(Duration::from_millis(100)).await; // watcher in place
    let mut lat = Vec::new();
    for port in 2..EDITS + 2 {
        let start = Instant::now();
        std::fs::write(&file, format!("127.0.0.1 {port}\n"))?;
        until_first_port(&mut addr, port).await;
        lat.push(start.elapsed());
    }
    println!("{EDITS} edits: {}", latency_summary(&mut lat));
    Ok(())
}
