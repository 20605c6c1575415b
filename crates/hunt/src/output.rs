//! Writing findings (table, CSV, JSON lines) and the run summary.

use std::borrow::Cow;
use std::io::{self, Write};

use serde_json::{json, Value};

use crate::engine::Report;
use crate::findings::Findings;
use tokenward_event::evidence::RenderedParts;
use tokenward_event::timefmt::rfc3339;
use tokenward_event::Finding;

/// Output format of the findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for a terminal.
    Table,
    /// RFC 4180 CSV with a header row; `evidence` as a JSON string.
    Csv,
    /// One JSON object per finding.
    Jsonl,
}

/// Column names, in output order: a finding's columns, then its evidence.
pub const COLUMNS: [&str; 12] = {
    let mut c = [""; 12];
    let mut i = 0;
    while i < tokenward_event::finding::COLUMNS.len() {
        c[i] = tokenward_event::finding::COLUMNS[i];
        i += 1;
    }
    c[11] = "evidence";
    c
};

fn cells(f: &Finding, parts: &mut RenderedParts) -> Vec<String> {
    let o = |s: &Option<String>| s.clone().unwrap_or_default();
    let mut evidence = Vec::new();
    f.evidence.write_json(&mut evidence, parts);
    vec![
        f.rule_id.to_string(),
        f.rule_title.to_string(),
        f.severity.as_str().to_string(),
        f.time.map(rfc3339).unwrap_or_default(),
        o(&f.user),
        o(&f.client_ip),
        o(&f.app_id),
        o(&f.session_id),
        o(&f.token_id),
        f.source_file.to_string(),
        f.source_locator.clone(),
        String::from_utf8(evidence).expect("JSON is UTF-8"),
    ]
}

/// Findings serialised per task when writing: big enough to amortise a
/// task, small enough that a wave of them is a few MiB.
const SERIALISE_CHUNK: usize = 512;

/// Serialises findings on every core, a wave of chunks at a time, and
/// writes the chunks in order: an export with a rule that fires on most
/// records has as many findings as records, and one core formatting them
/// after the parallel read was a large part of the wall time. The three
/// steps of a wave overlap those of its neighbours: while the pool
/// serialises one wave, a task reads the next back (merging the spilled
/// runs, one core's work) and this thread writes the one before. Run one
/// after another they left a core idle for most of the end of a hunt.
/// Memory stays bounded by three waves of findings and their text.
fn write_parallel(
    w: &mut dyn Write,
    findings: &Findings,
    serialise: impl Fn(&[Cow<'_, Finding>], &mut Vec<u8>) -> io::Result<()> + Sync,
) -> io::Result<()> {
    use rayon::prelude::*;
    let wave = SERIALISE_CHUNK * rayon::current_num_threads().max(1);
    let mut all = findings.iter()?;
    fn read_wave<'a>(
        all: &mut crate::findings::Iter<'a>,
        wave: usize,
    ) -> Result<Vec<Cow<'a, Finding>>, crate::findings::SpillError> {
        all.by_ref().take(wave).collect()
    }
    let mut group = read_wave(&mut all, wave)?;
    let mut texts: Vec<io::Result<Vec<u8>>> = Vec::new();
    loop {
        let mut next = Ok(Vec::new());
        let mut serialised = Vec::new();
        let mut written = Ok(());
        rayon::in_place_scope(|scope| {
            if !group.is_empty() {
                let (next, all, serialised, group, serialise) =
                    (&mut next, &mut all, &mut serialised, &group, &serialise);
                scope.spawn(move |_| *next = read_wave(all, wave));
                scope.spawn(move |_| {
                    *serialised = group
                        .par_chunks(SERIALISE_CHUNK)
                        .map(|chunk| {
                            let mut buf = Vec::with_capacity(chunk.len() * 512);
                            serialise(chunk, &mut buf)?;
                            Ok(buf)
                        })
                        .collect();
                });
            }
            written = texts.drain(..).try_for_each(|t| w.write_all(&t?));
        });
        written?;
        if group.is_empty() {
            return Ok(());
        }
        texts = serialised;
        group = match next {
            Ok(g) => g,
            Err(e) => {
                // What was read before the error is written, as one
                // writer would have.
                texts.drain(..).try_for_each(|t| w.write_all(&t?))?;
                return Err(e.into());
            }
        };
    }
}

/// Writes findings as JSON lines.
pub fn write_jsonl(w: &mut dyn Write, findings: &Findings) -> io::Result<()> {
    write_parallel(w, findings, |chunk, buf| {
        let mut parts = RenderedParts::default();
        for f in chunk {
            f.write_json(buf, &mut parts);
            buf.push(b'\n');
        }
        Ok(())
    })
}

