//! The access log: one JSON object per request, one per line. The format is
//! a contract (documented in `docs/gateway.md`; `tokenward hunt` reads it),
//! so fields are only ever added. Every field is always present, `null` when
//! it does not apply, so readers never have to guess between "absent" and
//! "not logged".

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

/// What the gateway decided about a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A token passed policy (and the route's rules).
    Accepted,
    /// A token was presented and refused.
    Rejected,
    /// The route needs a token and none was presented.
    NoToken,
    /// The route needs no token (`auth = "none"`).
    NotRequired,
    /// The request was refused before any token was looked at (malformed
    /// path, several `Authorization` headers, token in the query string).
    BadRequest,
}

impl Verdict {
    /// Every verdict, in metric order.
    pub const ALL: [Verdict; 5] = [
        Verdict::Accepted,
        Verdict::Rejected,
        Verdict::NoToken,
        Verdict::NotRequired,
        Verdict::BadRequest,
    ];

    /// The string in the log's `verdict` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::NoToken => "no-token",
            Verdict::NotRequired => "not-required",
            Verdict::BadRequest => "bad-request",
        }
    }
}

/// A token-exchange route refused a subject token issued by one of the
/// issuers it must not accept (the `GetAccessTokenForResource` renewal flaw).
pub const EXCHANGE_SUBJECT_REFUSED: &str = "exchange-subject-refused";
/// The route needs a token and the request has none.
pub const TOKEN_MISSING: &str = "token-missing";
/// A token-exchange request whose form body is over 64 KiB or did not
/// arrive in time: its `subject_token` could not be inspected.
pub const EXCHANGE_BODY_UNREADABLE: &str = "exchange-body-unreadable";
/// An authz sub-request without the original method and URI its proxy
/// must send (`X-Original-*` for nginx, `X-Forwarded-*` for Caddy), or
/// with them malformed or repeated.
pub const AUTHZ_ORIGINAL_MISSING: &str = "authz-original-missing";
/// The request carries more than one `Authorization` header.
pub const AUTHORIZATION_REPEATED: &str = "authorization-repeated";
/// An `access_token` query parameter (RFC 6750 §2.3), which the gateway does
/// not accept: the upstream might read it instead of the verified header.
pub const TOKEN_IN_QUERY: &str = "token-in-query";
/// The path has dot segments, encoded slashes or dots, backslashes or NUL,
/// which the upstream might resolve to a path other than the one the route
/// rules were checked against.
pub const PATH_NOT_NORMALIZED: &str = "path-not-normalized";

/// A request header name holds `_` (refused under the default
/// [`crate::UnderscoreHeaders::Refuse`], and always in authz mode when the
/// name reads as an identity header with `_` as `-`): WSGI, CGI and many
/// frameworks read `X_Tokenward_Sub` as `X-Tokenward-Sub`.
pub const HEADER_NAME_UNDERSCORE: &str = "header-name-underscore";

/// Reason codes the gateway adds to the `trust` ones.
pub const GATEWAY_REASONS: [&str; 8] = [
    EXCHANGE_SUBJECT_REFUSED,
    EXCHANGE_BODY_UNREADABLE,
    TOKEN_MISSING,
    AUTHORIZATION_REPEATED,
    TOKEN_IN_QUERY,
    PATH_NOT_NORMALIZED,
    AUTHZ_ORIGINAL_MISSING,
    HEADER_NAME_UNDERSCORE,
];

