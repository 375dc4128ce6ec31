//! Body decoding: `Content-Length`, chunked (strict: hex sizes without sign or prefix, CRLF
//! line ends only, bounded size lines and trailers) and close-delimited bodies, decoded in
//! place from a read buffer into `Bytes` slices (no copy). Body encoding for the way out is
//! here too. It does no I/O.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;

use super::head::{self, Framing};

/// Longest chunk-size line accepted, extensions included.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What a body decoder found in the buffer.
#[derive(Debug)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// More bytes are needed.
    More,
}

/// A malformed body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed body: {0}")]
pub struct DecodeError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Decodes one body.
#[derive(Debug)]
pub enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Eof,
    Done,
}

impl Decoder {
    pub fn new(f: Framing) -> Decoder {
        match f {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunk::Size),
            Framing::Eof => Decoder::Eof,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }

    /// Takes what it can from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        loop {
            match self {
                Decoder::Done => return Ok(Decoded::End),
                Decoder::Length(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    let data = buf.split_to(take).freeze();
                    if *n == 0 {
                        *self = Decoder::Done;
                    }
                    return Ok(Decoded::Data(data));
                }
                Decoder::Eof => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Decoder::Chunked(state) => match *state {
                    Chunk::Size => {
                        let Some(eol) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                            return Ok(Decoded::More);
                        };
                        let size = chunk_size(&buf[..eol])?;
                        let _ = buf.split_to(eol + 2);
                        *state = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(n) => {
                        if buf.is_empty() {
                            return Ok(Decoded::More);
                        }
                        let take = n.min(buf.len() as u64) as usize;
                        let left = n - take as u64;
                        *state = if left == 0 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left)
                        };
                        return Ok(Decoded::Data(buf.split_to(take).freeze()));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Decoded::More);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(DecodeError("chunk data not followed by CRLF"));
                        }
                        let _ = buf.split_to(2);
                        *state = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                            let _ = buf.split_to(2);
                            *self = Decoder::Done;
                            return Ok(Decoded::End);
                        }
                        let Some(end) = find(buf, b"\r\n\r\n", MAX_TRAILER_BYTES) else {
                            if buf.len() > MAX_TRAILER_BYTES {
                                return Err(DecodeError("trailer section too large"));
                            }
                            if bare_lf(buf) {
                                return Err(DecodeError("bare LF in trailers"));
                            }
                            return Ok(Decoded::More);
                        };
                        if bare_lf(&buf[..end + 4]) {
                            return Err(DecodeError("bare LF in trailers"));
                        }
                        let section = buf.split_to(end + 4).freeze();
                        let trailers = trailers(&section)?;
                        *self = Decoder::Done;
                        return Ok(Decoded::Trailers(trailers));
                    }
                },
            }
        }
    }

    /// The connection ended: the end of a close-delimited body, an error for the others.
    pub fn eof(&mut self) -> Result<Decoded, DecodeError> {
        match self {
            Decoder::Eof | Decoder::Done => {
                *self = Decoder::Done;
                Ok(Decoded::End)
            }
            _ => Err(DecodeError("connection closed before the body ended")),
        }
    }
}

fn bare_lf(buf: &[u8]) -> bool {
    buf.iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || buf[i - 1] != b'\r'))
}

fn find(buf: &[u8], needle: &[u8], within: usize) -> Option<usize> {
    let hay = &buf[..buf.len().min(within + needle.len())];
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The end of a line (its CR), refusing a bare LF and a line past `max`.
fn find_crlf(buf: &[u8], max: usize) -> Result<Option<usize>, DecodeError> {
    let scan = &buf[..buf.len().min(max + 2)];
    match scan.iter().position(|b| *b == b'\n') {
        Some(0) => Err(DecodeError("bare LF")),
        Some(i) if scan[i - 1] != b'\r' => Err(DecodeError("bare LF")),
        Some(i) => Ok(Some(i - 1)),
        None if buf.len() > max => Err(DecodeError("chunk size line too long")),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: 1 to 16 hex digits, then nothing or an extension.
fn chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(DecodeError("invalid chunk size"));
    }
    if digits > 16 {
        return Err(DecodeError("chunk size too large"));
    }
    let rest = &line[digits..];
    if !rest.is_empty() {
        // An extension: `;` after optional whitespace, visible bytes only.
        let ext = rest.iter().position(|b| *b != b' ' && *b != b'\t');
        match ext {
            Some(i) if rest[i] == b';' => {}
            _ => return Err(DecodeError("invalid chunk size")),
        }
        if rest
            .iter()
            .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(DecodeError("invalid chunk extension"));
        }
    }
    let mut n = 0u64;
    for b in &line[..digits] {
        let d = (*b as char).to_digit(16).unwrap_or(0) as u64;
        n = n
            .checked_mul(16)
            .ok_or(DecodeError("chunk size too large"))?
            + d;
    }
    Ok(n)
}

