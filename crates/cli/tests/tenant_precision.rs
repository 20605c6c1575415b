//! Precision on a tenant shaped like real ones: 30 users over 45 days, sign-in
//! logs kept only for the last 30 (Entra's retention), the audit log for all
//! 45, a tenant-wide rollout of a new mail client on day 30, and one victim
//! whose mailbox a forged session reads on day 35.
//!
//! The victim must be the one high-severity incident; no benign user may be
//! in any high incident, and nothing may claim "never signed in" about
//! activity from before the sign-in logs begin.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::Command;

use serde_json::{json, Value};

const TENANT: &str = "5f1c0a2e-8d3b-4c6a-9e7f-1a2b3c4d5e6f";
const OUTLOOK: &str = "d3590ed6-52b3-4102-aeff-aad2292ab01c";
const NEW_CLIENT: &str = "e9b154d0-7658-433b-bb25-6b8e0a8a7c59";
const USERS: usize = 30;
const DAYS: usize = 45;
const SIGNINS_FROM_DAY: usize = 15;
const ROLLOUT_DAY: usize = 30;
const VICTIM: usize = 7;
const ATTACK_DAY: usize = 35;

fn date(day: usize) -> String {
    if day < 31 {
        format!("2024-03-{:02}", day + 1)
    } else {
        format!("2024-04-{:02}", day - 30)
    }
}

fn upn(u: usize) -> String {
    format!("user{u:02}@fabrikam.example")
}

/// One MailItemsAccessed Bind record.
struct Access<'a> {
    day: usize,
    user: usize,
    at: &'a str,
    app: &'a str,
    session: &'a str,
    token: &'a str,
    ip: &'a str,
    items: u32,
}

fn mail_access(a: &Access<'_>) -> Value {
    let (day, u, hm) = (a.day, a.user, a.at);
    json!({"CreationTime": format!("{}T{hm}:00", date(day)), "Id": format!("m-{day}-{u}-{hm}-{}", a.token),
           "Operation": "MailItemsAccessed", "OrganizationId": TENANT, "RecordType": 50,
           "ResultStatus": "Succeeded", "UserType": 0, "Version": 1, "Workload": "Exchange",
           "ClientIP": a.ip, "UserId": upn(u), "AppId": a.app, "ClientAppId": a.app,
           "ClientInfoString": "Client=MSExchangeRPC", "MailboxOwnerUPN": upn(u),
           "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}, {"Name": "IsThrottled", "Value": "False"}],
           "SessionId": a.session, "TokenTenantId": TENANT,
           "AppAccessContext": {"AADSessionId": a.session, "UniqueTokenId": a.token, "ClientAppId": a.app},
           "OperationCount": a.items, "Folders": [{"Path": "\\Inbox", "FolderItems": []}]})
}

fn owa(day: usize, u: usize, hm: &str, session: &str, token: &str, ip: &str) -> Value {
    json!({"CreationTime": format!("{}T{hm}:00", date(day)), "Id": format!("o-{day}-{u}-{hm}-{token}"),
           "Operation": "OWAGetAccessTokenForResource", "OrganizationId": TENANT, "RecordType": 275,
           "ResultStatus": "Succeeded", "UserType": 0, "Version": 1, "Workload": "Exchange",
           "ClientIP": ip, "UserId": upn(u), "ResourceURL": "https://outlook.office.com/",
           "AppAccessContext": {"AADSessionId": session, "UniqueTokenId": token}})
}

