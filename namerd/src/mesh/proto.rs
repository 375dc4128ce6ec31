//! The messages of Linkerd 1.7's `io.linkerd.mesh` gRPC API (`mesh/core/src/main/protobuf/*.proto`
//! in Linkerd: dtab, interpreter, resolver, delegator, codec), declared with prost's derive
//! macros (no build-time `protoc`), with the field numbers of those files, and the conversions
//! to and from the naming core's types. Decoding is bounded by prost's recursion limit (100)
//! and by the request size the server accepts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use switchboard_namer_core::addr::Meta;
use switchboard_namer_core::delegate::DelegateTree;
use switchboard_namer_core::{
    Addr, Bound, Dentry, Dtab, Endpoint, NameTree, Path, Prefix, PrefixElem, Weighted,
};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathPb {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub elems: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Nothing {}

// -- PathNameTree

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathNameTree {
    #[prost(oneof = "path_name_tree::Node", tags = "1, 2, 3, 4, 5, 6")]
    pub node: Option<path_name_tree::Node>,
}

pub mod path_name_tree {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Node {
        #[prost(message, tag = "1")]
        Neg(super::Nothing),
        #[prost(message, tag = "2")]
        Fail(super::Nothing),
        #[prost(message, tag = "3")]
        Empty(super::Nothing),
        #[prost(message, tag = "4")]
        Alt(super::PathAlt),
        #[prost(message, tag = "5")]
        Union(super::PathUnion),
        #[prost(message, tag = "6")]
        Leaf(super::PathLeaf),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathAlt {
    #[prost(message, repeated, tag = "1")]
    pub trees: Vec<PathNameTree>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathUnion {
    #[prost(message, repeated, tag = "1")]
    pub trees: Vec<PathWeighted>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathWeighted {
    #[prost(double, optional, tag = "1")]
    pub weight: Option<f64>,
    #[prost(message, optional, boxed, tag = "2")]
    pub tree: Option<Box<PathNameTree>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathLeaf {
    #[prost(message, optional, tag = "1")]
    pub id: Option<PathPb>,
}

// -- Dtab

#[derive(Clone, PartialEq, prost::Message)]
pub struct DtabPb {
    #[prost(message, repeated, tag = "1")]
    pub dentries: Vec<DentryPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DentryPb {
    #[prost(message, optional, tag = "1")]
    pub prefix: Option<PrefixPb>,
    #[prost(message, optional, tag = "2")]
    pub dst: Option<PathNameTree>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PrefixPb {
    #[prost(message, repeated, tag = "1")]
    pub elems: Vec<PrefixElemPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PrefixElemPb {
    #[prost(oneof = "prefix_elem::Value", tags = "1, 2")]
    pub value: Option<prefix_elem::Value>,
}

pub mod prefix_elem {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(bytes, tag = "1")]
        Label(Vec<u8>),
        #[prost(message, tag = "2")]
        Wildcard(super::Nothing),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionedDtab {
    #[prost(message, optional, tag = "1")]
    pub version: Option<VersionPb>,
    #[prost(message, optional, tag = "2")]
    pub dtab: Option<DtabPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionPb {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
}

// -- Interpreter

#[derive(Clone, PartialEq, prost::Message)]
pub struct BindReq {
    #[prost(message, optional, tag = "1")]
    pub root: Option<PathPb>,
    #[prost(message, optional, tag = "2")]
    pub name: Option<PathPb>,
    #[prost(message, optional, tag = "3")]
    pub dtab: Option<DtabPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundTreeRsp {
    #[prost(message, optional, tag = "1")]
    pub tree: Option<BoundNameTree>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundNameTree {
    #[prost(oneof = "bound_name_tree::Node", tags = "1, 2, 3, 4, 5, 6")]
    pub node: Option<bound_name_tree::Node>,
}

pub mod bound_name_tree {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Node {
        #[prost(message, tag = "1")]
        Neg(super::Nothing),
        #[prost(message, tag = "2")]
        Fail(super::Nothing),
        #[prost(message, tag = "3")]
        Empty(super::Nothing),
        #[prost(message, tag = "4")]
        Alt(super::BoundAlt),
        #[prost(message, tag = "5")]
        Union(super::BoundUnion),
        #[prost(message, tag = "6")]
        Leaf(super::BoundLeafPb),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundAlt {
    #[prost(message, repeated, tag = "1")]
    pub trees: Vec<BoundNameTree>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundUnion {
    #[prost(message, repeated, tag = "1")]
    pub trees: Vec<BoundWeighted>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundWeighted {
    #[prost(double, optional, tag = "1")]
    pub weight: Option<f64>,
    #[prost(message, optional, boxed, tag = "2")]
    pub tree: Option<Box<BoundNameTree>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundLeafPb {
    #[prost(message, optional, tag = "1")]
    pub id: Option<PathPb>,
    #[prost(message, optional, tag = "2")]
    pub residual: Option<PathPb>,
}

// -- Resolver

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicasReq {
    #[prost(message, optional, tag = "1")]
    pub id: Option<PathPb>,
}

/// `Endpoint.AddressFamily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AddressFamily {
    Inet4 = 0,
    Inet6 = 1,
}
pub const INET4: i32 = AddressFamily::Inet4 as i32;
pub const INET6: i32 = AddressFamily::Inet6 as i32;

#[derive(Clone, PartialEq, prost::Message)]
pub struct EndpointPb {
    #[prost(enumeration = "AddressFamily", optional, tag = "1")]
    pub inet_af: Option<i32>,
    #[prost(bytes = "vec", tag = "2")]
    pub address: Vec<u8>,
    #[prost(int32, optional, tag = "3")]
    pub port: Option<i32>,
    #[prost(message, optional, tag = "4")]
    pub meta: Option<EndpointMeta>,
    #[prost(map = "string, string", tag = "5")]
    pub metadata: std::collections::HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EndpointMeta {
    #[prost(string, tag = "1")]
    pub node_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Replicas {
    #[prost(oneof = "replicas::Result", tags = "1, 2, 3, 4")]
    pub result: Option<replicas::Result>,
}

pub mod replicas {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(message, tag = "1")]
        Pending(super::Nothing),
        #[prost(message, tag = "2")]
        Neg(super::Nothing),
        #[prost(message, tag = "3")]
        Failed(super::ReplicasFailed),
        #[prost(message, tag = "4")]
        Bound(super::ReplicasBound),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicasFailed {
    #[prost(string, optional, tag = "1")]
    pub message: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicasBound {
    #[prost(message, repeated, tag = "1")]
    pub endpoints: Vec<EndpointPb>,
    #[prost(map = "string, string", tag = "2")]
    pub metadata: std::collections::HashMap<String, String>,
}

// -- Delegator

#[derive(Clone, PartialEq, prost::Message)]
pub struct DtabReq {
    #[prost(message, optional, tag = "1")]
    pub root: Option<PathPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DtabRsp {
    #[prost(message, optional, tag = "1")]
    pub dtab: Option<VersionedDtab>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DelegateTreeReq {
    #[prost(message, optional, tag = "1")]
    pub root: Option<PathPb>,
    #[prost(message, optional, tag = "2")]
    pub tree: Option<PathNameTree>,
    #[prost(message, optional, tag = "3")]
    pub dtab: Option<DtabPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DelegateTreeRsp {
    #[prost(message, optional, tag = "1")]
    pub tree: Option<BoundDelegateTree>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundDelegateTree {
    #[prost(message, optional, tag = "1")]
    pub path: Option<PathPb>,
    #[prost(message, optional, tag = "2")]
    pub dentry: Option<DentryPb>,
    #[prost(
        oneof = "bound_delegate_tree::Node",
        tags = "3, 4, 5, 6, 7, 8, 9, 10, 11"
    )]
    pub node: Option<bound_delegate_tree::Node>,
}

pub mod bound_delegate_tree {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Node {
        #[prost(message, tag = "3")]
        Neg(super::Nothing),
        #[prost(message, tag = "4")]
        Fail(super::Nothing),
        #[prost(message, tag = "5")]
        Empty(super::Nothing),
        #[prost(message, tag = "6")]
        Alt(super::DelegateAlt),
        #[prost(message, tag = "7")]
        Union(super::DelegateUnion),
        #[prost(message, tag = "8")]
        Leaf(super::BoundLeafPb),
        #[prost(message, tag = "9")]
        Delegate(Box<super::BoundDelegateTree>),
        #[prost(message, tag = "10")]
        Transformation(Box<super::DelegateTransformation>),
        #[prost(string, tag = "11")]
        Exception(String),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DelegateAlt {
    #[prost(message, repeated, tag = "1")]
    pub trees: Vec<BoundDelegateTree>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DelegateUnion {
    #[prost(message, repeated, tag = "1")]
    pub trees: Vec<DelegateWeighted>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DelegateWeighted {
    #[prost(double, optional, tag = "1")]
    pub weight: Option<f64>,
    #[prost(message, optional, boxed, tag = "2")]
    pub tree: Option<Box<BoundDelegateTree>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DelegateTransformation {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub leaf: Option<BoundLeafPb>,
    #[prost(message, optional, boxed, tag = "3")]
    pub tree: Option<Box<BoundDelegateTree>>,
}

// -- Codec

#[derive(Clone, PartialEq, prost::Message)]
pub struct TextPb {
    #[prost(string, optional, tag = "1")]
    pub text: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DtabMsg {
    #[prost(message, optional, tag = "1")]
    pub dtab: Option<DtabPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathMsg {
    #[prost(message, optional, tag = "1")]
    pub path: Option<PathPb>,
}

// ---------------------------------------------------------------------------------------------
// Conversions

pub fn path_pb(p: &Path) -> PathPb {
    PathPb {
        elems: p.elems().iter().map(|e| e.to_vec()).collect(),
    }
}

/// A path from its elements (any bytes, as Finagle's paths; an empty element is refused).
pub fn path_of(p: &PathPb) -> Result<Path, String> {
    if p.elems.iter().any(|e| e.is_empty()) {
        return Err("a path with an empty element".into());
    }
    Ok(Path::from_elems(p.elems.iter().map(|e| e.as_slice())))
}

pub fn path_tree_pb(t: &NameTree<Path>) -> PathNameTree {
    use path_name_tree::Node;
    let node = match t {
        NameTree::Neg => Node::Neg(Nothing {}),
        NameTree::Fail => Node::Fail(Nothing {}),
        NameTree::Empty => Node::Empty(Nothing {}),
        NameTree::Leaf(p) => Node::Leaf(PathLeaf {
            id: Some(path_pb(p)),
        }),
        NameTree::Alt(ts) => Node::Alt(PathAlt {
            trees: ts.iter().map(path_tree_pb).collect(),
        }),
        NameTree::Union(ws) => Node::Union(PathUnion {
            trees: ws
                .iter()
                .map(|w| PathWeighted {
                    weight: Some(w.weight),
                    tree: Some(Box::new(path_tree_pb(&w.tree))),
                })
                .collect(),
        }),
    };
    PathNameTree { node: Some(node) }
}

pub fn path_tree_of(t: &PathNameTree) -> Result<NameTree<Path>, String> {
    use path_name_tree::Node;
    Ok(match &t.node {
        None => return Err("a name tree node without a value".into()),
        Some(Node::Neg(_)) => NameTree::Neg,
        Some(Node::Fail(_)) => NameTree::Fail,
        Some(Node::Empty(_)) => NameTree::Empty,
        Some(Node::Leaf(l)) => {
            NameTree::Leaf(path_of(l.id.as_ref().ok_or("a leaf without an id")?)?)
        }
        Some(Node::Alt(a)) => {
            NameTree::Alt(a.trees.iter().map(path_tree_of).collect::<Result<_, _>>()?)
        }
        Some(Node::Union(u)) => NameTree::Union(
            u.trees
                .iter()
                .map(|w| {
                    let t = w.tree.as_deref().ok_or("a union branch without a tree")?;
                    let weight = w.weight.unwrap_or(0.0);
                    if !(weight.is_finite() && weight >= 0.0) {
                        return Err(
                            "a union weight that is not a finite non-negative number".to_string()
                        );
                    }
                    Ok(Weighted::new(weight, path_tree_of(t)?))
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn dentry_pb(d: &Dentry) -> DentryPb {
    let elems = d
        .prefix
        .elems()
        .iter()
        .map(|e| PrefixElemPb {
            value: Some(match e {
                PrefixElem::Any => prefix_elem::Value::Wildcard(Nothing {}),
                PrefixElem::Label(l) => prefix_elem::Value::Label(l.to_vec()),
            }),
        })
        .collect();
    DentryPb {
        prefix: Some(PrefixPb { elems }),
        dst: Some(path_tree_pb(&d.dst)),
    }
}

pub fn dtab_pb(d: &Dtab) -> DtabPb {
    DtabPb {
        dentries: d.dentries.iter().map(dentry_pb).collect(),
    }
}

pub fn dtab_of(d: &DtabPb) -> Result<Dtab, String> {
    let mut out = Vec::with_capacity(d.dentries.len());
    for e in &d.dentries {
        out.push(dentry_of(e)?);
    }
    Ok(Dtab::new(out))
}

fn dentry_of(e: &DentryPb) -> Result<Dentry, String> {
    let mut elems = Vec::new();
    for pe in e.prefix.iter().flat_map(|p| p.elems.iter()) {
        elems.push(match &pe.value {
            Some(prefix_elem::Value::Label(l)) if !l.is_empty() => {
                PrefixElem::Label(l.clone().into_boxed_slice())
            }
            Some(prefix_elem::Value::Label(_)) => return Err("an empty prefix label".into()),
            Some(prefix_elem::Value::Wildcard(_)) => PrefixElem::Any,
            None => return Err("a prefix element without a value".into()),
        });
    }
    let dst = path_tree_of(e.dst.as_ref().ok_or("a dentry without a destination")?)?;
    Ok(Dentry {
        prefix: Prefix::new(elems),
        dst,
    })
}

fn leaf_pb(b: &Bound) -> BoundLeafPb {
    BoundLeafPb {
        id: Some(path_pb(&b.id)),
        residual: Some(path_pb(&b.residual)),
    }
}

pub fn bound_tree_pb(t: &NameTree<Bound>) -> BoundNameTree {
    use bound_name_tree::Node;
    let node = match t {
        NameTree::Neg => Node::Neg(Nothing {}),
        NameTree::Fail => Node::Fail(Nothing {}),
        NameTree::Empty => Node::Empty(Nothing {}),
        NameTree::Leaf(b) => Node::Leaf(leaf_pb(b)),
        NameTree::Alt(ts) => Node::Alt(BoundAlt {
            trees: ts.iter().map(bound_tree_pb).collect(),
        }),
        NameTree::Union(ws) => Node::Union(BoundUnion {
            trees: ws
                .iter()
                .map(|w| BoundWeighted {
                    weight: Some(w.weight),
                    tree: Some(Box::new(bound_tree_pb(&w.tree))),
                })
                .collect(),
        }),
    };
    BoundNameTree { node: Some(node) }
}

/// A bound tree as its leaves (id, residual), for the linker side; the leaf count is bounded.
pub fn bound_tree_of(t: &BoundNameTree) -> Result<NameTree<crate::api::BoundLeaf>, String> {
    let mut leaves = 0;
    bound_tree_inner(t, &mut leaves)
}

fn bound_tree_inner(
    t: &BoundNameTree,
    leaves: &mut usize,
) -> Result<NameTree<crate::api::BoundLeaf>, String> {
    use bound_name_tree::Node;
    Ok(match &t.node {
        None => return Err("a bound tree node without a value".into()),
        Some(Node::Neg(_)) => NameTree::Neg,
        Some(Node::Fail(_)) => NameTree::Fail,
        Some(Node::Empty(_)) => NameTree::Empty,
        Some(Node::Leaf(l)) => {
            *leaves += 1;
            if *leaves > crate::api::MAX_TREE_LEAVES {
                return Err(format!(
                    "a bound tree with over {} leaves",
                    crate::api::MAX_TREE_LEAVES
                ));
            }
            NameTree::Leaf(crate::api::BoundLeaf {
                id: path_of(l.id.as_ref().ok_or("a leaf without an id")?)?,
                residual: l
                    .residual
                    .as_ref()
                    .map(path_of)
                    .transpose()?
                    .unwrap_or_default(),
                weight: None,
            })
        }
        Some(Node::Alt(a)) => NameTree::Alt(
            a.trees
                .iter()
                .map(|t| bound_tree_inner(t, leaves))
                .collect::<Result<_, _>>()?,
        ),
        Some(Node::Union(u)) => NameTree::Union(
            u.trees
                .iter()
                .map(|w| {
                    let t = w.tree.as_deref().ok_or("a union branch without a tree")?;
                    let weight = w.weight.unwrap_or(0.0);
                    if !(weight.is_finite() && weight >= 0.0) {
                        return Err(
                            "a union weight that is not a finite non-negative number".to_string()
                        );
                    }
                    Ok(Weighted::new(weight, bound_tree_inner(t, leaves)?))
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn string_meta(m: &Meta) -> std::collections::HashMap<String, String> {
    m.iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

pub fn replicas_pb(a: &Addr) -> Replicas {
    use replicas::Result as R;
    let r = match a {
        Addr::Pending => R::Pending(Nothing {}),
        Addr::Neg => R::Neg(Nothing {}),
        Addr::Failed(m) => R::Failed(ReplicasFailed {
            message: Some(m.clone()),
        }),
        Addr::Bound { endpoints, meta } => R::Bound(ReplicasBound {
            endpoints: endpoints
                .iter()
                .map(|e| {
                    let (af, address) = match e.addr.ip() {
                        IpAddr::V4(ip) => (INET4, ip.octets().to_vec()),
                        IpAddr::V6(ip) => (INET6, ip.octets().to_vec()),
                    };
                    let mut metadata = string_meta(&e.meta);
                    if e.weight != 1.0 {
                        metadata.insert(
                            switchboard_namer_core::addr::WEIGHT_KEY.into(),
                            e.weight.to_string(),
                        );
                    }
                    EndpointPb {
                        inet_af: Some(af),
                        address,
                        port: Some(i32::from(e.addr.port())),
                        meta: None,
                        metadata,
                    }
                })
                .collect(),
            metadata: string_meta(meta),
        }),
    };
    Replicas { result: Some(r) }
}

pub fn addr_of(r: &Replicas) -> Result<Addr, String> {
    use replicas::Result as R;
    Ok(match &r.result {
        None => return Err("a replicas answer without a result".into()),
        Some(R::Pending(_)) => Addr::Pending,
        Some(R::Neg(_)) => Addr::Neg,
        Some(R::Failed(f)) => Addr::Failed(f.message.clone().unwrap_or_default()),
        Some(R::Bound(b)) => {
            if b.endpoints.len() > crate::api::MAX_ADDRS {
                return Err(format!("over {} endpoints", crate::api::MAX_ADDRS));
            }
            let mut endpoints = Vec::with_capacity(b.endpoints.len());
            for e in &b.endpoints {
                let ip = match (e.inet_af.unwrap_or(INET4), e.address.len()) {
                    (INET4, 4) => IpAddr::V4(Ipv4Addr::new(
                        e.address[0],
                        e.address[1],
                        e.address[2],
                        e.address[3],
                    )),
                    (INET6, 16) => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&e.address);
                        IpAddr::V6(Ipv6Addr::from(o))
                    }
                    _ => return Err("an endpoint address that is not IPv4 or IPv6".into()),
                };
                let port = e.port.unwrap_or(0);
                let port = u16::try_from(port)
                    .map_err(|_| format!("endpoint port {port} out of range"))?;
                let mut ep = Endpoint::new(SocketAddr::new(ip, port));
                for (k, v) in &e.metadata {
                    if k == switchboard_namer_core::addr::WEIGHT_KEY {
                        if let Ok(w) = v.parse::<f64>() {
                            if w.is_finite() && w >= 0.0 {
                                ep = ep.with_weight(w);
                            }
                        }
                    } else {
                        ep.meta
                            .insert(k.clone(), serde_json::Value::String(v.clone()));
                    }
                }
                endpoints.push(ep);
            }
            let meta = b
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            Addr::Bound { endpoints, meta }
        }
    })
}

pub fn delegate_pb(t: &DelegateTree<Bound>) -> BoundDelegateTree {
    use bound_delegate_tree::Node;
    use switchboard_namer_core::delegate::DelegateTree as D;
    let (path, dentry, node) = match t {
        D::Exception {
            path,
            dentry,
            message,
        } => (path, Some(dentry), Node::Exception(message.clone())),
        D::Empty { path, dentry } => (path, Some(dentry), Node::Empty(Nothing {})),
        D::Fail { path, dentry } => (path, Some(dentry), Node::Fail(Nothing {})),
        D::Neg { path, dentry } => (path, Some(dentry), Node::Neg(Nothing {})),
        D::Delegate { path, dentry, tree } => (
            path,
            Some(dentry),
            Node::Delegate(Box::new(delegate_pb(tree))),
        ),
        D::Leaf {
            path,
            dentry,
            value,
        } => (path, Some(dentry), Node::Leaf(leaf_pb(value))),
        D::Alt {
            path,
            dentry,
            trees,
        } => (
            path,
            Some(dentry),
            Node::Alt(DelegateAlt {
                trees: trees.iter().map(delegate_pb).collect(),
            }),
        ),
        D::Union {
            path,
            dentry,
            trees,
        } => (
            path,
            Some(dentry),
            Node::Union(DelegateUnion {
                trees: trees
                    .iter()
                    .map(|(w, t)| DelegateWeighted {
                        weight: Some(*w),
                        tree: Some(Box::new(delegate_pb(t))),
                    })
                    .collect(),
            }),
        ),
        D::Transformation {
            path,
            name,
            value,
            tree,
        } => (
            path,
            None,
            Node::Transformation(Box::new(DelegateTransformation {
                name: name.clone(),
                leaf: Some(leaf_pb(value)),
                tree: Some(Box::new(delegate_pb(tree))),
            })),
        ),
    };
    BoundDelegateTree {
        path: Some(path_pb(path)),
        // Always present (a nop dentry too), as Linkerd's linkers require; absent only on
        // transformations, as Linkerd sends them.
        dentry: dentry.map(dentry_pb),
        node: Some(node),
    }
}

/// A delegation tree from namerd (the linker side), each leaf made by `leaf` from its id and
/// residual. The node count is bounded by `api::MAX_TREE_LEAVES` (times four, for the inner
/// nodes); the depth by prost's decoding limit.
pub fn delegate_of(
    t: &BoundDelegateTree,
    leaf: &mut dyn FnMut(Path, Path) -> Bound,
) -> Result<DelegateTree<Bound>, String> {
    let mut nodes = 0;
    delegate_inner(t, leaf, &mut nodes)
}

fn delegate_inner(
    t: &BoundDelegateTree,
    leaf: &mut dyn FnMut(Path, Path) -> Bound,
    nodes: &mut usize,
) -> Result<DelegateTree<Bound>, String> {
    use bound_delegate_tree::Node;
    use switchboard_namer_core::delegate::DelegateTree as D;
    *nodes += 1;
    if *nodes > 4 * crate::api::MAX_TREE_LEAVES {
        return Err(format!(
            "a delegation tree with over {} nodes",
            4 * crate::api::MAX_TREE_LEAVES
        ));
    }
    let path = match &t.path {
        Some(p) => path_of(p)?,
        None => Path::empty(),
    };
    let dentry = match &t.dentry {
        Some(d) => dentry_of(d)?,
        None => Dentry::nop(),
    };
    Ok(
        match t.node.as_ref().ok_or("a delegation node without a value")? {
            Node::Neg(_) => D::Neg { path, dentry },
            Node::Fail(_) => D::Fail { path, dentry },
            Node::Empty(_) => D::Empty { path, dentry },
            Node::Exception(message) => D::Exception {
                path,
                dentry,
                message: message.clone(),
            },
            Node::Leaf(l) => D::Leaf {
                path,
                dentry,
                value: leaf_bound(l, leaf)?,
            },
            Node::Delegate(t) => D::Delegate {
                path,
                dentry,
                tree: Box::new(delegate_inner(t, leaf, nodes)?),
            },
            Node::Alt(a) => D::Alt {
                path,
                dentry,
                trees: a
                    .trees
                    .iter()
                    .map(|t| delegate_inner(t, leaf, nodes))
                    .collect::<Result<_, _>>()?,
            },
            Node::Union(u) => D::Union {
                path,
                dentry,
                trees: u
                    .trees
                    .iter()
                    .map(|w| {
                        let t = w.tree.as_deref().ok_or("a weighted tree without a tree")?;
                        Ok((w.weight.unwrap_or(1.0), delegate_inner(t, leaf, nodes)?))
                    })
                    .collect::<Result<_, String>>()?,
            },
            Node::Transformation(x) => D::Transformation {
                path,
                name: x.name.clone(),
                value: leaf_bound(
                    x.leaf.as_ref().ok_or("a transformation without its leaf")?,
                    leaf,
                )?,
                tree: Box::new(delegate_inner(
                    x.tree
                        .as_deref()
                        .ok_or("a transformation without its tree")?,
                    leaf,
                    nodes,
                )?),
            },
        },
    )
}

fn leaf_bound(l: &BoundLeafPb, leaf: &mut dyn FnMut(Path, Path) -> Bound) -> Result<Bound, String> {
    let id = path_of(l.id.as_ref().ok_or("a leaf without an id")?)?;
    let residual = match &l.residual {
        Some(r) => path_of(r)?,
        None => Path::empty(),
    };
    Ok(leaf(id, residual))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn delegation_trees_round_trip_through_the_wire() {
        use switchboard_namer_core::delegate::{delegate_json, DelegateTree as D};
        use switchboard_namer_core::Var;
        let p = |s: &str| Path::read(s).unwrap();
        let bound = |id: &str, res: &str| {
            Bound::new(
                p(id),
                p(res),
                Var::constant(Addr::bound(vec![Endpoint::new(
                    "127.0.0.1:1".parse().unwrap(),
                )])),
            )
        };
        let dentry = |s: &str| Dentry::read(s).unwrap();
        let t = D::Delegate {
            path: p("/svc/web"),
            dentry: Dentry::nop(),
            tree: Box::new(D::Alt {
                path: p("/svc/web"),
                dentry: dentry("/svc=>/a|/b"),
                trees: vec![
                    D::Neg {
                        path: p("/a/web"),
                        dentry: dentry("/svc=>/a|/b"),
                    },
                    D::Union {
                        path: p("/b/web"),
                        dentry: dentry("/b=>1*/c&2*/d"),
                        trees: vec![
                            (
                                1.0,
                                D::Leaf {
                                    path: p("/$/inet/127.0.0.1/1/web"),
                                    dentry: dentry("/c=>/$/inet/127.0.0.1/1"),
                                    value: bound("/$/inet/127.0.0.1/1", "/web"),
                                },
                            ),
                            (
                                2.0,
                                D::Transformation {
                                    path: p("/%/io.l5d.port/1/$/inet/127.0.0.1/2"),
                                    name: "io.l5d.port".into(),
                                    value: bound("/$/inet/127.0.0.1/2", "/"),
                                    tree: Box::new(D::Exception {
                                        path: p("/d/web"),
                                        dentry: dentry("/d=>/x"),
                                        message: "no".into(),
                                    }),
                                },
                            ),
                        ],
                    },
                    D::Fail {
                        path: p("/$/fail"),
                        dentry: Dentry::nop(),
                    },
                    D::Empty {
                        path: p("/e"),
                        dentry: Dentry::nop(),
                    },
                ],
            }),
        };
        let wire = delegate_pb(&t).encode_to_vec();
        let back = delegate_of(
            &BoundDelegateTree::decode(wire.as_slice()).unwrap(),
            &mut |id, res| bound(&id.show(), &res.show()),
        )
        .unwrap();
        assert_eq!(delegate_json(&back), delegate_json(&t));
        // A node without a value is refused, not guessed.
        let mut bad = delegate_pb(&t);
        bad.node = None;
        assert!(delegate_of(&bad, &mut |id, res| bound(&id.show(), &res.show())).is_err());
    }

    #[test]
    fn dtabs_and_trees_round_trip_through_the_wire() {
        for text in [
            "/svc=>/#/io.l5d.fs",
            "/svc/*/x=>/a | /b & 2*/c;/=>!;/y=>~;/z=>$",
            "",
        ] {
            let d = Dtab::read(text).unwrap();
            let bytes = dtab_pb(&d).encode_to_vec();
            let back = dtab_of(&DtabPb::decode(bytes.as_slice()).unwrap()).unwrap();
            assert_eq!(back, d, "{text}");
        }
        let a = Addr::Bound {
            endpoints: vec![
                Endpoint::new("127.0.0.1:1".parse().unwrap()).with_weight(2.0),
                Endpoint::new("[::1]:2".parse().unwrap()),
            ],
            meta: Meta::new(),
        };
        let back = addr_of(&Replicas::decode(replicas_pb(&a).encode_to_vec().as_slice()).unwrap())
            .unwrap();
        assert_eq!(back, a);
        for a in [Addr::Pending, Addr::Neg, Addr::Failed("x".into())] {
            assert_eq!(addr_of(&replicas_pb(&a)).unwrap(), a);
        }
    }

    #[test]
    fn defaults_linkerd_needs_are_written_out() {
        // Linkerd's decoder reads an absent field as None and drops an endpoint without its
        // family or port: an IPv4 endpoint must carry `inet_af = 0` on the wire (08 00).
        let a = Addr::bound(vec![Endpoint::new("127.0.0.1:80".parse().unwrap())]);
        let bytes = replicas_pb(&a).encode_to_vec();
        assert!(bytes.windows(2).any(|w| w == [0x08, 0x00]), "{bytes:02x?}");
        let t = bound_tree_pb(&NameTree::Union(vec![Weighted::new(0.0, NameTree::Neg)]));
        let bytes = t.encode_to_vec();
        // weight 0.0: tag 1, fixed64, eight zero bytes.
        assert!(
            bytes
                .windows(9)
                .any(|w| w == [0x09, 0, 0, 0, 0, 0, 0, 0, 0]),
            "{bytes:02x?}"
        );
        let f = replicas_pb(&Addr::Failed(String::new())).encode_to_vec();
        assert!(f.len() > 2, "{f:02x?}");
    }

    #[test]
    fn hostile_messages_are_refused() {
        // An empty path element; any other bytes are an element, as in Finagle.
        assert!(path_of(&PathPb {
            elems: vec![Vec::new()]
        })
        .is_err());
        assert_eq!(
            path_of(&PathPb {
                elems: vec![vec![0xff]]
            })
            .unwrap()
            .elems()[0]
                .as_ref(),
            [0xff]
        );
        // An endpoint of the wrong length; a port out of range.
        let mut r = replicas_pb(&Addr::bound(vec![Endpoint::new(
            "127.0.0.1:1".parse().unwrap(),
        )]));
        if let Some(replicas::Result::Bound(b)) = &mut r.result {
            b.endpoints[0].address.push(1);
        }
        assert!(addr_of(&r).is_err());
        // Nesting past prost's recursion limit does not decode.
        let mut t = BoundNameTree {
            node: Some(bound_name_tree::Node::Neg(Nothing {})),
        };
        for _ in 0..200 {
            t = BoundNameTree {
                node: Some(bound_name_tree::Node::Alt(BoundAlt { trees: vec![t] })),
            };
        }
        assert!(BoundNameTree::decode(t.encode_to_vec().as_slice()).is_err());
    }
}
