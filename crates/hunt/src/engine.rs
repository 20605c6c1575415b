//! The pipeline: files -> decoded bytes -> records -> events -> detections.
//!
//! One reader thread per file splits the byte stream into batches; rayon
//! workers turn batches into events (parsing only records a detection can
//! care about, decided by an Aho-Corasick prefilter over the raw bytes) and
//! hand them to the detector under a lock. Memory is bounded by the batch
//! channel and by the detectors' per-key aggregates.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use memchr::memmem;
use rayon::iter::{ParallelBridge, ParallelIterator};
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::detect::{Detector, Light, Options, RuleStatus};
use crate::event::{Event, EventKind, Locator};
use crate::finding::Finding;
use crate::format::{Container, Format};
use crate::input::{discover, open, sniff, Encoding, SniffError, Sniffed};
use crate::ioc::{IocError, IocSet};
use crate::split::{CsvReader, CsvRow, JsonSplitter, Piece};
use crate::timefmt::parse_timestamp;

/// What to hunt and how.
#[derive(Clone, Debug, Default)]
pub struct HuntConfig {
    /// Files and directories.
    pub inputs: Vec<PathBuf>,
    /// Format forced on every file instead of sniffing.
    pub input_format: Option<Format>,
    /// Extra indicator files (plain lines or STIX 2.1).
    pub ioc_files: Vec<PathBuf>,
    /// Leave out the built-in Storm-0558 indicators.
    pub no_builtin_iocs: bool,
    /// Detection tunables.
    pub options: Options,
    /// Sigma rules to run alongside the built-in detections.
    pub sigma: Option<Arc<crate::sigma::RuleSet>>,
}

/// Errors that stop a hunt before it reads any log.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// An indicator file could not be used.
    #[error("IOC file {0}")]
    Ioc(#[from] IocError),
    /// Nothing to read.
    #[error("no input files found")]
    NoInputs,
}

/// A rejected record.
#[derive(Clone, Debug, Serialize)]
pub struct RejectNote {
    /// Where it is.
    pub locator: String,
    /// Why it was rejected.
    pub reason: String,
}

/// What happened to one input file.
#[derive(Clone, Debug, Serialize, Default)]
pub struct FileReport {
    /// Path as given or found.
    pub path: String,
    /// Format name, when recognised.
    pub format: Option<&'static str>,
    /// Text encoding (`utf-8`, `utf-8-bom`, `utf-16le`, `utf-16be`).
    pub encoding: Option<&'static str>,
    /// Whether the file was gzip-compressed.
    pub gzip: bool,
    /// Records found.
    pub records_read: u64,
    /// Records handed to the detections.
    pub records_evaluated: u64,
    /// Records rejected.
    pub records_rejected: u64,
    /// Rejections by reason class.
    pub reject_reasons: BTreeMap<String, u64>,
    /// The first rejections, with locators.
    pub first_rejects: Vec<RejectNote>,
    /// Records parsed in full (a detection could care about them), per event kind.
    pub parsed_by_kind: BTreeMap<&'static str, u64>,
    /// Why the file could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A remark (e.g. empty file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The result of a hunt.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Findings, sorted by time.
    pub findings: Vec<Finding>,
    /// Per input file.
    pub files: Vec<FileReport>,
    /// Per detection.
    pub detections: Vec<RuleStatus>,
    /// Directory entries skipped because of their extension.
    pub skipped: Vec<String>,
    /// Bytes read from disk.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Indicators in force (IPs/networks, user agents, keys).
    pub iocs: (usize, usize, usize),
}

impl Report {
    /// Totals over files: (read, evaluated, rejected).
    pub fn totals(&self) -> (u64, u64, u64) {
        self.files.iter().fold((0, 0, 0), |a, f| {
            (
                a.0 + f.records_read,
                a.1 + f.records_evaluated,
                a.2 + f.records_rejected,
            )
        })
    }

    /// Whether some input could not be read at all.
    pub fn has_unreadable_input(&self) -> bool {
        self.files.iter().any(|f| f.error.is_some())
    }
}

const FIRST_REJECTS: usize = 5;
const LINES_BATCH: usize = 4 << 20;
const PIECES_BATCH: usize = 4 << 20;
const ROWS_BATCH: usize = 2000;

