//! namerd's `io.l5d.mesh` interface: the gRPC services Linkerd 1.7 linkers speak
//! (`io.linkerd.mesh.Interpreter`, `Resolver`, `Delegator`, `Codec`), served over HTTP/2 with
//! gRPC's framing done here (a 5-byte prefix per message, status in trailers): the services are
//! a few unary and server-streaming calls, so a generated server would add more than it saves.
//! The `root` of a request is the namespace, as a one-element path.
//!
//! Bounds: a request message of at most [`MAX_REQUEST_BYTES`], compressed messages refused,
//! the controller's watch limit shared by the streams, and [`SETTLE_TIMEOUT`] for unary calls
//! to leave Pending.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use prost::Message;
use switchboard_namer_core::delegate::DelegateTree;
use switchboard_namer_core::{Addr, Bound, Dentry, Dtab, NameTree, Path, State, Var};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::proto::{self as pb};
use crate::controller::{settled, Controller, SETTLE_TIMEOUT};
use crate::net::{accept_loop, read_first, Acceptor};
use crate::store::check_namespace;

/// Paths in one `GetDelegateTree` name tree (as many as a bind may reach, `bind`'s leaf limit).
pub const MAX_DELEGATE_LEAVES: usize = 100;
/// Leaves of one delegation explained at once.
const DELEGATE_CONCURRENCY: usize = 8;
/// Largest delegation answer sent (a linker takes messages up to 4 MB).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The length of HTTP/2's connection preface (RFC 9113 section 3.4).
const PREFACE_BYTES: usize = 24;
/// Largest request message accepted.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Default port of `io.l5d.mesh`.
pub const DEFAULT_PORT: u16 = 4321;

type Body = BoxBody<Bytes, Infallible>;

/// gRPC status codes used here.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const NOT_FOUND: u32 = 5;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;

struct Status(u32, String);

/// Serves the mesh services on `listener`, each connection taken through `acceptor` (plain or
/// TLS), until dropped.
pub async fn serve(listener: TcpListener, acceptor: Acceptor, c: Arc<Controller>) {
    let max = crate::controller::MAX_CONNECTIONS;
    accept_loop(listener, acceptor, max, move |io, peer: SocketAddr| {
        let c = Arc::clone(&c);
        async move {
            // A connection that does not send the HTTP/2 preface in time is closed (hyper's
            // pings start only after the handshake).
            let Some(io) =
                read_first(io, PREFACE_BYTES, crate::controller::HEADER_READ_TIMEOUT).await
            else {
                return;
            };
            let peer = Peer {
                addr: peer,
                stalled: Arc::new(tokio::sync::Notify::new()),
            };
            let (stalled, addr) = (Arc::clone(&peer.stalled), peer.addr);
            let svc = hyper::service::service_fn(move |req| {
                let (c, peer) = (Arc::clone(&c), peer.clone());
                async move { Ok::<_, Infallible>(handle(c, req, peer).await) }
            });
            let conn =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .timer(hyper_util::rt::TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(10)))
                    .keep_alive_timeout(Duration::from_secs(20))
                    // Above the per-client watch limit: a linker puts every name on one connection.
                    .max_concurrent_streams((crate::controller::MAX_WATCHES_PER_PEER + 100) as u32)
                    .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
            // A stream its client stopped reading (its window full past WATCH_SEND_TIMEOUT)
            // closes the connection: hyper would hold that stream, and what is queued for it,
            // for as long as the connection lives.
            tokio::select! {
                _ = conn => {}
                _ = stalled.notified() => {
                    tracing::warn!(peer = %addr, "mesh client stopped reading a stream; connection closed");
                }
            }
        }
    })
    .await
}

/// Who a mesh connection is, and how its streams ask for it to be closed.
#[derive(Clone)]
struct Peer {
    addr: SocketAddr,
    stalled: Arc<tokio::sync::Notify>,
}

