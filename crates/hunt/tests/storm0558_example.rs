//! Each built-in detection fires on the simulated Storm-0558 intrusion in
//! examples/storm-0558/logs and stays quiet on the benign part of the tenant.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use tokenward_hunt::{run, Finding, HuntConfig, Report, Status, BUILTINS};

/// The intruder's footprint, as written by examples/storm-0558/generate_logs.py.
const ATTACKER_IPS: &[&str] = &["195.26.87.219", "51.89.156.153", "45.14.227.212"];
const ATTACKER_SESSION: &str = "5b0c0f3e-58a1-4d55-9c2e-0000deadbeef";
const VICTIM: &str = "dan.okafor@contoso.com";

fn report() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/storm-0558/logs");
        let cfg = HuntConfig {
            inputs: vec![dir],
            ..Default::default()
        };
        run(&cfg, Arc::new(AtomicU64::new(0))).expect("example hunt runs")
    })
}

fn hits(id: &str) -> Vec<&'static Finding> {
    report()
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .filter(|f| f.rule_id == id)
        .collect()
}

/// Whether a finding points at the intrusion rather than at benign activity.
fn is_intrusion(f: &Finding) -> bool {
    let ip = f
        .client_ip
        .as_deref()
        .is_some_and(|i| ATTACKER_IPS.contains(&i));
    let session = f.session_id.as_deref() == Some(ATTACKER_SESSION)
        || f.evidence.get("session").and_then(|v| v.as_str()) == Some(ATTACKER_SESSION);
    let gap = f.rule_id == "tw-audit-gap"
        && f.evidence.get("workload").and_then(|v| v.as_str()) == Some("Exchange")
        && f.evidence.get("gap_start").and_then(|v| v.as_str()) == Some("2023-06-21T01:00:00Z");
    ip || session || gap
}

#[test]
fn example_reads_cleanly() {
    let r = report();
    let (read, evaluated, rejected) = r.totals();
    assert_eq!(rejected, 0);
    assert_eq!(read, evaluated);
    assert!(read > 4000);
    assert!(!r.has_unreadable_input());
    let formats: Vec<&str> = r.files.iter().filter_map(|f| f.format).collect();
    for want in [
        "ual-jsonl",
        "ual-json",
        "purview-csv",
        "graph-json",
        "azure-monitor-jsonl",
        "jsonl",
    ] {
        assert!(formats.contains(&want), "{want} in {formats:?}");
    }
    assert!(
        r.detections.iter().all(|d| d.status == Status::Ok),
        "{:#?}",
        r.detections
    );
}

#[test]
fn every_finding_is_the_intrusion() {
    for f in report().findings.as_slice().unwrap() {
        assert!(is_intrusion(f), "benign activity flagged: {f:#?}");
    }
}

fn fires(id: &str) -> Vec<&'static Finding> {
    let h = hits(id);
    assert!(!h.is_empty(), "{id} did not fire");
    h
}

#[test]
fn ioc_ip() {
    let h = fires("tw-ioc-ip");
    let ips: std::collections::BTreeSet<&str> =
        h.iter().filter_map(|f| f.client_ip.as_deref()).collect();
    assert_eq!(ips.len(), 3, "{ips:?}");
    assert!(h
        .iter()
        .all(|f| f.severity == tokenward_hunt::Severity::High));
}

#[test]
fn ioc_useragent() {
    let h = fires("tw-ioc-useragent");
    assert!(h.iter().any(|f| f.evidence["user_agent"]
        .as_str()
        .unwrap()
        .contains("Edg/106.0.1370.52")));
}

#[test]
fn ioc_key() {
    let h = fires("tw-ioc-key");
    assert_eq!(h[0].evidence["value"], "1LTMzakihiRla_8z2BEJVXeWMqo");
    assert_eq!(h[0].evidence["field"], "kid");
    assert!(h[0].source_file.ends_with("jwt-validation.jsonl"));
}

