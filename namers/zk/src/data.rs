//! What the ZooKeeper namers read: lookup paths turned into ZooKeeper paths (with Finagle's
//! `name[:endpoint][#shard]` job syntax), Twitter serverset member JSON, leader-election member
//! names and leader data. Pure functions only: nothing here talks to ZooKeeper or resolves hosts.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Children of a serverset node that are members (Finagle's serverset2 reads only these).
pub const MEMBER_PREFIX: &str = "member_";

/// Whether `s` can be one node name in a ZooKeeper path: not empty, not `.` or `..`, no `/`,
/// and none of the characters ZooKeeper refuses (the same ranges the `zookeeper-client` crate
/// checks).
pub fn valid_node_name(s: &str) -> bool {
    if s.is_empty() || s == "." || s == ".." {
        return false;
    }
    s.chars().all(|c| {
        let u = u32::from(c);
        c != '/'
            && !(u <= 0x1f
                || (0x7f..=0x9f).contains(&u)
                || (0xd800..=0xf8ff).contains(&u)
                || (0xfff0..=0xffff).contains(&u))
    })
}

/// The ZooKeeper path of node names: `/` for none, else `/a/b`.
pub fn zk_path<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for n in names {
        out.push('/');
        out.push_str(n.as_ref());
    }
    out
}

/// The path of child `name` under `parent`.
pub fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The last element of a serverset path, split as Finagle's `ServersetPath` does:
/// `name`, `name:endpoint`, `name#shard` or `name:endpoint#shard`, where the shard is a
/// non-negative integer. Returns `None` for any other shape (e.g. `a:b:c`, `:http`, `a#x`).
pub fn parse_job(s: &str) -> Option<(String, Option<String>, Option<i32>)> {
    #[derive(Debug)]
    enum Tok {
        Elem(String),
        Colon,
        Hash,
    }
    let mut toks: Vec<Tok> = Vec::new();
    for c in s.chars() {
        match c {
            ':' => toks.push(Tok::Colon),
            '#' => toks.push(Tok::Hash),
            c => match toks.last_mut() {
                Some(Tok::Elem(e)) => e.push(c),
                _ => toks.push(Tok::Elem(c.to_string())),
            },
        }
    }
    let shard = |s: &str| s.parse::<i32>().ok().filter(|n| *n >= 0);
    match toks.as_slice() {
        [Tok::Elem(name)] => Some((name.clone(), None, None)),
        [Tok::Elem(name), Tok::Colon, Tok::Elem(ep)] => {
            Some((name.clone(), Some(ep.clone()), None))
        }
        [Tok::Elem(name), Tok::Hash, Tok::Elem(n)] => Some((name.clone(), None, Some(shard(n)?))),
        [Tok::Elem(name), Tok::Colon, Tok::Elem(ep), Tok::Hash, Tok::Elem(n)] => {
            Some((name.clone(), Some(ep.clone()), Some(shard(n)?)))
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct RawHostPort {
    host: String,
    port: i64,
}

#[derive(Deserialize)]
struct RawInstance {
    #[serde(rename = "serviceEndpoint", default)]
    service_endpoint: Option<RawHostPort>,
    #[serde(rename = "additionalEndpoints", default)]
    additional_endpoints: Option<BTreeMap<String, RawHostPort>>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    shard: Option<i64>,
}

/// One endpoint of a serverset member, as written (the port is checked when it is selected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: i64,
}

/// A serverset member: Twitter's `ServiceInstance` JSON,
/// `{"serviceEndpoint":{"host":..,"port":..},"additionalEndpoints":{"http":{..}},
/// "status":"ALIVE","shard":0}`. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub service_endpoint: Option<HostPort>,
    pub additional_endpoints: BTreeMap<String, HostPort>,
    /// `None` when the JSON has no status (counted as alive).
    pub status: Option<String>,
    pub shard: Option<i64>,
}

/// Parses a member node's data.
pub fn parse_member(data: &[u8]) -> Result<Member, String> {
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("empty member data".to_string());
    }
    let raw: RawInstance =
        serde_json::from_slice(data).map_err(|e| format!("not serverset JSON: {e}"))?;
    let conv = |r: RawHostPort| HostPort {
        host: r.host,
        port: r.port,
    };
    Ok(Member {
        service_endpoint: raw.service_endpoint.map(conv),
        additional_endpoints: raw
            .additional_endpoints
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, conv(v)))
            .collect(),
        status: raw.status,
        shard: raw.shard,
    })
}

impl Member {
    /// Only `ALIVE` members serve (Finagle's `Endpoint.Status.Alive`); no status counts as alive.
    pub fn is_alive(&self) -> bool {
        self.status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("ALIVE"))
    }

    /// The endpoint a lookup with `endpoint` / `shard` uses: `Ok(None)` when this member does
    /// not take part (not alive, another shard, no such endpoint); `Err` when the selected
    /// endpoint is unusable (empty host, port out of range).
    pub fn select(
        &self,
        endpoint: Option<&str>,
        shard: Option<i32>,
    ) -> Result<Option<(String, u16)>, String> {
        if !self.is_alive() {
            return Ok(None);
        }
        if let Some(want) = shard {
            if self.shard != Some(i64::from(want)) {
                return Ok(None);
            }
        }
        let hp = match endpoint {
            None => self.service_endpoint.as_ref(),
            Some(name) => self.additional_endpoints.get(name),
        };
        let Some(hp) = hp else {
            return Ok(None);
        };
        let host = hp.host.trim();
        if host.is_empty() {
            return Err("endpoint has an empty host".to_string());
        }
        match u16::try_from(hp.port) {
            Ok(p) if p > 0 => Ok(Some((host.to_string(), p))),
            _ => Err(format!("endpoint port {} is out of range", hp.port)),
        }
    }
}

