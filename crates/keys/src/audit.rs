//! The audit of a published key set: what in it could let a token be
//! trusted that should not be.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tokenward_jose::{
    decode_b64url, has_roca_fingerprint, Algorithm, Jwk, Jwks, KeyMaterial, KeyUse, VerifyingKey,
};

use crate::source::{DiscoveryDoc, IssuerMatch};
use crate::spki::spki_matches;
use crate::timefmt::{format_date, format_days};

/// Microsoft's consumer (MSA) tenant. The same value as
/// `tokenward_trust::CONSUMER_TENANT`; repeated here because the trust
/// crate builds on this one, not the other way round.
pub const MSA_CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Hygiene.
    Low,
    /// Weakens the trust a verifier can put in the set.
    Medium,
    /// Can let a wrong token verify, or shows the set is not maintained.
    High,
    /// Secrets published or a known-compromised key.
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a name (case-insensitive).
    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $sev:ident, $meaning:literal; )*) => {
        /// A stable finding code. The strings never change meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FindingCode {
            $( $(#[$doc])* $variant, )*
        }

        impl FindingCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [FindingCode] = &[$(FindingCode::$variant),*];

            /// The stable code string.
            pub fn code(self) -> &'static str {
                match self { $(FindingCode::$variant => $code,)* }
            }

            /// The usual severity (a finding may state another).
            pub fn severity(self) -> Severity {
                match self { $(FindingCode::$variant => Severity::$sev,)* }
            }

            /// One sentence on what the finding means.
            pub fn meaning(self) -> &'static str {
                match self { $(FindingCode::$variant => $meaning,)* }
            }
        }
    };
}

codes! {
    /// Keys for different issuers (trust domains) in one set.
    MixedTrustDomains = "mixed-trust-domains", High,
        "keys of different issuers (or consumer-tenant keys beside enterprise keys) are published in one set, so a verifier that trusts the set without checking each key's issuer accepts any of them for any issuer: the Storm-0558 mistake";
    /// A key without `issuer` in a set serving several issuers.
    KeyWithoutIssuer = "key-without-issuer", Medium,
        "the set serves several issuers but this key names none, so no verifier can tell which issuer it may sign for";
    /// Certificate past its notAfter.
    CertExpired = "cert-expired", High,
        "the key's certificate has expired but the key is still published (the Storm-0558 key's certificate expired in 2021 and was still trusted in 2023)";
    /// Certificate before its notBefore.
    CertNotYetValid = "cert-not-yet-valid", Medium,
        "the key's certificate is not valid yet: a clock problem at the publisher, or a key published before its time";
    /// Certificate validity longer than the threshold.
    CertLongLived = "cert-long-lived", Low,
        "the certificate's validity period is longer than the threshold, so the key can be used for a long time without rotation";
    /// Certificate older than the rotation threshold.
    KeyStale = "key-stale", Medium,
        "the key's certificate was issued longer ago than the rotation threshold: the key has not been rotated";
    /// `kid`/`x5t` not the certificate's, or the certificate holds another key.
    KidThumbprintMismatch = "kid-thumbprint-mismatch", High,
        "the kid or x5t/x5t#S256 is not the thumbprint of the x5c certificate, or the certificate carries a different key than the JWK";
    /// Two keys with one `kid`.
    DuplicateKid = "duplicate-kid", High,
        "several keys share a kid, so which key verifies a token is ambiguous";
    /// Weak or unusable key material.
    WeakKey = "weak-key", High,
        "RSA under 2048 bits, a bad exponent, a ROCA-vulnerable modulus, an unknown curve or a key the crypto library refuses";
    /// Private key members published.
    PrivateKeyPublished = "private-key-published", Critical,
        "private key members (d, p, q, dp, dq, qi, oth) are in a published set: anyone can sign with this key";
    /// A shared secret published.
    SymmetricKeyPublished = "symmetric-key-published", Critical,
        "an oct (HMAC) key is in a published set: its secret is public, and anyone can sign with it";
    /// No `alg`.
    AlgMissing = "alg-missing", Low,
        "the key does not state its algorithm, so the verifier must take it from the token header or configuration";
    /// `use`/`key_ops`/`alg` say the key is not for signatures.
    UseNotSig = "use-not-sig", Medium,
        "use, key_ops or alg say the key is not for signature verification, yet it is in a signing key set";
    /// Key on a denylist.
    KeyDenied = "key-denied", Critical,
        "the key is on the built-in or configured denylist of compromised keys (e.g. the key Storm-0558 acquired)";
    /// Discovery `issuer` not the URL's issuer.
    IssuerMismatch = "issuer-mismatch", High,
        "the discovery document names another issuer than the URL it was fetched from implies (OIDC Discovery 1.0 §4.3); a templated {tenantid} issuer is reported as low";
    /// A key entry that could not be read.
    KeyUnreadable = "key-unreadable", Medium,
        "an entry of the set is not a valid JWK; verifiers skip it silently";
    /// Key in the set but not in the baseline.
    KeyAdded = "key-added", Medium,
        "a key is in the set that was not in the baseline snapshot";
    /// Key in the baseline but gone from the set.
    KeyRemoved = "key-removed", Info,
        "a key of the baseline snapshot is no longer published";
    /// Same identifier, different key or attributes.
    KeyChanged = "key-changed", High,
        "a kid of the baseline now names a different key, issuer or attributes";
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for FindingCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code.
    pub code: FindingCode,
    /// Severity of this instance.
    pub severity: Severity,
    /// The key concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// What was found, for people.
    pub message: String,
}

