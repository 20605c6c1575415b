//! `tokenward events`: every record hunt reads, one normalised JSON line
//! each, with exactly the locators hunt's findings carry, and rejected
//! records counted as in hunt.

mod common;
use common::tokenward;

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::Value;

use tokenward_hunt::export::COLUMNS;

/// Exports the bundled example into DIR/events.jsonl; returns the path and
/// the events.
fn export_example(dir: &std::path::Path, extra: &[&str]) -> (PathBuf, Vec<Value>) {
    export(dir, "examples/storm-0558/logs", extra)
}

/// Exports `input` into DIR/events.jsonl; returns the path and the events.
fn export(dir: &std::path::Path, input: &str, extra: &[&str]) -> (PathBuf, Vec<Value>) {
    let events = dir.join("events.jsonl");
    let mut args = vec!["events", input, "-q", "-o", events.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = tokenward(&args);
    common::assert_succeeded(&out);
    let lines = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, lines)
}

#[test]
fn every_record_hunt_reads_becomes_one_event_with_hunts_locator() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let (_, lines) = export_example(dir.path(), &["--summary-json", summary.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(
        lines.len() as u64,
        doc["records"]["evaluated"].as_u64().unwrap()
    );
    assert_eq!(doc["records"]["rejected"], 0);
    for l in &lines {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        for c in COLUMNS.map(|c| c.name) {
            assert!(keys.contains(&c), "{c} missing in {l}");
        }
        let raw: Value = serde_json::from_str(l["raw"].as_str().unwrap()).unwrap();
        assert!(raw.is_object());
    }
    // The CSV export's AuditData is merged into raw, as hunt sees it.
    let csv = lines
        .iter()
        .find(|l| l["source_file"].as_str().unwrap().ends_with(".csv"))
        .unwrap();
    assert!(
        csv["raw"].as_str().unwrap().contains("AppAccessContext"),
        "{csv}"
    );

    // Every finding of hunt points at an exported event.
    let hunt = tokenward(&[
        "hunt",
        "examples/storm-0558/logs",
        "-q",
        "--output-format",
        "jsonl",
    ]);
    let at: HashSet<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["source_file"].as_str().unwrap().to_owned(),
                l["source_locator"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let findings: Vec<Value> = String::from_utf8(hunt.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!findings.is_empty());
    for f in findings.iter().filter(|f| f["rule_id"] != "tw-audit-gap") {
        let key = (
            f["source_file"].as_str().unwrap().to_owned(),
            f["source_locator"].as_str().unwrap().to_owned(),
        );
        assert!(at.contains(&key), "{key:?} not exported");
    }
}

#[test]
fn rejected_records_are_counted_and_write_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(
        &input,
        "{\"CreationTime\":\"2024-01-01T00:00:00\",\"Operation\":\"MailItemsAccessed\",\"UserId\":\"a@x\"}\n{not json\n{\"CreationTime\":\"2024-01-01T00:01:00\",\"Operation\":\"Send\",\"UserId\":\"b@x\"}\n",
    )
    .unwrap();
    let events = dir.path().join("e.jsonl");
    let out = tokenward(&[
        "events",
        input.to_str().unwrap(),
        "-o",
        events.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 records") && stderr.contains("2 events written, 1 rejected"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 2"),
        "the rejected record is named: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(&events).unwrap().lines().count(), 2);

    let out = tokenward(&["events", input.to_str().unwrap(), "-q", "-o", "/dev/full"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write"));
}

/// The table `tokenward sql --schema` prints takes the export as is, in
/// real engines installed by `.ci/run`: chDB (embedded ClickHouse) through
/// the `CREATE TABLE`, and PySpark (local mode, Java 17) through the schema
/// string with FAILFAST parsing. Every row loads, every time parses, every
/// locator stays distinct, and `raw` still answers JSON queries.
#[test]
fn events_load_into_clickhouse_and_spark_through_the_printed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (events, lines) = export_example(dir.path(), &[]);
    let timed = lines.iter().filter(|l| !l["time"].is_null()).count() as u64;
    let signins = lines.iter().filter(|l| l["log_kind"] == "signin").count() as u64;
    let mail = lines
        .iter()
        .filter(|l| {
            l["raw"]
                .as_str()
                .unwrap()
                .contains("\"Operation\":\"MailItemsAccessed\"")
        })
        .count() as u64;
    assert!(mail > 0 && signins > 0);

    let python = std::env::var_os("TOKENWARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo().join(".ci/venv/bin/python"));
    assert!(
        python.exists(),
        "{}: run .ci/run (it installs chdb and pyspark)",
        python.display()
    );
    for (dialect, script) in [
        ("clickhouse", "load_events_chdb.py"),
        ("spark", "load_events_spark.py"),
    ] {
        let schema = tokenward(&["sql", "--dialect", dialect, "--schema"]);
        assert!(schema.status.success());
        let schema_file = dir.path().join(format!("{dialect}.schema"));
        std::fs::write(&schema_file, &schema.stdout).unwrap();
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(common::repo().join("tests/sql").join(script))
            .arg(&schema_file)
            .arg(&events);
        if dialect == "clickhouse" {
            cmd.arg(dir.path().join("chdb"));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{dialect}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{dialect}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        let n = |k: &str| {
            let v = &counts[k];
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("{dialect}: {counts}"))
        };
        assert_eq!(n("rows"), lines.len() as u64, "{dialect}: {counts}");
        assert_eq!(n("located"), lines.len() as u64, "{dialect}: {counts}");
        assert_eq!(n("timed"), timed, "{dialect}: {counts}");
        assert_eq!(n("signins"), signins, "{dialect}: {counts}");
        assert_eq!(n("mail"), mail, "{dialect}: {counts}");
    }
}

/// A real Log Analytics AzureActivity export (the Sentinel training lab's):
/// each event names its caller's app and token from the `Claims` column,
/// as findings on it do.
#[test]
fn azure_activity_events_name_the_callers_app_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = export(
        dir.path(),
        "tests/fixtures/logs/azure-sentinel-training-lab/azureActivity_adele.csv",
        &[],
    );
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["log_kind"], "azure-activity", "{l}");
        let raw: Value = serde_json::from_str(l["raw"].as_str().unwrap()).unwrap();
        let claims = &raw["Claims"];
        assert!(claims.is_object(), "{raw}");
        assert_eq!(l["app_id"], claims["appid"], "{l}");
        assert_eq!(l["token_id"], claims["uti"], "{l}");
        assert!(l["token_id"].as_str().is_some_and(|t| !t.is_empty()), "{l}");
    }
}
