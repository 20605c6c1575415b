//! A verifying reverse proxy: nothing reaches the upstream without a token
//! that passes the `trust` policy, and every request is logged with the
//! token facts that Storm-0558's victims could not see (which key signed
//! it, for which issuer and tenant).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokenward_gateway::Error> {
//! use tokenward_gateway::{Config, Gateway};
//! let config = Config::new(
//!     "policy.toml".into(),
//!     "127.0.0.1:8443".parse().unwrap(),
//!     "http://127.0.0.1:8080".into(),
//! );
//! let gateway = Gateway::bind(config).await?;
//! gateway.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! The request path, the log format and the operational behaviour are
//! described in `docs/gateway.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod admin;
mod cache;
mod h1;
mod metrics;
mod net;
mod proxy;
#[cfg(fuzzing)]
#[doc(hidden)]
pub use h1::fuzz_http1;
#[cfg(fuzzing)]
#[doc(hidden)]
pub use proxy::fuzz_request_checks;
mod reload;
mod tls;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokenward_trust::LivePolicy;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

pub use access::{
    AccessRecord, TokenFields, Verdict, AUTHORIZATION_REPEATED, AUTHZ_ORIGINAL_MISSING,
    EXCHANGE_SUBJECT_REFUSED, GATEWAY_REASONS, HEADER_NAME_UNDERSCORE, PATH_NOT_NORMALIZED,
    TOKEN_IN_QUERY, TOKEN_MISSING,
};
pub use net::Cidr;
pub use proxy::IDENTITY_PREFIX;
pub use tokenward_keys::FetchConfig;

/// Whose authorization sub-requests the gateway answers in authz mode. The
/// protocol decides where the original request's method and URI are read
/// from, and nothing else: a header one proxy sets is never believed from
/// another, whose clients could set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzProtocol {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI`, set
    /// with `proxy_set_header` in the auth location.
    Nginx,
    /// Caddy `forward_auth`: `X-Forwarded-Method` and `X-Forwarded-Uri`,
    /// which Caddy sets itself.
    Caddy,
    /// Envoy `ext_authz` (HTTP service): the sub-request carries the
    /// original method and path itself.
    Envoy,
}

impl AuthzProtocol {
    /// Parses `nginx`, `caddy` or `envoy`.
    pub fn parse(name: &str) -> Option<AuthzProtocol> {
        match name {
            "nginx" => Some(AuthzProtocol::Nginx),
            "caddy" => Some(AuthzProtocol::Caddy),
            "envoy" => Some(AuthzProtocol::Envoy),
            _ => None,
        }
    }
}

/// What the gateway does with request headers whose names hold `_`.
/// Frameworks that map header names to variables (WSGI, CGI, PHP, Rack)
/// read `X_Tokenward_Sub` and `X-Tokenward-Sub` as one, so such a header
/// can pose as an identity the gateway set. nginx ignores them by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeaders {
    /// Refuse the request (400; 403 in authz mode), with an access-log
    /// line. The default: nothing ambiguous reaches the upstream, and in
    /// authz mode the gateway cannot remove headers from the request the
    /// front proxy forwards.
    #[default]
    Refuse,
    /// Remove them before forwarding, as nginx does by default. In authz
    /// mode a request with one that reads as an identity header is still
    /// refused, since the front proxy forwards it anyway.
    Drop,
    /// Forward them, except those that read as identity headers (which are
    /// removed; refused in authz mode).
    Forward,
}

