//! Where a key set comes from: a file, a JWKS URL, an OIDC discovery
//! document, or an issuer whose discovery document is looked up.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;
use tokenward_jose::parse_strict_value;

use crate::fetch::{CacheDirectives, FetchError, Fetcher};
use crate::url::Url;

/// The path OIDC Discovery 1.0 §4 appends to an issuer.
pub const OIDC_WELL_KNOWN: &str = "/.well-known/openid-configuration";
/// The RFC 8414 authorization server metadata path.
pub const OAUTH_WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

/// A key source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A JWKS file on disk.
    File(PathBuf),
    /// A JWKS served at a URL.
    Jwks(Url),
    /// An OIDC discovery (or RFC 8414 metadata) document URL; the keys are
    /// at its `jwks_uri`.
    Discovery(Url),
    /// An issuer; its discovery document is `issuer + /.well-known/openid-configuration`.
    Issuer(Url),
}

/// Why a source could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source text is not a usable path or URL.
    #[error("bad key source {text:?}: {reason}")]
    BadSource {
        /// What was given.
        text: String,
        /// Why it was refused.
        reason: String,
    },
    /// A fetch failed.
    #[error("fetching {url}: {error}")]
    Fetch {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        error: FetchError,
    },
    /// A file could not be read.
    #[error("reading {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The discovery document is unusable.
    #[error("discovery document {url}: {reason}")]
    Discovery {
        /// Where it came from.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key set is not a JWK Set.
    #[error("key set {origin}: {reason}")]
    KeySet {
        /// Where it came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The discovery document names another issuer than the one asked for
    /// (OIDC Discovery 1.0 §4.3: such a document must not be used).
    #[error("discovery document {url} names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The discovery document URL.
        url: String,
        /// The issuer derived from the URL.
        expected: String,
        /// The issuer the document names (empty when absent).
        found: String,
    },
    /// The last good keys are older than the allowed staleness and no fresh
    /// copy could be had: verification must fail closed.
    #[error("keys from {origin} are {age_secs} s old, over the {max_secs} s limit; last error: {last_error}")]
    Stale {
        /// The source.
        origin: String,
        /// Age of the last good keys.
        age_secs: i64,
        /// The limit.
        max_secs: i64,
        /// The most recent refresh error.
        last_error: String,
    },
}

