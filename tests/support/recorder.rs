//! A raw HTTP/1.1 backend that records every complete request it receives, byte for byte
//! (head and de-chunked body), and answers each with a chosen canned response. It frames
//! requests by Content-Length or chunked only, and ignores anything it cannot frame: the point
//! is to see exactly what a proxy let through.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as it reached the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The request line, e.g. `GET /x HTTP/1.1`.
    pub line: String,
    /// Header lines as sent (`name: value`).
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    /// Answers every request with `response` (raw bytes, framing included).
    pub async fn start(response: &'static [u8]) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, c) = (Arc::clone(&seen), Arc::clone(&connections));
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = l.accept().await else {
                    return;
                };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(serve(sock, Arc::clone(&s), response));
            }
        });
        Recorder {
            addr,
            seen,
            connections,
        }
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut b = [0u8; 4096];
    match sock.read(&mut b).await {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&b[..n]);
            true
        }
        _ => false,
    }
}

async fn serve(mut sock: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, response: &'static [u8]) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(e) = find(&buf, b"\r\n\r\n") {
                break e;
            }
            if !fill(&mut sock, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or("").to_string();
        let headers: Vec<String> = lines.map(str::to_string).collect();
        let mut req = Seen {
            line,
            headers,
            body: Vec::new(),
        };
        if req
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let eol = loop {
                    if let Some(e) = find(&buf, b"\r\n") {
                        break e;
                    }
                    if !fill(&mut sock, &mut buf).await {
                        return;
                    }
                };
                let size_text = String::from_utf8_lossy(&buf[..eol]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                buf.drain(..eol + 2);
                while buf.len() < size + 2 {
                    if !fill(&mut sock, &mut buf).await {
                        return;
                    }
                }
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    while find(&buf, b"\r\n").is_none() {
                        if !fill(&mut sock, &mut buf).await {
                            return;
                        }
                    }
                    let e = find(&buf, b"\r\n").unwrap();
                    buf.drain(..e + 2);
                    break;
                }
                req.body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
            }
        } else if let Some(n) = req.header("content-length").and_then(|v| v.parse().ok()) {
            while buf.len() < n {
                if !fill(&mut sock, &mut buf).await {
                    return;
                }
            }
            req.body = buf.drain(..n).collect();
        }
        seen.lock().unwrap().push(req);
        if sock.write_all(response).await.is_err() {
            return;
        }
    }
}