/// The token-derived fields of a log line. For a rejected token these are
/// what the token claimed, unverified: exactly what an investigator needs
/// (which key did the forger name, for which tenant).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenFields {
    /// Header `kid`.
    pub kid: Option<String>,
    /// Header `x5t`, else the matched key's certificate thumbprint.
    pub x5t: Option<String>,
    /// Header `alg`.
    pub alg: Option<&'static str>,
    /// `iss`.
    pub iss: Option<String>,
    /// `tid`.
    pub tid: Option<String>,
    /// `aud`, always as an array.
    pub aud: Option<Vec<String>>,
    /// `sub`.
    pub sub: Option<String>,
    /// `oid`.
    pub oid: Option<String>,
    /// `appid` (Entra v1).
    pub appid: Option<String>,
    /// `azp` (OIDC, Entra v2).
    pub azp: Option<String>,
    /// `client_id` (RFC 9068).
    pub client_id: Option<String>,
    /// `uti` (Entra unique token id).
    pub uti: Option<String>,
    /// `jti`.
    pub jti: Option<String>,
    /// `sid`.
    pub sid: Option<String>,
    /// `iat`, seconds since the epoch.
    #[serde(serialize_with = "numeric_date")]
    pub iat: Option<f64>,
    /// `nbf`, seconds since the epoch.
    #[serde(serialize_with = "numeric_date")]
    pub nbf: Option<f64>,
    /// `exp`, seconds since the epoch.
    #[serde(serialize_with = "numeric_date")]
    pub exp: Option<f64>,
}

impl TokenFields {
    /// The fields as the members of a JSON object (without its braces), as
    /// they appear in a log line: serialized once per verified token
    /// instead of once per use of its cached verdict.
    pub(crate) fn members_json(&self) -> String {
        let object = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        object[1..object.len() - 1].to_owned()
    }
}

/// A NumericDate as the token had it: an integer when it is one (the
/// usual case), else the fraction it carried.
fn numeric_date<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match *v {
        Some(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => s.serialize_i64(d as i64),
        Some(d) => s.serialize_f64(d),
        None => s.serialize_none(),
    }
}

/// One access log line.
#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The client address (see `docs/gateway.md` for trusted proxies).
    pub client_ip: String,
    /// The TCP peer address.
    pub peer_ip: String,
    /// The `X-Forwarded-For` entries when the peer is a trusted proxy.
    pub x_forwarded_for: Option<&'a [String]>,
    /// HTTP method.
    pub method: &'a str,
    /// Request path, without the query string (which may carry secrets),
    /// cut to 1024 bytes.
    pub path: &'a str,
    /// Status sent to the client.
    pub status: u16,
    /// Status the upstream answered with; `null` when the request was not
    /// forwarded or the upstream did not answer.
    pub upstream_status: Option<u16>,
    /// Milliseconds from request received to response headers sent.
    pub latency_ms: f64,
    /// `accepted`, `rejected`, `no-token`, `not-required` or `bad-request`.
    pub verdict: &'static str,
    /// Reason codes, in check order; empty when accepted.
    pub reasons: &'a [&'static str],
    /// Whether the verdict came from the cache.
    pub cached: bool,
    /// Upstream failure code, when the upstream did not answer.
    pub error: Option<&'static str>,
    /// The token's fields.
    #[serde(flatten)]
    pub token: &'a TokenFields,
    /// First 16 hex digits of the SHA-256 of the token: correlates uses of
    /// one token without logging a credential.
    pub token_sha256_prefix: Option<&'a str>,
}