impl UnderscoreHeaders {
    /// Parses `refuse`, `drop` or `forward`.
    pub fn parse(name: &str) -> Option<UnderscoreHeaders> {
        match name {
            "refuse" => Some(UnderscoreHeaders::Refuse),
            "drop" => Some(UnderscoreHeaders::Drop),
            "forward" => Some(UnderscoreHeaders::Forward),
            _ => None,
        }
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output (the default).
    Stdout,
    /// Appended to this file, created if needed.
    File(PathBuf),
}

/// TLS for the public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Everything `tokenward gateway` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `trust` policy file; it and its key sets are watched for changes.
    pub policy: PathBuf,
    /// Public listener address.
    pub listen: SocketAddr,
    /// Upstream base URL, `http://host:port[/prefix]`. Unused in
    /// [`Config::authz`] mode.
    pub upstream: String,
    /// Extra trust anchors (PEM files) for an `https://` upstream, besides
    /// the webpki (Mozilla) roots. Certificates are always verified,
    /// host name included.
    pub upstream_ca: Vec<PathBuf>,
    /// Answer another proxy's authorization sub-requests instead of
    /// proxying (docs/gateway.md, "Authorization mode").
    pub authz: Option<AuthzProtocol>,
    /// Listener for `/healthz` and `/metrics`; none when `None`.
    pub admin_listen: Option<SocketAddr>,
    /// Where the access log goes.
    pub access_log: AccessLog,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Request headers whose names hold `_`.
    pub underscore_headers: UnderscoreHeaders,
    /// TLS on the public listener.
    pub tls: Option<TlsFiles>,
    /// On a plain listener, also speak HTTP/2 to clients that open with its
    /// preface (h2c with prior knowledge, RFC 9113 §3.3), as a load
    /// balancer in front of the gateway may. HTTP/1.1 is served either way.
    pub h2c: bool,
    /// `realm` in `WWW-Authenticate` challenges.
    pub realm: String,
    /// Longest wait for the upstream's response headers.
    pub upstream_timeout: Duration,
    /// Longest wait for a TCP connection to the upstream.
    pub connect_timeout: Duration,
    /// Longest time a client may take to send its request headers (and the
    /// TLS handshake).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; larger
    /// requests get 431.
    pub max_header_bytes: usize,
    /// Most request headers; more get 431.
    pub max_headers: usize,
    /// Accepted verdicts kept in the cache at most.
    pub cache_entries: usize,
    /// Longest an accepted verdict is reused before the token is verified
    /// again, whatever its `exp`.
    pub cache_max_ttl: Duration,
    /// How often the policy and key files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Rules for fetching URL key sets (HTTPS only by default).
    pub key_fetch: FetchConfig,
    /// Threads serving connections, each with a single-threaded runtime
    /// of its own (one per core by default, as nginx's
    /// `worker_processes auto`).
    pub workers: usize,
    /// The gateway's one source of "now": token times, key staleness,
    /// reload checks and log timestamps all read it. The wall clock by
    /// default; tests set another.
    pub clock: Clock,
}

/// A source of the current time, cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> std::time::SystemTime + Send + Sync>);

