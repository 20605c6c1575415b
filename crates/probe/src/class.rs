//! The attack classes. Their ids are a contract: scripts and CI gates match
//! on them, so an id is never renamed or reused.

use serde::Serialize;

/// One kind of forged or altered token (or the missing token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// The request without any token was accepted.
    NoToken,
    /// `alg` set to `none` in any casing, signature empty.
    AlgNone,
    /// The original header and payload with the signature removed.
    SignatureStripped,
    /// The original header and payload with a wrong signature.
    SignatureInvalid,
    /// The payload changed, the original signature kept.
    ClaimsTampered,
    /// RS/ES switched to HS with the public key as the HMAC secret.
    HsPublicKey,
    /// HS256 with an empty secret.
    EmptyHmacKey,
    /// The verifying key embedded in the header (`jwk`).
    HeaderJwk,
    /// The verifying key fetched from a URL in the header (`jku`).
    HeaderJku,
    /// The verifying certificate fetched from a URL in the header (`x5u`).
    HeaderX5u,
    /// `kid` pointing at an empty file, with an empty HMAC secret.
    KidTraversal,
    /// `kid` carrying SQL or shell syntax.
    KidInjection,
    /// ECDSA signature with r = s = 0 (CVE-2022-21449).
    PsychicSignature,
    /// Validly signed, but expired.
    Expired,
    /// Validly signed, but not valid until later.
    NotYetValid,
    /// Validly signed, for another audience.
    WrongAudience,
    /// Validly signed, claiming another issuer altogether.
    WrongIssuer,
    /// Validly signed, claiming another tenant in `iss` and `tid`.
    WrongTenant,
    /// Signed by another issuer's key from the same key set, claiming the
    /// legitimate issuer and tenant: the Storm-0558 flaw.
    CrossIssuerKey,
}

impl Class {
    /// Every class, in the order the report lists them.
    pub const ALL: [Class; 19] = [
        Class::NoToken,
        Class::AlgNone,
        Class::SignatureStripped,
        Class::SignatureInvalid,
        Class::ClaimsTampered,
        Class::HsPublicKey,
        Class::EmptyHmacKey,
        Class::HeaderJwk,
        Class::HeaderJku,
        Class::HeaderX5u,
        Class::KidTraversal,
        Class::KidInjection,
        Class::PsychicSignature,
        Class::Expired,
        Class::NotYetValid,
        Class::WrongAudience,
        Class::WrongIssuer,
        Class::WrongTenant,
        Class::CrossIssuerKey,
    ];

    /// The classes that change one claim and re-sign with `--key`.
    pub const NEEDS_KEY: [Class; 5] = [
        Class::Expired,
        Class::NotYetValid,
        Class::WrongAudience,
        Class::WrongIssuer,
        Class::WrongTenant,
    ];

    /// The stable id.
    pub fn id(self) -> &'static str {
        match self {
            Class::NoToken => "no-token",
            Class::AlgNone => "alg-none",
            Class::SignatureStripped => "signature-stripped",
            Class::SignatureInvalid => "signature-invalid",
            Class::ClaimsTampered => "claims-tampered",
            Class::HsPublicKey => "hs-public-key",
            Class::EmptyHmacKey => "empty-hmac-key",
            Class::HeaderJwk => "header-jwk",
            Class::HeaderJku => "header-jku",
            Class::HeaderX5u => "header-x5u",
            Class::KidTraversal => "kid-traversal",
            Class::KidInjection => "kid-injection",
            Class::PsychicSignature => "psychic-signature",
            Class::Expired => "expired",
            Class::NotYetValid => "not-yet-valid",
            Class::WrongAudience => "wrong-audience",
            Class::WrongIssuer => "wrong-issuer",
            Class::WrongTenant => "wrong-tenant",
            Class::CrossIssuerKey => "cross-issuer-key",
        }
    }

    /// The class with this id.
    pub fn from_id(id: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.id() == id)
    }

    /// One line on what to fix when this class is accepted.
    pub fn fix(self) -> &'static str {
        match self {
            Class::NoToken => "the endpoint is not protected: put the verifier in front of it",
            Class::AlgNone => "refuse `none`: pin the accepted algorithms per key, never read them from the token",
            Class::SignatureStripped | Class::SignatureInvalid => {
                "the signature is not checked: verify it (a decode-only call is not verification)"
            }
            Class::ClaimsTampered => {
                "claims are read from a token whose signature is not checked, or from a cache keyed without the signature"
            }
            Class::HsPublicKey => {
                "key confusion: bind each key to one algorithm; never use a public key as an HMAC secret"
            }
            Class::EmptyHmacKey => "refuse empty and short HMAC secrets (RFC 7518 §3.2)",
            Class::HeaderJwk => "never verify with a key the token carries; use only configured keys",
            Class::HeaderJku | Class::HeaderX5u => {
                "never fetch keys from URLs in the token header; configure the key set URL"
            }
            Class::KidTraversal => "treat `kid` as an opaque id looked up in the key set, never as a path",
            Class::KidInjection => "treat `kid` as an opaque id: no SQL or shell built from it",
            Class::PsychicSignature => "update the ECDSA implementation (CVE-2022-21449: reject r = 0 or s = 0)",
            Class::Expired => "check `exp` with a small leeway",
            Class::NotYetValid => "check `nbf` (and a future `iat`) with a small leeway",
            Class::WrongAudience => "check `aud` against this API's identifiers",
            Class::WrongIssuer => "check `iss` against the issuers you trust",
            Class::WrongTenant => "check `tid` against the allowed tenants, and `iss` with the tenant substituted",
            Class::CrossIssuerKey => {
                "bind every key to the issuers and tenants it may sign for: a key from a shared key set must match the token's `iss` (Storm-0558)"
            }
        }
    }
}

impl Serialize for Class {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for class in Class::ALL {
            assert!(seen.insert(class.id()), "{class} twice");
            assert_eq!(Class::from_id(class.id()), Some(class));
        }
        assert_eq!(Class::from_id("alg-None"), None);
    }
}
