//! One etcd watch stream shared by all of a namer's watched services. etcd serves many
//! watchers on one gRPC stream (each answer carries its watcher's id), so 10,000 services cost
//! 10,000 watcher registrations rather than 10,000 HTTP/2 streams with their buffers on both
//! sides. The hub owns the stream: it sends create and cancel requests, matches each `created`
//! answer to the oldest pending create (etcd answers them in order), and routes events by
//! watcher id. When the stream breaks, every subscriber is told so and subscribes again from
//! its own last revision; the hub opens a new stream for them. It does not list keys or keep
//! endpoint state; the service tasks do.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client::{pb, prefix_end, Client, WatchSender, WatchStream};

/// What a subscriber hears about its watch.
#[derive(Debug)]
pub enum WatchMsg {
    /// The watch is in place, with this id (for `cancel`).
    Created(i64),
    /// Changes, and the revision the answer was made at.
    Events(Vec<Change>, i64),
    /// The start revision was compacted away: list again.
    Compacted,
    /// The stream broke or the watch was refused: subscribe again from the last revision.
    Broken(String),
}

/// One key change.
#[derive(Debug)]
pub struct Change {
    pub put: bool,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

enum Cmd {
    Watch {
        key: String,
        start: i64,
        tx: mpsc::UnboundedSender<WatchMsg>,
    },
    Cancel(i64),
}

/// A handle to the hub task.
#[derive(Clone)]
pub struct Hub {
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl Hub {
    /// Starts the hub; it connects with `connect` whenever it needs a stream.
    pub fn start<F, Fut>(connect: F) -> Hub
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Client, String>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, connect));
        Hub { cmds: tx }
    }

    /// Watches the keys under `key` from revision `start`.
    pub fn watch(&self, key: &str, start: i64) -> mpsc::UnboundedReceiver<WatchMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.cmds.send(Cmd::Watch {
            key: key.to_string(),
            start,
            tx,
        });
        rx
    }

    pub fn cancel(&self, id: i64) {
        let _ = self.cmds.send(Cmd::Cancel(id));
    }
}

struct Stream {
    sender: WatchSender,
    responses: WatchStream,
}

struct Pending {
    key: String,
    start: i64,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

const RETRY: Duration = Duration::from_millis(200);

async fn run<F, Fut>(mut cmds: mpsc::UnboundedReceiver<Cmd>, connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Client, String>>,
{
    let mut stream: Option<Stream> = None;
    // Creates sent and not yet answered, oldest first; and creates not yet sent.
    let mut sent: VecDeque<Pending> = VecDeque::new();
    let mut queued: VecDeque<Pending> = VecDeque::new();
    let mut subs: HashMap<i64, mpsc::UnboundedSender<WatchMsg>> = HashMap::new();
    loop {
        // Open a stream when there is work for it; its first request is the oldest queued.
        if stream.is_none() {
            if let Some(first) = queued.pop_front() {
                match open(&connect, &first.key, first.start).await {
                    Ok(s) => {
                        stream = Some(s);
                        sent.push_back(first);
                    }
                    Err(e) => {
                        let _ = first.tx.send(WatchMsg::Broken(e.clone()));
                        for p in queued.drain(..) {
                            let _ = p.tx.send(WatchMsg::Broken(e.clone()));
                        }
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
            }
        }
        if let Some(s) = stream.as_mut() {
            let mut failed = None;
            while let Some(p) = queued.pop_front() {
                match s.sender.create(create_request(&p.key, p.start)).await {
                    Ok(()) => sent.push_back(p),
                    Err(e) => {
                        queued.push_front(p);
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                break_stream(&mut stream, &mut sent, &mut queued, &mut subs, &e);
                continue;
            }
        }
        let Some(s) = stream.as_mut() else {
            match cmds.recv().await {
                Some(c) => apply(c, &mut queued, &mut subs, None).await,
                None => return,
            }
            continue;
        };
        tokio::select! {
            c = cmds.recv() => match c {
                Some(c) => apply(c, &mut queued, &mut subs, Some(&mut s.sender)).await,
                None => return,
            },
            m = s.responses.message() => match m {
                Ok(Some(resp)) => {
                    let id = resp.watch_id;
                    if resp.created {
                        if let Some(p) = sent.pop_front() {
                            let _ = p.tx.send(WatchMsg::Created(id));
                            subs.insert(id, p.tx);
                        }
                    }
                    if resp.canceled {
                        if let Some(tx) = subs.remove(&id) {
                            let msg = if resp.compact_revision > 0 {
                                WatchMsg::Compacted
                            } else {
                                WatchMsg::Broken(format!("watch canceled: {}", resp.cancel_reason))
                            };
                            let _ = tx.send(msg);
                        }
                        continue;
                    }
                    if resp.events.is_empty() {
                        continue;
                    }
                    let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                    let changes: Vec<Change> = resp
                        .events
                        .into_iter()
                        .filter_map(|ev| {
                            let kv = ev.kv?;
                            Some(Change {
                                put: ev.r#type == pb::EVENT_PUT,
                                key: kv.key,
                                value: kv.value,
                                mod_revision: kv.mod_revision,
                            })
                        })
                        .collect();
                    if let Some(tx) = subs.get(&id) {
                        if tx.send(WatchMsg::Events(changes, rev)).is_err() {
                            // The subscriber is gone without cancelling.
                            subs.remove(&id);
                            let _ = s.sender.cancel(id).await;
                        }
                    }
                }
                Ok(None) => break_stream(&mut stream, &mut sent, &mut queued, &mut subs, "watch stream ended"),
                Err(e) => break_stream(&mut stream, &mut sent, &mut queued, &mut subs, &e.to_string()),
            },
        }
    }
}

fn create_request(key: &str, start: i64) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: prefix_end(key.as_bytes()),
        start_revision: start,
        ..Default::default()
    }
}

async fn open<F, Fut>(connect: &F, key: &str, start: i64) -> Result<Stream, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Client, String>>,
{
    let mut client = connect().await?;
    let (sender, responses) = client
        .watch(create_request(key, start))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Stream { sender, responses })
}

async fn apply(
    c: Cmd,
    queued: &mut VecDeque<Pending>,
    subs: &mut HashMap<i64, mpsc::UnboundedSender<WatchMsg>>,
    sender: Option<&mut WatchSender>,
) {
    match c {
        Cmd::Watch { key, start, tx } => queued.push_back(Pending { key, start, tx }),
        Cmd::Cancel(id) => {
            subs.remove(&id);
            if let Some(s) = sender {
                let _ = s.cancel(id).await;
            }
        }
    }
}

fn break_stream(
    stream: &mut Option<Stream>,
    sent: &mut VecDeque<Pending>,
    queued: &mut VecDeque<Pending>,
    subs: &mut HashMap<i64, mpsc::UnboundedSender<WatchMsg>>,
    why: &str,
) {
    *stream = None;
    for p in sent.drain(..).chain(queued.drain(..)) {
        let _ = p.tx.send(WatchMsg::Broken(why.to_string()));
    }
    for (_, tx) in subs.drain() {
        let _ = tx.send(WatchMsg::Broken(why.to_string()));
    }
}
