//! Binding, delegation and the system namers, with a controllable test namer. Rows follow
//! Finagle's NamerTest / DefaultInterpreterTest and Linkerd's DelegateApiHandlerTest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_namer_core::bind::{self, LookupDeps};
use switchboard_namer_core::delegate::{bound_tree_json, delegate_json};
use switchboard_namer_core::rewrite::{PathMatcher, RewritingNamer};
use switchboard_namer_core::{
    var, Activity, Bound, ConfiguredNamer, DefaultInterpreter, Dtab, Name, NameTree, Namer,
    NamingError, Path, State, Updater,
};

/// One step of a scripted namer change and the evaluation expected after it.
type Step<'a> = (Box<dyn Fn() + 'a>, &'a str);

/// A namer whose answers the test sets; every path starts Pending.
#[derive(Default)]
struct TestNamer {
    vars: Mutex<HashMap<Path, Updater<State<NameTree<Name>>>>>,
}

impl TestNamer {
    fn set(&self, path: &str, s: State<NameTree<Name>>) {
        let p = Path::read(path).unwrap();
        let mut vars = self.vars.lock().unwrap();
        vars.entry(p)
            .or_insert_with(|| Updater::new(State::Pending).0)
            .set(s);
    }
    fn set_tree(&self, path: &str, tree: &str) {
        let t = NameTree::read(tree).unwrap();
        self.set(
            path,
            State::Ok(t.map(&mut |p: &Path| Name::Path(p.clone()))),
        );
    }
    fn fail(&self, path: &str) {
        self.set(path, State::Failed(NamingError::new("test exception")));
    }
}

impl Namer for TestNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let full = Path::utf8(["test"]).concat(path);
        let mut vars = self.vars.lock().unwrap();
        vars.entry(full)
            .or_insert_with(|| Updater::new(State::Pending).0)
            .var()
    }
}

/// A namer that always fails (Linkerd's test `error` namer).
struct ErrorNamer;
impl Namer for ErrorNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let full = Path::read("/#/error").unwrap().concat(path);
        var::failed(NamingError::new(format!("error naming {full}")))
    }
}

fn interp_with(namers: Vec<(&str, Arc<dyn Namer>)>) -> Arc<DefaultInterpreter> {
    DefaultInterpreter::new(
        namers
            .into_iter()
            .map(|(p, n)| ConfiguredNamer {
                prefix: Path::read(p).unwrap(),
                namer: n,
            })
            .collect(),
    )
}

/// The bound tree's evaluation as sorted `id[@weight]` strings, or "pending"/"failed: ...".
fn eval_of(s: &State<NameTree<Bound>>) -> String {
    match s {
        State::Pending => "pending".into(),
        State::Failed(e) => format!("failed: {e}"),
        State::Ok(t) => match t.eval() {
            None => "none".into(),
            Some(set) => {
                let v: Vec<String> = set
                    .iter()
                    .map(|b| match b.weight {
                        Some(w) => format!("{}@{w}", b.id),
                        None => b.id.to_string(),
                    })
                    .collect();
                format!("{{{}}}", v.join(","))
            }
        },
    }
}

fn snapshot(interp: &Arc<DefaultInterpreter>, dtab: &str, tree_path: &str) -> String {
    let lookup = switchboard_namer_core::interpreter::DtabLookup {
        interp: Arc::clone(interp),
        dtab: Dtab::read(dtab).unwrap(),
    };
    // Bind a tree (not only a path) by putting it behind a dtab entry.
    let mut deps = LookupDeps::default();
    eval_of(&bind::bind_snapshot(
        &lookup,
        &Path::read(tree_path).unwrap(),
        &mut deps,
    ))
}