const FORBIDDEN_TRAILERS: [http::header::HeaderName; 8] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::HOST,
    http::header::CONNECTION,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
    http::header::CONTENT_TYPE,
];

fn trailers(section: &Bytes) -> Result<HeaderMap, DecodeError> {
    let mut raw = [httparse::EMPTY_HEADER; head::MAX_HEADERS];
    match httparse::parse_headers(section, &mut raw) {
        Ok(httparse::Status::Complete((_, hs))) => {
            let mut map = HeaderMap::with_capacity(hs.len());
            for h in hs {
                let name = http::header::HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| DecodeError("invalid trailer name"))?;
                // RFC 9110 section 6.5.1: framing, routing and connection fields are not
                // trailers; they are dropped rather than passed on.
                if FORBIDDEN_TRAILERS.contains(&name) {
                    continue;
                }
                let value = http::HeaderValue::from_bytes(h.value)
                    .map_err(|_| DecodeError("invalid trailer value"))?;
                map.append(name, value);
            }
            Ok(map)
        }
        _ => Err(DecodeError("invalid trailer section")),
    }
}

/// Encodes one body for the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Exactly this many bytes are still to be written.
    Length(u64),
    Chunked,
    /// Close-delimited (an HTTP/1.0 client with no length known).
    Eof,
    /// Nothing may be written (HEAD, 204, 304).
    None,
}

/// A body that broke its declared framing.
#[derive(Debug, thiserror::Error)]
#[error("body longer than its Content-Length")]
pub struct Overrun;

impl Encoder {
    /// The bytes that put `data` on the wire, appended to `out` (small ones copied next to
    /// their chunk header) or queued after it.
    pub fn data(&mut self, data: Bytes, hdr: &mut BytesMut) -> Result<Option<Bytes>, Overrun> {
        match self {
            Encoder::None => Ok(None),
            Encoder::Length(n) => {
                if data.len() as u64 > *n {
                    return Err(Overrun);
                }
                *n -= data.len() as u64;
                Ok(Some(data))
            }
            Encoder::Eof => Ok(Some(data)),
            Encoder::Chunked => {
                if data.is_empty() {
                    return Ok(None);
                }
                put_hex(hdr, data.len());
                hdr.put_slice(b"\r\n");
                if data.len() <= 1024 {
                    hdr.put_slice(&data);
                    hdr.put_slice(b"\r\n");
                    return Ok(None);
                }
                Ok(Some(data))
            }
        }
    }

    /// What follows a queued chunk's data.
    pub fn after_data(&self) -> &'static [u8] {
        if *self == Encoder::Chunked {
            b"\r\n"
        } else {
            b""
        }
    }

    /// The body's end (with trailers, written only in chunked framing).
    pub fn end(&mut self, trailers: Option<&HeaderMap>, out: &mut BytesMut) -> Result<(), Overrun> {
        match self {
            Encoder::Chunked => {
                out.put_slice(b"0\r\n");
                if let Some(t) = trailers {
                    for (k, v) in t {
                        out.put_slice(k.as_str().as_bytes());
                        out.put_slice(b": ");
                        out.put_slice(v.as_bytes());
                        out.put_slice(b"\r\n");
                    }
                }
                out.put_slice(b"\r\n");
                Ok(())
            }
            Encoder::Length(0) | Encoder::Eof | Encoder::None => Ok(()),
            Encoder::Length(_) => Err(Overrun),
        }
    }
}

