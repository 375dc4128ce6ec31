//! The `httpAccessLog`: one line per request in the Common Log Format extended with the
//! referer and user agent (as Linkerd's access logger writes it), handed to a background task
//! that owns the file, so logging never blocks the request path. A full queue drops lines
//! (counted) rather than slow requests down.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::metrics::Counter;

/// How many lines may wait for the writer.
const QUEUE: usize = 8192;

/// A handle to the access log writer.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
    dropped: Counter,
}

/// What one line says.
pub struct Entry<'a> {
    pub remote: std::net::SocketAddr,
    pub method: &'a str,
    pub uri: &'a str,
    pub version: http::Version,
    pub status: u16,
    pub size: Option<u64>,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl AccessLog {
    /// Opens (appending, unless `append` is false) `path` and starts its writer.
    pub async fn open(path: &Path, append: bool, dropped: Counter) -> std::io::Result<AccessLog> {
        let mut opts = tokio::fs::OpenOptions::new();
        opts.create(true);
        if append {
            opts.append(true);
        } else {
            opts.write(true).truncate(true);
        }
        let file = opts.open(path).await?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::spawn(async move {
            let mut w = tokio::io::BufWriter::new(file);
            while let Some(line) = rx.recv().await {
                let mut ok = w.write_all(line.as_bytes()).await.is_ok();
                // Write out whatever else is queued before flushing.
                while let Ok(more) = rx.try_recv() {
                    ok &= w.write_all(more.as_bytes()).await.is_ok();
                }
                ok &= w.flush().await.is_ok();
                if !ok {
                    tracing::warn!("access log write failed");
                }
            }
        });
        Ok(AccessLog { tx, dropped })
    }

    pub fn log(&self, e: &Entry<'_>) {
        let version = match e.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let size = e.size.map_or_else(|| "-".to_string(), |s| s.to_string());
        let line = format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
            e.remote.ip(),
            clf_time(std::time::SystemTime::now()),
            e.method,
            e.uri,
            version,
            e.status,
            size,
            e.referer.unwrap_or("-"),
            e.user_agent.unwrap_or("-"),
        );
        if self.tx.try_send(line).is_err() {
            self.dropped.incr();
        }
    }
}

/// `26/Nov/2026:01:02:03 +0000` (UTC).
fn clf_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{d:02}/{}/{y}:{h:02}:{m:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_dates() {
        let t = |s: u64| clf_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(t(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(t(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(t(1_795_654_923), "26/Nov/2026:01:02:03 +0000");
    }
}
