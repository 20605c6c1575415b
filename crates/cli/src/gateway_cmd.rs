//! `tokenward gateway`: the verifying reverse proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokenward_gateway::{AccessLog, Cidr, Config, Gateway, TlsFiles};

use crate::EXIT_USAGE;

/// Arguments of `tokenward gateway`.
#[derive(clap::Args)]
#[command(
    after_help = "Every request needs a bearer token that passes the policy unless a [[route]] says auth = \"none\". \
One JSON line per request goes to the access log (format in docs/gateway.md). \
SIGTERM or SIGINT: stop accepting, finish in-flight requests, flush the log, exit 0.\n\n\
Exit status: 0 clean shutdown, 1 runtime failure, 2 usage or configuration error."
)]
pub struct GatewayArgs {
    /// Policy file (TOML); it and its key sets are reloaded when they change.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Address to listen on, e.g. 0.0.0.0:8443.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Extra CA certificate (PEM) trusted for an https:// upstream, besides
    /// the Mozilla roots; repeatable. Verification cannot be turned off.
    #[arg(long, value_name = "FILE", conflicts_with = "authz")]
    upstream_ca: Vec<PathBuf>,
    /// Upstream base URL, http://host:port[/prefix] or https://host:port[/prefix].
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "authz",
        conflicts_with = "authz"
    )]
    upstream: Option<String>,
    /// Authorization mode: answer the auth sub-requests of nginx
    /// (auth_request), caddy (forward_auth) or envoy (ext_authz HTTP) in
    /// front of the API, instead of proxying: 200 with the identity headers,
    /// or 401 with the RFC 6750 challenge (docs/gateway.md).
    #[arg(long, value_name = "PROXY", value_parser = ["nginx", "caddy", "envoy"])]
    authz: Option<String>,
    /// Address for /healthz and /metrics (Prometheus); off when absent.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Append the access log to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    access_log: Option<PathBuf>,
    /// Peer address range whose X-Forwarded-For is believed (repeatable,
    /// or comma-separated), e.g. 10.0.0.0/8.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// Request headers whose names hold `_`, which WSGI, CGI and many
    /// frameworks read as the `-` spelling: refuse the request (400),
    /// drop them as nginx does, or forward them. Identity look-alikes
    /// (X_Tokenward_Sub) are removed in every mode, and refuse the request
    /// in authz mode, where the front proxy forwards them anyway.
    #[arg(long, value_name = "MODE", default_value = "refuse", value_parser = ["refuse", "drop", "forward"])]
    underscore_headers: String,
    /// PEM certificate chain: serve TLS on the listener.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// On a plain (non-TLS) listener, also serve HTTP/2 to clients that
    /// open with its preface (h2c with prior knowledge), as load balancers
    /// may. HTTP/1.1 is served either way; over TLS, HTTP/2 is chosen by ALPN.
    #[arg(long, conflicts_with = "tls_cert")]
    h2c: bool,
    /// Realm named in WWW-Authenticate challenges.
    #[arg(long, value_name = "NAME", default_value = "tokenward")]
    realm: String,
    /// Seconds to wait for the upstream's response headers (then 504).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    upstream_timeout: f64,
    /// Seconds to wait for a connection to the upstream (then 502).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    connect_timeout: f64,
    /// Seconds a client has to send its request headers.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    header_read_timeout: f64,
    /// Largest request head in bytes (then 431).
    #[arg(long, value_name = "BYTES", default_value_t = 80 * 1024)]
    max_header_bytes: usize,
    /// Most request headers (then 431), 1 to 1024.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_headers: usize,
    /// Accepted verdicts cached at most (0 turns the cache off).
    #[arg(long, value_name = "N", default_value_t = 16 * 1024)]
    cache_entries: usize,
    /// Seconds an accepted verdict is reused at most, whatever the token's exp.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    cache_max_ttl: u64,
    /// Seconds between checks of the policy and key files for changes.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    reload_interval: f64,
    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Do not print policy load warnings or the start-up line.
    #[arg(long, short)]
    quiet: bool,
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{name} {v}: must be a positive number of seconds"))
}

fn config(args: GatewayArgs) -> Result<(Config, bool), String> {
    let mut c = Config::new(args.policy, args.listen, args.upstream.unwrap_or_default());
    c.authz = args
        .authz
        .as_deref()
        .and_then(tokenward_gateway::AuthzProtocol::parse);
    c.upstream_ca = args.upstream_ca;
    c.h2c = args.h2c;
    c.underscore_headers = tokenward_gateway::UnderscoreHeaders::parse(&args.underscore_headers)
        .ok_or_else(|| format!("--underscore-headers {}", args.underscore_headers))?;
    c.admin_listen = args.admin_listen;
    c.access_log = args.access_log.map_or(AccessLog::Stdout, AccessLog::File);
    c.trusted_proxies = args
        .trusted_proxy
        .iter()
        .map(|s| {
            s.trim()
                .parse::<Cidr>()
                .map_err(|e| format!("--trusted-proxy {e}"))
        })
        .collect::<Result<_, _>>()?;
    c.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    c.realm = args.realm;
    c.upstream_timeout = secs("upstream-timeout", args.upstream_timeout)?;
    c.connect_timeout = secs("connect-timeout", args.connect_timeout)?;
    c.header_read_timeout = secs("header-read-timeout", args.header_read_timeout)?;
    c.max_header_bytes = args.max_header_bytes;
    c.max_headers = args.max_headers;
    c.cache_entries = args.cache_entries;
    c.cache_max_ttl = Duration::from_secs(args.cache_max_ttl);
    c.reload_interval = secs("reload-interval", args.reload_interval)?;
    c.shutdown_grace = secs("shutdown-grace", args.shutdown_grace)?;
    Ok((c, args.quiet))
}

/// Runs the gateway and returns the process exit status.
pub fn run(args: GatewayArgs) -> u8 {
    let (config, quiet) = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokenward gateway: {e}");
            return EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tokenward-gateway")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokenward gateway: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let upstream = match config.authz {
            Some(p) => format!("authz for {}", format!("{p:?}").to_lowercase()),
            None => format!("upstream {}", config.upstream),
        };
        let gateway = match Gateway::bind(config).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("tokenward gateway: {e}");
                return EXIT_USAGE;
            }
        };
        if !quiet {
            for w in gateway.policy_warnings() {
                eprintln!("warning: {w}");
            }
            let scheme = if gateway.is_tls() { "https" } else { "http" };
            let admin = gateway
                .admin_addr()
                .map_or(String::new(), |a| format!(", admin on http://{a}"));
            eprintln!(
                "tokenward gateway: listening on {scheme}://{}, {upstream}{admin}",
                gateway.local_addr()
            );
        }
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tokenward gateway: cannot install signal handlers: {e}");
                return 1;
            }
        };
        match gateway.run(shutdown).await {
            Ok(()) => {
                if !quiet {
                    eprintln!("tokenward gateway: stopped");
                }
                0
            }
            Err(e) => {
                eprintln!("tokenward gateway: {e}");
                1
            }
        }
    })
}

/// Completes on SIGTERM (what orchestrators send) or SIGINT (Ctrl-C). The
/// handlers are installed now, before the first request, so a signal that
/// arrives early is not lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
