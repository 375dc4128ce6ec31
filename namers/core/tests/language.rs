//! Table-driven tests of the dtab language: parse, show, errors, simplify, eval, lookup.
//! Rows come from Finagle's own test suites (PathTest, NameTreeParsersTest, DtabTest,
//! NameTreeTest) and from the reference's section 2.

use switchboard_namer_core::{Dentry, Dtab, NameTree, Path, Prefix};

/// Parses `input` with `parse` and compares the shown result (or the error text) to `expected`.
fn check<T>(
    what: &str,
    parse: impl Fn(&str) -> Result<T, switchboard_namer_core::ParseError>,
    show: impl Fn(&T) -> String,
    rows: &[(&str, Result<&str, &str>)],
) {
    let mut failures = Vec::new();
    for (input, expected) in rows {
        let got = parse(input).map(|v| show(&v)).map_err(|e| e.to_string());
        let want = expected.map(str::to_string).map_err(str::to_string);
        if got != want {
            failures.push(format!("{what} {input:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn paths() {
    check(
        "path",
        Path::read,
        Path::show,
        &[
            ("/", Ok("/")),
            ("  /foo/bar  ", Ok("/foo/bar")),
            ("/foo/bar", Ok("/foo/bar")),
            ("/\\x66\\x6f\\x6F", Ok("/foo")),
            ("/#/io.l5d.fs/foo", Ok("/#/io.l5d.fs/foo")),
            ("/$/inet/127.0.0.1/8080", Ok("/$/inet/127.0.0.1/8080")),
            ("/a/\\x2a", Ok("/a/\\x2a")),
            ("/a\\x20b", Ok("/\\x61\\x20\\x62")),
            ("/foo # comment", Ok("/foo")),
            ("", Err("'/' expected but end of input found at '[]'")),
            (
                "/foo/bar/",
                Err("label char expected but end of input found at '/foo/bar/[]'"),
            ),
            ("/{}", Err("end of input expected but '{' found at '/[{]}'")),
            ("/\\?", Err("'x' expected but '?' found at '/\\[?]'")),
            ("/\\x?", Err("hex char expected but '?' found at '/\\x[?]'")),
            (
                "/\\x0?",
                Err("hex char expected but '?' found at '/\\x0[?]'"),
            ),
            (
                "/foo^bar",
                Err("end of input expected but '^' found at '/foo[^]bar'"),
            ),
            (
                "/foo//bar",
                Err("label char expected but '/' found at '/foo/[/]bar'"),
            ),
            ("//", Err("end of input expected but '/' found at '/[/]'")),
            (
                "/foo bar",
                Err("end of input expected but 'b' found at '/foo [b]ar'"),
            ),
            (
                "invalid-param",
                Err("'/' expected but 'i' found at '[i]nvalid-param'"),
            ),
            (
                "/foo\u{a0}",
                Err("end of input expected but '\u{a0}' found at '/foo[\u{a0}]'"),
            ),
        ],
    );
}

#[test]
fn trees() {
    check(
        "tree",
        NameTree::read,
        |t| t.show(),
        &[
            ("! | ~ | $", Ok("! | ~ | $")),
            ("/foo/bar", Ok("/foo/bar")),
            ("  /foo & /bar  ", Ok("/foo & /bar")),
            ("  /foo | /bar  ", Ok("/foo | /bar")),
            ("/foo & /bar | /bar & /baz", Ok("/foo & /bar | /bar & /baz")),
            (
                "1 * /foo & 2 * /bar | .5 * /bar & .5 * /baz",
                Ok("/foo & 2.00*/bar | 0.50*/bar & 0.50*/baz"),
            ),
            ("/a & /b | /c", Ok("/a & /b | /c")),
            ("(/a | /b) & /c", Ok("(/a | /b) & /c")),
            ("2 * /a & 0.5 * (/b | /c)", Ok("2.00*/a & 0.50*(/b | /c)")),
            ("1 * /a & 2.5 * /b", Ok("/a & 2.50*/b")),
            ("/a | (/b | /c)", Ok("/a | (/b | /c)")),
            ("/a & (/b & /c)", Ok("/a & (/b & /c)")),
            ("(/a & /b) | /c", Ok("/a & /b | /c")),
            ("/a | (/b & /c)", Ok("/a | /b & /c")),
            ("2 * /foo", Ok("/foo")),
            ("((/a))", Ok("/a")),
            ("0 * /a & /b", Ok("0.00*/a & /b")),
            ("0.125 * /a & /b", Ok("0.13*/a & /b")),
            ("1.005*/a & /b", Ok("1.01*/a & /b")),
            ("/a#c\n& /b", Ok("/a#c & /b")),
            ("/a #c\n& /b", Ok("/a & /b")),
            ("", Err("simple expected but end of input found at '[]'")),
            ("#", Err("simple expected but end of input found at '#[]'")),
            (
                "/foo &",
                Err("simple expected but end of input found at '/foo &[]'"),
            ),
            (
                "/foo & 0.1.2 * /bar",
                Err("number char expected but '.' found at '/foo & 0.1[.]2 * /bar'"),
            ),
            (
                "0.1.2 * /foo",
                Err("number char expected but '.' found at '0.1[.]2 * /foo'"),
            ),
            (
                "/foo & . * /bar",
                Err("weight expected but '.' found at '/foo & .[ ]* /bar'"),
            ),
            (
                "(/foo",
                Err("')' expected but end of input found at '(/foo[]'"),
            ),
            (
                "(/foo | /bar",
                Err("')' expected but end of input found at '(/foo | /bar[]'"),
            ),
            (
                "/foo)",
                Err("end of input expected but ')' found at '/foo[)]'"),
            ),
            ("()", Err("simple expected but ')' found at '([)]'")),
            ("1 /foo", Err("'*' expected but '/' found at '1 [/]foo'")),
            (
                "/foo |",
                Err("simple expected but end of input found at '/foo |[]'"),
            ),
            (
                "/foo | | /bar",
                Err("simple expected but '|' found at '/foo | [|] /bar'"),
            ),
            ("*", Err("simple expected but '*' found at '[*]'")),
            (
                "/foo/*",
                Err("label char expected but '*' found at '/foo/[*]'"),
            ),
        ],
    );
}

#[test]
fn dentries_and_prefixes() {
    check(
        "dentry",
        Dentry::read,
        Dentry::show,
        &[
            ("/=>!", Ok("/=>!")),
            ("/ => !", Ok("/=>!")),
            ("/foo/*/bar => !", Ok("/foo/*/bar=>!")),
            ("/foo/bar/baz => !", Ok("/foo/bar/baz=>!")),
            ("/* => /a", Ok("/*=>/a")),
            ("/a/\\x2a=>/b", Ok("/a/\\x2a=>/b")),
            (
                "/foo/*bar/baz => !",
                Err("'=' expected but 'b' found at '/foo/*[b]ar/baz => !'"),
            ),
            ("/&!", Err("'=' expected but '&' found at '/[&]!'")),
            (
                "/foo /bar",
                Err("'=' expected but '/' found at '/foo [/]bar'"),
            ),
            (
                "/foo = /bar",
                Err("'>' expected but ' ' found at '/foo =[ ]/bar'"),
            ),
            (
                "/foo",
                Err("'=' expected but end of input found at '/foo[]'"),
            ),
            (
                "/foo =>",
                Err("simple expected but end of input found at '/foo =>[]'"),
            ),
            (
                "foo=>/bar",
                Err("'/' expected but 'f' found at '[f]oo=>/bar'"),
            ),
            (
                "/** => /a",
                Err("'=' expected but '*' found at '/*[*] => /a'"),
            ),
        ],
    );
    check(
        "prefix",
        Prefix::read,
        |p| p.to_string(),
        &[
            ("/foo/*/bar", Ok("/foo/*/bar")),
            ("/", Ok("/")),
            (
                "/foo/*bar",
                Err("end of input expected but 'b' found at '/foo/*[b]ar'"),
            ),
            (
                "/*/",
                Err("label char expected but end of input found at '/*/[]'"),
            ),
        ],
    );
    assert_eq!(Dentry::nop().show(), "/\\x2f=>~");
}

#[test]
fn dtabs() {
    check(
        "dtab",
        Dtab::read,
        Dtab::show,
        &[
            ("", Ok("")),
            ("  /=>!  ", Ok("/=>!")),
            ("/=>!;", Ok("/=>!")),
            ("/=>!;/foo=>/bar", Ok("/=>!;/foo=>/bar")),
            ("/a/*/c => /d", Ok("/a/*/c=>/d")),
            ("\n /b => /c;\n /a => /b;\n ", Ok("/b=>/c;/a=>/b")),
            (
                "\n# a comment\n      /#foo => /biz  # another comment\n             | ( /bliz & # yet another comment\n                 /bluth ) # duh bluths\n             ; #finalmente\n      #/ignore=>/me;\n    ",
                Ok("/#foo=>/biz | /bliz & /bluth"),
            ),
            ("/svc => /#/io.l5d.fs;  /svc/foo => 3 * /a & /b", Ok("/svc=>/#/io.l5d.fs;/svc/foo=>3.00*/a & /b")),
            (";", Err("'/' expected but ';' found at '[;]'")),
            ("/a=>/b;;/c=>/d", Err("'/' expected but ';' found at '/a=>/b;[;]/c=>/d'")),
            ("/a=>/b /c=>/d", Err("end of input expected but '/' found at '/a=>/b [/]c=>/d'")),
            ("/a=>/b;/c", Err("'=' expected but end of input found at '/a=>/b;/c[]'")),
        ],
    );
}

#[test]
fn dtab_concat_and_strip() {
    let d1 = Dtab::read("/foo => /bar").unwrap();
    let d2 = Dtab::read("/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090").unwrap();
    assert_eq!(
        d1.concat(&d2),
        Dtab::read("\n /foo=>/bar;\n /foo=>/biz;\n /biz=>/$/inet/8080;\n /bar=>/$/inet/9090\n ")
            .unwrap()
    );
    assert_eq!(d1.concat(&Dtab::empty()), d1);
    let (d1, d2) = (
        Dtab::read("/foo=>/bar;/baz=>/xxx/yyy").unwrap(),
        Dtab::read("/foo=>/bar;/baz=>/xxx/yyy").unwrap(),
    );
    assert!(d1.strip_prefix(&d1).is_empty());
    assert!(d1.strip_prefix(&d2).is_empty());
    let extra = d1.concat(&Dtab::read("/foo => /123").unwrap());
    assert_eq!(extra.strip_prefix(&d1), Dtab::read("/foo=>/123").unwrap());
    let longer = d1.concat(&Dtab::read("/s => /b").unwrap());
    assert_eq!(d1.strip_prefix(&longer), d1);
    assert!(Dtab::empty().strip_prefix(&d1).is_empty());
    assert_eq!(
        Dtab::read("/a=>~;/b=>/c | ~").unwrap().simplified().show(),
        "/b=>/c"
    );
}

#[test]
fn simplify_and_eval() {
    fn check(tree: &str, simplified: &str, eval: Option<&[&str]>) {
        let t = NameTree::read(tree).unwrap();
        assert_eq!(t.simplified().show(), simplified, "simplified {tree}");
        let want = eval.map(|v| v.iter().map(|p| Path::read(p).unwrap()).collect());
        assert_eq!(t.eval(), want, "eval {tree}");
        assert_eq!(t.simplified().eval(), want, "simplified eval {tree}");
    }
    check("~", "~", None);
    check("/ok", "/ok", Some(&["/ok"]));
    check("/ok & /ok1", "/ok & /ok1", Some(&["/ok", "/ok1"]));
    check(
        "/ok & ~ & /blah & $",
        "/ok & /blah & $",
        Some(&["/ok", "/blah"]),
    );
    check("$ & $ & $", "$ & $ & $", Some(&[]));
    check("~ & ~ & (~ | ~)", "~", None);
    check("~ | /foo | /bar", "/foo | /bar", Some(&["/foo"]));
    check("~ | $ | /blah", "$ | /blah", Some(&[]));
    check("~ | (~ | $) | /blah", "$ | /blah", Some(&[]));
    check(
        "(~|$|/foo) & (/bar|/blah) & ~ & /FOO",
        "($ | /foo) & (/bar | /blah) & /FOO",
        Some(&["/bar", "/FOO"]),
    );
    check("! | /ok", "!", None);
    check("/ok & !", "/ok", Some(&["/ok"]));
    check("! & ! & !", "~", None);
    check("~ | /ok | !", "/ok | !", Some(&["/ok"]));
    check("/a | ! | /b", "/a | !", Some(&["/a"]));
}

#[test]
fn lookup() {
    fn check(dtab: &str, path: &str, expected: &str) {
        let d = Dtab::read(dtab).unwrap();
        let got = d.lookup(&Path::read(path).unwrap()).show();
        assert_eq!(got, expected, "{dtab} lookup {path}");
    }
    check("/a/*/c => /d", "/a/b/c/e/f", "/d/e/f");
    check(
        "/svc/* => /$/inet/127.1/8888",
        "/svc/foo",
        "/$/inet/127.1/8888",
    );
    check("/a=>/b;/a=>/c", "/a/x", "/c/x | /b/x");
    check("/=>/x", "/foo", "/x/foo");
    check("/a=>/b & /c", "/a/x", "/b/x & /c/x");
    check("/a=>~", "/a", "~");
    check("/a/b=>/c", "/a", "~");
    check("/a/b => /x; /a => /y", "/a/b/c", "/y/b/c | /x/c");
    check("/s => /t", "/s#/foo", "~");
    check("/svc => /#/io.l5d.fs", "/svc/web", "/#/io.l5d.fs/web");
    check("/Svc => /x", "/svc/web", "~");
}

#[test]
fn round_trip_random_trees() {
    // NameTreeTest: read(show(t)) == t for random trees with integer weights, depth 2.
    let mut seed: u64 = 0x5eed;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    fn gen(depth: u32, rnd: &mut impl FnMut(u64) -> u64) -> NameTree<Path> {
        use switchboard_namer_core::Weighted;
        let k = if depth == 0 { rnd(4) } else { rnd(6) };
        match k {
            0 => NameTree::Fail,
            1 => NameTree::Empty,
            2 => NameTree::Neg,
            3 => {
                let n = 1 + rnd(10);
                NameTree::Leaf(Path::utf8((0..n).map(|i| format!("w{}", rnd(100) + i))))
            }
            4 => NameTree::Union(
                (0..2 + rnd(2))
                    .map(|_| Weighted::new(rnd(10) as f64, gen(depth - 1, rnd)))
                    .collect(),
            ),
            _ => NameTree::Alt((0..2 + rnd(2)).map(|_| gen(depth - 1, rnd)).collect()),
        }
    }
    for _ in 0..300 {
        let t = gen(2, &mut rnd);
        assert_eq!(NameTree::read(&t.show()).unwrap(), t, "{}", t.show());
    }
}

#[test]
fn nesting_is_bounded() {
    let nested = |n: usize| format!("{}/b{}", "(".repeat(n), ")".repeat(n));
    assert_eq!(NameTree::read(&nested(50)).unwrap().show(), "/b");
    let deep = format!("/a=>{}", nested(200_000));
    let err = Dtab::read(&deep).unwrap_err().to_string();
    assert!(
        err.starts_with("parentheses nested deeper than 100"),
        "{err}"
    );
}
