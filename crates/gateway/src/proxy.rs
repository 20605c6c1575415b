//! One request: decide, forward or refuse, log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tokenward_trust::{LivePolicy, Policy, ReasonCode};
use tokio::sync::Notify;

use crate::access::{self, AccessRecord, LogSender, TokenFields, Verdict};
use crate::cache::{TokenHash, VerdictCache};
use crate::metrics::{Metrics, UpstreamError};
use crate::net::{Cidr, ClientAddr};

/// Response body: the upstream's, streamed, or a fixed one of our own.
pub(crate) type Body = Either<Incoming, Full<Bytes>>;

/// The identity headers the gateway sets. Incoming headers with the
/// `x-tokenward-` prefix are always removed first, so the upstream can trust
/// every such header it sees.
pub const IDENTITY_PREFIX: &str = "x-tokenward-";

/// The identity headers an accepted request carries, in this order: the
/// token's `sub`, `tid`, `iss` and `kid`.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-tokenward-sub",
    "x-tokenward-tid",
    "x-tokenward-iss",
    "x-tokenward-kid",
];

/// Request headers in which a client claims an address; never forwarded as
/// the client sent them (compared with `_` read as `-`).
const CLIENT_ADDRESS_CLAIMS: &[&str] = &["x-real-ip", "forwarded", "x-forwarded-for"];

/// The policy in force and its generation (bumped whenever the keys or
/// their freshness change, so a verdict reached under older keys is never
/// served from the cache).
pub(crate) struct PolicyState {
    /// The policy with its live key sets (files, JWKS URLs, discovery).
    pub live: Arc<LivePolicy>,
    /// `live.policy()` as of the last background check. Requests verify
    /// against this built registry and never fetch: fetching is the
    /// background task's job, so a slow key source cannot stall requests.
    pub policy: Arc<Policy>,
    pub generation: u64,
}

/// The outcome of checking one token, shared through the cache.
pub(crate) struct Checked {
    pub reasons: Vec<&'static str>,
    pub fields: TokenFields,
    /// `fields` as their log line has them ([`TokenFields::members_json`]).
    pub log_fields: String,
    /// `x-tokenward-*` headers to add when forwarding.
    pub identity: Vec<(HeaderName, HeaderValue)>,
    pub generation: u64,
}

impl Checked {
    fn accepted(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// The scheme, authority and base path of the upstream.
pub(crate) struct Upstream {
    pub scheme: hyper::http::uri::Scheme,
    pub authority: hyper::http::uri::Authority,
    /// Prefix prepended to every request path, without a trailing `/`.
    pub base: String,
}

impl Upstream {
    pub(crate) fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?}: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => hyper::http::uri::Scheme::HTTP,
            Some("https") => hyper::http::uri::Scheme::HTTPS,
            Some(other) => {
                return Err(format!(
                    "--upstream {url:?}: scheme {other:?} is not supported (http:// or https://)"
                ))
            }
            None => {
                return Err(format!(
                    "--upstream {url:?}: needs http://host:port or https://host:port"
                ))
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("--upstream {url:?}: no host"))?;
        if uri.query().is_some() {
            return Err(format!("--upstream {url:?}: must not have a query string"));
        }
        Ok(Upstream {
            scheme,
            authority,
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn uri_for(&self, original: &Uri) -> Result<Uri, hyper::http::Error> {
        let pq = original.path_and_query().map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{pq}", self.base))
            .build()
    }
}

/// Everything the request handler needs, shared by all connections.
pub(crate) struct Shared {
    pub policy: RwLock<PolicyState>,
    pub cache: VerdictCache<Checked>,
    pub metrics: Metrics,
    pub log: LogSender,
    pub client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// Where accepted requests go; `None` in authz mode.
    pub upstream: Option<Upstream>,
    /// Answer sub-requests of this proxy instead of forwarding.
    pub authz: Option<crate::AuthzProtocol>,
    pub trusted: Vec<Cidr>,
    pub underscore_headers: crate::UnderscoreHeaders,
    pub upstream_timeout: Duration,
    /// Longest wait for a connection to the upstream (TLS included).
    pub connect_timeout: Duration,
    /// TLS for an `https://` upstream on the HTTP/1 path.
    pub upstream_tls: Option<tokio_rustls::TlsConnector>,
    /// Longest time a client may take to send a request head, idle time
    /// before it included.
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most request headers (431 beyond).
    pub max_headers: usize,
    /// Longest time an accepted verdict is reused, whatever the token's `exp`.
    pub cache_max_ttl: i64,
    pub challenge_missing: HeaderValue,
    pub challenge_invalid_token: HeaderValue,
    pub challenge_invalid_request: HeaderValue,
    /// A token whose `kid` no key has, for the background task to try once
    /// against freshly fetched key sets (a key rotated in at the source).
    /// One slot: a flood of unknown kids queues nothing.
    pub unknown_kid: Mutex<Option<String>>,
    /// Wakes the background task early (an unknown kid is waiting).
    pub nudge: Notify,
    /// The gateway's clock ([`crate::Config::clock`]).
    pub clock: crate::Clock,
}

impl Shared {
    pub(crate) fn current_policy(&self) -> (Arc<Policy>, u64) {
        let s = self.policy.read().unwrap_or_else(|p| p.into_inner());
        (s.policy.clone(), s.generation)
    }

    pub(crate) fn current_live(&self) -> Arc<LivePolicy> {
        let s = self.policy.read().unwrap_or_else(|p| p.into_inner());
        s.live.clone()
    }
}

/// Decrements the in-flight gauge however the request ends (including when
/// the client goes away and the handler future is dropped).
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight(-1);
    }
}

/// What happened to the request, for the log and the metrics.
pub(crate) struct Outcome {
    verdict: Verdict,
    reasons: Vec<&'static str>,
    checked: Option<Arc<Checked>>,
    cached: bool,
    token_prefix: Option<String>,
    upstream_status: Option<u16>,
    error: Option<UpstreamError>,
}

impl Outcome {
    fn new(verdict: Verdict) -> Outcome {
        Outcome {
            verdict,
            reasons: Vec::new(),
            checked: None,
            cached: false,
            token_prefix: None,
            upstream_status: None,
            error: None,
        }
    }