#[tokio::test]
async fn union_steps() {
    let t = Arc::new(TestNamer::default());
    let interp = interp_with(vec![("/test", t.clone())]);
    let dtab = "/root => /test/0 & /test/1";
    let steps: Vec<Step> = vec![
        (Box::new(|| {}), "pending"),
        (Box::new(|| t.set_tree("/test/0", "/test/2")), "pending"),
        (
            Box::new(|| t.set_tree("/test/1", "/$/inet/1")),
            "{/$/inet/1@1}",
        ),
        (Box::new(|| t.fail("/test/1")), "failed: test exception"),
        (
            Box::new(|| {
                t.set_tree("/test/1", "/$/inet/1");
                t.set_tree("/test/2", "/$/inet/2");
            }),
            "{/$/inet/1@1,/$/inet/2@1}",
        ),
        (Box::new(|| t.set_tree("/test/2", "~")), "{/$/inet/1@1}"),
        (Box::new(|| t.fail("/test/2")), "{/$/inet/1@1}"),
        (Box::new(|| t.fail("/test/1")), "failed: test exception"),
        (
            Box::new(|| {
                t.set_tree("/test/1", "~");
                t.set_tree("/test/2", "~");
            }),
            "none",
        ),
        (Box::new(|| t.set_tree("/test/1", "$")), "{}"),
    ];
    for (i, (act, want)) in steps.iter().enumerate() {
        act();
        assert_eq!(snapshot(&interp, dtab, "/root"), *want, "step {i}");
    }
}

#[tokio::test]
async fn failover_steps() {
    let t = Arc::new(TestNamer::default());
    let interp = interp_with(vec![("/test", t.clone())]);
    let dtab = "/root => /test/0 | /test/1 & /test/2";
    let steps: Vec<Step> = vec![
        (Box::new(|| {}), "pending"),
        (
            Box::new(|| {
                t.set_tree("/test/0", "$");
                t.set_tree("/test/1", "~");
                t.set_tree("/test/2", "~");
            }),
            "{}",
        ),
        (
            Box::new(|| t.set_tree("/test/0", "/$/inet/1")),
            "{/$/inet/1}",
        ),
        (Box::new(|| t.set_tree("/test/0", "~")), "none"),
        (
            Box::new(|| t.set_tree("/test/2", "/$/inet/2")),
            "{/$/inet/2@1}",
        ),
        (
            Box::new(|| t.set_tree("/test/0", "/$/inet/3")),
            "{/$/inet/3}",
        ),
    ];
    for (i, (act, want)) in steps.iter().enumerate() {
        act();
        assert_eq!(snapshot(&interp, dtab, "/root"), *want, "step {i}");
    }
}

#[tokio::test]
async fn bind_rows() {
    let t = Arc::new(TestNamer::default());
    let interp = interp_with(vec![("/test", t.clone())]);
    fn row(interp: &Arc<DefaultInterpreter>, dtab: &str, path: &str, want: &str) {
        assert_eq!(snapshot(interp, dtab, path), want, "{dtab} / {path}");
    }
    row(&interp, "/r => ! | /test/1 | /test/2", "/r", "none");
    row(&interp, "/r => ~ | /$/fail | /test/1", "/r", "none");
    row(&interp, "/r => /$/nil | /$/fail | /test/1", "/r", "{}");
    row(&interp, "/foo=>/$/inet/8080", "/foo", "{/$/inet/8080}");
    row(
        &interp,
        "/foo=>/bar;/bar=>/$/inet/8080",
        "/foo",
        "{/$/inet/8080}",
    );
    let d1 = "/foo => /bar";
    let d2 = "/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090";
    row(&interp, &format!("{d1};{d2}"), "/foo", "{/$/inet/8080}");
    row(&interp, &format!("{d2};{d1}"), "/foo", "{/$/inet/9090}");
    row(
        &interp,
        "/foo => /bar; /foo => 3 * /baz & 2 * /booz & /rw; /rw => /$/inet/7070; /baz => 3 * /$/inet/8080 & 2 * /$/inet/9090; /booz => ~",
        "/foo",
        "{/$/inet/7070@1,/$/inet/8080@3,/$/inet/9090@2}",
    );
    row(
        &interp,
        "/foo/bar => /bar/foo; /bar/foo => /foo/bar",
        "/foo/bar",
        "failed: Max recursion level: 100 reached in Namer lookup",
    );
    // The dtab shadows namers even for /#/ paths; an unmatched /#/ prefix is Neg.
    row(&interp, "/#/nope => /$/inet/1", "/#/nope/x", "{/$/inet/1}");
    row(&interp, "", "/#/nope/x", "none");
    // An unknown /$/ class fails, and an exception in an alternative stops the fallback.
    row(
        &interp,
        "",
        "/$/inet",
        "failed: Unknown namer: inet for path: /$/inet",
    );
    row(
        &interp,
        "/r => /$/nope/x | /$/inet/1",
        "/r",
        "failed: Unknown namer: nope for path: /$/nope/x",
    );
    // A failing union branch is ignored while another is Ok.
    row(
        &interp,
        "/r => /$/nope/x & /$/inet/1",
        "/r",
        "{/$/inet/1@1}",
    );
}

