//! HTTP/1.x message heads: parsing a request or response head out of a read buffer with
//! `httparse` (strict where framing is decided, lenient where nginx is: any request-target
//! byte `httparse` takes is forwarded unchanged), deciding the body's framing (RFC 9112
//! section 6), and writing heads back out. Header values are slices of the read buffer, not
//! copies. It does no I/O and knows nothing of routing.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri, Version};

/// Most header fields one head may carry (hyper's default too); more is 431.
pub const MAX_HEADERS: usize = 100;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Eof,
}

/// Why a head was refused, with the status a server answers and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct HeadError {
    pub status: StatusCode,
    pub what: &'static str,
}

fn bad(what: &'static str) -> HeadError {
    HeadError {
        status: StatusCode::BAD_REQUEST,
        what,
    }
}

/// The request target as the client sent it, when `http::Uri` would not take it as it is
/// (`/x?q={"a":1}`): forwarded byte for byte to HTTP/1 endpoints, while routing sees the
/// percent-encoded `Uri`.
#[derive(Clone, Debug)]
pub struct RawTarget(pub Bytes);

/// A parsed request head and what the connection needs to know of it.
pub struct RequestHead {
    pub parts: http::request::Parts,
    pub framing: Framing,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on a request with a body.
    pub expect_continue: bool,
}