impl Peer {
    fn ip(&self) -> std::net::IpAddr {
        self.addr.ip()
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

fn frame(m: &impl Message) -> Bytes {
    let len = m.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(len as u32);
    m.encode(&mut b).ok();
    b.freeze()
}

fn trailers(st: &Status) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from(st.0));
    if !st.1.is_empty() {
        // Percent-encoded as gRPC requires for non-ASCII and `%`.
        let msg: String =
            st.1.bytes()
                .map(|b| {
                    if (0x20..0x7f).contains(&b) && b != b'%' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
        if let Ok(v) = HeaderValue::from_str(&msg) {
            h.insert("grpc-message", v);
        }
    }
    h
}

fn grpc_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    r
}

/// A trailers-only answer: the status in the head.
fn error(st: Status) -> Response<Body> {
    let mut r = grpc_response(Full::new(Bytes::new()).boxed());
    r.headers_mut().extend(trailers(&st));
    r
}

/// A refused streaming call: headers, then the status in a trailers frame (Linkerd's stream
/// decoder reads a status only from trailers).
fn stream_error(st: Status) -> Response<Body> {
    let frames = futures_util::stream::iter([Ok::<_, Infallible>(Frame::trailers(trailers(&st)))]);
    grpc_response(BodyExt::boxed(StreamBody::new(frames)))
}

fn unary(m: &impl Message) -> Response<Body> {
    let data = frame(m);
    let t = trailers(&Status(OK, String::new()));
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(data)),
        Ok(Frame::trailers(t)),
    ]);
    grpc_response(BodyExt::boxed(StreamBody::new(frames)))
}

async fn read_request<M: Message + Default>(req: Request<Incoming>) -> Result<M, Status> {
    let read = tokio::time::timeout(
        crate::controller::BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_REQUEST_BYTES + 5).collect(),
    );
    let body = read
        .await
        .map_err(|_| Status(INVALID_ARGUMENT, "the request was not sent in time".into()))?
        .map_err(|e| Status(RESOURCE_EXHAUSTED, format!("reading the request: {e}")))?
        .to_bytes();
    if body.len() < 5 {
        return Err(Status(INVALID_ARGUMENT, "no request message".into()));
    }
    if body[0] != 0 {
        return Err(Status(
            UNIMPLEMENTED,
            "compressed messages are not accepted".into(),
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(Status(
            INVALID_ARGUMENT,
            "the request is not one message".into(),
        ));
    }
    M::decode(&body[5..]).map_err(|e| {
        Status(
            INVALID_ARGUMENT,
            format!("the request does not decode: {e}"),
        )
    })
}

/// The namespace a request's `root` names.
fn namespace(root: &Option<pb::PathPb>) -> Result<String, Status> {
    let Some(root) = root else {
        return Err(Status(INVALID_ARGUMENT, "No namespace specified".into()));
    };
    let p = pb::path_of(root).map_err(|e| Status(INVALID_ARGUMENT, e))?;
    match (p.len(), p.elem_str(0)) {
        (1, Some(ns)) => {
            check_namespace(ns).map_err(|e| Status(INVALID_ARGUMENT, e))?;
            Ok(ns.to_string())
        }
        _ => Err(Status(
            INVALID_ARGUMENT,
            format!("Invalid root: `{}` must have exactly one segment", p.show()),
        )),
    }
}

fn dtab_of(d: &Option<pb::DtabPb>) -> Result<Dtab, Status> {
    match d {
        None => Ok(Dtab::empty()),
        Some(d) => {
            pb::dtab_of(d).map_err(|e| Status(INVALID_ARGUMENT, format!("invalid dtab: {e}")))
        }
    }
}

/// Streams `next(value)` for every change of `var` (skipping `None` and repeats) until the
/// client goes; an `Err` ends the stream with that status.
fn stream<T, M, F>(c: &Arc<Controller>, peer: Peer, mut var: Var<T>, mut next: F) -> Response<Body>
where
    T: Clone + Send + Sync + 'static,
    M: Message + PartialEq + Send + 'static,
    F: FnMut(&T) -> Option<Result<M, Status>> + Send + 'static,
{
    let Some(permit) = c.watch_permit(peer.ip()) else {
        return stream_error(Status(
            RESOURCE_EXHAUSTED,
            "too many watches are open".into(),
        ));
    };
    // Messages, then the trailers (boxed: the channel allocates its slots in blocks of 32, and a
    // `Frame` with its inline header map would make each stream's block 3 KB instead of 1 KB).
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, Box<HeaderMap>>>(16);
    tokio::spawn(async move {
        let _permit = permit;
        let mut last: Option<M> = None;
        let end = loop {
            let v = var.get();
            match next(&v) {
                None => {}
                Some(Ok(m)) if last.as_ref() == Some(&m) => {}
                Some(Ok(m)) => {
                    let sent = tokio::time::timeout(
                        crate::controller::WATCH_SEND_TIMEOUT,
                        tx.send(Ok(frame(&m))),
                    );
                    match sent.await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => {
                            peer.stalled.notify_one();
                            break None;
                        }
                    }
                    last = Some(m);
                }
                Some(Err(st)) => break Some(st),
            }
            tokio::select! {
                more = var.changed() => if !more { break Some(Status(OK, String::new())) },
                _ = tx.closed() => break None,
            }
        };
        if let Some(end) = end {
            let _ = tokio::time::timeout(
                crate::controller::WATCH_SEND_TIMEOUT,
                tx.send(Err(Box::new(trailers(&end)))),
            )
            .await;
        }
    });
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| {
            o.map(|m| {
                Ok::<_, Infallible>(match m {
                    Ok(data) => Frame::data(data),
                    Err(t) => Frame::trailers(*t),
                })
            })
        })
    }));
    grpc_response(BodyExt::boxed(body))
}

