//! A scratch trust setup shaped like Microsoft's `common` v2.0 key set:
//! enterprise `{tenantid}` keys and a consumer-tenant key in one JWKS.

#![allow(dead_code)]

use serde_json::Value;
use tokenward_trust::{Policy, Verdict};

pub use tokenward_testkit::*;

/// 2023-06-15T00:00:00Z, inside Storm-0558's activity window.
pub const NOW: i64 = 1_686_787_200;

pub const POLICY: &str = r#"
leeway_seconds = 60

[[issuer]]
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
tenants = ["3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91"]
audiences = ["api://orders"]
algorithms = ["RS256"]
jwks = "common.json"
max_lifetime_seconds = 86400

[[issuer]]
issuer = "https://as.example.com"
audiences = ["api://as"]
algorithms = ["ES256"]
jwks = "as.json"
typ = "at+jwt"
required_claims = ["sub", "client_id", "jti"]

[[issuer]]
issuer = "https://hs.example.com"
audiences = ["api://hs"]
algorithms = ["HS256"]
secrets = "secrets.json"

[[key]]
kid = "revoked-1"
status = "revoked"
"#;

/// The trust tests' view of the shared setup: [`POLICY`] by default,
/// verification at [`NOW`].
pub trait TrustEnv {
    /// The setup with [`POLICY`].
    fn new() -> Self;
    /// The policy, loaded.
    fn policy(&self) -> Policy;
    /// Verifies `token` at [`NOW`].
    fn verify(&self, token: &str) -> Verdict;
}

impl TrustEnv for Env {
    fn new() -> Self {
        Env::with_policy(POLICY)
    }

    fn policy(&self) -> Policy {
        Policy::load(&self.policy_path).unwrap()
    }

    fn verify(&self, token: &str) -> Verdict {
        self.policy().verify(token, NOW)
    }
}

/// Claims of a legitimate enterprise access token for TENANT_A at [`NOW`].
pub fn claims() -> Value {
    enterprise_claims(NOW)
}

pub fn codes(v: &Verdict) -> Vec<&'static str> {
    v.codes().iter().map(|c| c.code()).collect()
}

#[track_caller]
pub fn assert_accepted(v: &Verdict) {
    assert!(v.accepted(), "expected acceptance, got {:?}", v.reasons);
}

#[track_caller]
pub fn assert_rejected_with(v: &Verdict, code: &str) {
    assert!(!v.accepted(), "expected rejection with {code}");
    assert!(
        codes(v).contains(&code),
        "expected {code} among {:?}",
        v.reasons
    );
}
