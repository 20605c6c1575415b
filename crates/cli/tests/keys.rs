//! `tokenward keys` end to end: the bundled example key set, exit codes,
//! JSON output, baselines and URL sources served from loopback.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

const NOW: &str = "2023-06-15T00:00:00Z";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn keys(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .current_dir(repo())
        .arg("keys")
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn codes(report: &Value) -> Vec<String> {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["findings"].as_array().unwrap())
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Path -> (status, body).
type Routes = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// A loopback HTTP server answering fixed bodies per path; stops on drop.
struct Server {
    base: String,
    routes: Routes,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let routes: Routes = Arc::default();
        let (flag, table) = (stop.clone(), routes.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, body) = table
                    .lock()
                    .unwrap()
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, Vec::new()));
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            }
        });
        Server {
            base,
            routes,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, path: &str, status: u16, body: Vec<u8>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn example_jwks() -> Vec<u8> {
    std::fs::read(repo().join("examples/keys/common-v2.0-keys.json")).unwrap()
}

#[test]
fn example_key_set_reports_mixed_trust_domains() {
    let out = keys(&[
        "audit",
        "examples/keys/common-v2.0-keys.json",
        "--now",
        NOW,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json_of(&out);
    let c = codes(&report);
    for expected in [
        "mixed-trust-domains",
        "cert-expired",
        "key-stale",
        "alg-missing",
    ] {
        assert!(c.iter().any(|x| x == expected), "{expected} in {c:?}");
    }
    assert_eq!(report["failed"], true);
    assert_eq!(report["fail_on"], "high");
    assert_eq!(report["sources"][0]["keys"], 5);
    let mixed = &report["sources"][0]["findings"][0];
    assert_eq!(mixed["code"], "mixed-trust-domains");
    assert_eq!(mixed["severity"], "high");

    // The text report says the same.
    let text = keys(&["audit", "examples/keys/common-v2.0-keys.json", "--now", NOW]);
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(s.contains("HIGH     mixed-trust-domains"), "{s}");
    assert!(s.contains("expired 2021-04-04"), "{s}");
    assert_eq!(text.status.code(), Some(1));
}

#[test]
fn fail_on_threshold_decides_the_exit_code() {
    let run = |sev: &str| {
        keys(&[
            "audit",
            "examples/keys/common-v2.0-keys.json",
            "--now",
            NOW,
            "--fail-on",
            sev,
        ])
        .status
        .code()
    };
    assert_eq!(run("critical"), Some(0));
    assert_eq!(run("high"), Some(1));
    assert_eq!(run("low"), Some(1));
    assert_eq!(run("severe"), Some(2));
}

#[test]
fn unreadable_sources_and_bad_arguments_exit_2() {
    let missing = keys(&["audit", "examples/keys/nope.json", "--now", NOW]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.json"));
    let bad_now = keys(&[
        "audit",
        "examples/keys/common-v2.0-keys.json",
        "--now",
        "yesterday",
    ]);
    assert_eq!(bad_now.status.code(), Some(2));
    let not_jwks = keys(&["audit", "Cargo.toml", "--now", NOW]);
    assert_eq!(not_jwks.status.code(), Some(2));
}

#[test]
fn storm_0558_kid_is_denied_out_of_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let mut set: Value = serde_json::from_slice(&example_jwks()).unwrap();
    set["keys"][4]["kid"] = json!("1LTMzakihiRla_8z2BEJVXeWMqo");
    let path = dir.path().join("storm.json");
    std::fs::write(&path, set.to_string()).unwrap();
    let out = keys(&[
        "audit",
        path.to_str().unwrap(),
        "--now",
        NOW,
        "--json",
        "--fail-on",
        "critical",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    let denied = report["sources"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "key-denied")
        .cloned()
        .unwrap();
    assert_eq!(denied["severity"], "critical");
    assert_eq!(denied["kid"], "1LTMzakihiRla_8z2BEJVXeWMqo");
}

#[test]
fn snapshot_then_baseline_reports_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("baseline.json");
    let out = keys(&[
        "snapshot",
        "examples/keys/common-v2.0-keys.json",
        "-o",
        snap.to_str().unwrap(),
        "--now",
        NOW,
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    assert_eq!(saved["keys"].as_array().unwrap().len(), 5);

    let out = keys(&[
        "audit",
        "examples/keys/common-v2.0-keys-2023-07.json",
        "--baseline",
        snap.to_str().unwrap(),
        "--now",
        "2023-07-10T00:00:00Z",
        "--json",
    ]);
    let c = codes(&json_of(&out));
    assert_eq!(c.iter().filter(|x| *x == "key-added").count(), 1, "{c:?}");
    assert_eq!(c.iter().filter(|x| *x == "key-removed").count(), 1, "{c:?}");
    assert!(!c.iter().any(|x| x == "key-changed"), "{c:?}");
    // The expired key left with the rotation.
    assert!(!c.iter().any(|x| x == "cert-expired"), "{c:?}");

    // The same set against its own snapshot: no baseline findings.
    let out = keys(&[
        "audit",
        "examples/keys/common-v2.0-keys.json",
        "--baseline",
        snap.to_str().unwrap(),
        "--now",
        NOW,
        "--json",
    ]);
    let c = codes(&json_of(&out));
    assert!(!c.iter().any(|x| x == "key-added" || x == "key-removed"));
}

#[test]
fn issuer_url_over_loopback_follows_discovery() {
    // Shaped like Microsoft's common endpoint: the discovery document's
    // issuer is the {tenantid} template, the keys are the example set.
    let server = Server::start();
    let base = server.base.clone();
    server.set("/keys", 200, example_jwks());
    server.set(
        "/common/v2.0/.well-known/openid-configuration",
        200,
        json!({"issuer": format!("{base}/{{tenantid}}/v2.0"), "jwks_uri": format!("{base}/keys")})
            .to_string()
            .into_bytes(),
    );
    let issuer = format!("{base}/common/v2.0");
    let out = keys(&[
        "audit",
        &issuer,
        "--now",
        NOW,
        "--json",
        "--allow-http-loopback",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json_of(&out);
    let c = codes(&report);
    assert!(c.iter().any(|x| x == "mixed-trust-domains"), "{c:?}");
    // The template issuer is reported (low): per-key issuer checks needed.
    let mismatch = report["sources"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "issuer-mismatch")
        .cloned()
        .unwrap();
    assert_eq!(mismatch["severity"], "low");
    assert_eq!(report["sources"][0]["origin"], format!("{base}/keys"));

    // A discovery document naming a foreign issuer is high.
    server.set(
        "/evil/.well-known/openid-configuration",
        200,
        json!({"issuer": "https://login.example/evil", "jwks_uri": format!("{base}/keys")})
            .to_string()
            .into_bytes(),
    );
    let out = keys(&[
        "audit",
        &format!("{base}/evil"),
        "--now",
        NOW,
        "--json",
        "--allow-http-loopback",
        "--fail-on",
        "critical",
    ]);
    let report = json_of(&out);
    let high = report["sources"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["code"] == "issuer-mismatch" && f["severity"] == "high");
    assert!(high, "{report}");

    // Without the opt-in, plain http is refused even on loopback: exit 2.
    let refused = keys(&["audit", &issuer, "--now", NOW]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("http"));

    // Unreachable (404) sources exit 2 as well.
    let missing = keys(&[
        "audit",
        &format!("jwks:{base}/gone"),
        "--allow-http-loopback",
    ]);
    assert_eq!(missing.status.code(), Some(2));
}