/// A parsed response head.
pub struct ResponseHead {
    pub parts: http::response::Parts,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// The reason phrase an endpoint sent, when it is not the status's canonical one.
#[derive(Clone, Debug)]
pub struct Reason(pub Bytes);

/// What the framing and connection headers of a head said.
#[derive(Default)]
struct Seen {
    content_length: Option<u64>,
    bad_length: bool,
    transfer_encoding: bool,
    /// Every `Transfer-Encoding` value together is exactly `chunked`.
    chunked_only: bool,
    /// The last coding is `chunked`.
    chunked_last: bool,
    te_headers: usize,
    /// `Content-Length` came more than once, or as a list (of equal values).
    cl_repeated: bool,
    cl_headers: usize,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

fn eq_token(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// `Content-Length`: digits only (no sign, no spaces inside), a list of equal values allowed.
fn content_length(v: &[u8]) -> Option<u64> {
    let mut out: Option<u64> = None;
    for part in v.split(|b| *b == b',') {
        let p = trim(part);
        if p.is_empty() || p.len() > 19 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = p.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        match out {
            Some(m) if m != n => return None,
            _ => out = Some(n),
        }
    }
    out
}

impl Seen {
    fn header(&mut self, name: &HeaderName, v: &[u8]) {
        if *name == header::HOST {
            self.hosts += 1;
        } else if *name == header::CONTENT_LENGTH {
            self.cl_headers += 1;
            self.cl_repeated |= self.cl_headers > 1 || v.contains(&b',');
            match (content_length(v), self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => self.bad_length = true,
            }
        } else if *name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.te_headers += 1;
            let codings: Vec<&[u8]> = v.split(|b| *b == b',').map(trim).collect();
            self.chunked_only =
                self.te_headers == 1 && codings.len() == 1 && eq_token(codings[0], b"chunked");
            self.chunked_last = codings.last().is_some_and(|c| eq_token(c, b"chunked"));
        } else if *name == header::CONNECTION {
            for t in v.split(|b| *b == b',').map(trim) {
                if eq_token(t, b"close") {
                    self.close = true;
                } else if eq_token(t, b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if *name == header::EXPECT {
            self.expect_continue = eq_token(trim(v), b"100-continue");
        }
    }
}

fn slice(head: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        Bytes::new()
    } else {
        head.slice_ref(part)
    }
}

/// Builds the `HeaderMap`, values being slices of `head` (which `raw` points into).
fn headers(
    head: &Bytes,
    raw: &[httparse::Header<'_>],
    seen: &mut Seen,
) -> Result<HeaderMap, HeadError> {
    // Room for the headers a proxy adds (l5d-*, Via) without growing the map.
    let mut map = HeaderMap::with_capacity(raw.len() + 6);
    for h in raw {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        seen.header(&name, h.value);
        let value = HeaderValue::from_maybe_shared(slice(head, h.value))
            .map_err(|_| bad("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Header slots for httparse, left uninitialised (zeroing 100 of them cost more than parsing).
type Slots<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

fn slots<'b>() -> Slots<'b> {
    [std::mem::MaybeUninit::uninit(); MAX_HEADERS]
}

/// Takes the buffer whole as `Bytes`, so parsed parts can be sliced out of it without a copy.
fn freeze(buf: &mut BytesMut) -> Bytes {
    std::mem::take(buf).freeze()
}

/// Gives back what a parse did not use: the buffer itself when nothing was taken, else a
/// copy of the rest (pipelined requests, the start of a body), usually nothing.
fn restore(buf: &mut BytesMut, all: Bytes, used: usize) {
    if used == 0 {
        *buf = all
            .try_into_mut()
            .unwrap_or_else(|b| BytesMut::from(&b[..]));
    } else if all.len() > used {
        *buf = BytesMut::from(&all[used..]);
    }
}

/// An endpoint's equal `Content-Length`s (repeated, or a list) go on as one value: what is
/// forwarded is what was understood.
fn normalise_length(headers: &mut HeaderMap, seen: &Seen) {
    if let (true, Some(n)) = (seen.cl_repeated, seen.content_length) {
        if let Ok(v) = HeaderValue::from_str(&n.to_string()) {
            headers.insert(header::CONTENT_LENGTH, v);
        }
    }
}

fn parse_error(e: httparse::Error) -> HeadError {
    use httparse::Error as E;
    match e {
        E::TooManyHeaders => HeadError {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            what: "too many header fields",
        },
        E::HeaderName => bad("invalid header name (or whitespace before the colon)"),
        E::HeaderValue => bad("invalid header value"),
        E::NewLine => bad("invalid line ending"),
        E::Status => bad("invalid status"),
        E::Token => bad("invalid token in the request line"),
        E::Version => bad("invalid HTTP version"),
    }
}

/// Bytes `http::Uri` refuses in a path or query that nginx forwards; written `%XX` for routing.
fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
    ) || b >= 0x80
}

/// The target as a `Uri`; origin-form targets `http::Uri` refuses are taken percent-encoded.
fn target(raw: &Bytes) -> Result<(Uri, Option<RawTarget>), HeadError> {
    if let Ok(u) = Uri::from_maybe_shared(raw.clone()) {
        // `http::Uri` drops a fragment; nginx forwards it, so the bytes are kept.
        let kept =
            (raw.first() == Some(&b'/') && raw.contains(&b'#')).then(|| RawTarget(raw.clone()));
        return Ok((u, kept));
    }
    if raw.first() != Some(&b'/') {
        return Err(bad("invalid request target"));
    }
    let mut s = String::with_capacity(raw.len() + 16);
    for &b in raw.iter() {
        if needs_escape(b) {
            s.push_str(&format!("%{b:02X}"));
        } else {
            s.push(b as char);
        }
    }
    let u = Uri::try_from(s).map_err(|_| bad("invalid request target"))?;
    Ok((u, Some(RawTarget(raw.clone()))))
}

/// Parses a request head at the start of `buf`, taking it out of the buffer. `Ok(None)`: not
/// complete yet (the caller bounds how much it buffers).
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    // RFC 9112 section 2.2: empty lines before a request line are ignored (at most a few).
    let mut skip = 0;
    while skip < 8 && buf.len() >= skip + 2 && &buf[skip..skip + 2] == b"\r\n" {
        skip += 2;
    }
    let all = freeze(buf);
    let mut slots = slots();
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(&all[skip..], &mut slots) {
        Ok(httparse::Status::Complete(n)) => skip + n,
        Ok(httparse::Status::Partial) => {
            restore(buf, all, 0);
            return Ok(None);
        }
        Err(e) => return Err(parse_error(e)),
    };
    let method = req.method.ok_or(bad("no method"))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("invalid method"))?;
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(bad("invalid HTTP version")),
    };
    let path = req.path.ok_or(bad("no request target"))?;
    let (uri, raw_target) = target(&slice(&all, path.as_bytes()))?;
    let mut seen = Seen::default();
    let headers = headers(&all, req.headers, &mut seen)?;
    restore(buf, all.clone(), len);
    // Framing (RFC 9112 section 6.3), refusing what request smuggling relies on.
    if seen.bad_length {
        return Err(bad("invalid or conflicting Content-Length"));
    }
    // RFC 9112 section 3.2: an HTTP/1.1 request without Host is refused.
    if version == Version::HTTP_11 && seen.hosts == 0 {
        return Err(bad("no Host header"));
    }
    // Equal repeated lengths are allowed by RFC 9110 section 8.6, and refused by nginx: a
    // request that depends on a recipient's choice here is refused too.
    if seen.cl_repeated {
        return Err(bad("repeated Content-Length"));
    }
    let framing = if seen.transfer_encoding {
        if seen.content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        if version == Version::HTTP_10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !seen.chunked_only {
            return Err(bad("Transfer-Encoding other than chunked"));
        }
        Framing::Chunked
    } else {
        match seen.content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive = match version {
        Version::HTTP_10 => seen.keep_alive && !seen.close,
        _ => !seen.close,
    };
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(version);
    if let Some(t) = raw_target {
        b = b.extension(t);
    }
    let (mut parts, ()) = b
        .body(())
        .map_err(|_| bad("invalid request line"))?
        .into_parts();
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        expect_continue: seen.expect_continue
            && framing != Framing::Empty
            && version == Version::HTTP_11,
        framing,
        keep_alive,
    }))
}

/// Why an endpoint's response head was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResponseHeadError {
    #[error("invalid response head: {0}")]
    Invalid(&'static str),
}

/// Parses a response head at the start of `buf` (to a request of `method`). 1xx heads other
/// than 101 come back too; the caller skips them.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, ResponseHeadError> {
    let all = freeze(buf);
    let mut slots = slots();
    let mut resp = httparse::Response::new(&mut []);
    let inv = |e: httparse::Error| ResponseHeadError::Invalid(parse_error(e).what);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, &all, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            restore(buf, all, 0);
            return Ok(None);
        }
        Err(e) => return Err(inv(e)),
    };
    let code = resp.code.ok_or(ResponseHeadError::Invalid("no status"))?;
    let status =
        StatusCode::from_u16(code).map_err(|_| ResponseHeadError::Invalid("invalid status"))?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(ResponseHeadError::Invalid("invalid HTTP version")),
    };
    let reason = resp.reason.unwrap_or("");
    let canonical = status.canonical_reason().map(str::as_bytes) == Some(reason.as_bytes())
        || reason.is_empty();
    let reason = slice(&all, reason.as_bytes());
    let mut seen = Seen::default();
    let mut headers =
        headers(&all, resp.headers, &mut seen).map_err(|e| ResponseHeadError::Invalid(e.what))?;
    restore(buf, all.clone(), len);
    let mut keep_alive = match version {
        Version::HTTP_10 => seen.keep_alive && !seen.close,
        _ => !seen.close,
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The connection has switched protocols: it never carries another exchange.
        keep_alive = false;
    }
    if version == Version::HTTP_10 && seen.transfer_encoding {
        // RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        keep_alive = false;
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || *method == Method::HEAD;
    let framing = if bodiless {
        Framing::Empty
    } else if seen.transfer_encoding {
        // RFC 9112 section 6.3: Transfer-Encoding wins; a Content-Length beside it is dropped
        // and the connection not reused (it may be a response-splitting attempt).
        if seen.content_length.is_some() || seen.bad_length {
            headers.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        if seen.chunked_last {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Eof
        }
    } else if seen.bad_length {
        return Err(ResponseHeadError::Invalid(
            "invalid or conflicting Content-Length",
        ));
    } else {
        match seen.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                keep_alive = false;
                Framing::Eof
            }
        }
    };
    if !seen.transfer_encoding {
        normalise_length(&mut headers, &seen);
    }
    let mut b = http::Response::builder().status(status).version(version);
    if !canonical {
        b = b.extension(Reason(reason));
    }
    let (mut parts, ()) = b
        .body(())
        .map_err(|_| ResponseHeadError::Invalid("invalid status line"))?
        .into_parts();
    parts.headers = headers;
    Ok(Some(ResponseHead {
        parts,
        framing,
        keep_alive,
    }))
}