impl Finding {
    /// A finding at the code's usual severity.
    pub fn new(code: FindingCode, kid: Option<&str>, message: impl Into<String>) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            kid: kid.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The same finding at another severity.
    pub fn with_severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }
}

/// Audit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The time the audit is for, seconds since the epoch.
    pub now: i64,
    /// Certificates issued longer ago than this (seconds) mean the key was
    /// not rotated (`key-stale`). Default one year.
    pub rotation_max_age: i64,
    /// Certificate validity periods longer than this (seconds) are
    /// `cert-long-lived`. Default two years.
    pub max_cert_validity: i64,
    /// Denied `kid` values.
    pub deny_kids: Vec<String>,
    /// Denied thumbprints: lower-case hex SHA-1/SHA-256 of a certificate,
    /// or an RFC 7638 JWK thumbprint (base64url).
    pub deny_thumbprints: Vec<String>,
    /// Tenant IDs whose keys are consumer keys (the MSA tenant by default).
    pub consumer_tenants: Vec<String>,
}

impl AuditConfig {
    /// Defaults at `now`, with empty denylists (the CLI adds the built-in
    /// ones from `tokenward-trust`).
    pub fn new(now: i64) -> AuditConfig {
        AuditConfig {
            now,
            rotation_max_age: 365 * 86400,
            max_cert_validity: 2 * 365 * 86400,
            deny_kids: Vec::new(),
            deny_thumbprints: Vec::new(),
            consumer_tenants: vec![MSA_CONSUMER_TENANT.to_owned()],
        }
    }
}

/// Audits one key set. `discovery` is the document the set was found
/// through, if any. Fails only when the bytes are not a JWK Set at all.
pub fn audit_key_set(
    jwks_bytes: &[u8],
    discovery: Option<&DiscoveryDoc>,
    config: &AuditConfig,
) -> Result<Vec<Finding>, String> {
    let set = Jwks::parse(jwks_bytes).map_err(|e| e.0)?;
    let mut findings = Vec::new();
    if let Some(doc) = discovery {
        audit_discovery(doc, &mut findings);
    }
    let mut keys = Vec::new();
    for (i, entry) in set.keys.iter().enumerate() {
        match entry {
            Ok(k) => keys.push(k),
            Err(e) => findings.push(Finding::new(
                FindingCode::KeyUnreadable,
                None,
                format!("entry {i}: {e}"),
            )),
        }
    }
    audit_set_level(&keys, discovery, config, &mut findings);
    for key in &keys {
        audit_key(key, config, &mut findings);
    }
    Ok(findings)
}

