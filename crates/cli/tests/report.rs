//! The HTML incident report, opened in a real browser (headless Chromium,
//! Debian's `chromium`, which `.ci/run` installs): the rendered DOM must
//! show the example's incident, its victims and the blind-spot panel, run
//! the page's own script under its Content-Security-Policy, and keep
//! hostile log values as text.
//!
//! `TOKENWARD_CHROMIUM` names another browser binary.

mod common;
use common::tokenward;

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("TOKENWARD_CHROMIUM") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from("/usr/bin/chromium");
    assert!(
        p.exists(),
        "/usr/bin/chromium is missing: run .ci/run (it installs Debian's chromium) or set TOKENWARD_CHROMIUM"
    );
    p
}

/// The DOM after the page's scripts ran, as Chromium serialises it.
fn rendered_dom(page: &Path, profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs tokenward, which must succeed, then renders `page` in Chromium.
fn render_after(args: &[&str], page: &Path, profile: &Path) -> String {
    let out = tokenward(args);
    common::assert_succeeded(&out);
    rendered_dom(page, profile)
}

#[test]
fn the_example_report_shows_one_high_incident_with_its_victim_and_blind_spots() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let summary = dir.path().join("summary.json");
    let dom = render_after(
        &[
            "hunt",
            "examples/storm-0558/logs",
            "--quiet",
            "--output-format",
            "jsonl",
            "--summary-json",
            summary.to_str().unwrap(),
            "--report",
            page.to_str().unwrap(),
        ],
        &page,
        &dir.path().join("profile"),
    );

    assert!(
        dom.contains("data-script=\"ran\""),
        "the page's script was blocked"
    );
    assert_eq!(
        dom.matches("<article class=\"incident high\"").count(),
        1,
        "one high incident"
    );
    let incident = &dom[dom.find("<article class=\"incident high\"").unwrap()..];
    let incident = &incident[..incident.find("</article>").unwrap()];
    for needle in [
        "id=\"INC-0001\"",
        "dan.okafor@contoso.com", // the victim mailbox
        "erin.walsh@contoso.com", // audit tampering through the same session
        "195.26.87.219",          // IOC IPs
        "51.89.156.153",
        "5b0c0f3e-58a1-4d55-9c2e-0000deadbeef", // the forged session
        "tw-owa-token-for-resource",            // the OWA token renewals
        "1003 mail item(s) bound",              // what was read
        "data-kind=\"throttled\"",              // the throttled window
        "data-kind=\"tampering\"",
        "T1606", // ATT&CK
        "<svg class=\"timeline\"",
    ] {
        assert!(incident.contains(needle), "incident lacks {needle}");
    }
    assert!(dom.contains("Likely compromise: 1 high-severity incident"));
    // The blind-spot panel lists every detection with its status, and the
    // log sources with their time span.
    let blind = &dom[dom.find("id=\"blind-spots\"").unwrap()..];
    assert!(blind.contains("tw-token-without-signin") && blind.contains("data-status=\"ok\""));
    assert!(blind.contains("examples/storm-0558/logs/"));
    // Evidence carries its source record.
    assert!(dom.contains(".jsonl:line "), "source_file:locator");

    // The summary's incidents: the automation contract.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let incidents = doc["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1);
    for field in [
        "id",
        "severity",
        "users",
        "client_ips",
        "sessions",
        "first_seen",
        "last_seen",
        "detections",
        "findings",
    ] {
        assert!(incidents[0].get(field).is_some(), "incident lacks {field}");
    }
    assert_eq!(incidents[0]["severity"], "high");
}