/// Substrings that make a record worth parsing: each built-in detection's
/// operations and fields, sign-in and directory-audit shapes, and key ids.
/// Matched case-sensitively (a SIMD search; the case-insensitive automaton
/// was the top of the profile), so the spellings seen in exports are listed.
const DETECTION_LITERALS: &[&str] = &[
    "MailItemsAccessed",
    "UniqueTokenId",
    "uniqueTokenId",
    "AADSessionId",
    "AccessTokenForResource",
    "AccessTokenforResource",
    "OWAAuth",
    "\"RecordType\":275",
    "\"RecordType\": 275",
    "\"RecordType\":\"275\"",
    "AuditLogConfig",
    "AuditBypass",
    "AuditEnabled",
    "AuditDisabled",
    "AuditOwner",
    "AuditDelegate",
    "AuditAdmin",
    "diagnosticSettings",
    "DIAGNOSTICSETTINGS",
    "diagnosticsettings",
    "createdDateTime",
    "CreatedDateTime",
    "SignInLogs",
    "SigninLogs",
    "activityDateTime",
    "ActivityDateTime",
    "\"kid\"",
    "\"x5t\"",
    "thumbprint",
    "Thumbprint",
    // Gateway access-log lines: every one feeds tw-gateway-rejected-burst.
    "\"token_sha256_prefix\"",
];

/// Sign-in token and session ids known once the sign-in files are read.
pub(crate) type Joins = (
    std::collections::HashSet<String>,
    std::collections::HashSet<String>,
);

/// Where the token-field literals sit among the prefilter's patterns.
const TOKEN_LITERALS: std::ops::Range<usize> = 1..4;
/// Pattern id of `MailItemsAccessed`.
const MAIL_LITERAL: usize = 0;

/// Most patterns one SIMD (Teddy) searcher takes; above that aho-corasick
/// falls back to an automaton that ran at ~430 MB/s here, the top of the
/// profile. Several Teddy passes (~3-4 GB/s each) are much cheaper.
const PACKED_MAX: usize = 64;
/// With more groups than this, one automaton beats the repeated passes.
const PACKED_GROUPS_MAX: usize = 6;

/// One group of screen literals: a SIMD searcher when the group allows it.
enum Group {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

/// The screen: every literal that makes a record worth parsing, searched in
/// groups. Pattern ids are global (the detection literals first, so their
/// ids are fixed), whatever group a literal lands in.
pub(crate) struct Prefilter {
    groups: Vec<(usize, Group)>,
}

impl Prefilter {
    fn new(lits: &[String]) -> Prefilter {
        let automaton = |pats: &[String]| {
            Group::Automaton(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(pats)
                    .expect("literal patterns build"),
            )
        };
        // Detection literals form the first group on their own: they are
        // fixed and few, so that group is always SIMD.
        let mut bounds = vec![(0, DETECTION_LITERALS.len().min(lits.len()))];
        let mut at = bounds[0].1;
        while at < lits.len() {
            let end = (at + PACKED_MAX).min(lits.len());
            bounds.push((at, end));
            at = end;
        }
        if bounds.len() > PACKED_GROUPS_MAX {
            return Prefilter {
                groups: vec![(0, automaton(lits))],
            };
        }
        let groups = bounds
            .into_iter()
            .filter(|(a, b)| a < b)
            .map(|(a, b)| {
                let pats = &lits[a..b];
                let packed = aho_corasick::packed::Config::new()
                    .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                    .builder()
                    .extend(pats)
                    .build();
                (
                    a,
                    packed.map(Group::Packed).unwrap_or_else(|| automaton(pats)),
                )
            })
            .collect();
        Prefilter { groups }
    }

    /// Every match as (start, global pattern id), sorted by start.
    fn find_all(&self, hay: &[u8], out: &mut Vec<(usize, usize)>) {
        out.clear();
        for (base, g) in &self.groups {
            match g {
                Group::Packed(s) => out.extend(
                    s.find_iter(hay)
                        .map(|m| (m.start(), base + m.pattern().as_usize())),
                ),
                Group::Automaton(a) => out.extend(
                    a.find_iter(hay)
                        .map(|m| (m.start(), base + m.pattern().as_usize())),
                ),
            }
        }
        if self.groups.len() > 1 {
            out.sort_unstable();
        }
    }
}

struct Ctx {
    prefilter: Option<Arc<Prefilter>>,
    /// Pattern ids of the token-field literals.
    token_ids: std::ops::Range<usize>,
    /// With this, a record whose only screen hits are token fields and whose
    /// token or session a sign-in issued is counted as joined without parsing.
    joins: Option<Arc<Joins>>,
    file: Arc<str>,
    hint: Option<EventKind>,
    sigma: Option<Arc<crate::sigma::RuleSet>>,
}

enum Item {
    Rec {
        start: usize,
        end: usize,
        line: u64,
        index: u64,
    },
    Bad {
        line: u64,
        index: u64,
        reason: String,
    },
}

/// A CSV row as a record, or a rejected stretch with its reason.
type RowResult = Result<(Map<String, Value>, Locator), (Locator, String)>;

enum Batch {
    Lines { data: Vec<u8>, first_line: u64 },
    Pieces { data: Vec<u8>, items: Vec<Item> },
    Rows { rows: Vec<RowResult> },
}

#[derive(Default)]
struct Out {
    events: Vec<Event>,
    read: u64,
    evaluated: u64,
    rejects: Vec<(Locator, String)>,
    light: Light,
    uncategorised: u64,
    token_joined: u64,
    sigma_hits: Vec<crate::sigma::Hit>,
    /// Per event: no Sigma rule can match it (its raw record lacked every
    /// rule's texts), so matching is skipped. Filled lazily: events pushed
    /// since the last record take `sigma_last_skip`.
    sigma_skip: Vec<bool>,
    sigma_last_skip: bool,
    /// The batch buffer, handed back to the reader for reuse.
    spare: Vec<u8>,
}

/// What the prefilter saw in a record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Screen {
    Miss,
    TokenOnly,
    /// `MailItemsAccessed` and perhaps token fields, nothing else: the
    /// narrow parse ([`Event::from_json_narrow`]) is enough.
    Mail,
    Hit,
}

