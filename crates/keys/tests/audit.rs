//! One test per audit finding: a key set that triggers it and one that
//! does not.

mod common;

use common::*;
use serde_json::{json, Value};
use tokenward_jose::{encode_b64url, Algorithm, Jwks, SigningKey};
use tokenward_keys::{
    audit_key_set, snapshot, AuditConfig, DiscoveryDoc, Finding, FindingCode, Severity, Snapshot,
    Url,
};

/// 2023-06-15T00:00:00Z, inside Storm-0558's activity window.
const NOW: i64 = 1_686_787_200;
const VALID: ((i32, u8, u8), (i32, u8, u8)) = ((2023, 3, 1), (2024, 3, 1));

fn run(set: &Value, discovery: Option<&DiscoveryDoc>, config: &AuditConfig) -> Vec<Finding> {
    audit_key_set(&serde_json::to_vec(set).unwrap(), discovery, config).unwrap()
}

fn findings(set: &Value) -> Vec<Finding> {
    run(set, None, &AuditConfig::new(NOW))
}

fn has(findings: &[Finding], code: FindingCode) -> bool {
    findings.iter().any(|f| f.code == code)
}

#[track_caller]
fn assert_has(set: &Value, code: FindingCode) -> Finding {
    let f = findings(set);
    f.iter()
        .find(|f| f.code == code)
        .cloned()
        .unwrap_or_else(|| panic!("expected {code} in {f:#?}"))
}

#[track_caller]
fn assert_lacks(set: &Value, code: FindingCode) {
    let f = findings(set);
    assert!(!has(&f, code), "did not expect {code} in {f:#?}");
}

fn valid_ms(issuer: &str) -> Value {
    ms_key(&rsa(), issuer, VALID.0, VALID.1)
}

#[test]
fn mixed_trust_domains() {
    let mixed = key_set(vec![valid_ms(TEMPLATE), valid_ms(&consumer_issuer())]);
    let f = assert_has(&mixed, FindingCode::MixedTrustDomains);
    assert_eq!(f.severity, Severity::High);
    assert!(f.message.contains("consumer-tenant keys"), "{}", f.message);
    // A consumer key beside keys that name no issuer is mixed too.
    let mut bare = valid_ms(TEMPLATE);
    bare.as_object_mut().unwrap().remove("issuer");
    assert_has(
        &key_set(vec![bare, valid_ms(&consumer_issuer())]),
        FindingCode::MixedTrustDomains,
    );
    // Two enterprise issuers are two trust domains as well.
    assert_has(
        &key_set(vec![
            valid_ms("https://a.example"),
            valid_ms("https://b.example"),
        ]),
        FindingCode::MixedTrustDomains,
    );
    assert_lacks(
        &key_set(vec![valid_ms(TEMPLATE), valid_ms(TEMPLATE)]),
        FindingCode::MixedTrustDomains,
    );
    assert_lacks(
        &key_set(vec![plain_key(&rsa(), "a"), plain_key(&rsa(), "b")]),
        FindingCode::MixedTrustDomains,
    );
}

#[test]
fn key_without_issuer() {
    let mut bare = valid_ms(TEMPLATE);
    bare.as_object_mut().unwrap().remove("issuer");
    let kid = bare["kid"].as_str().unwrap().to_owned();
    let f = assert_has(
        &key_set(vec![valid_ms(TEMPLATE), bare]),
        FindingCode::KeyWithoutIssuer,
    );
    assert_eq!(f.kid.as_deref(), Some(kid.as_str()));
    // A set for one issuer whose keys carry no issuer is the normal case.
    assert_lacks(
        &key_set(vec![plain_key(&rsa(), "a"), plain_key(&rsa(), "b")]),
        FindingCode::KeyWithoutIssuer,
    );
    // A templated discovery issuer means the set serves many issuers.
    let url =
        Url::parse("https://login.example/common/v2.0/.well-known/openid-configuration").unwrap();
    let doc = DiscoveryDoc {
        url: url.clone(),
        issuer: Some("https://login.example/{tenantid}/v2.0".into()),
        expected_issuer: Some("https://login.example/common/v2.0".into()),
        jwks_uri: url,
    };
    let f = run(
        &key_set(vec![plain_key(&rsa(), "a")]),
        Some(&doc),
        &AuditConfig::new(NOW),
    );
    assert!(has(&f, FindingCode::KeyWithoutIssuer), "{f:#?}");
}

