//! One test per attack class: the attack is rejected with its reason code,
//! and its legitimate twin is accepted.

mod common;

use common::*;
use serde_json::json;
use tokenward_jose::{encode_b64url, Algorithm, SigningKey};

#[test]
fn legitimate_enterprise_token_is_accepted() {
    let env = Env::new();
    let v = env.verify(&sign(&env.enterprise, "ent-1", &claims()));
    assert_accepted(&v);
    assert_eq!(v.kid.as_deref(), Some("ent-1"));
    assert_eq!(v.claims.as_ref().unwrap().tid(), Some(TENANT_A));
}

/// The whole payload stays readable on the verdict, whether it was a
/// claim set (the claims keep it) or not (the verdict keeps it).
#[test]
fn whole_payload_readable_from_the_verdict() {
    let env = Env::new();
    let v = env.verify(&sign(&env.enterprise, "ent-1", &claims()));
    assert_eq!(v.claims_json(), Some(claims()));
    let header = r#"{"alg":"RS256","kid":"ent-1"}"#;
    let v = env.verify(&raw_token(header, "[1,2]", b"x"));
    assert_rejected_with(&v, "malformed");
    assert_eq!(v.claims_json(), Some(json!([1, 2])));
    let v = env.verify(&raw_token(header, "{\"a\":1,\"a\":2}", b"x"));
    assert_rejected_with(&v, "malformed");
    assert_eq!(v.claims_json(), None);
}

#[test]
fn alg_none_in_every_casing() {
    let env = Env::new();
    let payload = claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"ent-1"}}"#);
        for sig in [&b""[..], b"x"] {
            let v = env.verify(&raw_token(&header, &payload, sig));
            assert_rejected_with(&v, "alg-not-allowed");
        }
        // Two-segment form as well.
        let two = raw_token(&header, &payload, b"");
        assert_rejected_with(&env.verify(two.trim_end_matches('.')), "malformed");
    }
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

#[test]
fn hs_rs_key_confusion() {
    let env = Env::new();
    let public = env.enterprise.public_jwk("ent-1");
    // Every form of the public key an attacker might use as an HMAC secret.
    let secrets: Vec<Vec<u8>> = vec![
        public.to_string().into_bytes(),
        tokenward_jose::decode_b64url(public["n"].as_str().unwrap().as_bytes()).unwrap(),
        public["n"].as_str().unwrap().as_bytes().to_vec(),
    ];
    for secret in secrets {
        let forger = SigningKey::from_pkcs8(Algorithm::HS256, &secret).unwrap();
        let token = forger
            .sign_token(&json!({"alg": "HS256", "kid": "ent-1"}), &claims())
            .unwrap();
        let v = env.verify(&token);
        assert_rejected_with(&v, "alg-not-allowed");
    }
    // The legitimate HS256 issuer, with its configured secret, passes.
    let hs_claims =
        json!({"iss": "https://hs.example.com", "aud": "api://hs", "exp": NOW + 60, "iat": NOW});
    assert_accepted(&env.verify(&sign(&env.hs, "hs-1", &hs_claims)));
    // And an RS256 token presented with kid of the HMAC secret is refused.
    let cross = sign(&env.enterprise, "hs-1", &hs_claims);
    assert_rejected_with(&env.verify(&cross), "alg-not-allowed");
}

#[test]
fn keys_in_the_header_are_never_trusted() {
    let env = Env::new();
    let attacker_jwk = env.attacker.public_jwk("attacker");
    for (extra, kid) in [
        (json!({"jwk": attacker_jwk}), "attacker"),
        (json!({"jwk": attacker_jwk}), "ent-1"),
        (
            json!({"jku": "https://attacker.example/jwks.json"}),
            "attacker",
        ),
        (json!({"x5u": "https://attacker.example/cert.pem"}), "ent-1"),
        (
            json!({"x5c": [cert_b64(&env.attacker, (2020, 1, 1), (2030, 1, 1))]}),
            "ent-1",
        ),
    ] {
        let mut header = json!({"alg": "RS256", "kid": kid});
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let v = env.verify(&env.attacker.sign_token(&header, &claims()).unwrap());
        assert!(!v.accepted(), "{header}");
        let code = if kid == "attacker" {
            "kid-unknown"
        } else {
            "signature-invalid"
        };
        assert_rejected_with(&v, code);
    }
    // The legitimate key's token is accepted even with a (useless) jku.
    let header =
        json!({"alg": "RS256", "kid": "ent-1", "jku": "https://attacker.example/jwks.json"});
    assert_accepted(&env.verify(&env.enterprise.sign_token(&header, &claims()).unwrap()));
}