async fn handle(c: Arc<Controller>, req: Request<Incoming>, peer: Peer) -> Response<Body> {
    c.stats
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let res = match path.as_str() {
        "/io.linkerd.mesh.Interpreter/GetBoundTree" => bind(&c, req, peer, false).await,
        "/io.linkerd.mesh.Interpreter/StreamBoundTree" => bind(&c, req, peer, true).await,
        "/io.linkerd.mesh.Resolver/GetReplicas" => replicas(&c, req, peer, false).await,
        "/io.linkerd.mesh.Resolver/StreamReplicas" => replicas(&c, req, peer, true).await,
        "/io.linkerd.mesh.Delegator/GetDtab" => dtab(&c, req, peer, false).await,
        "/io.linkerd.mesh.Delegator/StreamDtab" => dtab(&c, req, peer, true).await,
        "/io.linkerd.mesh.Delegator/GetDelegateTree"
        | "/io.linkerd.mesh.Delegator/StreamDelegateTree" => delegate(&c, req).await,
        "/io.linkerd.mesh.Codec/ReadDtab" => codec(req, Codec::ReadDtab).await,
        "/io.linkerd.mesh.Codec/ShowDtab" => codec(req, Codec::ShowDtab).await,
        "/io.linkerd.mesh.Codec/ReadPath" => codec(req, Codec::ReadPath).await,
        "/io.linkerd.mesh.Codec/ShowPath" => codec(req, Codec::ShowPath).await,
        other => Err(Status(UNIMPLEMENTED, format!("no method {other}"))),
    };
    let streaming = path
        .rsplit('/')
        .next()
        .is_some_and(|m| m.starts_with("Stream"));
    res.unwrap_or_else(|st| {
        if streaming {
            stream_error(st)
        } else {
            error(st)
        }
    })
}

fn tree_rsp(s: &State<NameTree<Bound>>) -> Option<Result<pb::BoundTreeRsp, Status>> {
    match s {
        State::Pending => None,
        State::Ok(t) => Some(Ok(pb::BoundTreeRsp {
            tree: Some(pb::bound_tree_pb(t)),
        })),
        State::Failed(e) => Some(Err(Status(INTERNAL, e.message().to_string()))),
    }
}

