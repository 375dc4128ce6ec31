//! The `io.l5d.fs` namer: every file under a watched `rootDir` is a service, and each line of a
//! file is an endpoint, `host port` or `host port * weight` (`#` starts a comment). A path
//! `/<dir>/.../<file>/rest` binds to id `<prefix>/<dir>/.../<file>` with residual `/rest`.
//!
//! - a missing file is a NameTree Neg (so a dtab falls back), an empty file is bound with no
//!   endpoints;
//! - a malformed line makes the set Failed, naming the file and line, unless the file had a good
//!   set before: then that set keeps serving and the error shows in the namer state;
//! - changes arrive through the OS file watcher (inotify on Linux), not by polling.
//!
//! It only names; it does not route or balance.

pub mod dtab_file;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde_json::{json, Value};
use switchboard_namer_core::{
    Activity, Addr, Bound, Endpoint, Name, NameTree, Namer, Path, State, Updater, Var,
};
use tokio::sync::mpsc;

/// The namer's `kind` in config.
pub const KIND: &str = "io.l5d.fs";
/// How often a missing `rootDir` is checked for, until it appears.
pub const ROOT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// An error in one line of a service file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct LineError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

/// Files larger than this are refused (Linkerd's `FileTooBig`), so a stray log file in `rootDir`
/// cannot eat memory.
pub const MAX_FILE_SIZE: u64 = 500 * 1024;

/// Parses a service file's text as Linkerd's `WatchingNamer` does: everything after `#` is
/// dropped, lines are trimmed, blank lines skipped; each line is `host port` or
/// `host port * weight` with `0 < port <= 65535` and any floating-point weight. Any bad line
/// fails the whole file with `malformed address: <line>`, prefixed by `file:line:`. Host names
/// are resolved once here; a name that does not resolve is left out, as Finagle leaves out an
/// unresolved address.
pub fn parse_endpoints(file: &str, text: &str) -> Result<Vec<Endpoint>, LineError> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let malformed = || LineError {
            file: file.to_string(),
            line: i + 1,
            msg: format!("malformed address: {line}"),
        };
        let toks: Vec<&str> = line.split_whitespace().collect();
        let (host, port, weight) = match toks.as_slice() {
            [h, p] => (*h, *p, None),
            [h, p, "*", w] => (*h, *p, Some(*w)),
            _ => return Err(malformed()),
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(malformed()),
        };
        let weight = match weight {
            None => None,
            Some(w) => Some(w.parse::<f64>().map_err(|_| malformed())?),
        };
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match (host, port).to_socket_addrs() {
                Ok(it) => it.collect(),
                Err(e) => {
                    tracing::warn!(namer = KIND, file, line = i + 1, host, error = %e, "unresolved host left out");
                    Vec::new()
                }
            },
        };
        out.extend(addrs.into_iter().map(|a| match weight {
            Some(w) => Endpoint::new(a).with_weight(w),
            None => Endpoint::new(a),
        }));
    }
    Ok(out)
}

struct AddrEntry {
    up: Updater<Addr>,
    error: Option<String>,
}

struct Inner {
    refreshes: std::sync::atomic::AtomicU64,
    root: PathBuf,
    prefix: Path,
    trees: Mutex<HashMap<Path, Updater<State<NameTree<Name>>>>>,
    addrs: Mutex<BTreeMap<Vec<String>, AddrEntry>>,
    /// Map sizes at which the next sweep of unobserved entries runs.
    trees_sweep_at: AtomicUsize,
    addrs_sweep_at: AtomicUsize,
}

/// Smallest map size that triggers a sweep of entries nobody observes.
const SWEEP_MIN: usize = 64;

