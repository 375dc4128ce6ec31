//! `switchboard demo`: small HTTP backends for every endpoint listed under the shipped config's
//! disco directory (each answers with its service name and port), then Switchboard itself on
//! that config. Editing a disco file re-routes live; a backend for a newly listed port is not
//! started (the demo shows the 502 Switchboard gives for it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path as FsPath;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::proxy::body::RespBody;

/// Starts one backend per endpoint line found under `disco` (loopback addresses only).
pub async fn start_backends(disco: &FsPath) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(disco)?.flatten().collect();
    files.sort_by_key(|e| e.file_name());
    for f in files {
        let name = f.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !f.path().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(f.path())?;
        let eps = switchboard_namer_fs::parse_endpoints(&name, &text)?;
        for ep in eps {
            if !ep.addr.ip().is_loopback() {
                continue;
            }
            let listener = match TcpListener::bind(ep.addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(addr = %ep.addr, error = %e, "demo backend not started");
                    continue;
                }
            };
            out.push((name.clone(), ep.addr));
            tokio::spawn(serve(listener, name.clone(), ep.addr));
        }
    }
    Ok(out)
}

/// A backend answering every request with who it is and what it was asked.
pub async fn serve(listener: TcpListener, name: String, addr: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let body = format!(
                    "Hello from {name} at {addr}: {} {}\n",
                    req.method(),
                    req.uri()
                );
                async move { Ok::<_, Infallible>(Response::new(RespBody::text(body))) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