#[test]
fn kid_path_traversal_and_injection() {
    let env = Env::new();
    let null_key = SigningKey::from_pkcs8(Algorithm::HS256, &[0u8]).unwrap();
    for kid in [
        "../../../../../../dev/null",
        "/dev/null",
        "/proc/sys/kernel/randomize_va_space",
        "x' UNION SELECT '1';--",
        "|sleep 10",
        "| curl http://127.0.0.1/RCE_in_kid",
        "",
    ] {
        let token = null_key
            .sign_token(&json!({"alg": "HS256", "kid": kid}), &claims())
            .unwrap();
        let v = env.verify(&token);
        assert_rejected_with(&v, "kid-unknown");
        assert_rejected_with(&v, "alg-not-allowed");
        // Same strings with RS256 and the attacker's key.
        let v = env.verify(&sign(&env.attacker, kid, &claims()));
        assert_rejected_with(&v, "kid-unknown");
    }
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

#[test]
fn unknown_crit_is_refused() {
    let env = Env::new();
    for crit in [
        json!(["exp"]),
        json!(["x-custom"]),
        json!([]),
        json!(["b64"]),
    ] {
        let header = json!({"alg": "RS256", "kid": "ent-1", "crit": crit, "x-custom": 1});
        let v = env.verify(&env.enterprise.sign_token(&header, &claims()).unwrap());
        assert_rejected_with(&v, "crit-unsupported");
    }
    let header = json!({"alg": "RS256", "kid": "ent-1", "x-custom": 1});
    assert_accepted(&env.verify(&env.enterprise.sign_token(&header, &claims()).unwrap()));
}

fn as_claims() -> serde_json::Value {
    json!({"iss": "https://as.example.com", "aud": "api://as", "sub": "s", "client_id": "c",
           "jti": "j", "iat": NOW, "exp": NOW + 300})
}

fn as_token(env: &Env, typ: &str) -> String {
    env.es
        .sign_token(
            &json!({"alg": "ES256", "kid": "as-1", "typ": typ}),
            &as_claims(),
        )
        .unwrap()
}

#[test]
fn ecdsa_psychic_signatures() {
    let env = Env::new();
    let good = as_token(&env, "at+jwt");
    assert_accepted(&env.verify(&good));
    let input = good.rsplit_once('.').unwrap().0;
    let n = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let sigs: Vec<Vec<u8>> = vec![
        vec![0; 64],
        [n.clone(), n.clone()].concat(),
        [vec![0; 32], n.clone()].concat(),
        vec![0; 63],
        vec![0; 65],
    ];
    for sig in sigs {
        let v = env.verify(&format!("{input}.{}", encode_b64url(&sig)));
        assert_rejected_with(&v, "signature-invalid");
    }
}

#[test]
fn stripped_and_modified() {
    let env = Env::new();
    let good = sign(&env.enterprise, "ent-1", &claims());
    assert_accepted(&env.verify(&good));
    let (input, _) = good.rsplit_once('.').unwrap();
    assert_rejected_with(&env.verify(&format!("{input}.")), "signature-invalid");
    // Payload changed, signature kept: a different tenant's admin.
    let mut forged = claims();
    forged["sub"] = json!("admin");
    let head = input.split('.').next().unwrap();
    let sig = good.rsplit('.').next().unwrap();
    let tampered = format!(
        "{head}.{}.{sig}",
        encode_b64url(forged.to_string().as_bytes())
    );
    assert_rejected_with(&env.verify(&tampered), "signature-invalid");
}

#[test]
fn numeric_dates_as_strings() {
    let env = Env::new();
    for claim in ["exp", "nbf", "iat"] {
        let mut c = claims();
        c[claim] = json!(c[claim].to_string());
        let v = env.verify(&sign(&env.enterprise, "ent-1", &c));
        assert_rejected_with(&v, "claim-type");
    }
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

#[test]
fn exp_required_and_iat_not_in_future() {
    let env = Env::new();
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "claim-missing",
    );
    let mut c = claims();
    c["iat"] = json!(NOW + 3600);
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "iat-in-future",
    );
    let mut c = claims();
    c["exp"] = json!(NOW - 61);
    assert_rejected_with(&env.verify(&sign(&env.enterprise, "ent-1", &c)), "expired");
    let mut c = claims();
    c["nbf"] = json!(NOW + 600);
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "not-yet-valid",
    );
    // Within the 60 s leeway: accepted.
    let mut c = claims();
    c["iat"] = json!(NOW + 30);
    c["exp"] = json!(NOW + 3600);
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &c)));
    // Lifetime over the issuer's 86400 s maximum.
    let mut c = claims();
    c["exp"] = json!(NOW + 2 * 86400);
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "lifetime-too-long",
    );
}