fn token_finders() -> &'static [memmem::Finder<'static>; 2] {
    static F: OnceLock<[memmem::Finder<'static>; 2]> = OnceLock::new();
    F.get_or_init(|| {
        [
            memmem::Finder::new(b"\"UniqueTokenId\""),
            memmem::Finder::new(b"\"AADSessionId\""),
        ]
    })
}

/// The token-join shortcut: `Some(joined workload?)` when the record's token
/// or session was issued by a sign-in already read.
fn joined_without_parsing(b: &[u8], joins: &Joins) -> Option<bool> {
    let [tf, sf] = token_finders();
    let tok = tf
        .find(b)
        .and_then(|p| string_after(b, p + tf.needle().len()));
    let sess = sf
        .find(b)
        .and_then(|p| string_after(b, p + sf.needle().len()));
    let hit = tok.is_some_and(|t| joins.0.contains(t))
        || sess.is_some_and(|s| joins.1.contains(&s.to_ascii_lowercase()));
    hit.then_some(true)
}

impl Out {
    fn reject(&mut self, loc: Locator, reason: String) {
        self.read += 1;
        self.rejects.push((loc, reason));
    }
}

fn finders() -> &'static [(memmem::Finder<'static>, bool)] {
    static F: OnceLock<Vec<(memmem::Finder<'static>, bool)>> = OnceLock::new();
    F.get_or_init(|| {
        vec![
            (memmem::Finder::new(b"\"CreationTime\""), true),
            (memmem::Finder::new(b"\"TimeGenerated\""), true),
            (memmem::Finder::new(b"\"time\""), true),
            (memmem::Finder::new(b"\"Timestamp\""), true),
            (memmem::Finder::new(b"Workload\""), false),
        ]
    })
}

/// The string value following a key match: skips `:` and spaces, expects a quote.
fn string_after(b: &[u8], mut i: usize) -> Option<&str> {
    while i < b.len() && (b[i] == b' ' || b[i] == b':' || b[i] == b'\t') {
        i += 1;
    }
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let s = i + 1;
    let e = s + memchr::memchr(b'"', &b[s..])?;
    std::str::from_utf8(&b[s..e]).ok()
}

/// Cheap facts of a record no detection needs parsed: its time and workload.
fn light_fields(b: &[u8]) -> (Option<OffsetDateTime>, Option<&str>) {
    let f = finders();
    let mut time = None;
    for (finder, _) in f.iter().filter(|(_, is_time)| *is_time) {
        if let Some(p) = finder.find(b) {
            time = string_after(b, p + finder.needle().len()).and_then(parse_timestamp);
            if time.is_some() {
                break;
            }
        }
    }
    let wl = f
        .iter()
        .find(|(_, t)| !*t)
        .and_then(|(finder, _)| finder.find(b).map(|p| p + finder.needle().len()))
        .and_then(|p| string_after(b, p));
    (time, wl)
}

fn looks_like_envelope(b: &[u8]) -> bool {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(0);
    let b = &b[s..];
    b.starts_with(b"[")
        || b.starts_with(b"{\"records\"")
        || b.starts_with(b"{\"value\"")
        || b.starts_with(b"{\"@odata")
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|e| e + 1)
        .unwrap_or(s);
    &b[s..e.max(s)]
}