/// Once `len` reaches `*at`, drops the entries `live` rejects and sets the next sweep at twice
/// what is left: names looked up once (a client can send any) do not accumulate, and sweeping
/// stays amortised O(1) per insert.
fn sweep<M>(map: &mut M, len: impl Fn(&M) -> usize, retain: impl FnOnce(&mut M), at: &AtomicUsize) {
    if len(map) < at.load(Relaxed) {
        return;
    }
    retain(map);
    at.store((len(map) * 2).max(SWEEP_MIN), Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A path element usable as a file name: UTF-8, no separators, not `.` or `..`, not hidden.
fn file_elem(e: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(e).ok()?;
    (!s.starts_with('.') && !s.contains(['/', '\\', '\0'])).then_some(s)
}

impl Inner {
    fn read_file(&self, rel: &[String]) -> Result<Option<Vec<Endpoint>>, String> {
        let p = rel.iter().fold(self.root.clone(), |p, e| p.join(e));
        match std::fs::metadata(&p) {
            Ok(m) if m.len() > MAX_FILE_SIZE => {
                return Err(format!("file {} is {} bytes", p.display(), m.len()))
            }
            _ => {}
        }
        match std::fs::read_to_string(&p) {
            Ok(text) => parse_endpoints(&p.display().to_string(), &text)
                .map(Some)
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// Applies a file's current contents to its address set.
    fn refresh_addr(&self, rel: &[String], entry: &mut AddrEntry) {
        match self.read_file(rel) {
            Ok(Some(eps)) => {
                entry.error = None;
                entry.up.set(Addr::bound(eps));
            }
            Ok(None) => {
                entry.error = None;
                entry.up.set(Addr::Neg);
            }
            Err(msg) => {
                tracing::warn!(namer = KIND, error = %msg, "bad service file");
                if !matches!(entry.up.current(), Addr::Bound { .. }) {
                    entry.up.set(Addr::Failed(msg.clone()));
                }
                entry.error = Some(msg);
            }
        }
    }

    fn addr_var(&self, rel: &[String]) -> Var<Addr> {
        let mut addrs = lock(&self.addrs);
        if let Some(e) = addrs.get(rel) {
            return e.up.var();
        }
        sweep(
            &mut *addrs,
            |m| m.len(),
            |m| m.retain(|_, e| e.up.observers() > 0),
            &self.addrs_sweep_at,
        );
        let (up, var) = Updater::new(Addr::Pending);
        let mut entry = AddrEntry { up, error: None };
        self.refresh_addr(rel, &mut entry);
        addrs.insert(rel.to_vec(), entry);
        var
    }

    /// The tree for a lookup path, from the current state of the directory.
    fn resolve(&self, path: &Path) -> NameTree<Name> {
        let mut dir = self.root.clone();
        let mut rel = Vec::new();
        for (i, e) in path.elems().iter().enumerate() {
            let Some(name) = file_elem(e) else {
                return NameTree::Neg;
            };
            let candidate = dir.join(name);
            rel.push(name.to_string());
            match std::fs::metadata(&candidate) {
                Ok(m) if m.is_file() => {
                    let id = self.prefix.concat(&path.take(i + 1));
                    let addr = self.addr_var(&rel);
                    return NameTree::Leaf(Name::Bound(Bound::new(id, path.drop(i + 1), addr)));
                }
                Ok(m) if m.is_dir() => dir = candidate,
                _ => return NameTree::Neg,
            }
        }
        NameTree::Neg
    }

    /// Re-reads everything watched after a change, and forgets what nobody watches any more.
    fn refresh_all(&self) {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let keys: Vec<Path> = {
            let mut trees = lock(&self.trees);
            trees.retain(|_, up| up.observers() > 0);
            trees.keys().cloned().collect()
        };
        for k in keys {
            let t = self.resolve(&k);
            if let Some(up) = lock(&self.trees).get(&k) {
                up.set(State::Ok(t));
            }
        }
        let mut addrs = lock(&self.addrs);
        addrs.retain(|_, e| e.up.observers() > 0);
        let rels: Vec<Vec<String>> = addrs.keys().cloned().collect();
        for rel in rels {
            if let Some(e) = addrs.get_mut(&rel) {
                self.refresh_addr(&rel, e);
            }
        }
    }
}

/// The `io.l5d.fs` namer.
#[derive(Clone)]
pub struct FsNamer {
    inner: Arc<Inner>,
}

impl FsNamer {
    /// A namer over `root`, answering `prefix` (e.g. `/#/io.l5d.fs`). Starts the watcher when
    /// called within a tokio runtime; outside one, lookups read the directory as it is.
    pub fn new(root: impl Into<PathBuf>, prefix: Path) -> FsNamer {
        let inner = Arc::new(Inner {
            refreshes: Default::default(),
            root: root.into(),
            prefix,
            trees: Mutex::new(HashMap::new()),
            addrs: Mutex::new(BTreeMap::new()),
            trees_sweep_at: AtomicUsize::new(SWEEP_MIN),
            addrs_sweep_at: AtomicUsize::new(SWEEP_MIN),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(watch(Arc::downgrade(&inner), inner.root.clone()));
        }
        FsNamer { inner }
    }

    /// How many times the directory has been re-read after a change.
    pub fn refreshes(&self) -> u64 {
        self.inner
            .refreshes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn root(&self) -> &FsPath {
        &self.inner.root
    }
}

/// Watches `root` recursively and refreshes on every change; stops when the namer is dropped.
async fn watch(inner: Weak<Inner>, root: PathBuf) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = loop {
        let tx = tx.clone();
        let w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Our own reads raise access events; reacting to them would refresh forever.
            match res {
                Ok(ev) if ev.kind.is_access() => {}
                _ => {
                    let _ = tx.send(());
                }
            }
        });
        match w.and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|()| w)) {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(namer = KIND, root = %root.display(), error = %e, "cannot watch rootDir; retrying");
                tokio::time::sleep(ROOT_RETRY_INTERVAL).await;
                if inner.strong_count() == 0 {
                    return;
                }
            }
        }
    };
    // The directory may have changed before the watch was in place.
    if let Some(i) = inner.upgrade() {
        let _ = tokio::task::spawn_blocking(move || i.refresh_all()).await;
    }
    while rx.recv().await.is_some() {
        // Coalesce a burst of events into one refresh.
        while rx.try_recv().is_ok() {}
        let Some(i) = inner.upgrade() else { break };
        let removed = !i.root.is_dir();
        let i2 = Arc::clone(&i);
        let _ = tokio::task::spawn_blocking(move || i2.refresh_all()).await;
        if removed {
            // The root itself went away: watch again once it is back.
            drop(i);
            let _ = watcher.unwatch(&root);
            Box::pin(watch(inner, root)).await;
            return;
        }
    }
    drop(watcher);
}

