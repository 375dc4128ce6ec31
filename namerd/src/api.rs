//! The JSON shapes of namerd's HTTP API (reference section 1.24), both ways: dtabs as
//! `[{"prefix":..,"dst":..}]`, bound trees as `/api/1/bind` renders them and address sets as
//! `/api/1/addr` does. Rendering of trees and addresses is the naming core's; this module adds
//! the dtab shape and the decoding a linker needs. Decoding is bounded: a tree nested deeper
//! than [`MAX_TREE_DEPTH`] or holding more than [`MAX_TREE_LEAVES`] leaves is refused.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};
use switchboard_namer_core::addr::{Meta, NAMETREE_WEIGHT_KEY, WEIGHT_KEY};
use switchboard_namer_core::{Addr, Dentry, Dtab, Endpoint, NameTree, Path, Weighted};

/// Deepest bound tree accepted from namerd.
pub const MAX_TREE_DEPTH: usize = 64;
/// Most leaves accepted in one bound tree.
pub const MAX_TREE_LEAVES: usize = 1_000;
/// Most endpoints accepted in one address set.
pub const MAX_ADDRS: usize = 100_000;

/// The media type of a dtab in its text form.
pub const DTAB_MEDIA_TYPE: &str = "application/dtab";

/// `[{"prefix":"/svc","dst":"/#/io.l5d.fs"}]`.
pub fn dtab_json(d: &Dtab) -> Value {
    d.dentries
        .iter()
        .map(|e| json!({"prefix": e.prefix.to_string(), "dst": e.dst.show()}))
        .collect()
}

/// Reads a dtab from its JSON form.
pub fn dtab_from_json(v: &Value) -> Result<Dtab, String> {
    let Value::Array(items) = v else {
        return Err("expected a list of {\"prefix\", \"dst\"} objects".into());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let (Some(p), Some(d)) = (
            it.get("prefix").and_then(Value::as_str),
            it.get("dst").and_then(Value::as_str),
        ) else {
            return Err(format!(
                "dentry {i}: expected {{\"prefix\": .., \"dst\": ..}}"
            ));
        };
        let e = Dentry::read(&format!("{p}=>{d}")).map_err(|e| format!("dentry {i}: {e}"))?;
        out.push(e);
    }
    Ok(Dtab::new(out))
}

/// A leaf of a bound tree as namerd sends it: the bound id, the residual path and the union
/// weight that applied.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundLeaf {
    pub id: Path,
    pub residual: Path,
    pub weight: Option<f64>,
}

/// Reads a bound tree from `/api/1/bind` JSON.
pub fn bound_tree_from_json(v: &Value) -> Result<NameTree<BoundLeaf>, String> {
    let mut leaves = 0;
    tree(v, 0, &mut leaves)
}

fn tree(v: &Value, depth: usize, leaves: &mut usize) -> Result<NameTree<BoundLeaf>, String> {
    if depth > MAX_TREE_DEPTH {
        return Err(format!("a bound tree nested deeper than {MAX_TREE_DEPTH}"));
    }
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a tree node without a \"type\"")?;
    match kind {
        "neg" => Ok(NameTree::Neg),
        "fail" => Ok(NameTree::Fail),
        "empty" => Ok(NameTree::Empty),
        "leaf" => {
            *leaves += 1;
            if *leaves > MAX_TREE_LEAVES {
                return Err(format!("a bound tree with over {MAX_TREE_LEAVES} leaves"));
            }
            let b = v.get("bound").ok_or("a leaf without \"bound\"")?;
            let id = b
                .get("id")
                .and_then(Value::as_str)
                .ok_or("a bound name without an \"id\"")?;
            let id = Path::read(id).map_err(|e| format!("bound id {id:?}: {e}"))?;
            let residual = match b.get("path").and_then(Value::as_str) {
                None | Some("/") | Some("") => Path::empty(),
                Some(p) => Path::read(p).map_err(|e| format!("residual path {p:?}: {e}"))?,
            };
            let weight = b
                .get("addr")
                .and_then(|a| a.get("meta"))
                .and_then(|m| m.get(NAMETREE_WEIGHT_KEY))
                .and_then(Value::as_f64);
            Ok(NameTree::Leaf(BoundLeaf {
                id,
                residual,
                weight,
            }))
        }
        "alt" => {
            let ts = v
                .get("alt")
                .and_then(Value::as_array)
                .ok_or("an alt without \"alt\"")?;
            Ok(NameTree::Alt(
                ts.iter()
                    .map(|t| tree(t, depth + 1, leaves))
                    .collect::<Result<_, _>>()?,
            ))
        }
        "union" => {
            let ts = v
                .get("union")
                .and_then(Value::as_array)
                .ok_or("a union without \"union\"")?;
            let mut out = Vec::with_capacity(ts.len());
            for w in ts {
                let weight = w
                    .get("weight")
                    .and_then(Value::as_f64)
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .ok_or("a union branch without a valid \"weight\"")?;
                let t = w.get("tree").ok_or("a union branch without \"tree\"")?;
                out.push(Weighted::new(weight, tree(t, depth + 1, leaves)?));
            }
            Ok(NameTree::Union(out))
        }
        other => Err(format!("unknown tree node type {other:?}")),
    }
}

