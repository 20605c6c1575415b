//! The Storm-0558 cases: each refused with its own reason, each beside the
//! legitimate token that passes.

mod common;

use common::*;
use serde_json::json;
use tokenward_jose::{Algorithm, SigningKey};
use tokenward_trust::Policy;

#[test]
fn consumer_key_from_mixed_jwks_signing_for_enterprise_tenant() {
    let env = Env::new();
    // The forgery: consumer (MSA) key, enterprise tenant's iss and tid.
    let v = env.verify(&sign(&env.consumer, "msa-1", &claims()));
    assert_rejected_with(&v, "key-out-of-scope");
    assert!(
        !codes(&v).contains(&"signature-invalid"),
        "the signature itself is genuine"
    );
    // Same claims, enterprise key: accepted.
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

#[test]
fn consumer_key_with_consumer_claims_is_still_out_of_scope_for_this_api() {
    let env = Env::new();
    let mut c = claims();
    c["iss"] = json!(consumer_issuer());
    c["tid"] = json!(CONSUMER);
    let v = env.verify(&sign(&env.consumer, "msa-1", &c));
    assert_rejected_with(&v, "key-out-of-scope");
    assert_rejected_with(&v, "tenant-not-allowed");
}

#[test]
fn key_past_its_certificate_not_after() {
    let env = Env::new();
    let v = env.verify(&sign(&env.expired_cert, "old-1", &claims()));
    assert_rejected_with(&v, "key-expired");
    assert_eq!(codes(&v), ["key-expired"], "only the key's age is wrong");
    // The same key, while its certificate was valid (2020), with a token of
    // that time: accepted.
    let then = 1_590_000_000; // 2020-05-20
    let mut c = claims();
    c["iat"] = json!(then - 60);
    c["nbf"] = json!(then - 60);
    c["exp"] = json!(then + 3600);
    assert_accepted(
        &env.policy()
            .verify(&sign(&env.expired_cert, "old-1", &c), then),
    );
}

#[test]
fn revoked_key_still_published() {
    let env = Env::new();
    assert_rejected_with(
        &env.verify(&sign(&env.revoked, "revoked-1", &claims())),
        "key-revoked",
    );
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

#[test]
fn tenant_not_on_the_list() {
    let env = Env::new();
    let mut c = claims();
    c["iss"] = json!(issuer_for(TENANT_B));
    c["tid"] = json!(TENANT_B);
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "tenant-not-allowed",
    );
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

/// GUIDs are compared without case: an allowed tenant written in upper
/// case passes, and another tenant in upper case is still refused, named
/// in lower case as the policy lists tenants.
#[test]
fn tenant_list_ignores_the_case_of_tid() {
    let env = Env::new();
    let mut c = claims();
    let upper = TENANT_A.to_ascii_uppercase();
    assert_ne!(upper, TENANT_A);
    c["iss"] = json!(issuer_for(&upper));
    c["tid"] = json!(upper);
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &c)));

    let upper_b = TENANT_B.to_ascii_uppercase();
    c["iss"] = json!(issuer_for(&upper_b));
    c["tid"] = json!(upper_b);
    let v = env.verify(&sign(&env.enterprise, "ent-1", &c));
    assert_eq!(codes(&v), ["tenant-not-allowed"]);
    assert!(
        v.reasons[0].message.contains(TENANT_B),
        "{}",
        v.reasons[0].message
    );
}

#[test]
fn iss_and_tid_disagree() {
    let env = Env::new();
    let mut c = claims();
    c["tid"] = json!(TENANT_B);
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "tid-mismatch",
    );
    let mut c = claims();
    c["tid"] = json!("not-a-guid");
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &c)),
        "tid-mismatch",
    );
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

