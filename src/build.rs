//! Builds running naming objects from a checked config: one namer per `namers:` entry and the
//! default interpreter over them. Call it inside a tokio runtime (the fs namer starts its file
//! watch there). It never binds a socket.

use std::sync::Arc;
use std::time::Duration;

use switchboard_namer_core::interpreter::{ConfiguredNamer, DefaultInterpreter};
use switchboard_namer_core::rewrite::RewritingNamer;
use switchboard_namer_core::Namer;
use switchboard_namer_fs::FsNamer;

use crate::config::plugins::NamerKind;
use crate::config::{Config, NamerConfig};

/// A namer could not be built from its (checked) config.
#[derive(Debug, thiserror::Error)]
#[error("namer {prefix} ({kind}): {message}")]
pub struct BuildError {
    pub kind: &'static str,
    pub prefix: String,
    pub message: String,
}

/// Builds one configured namer.
pub fn namer(n: &NamerConfig) -> Result<ConfiguredNamer, BuildError> {
    let fail = |message: String| BuildError {
        kind: n.kind,
        prefix: n.prefix.show(),
        message,
    };
    let namer: Arc<dyn Namer> = match &n.params {
        NamerKind::Fs(p) => Arc::new(FsNamer::new(p.root_dir.clone(), n.prefix.clone())),
        NamerKind::Rewrite(p) => {
            Arc::new(RewritingNamer::new(&p.pattern, &p.name).map_err(|e| fail(e.to_string()))?)
        }
        NamerKind::DnsSrv(p) => {
            let hosts = p
                .dns_hosts
                .iter()
                .map(|h| switchboard_namer_dnssrv::parse_dns_host(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let refresh = Duration::from_secs(
                p.refresh_interval_seconds
                    .unwrap_or(crate::config::plugins::DEFAULT_DNSSRV_REFRESH_SECS),
            );
            Arc::new(
                switchboard_namer_dnssrv::DnsSrvNamer::new(hosts, refresh, n.prefix.clone())
                    .map_err(fail)?,
            )
        }
        NamerKind::Etcd(p) => Arc::new(switchboard_namer_etcd::EtcdNamer::new(
            p.endpoints.clone(),
            p.path_prefix
                .as_deref()
                .unwrap_or(switchboard_namer_etcd::DEFAULT_PATH_PREFIX),
            n.prefix.clone(),
        )),
    };
    Ok(ConfiguredNamer {
        prefix: n.prefix.clone(),
        namer,
    })
}

/// The default interpreter over every configured namer, in declaration order.
pub fn interpreter(cfg: &Config) -> Result<Arc<DefaultInterpreter>, BuildError> {
    let namers = cfg
        .namers
        .iter()
        .map(namer)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DefaultInterpreter::new(namers))
}