async fn bind(
    c: &Arc<Controller>,
    req: Request<Incoming>,
    peer: Peer,
    watch: bool,
) -> Result<Response<Body>, Status> {
    let r: pb::BindReq = read_request(req).await?;
    let ns = namespace(&r.root)?;
    let name = match &r.name {
        Some(n) if !n.elems.is_empty() => {
            pb::path_of(n).map_err(|e| Status(INVALID_ARGUMENT, e))?
        }
        _ => return Err(Status(NOT_FOUND, "No name given".into())),
    };
    let local = dtab_of(&r.dtab)?;
    let tree = c
        .interp
        .bind_watched(&c.namespaces.dtab(&ns), &local, &name);
    if watch {
        // The linker (known by its address: mesh clients do not name themselves) is listed
        // with the namespace version each answer came from.
        let watching = c.namespaces.watching(&ns, &peer.to_string());
        let next = move |s: &State<NameTree<Bound>>| {
            let out = tree_rsp(s);
            if let Some(Ok(_)) = &out {
                watching.sent_current();
            }
            out
        };
        return Ok(stream(c, peer, tree, next));
    }
    match settled(tree, |s| !s.is_pending())
        .await
        .as_ref()
        .and_then(tree_rsp)
    {
        Some(Ok(m)) => Ok(unary(&m)),
        Some(Err(st)) => Err(st),
        None => Err(Status(
            UNAVAILABLE,
            format!("{} is still pending", name.show()),
        )),
    }
}

/// The address set of a bound id, bound through namerd's namers alone (as Linkerd's
/// Resolver does).
/// A bound id without the transformer prefix a transforming namer puts in front
/// (`/%/io.l5d.port/4141/#/io.l5d.fs/web` → `/#/io.l5d.fs/web`), as Linkerd's
/// `Paths.stripTransformerPrefix`: the addresses answered are the namer's, untransformed.
fn strip_transformer_prefix(id: &Path) -> Path {
    if id.elem_str(0) != Some("%") {
        return id.clone();
    }
    match (0..id.len()).find(|&i| matches!(id.elem_str(i), Some("#") | Some("$"))) {
        Some(i) => id.drop(i),
        None => id.clone(),
    }
}

