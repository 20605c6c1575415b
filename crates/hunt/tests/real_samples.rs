//! Every public sample export in tests/fixtures/logs parses with zero
//! rejected records, and normalised fields match the raw data.

use std::path::{Path, PathBuf};

use tokenward_hunt::timefmt::rfc3339;
use tokenward_hunt::{read_events, Event, EventKind};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/logs")
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else if p.file_name().unwrap() != "README.md" {
            out.push(p);
        }
    }
}

fn events(rel: &str) -> Vec<Event> {
    let (rep, evs) = read_events(&fixtures().join(rel), None);
    assert!(rep.error.is_none(), "{rel}: {:?}", rep.error);
    assert_eq!(rep.records_rejected, 0, "{rel}: {:?}", rep.first_rejects);
    evs
}

#[test]
fn every_sample_parses_without_rejects() {
    let mut files = Vec::new();
    all_files(&fixtures(), &mut files);
    assert_eq!(files.len(), 18, "all shared/data samples are fixtures");
    for f in files {
        let (rep, evs) = read_events(&f, None);
        assert!(rep.error.is_none(), "{}: {:?}", f.display(), rep.error);
        assert_eq!(
            rep.records_rejected,
            0,
            "{}: {:?}",
            f.display(),
            rep.first_rejects
        );
        assert!(rep.records_read > 0, "{}", f.display());
        assert_eq!(rep.records_read, rep.records_evaluated);
        assert_eq!(evs.len() as u64, rep.records_read, "{}", f.display());
    }
}

#[test]
fn record_counts_match_the_readme() {
    let n = |rel: &str| events(rel).len();
    assert_eq!(n("azure-sentinel-training-lab/office_activity.csv"), 266);
    assert_eq!(n("azure-sentinel-training-lab/sign-in_adelete.csv"), 56);
    assert_eq!(n("azure-sentinel-training-lab/AuditLogs_Hunting.csv"), 5);
    assert_eq!(n("azure-sentinel-training-lab/azureActivity_adele.csv"), 23);
    assert_eq!(
        n("invictus-microsoft-extractor-suite/20250502131826-AuditLogs.json"),
        123
    );
    assert_eq!(
        n("invictus-microsoft-extractor-suite/20250502132320-servicePrincipal-SignInLogs.json"),
        494
    );
    assert_eq!(
        n("invictus-microsoft-extractor-suite/20250502132321-managedIdentity-SignInLogs.json"),
        28
    );
    assert_eq!(
        n("invictus-microsoft-extractor-suite/202504220931-RiskyDetections.csv"),
        58
    );
    assert_eq!(
        n("invictus-microsoft-extractor-suite/21042025121726-OAuthPermissions.csv"),
        508
    );
    assert_eq!(
        n("invictus-microsoft-extractor-suite/MailboxRules.csv"),
        110
    );
    assert_eq!(n("otrf-security-datasets/WindowsEvents.json"), 38);
    assert_eq!(
        n("otrf-security-datasets/Microsoft365DefenderEvents.json"),
        9
    );
    assert_eq!(
        n("msdocs-office-365-management-api/management-activity-api-retrieve-content-sample.json"),
        3
    );
}

#[test]
fn management_api_blob_fields() {
    let evs = events(
        "msdocs-office-365-management-api/management-activity-api-retrieve-content-sample.json",
    );
    let e = &evs[0];
    assert_eq!(e.kind, EventKind::Audit);
    assert_eq!(rfc3339(e.time.unwrap()), "2015-06-29T20:03:19Z");
    assert_eq!(e.user(), Some("admin@contoso.onmicrosoft.com"));
    assert_eq!(e.client_ip(), Some("134.170.188.221"));
    assert_eq!(e.operation(), Some("PasswordLogonInitialAuthUsingPassword"));
    assert_eq!(e.result(), Some("failed"));
    assert_eq!(e.workload(), Some("AzureActiveDirectory"));
    assert_eq!(e.record_type(), Some(9));
    assert_eq!(e.locator.record, 1);
}

#[test]
fn log_analytics_json_mail_items_accessed() {
    let evs = events("otrf-security-datasets/OfficeActivityEvents.json");
    let e = &evs[0];
    assert_eq!(e.kind, EventKind::Audit);
    assert_eq!(rfc3339(e.time.unwrap()), "2021-08-02T13:32:07Z");
    assert_eq!(e.user(), Some("pgustavo@simulandlabs.com"));
    assert_eq!(e.client_ip(), Some("1.2.3.4"));
    assert_eq!(e.app_id(), Some("00000003-0000-0000-c000-000000000000"));
    assert_eq!(
        e.client_app_id(),
        Some("5a95e683-08ad-424e-a441-1d1aec52c02c")
    );
    assert_eq!(e.record_type(), Some(50));
    // Folders and OperationProperties arrive as JSON strings and are expanded.
    assert!(e.get("Folders.FolderItems.InternetMessageId").is_some());
    assert!(e
        .name_value("OperationProperties", "MailAccessType")
        .is_some());
    assert_eq!(e.locator.to_string(), "line 1");
}

