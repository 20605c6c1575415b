//! `tokenward hunt` as a user runs it: inputs through a pipe.

use std::io::Write;
use std::process::{Command, Stdio};

mod common;

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

/// `tokenward hunt /dev/stdin` writing its summary to `summary`, its
/// standard input piped.
fn hunt_stdin(summary: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(["hunt", "/dev/stdin", "-q", "--output-format", "jsonl"])
        .args(["-o", "/dev/null", "--summary-json"])
        .arg(summary)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The summary a successful hunt wrote to `path` (`--summary-json`).
fn summary_of(out: &std::process::Output, path: &std::path::Path) -> serde_json::Value {
    common::assert_succeeded(out);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Sniffing must not eat the head of a stream that cannot be reopened:
/// every record piped in is read, whether the file is sniffed once (no
/// detection reads the sign-in index) or first, to order files.
#[test]
fn a_pipe_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    for n in [50usize, 10_000] {
        let summary = dir.path().join(format!("summary-{n}.json"));
        let mut child = hunt_stdin(&summary);
        let text = ual_lines(n);
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let s = summary_of(&out, &summary);
        assert_eq!(
            s["records"]["read"],
            serde_json::json!(n),
            "{n} records piped"
        );
        assert_eq!(s["records"]["rejected"], serde_json::json!(0));
    }
}

/// A gzip bomb piped in, compressed on the fly: one line of 1 GiB between
/// two records, a few MiB on the wire. The line is rejected as too large
/// and the records around it are read, in memory far below the line's
/// size (peak RSS polled from /proc while the hunt runs).
#[test]
fn a_gzip_bomb_is_read_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let mut child = hunt_stdin(&summary);
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut gz = flate2::write::GzEncoder::new(stdin, flate2::Compression::fast());
        let record = ual_lines(1);
        gz.write_all(record.as_bytes())?;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..1024 {
            gz.write_all(&chunk)?;
        }
        gz.write_all(b"\n")?;
        gz.write_all(record.as_bytes())?;
        gz.finish().map(drop)
    });
    let peak_kib = common::peak_rss_kib_until_exit(&mut child);
    let out = child.wait_with_output().unwrap();
    writer
        .join()
        .unwrap()
        .expect("the hunt read the whole stream");
    let s = summary_of(&out, &summary);
    assert_eq!(s["records"]["read"], serde_json::json!(3), "{s}");
    assert_eq!(s["records"]["rejected"], serde_json::json!(1), "{s}");
    assert_eq!(s["files"][0]["gzip"], serde_json::json!(true), "{s}");
    assert!(peak_kib > 0, "memory was sampled");
    assert!(
        peak_kib < 300 * 1024,
        "peak RSS {peak_kib} KiB for a 1 GiB line"
    );
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

/// A hunt over the example logs and test Sigma rules with `flag` set to
/// `memory` MiB and `$TMPDIR` at `tmp`: its status, CSV findings and
/// summary, written to `dir` under `tag`.
fn hunt_with_memory(
    flag: &str,
    memory: &str,
    tmp: &std::path::Path,
    dir: &std::path::Path,
    tag: &str,
) -> (
    std::process::Output,
    std::io::Result<String>,
    std::io::Result<String>,
) {
    let root = common::repo();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(["hunt", "-q", "--output-format", "csv", flag, memory])
        .arg(root.join("examples/storm-0558/logs"))
        .arg("--rules")
        .arg(root.join("tests/fixtures/sigma/rules"))
        .arg("-o")
        .arg(dir.join(format!("{tag}.csv")))
        .arg("--summary-json")
        .arg(dir.join(format!("{tag}.json")))
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{tag}.{ext}")));
    (out, read("csv"), read("json"))
}

