//! `tokenward keys`: audit published key sets and snapshot them.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokenward_jose::Jwks;
use tokenward_keys::{
    audit_key_set, format_rfc3339, parse_rfc3339, snapshot, AuditConfig, FetchConfig, Fetcher,
    Finding, KeySource, Resolved, Severity, Snapshot,
};

use crate::EXIT_USAGE;

/// Arguments of `tokenward keys`.
#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Audit published key sets for mixed trust domains, expired or stale
    /// certificates, weak, secret or denied keys, and more.
    #[command(
        after_help = "SOURCE is a JWKS file, a JWKS URL, an OIDC discovery URL or an issuer URL \
(force with jwks:, discovery:, issuer: or file:).\n\
Exit status: 0 no finding at or above --fail-on, 1 some finding at or above it, \
2 usage error or a source that could not be read."
    )]
    Audit(AuditArgs),
    /// Save a key set's keys to compare later with `keys audit --baseline`.
    Snapshot(SnapshotArgs),
}

#[derive(Args)]
struct FetchArgs {
    /// Whole-fetch deadline in seconds (redirects and body included).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
    /// Largest response accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    max_bytes: u64,
    /// Allow plain http:// to loopback addresses (tests, local IdPs).
    #[arg(long)]
    allow_http_loopback: bool,
    /// Time the audit is for (RFC 3339); defaults to now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
}

#[derive(Args)]
struct AuditArgs {
    /// Key sources to audit.
    #[arg(value_name = "SOURCE", required = true)]
    sources: Vec<String>,
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Exit 1 when a finding is at or above this severity
    /// (info, low, medium, high, critical).
    #[arg(long, value_name = "SEVERITY", default_value = "high", value_parser = parse_severity)]
    fail_on: Severity,
    /// Compare with a snapshot saved by `keys snapshot` and report keys
    /// added, removed and changed.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Certificates issued longer ago than this are `key-stale`.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    rotation_days: i64,
    /// Certificates valid for longer than this are `cert-long-lived`.
    #[arg(long, value_name = "DAYS", default_value_t = 730)]
    max_cert_validity_days: i64,
    /// Also deny this kid (adds to the built-in denylist).
    #[arg(long, value_name = "KID")]
    deny_kid: Vec<String>,
    /// Also deny this thumbprint: hex SHA-1/SHA-256 of a certificate or an
    /// RFC 7638 JWK thumbprint.
    #[arg(long, value_name = "THUMBPRINT")]
    deny_thumbprint: Vec<String>,
    #[command(flatten)]
    fetch: FetchArgs,
}

#[derive(Args)]
struct SnapshotArgs {
    /// The key source.
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Where to write the snapshot.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    fetch: FetchArgs,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("unknown severity {s:?} (info, low, medium, high, critical)"))
}

/// Runs `tokenward keys` and returns the process exit status.
pub fn run(args: KeysArgs) -> u8 {
    let result = match args.command {
        KeysCommand::Audit(a) => audit(&a),
        KeysCommand::Snapshot(s) => take_snapshot(&s),
    };
    result.unwrap_or_else(|message| {
        eprintln!("tokenward keys: {message}");
        EXIT_USAGE
    })
}

impl FetchArgs {
    fn fetcher(&self) -> Result<Fetcher, String> {
        Fetcher::new(FetchConfig {
            timeout: Duration::from_secs(self.timeout),
            max_bytes: self.max_bytes,
            allow_plain_http_loopback: self.allow_http_loopback,
            ..FetchConfig::default()
        })
        .map_err(|e| e.to_string())
    }

    fn now(&self) -> Result<i64, String> {
        match &self.now {
            Some(t) => parse_rfc3339(t).map_err(|e| format!("--now: {e}")),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .map_err(|e| e.to_string()),
        }
    }
}

/// One source, read.
struct Loaded {
    text: String,
    resolved: Resolved,
    bytes: Vec<u8>,
}

