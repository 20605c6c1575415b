//! Malformed input: clear errors naming file and locator, no panic, and the
//! other records still evaluated.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokenward_hunt::{read_events, run, HuntConfig};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tw-malformed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const UAL: &str = r#"{"CreationTime":"2023-06-19T01:00:00","Id":"1","Operation":"FileAccessed","RecordType":6,"Workload":"SharePoint","UserId":"a@contoso.com","ClientIP":"192.0.2.1"}"#;
const MIA: &str = r#"{"CreationTime":"2023-06-19T01:00:00","Id":"2","Operation":"MailItemsAccessed","RecordType":50,"Workload":"Exchange","UserId":"a@contoso.com","ClientIPAddress":"192.0.2.1"}"#;

#[test]
fn truncated_json_lines() {
    let d = tmpdir("trunc");
    let f = d.join("t.jsonl");
    std::fs::write(&f, format!("{UAL}\n{}\n{MIA}\n{UAL}", &MIA[..60])).unwrap();
    let (rep, evs) = read_events(&f, None);
    assert_eq!(
        (
            rep.records_read,
            rep.records_evaluated,
            rep.records_rejected
        ),
        (4, 3, 1)
    );
    assert_eq!(evs.len(), 3);
    assert_eq!(rep.first_rejects[0].locator, "line 2");
    assert!(
        rep.first_rejects[0].reason.starts_with("truncated JSON"),
        "{}",
        rep.first_rejects[0].reason
    );
}

#[test]
fn truncated_json_array() {
    let d = tmpdir("trunc-array");
    let f = d.join("blob.json");
    std::fs::write(&f, format!("[\n{UAL},\n{MIA},\n{}", &UAL[..50])).unwrap();
    let (rep, evs) = read_events(&f, None);
    assert_eq!(rep.format, Some("ual-json"));
    assert_eq!(
        (
            rep.records_read,
            rep.records_evaluated,
            rep.records_rejected
        ),
        (3, 2, 1)
    );
    assert_eq!(evs.len(), 2);
    assert_eq!(rep.first_rejects[0].locator, "record 3 (line 4)");
    assert!(rep.first_rejects[0]
        .reason
        .contains("file ends inside this record"));
}

