//! Full-policy verification against its anchors, measured in one run:
//! the raw aws-lc-rs signature check alone (key parsed once, as we do), and
//! the jsonwebtoken crate's `decode` of the same token (aws-lc-rs backend,
//! issuer and audience configured).
//!
//! `cargo bench -p tokenward-trust --bench verify` (`ALG=RS256` for one
//! algorithm)
//!
//! Benchmarks are interleaved round by round so machine noise (other jobs
//! on a 2-core box) hits every contender alike; the median round is kept.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey};
use serde_json::json;
use tokenward_jose::{decode_b64url, Algorithm, SigningKey};
use tokenward_trust::Policy;

// Measured with the allocator the `tokenward` binary (and so the gateway)
// ships with. aws-lc allocates through libc malloc whatever this says, so
// the raw anchor is unchanged by it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const TENANT: &str = "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91";
const AUD: &str = "api://orders";

struct Case {
    name: &'static str,
    run: Box<dyn Fn()>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct JwtClaims {
    iss: String,
    aud: String,
    tid: String,
    sub: String,
    exp: u64,
    iat: u64,
}

fn setup(alg: Algorithm) -> Vec<Case> {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(alg).unwrap();
    let mut jwk = key.public_jwk("k1");
    jwk["issuer"] = json!(ISSUER);
    std::fs::write(
        dir.path().join("keys.json"),
        json!({"keys": [jwk.clone()]}).to_string(),
    )
    .unwrap();
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        format!(
            "[[issuer]]\nissuer = \"{ISSUER}\"\ntenants = [\"{TENANT}\"]\naudiences = [\"{AUD}\"]\n\
             algorithms = [\"{}\"]\njwks = \"keys.json\"\nmax_lifetime_seconds = 86400\n",
            alg.name()
        ),
    )
    .unwrap();
    let policy = Policy::load(&policy_path).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A realistic Entra access token claim set (about 20 claims).
    let iss = ISSUER.replace("{tenantid}", TENANT);
    let claims = json!({
        "aud": AUD, "iss": iss, "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
        "aio": "AWQAm/8TAAAAi2aKJ4gN0Bi1nY6+yF0e9L6V4c8PrjRw0Wm5d2r4xT0E=",
        "azp": "1fec8e78-bce4-4aaf-ab1b-5451cc387264", "azpacr": "0",
        "name": "Adele Vance", "oid": "6e1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "preferred_username": "adele.vance@contoso.example",
        "rh": "0.AXwAjZkfw3tbLkqfECtsjU56kXiO7B_kvK9Kqxtu", "scp": "Orders.Read Orders.Write",
        "sid": "0094b5a6-9c1c-4a3e-b0a7-5b8c2e1f7d30",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": TENANT,
        "uti": "3kVZRE8tFkinHtPA7_EFAA", "ver": "2.0", "xms_tcdt": 1_600_000_000,
    });
    let token = key
        .sign_token(
            &json!({"alg": alg.name(), "kid": "k1", "typ": "JWT"}),
            &claims,
        )
        .unwrap();
    assert!(
        policy.verify(&token, now).accepted(),
        "bench token must pass"
    );