impl KeySource {
    /// Reads a source as written on a command line or in a policy:
    ///
    /// - `jwks:URL`, `discovery:URL`, `issuer:URL` say what a URL is;
    /// - an `https://` URL whose path contains
    ///   `/.well-known/openid-configuration` or
    ///   `/.well-known/oauth-authorization-server` is a discovery document;
    /// - one whose last path segment is `keys`, `jwks`, `certs` or ends in
    ///   `.json` / `jwks.json` is a JWKS;
    /// - any other `https://` URL is an issuer;
    /// - anything else is a file path (`file:PATH` forces that).
    pub fn parse(text: &str) -> Result<KeySource, SourceError> {
        let bad = |reason: String| SourceError::BadSource {
            text: text.to_owned(),
            reason,
        };
        let url = |s: &str| Url::parse(s).map_err(|e| bad(e.0));
        if let Some(rest) = text.strip_prefix("jwks:") {
            return Ok(KeySource::Jwks(url(rest)?));
        }
        if let Some(rest) = text.strip_prefix("discovery:") {
            return Ok(KeySource::Discovery(url(rest)?));
        }
        if let Some(rest) = text.strip_prefix("issuer:") {
            return Ok(KeySource::Issuer(url(rest)?));
        }
        if let Some(rest) = text.strip_prefix("file:") {
            return Ok(KeySource::File(PathBuf::from(rest)));
        }
        let lower = text.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            if lower.contains("://") {
                return Err(bad(
                    "only https:// URLs and file paths are key sources".into()
                ));
            }
            if text.is_empty() {
                return Err(bad("empty".into()));
            }
            return Ok(KeySource::File(PathBuf::from(text)));
        }
        let u = url(text)?;
        let path = u.path().to_ascii_lowercase();
        let last = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
        Ok(
            if path.contains(OIDC_WELL_KNOWN) || path.contains(OAUTH_WELL_KNOWN) {
                KeySource::Discovery(u)
            } else if matches!(last, "keys" | "jwks" | "certs") || last.ends_with(".json") {
                KeySource::Jwks(u)
            } else {
                KeySource::Issuer(u)
            },
        )
    }

    /// The discovery document URL, for discovery and issuer sources.
    pub fn discovery_url(&self) -> Option<Url> {
        match self {
            KeySource::Discovery(u) => Some(u.clone()),
            KeySource::Issuer(u) => {
                let base = u.to_string();
                Url::parse(&format!("{}{OIDC_WELL_KNOWN}", base.trim_end_matches('/'))).ok()
            }
            _ => None,
        }
    }

    /// The issuer the discovery document must name: the issuer URL as
    /// given, or the discovery URL without its well-known suffix (both the
    /// OIDC form `ISSUER/.well-known/openid-configuration` and the RFC 8414
    /// form `ORIGIN/.well-known/NAME/PATH` are understood).
    pub fn expected_issuer(&self) -> Option<String> {
        match self {
            KeySource::Issuer(u) => Some(u.to_string()),
            KeySource::Discovery(u) => {
                let origin = u.origin();
                let path = u.path();
                if let Some(prefix) = path.strip_suffix(OIDC_WELL_KNOWN) {
                    return Some(format!("{origin}{prefix}"));
                }
                for wk in [OAUTH_WELL_KNOWN, OIDC_WELL_KNOWN] {
                    if let Some(rest) = path.strip_prefix(wk) {
                        if rest.is_empty() || rest.starts_with('/') {
                            return Some(format!("{origin}{rest}"));
                        }
                    }
                }
                // Not a well-known path: nothing can be derived.
                None
            }
            _ => None,
        }
    }

    /// Fetches the source once: the discovery document (if any), then the
    /// key set. `previous` is the JWKS URL and ETag of the last good copy,
    /// to revalidate with `If-None-Match`.
    pub fn fetch(
        &self,
        fetcher: &Fetcher,
        previous: Option<(&str, &str)>,
    ) -> Result<Resolved, SourceError> {
        let fetch_err = |url: &Url, error: FetchError| SourceError::Fetch {
            url: url.to_string(),
            error,
        };
        match self {
            KeySource::File(path) => {
                let bytes = crate::read_capped(path, crate::MAX_FILE_BYTES).map_err(|e| {
                    SourceError::File {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                Ok(Resolved {
                    origin: path.display().to_string(),
                    discovery: None,
                    body: Some(bytes),
                    etag: None,
                    cache: CacheDirectives::default(),
                })
            }
            KeySource::Jwks(url) => {
                let tag = previous.filter(|(o, _)| *o == url.to_string()).map(|p| p.1);
                let got = fetcher.get(url, tag).map_err(|e| fetch_err(url, e))?;
                Ok(Resolved {
                    origin: url.to_string(),
                    discovery: None,
                    body: got.body,
                    etag: got.etag,
                    cache: got.cache,
                })
            }
            KeySource::Discovery(_) | KeySource::Issuer(_) => {
                let durl = self.discovery_url().ok_or_else(|| SourceError::BadSource {
                    text: self.to_string(),
                    reason: "no discovery URL can be derived".into(),
                })?;
                let got = fetcher.get(&durl, None).map_err(|e| fetch_err(&durl, e))?;
                let body = got.body.unwrap_or_default();
                let doc = DiscoveryDoc::parse(&durl, &body, self.expected_issuer())?;
                fetcher
                    .check_url(&doc.jwks_uri)
                    .map_err(|e| fetch_err(&doc.jwks_uri, e))?;
                let origin = doc.jwks_uri.to_string();
                let tag = previous.filter(|(o, _)| *o == origin).map(|p| p.1);
                let keys = fetcher
                    .get(&doc.jwks_uri, tag)
                    .map_err(|e| fetch_err(&doc.jwks_uri, e))?;
                Ok(Resolved {
                    origin,
                    discovery: Some(doc),
                    body: keys.body,
                    etag: keys.etag,
                    cache: keys.cache,
                })
            }
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "{}", p.display()),
            KeySource::Jwks(u) | KeySource::Discovery(u) | KeySource::Issuer(u) => {
                write!(f, "{u}")
            }
        }
    }
}

/// The parts of a discovery document tokenward uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryDoc {
    /// Where it was fetched from.
    pub url: Url,
    /// Its `issuer`, if present.
    pub issuer: Option<String>,
    /// The issuer the URL implies, if one can be derived.
    pub expected_issuer: Option<String>,
    /// Its `jwks_uri`.
    pub jwks_uri: Url,
}

/// How a discovery document's `issuer` compares with the issuer its URL
/// implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerMatch {
    /// Identical (a single trailing `/` aside).
    Exact,
    /// Nothing to compare: the URL implies no issuer.
    Unknown,
    /// The document names a multi-tenant template (`{tenantid}`) that
    /// becomes the URL's issuer when a tenant alias such as `common` is put
    /// in its place: Microsoft's `common`/`organizations` endpoints. Keys
    /// from it are only safe with per-key issuer validation.
    Template,
    /// Different issuers, or none named.
    Mismatch,
}

