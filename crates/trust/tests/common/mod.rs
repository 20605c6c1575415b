//! A scratch trust setup shaped like Microsoft's `common` v2.0 key set:
//! enterprise `{tenantid}` keys and a consumer-tenant key in one JWKS.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{json, Value};
use tokenward_jose::{encode_b64url, Algorithm, SigningKey};
use tokenward_trust::{Policy, Verdict};

pub const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
pub const TENANT_A: &str = "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91";
pub const TENANT_B: &str = "7d2e9b14-0c3a-4f5e-8b61-9a0d2c4e6f83";
pub const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
pub const AUD: &str = "api://orders";
pub const STORM_KID: &str = "1LTMzakihiRla_8z2BEJVXeWMqo";
/// 2023-06-15T00:00:00Z, inside Storm-0558's activity window.
pub const NOW: i64 = 1_686_787_200;

pub fn consumer_issuer() -> String {
    TEMPLATE.replace("{tenantid}", CONSUMER)
}

pub fn issuer_for(tenant: &str) -> String {
    TEMPLATE.replace("{tenantid}", tenant)
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub enterprise: SigningKey,
    pub consumer: SigningKey,
    pub revoked: SigningKey,
    pub expired_cert: SigningKey,
    pub es: SigningKey,
    pub hs: SigningKey,
    pub attacker: SigningKey,
    pub policy_path: PathBuf,
}

/// A self-signed certificate for `key` valid between two dates, base64 DER.
pub fn cert_b64(key: &SigningKey, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> String {
    let der = key.to_pkcs8().unwrap();
    let kp = rcgen::KeyPair::try_from(der.as_slice()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["sts.example".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&kp).unwrap();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(cert.der())
}

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

impl Env {
    pub fn new() -> Env {
        Env::with_policy(POLICY)
    }

    pub fn with_policy(policy: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let rs = || SigningKey::generate(Algorithm::RS256).unwrap();
        let env = Env {
            enterprise: rs(),
            consumer: rs(),
            revoked: rs(),
            expired_cert: rs(),
            es: SigningKey::generate(Algorithm::ES256).unwrap(),
            hs: SigningKey::generate(Algorithm::HS256).unwrap(),
            attacker: rs(),
            policy_path: dir.path().join("policy.toml"),
            dir,
        };
        let with_issuer = |mut jwk: Value, iss: &str| {
            jwk["issuer"] = json!(iss);
            jwk
        };
        let mut expired = with_issuer(env.expired_cert.public_jwk("old-1"), TEMPLATE);
        expired["x5c"] = json!([cert_b64(&env.expired_cert, (2016, 4, 5), (2021, 4, 4))]);
        let common = json!({"keys": [
            with_issuer(env.enterprise.public_jwk("ent-1"), TEMPLATE),
            with_issuer(env.consumer.public_jwk("msa-1"), &consumer_issuer()),
            with_issuer(env.revoked.public_jwk("revoked-1"), TEMPLATE),
            expired,
        ]});
        env.write("common.json", &common);
        env.write("as.json", &json!({"keys": [env.es.public_jwk("as-1")]}));
        env.write(
            "secrets.json",
            &json!({"keys": [env.hs.public_jwk("hs-1")]}),
        );
        std::fs::write(&env.policy_path, policy).unwrap();
        env
    }

    pub fn write(&self, name: &str, v: &Value) {
        std::fs::write(
            self.dir.path().join(name),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    pub fn policy(&self) -> Policy {
        Policy::load(&self.policy_path).unwrap()
    }

    pub fn verify(&self, token: &str) -> Verdict {
        self.policy().verify(token, NOW)
    }
}

/// Claims of a legitimate enterprise access token for TENANT_A.
pub fn claims() -> Value {
    json!({
        "iss": issuer_for(TENANT_A), "tid": TENANT_A, "aud": AUD,
        "sub": "user-1", "oid": "0b7a", "uti": "AAAA-token-1",
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
    })
}

pub fn sign(key: &SigningKey, kid: &str, claims: &Value) -> String {
    key.sign_token(
        &json!({"alg": key.algorithm().name(), "kid": kid, "typ": "JWT"}),
        claims,
    )
    .unwrap()
}

/// A token assembled from raw header and payload JSON text with a given
/// signature, for shapes a JSON serializer would not produce.
pub fn raw_token(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        encode_b64url(header.as_bytes()),
        encode_b64url(payload.as_bytes()),
        encode_b64url(sig)
    )
}

/// Decodes lower- or upper-case hex.
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
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
