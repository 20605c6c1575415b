//! `tokenward report`: rebuilds the HTML incident report from a hunt's
//! saved findings (JSONL) and summary (JSON), so a run need not be repeated.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use clap::Args;
use tokenward_event::{Finding, Severity};
use tokenward_incident::Incident;

use crate::EXIT_USAGE;

#[derive(Args)]
#[command(after_help = "Exit status: 0 written, 2 usage error or unreadable input.")]
pub struct ReportArgs {
    /// Findings as written by `hunt --output-format jsonl`.
    #[arg(long, value_name = "FILE")]
    pub findings: PathBuf,
    /// The run summary written by `hunt --summary-json` (detection coverage
    /// and log sources for the blind-spot panel).
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Where to write the HTML.
    #[arg(short, long, value_name = "FILE.html")]
    pub output: PathBuf,
    /// Most findings weighed into incidents, when the summary does not
    /// name the rules the hunt left out of them: past it, the rules that
    /// fired most are left out, as `hunt --incident-findings` does.
    #[arg(long, default_value_t = tokenward_incident::WEIGHED_MAX, value_name = "N")]
    pub incident_findings: u64,
}

/// The findings of a JSONL file, one per line, read afresh on each call:
/// the page is made in passes, so as not to hold them all.
fn read_findings(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Finding, String>> + '_, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines = std::io::BufReader::with_capacity(1 << 16, file)
        .lines()
        .enumerate();
    Ok(lines.filter_map(move |(n, line)| {
        let at = || format!("{}:{}", path.display(), n + 1);
        match line {
            Err(e) => Some(Err(format!("{}: {e}", at()))),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(
                serde_json::from_str::<Finding>(&l)
                    .map_err(|e| format!("{}: not a finding: {e}", at())),
            ),
        }
    }))
}

/// The page's second pass: `findings` (in report order, all of them) told
/// to a [`tokenward_report::Shown`] with their places among those the
/// incidents weighed (every finding but those of the rules `left_out`).
pub(crate) fn shown<F: std::borrow::Borrow<Finding>>(
    findings: impl Iterator<Item = Result<F, String>>,
    left_out: &HashSet<&str>,
    incidents: &[Incident],
) -> Result<tokenward_report::Shown, String> {
    let mut shown = tokenward_report::Shown::of(incidents);
    let mut place = 0;
    for f in findings {
        if !shown.wants_from(place) {
            break;
        }
        let f = f?;
        let f = f.borrow();
        if !left_out.contains(f.rule_id.as_ref()) {
            shown.observe(place, f);
            place += 1;
        }
    }
    Ok(shown)
}

/// Runs `tokenward report`.
pub fn run(args: ReportArgs) -> u8 {
    match page(&args) {
        Ok(html) => match std::fs::write(&args.output, html) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tokenward report: {}: {e}", args.output.display());
                EXIT_USAGE
            }
        },
        Err(e) => {
            eprintln!("tokenward report: {e}");
            EXIT_USAGE
        }
    }
}

/// The page, from three passes over the findings file: the digest and
/// the count of each rule's findings, the incidents, the findings they
/// show.
fn page(args: &ReportArgs) -> Result<String, String> {
    let mut summary = match &args.summary {
        Some(p) => std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("{}: {e}", p.display()))?,
        None => serde_json::json!({"tool": "tokenward hunt", "files": [], "detections": [],
                                   "records": {"read": "?", "evaluated": "?", "rejected": "?"}}),
    };
    let mut digest = tokenward_report::Digest::default();
    let mut per_rule: HashMap<String, u64> = HashMap::new();
    for f in read_findings(&args.findings)? {
        let f = f?;
        digest
            .observe(&f)
            .map_err(|e| format!("report pivots: {e}"))?;
        *per_rule.entry(f.rule_id.into_owned()).or_default() += 1;
    }
    let overview = digest.finish().map_err(|e| format!("report pivots: {e}"))?;
    // The hunt's own choice when its summary names it, so the page made
    // again shows the incidents the hunt's did.
    let left_out: Vec<String> = match summary["left_out_of_incidents"].as_array() {
        Some(rules) => rules
            .iter()
            .filter_map(|r| r["rule_id"].as_str().map(str::to_owned))
            .collect(),
        None => {
            let left_out = tokenward_incident::left_out(
                per_rule.iter().map(|(id, n)| (id.as_str(), *n)),
                args.incident_findings,
            );
            if let Some(s) = summary.as_object_mut() {
                let rules = left_out
                    .iter()
                    .map(|(id, n)| serde_json::json!({"rule_id": id, "findings": n}));
                s.insert("left_out_of_incidents".into(), rules.collect());
            }
            left_out.into_iter().map(|(id, _)| id).collect()
        }
    };
    let left_out: HashSet<&str> = left_out.iter().map(String::as_str).collect();
    let mut slims = tokenward_incident::Slims::default();
    for f in read_findings(&args.findings)? {
        let f = f?;
        if !left_out.contains(f.rule_id.as_ref()) {
            slims.push(&f);
        }
    }
    let incidents = tokenward_incident::build(&slims);
    drop(slims);
    let shown = shown(read_findings(&args.findings)?, &left_out, &incidents)?;
    Ok(tokenward_report::render(&tokenward_report::Input {
        overview: &overview,
        shown: &shown,
        incidents: &incidents,
        summary: &summary,
    }))
}

/// The incident summary printed after the findings table on a terminal.
pub fn incident_summary(incidents: &[Incident], max: usize) -> String {
    let mut s = format!("\n{}\n", tokenward_incident::headline(incidents));
    for inc in incidents.iter().take(max) {
        let users = if inc.users.is_empty() {
            "-".to_owned()
        } else {
            inc.users.join(", ")
        };
        s.push_str(&format!(
            "  {} {:<6} {} finding(s), {} detection(s); users {}; {} IP(s); {} .. {}\n",
            inc.id,
            inc.severity.as_str(),
            inc.findings,
            inc.detections.len(),
            users,
            inc.client_ips.len(),
            inc.first_seen.as_deref().unwrap_or("?"),
            inc.last_seen.as_deref().unwrap_or("?"),
        ));
        if inc.severity == Severity::High {
            s.push_str(&format!("         {}\n", inc.why));
        }
    }
    if incidents.len() > max {
        s.push_str(&format!(
            "  and {} more (--summary-json, --report)\n",
            incidents.len() - max
        ));
    }
    s
}