impl DiscoveryDoc {
    /// Reads a discovery document. Requires a JSON object with a string
    /// `jwks_uri` that is an absolute URL.
    pub fn parse(
        url: &Url,
        body: &[u8],
        expected_issuer: Option<String>,
    ) -> Result<DiscoveryDoc, SourceError> {
        let bad = |reason: String| SourceError::Discovery {
            url: url.to_string(),
            reason,
        };
        let value = parse_strict_value(body).map_err(|e| bad(format!("not JSON: {}", e.0)))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let jwks_uri = match obj.get("jwks_uri") {
            Some(Value::String(s)) => Url::parse(s).map_err(|e| bad(format!("jwks_uri: {e}")))?,
            Some(_) => return Err(bad("\"jwks_uri\" is not a string".into())),
            None => return Err(bad("no \"jwks_uri\"".into())),
        };
        let issuer = match obj.get("issuer") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("\"issuer\" is not a string".into())),
            None => None,
        };
        Ok(DiscoveryDoc {
            url: url.clone(),
            issuer,
            expected_issuer,
            jwks_uri,
        })
    }

    /// Compares `issuer` with the issuer the URL implies.
    pub fn issuer_match(&self) -> IssuerMatch {
        let Some(expected) = &self.expected_issuer else {
            return IssuerMatch::Unknown;
        };
        let Some(found) = &self.issuer else {
            return IssuerMatch::Mismatch;
        };
        let (e, f) = (expected.trim_end_matches('/'), found.trim_end_matches('/'));
        if e == f {
            return IssuerMatch::Exact;
        }
        if let Some((before, after)) = f.split_once(TENANT_TEMPLATE) {
            if let Some(alias) = e.strip_prefix(before).and_then(|r| r.strip_suffix(after)) {
                if !alias.is_empty() && !alias.contains('/') {
                    return IssuerMatch::Template;
                }
            }
        }
        IssuerMatch::Mismatch
    }
}

/// The placeholder in Microsoft multi-tenant issuer templates.
pub const TENANT_TEMPLATE: &str = "{tenantid}";

/// The result of one fetch of a source.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The JWKS URL (after discovery) or file path.
    pub origin: String,
    /// The discovery document, for discovery and issuer sources.
    pub discovery: Option<DiscoveryDoc>,
    /// The key set bytes, or `None` when the server answered `304`.
    pub body: Option<Vec<u8>>,
    /// The key set's ETag.
    pub etag: Option<String>,
    /// The key set's cache directives.
    pub cache: CacheDirectives,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> &'static str {
        match KeySource::parse(s).unwrap() {
            KeySource::File(_) => "file",
            KeySource::Jwks(_) => "jwks",
            KeySource::Discovery(_) => "discovery",
            KeySource::Issuer(_) => "issuer",
        }
    }

    #[test]
    fn classifies_sources() {
        assert_eq!(kind("examples/keys/common.json"), "file");
        assert_eq!(
            kind("https://login.microsoftonline.com/common/discovery/v2.0/keys"),
            "jwks"
        );
        assert_eq!(kind("https://www.googleapis.com/oauth2/v3/certs"), "jwks");
        assert_eq!(kind("https://idp.example/.well-known/jwks.json"), "jwks");
        assert_eq!(
            kind("https://idp.example/.well-known/oauth-authorization-server/t"),
            "discovery"
        );
        assert_eq!(
            kind("jwks:https://idp.example/.well-known/jwks.json"),
            "jwks"
        );
        assert_eq!(
            kind("https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"),
            "discovery"
        );
        assert_eq!(
            kind("https://login.microsoftonline.com/common/v2.0"),
            "issuer"
        );
        assert_eq!(kind("issuer:https://idp.example/keys"), "issuer");
        assert_eq!(kind("file:https-looking-name"), "file");
        assert!(KeySource::parse("ftp://idp.example/keys").is_err());
        assert!(KeySource::parse("https://u@idp.example/keys").is_err());
    }

    #[test]
    fn derives_issuers() {
        let s = KeySource::parse("https://idp.example/tenant/v2.0").unwrap();
        assert_eq!(
            s.discovery_url().unwrap().to_string(),
            "https://idp.example/tenant/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(
            s.expected_issuer().unwrap(),
            "https://idp.example/tenant/v2.0"
        );
        let d = KeySource::parse("https://idp.example/t/.well-known/openid-configuration").unwrap();
        assert_eq!(d.expected_issuer().unwrap(), "https://idp.example/t");
        let d = KeySource::parse("https://idp.example/.well-known/oauth-authorization-server/t")
            .unwrap();
        assert_eq!(d.expected_issuer().unwrap(), "https://idp.example/t");
        let d = KeySource::parse("discovery:https://idp.example/meta").unwrap();
        assert_eq!(d.expected_issuer(), None);
    }

    #[test]
    fn issuer_matching() {
        let url = Url::parse("https://login.example/common/v2.0/.well-known/openid-configuration")
            .unwrap();
        let doc = |iss: Option<&str>, expected: &str| DiscoveryDoc {
            url: url.clone(),
            issuer: iss.map(str::to_owned),
            expected_issuer: Some(expected.to_owned()),
            jwks_uri: url.clone(),
        };
        let common = "https://login.example/common/v2.0";
        assert_eq!(doc(Some(common), common).issuer_match(), IssuerMatch::Exact);
        assert_eq!(
            doc(Some("https://login.example/common/v2.0/"), common).issuer_match(),
            IssuerMatch::Exact
        );
        assert_eq!(
            doc(Some("https://login.example/{tenantid}/v2.0"), common).issuer_match(),
            IssuerMatch::Template
        );
        assert_eq!(
            doc(Some("https://evil.example/common/v2.0"), common).issuer_match(),
            IssuerMatch::Mismatch
        );
        assert_eq!(doc(None, common).issuer_match(), IssuerMatch::Mismatch);
    }
}