#[tokio::test]
async fn system_namer_rows() {
    let interp = interp_with(vec![]);
    let cases = [
        ("/$/inet/1234/foobar", "/$/inet/1234", "/foobar"),
        ("/$/inet/127.0.0.1/1234", "/$/inet/127.0.0.1/1234", "/"),
        ("/$/fixedinet/1234/foobar", "/$/fixedinet/1234", "/foobar"),
        ("/$/inet/1234/5678", "/$/inet/1234/5678", "/"),
        (
            "/$/io.buoyant.rinet/80/127.0.0.1/x",
            "/$/io.buoyant.rinet/80/127.0.0.1",
            "/x",
        ),
    ];
    for (path, id, residual) in cases {
        let (s, _) = interp
            .bind_settled(
                &Dtab::empty(),
                &Path::read(path).unwrap(),
                Duration::from_secs(5),
            )
            .await;
        let State::Ok(NameTree::Leaf(b)) = s else {
            panic!("{path}: {s:?}")
        };
        assert_eq!(
            (b.id.show(), b.residual.show()),
            (id.into(), residual.into()),
            "{path}"
        );
    }
    // Rewriters: lookup result shown as a tree of paths.
    let rw = [
        (
            "/$/io.buoyant.hostportPfx/pfx/host:8080/etc",
            "/pfx/host/8080/etc",
        ),
        (
            "/$/io.buoyant.hostportPfx/pfx/host:http/etc",
            "/pfx/host/http/etc",
        ),
        ("/$/io.buoyant.hostportPfx/pfx/a:b:c/etc", "~"),
        ("/$/io.buoyant.hostportPfx/pfx/host/etc", "~"),
        (
            "/$/io.buoyant.porthostPfx/pfx/host:8080/etc",
            "/pfx/8080/host/etc",
        ),
        ("/$/io.buoyant.http.anyMethod/GET/rest", "/rest"),
        ("/$/io.buoyant.http.anyMethod/get/rest", "~"),
        ("/$/io.buoyant.http.anyMethodPfx/pfx/POST/rest", "/pfx/rest"),
        ("/$/io.buoyant.http.anyHost/foo.com/rest", "/rest"),
        (
            "/$/io.buoyant.http.anyHostPfx/pfx/foo.com/rest",
            "/pfx/rest",
        ),
        (
            "/$/io.buoyant.http.subdomainOf/buoyant.io/foo.buoyant.io:8080/rest",
            "/foo/rest",
        ),
        (
            "/$/io.buoyant.http.subdomainOf/buoyant.io/buoyant.io/rest",
            "~",
        ),
        (
            "/$/io.buoyant.http.subdomainOfPfx/buoyant.io/pfx/foo.buoyant.io/rest",
            "/pfx/foo/rest",
        ),
        ("/$/io.buoyant.http.domainToPath/a.b.c/rest", "/c/b/a/rest"),
        (
            "/$/io.buoyant.http.domainToPathPfx/pfx/a.b.c/rest",
            "/pfx/c/b/a/rest",
        ),
        ("/$/io.buoyant.http.anyMethod", "~"),
        ("/$/fail/x", "!"),
        ("/$/nil/x", "$"),
        ("/not/system", "~"),
    ];
    let sys = switchboard_namer_core::system::SystemNamer::new();
    for (path, want) in rw {
        let got = match sys.lookup(&Path::read(path).unwrap()) {
            State::Ok(t) => t.show(),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "{path}");
    }
    let _ = interp;
}

