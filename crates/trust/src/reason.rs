//! Stable reason codes for rejected tokens.

use std::fmt;

use serde::Serialize;

/// Why a token was rejected. The string form ([`ReasonCode::code`]) is a
/// contract documented in the README: logs, alerts and the gateway depend
/// on it, so codes are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    /// Not a well-formed compact JWS / JWT.
    Malformed,
    /// Over a size limit.
    TooLarge,
    /// `alg` unsupported, not allowed for the issuer, or not the key's.
    AlgNotAllowed,
    /// No `kid` in the header.
    KidMissing,
    /// No trusted key has this `kid`.
    KidUnknown,
    /// The key is on the built-in or policy denylist.
    KeyDenied,
    /// The key is marked revoked.
    KeyRevoked,
    /// The key is marked retired.
    KeyRetired,
    /// Verification time is after the key's notAfter.
    KeyExpired,
    /// Verification time is before the key's notBefore.
    KeyNotYetValid,
    /// The key may not sign for the token's issuer.
    KeyOutOfScope,
    /// The key exists but cannot verify (wrong type, too weak, bad `use`).
    KeyUnusable,
    /// The signature does not verify.
    SignatureInvalid,
    /// No issuer entry matches `iss`.
    IssuerUnknown,
    /// `tid` is not a GUID or disagrees with `iss`.
    TidMismatch,
    /// The tenant is not allowed for this issuer.
    TenantNotAllowed,
    /// No configured audience is in `aud`.
    AudienceMismatch,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IatInFuture,
    /// `exp` minus `iat`/`nbf` exceeds the configured maximum.
    LifetimeTooLong,
    /// A required claim is absent.
    ClaimMissing,
    /// A registered claim has the wrong JSON type.
    ClaimType,
    /// The header uses `crit` (or `b64:false`).
    CritUnsupported,
    /// `typ` is not the configured token type.
    TypMismatch,
    /// The issuer's key set could not be refreshed for longer than the
    /// maximum staleness; the verifier fails closed.
    KeysStale,
}

impl ReasonCode {
    /// Every code, in documentation order.
    pub const ALL: [ReasonCode; 26] = [
        ReasonCode::Malformed,
        ReasonCode::TooLarge,
        ReasonCode::AlgNotAllowed,
        ReasonCode::KidMissing,
        ReasonCode::KidUnknown,
        ReasonCode::KeyDenied,
        ReasonCode::KeyRevoked,
        ReasonCode::KeyRetired,
        ReasonCode::KeyExpired,
        ReasonCode::KeyNotYetValid,
        ReasonCode::KeyOutOfScope,
        ReasonCode::KeyUnusable,
        ReasonCode::SignatureInvalid,
        ReasonCode::IssuerUnknown,
        ReasonCode::TidMismatch,
        ReasonCode::TenantNotAllowed,
        ReasonCode::AudienceMismatch,
        ReasonCode::Expired,
        ReasonCode::NotYetValid,
        ReasonCode::IatInFuture,
        ReasonCode::LifetimeTooLong,
        ReasonCode::ClaimMissing,
        ReasonCode::ClaimType,
        ReasonCode::CritUnsupported,
        ReasonCode::TypMismatch,
        ReasonCode::KeysStale,
    ];

    /// The stable string code.
    pub fn code(self) -> &'static str {
        match self {
            ReasonCode::Malformed => "malformed",
            ReasonCode::TooLarge => "too-large",
            ReasonCode::AlgNotAllowed => "alg-not-allowed",
            ReasonCode::KidMissing => "kid-missing",
            ReasonCode::KidUnknown => "kid-unknown",
            ReasonCode::KeyDenied => "key-denied",
            ReasonCode::KeyRevoked => "key-revoked",
            ReasonCode::KeyRetired => "key-retired",
            ReasonCode::KeyExpired => "key-expired",
            ReasonCode::KeyNotYetValid => "key-not-yet-valid",
            ReasonCode::KeyOutOfScope => "key-out-of-scope",
            ReasonCode::KeyUnusable => "key-unusable",
            ReasonCode::SignatureInvalid => "signature-invalid",
            ReasonCode::IssuerUnknown => "issuer-unknown",
            ReasonCode::TidMismatch => "tid-mismatch",
            ReasonCode::TenantNotAllowed => "tenant-not-allowed",
            ReasonCode::AudienceMismatch => "audience-mismatch",
            ReasonCode::Expired => "expired",
            ReasonCode::NotYetValid => "not-yet-valid",
            ReasonCode::IatInFuture => "iat-in-future",
            ReasonCode::LifetimeTooLong => "lifetime-too-long",
            ReasonCode::ClaimMissing => "claim-missing",
            ReasonCode::ClaimType => "claim-type",
            ReasonCode::CritUnsupported => "crit-unsupported",
            ReasonCode::TypMismatch => "typ-mismatch",
            ReasonCode::KeysStale => "keys-stale",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Stable code.
    pub code: ReasonCode,
    /// Detail for an operator.
    pub message: String,
}

impl From<tokenward_jose::ErrorKind> for ReasonCode {
    fn from(kind: tokenward_jose::ErrorKind) -> Self {
        match kind {
            tokenward_jose::ErrorKind::Malformed => ReasonCode::Malformed,
            tokenward_jose::ErrorKind::TooLarge => ReasonCode::TooLarge,
            tokenward_jose::ErrorKind::AlgNotAllowed => ReasonCode::AlgNotAllowed,
            tokenward_jose::ErrorKind::CritUnsupported => ReasonCode::CritUnsupported,
        }
    }
}