#[test]
fn the_real_storm_0558_kid_is_denied_out_of_the_box() {
    let env = Env::new();
    let v = env.verify(&sign(&env.attacker, STORM_KID, &claims()));
    assert_rejected_with(&v, "key-denied");
    // Even when a key set publishes that kid and the policy trusts the set.
    let env2 = Env::new();
    let mut storm = env2.attacker.public_jwk(STORM_KID);
    storm["issuer"] = json!(TEMPLATE);
    let mut set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env2.dir.path().join("common.json")).unwrap())
            .unwrap();
    set["keys"].as_array_mut().unwrap().push(storm);
    env2.write("common.json", &set);
    let v = env2.verify(&sign(&env2.attacker, STORM_KID, &claims()));
    assert_rejected_with(&v, "key-denied");
    assert!(!codes(&v).contains(&"signature-invalid"));
    // The header thumbprint of the Storm-0558 certificate alone is enough.
    let x5t = tokenward_jose::encode_b64url(&hex("d4b4cccda9228624656bff33d8110955779632aa"));
    let t = env
        .enterprise
        .sign_token(
            &json!({"alg": "RS256", "kid": "ent-1", "x5t": x5t}),
            &claims(),
        )
        .unwrap();
    assert_rejected_with(&env.verify(&t), "key-denied");
    assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
}

#[test]
fn policy_denylist_by_kid_and_thumbprint() {
    let env = Env::new();
    let thumbprint = tokenward_jose::Jwk::from_value(&env.enterprise.public_jwk("x"))
        .unwrap()
        .thumbprint();
    let policy = POLICY.replace(
        "leeway_seconds = 60",
        &format!(
            "leeway_seconds = 60\ndeny_kids = [\"revoked-1\"]\ndeny_thumbprints = [\"{thumbprint}\"]"
        ),
    );
    std::fs::write(&env.policy_path, policy).unwrap();
    assert_rejected_with(
        &env.verify(&sign(&env.enterprise, "ent-1", &claims())),
        "key-denied",
    );
    assert_rejected_with(
        &env.verify(&sign(&env.revoked, "revoked-1", &claims())),
        "key-denied",
    );
    // Keys not on the list are unaffected.
    let as_ok = env
        .es
        .sign_token(
            &json!({"alg": "ES256", "kid": "as-1", "typ": "at+jwt"}),
            &json!({"iss": "https://as.example.com", "aud": "api://as", "sub": "s",
                    "client_id": "c", "jti": "j", "iat": NOW, "exp": NOW + 300}),
        )
        .unwrap();
    assert_accepted(&env.verify(&as_ok));
}

#[test]
fn consumer_tenant_never_passes_an_enterprise_entry() {
    // An entry listing the consumer tenant beside an enterprise one, and a
    // wildcard entry: the consumer tenant passes neither.
    for tenants in [
        format!("[\"{TENANT_A}\", \"{CONSUMER}\"]"),
        "[\"*\"]".to_owned(),
    ] {
        let policy = POLICY.replace(
            &format!("tenants = [\"{TENANT_A}\"]"),
            &format!("tenants = {tenants}"),
        );
        let env = Env::with_policy(&policy);
        let mut c = claims();
        c["iss"] = json!(consumer_issuer());
        c["tid"] = json!(CONSUMER);
        let v = env.verify(&sign(&env.enterprise, "ent-1", &c));
        assert_rejected_with(&v, "tenant-not-allowed");
        assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
    }
}

#[test]
fn configuration_errors_name_the_problem() {
    let cases: &[(&str, &str, &str)] = &[
        ("audiences = [\"api://orders\"]\n", "", "audiences"),
        (
            "tenants = [\"3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91\"]\n",
            "",
            "needs \"tenants\"",
        ),
        (
            "tenants = [\"3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91\"]",
            "tenants = [\"acme\"]",
            "not a GUID",
        ),
        (
            "leeway_seconds = 60",
            "leeway_seconds = 301",
            "leeway_seconds",
        ),
        (
            "leeway_seconds = 60",
            "leeway_seconds = 60\nallow_any = true",
            "unknown field",
        ),
        (
            "algorithms = [\"RS256\"]\njwks",
            "algorithms = [\"RS256\", \"PS256\"]\njwks",
            "exactly one",
        ),
        (
            "algorithms = [\"ES256\"]",
            "algorithms = [\"ES256\", \"none\"]",
            "unknown algorithm",
        ),
    ];
    for (from, to, want) in cases {
        let env = Env::with_policy(&POLICY.replacen(from, to, 1));
        let err = Policy::load(&env.policy_path).unwrap_err();
        assert!(err.to_string().contains(want), "{from:?} -> {to:?}: {err}");
        assert!(err.to_string().contains("policy.toml") || err.to_string().contains(".json"));
    }
    // The unmodified policy loads.
    Policy::load(&Env::new().policy_path).unwrap();
}