#[tokio::test]
async fn namer_precedence_last_declared_first() {
    let a = Arc::new(TestNamer::default());
    let b = Arc::new(TestNamer::default());
    let interp = interp_with(vec![("/test", a.clone()), ("/test", b.clone())]);
    a.set_tree("/test/x", "/$/inet/1");
    b.set_tree("/test/x", "/$/inet/2");
    assert_eq!(snapshot(&interp, "", "/test/x"), "{/$/inet/2}");
    b.set_tree("/test/x", "~");
    assert_eq!(snapshot(&interp, "", "/test/x"), "{/$/inet/1}");
}

#[tokio::test]
async fn live_bind_follows_namer_changes() {
    let t = Arc::new(TestNamer::default());
    let interp = interp_with(vec![("/test", t.clone())]);
    let mut act = interp.bind(
        &Dtab::read("/svc => /test").unwrap(),
        &Path::read("/svc/a").unwrap(),
    );
    assert_eq!(eval_of(&act.get()), "pending");
    t.set_tree("/test/a", "/$/inet/1");
    tokio::time::timeout(Duration::from_secs(5), act.changed())
        .await
        .unwrap();
    assert_eq!(eval_of(&act.get()), "{/$/inet/1}");
    t.set_tree("/test/a", "~ | /$/inet/2");
    tokio::time::timeout(Duration::from_secs(5), act.changed())
        .await
        .unwrap();
    assert_eq!(eval_of(&act.get()), "{/$/inet/2}");
}

#[tokio::test]
async fn delegator_json_matches_linkerd() {
    let t: Arc<dyn Namer> = Arc::new(TestNamer::default());
    let interp = interp_with(vec![("/#/test", t), ("/#/error", Arc::new(ErrorNamer))]);
    let dtab = Dtab::read(
        "
    /beh => /#/error ;
    /bah/humbug => /$/inet/127.1/8080 ;
    /foo => /bah | /beh | /$/fail ;
    /foo => /bar ;
    /boo => /foo ;
    /meh => /heh ;",
    )
    .unwrap();
    let (s, settled) = interp
        .delegate_settled(
            &dtab,
            &Path::read("/boo/humbug").unwrap(),
            Duration::from_secs(5),
        )
        .await;
    assert!(settled);
    let State::Ok(tree) = s else { panic!("{s:?}") };
    let want = r#"{"type":"delegate","path":"/boo/humbug","delegate":{"type":"alt","path":"/foo/humbug","dentry":{"prefix":"/boo","dst":"/foo"},"alt":[{"type":"neg","path":"/bar/humbug","dentry":{"prefix":"/foo","dst":"/bar"}},{"type":"delegate","path":"/bah/humbug","dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{"type":"leaf","path":"/$/inet/127.1/8080","dentry":{"prefix":"/bah/humbug","dst":"/$/inet/127.1/8080"},"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},"id":"/$/inet/127.1/8080","path":"/"}}},{"type":"delegate","path":"/beh/humbug","dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{"type":"exception","path":"/#/error/humbug","dentry":{"prefix":"/beh","dst":"/#/error"},"message":"error naming /#/error/humbug"}},{"type":"fail","path":"/$/fail/humbug","dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"}}]}}"#;
    assert_eq!(delegate_json(&tree).to_string(), want);
}