fn audit_discovery(doc: &DiscoveryDoc, out: &mut Vec<Finding>) {
    let found = doc.issuer.as_deref().unwrap_or("(none)");
    let expected = doc.expected_issuer.as_deref().unwrap_or("");
    match doc.issuer_match() {
        IssuerMatch::Exact | IssuerMatch::Unknown => {}
        IssuerMatch::Template => out.push(
            Finding::new(
                FindingCode::IssuerMismatch,
                None,
                format!(
                    "discovery {} names the multi-tenant template {found:?} for {expected:?}: \
                     tokens from any tenant match it, so each key's issuer and the token's tid must be checked",
                    doc.url
                ),
            )
            .with_severity(Severity::Low),
        ),
        IssuerMatch::Mismatch => out.push(Finding::new(
            FindingCode::IssuerMismatch,
            None,
            format!(
                "discovery {} names issuer {found:?}, but its URL implies {expected:?}",
                doc.url
            ),
        )),
    }
}

fn label(k: &Jwk) -> Option<&str> {
    k.kid.as_deref()
}

fn is_consumer(issuer: &str, config: &AuditConfig) -> bool {
    let lower = issuer.to_ascii_lowercase();
    config
        .consumer_tenants
        .iter()
        .any(|t| lower.contains(&t.to_ascii_lowercase()))
}

