//! A TCP proxy the tests put in front of a server to make it unreachable on demand: it passes
//! traffic, refuses connections (accepts and closes at once) or stalls them (accepts and never
//! answers). Switching away from `Pass` also cuts the connections already open, so a client's
//! keep-alive pool sees the outage too.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass = 0,
    Refuse = 1,
    Stall = 2,
}

pub struct Proxy {
    pub addr: String,
    mode: Arc<AtomicU8>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_string();
        {
            let mode = mode.clone();
            let open = open.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    match mode.load(Ordering::SeqCst) {
                        1 => {
                            let _ = client.shutdown(Shutdown::Both);
                        }
                        2 => {
                            // Hold it open, answer nothing; cut when the mode changes.
                            open.lock().unwrap().push(client);
                        }
                        _ => {
                            let Ok(server) = TcpStream::connect(&upstream) else {
                                continue;
                            };
                            {
                                let mut o = open.lock().unwrap();
                                o.push(client.try_clone().unwrap());
                                o.push(server.try_clone().unwrap());
                            }
                            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                            pipe(server, client);
                        }
                    }
                }
            });
        }
        Proxy { addr, mode, open }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_secs(300)));
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
