//! The dtab of the `io.l5d.fs` interpreter: a file holding a dtab, watched through the OS file
//! watcher (its directory, so an editor's or a deploy's rename-over is seen). The first read
//! decides the start: a missing or invalid file is Failed with the reason until it is fixed.
//! After a good read, a bad change keeps the last good dtab (logged and counted); a good one
//! replaces it at once. Files over [`MAX_DTAB_FILE_BYTES`] are refused.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use switchboard_namer_core::{Dtab, DtabVar, NamingError, State, Updater};
use tokio::sync::mpsc;

/// Largest dtab file read.
pub const MAX_DTAB_FILE_BYTES: u64 = 1024 * 1024;
/// How long after a change event the file is read (events in between are one change).
pub const SETTLE: Duration = Duration::from_millis(50);
/// How often a directory that cannot be watched is tried again.
pub const WATCH_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// A watched dtab file.
pub struct DtabFile {
    pub path: PathBuf,
    var: DtabVar,
    /// Changes that did not read as a dtab (the last good one stayed).
    pub rejected: Arc<AtomicU64>,
    /// The reason the file is not read now, if any.
    pub error: Arc<std::sync::Mutex<Option<String>>>,
}

impl DtabFile {
    /// Reads `path` now and watches it (the watch needs a tokio runtime).
    pub fn watch(path: impl Into<PathBuf>) -> DtabFile {
        let path = path.into();
        let first = read(&path);
        let error = Arc::new(std::sync::Mutex::new(first.as_ref().err().cloned()));
        let (up, var) = Updater::new(match first {
            Ok(d) => State::Ok(d),
            Err(e) => State::Failed(NamingError::new(e)),
        });
        let rejected = Arc::new(AtomicU64::new(0));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(follow(
                up,
                path.clone(),
                Arc::clone(&rejected),
                Arc::clone(&error),
            ));
        }
        DtabFile {
            path,
            var,
            rejected,
            error,
        }
    }

    pub fn var(&self) -> DtabVar {
        self.var.clone()
    }
}

/// Reads and parses a dtab file.
pub fn read(path: &FsPath) -> Result<Dtab, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("dtab file {shown}: {e}"))?;
    if meta.len() > MAX_DTAB_FILE_BYTES {
        return Err(format!(
            "dtab file {shown} is {} bytes, over the {MAX_DTAB_FILE_BYTES}-byte limit",
            meta.len()
        ));
    }
    // Read at most the limit, whatever the file grew to since its size was looked at.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(
            std::fs::File::open(path).map_err(|e| format!("dtab file {shown}: {e}"))?,
            MAX_DTAB_FILE_BYTES + 1,
        ),
        &mut text,
    )
    .map_err(|e| format!("dtab file {shown}: {e}"))?;
    if text.len() as u64 > MAX_DTAB_FILE_BYTES {
        return Err(format!(
            "dtab file {shown} is over the {MAX_DTAB_FILE_BYTES}-byte limit"
        ));
    }
    Dtab::read(&text).map_err(|e| format!("dtab file {shown}: {e}"))
}

async fn follow(
    up: Updater<State<Dtab>>,
    path: PathBuf,
    rejected: Arc<AtomicU64>,
    error: Arc<std::sync::Mutex<Option<String>>>,
) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let _watcher = loop {
        let tx = tx.clone();
        let w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if ev.kind.is_access() => {}
            _ => {
                let _ = tx.send(());
            }
        });
        match w.and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w)) {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot watch the dtab file's directory; retrying");
                tokio::select! {
                    _ = up.closed() => return,
                    _ = tokio::time::sleep(WATCH_RETRY_INTERVAL) => {}
                }
            }
        }
    };
    // The file may have changed before the watch was in place.
    let _ = tx.send(());
    loop {
        tokio::select! {
            _ = up.closed() => return,
            ev = rx.recv() => if ev.is_none() { return },
        }
        // A writer that truncates and then writes raises several events within microseconds:
        // read once they settle, not the empty file in between.
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        let p = path.clone();
        let Ok(res) = tokio::task::spawn_blocking(move || read(&p)).await else {
            continue;
        };
        match res {
            Ok(d) => {
                if let Ok(mut e) = error.lock() {
                    *e = None;
                }
                if up.set(State::Ok(d)) {
                    tracing::info!(file = %path.display(), "dtab file changed");
                }
            }
            Err(msg) => {
                let had_good = matches!(up.current(), State::Ok(_));
                if let Ok(mut e) = error.lock() {
                    if e.as_deref() == Some(&msg) {
                        continue;
                    }
                    *e = Some(msg.clone());
                }
                if had_good {
                    rejected.fetch_add(1, Relaxed);
                    tracing::warn!(error = %msg, "the dtab file changed to something that is not a dtab; keeping the last good one");
                } else {
                    up.set(State::Failed(NamingError::new(msg)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_the_file_and_keeps_the_last_good_dtab() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("dtab");
        let missing = DtabFile::watch(&f);
        assert!(
            matches!(missing.var().sample(), State::Failed(e) if e.message().contains("dtab file"))
        );
        drop(missing);
        std::fs::write(&f, "/svc=>/$/inet/127.0.0.1/1").unwrap();
        let df = DtabFile::watch(&f);
        let mut v = df.var();
        assert_eq!(
            v.get(),
            State::Ok(Dtab::read("/svc=>/$/inet/127.0.0.1/1").unwrap())
        );
        let wait = |mut v: DtabVar, want: State<Dtab>| async move {
            tokio::time::timeout(Duration::from_secs(5), async {
                while v.get() != want {
                    v.changed().await;
                }
            })
            .await
            .expect("the file's change was not seen");
        };
        // Replaced by rename, as deploy tools do.
        let tmp = dir.path().join("dtab.tmp");
        std::fs::write(&tmp, "/svc=>/$/inet/127.0.0.1/2").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        wait(
            v.clone(),
            State::Ok(Dtab::read("/svc=>/$/inet/127.0.0.1/2").unwrap()),
        )
        .await;
        std::fs::write(&f, "/svc=>").unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while df.rejected.load(Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the bad change was not counted");
        assert_eq!(
            v.get(),
            State::Ok(Dtab::read("/svc=>/$/inet/127.0.0.1/2").unwrap())
        );
        std::fs::write(&f, "/svc=>/$/inet/127.0.0.1/3").unwrap();
        wait(
            v,
            State::Ok(Dtab::read("/svc=>/$/inet/127.0.0.1/3").unwrap()),
        )
        .await;
    }
}