/// Handles one raw JSON record (a line or an array element).
fn handle_json(
    bytes: &[u8],
    loc: Locator,
    ctx: &Ctx,
    prefiltered: Option<Screen>,
    utf8_ok: bool,
    out: &mut Out,
) {
    if !utf8_ok {
        if let Err(e) = std::str::from_utf8(bytes) {
            out.reject(
                loc,
                format!(
                    "invalid UTF-8 at byte {} of the record",
                    e.valid_up_to() + 1
                ),
            );
            return;
        }
    }
    let b = trim(bytes);
    let screen = match (prefiltered, &ctx.prefilter) {
        (_, None) => Screen::Hit,
        (Some(m), Some(_)) => m,
        (None, Some(pf)) => {
            let mut hits = Vec::new();
            pf.find_all(b, &mut hits);
            screen_of(hits.iter().map(|h| h.1), &ctx.token_ids)
        }
    };
    // A record some Sigma rule could match is parsed in full.
    let sigma_wants = ctx.sigma.as_ref().is_some_and(|s| s.wants(b));
    out.sigma_skip.resize(out.events.len(), out.sigma_last_skip);
    out.sigma_last_skip = !sigma_wants;
    let screen = if sigma_wants { Screen::Hit } else { screen };
    let framed = b.first() == Some(&b'{') && b.last() == Some(&b'}');
    if screen == Screen::TokenOnly && framed && !looks_like_envelope(b) {
        if let Some(joins) = &ctx.joins {
            if joined_without_parsing(b, joins).is_some() {
                out.read += 1;
                out.evaluated += 1;
                let (t, w) = light_fields(b);
                match w {
                    Some(w) => {
                        let wl = w.to_ascii_lowercase();
                        if wl.contains("exchange")
                            || wl.contains("sharepoint")
                            || wl.contains("onedrive")
                        {
                            out.token_joined += 1;
                        }
                        out.light.add(w, t)
                    }
                    None => out.uncategorised += 1,
                }
                return;
            }
        }
    }
    if screen == Screen::Miss && framed && !looks_like_envelope(b) {
        out.read += 1;
        out.evaluated += 1;
        match light_fields(b) {
            (t, Some(w)) => out.light.add(w, t),
            (_, None) => out.uncategorised += 1,
        }
        return;
    }
    if screen == Screen::Mail && framed && !looks_like_envelope(b) {
        // Fast events have no record tree, which Sigma rules read; but a
        // record reaches here only when no Sigma rule can match it (one
        // some rule wants is screened `Hit` above), so its event is never
        // matched. The narrow parse is the fallback.
        debug_assert!(!sigma_wants);
        let fast = Event::from_json_fast(b, ctx.file.clone(), loc);
        if let Some(ev) =
            fast.or_else(|| Event::from_json_narrow(b, ctx.hint, ctx.file.clone(), loc))
        {
            out.read += 1;
            out.evaluated += 1;
            out.events.push(ev);
            return;
        }
    }
    match serde_json::from_slice::<Value>(b) {
        Ok(v) => push_value(v, loc, ctx, out),
        Err(e) => {
            let kind = if e.classify() == serde_json::error::Category::Eof {
                "truncated JSON"
            } else {
                "invalid JSON"
            };
            out.reject(loc, format!("{kind}: {e}"));
        }
    }
}

fn screen_of(ids: impl Iterator<Item = usize>, token_ids: &std::ops::Range<usize>) -> Screen {
    let (mut token, mut mail) = (false, false);
    for id in ids {
        if token_ids.contains(&id) {
            token = true;
        } else if id == MAIL_LITERAL {
            mail = true;
        } else {
            return Screen::Hit;
        }
    }
    match (mail, token) {
        (true, _) => Screen::Mail,
        (false, true) => Screen::TokenOnly,
        (false, false) => Screen::Miss,
    }
}

fn push_value(v: Value, loc: Locator, ctx: &Ctx, out: &mut Out) {
    let elems = match v {
        Value::Object(mut m) => {
            let env = ["records", "value"]
                .into_iter()
                .find(|k| m.get(*k).is_some_and(Value::is_array));
            match env {
                Some(k) => match m.remove(k) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                },
                None => {
                    out.read += 1;
                    out.evaluated += 1;
                    out.events.push(Event::from_record(
                        Value::Object(m),
                        ctx.hint,
                        ctx.file.clone(),
                        loc,
                    ));
                    return;
                }
            }
        }
        Value::Array(a) => a,
        other => {
            let t = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "a string",
            };
            out.reject(loc, format!("not a JSON object (found {t})"));
            return;
        }
    };
    for (i, el) in elems.into_iter().enumerate() {
        let l = Locator {
            line: loc.line,
            record: i as u64 + 1,
        };
        if el.is_object() {
            out.read += 1;
            out.evaluated += 1;
            out.events
                .push(Event::from_record(el, ctx.hint, ctx.file.clone(), l));
        } else {
            out.reject(l, "not a JSON object (array element)".into());
        }
    }
}

