//! The self-contained HTML incident report.
//!
//! One file, no network: CSS and the one small script are inlined and
//! allowed by their hashes in a Content-Security-Policy that allows nothing
//! else, so a value from a log that slipped past escaping still could not
//! run. Every piece of text from logs goes through [`escape`]. Charts are
//! inline SVG written here. What is embedded is bounded (see the `MAX_*`
//! constants) and the page says what it left out.
//!
//! The page is made from two passes over the findings ([`Digest`], then
//! [`Shown`]), not from all of them held at once, so that its memory does
//! not grow with their number.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;
use tokenward_event::timefmt::{parse_timestamp, rfc3339};
use tokenward_event::{Finding, Severity};
use tokenward_incident::{headline, Incident};

mod digest;
mod pivot;

use digest::{timeline_step, PIVOTS};
pub use digest::{Digest, Overview, Shown, DEFAULT_PIVOT_MEMORY};
pub use pivot::MAX_ROW_DETECTIONS;

/// Incidents shown in full (the table lists them all).
pub const MAX_DETAILED_INCIDENTS: usize = 20;
/// Findings listed inside one incident.
pub const MAX_FINDINGS_PER_INCIDENT: usize = 50;
/// Findings in the all-findings table.
pub const MAX_FINDINGS_LISTED: usize = 1_000;
/// Rows in each pivot table.
pub const MAX_PIVOT_ROWS: usize = 200;
/// Characters of evidence JSON shown per finding.
pub const MAX_EVIDENCE_CHARS: usize = 400;
/// Rows (users) in a timeline chart.
pub const MAX_TIMELINE_ROWS: usize = 12;
/// Findings marked in one timeline (evenly sampled past it).
pub const MAX_TIMELINE_MARKS: usize = 400;
/// Unlogged windows listed (and shaded) per incident.
pub const MAX_UNLOGGED: usize = 50;
/// Incidents in the verdict table.
pub const MAX_INCIDENT_ROWS: usize = 500;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("sort.js");

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters would make the file invalid XML inside SVG.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn csp_hash(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

fn sev(s: Severity) -> String {
    format!("<span class=\"sev {0}\">{0}</span>", s.as_str())
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

fn list(values: &[String], max: usize) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let mut out: Vec<String> = values
        .iter()
        .take(max)
        .map(|v| format!("<code>{}</code>", escape(v)))
        .collect();
    if values.len() > max {
        out.push(format!(
            "<span class=\"left-out\">and {} more</span>",
            values.len() - max
        ));
    }
    out.join(", ")
}

fn time_text(t: Option<OffsetDateTime>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "—".into())
}

/// What the report is built from.
pub struct Input<'a> {
    /// The first pass over the findings.
    pub overview: &'a Overview,
    /// The second pass: the findings of the incidents shown in full.
    pub shown: &'a Shown,
    /// The incidents built from the findings.
    pub incidents: &'a [Incident],
    /// The `--summary-json` document of the run (files, detections, IOCs,
    /// and the rules left out of incidents).
    pub summary: &'a Value,
}

/// Renders the whole page.
pub fn render(input: &Input<'_>) -> String {
    let mut body = String::new();
    let mut left_out: Vec<String> = Vec::new();
    // The rules incidents left out, which the verdict must own up to.
    let unweighed_rules = tokenward_incident::left_out_in(input.summary);
    let unweighed = tokenward_incident::Unweighed::of(unweighed_rules.iter().copied());
    header(&mut body, input);
    verdict(&mut body, input, unweighed, &mut left_out);
    incidents(&mut body, input, &mut left_out);
    left_out_of_incidents(&unweighed_rules, &mut left_out);
    pivots(&mut body, input.overview, &mut left_out);
    blind_spots(&mut body, input.summary);
    iocs(&mut body, input.overview, &mut left_out);
    all_findings(&mut body, input.overview, &mut left_out);
    body.push_str("<section id=\"left-out\"><h2>What this page leaves out</h2>");
    if left_out.is_empty() {
        body.push_str("<p>Nothing: every finding and incident is on this page.</p>");
    } else {
        body.push_str("<ul>");
        for l in &left_out {
            let _ = write!(body, "<li>{}</li>", escape(l));
        }
        body.push_str("</ul><p>The findings JSONL and the summary JSON hold everything; <code>tokenward report</code> rebuilds this page from them.</p>");
    }
    body.push_str("</section>");
    let csp = format!(
        "default-src 'none'; style-src {}; script-src {}; img-src data:; base-uri 'none'; form-action 'none'",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    );
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>tokenward hunt report</title>\n<style>{STYLE}</style></head>\n<body>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
}