#[test]
fn shared_key_set_without_per_key_issuer_is_a_configuration_error() {
    let env = Env::new();
    let k = SigningKey::generate(Algorithm::RS256).unwrap();
    env.write("shared.json", &json!({"keys": [k.public_jwk("shared-1")]}));
    let two = format!(
        "{POLICY}\n[[issuer]]\nissuer = \"https://a.example\"\naudiences = [\"x\"]\nalgorithms = [\"RS256\"]\njwks = \"shared.json\"\n\
         [[issuer]]\nissuer = \"https://b.example\"\naudiences = [\"x\"]\nalgorithms = [\"RS256\"]\njwks = \"shared.json\"\n"
    );
    std::fs::write(&env.policy_path, &two).unwrap();
    let err = Policy::load(&env.policy_path).unwrap_err();
    assert!(
        err.to_string().contains("scope cannot be determined"),
        "{err}"
    );
    assert!(err.to_string().contains("shared.json"), "{err}");
    // Listed by one entry only: fine, and the key serves exactly that issuer.
    let one = format!(
        "{POLICY}\n[[issuer]]\nissuer = \"https://a.example\"\naudiences = [\"x\"]\nalgorithms = [\"RS256\"]\njwks = \"shared.json\"\n"
    );
    std::fs::write(&env.policy_path, &one).unwrap();
    let p = Policy::load(&env.policy_path).unwrap();
    let rec = &p.keys_with_kid("shared-1")[0];
    assert_eq!(p.issuers()[rec.scope.unwrap()].issuer, "https://a.example");
}

#[test]
fn symmetric_keys_beside_public_keys_are_refused() {
    let env = Env::new();
    let hs = SigningKey::generate(Algorithm::HS256).unwrap();
    let mut set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir.path().join("as.json")).unwrap()).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .push(hs.public_jwk("oops"));
    env.write("as.json", &set);
    let err = Policy::load(&env.policy_path).unwrap_err();
    assert!(err.to_string().contains("as.json"), "{err}");
}

#[test]
fn weak_rsa_key_in_a_set_cannot_verify() {
    // 1024-bit key from Wycheproof's keysize_too_small group.
    let env = Env::new();
    let weak = json!({"kty": "RSA", "kid": "weak-1", "issuer": TEMPLATE, "e": "AQAB",
        "n": "rJBIp6T1YK-RtPyvYqFFlcucqewSAA_IReSFchE8qyiQrbARqRlXWkB2DR8j_pJQnIpYELbQWZC5Cd0PTGAU8rMbar2AW6zpmBbi7aQf17lUBdt8XI9M9rq7FPVQ1dDdUXm1SVH_9qqWhvMPR422SbfHBEzCAtzK0ANDRo6qz78"});
    let mut set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir.path().join("common.json")).unwrap())
            .unwrap();
    set["keys"].as_array_mut().unwrap().push(weak);
    env.write("common.json", &set);
    let p = env.policy();
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.contains("weak-1") && w.contains("2048")),
        "{:?}",
        p.warnings()
    );
    let v = p.verify(&sign(&env.attacker, "weak-1", &claims()), NOW);
    assert_rejected_with(&v, "key-unusable");
}

#[test]
fn route_rules_load_and_match() {
    let env = Env::with_policy(&format!(
        "{POLICY}\n[[route]]\npath = \"/healthz\"\nauth = \"none\"\n\
         [[route]]\npath = \"/owa/GetAccessTokenForResource*\"\ntoken_exchange = true\n\
         refuse_subject_issuers = [\"https://owa.example\"]\n"
    ));
    let p = env.policy();
    assert_eq!(
        p.route_for("/healthz").unwrap().auth,
        tokenward_trust::RouteAuth::None
    );
    assert!(p.route_for("/healthz/x").is_none());
    let ex = p.route_for("/owa/GetAccessTokenForResource?x=1").unwrap();
    assert!(ex.token_exchange);
    assert!(p.route_for("/api/orders").is_none());
    // An exchange route that refuses nothing is a configuration error.
    let bad = Env::with_policy(&format!(
        "{POLICY}\n[[route]]\npath = \"/x\"\ntoken_exchange = true\n"
    ));
    let err = Policy::load(&bad.policy_path).unwrap_err();
    assert!(err.to_string().contains("refuse_subject_issuers"), "{err}");
}
