//! The benchmark backend of `reference/performance.md`: a tiny server answering every request
//! with a fixed 2-byte body, on each port given, on one current-thread runtime. A port written
//! `h2:PORT` serves HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1; `IP:PORT` binds that
//! address instead of 127.0.0.1 (tests/per_host.rs runs it inside network namespaces).
//! `cargo run --release --example bench_backend -- 9001 9002 9003 h2:9004`

use std::convert::Infallible;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    let ports: Vec<(bool, std::net::SocketAddr)> = std::env::args()
        .skip(1)
        .map(|p| {
            let (h2, rest) = match p.strip_prefix("h2:") {
                Some(r) => (true, r.to_string()),
                None => (false, p.clone()),
            };
            let addr = match rest.parse::<u16>() {
                Ok(port) => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Err(_) => rest.parse()?,
            };
            Ok::<_, anyhow::Error>((h2, addr))
        })
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for (h2, addr) in ports {
            let l = TcpListener::bind(addr).await?;
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    tokio::spawn(async move {
                        let svc = service_fn(|_req| async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        });
                        if h2 {
                            let _ = http2::Builder::new(TokioExecutor::new())
                                .max_concurrent_streams(1000)
                                .serve_connection(TokioIo::new(s), svc)
                                .await;
                        } else {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(s), svc)
                                .await;
                        }
                    });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok::<_, anyhow::Error>(())
    })
}