fn load(text: &str, fetcher: &Fetcher) -> Result<Loaded, String> {
    let source = KeySource::parse(text).map_err(|e| e.to_string())?;
    let resolved = source.fetch(fetcher, None).map_err(|e| e.to_string())?;
    let bytes = resolved.body.clone().unwrap_or_default();
    Ok(Loaded {
        text: text.to_owned(),
        resolved,
        bytes,
    })
}

struct Report {
    source: String,
    origin: Option<String>,
    discovery: Option<Value>,
    keys: usize,
    error: Option<String>,
    findings: Vec<Finding>,
}

fn audit(args: &AuditArgs) -> Result<u8, String> {
    let now = args.fetch.now()?;
    let fetcher = args.fetch.fetcher()?;
    let mut config = AuditConfig::new(now);
    config.rotation_max_age = args.rotation_days.saturating_mul(86400);
    config.max_cert_validity = args.max_cert_validity_days.saturating_mul(86400);
    config.deny_kids = tokenward_trust::BUILTIN_DENIED_KIDS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(args.deny_kid.iter().cloned())
        .collect();
    config.deny_thumbprints = tokenward_trust::BUILTIN_DENIED_THUMBPRINTS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(args.deny_thumbprint.iter().cloned())
        .collect();
    config.consumer_tenants = vec![tokenward_trust::CONSUMER_TENANT.to_owned()];

    let baseline = match &args.baseline {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--baseline {}: {e}", path.display()))?;
            let snap = Snapshot::parse(&text)
                .map_err(|e| format!("--baseline {}: {e}", path.display()))?;
            // The baseline belongs to the source it was taken from, or to
            // the only source given.
            if args.sources.len() > 1 && !args.sources.contains(&snap.source) {
                return Err(format!(
                    "--baseline {} was taken from {:?}, which is not among the sources",
                    path.display(),
                    snap.source
                ));
            }
            Some(snap)
        }
    };

    let mut reports = Vec::new();
    for text in &args.sources {
        let loaded = match load(text, &fetcher) {
            Ok(l) => l,
            Err(e) => {
                reports.push(Report {
                    source: text.clone(),
                    origin: None,
                    discovery: None,
                    keys: 0,
                    error: Some(e),
                    findings: Vec::new(),
                });
                continue;
            }
        };
        reports.push(audit_one(&loaded, &config, baseline.as_ref(), args, now));
    }

    let all: Vec<&Finding> = reports.iter().flat_map(|r| &r.findings).collect();
    let failed = all.iter().any(|f| f.severity >= args.fail_on);
    let errors = reports.iter().any(|r| r.error.is_some());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if args.json {
        writeln!(out, "{}", json_report(&reports, args, now, failed))
    } else {
        write!(out, "{}", text_report(&reports, args))
    };
    written.map_err(|e| format!("writing output: {e}"))?;
    for r in &reports {
        if let Some(e) = &r.error {
            eprintln!("tokenward keys: {}: {e}", r.source);
        }
    }
    Ok(if errors { EXIT_USAGE } else { u8::from(failed) })
}

fn audit_one(
    loaded: &Loaded,
    config: &AuditConfig,
    baseline: Option<&Snapshot>,
    args: &AuditArgs,
    now: i64,
) -> Report {
    let discovery = loaded.resolved.discovery.as_ref();
    let mut report = Report {
        source: loaded.text.clone(),
        origin: Some(loaded.resolved.origin.clone()),
        discovery: discovery.map(|d| {
            json!({"url": d.url.to_string(), "issuer": d.issuer,
                   "expected_issuer": d.expected_issuer, "jwks_uri": d.jwks_uri.to_string()})
        }),
        keys: 0,
        error: None,
        findings: Vec::new(),
    };
    let jwks = match Jwks::parse(&loaded.bytes) {
        Ok(j) => j,
        Err(e) => {
            report.error = Some(format!("not a JWK set: {e}"));
            return report;
        }
    };
    report.keys = jwks.keys.len();
    match audit_key_set(&loaded.bytes, discovery, config) {
        Ok(f) => report.findings = f,
        Err(e) => report.error = Some(e),
    }
    if let Some(base) = baseline {
        if args.sources.len() == 1 || base.source == loaded.text {
            let current = Snapshot::from_jwks(&loaded.text, &jwks, now);
            report.findings.extend(snapshot::compare(base, &current));
        }
    }
    // Worst first; the audit's own order (set-level, then per key) within.
    report
        .findings
        .sort_by_key(|f| std::cmp::Reverse(f.severity));
    report
}

