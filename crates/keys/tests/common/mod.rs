//! Test helpers: a tiny HTTP/1.1 server on loopback that counts requests,
//! and key/certificate builders.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokenward_jose::encode_b64url;

pub use tokenward_testkit::*;

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub if_none_match: Option<String>,
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Leave out Content-Length (the body ends when the connection closes).
    pub no_length: bool,
    /// Wait this long before sending anything.
    pub delay: Duration,
    /// Send the body one byte at a time with this pause between bytes.
    pub trickle: Option<Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            no_length: false,
            delay: Duration::ZERO,
            trickle: None,
        }
    }

    pub fn json(body: &Value) -> Reply {
        Reply::bytes(serde_json::to_vec(body).unwrap())
    }

    pub fn bytes(body: Vec<u8>) -> Reply {
        Reply {
            body,
            ..Reply::status(200)
        }
        .header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn redirect(location: &str) -> Reply {
        Reply::status(302).header("Location", location)
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A loopback server; routes can be changed while it runs.
pub struct Server {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Handler>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    not_modified: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Handler>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let not_modified: Arc<Mutex<usize>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, hits, nm, stop) = (
                routes.clone(),
                hits.clone(),
                not_modified.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                // Bounded by the stop flag, which Drop sets.
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (routes, hits, nm) = (routes.clone(), hits.clone(), nm.clone());
                            std::thread::spawn(move || serve(stream, &routes, &hits, &nm));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                // The listener is dropped here: further connects are refused.
            })
        };
        Server {
            addr,
            routes,
            hits,
            not_modified,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn route(&self, path: &str, f: impl Fn(&Request) -> Reply + Send + Sync + 'static) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), Arc::new(f));
    }

    /// Serves a fixed reply.
    pub fn reply(&self, path: &str, reply: Reply) {
        self.route(path, move |_| reply.clone());
    }

    /// Serves a JWKS with an ETag derived from its content, answering 304
    /// to a matching If-None-Match, with the given Cache-Control.
    pub fn jwks(&self, path: &str, jwks: &Value, cache_control: &str) {
        let body = serde_json::to_vec(jwks).unwrap();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let etag = format!("\"{}\"", &encode_b64url(digest.as_ref())[..16]);
        let cc = cache_control.to_owned();
        self.route(path, move |req| {
            if req.if_none_match.as_deref() == Some(etag.as_str()) {
                Reply::status(304)
                    .header("ETag", &etag)
                    .header("Cache-Control", &cc)
            } else {
                Reply::bytes(body.clone())
                    .header("ETag", &etag)
                    .header("Cache-Control", &cc)
            }
        });
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn not_modified(&self) -> usize {
        *self.not_modified.lock().unwrap()
    }

    /// Stops accepting connections (connects are refused afterwards).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    mut stream: TcpStream,
    routes: &Mutex<HashMap<String, Handler>>,
    hits: &Mutex<HashMap<String, usize>>,
    not_modified: &Mutex<usize>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let if_none_match = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
        .map(|(_, v)| v.trim().to_owned());
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let handler = routes.lock().unwrap().get(&path).cloned();
    let req = Request {
        path,
        if_none_match,
    };
    let reply = handler.map_or_else(|| Reply::status(404), |h| h(&req));
    if reply.status == 304 {
        *not_modified.lock().unwrap() += 1;
    }
    std::thread::sleep(reply.delay);
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    if !reply.no_length {
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    if stream.write_all(out.as_bytes()).is_err() {
        return;
    }
    match reply.trickle {
        None => {
            let _ = stream.write_all(&reply.body);
        }
        Some(pause) => {
            for b in &reply.body {
                if stream.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        }
    }
    let _ = stream.flush();
}