fn put_headers(out: &mut BytesMut, h: &HeaderMap) {
    for (name, value) in h {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// Writes a request head: `target` as given, always HTTP/1.1; `chunked` adds
/// `Transfer-Encoding: chunked` when the headers carry no framing of their own.
pub fn write_request(
    out: &mut BytesMut,
    method: &Method,
    target: &[u8],
    headers: &HeaderMap,
    add: Option<Framing>,
) {
    out.reserve(64 + target.len() + headers.len() * 32);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target);
    out.put_slice(b" HTTP/1.1\r\n");
    put_headers(out, headers);
    put_framing(out, add);
    out.put_slice(b"\r\n");
}

fn put_framing(out: &mut BytesMut, add: Option<Framing>) {
    match add {
        Some(Framing::Chunked) => out.put_slice(b"transfer-encoding: chunked\r\n"),
        Some(Framing::Length(n)) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa(n).as_bytes());
            out.put_slice(b"\r\n");
        }
        _ => {}
    }
}

/// Decimal digits of `n`, without allocating.
pub struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

pub fn itoa(mut n: u64) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

/// What a response head says of the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnHeader {
    None,
    Close,
    KeepAlive,
}

/// Writes a response head in `version` (the client's), with the framing header `add` (when
/// the headers carry none) and the `Connection` header `conn`.
pub fn write_response(
    out: &mut BytesMut,
    version: Version,
    parts: &http::response::Parts,
    add: Option<Framing>,
    conn: ConnHeader,
) {
    out.reserve(64 + parts.headers.len() * 32);
    out.put_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.put_slice(parts.status.as_str().as_bytes());
    out.put_u8(b' ');
    match parts.extensions.get::<Reason>() {
        Some(r) => out.put_slice(&r.0),
        None => out.put_slice(
            parts
                .status
                .canonical_reason()
                .unwrap_or("Unknown")
                .as_bytes(),
        ),
    }
    out.put_slice(b"\r\n");
    put_headers(out, &parts.headers);
    put_framing(out, add);
    match conn {
        ConnHeader::Close => out.put_slice(b"connection: close\r\n"),
        ConnHeader::KeepAlive => out.put_slice(b"connection: keep-alive\r\n"),
        ConnHeader::None => {}
    }
    out.put_slice(b"\r\n");
}

