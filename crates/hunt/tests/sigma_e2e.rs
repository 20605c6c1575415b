//! End to end: `hunt` with Sigma rules over the real-sample fixtures and
//! over the simulated Storm-0558 intrusion, findings asserted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokenward_detect::{shard_of, Anchors, Context, Outcome};
use tokenward_event::{Event, EventKind, Finding};
use tokenward_hunt::sigma::{LoadOptions, RuleSet, DRL_NOTE};
use tokenward_hunt::{
    read_events, run, run_detections, Detection, HuntConfig, Needs, Report, SigmaDetection,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hunt(inputs: &[&str], rules: &[&str]) -> Report {
    let rules: Vec<PathBuf> = rules.iter().map(|r| root().join(r)).collect();
    let set = RuleSet::load(&rules, &LoadOptions::default()).unwrap();
    assert_eq!(set.errors().count(), 0, "{:?}", set.issues);
    let cfg = HuntConfig {
        inputs: inputs.iter().map(|i| root().join(i)).collect(),
        sigma: Some(Arc::new(set)),
        ..Default::default()
    };
    run(&cfg, Arc::new(AtomicU64::new(0))).unwrap()
}

/// Findings per (rule title, input file name).
fn tally(r: &Report, sigma_only: bool) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for f in r.findings.as_slice().unwrap() {
        if sigma_only && f.rule_id.starts_with("tw-") {
            continue;
        }
        let file = f.source_file.rsplit('/').next().unwrap_or("").to_string();
        *m.entry((f.rule_title.to_string(), file)).or_default() += 1;
    }
    m
}

#[test]
fn sigmahq_rules_over_the_real_samples() {
    let r = hunt(&["tests/fixtures/logs"], &["tests/fixtures/sigma"]);
    let got = tally(&r, true);
    let want: BTreeMap<(String, String), usize> = [
        (
            "Account Created And Deleted Within A Close Time Frame",
            "20250502131826-AuditLogs.json",
            5,
        ),
        ("Anomalous Token", "202504220931-RiskyDetections.csv", 2),
        (
            "Anonymous IP Address",
            "202504220931-RiskyDetections.csv",
            19,
        ),
        (
            "App Granted Microsoft Permissions",
            "AADAuditEvents.json",
            1,
        ),
        (
            "Application AppID Uri Configuration Changes",
            "AADAuditEvents.json",
            1,
        ),
        ("Atypical Travel", "202504220931-RiskyDetections.csv", 15),
        (
            "Azure Application Deleted",
            "20250502131826-AuditLogs.json",
            4,
        ),
        (
            "Azure Service Principal Created",
            "20250502131826-AuditLogs.json",
            2,
        ),
        (
            "Azure Service Principal Removed",
            "20250502131826-AuditLogs.json",
            5,
        ),
        (
            "Change to Authentication Method",
            "20250502131826-AuditLogs.json",
            1,
        ),
        (
            "Delegated Permissions Granted For All Users",
            "AADAuditEvents.json",
            1,
        ),
        (
            "Inbox Rules Creation Or Update Activity in O365",
            "office_activity_inbox_rule.csv",
            2,
        ),
        ("Login to Disabled Account", "disable_accounts.csv", 4),
        (
            "Unfamiliar Sign-In Properties",
            "202504220931-RiskyDetections.csv",
            22,
        ),
    ]
    .iter()
    .map(|(t, f, n)| ((t.to_string(), f.to_string()), *n))
    .collect();
    assert_eq!(got, want);
    // Every Sigma finding names its rule's author and the DRL.
    for f in r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .filter(|f| !f.rule_id.starts_with("tw-"))
    {
        assert!(!f.evidence["sigma_author"].as_str().unwrap().is_empty());
        assert_eq!(f.evidence["sigma_license"], DRL_NOTE);
    }
    // Every Sigma rule has a status line (145 SigmaHQ rules run).
    let sigma_statuses = r
        .detections
        .iter()
        .filter(|d| !d.id.starts_with("tw-"))
        .count();
    assert_eq!(sigma_statuses, 145);
    let pim = r
        .detections
        .iter()
        .find(|d| d.title == "Stale Accounts In A Privileged Role")
        .unwrap();
    assert_eq!(pim.hits, 0);
}