fn process(batch: Batch, ctx: &Ctx) -> Out {
    let mut out = Out {
        events: SPARE.with(|s| std::mem::take(&mut s.borrow_mut().events)),
        ..Out::default()
    };
    match batch {
        Batch::Lines { data, first_line } => {
            let utf8_ok = std::str::from_utf8(&data).is_ok();
            let mut matches = SPARE.with(|s| std::mem::take(&mut s.borrow_mut().matches));
            if let Some(pf) = &ctx.prefilter {
                pf.find_all(&data, &mut matches);
            }
            let mut mi = 0;
            let mut line = first_line;
            let mut start = 0;
            while start < data.len() {
                let end = memchr::memchr(b'\n', &data[start..])
                    .map(|p| start + p)
                    .unwrap_or(data.len());
                let rec = &data[start..end];
                if !trim(rec).is_empty() {
                    while mi < matches.len() && matches[mi].0 < start {
                        mi += 1;
                    }
                    let mut mj = mi;
                    while mj < matches.len() && matches[mj].0 < end {
                        mj += 1;
                    }
                    let pre = ctx
                        .prefilter
                        .as_ref()
                        .map(|_| screen_of(matches[mi..mj].iter().map(|m| m.1), &ctx.token_ids));
                    handle_json(
                        rec,
                        Locator { line, record: line },
                        ctx,
                        pre,
                        utf8_ok,
                        &mut out,
                    );
                }
                line += 1;
                start = end + 1;
            }
            out.spare = data;
            matches.clear();
            SPARE.with(|s| s.borrow_mut().matches = matches);
        }
        Batch::Pieces { data, items } => {
            for it in items {
                match it {
                    Item::Rec {
                        start,
                        end,
                        line,
                        index,
                    } => handle_json(
                        &data[start..end],
                        Locator {
                            line,
                            record: index,
                        },
                        ctx,
                        None,
                        false,
                        &mut out,
                    ),
                    Item::Bad {
                        line,
                        index,
                        reason,
                    } => out.reject(
                        Locator {
                            line,
                            record: index,
                        },
                        reason,
                    ),
                }
            }
        }
        Batch::Rows { rows } => {
            for r in rows {
                match r {
                    Ok((m, loc)) => {
                        out.read += 1;
                        out.evaluated += 1;
                        out.events.push(Event::from_record(
                            Value::Object(m),
                            ctx.hint,
                            ctx.file.clone(),
                            loc,
                        ));
                    }
                    Err((loc, why)) => out.reject(loc, why),
                }
            }
        }
    }
    // Sigma matching runs here, in the worker, not under the lock.
    if let Some(s) = &ctx.sigma {
        out.sigma_skip.resize(out.events.len(), out.sigma_last_skip);
        for (ev, skip) in out.events.iter().zip(&out.sigma_skip) {
            if !skip {
                s.eval(ev, &mut out.sigma_hits);
            }
        }
    }
    out
}

/// A worker's per-batch vectors, kept between batches: grown afresh each
/// time they cost page faults and zeroing (mimalloc hands freed large
/// blocks back to the OS), 7 % of the profile.
#[derive(Default)]
struct Spare {
    events: Vec<Event>,
    matches: Vec<(usize, usize)>,
}

thread_local! {
    static SPARE: std::cell::RefCell<Spare> = std::cell::RefCell::new(Spare::default());
}

fn read_lines(
    mut r: Box<dyn Read + Send>,
    head: Vec<u8>,
    tx: &std::sync::mpsc::SyncSender<Batch>,
    spares: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut buf = head;
    let mut line = 1u64;
    let mut eof = false;
    loop {
        let mut want = LINES_BATCH;
        loop {
            while !eof && buf.len() < want {
                let old = buf.len();
                buf.resize(want.max(old + 64 * 1024), 0);
                let n = r.read(&mut buf[old..])?;
                buf.truncate(old + n);
                if n == 0 {
                    eof = true;
                }
            }
            if eof || memchr::memrchr(b'\n', &buf).is_some() {
                break;
            }
            want *= 2;
        }
        if eof {
            if !buf.is_empty() {
                let _ = tx.send(Batch::Lines {
                    data: buf,
                    first_line: line,
                });
            }
            return Ok(());
        }
        let cut = memchr::memrchr(b'\n', &buf)
            .map(|p| p + 1)
            .unwrap_or(buf.len());
        let rest = buf[cut..].to_vec();
        buf.truncate(cut);
        let n = memchr::memchr_iter(b'\n', &buf).count() as u64;
        if tx
            .send(Batch::Lines {
                data: buf,
                first_line: line,
            })
            .is_err()
        {
            return Ok(());
        }
        line += n;
        // A processed batch's buffer when one is back: a fresh 4 MiB
        // allocation comes from the OS as pages to fault in and zero (a
        // tenth of the profile with mimalloc).
        let mut nb = spares
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(LINES_BATCH + 64 * 1024));
        nb.clear();
        nb.extend_from_slice(&rest);
        buf = nb;
    }
}