fn header(out: &mut String, input: &Input<'_>) {
    let s = input.summary;
    let records = &s["records"];
    let files = s["files"].as_array().map_or(0, Vec::len);
    let o = input.overview;
    let _ = write!(
        out,
        "<header><h1>tokenward hunt report</h1><p class=\"meta\">{} {} · {files} file(s) · {} records read, {} evaluated, {} rejected · {} finding(s) from {} to {}</p>\
<nav><a href=\"#verdict\">Verdict</a><a href=\"#incidents\">Incidents</a><a href=\"#pivots\">Pivots</a><a href=\"#blind-spots\">Blind spots</a><a href=\"#iocs\">IOC hits</a><a href=\"#findings\">Findings</a></nav></header><main>",
        escape(s["tool"].as_str().unwrap_or("tokenward hunt")),
        escape(s["version"].as_str().unwrap_or("")),
        records["read"], records["evaluated"], records["rejected"],
        o.findings,
        time_text(o.first),
        time_text(o.last),
    );
}

fn verdict(
    out: &mut String,
    input: &Input<'_>,
    unweighed: tokenward_incident::Unweighed,
    left_out: &mut Vec<String>,
) {
    let top = input.incidents.iter().map(|i| i.severity).max();
    let class = top.map_or("low", Severity::as_str);
    let _ = write!(
        out,
        "<section id=\"verdict\"><h2>Verdict</h2><div class=\"verdict {class}\"><p class=\"headline\">{}</p>",
        escape(&headline(input.incidents, unweighed))
    );
    for inc in input
        .incidents
        .iter()
        .filter(|i| i.severity == Severity::High)
        .take(5)
    {
        let _ = write!(
            out,
            "<p><a href=\"#{id}\">{id}</a>: {}</p>",
            escape(&story(inc)),
            id = escape(&inc.id)
        );
    }
    out.push_str("</div>");
    if !input.incidents.is_empty() {
        out.push_str("<table class=\"sortable\" id=\"incident-table\"><thead><tr><th>Incident</th><th>Severity</th><th class=\"num\">Score</th><th>Users</th><th>Client IPs</th><th>First seen</th><th>Last seen</th><th>Detections</th><th class=\"num\">Findings</th></tr></thead><tbody>");
        for inc in input.incidents.iter().take(MAX_INCIDENT_ROWS) {
            let rank = match inc.severity {
                Severity::High => 3,
                Severity::Medium => 2,
                Severity::Low => 1,
            };
            let _ = write!(
                out,
                "<tr data-severity=\"{sev}\"><td class=\"nowrap\"><a href=\"#{id}\">{id}</a></td><td class=\"nowrap\" data-sort=\"{rank}\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                self::sev(inc.severity),
                inc.score,
                list(&inc.users, 5),
                list(&inc.client_ips, 5),
                escape(inc.first_seen.as_deref().unwrap_or("—")),
                escape(inc.last_seen.as_deref().unwrap_or("—")),
                list(&inc.detections, 8),
                inc.findings,
                id = escape(&inc.id),
                sev = inc.severity.as_str(),
            );
        }
        out.push_str("</tbody></table>");
        if input.incidents.len() > MAX_INCIDENT_ROWS {
            left_out.push(format!(
                "the incident table lists the first {MAX_INCIDENT_ROWS} of {} incidents",
                input.incidents.len()
            ));
        }
    }
    out.push_str("</section>");
}

/// The first `max` values and how many more there are, as plain text.
fn names(values: &[String], max: usize) -> String {
    if values.is_empty() {
        return "no named user".into();
    }
    let mut s = values
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > max {
        let _ = write!(s, " and {} more", values.len() - max);
    }
    s
}