/// Runs [`hunt_with_memory`] with `flag` at `held` MiB and at 0, and
/// asserts the two wrote the same findings and summary but for the time
/// taken and the summary's `runs_key` (0 when held, more when spilled).
/// Then a `$TMPDIR` that cannot take the spill stops the hunt with
/// status 2 and a message naming it and containing `says`.
fn spilled_as_held(flag: &str, held: &str, runs_key: &str, says: &str) {
    let d = tempfile::tempdir().unwrap();
    let tmp = d.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let hunt = |memory: &str, tmp: &std::path::Path, tag: &str| {
        let (out, csv, summary) = hunt_with_memory(flag, memory, tmp, d.path(), tag);
        common::assert_succeeded(&out);
        (csv.unwrap(), summary.unwrap())
    };
    let (held_csv, held_summary) = hunt(held, &tmp, "held");
    let (spilled_csv, spilled_summary) = hunt("0", &tmp, "spilled");
    assert!(held_csv.lines().count() > 20, "{held_csv}");
    assert_eq!(spilled_csv, held_csv);
    let without_seconds = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("seconds");
        let runs = o.remove(runs_key).unwrap().as_u64().unwrap();
        (v, runs)
    };
    let ((spilled_summary, spilled_runs), (held_summary, held_runs)) = (
        without_seconds(&spilled_summary),
        without_seconds(&held_summary),
    );
    assert_eq!(spilled_summary, held_summary);
    assert!(
        spilled_runs > 0 && held_runs == 0,
        "{spilled_runs} {held_runs}"
    );
    // Nothing spilled stays behind.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    let gone = d.path().join("no-such-dir");
    let (failed, _, _) = hunt_with_memory(flag, "0", &gone, d.path(), "failed");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-dir") && err.contains(says), "{err}");
}

/// `--findings-memory 0` spills every finding to `$TMPDIR` and writes the
/// same findings, summary and page as a hunt that holds them; a `$TMPDIR`
/// that cannot take them stops the hunt with status 2, naming it.
#[test]
fn findings_spilled_to_tmpdir_are_written_as_held_ones() {
    spilled_as_held(
        "--findings-memory",
        "32",
        "findings_spilled_runs",
        "findings spilled to",
    );
}

/// `--detection-memory 0` writes every session and mailbox bucket the
/// built-in detections keep to `$TMPDIR` at every change, and the hunt
/// finds what one that holds them finds; a `$TMPDIR` that cannot take
/// them fails the hunt with status 2, naming it.
#[test]
fn detection_state_spilled_to_tmpdir_is_judged_as_held() {
    spilled_as_held(
        "--detection-memory",
        "64",
        "detection_state_spilled_runs",
        "writing detection state to a temporary file",
    );
}

/// `tokenward hunt` over the example logs as JSON lines, run in `cwd`
/// with `extra` arguments.
fn hunt_example(cwd: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/storm-0558/logs"
    );
    Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(["hunt", example, "-q", "--output-format", "jsonl"])
        .args(extra)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Standard output of a run that must succeed.
fn succeeded(out: std::process::Output) -> Vec<u8> {
    common::assert_succeeded(&out);
    out.stdout
}

/// `-o -` writes the findings to standard output, as leaving `-o` out
/// does, and creates no file named `-`.
#[test]
fn dash_output_is_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| succeeded(hunt_example(dir.path(), extra));
    let dashed = run(&["-o", "-"]);
    assert!(!dir.path().join("-").exists());
    assert_eq!(dashed, run(&[]));
    assert!(String::from_utf8_lossy(&dashed).lines().count() > 10);
}

