//! `tokenward hunt` as a user runs it: inputs through a pipe.

use std::io::Write;
use std::process::{Command, Stdio};

fn ual_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"CreationTime\":\"2023-06-10T10:{:02}:{:02}\",\"Operation\":\"Send\",\"Workload\":\"Exchange\",\"UserId\":\"u{i}@x\"}}\n",
                (i / 60) % 60,
                i % 60
            )
        })
        .collect()
}

/// Sniffing must not eat the head of a stream that cannot be reopened:
/// every record piped in is read, whether the file is sniffed once (no
/// detection reads the sign-in index) or first, to order files.
#[test]
fn a_pipe_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    for n in [50usize, 10_000] {
        let summary = dir.path().join(format!("summary-{n}.json"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .args([
                "hunt",
                "/dev/stdin",
                "-q",
                "--output-format",
                "jsonl",
                "-o",
                "/dev/null",
                "--summary-json",
            ])
            .arg(&summary)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let text = ual_lines(n);
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        assert_eq!(
            s["records"]["read"],
            serde_json::json!(n),
            "{n} records piped"
        );
        assert_eq!(s["records"]["rejected"], serde_json::json!(0));
    }
}

#[test]
fn sigma_rule_memory_budget_is_a_flag_and_refuses_the_rule_past_it() {
    let d = tempfile::tempdir().unwrap();
    let values: String = (0..20_000)
        .map(|i| format!("            - 'user{i}@contoso.example'\n"))
        .collect();
    let f = d.path().join("big.yml");
    std::fs::write(
        &f,
        format!("title: many users\nid: big-rule\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        UserId:\n{values}    condition: sel\nlevel: high\n"),
    )
    .unwrap();
    let path = f.to_str().unwrap();
    let tokenward = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = tokenward(&["rules", "check", "--sigma-rule-memory", "1", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("big-rule") && text.contains("per-rule memory budget of 1 MiB"),
        "{text}"
    );
    let out = tokenward(&["rules", "check", path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
