//! Sending requests to the target: only to the URL the user gave, never
//! following redirects, at a bounded rate and count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::judge::Answer;
use crate::ProbeError;

/// Where and how the token is sent.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL, `http://` or `https://`.
    pub url: String,
    /// The method.
    pub method: String,
    /// Header that carries the token.
    pub token_header: String,
    /// Text before the token in that header (`Bearer `, `session=`).
    pub token_prefix: String,
    /// Extra request headers (`-H`).
    pub headers: Vec<(String, String)>,
    /// The user's own request body (`--data`).
    pub body: Option<Vec<u8>>,
}

impl Target {
    /// Parses `--header`: `NAME` alone, or `NAME: PREFIX`
    /// (`Authorization: Bearer`, `Cookie: session=`). A prefix that is a
    /// word gets a space before the token.
    pub fn token_placement(spec: &str) -> Result<(String, String), ProbeError> {
        let (name, prefix) = match spec.split_once(':') {
            Some((name, rest)) => (name.trim(), rest.trim_start()),
            None => (spec.trim(), ""),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ProbeError::Usage(format!(
                "--header {spec:?}: expected NAME or \"NAME: PREFIX\""
            )));
        }
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with(['=', ' ']) {
            prefix.push(' ');
        }
        Ok((name.to_owned(), prefix))
    }
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered.
    Answered(Answer),
    /// No answer: connection refused, timeout, TLS failure.
    Failed(String),
}

impl Outcome {
    /// The HTTP status, when the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Answered(a) => Some(a.status),
            Outcome::Failed(_) => None,
        }
    }
}

/// Largest part of a response body kept for comparison.
const BODY_LIMIT: u64 = 256 * 1024;

/// Sends requests, spacing them by the rate and counting them against the
/// budget.
pub struct Sender {
    agent: ureq::Agent,
    target: Target,
    interval: Duration,
    last: Option<Instant>,
    sent: u32,
    max: u32,
}

impl Sender {
    /// A sender for `target`, at most `max` requests, at most `rate` per
    /// second, each bounded by `timeout`.
    pub fn new(
        target: Target,
        max: u32,
        rate: f64,
        timeout: Duration,
    ) -> Result<Sender, ProbeError> {
        if !(target.url.starts_with("http://") || target.url.starts_with("https://")) {
            return Err(ProbeError::Usage(format!(
                "{}: the target must be an http:// or https:// URL",
                target.url
            )));
        }
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(ProbeError::Usage("--rate must be a positive number".into()));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider)
            .root_certs(ureq::tls::RootCerts::WebPki)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .max_redirects(0)
            .http_status_as_error(false)
            .https_only(false)
            .allow_non_standard_methods(true)
            .user_agent(concat!("tokenward-probe/", env!("CARGO_PKG_VERSION")))
            .timeout_global(Some(timeout))
            .max_response_header_size(64 * 1024)
            .build()
            .new_agent();
        Ok(Sender {
            agent,
            target,
            interval: Duration::from_secs_f64(1.0 / rate),
            last: None,
            sent: 0,
            max,
        })
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// Requests left in the budget.
    pub fn remaining(&self) -> u32 {
        self.max.saturating_sub(self.sent)
    }

    /// Sends one request with `token` in place (or none), or `None` when the
    /// budget is spent.
    pub fn send(&mut self, token: Option<&str>) -> Option<Outcome> {
        if self.sent >= self.max {
            return None;
        }
        if let Some(last) = self.last {
            let due = last + self.interval;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.last = Some(Instant::now());
        self.sent += 1;
        Some(self.request(token))
    }

    fn request(&self, token: Option<&str>) -> Outcome {
        let t = &self.target;
        let mut builder = ureq::http::Request::builder()
            .method(t.method.as_str())
            .uri(t.url.as_str());
        let token_value = token.map(|token| format!("{}{token}", t.token_prefix));
        let mut token_value = token_value;
        for (name, value) in &t.headers {
            if name.eq_ignore_ascii_case(&t.token_header) {
                // Two Cookie headers are not valid HTTP/1.1: join them.
                if let Some(v) = token_value.take() {
                    builder = builder.header(name.as_str(), format!("{value}; {v}"));
                    continue;
                }
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(v) = token_value {
            builder = builder.header(t.token_header.as_str(), v);
        }
        let body = t.body.clone().unwrap_or_default();
        let request = match builder.body(body) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("request could not be built: {e}")),
        };
        match self.agent.run(request) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // A body cut at the limit still compares; one that fails to
                // read compares as empty.
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(BODY_LIMIT)
                    .read_to_vec()
                    .unwrap_or_default();
                Outcome::Answered(Answer { status, body })
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_placement_reads_name_and_prefix() {
        assert_eq!(
            Target::token_placement("Authorization: Bearer").unwrap(),
            ("Authorization".into(), "Bearer ".into())
        );
        assert_eq!(
            Target::token_placement("Cookie: session=").unwrap(),
            ("Cookie".into(), "session=".into())
        );
        assert_eq!(
            Target::token_placement("X-Access-Token").unwrap(),
            ("X-Access-Token".into(), String::new())
        );
        assert!(Target::token_placement("Bad Header: x").is_err());
        assert!(Target::token_placement(": x").is_err());
    }
}