/// The findings, the summary and the page are written at the same time,
/// so two of them naming one file is refused before the hunt runs; the
/// null device takes both.
#[test]
fn two_outputs_naming_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| hunt_example(dir.path(), extra);
    for args in [
        &["-o", "out.json", "--summary-json", "out.json"][..],
        &["-o", "out.json", "--summary-json", "./out.json"],
        &["--summary-json", "s.json", "--report", "s.json"],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("give each its own file"), "{err}");
        assert!(!dir.path().join("out.json").exists());
    }
    succeeded(run(&["-o", "/dev/null", "--summary-json", "/dev/null"]));
    succeeded(run(&["-o", "f.jsonl", "--summary-json", "s.json"]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.json")).unwrap()).unwrap();
    let findings = std::fs::read_to_string(dir.path().join("f.jsonl")).unwrap();
    assert_eq!(
        summary["findings"],
        serde_json::json!(findings.lines().count())
    );
    assert!(summary["incidents"]
        .as_array()
        .is_some_and(|i| !i.is_empty()));
}

/// `tw-token-without-signin` (blind without sign-ins, so not shown records
/// while none has been read) judges the example's Exchange records the same
/// whether the sign-ins that issued their tokens come in a file of their
/// own or after them in one file (read again once the sign-ins are known).
/// Through a pipe, which cannot be read again, it is shown them as they
/// come and judges them when it finishes: on the example, the same.
#[test]
fn a_token_is_judged_the_same_whether_its_signins_come_apart_after_it_or_piped() {
    let logs = common::repo().join("examples/storm-0558/logs");
    let ual = std::fs::read_to_string(logs.join("ual/exchange.jsonl")).unwrap();
    let signins =
        std::fs::read_to_string(logs.join("entra/signins-noninteractive-PT1H.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (apart, mixed) = (dir.path().join("apart"), dir.path().join("mixed"));
    std::fs::create_dir_all(&apart).unwrap();
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::write(apart.join("ual.jsonl"), &ual).unwrap();
    std::fs::write(apart.join("signins.json"), &signins).unwrap();
    let both = format!("{ual}{signins}");
    std::fs::write(mixed.join("all.jsonl"), &both).unwrap();
    // The detection's findings (but for where each record was read) and
    // its coverage.
    let judged = |input: &str, stdin: Option<&str>| {
        let (out, sum) = (dir.path().join("f.jsonl"), dir.path().join("s.json"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .args(["hunt", input, "-q", "--output-format", "jsonl", "-o"])
            .arg(&out)
            .arg("--summary-json")
            .arg(&sum)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let text = text.to_owned();
            std::thread::spawn(move || pipe.write_all(text.as_bytes()));
        }
        let s = summary_of(&child.wait_with_output().unwrap(), &sum);
        let mut findings: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|f| f["rule_id"] == "tw-token-without-signin")
            .map(|f| f["evidence"].clone())
            .collect();
        findings.sort_by_key(|f| f.to_string());
        let coverage = s["detections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "tw-token-without-signin")
            .unwrap()
            .clone();
        (findings, coverage)
    };
    let (findings, coverage) = judged(apart.to_str().unwrap(), None);
    assert_eq!(findings.len(), 1, "the example's forged session");
    assert_eq!(coverage["status"], "ok");
    assert!(coverage["note"]
        .as_str()
        .unwrap()
        .contains("2366 of 2366 token-bearing records judged"));
    assert_eq!(
        judged(mixed.to_str().unwrap(), None),
        (findings.clone(), coverage.clone())
    );
    assert_eq!(judged("/dev/stdin", Some(&both)), (findings, coverage));
    // Without the sign-ins it is blind, and says why, whether it was shown
    // the records (a pipe) or not (a file).
    std::fs::remove_file(apart.join("signins.json")).unwrap();
    for (input, stdin) in [
        ("/dev/stdin", Some(ual.as_str())),
        (apart.to_str().unwrap(), None),
    ] {
        let (none, blind) = judged(input, stdin);
        assert!(none.is_empty());
        assert_eq!(blind["status"], "blind");
        assert!(blind["note"]
            .as_str()
            .unwrap()
            .contains("no Entra sign-in logs given"));
    }
}

/// The users of the `tw-ioc-useragent` findings of a hunt over UAL logon
/// records, one per (user, user agent as written in the JSON), with
/// `extra` arguments; sorted.
fn user_agent_hits(records: &[(&str, &str)], extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let text: String = records
        .iter()
        .map(|(user, agent)| {
            format!(
                "{{\"CreationTime\":\"2023-06-15T10:00:00\",\"Id\":\"{user}\",\"Operation\":\"UserLoggedIn\",\"RecordType\":15,\"Workload\":\"AzureActiveDirectory\",\"UserId\":\"{user}@x.example\",\"ClientIP\":\"198.51.100.7\",\"ExtendedProperties\":[{{\"Name\":\"UserAgent\",\"Value\":\"{agent}\"}}]}}\n"
            )
        })
        .collect();
    std::fs::write(logs.join("ual.jsonl"), text).unwrap();
    let findings = dir.path().join("f.jsonl");
    let mut args = vec![
        "hunt",
        logs.to_str().unwrap(),
        "-q",
        "--output-format",
        "jsonl",
        "-o",
        findings.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = common::tokenward(&args);
    common::assert_succeeded(&out);
    assert!(
        out.stderr.is_empty(),
        "-q writes nothing to standard error: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut users: Vec<String> = std::fs::read_to_string(&findings)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|f| f["rule_id"] == "tw-ioc-useragent")
        .map(|f| f["user"].as_str().unwrap().to_string())
        .collect();
    users.sort();
    users
}

/// A user-agent indicator holding `+`, `&` and `/` is found in records
/// whatever the writer escaped of them: as written, as .NET's default
/// encoder and Sentinel's OfficeActivity write `+` and `&` (`\u002B`,
/// `\u0026`), and with PHP's `\/`; a record of another user agent is not.
/// Before, only the first was found: the screen looked for the whole text
/// in the raw bytes and let the escaped records go unread.
#[test]
fn a_user_agent_indicator_is_found_however_its_record_escapes_it() {
    let dir = tempfile::tempdir().unwrap();
    let ioc = dir.path().join("ioc.txt");
    std::fs::write(&ioc, "ua:EvilTool/2.0 (+https://x.example/?a=1&b=2)\n").unwrap();
    let users = user_agent_hits(
        &[
            ("plain", "EvilTool/2.0 (+https://x.example/?a=1&b=2)"),
            (
                "dotnet",
                r"EvilTool/2.0 (\u002Bhttps://x.example/?a=1\u0026b=2)",
            ),
            ("php", r"EvilTool\/2.0 (+https:\/\/x.example\/?a=1&b=2)"),
            (
                "other",
                r"EvilTool/2.1 (\u002Bhttps://x.example/?a=1\u0026b=2)",
            ),
        ],
        &["--ioc", ioc.to_str().unwrap()],
    );
    assert_eq!(
        users,
        ["dotnet@x.example", "php@x.example", "plain@x.example"]
    );
}

/// The built-in user-agent indicators match ignoring case, and so does
/// their screen: a record spelling Storm-0558's Chrome 92 user agent in
/// mixed case is found (before, only the exact, lower- and upper-case
/// spellings passed the screen); one of another Chrome version is not.
#[test]
fn a_user_agent_indicator_is_found_in_any_case() {
    const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.159 Safari/537.36";
    let mixed = UA.replace("Chrome", "CHROME").replace("Safari", "safari");
    let other = UA.replace("92.0.4515.159", "93.0.4577.63");
    let users = user_agent_hits(&[("exact", UA), ("mixed", &mixed), ("other", &other)], &[]);
    assert_eq!(users, ["exact@x.example", "mixed@x.example"]);
}

/// A user-agent indicator without a version number, typed in another
/// case than the log writes it, is found in records of any case, escaped
/// or not: before, its screen looked for its exact, lower- and upper-case
/// spellings, so an analyst's `ua:client=rest;...` never reached the
/// detection for Exchange's `Client=REST;...`. Another agent holding the
/// same words apart is not found.
#[test]
fn a_user_agent_indicator_without_a_version_is_found_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let ioc = dir.path().join("ioc.txt");
    std::fs::write(&ioc, "ua:evil-agent/fleet (remote)\n").unwrap();
    let users = user_agent_hits(
        &[
            ("exchange", "Evil-Agent/Fleet (Remote)"),
            ("shouting", r"EVIL-AGENT\/FLEET (REMOTE)"),
            ("lower", "evil-agent/fleet (remote)"),
            ("apart", "Evil-Agent/Fleetwood (remote)"),
        ],
        &["--ioc", ioc.to_str().unwrap(), "--no-builtin-iocs"],
    );
    assert_eq!(
        users,
        [
            "exchange@x.example",
            "lower@x.example",
            "shouting@x.example"
        ]
    );
}

/// A Sigma keyword rule finds its keyword (any case, deep in a value) in
/// the same records whatever the export: JSON lines, whose records stay
/// projected and carry their words, a Purview CSV export, whose rows are
/// built whole, and a JSON array.
#[test]
fn a_keyword_rule_matches_in_json_lines_csv_and_arrays_alike() {
    let d = tempfile::tempdir().unwrap();
    let rule = d.path().join("keyword.yml");
    std::fs::write(
        &rule,
        "title: forwarding rule keyword\nid: kw-rule\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    keywords:\n        - 'forwarding-rule-xyz'\n    condition: keywords\nlevel: high\n",
    )
    .unwrap();
    let hit = serde_json::json!({"CreationTime": "2023-06-10T10:00:00", "Id": "1",
        "Operation": "New-InboxRule", "Workload": "Exchange", "UserId": "a@x",
        "Parameters": [{"Name": "Name", "Value": "Forwarding-Rule-XYZ"}]});
    let miss = serde_json::json!({"CreationTime": "2023-06-10T11:00:00", "Id": "2",
        "Operation": "New-InboxRule", "Workload": "Exchange", "UserId": "b@x",
        "Parameters": [{"Name": "Name", "Value": "forwarding-rule"}]});
    let lines = format!("{hit}\n{miss}\n");
    let quoted = |v: &serde_json::Value| v.to_string().replace('"', "\"\"");
    let csv = format!(
        "RecordId,CreationDate,Operation,AuditData\n1,2023-06-10T10:00:00Z,New-InboxRule,\"{}\"\n2,2023-06-10T11:00:00Z,New-InboxRule,\"{}\"\n",
        quoted(&hit),
        quoted(&miss)
    );
    let array = serde_json::json!([hit, miss]).to_string();
    for (name, text) in [("a.jsonl", lines), ("b.csv", csv), ("c.json", array)] {
        let input = d.path().join(name);
        std::fs::write(&input, text).unwrap();
        let out = common::tokenward(&[
            "hunt",
            "-q",
            "--output-format",
            "jsonl",
            input.to_str().unwrap(),
            "--rules",
            rule.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let found: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|f: &serde_json::Value| f["rule_id"] == "kw-rule")
            .collect();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(found[0]["user"], "a@x", "{name}");
    }
}

/// Incidents weigh at most `--incident-findings` findings: past it, the
/// rules that fired most are left out, named with their counts in the
/// summary, and no incident holds their findings; the rest are still
/// grouped.
#[test]
fn incidents_leave_out_the_rules_that_fired_most_past_their_maximum() {
    let root = common::repo();
    let d = tempfile::tempdir().unwrap();
    let hunt =
        |max: Option<u64>, tag: &str, page: bool| -> (Vec<serde_json::Value>, serde_json::Value) {
            let (findings, summary) = (
                d.path().join(format!("{tag}.jsonl")),
                d.path().join(format!("{tag}.json")),
            );
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenward"));
            cmd.args(["hunt", "-q", "--output-format", "jsonl"])
                .arg(root.join("examples/storm-0558/logs"))
                .arg("--rules")
                .arg(root.join("tests/fixtures/sigma/rules"))
                .arg("-o")
                .arg(&findings)
                .arg("--summary-json")
                .arg(&summary);
            if let Some(max) = max {
                cmd.args(["--incident-findings", &max.to_string()]);
            }
            if page {
                cmd.arg("--report")
                    .arg(d.path().join(format!("{tag}.html")));
            }
            let s = summary_of(&cmd.output().unwrap(), &summary);
            let lines = std::fs::read_to_string(&findings).unwrap();
            (
                lines
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect(),
                s,
            )
        };
    let in_incidents = |s: &serde_json::Value| -> std::collections::BTreeSet<String> {
        s["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["detections"].as_array().unwrap().iter())
            .map(|d| d.as_str().unwrap().to_owned())
            .collect()
    };
    let (findings, all) = hunt(None, "all", false);
    let mut per_rule: std::collections::BTreeMap<String, u64> = Default::default();
    for f in &findings {
        *per_rule
            .entry(f["rule_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let (top, top_count) = per_rule
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(*id)))
        .map(|(id, n)| (id.clone(), *n))
        .unwrap();
    assert!(per_rule.len() > 3 && top_count > 1, "{per_rule:?}");
    assert_eq!(all["left_out_of_incidents"], serde_json::json!([]));
    assert!(in_incidents(&all).contains(&top), "{top}");

    // One finding over the maximum: the rule with the most is left out.
    let total = findings.len() as u64;
    let (same_findings, capped) = hunt(Some(total - 1), "capped", false);
    assert_eq!(same_findings, findings, "findings are never left out");
    assert_eq!(
        capped["left_out_of_incidents"],
        serde_json::json!([{"rule_id": top, "findings": top_count}])
    );
    let grouped = in_incidents(&capped);
    assert!(!grouped.contains(&top), "{grouped:?}");
    let mut others = in_incidents(&all);
    others.remove(&top);
    assert_eq!(grouped, others);

    // None weighed: every rule is named, most findings first, and no
    // incident is made.
    let (_, none) = hunt(Some(0), "none", true);
    let named = none["left_out_of_incidents"].as_array().unwrap();
    assert_eq!(named.len(), per_rule.len());
    let counts: Vec<u64> = named
        .iter()
        .map(|r| r["findings"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    assert_eq!(counts.iter().sum::<u64>(), total);
    assert_eq!(none["incidents"], serde_json::json!([]));
    // The page does not read as clean: it says nothing was weighed.
    let page = std::fs::read_to_string(d.path().join("none.html")).unwrap();
    assert!(
        !page.contains("No findings: nothing in these logs")
            && page.contains("No incidents among the findings weighed.")
            && page.contains(&format!(
                "the {total} findings of the {} rules left out of incidents",
                per_rule.len()
            )),
        "the page's verdict misreads findings left out"
    );

    // Without -q and with no incident summary printed (not a terminal),
    // standard error says rules were left out.
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(["hunt", "--output-format", "jsonl", "-o", "/dev/null"])
        .arg(root.join("examples/storm-0558/logs"))
        .args(["--incident-findings", "0", "--summary-json"])
        .arg(d.path().join("noted.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stderr.contains("incidents leave out")
            && stderr.contains("--incident-findings 0"),
        "{stderr}"
    );

    // The page weighs what the summary weighs and says what it left out;
    // `tokenward report` makes it again from the saved outputs.
    let (_, page) = hunt(Some(total - 1), "page", true);
    assert_eq!(
        page["left_out_of_incidents"],
        capped["left_out_of_incidents"]
    );
    assert_eq!(page["incidents"], capped["incidents"]);
    let html = std::fs::read_to_string(d.path().join("page.html")).unwrap();
    assert!(
        html.contains("incidents leave out the findings of these rules")
            && html.contains(&format!("{top} ({top_count} findings)")),
        "the page does not name the rule left out"
    );
    let rebuilt = d.path().join("rebuilt.html");
    let rebuild = |extra: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .arg("report")
            .arg("--findings")
            .arg(d.path().join("page.jsonl"))
            .args(extra)
            .arg("-o")
            .arg(&rebuilt)
            .output()
            .unwrap();
        common::assert_succeeded(&out);
        std::fs::read_to_string(&rebuilt).unwrap()
    };
    let summary_path = d.path().join("page.json");
    assert_eq!(
        rebuild(&["--summary", summary_path.to_str().unwrap()]),
        html
    );
    // A summary that names no rule left out (as those of hunts before the
    // page was bounded) still gets a bounded page: --incident-findings
    // leaves out the same rule.
    let mut old = page.clone();
    old["left_out_of_incidents"] = serde_json::json!([]);
    let old_path = d.path().join("old.json");
    std::fs::write(&old_path, old.to_string()).unwrap();
    let max = (total - 1).to_string();
    let summary_args = ["--summary", old_path.to_str().unwrap()];
    let unbounded = rebuild(&summary_args);
    assert!(!unbounded.contains("incidents leave out"));
    assert_eq!(
        rebuild(&[&summary_args[..], &["--incident-findings", &max]].concat()),
        html
    );
    // Without the summary, `tokenward report` leaves out what the hunt did
    // given the same maximum.
    let alone = rebuild(&["--incident-findings", &(total - 1).to_string()]);
    assert!(alone.contains(&format!("{top} ({top_count} findings)")));
    let ids = |page: &str| -> Vec<String> {
        page.match_indices("<article class=\"incident")
            .map(|(at, _)| page[at..].split('"').nth(3).unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&alone), ids(&html));
}

/// With no memory for the sign-in index every id it holds moves to disk
/// (the summary counts them), and the detections that judge audit records
/// against it find what they find with the index in memory: the forged
/// token that no sign-in issued, and none of the tokens the sign-ins did
/// issue.
#[test]
fn the_signin_index_answers_from_disk_as_from_memory() {
    let root = common::repo();
    let d = tempfile::tempdir().unwrap();
    let hunt = |extra: &[&str], tag: &str| -> (Vec<u8>, serde_json::Value) {
        let summary = d.path().join(format!("{tag}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .args(["hunt", "-q", "--output-format", "jsonl"])
            .args(extra)
            .arg(root.join("examples/storm-0558/logs"))
            .arg("--summary-json")
            .arg(&summary)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        (out.stdout, s)
    };
    let (in_memory, held) = hunt(&[], "held");
    let (on_disk, spilled) = hunt(&["--signin-index-memory", "0"], "spilled");
    assert_eq!(
        held["signin_index"]["ids_on_disk"], 0,
        "{}",
        held["signin_index"]
    );
    let signins = spilled["signin_index"]["signins"].as_u64().unwrap();
    let ids = spilled["signin_index"]["ids_on_disk"].as_u64().unwrap();
    assert!(signins > 0 && ids > 0, "{}", spilled["signin_index"]);
    let rules: Vec<String> = String::from_utf8(on_disk.clone())
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["rule_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let count = |id: &str| rules.iter().filter(|r| *r == id).count();
    assert_eq!(count("tw-token-without-signin"), 1, "{rules:?}");
    assert_eq!(count("tw-owa-token-for-resource"), 1, "{rules:?}");
    assert!(
        on_disk == in_memory,
        "the findings differ with the index on disk"
    );
}