#[test]
fn only_the_victim_forms_a_high_incident_despite_retention_and_a_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let mut ual = String::new();
    let mut signins = Vec::new();
    for day in 0..DAYS {
        for u in 0..USERS {
            let app = if day >= ROLLOUT_DAY {
                NEW_CLIENT
            } else {
                OUTLOOK
            };
            let ip = format!("198.51.100.{}", 10 + u);
            let session = format!("sess-{day}-{u}");
            let token = format!("tok-{day}-{u}");
            let count = 2 + (u as u32 + day as u32) % 5;
            let access = Access {
                day,
                user: u,
                at: "09:10",
                app,
                session: &session,
                token: &token,
                ip: &ip,
                items: count,
            };
            writeln!(ual, "{}", mail_access(&access)).unwrap();
            writeln!(
                ual,
                "{}",
                owa(day, u, "09:20", &session, &format!("owa-{day}-{u}"), &ip)
            )
            .unwrap();
            if day >= SIGNINS_FROM_DAY {
                signins.push(
                    json!({"createdDateTime": format!("{}T09:00:00Z", date(day)),
                    "userPrincipalName": upn(u), "appId": app, "ipAddress": ip,
                    "status": {"errorCode": 0}, "isInteractive": false,
                    "uniqueTokenIdentifier": token, "sessionId": session,
                    "resourceTenantId": TENANT, "homeTenantId": TENANT}),
                );
            }
        }
    }
    // The forged session: no sign-in issued it, from an address no sign-in
    // used, reading far more than the mailbox usually does, renewing its
    // tokens through OWA.
    let forged_ip = "203.0.113.99";
    for (k, hm) in ["02:00", "02:10", "02:20"].iter().enumerate() {
        let token = format!("forged-tok-{k}");
        let access = Access {
            day: ATTACK_DAY,
            user: VICTIM,
            at: hm,
            app: "00000002-0000-0ff1-ce00-000000000000",
            session: "forged-session",
            token: &token,
            ip: forged_ip,
            items: 400,
        };
        writeln!(ual, "{}", mail_access(&access)).unwrap();
    }
    for (k, hm) in ["02:05", "02:15", "02:25", "02:35", "02:45"]
        .iter()
        .enumerate()
    {
        writeln!(
            ual,
            "{}",
            owa(
                ATTACK_DAY,
                VICTIM,
                hm,
                "forged-session",
                &format!("forged-owa-{k}"),
                forged_ip
            )
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("ual.jsonl"), ual).unwrap();
    std::fs::write(
        dir.path().join("signins.json"),
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns", "value": signins}).to_string(),
    )
    .unwrap();

    let summary = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .arg("hunt")
        .arg(dir.path())
        .args([
            "--quiet",
            "--output-format",
            "jsonl",
            "--no-builtin-iocs",
            "--summary-json",
        ])
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let doc: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let victim = upn(VICTIM);

    // The rollout is seen (the signal fires for the users) ...
    let new_app: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f["rule_id"] == "tw-mail-new-client-app")
        .filter_map(|f| f["user"].as_str())
        .collect();
    assert!(new_app.len() >= USERS / 2, "new client app for {new_app:?}");
    // ... and recognised as a rollout: no benign user's finding is "high".
    for f in findings
        .iter()
        .filter(|f| f["rule_id"] == "tw-mail-new-client-app")
    {
        if f["AppId"] == NEW_CLIENT || f["evidence"]["AppId"] == NEW_CLIENT {
            assert_eq!(f["severity"], "low", "{f}");
        }
    }
    // ... but nothing claims a benign session never signed in, although
    // the first 15 days of OWA activity predate the sign-in logs.
    for f in &findings {
        if f["rule_id"] == "tw-owa-token-for-resource" || f["rule_id"] == "tw-token-without-signin"
        {
            assert_eq!(f["user"], victim.as_str(), "{f}");
        }
    }
    let forged: Vec<&Value> = findings
        .iter()
        .filter(|f| f["session_id"] == "forged-session")
        .collect();
    let forged_rules: BTreeSet<&str> = forged
        .iter()
        .filter_map(|f| f["rule_id"].as_str())
        .collect();
    assert!(
        forged_rules.contains("tw-token-without-signin")
            && forged_rules.contains("tw-owa-token-for-resource"),
        "{forged_rules:?}"
    );

    let incidents = doc["incidents"].as_array().unwrap();
    let high: Vec<&Value> = incidents
        .iter()
        .filter(|i| i["severity"] == "high")
        .collect();
    assert_eq!(high.len(), 1, "{high:#?}");
    assert_eq!(high[0]["users"], json!([victim]), "{:#}", high[0]);
    assert!(high[0]["sessions"]
        .as_array()
        .unwrap()
        .contains(&json!("forged-session")));
    assert!(high[0]["client_ips"]
        .as_array()
        .unwrap()
        .contains(&json!(forged_ip)));
    for inc in incidents {
        if inc["severity"] == "high" {
            continue;
        }
        assert_ne!(
            inc["severity"], "medium",
            "a benign user got a medium incident: {inc:#}"
        );
    }
    // The OWA detection says what it could not judge.
    let owa_note = doc["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "tw-owa-token-for-resource")
        .unwrap()["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        owa_note.contains(&format!("{} began where", SIGNINS_FROM_DAY * USERS)),
        "{owa_note}"
    );
}
