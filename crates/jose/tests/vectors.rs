//! Every Wycheproof JWS/JWK vector and RFC 7520 (JOSE cookbook) example in
//! `tests/fixtures/jose`, run through the strict JOSE layer with its expected
//! verdict. Deliberate deviations are listed in `tests/fixtures/jose/README.md`
//! and asserted here, so a change in behaviour shows up.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use tokenward_jose::{Algorithm, Jwk, Jwks, Jws, KeyMaterial, Limits, VerifyingKey};

fn fixture(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/jose")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Set-level rules a trust store applies before any key is used: no
/// duplicate `kid`, no secret keys mixed with public ones.
fn select_key(key_doc: &Value, kid: Option<&str>) -> Result<Jwk, String> {
    if key_doc.get("keys").is_some() {
        let set = Jwks::parse(key_doc.to_string().as_bytes()).map_err(|e| e.0)?;
        let keys: Vec<Jwk> = set
            .keys
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| e.0)?;
        let problems = tokenward_jose::Jwks::set_problems(&keys);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let kid = kid.ok_or("token has no kid")?;
        keys.into_iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or_else(|| format!("no key with kid {kid}"))
    } else {
        Jwk::from_value(key_doc).map_err(|e| e.0)
    }
}

/// The JOSE-layer verdict for one compact token and key document.
fn jws_verdict(token: &str, key_doc: &Value) -> Result<(), String> {
    let jws = Jws::parse(token, &Limits::default()).map_err(|e| e.to_string())?;
    let jwk = select_key(key_doc, jws.header.kid.as_deref())?;
    let key = VerifyingKey::from_jwk(&jwk, jws.header.algorithm()).map_err(|e| e.0)?;
    if key.verify(jws.signing_input.as_bytes(), &jws.signature) {
        Ok(())
    } else {
        Err("signature-invalid".into())
    }
}

/// Wycheproof cases our stricter rules reject although the file says
/// `valid`; each is explained in the fixture README.
const STRICTER: [(&str, &str); 6] = [
    // A '?' inside a segment: refused by the compact alphabet check.
    ("json_web_signature_test.json", "372"),
    ("json_web_signature_test.json", "373"),
    // RFC 7520 keys declared for PS256 / "ES521" used with PS384 / ES512:
    // one key, one algorithm (RFC 8725 §3.1).
    ("json_web_signature_test.json", "346"),
    ("json_web_signature_test.json", "347"),
    ("json_web_signature_test.json", "350"),
    ("json_web_signature_test.json", "351"),
];

/// Upstream data defects: `invalid` vectors whose `jws` is byte-identical to
/// a `valid` one (the padding they were meant to carry is absent), paired
/// with that valid vector. No verifier can tell them apart; the test checks
/// they really are identical.
const IDENTICAL_TO_VALID: [(&str, &str, &str); 2] = [
    ("json_web_signature_test.json", "367", "357"),
    ("json_web_signature_test.json", "370", "357"),
];

