//! The operations listener (`[http] address`): `GET /metrics` (OpenMetrics text), `/healthz`
//! (liveness) and `/readyz` (readiness), each answered from [`crate::metrics`]. A few lines of
//! HTTP/1.1 over a tokio listener, one request per connection: scrapers and probes need no
//! more, and the daemon carries no HTTP server framework for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on http.address = \"{address}\" (set another, or \"\" for no listener): {source}")]
pub struct HttpError {
    pub address: String,
    #[source]
    pub source: std::io::Error,
}

/// The bound listener; [`Listener::serve`] answers until the task is dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    listener: TcpListener,
    metrics: Arc<Metrics>,
}

impl Listener {
    pub(crate) async fn bind(address: &str, metrics: Arc<Metrics>) -> Result<Listener, HttpError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| HttpError {
                address: address.to_string(),
                source,
            })?;
        Ok(Listener { listener, metrics })
    }

    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub(crate) async fn serve(self) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), answer(stream, &metrics)).await;
            });
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf);
    let mut words = request.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let now = Instant::now();
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        ("GET" | "HEAD", "/healthz") => text(metrics.health.live(now)),
        ("GET" | "HEAD", "/readyz") => text(metrics.health.ready(now)),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "try /metrics, /healthz or /readyz\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

fn text(r: Result<String, String>) -> (&'static str, &'static str, String) {
    match r {
        Ok(body) => ("200 OK", "text/plain; charset=utf-8", body),
        Err(body) => ("503 Service Unavailable", "text/plain; charset=utf-8", body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::default());
        let l = Listener::bind("127.0.0.1:0", metrics.clone())
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(l.serve());
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
        assert!(m.contains("# TYPE lakesink_commit_failures counter"), "{m}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let r = get(addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("first assignment"),
            "{r}"
        );
        metrics.health.assigned();
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        let taken = Listener::bind(&addr.to_string(), metrics).await;
        assert!(taken.unwrap_err().to_string().contains("http.address"));
    }
}