    fn refused(verdict: Verdict, reason: &'static str) -> Outcome {
        let mut o = Outcome::new(verdict);
        o.reasons.push(reason);
        o
    }

    /// Records a request whose body broke its own framing on the way
    /// through (the upstream got an incomplete request and was dropped):
    /// the answer is 400, and the log says why.
    pub(crate) fn malformed_body(&mut self) -> Response<Body> {
        self.verdict = Verdict::BadRequest;
        self.reasons.push(MALFORMED_REQUEST);
        plain(StatusCode::BAD_REQUEST, None)
    }

    /// The status logged for a client that went away before its request
    /// body was sent: nginx's 499 ("client closed request"), never sent.
    pub(crate) fn client_gone() -> StatusCode {
        StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
    }

    /// Records the upstream's answer.
    pub(crate) fn answered(&mut self, status: u16) {
        self.upstream_status = Some(status);
    }

    /// Records a failed upstream exchange and gives the answer for it: 504
    /// for a timeout, 502 otherwise. Never a retry without the checks.
    pub(crate) fn upstream_failed(
        &mut self,
        shared: &Shared,
        kind: UpstreamError,
    ) -> Response<Body> {
        shared.metrics.upstream_error(kind);
        self.error = Some(kind);
        match kind {
            UpstreamError::Timeout => plain(StatusCode::GATEWAY_TIMEOUT, None),
            _ => plain(StatusCode::BAD_GATEWAY, None),
        }
    }
}

/// A request on its way through the gateway, from its head being read to
/// its log line: who sent it, when, and what it asked for.
pub(crate) struct Handling<'a> {
    start: Instant,
    wall: std::time::SystemTime,
    /// Who sent it.
    pub addr: ClientAddr,
    method: Method,
    path: String,
    _in_flight: InFlight<'a>,
}

/// What to do with a request once its head is judged.
pub(crate) enum Step {
    /// Answer with this (a refusal; its body is empty).
    Answer(Response<Body>),
    /// Let it through: forward it in proxy mode, [`authz_allow`] it in
    /// authz mode. Its headers are ready for the upstream (identity added,
    /// spoofed and hop-by-hop headers gone).
    Pass,
    /// A token-exchange route with a form body (RFC 8693: the token to
    /// exchange may travel there): read the body whole, at most
    /// [`EXCHANGE_BODY_MAX`] bytes, and give it to [`exchange_form`]. The
    /// subject-token issuers the route refuses.
    ReadForm(Vec<String>),
}

/// Judges a request from its head: the authz protocol's original request,
/// header hygiene, the route, the token and the cache. `parts` is left
/// ready for the upstream when the answer is [`Step::Pass`].
pub(crate) fn begin<'a>(
    shared: &'a Shared,
    peer: SocketAddr,
    parts: &mut hyper::http::request::Parts,
) -> (Handling<'a>, Outcome, Step) {
    let start = Instant::now();
    let wall = shared.clock.now();
    shared.metrics.in_flight(1);
    let in_flight = InFlight(&shared.metrics);
    let now = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);

    let addr = ClientAddr::resolve(peer.ip(), &parts.headers, &shared.trusted);
    // In authz mode the request to judge is the one the proxy received:
    // its method and URI come from where that proxy puts them.
    let original = match shared.authz {
        Some(protocol) => original_request(protocol, &parts.headers),
        None => Ok(None),
    };
    let mut unusable = false;
    match original {
        Ok(Some((m, u))) => {
            parts.method = m;
            parts.uri = u;
        }
        Ok(None) => {}
        Err(()) => unusable = true,
    }
    let method = parts.method.clone();
    let path = access::truncate(parts.uri.path(), 1024).to_owned();
    let underscored = screen_underscore_headers(
        &mut parts.headers,
        shared.underscore_headers,
        shared.authz.is_some(),
    );
    sanitize_request_headers(&mut parts.headers);

    let (outcome, step) = if unusable {
        let o = Outcome::refused(Verdict::BadRequest, access::AUTHZ_ORIGINAL_MISSING);
        (o, Step::Answer(plain(StatusCode::FORBIDDEN, None)))
    } else if underscored {
        let o = Outcome::refused(Verdict::BadRequest, access::HEADER_NAME_UNDERSCORE);
        (o, Step::Answer(plain(StatusCode::BAD_REQUEST, None)))
    } else {
        judge(shared, parts, now)
    };
    let handling = Handling {
        start,
        wall,
        addr,
        method,
        path,
        _in_flight: in_flight,
    };
    (handling, outcome, step)
}

