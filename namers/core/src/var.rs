//! The watched-value primitive: `Var<T>` (a value that may change, observed as a stream of
//! states) and `Activity<T>` (a `Var` of Pending | Ok | Failed). Built on `tokio::sync::watch`;
//! a constant needs no channel. Producers hold an [`Updater`]; consumers clone the `Var` and
//! await [`Var::changed`]. Nothing here spawns tasks or knows about naming.

use std::sync::Arc;

use tokio::sync::watch;

/// A value that may change over time.
#[derive(Debug)]
pub enum Var<T> {
    Const(T),
    Watch(watch::Receiver<T>),
}

impl<T: Clone> Clone for Var<T> {
    fn clone(&self) -> Self {
        match self {
            Var::Const(v) => Var::Const(v.clone()),
            Var::Watch(rx) => Var::Watch(rx.clone()),
        }
    }
}

impl<T: Clone> Var<T> {
    pub fn constant(v: T) -> Var<T> {
        Var::Const(v)
    }

    /// The current value (and marks it seen, for [`Var::changed`]).
    pub fn get(&mut self) -> T {
        match self {
            Var::Const(v) => v.clone(),
            Var::Watch(rx) => rx.borrow_and_update().clone(),
        }
    }

    /// The current value without marking it seen.
    pub fn sample(&self) -> T {
        match self {
            Var::Const(v) => v.clone(),
            Var::Watch(rx) => rx.borrow().clone(),
        }
    }

    /// Whether a new value was published since the last `get` (never, for a constant). Tests use
    /// it to check that churn did not republish a tree.
    pub fn has_changed(&self) -> bool {
        match self {
            Var::Const(_) => false,
            Var::Watch(rx) => rx.has_changed().unwrap_or(false),
        }
    }

    /// Whether both observe the same producer (constants never do).
    pub fn same_source(&self, other: &Var<T>) -> bool {
        match (self, other) {
            (Var::Watch(a), Var::Watch(b)) => a.same_channel(b),
            _ => false,
        }
    }

    /// Whether the value can never change again.
    pub fn is_final(&self) -> bool {
        match self {
            Var::Const(_) => true,
            Var::Watch(rx) => rx.has_changed().is_err(),
        }
    }

    /// Waits until the value changes after the last `get`. Returns false (at once for a
    /// constant) when it can never change again.
    pub async fn changed(&mut self) -> bool {
        match self {
            Var::Const(_) => false,
            Var::Watch(rx) => rx.changed().await.is_ok(),
        }
    }
}

/// The producing side of a `Var`.
#[derive(Debug)]
pub struct Updater<T> {
    tx: watch::Sender<T>,
}

impl<T: Clone + PartialEq> Updater<T> {
    pub fn new(initial: T) -> (Updater<T>, Var<T>) {
        let (tx, rx) = watch::channel(initial);
        (Updater { tx }, Var::Watch(rx))
    }

    pub fn var(&self) -> Var<T> {
        Var::Watch(self.tx.subscribe())
    }

    /// Publishes `v` if it differs from the current value; returns whether it did.
    pub fn set(&self, v: T) -> bool {
        self.tx.send_if_modified(|cur| {
            if *cur == v {
                false
            } else {
                *cur = v;
                true
            }
        })
    }

    /// Changes the value in place; `f` returns whether it changed anything.
    pub fn modify(&self, f: impl FnOnce(&mut T) -> bool) -> bool {
        self.tx.send_if_modified(f)
    }

    pub fn current(&self) -> T {
        self.tx.borrow().clone()
    }

    /// Number of live `Var`s observing this updater.
    pub fn observers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Resolves when every observer is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A naming failure carried in an `Activity` or an `Addr`: cheap to clone, compared by text.
/// A failure caused by a work limit (bind depth, nesting, nodes, leaves) is marked, so that a
/// router can answer it as the request's fault (400) rather than the service's.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NamingError {
    message: Arc<str>,
    limit: bool,
}

impl std::fmt::Debug for NamingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NamingError({:?})", &*self.message)
    }
}

impl NamingError {
    pub fn new(msg: impl Into<String>) -> NamingError {
        NamingError {
            message: Arc::from(msg.into()),
            limit: false,
        }
    }

    /// A failure because a bound on binding or delegation work was reached.
    pub fn limit(msg: impl Into<String>) -> NamingError {
        NamingError {
            message: Arc::from(msg.into()),
            limit: true,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a work limit caused this failure.
    pub fn is_limit(&self) -> bool {
        self.limit
    }
}

/// The state of an activity.
#[derive(Debug, Clone, PartialEq)]
pub enum State<T> {
    Pending,
    Ok(T),
    Failed(NamingError),
}

impl<T> State<T> {
    pub fn is_pending(&self) -> bool {
        matches!(self, State::Pending)
    }
}

/// A `Var` of `State`: a computation that may be pending, done, or failed, and may change.
pub type Activity<T> = Var<State<T>>;

/// An activity that is already `Ok(v)` and never changes.
pub fn value<T>(v: T) -> Activity<T> {
    Var::Const(State::Ok(v))
}

/// An activity that has failed and never changes.
pub fn failed<T>(e: NamingError) -> Activity<T> {
    Var::Const(State::Failed(e))
}

/// Something whose change a computation waits for besides its typed values: a watched dtab,
/// say, that a lookup reads (see [`Deps::push_signal`]).
pub trait Signal: Send + Sync {
    /// Waits until it changes after the last read; false when it never can again.
    fn changed(&mut self)
        -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>;
}

impl<T: Clone + Send + Sync> Signal for Var<T> {
    fn changed(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(Var::changed(self))
    }
}

/// A set of watched values a computation read; it waits until any of them changes.
pub struct Deps<T> {
    vars: Vec<Var<T>>,
    signals: Vec<Box<dyn Signal>>,
}

impl<T> Default for Deps<T> {
    fn default() -> Self {
        Deps {
            vars: Vec::new(),
            signals: Vec::new(),
        }
    }
}

impl<T: Clone + Send + Sync> Deps<T> {
    pub fn push(&mut self, v: Var<T>) {
        if !v.is_final() {
            self.vars.push(v);
        }
    }

    /// Also waits for `s`: a value of another type the computation read (already marked seen).
    pub fn push_signal<S: Signal + 'static>(&mut self, s: S) {
        self.signals.push(Box::new(s));
    }

    /// Whether nothing read can change (so the result is final).
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty() && self.signals.is_empty()
    }

    pub fn clear(&mut self) {
        self.vars.clear();
        self.signals.clear();
    }

    /// Waits until one of the watched values changes. Returns false when none of them can ever
    /// change again.
    pub async fn wait_any(&mut self) -> bool {
        loop {
            if self.is_empty() {
                return false;
            }
            let n = self.vars.len();
            let mut futs: Vec<
                std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>,
            > = self
                .vars
                .iter_mut()
                .map(|v| Box::pin(v.changed()) as _)
                .collect();
            futs.extend(self.signals.iter_mut().map(|s| s.changed()));
            let (changed, idx, _) = futures_util::future::select_all(futs).await;
            if changed {
                return true;
            }
            if idx < n {
                self.vars.swap_remove(idx);
            } else {
                self.signals.swap_remove(idx - n);
            }
        }
    }
}