#[test]
fn cert_expired() {
    let old = ms_key(&rsa(), TEMPLATE, (2016, 4, 5), (2021, 4, 4));
    let f = assert_has(&key_set(vec![old]), FindingCode::CertExpired);
    assert!(f.message.contains("2021-04-04"), "{}", f.message);
    assert_lacks(&key_set(vec![valid_ms(TEMPLATE)]), FindingCode::CertExpired);
}

#[test]
fn cert_not_yet_valid() {
    let future = ms_key(&rsa(), TEMPLATE, (2025, 1, 1), (2026, 1, 1));
    assert_has(&key_set(vec![future]), FindingCode::CertNotYetValid);
    assert_lacks(
        &key_set(vec![valid_ms(TEMPLATE)]),
        FindingCode::CertNotYetValid,
    );
}

#[test]
fn cert_long_lived() {
    let long = ms_key(&rsa(), TEMPLATE, (2023, 1, 1), (2028, 1, 1));
    let f = assert_has(&key_set(vec![long]), FindingCode::CertLongLived);
    assert_eq!(f.severity, Severity::Low);
    assert_lacks(
        &key_set(vec![valid_ms(TEMPLATE)]),
        FindingCode::CertLongLived,
    );
    // The threshold is configurable.
    let long = key_set(vec![ms_key(&rsa(), TEMPLATE, (2023, 1, 1), (2028, 1, 1))]);
    let mut lenient = AuditConfig::new(NOW);
    lenient.max_cert_validity = 6 * 365 * 86400;
    assert!(!has(
        &run(&long, None, &lenient),
        FindingCode::CertLongLived
    ));
}

#[test]
fn key_stale() {
    let old = ms_key(&rsa(), TEMPLATE, (2021, 1, 1), (2024, 1, 1));
    assert_has(&key_set(vec![old]), FindingCode::KeyStale);
    assert_lacks(&key_set(vec![valid_ms(TEMPLATE)]), FindingCode::KeyStale);
    let mut lenient = AuditConfig::new(NOW);
    lenient.rotation_max_age = 3 * 365 * 86400;
    let old = key_set(vec![ms_key(&rsa(), TEMPLATE, (2021, 1, 1), (2024, 1, 1))]);
    assert!(!has(&run(&old, None, &lenient), FindingCode::KeyStale));
}