/// Ends a request: the status the client gets (authz mode maps refusals to
/// what the front proxy understands) and its access-log line and metrics.
pub(crate) async fn conclude(
    shared: &Shared,
    handling: Handling<'_>,
    outcome: Outcome,
    status: &mut StatusCode,
) {
    if shared.authz.is_some() && *status != StatusCode::OK && *status != StatusCode::UNAUTHORIZED {
        // nginx's auth_request understands 2xx, 401 and 403 only; any other
        // refusal would become a 500 there.
        *status = StatusCode::FORBIDDEN;
    }
    let took = handling.start.elapsed();
    let no_fields = TokenFields::default();
    let checked = outcome.checked.as_deref();
    let record = AccessRecord {
        time: access::rfc3339_millis(handling.wall),
        client_ip: handling.addr.client.to_string(),
        peer_ip: handling.addr.peer.to_string(),
        x_forwarded_for: handling.addr.chain.as_deref(),
        method: handling.method.as_str(),
        path: &handling.path,
        status: status.as_u16(),
        upstream_status: outcome.upstream_status,
        latency_ms: (took.as_secs_f64() * 1e6).round() / 1e3,
        verdict: outcome.verdict.as_str(),
        reasons: &outcome.reasons,
        cached: outcome.cached,
        error: outcome.error.map(UpstreamError::code),
        token: checked.map_or(&no_fields, |c| &c.fields),
        token_sha256_prefix: outcome.token_prefix.as_deref(),
    };
    let token_json = checked.map(|c| c.log_fields.as_str());
    shared.log.write(&record, token_json).await;
    shared
        .metrics
        .request(outcome.verdict, &outcome.reasons, took);
}

/// Handles one request of an HTTP/2 connection (hyper's server; HTTP/1 is
/// served by [`crate::h1`]).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let (handling, mut outcome, step) = begin(&shared, peer, &mut parts);
    let mut body = Either::Left(body);
    let step = match step {
        Step::ReadForm(refused) => {
            let read = read_form(&shared, body).await;
            let step = exchange_form(&shared, &mut outcome, &refused, read.as_deref());
            body = Either::Right(Full::new(read.unwrap_or_default()));
            step
        }
        step => step,
    };
    let mut response = match step {
        Step::Answer(r) => r,
        Step::Pass => match &shared.upstream {
            Some(upstream) => {
                let req = Request::from_parts(parts, body);
                forward(&shared, upstream, &handling.addr, req, &mut outcome).await
            }
            None => authz_allow(&parts.headers),
        },
        Step::ReadForm(_) => unreachable!("the form was read above"),
    };
    conclude(&shared, handling, outcome, response.status_mut()).await;
    Ok(response)
}

/// Reads a form body whole, at most [`EXCHANGE_BODY_MAX`] bytes within the
/// upstream timeout; `None` when it is longer, slower or broken.
async fn read_form(shared: &Shared, body: Body) -> Option<Bytes> {
    let limited = http_body_util::Limited::new(body, EXCHANGE_BODY_MAX);
    let read = tokio::time::timeout(shared.upstream_timeout, limited.collect()).await;
    Some(read.ok()?.ok()?.to_bytes())
}

/// The exchange guard on a form body read for [`Step::ReadForm`]: `None`
/// when it could not be read. Gives [`Step::Pass`] or the refusal.
pub(crate) fn exchange_form(
    shared: &Shared,
    outcome: &mut Outcome,
    refused_issuers: &[String],
    body: Option<&[u8]>,
) -> Step {
    let Some(body) = body else {
        outcome.verdict = Verdict::BadRequest;
        outcome.reasons.push(access::EXCHANGE_BODY_UNREADABLE);
        return Step::Answer(plain(StatusCode::PAYLOAD_TOO_LARGE, None));
    };
    if form_subject_issuer(body).is_some_and(|iss| refused_issuers.contains(&iss)) {
        outcome.verdict = Verdict::Rejected;
        outcome.reasons.push(access::EXCHANGE_SUBJECT_REFUSED);
        return Step::Answer(plain(
            StatusCode::UNAUTHORIZED,
            Some(&shared.challenge_invalid_token),
        ));
    }
    Step::Pass
}