#[test]
fn mail_new_client_app() {
    let h = fires("tw-mail-new-client-app");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].evidence["mailbox"], VICTIM);
    assert_eq!(
        h[0].evidence["ClientAppId"],
        "9199bf20-a13f-4107-85dc-02114787ef48"
    );
}

#[test]
fn token_without_signin() {
    let h = fires("tw-token-without-signin");
    assert_eq!(h.len(), 1, "one finding for the forged session");
    assert_eq!(h[0].evidence["AADSessionId"], ATTACKER_SESSION);
    assert!(h[0].evidence["records"].as_u64().unwrap() >= 20);
}

#[test]
fn owa_token_for_resource() {
    let h = fires("tw-owa-token-for-resource");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].evidence["issuances"], 6);
    assert!(h[0].evidence["why"]
        .as_str()
        .unwrap()
        .contains("renewal chain"));
}

#[test]
fn mail_bind_spike() {
    let h = fires("tw-mail-bind-spike");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].evidence["mailbox"], VICTIM);
}

#[test]
fn mail_throttled() {
    assert_eq!(fires("tw-mail-throttled").len(), 1);
}

#[test]
fn mail_sync_unusual_client() {
    let h = fires("tw-mail-sync-unusual-client");
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].evidence["ClientInfoString"],
        "Client=REST;Client=RESTSystem;;"
    );
}

#[test]
fn audit_tampering() {
    let h = fires("tw-audit-tampering");
    let ops: Vec<&str> = h
        .iter()
        .map(|f| f.evidence["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        vec![
            "Set-MailboxAuditBypassAssociation",
            "Set-AdminAuditLogConfig"
        ]
    );
}

#[test]
fn audit_gap() {
    let h = fires("tw-audit-gap");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].evidence["gap_end"], "2023-06-23T12:00:00Z");
}

#[test]
fn gateway_rejected_burst() {
    let h = fires("tw-gateway-rejected-burst");
    assert_eq!(h.len(), 1, "one burst, from the proxy");
    assert_eq!(h[0].client_ip.as_deref(), Some("51.89.156.153"));
    assert_eq!(h[0].evidence["rejected"], 24);
    let kids = h[0].evidence["kids"].as_array().unwrap();
    assert!(kids.iter().any(|k| k == "1LTMzakihiRla_8z2BEJVXeWMqo"));
    assert!(h[0].source_file.ends_with("tokenward-gateway/access.jsonl"));
}

#[test]
fn every_rule_is_covered_by_a_test() {
    // Tradecraft the simulated intrusion does not include (Storm-0558 read
    // mail through OWA; it did not export mailboxes): these must stay
    // silent on the example, and their unit tests show them firing.
    const NOT_IN_SCENARIO: &[&str] = &["tw-mailbox-export"];
    for r in BUILTINS.iter().map(|b| b.info) {
        if NOT_IN_SCENARIO.contains(&r.id) {
            assert!(hits(r.id).is_empty(), "{} fired on the example", r.id);
            continue;
        }
        assert!(
            !hits(r.id).is_empty(),
            "{} has no finding in the example",
            r.id
        );
    }
}

#[test]
fn blind_without_signins() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/storm-0558/logs/ual");
    let cfg = HuntConfig {
        inputs: vec![dir],
        ..Default::default()
    };
    let r = run(&cfg, Arc::new(AtomicU64::new(0))).unwrap();
    let st = |id: &str| r.detections.iter().find(|d| d.id == id).unwrap();
    assert_eq!(st("tw-token-without-signin").status, Status::Blind);
    assert!(st("tw-token-without-signin")
        .note
        .as_deref()
        .unwrap()
        .contains("no Entra sign-in logs"));
    assert_eq!(st("tw-owa-token-for-resource").status, Status::Blind);
    assert_eq!(st("tw-ioc-key").status, Status::Blind);
    assert!(r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .all(|f| f.rule_id != "tw-token-without-signin"));
}