#[test]
fn kid_thumbprint_mismatch() {
    // x5t that is not the certificate's.
    let mut wrong_x5t = valid_ms(TEMPLATE);
    wrong_x5t["x5t"] = json!(encode_b64url(&[7u8; 20]));
    assert_has(
        &key_set(vec![wrong_x5t]),
        FindingCode::KidThumbprintMismatch,
    );
    // A thumbprint-shaped kid that is not the certificate's.
    let mut wrong_kid = valid_ms(TEMPLATE);
    wrong_kid["kid"] = json!(encode_b64url(&[9u8; 20]));
    assert_has(
        &key_set(vec![wrong_kid]),
        FindingCode::KidThumbprintMismatch,
    );
    // x5t#S256 that is not the certificate's.
    let mut wrong_s256 = valid_ms(TEMPLATE);
    wrong_s256["x5t#S256"] = json!(encode_b64url(&[1u8; 32]));
    assert_has(
        &key_set(vec![wrong_s256]),
        FindingCode::KidThumbprintMismatch,
    );
    // The certificate of another key inside this key's JWK.
    let (key, other) = (rsa(), rsa());
    let mut swapped = ms_key(&key, TEMPLATE, VALID.0, VALID.1);
    let other_jwk = ms_key(&other, TEMPLATE, VALID.0, VALID.1);
    swapped["x5c"] = other_jwk["x5c"].clone();
    swapped["x5t"] = other_jwk["x5t"].clone();
    swapped["kid"] = other_jwk["kid"].clone();
    let f = assert_has(&key_set(vec![swapped]), FindingCode::KidThumbprintMismatch);
    assert!(f.message.contains("different public key"), "{}", f.message);
    // Consistent keys, and free-form kids, are fine.
    assert_lacks(
        &key_set(vec![valid_ms(TEMPLATE)]),
        FindingCode::KidThumbprintMismatch,
    );
    let mut named = valid_ms(TEMPLATE);
    named["kid"] = json!("signing-2023");
    assert_lacks(&key_set(vec![named]), FindingCode::KidThumbprintMismatch);
    // EC keys are compared too.
    let ec = SigningKey::generate(Algorithm::ES256).unwrap();
    assert_lacks(
        &key_set(vec![ms_key(&ec, TEMPLATE, VALID.0, VALID.1)]),
        FindingCode::KidThumbprintMismatch,
    );
}

#[test]
fn duplicate_kid() {
    let f = assert_has(
        &key_set(vec![plain_key(&rsa(), "a"), plain_key(&rsa(), "a")]),
        FindingCode::DuplicateKid,
    );
    assert_eq!(f.kid.as_deref(), Some("a"));
    assert_lacks(
        &key_set(vec![plain_key(&rsa(), "a"), plain_key(&rsa(), "b")]),
        FindingCode::DuplicateKid,
    );
}

#[test]
fn weak_key() {
    // A 1024-bit modulus (odd, top bit set).
    let mut n = vec![0xc5u8; 128];
    n[127] = 0x01;
    let small = json!({"kty": "RSA", "kid": "small", "alg": "RS256", "use": "sig",
                       "n": encode_b64url(&n), "e": "AQAB"});
    let f = assert_has(&key_set(vec![small]), FindingCode::WeakKey);
    assert!(f.message.contains("1024 bits"), "{}", f.message);
    // Exponent 1.
    let mut e1 = plain_key(&rsa(), "e1");
    e1["e"] = json!("AQ");
    assert_has(&key_set(vec![e1]), FindingCode::WeakKey);
    // An unknown curve.
    let curve = json!({"kty": "EC", "kid": "k1", "alg": "ES256K", "crv": "secp256k1",
                       "x": encode_b64url(&[1; 32]), "y": encode_b64url(&[2; 32])});
    assert_has(&key_set(vec![curve]), FindingCode::WeakKey);
    // A P-256 point that is not on the curve.
    let mut off = plain_key(&SigningKey::generate(Algorithm::ES256).unwrap(), "off");
    off["y"] = json!(encode_b64url(&[3; 32]));
    let f = assert_has(&key_set(vec![off]), FindingCode::WeakKey);
    assert!(f.message.contains("refused"), "{}", f.message);
    for alg in [Algorithm::RS256, Algorithm::ES384, Algorithm::EdDSA] {
        let k = SigningKey::generate(alg).unwrap();
        assert_lacks(&key_set(vec![plain_key(&k, "ok")]), FindingCode::WeakKey);
    }
}

#[test]
fn private_key_published() {
    let mut private = plain_key(&rsa(), "p");
    private["d"] = json!("AQAB");
    private["p"] = json!("AQAB");
    let f = assert_has(&key_set(vec![private]), FindingCode::PrivateKeyPublished);
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.message.contains("d, p"), "{}", f.message);
    assert_lacks(
        &key_set(vec![plain_key(&rsa(), "p")]),
        FindingCode::PrivateKeyPublished,
    );
}