/// The incident in one or two plain sentences.
fn story(inc: &Incident) -> String {
    let mut s = format!(
        "{} finding(s) from {} detection(s) about {}",
        inc.findings,
        inc.detections.len(),
        names(&inc.users, 5)
    );
    if !inc.client_ips.is_empty() {
        let _ = write!(s, " from {} client IP(s)", inc.client_ips.len());
    }
    if !inc.sessions.is_empty() {
        let _ = write!(s, " in {} session(s)", inc.sessions.len());
    }
    if let (Some(a), Some(b)) = (&inc.first_seen, &inc.last_seen) {
        let _ = write!(s, ", {a} to {b}");
    }
    s.push('.');
    if inc.read.items_bound > 0 || inc.read.syncs > 0 || inc.read.exports > 0 {
        let _ = write!(
            s,
            " Read: {} mail item(s) bound on flagged days, {} sync(s), {} export(s).",
            inc.read.items_bound, inc.read.syncs, inc.read.exports
        );
    }
    if !inc.unlogged.is_empty() {
        let kinds: BTreeSet<&str> = inc.unlogged.iter().map(|u| u.kind).collect();
        let _ = write!(
            s,
            " Unlogged: {}.",
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    s
}

fn incidents(out: &mut String, input: &Input<'_>, left_out: &mut Vec<String>) {
    out.push_str("<section id=\"incidents\"><h2>Incidents</h2>");
    if input.incidents.is_empty() {
        out.push_str("<p>None.</p>");
    }
    for (k, inc) in input
        .incidents
        .iter()
        .take(MAX_DETAILED_INCIDENTS)
        .enumerate()
    {
        incident(out, inc, k, input.shown);
    }
    if input.incidents.len() > MAX_DETAILED_INCIDENTS {
        left_out.push(format!(
            "details of {} lower-ranked incidents (the first {MAX_DETAILED_INCIDENTS} are shown in full)",
            input.incidents.len() - MAX_DETAILED_INCIDENTS
        ));
    }
    out.push_str("</section>");
}

/// The `k`-th incident in full.
fn incident(out: &mut String, inc: &Incident, k: usize, shown: &Shown) {
    let id = escape(&inc.id);
    let _ = write!(
        out,
        "<article class=\"incident {sev}\" id=\"{id}\" data-severity=\"{sev}\"><h3>{id} {}</h3><p class=\"why\">{}</p><p>{}</p><dl class=\"facts\">",
        self::sev(inc.severity),
        escape(&inc.why),
        escape(&story(inc)),
        sev = inc.severity.as_str(),
    );
    let fact = |out: &mut String, name: &str, values: &[String], class: &str| {
        let _ = write!(
            out,
            "<dt>{name}</dt><dd class=\"{class}\">{}</dd>",
            list(values, 20)
        );
    };
    fact(out, "Users", &inc.users, "users");
    fact(out, "Mailboxes", &inc.mailboxes, "mailboxes");
    fact(out, "Client IPs", &inc.client_ips, "client-ips");
    fact(out, "Apps", &inc.apps, "apps");
    fact(out, "Sessions", &inc.sessions, "sessions");
    fact(out, "Tokens", &inc.tokens, "tokens");
    let _ = write!(
        out,
        "<dt>First seen</dt><dd>{}</dd><dt>Last seen</dt><dd>{}</dd><dt>ATT&amp;CK</dt><dd>{}</dd>",
        escape(inc.first_seen.as_deref().unwrap_or("—")),
        escape(inc.last_seen.as_deref().unwrap_or("—")),
        if inc.attack.is_empty() {
            "—".to_owned()
        } else {
            inc.attack
                .iter()
                .map(|t| format!("<code class=\"attack\">{}</code>", escape(t)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let r = &inc.read;
    let _ = write!(
        out,
        "<dt>What was read</dt><dd class=\"read\">{} mail item(s) bound on flagged days · {} sync(s) by unusual clients · {} export(s){}</dd></dl>",
        r.items_bound,
        r.syncs,
        r.exports,
        if r.folders.is_empty() {
            String::new()
        } else {
            format!(" · folders: {}", list(&r.folders, 20))
        }
    );
    if !inc.unlogged.is_empty() {
        out.push_str("<h4>Unlogged windows</h4><ul class=\"unlogged\">");
        for u in inc.unlogged.iter().take(MAX_UNLOGGED) {
            let when = match &u.end {
                Some(end) => format!("{} → {}", u.start.as_deref().unwrap_or("?"), end),
                None => format!("from {}", u.start.as_deref().unwrap_or("?")),
            };
            let _ = write!(
                out,
                "<li data-kind=\"{kind}\"><strong>{kind}</strong> {}: {} <small>({})</small></li>",
                escape(&when),
                escape(&u.detail),
                escape(&u.detection),
                kind = u.kind,
            );
        }
        if inc.unlogged.len() > MAX_UNLOGGED {
            let _ = write!(
                out,
                "<li class=\"left-out\">and {} more windows</li>",
                inc.unlogged.len() - MAX_UNLOGGED
            );
        }
        out.push_str("</ul>");
    }
    timeline(out, inc, k, shown);
    out.push_str("<h4>Detections</h4><table><thead><tr><th>Detection</th><th>Weight</th><th class=\"num\">Findings</th><th>ATT&amp;CK</th></tr></thead><tbody>");
    for p in &inc.detection_parts {
        let _ = write!(
            out,
            "<tr><td><code>{}</code> {}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&p.id),
            escape(&p.title),
            p.weight,
            p.findings,
            p.attack.join(", ")
        );
    }
    out.push_str("</tbody></table><details><summary>Findings of this incident</summary>");
    finding_table(
        out,
        inc.members
            .iter()
            .take(MAX_FINDINGS_PER_INCIDENT)
            .filter_map(|&i| shown.finding(i)),
        MAX_FINDINGS_PER_INCIDENT,
        inc.members.len(),
    );
    out.push_str("</details></article>");
}

/// An SVG chart: one row per affected user, the incident's findings as
/// marks coloured by severity, unlogged windows shaded behind them.
fn timeline(out: &mut String, inc: &Incident, k: usize, shown: &Shown) {
    let Some((lo, hi)) = shown.span(k) else {
        return;
    };
    let span = (hi - lo).whole_seconds().max(3600) as f64;
    let (lo_s, pad) = (lo.unix_timestamp() as f64, span * 0.05);
    let (x0, x1) = (lo_s - pad, lo_s + span + pad);
    let (left, width) = (190.0, 760.0);
    let x = |t: f64| left + (t - x0) / (x1 - x0) * width;
    let mut rows: Vec<String> = inc.users.iter().take(MAX_TIMELINE_ROWS).cloned().collect();
    let other = inc.users.len() > MAX_TIMELINE_ROWS || shown.names_no_user(k);
    if other {
        rows.push("(other)".into());
    }
    let row_h = 26.0;
    let height = 40.0 + row_h * rows.len() as f64;
    let _ = write!(
        out,
        "<svg class=\"timeline\" viewBox=\"0 0 980 {height}\" role=\"img\" aria-label=\"Timeline of {}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(&inc.id)
    );
    for u in inc.unlogged.iter().take(MAX_UNLOGGED) {
        let parse = |s: &Option<String>| s.as_deref().and_then(parse_timestamp);
        if let Some(s) = parse(&u.start) {
            let e = parse(&u.end).unwrap_or(s);
            let (a, b) = (
                x(s.unix_timestamp() as f64).clamp(left, left + width),
                x(e.unix_timestamp() as f64).clamp(left, left + width),
            );
            let _ = write!(
                out,
                "<rect class=\"unlogged\" x=\"{a:.1}\" y=\"10\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f4c7c3\" fill-opacity=\"0.6\"><title>{}</title></rect>",
                (b - a).max(3.0),
                row_h * rows.len() as f64,
                escape(&format!("{}: {}", u.kind, u.detail))
            );
        }
    }
    for (r, name) in rows.iter().enumerate() {
        let y = 10.0 + row_h * r as f64 + row_h / 2.0;
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{:.1}\">{}</text><line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d8dde3\"/>",
            y + 4.0,
            escape(&cut(name, 28)),
            left + width
        );
    }
    let marked = inc.members.iter().step_by(timeline_step(inc));
    for f in marked.filter_map(|&i| shown.finding(i)) {
        let Some(t) = f.time else { continue };
        let r = f
            .user
            .as_ref()
            .and_then(|u| rows.iter().position(|n| n == u))
            .unwrap_or(rows.len() - 1);
        let y = 10.0 + row_h * r as f64 + row_h / 2.0;
        let colour = match f.severity {
            Severity::High => "#b3261e",
            Severity::Medium => "#b26a00",
            Severity::Low => "#4a6b8a",
        };
        let _ = write!(
            out,
            "<circle class=\"mark\" cx=\"{:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{colour}\" fill-opacity=\"0.8\"><title>{}</title></circle>",
            x(t.unix_timestamp() as f64),
            escape(&format!("{} {} {}", rfc3339(t), f.rule_id, f.client_ip.as_deref().unwrap_or("")))
        );
    }
    let axis_y = 10.0 + row_h * rows.len() as f64 + 16.0;
    let _ = write!(
        out,
        "<text x=\"4\" y=\"{axis_y:.1}\">UTC, {}</text>",
        lo.year()
    );
    for k in 0..=4 {
        let t = x0 + (x1 - x0) * k as f64 / 4.0;
        let label = OffsetDateTime::from_unix_timestamp(t as i64)
            .map(|d| {
                format!(
                    "{:02}-{:02} {:02}:{:02}",
                    u8::from(d.month()),
                    d.day(),
                    d.hour(),
                    d.minute()
                )
            })
            .unwrap_or_default();
        let anchor = match k {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{axis_y:.1}\" text-anchor=\"{anchor}\">{label}</text>",
            x(t)
        );
    }
    out.push_str("</svg>");
}

fn evidence_text(f: &Finding) -> String {
    cut(
        &serde_json::to_string(&f.evidence).unwrap_or_default(),
        MAX_EVIDENCE_CHARS,
    )
}

fn finding_table<'a>(
    out: &mut String,
    rows: impl Iterator<Item = &'a Finding>,
    max: usize,
    total: usize,
) {
    out.push_str("<table class=\"sortable findings\"><thead><tr><th>Time</th><th>Detection</th><th>Severity</th><th>User</th><th>Client IP</th><th>Session</th><th>Source</th><th>Evidence</th></tr></thead><tbody>");
    for f in rows.take(max) {
        let _ = write!(
            out,
            "<tr><td class=\"nowrap\">{}</td><td><code>{}</code></td><td>{}</td><td class=\"user\">{}</td><td>{}</td><td><code>{}</code></td><td><code>{}:{}</code></td><td><pre class=\"evidence\">{}</pre></td></tr>",
            time_text(f.time),
            escape(&f.rule_id),
            sev(f.severity),
            escape(f.user.as_deref().unwrap_or("")),
            escape(f.client_ip.as_deref().unwrap_or("")),
            escape(f.session_id.as_deref().unwrap_or("")),
            escape(&f.source_file),
            escape(&f.source_locator),
            escape(&evidence_text(f)),
        );
    }
    out.push_str("</tbody></table>");
    if total > max {
        let _ = write!(out, "<p class=\"left-out\">{max} of {total} shown.</p>");
    }
}

fn pivots(out: &mut String, overview: &Overview, left_out: &mut Vec<String>) {
    out.push_str(
        "<section id=\"pivots\"><h2>Pivots</h2><p class=\"meta\">Click a column to sort.</p>",
    );
    for ((id, name), top) in PIVOTS.iter().zip(&overview.pivots) {
        let _ = write!(
            out,
            "<h3>By {}</h3><table class=\"sortable pivot\" id=\"pivot-{id}\"><thead><tr><th>{name}</th><th class=\"num\">Findings</th><th class=\"num\">High</th><th>Detections</th><th>First</th><th>Last</th></tr></thead><tbody>",
            name.to_lowercase()
        );
        for (k, r) in &top.rows {
            let mut detections: Vec<&str> =
                r.detections.iter().map(|&n| overview.rule_id(n)).collect();
            detections.sort_unstable();
            let mut named = detections.join(", ");
            if r.more_detections {
                named.push_str(" and more");
            }
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(k),
                r.total,
                r.high,
                escape(&named),
                time_text(r.first),
                time_text(r.last)
            );
        }
        out.push_str("</tbody></table>");
        if top.values > top.rows.len() as u64 {
            left_out.push(format!(
                "the {} pivot lists {} of {} values",
                name.to_lowercase(),
                top.rows.len(),
                top.values
            ));
        }
    }
    out.push_str("</section>");
}

fn blind_spots(out: &mut String, summary: &Value) {
    out.push_str("<section id=\"blind-spots\"><h2>Blind spots</h2><p>A detection is <span class=\"blind\">blind</span> when the logs given lack the events or fields it needs: its silence says nothing.</p><table class=\"sortable\" id=\"coverage\"><thead><tr><th>Detection</th><th>Status</th><th class=\"num\">Hits</th><th>Why / coverage</th></tr></thead><tbody>");
    for d in summary["detections"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let status = d["status"].as_str().unwrap_or("?");
        let class = if status == "blind" { "blind" } else { "okst" };
        let _ = write!(
            out,
            "<tr data-status=\"{}\"><td><code>{}</code> {}</td><td class=\"{class}\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(status),
            escape(d["id"].as_str().unwrap_or("")),
            escape(d["title"].as_str().unwrap_or("")),
            escape(status),
            d["hits"].as_u64().unwrap_or(0),
            escape(d["note"].as_str().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table><h3>Log sources</h3><table class=\"sortable\" id=\"sources\"><thead><tr><th>File</th><th>Format</th><th>Kinds</th><th class=\"num\">Records</th><th class=\"num\">Rejected</th><th>Records read from</th><th>to</th></tr></thead><tbody>");
    for f in summary["files"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let kinds = f["parsed_by_kind"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(f["path"].as_str().unwrap_or("")),
            escape(f["format"].as_str().unwrap_or(f["error"].as_str().unwrap_or("?"))),
            escape(&kinds),
            f["records_read"].as_u64().unwrap_or(0),
            f["records_rejected"].as_u64().unwrap_or(0),
            escape(f["first_time"].as_str().unwrap_or("—")),
            escape(f["last_time"].as_str().unwrap_or("—")),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn iocs(out: &mut String, overview: &Overview, left_out: &mut Vec<String>) {
    out.push_str("<section id=\"iocs\"><h2>IOC hits</h2>");
    if overview.iocs.is_empty() {
        out.push_str("<p>No indicator matched.</p></section>");
        return;
    }
    out.push_str("<table class=\"sortable\" id=\"ioc-table\"><thead><tr><th>Time</th><th>Indicator</th><th>Kind</th><th>Source of the indicator</th><th>User</th><th>Client IP</th><th>Record</th></tr></thead><tbody>");
    for f in &overview.iocs {
        let ev = &f.evidence;
        let indicator = ["indicator", "ip", "user_agent", "value"]
            .iter()
            .find_map(|k| ev.get(k).and_then(Value::as_str))
            .unwrap_or("");
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}:{}</code></td></tr>",
            time_text(f.time),
            escape(indicator),
            escape(f.rule_id.trim_start_matches("tw-ioc-")),
            escape(ev.get("source").and_then(Value::as_str).unwrap_or("")),
            escape(f.user.as_deref().unwrap_or("")),
            escape(f.client_ip.as_deref().unwrap_or("")),
            escape(&f.source_file),
            escape(&f.source_locator),
        );
    }
    out.push_str("</tbody></table></section>");
    if overview.ioc_hits > overview.iocs.len() as u64 {
        left_out.push(format!(
            "the IOC table lists {} of {} IOC hits",
            overview.iocs.len(),
            overview.ioc_hits
        ));
    }
}

fn all_findings(out: &mut String, overview: &Overview, left_out: &mut Vec<String>) {
    let total = overview.findings;
    let _ = write!(
        out,
        "<section id=\"findings\"><h2>All findings ({total})</h2>"
    );
    // Most severe first, so a cut keeps what matters.
    let listed = &overview.most_severe;
    finding_table(
        out,
        listed.iter(),
        listed.len(),
        usize::try_from(total).unwrap_or(usize::MAX),
    );
    out.push_str("</section></main>");
    if total > listed.len() as u64 {
        left_out.push(format!(
            "the findings table lists {} of {total} findings, most severe first",
            listed.len()
        ));
    }
}

/// The rules whose findings no incident weighs (as the summary names
/// them), when incidents could not weigh every finding.
fn left_out_of_incidents(rules: &[(&str, u64)], left_out: &mut Vec<String>) {
    if rules.is_empty() {
        return;
    }
    let named: Vec<String> = rules
        .iter()
        .map(|(id, n)| format!("{id} ({n} findings)"))
        .collect();
    left_out.push(format!(
        "incidents leave out the findings of these rules, so that memory stays bounded (--incident-findings; Sigma rules before built-in detections, most findings first): {}; they are still counted in the pivots and tables",
        named.join(", ")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        let hostile = "<script>alert(1)</script>\"' onmouseover=x &amp;\u{0}";
        let e = escape(hostile);
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
        assert!(e.contains("&amp;amp;"));
        assert!(!e.contains('\u{0}'));
    }

    #[test]
    fn the_page_allows_only_its_own_style_and_script() {
        let summary = serde_json::json!({"records": {"read": 0, "evaluated": 0, "rejected": 0}, "files": [], "detections": []});
        let page = render(&Input {
            overview: &Digest::default().finish().unwrap(),
            shown: &Shown::default(),
            incidents: &[],
            summary: &summary,
        });
        assert!(page.contains(&csp_hash(SCRIPT)));
        assert!(page.contains(&csp_hash(STYLE)));
        assert!(page.contains("default-src 'none'"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing loads from the network"
        );
        assert_eq!(page.matches("<script>").count(), 1);
    }
}
