//! An exact `[[issuer]]` entry wins over a `{tenantid}` template that also
//! matches `iss`, whatever the order of the entries in the file.

mod common;

use common::*;
use serde_json::json;

const TEMPLATE_ENTRY: &str = r#"
[[issuer]]
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
tenants = ["3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91"]
audiences = ["api://orders"]
algorithms = ["RS256"]
jwks = "common.json"
"#;

const CONSUMER_ENTRY: &str = r#"
[[issuer]]
issuer = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
audiences = ["api://orders"]
algorithms = ["RS256"]
jwks = "common.json"
"#;

fn consumer_claims() -> serde_json::Value {
    let mut c = claims();
    c["iss"] = json!(consumer_issuer());
    c["tid"] = json!(CONSUMER);
    c
}

fn both_orders() -> [Env; 2] {
    [
        Env::with_policy(&format!("{TEMPLATE_ENTRY}{CONSUMER_ENTRY}")),
        Env::with_policy(&format!("{CONSUMER_ENTRY}{TEMPLATE_ENTRY}")),
    ]
}

#[test]
fn a_consumer_token_signed_by_the_consumer_key_is_accepted_in_either_order() {
    for env in both_orders() {
        assert_accepted(&env.verify(&sign(&env.consumer, "msa-1", &consumer_claims())));
    }
}

#[test]
fn an_enterprise_token_signed_by_the_enterprise_key_is_accepted_in_either_order() {
    for env in both_orders() {
        assert_accepted(&env.verify(&sign(&env.enterprise, "ent-1", &claims())));
    }
}

#[test]
fn a_key_scoped_to_the_other_entry_is_out_of_scope_in_either_order() {
    for env in both_orders() {
        // Storm-0558: the consumer key signing for an enterprise tenant.
        assert_rejected_with(
            &env.verify(&sign(&env.consumer, "msa-1", &claims())),
            "key-out-of-scope",
        );
        // And the other way round.
        assert_rejected_with(
            &env.verify(&sign(&env.enterprise, "ent-1", &consumer_claims())),
            "key-out-of-scope",
        );
    }
}