#[tokio::test]
async fn delegate_rows() {
    let interp = interp_with(vec![]);
    async fn row(interp: &Arc<DefaultInterpreter>, dtab: &str, path: &str, want: &str) {
        let (s, _) = interp
            .delegate_settled(
                &Dtab::read(dtab).unwrap(),
                &Path::read(path).unwrap(),
                Duration::from_secs(5),
            )
            .await;
        let got = match s {
            State::Ok(t) => delegate_json(&t).to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "{dtab} / {path}");
    }
    row(&interp, "/yeezy => /yeezus", "/yeezy",
        r#"{"type":"delegate","path":"/yeezy","delegate":{"type":"neg","path":"/yeezus","dentry":{"prefix":"/yeezy","dst":"/yeezus"}}}"#).await;
    row(&interp, "/yeezy => /yeezus; /yeezy=>/bar", "/yeezy",
        r#"{"type":"alt","path":"/yeezy","alt":[{"type":"neg","path":"/bar","dentry":{"prefix":"/yeezy","dst":"/bar"}},{"type":"neg","path":"/yeezus","dentry":{"prefix":"/yeezy","dst":"/yeezus"}}]}"#).await;
    row(&interp, "/neg => ~", "/neg",
        r#"{"type":"delegate","path":"/neg","delegate":{"type":"neg","path":"~","dentry":{"prefix":"/neg","dst":"~"}}}"#).await;
    row(&interp, "/f => !", "/f",
        r#"{"type":"delegate","path":"/f","delegate":{"type":"fail","path":"!","dentry":{"prefix":"/f","dst":"!"}}}"#).await;
    row(&interp, "/e => $", "/e/x",
        r#"{"type":"delegate","path":"/e/x","delegate":{"type":"empty","path":"/e/x","dentry":{"prefix":"/e","dst":"$"}}}"#).await;
    row(&interp, "/u => 3 * /$/inet/127.0.0.1/1 & /$/inet/127.0.0.1/2", "/u",
        r#"{"type":"union","path":"/u","union":[{"weight":3.0,"tree":{"type":"leaf","path":"/$/inet/127.0.0.1/1","dentry":{"prefix":"/u","dst":"3.00*/$/inet/127.0.0.1/1 & /$/inet/127.0.0.1/2"},"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":1,"meta":{}}],"meta":{}},"id":"/$/inet/127.0.0.1/1","path":"/"}}},{"weight":1.0,"tree":{"type":"leaf","path":"/$/inet/127.0.0.1/2","dentry":{"prefix":"/u","dst":"3.00*/$/inet/127.0.0.1/1 & /$/inet/127.0.0.1/2"},"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":2,"meta":{}}],"meta":{}},"id":"/$/inet/127.0.0.1/2","path":"/"}}}]}"#).await;
    row(
        &interp,
        "/a => /b; /b => /a",
        "/a",
        "Failed(NamingError(\"Max recursion level reached.\"))",
    )
    .await;
}

#[tokio::test]
async fn bound_tree_json_shape() {
    let interp = interp_with(vec![]);
    let (s, _) = interp
        .bind_settled(
            &Dtab::read("/s => /$/inet/127.0.0.1/1 & 0.5 * /$/inet/127.0.0.1/2").unwrap(),
            &Path::read("/s/x").unwrap(),
            Duration::from_secs(5),
        )
        .await;
    let State::Ok(t) = s else { panic!() };
    assert_eq!(
        bound_tree_json(&t).to_string(),
        r#"{"type":"union","union":[{"weight":1.0,"tree":{"type":"leaf","bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":1,"meta":{}}],"meta":{"namer_nametree_weight":1.0}},"id":"/$/inet/127.0.0.1/1","path":"/x"}}},{"weight":0.5,"tree":{"type":"leaf","bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":2,"meta":{}}],"meta":{"namer_nametree_weight":0.5}},"id":"/$/inet/127.0.0.1/2","path":"/x"}}}]}"#
    );
    let (s, _) = interp
        .bind_settled(
            &Dtab::empty(),
            &Path::read("/nothing").unwrap(),
            Duration::from_secs(1),
        )
        .await;
    let State::Ok(t) = s else { panic!() };
    assert_eq!(bound_tree_json(&t).to_string(), r#"{"type":"neg"}"#);
}

#[test]
fn path_matcher_rows() {
    fn check(pattern: &str, path: &str, want: Option<&[(&str, &str)]>) {
        let got = PathMatcher::new(pattern)
            .unwrap()
            .extract(&Path::read(path).unwrap());
        let want = want.map(|v| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        assert_eq!(got, want, "{pattern} ~ {path}");
    }
    check("/foo/bar", "/foo/bar", Some(&[]));
    check("/foo/bar", "/foo/bar/bas", Some(&[]));
    check("/foo/bar", "/foo/goo", None);
    check("/foo/bar", "/foo", None);
    check("/foo/*/*", "/foo/hi/there", Some(&[]));
    check("/foo/{A}", "/foo/bar/bas", Some(&[("A", "bar")]));
    check(
        "/foo/bar/{A}:http",
        "/foo/bar/bas:http",
        Some(&[("A", "bas")]),
    );
    check(
        "/foo/{A}/*/{B}",
        "/foo/boo/bar/bas",
        Some(&[("A", "boo"), ("B", "bas")]),
    );
    check(
        "/foo/bar/{A}.com/{B}",
        "/foo/bar/foo.com/80",
        Some(&[("A", "foo"), ("B", "80")]),
    );
    check(
        "/foo/bar/{A}-{B}/{C}",
        "/foo/bar/foo-com/80",
        Some(&[("A", "foo"), ("B", "com"), ("C", "80")]),
    );
    check(
        "/foo/bar/{A}.{B}/{C}",
        "/foo/bar/foo.com/80",
        Some(&[("A", "foo"), ("B", "com"), ("C", "80")]),
    );
    check(
        "/foo/bar/{A}.{B}.{C}/{D}",
        "/foo/bar/www.foo.com/80",
        Some(&[("A", "www"), ("B", "foo"), ("C", "com"), ("D", "80")]),
    );
    check(
        "/foo/{A}/*/{B}:http",
        "/foo/boo/bar/bas:http",
        Some(&[("A", "boo"), ("B", "bas")]),
    );
    check(
        "/foo/bar/{A}-{B}",
        "/foo/bar/foo-bar-baz",
        Some(&[("A", "foo-bar"), ("B", "baz")]),
    );
    check("/foo/{A}/bar", "/foo/bar/bad", None);
    check("/foo/{A}:http", "/foo/bar/bas:http", None);
    check("/a/*", "/a", None);
    let m = PathMatcher::new("/foo/{A}/*/{B}").unwrap();
    assert_eq!(
        m.substitute(&Path::read("/foo/boo/bar/bas").unwrap(), "/{A}/and/{B}"),
        Some("/boo/and/bas".into())
    );
    assert_eq!(
        m.substitute(&Path::read("/goo/boo/bar/bas").unwrap(), "/{A}/and/{B}"),
        None
    );
}

#[test]
fn rewriting_namer_rows() {
    fn check(pattern: &str, name: &str, path: &str, want: &str) {
        let mut act = RewritingNamer::new(pattern, name)
            .unwrap()
            .lookup(&Path::read(path).unwrap());
        let got = match act.get() {
            State::Ok(t) => t.show(),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "{pattern} {name} {path}");
    }
    check("/one/two", "/success", "/one/two/three", "/success");
    check("/one/*/three", "/success", "/one/two/three", "/success");
    check("/one/*/four", "/success", "/one/two/three", "~");
    check(
        "/{foo}/*/three",
        "/success/{foo}",
        "/one/two/three",
        "/success/one",
    );
    check("/{foo}/*/four", "/success/{foo}", "/one/two/three", "~");
}