#[test]
fn hostile_log_values_stay_text_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let findings = dir.path().join("findings.jsonl");
    let hostile_user = r#"<img src=x onerror="document.body.setAttribute('data-pwned','img')">"#;
    let hostile_agent =
        r#"</pre><script>document.body.setAttribute('data-pwned','script')</script>"#;
    let hostile_title = r#"<svg onload="document.body.setAttribute('data-pwned','svg')">"#;
    let finding = serde_json::json!({
        "rule_id": "tw-ioc-useragent", "rule_title": hostile_title, "severity": "high",
        "time": "2024-01-02T03:04:05Z", "user": hostile_user, "client_ip": "198.51.100.1\"><b>x</b>",
        "app_id": null, "session_id": "s'><i>y</i>", "token_id": null,
        "source_file": "<u>file</u>.jsonl", "source_locator": "line 1",
        "evidence": {"user_agent": hostile_agent, "source": "<a href=javascript:alert(1)>feed</a>"}
    });
    std::fs::write(&findings, format!("{finding}\n")).unwrap();
    let page = dir.path().join("report.html");
    let dom = render_after(
        &[
            "report",
            "--findings",
            findings.to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ],
        &page,
        &dir.path().join("profile"),
    );
    // The hostile values would mark <body> if they ran; the page's own
    // script marks it too, proving scripts were not simply all blocked.
    let body_tag = &dom[dom.find("<body").unwrap()..];
    let body_tag = &body_tag[..body_tag.find('>').unwrap()];
    assert!(body_tag.contains("data-script=\"ran\""), "{body_tag}");
    assert!(
        !body_tag.contains("data-pwned"),
        "a hostile value ran: {body_tag}"
    );
    for tag in [
        "<img",
        "<script>document",
        "<svg onload",
        "<b>x",
        "<i>y",
        "<u>file",
        "<a href=\"javascript",
    ] {
        assert!(!dom.contains(tag), "{tag} became markup");
    }
    // ... and they are still there, as text.
    assert!(dom.contains("&lt;img src=x onerror="));
    assert!(dom.contains("&lt;/pre&gt;&lt;script&gt;"));
    // A lone IOC user agent is not a high incident.
    assert!(!dom.contains("<article class=\"incident high\""));
    assert!(dom.contains("<article class=\"incident low\""));
}

/// The page is made in two passes over the findings, read back from disk
/// when they spilled: it is the page made from findings held in memory.
#[test]
fn the_page_of_spilled_findings_is_the_page_of_held_ones() {
    let dir = tempfile::tempdir().unwrap();
    let page = |memory: &str, tag: &str| -> String {
        let html = dir.path().join(format!("{tag}.html"));
        let out = tokenward(&[
            "hunt",
            "examples/storm-0558/logs",
            "--quiet",
            "--rules",
            "tests/fixtures/sigma/rules",
            "--rules",
            "rules",
            "-o",
            "/dev/null",
            "--findings-memory",
            memory,
            "--summary-json",
            dir.path().join(format!("{tag}.json")).to_str().unwrap(),
            "--report",
            html.to_str().unwrap(),
        ]);
        common::assert_succeeded(&out);
        std::fs::read_to_string(html).unwrap()
    };
    let held = page("32", "held");
    let spilled = page("0", "spilled");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("spilled.json")).unwrap()).unwrap();
    assert!(
        summary["findings_spilled_runs"].as_u64().unwrap_or(0) > 0,
        "nothing spilled: {}",
        summary["findings_spilled_runs"]
    );
    assert!(held.contains("<article class=\"incident high\""));
    assert_eq!(held, spilled);
}

#[test]
fn report_rebuilds_the_same_page_from_saved_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (findings, summary) = (dir.path().join("f.jsonl"), dir.path().join("s.json"));
    let (direct, rebuilt) = (dir.path().join("a.html"), dir.path().join("b.html"));
    let out = tokenward(&[
        "hunt",
        "examples/storm-0558/logs",
        "--quiet",
        "-o",
        findings.to_str().unwrap(),
        "--output-format",
        "jsonl",
        "--summary-json",
        summary.to_str().unwrap(),
        "--report",
        direct.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = tokenward(&[
        "report",
        "--findings",
        findings.to_str().unwrap(),
        "--summary",
        summary.to_str().unwrap(),
        "-o",
        rebuilt.to_str().unwrap(),
    ]);
    common::assert_succeeded(&out);
    assert_eq!(
        std::fs::read_to_string(&direct).unwrap(),
        std::fs::read_to_string(&rebuilt).unwrap()
    );
    // A broken findings line is named, not skipped.
    std::fs::write(&findings, "{\"rule_id\": 1}\n").unwrap();
    let out = tokenward(&[
        "report",
        "--findings",
        findings.to_str().unwrap(),
        "-o",
        rebuilt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("f.jsonl:1: not a finding"));
    // The findings are read more than once: a pipe or device is refused,
    // not read as empty the second time.
    let out = tokenward(&[
        "report",
        "--findings",
        "/dev/null",
        "-o",
        rebuilt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/null: not a regular file"));
    // A summary that is not a hunt's would leave the page without what
    // incidents left out: refused.
    std::fs::write(&summary, "[]").unwrap();
    let out = tokenward(&[
        "report",
        "--findings",
        direct.to_str().unwrap(),
        "--summary",
        summary.to_str().unwrap(),
        "-o",
        rebuilt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s.json: not a hunt summary"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