/// The message's `Content-Length`, when it has one valid value.
pub fn content_length_of(h: &HeaderMap) -> Option<u64> {
    let mut it = h.get_all(http::header::CONTENT_LENGTH).iter();
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let s = v.to_str().ok()?.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `Connection: upgrade` with an `Upgrade` header.
pub fn is_upgrade_request(h: &HeaderMap) -> bool {
    h.contains_key(http::header::UPGRADE)
        && h.get_all(http::header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `raw`, with a `Host` added after the request line when it has none (every
    /// HTTP/1.1 request needs one; the rows test other things).
    fn req(raw: &str) -> Result<Option<RequestHead>, HeadError> {
        let raw = if raw.to_ascii_lowercase().contains("host:") {
            raw.to_string()
        } else {
            raw.replacen("\r\n", "\r\nHost: t\r\n", 1)
        };
        parse_request(&mut BytesMut::from(raw.as_bytes()))
    }

    #[test]
    fn header_count_is_bounded() {
        let fields: String = (0..MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let at = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            &fields[fields.find("x-1:").unwrap()..]
        );
        assert!(
            req(&at).unwrap().is_some(),
            "exactly {MAX_HEADERS} fields are taken"
        );
        let over = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let e = req(&over).err().unwrap();
        assert_eq!(e.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn host_and_repeated_lengths() {
        let bare = |raw: &str| parse_request(&mut BytesMut::from(raw.as_bytes()));
        assert!(bare("GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(bare("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
        assert!(req("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").is_err());
        let mut r = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"[..],
        );
        let h = parse_response(&mut r, &Method::GET).unwrap().unwrap();
        assert_eq!(h.parts.headers.get_all("content-length").iter().count(), 1);
        let mut r = BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..]);
        assert!(
            !parse_response(&mut r, &Method::GET)
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    /// Each row: a request head and whether it is taken (Some(framing)) or refused.
    #[test]
    fn request_framing() {
        let check = |raw: &str, want: Option<Framing>| {
            let got = req(raw).map(|h| h.map(|h| h.framing));
            match want {
                Some(f) => assert_eq!(got, Ok(Some(f)), "{raw:?}"),
                None => assert!(got.is_err(), "{raw:?} gave {got:?}"),
            }
        };
        let ok = |f| Some(f);
        check("GET / HTTP/1.1\r\nHost: a\r\n\r\n", ok(Framing::Empty));
        check(
            "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            ok(Framing::Length(5)),
        );
        check(
            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            ok(Framing::Empty),
        );
        check("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", None);
        check(
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ok(Framing::Chunked),
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
            ok(Framing::Chunked),
        );
        // Smuggling shapes (PortSwigger's and the HTTP desync papers' CL.TE, TE.CL, TE.TE).
        check(
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            None,
        );
        check("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", None);
        check("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", None);
        check("POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", None);
        check("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n", None);
        check("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", None);
        check(
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            None,
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ok(Framing::Chunked),
        );
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n",
            ok(Framing::Chunked),
        );
        check(
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            None,
        );
        // Whitespace before the colon; obs-fold; bare CR; NUL in a value.
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            None,
        );
        check("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", None);
        check("GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n", None);
        check("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", None);
        check("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", None);
        check("GET / HTTP/1.1\r\n Host: a\r\n\r\n", None);
        check(
            "GET / HTTP/1.1\r\n\tTransfer-Encoding: chunked\r\n\r\n",
            None,
        );
        check("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n", None);
        check("GET / HTTP/2.0\r\n\r\n", None);
        check("GET  / HTTP/1.1\r\n\r\n", None);
        check("GET / HTTP/1.1 \r\n\r\n", None);
    }

    #[test]
    fn lenient_targets_are_kept_byte_for_byte() {
        let check = |target: &str, uri: &str| {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let h = req(&raw).unwrap().unwrap();
            assert_eq!(h.parts.uri.to_string(), uri, "{target}");
            let kept = h.parts.extensions.get::<RawTarget>().map(|t| t.0.clone());
            if uri == target {
                assert!(kept.is_none(), "{target}");
            } else {
                assert_eq!(kept.as_deref(), Some(target.as_bytes()), "{target}");
            }
        };
        check("/x", "/x");
        check("/x?a=1&b=2", "/x?a=1&b=2");
        check(r#"/x?q={"a":1}"#, "/x?q=%7B%22a%22:1%7D");
        check("/x?a=>b", "/x?a=%3Eb");
        check("/a|b^c`d\\e", "/a%7Cb%5Ec%60d%5Ce");
        check("http://web/echo", "http://web/echo");
        check("*", "*");
        let h = req("GET /x#frag HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.parts.extensions.get::<RawTarget>().unwrap().0, "/x#frag");
        assert!(req("GET x{ HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn incomplete_heads_wait_and_blank_lines_are_skipped() {
        assert!(req("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let mut b = BytesMut::from(&b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2"[..]);
        let h = parse_request(&mut b).unwrap().unwrap();
        assert_eq!(h.parts.uri, "/");
        assert_eq!(&b[..], b"GET /2");
    }

    #[test]
    fn connection_and_expect() {
        let h = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = req("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = req("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
    }

    #[test]
    fn response_framing() {
        let check = |raw: &str, method: Method, want: Option<(Framing, bool)>| {
            let got = parse_response(&mut BytesMut::from(raw.as_bytes()), &method)
                .map(|h| h.map(|h| (h.framing, h.keep_alive)));
            match want {
                Some(w) => assert_eq!(got.unwrap(), Some(w), "{raw:?}"),
                None => assert!(got.is_err(), "{raw:?}"),
            }
        };
        use Framing::*;
        check(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            Method::GET,
            Some((Length(2), true)),
        );
        check("HTTP/1.1 200 OK\r\n\r\n", Method::GET, Some((Eof, false)));
        check(
            "HTTP/1.1 204 No Content\r\n\r\n",
            Method::GET,
            Some((Empty, true)),
        );
        check(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            Method::GET,
            Some((Empty, true)),
        );
        check(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            Method::HEAD,
            Some((Empty, true)),
        );
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
            Some((Chunked, true)),
        );
        // TE beside CL: chunked, Content-Length dropped, connection not reused.
        check(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
            Some((Chunked, false)),
        );
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Method::GET,
            Some((Eof, false)),
        );
        check(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            Method::GET,
            None,
        );
        check(
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            Method::GET,
            None,
        );
        check(
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
            Method::GET,
            Some((Length(2), false)),
        );
        check("HTTP/1.1 2000 OK\r\n\r\n", Method::GET, None);
        check("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", Method::GET, None);
    }

    #[test]
    fn heads_are_written_back() {
        let h = req("GET /x?q=\"{}\" HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = BytesMut::new();
        let t = h.parts.extensions.get::<RawTarget>().unwrap();
        write_request(
            &mut out,
            &h.parts.method,
            &t.0,
            &h.parts.headers,
            Some(Framing::Length(12)),
        );
        assert_eq!(
            &out[..],
            b"GET /x?q=\"{}\" HTTP/1.1\r\nhost: a\r\nx-y: z\r\ncontent-length: 12\r\n\r\n"
        );
        let mut r = parse_response(
            &mut BytesMut::from(&b"HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n"[..]),
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        r.parts.headers.clear();
        let mut out = BytesMut::new();
        write_response(
            &mut out,
            Version::HTTP_10,
            &r.parts,
            None,
            ConnHeader::Close,
        );
        assert_eq!(&out[..], b"HTTP/1.0 200 Fine\r\nconnection: close\r\n\r\n");
        assert_eq!(itoa(0).as_bytes(), b"0");
        assert_eq!(itoa(u64::MAX).as_bytes(), b"18446744073709551615");
    }
}
