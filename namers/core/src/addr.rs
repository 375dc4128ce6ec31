//! Address sets: what a bound name points at. `Addr` is Pending | Neg | Bound(endpoints) |
//! Failed; an `Endpoint` is a socket address with a weight and free-form metadata. This module
//! renders addresses as namerd's JSON; it does not resolve or watch anything.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

/// Free-form metadata, as in Finagle's `Addr.Metadata`.
pub type Meta = Map<String, Value>;

/// Metadata key Finagle uses for an endpoint's weight.
pub const WEIGHT_KEY: &str = "endpoint_addr_weight";
/// Metadata key under which binding records the innermost union weight of a leaf.
pub const NAMETREE_WEIGHT_KEY: &str = "namer_nametree_weight";

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: f64,
    pub meta: Meta,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            weight: 1.0,
            meta: Meta::new(),
        }
    }

    pub fn with_weight(mut self, weight: f64) -> Endpoint {
        self.weight = weight;
        self
    }

    pub fn to_json(&self) -> Value {
        let mut meta = self.meta.clone();
        if self.weight != 1.0 {
            meta.insert(WEIGHT_KEY.into(), json!(self.weight));
        }
        json!({"ip": self.addr.ip().to_string(), "port": self.addr.port(), "meta": meta})
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Addr {
    Pending,
    /// Nothing is known by this name.
    Neg,
    Bound {
        endpoints: Vec<Endpoint>,
        meta: Meta,
    },
    Failed(String),
}

impl Addr {
    pub fn bound(endpoints: Vec<Endpoint>) -> Addr {
        Addr::Bound {
            endpoints,
            meta: Meta::new(),
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(self, Addr::Pending)
    }

    /// namerd's `/api/1/addr` rendering, with `extra` merged into the set's metadata.
    pub fn to_json_with(&self, extra: &Meta) -> Value {
        match self {
            Addr::Pending => json!({"type": "pending"}),
            Addr::Neg => json!({"type": "neg"}),
            Addr::Failed(cause) => json!({"type": "failed", "cause": cause}),
            Addr::Bound { endpoints, meta } => {
                let mut m = meta.clone();
                m.extend(extra.clone());
                let mut addrs: Vec<&Endpoint> = endpoints.iter().collect();
                addrs.sort_by_key(|e| e.addr);
                json!({
                    "type": "bound",
                    "addrs": addrs.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
                    "meta": m,
                })
            }
        }
    }

    pub fn to_json(&self) -> Value {
        self.to_json_with(&Meta::new())
    }
}