    let (input, sig_b64) = token.rsplit_once('.').unwrap();
    let sig = decode_b64url(sig_b64.as_bytes()).unwrap();
    let input = input.to_owned();
    let raw_key = match alg {
        Algorithm::RS256 => {
            use aws_lc_rs::encoding::AsDer;
            let n = decode_b64url(jwk["n"].as_str().unwrap().as_bytes()).unwrap();
            let e = decode_b64url(jwk["e"].as_str().unwrap().as_bytes()).unwrap();
            let der = aws_lc_rs::rsa::PublicKeyComponents {
                n: &n[..],
                e: &e[..],
            }
            .as_der()
            .unwrap();
            ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der.as_ref()).unwrap()
        }
        _ => {
            let mut point = vec![4u8];
            point.extend(decode_b64url(jwk["x"].as_str().unwrap().as_bytes()).unwrap());
            point.extend(decode_b64url(jwk["y"].as_str().unwrap().as_bytes()).unwrap());
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point).unwrap()
        }
    };
    assert!(raw_key.verify_sig(input.as_bytes(), &sig).is_ok());

    let (jwt_alg, decoding_key) = match alg {
        Algorithm::RS256 => (
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::DecodingKey::from_rsa_components(
                jwk["n"].as_str().unwrap(),
                jwk["e"].as_str().unwrap(),
            )
            .unwrap(),
        ),
        _ => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::DecodingKey::from_ec_components(
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap(),
            )
            .unwrap(),
        ),
    };
    let mut validation = jsonwebtoken::Validation::new(jwt_alg);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[iss.as_str()]);
    jsonwebtoken::decode::<JwtClaims>(&token, &decoding_key, &validation).unwrap();

    let t1 = token.clone();
    let t2 = token.clone();
    let t3 = token.clone();
    let t4 = token.clone();
    let raw_key_after_parse = raw_key.clone();
    // Keep the temp dir alive for the policy's lifetime.
    let dir = std::rc::Rc::new(dir);
    vec![
        Case {
            name: "raw aws-lc-rs verify",
            run: Box::new(move || {
                black_box(
                    raw_key
                        .verify_sig(black_box(input.as_bytes()), black_box(&sig))
                        .is_ok(),
                );
            }),
        },
        Case {
            name: "tokenward full policy",
            run: Box::new(move || {
                let _keep = &dir;
                black_box(policy.verify(black_box(&t1), now).accepted());
            }),
        },
        Case {
            name: "  of which parsing",
            run: Box::new(move || {
                black_box(parse(&t3));
            }),
        },
        // Parsing timed alone runs with warm caches; interleaved with the
        // signature check it costs more. This case shows how much of the
        // gap to raw is that, not the policy checks.
        Case {
            name: "  parse, then raw verify",
            run: Box::new(move || {
                let jws = parse(&t4);
                black_box(
                    raw_key_after_parse
                        .verify_sig(jws.signing_input.as_bytes(), &jws.signature)
                        .is_ok(),
                );
            }),
        },
        Case {
            name: "jsonwebtoken decode",
            run: Box::new(move || {
                black_box(
                    jsonwebtoken::decode::<JwtClaims>(black_box(&t2), &decoding_key, &validation)
                        .is_ok(),
                );
            }),
        },
    ]
}

/// The header, claims and base64 work of a verification, without the
/// signature check; the claims take the payload, as `Policy::verify` does.
fn parse(token: &str) -> tokenward_jose::Jws<'_> {
    let mut jws = tokenward_jose::Jws::parse(black_box(token), &tokenward_jose::Limits::default())
        .expect("bench token parses");
    let payload = std::mem::take(&mut jws.payload);
    black_box(tokenward_jose::Claims::parse_owned(payload, &[]).expect("bench claims parse"));
    jws
}

fn time_batch(case: &Case, iters: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        (case.run)();
    }
    start.elapsed() / iters
}

fn main() {
    // `cargo test --benches` passes --bench-less args; only run when benched.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    // ROUNDS=61 narrows the spread on a noisy box.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
        .max(1);
    // ALG=RS256 (or ES256) runs one algorithm, e.g. under a profiler.
    let only = std::env::var("ALG").ok();
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        if only.as_deref().is_some_and(|a| a != alg.name()) {
            continue;
        }
        let cases = setup(alg);
        // Size batches to ~20 ms so each round is long enough to time.
        let per = time_batch(&cases[0], 200).max(Duration::from_nanos(100));
        let iters = (Duration::from_millis(20).as_nanos() / per.as_nanos()).max(10) as u32;
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
        for _ in 0..rounds {
            for (i, c) in cases.iter().enumerate() {
                samples[i].push(time_batch(c, iters));
            }
        }
        let medians: Vec<Duration> = samples
            .iter_mut()
            .map(|s| {
                s.sort();
                s[s.len() / 2]
            })
            .collect();
        println!(
            "{} ({} rounds x {iters} iterations, median per token):",
            alg.name(),
            rounds
        );
        for (c, m) in cases.iter().zip(&medians) {
            println!(
                "  {:<26} {:>9.2} us   {:>8.0} tokens/s   {:.3}x raw",
                c.name,
                m.as_secs_f64() * 1e6,
                1.0 / m.as_secs_f64(),
                m.as_secs_f64() / medians[0].as_secs_f64()
            );
        }
        println!(
            "  ratio full policy / jsonwebtoken: {:.3}",
            medians[1].as_secs_f64() / medians[4].as_secs_f64()
        );
    }
}