/// Writes findings as CSV.
pub fn write_csv(w: &mut dyn Write, findings: &Findings) -> io::Result<()> {
    let mut header = csv::Writer::from_writer(&mut *w);
    header.write_record(COLUMNS)?;
    header.flush()?;
    drop(header);
    write_parallel(w, findings, |chunk, buf| {
        let mut c = csv::Writer::from_writer(buf);
        let mut parts = RenderedParts::default();
        for f in chunk {
            c.write_record(cells(f, &mut parts))?;
        }
        c.flush()
    })
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn evidence_text(f: &Finding) -> String {
    f.evidence
        .iter()
        .filter(|(k, _)| k.as_str() != "why")
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes findings as an aligned table (the terminal default). Long values
/// are shortened; use CSV or JSON lines for the full evidence. Two passes
/// over the findings (column widths, then rows), so none is held.
pub fn write_table(w: &mut dyn Write, findings: &Findings) -> io::Result<()> {
    if findings.is_empty() {
        return writeln!(w, "no findings");
    }
    let heads = [
        "TIME",
        "SEV",
        "RULE",
        "USER",
        "CLIENT IP",
        "SOURCE",
        "EVIDENCE",
    ];
    let row = |f: &Finding| -> [String; 7] {
        let file = f
            .source_file
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(&f.source_file);
        let src = if f.source_locator.is_empty() {
            String::new()
        } else {
            format!("{}:{}", file, f.source_locator)
        };
        [
            f.time.map(rfc3339).unwrap_or_default(),
            f.severity.as_str().to_string(),
            f.rule_id.to_string(),
            short(f.user.as_deref().unwrap_or(""), 28),
            short(f.client_ip.as_deref().unwrap_or(""), 22),
            short(&src, 40),
            short(&evidence_text(f), 100),
        ]
    };
    let mut widths = heads.map(|h| h.chars().count());
    for f in findings.iter()? {
        for (i, c) in row(&*f?).iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        cols.iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cols.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(w, "{}", line(&heads.map(String::from)))?;
    for f in findings.iter()? {
        writeln!(w, "{}", line(&row(&*f?)))?;
    }
    Ok(())
}

/// The `--summary-json` document.
pub fn summary_json(r: &Report) -> Value {
    let (read, evaluated, rejected) = r.totals();
    json!({
        "tool": "tokenward hunt",
        "version": env!("CARGO_PKG_VERSION"),
        "seconds": (r.seconds * 1000.0).round() / 1000.0,
        "bytes": r.bytes,
        "records": {"read": read, "evaluated": evaluated, "rejected": rejected},
        "findings": r.findings.len(),
        // Sorted runs of findings written to disk past --findings-memory.
        "findings_spilled_runs": r.findings.spilled_runs(),
        // Sorted runs of detections' keyed state written past
        // --detection-memory.
        "detection_state_spilled_runs": r.detection_state_runs,
        "iocs": {"ips": r.iocs.0, "user_agents": r.iocs.1, "keys": r.iocs.2},
        "files": r.files,
        "skipped": r.skipped,
        "detections": r.detections,
        "signin_index": r.signin_index,
    })
}

/// The human summary printed after a run.
pub fn terminal_summary(r: &Report) -> String {
    let mut s = String::new();
    let (read, evaluated, rejected) = r.totals();
    let mb = r.bytes as f64 / 1e6;
    s.push_str(&format!(
        "read {} file(s), {:.1} MB in {:.2}s: {} records, {} evaluated, {} rejected; {} finding(s)\n",
        r.files.len(),
        mb,
        r.seconds,
        read,
        evaluated,
        rejected,
        r.findings.len()
    ));
    for f in &r.files {
        if let Some(e) = &f.error {
            s.push_str(&format!("  error: {}: {e}\n", f.path));
        } else if f.records_rejected > 0 {
            s.push_str(&format!(
                "  {}: {} ({}), {} of {} records rejected\n",
                f.path,
                f.format.unwrap_or("?"),
                f.reject_reasons
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                f.records_rejected,
                f.records_read
            ));
            for n in &f.first_rejects {
                s.push_str(&format!("    {}: {}\n", n.locator, n.reason));
            }
        } else if let Some(n) = &f.note {
            s.push_str(&format!("  {}: {n}\n", f.path));
        }
        if f.records_with_duplicate_keys > 0 {
            s.push_str(&format!(
                "  {}: {} record(s) name a field twice (the last copy was used)\n",
                f.path, f.records_with_duplicate_keys
            ));
        }
        if f.records_without_time > 0 {
            s.push_str(&format!(
                "  {}: {} of {} evaluated records have no readable time\n",
                f.path, f.records_without_time, f.records_evaluated
            ));
        }
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(
            "  skipped {} file(s) without a log extension\n",
            r.skipped.len()
        ));
    }
    s.push_str("detections:\n");
    for d in &r.detections {
        let status = if d.status == tokenward_event::Status::Blind {
            "BLIND".to_string()
        } else {
            format!("{} hit(s)", d.hits)
        };
        s.push_str(&format!("  {:<28} {:<10}", d.id, status));
        if let Some(n) = &d.note {
            s.push_str(&format!(" {n}"));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenward_event::Severity;

    /// Findings, every other one with a part of its evidence shared (two
    /// parts, one hiding an entry under the finding's own `n`).
    fn findings(n: usize) -> Vec<Finding> {
        let part = |v: Value| std::sync::Arc::new(v.as_object().cloned().unwrap());
        let parts = [
            part(json!({"sigma_title": "T, \"q\"\n", "attack": ["T1078"]})),
            part(json!({"n": "hidden", "z": 1})),
        ];
        (0..n)
            .map(|i| Finding {
                rule_id: "tw-test".into(),
                rule_title: "a, \"quoted\" title".into(),
                severity: Severity::High,
                time: None,
                user: Some(format!("user{i}@contoso.example")),
                client_ip: None,
                app_id: None,
                session_id: None,
                token_id: None,
                source_file: "f.jsonl".into(),
                source_locator: format!("line {}", i + 1),
                evidence: serde_json::Map::from_iter([("n".to_string(), json!(i))]).into(),
            })
            .enumerate()
            .map(|(i, mut f)| {
                if i % 2 == 0 {
                    f.evidence.put_shared(parts[i / 2 % 2].clone());
                }
                f
            })
            .collect()
    }

    /// A writer that fails partway fails the whole write, whichever wave
    /// it fails in.
    #[test]
    fn a_failing_writer_fails_the_write() {
        struct FailsAfter(usize);
        impl Write for FailsAfter {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let wave = SERIALISE_CHUNK * rayon::current_num_threads().max(1);
        let mut fs = findings(3 * wave);
        fs.sort_by(Finding::report_order);
        let store = Findings::from_sorted(fs);
        let mut all = Vec::new();
        write_jsonl(&mut all, &store).unwrap();
        for at in [0, all.len() / 3, all.len() - 1] {
            let e = write_jsonl(&mut FailsAfter(at), &store).unwrap_err();
            assert_eq!(e.to_string(), "disk full", "failing after {at} bytes");
        }
        write_jsonl(&mut FailsAfter(all.len()), &store).unwrap();
    }

    /// Chunks serialised on several threads come out in order, as one
    /// writer would have written them, across chunk and wave boundaries,
    /// whether the findings were held or spilled (read back while the
    /// wave before is serialised and the one before that written).
    #[test]
    fn parallel_writing_matches_one_writer() {
        let wave = SERIALISE_CHUNK * rayon::current_num_threads().max(1);
        let sizes = [
            0,
            1,
            SERIALISE_CHUNK,
            SERIALISE_CHUNK + 1,
            wave + 3,
            2 * wave + 5,
        ];
        for (n, spilled) in sizes.into_iter().flat_map(|n| [(n, false), (n, true)]) {
            // In report order (locators compare as text), as `from_sorted`
            // is promised and spilled runs are read back.
            let mut fs = findings(n);
            fs.sort_by(Finding::report_order);
            let store = if spilled {
                // Runs of about a hundred findings each.
                let mut store =
                    Findings::with_budget(100 * fs.first().map_or(0, Finding::approx_bytes));
                for f in &fs {
                    store.push(f.clone()).unwrap();
                }
                store.seal();
                assert_eq!(store.spilled_runs() > 0, n > 100, "{n} findings spilled");
                store
            } else {
                Findings::from_sorted(fs.clone())
            };
            let mut want = Vec::new();
            for f in &fs {
                serde_json::to_writer(&mut want, f).unwrap();
                want.push(b'\n');
            }
            let mut got = Vec::new();
            write_jsonl(&mut got, &store).unwrap();
            assert!(
                got == want,
                "jsonl differs for {n} findings, spilled: {spilled}"
            );

            let mut c = csv::Writer::from_writer(Vec::new());
            c.write_record(COLUMNS).unwrap();
            for f in &fs {
                // The evidence cell as serde writes it, not as the writer
                // under test renders it.
                let mut row = cells(f, &mut RenderedParts::default());
                *row.last_mut().unwrap() = serde_json::to_string(&f.evidence).unwrap();
                c.write_record(row).unwrap();
            }
            let want = c.into_inner().unwrap();
            let mut got = Vec::new();
            write_csv(&mut got, &store).unwrap();
            assert!(
                got == want,
                "csv differs for {n} findings, spilled: {spilled}"
            );
        }
    }
}