/// The route and token checks of [`begin`].
fn judge(shared: &Shared, parts: &mut hyper::http::request::Parts, now: i64) -> (Outcome, Step) {
    let path = parts.uri.path();
    if !path_is_normalized(path) {
        let o = Outcome::refused(Verdict::BadRequest, access::PATH_NOT_NORMALIZED);
        return (o, Step::Answer(plain(StatusCode::BAD_REQUEST, None)));
    }
    if parts.method == Method::CONNECT {
        // Tunnels would carry bytes the gateway never sees.
        let o = Outcome::new(Verdict::BadRequest);
        return (o, Step::Answer(plain(StatusCode::METHOD_NOT_ALLOWED, None)));
    }
    let (policy, generation) = shared.current_policy();
    let exchange = exchange_rule(&policy, path);
    let required = exchange.is_some()
        || policy
            .route_for(path)
            .is_none_or(|r| r.auth == tokenward_trust::RouteAuth::Required);

    if !required {
        // A public route: an unverified token must not reach the upstream,
        // which might act on it.
        parts.headers.remove(header::AUTHORIZATION);
        return (Outcome::new(Verdict::NotRequired), Step::Pass);
    }
    let bad_request = |reason| {
        let r = plain(
            StatusCode::BAD_REQUEST,
            Some(&shared.challenge_invalid_request),
        );
        (
            Outcome::refused(Verdict::BadRequest, reason),
            Step::Answer(r),
        )
    };
    if query_has_access_token(&parts.uri) {
        return bad_request(access::TOKEN_IN_QUERY);
    }
    let mut auths = parts.headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (auths.next(), auths.next());
    if second.is_some() {
        return bad_request(access::AUTHORIZATION_REPEATED);
    }
    let Some(token) = first.and_then(|v| bearer_token(v.as_bytes())) else {
        // No bearer credentials at all (RFC 6750 §3.1: no error code).
        let o = Outcome::refused(Verdict::NoToken, access::TOKEN_MISSING);
        let r = plain(StatusCode::UNAUTHORIZED, Some(&shared.challenge_missing));
        return (o, Step::Answer(r));
    };

    let hash: TokenHash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token)
        .as_ref()
        .try_into()
        .unwrap_or([0; 32]);
    let mut outcome = Outcome::new(Verdict::Rejected);
    outcome.token_prefix = Some(hex_prefix(&hash));
    let checked = match shared
        .cache
        .get(&hash, now)
        .filter(|c| c.generation == generation)
    {
        Some(c) => {
            outcome.cached = true;
            shared.metrics.cache(true);
            c
        }
        None => {
            shared.metrics.cache(false);
            let text = String::from_utf8_lossy(token);
            let (mut c, mut until) = check(&policy, &text, now, generation, shared.cache_max_ttl);
            if c.accepted() && keys_stale(&shared.current_live(), &policy, &c, now) {
                // The source of this token's keys has failed for longer than
                // the policy's max_staleness: the key may have been withdrawn.
                c.reasons.push(ReasonCode::KeysStale.code());
                c.identity.clear();
                until = None;
            }
            if c.reasons.contains(&ReasonCode::KidUnknown.code()) {
                let mut slot = shared.unknown_kid.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(text.into_owned());
                    shared.nudge.notify_one();
                }
            }
            let c = Arc::new(c);
            if let Some(until) = until {
                shared.cache.insert(hash, c.clone(), until, now);
            }
            c
        }
    };
    outcome.reasons = checked.reasons.clone();
    if checked.accepted() {
        if let (Some(rule), Some(iss)) = (exchange, checked.fields.iss.as_deref()) {
            if rule.refuse_subject_issuers.iter().any(|r| r == iss) {
                outcome.reasons.push(access::EXCHANGE_SUBJECT_REFUSED);
            }
        }
    }
    outcome.checked = Some(checked.clone());
    if !outcome.reasons.is_empty() {
        let r = plain(
            StatusCode::UNAUTHORIZED,
            Some(&shared.challenge_invalid_token),
        );
        return (outcome, Step::Answer(r));
    }
    outcome.verdict = Verdict::Accepted;
    for (name, value) in &checked.identity {
        parts.headers.insert(name.clone(), value.clone());
    }
    match exchange {
        Some(rule) if is_form(&parts.headers) => {
            (outcome, Step::ReadForm(rule.refuse_subject_issuers.clone()))
        }
        _ => (outcome, Step::Pass),
    }
}

/// Whether the body is a URL-encoded form.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// The authz answer for an allowed request: 200 with every identity header,
/// empty when there is no identity (a public route, a claim the token
/// lacks), so a proxy that copies headers from this answer overwrites the
/// client's copies with nothing. Caddy 2.6 otherwise sends the literal
/// placeholder text upstream.
pub(crate) fn authz_allow(request: &HeaderMap) -> Response<Body> {
    let mut r = plain(StatusCode::OK, None);
    for name in IDENTITY_HEADERS {
        let value = request
            .get(name)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(""));
        r.headers_mut().insert(name, value);
    }
    r
}

/// The headers every upstream request gets, whatever the client spoke: a
/// `Host` (HTTP/2 carries it in the URI's `:authority`; a request without
/// one names the upstream) and the gateway's own `X-Forwarded-For`.
pub(crate) fn upstream_headers(
    headers: &mut HeaderMap,
    uri: &Uri,
    upstream: &Upstream,
    addr: &ClientAddr,
) {
    if !headers.contains_key(header::HOST) {
        let authority = uri.authority().unwrap_or(&upstream.authority);
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(header::HOST, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&addr.forwarded_for()) {
        headers.insert("x-forwarded-for", v);
    }
}

/// Sends the request upstream with hyper's pooled client and streams the
/// answer back.
async fn forward(
    shared: &Shared,
    upstream: &Upstream,
    addr: &ClientAddr,
    mut up: Request<Body>,
    outcome: &mut Outcome,
) -> Response<Body> {
    let uri = up.uri().clone();
    upstream_headers(up.headers_mut(), &uri, upstream, addr);
    match upstream.uri_for(&uri) {
        Ok(u) => *up.uri_mut() = u,
        Err(_) => return plain(StatusCode::BAD_REQUEST, None),
    }
    // The upstream leg is always HTTP/1.1, whatever the client spoke.
    *up.version_mut() = Version::HTTP_11;
    let result = tokio::time::timeout(shared.upstream_timeout, shared.client.request(up)).await;
    match result {
        Ok(Ok(resp)) => {
            outcome.answered(resp.status().as_u16());
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Left(body))
        }
        Ok(Err(e)) if e.is_connect() => outcome.upstream_failed(shared, UpstreamError::Unavailable),
        Ok(Err(_)) => outcome.upstream_failed(shared, UpstreamError::Failed),
        Err(_) => outcome.upstream_failed(shared, UpstreamError::Timeout),
    }
}