/// The sequence number ZooKeeper appended to a sequential node's name (its trailing digits).
pub fn sequence_of(name: &str) -> Option<u64> {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &name[stem.len()..];
    if digits.is_empty() {
        return None;
    }
    digits.parse::<u64>().ok()
}

/// The leader of an election group (Twitter's `Group`/`CandidateImpl`, which Linkerd's
/// `io.l5d.zkLeader` uses): among the children named `member_*`, the one with the lowest
/// sequence number (ties, which ZooKeeper does not make under one parent, and members without
/// a number go by name, after the numbered ones).
pub fn leader_of(children: &[String]) -> Option<&str> {
    children
        .iter()
        .filter(|c| c.starts_with(MEMBER_PREFIX))
        .map(|c| (sequence_of(c).unwrap_or(u64::MAX), c.as_str()))
        .min()
        .map(|(_, c)| c)
}

/// Parses `host:port` or `[v6]:port`.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("expected host:port, got {s:?}");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once("]:").ok_or_else(bad)?
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(bad()),
    }
}

/// A leader's data: serverset JSON (its `serviceEndpoint`; nothing unless alive), or one or
/// more `host:port` separated by commas or white space (what Linkerd's `io.l5d.zkLeader`
/// reads, `InetSocketAddressUtil.parseHosts`).
pub fn parse_leader_data(data: &[u8]) -> Result<Vec<(String, u16)>, String> {
    let text = std::str::from_utf8(data)
        .map_err(|_| "leader data is not UTF-8".to_string())?
        .trim();
    if text.starts_with('{') {
        let m = parse_member(text.as_bytes())?;
        return Ok(m.select(None, None)?.into_iter().collect());
    }
    let out = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(parse_host_port)
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err("leader data is empty".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_syntax() {
        assert_eq!(parse_job("web"), Some(("web".into(), None, None)));
        assert_eq!(
            parse_job("web:http"),
            Some(("web".into(), Some("http".into()), None))
        );
        assert_eq!(parse_job("web#3"), Some(("web".into(), None, Some(3))));
        assert_eq!(
            parse_job("web:http#0"),
            Some(("web".into(), Some("http".into()), Some(0)))
        );
        for bad in [
            "web:a:b", ":http", "web#x", "web#-1", "web:", "web#", "web#1#2", "a#1:b",
        ] {
            assert_eq!(parse_job(bad), None, "{bad}");
        }
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("member_0000000001"));
        assert!(valid_node_name("a:b#c"));
        for bad in ["", ".", "..", "a/b", "a\u{1}b", "\u{e000}"] {
            assert!(!valid_node_name(bad), "{bad:?}");
        }
        assert_eq!(zk_path::<&str>(&[]), "/");
        assert_eq!(zk_path(&["a", "b"]), "/a/b");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
    }

    const FULL: &str = r#"{"serviceEndpoint":{"host":"127.0.0.1","port":8080},"additionalEndpoints":{"http":{"host":"127.0.0.2","port":8081}},"status":"ALIVE","shard":2}"#;

    #[test]
    fn member_selection() {
        let m = parse_member(FULL.as_bytes()).unwrap();
        assert_eq!(m.select(None, None), Ok(Some(("127.0.0.1".into(), 8080))));
        assert_eq!(
            m.select(Some("http"), None),
            Ok(Some(("127.0.0.2".into(), 8081)))
        );
        assert_eq!(m.select(Some("admin"), None), Ok(None));
        assert_eq!(
            m.select(None, Some(2)),
            Ok(Some(("127.0.0.1".into(), 8080)))
        );
        assert_eq!(m.select(None, Some(1)), Ok(None));

        let dead = parse_member(FULL.replace("ALIVE", "DEAD").as_bytes()).unwrap();
        assert_eq!(dead.select(None, None), Ok(None));

        let bare = parse_member(br#"{"serviceEndpoint":{"host":"h","port":1}}"#).unwrap();
        assert!(bare.is_alive());
        assert_eq!(bare.select(None, None), Ok(Some(("h".into(), 1))));
        assert_eq!(bare.select(None, Some(0)), Ok(None));

        let port0 = parse_member(br#"{"serviceEndpoint":{"host":"h","port":0}}"#).unwrap();
        assert!(port0.select(None, None).is_err());

        assert!(parse_member(b"").is_err());
        assert!(parse_member(b"not json").is_err());
        assert!(parse_member(br#"{"serviceEndpoint":{"host":"h"}}"#).is_err());
    }

    #[test]
    fn leaders() {
        let ch = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            leader_of(&ch(&["member_0000000002", "member_0000000001", "lock"])),
            Some("member_0000000001")
        );
        assert_eq!(
            leader_of(&ch(&["member_10", "member_9", "t-1-0"])),
            Some("member_9")
        );
        assert_eq!(leader_of(&ch(&["member_x", "member_2"])), Some("member_2"));
        assert_eq!(leader_of(&ch(&["_c_x-latch-0000000001"])), None);
        assert_eq!(leader_of(&ch(&["a", "b"])), None);
        assert_eq!(leader_of(&[]), None);

        assert_eq!(
            parse_leader_data(b"127.0.0.1:9000"),
            Ok(vec![("127.0.0.1".into(), 9000)])
        );
        assert_eq!(
            parse_leader_data(b" a:1, [::1]:2\n"),
            Ok(vec![("a".into(), 1), ("::1".into(), 2)])
        );
        assert_eq!(
            parse_leader_data(FULL.as_bytes()),
            Ok(vec![("127.0.0.1".into(), 8080)])
        );
        assert!(parse_leader_data(b"").is_err());
        assert!(parse_leader_data(b"nohostport").is_err());
        assert!(parse_leader_data(b"h:0").is_err());
    }
}