#[test]
fn symmetric_key_published() {
    let hs = SigningKey::generate(Algorithm::HS256).unwrap();
    let f = assert_has(
        &key_set(vec![plain_key(&hs, "h")]),
        FindingCode::SymmetricKeyPublished,
    );
    assert_eq!(f.severity, Severity::Critical);
    assert_lacks(
        &key_set(vec![plain_key(&rsa(), "r")]),
        FindingCode::SymmetricKeyPublished,
    );
}

#[test]
fn alg_missing() {
    let f = assert_has(&key_set(vec![valid_ms(TEMPLATE)]), FindingCode::AlgMissing);
    assert_eq!(f.severity, Severity::Low);
    assert_lacks(
        &key_set(vec![plain_key(&rsa(), "a")]),
        FindingCode::AlgMissing,
    );
}

#[test]
fn use_not_sig() {
    let mut enc = plain_key(&rsa(), "enc");
    enc["use"] = json!("enc");
    assert_has(&key_set(vec![enc]), FindingCode::UseNotSig);
    let mut ops = plain_key(&rsa(), "ops");
    ops["key_ops"] = json!(["encrypt", "wrapKey"]);
    assert_has(&key_set(vec![ops]), FindingCode::UseNotSig);
    let mut oaep = plain_key(&rsa(), "oaep");
    oaep["alg"] = json!("RSA-OAEP");
    assert_has(&key_set(vec![oaep]), FindingCode::UseNotSig);
    let mut verify = plain_key(&rsa(), "v");
    verify["key_ops"] = json!(["verify"]);
    assert_lacks(&key_set(vec![verify]), FindingCode::UseNotSig);
}

#[test]
fn key_denied() {
    let mut config = AuditConfig::new(NOW);
    config.deny_kids = vec![STORM_KID.to_owned()];
    let storm = key_set(vec![plain_key(&rsa(), STORM_KID)]);
    let f = run(&storm, None, &config);
    let denied = f.iter().find(|f| f.code == FindingCode::KeyDenied).unwrap();
    assert_eq!(denied.severity, Severity::Critical);
    // By certificate thumbprint, whatever the kid says.
    let key = rsa();
    let der = cert_der(&key, VALID.0, VALID.1);
    let sha1: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let mut jwk = plain_key(&key, "innocent-name");
    jwk["x5c"] = json!([b64(&der)]);
    config.deny_thumbprints = vec![sha1];
    assert!(has(
        &run(&key_set(vec![jwk]), None, &config),
        FindingCode::KeyDenied
    ));
    // By RFC 7638 thumbprint.
    let other = plain_key(&rsa(), "x");
    let tp = tokenward_jose::Jwk::from_value(&other)
        .unwrap()
        .thumbprint();
    config.deny_thumbprints = vec![tp];
    assert!(has(
        &run(&key_set(vec![other]), None, &config),
        FindingCode::KeyDenied
    ));
    assert!(!has(
        &run(&key_set(vec![plain_key(&rsa(), "fine")]), None, &config),
        FindingCode::KeyDenied
    ));
}

#[test]
fn issuer_mismatch() {
    let url = Url::parse("https://idp.example/tenant/.well-known/openid-configuration").unwrap();
    let doc = |issuer: &str| DiscoveryDoc {
        url: url.clone(),
        issuer: Some(issuer.to_owned()),
        expected_issuer: Some("https://idp.example/tenant".into()),
        jwks_uri: Url::parse("https://idp.example/tenant/keys").unwrap(),
    };
    let keys = key_set(vec![plain_key(&rsa(), "a")]);
    let config = AuditConfig::new(NOW);
    let f = run(&keys, Some(&doc("https://other.example/tenant")), &config);
    let m = f
        .iter()
        .find(|f| f.code == FindingCode::IssuerMismatch)
        .unwrap();
    assert_eq!(m.severity, Severity::High);
    // Microsoft's common endpoint: a template, reported low.
    let f = run(&keys, Some(&doc("https://idp.example/{tenantid}")), &config);
    let m = f
        .iter()
        .find(|f| f.code == FindingCode::IssuerMismatch)
        .unwrap();
    assert_eq!(m.severity, Severity::Low);
    let f = run(&keys, Some(&doc("https://idp.example/tenant")), &config);
    assert!(!has(&f, FindingCode::IssuerMismatch));
}