/// The original method and URI of an authz sub-request: `Ok(None)` when
/// the sub-request is the original (Envoy), `Err` when the headers the
/// protocol needs are missing or malformed.
fn original_request(
    protocol: crate::AuthzProtocol,
    headers: &HeaderMap,
) -> Result<Option<(Method, Uri)>, ()> {
    let (method_header, uri_header) = match protocol {
        crate::AuthzProtocol::Envoy => return Ok(None),
        crate::AuthzProtocol::Nginx => ("x-original-method", "x-original-uri"),
        crate::AuthzProtocol::Caddy => ("x-forwarded-method", "x-forwarded-uri"),
    };
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().map(str::to_owned),
            _ => None,
        }
    };
    let method = one(method_header)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(())?;
    let uri: Uri = one(uri_header).and_then(|u| u.parse().ok()).ok_or(())?;
    // Only a path and query: an absolute URI here would be a confusion.
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') {
        return Err(());
    }
    Ok(Some((method, uri)))
}

/// A response of our own: empty body, optional `WWW-Authenticate`.
pub(crate) fn plain(status: StatusCode, challenge: Option<&HeaderValue>) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
    *r.status_mut() = status;
    if let Some(c) = challenge {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, c.clone());
        // A refusal about credentials must not be cached by intermediaries.
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the proxy credentials, which
/// belong to this hop and must not travel on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header
/// names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none (and none without `Connection` can name
    // any): one pass over the names instead of a removal per name.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// The reason logged for a request whose framing was refused.
const MALFORMED_REQUEST: &str = "malformed-request";

/// Logs a request refused before its head could be parsed: the peer is
/// all that is known (no method, path or token was read).
pub(crate) async fn log_unparsed(shared: &Shared, peer: SocketAddr, too_large: bool) {
    let no_fields = TokenFields::default();
    let record = AccessRecord {
        time: access::rfc3339_millis(shared.clock.now()),
        client_ip: peer.ip().to_string(),
        peer_ip: peer.ip().to_string(),
        x_forwarded_for: None,
        method: "-",
        path: "-",
        status: if too_large { 431 } else { 400 },
        upstream_status: None,
        latency_ms: 0.0,
        verdict: Verdict::BadRequest.as_str(),
        reasons: &[MALFORMED_REQUEST],
        cached: false,
        error: None,
        token: &no_fields,
        token_sha256_prefix: None,
    };
    shared.log.write(&record, None).await;
    shared
        .metrics
        .request(Verdict::BadRequest, &[MALFORMED_REQUEST], Duration::ZERO);
}

/// Applies the [`crate::UnderscoreHeaders`] mode to request headers whose
/// names hold `_`: true when the request must be refused, else the headers
/// the mode drops are gone. In authz mode the front proxy forwards the
/// client's headers whatever the gateway removes here, so one that reads
/// as an identity header refuses the request in every mode.
pub(crate) fn screen_underscore_headers(
    headers: &mut HeaderMap,
    mode: crate::UnderscoreHeaders,
    authz: bool,
) -> bool {
    use crate::UnderscoreHeaders::{Drop, Forward, Refuse};
    let underscored = |k: &&HeaderName| k.as_str().contains('_');
    let poses_as_identity = |headers: &HeaderMap| {
        headers
            .keys()
            .filter(underscored)
            .any(|k| reads_as_identity(k.as_str()))
    };
    match mode {
        Refuse => headers.keys().any(|k| underscored(&k)),
        Forward => authz && poses_as_identity(headers),
        Drop => {
            if authz && poses_as_identity(headers) {
                return true;
            }
            let gone: Vec<HeaderName> = headers.keys().filter(underscored).cloned().collect();
            for k in gone {
                headers.remove(k);
            }
            false
        }
    }
}

/// Whether a client header would reach the upstream as one of the
/// gateway's identity headers, once `_` is read as `-`.
fn reads_as_identity(name: &str) -> bool {
    read_as_dashes(name).starts_with(IDENTITY_PREFIX)
}

/// A header name as WSGI, CGI and many frameworks read it: `_` as `-`
/// (borrowed when there is none, as in almost every request).
fn read_as_dashes(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('_') {
        std::borrow::Cow::Owned(name.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Prepares incoming headers for forwarding: hop-by-hop headers go, and so
/// does every `x-tokenward-*` header a client might send to impersonate a
/// verified identity. Done before the gateway adds its own, so a
/// `Connection: x-tokenward-sub` trick cannot remove them either.
///
/// Names are compared with `_` read as `-`: WSGI, CGI and many frameworks
/// map `X_Tokenward_Sub` to the same variable as `X-Tokenward-Sub`. The
/// client's own address claims (`X-Real-IP`, `Forwarded`, and spellings of
/// `X-Forwarded-For` the gateway would not overwrite) go too: the gateway
/// sets `X-Forwarded-For` itself from what it can vouch for.
pub(crate) fn sanitize_request_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let name = read_as_dashes(k.as_str());
            name.starts_with(IDENTITY_PREFIX) || CLIENT_ADDRESS_CLAIMS.contains(&&*name)
        })
        .cloned()
        .collect();
    for n in spoofed {
        headers.remove(n);
    }
}

/// Whether the upstream will see the same path the route rules were checked
/// against. Dot segments, empty segments, encoded `.` `/` `\` and NUL, and
/// backslashes could all be resolved by the upstream into another path (a
/// public prefix turned into a protected one, a token-exchange endpoint
/// reached under another spelling), so such requests are refused.
pub(crate) fn path_is_normalized(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') || path.contains("//") {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return false;
    }
    !path.split('/').any(|seg| {
        let seg = seg.split(';').next().unwrap_or(seg);
        seg == "." || seg == ".."
    })
}