#[test]
fn oversized_token() {
    let env = Env::new();
    let mut c = claims();
    c["pad"] = json!("x".repeat(70 * 1024));
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "too-large",
    );
    let mut c = claims();
    c["pad"] = json!("x".repeat(4 * 1024));
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &c)));
}

#[test]
fn duplicate_names() {
    let env = Env::new();
    let legit = sign(&env.enterprise, "ent-1", &claims());
    assert_accepted(&env.verify(&legit));
    // Duplicate claim, validly signed: the parser differential is refused.
    let body = claims().to_string();
    let dup = format!("{},\"aud\":\"api://other\"}}", &body[..body.len() - 1]);
    let header = r#"{"alg":"RS256","kid":"ent-1"}"#;
    let input = format!(
        "{}.{}",
        encode_b64url(header.as_bytes()),
        encode_b64url(dup.as_bytes())
    );
    let sig = env.enterprise.sign_raw(input.as_bytes()).unwrap();
    let v = env.verify(&format!("{input}.{}", encode_b64url(&sig)));
    assert_rejected_with(&v, "malformed");
    // The same, with the second `iss` spelt with an escape: a parser that
    // compares names before unescaping would see two different claims.
    let escaped = format!(
        "{},\"\\u0069ss\":\"https://evil.example/\"}}",
        &body[..body.len() - 1]
    );
    let input = format!(
        "{}.{}",
        encode_b64url(header.as_bytes()),
        encode_b64url(escaped.as_bytes())
    );
    let sig = env.enterprise.sign_raw(input.as_bytes()).unwrap();
    let v = env.verify(&format!("{input}.{}", encode_b64url(&sig)));
    assert_rejected_with(&v, "malformed");
    // Duplicate header member.
    let header = r#"{"alg":"none","alg":"RS256","kid":"ent-1"}"#;
    let input = format!(
        "{}.{}",
        encode_b64url(header.as_bytes()),
        encode_b64url(body.as_bytes())
    );
    let sig = env.enterprise.sign_raw(input.as_bytes()).unwrap();
    assert_rejected_with(
        &env.verify(&format!("{input}.{}", encode_b64url(&sig))),
        "malformed",
    );
}

#[test]
fn explicit_typing() {
    let env = Env::new();
    for ok in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        assert_accepted(&env.verify(&as_token(&env, ok)));
    }
    for bad in ["JWT", "id_token+jwt", ""] {
        assert_rejected_with(&env.verify(&as_token(&env, bad)), "typ-mismatch");
    }
    let no_typ = env
        .es
        .sign_token(&json!({"alg": "ES256", "kid": "as-1"}), &as_claims())
        .unwrap();
    assert_rejected_with(&env.verify(&no_typ), "typ-mismatch");
    // RFC 9068 claims required by this issuer.
    let mut c = as_claims();
    c.as_object_mut().unwrap().remove("client_id");
    let t = env
        .es
        .sign_token(&json!({"alg": "ES256", "kid": "as-1", "typ": "at+jwt"}), &c)
        .unwrap();
    assert_rejected_with(&env.verify(&t), "claim-missing");
}

#[test]
fn audience_must_match() {
    let env = Env::new();
    for aud in [
        json!("api://other"),
        json!([]),
        json!(["api://a", "api://b"]),
    ] {
        let mut c = claims();
        c["aud"] = aud;
        assert_rejected_with(
            &env.verify(&sign(&env.enterprise, "ent-1", &c)),
            "audience-mismatch",
        );
    }
    let mut c = claims();
    c["aud"] = json!(["api://other", AUD]);
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &c)));
    c.as_object_mut().unwrap().remove("aud");
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "claim-missing",
    );
}

#[test]
fn kid_missing_never_tries_every_key() {
    let env = Env::new();
    let token = env
        .enterprise
        .sign_token(&json!({"alg": "RS256"}), &claims())
        .unwrap();
    assert_rejected_with(&env.verify(&token), "kid-missing");
}

#[test]
fn key_of_same_issuer_cannot_stand_in_for_another_kid() {
    // kid of K1, signature by K2 of the same issuer.
    let env = Env::new();
    let token = sign(&env.revoked, "ent-1", &claims());
    assert_rejected_with(&env.verify(&token), "signature-invalid");
}

#[test]
fn verdict_lists_every_failure() {
    let env = Env::new();
    let mut c = claims();
    c["aud"] = json!("api://other");
    c["exp"] = json!(NOW - 3600);
    c["tid"] = json!(TENANT_B);
    let v = env.verify(&sign(&env.consumer, "msa-1", &c));
    let got = codes(&v);
    for want in [
        "key-out-of-scope",
        "tid-mismatch",
        "audience-mismatch",
        "expired",
    ] {
        assert!(got.contains(&want), "{want} missing from {got:?}");
    }
}