fn counts(findings: &[&Finding]) -> Vec<(Severity, usize)> {
    Severity::ALL
        .iter()
        .rev()
        .map(|s| (*s, findings.iter().filter(|f| f.severity == *s).count()))
        .collect()
}

fn text_report(reports: &[Report], args: &AuditArgs) -> String {
    let mut s = String::new();
    for r in reports {
        match &r.error {
            Some(e) => s.push_str(&format!("{}: error: {e}\n", r.source)),
            None => {
                let via = match &r.origin {
                    Some(o) if *o != r.source => format!(" (keys from {o})"),
                    _ => String::new(),
                };
                s.push_str(&format!(
                    "{}{via}: {} key{}, {} finding{}\n",
                    r.source,
                    r.keys,
                    if r.keys == 1 { "" } else { "s" },
                    r.findings.len(),
                    if r.findings.len() == 1 { "" } else { "s" },
                ));
                for f in &r.findings {
                    s.push_str(&format!(
                        "  {:<8} {:<24} {}\n",
                        f.severity.name().to_uppercase(),
                        f.code.code(),
                        f.message
                    ));
                }
            }
        }
    }
    let all: Vec<&Finding> = reports.iter().flat_map(|r| &r.findings).collect();
    let summary: Vec<String> = counts(&all)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(sev, n)| format!("{n} {sev}"))
        .collect();
    let failing = all.iter().filter(|f| f.severity >= args.fail_on).count();
    s.push_str(&format!(
        "summary: {} finding{}{}; {failing} at or above {}\n",
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        if summary.is_empty() {
            String::new()
        } else {
            format!(" ({})", summary.join(", "))
        },
        args.fail_on
    ));
    s
}

fn json_report(reports: &[Report], args: &AuditArgs, now: i64, failed: bool) -> Value {
    let all: Vec<&Finding> = reports.iter().flat_map(|r| &r.findings).collect();
    let summary: serde_json::Map<String, Value> = counts(&all)
        .into_iter()
        .map(|(s, n)| (s.name().to_owned(), json!(n)))
        .collect();
    json!({
        "now": format_rfc3339(now),
        "fail_on": args.fail_on,
        "failed": failed,
        "summary": summary,
        "sources": reports.iter().map(|r| json!({
            "source": r.source,
            "origin": r.origin,
            "discovery": r.discovery,
            "keys": r.keys,
            "error": r.error,
            "findings": r.findings,
        })).collect::<Vec<_>>(),
    })
}

fn take_snapshot(args: &SnapshotArgs) -> Result<u8, String> {
    let now = args.fetch.now()?;
    let fetcher = args.fetch.fetcher()?;
    let loaded = load(&args.source, &fetcher).map_err(|e| format!("{}: {e}", args.source))?;
    let jwks =
        Jwks::parse(&loaded.bytes).map_err(|e| format!("{}: not a JWK set: {e}", args.source))?;
    let snap = Snapshot::from_jwks(&args.source, &jwks, now);
    let mut text = snap.to_json();
    text.push('\n');
    std::fs::write(&args.output, text)
        .map_err(|e| format!("writing {}: {e}", args.output.display()))?;
    eprintln!(
        "tokenward keys: {} keys of {} saved to {}",
        snap.keys.len(),
        args.source,
        args.output.display()
    );
    Ok(0)
}