/// The token-exchange rule that applies to `path`, if any. Matched more
/// loosely than the other rules (ASCII case, `;parameters` and trailing
/// slashes ignored), because servers such as IIS treat those spellings as
/// the same endpoint and a refusal must not be side-stepped by respelling.
fn exchange_rule<'p>(policy: &'p Policy, path: &str) -> Option<&'p tokenward_trust::Route> {
    let loose = loosen(path);
    policy.routes().iter().find(|r| {
        r.token_exchange
            && match r.path.strip_suffix('*') {
                Some(prefix) => loose.starts_with(&prefix.to_ascii_lowercase()),
                None => loose == loosen(&r.path),
            }
    })
}

fn loosen(path: &str) -> String {
    let no_params: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(seg))
        .collect();
    let joined = no_params.join("/").to_ascii_lowercase();
    let trimmed = joined.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Whether the query string has an `access_token` parameter (RFC 6750
/// §2.3), which the gateway refuses rather than lets through unverified.
/// Parameter names are percent-decoded first (`%61ccess_token` is
/// `access_token` to the upstream's query parser).
fn query_has_access_token(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or(pair);
            percent_decode(name).eq_ignore_ascii_case(b"access_token")
        })
    })
}

/// Largest form body read on a token-exchange route to find its
/// `subject_token`; longer bodies are refused (413).
pub(crate) const EXCHANGE_BODY_MAX: usize = 64 * 1024;

/// The `iss` a form body's `subject_token` claims (unverified: the guard
/// refuses issuers, it does not vouch for any).
fn form_subject_issuer(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let token = text.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (percent_decode(name) == b"subject_token").then(|| percent_decode(value))
    })?;
    let token = String::from_utf8(token).ok()?;
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&tokenward_jose::decode_b64url(payload.as_bytes()).ok()?).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// `%XX` escapes decoded (malformed ones kept as they are); `+` is a space
/// in a query.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1;
/// the scheme name is case-insensitive, RFC 9110 §11.1). `None` for other
/// schemes or an empty token.
pub(crate) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    if rest[0] != b' ' {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    let token = rest[start..].trim_ascii_end();
    (!token.is_empty()).then_some(token)
}

/// The request checks on one fuzzed request, with the properties they
/// promise asserted (built only by `cargo fuzz`, see `fuzz/`).
#[cfg(fuzzing)]
pub fn fuzz_request_checks(
    path_and_query: &str,
    authorization: &[u8],
    headers: &[(&[u8], &[u8])],
    body: &[u8],
) {
    if path_is_normalized(path_and_query) {
        // What the upstream resolves must be what the rules were checked
        // against: no dot segment appears once escapes are decoded.
        let decoded = percent_decode(path_and_query);
        let decoded = String::from_utf8_lossy(&decoded);
        assert!(
            !decoded.split('/').any(|s| {
                let s = s.split(';').next().unwrap_or(s);
                s == "." || s == ".."
            }),
            "{path_and_query:?} passed as normalised"
        );
        let _ = loosen(path_and_query);
    }
    if let Ok(uri) = path_and_query.parse::<Uri>() {
        let _ = query_has_access_token(&uri);
    }
    if let Some(t) = bearer_token(authorization) {
        assert!(!t.is_empty() && !t.starts_with(b" ") && !t.ends_with(b" "));
    }
    let _ = form_subject_issuer(body);
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    for mode in [
        crate::UnderscoreHeaders::Refuse,
        crate::UnderscoreHeaders::Drop,
        crate::UnderscoreHeaders::Forward,
    ] {
        for authz in [false, true] {
            let mut m = map.clone();
            if screen_underscore_headers(&mut m, mode, authz) {
                continue;
            }
            for name in m.keys().map(|k| k.as_str()) {
                assert!(
                    mode == crate::UnderscoreHeaders::Forward || !name.contains('_'),
                    "{name} passed {mode:?}"
                );
                assert!(!authz || !reads_as_identity(name), "{name} passed authz");
            }
        }
    }
    sanitize_request_headers(&mut map);
    for name in map.keys() {
        let name = read_as_dashes(name.as_str());
        assert!(!name.starts_with(IDENTITY_PREFIX), "{name} survived");
        assert!(!HOP_BY_HOP.contains(&&*name), "{name} survived");
    }
}

fn hex_prefix(hash: &TokenHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(16);
    for b in &hash[..8] {
        hex.push(DIGITS[usize::from(b >> 4)] as char);
        hex.push(DIGITS[usize::from(b & 15)] as char);
    }
    hex
}

