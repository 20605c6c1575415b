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

/// Writes `head`, about 80 MiB of `filler` repeated (past the 64 MiB
/// record limit), then `tail` to `f`, and hunts it: the one oversized
/// record must be rejected at `locator` and the 3 others read.
fn assert_oversized_record_skipped(f: &Path, head: &str, filler: &str, tail: &str, locator: &str) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(f).unwrap());
    w.write_all(head.as_bytes()).unwrap();
    let chunk = filler.repeat((1 << 20) / filler.len()).into_bytes();
    for _ in 0..80 {
        w.write_all(&chunk).unwrap();
    }
    w.write_all(tail.as_bytes()).unwrap();
    drop(w);
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

#[test]
fn an_oversized_line_is_rejected_with_its_line_and_the_rest_is_read() {
    let d = tempfile::tempdir().unwrap();
    assert_oversized_record_skipped(
        &d.path().join("big.jsonl"),
        &format!("{UAL}\n{{\"a\":\""),
        "x",
        &format!("\"}}\n{UAL}\n{UAL}\n"),
        "line 2",
    );
}

#[test]
fn an_oversized_array_element_is_rejected_and_the_others_read() {
    let d = tempfile::tempdir().unwrap();
    // One string with escaped quotes and brackets inside.
    assert_oversized_record_skipped(
        &d.path().join("big.json"),
        &format!("[\n{UAL},\n{{\"a\":[\""),
        "x\\\"]}[{",
        &format!("\"]}},\n{UAL},\n{UAL}\n]\n"),
        "record 2 (line 3)",
    );
}
