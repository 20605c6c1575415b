//! Loopback fixtures: a key setup shaped like Microsoft's `common` key set
//! (as in the trust tests, but with tokens minted for the real clock, since
//! the gateway verifies at the current time), a counting upstream server,
//! and a gateway started on ports chosen by binding :0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokenward_gateway::{AccessLog, Config, Gateway};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

pub use tokenward_testkit::*;

pub const EXCHANGE_PATH: &str = "/owa/service/GetAccessTokenForResource";

/// Tokens are minted for the real clock: the gateway verifies at its own.
pub fn now() -> i64 {
    unix_now()
}

pub const POLICY: &str = r#"
leeway_seconds = 60

[[issuer]]
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
tenants = ["3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91"]
audiences = ["api://orders"]
algorithms = ["RS256"]
jwks = "common.json"
max_lifetime_seconds = 86400

[[issuer]]
issuer = "https://as.example.com"
audiences = ["api://orders"]
algorithms = ["ES256"]
jwks = "as.json"
typ = "at+jwt"
required_claims = ["sub", "client_id", "jti"]

[[issuer]]
issuer = "https://hs.example.com"
audiences = ["api://hs"]
algorithms = ["HS256"]
secrets = "secrets.json"

[[key]]
kid = "revoked-1"
status = "revoked"

[[route]]
path = "/public/*"
auth = "none"

[[route]]
path = "/owa/service/GetAccessTokenForResource"
token_exchange = true
refuse_subject_issuers = ["https://as.example.com"]
"#;

/// The gateway tests' view of the shared setup: [`POLICY`] by default,
/// tokens minted for the real clock (the gateway verifies at the current
/// time).
pub trait GatewayEnv {
    /// The setup with [`POLICY`].
    fn new() -> Self;
    /// A legitimate enterprise access token for TENANT_A.
    fn legit(&self) -> String;
    /// A legitimate RFC 9068 token from the exchange's own issuer.
    fn as_token(&self) -> String;
}

impl GatewayEnv for Env {
    fn new() -> Self {
        Env::with_policy(POLICY)
    }

    fn legit(&self) -> String {
        sign(&self.enterprise, "ent-1", &claims())
    }

    fn as_token(&self) -> String {
        self.es
            .sign_token(
                &json!({"alg": "ES256", "kid": "as-1", "typ": "at+jwt"}),
                &as_claims(now()),
            )
            .unwrap()
    }
}

/// Claims of a legitimate enterprise access token for TENANT_A, valid now.
pub fn claims() -> Value {
    enterprise_claims(now())
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

/// A loopback upstream that records and counts every request it receives.
/// `/slow` answers after 400 ms, `/hang` after 10 s; everything else at once.
pub struct Upstream {
    pub addr: SocketAddr,
    pub count: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Notified on every body chunk received.
    pub chunk: Arc<Notify>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let chunk = Arc::new(Notify::new());
        let (c, s, n) = (count.clone(), seen.clone(), chunk.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (c, s, n) = (c.clone(), s.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (c, s, n) = (c.clone(), s.clone(), n.clone());
                        async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            let (parts, mut body) = req.into_parts();
                            let mut len = 0;
                            while let Some(frame) = body.frame().await {
                                if let Ok(data) = frame.unwrap().into_data() {
                                    len += data.len();
                                    n.notify_one();
                                }
                            }
                            s.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers.clone(),
                                body_len: len,
                            });
                            match parts.uri.path() {
                                "/slow" => tokio::time::sleep(Duration::from_millis(400)).await,
                                "/hang" => tokio::time::sleep(Duration::from_secs(10)).await,
                                _ => {}
                            }
                            let mut r = Response::new(Full::new(Bytes::from(format!(
                                "hello from upstream, {len} bytes received"
                            ))));
                            r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            count,
            seen,
            chunk,
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), tokenward_gateway::Error>>>,
}

impl Running {
    pub async fn start(env: &Env, upstream: &str, tweak: impl FnOnce(&mut Config)) -> Running {
        let log_path = env.dir.path().join("access.jsonl");
        let mut cfg = Config::new(
            env.policy_path.clone(),
            "127.0.0.1:0".parse().unwrap(),
            upstream.to_owned(),
        );
        cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        cfg.access_log = AccessLog::File(log_path.clone());
        cfg.reload_interval = Duration::from_millis(100);
        cfg.shutdown_grace = Duration::from_secs(5);
        tweak(&mut cfg);
        let gw = Gateway::bind(cfg).await.unwrap();
        let addr = gw.local_addr();
        let admin = gw.admin_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(gw.run(async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            admin,
            log_path,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.await.unwrap().unwrap();
        }
    }

    /// Begins shutdown without waiting.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<Result<(), tokenward_gateway::Error>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.take().unwrap()
    }

    /// The access log lines, waiting (up to 5 s) until there are at least `n`.
    pub async fn log_lines(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            // The writer may be half-way through a line: only whole lines
            // (ended by a newline) are read.
            let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            let lines: Vec<Value> = whole
                .lines()
                .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                assert!(
                    lines.len() >= n,
                    "wanted {n} log lines, have {}",
                    lines.len()
                );
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, without the final blank line)
/// plus `body` on a fresh connection and reads the whole response.
pub async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = head.replace('\n', "\r\n");
    if !req.ends_with("\r\n") {
        req.push_str("\r\n");
    }
    req.push_str("connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    parse_reply(&buf)
}

pub fn parse_reply(buf: &[u8]) -> Reply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

/// `GET path` with an optional bearer token.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\n"));
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\nhost: api.example\n{auth}"),
        b"",
    )
    .await
}