/// Header values must be visible ASCII; claim values are arbitrary
/// Unicode. Anything else, and `%` itself, is percent-encoded (RFC 3986
/// style, UTF-8 bytes) so the upstream can decode the value unambiguously.
fn identity_value(s: &str) -> Option<HeaderValue> {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// Whether a key set serving the issuer of this (accepted) token's key is
/// past its `max_staleness`. Only reads the sets' state; never fetches.
fn keys_stale(live: &LivePolicy, policy: &Policy, c: &Checked, now: i64) -> bool {
    let Some(kid) = c.fields.kid.as_deref() else {
        return false;
    };
    let scopes: Vec<usize> = policy
        .keys_with_kid(kid)
        .iter()
        .filter_map(|k| k.scope)
        .collect();
    live.key_sets()
        .iter()
        .zip(policy.key_sources())
        .any(|(set, src)| set.is_stale(now) && src.entries.iter().any(|e| scopes.contains(e)))
}

/// Verifies a token and prepares everything a request needs from it.
/// Returns the cache expiry (unix seconds) for accepted tokens: the token's
/// `exp`, the end of its key's validity, or `now + max_ttl`, whichever comes
/// first.
pub(crate) fn check(
    policy: &Policy,
    token: &str,
    now: i64,
    generation: u64,
    max_ttl: i64,
) -> (Checked, Option<i64>) {
    let v = policy.verify(token, now);
    let reasons: Vec<&'static str> = v.codes().iter().map(|c| c.code()).collect();
    let mut fields = TokenFields {
        kid: v.kid.clone(),
        x5t: v.x5t.clone(),
        alg: v.alg.map(|a| a.name()),
        ..TokenFields::default()
    };
    if let Some(c) = &v.claims {
        fields.iss = c.iss().map(str::to_owned);
        fields.tid = c.tid().map(str::to_owned);
        fields.aud = c.aud().map(|a| a.to_vec());
        fields.sub = c.sub().map(str::to_owned);
        fields.oid = c.oid().map(str::to_owned);
        fields.appid = c.appid().map(str::to_owned);
        fields.azp = c.azp().map(str::to_owned);
        fields.client_id = c.client_id().map(str::to_owned);
        fields.uti = c.uti().map(str::to_owned);
        fields.jti = c.jti().map(str::to_owned);
        fields.sid = c.sid().map(str::to_owned);
        fields.iat = c.iat.map(|d| d.0);
        fields.nbf = c.nbf.map(|d| d.0);
        fields.exp = c.exp.map(|d| d.0);
    }
    let mut identity = Vec::new();
    let mut until = None;
    if v.accepted() {
        for (name, value) in
            IDENTITY_HEADERS
                .into_iter()
                .zip([&fields.sub, &fields.tid, &fields.iss, &fields.kid])
        {
            if let Some(hv) = value.as_deref().and_then(identity_value) {
                identity.push((HeaderName::from_static(name), hv));
            }
        }
        let key_end = v.kid.as_deref().and_then(|kid| {
            policy
                .keys_with_kid(kid)
                .iter()
                .filter_map(|k| k.not_after)
                .min()
        });
        let exp = fields.exp.map(|e| e.floor() as i64);
        until = [exp, key_end, Some(now.saturating_add(max_ttl))]
            .into_iter()
            .flatten()
            .min();
        // No `exp` means nothing bounds the verdict: never cache it.
        if exp.is_none() {
            until = None;
        }
    }
    (
        Checked {
            reasons,
            log_fields: fields.members_json(),
            fields,
            identity,
            generation,
        },
        until,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenward_jose::{Algorithm, SigningKey};

    /// A policy with one RS256 key `k1`, optionally ending at `not_after`.
    fn policy_with_key(not_after: Option<i64>) -> (tempfile::TempDir, Policy, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let jwks = serde_json::json!({"keys": [key.public_jwk("k1")]});
        std::fs::write(dir.path().join("k.json"), jwks.to_string()).unwrap();
        let mut text = String::from(
            "[[issuer]]\nissuer = \"https://iss.example\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\njwks = \"k.json\"\n",
        );
        if let Some(t) = not_after {
            let when = tokenward_trust::format_rfc3339(t);
            text.push_str(&format!("[[key]]\nkid = \"k1\"\nnot_after = \"{when}\"\n"));
        }
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        let policy = Policy::load(&path).unwrap();
        (dir, policy, key)
    }

    fn token(key: &SigningKey, now: i64, exp: i64) -> String {
        key.sign_token(
            &serde_json::json!({"alg": "RS256", "kid": "k1"}),
            &serde_json::json!({"iss": "https://iss.example", "aud": "api", "sub": "u",
                                "iat": now, "exp": exp}),
        )
        .unwrap()
    }

    #[test]
    fn cached_verdicts_end_with_the_token_the_key_or_the_ttl() {
        let now = 1_800_000_000;
        let (_d, policy, key) = policy_with_key(None);
        // The token's exp comes first.
        let (c, until) = check(&policy, &token(&key, now, now + 60), now, 7, 300);
        assert!(c.accepted(), "{:?}", c.reasons);
        assert_eq!(c.generation, 7);
        assert_eq!(until, Some(now + 60));
        // The cache's own bound comes first.
        let (_, until) = check(&policy, &token(&key, now, now + 3600), now, 0, 300);
        assert_eq!(until, Some(now + 300));
        // The key's validity ends first.
        let (_d2, policy, key) = policy_with_key(Some(now + 100));
        let (c, until) = check(&policy, &token(&key, now, now + 3600), now, 0, 300);
        assert!(c.accepted(), "{:?}", c.reasons);
        assert_eq!(until, Some(now + 100));
        // Refusals are never cached.
        let (c, until) = check(&policy, &token(&key, now, now - 3600), now, 0, 300);
        assert!(!c.accepted());
        assert_eq!(until, None);
        assert!(c.identity.is_empty(), "no identity headers for a refusal");
    }

    #[test]
    fn identity_headers_carry_the_verified_claims() {
        let now = 1_800_000_000;
        let (_d, policy, key) = policy_with_key(None);
        let (c, _) = check(&policy, &token(&key, now, now + 60), now, 0, 300);
        let names: Vec<(&str, &str)> = c
            .identity
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("x-tokenward-sub", "u"),
                ("x-tokenward-iss", "https://iss.example"),
                ("x-tokenward-kid", "k1")
            ],
            "tid is absent from the token, so its header is too"
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bEaReR   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), None);
    }

    #[test]
    fn paths_that_could_be_resolved_differently_are_refused() {
        for ok in ["/", "/orders/1", "/a%20b", "/x;y=1", "/.well-known/openid"] {
            assert!(path_is_normalized(ok), "{ok}");
        }
        for bad in [
            "/public/../admin",
            "/public/./x",
            "/public/..",
            "/public/%2e%2e/admin",
            "/public/%2E./admin",
            "/a%2fb",
            "/a\\b",
            "//admin",
            "/a/..;/b",
            "/x%00",
        ] {
            assert!(!path_is_normalized(bad), "{bad}");
        }
    }

    #[test]
    fn exchange_paths_are_matched_loosely() {
        assert_eq!(
            loosen("/OWA/Service;x=1/GetAccessToken/"),
            "/owa/service/getaccesstoken"
        );
        assert_eq!(loosen("/"), "/");
    }

    #[test]
    fn query_tokens_are_detected() {
        let u: Uri = "/x?a=1&access_token=abc".parse().unwrap();
        assert!(query_has_access_token(&u));
        let u: Uri = "/x?Access_Token".parse().unwrap();
        assert!(query_has_access_token(&u));
        let u: Uri = "/x?my_access_token=1".parse().unwrap();
        assert!(!query_has_access_token(&u));
        // Percent-encoded names are what the upstream's parser decodes.
        for q in [
            "/x?%61ccess_token=x",
            "/x?access%5Ftoken=x",
            "/x?%41CCESS%5ftoken=x",
        ] {
            let u: Uri = q.parse().unwrap();
            assert!(query_has_access_token(&u), "{q}");
        }
        let u: Uri = "/x?%61ccess_tokens=x&%zz=1&a=%61ccess_token"
            .parse()
            .unwrap();
        assert!(!query_has_access_token(&u), "only parameter names count");
    }

    #[test]
    fn identity_values_are_encoded_unambiguously() {
        assert_eq!(identity_value("user-1").unwrap(), "user-1");
        assert_eq!(identity_value("a b%\n").unwrap(), "a%20b%25%0A");
        assert_eq!(identity_value("é").unwrap(), "%C3%A9");
    }

    #[test]
    fn underscore_header_names_are_refused_dropped_or_forwarded() {
        use crate::UnderscoreHeaders::{Drop, Forward, Refuse};
        let headers = |names: &[&str]| {
            let mut h = HeaderMap::new();
            for n in names {
                h.insert(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    "v".parse().unwrap(),
                );
            }
            h
        };
        let names = |h: &HeaderMap| {
            let mut v: Vec<String> = h.keys().map(|k| k.to_string()).collect();
            v.sort();
            v
        };
        // Without underscores, no mode touches anything.
        for mode in [Refuse, Drop, Forward] {
            for authz in [false, true] {
                let mut h = headers(&["accept", "x-tokenward-sub"]);
                assert!(!screen_underscore_headers(&mut h, mode, authz));
                assert_eq!(h.len(), 2);
            }
        }
        // An ordinary underscore header.
        let mut h = headers(&["accept", "x_request_id"]);
        assert!(screen_underscore_headers(&mut h, Refuse, false));
        let mut h = headers(&["accept", "x_request_id"]);
        assert!(!screen_underscore_headers(&mut h, Drop, true));
        assert_eq!(names(&h), ["accept"]);
        let mut h = headers(&["accept", "x_request_id"]);
        assert!(!screen_underscore_headers(&mut h, Forward, true));
        assert_eq!(names(&h), ["accept", "x_request_id"]);
        // One that reads as an identity header: proxy mode can remove it
        // (sanitize_request_headers does under Forward), authz mode cannot.
        for mode in [Refuse, Drop, Forward] {
            let mut h = headers(&["x_tokenward_sub"]);
            assert!(screen_underscore_headers(&mut h, mode, true), "{mode:?}");
        }
        let mut h = headers(&["x_tokenward_sub"]);
        assert!(!screen_underscore_headers(&mut h, Drop, false));
        assert!(h.is_empty());
        let mut h = headers(&["x_tokenward_sub", "accept"]);
        assert!(!screen_underscore_headers(&mut h, Forward, false));
        sanitize_request_headers(&mut h);
        assert_eq!(names(&h), ["accept"]);
    }

    #[test]
    fn hop_by_hop_and_spoofed_identity_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-tokenward-sub", "admin".parse().unwrap());
        h.insert("X-Tokenward-Other", "1".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        // Underscore spellings reach WSGI/CGI apps as the same variable.
        h.insert("x_tokenward_sub", "admin".parse().unwrap());
        h.insert("X_TOKENWARD_TID", "t".parse().unwrap());
        // Address claims the client makes about itself.
        h.insert("x-real-ip", "10.0.0.1".parse().unwrap());
        h.insert("forwarded", "for=10.0.0.1".parse().unwrap());
        h.insert("x_forwarded_for", "10.0.0.1".parse().unwrap());
        h.insert("x-request-id", "r1".parse().unwrap());
        sanitize_request_headers(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("accept") && h.contains_key("x-request-id"));
    }
}