fn read_pieces(
    mut r: Box<dyn Read + Send>,
    head: Vec<u8>,
    tx: &std::sync::mpsc::SyncSender<Batch>,
) -> std::io::Result<()> {
    let mut sp = JsonSplitter::new();
    let mut buf = head;
    let mut eof = false;
    let mut data = Vec::new();
    let mut items = Vec::new();
    loop {
        if !eof {
            let old = buf.len();
            buf.resize(old + (1 << 20), 0);
            let n = r.read(&mut buf[old..])?;
            buf.truncate(old + n);
            eof = n == 0;
        }
        let used = sp.feed(&buf, eof, &mut |p| match p {
            Piece::Record { bytes, line, index } => {
                let start = data.len();
                data.extend_from_slice(bytes);
                items.push(Item::Rec { start, end: data.len(), line, index });
            }
            Piece::Truncated { line, index } => items.push(Item::Bad {
                line,
                index,
                reason: "truncated JSON: the file ends inside this record".into(),
            }),
            Piece::Garbage { line, byte } => items.push(Item::Bad {
                line,
                index: 0,
                reason: format!("invalid JSON: unexpected {:?} where a record should start; skipped to the next line", byte as char),
            }),
        });
        buf.drain(..used);
        if data.len() >= PIECES_BATCH || (eof && (!items.is_empty())) {
            let b = Batch::Pieces {
                data: std::mem::take(&mut data),
                items: std::mem::take(&mut items),
            };
            if tx.send(b).is_err() {
                return Ok(());
            }
        }
        if eof {
            return Ok(());
        }
    }
}

fn read_rows(
    r: Box<dyn Read + Send>,
    head: Vec<u8>,
    delim: u8,
    tx: &std::sync::mpsc::SyncSender<Batch>,
) -> std::io::Result<()> {
    let mut cr = CsvReader::new(std::io::Cursor::new(head).chain(r), delim);
    let mut rows = Vec::new();
    let mut index = 0u64;
    while let Some(row) = cr.next_row()? {
        index += 1;
        match row {
            CsvRow::Row(fields, line) => {
                let mut m = Map::with_capacity(fields.len());
                for (h, f) in cr.header.iter().zip(fields) {
                    m.insert(h.clone(), Value::String(f));
                }
                rows.push(Ok((
                    m,
                    Locator {
                        line,
                        record: index,
                    },
                )));
            }
            CsvRow::Reject(line, why) => rows.push(Err((
                Locator {
                    line,
                    record: index,
                },
                why,
            ))),
        }
        if rows.len() >= ROWS_BATCH
            && tx
                .send(Batch::Rows {
                    rows: std::mem::take(&mut rows),
                })
                .is_err()
        {
            return Ok(());
        }
    }
    if !rows.is_empty() {
        let _ = tx.send(Batch::Rows { rows });
    }
    Ok(())
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Utf8 => "utf-8",
        Encoding::Utf8Bom => "utf-8-bom",
        Encoding::Utf16Le => "utf-16le",
        Encoding::Utf16Be => "utf-16be",
    }
}

struct Shared {
    detector: Option<Detector>,
    sigma: Option<crate::sigma::Sigma>,
    collected: Option<Vec<Event>>,
    file: FileReport,
}

/// Merges a batch into the shared state; returns the events when nobody
/// keeps them, so the caller can free them after releasing the lock.
fn absorb(sh: &mut Shared, out: Out) -> Vec<Event> {
    if let Some(s) = sh.sigma.as_mut() {
        s.absorb(out.sigma_hits);
    }
    for ev in &out.events {
        if let Some(d) = sh.detector.as_mut() {
            d.observe(ev);
        }
        *sh.file.parsed_by_kind.entry(ev.kind.as_str()).or_default() += 1;
    }
    if let Some(d) = sh.detector.as_mut() {
        d.observe_light(out.light);
        d.observe_uncategorised(out.uncategorised);
        d.observe_token_joined(out.token_joined);
    }
    let mut events = out.events;
    if let Some(c) = sh.collected.as_mut() {
        c.append(&mut events);
    }
    sh.file.records_read += out.read;
    sh.file.records_evaluated += out.evaluated;
    for (loc, why) in out.rejects {
        sh.file.records_rejected += 1;
        let class = why.split(':').next().unwrap_or("rejected").to_string();
        *sh.file.reject_reasons.entry(class).or_default() += 1;
        sh.file.first_rejects.push(RejectNote {
            locator: loc.to_string(),
            reason: why,
        });
        // Keep the earliest few, whatever order the workers finished in.
        if sh.file.first_rejects.len() > FIRST_REJECTS * 4 {
            trim_rejects(&mut sh.file.first_rejects);
        }
    }
    events
}

