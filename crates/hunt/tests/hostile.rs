//! Inputs shaped by an attacker or a careless user (issue 10's reading
//! rows): every record is still accounted for, nothing blocks, nothing is
//! read twice, memory stays bounded.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokenward_hunt::{run, HuntConfig, Report};

const UAL: &str = r#"{"CreationTime":"2023-06-10T10:00:00","Operation":"Send","Workload":"Exchange","UserId":"a@x","ClientIP":"195.26.87.219"}"#;

fn hunt(inputs: &[&Path]) -> Report {
    let cfg = HuntConfig {
        inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    };
    run(&cfg, Arc::new(AtomicU64::new(0))).unwrap()
}

/// How an oversized record reaches the hunt without taking disk.
#[derive(Clone, Copy)]
enum Carrier {
    /// Streamed through a FIFO (a pipe: read on from its sniffed head).
    Fifo,
    /// Written gzip-compressed to a regular file (reopened after sniffing).
    GzipFile,
}

impl Carrier {
    /// Every carrier this platform has, each with the file name it takes
    /// for records written as `name` (`.gz` added for the gzip file).
    fn each(name: &str) -> Vec<(Carrier, String)> {
        let mut all = vec![(Carrier::GzipFile, format!("{name}.gz"))];
        if cfg!(unix) {
            all.push((Carrier::Fifo, name.to_owned()));
        }
        all
    }
}

/// Puts `head`, about 80 MiB of `filler` repeated (past the 64 MiB
/// record limit), then `tail` at `f` by `carrier`, and hunts it: the one
/// oversized record must be rejected at `locator` and the 3 others read.
fn assert_oversized_record_skipped(
    f: &Path,
    carrier: Carrier,
    head: &str,
    filler: &str,
    tail: &str,
    locator: &str,
) {
    let (head, tail) = (head.to_owned(), tail.to_owned());
    let chunk = filler.repeat((1 << 20) / filler.len()).into_bytes();
    let write = move |w: &mut dyn Write| -> std::io::Result<()> {
        w.write_all(head.as_bytes())?;
        for _ in 0..80 {
            w.write_all(&chunk)?;
        }
        w.write_all(tail.as_bytes())
    };
    let writer = match carrier {
        Carrier::Fifo => {
            let made = std::process::Command::new("mkfifo")
                .arg(f)
                .status()
                .unwrap();
            assert!(made.success());
            let path = f.to_path_buf();
            // Opening a FIFO to write waits for the hunt to open it to read.
            Some(std::thread::spawn(move || -> std::io::Result<()> {
                write(&mut std::fs::OpenOptions::new().write(true).open(&path)?)
            }))
        }
        Carrier::GzipFile => {
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(f).unwrap(),
                flate2::Compression::fast(),
            );
            write(&mut gz).unwrap();
            gz.finish().unwrap();
            None
        }
    };
    let r = hunt(&[f]);
    let rep = &r.files[0];
    assert_eq!(
        (
            rep.records_read,
            rep.records_evaluated,
            rep.records_rejected
        ),
        (4, 3, 1),
        "{rep:?}"
    );
    assert_eq!(rep.first_rejects[0].locator, locator);
    assert!(rep.first_rejects[0].reason.contains("larger than 64 MiB"));
    if let Some(w) = writer {
        w.join().unwrap().expect("the hunt read the whole stream");
    }
}

fn lines(n: usize) -> String {
    (0..n).map(|_| format!("{UAL}\n")).collect()
}

#[cfg(unix)]
#[test]
fn symlink_loops_end_and_linked_files_are_read_once() {
    let d = tempfile::tempdir().unwrap();
    let sub = d.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("a.jsonl"), lines(3)).unwrap();
    std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
    std::os::unix::fs::symlink(".", sub.join("self")).unwrap();
    std::os::unix::fs::symlink("a.jsonl", sub.join("again.jsonl")).unwrap();
    let r = hunt(&[d.path()]);
    assert_eq!(r.totals(), (3, 3, 0), "{:?}", r.files);
    assert_eq!(r.files.len(), 1);
    let ioc = r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .find(|f| f.rule_id == "tw-ioc-ip")
        .unwrap();
    assert_eq!(ioc.evidence.get("records"), Some(&serde_json::json!(3)));
}