fn run_jose_file(file: &str) -> (usize, usize) {
    let doc = fixture(&format!("wycheproof/testvectors_v1/{file}"));
    let mut ran = 0;
    let mut valid = 0;
    let mut failures = Vec::new();
    let token_of = |id: &str| {
        doc["testGroups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["tests"].as_array().unwrap())
            .find(|t| t["tcId"].to_string().trim_matches('"') == id)
            .map(|t| t["jws"].clone())
    };
    for group in doc["testGroups"].as_array().unwrap() {
        let key_doc = group.get("public").unwrap_or(&group["private"]);
        for test in group["tests"].as_array().unwrap() {
            let tc = test["tcId"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| test["tcId"].to_string());
            let expected_valid = test["result"] == "valid";
            // JWE and JSON-serialized inputs are not compact JWS strings; a
            // JWT verifier must reject them, which parsing does.
            let input = test
                .get("jws")
                .or_else(|| test.get("jwe"))
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap();
            let is_jwe = test.get("jwe").is_some();
            let verdict = jws_verdict(&input, key_doc);
            let stricter = STRICTER.contains(&(file, tc.as_str()));
            let twin = IDENTICAL_TO_VALID
                .iter()
                .find(|(f, id, _)| *f == file && *id == tc)
                .map(|(_, _, valid_id)| *valid_id);
            if let Some(valid_id) = twin {
                assert_eq!(token_of(valid_id), Some(test["jws"].clone()), "tcId {tc}");
            }
            let want_accept = (expected_valid || twin.is_some()) && !is_jwe && !stricter;
            ran += 1;
            if verdict.is_ok() {
                valid += 1;
            }
            if verdict.is_ok() != want_accept {
                failures.push(format!(
                    "tcId {tc} ({}): expected {}, got {:?}",
                    test["comment"],
                    if want_accept { "accept" } else { "reject" },
                    verdict
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    (ran, valid)
}

#[test]
fn wycheproof_json_web_signature() {
    let (ran, valid) = run_jose_file("json_web_signature_test.json");
    assert_eq!(ran, 401);
    assert_eq!(
        valid, 42,
        "46 valid, minus 6 documented stricter rejections, plus 2 defective duplicates of a valid one"
    );
}

#[test]
fn wycheproof_json_web_key() {
    let (ran, valid) = run_jose_file("json_web_key_test.json");
    assert_eq!(ran, 26);
    assert_eq!(valid, 5);
}

#[test]
fn wycheproof_json_web_crypto() {
    let (ran, valid) = run_jose_file("json_web_crypto_test.json");
    assert_eq!(ran, 83);
    // The JWE "valid" cases are rejected on purpose: JWS only.
    assert!(valid <= 6);
}

/// Primitive signature vectors, fed through our JWK import path.
/// Returns (tests run, accepted, tests skipped because their group's key
/// has no JWK form: Wycheproof omits it for keys a JWK cannot express).
fn run_primitive(file: &str, alg: Algorithm) -> (usize, usize, usize) {
    let doc = fixture(&format!("wycheproof/testvectors_v1/{file}"));
    let (mut ran, mut accepted, mut no_jwk) = (0, 0, 0);
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let Some(jwk_doc) = group.get("publicKeyJwk").or_else(|| group.get("keyJwk")) else {
            no_jwk += group["tests"].as_array().unwrap().len();
            continue;
        };
        let jwk = Jwk::from_value(jwk_doc);
        let key = jwk.as_ref().ok().map(|j| VerifyingKey::from_jwk(j, alg));
        for test in group["tests"].as_array().unwrap() {
            ran += 1;
            let ok = match &key {
                Some(Ok(k)) => k.verify(
                    &unhex(test["msg"].as_str().unwrap()),
                    &unhex(test["sig"].as_str().unwrap()),
                ),
                _ => false,
            };
            if ok {
                accepted += 1;
            }
            // "acceptable" (legacy encodings) must be rejected by a strict verifier.
            let want = test["result"] == "valid";
            if ok != want {
                failures.push(format!(
                    "tcId {} ({}): expected {want}, key {:?}",
                    test["tcId"],
                    test["comment"],
                    key.as_ref().map(|k| k.as_ref().err())
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    (ran, accepted, no_jwk)
}

#[test]
fn wycheproof_primitives_through_jwk_import() {
    // (file, alg, tests run, accepted = every `valid` one run, tests in
    // groups whose key has no JWK form). Every per-test verdict is already
    // asserted inside run_primitive; these totals catch vectors silently
    // dropped.
    let cases = [
        (
            "ecdsa_secp256r1_sha256_p1363_test.json",
            Algorithm::ES256,
            (252, 169, 10),
        ),
        (
            "ecdsa_secp384r1_sha384_p1363_test.json",
            Algorithm::ES384,
            (270, 189, 10),
        ),
        (
            "ecdsa_secp521r1_sha512_p1363_test.json",
            Algorithm::ES512,
            (308, 227, 10),
        ),
        ("ed25519_test.json", Algorithm::EdDSA, (151, 88, 0)),
        (
            "rsa_signature_2048_sha256_test.json",
            Algorithm::RS256,
            (259, 9, 0),
        ),
        (
            "rsa_signature_2048_sha512_test.json",
            Algorithm::RS512,
            (259, 8, 0),
        ),
        (
            "rsa_pss_2048_sha256_mgf1_32_test.json",
            Algorithm::PS256,
            (108, 63, 0),
        ),
        (
            "rsa_pss_2048_sha384_mgf1_48_test.json",
            Algorithm::PS384,
            (141, 95, 0),
        ),
        (
            "rsa_pss_4096_sha512_mgf1_64_test.json",
            Algorithm::PS512,
            (179, 132, 0),
        ),
    ];
    for (file, alg, expected) in cases {
        assert_eq!(run_primitive(file, alg), expected, "{file}");
    }
}

fn cookbook(rel: &str) -> Value {
    fixture(&format!("jose-cookbook/{rel}"))
}

#[test]
fn rfc7520_compact_examples_verify() {
    for rel in [
        "jws/4_1.rsa_v15_signature.json",
        "jws/4_2.rsa-pss_signature.json",
        "jws/4_3.ecdsa_signature.json",
        "jws/4_4.hmac-sha2_integrity_protection.json",
        "curve25519/jws.json",
    ] {
        let doc = cookbook(rel);
        let token = doc["output"]["compact"].as_str().unwrap();
        assert_eq!(jws_verdict(token, &doc["input"]["key"]), Ok(()), "{rel}");
        // The legitimate token with one payload byte changed must fail.
        let (head, rest) = token.split_once('.').unwrap();
        let (payload, sig) = rest.split_once('.').unwrap();
        let flipped = if payload.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}.{sig}", &payload[1..]);
        assert!(
            jws_verdict(&tampered, &doc["input"]["key"]).is_err(),
            "{rel} tampered"
        );
    }
}

#[test]
fn rfc7520_non_compact_and_detached_forms_rejected() {
    // Detached content (§4.5): the compact form has an empty payload.
    let doc = cookbook("jws/4_5.signature_with_detached_content.json");
    let detached = doc["output"]["compact"].as_str().unwrap();
    assert_eq!(
        jws_verdict(detached, &doc["input"]["key"]),
        Err("signature-invalid".into())
    );
    // JSON serializations (§4.6, §4.7, §4.8) are not compact JWS.
    for rel in [
        "jws/4_6.protecting_specific_header_fields.json",
        "jws/4_7.protecting_content_only.json",
        "jws/4_8.multiple_signatures.json",
        "rfc7797/4.2.hmac-sha2_b64_false.json",
    ] {
        let doc = cookbook(rel);
        let json = doc["output"]["json"].to_string();
        let err = Jws::parse(&json, &Limits::default()).unwrap_err();
        assert_eq!(err.kind.code(), "malformed", "{rel}");
    }
    // b64:false with crit (RFC 7797) in compact form: crit is refused.
    let doc = cookbook("rfc7797/hmac-sha2_b64_false.json");
    let compact = doc["output"]["compact"].as_str().unwrap();
    // The header (with `crit`) is read before the unencoded payload.
    let err = Jws::parse(compact, &Limits::default()).unwrap_err();
    assert_eq!(err.kind.code(), "crit-unsupported");
    // The same unencoded payload under a plain header is not base64url.
    let (_, rest) = compact.split_once('.').unwrap();
    let plain = format!(
        "{}.{rest}",
        tokenward_jose::encode_b64url(br#"{"alg":"HS256"}"#)
    );
    let err = Jws::parse(&plain, &Limits::default()).unwrap_err();
    assert_eq!(err.kind.code(), "malformed");
    assert!(err.message.contains("' '"), "{}", err.message);
}

#[test]
fn rfc7520_keys() {
    let kinds: BTreeSet<_> = [
        "jwk/3_1.ec_public_key.json",
        "jwk/3_2.ec_private_key.json",
        "jwk/3_3.rsa_public_key.json",
        "jwk/3_4.rsa_private_key.json",
        "jwk/3_5.symmetric_key_mac_computation.json",
    ]
    .iter()
    .map(|rel| Jwk::from_value(&cookbook(rel)).unwrap().material.kty())
    .collect();
    assert_eq!(kinds, BTreeSet::from(["EC", "RSA", "oct"]));
    let private = Jwk::from_value(&cookbook("jwk/3_4.rsa_private_key.json")).unwrap();
    assert!(private.private_members.contains(&"d".to_owned()));
    assert!(matches!(private.material, KeyMaterial::Rsa { .. }));
    // §3.6 is an encryption key: it must not verify anything.
    let enc = Jwk::from_value(&cookbook("jwk/3_6.symmetric_key_encryption.json")).unwrap();
    assert!(VerifyingKey::from_jwk(&enc, Algorithm::HS256).is_err());
}

/// The probe loads users' private keys as JWKs: the RFC 7520 private keys
/// must sign exactly (RSA v1.5 is deterministic) or verifiably (ECDSA), and
/// a public-only JWK or a key of the wrong family must be refused by name.
#[test]
fn private_jwks_from_the_cookbook_sign_like_the_rfc() {
    use tokenward_jose::{encode_b64url, SigningKey};
    let rsa = fixture("jose-cookbook/jws/4_1.rsa_v15_signature.json");
    let key = SigningKey::from_private_jwk(Algorithm::RS256, &rsa["input"]["key"]).unwrap();
    let input = rsa["signing"]["sig-input"].as_str().unwrap();
    let sig = key.sign_raw(input.as_bytes()).unwrap();
    assert_eq!(encode_b64url(&sig), rsa["signing"]["sig"].as_str().unwrap());

    let ec = fixture("jose-cookbook/jws/4_3.ecdsa_signature.json");
    let key = SigningKey::from_private_jwk(Algorithm::ES512, &ec["input"]["key"]).unwrap();
    let sig = key.sign_raw(b"probe").unwrap();
    let public = Jwk::from_value(&ec["input"]["key"]).unwrap();
    let verifier = VerifyingKey::from_jwk(&public, Algorithm::ES512).unwrap();
    assert!(verifier.verify(b"probe", &sig));
    assert!(key.public_spki_der().is_some());

    let err = SigningKey::from_private_jwk(Algorithm::ES256, &ec["input"]["key"])
        .err()
        .unwrap();
    assert!(err.0.contains("P-521"), "{err}");
    let mut public_only = rsa["input"]["key"].clone();
    public_only.as_object_mut().unwrap().remove("d");
    let err = SigningKey::from_private_jwk(Algorithm::RS256, &public_only)
        .err()
        .unwrap();
    assert!(err.0.contains("\"d\""), "{err}");
    let err = SigningKey::from_private_jwk(Algorithm::HS256, &rsa["input"]["key"])
        .err()
        .unwrap();
    assert!(err.0.contains("cannot sign HS256"), "{err}");
}

/// Private keys come as PKCS#8, PKCS#1 or SEC 1 DER; all load.
#[test]
fn private_keys_load_from_every_der_encoding() {
    use tokenward_jose::SigningKey;
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384] {
        let key = SigningKey::generate(alg).unwrap();
        let der = key.to_pkcs8().unwrap();
        let again = SigningKey::from_der(alg, &der).unwrap();
        assert_eq!(again.public_spki_der(), key.public_spki_der(), "{alg}");
        assert!(
            SigningKey::from_der(Algorithm::ES512, &der).is_err(),
            "{alg}"
        );
    }
}

/// A public JWK's SubjectPublicKeyInfo is the one its private key has.
#[test]
fn public_jwk_spki_matches_the_private_key() {
    use tokenward_jose::SigningKey;
    for alg in [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ] {
        let key = SigningKey::generate(alg).unwrap();
        let jwk = Jwk::from_value(&key.public_jwk("k")).unwrap();
        assert_eq!(jwk.material.spki_der(), key.public_spki_der(), "{alg}");
    }
    let secret = Jwk::from_value(&serde_json::json!({"kty": "oct", "k": "AAAA"})).unwrap();
    assert_eq!(secret.material.spki_der(), None);
}
