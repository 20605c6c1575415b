//! Test fixtures shared by the workspace's tests (a dev-dependency only):
//! the tenant and issuer constants of a Microsoft-shaped setup, keys,
//! self-signed certificates, JWKs as Microsoft publishes them, token
//! signing, and [`Env`], a scratch directory holding a `common` key set
//! that mixes enterprise and consumer keys (the trust domains Storm-0558
//! crossed), an authorization server's key set and an HMAC secret.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;

use base64::Engine;
use serde_json::{json, Value};
use tokenward_jose::{encode_b64url, Algorithm, SigningKey};

/// Entra ID's v2.0 issuer template.
pub const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
/// The tenant the test policies trust.
pub const TENANT_A: &str = "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91";
/// Another enterprise tenant, not trusted.
pub const TENANT_B: &str = "7d2e9b14-0c3a-4f5e-8b61-9a0d2c4e6f83";
/// Microsoft's consumer (MSA) tenant.
pub const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// The audience of the test API.
pub const AUD: &str = "api://orders";
/// The key id of the MSA key Storm-0558 stole.
pub const STORM_KID: &str = "1LTMzakihiRla_8z2BEJVXeWMqo";
/// A token-exchange authorization server's issuer.
pub const AS_ISSUER: &str = "https://as.example.com";

/// Seconds since the Unix epoch, now: for tokens a running server verifies
/// at its own clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The v2.0 issuer of `tenant`.
pub fn issuer_for(tenant: &str) -> String {
    TEMPLATE.replace("{tenantid}", tenant)
}

/// The consumer tenant's issuer.
pub fn consumer_issuer() -> String {
    issuer_for(CONSUMER)
}

/// A fresh RS256 key.
pub fn rsa() -> SigningKey {
    SigningKey::generate(Algorithm::RS256).unwrap()
}

/// A self-signed certificate for `key` (CN and DNS name `sts.example`)
/// valid between two dates, DER.
pub fn cert_der(key: &SigningKey, from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
    let der = key.to_pkcs8().unwrap();
    let kp = rcgen::KeyPair::try_from(der.as_slice()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["sts.example".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sts.example");
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    params.self_signed(&kp).unwrap().der().to_vec()
}

/// [`cert_der`] in standard base64, as `x5c` holds it.
pub fn cert_b64(key: &SigningKey, from: (i32, u8, u8), to: (i32, u8, u8)) -> String {
    b64(&cert_der(key, from, to))
}

/// Standard base64.
pub fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The SHA-1 thumbprint of a certificate, base64url (`x5t`).
pub fn sha1_b64url(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    encode_b64url(d.as_ref())
}

/// A JWK the way Microsoft publishes one: kid = x5t = SHA-1 of the
/// certificate, an issuer, x5c, no alg.
pub fn ms_key(key: &SigningKey, issuer: &str, from: (i32, u8, u8), to: (i32, u8, u8)) -> Value {
    let der = cert_der(key, from, to);
    let t = sha1_b64url(&der);
    let mut jwk = key.public_jwk(&t);
    jwk["x5t"] = json!(t);
    jwk["x5c"] = json!([b64(&der)]);
    jwk["issuer"] = json!(issuer);
    jwk
}

/// A plain signing JWK with alg and kid.
pub fn plain_key(key: &SigningKey, kid: &str) -> Value {
    let mut jwk = key.public_jwk(kid);
    jwk["alg"] = json!(key.algorithm().name());
    jwk
}

/// A JWKS of `keys`.
pub fn key_set(keys: Vec<Value>) -> Value {
    json!({ "keys": keys })
}

/// A JWT signed by `key` with a `kid` header.
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

/// Claims of a legitimate enterprise access token for [`TENANT_A`], issued
/// a minute before `now` and valid for an hour.
pub fn enterprise_claims(now: i64) -> Value {
    json!({
        "iss": issuer_for(TENANT_A), "tid": TENANT_A, "aud": AUD,
        "sub": "user-1", "oid": "0b7a", "uti": "AAAA-token-1", "sid": "sess-1",
        "azp": "app-1", "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
    })
}

/// Claims of a legitimate RFC 9068 token from [`AS_ISSUER`] at `now`.
pub fn as_claims(now: i64) -> Value {
    json!({"iss": AS_ISSUER, "aud": AUD, "sub": "svc-1", "client_id": "c-1",
           "jti": "j-1", "iat": now, "exp": now + 300})
}

/// A scratch directory with a policy and the key sets it names:
/// `common.json` (enterprise `ent-1` and revoked `revoked-1` under the
/// `{tenantid}` template, consumer `msa-1` under the consumer issuer, and
/// `old-1`, whose certificate expired in 2021), `as.json` (ES256 `as-1`)
/// and `secrets.json` (HS256 `hs-1`). `attacker` is in no set.
pub struct Env {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// Signs for the trusted enterprise tenant.
    pub enterprise: SigningKey,
    /// The consumer key.
    pub consumer: SigningKey,
    /// A key the policy revokes.
    pub revoked: SigningKey,
    /// A key whose certificate expired in 2021.
    pub expired_cert: SigningKey,
    /// The authorization server's ES256 key.
    pub es: SigningKey,
    /// The HS256 secret.
    pub hs: SigningKey,
    /// A key nobody trusts.
    pub attacker: SigningKey,
    /// Where the policy was written.
    pub policy_path: PathBuf,
}

impl Env {
    /// Writes `policy` and the key sets into a new scratch directory.
    pub fn with_policy(policy: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            enterprise: rsa(),
            consumer: rsa(),
            revoked: rsa(),
            expired_cert: rsa(),
            es: SigningKey::generate(Algorithm::ES256).unwrap(),
            hs: SigningKey::generate(Algorithm::HS256).unwrap(),
            attacker: rsa(),
            policy_path: dir.path().join("policy.toml"),
            dir,
        };
        let with_issuer = |mut jwk: Value, iss: &str| {
            jwk["issuer"] = json!(iss);
            jwk
        };
        let mut expired = with_issuer(env.expired_cert.public_jwk("old-1"), TEMPLATE);
        expired["x5c"] = json!([cert_b64(&env.expired_cert, (2016, 4, 5), (2021, 4, 4))]);
        let common = key_set(vec![
            with_issuer(env.enterprise.public_jwk("ent-1"), TEMPLATE),
            with_issuer(env.consumer.public_jwk("msa-1"), &consumer_issuer()),
            with_issuer(env.revoked.public_jwk("revoked-1"), TEMPLATE),
            expired,
        ]);
        env.write("common.json", &common);
        env.write("as.json", &key_set(vec![env.es.public_jwk("as-1")]));
        env.write("secrets.json", &key_set(vec![env.hs.public_jwk("hs-1")]));
        std::fs::write(&env.policy_path, policy).unwrap();
        env
    }

    /// Writes `v` as pretty JSON to `name` in the directory.
    pub fn write(&self, name: &str, v: &Value) {
        std::fs::write(
            self.dir.path().join(name),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }
}