#[test]
fn our_rules_and_sigmahq_over_the_example_intrusion() {
    let r = hunt(
        &["examples/storm-0558/logs"],
        &["rules", "tests/fixtures/sigma"],
    );
    let got = tally(&r, true);
    let n = |t: &str| {
        got.iter()
            .filter(|((title, _), _)| title == t)
            .map(|(_, n)| *n)
            .sum::<usize>()
    };
    assert_eq!(n("Storm-0558 IP Address In Microsoft 365 Audit Log"), 31);
    assert_eq!(n("Storm-0558 User Agent In Microsoft 365 Audit Log"), 1);
    assert_eq!(n("Mailbox Read By The Exchange REST System Client"), 22);
    assert_eq!(n("MailItemsAccessed Throttled"), 1);
    assert_eq!(n("Mailbox Sync By A Client Other Than Desktop Outlook"), 1);
    assert_eq!(n("Exchange Audit Logging Disabled Or Bypassed"), 2);
    // The correlation finds exactly the forged session.
    let corr: Vec<_> = r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .filter(|f| f.rule_title == "OWA Token Session Renewed From Several Addresses")
        .collect();
    assert_eq!(corr.len(), 1);
    assert_eq!(
        corr[0].evidence["group"]["AppAccessContext.AADSessionId"],
        "5b0c0f3e-58a1-4d55-9c2e-0000deadbeef"
    );
    assert_eq!(corr[0].evidence["value_count"], 3.0);
    // Its base rule feeds the correlation but does not report alone.
    assert_eq!(n("OWA Access Token Issued For A Resource"), 0);
    // No SigmaHQ rule fires on the simulated tenant, and the built-in
    // detections still run alongside.
    assert_eq!(got.values().sum::<usize>(), 31 + 1 + 22 + 1 + 1 + 2 + 1);
    assert!(r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .any(|f| f.rule_id == "tw-token-without-signin"));
    // Our own rules carry their licence, not the DRL.
    let ip = r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .find(|f| f.rule_title.starts_with("Storm-0558 IP"))
        .unwrap();
    assert_eq!(ip.evidence["sigma_license"], "Apache-2.0");
    assert_eq!(ip.evidence["sigma_author"], "tokenward");
}

/// Findings spilled to disk (a small budget spills every few) come back
/// byte for byte as when held in memory, in the same order, with the same
/// coverage; and the only/exclude filters apply before anything is held.
#[test]
fn spilled_findings_are_the_findings_held_in_memory() {
    let rules = vec![root().join("tests/fixtures/sigma"), root().join("rules")];
    let set = Arc::new(RuleSet::load(&rules, &LoadOptions::default()).unwrap());
    let run_with = |memory: Option<usize>, exclude: Vec<String>| {
        let cfg = HuntConfig {
            inputs: vec![
                root().join("tests/fixtures/logs"),
                root().join("examples/storm-0558"),
            ],
            sigma: Some(set.clone()),
            findings_memory: memory,
            exclude,
            ..Default::default()
        };
        run(&cfg, Arc::new(AtomicU64::new(0))).unwrap()
    };
    let jsonl = |r: &Report| {
        let mut out = Vec::new();
        tokenward_hunt::output::write_jsonl(&mut out, &r.findings).unwrap();
        String::from_utf8(out).unwrap()
    };
    let held = run_with(None, Vec::new());
    assert_eq!(held.findings.spilled_runs(), 0);
    let spilled = run_with(Some(20_000), Vec::new());
    assert!(spilled.findings.spilled_runs() > 0);
    assert!(held.findings.len() > 100, "{}", held.findings.len());
    assert_eq!(spilled.findings.len(), held.findings.len());
    assert_eq!(jsonl(&spilled), jsonl(&held));
    assert_eq!(
        serde_json::to_string(&spilled.detections).unwrap(),
        serde_json::to_string(&held.detections).unwrap()
    );

    let ids: std::collections::BTreeSet<String> = held
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .map(|f| f.rule_id.to_string())
        .collect();
    let dropped = ids.iter().next().unwrap().clone();
    let filtered = run_with(Some(20_000), vec![dropped.clone()]);
    let want: Vec<String> = jsonl(&held)
        .lines()
        .filter(|l| !l.starts_with(&format!("{{\"rule_id\":\"{dropped}\"")))
        .map(str::to_owned)
        .collect();
    assert!(want.len() < held.findings.len() as usize);
    assert_eq!(jsonl(&filtered).lines().collect::<Vec<_>>(), want);
}

