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
    /// Most findings weighed into incidents: past it, the rules that fired
    /// most are left out, as `hunt --incident-findings` does (after those
    /// the summary names as left out by the hunt).
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
    if shown.wants_from(place) {
        return Err(format!(
            "the findings ended after {place} of those the incidents weighed, before the last an incident holds: they changed while read"
        ));
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

/// Whether `path` is a regular file, its length and when it was last
/// written.
fn file_stamp(path: &Path) -> Result<(bool, u64, Option<std::time::SystemTime>), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((m.is_file(), m.len(), m.modified().ok()))
}

/// The page, from two or three passes over the findings file: the
/// digest, the count of each rule's findings and (while they fit) the
/// findings weighed into incidents; those weighed again, when the first
/// pass could not; the findings the incidents show.
fn page(args: &ReportArgs) -> Result<String, String> {
    // Read more than once: a pipe would be empty the second time.
    let stamp = file_stamp(&args.findings)?;
    if !stamp.0 {
        return Err(format!(
            "{}: not a regular file (the findings are read more than once, to keep memory bounded): save them to a file first",
            args.findings.display()
        ));
    }
    let mut summary = match &args.summary {
        Some(p) => std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            })
            .and_then(|v: serde_json::Value| {
                if v.is_object() {
                    Ok(v)
                } else {
                    Err("not a hunt summary (a JSON object)".to_owned())
                }
            })
            .map_err(|e| format!("{}: {e}", p.display()))?,
        None => serde_json::json!({"tool": "tokenward hunt", "files": [], "detections": [],
                                   "records": {"read": "?", "evaluated": "?", "rejected": "?"}}),
    };
    // The hunt's own choice when its summary names it, so the page made
    // again shows the incidents the hunt's did; and then as many more as
    // --incident-findings asks (a summary from before hunts bounded their
    // pages names none).
    let named: Vec<String> = tokenward_incident::left_out_in(&summary)
        .into_iter()
        .map(|(id, _)| id.to_owned())
        .collect();
    let named_ids: HashSet<&str> = named.iter().map(String::as_str).collect();
    let mut digest = tokenward_report::Digest::default();
    let mut per_rule: HashMap<String, u64> = HashMap::new();
    // Weighed in the same pass while they fit, as they do when the summary
    // named what the hunt left out: the file is then read twice, not
    // three times. Past the maximum they are dropped, and weighed in a
    // pass of their own once the rules to leave out are known.
    let mut early = Some(tokenward_incident::Slims::default());
    for f in read_findings(&args.findings)? {
        let f = f?;
        digest.observe(&f);
        if let Some(slims) = early
            .as_mut()
            .filter(|_| !named_ids.contains(f.rule_id.as_ref()))
        {
            slims.push(&f);
            if slims.len() as u64 > args.incident_findings {
                early = None;
            }
        }
        *per_rule.entry(f.rule_id.into_owned()).or_default() += 1;
    }
    let overview = digest.finish().map_err(|e| format!("report pivots: {e}"))?;
    let mut left_out: Vec<(String, u64)> = named
        .iter()
        .filter_map(|id| per_rule.remove_entry(id.as_str()))
        .collect();
    let more = tokenward_incident::left_out(
        per_rule.iter().map(|(id, n)| (id.as_str(), *n)),
        args.incident_findings,
    );
    let weighed = per_rule.values().sum::<u64>() - more.iter().map(|r| r.1).sum::<u64>();
    let early = early.filter(|_| more.is_empty());
    left_out.extend(more);
    tokenward_incident::put_left_out(&mut summary, &left_out);
    let left_out: HashSet<&str> = left_out.iter().map(|r| r.0.as_str()).collect();
    let slims = match early {
        Some(slims) => slims,
        None => {
            let mut slims = tokenward_incident::Slims::default();
            for f in read_findings(&args.findings)? {
                let f = f?;
                if !left_out.contains(f.rule_id.as_ref()) {
                    slims.push(&f);
                }
            }
            if slims.len() as u64 != weighed {
                return Err(format!(
                    "{}: {} findings to weigh the second time it was read, {weighed} the first: it changed while read",
                    args.findings.display(),
                    slims.len()
                ));
            }
            slims
        }
    };
    let incidents = tokenward_incident::build(&slims);
    drop(slims);
    let shown = shown(read_findings(&args.findings)?, &left_out, &incidents)?;
    // The passes may read only part of the file again (the last stops at
    // the last finding an incident shows): a file written meanwhile would
    // make a page of two files.
    if file_stamp(&args.findings)? != stamp {
        return Err(format!(
            "{}: changed while read: run again on a file no one writes to",
            args.findings.display()
        ));
    }
    Ok(tokenward_report::render(&tokenward_report::Input {
        overview: &overview,
        shown: &shown,
        incidents: &incidents,
        summary: &summary,
    }))
}

/// The incident summary printed after the findings table on a terminal.
pub fn incident_summary(
    incidents: &[Incident],
    max: usize,
    unweighed: tokenward_incident::Unweighed,
) -> String {
    let mut s = format!("\n{}\n", tokenward_incident::headline(incidents, unweighed));
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokenward_event::Severity;

    fn finding(user: &str, rule: &str) -> Finding {
        Finding {
            rule_id: rule.to_owned().into(),
            rule_title: "t".into(),
            severity: Severity::High,
            time: tokenward_event::timefmt::parse_timestamp("2023-06-10T10:00:00Z"),
            user: Some(user.into()),
            client_ip: None,
            app_id: None,
            session_id: Some(format!("s-{user}")),
            token_id: None,
            source_file: "f.jsonl".into(),
            source_locator: format!("line {user}"),
            evidence: Default::default(),
        }
    }

    /// The second pass counts places among the findings weighed only, and
    /// findings that end before the last member an incident holds are an
    /// error, not a page with rows missing.
    #[test]
    fn the_second_pass_skips_rules_left_out_and_refuses_findings_cut_short() {
        let all: Vec<Finding> = (0..6)
            .map(|n| finding(&format!("u{}", n / 2), ["tw-a", "tw-b"][n % 2]))
            .collect();
        let weighed: Vec<Finding> = all
            .iter()
            .filter(|f| f.rule_id == "tw-a")
            .cloned()
            .collect();
        let incidents = tokenward_incident::build(&tokenward_incident::Slims::of(&weighed));
        let left_out: HashSet<&str> = ["tw-b"].into();
        fn ok(v: &[Finding]) -> impl Iterator<Item = Result<&Finding, String>> {
            v.iter().map(Ok)
        }
        let got = shown(ok(&all), &left_out, &incidents).unwrap();
        let alone = shown_of_weighed(&weighed, &incidents);
        assert_eq!(format!("{got:?}"), format!("{alone:?}"));
        let cut = shown(ok(&all[..4]), &left_out, &incidents).unwrap_err();
        assert!(cut.contains("changed while read"), "{cut}");
    }

    fn shown_of_weighed(weighed: &[Finding], incidents: &[Incident]) -> tokenward_report::Shown {
        let mut s = tokenward_report::Shown::of(incidents);
        for (i, f) in weighed.iter().enumerate() {
            s.observe(i, f);
        }
        s
    }
}
