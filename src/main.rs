//! The `switchboard` command line: config checking and the dtab tools (show, eval, lookup, bind,
//! delegate) an operator uses to see how a name resolves. Output goes to stdout; any parse or
//! resolution error goes to stderr with exit status 1. The proxy's data path is not here yet.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use switchboard::build;
use switchboard::config::{self, model::DEFAULT_BINDING_TIMEOUT_MS, Config};
use switchboard_namer_core::delegate::{bound_tree_json, delegate_json};
use switchboard_namer_core::{DefaultInterpreter, Dtab, NameTree, Path, State};

/// mimalloc: fewer cycles per allocation than glibc malloc on the request path (measured in
/// BENCHMARKS.md), and less fragmentation in a long-running process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A service-discovery-driven proxy that reads Linkerd 1.x configs",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Runs the proxy on this config (same as `switchboard run CONFIG`).
    config: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the proxy: every router and the admin server, until SIGTERM, SIGINT or
    /// `POST /admin/shutdown`.
    Run {
        /// Config file (YAML or JSON); `-` reads stdin.
        config: String,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Starts demo backends for the shipped config's disco directory, then the proxy on it.
    Demo {
        #[arg(long, default_value = "config/linkerd.yaml")]
        config: String,
    },
    /// Runs namerd on a namerd config (`interfaces`, `storage`, `namers`) until SIGTERM or
    /// SIGINT.
    Namerd {
        /// Config file (YAML or JSON); `-` reads stdin.
        config: String,
    },
    /// Validates configs (linker or namerd); prints every error and warning with its location.
    Check {
        /// Config files (YAML or JSON); `-` reads stdin.
        #[arg(required = true)]
        configs: Vec<String>,
    },
    /// Paths.
    Path {
        #[command(subcommand)]
        cmd: PathCmd,
    },
    /// Name trees.
    Tree {
        #[command(subcommand)]
        cmd: TreeCmd,
    },
    /// Dtabs: show, one-step lookup, full binding and delegation.
    Dtab {
        #[command(subcommand)]
        cmd: DtabCmd,
    },
}

#[derive(Subcommand)]
enum PathCmd {
    /// Prints the path in canonical form.
    Show { path: String },
}

#[derive(Subcommand)]
enum TreeCmd {
    /// Prints the tree in canonical form.
    Show {
        /// Simplify first (Finagle's `NameTree.simplified`).
        #[arg(long)]
        simplify: bool,
        tree: String,
    },
    /// Prints the evaluation: `null`, or a sorted JSON array of leaf paths.
    Eval { tree: String },
}

#[derive(Args, Clone)]
struct Resolve {
    /// A config whose namers are used and whose router's dtab comes first.
    #[arg(long)]
    config: Option<String>,
    /// The router whose dtab is used (default: the first router).
    #[arg(long)]
    router: Option<String>,
    /// A dtab appended after the router's, as a per-request `l5d-dtab` would be.
    #[arg(long)]
    dtab: Option<String>,
    /// How long to wait for the tree and its addresses to leave Pending, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_BINDING_TIMEOUT_MS)]
    timeout: u64,
    path: String,
}

#[derive(Subcommand)]
enum DtabCmd {
    /// Prints the dtab in canonical form.
    Show { dtab: String },
    /// Prints the one-step lookup of PATH in the dtab.
    Lookup {
        #[arg(long)]
        dtab: String,
        path: String,
    },
    /// Resolves PATH fully and prints the bound tree as namerd's `/api/1/bind` JSON.
    Bind(Resolve),
    /// Explains how PATH resolves, as `/delegator.json` renders it.
    Delegate(Resolve),
    /// Prints a namespace's dtab from namerd, one dentry per line (its version on stderr).
    Get(Remote),
    /// Writes a namespace's dtab to namerd from FILE (`-`: stdin), checked first; replaces only
    /// the version it read (or `--version`), creates the namespace if it does not exist.
    Put {
        #[command(flatten)]
        remote: Remote,
        file: String,
        /// Replace only this version (default: the one read just before).
        #[arg(long)]
        version: Option<String>,
    },
    /// Shows what putting FILE would change, dentry by dentry; exit 1 if anything.
    Diff {
        #[command(flatten)]
        remote: Remote,
        file: String,
    },
    /// Lists the versions namerd saw of a namespace, oldest first.
    History(Remote),
    /// Writes a version from the history back as the namespace's dtab.
    Rollback {
        #[command(flatten)]
        remote: Remote,
        version: String,
    },
}

