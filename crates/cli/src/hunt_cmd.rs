//! `tokenward hunt`.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenward_hunt::output::{self, OutputFormat};
use tokenward_hunt::{Format, HuntConfig, Options};

/// Exit status when `--fail-on-findings` is given and there are findings.
const EXIT_FINDINGS: u8 = 1;

pub(crate) fn parse_format(s: &str) -> Result<Format, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Err("auto is the default; leave the option out".into());
    }
    Format::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format {s:?}; one of: {}", names.join(", "))
    })
}

/// The text after `tokenward hunt --help`: the detection ids come from the
/// registry, so a new detection is listed without touching this file.
pub fn after_help() -> String {
    let ids: Vec<&str> = tokenward_hunt::BUILTINS.iter().map(|b| b.info.id).collect();
    format!(
        "Detections: {} (docs/hunt.md).\nExit status: 0 success, 1 findings with --fail-on-findings, 2 usage error, unreadable input, or findings or a sign-in index that could not be spilled to or read back from $TMPDIR.",
        ids.join(" ")
    )
}

/// Arguments of `tokenward hunt`.
#[derive(clap::Args)]
pub struct HuntArgs {
    /// Log files or directories (read recursively; .gz is decompressed).
    #[arg(required = true, value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// Force the input format instead of detecting it per file
    /// (ual-json, ual-jsonl, purview-csv, powershell-csv, powershell-json, graph-json,
    /// azure-monitor-json, azure-monitor-jsonl, log-analytics-json, log-analytics-csv,
    /// defender-json, tokenward-gateway, jsonl, json, csv).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    input_format: Option<Format>,
    /// Extra indicators: plain lines (IPs, CIDRs, user agents, kids, thumbprints) or a STIX 2.1 bundle. Repeatable.
    #[arg(long, value_name = "FILE")]
    ioc: Vec<PathBuf>,
    /// Do not use the built-in Storm-0558 indicators.
    #[arg(long)]
    no_builtin_iocs: bool,
    /// Write findings to FILE instead of standard output (`-` is standard
    /// output).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Findings format: table, csv or jsonl (default: table on a terminal, jsonl otherwise).
    #[arg(long, value_name = "FORMAT", value_parser = ["table", "csv", "jsonl"])]
    output_format: Option<String>,
    /// Write the run summary (files, records, rejections, detection coverage, incidents) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Write the incident report, one self-contained HTML file, to FILE
    /// (docs/report.md). `tokenward report` rebuilds it from saved outputs.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Exit with status 1 when there are findings.
    #[arg(long)]
    fail_on_findings: bool,
    /// Days at the start of the data used as the MailItemsAccessed baseline.
    #[arg(long, default_value_t = 14, value_name = "DAYS")]
    baseline_days: u32,
    /// Shortest audit gap reported, in hours.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    gap_hours: u32,
    /// Rejected gateway requests from one client IP that make a burst (tw-gateway-rejected-burst).
    #[arg(long, default_value_t = 20, value_name = "N")]
    gateway_burst_min: u64,
    /// Consecutive UTC minutes those rejections must fall within.
    #[arg(long, default_value_t = 5, value_name = "MINUTES")]
    gateway_burst_minutes: u32,
    /// Only report findings of these detection ids (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    only: Vec<String>,
    /// Drop findings of these detection ids (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    exclude: Vec<String>,
    /// Findings held in memory before the rest spill, sorted, to a
    /// temporary directory ($TMPDIR) and are merged back for output, so a
    /// rule that fires on most records does not grow memory with the input.
    #[arg(long, default_value_t = tokenward_hunt::findings::DEFAULT_MEMORY >> 20, value_name = "MIB")]
    findings_memory: usize,
    /// GUIDs, token ids and IPv4 addresses of sign-ins (for
    /// tw-token-without-signin and tw-owa-token-for-resource) held in
    /// memory, at 16 or 4 bytes each, before the largest sets move,
    /// sorted, to temporary files ($TMPDIR), so memory does not grow with
    /// the sign-ins read (docs/limits.md).
    #[arg(long, default_value_t = tokenward_hunt::DEFAULT_INDEX_MEMORY >> 20, value_name = "MIB")]
    signin_index_memory: usize,
    /// Keyed state of the built-in detections and the Sigma correlations
    /// held in memory, all of them together (sessions no sign-in explains,
    /// with up to 1,000 token ids each; mailbox buckets; correlation
    /// groups' matches) before it moves, sorted, to temporary files
    /// ($TMPDIR) and is merged back at the end, so memory does not grow
    /// with the sessions read (docs/limits.md).
    #[arg(long, default_value_t = tokenward_hunt::DEFAULT_STATE_MEMORY >> 20, value_name = "MIB")]
    detection_memory: usize,
    /// Most findings weighed against each other into incidents
    /// (--summary-json, the terminal summary), each kept as a slim copy of
    /// about 170 bytes. Past it, the findings of the rules that fired most
    /// are left out of incidents and named in the summary
    /// (`left_out_of_incidents`, and on the --report page), so memory stays
    /// bounded whatever the input.
    #[arg(long, default_value_t = tokenward_incident::WEIGHED_MAX, value_name = "N")]
    incident_findings: u64,
    /// No progress bar and no terminal summary.
    #[arg(short, long)]
    quiet: bool,
    /// Sigma rules to run too: files or directories of YAML rules. Repeatable.
    /// Rules that cannot load are reported and the rest run (docs/sigma.md).
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    #[command(flatten)]
    sigma: crate::sigma_args::SigmaLoadArgs,
}

