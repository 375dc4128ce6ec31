//! The linker's `io.l5d.mesh` interpreter: names are bound by namerd's mesh interface, one
//! `Interpreter/StreamBoundTree` per name and one `Resolver/StreamReplicas` per bound id (shared),
//! over one HTTP/2 connection (tonic's channel, kept alive with pings). It behaves as the HTTP
//! interpreter does (`crate::client`): the last trees and addresses stay while namerd is away,
//! the interpreter is marked stale, streams come back with jittered backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::PathAndQuery;
use serde_json::Value;
use switchboard_namer_core::{
    Activity, Addr, Bound, Dtab, NameTree, NamingError, Path, State, Updater, Var,
};
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use super::proto as pb;
use crate::client::{follow, release_addr, shared_addr, AddrCache, Ended, Progress, Stats};

/// Default `initialStreamWindowSizeKB` of the mesh client: Linkerd's documented value (its
/// 1.7 code uses 10240).
pub const DEFAULT_WINDOW_KB: u32 = 1024;
/// Default `retry.baseSeconds` of the mesh client, as Linkerd 1.7's code (`Retry(1, 600)`).
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// How long a delegation waits for its leaves' addresses (the admin page's own bound is 2 s).
pub const DELEGATE_SETTLE: Duration = Duration::from_secs(1);
/// Largest message accepted from namerd.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// `host:port` (from `dst: /$/inet/<host>/<port>`).
    pub authority: String,
    /// The namespace (`root: /<ns>`).
    pub namespace: String,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// HTTP/2 PING interval and how long to wait for its answer (`failureThreshold`).
    pub keep_alive: (Duration, Duration),
    pub initial_stream_window_kb: u32,
    /// TLS to namerd (`tls`); plaintext when absent.
    pub tls: Option<crate::net::ClientTls>,
}

struct Inner {
    cfg: MeshConfig,
    grpc: Grpc<Channel>,
    addrs: AddrCache,
    stats: Arc<Stats>,
}

#[derive(Clone)]
pub struct MeshInterpreter {
    inner: Arc<Inner>,
}

impl MeshInterpreter {
    /// Connects lazily: nothing is dialled before the first bind.
    pub fn new(cfg: MeshConfig) -> Result<MeshInterpreter, String> {
        let ep = Endpoint::from_shared(format!("http://{}", cfg.authority))
            .map_err(|e| format!("namerd at {}: {e}", cfg.authority))?
            .connect_timeout(crate::client::CONNECT_TIMEOUT)
            .http2_keep_alive_interval(cfg.keep_alive.0)
            .keep_alive_timeout(cfg.keep_alive.1)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(cfg.initial_stream_window_kb.saturating_mul(1024));
        // The connection is dialled by `Dialer` (TLS or not) at the endpoint's http:// URI;
        // requests name the scheme they really travel on (`:scheme https` over TLS).
        let ep = match &cfg.tls {
            Some(_) => ep.origin(
                format!("https://{}", cfg.authority)
                    .parse()
                    .map_err(|e| format!("namerd at {}: {e}", cfg.authority))?,
            ),
            None => ep,
        };
        let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(crate::client::CONNECT_TIMEOUT));
        let channel = ep.connect_with_connector_lazy(crate::net::Dialer::new(
            tcp,
            cfg.tls.as_ref(),
            "namerd",
        ));
        Ok(MeshInterpreter {
            inner: Arc::new(Inner {
                cfg,
                grpc: Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
                addrs: Mutex::new(HashMap::new()),
                stats: Arc::default(),
            }),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.inner.cfg.namespace
    }

    pub fn is_stale(&self) -> bool {
        self.inner.stats.is_stale()
    }

    pub fn state(&self) -> Value {
        self.inner
            .stats
            .json(&self.inner.cfg.authority, &self.inner.cfg.namespace)
    }

    pub fn stats(&self) -> Vec<(String, i64)> {
        self.inner.stats.gauges()
    }

    /// The namespace as the mesh API names it: a one-element path.
    fn root(&self) -> pb::PathPb {
        pb::path_pb(&Path::utf8([self.inner.cfg.namespace.as_str()]))
    }

    /// namerd's explanation of `path` under the namespace's dtab then `dtab`
    /// (`Delegator/GetDelegateTree`), rendered as `/delegator.json` renders a local one; each
    /// leaf's addresses are this interpreter's (shared with routing), waited for at most
    /// [`DELEGATE_SETTLE`] in all.
    pub async fn delegate(&self, dtab: &Dtab, path: &Path) -> Result<Value, String> {
        let req = pb::DelegateTreeReq {
            root: Some(self.root()),
            tree: Some(pb::path_tree_pb(&NameTree::Leaf(path.clone()))),
            dtab: Some(pb::dtab_pb(dtab)),
        };
        let mut grpc = self.inner.grpc.clone();
        let authority = &self.inner.cfg.authority;
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| format!("namerd at {authority}: {}", crate::net::error_chain(&e)))?;
            grpc.unary(
                tonic::Request::new(req),
                PathAndQuery::from_static("/io.linkerd.mesh.Delegator/GetDelegateTree"),
                tonic_prost::ProstCodec::<pb::DelegateTreeReq, pb::DelegateTreeRsp>::default(),
            )
            .await
            .map_err(|s| format!("namerd: {}", crate::net::error_chain(&s)))
        };
        let rsp = tokio::time::timeout(crate::client::CONNECT_TIMEOUT * 2, call)
            .await
            .map_err(|_| format!("namerd at {authority} did not answer in time"))??
            .into_inner();
        let tree = rsp.tree.ok_or("namerd answered without a tree")?;
        let mut addrs = Vec::new();
        let t = pb::delegate_of(&tree, &mut |id, residual| {
            let a = self.addr(&id);
            addrs.push(a.clone());
            Bound::new(id, residual, a)
        })?;
        let settle = async {
            for mut a in addrs {
                while matches!(a.get(), Addr::Pending) {
                    if !a.changed().await {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DELEGATE_SETTLE, settle).await;
        Ok(switchboard_namer_core::delegate::delegate_json(&t))
    }

    /// Binds `path` with `dtab` in namerd, live.
    pub fn bind(&self, dtab: &Dtab, path: &Path) -> Activity<NameTree<Bound>> {
        let (up, var) = Updater::new(State::Pending);
        let req = pb::BindReq {
            root: Some(self.root()),
            name: Some(pb::path_pb(path)),
            dtab: Some(pb::dtab_pb(dtab)),
        };
        let me = self.clone();
        let what = format!("StreamBoundTree {}", path.show());
        tokio::spawn(async move {
            let inner = &me.inner;
            let convert = |m: pb::BoundTreeRsp| -> Result<State<NameTree<Bound>>, String> {
                let t = m.tree.as_ref().ok_or("an answer without a tree")?;
                let t = pb::bound_tree_of(t)?;
                Ok(State::Ok(t.map(&mut |l: &crate::api::BoundLeaf| {
                    Bound::new(l.id.clone(), l.residual.clone(), me.addr(&l.id))
                })))
            };
            follow(
                &inner.stats,
                &inner.cfg.authority,
                (inner.cfg.retry_base, inner.cfg.retry_max),
                &what,
                &up,
                || true,
                |e| State::Failed(NamingError::new(format!("namerd: {e}"))),
                |mut p| {
                    let (req, up, convert) = (req.clone(), &up, &convert);
                    async move {
                        let e = inner
                            .stream(
                                req,
                                "/io.linkerd.mesh.Interpreter/StreamBoundTree",
                                up,
                                convert,
                                &mut p,
                            )
                            .await;
                        (p, e)
                    }
                },
            )
            .await;
        });
        var
    }

    fn addr(&self, id: &Path) -> Var<Addr> {
        shared_addr(&self.inner.addrs, id, |up| self.follow_addr(id, up))
    }

    fn follow_addr(&self, id: &Path, up: Arc<Updater<Addr>>) {
        let req = pb::ReplicasReq {
            id: Some(pb::path_pb(id)),
        };
        let what = format!("StreamReplicas {}", id.show());
        let me = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let inner = &me.inner;
            let convert = |m: pb::Replicas| pb::addr_of(&m);
            follow(
                &inner.stats,
                &inner.cfg.authority,
                (inner.cfg.retry_base, inner.cfg.retry_max),
                &what,
                &up,
                || release_addr(&inner.addrs, &id, &up),
                |e| Addr::Failed(format!("namerd: {e}")),
                |mut p| {
                    let (req, up, convert) = (req.clone(), &*up, &convert);
                    async move {
                        let e = inner
                            .stream(
                                req,
                                "/io.linkerd.mesh.Resolver/StreamReplicas",
                                up,
                                convert,
                                &mut p,
                            )
                            .await;
                        (p, e)
                    }
                },
            )
            .await;
        });
    }
}

