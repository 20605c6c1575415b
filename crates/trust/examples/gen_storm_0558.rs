//! Writes `examples/storm-0558/`: a key set mixing an enterprise
//! `{tenantid}` key with a consumer-tenant key (the shape of Microsoft's
//! `common` v2.0 JWKS in 2023), a policy for one enterprise API, a forged
//! token signed by the consumer key for the enterprise tenant, and a
//! legitimate token.
//!
//! Run: `cargo run -p tokenward-trust --example gen_storm_0558 -- examples/storm-0558`
//! Fresh keys are generated on every run; no private key is written.

use std::path::PathBuf;

use base64::Engine;
use serde_json::{json, Value};
use tokenward_jose::{Algorithm, SigningKey};

const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
/// Fictional enterprise tenant (Contoso).
const CONTOSO: &str = "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91";
const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// 2023-06-15T08:00:00Z: tokens are issued in Storm-0558's window.
const ISSUED: i64 = 1_686_816_000;

fn cert(key: &SigningKey, from: (i32, u8, u8), to: (i32, u8, u8), cn: &str) -> String {
    let der = key.to_pkcs8().expect("pkcs8");
    let kp = rcgen::KeyPair::try_from(der.as_slice()).expect("key pair");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let c = params.self_signed(&kp).expect("certificate");
    base64::engine::general_purpose::STANDARD.encode(c.der())
}

fn with(mut jwk: Value, issuer: &str, x5c: String) -> Value {
    jwk["issuer"] = json!(issuer);
    jwk["x5c"] = json!([x5c]);
    jwk
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "examples/storm-0558".into()),
    );
    std::fs::create_dir_all(out.join("keys")).expect("create output folder");

    let enterprise = SigningKey::generate(Algorithm::RS256).expect("key");
    let consumer = SigningKey::generate(Algorithm::RS256).expect("key");
    let consumer_issuer = TEMPLATE.replace("{tenantid}", CONSUMER);
    let jwks = json!({"keys": [
        with(enterprise.public_jwk("ent-2023-rs256"), TEMPLATE,
             cert(&enterprise, (2023, 1, 10), (2028, 1, 10), "accounts.accesscontrol.windows.net")),
        // The consumer key: its certificate expired in 2021, yet it is still
        // published in the same set as the enterprise key.
        with(consumer.public_jwk("msa-2016-rs256"), &consumer_issuer,
             cert(&consumer, (2016, 4, 5), (2021, 4, 4), "Live ID STS Signing Public Key")),
    ]});
    write(
        &out.join("keys/common.json"),
        &serde_json::to_string_pretty(&jwks).expect("json"),
    );

    let claims = json!({
        "iss": TEMPLATE.replace("{tenantid}", CONTOSO),
        "tid": CONTOSO,
        "aud": "api://contoso-orders",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "oid": "6e1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "preferred_username": "adele.vance@contoso.example",
        "uti": "3kVZRE8tFkinHtPA7_EFAA",
        "iat": ISSUED, "nbf": ISSUED, "exp": ISSUED + 3600,
    });
    let legit = enterprise
        .sign_token(
            &json!({"alg": "RS256", "kid": "ent-2023-rs256", "typ": "JWT"}),
            &claims,
        )
        .expect("sign");
    let forged = consumer
        .sign_token(
            &json!({"alg": "RS256", "kid": "msa-2016-rs256", "typ": "JWT"}),
            &claims,
        )
        .expect("sign");
    write(&out.join("legit.jwt"), &legit);
    write(&out.join("forged.jwt"), &forged);
    write(&out.join("tokens.txt"), &format!("{legit}\n{forged}"));
    println!("wrote {}", out.display());
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, format!("{text}\n")).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