fn audit_set_level(
    keys: &[&Jwk],
    discovery: Option<&DiscoveryDoc>,
    config: &AuditConfig,
    out: &mut Vec<Finding>,
) {
    // duplicate-kid
    let mut by_kid: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        if let Some(kid) = k.kid.as_deref() {
            *by_kid.entry(kid).or_default() += 1;
        }
    }
    for (kid, n) in by_kid.iter().filter(|(_, n)| **n > 1) {
        out.push(Finding::new(
            FindingCode::DuplicateKid,
            Some(kid),
            format!("{n} keys share kid {kid:?}"),
        ));
    }

    // mixed-trust-domains
    let mut issuers: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        if let Some(iss) = k.issuer.as_deref() {
            *issuers.entry(iss).or_default() += 1;
        }
    }
    let without_issuer = keys.iter().filter(|k| k.issuer.is_none()).count();
    let consumer = issuers.keys().filter(|i| is_consumer(i, config)).count();
    let listing = || {
        issuers
            .iter()
            .map(|(i, n)| format!("{i} ({n} key{})", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if issuers.len() >= 2 {
        let mut msg = format!("{} issuers in one key set: {}", issuers.len(), listing());
        if consumer > 0 && consumer < issuers.len() {
            msg.push_str(
                "; consumer-tenant keys are published beside enterprise keys, \
                 so only a per-key issuer check keeps a consumer key from signing for an enterprise tenant",
            );
        }
        out.push(Finding::new(FindingCode::MixedTrustDomains, None, msg));
    } else if consumer == 1 && without_issuer > 0 {
        out.push(Finding::new(
            FindingCode::MixedTrustDomains,
            None,
            format!(
                "consumer-tenant keys ({}) are published beside {without_issuer} key(s) with no issuer, \
                 which serve whatever issuer the set is used for",
                listing()
            ),
        ));
    }

    // key-without-issuer
    let templated = discovery
        .and_then(|d| d.issuer.as_deref())
        .is_some_and(|i| i.contains(crate::source::TENANT_TEMPLATE));
    let several = issuers.len() >= 2 || (!issuers.is_empty() && without_issuer > 0) || templated;
    if several {
        for k in keys.iter().filter(|k| k.issuer.is_none()) {
            out.push(Finding::new(
                FindingCode::KeyWithoutIssuer,
                label(k),
                format!(
                    "key {} has no issuer in a set serving several issuers",
                    describe(k)
                ),
            ));
        }
    }
}

fn describe(k: &Jwk) -> String {
    match &k.kid {
        Some(kid) => format!("{kid:?}"),
        None => format!("(no kid, thumbprint {})", k.thumbprint()),
    }
}

fn audit_key(k: &Jwk, config: &AuditConfig, out: &mut Vec<Finding>) {
    let kid = label(k);
    let who = describe(k);
    let mut push = |code: FindingCode, msg: String| out.push(Finding::new(code, kid, msg));

    // key-denied
    let thumb = k.thumbprint();
    let mut denial = None;
    if let Some(id) = k.kid.as_deref() {
        if config.deny_kids.iter().any(|d| d == id) {
            denial = Some(format!("kid {id:?} is on the denylist"));
        }
    }
    let mut prints: Vec<String> = vec![thumb.clone()];
    if let Some(c) = &k.cert {
        prints.push(c.sha1_hex.clone());
        prints.push(c.sha256_hex.clone());
    }
    for t in [&k.x5t, &k.x5t_s256].into_iter().flatten() {
        if let Ok(raw) = decode_b64url(t.as_bytes()) {
            prints.push(hex(&raw));
        }
    }
    if denial.is_none() {
        if let Some(p) = prints.iter().find(|p| {
            config
                .deny_thumbprints
                .iter()
                .any(|d| d.eq_ignore_ascii_case(p))
        }) {
            denial = Some(format!("thumbprint {p} is on the denylist"));
        }
    }
    if let Some(d) = denial {
        push(FindingCode::KeyDenied, format!("key {who}: {d}"));
    }

    // private-key-published / symmetric-key-published
    if !k.private_members.is_empty() {
        push(
            FindingCode::PrivateKeyPublished,
            format!(
                "key {who} publishes private members {}",
                k.private_members.join(", ")
            ),
        );
    }
    if let KeyMaterial::Oct { k: secret } = &k.material {
        push(
            FindingCode::SymmetricKeyPublished,
            format!(
                "key {who} is an oct key: its {}-bit secret is public",
                secret.len() * 8
            ),
        );
    }

    // weak-key
    for w in weaknesses(k) {
        push(FindingCode::WeakKey, format!("key {who}: {w}"));
    }

    // alg-missing / use-not-sig
    match k.alg.as_deref() {
        None => push(FindingCode::AlgMissing, format!("key {who} has no alg")),
        Some(a) if a.parse::<Algorithm>().is_err() => push(
            FindingCode::UseNotSig,
            format!("key {who} has alg {a:?}, not a JWS signature algorithm"),
        ),
        Some(_) => {}
    }
    match &k.key_use {
        Some(KeyUse::Enc) => push(FindingCode::UseNotSig, format!("key {who} has use \"enc\"")),
        Some(KeyUse::Other(u)) => push(FindingCode::UseNotSig, format!("key {who} has use {u:?}")),
        _ => {}
    }
    if let Some(ops) = &k.key_ops {
        if !ops.iter().any(|o| o == "verify") {
            push(
                FindingCode::UseNotSig,
                format!("key {who} has key_ops {ops:?} without \"verify\""),
            );
        }
    }

    // certificate checks
    let Some(cert) = &k.cert else {
        return;
    };
    let now = config.now;
    if now > cert.not_after {
        push(
            FindingCode::CertExpired,
            format!(
                "key {who}: certificate {} expired {} ({} ago)",
                cert.subject,
                format_date(cert.not_after),
                format_days(now - cert.not_after)
            ),
        );
    }
    if now < cert.not_before {
        push(
            FindingCode::CertNotYetValid,
            format!(
                "key {who}: certificate {} is valid only from {}",
                cert.subject,
                format_date(cert.not_before)
            ),
        );
    }
    let validity = cert.not_after - cert.not_before;
    if validity > config.max_cert_validity {
        push(
            FindingCode::CertLongLived,
            format!(
                "key {who}: certificate valid for {} ({} to {}), over {}",
                format_days(validity),
                format_date(cert.not_before),
                format_date(cert.not_after),
                format_days(config.max_cert_validity)
            ),
        );
    }
    if now - cert.not_before > config.rotation_max_age {
        push(
            FindingCode::KeyStale,
            format!(
                "key {who}: certificate issued {} ({} ago), over the {} rotation threshold",
                format_date(cert.not_before),
                format_days(now - cert.not_before),
                format_days(config.rotation_max_age)
            ),
        );
    }

    // kid-thumbprint-mismatch
    let sha1 = &cert.x5t;
    let sha256 = &cert.x5t_s256;
    if let Some(x5t) = &k.x5t {
        if x5t != sha1 {
            push(
                FindingCode::KidThumbprintMismatch,
                format!("key {who}: x5t {x5t} is not the certificate's SHA-1 thumbprint {sha1}"),
            );
        }
    }
    if let Some(x5t) = &k.x5t_s256 {
        if x5t != sha256 {
            push(
                FindingCode::KidThumbprintMismatch,
                format!(
                    "key {who}: x5t#S256 {x5t} is not the certificate's SHA-256 thumbprint {sha256}"
                ),
            );
        }
    }
    if let Some(id) = k.kid.as_deref() {
        // Only a kid shaped like a thumbprint claims to be one; other kids
        // (names, dates) are free-form.
        let claimed = decode_b64url(id.as_bytes()).ok().map(|b| b.len());
        let ok = match claimed {
            Some(20) => id == sha1,
            Some(32) => id == sha256 || id == thumb,
            _ => true,
        };
        if !ok {
            push(
                FindingCode::KidThumbprintMismatch,
                format!(
                    "key {who}: kid is shaped like a thumbprint but is not the certificate's ({sha1})"
                ),
            );
        }
    }
    if spki_matches(&cert.spki_der, &k.material) == Some(false) {
        push(
            FindingCode::KidThumbprintMismatch,
            format!(
                "key {who}: the x5c certificate ({}) carries a different public key than the JWK",
                cert.subject
            ),
        );
    }
}

/// Reasons the key material is weak or unusable.
fn weaknesses(k: &Jwk) -> Vec<String> {
    let mut out = Vec::new();
    let probe_alg = match &k.material {
        KeyMaterial::Rsa { n, e } => {
            let bits = k.material.bits();
            if bits < 2048 {
                out.push(format!("RSA modulus of {bits} bits, under 2048"));
            }
            let e_val = e.iter().skip_while(|&&b| b == 0).fold(0u128, |acc, &b| {
                acc.saturating_mul(256).saturating_add(u128::from(b))
            });
            if e_val < 3 || e.last().is_some_and(|b| b % 2 == 0) {
                out.push(format!(
                    "RSA public exponent {e_val} is not an odd number of at least 3"
                ));
            }
            if has_roca_fingerprint(n) {
                out.push("RSA modulus has the ROCA (CVE-2017-15361) fingerprint".into());
            }
            Some(Algorithm::RS256)
        }
        KeyMaterial::Ec { crv, .. } => match crv.as_str() {
            "P-256" => Some(Algorithm::ES256),
            "P-384" => Some(Algorithm::ES384),
            "P-521" => Some(Algorithm::ES512),
            other => {
                out.push(format!("unknown or unsupported EC curve {other:?}"));
                None
            }
        },
        KeyMaterial::Okp { crv, .. } => match crv.as_str() {
            "Ed25519" => Some(Algorithm::EdDSA),
            "Ed448" => None,
            other => {
                out.push(format!("curve {other:?} is not a signature curve"));
                None
            }
        },
        KeyMaterial::Oct { .. } => None,
    };
    // Let the crypto library judge the material itself (points on the
    // curve, modulus well formed), with use/alg taken out of the question.
    if let (Some(alg), true) = (probe_alg, out.is_empty()) {
        let bare = Jwk {
            alg: None,
            key_use: None,
            key_ops: None,
            ..k.clone()
        };
        if let Err(e) = VerifyingKey::from_jwk(&bare, alg) {
            out.push(format!("key material refused: {e}"));
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The highest severity among findings, if any.
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}
