//! A small, strict HTTP(S) GET for key material.
//!
//! Everything that can make a key fetch hang or balloon is bounded: one
//! deadline covers the whole exchange (DNS, connect, TLS, headers, body and
//! every redirect), the body is cut off at a byte limit, and redirects are
//! followed by hand so that each hop is checked against the same URL rules
//! as the first: `https://` only, `http://` only to loopback and only when
//! allowed (tests). Compression is not negotiated, so the byte limit is the
//! real size limit (no decompression bombs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::url::{Url, UrlError};

/// Limits and rules for every fetch.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Deadline for a whole fetch, redirects and body included. A server
    /// that trickles bytes is cut off when it runs out.
    pub timeout: Duration,
    /// Deadline for establishing each connection.
    pub connect_timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_bytes: u64,
    /// Redirects followed at most (each hop re-checked against the rules).
    pub max_redirects: u32,
    /// Allow plain `http://` to loopback addresses. For tests and local
    /// development only; never to any other host.
    pub allow_plain_http_loopback: bool,
    /// Extra trust anchors (DER certificates) used *instead of* the
    /// built-in webpki roots when not empty, e.g. a private CA.
    pub roots_der: Vec<Vec<u8>>,
    /// `User-Agent` sent.
    pub user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            // Real key sets are a few kB (Microsoft's common set is ~15 kB);
            // 1 MiB leaves room without letting a server exhaust memory.
            max_bytes: 1024 * 1024,
            max_redirects: 3,
            allow_plain_http_loopback: false,
            roots_der: Vec::new(),
            user_agent: concat!("tokenward/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL (or a redirect target) is malformed or not allowed.
    #[error("{0}")]
    Refused(String),
    /// The deadline passed before the response was complete.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The body is larger than the limit.
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    /// More redirects than allowed.
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    /// A status other than 200, 304 or a redirect.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Connection, TLS or protocol failure.
    #[error("{0}")]
    Network(String),
}

impl From<UrlError> for FetchError {
    fn from(e: UrlError) -> Self {
        FetchError::Refused(e.0)
    }
}

/// What the cache directives of a response allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheDirectives {
    /// `max-age` in seconds, less any `Age` already spent in caches.
    pub max_age: Option<u64>,
    /// `no-store` or `no-cache`: revalidate every time.
    pub no_cache: bool,
}

impl CacheDirectives {
    /// Reads `Cache-Control` (and `Age`) header values. Unknown directives
    /// are ignored; a malformed `max-age` counts as absent.
    pub fn parse(cache_control: Option<&str>, age: Option<&str>) -> CacheDirectives {
        let mut out = CacheDirectives::default();
        for directive in cache_control.unwrap_or_default().split(',') {
            let directive = directive.trim();
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive, None),
            };
            match name.to_ascii_lowercase().as_str() {
                "max-age" => out.max_age = value.and_then(|v| v.parse::<u64>().ok()),
                "no-store" | "no-cache" => out.no_cache = true,
                _ => {}
            }
        }
        if let (Some(max), Some(age)) = (out.max_age, age.and_then(|a| a.trim().parse().ok())) {
            out.max_age = Some(max.saturating_sub(age));
        }
        out
    }
}

/// A completed fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL that answered (after redirects).
    pub url: Url,
    /// The body, or `None` for `304 Not Modified`.
    pub body: Option<Vec<u8>>,
    /// The `ETag` to send as `If-None-Match` next time.
    pub etag: Option<String>,
    /// Cache directives of the response.
    pub cache: CacheDirectives,
}

