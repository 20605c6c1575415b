//! The policy file and the key registry built from it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenward_jose::{
    decode_b64url, Algorithm, Jwk, Jwks, KeyFamily, KeyMaterial, Limits, VerifyingKey,
};

use tokenward_keys::{FetchConfig, KeySource, LiveConfig, Url};

use crate::denylist::{BUILTIN_DENIED_KIDS, BUILTIN_DENIED_THUMBPRINTS};
use crate::{CONSUMER_TENANT, TENANT_PLACEHOLDER};
use tokenward_keys::parse_rfc3339;

/// A policy that cannot be used. The message names the file and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file at fault (policy or key set).
    pub file: PathBuf,
    /// What is wrong and where.
    pub message: String,
}

/// Default clock leeway, in seconds.
pub const DEFAULT_LEEWAY: i64 = 60;
/// Largest leeway a policy may set; more would turn `exp` into a suggestion.
pub const MAX_LEEWAY: i64 = 300;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    leeway_seconds: Option<i64>,
    #[serde(default)]
    deny_kids: Vec<String>,
    #[serde(default)]
    deny_thumbprints: Vec<String>,
    max_token_bytes: Option<usize>,
    max_staleness_seconds: Option<i64>,
    unknown_kid_refetch_seconds: Option<i64>,
    #[serde(default)]
    issuer: Vec<IssuerFile>,
    #[serde(default)]
    key: Vec<KeyOverrideFile>,
    #[serde(default)]
    route: Vec<RouteFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    path: String,
    #[serde(default)]
    auth: RouteAuth,
    #[serde(default)]
    token_exchange: bool,
    #[serde(default)]
    refuse_subject_issuers: Vec<String>,
}

/// Whether a route needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    /// A token that passes policy is required (the default).
    #[default]
    Required,
    /// No token needed (health checks, public documents).
    None,
}

/// A `[[route]]` rule for the gateway. Paths are matched exactly, or as a
/// prefix when they end in `*`; the first matching rule wins and paths no
/// rule matches require a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Exact path, or prefix followed by `*`.
    pub path: String,
    /// Whether a token is needed.
    pub auth: RouteAuth,
    /// A token-exchange endpoint (like OWA's `GetAccessTokenForResource`):
    /// it must not accept, as the subject token, a token issued by one of
    /// `refuse_subject_issuers` (its own output), which is how Storm-0558
    /// renewed forged access indefinitely.
    pub token_exchange: bool,
    /// Issuers whose tokens this exchange refuses as subject tokens.
    pub refuse_subject_issuers: Vec<String>,
}

