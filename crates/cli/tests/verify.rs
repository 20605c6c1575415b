//! `tokenward verify` end to end on the bundled Storm-0558 example.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

mod common;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tokenward verify --json --tokens -` on the example's policy, its
/// standard input and output piped.
fn verify_piped() -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(["verify", "--policy"])
        .arg(repo().join("examples/storm-0558/policy.toml"))
        .args(["--now", "2023-06-15T08:05:00Z", "--json", "-q"])
        .args(["--tokens", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .current_dir(repo())
        .arg("verify")
        .args([
            "--policy",
            "examples/storm-0558/policy.toml",
            "--now",
            "2023-06-15T08:05:00Z",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn forged_token_is_rejected_as_out_of_scope_and_legit_accepted() {
    let forged = verify(&["--json", &read("examples/storm-0558/forged.jwt")]);
    assert_eq!(forged.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&forged.stdout).unwrap();
    assert_eq!(v["verdict"], "rejected");
    let codes: Vec<&str> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["key-out-of-scope", "key-expired"]);
    assert_eq!(v["kid"], "msa-2016-rs256");
    assert_eq!(v["tid"], "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91");
    assert_eq!(v["claims"]["uti"], "3kVZRE8tFkinHtPA7_EFAA");

    let legit = verify(&["--json", &read("examples/storm-0558/legit.jwt")]);
    assert_eq!(
        legit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&legit.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&legit.stdout).unwrap();
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["reasons"], serde_json::json!([]));
}

#[test]
fn tokens_file_gives_one_verdict_per_line() {
    let out = verify(&["--json", "--tokens", "examples/storm-0558/tokens.txt"]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["line"].as_u64(), lines[0]["verdict"].as_str()),
        (Some(1), Some("accepted"))
    );
    assert_eq!(
        (lines[1]["line"].as_u64(), lines[1]["verdict"].as_str()),
        (Some(2), Some("rejected"))
    );
}

#[test]
fn stdin_and_text_output() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .current_dir(repo())
        .args([
            "verify",
            "--policy",
            "examples/storm-0558/policy.toml",
            "--now",
            "2023-06-15T08:05:00Z",
            "-q",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(read("examples/storm-0558/forged.jwt").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("rejected"), "{text}");
    assert!(text.contains("key-out-of-scope:"), "{text}");
    assert!(out.stderr.is_empty(), "-q silences load warnings");
}

#[test]
fn configuration_and_usage_errors_exit_2_naming_the_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(["verify", "--policy", "/nonexistent/policy.toml", "x.y.z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policy.toml"));
    let bad_now = verify(&["--now", "yesterday", "a.b.c"]);
    assert_eq!(bad_now.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_now.stderr).contains("--now"));
    let missing = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .arg("verify")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "clap usage error");
}

#[test]
fn garbage_token_is_rejected_not_an_error() {
    let out = verify(&["--json", "not a token"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reasons"][0]["code"], "malformed");
}

/// A line that is not UTF-8 is one rejected token; the lines after it are
/// still verified.
#[test]
fn invalid_utf8_line_is_rejected_and_the_rest_verified() {
    let dir = tempfile::tempdir().unwrap();
    let legit = read("examples/storm-0558/legit.jwt");
    let mut text = format!("{}\n{}\n", legit.trim(), legit.trim()).into_bytes();
    text.extend_from_slice(b"eyJ\xff\xfe.bad\n");
    text.extend_from_slice(format!("{}\n", legit.trim()).as_bytes());
    let f = dir.path().join("tokens.txt");
    std::fs::write(&f, text).unwrap();
    let out = verify(&["--json", "--tokens", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "one rejected token");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[2]["line"], 3);
    assert_eq!(lines[2]["verdict"], "rejected");
    assert_eq!(lines[2]["reasons"][0]["code"], "malformed");
    assert_eq!(lines[3]["verdict"], "accepted");
}

/// An endless line (`/dev/zero`) is read in bounded memory: the first line
/// is `too-large` and the read goes on; here a 300 MiB line, piped in
/// through `--tokens -` (so the test needs no disk), stands in.
#[test]
fn an_overlong_line_is_too_large_in_bounded_memory() {
    let mut child = verify_piped();
    let mut stdin = child.stdin.take().unwrap();
    let legit = read("examples/storm-0558/legit.jwt");
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let chunk = vec![b'A'; 1 << 20];
        for _ in 0..300 {
            stdin.write_all(&chunk)?;
        }
        stdin.write_all(b"\n")?;
        stdin.write_all(legit.trim().as_bytes())?;
        stdin.write_all(b"\n")
        // Dropping `stdin` ends the input.
    });
    let peak_kib = common::peak_rss_kib_until_exit(&mut child);
    writer.join().unwrap().expect("the whole input was read");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["reasons"][0]["code"], "too-large");
    assert_eq!(lines[1]["verdict"], "accepted");
    assert_eq!(lines[1]["line"], 2);
    assert!(peak_kib > 0, "memory was sampled");
    assert!(
        peak_kib < 100 * 1024,
        "peak RSS {peak_kib} KiB for a 300 MiB line"
    );
}

/// Tokens piped in from a log get their verdict while the pipe is still
/// open: a verdict held in a buffer until the input ends would never come
/// for `tail -f log | tokenward verify --tokens -`.
#[test]
fn a_piped_token_is_answered_before_the_pipe_ends() {
    use std::io::BufRead;
    let mut child = verify_piped();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", read("examples/storm-0558/legit.jwt").trim()).unwrap();
    stdin.flush().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    // The pipe stays open while the verdict is awaited.
    let line = rx.recv_timeout(std::time::Duration::from_secs(20));
    drop(stdin);
    let status = child.wait().unwrap();
    let line = line.expect("a verdict while standard input was still open");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["line"], 1);
    assert_eq!(status.code(), Some(0));
}

/// A key set that never ends (`/dev/urandom`) is refused at the file cap,
/// not read into memory.
#[test]
fn an_endless_key_set_file_is_refused_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(repo().join("examples/storm-0558/policy.toml")).unwrap();
    let patched: String = policy
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("jwks") {
                "jwks = \"/dev/urandom\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(patched.contains("/dev/urandom"));
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, patched).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(["verify", "--policy"])
        .arg(&p)
        .arg(read("examples/storm-0558/legit.jwt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/dev/urandom") && err.contains("limit"),
        "{err}"
    );
}