/// Loads the Sigma rules given with --rules, reporting load problems.
fn load_sigma(args: &HuntArgs) -> Result<Option<Arc<tokenward_hunt::sigma::RuleSet>>, String> {
    if args.rules.is_empty() {
        return Ok(None);
    }
    let opts = args.sigma.load_options();
    let set = tokenward_hunt::sigma::RuleSet::load(&args.rules, &opts)?;
    for i in set.errors() {
        eprintln!("tokenward hunt: Sigma {i}");
    }
    if !args.quiet {
        eprintln!("tokenward hunt: Sigma: {}", set.summary_line());
    }
    Ok(Some(Arc::new(set)))
}

/// Runs the hunt and returns the process exit status.
pub fn run(args: HuntArgs) -> u8 {
    // `-o -` is standard output, as in most tools, not a file named `-`.
    let output_file = args.output.as_deref().filter(|p| *p != Path::new("-"));
    // The findings, the summary and the page are written at once.
    let outputs = [
        ("-o", output_file),
        ("--summary-json", args.summary_json.as_deref()),
        ("--report", args.report.as_deref()),
    ];
    for (i, (a, pa)) in outputs.iter().enumerate() {
        for (b, pb) in &outputs[i + 1..] {
            if let (Some(pa), Some(pb)) = (pa, pb) {
                if one_file(pa, pb) {
                    eprintln!(
                        "tokenward hunt: {a} and {b} both name {}: give each its own file",
                        pa.display()
                    );
                    return crate::EXIT_USAGE;
                }
            }
        }
    }
    let sigma = match load_sigma(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tokenward hunt: --rules: {e}");
            return crate::EXIT_USAGE;
        }
    };
    let sigma_ids: Vec<&str> = sigma
        .iter()
        .flat_map(|s| s.metas().map(|m| m.id.as_str()))
        .collect();
    for id in args.only.iter().chain(&args.exclude) {
        if !tokenward_hunt::BUILTINS.iter().any(|b| b.info.id == id)
            && !sigma_ids.contains(&id.as_str())
        {
            eprintln!("tokenward hunt: unknown detection id {id:?}");
            return crate::EXIT_USAGE;
        }
    }
    let cfg = HuntConfig {
        inputs: args.inputs.clone(),
        input_format: args.input_format,
        ioc_files: args.ioc.clone(),
        no_builtin_iocs: args.no_builtin_iocs,
        options: Options {
            baseline_days: args.baseline_days,
            gap_hours: args.gap_hours,
            gateway_burst_min: args.gateway_burst_min,
            gateway_burst_minutes: args.gateway_burst_minutes,
            ..Options::default()
        },
        sigma,
        only: args.only.clone(),
        exclude: args.exclude.clone(),
        findings_memory: Some(args.findings_memory.saturating_mul(1 << 20)),
        signin_index_memory: Some(args.signin_index_memory.saturating_mul(1 << 20)),
        detection_memory: Some(args.detection_memory.saturating_mul(1 << 20)),
    };
    let result = with_progress(&args.inputs, args.quiet, |progress| {
        tokenward_hunt::run(&cfg, progress)
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokenward hunt: {e}");
            return crate::EXIT_USAGE;
        }
    };
    // The report is never dropped (below), so its spill directory is
    // removed on every way out of this function by a guard.
    let _spill_dir = RemoveOnExit(report.findings.spill_dir().map(PathBuf::from));
    let to_terminal = output_file.is_none() && std::io::stdout().is_terminal();
    let fmt = match args.output_format.as_deref() {
        Some("csv") => OutputFormat::Csv,
        Some("jsonl") => OutputFormat::Jsonl,
        Some(_) => OutputFormat::Table,
        None if to_terminal => OutputFormat::Table,
        None => OutputFormat::Jsonl,
    };
    // Incidents only for the outputs that show them.
    let summarise = to_terminal && fmt == OutputFormat::Table && !args.quiet;
    // Incidents weigh findings against each other, so they hold those they
    // weigh: cut down to what grouping reads, at most --incident-findings
    // of them (docs/limits.md). The findings outputs and the page stream
    // them.
    let weighs_incidents = summarise || args.report.is_some() || args.summary_json.is_some();
    // The process ends after this: freeing a million findings one by one
    // would only delay the exit (it was a visible share of short hunts).
    let report = std::mem::ManuallyDrop::new(report);
    // Rules whose findings incidents do not weigh, so that the slim
    // copies stay within --incident-findings.
    let left_out = if weighs_incidents {
        tokenward_incident::left_out(report.findings.per_rule(), args.incident_findings)
    } else {
        Vec::new()
    };
    let left_out_ids: std::collections::HashSet<&str> =
        left_out.iter().map(|(id, _)| id.as_str()).collect();
    // Only the page and the summary file read it.
    let mut summary = if args.report.is_some() || args.summary_json.is_some() {
        output::summary_json(&report)
    } else {
        serde_json::Value::Null
    };
    tokenward_incident::put_left_out(&mut summary, &left_out);
    // Incidents, and the summary file that lists them, and the findings
    // output only read the findings, so they are made beside it: with a
    // rule that fires on most records, each took about a third of the
    // time after the detections, on one core.
    // The page's first pass rides along with the weighing.
    let incidents_and_summary =
        || -> Result<(Vec<tokenward_incident::Incident>, Option<Page>), String> {
            let mut digest = args
                .report
                .is_some()
                .then(tokenward_report::Digest::default);
            let incidents = if weighs_incidents {
                // Sized up front: grown by doubling, the vector was copied
                // into fresh pages at each doubling.
                let weighed = report
                    .findings
                    .len()
                    .saturating_sub(left_out.iter().map(|(_, n)| n).sum::<u64>());
                let mut slims =
                    tokenward_incident::Slims::with_capacity(usize::try_from(weighed).unwrap_or(0));
                for f in report.findings.iter().map_err(|e| e.to_string())? {
                    let f = f.map_err(|e| e.to_string())?;
                    if let Some(d) = &mut digest {
                        d.observe(&f);
                    }
                    if !left_out_ids.contains(f.rule_id.as_ref()) {
                        slims.push(&f);
                    }
                }
                let incidents = tokenward_incident::build(&slims);
                std::mem::forget(slims);
                incidents
            } else {
                Vec::new()
            };
            if let Some(p) = &args.summary_json {
                write_summary(p, &summary, &incidents)?;
            }
            let page = match digest {
                Some(d) => {
                    let overview = d.finish().map_err(|e| format!("report pivots: {e}"))?;
                    let findings = report.findings.iter().map_err(|e| e.to_string())?;
                    let shown = crate::report_cmd::shown(
                        findings.map(|f| f.map_err(|e| e.to_string())),
                        &left_out_ids,
                        &incidents,
                    )?;
                    Some(Page { overview, shown })
                }
                None => None,
            };
            Ok((incidents, page))
        };
    let write = |w: &mut dyn Write| -> std::io::Result<()> {
        match fmt {
            OutputFormat::Table => output::write_table(w, &report.findings)?,
            OutputFormat::Csv => output::write_csv(w, &report.findings)?,
            OutputFormat::Jsonl => output::write_jsonl(w, &report.findings)?,
        }
        w.flush()
    };
    let (written, incidents) = std::thread::scope(|scope| {
        let incidents = scope.spawn(incidents_and_summary);
        let written = match output_file {
            Some(p) => File::create(p)
                .and_then(|f| write(&mut BufWriter::new(f)))
                .map_err(|e| format!("{}: {e}", p.display())),
            None => write(&mut BufWriter::new(std::io::stdout().lock()))
                .map_err(|e| format!("standard output: {e}")),
        };
        let incidents = incidents
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (written, incidents)
    });
    if let Err(e) = written {
        eprintln!("tokenward hunt: cannot write findings: {e}");
        return crate::EXIT_USAGE;
    }
    let (incidents, page) = match incidents {
        Ok((i, page)) => (std::mem::ManuallyDrop::new(i), page),
        Err(e) => {
            eprintln!("tokenward hunt: {e}");
            return crate::EXIT_USAGE;
        }
    };
    if summarise {
        let unweighed =
            tokenward_incident::Unweighed::of(left_out.iter().map(|(id, n)| (id.as_str(), *n)));
        print!(
            "{}",
            crate::report_cmd::incident_summary(&incidents, 10, unweighed)
        );
        if !left_out.is_empty() {
            let named: Vec<String> = left_out
                .iter()
                .map(|(id, n)| format!("{id} ({n})"))
                .collect();
            println!(
                "  Left out of incidents, past --incident-findings {}: the findings of {}",
                args.incident_findings,
                named.join(", ")
            );
        }
    }
    if let (Some(p), Some(page)) = (&args.report, &page) {
        let html = tokenward_report::render(&tokenward_report::Input {
            overview: &page.overview,
            shown: &page.shown,
            incidents: &incidents,
            summary: &summary,
        });
        if let Err(e) = std::fs::write(p, html) {
            eprintln!("tokenward hunt: cannot write report {}: {e}", p.display());
            return crate::EXIT_USAGE;
        }
    }
    if !args.quiet {
        eprint!("{}", output::terminal_summary(&report));
        if !summarise && !left_out.is_empty() {
            eprintln!(
                "tokenward hunt: incidents leave out {} rule(s) past --incident-findings {} (left_out_of_incidents in the summary)",
                left_out.len(),
                args.incident_findings
            );
        }
    } else {
        for f in report.files.iter().filter(|f| f.error.is_some()) {
            eprintln!(
                "tokenward hunt: {}: {}",
                f.path,
                f.error.as_deref().unwrap_or("")
            );
        }
    }
    if report.has_unreadable_input() {
        return crate::EXIT_USAGE;
    }
    if args.fail_on_findings && !report.findings.is_empty() {
        return EXIT_FINDINGS;
    }
    0
}

