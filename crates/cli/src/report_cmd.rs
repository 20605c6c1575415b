//! `tokenward report`: rebuilds the HTML incident report from a hunt's
//! saved findings (JSONL) and summary (JSON), so a run need not be repeated.

use std::io::BufRead;
use std::path::PathBuf;

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
}

fn read_findings(path: &PathBuf) -> Result<Vec<Finding>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut findings = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Finding = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: not a finding: {e}", path.display(), n + 1))?;
        findings.push(f);
    }
    Ok(findings)
}

/// Runs `tokenward report`.
pub fn run(args: ReportArgs) -> u8 {
    let findings = match read_findings(&args.findings) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tokenward report: {e}");
            return EXIT_USAGE;
        }
    };
    let summary = match &args.summary {
        Some(p) => match std::fs::read(p).map_err(|e| e.to_string()).and_then(|b| {
            serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
        }) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("tokenward report: {}: {e}", p.display());
                return EXIT_USAGE;
            }
        },
        None => serde_json::json!({"tool": "tokenward hunt", "files": [], "detections": [],
                                   "records": {"read": "?", "evaluated": "?", "rejected": "?"}}),
    };
    let incidents = tokenward_incident::build(&tokenward_incident::Slims::of(&findings));
    let html = tokenward_report::render(&tokenward_report::Input {
        findings: &findings,
        incidents: &incidents,
        summary: &summary,
    });
    if let Err(e) = std::fs::write(&args.output, html) {
        eprintln!("tokenward report: {}: {e}", args.output.display());
        return EXIT_USAGE;
    }
    0
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