impl AccessRecord<'_> {
    /// Appends the record's log line, newline included: the bytes
    /// `serde_json` writes for it, with the token's fields taken from
    /// `token_json` ([`TokenFields::members_json`] of `self.token`) when
    /// given rather than serialized again.
    pub(crate) fn write_line(
        &self,
        out: &mut Vec<u8>,
        token_json: Option<&str>,
    ) -> serde_json::Result<()> {
        let Some(token_json) = token_json else {
            serde_json::to_writer(&mut *out, self)?;
            out.push(b'\n');
            return Ok(());
        };
        macro_rules! member {
            ($before:literal, $name:literal, $value:expr) => {
                out.extend_from_slice(concat!($before, "\"", $name, "\":").as_bytes());
                serde_json::to_writer(&mut *out, &$value)?;
            };
        }
        member!("{", "time", self.time);
        member!(",", "client_ip", self.client_ip);
        member!(",", "peer_ip", self.peer_ip);
        member!(",", "x_forwarded_for", self.x_forwarded_for);
        member!(",", "method", self.method);
        member!(",", "path", self.path);
        member!(",", "status", self.status);
        member!(",", "upstream_status", self.upstream_status);
        member!(",", "latency_ms", self.latency_ms);
        member!(",", "verdict", self.verdict);
        member!(",", "reasons", self.reasons);
        member!(",", "cached", self.cached);
        member!(",", "error", self.error);
        out.push(b',');
        out.extend_from_slice(token_json.as_bytes());
        member!(",", "token_sha256_prefix", self.token_sha256_prefix);
        out.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// Lines are appended to one shared buffer and written out by a thread in
/// batches: a request costs a short lock and a copy, not a wake-up of the
/// writer (which, per line, cost more than the rest of the log).
struct LogInner {
    buf: Mutex<Vec<u8>>,
    /// Wakes the writer early (buffer past `WAKE_AT`, or a flush).
    wake: Condvar,
    /// Wakes requests waiting for room (buffer past `MAX_BUFFERED`).
    room: Notify,
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
    failed: AtomicBool,
}

/// The writer drains at least this often, so a quiet gateway's log is
/// never more than this far behind.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes that wake the writer before its next round.
const WAKE_AT: usize = 256 * 1024;
/// Buffered bytes past which requests wait for the writer (backpressure)
/// rather than drop lines or grow memory without bound: the log is the
/// point.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

impl LogInner {
    /// Writes out everything buffered so far, in order.
    fn drain(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let batch = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()));
        self.room.notify_waiters();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                eprintln!("tokenward gateway: writing the access log failed: {e}");
            }
        }
    }
}

impl Drop for LogInner {
    fn drop(&mut self) {
        self.drain();
    }
}

/// Hands lines to the writer thread.
#[derive(Clone)]
pub(crate) struct LogSender {
    inner: Arc<LogInner>,
}

impl LogSender {
    /// Starts the writer thread. It holds only a weak reference, and ends
    /// once every sender is gone (the last one drains what is left).
    pub(crate) fn start(out: Box<dyn Write + Send>) -> LogSender {
        let inner = Arc::new(LogInner {
            buf: Mutex::new(Vec::with_capacity(WAKE_AT)),
            wake: Condvar::new(),
            room: Notify::new(),
            out: Mutex::new(BufWriter::with_capacity(64 * 1024, out)),
            failed: AtomicBool::new(false),
        });
        let weak: Weak<LogInner> = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("tokenward-access-log".into())
            .spawn(move || {
                while let Some(inner) = weak.upgrade() {
                    {
                        let buf = inner.buf.lock().unwrap_or_else(|p| p.into_inner());
                        if buf.len() < WAKE_AT {
                            let _ = inner.wake.wait_timeout(buf, DRAIN_EVERY);
                        }
                    }
                    inner.drain();
                }
            })
            .expect("spawning the access log thread");
        LogSender { inner }
    }

    /// Appends one record; `token_json` as for [`AccessRecord::write_line`].
    pub(crate) async fn write(&self, record: &AccessRecord<'_>, token_json: Option<&str>) {
        let mut line = Vec::with_capacity(768);
        if let Err(e) = record.write_line(&mut line, token_json) {
            // Serializing plain strings and numbers cannot fail; if it ever
            // did, losing the line silently would be worse than a note.
            line = format!("{{\"error\":\"access log serialization: {e}\"}}\n").into_bytes();
        }
        loop {
            let room = self.inner.room.notified();
            {
                let mut buf = self.inner.buf.lock().unwrap_or_else(|p| p.into_inner());
                if buf.len() < MAX_BUFFERED {
                    buf.extend_from_slice(&line);
                    if buf.len() >= WAKE_AT {
                        self.inner.wake.notify_one();
                    }
                    return;
                }
                self.inner.wake.notify_one();
            }
            room.await;
        }
    }