#[cfg(unix)]
#[test]
fn a_fifo_inside_a_directory_is_skipped_not_waited_for() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.jsonl"), lines(2)).unwrap();
    let fifo = d.path().join("pipe.jsonl");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let r = hunt(&[d.path()]);
    assert_eq!(r.totals(), (2, 2, 0));
    assert!(
        r.skipped.iter().any(|s| s.ends_with("pipe.jsonl")),
        "{:?}",
        r.skipped
    );
}

#[test]
fn a_truncated_gzip_keeps_every_record_before_the_cut_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let text = lines(20_000);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let cut = &gz[..gz.len() * 3 / 4];
    let f = d.path().join("x.jsonl.gz");
    std::fs::write(&f, cut).unwrap();
    // What a plain decoder recovers from the same bytes.
    let mut recovered = Vec::new();
    let _ = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(cut), &mut recovered);
    let whole_lines = recovered.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(whole_lines > 10_000);
    let r = hunt(&[&f]);
    let rep = &r.files[0];
    assert!(
        rep.error
            .as_deref()
            .is_some_and(|e| e.contains("read error")),
        "{rep:?}"
    );
    assert_eq!(
        rep.records_read,
        rep.records_evaluated + rep.records_rejected
    );
    assert!(
        rep.records_evaluated >= whole_lines,
        "{} < {whole_lines}",
        rep.records_evaluated
    );
    assert!(
        r.has_unreadable_input(),
        "exit status 2: the file could not be read to its end"
    );
}

