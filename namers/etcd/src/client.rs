//! A thin etcd v3 client over gRPC: the KV (range, put, delete, txn), Watch and Lease calls
//! Switchboard uses, on tonic with prost messages. It does not cover auth, cluster, maintenance
//! or election calls, and it does not retry: callers own their retry and backoff policy.
//!
//! Why not the `etcd-client` crate: it generates its gRPC code from etcd's `.proto` files at
//! build time with `prost-build`, which needs a system `protoc`, so the proxy would not build
//! on a machine that has only a Rust toolchain. The messages here are declared with prost's
//! derive macros, field by field from etcd's `api/etcdserverpb/rpc.proto` and
//! `api/mvccpb/kv.proto` (only the messages and fields used; unknown fields in answers are
//! skipped by protobuf's rules), so the build generates nothing and needs no `protoc`. The wire
//! format is checked against a real etcd by the namer's tests.

use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

/// The protobuf messages of etcd's v3 API, as in `rpc.proto` and `kv.proto` (same names, same
/// tags; proto enums are carried as their `i32` values).
pub mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        #[prost(int64, tag = "3")]
        pub revision: i64,
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(int64, tag = "2")]
        pub create_revision: i64,
        #[prost(int64, tag = "3")]
        pub mod_revision: i64,
        #[prost(int64, tag = "4")]
        pub version: i64,
        #[prost(bytes = "vec", tag = "5")]
        pub value: Vec<u8>,
        #[prost(int64, tag = "6")]
        pub lease: i64,
    }

    /// `mvccpb.Event.EventType.PUT`.
    pub const EVENT_PUT: i32 = 0;
    /// `mvccpb.Event.EventType.DELETE`.
    pub const EVENT_DELETE: i32 = 1;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(message, optional, tag = "2")]
        pub kv: Option<KeyValue>,
        #[prost(message, optional, tag = "3")]
        pub prev_kv: Option<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
        #[prost(int64, tag = "3")]
        pub limit: i64,
        #[prost(int64, tag = "4")]
        pub revision: i64,
        #[prost(bool, tag = "7")]
        pub serializable: bool,
        #[prost(bool, tag = "8")]
        pub keys_only: bool,
        #[prost(bool, tag = "9")]
        pub count_only: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(message, repeated, tag = "2")]
        pub kvs: Vec<KeyValue>,
        #[prost(bool, tag = "3")]
        pub more: bool,
        #[prost(int64, tag = "4")]
        pub count: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
        #[prost(int64, tag = "3")]
        pub lease: i64,
        #[prost(bool, tag = "4")]
        pub prev_kv: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(message, optional, tag = "2")]
        pub prev_kv: Option<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteRangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
        #[prost(bool, tag = "3")]
        pub prev_kv: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteRangeResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub deleted: i64,
    }

    /// `Compare.CompareResult`.
    pub const COMPARE_EQUAL: i32 = 0;
    pub const COMPARE_GREATER: i32 = 1;
    pub const COMPARE_LESS: i32 = 2;
    pub const COMPARE_NOT_EQUAL: i32 = 3;
    /// `Compare.CompareTarget`.
    pub const TARGET_VERSION: i32 = 0;
    pub const TARGET_CREATE: i32 = 1;
    pub const TARGET_MOD: i32 = 2;
    pub const TARGET_VALUE: i32 = 3;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Compare {
        #[prost(int32, tag = "1")]
        pub result: i32,
        #[prost(int32, tag = "2")]
        pub target: i32,
        #[prost(bytes = "vec", tag = "3")]
        pub key: Vec<u8>,
        #[prost(oneof = "compare::TargetUnion", tags = "4, 5, 6, 7")]
        pub target_union: Option<compare::TargetUnion>,
    }

    pub mod compare {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum TargetUnion {
            #[prost(int64, tag = "4")]
            Version(i64),
            #[prost(int64, tag = "5")]
            CreateRevision(i64),
            #[prost(int64, tag = "6")]
            ModRevision(i64),
            #[prost(bytes, tag = "7")]
            Value(Vec<u8>),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RequestOp {
        #[prost(oneof = "request_op::Request", tags = "1, 2, 3")]
        pub request: Option<request_op::Request>,
    }

    pub mod request_op {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Request {
            #[prost(message, tag = "1")]
            RequestRange(super::RangeRequest),
            #[prost(message, tag = "2")]
            RequestPut(super::PutRequest),
            #[prost(message, tag = "3")]
            RequestDeleteRange(super::DeleteRangeRequest),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseOp {
        #[prost(oneof = "response_op::Response", tags = "1, 2, 3")]
        pub response: Option<response_op::Response>,
    }

    pub mod response_op {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Response {
            #[prost(message, tag = "1")]
            ResponseRange(super::RangeResponse),
            #[prost(message, tag = "2")]
            ResponsePut(super::PutResponse),
            #[prost(message, tag = "3")]
            ResponseDeleteRange(super::DeleteRangeResponse),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxnRequest {
        #[prost(message, repeated, tag = "1")]
        pub compare: Vec<Compare>,
        #[prost(message, repeated, tag = "2")]
        pub success: Vec<RequestOp>,
        #[prost(message, repeated, tag = "3")]
        pub failure: Vec<RequestOp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxnResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(bool, tag = "2")]
        pub succeeded: bool,
        #[prost(message, repeated, tag = "3")]
        pub responses: Vec<ResponseOp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchCreateRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
        #[prost(int64, tag = "3")]
        pub start_revision: i64,
        #[prost(bool, tag = "4")]
        pub progress_notify: bool,
        #[prost(bool, tag = "6")]
        pub prev_kv: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchCancelRequest {
        #[prost(int64, tag = "1")]
        pub watch_id: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchProgressRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchRequest {
        #[prost(oneof = "watch_request::RequestUnion", tags = "1, 2, 3")]
        pub request_union: Option<watch_request::RequestUnion>,
    }

    pub mod watch_request {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum RequestUnion {
            #[prost(message, tag = "1")]
            CreateRequest(super::WatchCreateRequest),
            #[prost(message, tag = "2")]
            CancelRequest(super::WatchCancelRequest),
            #[prost(message, tag = "3")]
            ProgressRequest(super::WatchProgressRequest),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub watch_id: i64,
        #[prost(bool, tag = "3")]
        pub created: bool,
        #[prost(bool, tag = "4")]
        pub canceled: bool,
        #[prost(int64, tag = "5")]
        pub compact_revision: i64,
        #[prost(string, tag = "6")]
        pub cancel_reason: String,
        #[prost(bool, tag = "7")]
        pub fragment: bool,
        #[prost(message, repeated, tag = "11")]
        pub events: Vec<Event>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CompactionRequest {
        #[prost(int64, tag = "1")]
        pub revision: i64,
        #[prost(bool, tag = "2")]
        pub physical: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CompactionResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseGrantRequest {
        #[prost(int64, tag = "1")]
        pub ttl: i64,
        #[prost(int64, tag = "2")]
        pub id: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseGrantResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub id: i64,
        #[prost(int64, tag = "3")]
        pub ttl: i64,
        #[prost(string, tag = "4")]
        pub error: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseRevokeRequest {
        #[prost(int64, tag = "1")]
        pub id: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseRevokeResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }
}

/// An etcd call that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid etcd endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("no etcd endpoint configured")]
    NoEndpoint,
    #[error("etcd endpoint {endpoint} is plaintext (http://) but TLS is configured")]
    Plaintext { endpoint: String },
    #[error("cannot connect to etcd at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("etcd {call}: {message}")]
    Unavailable { call: &'static str, message: String },
    #[error("etcd {call}: {source}")]
    Status {
        call: &'static str,
        #[source]
        source: tonic::Status,
    },
}

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval and how long to wait for its answer (dead-peer detection).
    pub keep_alive: Option<(Duration, Duration)>,
    /// TLS to etcd (`https://`); `None`: plaintext.
    pub tls: Option<Tls>,
}

/// TLS to etcd, as PEM: the CA that signs etcd's certificate, an optional client certificate
/// and key (etcd's `--client-cert-auth`), and the name to expect (default: the endpoint host).
#[derive(Clone, Debug, Default)]
pub struct Tls {
    pub ca_pem: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    pub domain: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            keep_alive: Some((Duration::from_secs(5), Duration::from_secs(3))),
            tls: None,
        }
    }
}

/// A connected etcd client (cheap to clone; clones share one HTTP/2 channel).
#[derive(Clone)]
pub struct Client {
    grpc: Grpc<Channel>,
}

/// Sends requests on an open watch stream. Unbounded on purpose: the one task that sends
/// creates and cancels is also the one that reads the answers, so a bounded queue could stop it
/// while etcd waits for it to read (one create per watched service; a few hundred bytes each).
#[derive(Clone)]
pub struct WatchSender {
    tx: tokio::sync::mpsc::UnboundedSender<pb::WatchRequest>,
}

impl WatchSender {
    /// Adds a watcher on the stream.
    pub async fn create(&self, req: pb::WatchCreateRequest) -> Result<(), Error> {
        self.send(pb::watch_request::RequestUnion::CreateRequest(req))
            .await
    }

    /// Cancels watcher `watch_id`.
    pub async fn cancel(&self, watch_id: i64) -> Result<(), Error> {
        self.send(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id },
        ))
        .await
    }

    async fn send(&self, r: pb::watch_request::RequestUnion) -> Result<(), Error> {
        self.tx
            .send(pb::WatchRequest {
                request_union: Some(r),
            })
            .map_err(|_| Error::Unavailable {
                call: "Watch",
                message: "the watch stream is closed".into(),
            })
    }
}

/// Bound on one unary call (range, put, txn, lease...): an etcd that accepts and never
/// answers must not hold its caller (the namer's listing, a test) forever.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest answer read from etcd (tonic's default is 4 MB; listing a large prefix can pass it).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The answers of an open watch stream.
pub type WatchStream = tonic::Streaming<pb::WatchResponse>;

/// The key just past every key that starts with `prefix` (etcd's `range_end` for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte is 0xff (or the prefix is empty): the range runs to the end of the keyspace.
    vec![0]
}

fn endpoint(e: &str, opts: &ConnectOptions) -> Result<Endpoint, Error> {
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    if opts.tls.is_some() && e.starts_with("http://") {
        // Never plaintext when TLS was asked for.
        return Err(Error::Plaintext {
            endpoint: e.to_string(),
        });
    }
    let uri = if e.contains("://") {
        e.to_string()
    } else {
        format!("{scheme}://{e}")
    };
    let mut ep = Endpoint::from_shared(uri).map_err(|source| Error::Endpoint {
        endpoint: e.to_string(),
        source,
    })?;
    if let Some(t) = &opts.tls {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.ca_pem));
        if let Some((cert, key)) = &t.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = &t.domain {
            c = c.domain_name(d.clone());
        }
        ep = ep.tls_config(c).map_err(|source| Error::Endpoint {
            endpoint: e.to_string(),
            source,
        })?;
    }
    ep = ep.connect_timeout(opts.connect_timeout).tcp_nodelay(true);
    if let Some((interval, timeout)) = opts.keep_alive {
        ep = ep
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
    }
    Ok(ep)
}

impl Client {
    /// Connects to the cluster at `endpoints` (`host:port` or `http://host:port`). With one
    /// endpoint the connection is made now (and its failure returned); with several, calls are
    /// balanced over them and connections are made as needed.
    pub async fn connect<E: AsRef<str>>(
        endpoints: &[E],
        opts: &ConnectOptions,
    ) -> Result<Client, Error> {
        let eps = endpoints
            .iter()
            .map(|e| endpoint(e.as_ref(), opts))
            .collect::<Result<Vec<_>, _>>()?;
        let channel = match eps.len() {
            0 => return Err(Error::NoEndpoint),
            1 => eps[0].connect().await.map_err(|source| Error::Connect {
                endpoint: endpoints[0].as_ref().to_string(),
                source,
            })?,
            _ => Channel::balance_list(eps.into_iter()),
        };
        Ok(Client {
            grpc: Grpc::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES),
        })
    }

    async fn ready(&mut self, call: &'static str) -> Result<(), Error> {
        self.grpc.ready().await.map_err(|e| Error::Unavailable {
            call,
            message: e.to_string(),
        })
    }

    async fn unary<Req, Resp>(
        &mut self,
        call: &'static str,
        path: &'static str,
        req: Req,
    ) -> Result<Resp, Error>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let timed_out = || Error::Unavailable {
            call,
            message: format!("no answer within {CALL_TIMEOUT:?}"),
        };
        let send = async {
            self.ready(call).await?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            self.grpc
                .unary(
                    tonic::Request::new(req),
                    PathAndQuery::from_static(path),
                    codec,
                )
                .await
                .map_err(|source| Error::Status { call, source })
        };
        let resp = tokio::time::timeout(CALL_TIMEOUT, send)
            .await
            .map_err(|_| timed_out())??;
        Ok(resp.into_inner())
    }

    /// `KV.Range`.
    pub async fn range(&mut self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Error> {
        self.unary("Range", "/etcdserverpb.KV/Range", req).await
    }

    /// Every key under `prefix` (every key, for an empty prefix), at one revision.
    pub async fn get_prefix(&mut self, prefix: &[u8]) -> Result<pb::RangeResponse, Error> {
        // etcd refuses an empty key; the whole keyspace is `[\0, \0)`, as clientv3 sends it.
        let key = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.to_vec()
        };
        self.range(pb::RangeRequest {
            key,
            range_end: prefix_end(prefix),
            ..Default::default()
        })
        .await
    }

    /// `KV.Put`; `lease` 0 for none.
    pub async fn put(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<pb::PutResponse, Error> {
        let req = pb::PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            prev_kv: false,
        };
        self.unary("Put", "/etcdserverpb.KV/Put", req).await
    }

    /// `KV.DeleteRange` of one key.
    pub async fn delete(
        &mut self,
        key: impl Into<Vec<u8>>,
    ) -> Result<pb::DeleteRangeResponse, Error> {
        let req = pb::DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        };
        self.unary("DeleteRange", "/etcdserverpb.KV/DeleteRange", req)
            .await
    }

    /// `KV.DeleteRange` of every key under `prefix`.
    pub async fn delete_prefix(&mut self, prefix: &[u8]) -> Result<pb::DeleteRangeResponse, Error> {
        let req = pb::DeleteRangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            prev_kv: false,
        };
        self.unary("DeleteRange", "/etcdserverpb.KV/DeleteRange", req)
            .await
    }

    /// `KV.Txn`.
    pub async fn txn(&mut self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Error> {
        self.unary("Txn", "/etcdserverpb.KV/Txn", req).await
    }

    /// `KV.Compact`: history before `revision` is discarded.
    pub async fn compact(&mut self, revision: i64) -> Result<(), Error> {
        let req = pb::CompactionRequest {
            revision,
            physical: true,
        };
        let _: pb::CompactionResponse = self
            .unary("Compact", "/etcdserverpb.KV/Compact", req)
            .await?;
        Ok(())
    }

    /// `Lease.LeaseGrant`: a lease of `ttl` seconds; returns its id.
    pub async fn lease_grant(&mut self, ttl: i64) -> Result<i64, Error> {
        let resp: pb::LeaseGrantResponse = self
            .unary(
                "LeaseGrant",
                "/etcdserverpb.Lease/LeaseGrant",
                pb::LeaseGrantRequest { ttl, id: 0 },
            )
            .await?;
        if !resp.error.is_empty() {
            return Err(Error::Unavailable {
                call: "LeaseGrant",
                message: resp.error,
            });
        }
        Ok(resp.id)
    }

    /// `Lease.LeaseRevoke`: the lease ends and its keys are deleted.
    pub async fn lease_revoke(&mut self, id: i64) -> Result<(), Error> {
        let _: pb::LeaseRevokeResponse = self
            .unary(
                "LeaseRevoke",
                "/etcdserverpb.Lease/LeaseRevoke",
                pb::LeaseRevokeRequest { id },
            )
            .await?;
        Ok(())
    }

    /// Opens a `Watch.Watch` stream whose first request is `first`. More watchers are added
    /// and cancelled through the returned sender; answers of all of them arrive on the stream,
    /// each with its watcher's id.
    pub async fn watch(
        &mut self,
        first: pb::WatchCreateRequest,
    ) -> Result<(WatchSender, WatchStream), Error> {
        self.ready("Watch").await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sender = WatchSender { tx };
        sender.create(first).await?;
        let requests = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let codec = tonic_prost::ProstCodec::<pb::WatchRequest, pb::WatchResponse>::default();
        let resp = self
            .grpc
            .streaming(
                tonic::Request::new(requests),
                PathAndQuery::from_static("/etcdserverpb.Watch/Watch"),
                codec,
            )
            .await
            .map_err(|source| Error::Status {
                call: "Watch",
                source,
            })?;
        Ok((sender, resp.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_rows() {
        let check = |k: &[u8], want: &[u8]| assert_eq!(prefix_end(k), want, "{k:?}");
        check(b"/svc/web/", b"/svc/web0");
        check(b"a", b"b");
        check(&[b'a', 0xff], b"b");
        check(&[0xff, 0xff], &[0]);
        check(b"", &[0]);
    }
}
