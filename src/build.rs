//! Builds running naming objects from a checked config: one namer per `namers:` entry and the
//! default interpreter over them. Call it inside a tokio runtime (the fs namer starts its file
//! watch there). It never binds a socket.

use std::sync::Arc;

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
    let namer: Arc<dyn Namer> = match &n.params {
        NamerKind::Fs(p) => Arc::new(FsNamer::new(p.root_dir.clone(), n.prefix.clone())),
        NamerKind::Rewrite(p) => Arc::new(RewritingNamer::new(&p.pattern, &p.name).map_err(
            |e| BuildError {
                kind: n.kind,
                prefix: n.prefix.show(),
                message: e.to_string(),
            },
        )?),
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