/// A keyword rule reads every string of the records of its log source, so
/// those are parsed whole; records of other sources holding its text are
/// not (they are projected, and no keyword rule of theirs runs).
#[test]
fn keyword_rules_read_their_own_sources_whole() {
    let d = tempfile::tempdir().unwrap();
    let keyword = "Microsoft.Compute/virtualMachines/write";
    // The text only in a field no rule names: found by reading the whole
    // record.
    let activity = format!(
        r#"{{"time":"2023-06-10T10:00:00Z","resourceId":"/SUBSCRIPTIONS/S1/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.COMPUTE/VIRTUALMACHINES/VM1","operationName":"Other","category":"Administrative","properties":{{"detail":{{"note":"{keyword}"}}}}}}"#
    );
    let plain_activity = activity.replace(keyword, "nothing to see");
    let signin = format!(
        r#"{{"createdDateTime":"2023-06-10T09:00:00Z","userPrincipalName":"a@x","appId":"a","ipAddress":"198.51.100.1","status":{{"errorCode":0,"additionalDetails":"{keyword}"}}}}"#
    );
    std::fs::write(
        d.path().join("mixed.jsonl"),
        format!("{activity}\n{plain_activity}\n{signin}\n"),
    )
    .unwrap();
    let rule = root().join(
        "tests/fixtures/sigma/rules/cloud/azure/activity_logs/azure_creating_number_of_resources_detection.yml",
    );
    let set = RuleSet::load(&[rule], &LoadOptions::default()).unwrap();
    let cfg = HuntConfig {
        inputs: vec![d.path().join("mixed.jsonl")],
        sigma: Some(Arc::new(set)),
        ..Default::default()
    };
    let r = run(&cfg, Arc::new(AtomicU64::new(0))).unwrap();
    assert_eq!(r.totals(), (3, 3, 0));
    let hits: Vec<String> = r
        .findings
        .as_slice()
        .unwrap()
        .iter()
        .filter(|f| !f.rule_id.starts_with("tw-"))
        .map(|f| f.source_locator.to_string())
        .collect();
    assert_eq!(hits, vec!["line 1".to_string()]);
}

/// The Sigma detection with its screen never told a record's kind, as
/// every screen was before screens were told the kind of the records
/// before: it searches every rule's texts in every record.
struct KindBlind(Box<dyn Detection>);

impl Detection for KindBlind {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        self.0.ids()
    }
    fn needs(&self) -> Needs {
        let mut n = self.0.needs();
        if let Anchors::Screen(f) = n.anchors {
            n.anchors = Anchors::Screen(Arc::new(move |_, b: &[u8]| f(None, b)));
        }
        n
    }
    fn fork(&self) -> Box<dyn Detection> {
        Box::new(KindBlind(self.0.fork()))
    }
    fn observe(&mut self, ev: &Event, cx: &Context<'_>) {
        self.0.observe(ev, cx);
    }
    fn merge(&mut self, shard: Box<dyn Detection>) {
        self.0.merge(shard_of::<KindBlind>(shard).0);
    }
    fn merges_each_batch(&self) -> bool {
        self.0.merges_each_batch()
    }
    fn take_findings(&mut self) -> Vec<Finding> {
        self.0.take_findings()
    }
    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        self.0.finish(cx)
    }
}

/// A record as one JSON line, its `CreationTime` first where it has one,
/// as the Management Activity API writes UAL records: such a record may be
/// read unparsed for its time and workload, so that path is hunted too.
fn line(record: &serde_json::Value) -> String {
    let mut m = record.as_object().cloned().unwrap_or_default();
    let Some(t) = m.remove("CreationTime") else {
        return serde_json::to_string(record).unwrap();
    };
    let t = serde_json::to_string(&t).unwrap();
    match serde_json::to_string(&m).unwrap().strip_prefix('{') {
        Some("}") | None => format!("{{\"CreationTime\":{t}}}"),
        Some(rest) => format!("{{\"CreationTime\":{t},{rest}"),
    }
}

fn json_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x != "md") {
            out.push(p);
        }
    }
}

