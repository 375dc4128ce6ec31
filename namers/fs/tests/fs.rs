//! `io.l5d.fs` on real temporary directories: the line format, and live changes reaching a
//! subscriber through the file watcher.

use std::path::Path as FsPath;
use std::time::Duration;

use switchboard_namer_core::{Addr, Name, NameTree, Namer, Path, State, Var};
use switchboard_namer_fs::{parse_endpoints, FsNamer};

/// Upper bound on how long a test waits for a change to arrive; a safety net, not a measurement.
const WAIT: Duration = Duration::from_secs(10);

fn show(
    r: Result<Vec<switchboard_namer_core::Endpoint>, switchboard_namer_fs::LineError>,
) -> String {
    match r {
        Ok(eps) => eps
            .iter()
            .map(|e| format!("{}@{}", e.addr, e.weight))
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn line_format_rows() {
    let check = |text: &str, want: &str| {
        assert_eq!(show(parse_endpoints("svc", text)), want, "{text:?}");
    };
    check("", "");
    check("# only a comment\n\n   \n", "");
    check(
        "127.0.0.1 8080\n127.0.0.1 8081 * 0.23\n",
        "127.0.0.1:8080@1 127.0.0.1:8081@0.23",
    );
    check(
        "  127.0.0.1\t8080   # trailing comment\r\n",
        "127.0.0.1:8080@1",
    );
    check("127.0.0.1 8080 * 1e3", "127.0.0.1:8080@1000");
    check("::1 9000", "[::1]:9000@1");
    check("127.0.0.1 65535", "127.0.0.1:65535@1");
    check(
        "127.0.0.1 0",
        "error: svc:1: malformed address: 127.0.0.1 0",
    );
    check(
        "127.0.0.1 65536",
        "error: svc:1: malformed address: 127.0.0.1 65536",
    );
    check(
        "127.0.0.1 8080\n\n127.0.0.1:8081",
        "error: svc:3: malformed address: 127.0.0.1:8081",
    );
    check(
        "127.0.0.1 80 * x",
        "error: svc:1: malformed address: 127.0.0.1 80 * x",
    );
    check(
        "127.0.0.1 80 x 2",
        "error: svc:1: malformed address: 127.0.0.1 80 x 2",
    );
    check(
        "127.0.0.1 80 * 2 3",
        "error: svc:1: malformed address: 127.0.0.1 80 * 2 3",
    );
    check(
        "127.0.0.1 http",
        "error: svc:1: malformed address: 127.0.0.1 http",
    );
    check(
        "127.0.0.1#8080 80",
        "error: svc:1: malformed address: 127.0.0.1",
    );
}

fn write(p: &FsPath, text: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    // Write then rename, as deploy tools do, so a reader never sees half a file.
    let tmp = p.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

fn namer(dir: &FsPath) -> FsNamer {
    FsNamer::new(dir, Path::read("/#/io.l5d.fs").unwrap())
}

/// Waits until `var` satisfies `pred`, returning the value.
async fn until<T: Clone + std::fmt::Debug>(var: &mut Var<T>, pred: impl Fn(&T) -> bool) -> T {
    let r = tokio::time::timeout(WAIT, async {
        loop {
            let v = var.get();
            if pred(&v) {
                return v;
            }
            assert!(var.changed().await, "watch ended while waiting");
        }
    })
    .await;
    match r {
        Ok(v) => v,
        Err(_) => panic!("no matching value within {WAIT:?}; last {:?}", var.sample()),
    }
}

fn leaf(s: &State<NameTree<Name>>) -> Option<switchboard_namer_core::Bound> {
    match s {
        State::Ok(NameTree::Leaf(Name::Bound(b))) => Some(b.clone()),
        _ => None,
    }
}

fn ports(a: &Addr) -> Vec<u16> {
    match a {
        Addr::Bound { endpoints, .. } => endpoints.iter().map(|e| e.addr.port()).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn lookup_ids_residuals_and_subdirectories() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("web"), "127.0.0.1 8080\n");
    write(&dir.path().join("eu/api"), "127.0.0.1 9090 * 2\n");
    let n = namer(dir.path());
    let check = |path: &str, want: &str| {
        let s = n.lookup(&Path::read(path).unwrap()).sample();
        let got = match &s {
            State::Ok(NameTree::Leaf(Name::Bound(b))) => format!("{} {}", b.id, b.residual),
            State::Ok(t) => format!("{t:?}"),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "{path}");
    };
    check("/web", "/#/io.l5d.fs/web /");
    check("/web/a/b", "/#/io.l5d.fs/web /a/b");
    check("/eu/api/x", "/#/io.l5d.fs/eu/api /x");
    check("/eu", "Neg");
    check("/nope", "Neg");
    check("/..", "Neg");
    let names: Vec<String> = n.enumerate().iter().map(|p| p.show()).collect();
    assert_eq!(names, ["/#/io.l5d.fs/eu/api", "/#/io.l5d.fs/web"]);
}

#[tokio::test]
async fn file_changes_reach_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web");
    write(&file, "127.0.0.1 8080\n");
    let n = namer(dir.path());
    let b = leaf(&n.lookup(&Path::read("/web").unwrap()).sample()).expect("bound");
    let mut addr = b.addr.clone();
    assert_eq!(ports(&addr.get()), [8080]);

    write(&file, "127.0.0.1 8080\n127.0.0.1 8081\n");
    until(&mut addr, |a| ports(a) == [8080, 8081]).await;

    // In-place edit (no rename) is seen too.
    std::fs::write(&file, "127.0.0.1 8082\n").unwrap();
    until(&mut addr, |a| ports(a) == [8082]).await;

    // Emptied: bound with no endpoints.
    write(&file, "# drained\n");
    let a = until(&mut addr, |a| ports(a).is_empty()).await;
    assert!(matches!(a, Addr::Bound { .. }), "{a:?}");

    // Removed: the address becomes Neg and the tree too.
    let mut tree = n.lookup(&Path::read("/web").unwrap());
    std::fs::remove_file(&file).unwrap();
    until(&mut addr, |a| *a == Addr::Neg).await;
    until(&mut tree, |t| *t == State::Ok(NameTree::Neg)).await;
}

#[tokio::test]
async fn a_new_file_turns_neg_into_a_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let n = namer(dir.path());
    let mut tree = n.lookup(&Path::read("/late/x").unwrap());
    assert_eq!(tree.get(), State::Ok(NameTree::Neg));
    write(&dir.path().join("late"), "127.0.0.1 7000\n");
    let s = until(&mut tree, |t| leaf(t).is_some()).await;
    let b = leaf(&s).unwrap();
    assert_eq!(
        (b.id.show(), b.residual.show()),
        ("/#/io.l5d.fs/late".into(), "/x".into())
    );
    assert_eq!(ports(&b.addr.sample()), [7000]);
}

#[tokio::test]
async fn malformed_file_fails_but_last_good_set_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    write(&good, "127.0.0.1 8080\n");
    write(&dir.path().join("bad"), "127.0.0.1 8080\nnot an address\n");
    let n = namer(dir.path());

    // Never good: Failed, naming file and line.
    let bad = leaf(&n.lookup(&Path::read("/bad").unwrap()).sample()).unwrap();
    match bad.addr.sample() {
        Addr::Failed(msg) => {
            assert!(
                msg.ends_with("bad:2: malformed address: not an address"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Good, then broken: the good set stays, the error shows in the namer state.
    let b = leaf(&n.lookup(&Path::read("/good").unwrap()).sample()).unwrap();
    let mut addr = b.addr.clone();
    assert_eq!(ports(&addr.get()), [8080]);
    write(&good, "127.0.0.1 8080\n127.0.0.1 99999\n");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let st = n.state();
        if st["services"]["good"]["error"].is_string() {
            assert_eq!(st["services"]["good"]["stale"], true, "{st}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "error never reported: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ports(&addr.sample()), [8080]);

    // Fixed: the new set replaces it and the error clears.
    write(&good, "127.0.0.1 8081\n");
    until(&mut addr, |a| ports(a) == [8081]).await;
    assert!(n.state()["services"]["good"].get("error").is_none());
}

#[tokio::test]
async fn root_dir_created_later_is_picked_up() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("disco");
    let n = namer(&root);
    let mut tree = n.lookup(&Path::read("/web").unwrap());
    assert_eq!(tree.get(), State::Ok(NameTree::Neg));
    // Let the watcher try (and fail) to watch the missing directory first.
    tokio::task::yield_now().await;
    write(&root.join("web"), "127.0.0.1 8080\n");
    until(&mut tree, |t| leaf(t).is_some()).await;
}

#[tokio::test]
async fn reading_files_does_not_trigger_more_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("web"), "127.0.0.1 8080\n");
    let n = namer(dir.path());
    let mut tree = n.lookup(&Path::read("/web").unwrap());
    tree.get();
    // One change: the namer re-reads the file (an access event it must ignore).
    write(&dir.path().join("web"), "127.0.0.1 8081\n");
    let b = leaf(&tree.sample()).unwrap();
    let mut addr = b.addr.clone();
    until(&mut addr, |a| ports(a) == [8081]).await;
    let settled = n.refreshes();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        n.refreshes(),
        settled,
        "the namer keeps refreshing with no change"
    );
}

#[tokio::test]
async fn names_looked_up_once_do_not_accumulate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web"), "127.0.0.1 8080\n").unwrap();
    let n = namer(dir.path());
    let cached = |n: &FsNamer| {
        n.stats()
            .into_iter()
            .find(|(k, _)| k == "cached")
            .map(|(_, v)| v)
            .unwrap()
    };
    // One observed name stays throughout.
    let held = n.lookup(&Path::read("/web").unwrap());
    // 10,000 names a client made up, each looked up and let go (as a binding that expired).
    for i in 0..10_000 {
        let v = n.lookup(&Path::utf8([format!("made-up-{i}")]));
        drop(v);
    }
    let c = cached(&n);
    assert!(c < 200, "{c} names cached after 10,000 one-off lookups");
    assert!(matches!(held.sample(), State::Ok(NameTree::Leaf(_))));
    // The held name is still the same entry.
    let again = n.lookup(&Path::read("/web").unwrap());
    assert!(again.same_source(&held));
}