fn id_addr(c: &Controller, id: &Path) -> Var<State<Addr>> {
    let id = &strip_transformer_prefix(id);
    let tree = c.interp.bind(&Dtab::empty(), id);
    let (up, var) = switchboard_namer_core::Updater::new(State::Pending);
    let shown = id.show();
    let mut t = tree;
    tokio::spawn(async move {
        loop {
            let s = t.get();
            let mut addr: Option<Var<Addr>> = None;
            let now = match &s {
                State::Pending => State::Pending,
                State::Failed(e) => State::Ok(Addr::Failed(e.message().to_string())),
                State::Ok(NameTree::Leaf(b)) => {
                    let mut a = b.addr.clone();
                    let v = a.get();
                    addr = Some(a);
                    State::Ok(v)
                }
                State::Ok(NameTree::Neg) => State::Ok(Addr::Neg),
                State::Ok(NameTree::Empty) => State::Ok(Addr::bound(Vec::new())),
                State::Ok(NameTree::Fail) => State::Ok(Addr::Failed("name tree failed".into())),
                State::Ok(_) => {
                    State::Ok(Addr::Failed(format!("{shown} is not a concrete bound id")))
                }
            };
            up.set(now);
            let tree_changed = async {
                if !t.changed().await {
                    std::future::pending::<()>().await
                }
            };
            let addr_changed = async {
                let changed = match &mut addr {
                    Some(a) => a.changed().await,
                    None => false,
                };
                if !changed {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = up.closed() => return,
                _ = tree_changed => {}
                _ = addr_changed => {}
            }
        }
    });
    var
}

async fn replicas(
    c: &Arc<Controller>,
    req: Request<Incoming>,
    peer: Peer,
    watch: bool,
) -> Result<Response<Body>, Status> {
    let r: pb::ReplicasReq = read_request(req).await?;
    let id = match &r.id {
        Some(p) if !p.elems.is_empty() => {
            pb::path_of(p).map_err(|e| Status(INVALID_ARGUMENT, e))?
        }
        _ => {
            return Ok(unary(&pb::replicas_pb(&Addr::Failed(
                "No ID provided".into(),
            ))));
        }
    };
    let addr = id_addr(c, &id);
    let to = |s: &State<Addr>| match s {
        State::Ok(a) => Some(Ok(pb::replicas_pb(a))),
        _ => Some(Ok(pb::replicas_pb(&Addr::Pending))),
    };
    if watch {
        return Ok(stream(c, peer, addr, to));
    }
    let done = |s: &State<Addr>| matches!(s, State::Ok(a) if !a.is_pending());
    let s = settled(addr, done).await.unwrap_or(State::Pending);
    match to(&s) {
        Some(Ok(m)) => Ok(unary(&m)),
        _ => Err(Status(INTERNAL, "no answer".into())),
    }
}

async fn dtab(
    c: &Arc<Controller>,
    req: Request<Incoming>,
    peer: Peer,
    watch: bool,
) -> Result<Response<Body>, Status> {
    let r: pb::DtabReq = read_request(req).await?;
    let ns = namespace(&r.root)?;
    let state = c.namespaces.state();
    let ns2 = ns.clone();
    let to = move |s: &crate::store::StoreState| -> Option<Result<pb::DtabRsp, Status>> {
        let m = s.namespaces.as_ref()?;
        Some(match m.get(&ns2) {
            None => Err(Status(NOT_FOUND, "Root not found".into())),
            Some(e) => match &e.dtab {
                Ok(d) => Ok(pb::DtabRsp {
                    dtab: Some(pb::VersionedDtab {
                        version: Some(pb::VersionPb {
                            id: e.version.to_string().into_bytes(),
                        }),
                        dtab: Some(pb::dtab_pb(d)),
                    }),
                }),
                Err(err) => Err(Status(INTERNAL, format!("namespace {ns2}: {err}"))),
            },
        })
    };
    if watch {
        let watching = c.namespaces.watching(&ns, &peer.to_string());
        let next = move |s: &crate::store::StoreState| {
            let out = to(s);
            if let Some(Ok(_)) = &out {
                watching.sent_current();
            }
            out
        };
        return Ok(stream(c, peer, state, next));
    }
    let s = settled(state, |s| s.namespaces.is_some())
        .await
        .ok_or_else(|| Status(UNAVAILABLE, "the dtab store has not been read yet".into()))?;
    match to(&s) {
        Some(Ok(m)) => Ok(unary(&m)),
        Some(Err(st)) => Err(st),
        None => Err(Status(
            UNAVAILABLE,
            "the dtab store has not been read yet".into(),
        )),
    }
}

async fn delegate(c: &Arc<Controller>, req: Request<Incoming>) -> Result<Response<Body>, Status> {
    let r: pb::DelegateTreeReq = read_request(req).await?;
    let ns = namespace(&r.root)?;
    let tree = match r.tree.as_ref().map(pb::path_tree_of) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return Err(Status(INVALID_ARGUMENT, e)),
        None => return Err(Status(NOT_FOUND, "No name given".into())),
    };
    let mut leaves = Vec::new();
    tree.for_each_leaf(&mut |p: &Path| leaves.push(p.clone()));
    if leaves.len() > MAX_DELEGATE_LEAVES {
        return Err(Status(
            INVALID_ARGUMENT,
            format!("a name tree with over {MAX_DELEGATE_LEAVES} leaves"),
        ));
    }
    let local = dtab_of(&r.dtab)?;
    let Some(State::Ok(base)) = settled(c.namespaces.dtab(&ns), |s| !s.is_pending()).await else {
        return Err(Status(
            UNAVAILABLE,
            "the namespace's dtab is not loaded".into(),
        ));
    };
    let dtab = base.concat(&local);
    // A few leaves at a time, all within one settle bound (as Linkerd, a tree of paths is
    // explained leaf by leaf under nop alt and union nodes, then simplified).
    use futures_util::StreamExt;
    let dtab = Arc::new(dtab);
    let explain = futures_util::stream::iter(leaves.clone())
        .map(|p| {
            let (interp, dtab) = (Arc::clone(&c.interp), Arc::clone(&dtab));
            async move { interp.delegate_settled(&dtab, &p, SETTLE_TIMEOUT).await }
        })
        .buffered(DELEGATE_CONCURRENCY)
        .collect::<Vec<_>>();
    let Ok(explained) = tokio::time::timeout(SETTLE_TIMEOUT, explain).await else {
        return Err(Status(UNAVAILABLE, "delegation is still pending".into()));
    };
    let mut each = Vec::with_capacity(explained.len());
    for (p, (state, _)) in leaves.iter().zip(explained) {
        each.push(match state {
            State::Ok(t) => t,
            State::Pending => {
                return Err(Status(UNAVAILABLE, "delegation is still pending".into()))
            }
            State::Failed(e) if leaves.len() == 1 => {
                return Err(Status(INTERNAL, e.message().to_string()))
            }
            State::Failed(e) => DelegateTree::Exception {
                path: p.clone(),
                dentry: Dentry::nop(),
                message: e.message().to_string(),
            },
        });
    }
    let mut each = each.into_iter();
    let t = delegate_tree_of(&tree, &mut each).simplified();
    let rsp = pb::DelegateTreeRsp {
        tree: Some(pb::delegate_pb(&t)),
    };
    if rsp.encoded_len() > MAX_RESPONSE_BYTES {
        return Err(Status(
            RESOURCE_EXHAUSTED,
            format!("the delegation is over {MAX_RESPONSE_BYTES} bytes"),
        ));
    }
    Ok(unary(&rsp))
}