#[test]
fn invalid_json_and_bad_utf8_in_lines() {
    let d = tmpdir("utf8");
    let f = d.join("u.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(UAL.as_bytes());
    bytes.extend_from_slice(
        b"\n{\"CreationTime\":\"2023-06-19T01:00:00\",\"Operation\":\"x\xff\xfe\"}\n",
    );
    bytes.extend_from_slice(b"{\"CreationTime\": nope}\n");
    bytes.extend_from_slice(MIA.as_bytes());
    bytes.extend_from_slice(b"\n\n42\n");
    std::fs::write(&f, bytes).unwrap();
    let (rep, evs) = read_events(&f, None);
    assert_eq!(
        (
            rep.records_read,
            rep.records_evaluated,
            rep.records_rejected
        ),
        (5, 2, 3)
    );
    assert_eq!(evs.len(), 2);
    let r = &rep.first_rejects;
    assert_eq!(r[0].locator, "line 2");
    assert!(r[0].reason.starts_with("invalid UTF-8"), "{}", r[0].reason);
    assert_eq!(r[1].locator, "line 3");
    assert!(r[1].reason.starts_with("invalid JSON"), "{}", r[1].reason);
    assert_eq!(r[2].locator, "line 6");
    assert!(
        r[2].reason.starts_with("not a JSON object"),
        "{}",
        r[2].reason
    );
}

#[test]
fn csv_with_a_broken_quote() {
    let d = tmpdir("csv");
    let f = d.join("purview.csv");
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let text = format!(
        "RecordId,CreationDate,RecordType,Operation,UserId,AuditData\r\n1,6/19/2023 1:00:00 AM,6,FileAccessed,a@contoso.com,{}\r\n2,6/19/2023 1:00:00 AM,50,MailItemsAccessed,a@contoso.com,\"{{\"\"CreationTime\r\n3,6/19/2023 1:00:00 AM,50,MailItemsAccessed,a@contoso.com,{}\r\n",
        q(UAL),
        q(MIA)
    );
    std::fs::write(&f, text).unwrap();
    let (rep, evs) = read_events(&f, None);
    assert_eq!(rep.format, Some("purview-csv"));
    assert_eq!(
        (
            rep.records_read,
            rep.records_evaluated,
            rep.records_rejected
        ),
        (3, 2, 1)
    );
    assert_eq!(evs.len(), 2);
    assert_eq!(rep.first_rejects[0].locator, "record 2 (line 3)");
    assert!(
        rep.first_rejects[0].reason.contains("unbalanced quote"),
        "{}",
        rep.first_rejects[0].reason
    );
    assert_eq!(evs[1].operation(), Some("MailItemsAccessed"));
}

#[test]
fn empty_and_binary_files_in_a_hunt() {
    let d = tmpdir("hunt");
    std::fs::write(d.join("empty.json"), b"").unwrap();
    std::fs::write(d.join("blank.jsonl"), b"  \r\n\n").unwrap();
    let mut bin = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    bin.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
    std::fs::write(d.join("binary.json"), &bin).unwrap();
    std::fs::write(d.join("good.jsonl"), format!("{UAL}\n{MIA}\n")).unwrap();
    let cfg = HuntConfig {
        inputs: vec![d.clone()],
        ..Default::default()
    };
    let rep = run(&cfg, Arc::new(AtomicU64::new(0))).unwrap();
    let by = |n: &str| rep.files.iter().find(|f| f.path.ends_with(n)).unwrap();
    assert_eq!(
        by("empty.json").note.as_deref(),
        Some("empty file: no records")
    );
    assert!(by("empty.json").error.is_none());
    assert!(by("blank.jsonl").error.is_none());
    let b = by("binary.json");
    assert!(
        b.error
            .as_deref()
            .unwrap()
            .starts_with("binary data at byte"),
        "{:?}",
        b.error
    );
    assert_eq!(by("good.jsonl").records_evaluated, 2);
    assert!(
        rep.has_unreadable_input(),
        "an unreadable input makes the run exit 2"
    );
    let (read, evaluated, rejected) = rep.totals();
    assert_eq!(read, evaluated + rejected);
}

#[test]
fn utf16_and_gzip_inputs() {
    let d = tmpdir("enc");
    let text = format!("{UAL}\r\n{MIA}\r\n");
    let mut le = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        le.extend_from_slice(&u.to_le_bytes());
    }
    std::fs::write(d.join("ps-out.json"), &le).unwrap();
    let (rep, evs) = read_events(&d.join("ps-out.json"), None);
    assert_eq!(rep.encoding, Some("utf-16le"));
    assert_eq!((rep.records_read, rep.records_rejected), (2, 0));
    assert_eq!(evs[1].operation(), Some("MailItemsAccessed"));

    let gz = d.join("x.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let (rep, evs) = read_events(&gz, None);
    assert!(rep.gzip);
    assert_eq!(rep.format, Some("ual-jsonl"));
    assert_eq!(evs.len(), 2);
}

#[test]
fn powershell_export_csv_with_type_line_and_semicolons() {
    let d = tmpdir("pscsv");
    let f = d.join("ual.csv");
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let text = format!(
        "#TYPE Deserialized.Microsoft.Exchange.Management.SystemConfigurationTasks.AuditRecord\r\n\"RecordType\";\"CreationDate\";\"UserIds\";\"Operations\";\"AuditData\";\"ResultIndex\"\r\n\"ExchangeItemAggregated\";\"19.06.2023 01:00:00\";\"a@contoso.com\";\"MailItemsAccessed\";{};\"1\"\r\n",
        q(MIA)
    );
    std::fs::write(&f, text).unwrap();
    let (rep, evs) = read_events(&f, None);
    assert_eq!(rep.format, Some("powershell-csv"));
    assert_eq!(rep.records_rejected, 0);
    let e = &evs[0];
    assert_eq!(e.inner, Some("AuditData"));
    assert_eq!(e.operation(), Some("MailItemsAccessed"));
    assert_eq!(
        tokenward_hunt::timefmt::rfc3339(e.time.unwrap()),
        "2023-06-19T01:00:00Z"
    );
    assert_eq!(e.client_ip(), Some("192.0.2.1"));
}