impl Namer for FsNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let mut trees = lock(&self.inner.trees);
        if let Some(up) = trees.get(path) {
            return up.var();
        }
        sweep(
            &mut *trees,
            |m| m.len(),
            |m| m.retain(|_, up| up.observers() > 0),
            &self.inner.trees_sweep_at,
        );
        let t = self.inner.resolve(path);
        let (up, var) = Updater::new(State::Ok(t));
        trees.insert(path.clone(), up);
        var
    }

    fn state(&self) -> Value {
        let addrs = lock(&self.inner.addrs);
        let services: serde_json::Map<String, Value> = addrs
            .iter()
            .map(|(rel, e)| {
                let mut v = json!({"addr": e.up.current().to_json()});
                if let Some(err) = &e.error {
                    v["error"] = json!(err);
                    v["stale"] = json!(matches!(e.up.current(), Addr::Bound { .. }));
                }
                (rel.join("/"), v)
            })
            .collect();
        json!({"kind": KIND, "rootDir": self.inner.root.display().to_string(), "services": services})
    }

    /// `cached`: looked-up names held (observed ones, plus at most as many unobserved before a
    /// sweep); `files`: service files read.
    fn stats(&self) -> Vec<(String, i64)> {
        vec![
            ("cached".to_string(), lock(&self.inner.trees).len() as i64),
            ("files".to_string(), lock(&self.inner.addrs).len() as i64),
        ]
    }

    fn enumerate(&self) -> Vec<Path> {
        fn walk(dir: &FsPath, rel: &mut Vec<String>, prefix: &Path, out: &mut Vec<Path>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            let mut entries: Vec<_> = rd.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                rel.push(name);
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), rel, prefix, out),
                    Ok(t) if t.is_file() => out.push(prefix.concat(&Path::utf8(rel.iter()))),
                    _ => {}
                }
                rel.pop();
            }
        }
        let mut out = Vec::new();
        walk(
            &self.inner.root,
            &mut Vec::new(),
            &self.inner.prefix,
            &mut out,
        );
        out
    }
}
