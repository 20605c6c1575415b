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