/// The delegation of a tree of paths: its structure under nop nodes at the empty path, each
/// leaf replaced by its own delegation (taken in leaf order from `each`). Recursion follows
/// the request's tree, whose depth prost's decoding limit bounds.
fn delegate_tree_of(
    t: &NameTree<Path>,
    each: &mut impl Iterator<Item = DelegateTree<Bound>>,
) -> DelegateTree<Bound> {
    let (path, dentry) = (Path::empty(), Dentry::nop());
    match t {
        NameTree::Leaf(p) => each.next().unwrap_or(DelegateTree::Neg {
            path: p.clone(),
            dentry,
        }),
        NameTree::Neg => DelegateTree::Neg { path, dentry },
        NameTree::Fail => DelegateTree::Fail { path, dentry },
        NameTree::Empty => DelegateTree::Empty { path, dentry },
        NameTree::Alt(ts) => DelegateTree::Alt {
            path,
            dentry,
            trees: ts.iter().map(|t| delegate_tree_of(t, each)).collect(),
        },
        NameTree::Union(ws) => DelegateTree::Union {
            path,
            dentry,
            trees: ws
                .iter()
                .map(|w| (w.weight, delegate_tree_of(&w.tree, each)))
                .collect(),
        },
    }
}

enum Codec {
    ReadDtab,
    ShowDtab,
    ReadPath,
    ShowPath,
}

async fn codec(req: Request<Incoming>, which: Codec) -> Result<Response<Body>, Status> {
    let bad = |e: String| Status(INVALID_ARGUMENT, e);
    Ok(match which {
        Codec::ReadDtab => {
            let r: pb::TextPb = read_request(req).await?;
            let d = Dtab::read(r.text.as_deref().unwrap_or("")).map_err(|e| bad(e.to_string()))?;
            unary(&pb::DtabMsg {
                dtab: Some(pb::dtab_pb(&d)),
            })
        }
        Codec::ShowDtab => {
            let r: pb::DtabMsg = read_request(req).await?;
            let d = dtab_of(&r.dtab)?;
            unary(&pb::TextPb {
                text: Some(d.show()),
            })
        }
        Codec::ReadPath => {
            let r: pb::TextPb = read_request(req).await?;
            let p = Path::read(r.text.as_deref().unwrap_or("")).map_err(|e| bad(e.to_string()))?;
            unary(&pb::PathMsg {
                path: Some(pb::path_pb(&p)),
            })
        }
        Codec::ShowPath => {
            let r: pb::PathMsg = read_request(req).await?;
            let p = r
                .path
                .as_ref()
                .map(pb::path_of)
                .transpose()
                .map_err(bad)?
                .unwrap_or_default();
            unary(&pb::TextPb {
                text: Some(p.show()),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformer_prefixes_are_stripped_from_ids() {
        let check = |id: &str, want: &str| {
            assert_eq!(
                strip_transformer_prefix(&Path::read(id).unwrap()).show(),
                want,
                "{id}"
            )
        };
        check("/%/io.l5d.port/4141/#/io.l5d.fs/web", "/#/io.l5d.fs/web");
        check(
            "/%/io.l5d.localhost/$/inet/127.0.0.1/1",
            "/$/inet/127.0.0.1/1",
        );
        check("/#/io.l5d.fs/web", "/#/io.l5d.fs/web");
        check("/%/odd", "/%/odd");
    }
}