#[test]
fn key_unreadable() {
    let bad = json!({"keys": [{"kty": "RSA", "kid": "broken"}, plain_key(&rsa(), "ok")]});
    assert_has(&bad, FindingCode::KeyUnreadable);
    assert_lacks(
        &key_set(vec![plain_key(&rsa(), "ok")]),
        FindingCode::KeyUnreadable,
    );
    assert!(audit_key_set(b"{\"nokeys\":1}", None, &AuditConfig::new(NOW)).is_err());
}

fn snap(v: &Value) -> Snapshot {
    let jwks = Jwks::parse(&serde_json::to_vec(v).unwrap()).unwrap();
    Snapshot::from_jwks("test", &jwks, NOW)
}

#[test]
fn baseline_added_removed_changed() {
    let (a, b, c, swapped) = (rsa(), rsa(), rsa(), rsa());
    let base = snap(&key_set(vec![
        plain_key(&a, "a"),
        plain_key(&b, "b"),
        plain_key(&c, "c"),
    ]));
    // Round trip through the file format.
    let base = Snapshot::parse(&base.to_json()).unwrap();
    let mut c_scoped = plain_key(&c, "c");
    c_scoped["issuer"] = json!(consumer_issuer());
    let now = snap(&key_set(vec![
        plain_key(&a, "a"),
        plain_key(&swapped, "b"),
        c_scoped,
        plain_key(&rsa(), "quiet"),
    ]));
    let f = snapshot::compare(&base, &now);
    let find = |code, kid: &str| {
        f.iter()
            .find(|x| x.code == code && x.kid.as_deref() == Some(kid))
            .unwrap_or_else(|| panic!("{code} {kid} in {f:#?}"))
    };
    find(FindingCode::KeyAdded, "quiet");
    let b_changed = find(FindingCode::KeyChanged, "b");
    assert!(b_changed.message.contains("key material"));
    assert_eq!(b_changed.severity, Severity::High);
    assert!(find(FindingCode::KeyChanged, "c")
        .message
        .contains("issuer"));
    assert!(!f.iter().any(|x| x.kid.as_deref() == Some("a")));
    // Removing a key.
    let fewer = snap(&key_set(vec![plain_key(&a, "a")]));
    let f = snapshot::compare(&base, &fewer);
    assert_eq!(
        f.iter()
            .filter(|x| x.code == FindingCode::KeyRemoved)
            .count(),
        2
    );
    // Same set: nothing.
    assert!(snapshot::compare(&base, &base).is_empty());
    assert!(Snapshot::parse("{\"format\":\"other\"}").is_err());
}

#[test]
fn every_code_is_stable_and_documented() {
    let codes: Vec<&str> = FindingCode::ALL.iter().map(|c| c.code()).collect();
    for expected in [
        "mixed-trust-domains",
        "key-without-issuer",
        "cert-expired",
        "cert-not-yet-valid",
        "cert-long-lived",
        "key-stale",
        "kid-thumbprint-mismatch",
        "duplicate-kid",
        "weak-key",
        "private-key-published",
        "symmetric-key-published",
        "alg-missing",
        "use-not-sig",
        "key-denied",
        "issuer-mismatch",
        "key-unreadable",
        "key-added",
        "key-removed",
        "key-changed",
    ] {
        assert!(codes.contains(&expected), "{expected}");
    }
    assert!(FindingCode::ALL.iter().all(|c| !c.meaning().is_empty()));
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/keys.md"))
        .unwrap();
    for c in &codes {
        assert!(docs.contains(&format!("`{c}`")), "docs/keys.md lacks {c}");
    }
    assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
    assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
}
