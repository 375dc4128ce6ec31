//! HTTP identifiers (section 1.7): a request to a logical name under the router's `dstPrefix`.
//! A list of identifiers is tried in order until one names the request. `io.l5d.path` with
//! `consume` also says how to rewrite the forwarded URI. Identifiers only read the request.

use http::Request;
use switchboard_namer_core::Path;

use crate::config::plugins::IdentifierKind;

/// A named request.
#[derive(Debug, Clone, PartialEq)]
pub struct Identified {
    pub path: Path,
    /// The path-and-query to forward instead of the original (`io.l5d.path` with `consume`).
    pub rewrite_uri: Option<String>,
}

/// Names `req` with the first identifier that can; otherwise the last identifier's reason.
pub fn identify<B>(
    ids: &[IdentifierKind],
    prefix: &Path,
    req: &Request<B>,
) -> Result<Identified, String> {
    let mut reason = String::from("no identifier configured");
    for id in ids {
        match identify_one(id, prefix, req) {
            Ok(i) => return Ok(i),
            Err(r) => reason = r,
        }
    }
    Err(reason)
}

/// The Host of a request: the header, else the URI's authority (absolute-form requests).
fn host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .filter(|h| !h.is_empty())
}

fn header<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    // `:authority` is HTTP/2's Host (the server sets Host from it); `:path` its target.
    if name.eq_ignore_ascii_case("host") || name == ":authority" {
        return host(req);
    }
    if name == ":path" {
        return req.uri().path_and_query().map(|p| p.as_str());
    }
    req.headers()
        .get(name)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn identify_one<B>(
    id: &IdentifierKind,
    prefix: &Path,
    req: &Request<B>,
) -> Result<Identified, String> {
    let named = |p: Path| Identified {
        path: prefix.concat(&p),
        rewrite_uri: None,
    };
    match id {
        IdentifierKind::HeaderToken { header: h } => match header(req, h) {
            Some(v) => Ok(named(Path::utf8([v]))),
            None => Err(format!("{h} header is absent")),
        },
        IdentifierKind::Header { header: h } => match header(req, h) {
            Some(v) => Path::read(v)
                .map(named)
                .map_err(|e| format!("{h} header is not a path: {e}")),
            None => Err(format!("{h} header is absent")),
        },
        IdentifierKind::MethodAndHost { http_uri_in_dst } => {
            let method = req.method().as_str();
            let uri: Vec<&str> = if *http_uri_in_dst {
                segments(req.uri().path()).collect()
            } else {
                Vec::new()
            };
            let mut elems: Vec<String> = Vec::new();
            match req.version() {
                http::Version::HTTP_10 => {
                    elems.push("1.0".into());
                    elems.push(method.into());
                }
                _ => {
                    let Some(h) = host(req) else {
                        return Err("Host header is absent".into());
                    };
                    elems.push("1.1".into());
                    elems.push(method.into());
                    elems.push(h.to_ascii_lowercase());
                }
            }
            elems.extend(uri.into_iter().map(String::from));
            Ok(named(Path::utf8(elems.iter())))
        }
        IdentifierKind::Path {
            segments: n,
            consume,
        } => {
            let path = req.uri().path();
            let segs: Vec<&str> = segments(path).collect();
            if segs.len() < *n {
                return Err("not enough segments in path".into());
            }
            let rewrite_uri = consume.then(|| {
                let mut rest = path;
                for _ in 0..*n {
                    rest = rest.trim_start_matches('/');
                    rest = rest.find('/').map_or("", |i| &rest[i..]);
                }
                let mut out = if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                };
                if let Some(q) = req.uri().query() {
                    out.push('?');
                    out.push_str(q);
                }
                out
            });
            Ok(Identified {
                path: prefix.concat(&Path::utf8(segs[..*n].iter())),
                rewrite_uri,
            })
        }
        IdentifierKind::Static { path } => Path::read(path).map(named).map_err(|e| e.to_string()),
        IdentifierKind::HeaderPath {
            header: h,
            segments: n,
        } => {
            let Some(v) = header(req, h) else {
                return Err(format!("{h} header is absent"));
            };
            let path = v.split(['?', '#']).next().unwrap_or("");
            let segs: Vec<&str> = segments(path).collect();
            match n {
                Some(n) if segs.len() < *n => Err("not enough segments in path".into()),
                Some(n) => Ok(named(Path::utf8(segs[..*n].iter()))),
                None => Ok(named(Path::utf8(segs.iter()))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        method: &str,
        uri: &str,
        version: http::Version,
        headers: &[(&str, &str)],
    ) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri).version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn check(id: IdentifierKind, r: Request<()>, want: Result<(&str, Option<&str>), &str>) {
        let got = identify(std::slice::from_ref(&id), &Path::read("/svc").unwrap(), &r);
        let got = got.map(|i| (i.path.show(), i.rewrite_uri));
        let want = want
            .map(|(p, u)| (p.to_string(), u.map(String::from)))
            .map_err(String::from);
        assert_eq!(got, want, "{id:?} {r:?}");
    }

    #[test]
    fn rows() {
        use http::Version as V;
        use IdentifierKind as I;
        let token = I::HeaderToken {
            header: "Host".into(),
        };
        check(
            token.clone(),
            req("GET", "/", V::HTTP_11, &[("host", "web")]),
            Ok(("/svc/web", None)),
        );
        check(
            token.clone(),
            req("GET", "/", V::HTTP_11, &[("host", "foo:8080")]),
            Ok(("/svc/foo:8080", None)),
        );
        check(
            token.clone(),
            req("GET", "http://abs.example/x", V::HTTP_11, &[]),
            Ok(("/svc/abs.example", None)),
        );
        check(
            token,
            req("GET", "/", V::HTTP_11, &[]),
            Err("Host header is absent"),
        );
        let custom = I::HeaderToken {
            header: "x-svc".into(),
        };
        check(
            custom,
            req("GET", "/", V::HTTP_11, &[("x-svc", "a.b")]),
            Ok(("/svc/a.b", None)),
        );
        let h = I::Header {
            header: "l5d-name".into(),
        };
        check(
            h.clone(),
            req("GET", "/", V::HTTP_11, &[("l5d-name", "/a/b")]),
            Ok(("/svc/a/b", None)),
        );
        check(
            h,
            req("GET", "/", V::HTTP_11, &[("l5d-name", "a")]),
            Err("l5d-name header is not a path: '/' expected but 'a' found at '[a]'"),
        );
        let mh = I::MethodAndHost {
            http_uri_in_dst: false,
        };
        check(
            mh.clone(),
            req("GET", "/x/y", V::HTTP_11, &[("host", "Web.Example")]),
            Ok(("/svc/1.1/GET/web.example", None)),
        );
        check(
            mh.clone(),
            req("POST", "/x", V::HTTP_10, &[]),
            Ok(("/svc/1.0/POST", None)),
        );
        check(
            mh,
            req("GET", "/", V::HTTP_11, &[]),
            Err("Host header is absent"),
        );
        let mhu = I::MethodAndHost {
            http_uri_in_dst: true,
        };
        check(
            mhu,
            req("GET", "/x/y?q=1", V::HTTP_11, &[("host", "web")]),
            Ok(("/svc/1.1/GET/web/x/y", None)),
        );
        let p1 = I::Path {
            segments: 1,
            consume: false,
        };
        check(
            p1.clone(),
            req("GET", "/users/42?a=b", V::HTTP_11, &[]),
            Ok(("/svc/users", None)),
        );
        check(
            p1,
            req("GET", "/", V::HTTP_11, &[]),
            Err("not enough segments in path"),
        );
        let p2 = I::Path {
            segments: 2,
            consume: true,
        };
        check(
            p2.clone(),
            req("GET", "/a/b/c/?x=1", V::HTTP_11, &[]),
            Ok(("/svc/a/b", Some("/c/?x=1"))),
        );
        check(
            p2,
            req("GET", "/a/b", V::HTTP_11, &[]),
            Ok(("/svc/a/b", Some("/"))),
        );
        let st = I::Static {
            path: "/fixed/name".into(),
        };
        check(
            st,
            req("GET", "/", V::HTTP_11, &[]),
            Ok(("/svc/fixed/name", None)),
        );
        // A list: the first that identifies wins.
        let list = [
            I::Path {
                segments: 3,
                consume: false,
            },
            I::HeaderToken {
                header: "Host".into(),
            },
        ];
        let r = req("GET", "/a", V::HTTP_11, &[("host", "web")]);
        let got = identify(&list, &Path::read("/svc").unwrap(), &r).unwrap();
        assert_eq!(got.path.show(), "/svc/web");
    }

    #[test]
    fn h2_rows() {
        use http::Version as V;
        use IdentifierKind as I;
        let path = |segments| I::HeaderPath {
            header: ":path".into(),
            segments,
        };
        // gRPC: /package.Service/Method.
        let grpc = || {
            req(
                "POST",
                "http://svc:80/hello.Greeter/SayHello",
                V::HTTP_2,
                &[],
            )
        };
        check(
            path(None),
            grpc(),
            Ok(("/svc/hello.Greeter/SayHello", None)),
        );
        check(path(Some(1)), grpc(), Ok(("/svc/hello.Greeter", None)));
        check(path(Some(3)), grpc(), Err("not enough segments in path"));
        check(
            path(None),
            req("GET", "/a/b?x=1", V::HTTP_2, &[]),
            Ok(("/svc/a/b", None)),
        );
        let custom = I::HeaderPath {
            header: "x-route".into(),
            segments: None,
        };
        check(
            custom.clone(),
            req("GET", "/", V::HTTP_2, &[("x-route", "/c/d")]),
            Ok(("/svc/c/d", None)),
        );
        check(
            custom,
            req("GET", "/", V::HTTP_2, &[]),
            Err("x-route header is absent"),
        );
        // :authority is the URI's authority in HTTP/2 (Host when a client sent one).
        let auth = I::HeaderToken {
            header: ":authority".into(),
        };
        check(auth.clone(), grpc(), Ok(("/svc/svc:80", None)));
        check(
            auth,
            req("GET", "/", V::HTTP_11, &[("host", "web")]),
            Ok(("/svc/web", None)),
        );
    }
}