impl Clock {
    /// A clock that asks `now`.
    pub fn new(now: impl Fn() -> std::time::SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The wall clock.
    pub fn system() -> Clock {
        Clock::new(std::time::SystemTime::now)
    }

    /// The current time.
    pub fn now(&self) -> std::time::SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Seconds since the epoch on `clock`.
pub(crate) fn unix_seconds(clock: &Clock) -> i64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Config {
    /// A configuration with the documented defaults.
    pub fn new(policy: PathBuf, listen: SocketAddr, upstream: String) -> Config {
        Config {
            policy,
            listen,
            upstream,
            upstream_ca: Vec::new(),
            authz: None,
            admin_listen: None,
            access_log: AccessLog::Stdout,
            trusted_proxies: Vec::new(),
            underscore_headers: UnderscoreHeaders::default(),
            tls: None,
            h2c: false,
            realm: "tokenward".into(),
            upstream_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            // A 64 KiB token (the verifier's limit) plus 16 KiB for the rest.
            max_header_bytes: 80 * 1024,
            max_headers: 100,
            cache_entries: 16 * 1024,
            cache_max_ttl: Duration::from_secs(300),
            reload_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            key_fetch: FetchConfig::default(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            clock: Clock::system(),
        }
    }
}

/// The most `--max-headers` may be: a header map of more is refused by the
/// `http` crate (it would panic), and no client needs them.
const MAX_HEADERS_LIMIT: usize = 1024;

/// Why the gateway cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration problem: bad option, policy, certificate or address.
    #[error("{0}")]
    Config(String),
    /// A failure while running.
    #[error("{0}")]
    Runtime(String),
}

/// A gateway with its sockets bound, ready to [`run`](Gateway::run).
pub struct Gateway {
    listener: TcpListener,
    admin: Option<TcpListener>,
    shared: Arc<proxy::Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    h2c: bool,
    http2: http2::Builder<TokioExecutor>,
    policy_path: PathBuf,
    key_fetch: FetchConfig,
    reload_interval: Duration,
    shutdown_grace: Duration,
    header_read_timeout: Duration,
    workers: usize,
    warnings: Vec<String>,
}

impl Gateway {
    /// Loads the policy and TLS material, opens the access log and binds
    /// the listeners. Every configuration error surfaces here, before any
    /// traffic is accepted.
    pub async fn bind(config: Config) -> Result<Gateway, Error> {
        let cfg = |m: String| Error::Config(m);
        let started = unix_seconds(&config.clock);
        let live = {
            let path = config.policy.clone();
            let fetch = config.key_fetch.clone();
            // Loading may fetch URL key sets: blocking work, off the runtime.
            tokio::task::spawn_blocking(move || LivePolicy::load_with(&path, fetch, started))
                .await
                .map_err(|e| Error::Runtime(e.to_string()))?
                .map_err(|e| cfg(e.to_string()))?
        };
        let policy = live.policy();
        let warnings = policy.warnings().to_vec();
        let upstream = match config.authz {
            Some(_) => None,
            None => Some(proxy::Upstream::parse(&config.upstream).map_err(cfg)?),
        };
        if config.realm.is_empty()
            || config
                .realm
                .bytes()
                .any(|b| !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\')
        {
            return Err(cfg(format!(
                "--realm {:?}: must be non-empty printable ASCII without quotes or backslashes",
                config.realm
            )));
        }
        if config.max_header_bytes < 8192 {
            return Err(cfg("--max-header-bytes must be at least 8192".into()));
        }
        if !(1..=MAX_HEADERS_LIMIT).contains(&config.max_headers) {
            return Err(cfg(format!(
                "--max-headers must be between 1 and {MAX_HEADERS_LIMIT}"
            )));
        }
        let challenge = |extra: &str| {
            HeaderValue::from_str(&format!("Bearer realm=\"{}\"{extra}", config.realm))
                .map_err(|e| cfg(e.to_string()))
        };
        let tls = match &config.tls {
            Some(files) => Some(tls::acceptor(files).map_err(cfg)?),
            None => None,
        };
        let out: Box<dyn std::io::Write + Send> = match &config.access_log {
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| cfg(format!("--access-log {}: {e}", p.display())))?,
            ),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| cfg(format!("--listen {}: {e}", config.listen)))?;
        let admin = match config.admin_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| cfg(format!("--admin-listen {a}: {e}")))?,
            ),
            None => None,
        };

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        // https:// upstreams go through rustls below.
        connector.enforce_http(false);
        let upstream_tls = tls::upstream_client(&config.upstream_ca).map_err(cfg)?;
        let mut h1_tls = upstream_tls.clone();
        h1_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(upstream_tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);

        let log = access::LogSender::start(out);
        let metrics = metrics::Metrics::new();
        metrics.set_keys(policy.key_count());
        let shared = Arc::new(proxy::Shared {
            policy: RwLock::new(proxy::PolicyState {
                live: Arc::new(live),
                policy,
                generation: 0,
            }),
            cache: cache::VerdictCache::new(config.cache_entries),
            metrics,
            log,
            client,
            upstream,
            authz: config.authz,
            trusted: config.trusted_proxies.clone(),
            underscore_headers: config.underscore_headers,
            upstream_timeout: config.upstream_timeout,
            connect_timeout: config.connect_timeout,
            upstream_tls: Some(tokio_rustls::TlsConnector::from(Arc::new(h1_tls))),
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
            cache_max_ttl: config.cache_max_ttl.as_secs() as i64,
            challenge_missing: challenge("")?,
            challenge_invalid_token: challenge(", error=\"invalid_token\"")?,
            challenge_invalid_request: challenge(", error=\"invalid_request\"")?,
            unknown_kid: std::sync::Mutex::new(None),
            clock: config.clock.clone(),
            nudge: tokio::sync::Notify::new(),
        });

        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(128);

        Ok(Gateway {
            listener,
            admin,
            shared,
            tls,
            http2,
            policy_path: config.policy,
            key_fetch: config.key_fetch,
            reload_interval: config.reload_interval,
            shutdown_grace: config.shutdown_grace,
            header_read_timeout: config.header_read_timeout,
            workers: config.workers,
            h2c: config.h2c,
            warnings,
        })
    }

    /// The bound public address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound admin address, if there is an admin listener.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Non-fatal observations from loading the policy.
    pub fn policy_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the public listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (up to the grace period), flushes the
    /// access log and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        // HTTP/2 connections close through hyper's graceful shutdown; HTTP/1
        // ones (crate::h1) watch `closing` and hold a clone of `open`.
        let graceful = GracefulShutdown::new();
        let (close, closing) = tokio::sync::watch::channel(false);
        let open = Arc::new(());
        let reloader = tokio::spawn(reload::watch(
            self.shared.clone(),
            self.policy_path.clone(),
            self.reload_interval,
            self.key_fetch.clone(),
        ));
        let admin = self
            .admin
            .map(|l| tokio::spawn(admin::serve(l, self.shared.clone())));
        let serving = workers::Serving {
            shared: self.shared.clone(),
            closing: closing.clone(),
        };
        let workers =
            Arc::new(workers::Workers::start(self.workers, &serving).map_err(Error::Runtime)?);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) if self.tls.is_none() && !self.h2c => {
                        workers.dispatch(stream, peer, open.clone());
                    }
                    Ok((stream, peer)) => {
                        // TLS and h2c are served on this runtime (crate::workers
                        // says why); a plain HTTP/1 connection still goes to a
                        // worker once it is known to be one.
                        let conn = Connection {
                            shared: self.shared.clone(),
                            http2: self.http2.clone(),
                            tls: self.tls.clone(),
                            h2c: self.h2c,
                            handshake_timeout: self.header_read_timeout,
                            closing: h1::Closing::new(closing.clone()),
                            watcher: graceful.watcher(),
                            workers: workers.clone(),
                            open: open.clone(),
                        };
                        tokio::spawn(conn.serve(stream, peer));
                    }
                    Err(e) => {
                        // Usually descriptor exhaustion: back off instead of
                        // spinning, and keep serving existing connections.
                        eprintln!("tokenward gateway: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        let _ = close.send(true);
        let h1_done = async {
            while Arc::strong_count(&open) > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let all_done = async { tokio::join!(graceful.shutdown(), h1_done) };
        if tokio::time::timeout(self.shutdown_grace, all_done)
            .await
            .is_err()
        {
            eprintln!(
                "tokenward gateway: {} connection(s) still busy after the {:?} grace period; closing them",
                Arc::strong_count(&open) - 1,
                self.shutdown_grace
            );
        }
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
        reloader.abort();
        if let Some(a) = admin {
            a.abort();
        }
        self.shared.log.flush().await;
        Ok(())
    }
}

/// A connection served on the gateway's own runtime: TLS (ALPN choosing
/// HTTP/2 or HTTP/1.1), or a plain one that may open with the h2c preface.
struct Connection {
    shared: Arc<proxy::Shared>,
    http2: http2::Builder<TokioExecutor>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    h2c: bool,
    /// Longest wait for a TLS handshake or an h2c preface.
    handshake_timeout: Duration,
    closing: h1::Closing,
    watcher: hyper_util::server::graceful::Watcher,
    workers: Arc<workers::Workers>,
    /// Held while the connection is open (counted at shutdown).
    open: Arc<()>,
}

impl Connection {
    async fn serve(self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let Connection {
            shared,
            http2,
            tls,
            h2c,
            handshake_timeout,
            closing,
            watcher,
            workers,
            open,
        } = self;
        match tls {
            None if h2c && opens_with_h2_preface(&stream, handshake_timeout).await => {
                let _open = open;
                serve_h2(stream, peer, http2, shared, watcher).await;
            }
            None => workers.dispatch(stream, peer, open),
            Some(acceptor) => {
                let _open = open;
                let hs = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                if let Ok(Ok(tls_stream)) = hs {
                    if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        serve_h2(tls_stream, peer, http2, shared, watcher).await;
                    } else {
                        h1::serve(tls_stream, peer, shared, closing).await;
                    }
                }
            }
        }
    }
}

/// HTTP/2's connection preface (RFC 9113 §3.4). A client speaking h2c with
/// prior knowledge opens with it; no HTTP/1 request line can (`PRI` is not
/// a method the gateway serves).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client's first bytes are the HTTP/2 preface, looked at
/// without consuming them. A client that sends less within `timeout` is
/// left to HTTP/1's own header timeout.
async fn opens_with_h2_preface(stream: &tokio::net::TcpStream, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // Part of the preface so far: peek would return it again at once.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An HTTP/2 connection (TLS with ALPN `h2`, or h2c): each stream is one request
/// through the same handler. Protocol errors are the client's; requests
/// that never became a request have no path to log.
async fn serve_h2<IO>(
    io: IO,
    peer: SocketAddr,
    http2: http2::Builder<TokioExecutor>,
    shared: Arc<proxy::Shared>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| proxy::handle(shared.clone(), peer, req));
    let conn = http2.serve_connection(TokioIo::new(io), svc);
    let _ = watcher.watch(conn).await;
}