fn reject_key(r: &RejectNote) -> (u64, u64) {
    let nums: Vec<u64> = r
        .locator
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums.as_slice() {
        [l] => (*l, 0),
        [r, l] => (*l, *r),
        _ => (u64::MAX, 0),
    }
}

fn trim_rejects(v: &mut Vec<RejectNote>) {
    v.sort_by_key(reject_key);
    v.truncate(FIRST_REJECTS);
}

/// Runs a hunt. `progress` is advanced by the bytes read from disk.
pub fn run(cfg: &HuntConfig, progress: Arc<AtomicU64>) -> Result<Report, HuntError> {
    let started = Instant::now();
    let mut iocs = if cfg.no_builtin_iocs {
        IocSet::default()
    } else {
        IocSet::builtin()
    };
    for f in &cfg.ioc_files {
        iocs.load_file(f)?;
    }
    let prefilter = iocs.literals().map(|ioc_lits| {
        // Detection literals first: their pattern ids are fixed (TOKEN_LITERALS).
        let mut lits: Vec<String> = DETECTION_LITERALS.iter().map(|s| s.to_string()).collect();
        lits.extend(ioc_lits);
        Arc::new(Prefilter::new(&lits))
    });
    let ioc_counts = (
        iocs.hosts.len() + iocs.networks.len(),
        iocs.user_agents.len(),
        iocs.keys.len(),
    );
    let (files, skipped, errors) = discover(&cfg.inputs);
    if files.is_empty() && errors.is_empty() {
        return Err(HuntError::NoInputs);
    }
    let mut reports = Vec::new();
    for (p, e) in errors {
        reports.push(FileReport {
            path: p.display().to_string(),
            error: Some(e),
            ..Default::default()
        });
    }
    // Sniff every file first so sign-in logs are read before the audit
    // records that must be joined to them.
    let mut plan: Vec<(PathBuf, Option<Sniffed>, FileReport)> = Vec::new();
    let sniff_counter = Arc::new(AtomicU64::new(0));
    for p in files {
        let mut rep = FileReport {
            path: p.display().to_string(),
            ..Default::default()
        };
        let s = match open(&p, sniff_counter.clone()) {
            Ok(mut o) => {
                rep.gzip = o.gzip;
                rep.encoding = Some(encoding_name(o.encoding));
                match sniff(&mut o.reader, cfg.input_format) {
                    Ok((_, Ok(s))) => {
                        rep.format = Some(s.format.name());
                        Some(s)
                    }
                    Ok((_, Err(SniffError::Empty))) => {
                        rep.note = Some("empty file: no records".into());
                        None
                    }
                    Ok((_, Err(e))) => {
                        rep.error = Some(e.to_string());
                        None
                    }
                    Err(e) => {
                        rep.error = Some(format!("read error: {e}"));
                        None
                    }
                }
            }
            Err(e) => {
                rep.error = Some(e.to_string());
                None
            }
        };
        plan.push((p, s, rep));
    }
    plan.sort_by_key(|(_, s, _)| !s.as_ref().is_some_and(|s| s.signin_first));
    let detector = Detector::new(Arc::new(iocs), cfg.options.clone());
    let shared = Mutex::new(Shared {
        detector: Some(detector),
        sigma: cfg.sigma.clone().map(crate::sigma::Sigma::new),
        collected: None,
        file: FileReport::default(),
    });
    let mut joins: Option<Arc<Joins>> = None;
    for (path, sn, rep) in plan {
        if joins.is_none() && !sn.as_ref().is_some_and(|s| s.signin_first) {
            let sh = shared.lock().expect("no panics while locked");
            joins = sh.detector.as_ref().map(|d| Arc::new(d.joins_snapshot()));
        }
        let Some(sn) = sn else {
            reports.push(rep);
            continue;
        };
        shared.lock().expect("no panics while locked").file = rep;
        let res = read_one(
            &path,
            &sn,
            cfg.input_format,
            prefilter.clone(),
            joins.clone(),
            progress.clone(),
            &shared,
        );
        let mut sh = shared.lock().expect("no panics while locked");
        let mut rep = std::mem::take(&mut sh.file);
        if let Err(e) = res {
            rep.error = Some(format!(
                "read error after {} records: {e}",
                rep.records_read
            ));
        }
        trim_rejects(&mut rep.first_rejects);
        if rep.records_read == 0 && rep.error.is_none() && rep.note.is_none() {
            rep.note = Some("no records".into());
        }
        reports.push(rep);
    }
    let sh = shared.into_inner().expect("no panics while locked");
    let (mut findings, mut detections) = sh.detector.expect("set above").finish();
    if let Some(s) = sh.sigma {
        let (f, st, _) = s.finish();
        findings.extend(f);
        findings.sort_by_key(|f| f.time);
        detections.extend(st);
    }
    reports.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Report {
        findings,
        files: reports,
        detections,
        skipped: skipped.iter().map(|p| p.display().to_string()).collect(),
        bytes: progress.load(std::sync::atomic::Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        iocs: ioc_counts,
    })
}