/// What the two passes over the findings gathered for the page.
struct Page {
    overview: tokenward_report::Overview,
    shown: tokenward_report::Shown,
}

/// Whether two output paths name one regular file, or one not made yet
/// (a device such as `/dev/null` takes any number of writers).
fn one_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(ca), Ok(cb)) => ca == cb && std::fs::metadata(&ca).is_ok_and(|m| m.is_file()),
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// Writes the summary document with its incidents to `p`.
fn write_summary(
    p: &Path,
    summary: &serde_json::Value,
    incidents: &[tokenward_incident::Incident],
) -> Result<(), String> {
    File::create(p)
        .and_then(|f| {
            let mut w = BufWriter::new(f);
            write_with_incidents(&mut w, summary, incidents)?;
            w.write_all(b"\n")?;
            w.flush()
        })
        .map_err(|e| format!("cannot write summary {}: {e}", p.display()))
}

/// Removes a directory when dropped, if it is still there.
struct RemoveOnExit(Option<PathBuf>);

impl Drop for RemoveOnExit {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            // Best effort: a directory left behind is only disk in $TMPDIR.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Incidents rendered at once on every core, then written: bounds the
/// rendered text held to one chunk's.
const INCIDENTS_PER_CHUNK: usize = 512;

/// Writes the summary document with an `incidents` member, the same text
/// `serde_json::to_writer_pretty` writes for the summary with the incidents
/// inserted into its map as a JSON tree (keys in order, each incident's
/// keys sorted), without holding that tree (with a rule that fires on most
/// records, the largest allocation of the run). Incidents are rendered on
/// every core: on one, rendering took 0.064 s of the 0.2 s the incidents
/// and their summary took after the detections of a 0.9 s hunt over 500
/// MB of sign-ins with the SigmaHQ rules (71,169 findings, 13,866
/// incidents), and that path ended after the findings output.
fn write_with_incidents(
    w: &mut dyn Write,
    summary: &serde_json::Value,
    incidents: &[tokenward_incident::Incident],
) -> std::io::Result<()> {
    const KEY: &str = "incidents";
    let empty = serde_json::Map::new();
    let base = summary.as_object().unwrap_or(&empty);
    let mut first = true;
    let mut key = |w: &mut dyn Write, k: &str| -> std::io::Result<()> {
        w.write_all(if first { b"\n  " } else { b",\n  " })?;
        first = false;
        serde_json::to_writer(&mut *w, k)?;
        w.write_all(b": ")
    };
    w.write_all(b"{")?;
    let mut placed = false;
    // `summary_json` has no `incidents` member of its own.
    for (k, v) in base {
        if !placed && k.as_str() > KEY {
            key(w, KEY)?;
            write_incidents(w, incidents)?;
            placed = true;
        }
        key(w, k)?;
        w.write_all(&nested_pretty(v, 1)?)?;
    }
    if !placed {
        key(w, KEY)?;
        write_incidents(w, incidents)?;
    }
    w.write_all(b"\n}")
}

/// The `incidents` array of [`write_with_incidents`], one level down.
fn write_incidents(
    w: &mut dyn Write,
    incidents: &[tokenward_incident::Incident],
) -> std::io::Result<()> {
    use rayon::prelude::*;
    if incidents.is_empty() {
        return w.write_all(b"[]");
    }
    w.write_all(b"[")?;
    let mut first = true;
    for chunk in incidents.chunks(INCIDENTS_PER_CHUNK) {
        // Straight from the structs, whose fields are in key order as the
        // summary's other members are (they go through a JSON tree); a
        // tree per incident was most of the cost of writing them.
        let texts = chunk
            .par_iter()
            .map(|inc| nested_pretty(inc, 2))
            .collect::<Result<Vec<_>, _>>()?;
        for text in texts {
            w.write_all(if first { b"\n    " } else { b",\n    " })?;
            first = false;
            w.write_all(&text)?;
        }
    }
    w.write_all(b"\n  ]")
}

/// `v` pretty-printed as `serde_json::to_vec_pretty` prints it, but as a
/// value `level` levels down in a pretty-printed document: every line
/// after the first is indented by `level` more steps. (Printing it at the
/// top and indenting the text after was a fifth of writing the incidents.)
fn nested_pretty(v: &impl serde::Serialize, level: usize) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, NestedPretty::at(level));
    v.serialize(&mut ser)?;
    Ok(out)
}

