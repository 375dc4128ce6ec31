//! Hostile dtabs against binding and delegation: each row is a dtab a request can carry in
//! `l5d-dtab` (a few KB at most) that once overflowed the stack or took seconds of CPU and
//! gigabytes. Every row must end in a `limit` failure, quickly, on a thread with a small stack
//! (debug frames are the largest), and legitimate deep dtabs must still bind.

use std::time::{Duration, Instant};

use switchboard_namer_core::bind::{self, LookupDeps, DEFAULT_MAX_LEAVES, DEFAULT_MAX_NESTING};
use switchboard_namer_core::interpreter::DtabLookup;
use switchboard_namer_core::{DefaultInterpreter, Dtab, NameTree, Path, State};

/// A stack far below a tokio worker's 2 MiB: the recursions grow their stack on the heap.
const STACK: usize = 256 * 1024;

/// `inner` under `levels` alternations, each with a dead first branch: `/d | (/d | (... inner))`.
fn nested(inner: &str, levels: usize) -> String {
    format!("{}{inner}{}", "/d | (".repeat(levels), ")".repeat(levels))
}

/// `n` dentries `/x<i> => <body of /x<i+1>>`, the last one pointing at `last`.
fn chain(n: usize, hop: impl Fn(&str) -> String, last: &str) -> String {
    let mut d = Vec::new();
    for i in 0..n {
        let next = if i + 1 == n {
            last.to_string()
        } else {
            hop(&format!("/x{}", i + 1))
        };
        d.push(format!("/x{i} => {next}"));
    }
    d.join(";")
}

fn inet_union(n: usize) -> String {
    let leaves: Vec<String> = (0..n)
        .map(|i| format!("/$/inet/127.0.0.1/{}", 10000 + i))
        .collect();
    format!("/x0 => {}", leaves.join(" & "))
}

/// Binds and delegates `/x0` with `dtab` on a small stack; returns (bind, delegate, elapsed).
fn run(dtab: String) -> (State<String>, State<String>, Duration) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let dtab = Dtab::read(&dtab).expect("the dtab parses");
                let interp = DefaultInterpreter::new(vec![]);
                let t0 = Instant::now();
                let lookup = DtabLookup {
                    interp: interp.clone(),
                    dtab: dtab.clone(),
                };
                let mut deps = LookupDeps::default();
                let b = shown(
                    bind::bind_snapshot(&lookup, &Path::read("/x0").unwrap(), &mut deps),
                    |t| format!("{} leaves", leaves(&t)),
                );
                let mut deps = LookupDeps::default();
                let d = shown(
                    interp.delegate_snapshot(&dtab, &Path::read("/x0").unwrap(), &mut deps),
                    |_| "ok".to_string(),
                );
                (b, d, t0.elapsed())
            })
        })
        .unwrap()
        .join()
        .expect("binding overflowed the stack or panicked")
}

/// A state as text: `ok` for a value, and a failure's message marked `LIMIT ` when a work
/// limit caused it.
fn shown<T>(s: State<T>, ok: impl Fn(T) -> String) -> State<String> {
    match s {
        State::Ok(t) => State::Ok(ok(t)),
        State::Failed(e) => State::Failed(switchboard_namer_core::NamingError::new(format!(
            "{}{}",
            if e.is_limit() { "LIMIT " } else { "" },
            e.message()
        ))),
        State::Pending => State::Pending,
    }
}

fn leaves<T>(t: &NameTree<T>) -> usize {
    let mut n = 0;
    t.for_each_leaf(&mut |_| n += 1);
    n
}

fn failed_with(s: &State<String>, what: &str) -> bool {
    matches!(s, State::Failed(e) if e.message().starts_with("LIMIT ") && e.message().contains(what))
}

#[test]
fn hostile_dtabs_hit_a_limit_quickly() {
    // (name, dtab, what the bind's and the delegation's limit message names)
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "100 dentries, each next hop nested 30 levels",
            chain(100, |n| nested(n, 30), "/$/inet/127.0.0.1/1"),
            "nested deeper",
        ),
        (
            "alternatives doubling per dentry, ending in Neg",
            chain(22, |n| format!("{n} | {n}"), "~"),
            "nodes visited",
        ),
        (
            "unions doubling per dentry",
            chain(22, |n| format!("{n} & {n}"), "/$/inet/127.0.0.1/1"),
            "bound names",
        ),
        ("one union of 3,000 leaves", inet_union(3000), "bound names"),
    ];
    for (name, dtab, what) in rows {
        let (b, d, took) = run(dtab);
        assert!(failed_with(&b, what), "{name}: bind {b:?}");
        assert!(failed_with(&d, what), "{name}: delegate {d:?}");
        // Generous: the point is milliseconds, not the seconds it once took.
        assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
    }
}

#[test]
fn legitimate_deep_and_wide_dtabs_still_bind() {
    // 99 hops (Finagle's own limit is 100 lookups), each nested a little.
    let (b, d, _) = run(chain(99, |n| nested(n, 2), "/$/inet/127.0.0.1/1"));
    assert_eq!(b, State::Ok("1 leaves".to_string()));
    assert_eq!(d, State::Ok("ok".to_string()));
    // A union as wide as the leaf limit.
    let (b, _, _) = run(inet_union(DEFAULT_MAX_LEAVES));
    assert_eq!(b, State::Ok(format!("{DEFAULT_MAX_LEAVES} leaves")));
    // Past Finagle's lookup limit: its own error, not a work limit.
    let (b, _, _) = run(chain(120, |n| n.to_string(), "/$/inet/127.0.0.1/1"));
    assert!(
        matches!(&b, State::Failed(e) if e.message().starts_with("Max recursion level")),
        "{b:?}"
    );
    const _: () = assert!(DEFAULT_MAX_NESTING > 2 * 100);
}