#[test]
fn defender_cloud_app_events_unwrap_raw_event_data() {
    let evs = events("otrf-security-datasets/Microsoft365DefenderEvents.json");
    let e = evs
        .iter()
        .find(|e| e.operation() == Some("MailItemsAccessed"))
        .unwrap();
    assert_eq!(e.kind, EventKind::Audit);
    assert_eq!(e.inner, Some("RawEventData"));
    assert_eq!(rfc3339(e.time.unwrap()), "2021-08-02T13:32:07Z");
    assert_eq!(e.client_ip(), Some("1.2.3.4"));
    assert_eq!(
        e.get_str("RawEventData.Workload").as_deref(),
        Some("Exchange")
    );
}

#[test]
fn graph_signins_with_bom() {
    let evs = events(
        "invictus-microsoft-extractor-suite/20250502132320-servicePrincipal-SignInLogs.json",
    );
    let e = &evs[0];
    assert_eq!(e.kind, EventKind::SignIn);
    assert_eq!(rfc3339(e.time.unwrap()), "2025-05-02T00:32:36Z");
    assert_eq!(e.client_ip(), Some("3.140.144.215"));
    assert_eq!(e.app_id(), Some("0930ea9f-98e8-46f5-9123-b16358290e70"));
    assert_eq!(e.token_id(), Some("ByVTDAGxkECy8U12ji81AA"));
    assert_eq!(e.session_id(), Some("004ca149-c18f-a151-12cf-ebb662153620"));
    assert_eq!(e.result(), Some("0"));
    let (rep, _) = read_events(
        &fixtures().join(
            "invictus-microsoft-extractor-suite/20250502132320-servicePrincipal-SignInLogs.json",
        ),
        None,
    );
    assert_eq!(rep.encoding, Some("utf-8-bom"));
    assert_eq!(rep.format, Some("graph-json"));
}

#[test]
fn log_analytics_csv_signins_and_locale_times() {
    let evs = events("azure-sentinel-training-lab/sign-in_adelete.csv");
    let e = &evs[0];
    assert_eq!(e.kind, EventKind::SignIn);
    assert_eq!(rfc3339(e.time.unwrap()), "2021-04-28T14:08:45.221Z");
    assert_eq!(e.user(), Some("adelev@m365x816222.onmicrosoft.com"));
    assert_eq!(e.client_ip(), Some("175.45.176.99"));
    assert_eq!(e.app_id(), Some("c44b4083-3bb0-49c1-b47d-974e53cbdf3c"));
    // `X [UTC]` and `X_dynamic` columns are also reachable by the table's names.
    assert!(e.get("CreatedDateTime").is_some());
    assert!(e.get("LocationDetails.city").is_some() || e.get("LocationDetails").is_some());
    assert_eq!(e.locator.to_string(), "record 1 (line 2)");
}

#[test]
fn csv_multiline_json_cell_and_bracketed_ipv6() {
    let evs = events("azure-sentinel-training-lab/office_activity_inbox_rule.csv");
    let e = &evs[0];
    assert_eq!(e.operation(), Some("New-InboxRule"));
    assert_eq!(e.user(), Some("adelev@contoso.onmicrosoft.com"));
    assert_eq!(e.client_ip(), Some("2a01:110:8068:7:9bf8:aa87:e00a:5f1f"));
    assert_eq!(
        e.name_value("Parameters", "AlwaysDeleteOutlookRulesBlob")
            .as_deref(),
        Some("False")
    );
}

#[test]
fn record_type_as_name_or_number() {
    let evs = events("azure-sentinel-training-lab/office_activity.csv");
    assert!(evs.iter().any(|e| e.record_type() == Some(50)));
    assert!(evs.iter().any(
        |e| e.get_str("RecordType").as_deref() == Some("ExchangeItem")
            && e.record_type() == Some(2)
    ));
    let mia: Vec<&Event> = evs
        .iter()
        .filter(|e| e.operation() == Some("MailItemsAccessed"))
        .collect();
    assert_eq!(mia.len(), 3);
    assert!(mia.iter().all(|e| e.time.is_some() && e.user().is_some()));
}

#[test]
fn every_event_has_a_time_where_the_format_has_one() {
    for rel in [
        "azure-sentinel-training-lab/office_activity.csv",
        "azure-sentinel-training-lab/azureActivity_adele.csv",
        "invictus-microsoft-extractor-suite/20250502131826-AuditLogs.json",
        "otrf-security-datasets/AADAuditEvents.json",
        "otrf-security-datasets/WindowsEvents.json",
    ] {
        let evs = events(rel);
        assert!(evs.iter().all(|e| e.time.is_some()), "{rel}");
    }
}