/// Told the kind a record is guessed to be, the Sigma screen searches only
/// that kind's rules' texts, and is asked again when the guess was wrong:
/// on records of every kind in the real samples and the example, in runs
/// of one kind and shuffled, every finding is the one a screen never told
/// the kind finds.
#[test]
fn screens_told_a_kind_lose_no_finding_on_mixed_kinds() {
    let mut files = Vec::new();
    json_files(&root().join("tests/fixtures/logs"), &mut files);
    json_files(&root().join("examples/storm-0558/logs"), &mut files);
    let mut records: Vec<(EventKind, String)> = Vec::new();
    for f in &files {
        let (_, events) = read_events(f, None);
        records.extend(events.into_iter().map(|e| (e.kind, line(&e.record))));
    }
    let kinds: std::collections::BTreeSet<EventKind> = records.iter().map(|r| r.0).collect();
    assert!(kinds.len() >= 4, "{kinds:?}");
    let rules = [root().join("tests/fixtures/sigma"), root().join("rules")];
    let set = Arc::new(RuleSet::load(&rules, &LoadOptions::default()).unwrap());
    let findings = |text: &str, blind: bool| {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("mixed.jsonl"), text).unwrap();
        let cfg = HuntConfig {
            inputs: vec![d.path().to_path_buf()],
            ..Default::default()
        };
        let disk = tokenward_spill::spilling::StateDisk::new(tokenward_hunt::DEFAULT_STATE_MEMORY);
        let sigma: Box<dyn Detection> = Box::new(SigmaDetection::new(set.clone(), disk));
        let det = if blind {
            Box::new(KindBlind(sigma))
        } else {
            sigma
        };
        let r = run_detections(&cfg, vec![det], Arc::new(AtomicU64::new(0))).unwrap();
        let mut v: Vec<(String, String)> = r
            .findings
            .as_slice()
            .unwrap()
            .iter()
            .map(|f| (f.rule_id.to_string(), f.source_locator.clone()))
            .collect();
        v.sort();
        v
    };
    // In runs of one kind, then shuffled (with a fixed seed).
    records.sort_by_key(|r| r.0);
    let runs: Vec<&str> = records.iter().map(|r| r.1.as_str()).collect();
    let mut shuffled = runs.clone();
    fastrand::Rng::with_seed(7).shuffle(&mut shuffled);
    for (name, order) in [("runs", runs), ("shuffled", shuffled)] {
        let text = order.join("\n");
        let blind = findings(&text, true);
        assert!(blind.len() > 50, "{name}: {}", blind.len());
        let told = findings(&text, false);
        let missing: Vec<_> = blind.iter().filter(|f| !told.contains(f)).collect();
        let extra: Vec<_> = told.iter().filter(|f| !blind.contains(f)).collect();
        assert!(
            missing.is_empty() && extra.is_empty() && told.len() == blind.len(),
            "{name}: missing {missing:?}, extra {extra:?}"
        );
    }
}

/// A correlation over a file that spans weeks in several batches finds
/// every burst, however the workers finish the batches: each file's
/// batches reach the correlation state in the file's order. Merged in the
/// order workers finished them, a batch reaching it after later ones was
/// a day behind their matches, and its bursts were dropped as late. So
/// does one over the month's two halves in two files read side by side.
#[test]
fn correlations_over_a_file_of_many_batches_find_every_burst() {
    let d = tempfile::tempdir().unwrap();
    let rules = d.path().join("burst.yml");
    std::fs::write(
        &rules,
        "title: Mail access\nname: mail_access\nid: mail-access\nstatus: test\n\
         logsource: {product: m365, service: audit}\n\
         detection:\n    selection:\n        Operation: MailItemsAccessed\n    condition: selection\n\
         level: informational\n---\n\
         title: Mail burst\nid: mail-burst\nstatus: test\n\
         correlation:\n    type: event_count\n    rules: [mail_access]\n    group-by: [UserId]\n\
         \x20   timespan: 1h\n    condition: {gte: 4}\nlevel: medium\n",
    )
    .unwrap();
    // Sixty days in time order: each day a burst of four mail reads by one
    // of three users, among some 100 KiB of other records.
    let pad = "x".repeat(2000);
    let mut text = String::new();
    for day in 0..60 {
        let date = time::Date::from_ordinal_date(2023, 100 + day).unwrap();
        for minute in 0..50 {
            let op = if minute < 4 {
                "MailItemsAccessed"
            } else {
                "FileAccessed"
            };
            text.push_str(&format!(
                r#"{{"CreationTime":"{date}T10:{minute:02}:00","Operation":"{op}","Workload":"Exchange","UserId":"u{}@x","Pad":"{pad}"}}"#,
                day % 3
            ));
            text.push('\n');
        }
    }
    assert!(text.len() > 5 * tokenward_logread::records::LINES_BATCH);
    std::fs::write(d.path().join("weeks.jsonl"), &text).unwrap();
    let halves = d.path().join("halves");
    std::fs::create_dir(&halves).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    for (name, half) in [("1.jsonl", first), ("2.jsonl", second)] {
        std::fs::write(halves.join(name), half.join("\n") + "\n").unwrap();
    }
    let set = Arc::new(RuleSet::load(&[rules], &LoadOptions::default()).unwrap());
    assert_eq!(set.errors().count(), 0, "{:?}", set.issues);
    let runs = [d.path().join("weeks.jsonl"), halves].map(|input| HuntConfig {
        inputs: vec![input],
        sigma: Some(set.clone()),
        ..Default::default()
    });
    for (cfg, workers) in runs.iter().flat_map(|c| [(c, 2), (c, 8)]) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .unwrap();
        let r = pool.install(|| run(cfg, Arc::new(AtomicU64::new(0))).unwrap());
        let bursts = r
            .findings
            .as_slice()
            .unwrap()
            .iter()
            .filter(|f| f.rule_id == "mail-burst")
            .count();
        let note = r
            .detections
            .iter()
            .find(|c| c.id == "mail-burst")
            .and_then(|c| c.note.clone());
        assert_eq!(bursts, 60, "{:?}, {workers} workers: {note:?}", cfg.inputs);
    }
}