impl Route {
    /// Whether this rule applies to a request path.
    pub fn matches(&self, path: &str) -> bool {
        match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.path,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerFile {
    issuer: String,
    tenants: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    jwks: Option<String>,
    discovery: Option<String>,
    secrets: Option<String>,
    typ: Option<String>,
    max_lifetime_seconds: Option<i64>,
    #[serde(default)]
    required_claims: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyOverrideFile {
    kid: String,
    status: Option<KeyStatus>,
    not_before: Option<String>,
    not_after: Option<String>,
    alg: Option<String>,
}

/// Lifecycle state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// May verify tokens.
    #[default]
    Active,
    /// Rotated out; tokens signed by it are refused.
    Retired,
    /// Withdrawn for cause; tokens signed by it are refused.
    Revoked,
}

/// Which tenants an issuer entry admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRule {
    /// `["*"]`: any tenant except the consumer tenant, reported at load.
    Any,
    /// These tenant GUIDs (lower case).
    List(Vec<String>),
    /// No tenant restriction configured (exact issuers only).
    Unrestricted,
}

/// One `[[issuer]]` entry, checked.
#[derive(Debug, Clone)]
pub struct IssuerEntry {
    /// The issuer string as configured (exact, or a `{tenantid}` template).
    pub issuer: String,
    /// For templates: the text before and after `{tenantid}`.
    pub template: Option<(String, String)>,
    /// Tenants admitted.
    pub tenants: TenantRule,
    /// Audiences accepted (at least one).
    pub audiences: Vec<String>,
    /// Algorithms allowed (at least one).
    pub algorithms: Vec<Algorithm>,
    /// Required `typ`, normalised to lower case without `application/`.
    pub typ: Option<String>,
    /// Maximum `exp - iat` (or `exp - nbf`), in seconds.
    pub max_lifetime: Option<i64>,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
}

/// A trusted key with its scope.
#[derive(Debug)]
pub struct KeyRecord {
    /// `kid`.
    pub kid: String,
    /// Index of the issuer entry this key may sign for; `None` when the
    /// key's own `issuer` matches no entry (it is then out of scope for
    /// every token).
    pub scope: Option<usize>,
    /// The key's own `issuer` member, if any.
    pub key_issuer: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: Option<Algorithm>,
    /// The parsed key, or why it cannot verify.
    pub verifier: Result<VerifyingKey, String>,
    /// notBefore (seconds), from the certificate and/or the policy.
    pub not_before: Option<i64>,
    /// notAfter (seconds), from the certificate and/or the policy.
    pub not_after: Option<i64>,
    /// Lifecycle status.
    pub status: KeyStatus,
    /// Why the key is denied, if it is.
    pub denied: Option<String>,
    /// Base64url SHA-1 certificate thumbprint (`x5t`), if known.
    pub x5t: Option<String>,
    /// The key set file it came from.
    pub source: PathBuf,
}

/// One place keys come from, as the policy names it, with the issuer
/// entries that list it.
#[derive(Debug, Clone)]
pub struct KeySourceRef {
    /// The source (file, JWKS URL, discovery document or issuer).
    pub source: KeySource,
    /// Whether it holds HMAC secrets (`secrets`) rather than public keys.
    pub symmetric: bool,
    /// Indices of the issuer entries that list it.
    pub entries: Vec<usize>,
}

impl KeySourceRef {
    /// How errors and warnings name it.
    pub fn label(&self) -> PathBuf {
        match &self.source {
            KeySource::File(p) => p.clone(),
            other => PathBuf::from(other.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KeyOverride {
    pub(crate) status: KeyStatus,
    pub(crate) not_before: Option<i64>,
    pub(crate) not_after: Option<i64>,
    pub(crate) alg: Option<Algorithm>,
}

/// A loaded, checked verification policy.
#[derive(Debug)]
pub struct Policy {
    pub(crate) leeway: i64,
    pub(crate) limits: Limits,
    pub(crate) issuers: Vec<IssuerEntry>,
    pub(crate) keys: HashMap<String, Vec<KeyRecord>>,
    pub(crate) deny_kids: HashSet<String>,
    pub(crate) deny_thumbprints: HashSet<String>,
    pub(crate) overrides: HashMap<String, KeyOverride>,
    routes: Vec<Route>,
    /// Every `required_claims` name of every issuer, so the claim parser
    /// records their presence in one pass.
    pub(crate) noted_claims: Vec<String>,
    warnings: Vec<String>,
    sources: Vec<KeySourceRef>,
    key_files: Vec<PathBuf>,
    live_config: LiveConfig,
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub(crate) fn is_guid_str(s: &str) -> bool {
    is_guid(s)
}

/// The GUID path segment of an exact issuer URL, if it has one.
pub(crate) fn guid_segment(issuer: &str) -> Option<&str> {
    issuer.split('/').find(|seg| is_guid(seg))
}

impl Policy {
    /// Longest token the policy accepts, in bytes (`max_token_bytes`).
    pub fn max_token_bytes(&self) -> usize {
        self.limits.max_token_bytes
    }

    /// Loads a policy file; key set paths are relative to it. Key sets at
    /// URLs are fetched once (use [`crate::LivePolicy`] to keep them fresh).
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let text = read_policy_text(path)?;
        Policy::from_toml(&text, path)
    }

    /// Builds a policy from TOML text; `path` names the file in errors and
    /// anchors relative key set paths. URL key sets are fetched once with
    /// the default fetch rules (HTTPS only).
    pub fn from_toml(text: &str, path: &Path) -> Result<Policy, ConfigError> {
        let mut policy = Policy::configure(text, path)?;
        let (_, bytes) = crate::live::fetch_key_sets(
            &policy,
            path,
            FetchConfig::default(),
            crate::live::system_now(),
        )?;
        policy.install_keys(&bytes)?;
        Ok(policy)
    }

    /// Reads and checks everything but the keys: issuers, overrides,
    /// denylists, routes and the list of key sources.
    pub(crate) fn configure(text: &str, path: &Path) -> Result<Policy, ConfigError> {
        let cfg_err = |message: String| ConfigError {
            file: path.to_owned(),
            message,
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| cfg_err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut warnings = Vec::new();

        let leeway = file.leeway_seconds.unwrap_or(DEFAULT_LEEWAY);
        if !(0..=MAX_LEEWAY).contains(&leeway) {
            return Err(cfg_err(format!(
                "leeway_seconds = {leeway}: must be between 0 and {MAX_LEEWAY}"
            )));
        }
        let mut limits = Limits::default();
        if let Some(max) = file.max_token_bytes {
            limits.max_token_bytes = max;
        }
        let mut live_config = LiveConfig::default();
        if let Some(secs) = file.max_staleness_seconds {
            if secs <= 0 {
                return Err(cfg_err("max_staleness_seconds must be positive".into()));
            }
            live_config.max_staleness = secs;
        }
        if let Some(secs) = file.unknown_kid_refetch_seconds {
            if secs < 1 {
                return Err(cfg_err(
                    "unknown_kid_refetch_seconds must be at least 1: an unknown kid must never trigger a fetch per token".into(),
                ));
            }
            live_config.unknown_kid_interval = secs;
        }
        if file.issuer.is_empty() {
            return Err(cfg_err(
                "no [[issuer]] entries: nothing could ever be accepted".into(),
            ));
        }

        let mut issuers = Vec::new();
        let mut sources: Vec<KeySourceRef> = Vec::new();
        for (i, entry) in file.issuer.iter().enumerate() {
            let at = format!("[[issuer]] #{} ({:?})", i + 1, entry.issuer);
            issuers.push(check_issuer(entry, &at, &mut warnings).map_err(&cfg_err)?);
            if issuers[..i]
                .iter()
                .any(|e: &IssuerEntry| e.issuer == entry.issuer)
            {
                return Err(cfg_err(format!(
                    "{at}: the same issuer is configured twice"
                )));
            }
            if entry.jwks.is_none() && entry.secrets.is_none() && entry.discovery.is_none() {
                return Err(cfg_err(format!(
                    "{at}: no \"jwks\", \"discovery\" (public keys) or \"secrets\" (HMAC keys): a key scope cannot be empty"
                )));
            }
            if entry.jwks.is_some() && entry.discovery.is_some() {
                return Err(cfg_err(format!(
                    "{at}: give \"jwks\" or \"discovery\", not both"
                )));
            }
            let mut listed = Vec::new();
            if let Some(v) = &entry.jwks {
                listed.push((
                    resolve_source(v, base).map_err(|e| cfg_err(format!("{at}: jwks: {e}")))?,
                    false,
                ));
            }
            if let Some(v) = &entry.discovery {
                let url =
                    Url::parse(v).map_err(|e| cfg_err(format!("{at}: discovery: {}", e.0)))?;
                let src = match KeySource::parse(v) {
                    Ok(KeySource::Discovery(_)) => KeySource::Discovery(url),
                    _ => KeySource::Issuer(url),
                };
                listed.push((src, false));
            }
            if let Some(v) = &entry.secrets {
                let src =
                    resolve_source(v, base).map_err(|e| cfg_err(format!("{at}: secrets: {e}")))?;
                if !matches!(src, KeySource::File(_)) {
                    return Err(cfg_err(format!(
                        "{at}: \"secrets\" must be a file: HMAC secrets are never fetched over the network"
                    )));
                }
                listed.push((src, true));
            }
            for (source, symmetric) in listed {
                match sources.iter_mut().find(|s| same_source(&s.source, &source)) {
                    Some(existing) => {
                        if existing.symmetric != symmetric {
                            return Err(cfg_err(format!(
                                "{at}: {source} is listed both as public keys and as secrets"
                            )));
                        }
                        existing.entries.push(i);
                    }
                    None => sources.push(KeySourceRef {
                        source,
                        symmetric,
                        entries: vec![i],
                    }),
                }
            }
        }

        let mut overrides = HashMap::new();
        for o in &file.key {
            let at = format!("[[key]] kid {:?}", o.kid);
            let time = |v: &Option<String>| {
                v.as_deref()
                    .map(parse_rfc3339)
                    .transpose()
                    .map_err(|e| cfg_err(format!("{at}: {e}")))
            };
            let alg = o
                .alg
                .as_deref()
                .map(|a| {
                    a.parse::<Algorithm>()
                        .map_err(|()| cfg_err(format!("{at}: unknown algorithm {a:?}")))
                })
                .transpose()?;
            let ov = KeyOverride {
                status: o.status.unwrap_or_default(),
                not_before: time(&o.not_before)?,
                not_after: time(&o.not_after)?,
                alg,
            };
            if overrides.insert(o.kid.clone(), ov).is_some() {
                return Err(cfg_err(format!("{at}: configured twice")));
            }
        }

        let mut deny_kids: HashSet<String> = BUILTIN_DENIED_KIDS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        deny_kids.extend(file.deny_kids.iter().cloned());
        let mut deny_thumbprints: HashSet<String> = BUILTIN_DENIED_THUMBPRINTS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for t in &file.deny_thumbprints {
            let hex = t.chars().all(|c| c.is_ascii_hexdigit()) && (t.len() == 40 || t.len() == 64);
            // Hex is case-insensitive; an RFC 7638 thumbprint is base64url
            // and case-sensitive.
            deny_thumbprints.insert(if hex {
                t.to_ascii_lowercase()
            } else {
                t.clone()
            });
        }

        let mut routes = Vec::new();
        for (i, r) in file.route.iter().enumerate() {
            let at = format!("[[route]] #{} ({:?})", i + 1, r.path);
            if !r.path.starts_with('/') {
                return Err(cfg_err(format!("{at}: path must start with '/'")));
            }
            if r.path[..r.path.len() - 1].contains('*') {
                return Err(cfg_err(format!("{at}: '*' is only allowed at the end")));
            }
            if r.token_exchange && r.auth == RouteAuth::None {
                return Err(cfg_err(format!(
                    "{at}: a token-exchange route cannot have auth = \"none\""
                )));
            }
            if !r.refuse_subject_issuers.is_empty() && !r.token_exchange {
                return Err(cfg_err(format!(
                    "{at}: refuse_subject_issuers needs token_exchange = true"
                )));
            }
            if r.token_exchange && r.refuse_subject_issuers.is_empty() {
                return Err(cfg_err(format!(
                    "{at}: a token-exchange route must name the issuers it refuses as subject tokens (refuse_subject_issuers)"
                )));
            }
            routes.push(Route {
                path: r.path.clone(),
                auth: r.auth,
                token_exchange: r.token_exchange,
                refuse_subject_issuers: r.refuse_subject_issuers.clone(),
            });
        }

        let mut noted_claims: Vec<String> = Vec::new();
        for entry in &issuers {
            for name in &entry.required_claims {
                if !noted_claims.contains(name) {
                    noted_claims.push(name.clone());
                }
            }
        }
        if noted_claims.len() > tokenward_jose::MAX_NOTED_CLAIMS {
            return Err(cfg_err(format!(
                "more than {} distinct required_claims names",
                tokenward_jose::MAX_NOTED_CLAIMS
            )));
        }
        Ok(Policy {
            leeway,
            routes,
            noted_claims,
            limits,
            issuers,
            keys: HashMap::new(),
            deny_kids,
            deny_thumbprints,
            overrides,
            warnings,
            key_files: sources
                .iter()
                .filter_map(|s| match &s.source {
                    KeySource::File(p) => Some(p.clone()),
                    _ => None,
                })
                .collect(),
            sources,
            live_config,
        })
    }

    /// Builds the key registry from the bytes of each source, in the order
    /// of [`Policy::key_sources`].
    pub(crate) fn install_keys(
        &mut self,
        sets: &[std::sync::Arc<[u8]>],
    ) -> Result<(), ConfigError> {
        let sources = self.sources.clone();
        for (src, bytes) in sources.iter().zip(sets) {
            self.load_set(src, bytes)?;
        }
        for kid in self.overrides.keys() {
            if !self.keys.contains_key(kid) {
                self.warnings.push(format!(
                    "[[key]] kid {kid:?} matches no key in the key sets (its status still applies if it appears)"
                ));
            }
        }
        Ok(())
    }

    fn load_set(&mut self, src: &KeySourceRef, bytes: &[u8]) -> Result<(), ConfigError> {
        let label = src.label();
        let set_err = |message: String| ConfigError {
            file: label.clone(),
            message,
        };
        let path = label.as_path();
        let symmetric = &src.symmetric;
        {
            let set = Jwks::parse(bytes).map_err(|e| set_err(e.0))?;
            let mut keys = Vec::new();
            for (i, entry) in set.keys.into_iter().enumerate() {
                match entry {
                    Ok(jwk) => keys.push(jwk),
                    Err(e) => self.warnings.push(format!(
                        "{}: key #{} ignored: {e}",
                        path.display(),
                        i + 1
                    )),
                }
            }
            if let Some(problem) = Jwks::set_problems(&keys).into_iter().next() {
                return Err(set_err(problem));
            }
            let entries = &src.entries;
            for jwk in keys {
                let is_secret = matches!(jwk.material, KeyMaterial::Oct { .. });
                if is_secret != *symmetric {
                    return Err(set_err(if is_secret {
                        "holds a symmetric (oct) key: HMAC secrets belong in an issuer's \"secrets\" file, never beside public keys".into()
                    } else {
                        "is listed as \"secrets\" but holds a public key".into()
                    }));
                }
                let record = self.scope_key(jwk, path, entries)?;
                self.keys
                    .entry(record.kid.clone())
                    .or_default()
                    .push(record);
            }
        }
        Ok(())
    }

    fn scope_key(
        &mut self,
        jwk: Jwk,
        path: &Path,
        entries: &[usize],
    ) -> Result<KeyRecord, ConfigError> {
        let set_err = |message: String| ConfigError {
            file: path.to_owned(),
            message,
        };
        let kid = jwk.kid.clone().ok_or_else(|| {
            set_err("a key has no \"kid\": tokens could only find it by trying every key, which tokenward never does".into())
        })?;
        let at = format!("key {kid:?}");
        let scope = match &jwk.issuer {
            Some(own) => {
                let found = self.issuers.iter().position(|e| &e.issuer == own);
                if found.is_none() {
                    self.warnings.push(format!(
                        "{}: {at} declares issuer {own:?}, which no [[issuer]] entry has: tokens it signs are rejected as key-out-of-scope",
                        path.display()
                    ));
                }
                found
            }
            None => match entries {
                [only] => Some(*only),
                _ => {
                    return Err(set_err(format!(
                        "{at} has no \"issuer\" member and its key set is listed by {} issuer entries ({}): its scope cannot be determined",
                        entries.len(),
                        entries
                            .iter()
                            .map(|&i| format!("{:?}", self.issuers[i].issuer))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            },
        };
        let ov = self.overrides.get(&kid).cloned();
        let alg = self.key_algorithm(&jwk, scope, ov.as_ref().and_then(|o| o.alg), &at, path)?;
        let verifier = match alg {
            Some(a) => VerifyingKey::from_jwk(&jwk, a).map_err(|e| e.0),
            None => Err("no algorithm fits this key".into()),
        };
        if let Err(why) = &verifier {
            self.warnings.push(format!(
                "{}: {at} cannot verify tokens: {why}",
                path.display()
            ));
        }
        let (mut not_before, mut not_after) = (None, None);
        if let Some(cert) = &jwk.cert {
            not_before = Some(cert.not_before);
            not_after = Some(cert.not_after);
        }
        if let Some(o) = &ov {
            // The stricter bound wins when both the certificate and the
            // policy set one.
            not_before = max_opt(not_before, o.not_before);
            not_after = min_opt(not_after, o.not_after);
        }
        let denied = self.denial(&kid, &jwk);
        let x5t = jwk.cert.as_ref().map(|c| c.x5t.clone());
        Ok(KeyRecord {
            kid,
            scope,
            key_issuer: jwk.issuer.clone(),
            alg,
            verifier,
            not_before,
            not_after,
            status: ov.map(|o| o.status).unwrap_or_default(),
            denied,
            x5t: x5t.or(jwk.x5t.clone()),
            source: path.to_owned(),
        })
    }

    /// The one algorithm of a key: the policy override, else the JWK's own
    /// `alg`, else the single allowed algorithm of its issuer that fits the
    /// key type. Ambiguity is a configuration error.
    fn key_algorithm(
        &self,
        jwk: &Jwk,
        scope: Option<usize>,
        forced: Option<Algorithm>,
        at: &str,
        path: &Path,
    ) -> Result<Option<Algorithm>, ConfigError> {
        if let Some(a) = forced {
            return Ok(Some(a));
        }
        if let Some(own) = jwk.alg.as_deref() {
            return Ok(own.parse::<Algorithm>().ok());
        }
        let fits = |a: &Algorithm| match (a.family(), &jwk.material) {
            (KeyFamily::Symmetric, KeyMaterial::Oct { .. }) => true,
            (KeyFamily::Rsa, KeyMaterial::Rsa { .. }) => true,
            (KeyFamily::Ec(c), KeyMaterial::Ec { crv, .. }) => c == crv,
            (KeyFamily::Okp, KeyMaterial::Okp { .. }) => true,
            _ => false,
        };
        let Some(idx) = scope else {
            return Ok(Algorithm::ALL.into_iter().find(|a| fits(a)));
        };
        let candidates: Vec<Algorithm> = self.issuers[idx]
            .algorithms
            .iter()
            .copied()
            .filter(fits)
            .collect();
        match candidates.as_slice() {
            [one] => Ok(Some(*one)),
            [] => Ok(None),
            many => Err(ConfigError {
                file: path.to_owned(),
                message: format!(
                    "{at} has no \"alg\" and could serve {}: set alg in a [[key]] entry so it has exactly one",
                    many.iter().map(|a| a.name()).collect::<Vec<_>>().join(" or ")
                ),
            }),
        }
    }

    fn denial(&self, kid: &str, jwk: &Jwk) -> Option<String> {
        if self.deny_kids.contains(kid) {
            return Some(format!("kid {kid:?} is on the denylist"));
        }
        if let Some(cert) = &jwk.cert {
            for t in [&cert.sha1_hex, &cert.sha256_hex] {
                if self.deny_thumbprints.contains(t) {
                    return Some(format!("certificate thumbprint {t} is on the denylist"));
                }
            }
        }
        let tp = jwk.thumbprint();
        if self.deny_thumbprints.contains(&tp) {
            return Some(format!("JWK thumbprint {tp} is on the denylist"));
        }
        None
    }

    /// Whether a header thumbprint (`x5t` or `x5t#S256`, base64url) names a
    /// denied certificate.
    pub(crate) fn header_thumbprint_denied(&self, b64: &str) -> Option<String> {
        let hex = tokenward_jose::to_hex(&decode_b64url(b64.as_bytes()).ok()?);
        self.deny_thumbprints
            .contains(&hex)
            .then(|| format!("certificate thumbprint {hex} is on the denylist"))
    }

    /// Non-fatal observations made while loading (keys ignored, wildcard
    /// tenants, overrides for absent keys). Worth showing an operator.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The key set files (`jwks` and `secrets` files) this policy was
    /// built from, resolved against the policy file's directory. A
    /// long-running verifier watches these (with the policy file itself) to
    /// know when to reload; URL sources are kept fresh by
    /// [`crate::LivePolicy`].
    pub fn key_files(&self) -> &[PathBuf] {
        &self.key_files
    }

    /// Every key source, in the order keys are installed.
    pub fn key_sources(&self) -> &[KeySourceRef] {
        &self.sources
    }

    /// Fetch and freshness rules for URL key sources.
    pub fn live_config(&self) -> &LiveConfig {
        &self.live_config
    }

    /// The `[[route]]` rules, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route rule matching a request path, if any.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(path))
    }

    /// The issuer entries.
    pub fn issuers(&self) -> &[IssuerEntry] {
        &self.issuers
    }

    /// All key records with this `kid`.
    pub fn keys_with_kid(&self, kid: &str) -> &[KeyRecord] {
        self.keys.get(kid).map_or(&[], Vec::as_slice)
    }

    /// Number of key records loaded.
    pub fn key_count(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }
}

pub(crate) fn read_policy_text(path: &Path) -> Result<String, ConfigError> {
    let err = |message: String| ConfigError {
        file: path.to_owned(),
        message,
    };
    let bytes = tokenward_keys::read_capped(path, tokenward_keys::MAX_FILE_BYTES)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| err(format!("cannot read: not UTF-8 ({e})")))
}

/// A `jwks`/`secrets` value: a URL as written, or a path relative to the
/// policy file.
fn resolve_source(value: &str, base: &Path) -> Result<KeySource, String> {
    match KeySource::parse(value).map_err(|e| e.to_string())? {
        KeySource::File(rel) => Ok(KeySource::File(base.join(rel))),
        other => Ok(other),
    }
}

/// Two entries naming the same file (through different spellings) or the
/// same URL share one key set.
fn same_source(a: &KeySource, b: &KeySource) -> bool {
    match (a, b) {
        (KeySource::File(x), KeySource::File(y)) => {
            let canon = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            canon(x) == canon(y)
        }
        _ => a == b,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn check_issuer(
    e: &IssuerFile,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<IssuerEntry, String> {
    let placeholders = e.issuer.matches(TENANT_PLACEHOLDER).count();
    if placeholders > 1 {
        return Err(format!("{at}: {TENANT_PLACEHOLDER} may appear once"));
    }
    let template = (placeholders == 1).then(|| {
        let (pre, post) = e.issuer.split_once(TENANT_PLACEHOLDER).unwrap_or_default();
        (pre.to_owned(), post.to_owned())
    });
    let tenants = match (&e.tenants, &template) {
        (None, Some(_)) => {
            return Err(format!(
                "{at}: a {TENANT_PLACEHOLDER} issuer needs \"tenants\" (a list of tenant GUIDs, or [\"*\"] for any)"
            ))
        }
        (None, None) => TenantRule::Unrestricted,
        (Some(list), _) if list.len() == 1 && list[0] == "*" => {
            warnings.push(format!(
                "{at}: tenants = [\"*\"] admits any tenant (except the consumer tenant {CONSUMER_TENANT})"
            ));
            TenantRule::Any
        }
        (Some(list), _) => {
            if list.is_empty() {
                return Err(format!("{at}: \"tenants\" is empty: no token could pass"));
            }
            for t in list {
                if !is_guid(t) {
                    return Err(format!("{at}: tenant {t:?} is not a GUID (\"*\" must stand alone)"));
                }
            }
            TenantRule::List(list.iter().map(|t| t.to_ascii_lowercase()).collect())
        }
    };
    let audiences = e.audiences.clone().unwrap_or_default();
    if audiences.is_empty() {
        return Err(format!(
            "{at}: \"audiences\" is missing or empty: an unscoped audience is never assumed"
        ));
    }
    let names = e.algorithms.clone().unwrap_or_default();
    if names.is_empty() {
        return Err(format!("{at}: \"algorithms\" is missing or empty"));
    }
    let algorithms = names
        .iter()
        .map(|n| {
            n.parse::<Algorithm>()
                .map_err(|()| format!("{at}: unknown algorithm {n:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(max) = e.max_lifetime_seconds {
        if max <= 0 {
            return Err(format!("{at}: max_lifetime_seconds must be positive"));
        }
    }
    Ok(IssuerEntry {
        issuer: e.issuer.clone(),
        template,
        tenants,
        audiences,
        algorithms,
        typ: e.typ.as_deref().map(normalise_typ),
        max_lifetime: e.max_lifetime_seconds,
        required_claims: e.required_claims.clone(),
    })
}

/// `typ` compares case-insensitively and without the `application/` prefix
/// (RFC 7515 §4.1.9).
pub(crate) fn normalise_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    lower
        .strip_prefix("application/")
        .map(str::to_owned)
        .unwrap_or(lower)
}