/// `serde_json`'s pretty formatter (two spaces a level) starting `level`
/// levels down.
struct NestedPretty {
    level: usize,
    has_value: bool,
}

impl NestedPretty {
    fn at(level: usize) -> NestedPretty {
        NestedPretty {
            level,
            has_value: false,
        }
    }

    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(bracket)
    }

    fn newline<W: ?Sized + Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.level {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn element<W: ?Sized + Write>(&self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }
}

impl serde_json::ser::Formatter for NestedPretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.element(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.element(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Runs `work` with a byte counter that a progress bar on standard error
/// shows (on a terminal, unless `quiet`) until it returns.
pub(crate) fn with_progress<T>(
    inputs: &[PathBuf],
    quiet: bool,
    work: impl FnOnce(Arc<AtomicU64>) -> T,
) -> T {
    let total: u64 = inputs.iter().map(|p| dir_size(p)).sum();
    let progress = Arc::new(AtomicU64::new(0));
    let show_bar = !quiet && std::io::stderr().is_terminal();
    let done = Arc::new(AtomicBool::new(false));
    let bar_thread = show_bar.then(|| {
        let (p, d) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            while !d.load(Ordering::Relaxed) {
                bar.set_position(p.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        })
    });
    let result = work(progress);
    done.store(true, Ordering::Relaxed);
    if let Some(t) = bar_thread {
        let _ = t.join();
    }
    result
}

fn dir_size(p: &std::path::Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.filter_map(Result::ok).map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokenward_event::{Finding, Severity};

    /// The summary written with its incidents streamed is the same text as
    /// the summary with the incidents inserted as a JSON tree.
    #[test]
    fn incidents_streamed_into_the_summary_read_as_inserted() {
        let finding = |user: &str, session: &str| Finding {
            rule_id: "tw-token-without-signin".into(),
            rule_title: "t".into(),
            severity: Severity::High,
            time: tokenward_event::timefmt::parse_timestamp("2023-06-10T10:00:00Z"),
            user: Some(user.into()),
            client_ip: Some("203.0.113.9".into()),
            app_id: None,
            session_id: Some(session.into()),
            token_id: None,
            source_file: "f.jsonl".into(),
            source_locator: "line 1".into(),
            evidence: Default::default(),
        };
        let findings = vec![
            finding("a@x", "s1"),
            finding("b@x", "s2"),
            finding("a@x", "s1"),
        ];
        let incidents = tokenward_incident::build(&tokenward_incident::Slims::of(&findings));
        assert!(!incidents.is_empty());
        // Keys before and after "incidents", as the real summary has.
        let summary =
            json!({"bytes": 1, "detections": [], "files": [{"path": "f"}], "version": "x"});
        let mut inserted = summary.clone();
        inserted["incidents"] = serde_json::to_value(&incidents).unwrap();
        let want = serde_json::to_string_pretty(&inserted).unwrap();
        let written = |summary: &serde_json::Value, incidents| {
            let mut out = Vec::new();
            write_with_incidents(&mut out, summary, incidents).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(written(&summary, &incidents), want);
        // More incidents than one rendered chunk: chunks join as one array.
        let many: Vec<_> = (0..INCIDENTS_PER_CHUNK * 2 + 3)
            .map(|i| {
                let mut inc = incidents[0].clone();
                inc.id = format!("INC-{i:05}");
                inc
            })
            .collect();
        let mut inserted = summary.clone();
        inserted["incidents"] = serde_json::to_value(&many).unwrap();
        assert_eq!(
            written(&summary, &many),
            serde_json::to_string_pretty(&inserted).unwrap()
        );
        // An incident whose texts hold newlines, tabs and quotes (escaped,
        // so a newline in the pretty text is always between tokens), and
        // whose lists are empty.
        let mut odd = incidents[0].clone();
        odd.unlogged = vec![tokenward_incident::Unlogged {
            detail: "d".into(),
            detection: "tw-audit-gap".into(),
            end: None,
            kind: "audit-gap",
            start: Some("2023-06-10T10:00:00Z".into()),
        }];
        odd.read.folders = vec!["\\Inbox".into()];
        odd.read.items_bound = 3;
        odd.why = "line one\nline \"two\"\t\\".into();
        odd.users = vec!["a\nb@x".into()];
        odd.mailboxes.clear();
        odd.detection_parts.clear();
        let odd = [odd];
        let mut inserted = summary.clone();
        inserted["incidents"] = serde_json::to_value(&odd).unwrap();
        assert_eq!(
            written(&summary, &odd),
            serde_json::to_string_pretty(&inserted).unwrap()
        );
        // No incidents, with a summary whose keys all sort before
        // "incidents", after it, or an empty one.
        for summary in [
            json!({"a": 1, "b": {}}),
            json!({"z": [], "y": 1}),
            json!({}),
        ] {
            let mut inserted = summary.clone();
            inserted["incidents"] = json!([]);
            assert_eq!(
                written(&summary, &[]),
                serde_json::to_string_pretty(&inserted).unwrap()
            );
        }
    }
}