/// A gzip bomb: a file of well under 1 MiB that inflates to one line of
/// 80 MiB, past the record limit, between two records. The line is
/// rejected with its locator and the record after it is read.
#[test]
fn a_gzip_bomb_is_one_rejected_line_and_the_rest_is_read() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bomb.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(format!("{UAL}\n").as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..80 {
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(format!("\n{UAL}\n").as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    assert!(bytes.len() < 1 << 20, "{} bytes compressed", bytes.len());
    std::fs::write(&f, bytes).unwrap();
    let r = hunt(&[&f]);
    let rep = &r.files[0];
    assert!(rep.gzip);
    assert_eq!(
        (
            rep.records_read,
            rep.records_evaluated,
            rep.records_rejected
        ),
        (3, 2, 1),
        "{rep:?}"
    );
    assert_eq!(rep.first_rejects[0].locator, "line 2");
    assert!(rep.first_rejects[0].reason.contains("larger than 64 MiB"));
    assert!(!r.has_unreadable_input());
}

/// Each carrier (a pipe, a regular file) takes its own path through the
/// engine's sniffing: both are checked.
#[test]
fn an_oversized_line_is_rejected_with_its_line_and_the_rest_is_read() {
    let d = tempfile::tempdir().unwrap();
    for (carrier, name) in Carrier::each("big.jsonl") {
        assert_oversized_record_skipped(
            &d.path().join(name),
            carrier,
            &format!("{UAL}\n{{\"a\":\""),
            "x",
            &format!("\"}}\n{UAL}\n{UAL}\n"),
            "line 2",
        );
    }
}

#[test]
fn an_oversized_array_element_is_rejected_and_the_others_read() {
    let d = tempfile::tempdir().unwrap();
    for (carrier, name) in Carrier::each("big.json") {
        // One string with escaped quotes and brackets inside.
        assert_oversized_record_skipped(
            &d.path().join(name),
            carrier,
            &format!("[\n{UAL},\n{{\"a\":[\""),
            "x\\\"]}[{",
            &format!("\"]}},\n{UAL},\n{UAL}\n]\n"),
            "record 2 (line 3)",
        );
    }
}

const STORM_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.159 Safari/537.36";

/// Hunts `text` written to `name` (with Sigma rules when given) and returns
/// the indicator findings as (rule, field) and the duplicate-key count.
fn indicator_fields(name: &str, text: &str, rules: Option<&str>) -> (Vec<(String, String)>, u64) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join(name);
    std::fs::write(&f, text).unwrap();
    let mut cfg = HuntConfig {
        inputs: vec![f],
        ..Default::default()
    };
    if let Some(r) = rules {
        let p = d.path().join("rules.yml");
        std::fs::write(&p, r).unwrap();
        let set = tokenward_hunt::sigma::RuleSet::load(&[p], &Default::default()).unwrap();
        cfg.sigma = Some(Arc::new(set));
    }
    let r = run(&cfg, Arc::new(AtomicU64::new(0))).unwrap();
    assert_eq!(r.totals().2, 0, "{:?}", r.files);
    let mut found: Vec<(String, String)> = r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .filter(|f| f.rule_id.starts_with("tw-ioc-"))
        .map(|f| {
            let field = f
                .evidence
                .get("field")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            (f.rule_id.to_string(), field.to_string())
        })
        .collect();
    found.sort();
    (found, r.files[0].records_with_duplicate_keys)
}

/// Records with an indicator (address, user agent, key id) in the first of
/// two copies of a key, and a benign value in the last copy that a
/// last-copy reading (ours, most parsers') keeps.
fn hidden_in_first_copies() -> Vec<String> {
    vec![
        UAL.replace(
            r#""ClientIP":"195.26.87.219""#,
            r#""ClientIP":"195.26.87.219","ClientIP":"10.0.0.1""#,
        ),
        format!(
            r#"{{"CreationTime":"2023-06-10T10:01:00","Operation":"MailItemsAccessed","Workload":"Exchange","UserId":"b@x","ClientIPAddress":"10.0.0.2","ClientInfoString":"{STORM_UA}","ClientInfoString":"Outlook-iOS/2.0"}}"#
        ),
        r#"{"time":"2023-06-10T10:02:00Z","kid":"1LTMzakihiRla_8z2BEJVXeWMqo","kid":"benign-kid","verdict":"accepted","client_ip":"10.0.0.3"}"#.to_string(),
    ]
}

const HIDDEN_FOUND: [(&str, &str); 3] = [
    ("tw-ioc-ip", "ClientIP (earlier copy of a key named twice)"),
    ("tw-ioc-key", "kid (earlier copy of a key named twice)"),
    (
        "tw-ioc-useragent",
        "ClientInfoString (earlier copy of a key named twice)",
    ),
];

fn expected() -> Vec<(String, String)> {
    HIDDEN_FOUND
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn an_indicator_in_the_earlier_copy_of_a_duplicate_key_is_found_in_json_lines() {
    let text = hidden_in_first_copies().join("\n");
    let (found, dups) = indicator_fields("a.jsonl", &text, None);
    assert_eq!(found, expected());
    assert_eq!(dups, 3);
}

#[test]
fn an_indicator_in_the_earlier_copy_is_found_when_records_are_read_whole() {
    // A keyword rule makes the engine parse whole records, not projections.
    let keyword = "title: k\nid: k-1\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    keywords:\n        - 'never-present-text'\n    condition: keywords\n";
    let text = hidden_in_first_copies().join("\n");
    let (found, dups) = indicator_fields("a.jsonl", &text, Some(keyword));
    assert_eq!(found, expected());
    assert_eq!(dups, 3);
}

#[test]
fn an_indicator_in_the_earlier_copy_is_found_in_a_json_array_and_in_csv_audit_data() {
    let text = format!("[{}]", hidden_in_first_copies().join(",\n"));
    let (found, _) = indicator_fields("a.json", &text, None);
    assert_eq!(found, expected());
    // Purview CSV: the duplicate sits in the AuditData column's JSON.
    let audit = r#"{"CreationTime":"2023-06-10T10:00:00","Operation":"Send","Workload":"Exchange","UserId":"a@x","ClientIP":"195.26.87.219","ClientIP":"10.0.0.1"}"#;
    let csv = format!(
        "CreationDate,UserIds,Operations,AuditData\n2023-06-10T10:00:00.0000000Z,a@x,Send,\"{}\"\n",
        audit.replace('"', "\"\"")
    );
    let (found, dups) = indicator_fields("a.csv", &csv, None);
    assert_eq!(
        found,
        vec![("tw-ioc-ip".to_string(), HIDDEN_FOUND[0].1.to_string())]
    );
    assert_eq!(dups, 1);
}

/// A CSV with two columns of one name reads like a JSON record with a key
/// named twice, on the projected path and on the whole-record path: the
/// last column is the value, the earlier one is searched as a shadowed
/// copy and the row is counted.
#[test]
fn an_indicator_in_the_earlier_of_two_csv_columns_is_found() {
    let keyword = "title: k\nid: k-1\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    keywords:\n        - 'never-present-text'\n    condition: keywords\n";
    let header = "CreationTime,Operation,Workload,UserId,ClientIP,ClientIP\n";
    let earlier = format!("{header}2023-06-10T10:00:00,Send,Exchange,a@x,195.26.87.219,10.0.0.1\n");
    let later = format!("{header}2023-06-10T10:00:00,Send,Exchange,a@x,10.0.0.1,195.26.87.219\n");
    for rules in [None, Some(keyword)] {
        let (found, dups) = indicator_fields("a.csv", &earlier, rules);
        assert_eq!(
            found,
            vec![("tw-ioc-ip".to_string(), HIDDEN_FOUND[0].1.to_string())],
            "whole records: {}",
            rules.is_some()
        );
        assert_eq!(dups, 1);
        // The indicator is the value kept: found as the event's address.
        let (found, dups) = indicator_fields("a.csv", &later, rules);
        assert_eq!(
            found,
            vec![("tw-ioc-ip".to_string(), "client_ip".to_string())]
        );
        assert_eq!(dups, 1);
    }
}

#[test]
fn benign_duplicates_and_indicators_in_the_last_copy_read_as_before() {
    // The same records with the copies swapped: the indicator is the value
    // kept, found under the plain field name.
    let swapped: Vec<String> = hidden_in_first_copies()
        .iter()
        .map(|r| {
            r.replace(
                r#""ClientIP":"195.26.87.219","ClientIP":"10.0.0.1""#,
                r#""ClientIP":"10.0.0.1","ClientIP":"195.26.87.219""#,
            )
            .replace(
                &format!(r#""ClientInfoString":"{STORM_UA}","ClientInfoString":"Outlook-iOS/2.0""#),
                &format!(r#""ClientInfoString":"Outlook-iOS/2.0","ClientInfoString":"{STORM_UA}""#),
            )
            .replace(
                r#""kid":"1LTMzakihiRla_8z2BEJVXeWMqo","kid":"benign-kid""#,
                r#""kid":"benign-kid","kid":"1LTMzakihiRla_8z2BEJVXeWMqo""#,
            )
        })
        .collect();
    let (found, dups) = indicator_fields("a.jsonl", &swapped.join("\n"), None);
    let fields: Vec<&str> = found.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        fields.iter().all(|f| !f.contains("earlier copy")),
        "{fields:?}"
    );
    assert_eq!(dups, 3);
    // Duplicates without any indicator: counted, nothing found.
    let benign: Vec<String> = hidden_in_first_copies()
        .iter()
        .map(|r| {
            r.replace("195.26.87.219", "10.9.9.9")
                .replace(STORM_UA, "Outlook-Android/2.0")
                .replace("1LTMzakihiRla_8z2BEJVXeWMqo", "another-kid")
        })
        .collect();
    let (found, _) = indicator_fields("a.jsonl", &benign.join("\n"), None);
    assert_eq!(found, vec![]);
}
