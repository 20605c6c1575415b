//! Every forged-token class of the verifier's attack tests and the
//! Storm-0558 set, sent through a real gateway to a counting upstream: each
//! is refused with an RFC 6750 challenge, logged with its reason, and never
//! reaches the upstream.

mod common;

use common::*;
use serde_json::json;
use tokenward_jose::{encode_b64url, Algorithm, SigningKey};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// (class, token, a reason code the log must carry).
fn forgeries(env: &Env) -> Vec<(String, String, &'static str)> {
    let mut out: Vec<(String, String, &'static str)> = Vec::new();
    let payload = claims().to_string();

    // alg "none" in every casing, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"ent-1"}}"#);
        for sig in [&b""[..], b"x"] {
            out.push((
                format!("alg {alg} sig {sig:?}"),
                raw_token(&header, &payload, sig),
                "alg-not-allowed",
            ));
        }
        let two = raw_token(&header, &payload, b"");
        out.push((
            format!("alg {alg} two segments"),
            two.trim_end_matches('.').to_owned(),
            "malformed",
        ));
    }

    // HS256 signed with the RSA public key in its likely encodings.
    let public = env.enterprise.public_jwk("ent-1");
    for (i, secret) in [
        public.to_string().into_bytes(),
        tokenward_jose::decode_b64url(public["n"].as_str().unwrap().as_bytes()).unwrap(),
        public["n"].as_str().unwrap().as_bytes().to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        let forger = SigningKey::from_pkcs8(Algorithm::HS256, &secret).unwrap();
        let t = forger
            .sign_token(&json!({"alg": "HS256", "kid": "ent-1"}), &claims())
            .unwrap();
        out.push((format!("HS/RS confusion #{i}"), t, "alg-not-allowed"));
    }

    // Keys carried in the header.
    let attacker_jwk = env.attacker.public_jwk("attacker");
    for (name, extra, kid, code) in [
        (
            "embedded jwk, own kid",
            json!({"jwk": attacker_jwk}),
            "attacker",
            "kid-unknown",
        ),
        (
            "embedded jwk, trusted kid",
            json!({"jwk": attacker_jwk}),
            "ent-1",
            "signature-invalid",
        ),
        (
            "jku",
            json!({"jku": "https://attacker.example/jwks.json"}),
            "attacker",
            "kid-unknown",
        ),
        (
            "x5u",
            json!({"x5u": "https://attacker.example/cert.pem"}),
            "ent-1",
            "signature-invalid",
        ),
        (
            "x5c",
            json!({"x5c": [cert_b64(&env.attacker, (2020, 1, 1), (2030, 1, 1))]}),
            "ent-1",
            "signature-invalid",
        ),
    ] {
        let mut header = json!({"alg": "RS256", "kid": kid});
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        out.push((
            name.into(),
            env.attacker.sign_token(&header, &claims()).unwrap(),
            code,
        ));
    }

    // kid injection.
    let null_key = SigningKey::from_pkcs8(Algorithm::HS256, &[0u8]).unwrap();
    for kid in [
        "../../../../../../dev/null",
        "/dev/null",
        "x' UNION SELECT '1';--",
        "| curl http://127.0.0.1/RCE_in_kid",
    ] {
        out.push((
            format!("kid injection {kid}"),
            null_key
                .sign_token(&json!({"alg": "HS256", "kid": kid}), &claims())
                .unwrap(),
            "kid-unknown",
        ));
    }

    // crit.
    for crit in [json!(["exp"]), json!(["x-custom"]), json!(["b64"])] {
        let header = json!({"alg": "RS256", "kid": "ent-1", "crit": crit, "x-custom": 1});
        out.push((
            format!("crit {crit}"),
            env.enterprise.sign_token(&header, &claims()).unwrap(),
            "crit-unsupported",
        ));
    }

    // ECDSA "psychic signatures" (CVE-2022-21449): r = s = 0 and friends.
    let good_as = env.as_token();
    let input = good_as.rsplit_once('.').unwrap().0;
    let n = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    for (i, sig) in [
        vec![0; 64],
        [n.clone(), n.clone()].concat(),
        [vec![0; 32], n.clone()].concat(),
    ]
    .into_iter()
    .enumerate()
    {
        out.push((
            format!("ECDSA zero/order signature #{i}"),
            format!("{input}.{}", encode_b64url(&sig)),
            "signature-invalid",
        ));
    }

    // Signature stripped; payload changed under a genuine signature.
    let good = env.legit();
    let (signed, sig) = good.rsplit_once('.').unwrap();
    out.push((
        "stripped signature".into(),
        format!("{signed}."),
        "signature-invalid",
    ));
    let mut forged = claims();
    forged["sub"] = json!("admin");
    let head = signed.split('.').next().unwrap();
    out.push((
        "modified payload".into(),
        format!(
            "{head}.{}.{sig}",
            encode_b64url(forged.to_string().as_bytes())
        ),
        "signature-invalid",
    ));

    // Claims: string dates, missing exp, iat in the future, lifetime.
    for claim in ["exp", "nbf", "iat"] {
        let mut c = claims();
        c[claim] = json!(c[claim].to_string());
        out.push((
            format!("{claim} as a string"),
            sign(&env.enterprise, "ent-1", &c),
            "claim-type",
        ));
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    out.push((
        "missing exp".into(),
        sign(&env.enterprise, "ent-1", &c),
        "claim-missing",
    ));
    let mut c = claims();
    c["iat"] = json!(now() + 3600);
    out.push((
        "future iat".into(),
        sign(&env.enterprise, "ent-1", &c),
        "iat-in-future",
    ));
    let mut c = claims();
    c["exp"] = json!(now() - 120);
    out.push((
        "expired".into(),
        sign(&env.enterprise, "ent-1", &c),
        "expired",
    ));
    let mut c = claims();
    c["exp"] = json!(now() + 3 * 86400);
    out.push((
        "lifetime too long".into(),
        sign(&env.enterprise, "ent-1", &c),
        "lifetime-too-long",
    ));
    let mut c = claims();
    c["aud"] = json!("api://other");
    out.push((
        "wrong audience".into(),
        sign(&env.enterprise, "ent-1", &c),
        "audience-mismatch",
    ));

    // Oversized: past the verifier's 64 KiB limit, inside the header limit.
    let mut c = claims();
    c["pad"] = json!("x".repeat(50 * 1024));
    out.push((
        "oversized".into(),
        sign(&env.enterprise, "ent-1", &c),
        "too-large",
    ));

    // Duplicate claim names, validly signed; duplicate header member.
    let body = claims().to_string();
    let dup = format!("{},\"aud\":\"api://other\"}}", &body[..body.len() - 1]);
    let header = r#"{"alg":"RS256","kid":"ent-1"}"#;
    let input = format!(
        "{}.{}",
        encode_b64url(header.as_bytes()),
        encode_b64url(dup.as_bytes())
    );
    let s = env.enterprise.sign_raw(input.as_bytes()).unwrap();
    out.push((
        "duplicate claim".into(),
        format!("{input}.{}", encode_b64url(&s)),
        "malformed",
    ));
    let header = r#"{"alg":"none","alg":"RS256","kid":"ent-1"}"#;
    let input = format!(
        "{}.{}",
        encode_b64url(header.as_bytes()),
        encode_b64url(body.as_bytes())
    );
    let s = env.enterprise.sign_raw(input.as_bytes()).unwrap();
    out.push((
        "duplicate header member".into(),
        format!("{input}.{}", encode_b64url(&s)),
        "malformed",
    ));

    // Wrong typ for an issuer that requires at+jwt.
    for typ in ["JWT", "id_token+jwt"] {
        out.push((
            format!("typ {typ}"),
            env.es
                .sign_token(
                    &json!({"alg": "ES256", "kid": "as-1", "typ": typ}),
                    &as_claims(now()),
                )
                .unwrap(),
            "typ-mismatch",
        ));
    }

    // The Storm-0558 set.
    out.push((
        "Storm-0558: consumer key signing for an enterprise tenant".into(),
        sign(&env.consumer, "msa-1", &claims()),
        "key-out-of-scope",
    ));
    let mut c = claims();
    c["iss"] = json!(issuer_for(CONSUMER));
    c["tid"] = json!(CONSUMER);
    out.push((
        "Storm-0558: consumer key, consumer tenant".into(),
        sign(&env.consumer, "msa-1", &c),
        "tenant-not-allowed",
    ));
    out.push((
        "Storm-0558: key past its certificate's notAfter".into(),
        sign(&env.expired_cert, "old-1", &claims()),
        "key-expired",
    ));
    out.push((
        "Storm-0558: revoked key still published".into(),
        sign(&env.revoked, "revoked-1", &claims()),
        "key-revoked",
    ));
    let mut c = claims();
    c["iss"] = json!(issuer_for(TENANT_B));
    c["tid"] = json!(TENANT_B);
    out.push((
        "Storm-0558: tenant not allowed".into(),
        sign(&env.enterprise, "ent-1", &c),
        "tenant-not-allowed",
    ));
    let mut c = claims();
    c["tid"] = json!(TENANT_B);
    out.push((
        "Storm-0558: iss and tid disagree".into(),
        sign(&env.enterprise, "ent-1", &c),
        "tid-mismatch",
    ));
    out.push((
        "Storm-0558: the real kid".into(),
        sign(&env.attacker, STORM_KID, &claims()),
        "key-denied",
    ));
    let x5t = encode_b64url(&hex("d4b4cccda9228624656bff33d8110955779632aa"));
    out.push((
        "Storm-0558: the real certificate thumbprint".into(),
        env.enterprise
            .sign_token(
                &json!({"alg": "RS256", "kid": "ent-1", "x5t": x5t}),
                &claims(),
            )
            .unwrap(),
        "key-denied",
    ));

    out.push(("garbage".into(), "not-a-token".into(), "malformed"));
    out
}

#[tokio::test]
async fn every_forgery_is_refused_and_never_reaches_the_upstream() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;

    let cases = forgeries(&env);
    assert!(cases.len() >= 50, "{} cases", cases.len());
    for (name, token, _) in &cases {
        // Twice: a refusal must hold on repeat (no cache can turn it round).
        for _ in 0..2 {
            let r = get(gw.addr, "/orders/1", Some(token)).await;
            assert_eq!(r.status, 401, "{name}");
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer realm="tokenward", error="invalid_token""#),
                "{name}"
            );
            // No internal detail: no description, no body.
            assert!(r.body.is_empty(), "{name}: {:?}", r.body);
            assert_eq!(up.count(), 0, "{name} reached the upstream");
        }
    }

    let lines = gw.log_lines(cases.len() * 2).await;
    for (i, (name, token, code)) in cases.iter().enumerate() {
        for line in &lines[2 * i..2 * i + 2] {
            assert_eq!(line["verdict"], "rejected", "{name}");
            assert_eq!(line["status"], 401, "{name}");
            assert!(line["upstream_status"].is_null(), "{name}");
            let reasons: Vec<&str> = line["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert!(reasons.contains(code), "{name}: {code} not in {reasons:?}");
            assert_eq!(line["cached"], false, "{name}");
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            let prefix: String = digest.as_ref()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(line["token_sha256_prefix"], prefix.as_str(), "{name}");
        }
    }
    // The Storm-0558 forgeries name their signing key in the log.
    let storm = lines
        .iter()
        .find(|l| l["kid"] == STORM_KID)
        .expect("the Storm kid is logged");
    assert_eq!(storm["reasons"][0], "key-denied");
    assert_eq!(storm["tid"], TENANT_A);
    let consumer = lines.iter().find(|l| l["kid"] == "msa-1").unwrap();
    assert_eq!(consumer["iss"], issuer_for(TENANT_A).as_str());
    assert_eq!(consumer["alg"], "RS256");

    // The same gateway passes the legitimate token: the refusals were the
    // policy's, not a broken setup.
    let r = get(gw.addr, "/orders/1", Some(&env.legit())).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}