fn put_hex(out: &mut BytesMut, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed one byte at a time and all at once; both must agree.
    fn decode_all(f: Framing, input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), DecodeError> {
        let run = |step: usize| -> Result<(Vec<u8>, Option<HeaderMap>), DecodeError> {
            let mut d = Decoder::new(f);
            let mut buf = BytesMut::new();
            let (mut data, mut tr) = (Vec::new(), None);
            let mut fed = 0;
            loop {
                match d.decode(&mut buf)? {
                    Decoded::Data(b) => data.extend_from_slice(&b),
                    Decoded::Trailers(t) => tr = Some(t),
                    Decoded::End => return Ok((data, tr)),
                    Decoded::More => {
                        if fed >= input.len() {
                            match d.eof()? {
                                Decoded::End => return Ok((data, tr)),
                                _ => unreachable!(),
                            }
                        }
                        let n = step.min(input.len() - fed);
                        buf.extend_from_slice(&input[fed..fed + n]);
                        fed += n;
                    }
                }
            }
        };
        let a = run(1);
        let b = run(input.len().max(1));
        assert_eq!(a.as_ref().map(|x| &x.0), b.as_ref().map(|x| &x.0));
        b
    }

    #[test]
    fn chunked_rows() {
        let check = |input: &str, want: Option<&str>| {
            let got = decode_all(Framing::Chunked, input.as_bytes());
            match want {
                Some(w) => assert_eq!(String::from_utf8(got.unwrap().0).unwrap(), w, "{input:?}"),
                None => assert!(got.is_err(), "{input:?}"),
            }
        };
        check("5\r\nhello\r\n0\r\n\r\n", Some("hello"));
        check(
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            Some("hello world"),
        );
        check("A\r\n0123456789\r\n0\r\n\r\n", Some("0123456789"));
        check("5;ext=1\r\nhello\r\n0\r\n\r\n", Some("hello"));
        check("5 ;ext\r\nhello\r\n0\r\n\r\n", Some("hello"));
        check("000005\r\nhello\r\n0\r\n\r\n", Some("hello"));
        check("0\r\n\r\n", Some(""));
        // Refused: a bad size, a prefix or sign, a bare LF, missing CRLF after data, overflow,
        // control bytes in an extension, a truncated body.
        check("zz\r\nhello\r\n0\r\n\r\n", None);
        check("0x5\r\nhello\r\n0\r\n\r\n", None);
        check("-5\r\nhello\r\n0\r\n\r\n", None);
        check("+5\r\nhello\r\n0\r\n\r\n", None);
        check(" 5\r\nhello\r\n0\r\n\r\n", None);
        check("5\nhello\r\n0\r\n\r\n", None);
        check("5\r\nhelloXX0\r\n\r\n", None);
        check("5\r\nhello\n0\r\n\r\n", None);
        check("10000000000000000\r\n", None);
        check("ffffffffffffffff0\r\n", None);
        check("5;a\0b\r\nhello\r\n0\r\n\r\n", None);
        check("5 5\r\nhello\r\n0\r\n\r\n", None);
        check("5\r\nhel", None);
        check("5\r\nhello\r\n", None);
    }

    #[test]
    fn chunk_size_lines_are_bounded() {
        let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert!(decode_all(Framing::Chunked, long.as_bytes()).is_err());
        let ok = format!(
            "5;{}\r\nhello\r\n0\r\n\r\n",
            "e".repeat(MAX_CHUNK_LINE - 10)
        );
        assert_eq!(
            decode_all(Framing::Chunked, ok.as_bytes()).unwrap().0,
            b"hello"
        );
    }

    #[test]
    fn forbidden_trailers_are_dropped() {
        let (_, tr) = decode_all(
            Framing::Chunked,
            b"0\r\ncontent-length: 5\r\nTransfer-Encoding: chunked\r\nhost: x\r\nx-t: 1\r\n\r\n",
        )
        .unwrap();
        let tr = tr.unwrap();
        assert_eq!(tr.len(), 1, "{tr:?}");
        assert_eq!(tr["x-t"], "1");
    }

    #[test]
    fn chunked_trailers() {
        let (data, tr) = decode_all(
            Framing::Chunked,
            b"3\r\nabc\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(data, b"abc");
        let tr = tr.unwrap();
        assert_eq!(tr["x-sum"], "1");
        assert_eq!(tr["x-b"], "2");
        assert!(decode_all(Framing::Chunked, b"0\r\nx sum: 1\r\n\r\n").is_err());
        let big = format!("0\r\nx: {}\r\n\r\n", "a".repeat(MAX_TRAILER_BYTES + 10));
        assert!(decode_all(Framing::Chunked, big.as_bytes()).is_err());
    }

    #[test]
    fn length_and_eof() {
        let (d, _) = decode_all(Framing::Length(5), b"hello").unwrap();
        assert_eq!(d, b"hello");
        assert!(decode_all(Framing::Length(5), b"hel").is_err());
        let (d, _) = decode_all(Framing::Eof, b"until close").unwrap();
        assert_eq!(d, b"until close");
        // Bytes past a length belong to the next message.
        let mut buf = BytesMut::from(&b"helloGET"[..]);
        let mut dec = Decoder::new(Framing::Length(5));
        assert!(matches!(dec.decode(&mut buf), Ok(Decoded::Data(b)) if &b[..] == b"hello"));
        assert!(matches!(dec.decode(&mut buf), Ok(Decoded::End)));
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn chunked_encoding_round_trips() {
        let mut enc = Encoder::Chunked;
        let mut out = BytesMut::new();
        let big = Bytes::from(vec![b'x'; 5000]);
        assert!(enc
            .data(Bytes::from_static(b"hi"), &mut out)
            .unwrap()
            .is_none());
        let queued = enc.data(big.clone(), &mut out).unwrap().unwrap();
        out.extend_from_slice(&queued);
        out.extend_from_slice(enc.after_data());
        let mut t = HeaderMap::new();
        t.insert("x-t", "v".parse().unwrap());
        enc.end(Some(&t), &mut out).unwrap();
        let (data, tr) = decode_all(Framing::Chunked, &out).unwrap();
        assert_eq!(data.len(), 5002);
        assert_eq!(tr.unwrap()["x-t"], "v");
        let mut l = Encoder::Length(3);
        assert!(l.data(Bytes::from_static(b"abcd"), &mut out).is_err());
        let mut l = Encoder::Length(3);
        l.data(Bytes::from_static(b"ab"), &mut out).unwrap();
        assert!(l.end(None, &mut out).is_err());
    }
}
