//! Every config shipped in `config/` loads with no error and no warning (run from the repository
//! root, as the README's commands are), and the Linkerd 1 corpus in `../shared/compat/linkerd1`
//! is checked by the built binary: each file passes, or fails only with `not supported`
//! findings, except the few files that are invalid as published (named below with the reason).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_configs_load_cleanly() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let p = entry.unwrap().path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        std::env::set_current_dir(repo()).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let v = switchboard::config::source::parse(&text).unwrap();
        if switchboard::config::namerd::is_namerd(&v) {
            match switchboard::config::namerd::load(&text) {
                Ok((_, warnings)) => {
                    assert!(warnings.is_empty(), "{}: {warnings:?}", p.display())
                }
                Err(e) => panic!("{}:\n{e}", p.display()),
            }
            n += 1;
            continue;
        }
        match switchboard::config::load(&text) {
            Ok((_, warnings)) => assert!(warnings.is_empty(), "{}: {warnings:?}", p.display()),
            Err(e) => panic!("{}:\n{e}", p.display()),
        }
        n += 1;
    }
    assert!(n >= 1, "no configs found in config/");
}

/// Corpus files that are invalid as published, and the text their error must contain.
const INVALID_AS_PUBLISHED: &[(&str, &str)] = &[
    // A second top-level `telemetry:` with mis-indented children (the corpus's negative test).
    (
        "GloballogicPractices-LinkerdServiceMesh__linkerd.yml.yaml",
        "invalid YAML syntax: duplicate key `telemetry`",
    ),
    // A schematic doc example with `...` placeholders.
    (
        "linkerd__linkerd_docs_routers.md__block-1.yaml",
        "routers[0].servers: invalid type: string \"...\"",
    ),
    // Linkerd 1.0's h2 client shape (`prefix` and a `tls.kind`), invalid in 1.7.
    (
        "linkerd__linkerd_docs_protocol-h2.md__block-1.yaml",
        "routers[0].client (io.l5d.global).prefix: unknown field `prefix`",
    ),
    // A Helm template: `{{ .Release.Namespace }}` inside the dtab (plus Kubernetes kinds).
    (
        "helm-charts__stable_linkerd_templates_config.yaml__configmap-1.yaml",
        "routers[0].dtab: label char expected but '{' found",
    ),
];

/// How many corpus configs pass today; the README states this number. Raise it as kinds land.
const PASSING: usize = 58;

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SWITCHBOARD_COMPAT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/compat/linkerd1"));
    dir.is_dir().then_some(dir)
}

#[test]
fn linkerd1_corpus() {
    let Some(dir) = corpus_dir() else {
        eprintln!("linkerd1 corpus not found (set SWITCHBOARD_COMPAT_DIR); skipped");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 158, "corpus size");
    let mut passing = Vec::new();
    let mut problems = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("check")
            .arg(f)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        let known = INVALID_AS_PUBLISHED.iter().find(|(n, _)| *n == name);
        match (out.status.code(), known) {
            (Some(0), None) => {
                assert!(errors.is_empty(), "{name}: exit 0 with errors");
                passing.push(name);
            }
            (Some(1), Some((_, want))) => {
                if !errors.iter().any(|e| e.contains(want)) {
                    problems.push(format!("{name}: expected `{want}`, got:\n{stderr}"));
                }
            }
            (Some(1), None) => {
                if errors.is_empty() {
                    problems.push(format!("{name}: exit 1 without an error line"));
                }
                for e in &errors {
                    // Every finding names where it is: `error: FILE: LOCATION: message`.
                    let located = e.splitn(4, ": ").count() == 4;
                    if !e.contains("not supported") || !located {
                        problems.push(format!("{name}: {e}"));
                    }
                }
            }
            (code, _) => problems.push(format!("{name}: exit {code:?}\n{stderr}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!(
        "{} of {} Linkerd 1 configs pass",
        passing.len(),
        files.len()
    );
    assert_eq!(
        passing.len(),
        PASSING,
        "the passing count changed: update PASSING and the README"
    );
}