/// Reads one file into events, parsing every record (no prefilter, no
/// detections): the entry point for rule engines and tests. Events come in
/// no particular order; sort by [`Event::locator`] when order matters.
pub fn read_events(path: &std::path::Path, forced: Option<Format>) -> (FileReport, Vec<Event>) {
    let mut rep = FileReport {
        path: path.display().to_string(),
        ..Default::default()
    };
    let counter = Arc::new(AtomicU64::new(0));
    let sn = match open(path, counter.clone()) {
        Ok(mut o) => {
            rep.gzip = o.gzip;
            rep.encoding = Some(encoding_name(o.encoding));
            match sniff(&mut o.reader, forced) {
                Ok((_, Ok(s))) => s,
                Ok((_, Err(SniffError::Empty))) => {
                    rep.note = Some("empty file: no records".into());
                    return (rep, Vec::new());
                }
                Ok((_, Err(e))) => {
                    rep.error = Some(e.to_string());
                    return (rep, Vec::new());
                }
                Err(e) => {
                    rep.error = Some(format!("read error: {e}"));
                    return (rep, Vec::new());
                }
            }
        }
        Err(e) => {
            rep.error = Some(e.to_string());
            return (rep, Vec::new());
        }
    };
    rep.format = Some(sn.format.name());
    let shared = Mutex::new(Shared {
        detector: None,
        sigma: None,
        collected: Some(Vec::new()),
        file: rep,
    });
    let res = read_one(path, &sn, forced, None, None, counter, &shared);
    let sh = shared.into_inner().expect("no panics while locked");
    let mut rep = sh.file;
    if let Err(e) = res {
        rep.error = Some(format!(
            "read error after {} records: {e}",
            rep.records_read
        ));
    }
    trim_rejects(&mut rep.first_rejects);
    let mut evs = sh.collected.unwrap_or_default();
    evs.sort_by_key(|e| e.locator);
    (rep, evs)
}

fn read_one(
    path: &std::path::Path,
    sn: &Sniffed,
    forced: Option<Format>,
    prefilter: Option<Arc<Prefilter>>,
    joins: Option<Arc<Joins>>,
    progress: Arc<AtomicU64>,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    let mut o = open(path, progress)?;
    let (head, _) = sniff(&mut o.reader, forced)?;
    let ctx = Ctx {
        prefilter,
        token_ids: TOKEN_LITERALS,
        joins,
        file: Arc::from(path.display().to_string()),
        hint: sn.format.hint(),
        sigma: shared
            .lock()
            .expect("no panics while locked")
            .sigma
            .as_ref()
            .map(|s| s.rules().clone()),
    };
    let (tx, rx) = sync_channel::<Batch>(4);
    // Line-batch buffers go back to the reader for reuse.
    let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(8);
    let container = sn.container;
    let delim = sn.delimiter;
    let reader = o.reader;
    std::thread::scope(|s| {
        let h = s.spawn(move || match container {
            Container::JsonLines => read_lines(reader, head, &tx, &spare_rx),
            Container::JsonStream => read_pieces(reader, head, &tx),
            Container::Csv => read_rows(reader, head, delim, &tx),
        });
        rx.into_iter().par_bridge().for_each(|b| {
            let mut out = process(b, &ctx);
            let spare = std::mem::take(&mut out.spare);
            let mut sh = shared.lock().expect("no panics while locked");
            let mut spent = absorb(&mut sh, out);
            drop(sh);
            // Freeing a batch's events was a fifth of the time under the lock.
            spent.clear();
            SPARE.with(|s| s.borrow_mut().events = spent);
            if spare.capacity() > 0 {
                // Full or closed: the buffer is simply freed.
                let _ = spare_tx.try_send(spare);
            }
        });
        h.join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reader thread panicked")))
    })
}