/// A finding as text without where it was read: the same records read
/// from another form of export must give exactly these.
fn placeless(f: &Finding) -> String {
    let mut v = serde_json::to_value(f).expect("a finding serialises");
    let m = v.as_object_mut().expect("an object");
    m.remove("source_file");
    m.remove("source_locator");
    v.to_string()
}

/// The Exchange records as an investigator saves them from Windows
/// PowerShell (`Search-UnifiedAuditLog | ConvertTo-Json | Out-File`):
/// UTF-16 LE with a BOM, CRLF, a pretty-printed array of AuditRecord
/// objects whose AuditData is the record as a JSON string and whose
/// CreationDate is the `\/Date(ms)\/` form, here seven hours off the
/// record's own time. Every finding is the same as from the JSON lines, so
/// the transcoding, the array splitting, the expansion of AuditData and
/// the choice of its ISO time over CreationDate all hold together.
#[test]
fn the_exchange_records_saved_by_windows_powershell_give_the_same_findings() {
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/storm-0558/logs");
    let d = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(&logs).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "ual") {
            inputs.push(p);
        }
    }
    inputs.push(logs.join("ual/sharepoint-content.json.gz"));
    let lines = std::fs::read_to_string(logs.join("ual/exchange.jsonl")).unwrap();
    let objects: Vec<serde_json::Value> = lines
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let rec: serde_json::Value = serde_json::from_str(line).unwrap();
            let ms = time::PrimitiveDateTime::parse(
                rec["CreationTime"].as_str().unwrap(),
                &time::format_description::well_known::Iso8601::DEFAULT,
            )
            .unwrap()
            .assume_utc()
            .unix_timestamp()
                * 1000
                // As a PowerShell session seven hours from UTC would write
                // it: only the AuditData time gives the example's findings.
                + 7 * 3600 * 1000;
            serde_json::json!({
                "RunspaceId": "6f7c5a1e-3b2d-4c8e-9a10-2b3c4d5e6f70",
                "RecordType": rec["RecordType"],
                "CreationDate": format!("/Date({ms})/"),
                "UserIds": rec["UserId"],
                "Operations": rec["Operation"],
                "AuditData": line,
                "ResultIndex": i + 1,
                "ResultCount": 5000,
                "Identity": rec["Id"],
                "IsValid": true,
                "ObjectState": "Unchanged",
            })
        })
        .collect();
    let mut pretty = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    serde::Serialize::serialize(
        &objects,
        &mut serde_json::Serializer::with_formatter(&mut pretty, fmt),
    )
    .unwrap();
    // ConvertTo-Json escapes the slashes of a date.
    let text = String::from_utf8(pretty)
        .unwrap()
        .replace("\"/Date(", "\"\\/Date(")
        .replace(")/\"", ")\\/\"")
        .replace('\n', "\r\n");
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let saved = d.path().join("Search-UnifiedAuditLog.json");
    std::fs::write(&saved, utf16).unwrap();
    inputs.push(saved);
    let cfg = HuntConfig {
        inputs,
        ..Default::default()
    };
    let r = run(&cfg, Arc::new(AtomicU64::new(0))).unwrap();
    let f = r
        .files
        .iter()
        .find(|f| f.path.ends_with("Search-UnifiedAuditLog.json"))
        .unwrap();
    assert_eq!(
        (f.format, f.encoding, f.records_read, f.records_rejected),
        (
            Some("powershell-json"),
            Some("utf-16le"),
            lines.lines().count() as u64,
            0
        )
    );
    assert_eq!(f.records_without_time, 0);
    let sorted = |r: &Report| {
        let mut v: Vec<String> = r
            .findings
            .as_slice()
            .unwrap()
            .iter()
            .map(placeless)
            .collect();
        v.sort();
        v
    };
    let (got, want) = (sorted(&r), sorted(report()));
    assert!(want.len() > 10);
    assert_eq!(got, want);
}
