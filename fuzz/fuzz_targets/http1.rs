//! The HTTP/1 codec (`codec/http1`) on arbitrary bytes. The first byte picks what is fuzzed:
//! a request head (fed in two pieces; a head that parses is written back and must parse to the
//! same method, target, headers and framing), a response head, or a chunked body (decoded in
//! one go and in small steps, which must agree). Nothing may panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec_http1::decode::{Decoded, Decoder};
use switchboard_codec_http1::head::{self, Framing, RawTarget};

fn request(data: &[u8], cut: usize) {
    let cut = cut.min(data.len());
    let mut buf = BytesMut::from(&data[..cut]);
    let mut parsed = head::parse_request(&mut buf);
    if let Ok(None) = parsed {
        buf.extend_from_slice(&data[cut..]);
        parsed = head::parse_request(&mut buf);
    }
    let Ok(Some(h)) = parsed else { return };
    // Written back as HTTP/1.1, a head needs a Host (the proxy adds one for HTTP/1.0 clients
    // that sent none: `session::http1`).
    if !h.parts.headers.contains_key(http::header::HOST) {
        return;
    }
    let target = match h.parts.extensions.get::<RawTarget>() {
        Some(t) => t.0.to_vec(),
        None => h.parts.uri.to_string().into_bytes(),
    };
    let mut out = BytesMut::new();
    head::write_request(&mut out, &h.parts.method, &target, &h.parts.headers, None);
    let again = head::parse_request(&mut out)
        .expect("a head written back parses")
        .expect("and is complete");
    assert_eq!(again.parts.method, h.parts.method);
    assert_eq!(again.parts.uri, h.parts.uri);
    assert_eq!(again.parts.headers, h.parts.headers);
    // HTTP/1.0 heads go out as HTTP/1.1; their framing is the same.
    assert_eq!(again.framing, h.framing);
}

fn chunked(data: &[u8], step: usize) {
    let run = |step: usize| {
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf) {
                Err(_) => return None,
                Ok(Decoded::Data(b)) => got.extend_from_slice(&b),
                Ok(Decoded::Trailers(_)) => {}
                Ok(Decoded::End) => return Some(got),
                Ok(Decoded::More) => {
                    if fed == data.len() {
                        return d.eof().ok().map(|_| got);
                    }
                    let n = step.max(1).min(data.len() - fed);
                    buf.extend_from_slice(&data[fed..fed + n]);
                    fed += n;
                }
            }
        }
    };
    assert_eq!(run(data.len().max(1)), run(step));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => request(rest, (mode / 3) as usize * 4),
        1 => {
            let mut buf = BytesMut::from(rest);
            let _ = head::parse_response(&mut buf, &http::Method::GET);
        }
        _ => chunked(rest, (mode / 3) as usize % 7 + 1),
    }
});