/// Reads an address set from `/api/1/addr` JSON.
pub fn addr_from_json(v: &Value) -> Result<Addr, String> {
    match v.get("type").and_then(Value::as_str) {
        Some("pending") => Ok(Addr::Pending),
        Some("neg") => Ok(Addr::Neg),
        Some("failed") => Ok(Addr::Failed(
            v.get("cause")
                .and_then(Value::as_str)
                .unwrap_or("failed in namerd")
                .to_string(),
        )),
        Some("bound") => {
            let addrs = v
                .get("addrs")
                .and_then(Value::as_array)
                .ok_or("a bound address set without \"addrs\"")?;
            if addrs.len() > MAX_ADDRS {
                return Err(format!("an address set of over {MAX_ADDRS} endpoints"));
            }
            let mut endpoints = Vec::with_capacity(addrs.len());
            for a in addrs {
                let ip: IpAddr = a
                    .get("ip")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .ok_or("an address without a valid \"ip\"")?;
                let port = a
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or("an address without a valid \"port\"")?;
                let mut e = Endpoint::new(SocketAddr::new(ip, port));
                if let Some(Value::Object(m)) = a.get("meta") {
                    let mut meta: Meta = m.clone();
                    if let Some(w) = meta.remove(WEIGHT_KEY).and_then(|w| w.as_f64()) {
                        if w.is_finite() && w >= 0.0 {
                            e = e.with_weight(w);
                        }
                    }
                    e.meta = meta;
                }
                endpoints.push(e);
            }
            let meta = match v.get("meta") {
                Some(Value::Object(m)) => {
                    let mut m = m.clone();
                    m.remove(NAMETREE_WEIGHT_KEY);
                    m
                }
                _ => Meta::new(),
            };
            Ok(Addr::Bound { endpoints, meta })
        }
        Some(other) => Err(format!("unknown address set type {other:?}")),
        None => Err("an address set without a \"type\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use switchboard_namer_core::delegate::bound_tree_json;
    use switchboard_namer_core::{Bound, Var};

    #[test]
    fn dtab_json_round_trips() {
        let d = Dtab::read("/svc=>/#/io.l5d.fs;/svc/a=>/b & 2*/c | /d").unwrap();
        let j = dtab_json(&d);
        assert_eq!(j[0], json!({"prefix": "/svc", "dst": "/#/io.l5d.fs"}));
        assert_eq!(dtab_from_json(&j).unwrap(), d);
        let bad = |v: Value, want: &str| {
            let e = dtab_from_json(&v).unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        bad(json!({"prefix": "/a"}), "expected a list");
        bad(json!([{"prefix": "/a"}]), "dentry 0");
        bad(
            json!([{"prefix": "/a", "dst": "/b"}, {"prefix": "a", "dst": "/b"}]),
            "dentry 1",
        );
    }

    #[test]
    fn bound_trees_read_back_what_namerd_renders() {
        let addr = Addr::bound(vec![
            Endpoint::new("127.0.0.1:1".parse().unwrap()).with_weight(2.0)
        ]);
        let leaf = |id: &str, res: &str, w: Option<f64>| {
            let mut b = Bound::new(
                Path::read(id).unwrap(),
                Path::read(res).unwrap(),
                Var::constant(addr.clone()),
            );
            b.weight = w;
            b
        };
        let t = NameTree::Union(vec![
            Weighted::new(3.0, NameTree::Leaf(leaf("/#/io.l5d.fs/a", "/x", Some(3.0)))),
            Weighted::new(
                1.0,
                NameTree::Alt(vec![
                    NameTree::Neg,
                    NameTree::Leaf(leaf("/$/inet/h/1", "/", None)),
                ]),
            ),
        ]);
        let back = bound_tree_from_json(&bound_tree_json(&t)).unwrap();
        let want = t.map(&mut |b: &Bound| BoundLeaf {
            id: b.id.clone(),
            residual: b.residual.clone(),
            weight: b.weight,
        });
        assert_eq!(back, want);
        let a = addr_from_json(&addr.to_json()).unwrap();
        assert_eq!(a, addr);
        let _ = Arc::new(());
    }

    #[test]
    fn hostile_trees_are_refused() {
        let mut v = json!({"type": "neg"});
        for _ in 0..(MAX_TREE_DEPTH + 1) {
            v = json!({"type": "alt", "alt": [v]});
        }
        assert!(bound_tree_from_json(&v).unwrap_err().contains("deeper"));
        let leaf = json!({"type": "leaf", "bound": {"id": "/$/inet/h/1", "path": "/", "addr": {}}});
        let many = json!({"type": "alt", "alt": vec![leaf; MAX_TREE_LEAVES + 1]});
        assert!(bound_tree_from_json(&many).unwrap_err().contains("leaves"));
        for (v, want) in [
            (json!({}), "type"),
            (json!({"type": "leaf"}), "bound"),
            (json!({"type": "leaf", "bound": {"id": "x"}}), "bound id"),
            (
                json!({"type": "union", "union": [{"weight": -1, "tree": {"type": "neg"}}]}),
                "weight",
            ),
            (json!({"type": "odd"}), "unknown"),
        ] {
            let e = bound_tree_from_json(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
        for (v, want) in [
            (json!({"type": "bound"}), "addrs"),
            (
                json!({"type": "bound", "addrs": [{"ip": "x", "port": 1}]}),
                "ip",
            ),
            (
                json!({"type": "bound", "addrs": [{"ip": "::1", "port": 70000}]}),
                "port",
            ),
        ] {
            let e = addr_from_json(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