#[derive(Args, Clone)]
struct Remote {
    /// namerd's HTTP controller, e.g. http://127.0.0.1:4180 (https:// for one with `tls`).
    #[arg(long)]
    namerd: String,
    namespace: String,
    /// With an https:// URL: the PEM file of the CAs that sign namerd's certificate (default:
    /// the system's roots).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// With an https:// URL: the client certificate to present (namerd with
    /// `requireClientAuth`).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The private key of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl Remote {
    /// TLS to namerd for an https:// URL: namerd's certificate must name the URL's host.
    fn tls(&self) -> anyhow::Result<Option<switchboard_namerd::net::ClientTls>> {
        let uri: hyper::Uri = self
            .namerd
            .parse()
            .with_context(|| format!("--namerd {}: not a URL", self.namerd))?;
        if uri.scheme_str() != Some("https") {
            if self.ca_cert.is_some() || self.client_cert.is_some() {
                bail!("--ca-cert and --client-cert need an https:// URL for --namerd");
            }
            return Ok(None);
        }
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("--namerd {}: no host", self.namerd))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let cfg = switchboard::config::model::ClientTls {
            common_name: Some(host.clone()),
            trust_certs_bundle: self.ca_cert.clone(),
            client_auth: match (&self.client_cert, &self.client_key) {
                (Some(c), Some(k)) => Some(switchboard::config::model::ClientAuth {
                    cert_path: c.clone(),
                    key_path: k.clone(),
                    intermediate_certs_path: None,
                }),
                _ => None,
            },
            ..Default::default()
        };
        let built = switchboard::transport::tls::ClientTlsConfig::build(
            &cfg,
            &[switchboard::transport::ALPN_HTTP11],
            &switchboard::metrics::Metrics::new().scope("cli"),
        )
        .map_err(|e| anyhow!("TLS to {}: {e}", self.namerd))?;
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| anyhow!("--namerd {}: `{host}`: {e}", self.namerd))?;
        Ok(Some(switchboard_namerd::net::ClientTls {
            config: built.rustls_config(),
            server_name,
        }))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let cmd = match (cli.cmd, cli.config) {
        (Some(c), _) => c,
        (None, Some(config)) => Cmd::Run {
            config,
            workers: None,
        },
        (None, None) => {
            eprintln!("usage: switchboard CONFIG, or switchboard <COMMAND>; see --help");
            return ExitCode::FAILURE;
        }
    };
    match run(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run { config, workers } => serve(&config, workers, false),
        Cmd::Demo { config } => serve(&config, None, true),
        Cmd::Namerd { config } => namerd(&config),
        Cmd::Check { configs } => Ok(check(&configs)),
        Cmd::Path {
            cmd: PathCmd::Show { path },
        } => {
            println!("{}", Path::read(&path)?.show());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tree { cmd } => {
            match cmd {
                TreeCmd::Show { simplify, tree } => {
                    let t = NameTree::read(&tree)?;
                    let t = if simplify { t.simplified() } else { t };
                    println!("{}", t.show());
                }
                TreeCmd::Eval { tree } => {
                    let out = match NameTree::read(&tree)?.eval() {
                        None => serde_json::Value::Null,
                        Some(set) => set.iter().map(|p| p.show()).collect(),
                    };
                    println!("{out}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Dtab { cmd } => {
            match cmd {
                DtabCmd::Show { dtab } => println!("{}", Dtab::read(&dtab)?.show()),
                DtabCmd::Lookup { dtab, path } => {
                    let t = Dtab::read(&dtab)?.lookup(&Path::read(&path)?);
                    println!("{}", t.show());
                }
                DtabCmd::Bind(r) => println!("{}", resolve(r, false)?),
                DtabCmd::Delegate(r) => println!("{}", resolve(r, true)?),
                remote => return remote_dtab(remote),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_config(name: &str) -> anyhow::Result<String> {
    if name == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the config from stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(name).with_context(|| format!("{name}: cannot read"))
    }
}

/// `switchboard run` and `switchboard demo`.
fn serve(name: &str, workers: Option<usize>, demo: bool) -> anyhow::Result<ExitCode> {
    let text = read_config(name)?;
    let (cfg, warnings, raw) =
        config::load_with_source(&text).map_err(|e| anyhow!("{name}: invalid config:\n{e}"))?;
    for w in &warnings {
        tracing::warn!("{name}: {w}");
    }
    // One worker runs on a current-thread runtime: no work-stealing machinery on the hot path.
    let mut rt = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt.enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        if demo {
            let disco = cfg
                .namers
                .iter()
                .find_map(|n| match &n.params {
                    config::plugins::NamerKind::Fs(p) => Some(p.root_dir.clone()),
                    _ => None,
                })
                .ok_or_else(|| anyhow!("{name}: the demo needs an io.l5d.fs namer"))?;
            let backends = switchboard::demo::start_backends(&disco).await?;
            for (svc, addr) in &backends {
                println!("demo backend {svc} on {addr}");
            }
        }
        let running = switchboard::run::start(cfg, raw).await?;
        for (label, addr) in &running.servers {
            println!("router {label} serving on {addr}");
        }
        println!("admin on http://{}/admin", running.admin);
        if demo {
            let addr = running
                .servers
                .first()
                .map(|(_, a)| a.to_string())
                .unwrap_or_default();
            println!();
            println!("Try:");
            println!("  curl -H 'Host: web' http://{addr}/");
            println!("  curl -H 'Host: www' http://{addr}/hello     # the dtab sends www to web");
            println!("  curl -H 'Host: api' http://{addr}/");
            println!("  curl -H 'Host: web' -H 'l5d-dtab: /svc/web=>/svc/api' http://{addr}/");
            println!("  curl http://{}/admin/metrics.json", running.admin);
            println!(
                "  curl -G --data-urlencode path=/svc/www --data-urlencode 'dtab=/svc=>/#/io.l5d.fs;/svc/www=>/svc/web' http://{}/delegator.json",
                running.admin
            );
            println!("Edit config/disco/web and the routing follows. Ctrl-C stops.");
        }
        let stop = running.shutdown_handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; draining");
            stop.trigger();
        });
        running.wait().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `switchboard check`: every error and warning of every config, exit 1 if any is invalid.
fn check(configs: &[String]) -> ExitCode {
    let mut ok = true;
    for name in configs {
        let text = match read_config(name) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                ok = false;
                continue;
            }
        };
        if config::source::parse(&text).is_ok_and(|v| config::namerd::is_namerd(&v)) {
            match config::namerd::load(&text) {
                Ok((cfg, warnings)) => {
                    for w in &warnings {
                        eprintln!("warning: {name}: {w}");
                    }
                    println!(
                        "{name}: ok (namerd: {} interface{}, {} namer{})",
                        cfg.interfaces.len(),
                        if cfg.interfaces.len() == 1 { "" } else { "s" },
                        cfg.namers.len(),
                        if cfg.namers.len() == 1 { "" } else { "s" },
                    );
                }
                Err(invalid) => {
                    ok = false;
                    for e in &invalid.diags.errors {
                        eprintln!("error: {name}: {e}");
                    }
                    for w in &invalid.diags.warnings {
                        eprintln!("warning: {name}: {w}");
                    }
                }
            }
            continue;
        }
        match config::load(&text) {
            Ok((cfg, warnings)) => {
                for w in &warnings {
                    eprintln!("warning: {name}: {w}");
                }
                println!(
                    "{name}: ok ({} router{}, {} namer{})",
                    cfg.routers.len(),
                    if cfg.routers.len() == 1 { "" } else { "s" },
                    cfg.namers.len(),
                    if cfg.namers.len() == 1 { "" } else { "s" },
                );
            }
            Err(invalid) => {
                ok = false;
                for e in &invalid.diags.errors {
                    eprintln!("error: {name}: {e}");
                }
                for w in &invalid.diags.warnings {
                    eprintln!("warning: {name}: {w}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `switchboard namerd`.
fn namerd(name: &str) -> anyhow::Result<ExitCode> {
    let text = read_config(name)?;
    let (cfg, warnings) =
        config::namerd::load(&text).map_err(|e| anyhow!("{name}: invalid namerd config:\n{e}"))?;
    for w in &warnings {
        tracing::warn!("{name}: {w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let running = switchboard::namerd::start(cfg).await?;
        for i in &running.interfaces {
            println!("namerd {} on {}", i.kind, i.url());
        }
        println!("namerd admin on {}/namespaces.json", running.admin.url());
        tokio::select! {
            _ = wait_for_signal() => tracing::info!("signal received; stopping"),
            _ = running.wait() => {}
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The dtab subcommands that talk to namerd.
fn remote_dtab(cmd: DtabCmd) -> anyhow::Result<ExitCode> {
    use switchboard_namerd::api::DTAB_MEDIA_TYPE;
    use switchboard_namerd::client::call;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let get = |r: &Remote| {
        let r = r.clone();
        async move {
            switchboard_namerd::store::check_namespace(&r.namespace).map_err(|e| anyhow!(e))?;
            let (status, etag, body) = call(
                &r.namerd,
                r.tls()?.as_ref(),
                hyper::Method::GET,
                &format!("/api/1/dtabs/{}", r.namespace),
                None,
                None,
            )
            .await
            .map_err(|e| anyhow!(e))?;
            match status {
                200 => {
                    let text = String::from_utf8_lossy(&body).to_string();
                    let d = Dtab::read(text.trim())
                        .map_err(|e| anyhow!("namerd sent a dtab that does not parse: {e}"))?;
                    Ok(Some((d, etag.unwrap_or_default())))
                }
                404 => Ok(None),
                s => bail!(
                    "namerd answered {s}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
            }
        }
    };
    let read_file = |file: &str| -> anyhow::Result<Dtab> {
        let text = read_config(file)?;
        Dtab::read(&text).map_err(|e| anyhow!("{file}: {e}"))
    };
    rt.block_on(async {
        match cmd {
            DtabCmd::Get(r) => match get(&r).await? {
                Some((d, etag)) => {
                    print!("{}", pretty_dtab(&d));
                    eprintln!("version {}", etag.trim_matches('"'));
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!("namespace {} does not exist", r.namespace),
            },
            DtabCmd::Diff { remote, file } => {
                let new = read_file(&file)?;
                let old = get(&remote).await?.map(|(d, _)| d).unwrap_or_default();
                let lines = dtab_diff(&old, &new);
                for l in &lines {
                    println!("{l}");
                }
                Ok(if lines.iter().any(|l| !l.starts_with(' ')) {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            DtabCmd::Put { remote, file, version } => {
                let new = read_file(&file)?;
                let current = get(&remote).await?;
                let (method, if_match) = match (&current, version) {
                    (_, Some(v)) => (hyper::Method::PUT, Some(format!("\"{}\"", v.trim_matches('"')))),
                    (Some((_, etag)), None) => (hyper::Method::PUT, Some(etag.clone())),
                    (None, None) => (hyper::Method::POST, None),
                };
                let (status, etag, body) = call(
                    &remote.namerd,
                    remote.tls()?.as_ref(),
                    method,
                    &format!("/api/1/dtabs/{}", remote.namespace),
                    if_match.as_deref(),
                    Some((DTAB_MEDIA_TYPE, new.show())),
                )
                .await
                .map_err(|e| anyhow!(e))?;
                match status {
                    204 => {
                        println!(
                            "namespace {} is at version {}",
                            remote.namespace,
                            etag.unwrap_or_default().trim_matches('"')
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    412 => bail!("namespace {} changed since it was read; nothing written (get or diff it again)", remote.namespace),
                    s => bail!("namerd answered {s}: {}", String::from_utf8_lossy(&body).trim()),
                }
            }
            DtabCmd::History(r) => {
                switchboard_namerd::store::check_namespace(&r.namespace).map_err(|e| anyhow!(e))?;
                let (status, _, body) = call(&r.namerd, r.tls()?.as_ref(), hyper::Method::GET, &format!("/api/1/history/{}", r.namespace), None, None)
                    .await
                    .map_err(|e| anyhow!(e))?;
                if status != 200 {
                    bail!("namerd answered {status}: {}", String::from_utf8_lossy(&body).trim());
                }
                let v: serde_json::Value = serde_json::from_slice(&body).context("namerd's history is not JSON")?;
                for e in v.as_array().into_iter().flatten() {
                    let at = e.get("at").and_then(|a| a.as_f64()).unwrap_or(0.0);
                    println!(
                        "{}\t{}\t{}\t{}",
                        e.get("version").and_then(|x| x.as_str()).unwrap_or("?"),
                        format_time(at),
                        e.get("change").and_then(|x| x.as_str()).unwrap_or("?"),
                        e.get("dtab").and_then(|x| x.as_str()).unwrap_or(""),
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            DtabCmd::Rollback { remote, version } => {
                let current = get(&remote).await?;
                let v = version.trim_matches('"');
                let (status, etag, body) = call(
                    &remote.namerd,
                    remote.tls()?.as_ref(),
                    hyper::Method::POST,
                    &format!("/api/1/rollback/{}?version={v}", remote.namespace),
                    current.as_ref().map(|(_, e)| e.as_str()),
                    None,
                )
                .await
                .map_err(|e| anyhow!(e))?;
                match status {
                    204 => {
                        println!(
                            "namespace {} rolled back to the dtab of version {v}; now at version {}",
                            remote.namespace,
                            etag.unwrap_or_default().trim_matches('"')
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    s => bail!("namerd answered {s}: {}", String::from_utf8_lossy(&body).trim()),
                }
            }
            _ => unreachable!("only the namerd subcommands come here"),
        }
    })
}

/// A dtab one dentry per line.
fn pretty_dtab(d: &Dtab) -> String {
    d.dentries.iter().map(|e| format!("{e};\n")).collect()
}

/// Dentry-by-dentry differences: ` ` kept, `-` removed, `+` added, in order (a longest common
/// subsequence; dtabs are short).
fn dtab_diff(old: &Dtab, new: &Dtab) -> Vec<String> {
    let a: Vec<String> = old.dentries.iter().map(|e| e.to_string()).collect();
    let b: Vec<String> = new.dentries.iter().map(|e| e.to_string()).collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        let mut out: Vec<String> = a
            .iter()
            .filter(|x| !b.contains(x))
            .map(|x| format!("- {x}"))
            .collect();
        out.extend(
            b.iter()
                .filter(|x| !a.contains(x))
                .map(|x| format!("+ {x}")),
        );
        return out;
    }
    let (n, m) = (a.len(), b.len());
    let mut l = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if a[i] == b[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || l[i][j + 1] >= l[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn format_time(secs: f64) -> String {
    let t = secs.max(0.0) as i64;
    let (days, rem) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Loads `--config` (if any) and picks the router: its dtab and the config's namers.
fn load_for_resolve(r: &Resolve) -> anyhow::Result<(Option<Config>, Dtab)> {
    let extra = match &r.dtab {
        Some(d) => Dtab::read(d)?,
        None => Dtab::empty(),
    };
    let Some(name) = &r.config else {
        if r.router.is_some() {
            bail!("--router needs --config");
        }
        return Ok((None, extra));
    };
    let text = read_config(name)?;
    let (cfg, _warnings) =
        config::load(&text).map_err(|e| anyhow!("{name}: invalid config:\n{e}"))?;
    let router = match &r.router {
        Some(label) => cfg
            .routers
            .iter()
            .find(|rt| &rt.label == label)
            .ok_or_else(|| {
                let labels: Vec<&str> = cfg.routers.iter().map(|r| r.label.as_str()).collect();
                anyhow!(
                    "no router labelled `{label}`; routers: {}",
                    labels.join(", ")
                )
            })?,
        None => cfg
            .routers
            .first()
            .ok_or_else(|| anyhow!("{name}: no routers"))?,
    };
    let dtab = router.dtab.concat(&extra);
    Ok((Some(cfg), dtab))
}

/// `dtab bind` and `dtab delegate`.
fn resolve(r: Resolve, delegate: bool) -> anyhow::Result<String> {
    let path = Path::read(&r.path)?;
    let (cfg, dtab) = load_for_resolve(&r)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let timeout = Duration::from_millis(r.timeout);
    rt.block_on(async move {
        let interp: Arc<DefaultInterpreter> = match &cfg {
            Some(c) => {
                let i = build::interpreter(c)?;
                // The chosen router's interpreter transformers apply, as they do when it runs.
                let chosen = match &r.router {
                    Some(l) => c.routers.iter().find(|rt| &rt.label == l),
                    None => c.routers.first(),
                };
                match chosen.map(|rt| &rt.interpreter) {
                    Some(config::plugins::InterpreterKind::Default(p))
                        if !p.transformers.is_empty() =>
                    {
                        i.with_transformers(
                            build::transformers(&p.transformers, Some(&i))
                                .map_err(|e| anyhow!("{e}"))?,
                        )
                    }
                    _ => i,
                }
            }
            None => DefaultInterpreter::new(Vec::new()),
        };
        if delegate {
            match interp.delegate_settled(&dtab, &path, timeout).await {
                (State::Ok(t), _) => Ok(delegate_json(&t).to_string()),
                (State::Failed(e), _) => Err(anyhow!("{e}")),
                (State::Pending, _) => Err(pending_error(timeout, &path)),
            }
        } else {
            match interp.bind_settled(&dtab, &path, timeout).await {
                (State::Ok(t), _) => Ok(bound_tree_json(&t).to_string()),
                (State::Failed(e), _) => Err(anyhow!("{e}")),
                (State::Pending, _) => Err(pending_error(timeout, &path)),
            }
        }
    })
}

/// Linkerd's binding-timeout text (`DynBoundTimeoutException`).
fn pending_error(timeout: Duration, path: &Path) -> anyhow::Error {
    anyhow!(
        "Exceeded {} binding timeout while resolving name: {}",
        switchboard::proxy::router::twitter_duration(timeout),
        path.show()
    )
}
