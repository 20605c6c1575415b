//! The little URL handling a key fetcher needs, done strictly.
//!
//! Only `https://` (and `http://` to a loopback address, for tests) is
//! accepted. User information (`user@host`) is refused outright: it is the
//! classic way to make `https://trusted@attacker/` look like a trusted URL
//! (RFC 8725 §3.10's `jku`/`x5u` advice applies to configured URLs too).

use std::fmt;
use std::net::IpAddr;

/// A parsed absolute `http`/`https` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    /// `https` or `http`, lower case.
    pub scheme: String,
    /// Host as written, lower case; IPv6 literals keep their brackets.
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

impl Url {
    /// Parses an absolute `http://` or `https://` URL. Fragments are dropped.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let bad = |why: &str| UrlError(format!("{text:?}: {why}"));
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters"));
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("not an absolute URL"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(bad("only https:// URLs are accepted"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user information in a URL is refused"));
        }
        let (host, port) = split_host_port(authority).map_err(|e| bad(&e))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path_and_query = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// True for `localhost`, `127.0.0.0/8` and `[::1]`.
    pub fn is_loopback(&self) -> bool {
        if self.host == "localhost" {
            return true;
        }
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split('?')
            .next()
            .unwrap_or(&self.path_and_query)
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// Resolves a `Location` header value against this URL (RFC 3986 §5,
    /// enough of it for redirects: absolute, scheme-relative, absolute-path
    /// and relative-path references).
    pub fn join(&self, reference: &str) -> Result<Url, UrlError> {
        if reference.contains("://") {
            return Url::parse(reference);
        }
        if let Some(rest) = reference.strip_prefix("//") {
            return Url::parse(&format!("{}://{rest}", self.scheme));
        }
        if reference.starts_with('/') {
            return Url::parse(&format!("{}{reference}", self.origin()));
        }
        let path = self.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        Url::parse(&format!("{}{dir}{reference}", self.origin()))
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("unterminated IPv6 literal".to_owned())?;
        let (h, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return Err("junk after IPv6 literal".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
    };
    Ok((host, port))
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let u = Url::parse("HTTPS://Login.Example.com/common/v2.0?x=1#frag").unwrap();
        assert_eq!(u.scheme, "https");
        assert_eq!(u.host, "login.example.com");
        assert_eq!(u.path(), "/common/v2.0");
        assert_eq!(u.to_string(), "https://login.example.com/common/v2.0?x=1");
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("https://trusted.example@attacker.example/keys").is_err());
        assert!(Url::parse("https:///keys").is_err());
        assert!(Url::parse("https://a.example:99999/").is_err());
        assert!(Url::parse("https://a.example/ x").is_err());
        assert!(Url::parse("keys.json").is_err());
    }

    #[test]
    fn loopback() {
        for u in [
            "http://127.0.0.1:8080/",
            "http://127.9.9.9/",
            "http://localhost/",
            "http://[::1]:80/",
        ] {
            assert!(Url::parse(u).unwrap().is_loopback(), "{u}");
        }
        for u in ["http://10.0.0.1/", "http://example.com/", "http://[::2]/"] {
            assert!(!Url::parse(u).unwrap().is_loopback(), "{u}");
        }
    }

    #[test]
    fn joins_references() {
        let base = Url::parse("https://a.example:8443/x/y/keys?q").unwrap();
        assert_eq!(
            base.join("https://b.example/k").unwrap().to_string(),
            "https://b.example/k"
        );
        assert_eq!(
            base.join("//c.example/k").unwrap().to_string(),
            "https://c.example/k"
        );
        assert_eq!(
            base.join("/z").unwrap().to_string(),
            "https://a.example:8443/z"
        );
        assert_eq!(
            base.join("other").unwrap().to_string(),
            "https://a.example:8443/x/y/other"
        );
    }
}
