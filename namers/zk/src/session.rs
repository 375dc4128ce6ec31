//! The one ZooKeeper session a namer shares between all its watches. A background task connects
//! (lazily, at the first lookup), publishes the client on a watch channel, and when the session
//! ends for good (expired, closed, auth failed) publishes the failure and connects again with a
//! new session, retrying with jittered backoff while ZooKeeper cannot be reached. Watch tasks
//! re-read everything when they see a new session. Short connection losses within a session are
//! handled by the client itself (it reconnects and re-sends its watches); the watch tasks see
//! them through the client's `StateWatcher`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

/// Backoff bounds for reconnecting and for retrying failed reads.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often idle background tasks check whether they are still wanted.
pub(crate) const LIVENESS_CHECK: Duration = Duration::from_secs(2);

/// A snapshot of the shared session: a live client, or why there is none. Every published
/// snapshot has a new `gen`.
#[derive(Clone)]
pub(crate) struct Conn {
    pub gen: u64,
    pub client: Option<zk::Client>,
    pub error: Option<String>,
}

pub(crate) struct Session {
    kind: &'static str,
    connect: String,
    session_timeout: Duration,
    tx: watch::Sender<Conn>,
    started: AtomicBool,
    status: Mutex<String>,
}

impl Session {
    pub fn new(kind: &'static str, connect: String, session_timeout: Duration) -> Arc<Session> {
        let (tx, _) = watch::channel(Conn {
            gen: 0,
            client: None,
            error: None,
        });
        Arc::new(Session {
            kind,
            connect,
            session_timeout,
            tx,
            started: AtomicBool::new(false),
            status: Mutex::new("idle".to_string()),
        })
    }

    /// The session snapshots; starts the session task on first use (needs a tokio runtime).
    pub fn subscribe(self: &Arc<Self>) -> watch::Receiver<Conn> {
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(run(Arc::downgrade(self)));
        }
        self.tx.subscribe()
    }

    /// For `/namer_state`: `idle`, `connecting`, `SyncConnected (session 0x..)`, ...
    pub fn status(&self) -> String {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_status(&self, s: impl Into<String>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s.into();
    }

    pub fn connect_string(&self) -> &str {
        &self.connect
    }

    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }
}

/// Keeps one live session published until the `Session` is dropped.
async fn run(weak: Weak<Session>) {
    let mut backoff = backoff();
    let mut gen = 0u64;
    // While connecting fails, the status keeps saying so (not a bare "connecting").
    let mut failing = false;
    loop {
        let (kind, connect, timeout) = match weak.upgrade() {
            Some(s) => {
                if !failing {
                    s.set_status("connecting");
                }
                (s.kind, s.connect.clone(), s.session_timeout)
            }
            None => return,
        };
        // Fail fast when no server answers; this loop retries with backoff.
        let res = zk::Client::connector()
            .with_session_timeout(timeout)
            .with_fail_eagerly()
            .connect(&connect)
            .await;
        let Some(s) = weak.upgrade() else { return };
        match res {
            Ok(client) => {
                backoff.reset();
                failing = false;
                gen += 1;
                let mut states = client.state_watcher();
                let id = client.session_id();
                tracing::info!(namer = kind, zk = %connect, session = %id, "ZooKeeper session established");
                s.set_status(format!("{} (session {id})", states.peek_state()));
                s.tx.send_replace(Conn {
                    gen,
                    client: Some(client),
                    error: None,
                });
                drop(s);
                loop {
                    tokio::select! {
                        st = states.changed() => {
                            let Some(s) = weak.upgrade() else { return };
                            s.set_status(format!("{st} (session {id})"));
                            if st.is_terminated() {
                                tracing::warn!(namer = kind, zk = %connect, session = %id, state = %st, "ZooKeeper session ended; starting a new one");
                                gen += 1;
                                s.tx.send_replace(Conn {
                                    gen,
                                    client: None,
                                    error: Some(format!("ZooKeeper session {id} {st}")),
                                });
                                break;
                            }
                            if st == zk::SessionState::Disconnected {
                                tracing::warn!(namer = kind, zk = %connect, session = %id, "ZooKeeper connection lost; reconnecting");
                            } else {
                                tracing::info!(namer = kind, zk = %connect, session = %id, state = %st, "ZooKeeper session state");
                            }
                        }
                        _ = tokio::time::sleep(LIVENESS_CHECK) => {
                            if weak.strong_count() == 0 {
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                gen += 1;
                let msg = format!("cannot connect to ZooKeeper at {connect}: {e}");
                if failing {
                    tracing::debug!(namer = kind, error = %msg, "ZooKeeper still unavailable; retrying");
                } else {
                    tracing::warn!(namer = kind, error = %msg, "ZooKeeper unavailable; retrying");
                }
                failing = true;
                s.set_status(format!("failed: {msg}; retrying"));
                s.tx.send_replace(Conn {
                    gen,
                    client: None,
                    error: Some(msg),
                });
                drop(s);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

pub(crate) use switchboard_namer_core::backoff::Backoff;

/// The session's and watches' retry delays: from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], jittered
/// (so retries of many watches spread out).
pub(crate) fn backoff() -> Backoff {
    Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let mut b = backoff();
        let first = b.next_delay();
        assert!(
            first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN,
            "{first:?}"
        );
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
            assert!(last <= BACKOFF_MAX);
        }
        assert!(last >= BACKOFF_MAX / 2, "{last:?}");
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }
}
