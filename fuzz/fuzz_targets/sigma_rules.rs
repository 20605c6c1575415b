//! The Sigma YAML loader and rule compiler (detections, modifiers,
//! correlations), then every rule that loaded evaluated against a sign-in
//! and a UAL event, and its matches fed through the correlations.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tokenward_event::{Event, EventKind, Locator};
use tokenward_sigma::mapping::{self, Mapping};
use tokenward_sigma::section::Placeholders;
use tokenward_sigma::{RuleSet, Sigma};

/// The shipped mappings, parsed once (parsing them per input was most of
/// the time of an execution).
fn mappings() -> Vec<Mapping> {
    static MAPPINGS: OnceLock<Vec<Mapping>> = OnceLock::new();
    MAPPINGS.get_or_init(mapping::builtin).clone()
}

fn events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let ual = serde_json::json!({
            "CreationTime": "2023-06-15T10:00:00", "Operation": "MailItemsAccessed",
            "Workload": "Exchange", "UserId": "a@contoso.example", "ClientIPAddress": "203.0.113.7",
            "AppAccessContext": {"AADSessionId": "s1", "UniqueTokenId": "t1"},
            "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}],
            "ExtendedProperties": "{\"Name\":\"UserAgent\",\"Value\":\"python-requests/2.31\"}"
        });
        let signin = serde_json::json!({
            "createdDateTime": "2023-06-15T09:59:00Z", "userPrincipalName": "A@Contoso.example",
            "appId": "00000002-0000-0ff1-ce00-000000000000", "ipAddress": "2001:db8::7",
            "status": {"errorCode": 50126}, "uniqueTokenIdentifier": "t1",
            "location": {"city": "Zürich", "countryOrRegion": "CH"}
        });
        vec![
            Event::from_record(ual, None, Arc::from("ual"), Locator { line: 1, record: 1 }),
            Event::from_record(
                signin,
                Some(EventKind::SignIn),
                Arc::from("signin"),
                Locator { line: 1, record: 1 },
            ),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = Arc::new(RuleSet::from_texts(
        [("fuzz.yml", false, text)],
        mappings(),
        &Placeholders::new(),
    ));
    for issue in set.errors() {
        let _ = issue.to_string();
    }
    let mut hits = Vec::new();
    for ev in events() {
        if set.wants(ev.record.to_string().as_bytes()) {
            set.eval(ev, &mut hits);
        }
    }
    // No budget: every correlation group goes through the disk path.
    let mut sigma = Sigma::new(set, tokenward_spill::spilling::StateDisk::new(0));
    sigma.absorb(hits);
    let _ = sigma.finish();
});