/// Fetches key sets and discovery documents under one [`FetchConfig`].
/// Cheap to share (`Arc`), safe to use from several threads.
#[derive(Clone)]
pub struct Fetcher {
    config: Arc<FetchConfig>,
    /// Agent honouring proxy environment variables, for real hosts.
    agent: ureq::Agent,
    /// Agent without a proxy, for loopback: a proxy must never see (or
    /// answer for) a local test server.
    direct: ureq::Agent,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Builds a fetcher. TLS is rustls with the aws-lc-rs provider and the
    /// webpki (Mozilla) roots unless `roots_der` names others.
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = if config.roots_der.is_empty() {
            ureq::tls::RootCerts::WebPki
        } else {
            ureq::tls::RootCerts::new_with_certs(
                &config
                    .roots_der
                    .iter()
                    .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
                    .collect::<Vec<_>>(),
            )
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider)
            .root_certs(roots)
            .build();
        let build = |proxy: Option<ureq::Proxy>| {
            ureq::Agent::config_builder()
                .tls_config(tls.clone())
                .proxy(proxy)
                // Redirects are followed by hand, each hop checked.
                .max_redirects(0)
                .http_status_as_error(false)
                .https_only(false)
                .user_agent(config.user_agent.as_str())
                .accept("application/json, application/jwk-set+json")
                .timeout_connect(Some(config.connect_timeout))
                .max_response_header_size(64 * 1024)
                .build()
                .new_agent()
        };
        Ok(Fetcher {
            agent: build(ureq::Proxy::try_from_env()),
            direct: build(None),
            config: Arc::new(config),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Whether `url` may be fetched at all under this configuration.
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme.as_str() {
            "https" => Ok(()),
            "http" if url.is_loopback() && self.config.allow_plain_http_loopback => Ok(()),
            "http" if url.is_loopback() => Err(FetchError::Refused(format!(
                "{url}: plain http:// is only allowed to loopback when explicitly enabled"
            ))),
            _ => Err(FetchError::Refused(format!(
                "{url}: only https:// is allowed (plain http:// only to loopback, for tests)"
            ))),
        }
    }

    /// GETs `url`, sending `If-None-Match` when an ETag is given.
    pub fn get(&self, url: &Url, if_none_match: Option<&str>) -> Result<Fetched, FetchError> {
        let deadline = Instant::now() + self.config.timeout;
        let mut url = url.clone();
        let mut redirects = 0u32;
        loop {
            self.check_url(&url)?;
            let remaining = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(FetchError::Timeout(self.config.timeout))?;
            let agent = if url.is_loopback() {
                &self.direct
            } else {
                &self.agent
            };
            let mut request = agent.get(url.to_string());
            if let Some(tag) = if_none_match {
                request = request.header("If-None-Match", tag);
            }
            let mut response = request
                .config()
                .timeout_global(Some(remaining))
                .build()
                .call()
                .map_err(|e| self.map_error(e))?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            match status {
                200 | 304 => {
                    let etag = header("etag");
                    let cache = CacheDirectives::parse(
                        header("cache-control").as_deref(),
                        header("age").as_deref(),
                    );
                    if status == 304 {
                        if if_none_match.is_none() {
                            return Err(FetchError::Network(format!(
                                "{url}: 304 Not Modified to an unconditional request"
                            )));
                        }
                        return Ok(Fetched {
                            url,
                            body: None,
                            etag: etag.or_else(|| if_none_match.map(str::to_owned)),
                            cache,
                        });
                    }
                    // Refuse early when the server announces an oversized body;
                    // the read limit below catches the ones that do not.
                    if response
                        .body()
                        .content_length()
                        .is_some_and(|n| n > self.config.max_bytes)
                    {
                        return Err(FetchError::TooLarge(self.config.max_bytes));
                    }
                    let body = response
                        .body_mut()
                        .with_config()
                        .limit(self.config.max_bytes)
                        .read_to_vec()
                        .map_err(|e| self.map_error(e))?;
                    return Ok(Fetched {
                        url,
                        body: Some(body),
                        etag,
                        cache,
                    });
                }
                301 | 302 | 303 | 307 | 308 => {
                    let location = header("location").ok_or_else(|| {
                        FetchError::Network(format!("{url}: redirect without Location"))
                    })?;
                    if redirects >= self.config.max_redirects {
                        return Err(FetchError::TooManyRedirects(self.config.max_redirects));
                    }
                    redirects += 1;
                    let next = url.join(&location)?;
                    // A redirect may never leave https, even to loopback from
                    // a real host: only a loopback test server may point to
                    // another loopback http:// URL.
                    if next.scheme == "http" && !(url.is_loopback() && next.is_loopback()) {
                        return Err(FetchError::Refused(format!(
                            "{url} redirects to {next}: redirects to plain http:// are refused"
                        )));
                    }
                    url = next;
                }
                other => return Err(FetchError::Status(other)),
            }
        }
    }

    fn map_error(&self, e: ureq::Error) -> FetchError {
        match e {
            ureq::Error::Timeout(_) => FetchError::Timeout(self.config.timeout),
            ureq::Error::BodyExceedsLimit(n) => FetchError::TooLarge(n),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                FetchError::Timeout(self.config.timeout)
            }
            other => FetchError::Network(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let c = CacheDirectives::parse(Some("max-age=86400, private"), None);
        assert_eq!(c.max_age, Some(86400));
        assert!(!c.no_cache);
        let c = CacheDirectives::parse(Some("public, MAX-AGE=\"600\""), Some("100"));
        assert_eq!(c.max_age, Some(500));
        let c = CacheDirectives::parse(Some("no-store"), None);
        assert!(c.no_cache);
        assert_eq!(c.max_age, None);
        let c = CacheDirectives::parse(Some("max-age=-1"), None);
        assert_eq!(c.max_age, None);
        assert_eq!(
            CacheDirectives::parse(None, None),
            CacheDirectives::default()
        );
    }

    #[test]
    fn url_rules() {
        let strict = Fetcher::new(FetchConfig::default()).unwrap();
        let loose = Fetcher::new(FetchConfig {
            allow_plain_http_loopback: true,
            ..FetchConfig::default()
        })
        .unwrap();
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(strict.check_url(&u("https://idp.example/keys")).is_ok());
        assert!(strict.check_url(&u("http://127.0.0.1:9/keys")).is_err());
        assert!(loose.check_url(&u("http://127.0.0.1:9/keys")).is_ok());
        assert!(loose.check_url(&u("http://idp.example/keys")).is_err());
    }
}