    /// Writes and flushes everything appended so far.
    pub(crate) async fn flush(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.drain()).await;
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-01-02T03:04:05.678Z`.
pub(crate) fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt)
        .unwrap_or_else(|_| String::from("invalid-time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_present_even_when_null() {
        let token = TokenFields::default();
        let r = AccessRecord {
            time: rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500)),
            client_ip: "127.0.0.1".into(),
            peer_ip: "127.0.0.1".into(),
            x_forwarded_for: None,
            method: "GET",
            path: "/x",
            status: 401,
            upstream_status: None,
            latency_ms: 0.25,
            verdict: Verdict::NoToken.as_str(),
            reasons: &[TOKEN_MISSING],
            cached: false,
            error: None,
            token: &token,
            token_sha256_prefix: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["time"], "1970-01-01T00:00:01.500Z");
        let dated = TokenFields {
            iat: Some(1_700_000_000.0),
            exp: Some(1_700_000_000.5),
            ..TokenFields::default()
        };
        let d = serde_json::to_string(&dated).unwrap();
        assert!(d.contains("\"iat\":1700000000,"), "{d}");
        assert!(d.contains("\"exp\":1700000000.5"), "{d}");
        assert_eq!(v["reasons"], serde_json::json!(["token-missing"]));
        for k in [
            "kid",
            "x5t",
            "alg",
            "iss",
            "tid",
            "aud",
            "sub",
            "oid",
            "appid",
            "azp",
            "client_id",
            "uti",
            "jti",
            "sid",
            "iat",
            "nbf",
            "exp",
            "token_sha256_prefix",
            "upstream_status",
            "x_forwarded_for",
            "error",
        ] {
            assert!(v.get(k).is_some_and(|x| x.is_null()), "{k}");
        }
    }

    #[test]
    fn lines_with_spliced_token_fields_are_what_serde_writes() {
        let full = TokenFields {
            kid: Some("k\"1".into()),
            x5t: Some("t\u{1}".into()),
            alg: Some("RS256"),
            iss: Some("https://login.microsoftonline.com/x/v2.0".into()),
            aud: Some(vec!["api://a".into(), "b\\c".into()]),
            sub: Some("s\u{e9}".into()),
            iat: Some(1_700_000_000.0),
            nbf: Some(1_700_000_000.25),
            exp: Some(1e16),
            ..TokenFields::default()
        };
        let chain = ["10.0.0.1".to_owned(), "bad\"ip".to_owned()];
        for token in [TokenFields::default(), full] {
            for forwarded in [None, Some(&chain[..])] {
                let r = AccessRecord {
                    time: "2026-01-02T03:04:05.678Z".into(),
                    client_ip: "::1".into(),
                    peer_ip: "127.0.0.1".into(),
                    x_forwarded_for: forwarded,
                    method: "GET",
                    path: "/a\"b\\c\u{7f}",
                    status: 200,
                    upstream_status: forwarded.map(|_| 502),
                    latency_ms: 0.1 + 0.2,
                    verdict: Verdict::Accepted.as_str(),
                    reasons: &[TOKEN_MISSING, TOKEN_IN_QUERY],
                    cached: true,
                    error: Some("upstream-timeout"),
                    token: &token,
                    token_sha256_prefix: Some("0123456789abcdef"),
                };
                let mut expected = serde_json::to_vec(&r).unwrap();
                expected.push(b'\n');
                let mut spliced = Vec::new();
                r.write_line(&mut spliced, Some(&token.members_json()))
                    .unwrap();
                assert_eq!(
                    String::from_utf8(spliced).unwrap(),
                    String::from_utf8(expected.clone()).unwrap()
                );
                let mut plain = Vec::new();
                r.write_line(&mut plain, None).unwrap();
                assert_eq!(plain, expected);
            }
        }
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
