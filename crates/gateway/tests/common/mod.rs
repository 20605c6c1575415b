//! Loopback fixtures: a key setup shaped like Microsoft's `common` key set
//! (as in the trust tests, but with tokens minted for the real clock, since
//! the gateway verifies at the current time), a counting upstream server,
//! and a gateway started on ports chosen by binding :0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokenward_gateway::{AccessLog, Config, Gateway};
use tokenward_jose::{encode_b64url, Algorithm, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

pub const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
pub const TENANT_A: &str = "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91";
pub const TENANT_B: &str = "7d2e9b14-0c3a-4f5e-8b61-9a0d2c4e6f83";
pub const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
pub const AUD: &str = "api://orders";
pub const STORM_KID: &str = "1LTMzakihiRla_8z2BEJVXeWMqo";
pub const AS_ISSUER: &str = "https://as.example.com";
pub const EXCHANGE_PATH: &str = "/owa/service/GetAccessTokenForResource";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn issuer_for(tenant: &str) -> String {
    TEMPLATE.replace("{tenantid}", tenant)
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

pub struct Env {
    pub dir: tempfile::TempDir,
    pub enterprise: SigningKey,
    pub consumer: SigningKey,
    pub revoked: SigningKey,
    pub expired_cert: SigningKey,
    pub es: SigningKey,
    pub hs: SigningKey,
    pub attacker: SigningKey,
    pub policy_path: PathBuf,
}

/// A self-signed certificate for `key` valid between two dates, base64 DER.
pub fn cert_b64(key: &SigningKey, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> String {
    let der = key.to_pkcs8().unwrap();
    let kp = rcgen::KeyPair::try_from(der.as_slice()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["sts.example".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&kp).unwrap();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(cert.der())
}

impl Env {
    pub fn new() -> Env {
        Env::with_policy(POLICY)
    }

    pub fn with_policy(policy: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let rs = || SigningKey::generate(Algorithm::RS256).unwrap();
        let env = Env {
            enterprise: rs(),
            consumer: rs(),
            revoked: rs(),
            expired_cert: rs(),
            es: SigningKey::generate(Algorithm::ES256).unwrap(),
            hs: SigningKey::generate(Algorithm::HS256).unwrap(),
            attacker: rs(),
            policy_path: dir.path().join("policy.toml"),
            dir,
        };
        let with_issuer = |mut jwk: Value, iss: &str| {
            jwk["issuer"] = json!(iss);
            jwk
        };
        let mut expired = with_issuer(env.expired_cert.public_jwk("old-1"), TEMPLATE);
        expired["x5c"] = json!([cert_b64(&env.expired_cert, (2016, 4, 5), (2021, 4, 4))]);
        let common = json!({"keys": [
            with_issuer(env.enterprise.public_jwk("ent-1"), TEMPLATE),
            with_issuer(env.consumer.public_jwk("msa-1"), &issuer_for(CONSUMER)),
            with_issuer(env.revoked.public_jwk("revoked-1"), TEMPLATE),
            expired,
        ]});
        env.write("common.json", &common);
        env.write("as.json", &json!({"keys": [env.es.public_jwk("as-1")]}));
        env.write(
            "secrets.json",
            &json!({"keys": [env.hs.public_jwk("hs-1")]}),
        );
        std::fs::write(&env.policy_path, policy).unwrap();
        env
    }

    pub fn write(&self, name: &str, v: &Value) {
        std::fs::write(
            self.dir.path().join(name),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    /// A legitimate enterprise access token for TENANT_A.
    pub fn legit(&self) -> String {
        sign(&self.enterprise, "ent-1", &claims())
    }

    /// A legitimate RFC 9068 token from the exchange's own issuer.
    pub fn as_token(&self) -> String {
        self.es
            .sign_token(
                &json!({"alg": "ES256", "kid": "as-1", "typ": "at+jwt"}),
                &as_claims(),
            )
            .unwrap()
    }
}

/// Claims of a legitimate enterprise access token for TENANT_A, valid now.
pub fn claims() -> Value {
    let now = now();
    json!({
        "iss": issuer_for(TENANT_A), "tid": TENANT_A, "aud": AUD,
        "sub": "user-1", "oid": "0b7a", "uti": "AAAA-token-1", "sid": "sess-1",
        "azp": "app-1", "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
    })
}

pub fn as_claims() -> Value {
    let now = now();
    json!({"iss": AS_ISSUER, "aud": AUD, "sub": "svc-1", "client_id": "c-1",
           "jti": "j-1", "iat": now, "exp": now + 300})
}

pub fn sign(key: &SigningKey, kid: &str, claims: &Value) -> String {
    key.sign_token(
        &json!({"alg": key.algorithm().name(), "kid": kid, "typ": "JWT"}),
        claims,
    )
    .unwrap()
}

/// A token from raw header and payload JSON text with a given signature.
pub fn raw_token(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        encode_b64url(header.as_bytes()),
        encode_b64url(payload.as_bytes()),
        encode_b64url(sig)
    )
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
            let lines: Vec<Value> = text
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
