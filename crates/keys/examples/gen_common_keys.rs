//! Writes `examples/keys/`: a key set shaped like Microsoft's `common` v2.0
//! JWKS in June 2023 (threat.md §1–2), its discovery document, and the same
//! set after the July 2023 rotation.
//!
//! - Enterprise keys carry the `{tenantid}` issuer template; consumer (MSA)
//!   keys carry the consumer tenant's issuer. Both sit in one set, told
//!   apart only by that per-key `issuer`: `tokenward keys audit` reports
//!   `mixed-trust-domains`.
//! - Like Microsoft's, each key has `kid` = `x5t` = base64url SHA-1 of its
//!   self-signed `x5c` certificate, `use` `sig` and no `alg`.
//! - One consumer key's certificate ran from 2016-04-05 to 2021-04-04, the
//!   dates of the key Storm-0558 acquired; it is still published.
//!
//! Fresh keys are generated on every run (the private halves are thrown
//! away), so regenerating changes every kid.
//!
//! Run: `cargo run -p tokenward-keys --example gen_common_keys -- examples/keys`

use std::path::PathBuf;

use base64::Engine;
use serde_json::{json, Value};
use tokenward_jose::{encode_b64url, Algorithm, SigningKey};

const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
type Date = (i32, u8, u8);

/// One published key, Microsoft style.
fn key(issuer: &str, cn: &str, from: Date, to: Date) -> Value {
    let signing = SigningKey::generate(Algorithm::RS256).expect("RSA key");
    let pkcs8 = signing.to_pkcs8().expect("pkcs8");
    let kp = rcgen::KeyPair::try_from(pkcs8.as_slice()).expect("key pair");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let der = params.self_signed(&kp).expect("certificate").der().to_vec();
    let x5t = encode_b64url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref(),
    );
    let public = signing.public_jwk(&x5t);
    // Microsoft's members (written in sorted order by serde_json).
    json!({
        "kty": "RSA",
        "use": "sig",
        "kid": x5t,
        "x5t": x5t,
        "n": public["n"],
        "e": public["e"],
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)],
        "issuer": issuer,
    })
}

fn write(path: PathBuf, value: &Value) {
    let mut text = serde_json::to_string_pretty(value).expect("json");
    text.push('\n');
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("wrote {}", path.display());
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "examples/keys".into()),
    );
    std::fs::create_dir_all(&out).expect("create output folder");
    let consumer = TEMPLATE.replace("{tenantid}", CONSUMER);
    let enterprise_cn = "accounts.accesscontrol.windows.net";
    let consumer_cn = "Live ID STS Signing Public Key";

    let ent = [
        key(TEMPLATE, enterprise_cn, (2021, 5, 10), (2026, 5, 10)),
        key(TEMPLATE, enterprise_cn, (2022, 10, 3), (2027, 10, 3)),
        key(TEMPLATE, enterprise_cn, (2023, 3, 14), (2028, 3, 14)),
    ];
    let msa_current = key(&consumer, consumer_cn, (2022, 11, 21), (2027, 11, 21));
    // The Storm-0558 pattern: expired in 2021, still published in 2023.
    let msa_expired = key(&consumer, consumer_cn, (2016, 4, 5), (2021, 4, 4));

    let june = json!({"keys": [
        ent[0], ent[1], ent[2], msa_current, msa_expired,
    ]});
    write(out.join("common-v2.0-keys.json"), &june);

    // After the rotation of early July 2023: the expired consumer key is
    // gone and a new consumer key has appeared.
    let msa_new = key(&consumer, consumer_cn, (2023, 7, 3), (2028, 7, 3));
    let july = json!({"keys": [
        ent[0], ent[1], ent[2], msa_current, msa_new,
    ]});
    write(out.join("common-v2.0-keys-2023-07.json"), &july);

    // The common v2.0 discovery document, trimmed to the members that
    // matter here. Its issuer is the template, not ".../common/v2.0".
    let discovery = json!({
        "token_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "issuer": TEMPLATE,
        "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "tenant_region_scope": null,
    });
    write(out.join("openid-configuration.json"), &discovery);
}
