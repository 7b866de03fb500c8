//! An HTTP fault-injecting proxy for the S3 server: each request is read whole, then — at the
//! configured rates — answered with a 503 `SlowDown`, dropped (the connection is reset without
//! an answer, sometimes after the request reached the server), or delayed, and otherwise
//! forwarded. One request per connection (`Connection: close`), so every fault is clean.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Fault rates in per mille of requests.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub slow_down: u64,
    pub reset_before: u64,
    pub reset_after: u64,
    pub delay: u64,
}

#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub slow_down: AtomicU64,
    pub reset_before: AtomicU64,
    pub reset_after: AtomicU64,
    pub delay: AtomicU64,
}

pub struct FaultProxy {
    pub url: String,
    pub counts: Arc<Counts>,
}

impl FaultProxy {
    pub fn start(upstream: &str, rates: Rates) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let upstream = upstream.trim_start_matches("http://").to_string();
        {
            let counts = counts.clone();
            std::thread::spawn(move || {
                for (n, client) in listener.incoming().enumerate() {
                    let Ok(client) = client else { continue };
                    let counts = counts.clone();
                    let upstream = upstream.clone();
                    std::thread::spawn(move || serve(client, &upstream, rates, &counts, n as u64));
                }
            });
        }
        FaultProxy { url, counts }
    }
}

/// A cheap deterministic hash, so a run's faults are spread evenly.
fn roll(n: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    x % 1000
}

fn serve(mut client: TcpStream, upstream: &str, rates: Rates, counts: &Counts, n: u64) {
    let Some(request) = read_request(&client) else {
        return;
    };
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let r = roll(n);
    let mut edge = rates.slow_down;
    if r < edge {
        counts.slow_down.fetch_add(1, Ordering::Relaxed);
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let _ = write!(
            client,
            "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    edge += rates.reset_before;
    if r < edge {
        counts.reset_before.fetch_add(1, Ordering::Relaxed);
        reset(client);
        return;
    }
    edge += rates.delay;
    if r < edge {
        counts.delay.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1_500));
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        reset(client);
        return;
    };
    if server.write_all(&request).is_err() {
        reset(client);
        return;
    }
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    if r >= edge && r < edge + rates.reset_after {
        // The server did the work; the client never hears of it.
        counts.reset_after.fetch_add(1, Ordering::Relaxed);
        reset(client);
        return;
    }
    let _ = client.write_all(&response);
    let _ = client.shutdown(Shutdown::Write);
}

/// Closes with a TCP reset (SO_LINGER 0).
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// Reads one request (head and content-length body) and rewrites it to `Connection: close`.
fn read_request(client: &TcpStream) -> Option<Vec<u8>> {
    let mut r = BufReader::new(client.try_clone().ok()?);
    let mut head = Vec::new();
    let mut len = 0usize;
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    head.extend_from_slice(line.as_bytes());
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let t = line.trim_end();
        if t.is_empty() {
            break;
        }
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        if lower.starts_with("transfer-encoding:") {
            panic!("the fault proxy does not handle chunked requests: {t}");
        }
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    head.extend_from_slice(&body);
    Some(head)
}