impl Inner {
    async fn stream<Req, Rsp, T>(
        &self,
        req: Req,
        method: &'static str,
        up: &Updater<T>,
        convert: &impl Fn(Rsp) -> Result<T, String>,
        p: &mut Progress,
    ) -> Ended
    where
        Req: prost::Message + Send + Sync + 'static,
        Rsp: prost::Message + Default + Send + Sync + 'static,
        T: Clone + PartialEq,
    {
        let mut grpc = self.grpc.clone();
        if let Err(e) = grpc.ready().await {
            return Ended::Lost(format!(
                "namerd at {}: {}",
                self.cfg.authority,
                crate::net::error_chain(&e)
            ));
        }
        let codec = tonic_prost::ProstCodec::<Req, Rsp>::default();
        let resp = match tokio::time::timeout(
            crate::client::CONNECT_TIMEOUT * 2,
            grpc.server_streaming(
                tonic::Request::new(req),
                PathAndQuery::from_static(method),
                codec,
            ),
        )
        .await
        {
            Err(_) => {
                return Ended::Lost(format!(
                    "namerd at {} did not answer in time",
                    self.cfg.authority
                ))
            }
            Ok(Err(s)) => return status_end(s),
            Ok(Ok(r)) => r,
        };
        let mut stream = resp.into_inner();
        loop {
            match stream.message().await {
                Ok(Some(m)) => match convert(m) {
                    Ok(v) => {
                        let changed = up.set(v);
                        p.delivered(changed);
                    }
                    Err(e) => {
                        return Ended::Lost(format!(
                            "namerd sent an answer that does not read: {e}"
                        ))
                    }
                },
                Ok(None) => return Ended::Lost("namerd closed the stream".into()),
                Err(s) => return status_end(s),
            }
        }
    }
}

/// A status namerd chose about the request (a bad root or name) is an answer; everything else
/// is a loss: transport trouble (which tonic, without its server half, reports as Unknown), a
/// namerd that went away mid-stream, and namerd's own failures (Internal, as Linkerd's namerd
/// reports a binding failure).
fn status_end(s: tonic::Status) -> Ended {
    use tonic::Code;
    match s.code() {
        Code::InvalidArgument | Code::NotFound | Code::Unimplemented | Code::FailedPrecondition => {
            Ended::Error(format!("namerd: {}", s.message()))
        }
        _ => Ended::Lost(format!("namerd: {}", crate::net::error_chain(&s))),
    }
}
