//! The pipeline: files -> decoded bytes -> records -> events -> detections.
//!
//! Everything the engine does to a record follows from the detections'
//! [`Needs`]: the literal screen over the raw bytes is the union of their
//! anchors, each record is parsed only as far as the detections it matters
//! to read it (its time and workload off its bytes, a projection of the
//! declared fields, or the whole record), each event goes only to the
//! detections whose anchors and kinds it matches, and files whose first
//! record is a sign-in are read first when some detection reads the
//! sign-in index.
//!
//! Files are read in parallel, each by a rayon worker that splits its byte
//! stream into batches and hands them to free workers (or works on them
//! itself); a worker screens and parses a batch and lets a set of shards,
//! one per detection, observe it, then puts the set back for the next
//! batch. The sets are merged into the detections when every file is read
//! (a detection that asks for it has its shard merged after each batch).
//! Memory is bounded by the batches in flight (two per worker over the
//! hunt, and one being read and one being worked on per worker) and by
//! the detections' per-key aggregates, held once per set (as many sets as
//! batches were worked on at once, up to four).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::findings::{Findings, PendingRun, SpillError, WrittenRun, DEFAULT_MEMORY};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rayon::iter::{
    IndexedParallelIterator, IntoParallelIterator, IntoParallelRefMutIterator, ParallelIterator,
};
use serde::Serialize;
use serde_json::{Map, Value};
use tokenward_sigma::cover::{self, CoverSearch, SEARCHER_TEXTS};

use tokenward_detect::ioc::{IocError, IocSet};
use tokenward_detect::signin_index::DEFAULT_INDEX_MEMORY;
use tokenward_detect::{
    builtins, Anchors, Context, Detection, KindScreenFn, Kinds, Needs, Options, RecordStats,
    ScreenFn, Setup, SigninIndex, WholeRecord,
};
use tokenward_event::projection::{plain_audit, plain_wrapped_audit};
use tokenward_event::{
    classify, kind_hint, normalising_projection, time_and_workload_paths, Coverage, Event,
    EventKind, Finding, Locator, Projected, Projection, RootSlot, Words,
};
use tokenward_event::{escapes, shadow};
use tokenward_logread::{
    discover, is_envelope_metadata, open, read_batches, sniff, sniff_known, Batch, BufferPool,
    Cells, CsvRow, Encoding, Format, Item, Opened, SniffError, Sniffed,
};
use tokenward_spill::spilling::{StateDisk, DEFAULT_STATE_MEMORY};

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
    pub sigma: Option<Arc<tokenward_sigma::RuleSet>>,
    /// Report only findings of these detection ids (empty: all).
    pub only: Vec<String>,
    /// Drop findings of these detection ids.
    pub exclude: Vec<String>,
    /// Bytes of findings held in memory before they spill to disk
    /// (`None`: [`crate::findings::DEFAULT_MEMORY`]).
    pub findings_memory: Option<usize>,
    /// Bytes of packed ids the sign-in index holds in memory before the
    /// largest sets spill to disk (`None`:
    /// [`tokenward_detect::signin_index::DEFAULT_INDEX_MEMORY`]).
    pub signin_index_memory: Option<usize>,
    /// Bytes of keyed state (sessions, buckets, correlation groups) all
    /// built-in detections and Sigma correlations hold in memory before it
    /// spills to disk (`None`:
    /// [`tokenward_spill::spilling::DEFAULT_STATE_MEMORY`]).
    pub detection_memory: Option<usize>,
}

/// Errors that stop a hunt: before it reads any log, or (a spill) once
/// everything was read.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// An indicator file could not be used.
    #[error("IOC file {0}")]
    Ioc(#[from] IocError),
    /// Nothing to read.
    #[error("no input files found")]
    NoInputs,
    /// Findings over the memory budget could not be spilled or read back.
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// The sign-in index could not be spilled or read back.
    #[error("the sign-in index could not be spilled to or read back from a temporary file in {dir}: {reason}", dir = .0.display(), reason = .1)]
    SigninIndex(PathBuf, String),
    /// Detections' keyed state could not be spilled or read back.
    #[error("{reason} (temporary files in {dir})", dir = .0.display(), reason = .1)]
    DetectionState(PathBuf, String),
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
    /// Records parsed (some detection reads them), per event kind.
    pub parsed_by_kind: BTreeMap<&'static str, u64>,
    /// Evaluated records without a time that could be read (no time field,
    /// or one in no known format): windows, baselines and gaps cannot place
    /// them.
    pub records_without_time: u64,
    /// Records naming a field some detection reads twice in one object (the
    /// last copy is used, as JSON parsers usually do; other tools may read
    /// the first).
    pub records_with_duplicate_keys: u64,
    /// Earliest time among the records a detection read (records no
    /// detection needed are not parsed, so their times are not known).
    #[serde(serialize_with = "ser_time", skip_serializing_if = "Option::is_none")]
    pub first_time: Option<time::OffsetDateTime>,
    /// Latest time among the records a detection read.
    #[serde(serialize_with = "ser_time", skip_serializing_if = "Option::is_none")]
    pub last_time: Option<time::OffsetDateTime>,
    /// Why the file could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A remark (e.g. empty file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn ser_time<S: serde::Serializer>(
    t: &Option<time::OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&tokenward_event::timefmt::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// The result of a hunt.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Findings, in report order ([`Finding::report_order`]).
    pub findings: Findings,
    /// Per input file.
    pub files: Vec<FileReport>,
    /// Per detection.
    pub detections: Vec<Coverage>,
    /// Directory entries skipped because of their extension.
    pub skipped: Vec<String>,
    /// Bytes read from disk.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Indicators in force (IPs/networks, user agents, keys).
    pub iocs: (usize, usize, usize),
    /// What the sign-in index held at the end.
    pub signin_index: SigninIndexSummary,
    /// Sorted runs of detections' keyed state written to disk past
    /// `--detection-memory` (merges of runs included).
    pub detection_state_runs: u64,
}

/// What the sign-in index held when the hunt ended.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SigninIndexSummary {
    /// Sign-in events indexed.
    pub signins: u64,
    /// Ids (tokens, sessions, addresses) moved to runs on disk past
    /// `--signin-index-memory`.
    pub ids_on_disk: usize,
    /// Runs on disk holding them (one per set once sealed).
    pub runs: usize,
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

/// With more searchers than this, one automaton beats the repeated passes
/// (a long `--ioc` list).
const LITERAL_SEARCHERS_MAX: usize = 6;

/// Literal search over raw bytes: every pattern, wherever it starts, by
/// cover texts ([`tokenward_sigma::cover`]) or, without SIMD or for too
/// many patterns, an automaton.
///
/// Every pattern in a record is found, wherever it starts: a record goes to
/// every reader one of whose texts it holds, even when another reader's
/// text starts at the same place or overlaps it. (A search that reports
/// the first pattern at a place and goes on after it handed a record
/// holding `NEEDLE` to the reader of `NEED` only.)
enum Literals {
    Cover(CoverSearch),
    Automaton(AhoCorasick),
}

impl Literals {
    fn new(lits: &[String]) -> Literals {
        match CoverSearch::new(lits, SEARCHER_TEXTS, LITERAL_SEARCHERS_MAX) {
            Some(c) => Literals::Cover(c),
            // Overlapping search (standard semantics) reports every
            // pattern at every place by itself.
            None => Literals::Automaton(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(lits)
                    .expect("literal patterns build"),
            ),
        }
    }

    /// Every match as (start, global pattern id), sorted by start, each
    /// once.
    fn find_all(&self, hay: &[u8], out: &mut Vec<(usize, usize)>) {
        out.clear();
        match self {
            Literals::Cover(c) => {
                c.find(hay, |start, id| {
                    out.push((start, id));
                    false
                });
            }
            Literals::Automaton(a) => out.extend(
                a.find_overlapping_iter(hay)
                    .map(|m| (m.start(), m.pattern().as_usize())),
            ),
        }
        // Both report by where a match ends or a cover text starts, not
        // by where a pattern starts; cover texts may repeat a match.
        out.sort_unstable();
        out.dedup();
    }
}

/// The literal matches of a whole batch, handed out record by record in
/// the batch's order.
struct BatchMatches {
    /// (place, pattern), sorted by place.
    all: Vec<(usize, usize)>,
    /// The first match not before the last record asked for.
    next: usize,
}

impl BatchMatches {
    /// One literal pass over `data` (none without a plan or literals).
    fn of(plan: Option<&Plan>, data: &[u8]) -> BatchMatches {
        let mut all = Vec::new();
        if let Some(l) = plan.and_then(|p| p.literals.as_ref()) {
            l.find_all(data, &mut all);
        }
        BatchMatches { all, next: 0 }
    }

    /// The matches starting in `start..end`; records are asked for in
    /// order.
    fn within(&mut self, start: usize, end: usize) -> &[(usize, usize)] {
        while self.next < self.all.len() && self.all[self.next].0 < start {
            self.next += 1;
        }
        let from = self.next;
        while self.next < self.all.len() && self.all[self.next].0 < end {
            self.next += 1;
        }
        &self.all[from..self.next]
    }
}

/// A set of readers (detections, and the sign-in index in the last slot)
/// as bits.
type Mask = u64;

/// What the literal pass and the readers' own screens found in a record.
#[derive(Clone, Copy)]
struct Screened {
    /// The readers it goes to.
    readers: Mask,
    /// Readers that read it whole if they see it: those that read every
    /// record whole, and those with a whole-record text in it.
    whole: Mask,
    /// The kind the readers' own screens were told the record is (`None`:
    /// any kind): a guess made before parsing ([`KindGuess`]), and once the
    /// screens were asked again, the kind it was parsed as.
    told: Option<EventKind>,
    /// Readers it would go to but is withheld from ([`Ctx::withheld`]),
    /// not in `readers`: so it is projected and parsed for the others alone.
    withheld: Mask,
}

/// An anchor or whole-record text holding characters some JSON writers
/// escape and others do not (`/`, `'`, `<`, `>`, `&`, `+`, a backquote,
/// non-ASCII; [`escapes::optionally_escaped`]): in the bytes of a record
/// whose value holds it, only the runs between them are sure to be as
/// written. So it is looked for as those runs (of three bytes or more),
/// all of which the record must hold: the rarest ([`cover::rarest`]) by
/// the literal pass, the others then in the record. (Looked for whole, a
/// user agent indicator with `+` or `&` went unseen in a record that .NET
/// or Microsoft Sentinel wrote as `\u002B` or `\u0026`; looked for as
/// patterns each, runs every browser's user agent has were found in most
/// sign-ins, 15 % more CPU over mailbox records.)
///
/// An anchor in any case ([`Anchors::AnyOfIgnoringCase`]) with letters is
/// one too, with or without such characters: the literal pass looks for
/// the case spellings of a piece of it ([`cover::any_case_cover`]), and
/// the record is then checked for every run, case ignored.
struct RunsOfText {
    /// Its other runs (every run, for a text in any case: its pattern is
    /// a piece of one).
    rest: Vec<Run>,
    /// Readers it is an anchor of.
    readers: Mask,
    /// Readers it is a whole-record text of.
    whole: Mask,
}

/// A run of a [`RunsOfText`], looked for in a record.
enum Run {
    /// As written (boxed: a finder is ten times the other's size).
    Exact(Box<memchr::memmem::Finder<'static>>),
    /// ASCII case ignored; lower-cased.
    AnyCase(Vec<u8>),
}

impl Run {
    fn is_in(&self, bytes: &[u8]) -> bool {
        match self {
            Run::Exact(f) => f.find(bytes).is_some(),
            Run::AnyCase(run) => {
                let Some((&first, _)) = run.split_first() else {
                    return true;
                };
                // Only records holding the text's piece get here: a byte
                // loop at each place its first byte is, in either case.
                let mut at = 0;
                while let Some(p) = memchr::memchr2(first, first.to_ascii_uppercase(), &bytes[at..])
                {
                    let start = at + p;
                    if bytes
                        .get(start..start + run.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(run))
                    {
                        return true;
                    }
                    at = start + 1;
                }
                false
            }
        }
    }
}

/// The literal pass's patterns as a plan gathers them: one per distinct
/// text, with the readers it stands for.
#[derive(Default)]
struct Patterns {
    texts: Vec<String>,
    /// Readers each pattern stands for.
    readers: Vec<Mask>,
    /// Readers that read a record holding it whole.
    whole: Vec<Mask>,
    by_text: HashMap<String, usize>,
}

impl Patterns {
    /// The pattern of text `t`, added if new, standing also for `readers`
    /// and `whole`.
    fn add(&mut self, t: &str, readers: Mask, whole: Mask) -> usize {
        let id = match self.by_text.get(t) {
            Some(&id) => id,
            None => {
                self.texts.push(t.to_owned());
                self.readers.push(0);
                self.whole.push(0);
                self.by_text.insert(t.to_owned(), self.texts.len() - 1);
                self.texts.len() - 1
            }
        };
        self.readers[id] |= readers;
        self.whole[id] |= whole;
        id
    }
}

/// Every ASCII case spelling of `piece` (at most 2 to the number of its
/// letters).
fn case_spellings(piece: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in piece.chars() {
        let (lower, upper) = (c.to_ascii_lowercase(), c.to_ascii_uppercase());
        let mut next = Vec::with_capacity(out.len() * 2);
        for s in &out {
            next.push(format!("{s}{lower}"));
            if upper != lower {
                next.push(format!("{s}{upper}"));
            }
        }
        out = next;
    }
    out
}

/// What the engine derived from the detections' needs.
struct Plan {
    needs: Vec<Needs>,
    /// The literal screen: the union of every reader's `AnyOf` anchors
    /// and of the case spellings of its any-case anchors' pieces.
    literals: Option<Literals>,
    /// Readers each literal pattern stands for.
    pattern_readers: Vec<Mask>,
    /// Readers that read a record whole when it holds the pattern
    /// ([`WholeRecord::WhenAnyOf`]).
    pattern_whole: Vec<Mask>,
    /// Texts looked for as several runs, all of which a record must hold
    /// ([`RunsOfText`]).
    texts_of_runs: Vec<RunsOfText>,
    /// The places in `texts_of_runs` of the texts whose rarest run each
    /// pattern is, or (for a text in any case) a case spelling of a piece
    /// of.
    pattern_texts: Vec<Vec<u32>>,
    /// Readers that see every record.
    every: Mask,
    /// Readers with a screen of their own.
    screens: Vec<(usize, KindScreenFn)>,
    /// Readers satisfied by a record's time and workload alone.
    light: Mask,
    /// Readers that read every record whole.
    whole: Mask,
    /// Readers that read whole only the records of some kinds that their
    /// screen passes.
    whole_screens: Vec<(usize, Kinds, ScreenFn)>,
    /// Readers that read the words of the records of some kinds that
    /// their screen passes ([`WholeRecord::WordsWhen`]).
    words_screens: Vec<(usize, Kinds, ScreenFn)>,
    /// The sign-in index's slot, when some detection reads it.
    index_slot: Option<usize>,
    /// Readers blind without sign-ins ([`Needs::blind_without_signins`]).
    blind_without_signins: Mask,
    /// Batch buffers shared by every file.
    pool: BufferPool,
    /// Projections built so far, per set of readers.
    projections: Mutex<HashMap<Mask, Arc<Projection>>>,
    /// The projection of every set of readers of time and workload alone.
    time_and_workload: Arc<Projection>,
}

impl Plan {
    fn new(detections: &[Box<dyn Detection>]) -> Plan {
        let mut needs: Vec<Needs> = detections.iter().map(|d| d.needs()).collect();
        let index_slot = needs.iter().any(|n| n.signin_index).then(|| {
            needs.push(SigninIndex::needs());
            needs.len() - 1
        });
        Plan::of_needs(needs, index_slot)
    }

    /// The plan of a second reading of some files for the detections
    /// blind without sign-ins, which were withheld their records
    /// ([`Ctx::withheld`]): the others read nothing, and no sign-in is
    /// indexed again. Readers keep their places, so the shards of a batch
    /// still line up with the detections.
    fn rereading(&self) -> Plan {
        let detections = self.index_slot.unwrap_or(self.needs.len());
        let needs = self.needs[..detections]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if self.blind_without_signins & (1 << i) != 0 {
                    n.clone()
                } else {
                    // No kind, no anchor: never a reader.
                    Needs::anchored(Kinds::of(&[]), &[], &[])
                }
            })
            .collect();
        Plan::of_needs(needs, None)
    }

    /// The plan of these needs (the index's among them at `index_slot`).
    fn of_needs(needs: Vec<Needs>, index_slot: Option<usize>) -> Plan {
        debug_assert!(
            needs
                .iter()
                .all(|n| !n.blind_without_signins || n.signin_index),
            "a detection blind without sign-ins reads the index"
        );
        assert!(
            needs.len() < 64,
            "at most 63 detections (a Sigma rule set is one)"
        );
        let mut patterns = Patterns::default();
        let mut texts_of_runs: Vec<RunsOfText> = Vec::new();
        // Texts in any case (their places in `texts_of_runs`, and runs):
        // their patterns are chosen for all of them at once, below.
        let mut any_case_texts: Vec<(usize, Vec<String>)> = Vec::new();
        let mut by_runs: HashMap<String, usize> = HashMap::new();
        // (pattern, text of runs it anchors)
        let mut pattern_texts_of: Vec<(usize, usize)> = Vec::new();
        // One pattern per distinct text, whether an anchor of some readers,
        // a whole-record text of others, or both; a text of several runs
        // is its runs' patterns and stands for its readers itself. False
        // when no run is long enough to look for: such a text rules no
        // record out.
        let mut add_text = |t: &str, readers: Mask, whole: Mask, any_case: bool| -> bool {
            // A text without letters is the same in any case.
            let any_case = any_case && t.bytes().any(|b| b.is_ascii_alphabetic());
            let escapable = t.contains(escapes::optionally_escaped);
            if !escapable && !any_case {
                patterns.add(t, readers, whole);
                return true;
            }
            let runs: Vec<&str> = if escapable {
                escapes::optional_escape_runs(t)
                    .filter(|r| r.len() >= escapes::SCREEN_TEXT_MIN)
                    .collect()
            } else {
                vec![t]
            };
            if any_case {
                if runs.is_empty() {
                    return false;
                }
                // Found by a short piece in each of its case spellings
                // (chosen below), then every run, case ignored, in the
                // record.
                let key = format!("any case\0{t}");
                let at = *by_runs.entry(key).or_insert_with(|| {
                    texts_of_runs.push(RunsOfText {
                        rest: runs
                            .iter()
                            .map(|r| Run::AnyCase(r.to_ascii_lowercase().into_bytes()))
                            .collect(),
                        readers: 0,
                        whole: 0,
                    });
                    let at = texts_of_runs.len() - 1;
                    any_case_texts.push((at, runs.iter().map(|r| r.to_string()).collect()));
                    at
                });
                texts_of_runs[at].readers |= readers;
                texts_of_runs[at].whole |= whole;
                return true;
            }
            match runs[..] {
                [] => return false,
                [run] => {
                    patterns.add(run, readers, whole);
                }
                _ => {
                    let at = *by_runs.entry(t.to_owned()).or_insert_with(|| {
                        let rarest = cover::rarest(&runs).expect("runs");
                        let anchor = patterns.add(rarest, 0, 0);
                        let rest = runs
                            .iter()
                            .filter(|&&r| r != rarest)
                            .map(|r| {
                                Run::Exact(Box::new(
                                    memchr::memmem::Finder::new(r.as_bytes()).into_owned(),
                                ))
                            })
                            .collect();
                        texts_of_runs.push(RunsOfText {
                            rest,
                            readers: 0,
                            whole: 0,
                        });
                        pattern_texts_of.push((anchor, texts_of_runs.len() - 1));
                        texts_of_runs.len() - 1
                    });
                    texts_of_runs[at].readers |= readers;
                    texts_of_runs[at].whole |= whole;
                }
            }
            true
        };
        let (mut every, mut light, mut whole, mut blind_without_signins) = (0, 0, 0, 0);
        let mut screens = Vec::new();
        let mut whole_screens = Vec::new();
        let mut words_screens = Vec::new();
        for (i, n) in needs.iter().enumerate() {
            let bit = 1u64 << i;
            match &n.anchors {
                Anchors::Every => every |= bit,
                Anchors::AnyOf(texts) | Anchors::AnyOfIgnoringCase(texts) => {
                    let any_case = matches!(n.anchors, Anchors::AnyOfIgnoringCase(_));
                    for t in texts.iter().filter(|t| !t.is_empty()) {
                        if !add_text(t, bit, 0, any_case) {
                            every |= bit;
                        }
                    }
                }
                Anchors::Screen(f) => screens.push((i, f.clone())),
            }
            if n.reads_time_and_workload_only() {
                light |= bit;
            }
            if n.blind_without_signins {
                blind_without_signins |= bit;
            }
            match &n.whole_record {
                WholeRecord::Never => {}
                WholeRecord::Always => whole |= bit,
                WholeRecord::When(kinds, f) => whole_screens.push((i, *kinds, f.clone())),
                WholeRecord::WordsWhen(kinds, f) => words_screens.push((i, *kinds, f.clone())),
                WholeRecord::WhenAnyOf(texts) => {
                    for t in texts.iter().filter(|t| !t.is_empty()) {
                        if !add_text(t, 0, bit, false) {
                            whole |= bit;
                        }
                    }
                }
            }
        }
        // Pieces shared by texts in any case need fewer case spellings
        // (each a pattern of the literal pass, which takes another pass
        // over the data every `SEARCHER_TEXTS` patterns).
        let runs: Vec<Vec<&str>> = any_case_texts
            .iter()
            .map(|(_, r)| r.iter().map(String::as_str).collect())
            .collect();
        for (piece, holders) in cover::any_case_cover(&runs) {
            for spelling in case_spellings(&piece) {
                let anchor = patterns.add(&spelling, 0, 0);
                for &h in &holders {
                    pattern_texts_of.push((anchor, any_case_texts[h].0));
                }
            }
        }
        let Patterns {
            texts: lits,
            readers: pattern_readers,
            whole: pattern_whole,
            ..
        } = patterns;
        let mut pattern_texts = vec![Vec::new(); lits.len()];
        for (p, at) in pattern_texts_of {
            pattern_texts[p].push(at as u32);
        }
        Plan {
            literals: (!lits.is_empty()).then(|| Literals::new(&lits)),
            pattern_readers,
            pattern_whole,
            texts_of_runs,
            pattern_texts,
            every,
            screens,
            light,
            whole,
            whole_screens,
            words_screens,
            index_slot,
            blind_without_signins,
            pool: BufferPool::default(),
            needs,
            projections: Mutex::new(HashMap::new()),
            time_and_workload: Arc::new(Projection::new(time_and_workload_paths())),
        }
    }

    /// Readers of a record given the literal matches in its bytes (a JSON
    /// text, or a CSV row written as `"column":value` lines), its readers'
    /// own screens told it is of kind `guess`; those in `withheld` are set
    /// apart ([`Screened::withheld`]).
    fn readers(
        &self,
        matches: &[(usize, usize)],
        bytes: &[u8],
        screening: &mut ScreenState,
        guess: Option<EventKind>,
        withheld: Mask,
    ) -> Screened {
        let mut s = Screened {
            readers: self.every,
            whole: self.whole,
            // Without a screen nobody was told anything.
            told: guess.filter(|_| !self.screens.is_empty()),
            withheld: 0,
        };
        screening.records += 1;
        if screening.checked_for.len() < self.texts_of_runs.len() {
            screening.checked_for.resize(self.texts_of_runs.len(), 0);
        }
        for &(_, id) in matches {
            s.readers |= self.pattern_readers[id];
            s.whole |= self.pattern_whole[id];
            for &at in &self.pattern_texts[id] {
                let at = at as usize;
                let t = &self.texts_of_runs[at];
                if screening.checked_for[at] == screening.records
                    || (t.readers & !s.readers == 0 && t.whole & !s.whole == 0)
                {
                    continue;
                }
                screening.checked_for[at] = screening.records;
                if t.rest.iter().all(|r| r.is_in(bytes)) {
                    s.readers |= t.readers;
                    s.whole |= t.whole;
                }
            }
        }
        for (j, (i, f)) in self.screens.iter().enumerate() {
            if screening.passes(j, f, guess, bytes) {
                s.readers |= 1 << i;
            }
        }
        s.withheld = s.readers & withheld;
        s.readers &= !withheld;
        s
    }

    /// Readers whose own screens, told the wrong kind, ruled out a record
    /// that they pass told the kind it is.
    fn late_readers(&self, s: Screened, kind: EventKind, bytes: &[u8]) -> Mask {
        if s.told.is_none_or(|t| t == kind) {
            return 0;
        }
        self.screens
            .iter()
            .filter(|(i, f)| s.readers & (1 << i) == 0 && f(Some(kind), bytes))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// Whether a screened record is parsed whole before its kind is known:
    /// one of its readers reads every record whole, found one of its
    /// whole-record texts, or has a whole-record screen for every kind
    /// that passes the record's bytes.
    fn reads_whole(&self, s: Screened, bytes: &[u8]) -> bool {
        s.readers & s.whole != 0
            || self
                .whole_screens
                .iter()
                .any(|(i, kinds, f)| s.readers & (1 << i) != 0 && *kinds == Kinds::ALL && f(bytes))
    }

    /// Whether a screened record, projected and found to be of `kind`, is
    /// parsed whole after all: a reader's whole-record screen for some
    /// kinds, that one among them, passes its bytes. (A screen for every
    /// kind was asked before the projection, by [`Plan::reads_whole`].)
    fn reads_whole_as(&self, s: Screened, kind: EventKind, bytes: &[u8]) -> bool {
        self.whole_screens.iter().any(|(i, kinds, f)| {
            s.readers & (1 << i) != 0 && *kinds != Kinds::ALL && kinds.contains(kind) && f(bytes)
        })
    }

    /// Whether a screened record, projected and found to be of `kind`,
    /// is read for its words ([`WholeRecord::WordsWhen`]).
    fn reads_words_as(&self, s: Screened, kind: EventKind, bytes: &[u8]) -> bool {
        self.words_screens
            .iter()
            .any(|(i, kinds, f)| s.readers & (1 << i) != 0 && kinds.contains(kind) && f(bytes))
    }

    /// The projection that serves a set of readers: the normalised fields
    /// and every path they declared; for readers of nothing but the time
    /// and workload (and for none), only what gives the kind, time and
    /// workload, which the engine counts records by. Keeping every
    /// normalised field (user, addresses, ids) for such a record was most
    /// of what projecting it cost, where its time and workload could not
    /// be read off the bytes (JSON in a string, as in a PowerShell
    /// export's `AuditData`).
    fn projection(&self, readers: Mask) -> Arc<Projection> {
        let mut cache = self.projections.lock().expect("no panics while locked");
        cache
            .entry(readers)
            .or_insert_with(|| {
                if readers & !self.light == 0 {
                    return self.time_and_workload.clone();
                }
                let mut p = normalising_projection();
                for (i, n) in self.needs.iter().enumerate() {
                    if readers & (1 << i) != 0 {
                        for f in &n.fields {
                            p.add(f.as_ref());
                        }
                    }
                }
                Arc::new(p)
            })
            .clone()
    }
}

/// The sign-in index as the detections see it: what was read before the
/// current file, plus what later files added (complete when finishing).
#[derive(Default)]
struct Index {
    frozen: Arc<SigninIndex>,
    late: SigninIndex,
}

/// Sets of shards kept between batches at most: each holds its own
/// per-key aggregates, so memory must not grow with the number of cores.
/// On more cores, the workers beyond these fork fresh shards for a batch
/// and merge them after it, as every worker once did.
const KEPT_SETS_MAX: usize = 4;

/// Findings a detection makes when it finishes, handed to the store at a
/// time: few enough that a batch is small beside the store's memory.
const FINDINGS_HANDED_OVER: usize = 4096;

/// State shared by the workers of a hunt.
struct Shared {
    detections: Vec<Box<dyn Detection>>,
    /// Shards between batches: a worker takes a set for its next batch,
    /// so each shard observes batch after batch, and the sets are merged
    /// into the detections once every file is read. There are as many as
    /// batches were ever worked on at once, up to [`KEPT_SETS_MAX`].
    kept: Vec<Vec<Box<dyn Detection>>>,
    index: Index,
    stats: RecordStats,
    /// `read_events`: every event is kept instead of observed.
    collected: Option<Vec<Event>>,
    /// Findings handed over by the detections so far.
    intake: Intake,
    /// Files some of whose records were withheld from the detections
    /// blind without sign-ins ([`Ctx::withheld`]).
    withheld_files: Vec<PathBuf>,
    /// Those files are being read again for those detections alone: the
    /// records were counted the first time.
    rereading: bool,
}

impl Shared {
    fn new(detections: Vec<Box<dyn Detection>>, intake: Intake, index_memory: usize) -> Shared {
        Shared {
            detections,
            kept: Vec::new(),
            index: Index {
                frozen: Arc::new(SigninIndex::with_memory(index_memory)),
                late: SigninIndex::with_memory(index_memory),
            },
            stats: RecordStats::default(),
            collected: None,
            intake,
            withheld_files: Vec::new(),
            rereading: false,
        }
    }
}

/// The findings detections handed over, and which are kept.
struct Intake {
    findings: Findings,
    /// Detection ids reported (empty: all) and dropped.
    only: Vec<String>,
    exclude: Vec<String>,
    /// The first spill that failed: the hunt stops with it at the end.
    spill_error: Option<SpillError>,
}

impl Intake {
    /// The intake a hunt configured so starts with.
    fn new(cfg: &HuntConfig) -> Intake {
        Intake {
            findings: Findings::with_budget(cfg.findings_memory.unwrap_or(DEFAULT_MEMORY)),
            only: cfg.only.clone(),
            exclude: cfg.exclude.clone(),
            spill_error: None,
        }
    }

    /// Adds findings; past the memory budget, the held ones come back as
    /// a run for the caller to write, outside the hunt's lock when it
    /// holds it: writing took a tenth of a second per 32 MiB of findings,
    /// during which every other worker waited.
    #[must_use = "a taken run must be written and put back"]
    fn hand_over(&mut self, found: Vec<Finding>) -> Option<PendingRun> {
        if self.spill_error.is_some() {
            return None;
        }
        let mut over = false;
        for f in found {
            let id = &*f.rule_id;
            if (self.only.is_empty() || self.only.iter().any(|o| o == id))
                && !self.exclude.iter().any(|e| e == id)
            {
                over |= self.findings.add(f);
            }
        }
        if !over {
            return None;
        }
        self.findings
            .take_run()
            .map_err(|e| self.spill_error = Some(e))
            .ok()
    }

    /// Puts back a run [`Intake::hand_over`] gave out, once written.
    fn put_run(&mut self, written: Result<WrittenRun, SpillError>) {
        if let Err(e) = written.and_then(|run| self.findings.put_run(run)) {
            self.spill_error.get_or_insert(e);
        }
    }
}

/// A run of records in a row that a reader's own screen passed, after
/// which the rest of the batch skips it but for a sample.
const SCREEN_TRUSTED_AFTER: u32 = 32;
/// While a screen is skipped, one record in this many is still screened,
/// and the first it rules out ends the skipping.
const SCREEN_SAMPLE_EVERY: u32 = 16;

/// What screening a worker's records carries from one to the next.
#[derive(Default)]
struct ScreenState {
    /// Per screen (by its place in [`Plan::screens`]), how many records in
    /// a row of this batch it passed. A screen only rules records out for
    /// its reader, so letting a record through unscreened changes no
    /// finding, only the work: a screen that passes every record (a Sigma
    /// rule set on sign-ins, where some rule's texts are in every record)
    /// costs a scan of each record for nothing, and is skipped while it
    /// keeps passing.
    streaks: Vec<u32>,
    /// Per text of runs (by its place in [`Plan::texts_of_runs`]), the
    /// record it was last checked for ([`ScreenState::records`]): a
    /// record holding a text's pattern at many places is checked for the
    /// text's runs once. Checked at each place, a piece common in JSON
    /// (`", "` of a quoted user agent) made a hunt over sign-ins take 18
    /// times as long.
    checked_for: Vec<u64>,
    /// Records screened so far.
    records: u64,
}

impl ScreenState {
    /// Whether screen `j` lets `bytes` through: its answer, or yes
    /// unasked while its streak holds.
    fn passes(
        &mut self,
        j: usize,
        screen: &KindScreenFn,
        guess: Option<EventKind>,
        bytes: &[u8],
    ) -> bool {
        if self.streaks.len() <= j {
            self.streaks.resize(j + 1, 0);
        }
        let streak = &mut self.streaks[j];
        let trusted = *streak >= SCREEN_TRUSTED_AFTER
            && (*streak - SCREEN_TRUSTED_AFTER) % SCREEN_SAMPLE_EVERY != 0;
        let pass = trusted || screen(guess, bytes);
        *streak = if pass { streak.saturating_add(1) } else { 0 };
        pass
    }
}

/// A projection a batch uses.
struct BatchProjection {
    readers: Mask,
    projection: Arc<Projection>,
    /// For a batch of CSV rows (one header): the names of
    /// [`Columns::names`] the projection keeps, as (place in that list,
    /// slot), in name order ([`Columns::kept_in_order`]); found for the
    /// first row.
    column_slots: Option<Vec<(usize, RootSlot)>>,
}

/// What one worker made of one batch.
struct Out {
    shards: Vec<Box<dyn Detection>>,
    index: SigninIndex,
    stats: RecordStats,
    read: u64,
    evaluated: u64,
    without_time: u64,
    duplicate_keys: u64,
    /// Earliest and latest record time seen.
    span: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    rejects: Vec<(Locator, String)>,
    parsed_by_kind: BTreeMap<&'static str, u64>,
    collected: Vec<Event>,
    /// Projections used in this batch: the plan's cache is shared, and
    /// asking it for every record made the workers queue on its lock.
    projections: Vec<BatchProjection>,
    /// The batch buffer, handed back to the reader for reuse.
    spare: Vec<u8>,
    /// A CSV row's screening text, reused row after row.
    row_text: Vec<u8>,
    /// The literal matches of a record screened on its own (a CSV row, a
    /// record of a JSON array or envelope), reused record after record.
    hits: Vec<(usize, usize)>,
    screening: ScreenState,
    guess: KindGuess,
}

/// The kind the next record of a batch is guessed to be before it is
/// parsed, for the readers' own screens ([`Screened::told`]): the kind of
/// the two records before it when they agree; at the batch's start, the
/// file's hint (and after one record, the hint if that record was of its
/// kind); else none (any kind). A file of one kind has its screens
/// narrowed to that kind; a file whose kinds change record by record keeps
/// them whole, and is not parsed twice for every record.
#[derive(Clone, Copy)]
struct KindGuess {
    last: Option<EventKind>,
    agreed: bool,
}

impl KindGuess {
    fn new(hint: Option<EventKind>) -> KindGuess {
        KindGuess {
            last: hint,
            agreed: true,
        }
    }

    fn next(&self) -> Option<EventKind> {
        self.last.filter(|_| self.agreed)
    }

    fn saw(&mut self, kind: EventKind) {
        self.agreed = self.last == Some(kind);
        self.last = Some(kind);
    }
}

/// How a CSV header's columns read as a JSON object's keys, worked out once
/// per batch: which column each name is read from, in name order (the
/// last of two with one name, as a JSON object keeps the last copy), which
/// columns that overwrites, and the names Log Analytics columns are also
/// read under.
struct Columns {
    read: Vec<usize>,
    overwritten: Vec<usize>,
    /// Log Analytics portal exports rename columns (`TimeGenerated [UTC]`,
    /// `LocationDetails_dynamic` beside `LocationDetails_string`); a full
    /// parse also exposes them under the table's names
    /// (`tokenward_event`'s `fold_la_columns`), and so does a projection
    /// of the row, from these, in name order of the renamed column.
    folds: Vec<Fold>,
    /// The `AuditData` column, when a row nobody needs parsed may be read
    /// off its cell alone ([`plain_audit`]): the header names it once,
    /// spelled so (the wrapper an event of the row would have, and then an
    /// audit event whatever the other columns say), names no column twice
    /// and has no renamed Log Analytics column read under its table's name
    /// ([`Columns::folds`]).
    plain_wrapper: Option<usize>,
}

/// A renamed Log Analytics column also read under its table's name.
struct Fold {
    /// The table's name: no column has it.
    base: String,
    /// The renamed column, read under `base` when its cell is not empty.
    from: usize,
    /// For `X_dynamic`, the `X_string` column, read under `base` instead.
    alt: Option<usize>,
}

impl Fold {
    /// The cell read under the table's name: the renamed column's, or for
    /// an empty `_dynamic` one its `_string` column's; none when neither.
    fn cell<'r>(&self, cells: &'r Cells) -> Option<&'r str> {
        let cell = cells.get(self.from);
        if cell.is_empty() {
            Some(cells.get(self.alt?))
        } else {
            Some(cell)
        }
    }
}

impl Columns {
    fn of(header: &[String]) -> Columns {
        let is_last = |i: usize| !header[i + 1..].contains(&header[i]);
        let mut read: Vec<usize> = (0..header.len()).filter(|&i| is_last(i)).collect();
        read.sort_by(|&a, &b| header[a].cmp(&header[b]));
        let overwritten: Vec<usize> = (0..header.len()).filter(|&i| !is_last(i)).collect();
        let column = |name: &str| read.iter().copied().find(|&i| header[i] == name);
        let folds: Vec<Fold> = read
            .iter()
            .filter_map(|&from| {
                let h = &header[from];
                let (base, alt) = match h.strip_suffix(" [UTC]") {
                    Some(base) => (base, None),
                    None => {
                        let base = h.strip_suffix("_dynamic")?;
                        (base, column(&format!("{base}_string")))
                    }
                };
                (!base.is_empty() && column(base).is_none()).then(|| Fold {
                    base: base.to_owned(),
                    from,
                    alt,
                })
            })
            .collect();
        let plain_wrapper = if overwritten.is_empty() && folds.is_empty() {
            column("AuditData")
        } else {
            None
        };
        Columns {
            read,
            overwritten,
            folds,
            plain_wrapper,
        }
    }

    /// Every name a row may give ([`Columns::named`]), in its order.
    fn names<'r>(&'r self, header: &'r [String]) -> impl Iterator<Item = &'r str> + 'r {
        let plain = self.read.iter().map(|&i| header[i].as_str());
        plain.chain(self.folds.iter().map(|f| f.base.as_str()))
    }

    /// Of [`Columns::names`], those `projection` keeps, as (place in that
    /// list, slot), in name order: a row's pairs come out ready for
    /// [`Projection::project_slotted`] to build its map without a search.
    /// The sort is stable, so of two columns with one name the later still
    /// comes later, and replaces the earlier as it did in column order.
    fn kept_in_order(&self, header: &[String], projection: &Projection) -> Vec<(usize, RootSlot)> {
        let names: Vec<&str> = self.names(header).collect();
        let mut kept: Vec<(usize, RootSlot)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, projection.root_slot(n)?)))
            .collect();
        kept.sort_by(|a, b| names[a.0].cmp(names[b.0]));
        kept
    }

    /// The (name, cell) pairs of a row that a projection keeps, as a JSON
    /// object of the row would have them once its Log Analytics columns
    /// are folded: every column, then the table's names of the renamed
    /// columns that give a value (a `_dynamic` cell that is empty gives
    /// its `_string` cell), a later pair of one name replacing an earlier
    /// as the fold does. `kept` are the names the projection keeps
    /// ([`Columns::kept_in_order`]); the pairs come in its order.
    fn named<'r>(
        &'r self,
        header: &'r [String],
        cells: &'r Cells,
        kept: &'r [(usize, RootSlot)],
    ) -> impl Iterator<Item = (&'r str, &'r str, Option<RootSlot>)> + 'r {
        kept.iter().filter_map(move |&(i, slot)| {
            let (name, cell) = match self.read.get(i) {
                Some(&column) => (header[column].as_str(), cells.get(column)),
                None => {
                    let fold = &self.folds[i - self.read.len()];
                    (fold.base.as_str(), fold.cell(cells)?)
                }
            };
            Some((name, cell, Some(slot)))
        })
    }
}

/// Attaches the copies of duplicate keys that building `ev` overwrote
/// (parsing it, and expanding JSON carried in its strings) and counts the
/// record when there were any.
fn with_shadowed(mut ev: Event, out: &mut Out) -> Event {
    ev.shadowed = shadow::take();
    out.duplicate_keys += u64::from(!ev.shadowed.is_empty());
    ev
}

impl Out {
    fn projection(&mut self, plan: &Plan, readers: Mask) -> Arc<Projection> {
        self.projection_at(plan, readers).projection.clone()
    }

    /// The batch's entry of the projection that serves `readers`.
    fn projection_at(&mut self, plan: &Plan, readers: Mask) -> &mut BatchProjection {
        let at = match self.projections.iter().position(|p| p.readers == readers) {
            Some(at) => at,
            None => {
                self.projections.push(BatchProjection {
                    readers,
                    projection: plan.projection(readers),
                    column_slots: None,
                });
                self.projections.len() - 1
            }
        };
        &mut self.projections[at]
    }

    fn saw_time(&mut self, t: Option<time::OffsetDateTime>) {
        if let Some(t) = t {
            self.span = Some(match self.span {
                Some((a, b)) => (a.min(t), b.max(t)),
                None => (t, t),
            });
        }
    }

    fn reject(&mut self, loc: Locator, reason: String) {
        self.read += 1;
        self.rejects.push((loc, reason));
    }
}

/// What every worker of one file reads.
struct Ctx<'a> {
    plan: Option<&'a Plan>,
    file: Arc<str>,
    hint: Option<EventKind>,
    /// The sign-in index of the files read before this one.
    signins: Arc<SigninIndex>,
    /// No counts: they are complete, and read, only when detections finish.
    stats: RecordStats,
    /// The shards a batch is observed by: a set kept from an earlier
    /// batch, or fresh forks.
    fork: &'a (dyn Fn() -> Vec<Box<dyn Detection>> + Sync),
    /// Batch buffers shared by every file.
    pool: &'a BufferPool,
    /// Batches handed to other workers and not yet done, over every file
    /// ([`pump`]).
    in_flight: &'a AtomicUsize,
    /// Readers withheld every record of this file: those blind without
    /// sign-ins ([`Needs::blind_without_signins`]) while the index holds
    /// none, in a file that can be read again.
    withheld: Mask,
    /// Whether a record of a kind they read was withheld from them: the
    /// file is read again for them if sign-ins turn up later.
    withheld_some: AtomicBool,
}

fn looks_like_envelope(b: &[u8]) -> bool {
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

impl Ctx<'_> {
    /// Hands an event to the readers it matters to, but for those withheld
    /// this file's records.
    fn route(&self, ev: Event, readers: Mask, out: &mut Out) {
        if readers & self.withheld != 0 {
            self.withhold(readers & self.withheld, ev.kind);
        }
        let readers = readers & !self.withheld;
        out.read += 1;
        out.evaluated += 1;
        out.without_time += u64::from(ev.time.is_none());
        out.saw_time(ev.time);
        out.stats.add(ev.workload());
        *out.parsed_by_kind.entry(ev.kind.as_str()).or_default() += 1;
        out.guess.saw(ev.kind);
        let Some(plan) = self.plan else {
            out.collected.push(ev);
            return;
        };
        let cx = Context {
            signins: &self.signins,
            records: &self.stats,
        };
        for (i, shard) in out.shards.iter_mut().enumerate() {
            if readers & (1 << i) != 0 && plan.needs[i].kinds.contains(ev.kind) {
                shard.observe(&ev, &cx);
            }
        }
        if let Some(slot) = plan.index_slot {
            if readers & (1 << slot) != 0 && ev.kind == EventKind::SignIn {
                out.index.observe(&ev);
            }
        }
    }

    /// Notes that a record of `kind` was withheld from `readers`, if one
    /// of them reads that kind.
    fn withhold(&self, readers: Mask, kind: EventKind) {
        let plan = self.plan.expect("only screened records are withheld");
        // Stored once: every worker withholds most records of such a file.
        if !self.withheld_some.load(Ordering::Relaxed)
            && (0..plan.needs.len())
                .any(|i| readers & (1 << i) != 0 && plan.needs[i].kinds.contains(kind))
        {
            self.withheld_some.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a record screened `s` may be read off its text: its readers
    /// only need its time and workload, it is in a file of audit records,
    /// and the screens, if told a kind, were told it is an audit record.
    fn may_read_light(&self, plan: &Plan, s: &Screened) -> bool {
        s.readers & !plan.light == 0
            && self.hint == Some(EventKind::Audit)
            && s.told.is_none_or(|t| t == EventKind::Audit)
    }

    /// An audit record nobody needs parsed, read off its text: its time
    /// and workload go to the readers that take them.
    fn route_light(&self, t: time::OffsetDateTime, w: &str, s: Screened, out: &mut Out) {
        out.guess.saw(EventKind::Audit);
        if s.withheld != 0 {
            self.withhold(s.withheld, EventKind::Audit);
        }
        let readers = s.readers;
        out.read += 1;
        out.evaluated += 1;
        out.saw_time(Some(t));
        out.stats.add(Some(w));
        for (i, shard) in out.shards.iter_mut().enumerate() {
            if readers & (1 << i) != 0 {
                shard.observe_unparsed(Some(t), Some(w));
            }
        }
    }

    /// Handles one raw JSON record (a line or an array element).
    fn json(&self, bytes: &[u8], loc: Locator, screened: Option<Screened>, out: &mut Out) {
        // Checked once per record, so that the parsers take text and do not
        // check every string inside again.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                out.reject(
                    loc,
                    format!(
                        "invalid UTF-8 at byte {} of the record",
                        e.valid_up_to() + 1
                    ),
                );
                return;
            }
        };
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let b = text.as_bytes();
        let framed = b.first() == Some(&b'{') && b.last() == Some(&b'}') && !looks_like_envelope(b);
        let screened = match (self.plan, screened) {
            (None, _) => None,
            (Some(_), Some(s)) => Some(s),
            (Some(plan), None) => {
                out.hits.clear();
                if let Some(l) = &plan.literals {
                    l.find_all(b, &mut out.hits);
                }
                let guess = out.guess.next();
                Some(plan.readers(&out.hits, b, &mut out.screening, guess, self.withheld))
            }
        };
        let mut screened = screened;
        if let (Some(plan), Some(s)) = (self.plan, screened.as_mut()) {
            // Read off the bytes where they say the time and workload
            // plainly; otherwise parsed as far as the readers need.
            // Only in files of audit records, where such a record is an
            // audit event unless it names a key that makes it another
            // kind, as the readers of the parsed event would see it. The
            // screens, if told it is an audit record, answered for that
            // kind alone: then it must not name such a key. It must be JSON
            // a full parse reads, or it would count as read though it is
            // not: one that is not is parsed below, and refused.
            if framed && self.may_read_light(plan, s) {
                let plain = match plain_audit(text) {
                    Some(p) => (s.told.is_none() || !p.names_another_kind)
                        .then_some((p.time, Cow::Borrowed(p.workload))),
                    // A PowerShell export's record, its audit record JSON
                    // in a string: unescaping and checking that record
                    // builds nothing else. Its `AuditData` makes it an
                    // audit event, whatever other keys it names.
                    None if memchr::memmem::find(b, b"\"AuditData\"").is_some() => {
                        plain_wrapped_audit(text).map(|p| (p.time, Cow::Owned(p.workload)))
                    }
                    None => None,
                };
                if let Some((time, workload)) = plain {
                    self.route_light(time, &workload, *s, out);
                    return;
                }
            }
            while framed && !plan.reads_whole(*s, b) {
                let projection = out.projection(plan, s.readers);
                match projection.parse(text) {
                    Ok(Projected::Object(v)) => {
                        let ev =
                            Event::from_projected(v, projection, self.hint, self.file.clone(), loc);
                        // Rare (the first record of another kind than
                        // those before it): projected again for its late
                        // readers, whose paths the projection lacks.
                        let late = plan.late_readers(*s, ev.kind, b);
                        // Not projected for, but handed to `route` to be noted.
                        s.withheld |= late & self.withheld;
                        let late = late & !self.withheld;
                        if late != 0 {
                            s.readers |= late;
                            s.told = Some(ev.kind);
                            continue;
                        }
                        // Rare (a whole-record screen of its kind passes,
                        // as for a Sigma keyword that is a pattern): the
                        // projection is thrown away. A reader of words
                        // (every SigmaHQ keyword rule) keeps it.
                        if !plan.reads_whole_as(*s, ev.kind, b) {
                            let mut ev = ev;
                            if plan.reads_words_as(*s, ev.kind, b) {
                                // Else built whole below, which it holds.
                                let Some(words) = Words::of_json(text) else {
                                    break;
                                };
                                ev.words = Some(Box::new(words));
                            }
                            let readers = s.readers | s.withheld;
                            self.route(with_shadowed(ev, out), readers, out);
                            return;
                        }
                    }
                    // Errors are worded by the full parse below.
                    Ok(Projected::Full) | Err(_) => {}
                }
                break;
            }
        }
        shadow::reset();
        match shadow::parse_str(text) {
            Ok(v) => self.value(v, loc, screened.map(|s| (s, b)), out),
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

    /// A fully parsed record, or an envelope of records: elements of an
    /// envelope were not screened on their own, so every reader sees them.
    fn value(&self, v: Value, loc: Locator, screened: Option<(Screened, &[u8])>, out: &mut Out) {
        let elems = match v {
            Value::Object(mut m) => {
                // An envelope holds its records and metadata (Graph's
                // `@odata.*`, Resource Manager's `nextLink`): an object with
                // fields of its own is a record that happens to have such an
                // array, and was lost when its array was read as records.
                let env = ["records", "value"]
                    .into_iter()
                    .find(|k| m.get(*k).is_some_and(Value::is_array))
                    .filter(|k| {
                        m.keys()
                            .all(|x| x == k || is_envelope_metadata(x.as_bytes()))
                    });
                match env.and_then(|k| m.remove(k)) {
                    Some(Value::Array(a)) => a,
                    _ => {
                        let ev =
                            Event::from_record(Value::Object(m), self.hint, self.file.clone(), loc);
                        let readers = match (self.plan, screened) {
                            (Some(plan), Some((s, b))) => {
                                s.readers | s.withheld | plan.late_readers(s, ev.kind, b)
                            }
                            _ => Mask::MAX,
                        };
                        self.route(with_shadowed(ev, out), readers, out);
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
        // Copies overwritten inside a one-line envelope cannot be told
        // apart by element: the line is counted, its copies not searched.
        out.duplicate_keys += u64::from(!shadow::take().is_empty());
        for (i, el) in elems.into_iter().enumerate() {
            let l = Locator {
                line: loc.line,
                record: i as u64 + 1,
            };
            if el.is_object() {
                let ev = Event::from_record(el, self.hint, self.file.clone(), l);
                self.route(ev, Mask::MAX, out);
            } else {
                out.reject(l, "not a JSON object (array element)".into());
            }
        }
    }

    /// A CSV row. The screens read the row as `"column":value` lines:
    /// every key of the row's record is a column name or a key of the JSON
    /// in a cell, and every string value is a cell or a string in such
    /// JSON, as written, so key and value anchors (which avoid the
    /// characters JSON and CSV escape) hold in this text whenever they hold
    /// in the record, as on a JSON line.
    fn row(&self, header: &[String], columns: &Columns, cells: Cells, loc: Locator, out: &mut Out) {
        let screened = self.plan.map(|plan| {
            let text = &mut out.row_text;
            text.clear();
            for (h, f) in header.iter().zip(cells.iter()) {
                text.push(b'"');
                text.extend_from_slice(h.as_bytes());
                text.extend_from_slice(b"\":");
                text.extend_from_slice(f.as_bytes());
                text.push(b'\n');
            }
            out.hits.clear();
            if let Some(l) = &plan.literals {
                l.find_all(text, &mut out.hits);
            }
            let s = plan.readers(
                &out.hits,
                text,
                &mut out.screening,
                out.guess.next(),
                self.withheld,
            );
            (s, plan.reads_whole(s, text))
        });
        let mut readers = screened.map_or(Mask::MAX, |(s, _)| s.readers);
        // Handed to `route`, which withholds them: not projected for.
        let withheld = screened.map_or(0, |(s, _)| s.withheld);
        shadow::reset();
        // Both paths keep the last of two columns with one name, as a JSON
        // object keeps the last copy of a key; the earlier cells are noted
        // like overwritten JSON copies, so an indicator put in the first of
        // two `ClientIP` columns is still searched.
        for &i in &columns.overwritten {
            shadow::note(&header[i], Value::String(cells.get(i).to_owned()));
        }
        if let (Some(plan), Some((screened, false))) = (self.plan, screened) {
            // As for a JSON record: a row whose readers only need its time
            // and workload is not projected when its `AuditData` cell says
            // them plainly. An event of the row would be an audit event
            // (the cell is its wrapper), whatever the cell or the other
            // columns name, and read both from that cell before any
            // column, as they are the first of the time and workload
            // fields.
            if let Some(at) = columns
                .plain_wrapper
                .filter(|_| self.may_read_light(plan, &screened))
            {
                if let Some(p) = plain_audit(cells.get(at)) {
                    self.route_light(p.time, p.workload, screened, out);
                    return;
                }
            }
            // Only the projected columns are copied: no object of the
            // whole row is built.
            let BatchProjection {
                projection,
                column_slots,
                ..
            } = out.projection_at(plan, readers);
            let slots =
                column_slots.get_or_insert_with(|| columns.kept_in_order(header, projection));
            let v = projection.project_slotted(columns.named(header, &cells, slots));
            let projection = projection.clone();
            let ev = Event::from_projected(v, projection, self.hint, self.file.clone(), loc);
            // Rare (the first row of another kind than those before it):
            // built whole below, where its late readers are added. So is
            // a row read for its words, which no JSON text of it carries.
            if plan.late_readers(screened, ev.kind, &out.row_text) == 0
                && !plan.reads_whole_as(screened, ev.kind, &out.row_text)
                && !plan.reads_words_as(screened, ev.kind, &out.row_text)
            {
                self.route(with_shadowed(ev, out), readers | withheld, out);
                return;
            }
        }
        let m: Map<String, Value> = columns
            .read
            .iter()
            .map(|&i| (header[i].clone(), Value::String(cells.get(i).to_owned())))
            .collect();
        let ev = Event::from_record(Value::Object(m), self.hint, self.file.clone(), loc);
        if let (Some(plan), Some((s, _))) = (self.plan, screened) {
            readers |= plan.late_readers(s, ev.kind, &out.row_text);
        }
        self.route(with_shadowed(ev, out), readers | withheld, out);
    }

    fn process(&self, batch: Batch) -> Out {
        let mut out = Out {
            shards: (self.fork)(),
            index: SigninIndex::default(),
            stats: RecordStats::default(),
            read: 0,
            evaluated: 0,
            without_time: 0,
            duplicate_keys: 0,
            span: None,
            rejects: Vec::new(),
            parsed_by_kind: BTreeMap::new(),
            collected: Vec::new(),
            projections: Vec::new(),
            spare: Vec::new(),
            row_text: Vec::new(),
            hits: Vec::new(),
            screening: ScreenState::default(),
            guess: KindGuess::new(self.hint),
        };
        match batch {
            Batch::Lines { data, first_line } => {
                let mut matches = BatchMatches::of(self.plan, &data);
                let (mut line, mut start) = (first_line, 0);
                while start < data.len() {
                    let end = memchr::memchr(b'\n', &data[start..])
                        .map(|p| start + p)
                        .unwrap_or(data.len());
                    let rec = &data[start..end];
                    if !trim(rec).is_empty() {
                        let found = matches.within(start, end);
                        let guess = out.guess.next();
                        let screened = self.plan.map(|p| {
                            p.readers(found, trim(rec), &mut out.screening, guess, self.withheld)
                        });
                        self.json(rec, Locator { line, record: line }, screened, &mut out);
                    }
                    line += 1;
                    start = end + 1;
                }
                out.spare = data;
            }
            Batch::Pieces { data, items } => {
                // One literal pass over the batch, as for JSON lines: each
                // record ends at a line end, so no text spans two.
                let mut matches = BatchMatches::of(self.plan, &data);
                for it in items {
                    match it {
                        Item::Rec {
                            start,
                            end,
                            line,
                            index,
                        } => {
                            let found = matches.within(start, end);
                            let rec = &data[start..end];
                            let guess = out.guess.next();
                            let screened = self.plan.map(|p| {
                                p.readers(
                                    found,
                                    trim(rec),
                                    &mut out.screening,
                                    guess,
                                    self.withheld,
                                )
                            });
                            self.json(
                                rec,
                                Locator {
                                    line,
                                    record: index,
                                },
                                screened,
                                &mut out,
                            );
                        }
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
                out.spare = data;
            }
            Batch::Rows {
                header,
                rows,
                first_index,
            } => {
                let columns = Columns::of(&header);
                for (i, r) in rows.into_iter().enumerate() {
                    let index = first_index + i as u64;
                    match r {
                        CsvRow::Row(cells, line) => self.row(
                            &header,
                            &columns,
                            cells,
                            Locator {
                                line,
                                record: index,
                            },
                            &mut out,
                        ),
                        CsvRow::Reject(line, why) => out.reject(
                            Locator {
                                line,
                                record: index,
                            },
                            why,
                        ),
                    }
                }
            }
        }
        out
    }
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Utf8 => "utf-8",
        Encoding::Utf8Bom => "utf-8-bom",
        Encoding::Utf16Le => "utf-16le",
        Encoding::Utf16Be => "utf-16be",
    }
}

/// A file's batches, merged in the file's order into the detections that
/// merge each batch ([`Detection::merges_each_batch`]). Once it holds many
/// matches (`tokenward_sigma::correlate::DECIDE_EARLY_FROM`), the Sigma
/// rule set decides a correlation's older windows when a group's matches
/// run a day past them, so a batch worked on late (on another core) must
/// not reach it after the batches that follow it in the file: a file
/// spanning weeks in a few megabytes would lose its matches as late.
#[derive(Default)]
struct InFileOrder {
    /// The next batch to merge.
    next: u64,
    /// Batches worked on before an earlier one, by number.
    waiting: BTreeMap<u64, Vec<ShardOf>>,
}

/// A batch's shard and the detection (its place) it merges into.
type ShardOf = (usize, Box<dyn Detection>);

/// Merges a worker's batch (the file's `seq`-th) into the shared state
/// and its file's report.
fn absorb(
    shared: &Mutex<Shared>,
    file: &Mutex<FileReport>,
    order: &Mutex<InFileOrder>,
    seq: u64,
    out: Out,
) {
    let run = {
        let mut guard = shared.lock().expect("no panics while locked");
        let sh = &mut *guard;
        let mut found = Vec::new();
        // `read_events` observes nothing: no set to keep.
        let keep = !out.shards.is_empty() && sh.kept.len() < KEPT_SETS_MAX;
        let mut kept = Vec::with_capacity(out.shards.len());
        let mut in_order = Vec::new();
        for (i, (d, mut s)) in sh.detections.iter_mut().zip(out.shards).enumerate() {
            if d.merges_each_batch() {
                in_order.push((i, s));
                if keep {
                    kept.push(d.fork());
                }
            } else if !keep {
                d.merge(s);
                found.append(&mut d.take_findings());
            } else {
                found.append(&mut s.take_findings());
                kept.push(s);
            }
        }
        if keep {
            sh.kept.push(kept);
        }
        // Taken inside the shared lock, as everywhere: no lock order to
        // get wrong.
        let mut order = order.lock().expect("no panics while locked");
        order.waiting.insert(seq, in_order);
        loop {
            let next = order.next;
            let Some(batch) = order.waiting.remove(&next) else {
                break;
            };
            for (i, s) in batch {
                sh.detections[i].merge(s);
                found.append(&mut sh.detections[i].take_findings());
            }
            order.next += 1;
        }
        drop(order);
        let run = sh.intake.hand_over(found);
        if !sh.rereading {
            sh.index.late.merge(out.index);
            sh.stats.merge(out.stats);
        }
        if let Some(c) = sh.collected.as_mut() {
            c.extend(out.collected);
        }
        run
    };
    if let Some(run) = run {
        let written = run.write();
        shared
            .lock()
            .expect("no panics while locked")
            .intake
            .put_run(written);
    }
    let mut file = file.lock().expect("no panics while locked");
    for (k, n) in out.parsed_by_kind {
        *file.parsed_by_kind.entry(k).or_default() += n;
    }
    file.records_read += out.read;
    file.records_evaluated += out.evaluated;
    file.records_without_time += out.without_time;
    file.records_with_duplicate_keys += out.duplicate_keys;
    if let Some((a, b)) = out.span {
        file.first_time = Some(file.first_time.map_or(a, |t| t.min(a)));
        file.last_time = Some(file.last_time.map_or(b, |t| t.max(b)));
    }
    for (loc, why) in out.rejects {
        file.records_rejected += 1;
        let class = why.split(':').next().unwrap_or("rejected").to_string();
        *file.reject_reasons.entry(class).or_default() += 1;
        file.first_rejects.push(RejectNote {
            locator: loc.to_string(),
            reason: why,
        });
        // Keep the earliest few, whatever order the workers finished in.
        if file.first_rejects.len() > FIRST_REJECTS * 4 {
            trim_rejects(&mut file.first_rejects);
        }
    }
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

/// A file opened and sniffed, ready to be read.
struct Ready {
    opened: Opened,
    head: Vec<u8>,
    sniffed: Sniffed,
}

/// What reading a file starts from.
enum Pending {
    /// Nothing known yet: open and sniff it.
    Unsniffed,
    /// Sniffed before and closed again (a regular file): reopen it and
    /// read it as sniffed, without judging its head a second time.
    Sniffed(Sniffed),
    /// Open where sniffing left it (a pipe cannot be reopened).
    Open(Box<(FileReport, Ready)>),
}

/// Opens and sniffs a file once (or trusts what an earlier sniff of it
/// found). Its report gets the format, or the reason it cannot be read.
fn prepare(
    path: &Path,
    forced: Option<Format>,
    progress: Arc<AtomicU64>,
    known: Option<Sniffed>,
) -> (FileReport, Option<Ready>) {
    let mut rep = FileReport {
        path: path.display().to_string(),
        ..Default::default()
    };
    let mut o = match open(path, progress) {
        Ok(o) => o,
        Err(e) => {
            rep.error = Some(e.to_string());
            return (rep, None);
        }
    };
    rep.gzip = o.gzip;
    rep.encoding = Some(encoding_name(o.encoding));
    let sniffed = match known {
        Some(s) => sniff_known(&mut o.reader, s),
        None => sniff(&mut o.reader, forced),
    };
    match sniffed {
        Ok((head, Ok(s))) => {
            rep.format = Some(s.format.name());
            (
                rep,
                Some(Ready {
                    opened: o,
                    head,
                    sniffed: s,
                }),
            )
        }
        Ok((_, Err(SniffError::Empty))) => {
            rep.note = Some("empty file: no records".into());
            (rep, None)
        }
        Ok((_, Err(e))) => {
            rep.error = Some(e.to_string());
            (rep, None)
        }
        Err(e) => {
            rep.error = Some(format!("read error: {e}"));
            (rep, None)
        }
    }
}

/// The detections that run: the built-ins and the Sigma rule set.
fn detections(
    cfg: &HuntConfig,
    iocs: Arc<IocSet>,
    state: Arc<StateDisk>,
) -> Vec<Box<dyn Detection>> {
    let mut ds = builtins(&Setup {
        iocs,
        options: cfg.options.clone(),
        state: state.clone(),
    });
    if let Some(set) = &cfg.sigma {
        ds.push(Box::new(crate::sigma_detection::SigmaDetection::new(
            set.clone(),
            state,
        )));
    }
    ds
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
    let ioc_counts = (
        iocs.hosts.len() + iocs.networks.len(),
        iocs.user_agents.len(),
        iocs.keys.len(),
    );
    let state = StateDisk::new(cfg.detection_memory.unwrap_or(DEFAULT_STATE_MEMORY));
    let detections = detections(cfg, Arc::new(iocs), state.clone());
    let mut report = run_detections(cfg, detections, progress)?;
    if let Some(e) = state.error() {
        return Err(HuntError::DetectionState(std::env::temp_dir(), e));
    }
    report.detection_state_runs = state.runs_written();
    report.iocs = ioc_counts;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs a hunt with the given detections instead of the built-ins and
/// `cfg.sigma` (which are ignored, as are the indicator settings).
pub fn run_detections(
    cfg: &HuntConfig,
    detections: Vec<Box<dyn Detection>>,
    progress: Arc<AtomicU64>,
) -> Result<Report, HuntError> {
    let started = Instant::now();
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
    let plan = Plan::new(&detections);
    let index_memory = cfg.signin_index_memory.unwrap_or(DEFAULT_INDEX_MEMORY);
    let shared = Mutex::new(Shared::new(detections, Intake::new(cfg), index_memory));
    let in_flight = AtomicUsize::new(0);
    let forced = cfg.input_format;
    // Files are read in parallel (exports often come as many small files),
    // and each file's batches in parallel too.
    let read_all = |plan: &Plan,
                    paths: Vec<(PathBuf, Pending)>,
                    progress: &Arc<AtomicU64>|
     -> Vec<FileReport> {
        paths
            .into_par_iter()
            // One file a job: rayon otherwise hands each worker a run of
            // files it reads in turn and no idle worker can take over, so
            // the hunt ended with one core reading the rest of a run.
            .with_max_len(1)
            .map(|(p, pending)| {
                // A stream sniffed before is read on from where it was
                // sniffed, and cannot be read again.
                let (rep, ready, rereadable) = match pending {
                    Pending::Open(open) => (open.0, Some(open.1), false),
                    Pending::Sniffed(s) => {
                        let (rep, ready) = prepare(&p, forced, progress.clone(), Some(s));
                        (rep, ready, true)
                    }
                    Pending::Unsniffed => {
                        let regular = std::fs::metadata(&p).is_ok_and(|m| m.is_file());
                        let (rep, ready) = prepare(&p, forced, progress.clone(), None);
                        (rep, ready, regular)
                    }
                };
                match ready {
                    Some(r) => read_file(&p, rep, r, plan, &shared, &in_flight, rereadable),
                    None => rep,
                }
            })
            .collect()
    };
    if plan.index_slot.is_some() {
        // Sign-in files first, so the detections that read the index see
        // the sign-ins before the records they explain. Files are sniffed
        // first to know, on every core (an export of hundreds of daily
        // files otherwise waits on one core opening them one by one). A
        // regular file is closed again at once and reopened to be read as
        // sniffed (so its sniffed bytes are not counted, and few files are
        // open at once); a pipe is read on from the stream it was sniffed
        // on.
        let (mut first, mut late) = (Vec::new(), Vec::new());
        let prepared: Vec<_> = files
            .into_par_iter()
            .with_max_len(1)
            .map(|p| {
                let regular = std::fs::metadata(&p).is_ok_and(|m| m.is_file());
                let counter = if regular {
                    Arc::new(AtomicU64::new(0))
                } else {
                    progress.clone()
                };
                let (rep, ready) = prepare(&p, forced, counter, None);
                let Some(mut r) = ready else {
                    return (p, Err(rep));
                };
                let signin = r.sniffed.signin_rows
                    || r.sniffed
                        .first_record
                        .take()
                        .is_some_and(|v| classify(&v, None).0 == EventKind::SignIn);
                let pending = if regular {
                    Pending::Sniffed(r.sniffed)
                } else {
                    Pending::Open(Box::new((rep, r)))
                };
                (p, Ok((signin, pending)))
            })
            .collect();
        for (p, sniffed) in prepared {
            let (signin, kept) = match sniffed {
                Ok(s) => s,
                Err(unreadable) => {
                    reports.push(unreadable);
                    continue;
                }
            };
            if signin {
                first.push((p, kept));
            } else {
                late.push((p, kept));
            }
        }
        reports.extend(read_all(&plan, first, &progress));
        freeze_index(&shared);
        reports.extend(read_all(&plan, late, &progress));
    } else {
        reports.extend(read_all(
            &plan,
            files.into_iter().map(|p| (p, Pending::Unsniffed)).collect(),
            &progress,
        ));
    }
    freeze_index(&shared);
    let withheld_files = {
        let mut sh = shared.lock().expect("no panics while locked");
        let files = std::mem::take(&mut sh.withheld_files);
        // Without any sign-in they find nothing: nothing to read again.
        if sh.index.frozen.signins == 0 {
            Vec::new()
        } else {
            sh.rereading = true;
            files
        }
    };
    if !withheld_files.is_empty() {
        // Sign-ins turned up after some records were withheld from the
        // detections blind without them (a file mixing kinds, audit records
        // in a sign-in file): those files
        // are read again for them alone, with every sign-in indexed. The
        // bytes and records were counted the first time.
        let again = plan.rereading();
        let pending = withheld_files
            .into_iter()
            .map(|p| (p, Pending::Unsniffed))
            .collect();
        for rep in read_all(&again, pending, &Arc::new(AtomicU64::new(0))) {
            let Some(e) = rep.error else { continue };
            let first = reports.iter_mut().find(|r| r.path == rep.path);
            if let Some(r) = first.filter(|r| r.error.is_none()) {
                r.error = Some(format!(
                    "could not be read again for the detections that need sign-ins: {e}"
                ));
            }
        }
    }
    let mut sh = shared.into_inner().expect("no panics while locked");
    merge_kept(&mut sh);
    // Every sign-in: `freeze_index` above took the late ones in.
    let index = Arc::try_unwrap(sh.index.frozen).unwrap_or_else(|a| (*a).clone());
    let cx = Context {
        signins: &index,
        records: &sh.stats,
    };
    let mut coverage = Vec::new();
    let detections = std::mem::take(&mut sh.detections);
    for d in detections {
        // Findings go to the store as they are made, a batch at a time, so
        // the store can spill them while the detection makes the rest.
        let mut made = Vec::with_capacity(FINDINGS_HANDED_OVER);
        let intake = &mut sh.intake;
        let mut hand_over = |made: Vec<Finding>| {
            if let Some(run) = intake.hand_over(made) {
                intake.put_run(run.write());
            }
        };
        let judged = d.finish_into(&cx, &mut |f| {
            made.push(f);
            if made.len() == FINDINGS_HANDED_OVER {
                hand_over(std::mem::replace(
                    &mut made,
                    Vec::with_capacity(FINDINGS_HANDED_OVER),
                ));
            }
        });
        hand_over(made);
        coverage.extend(judged);
    }
    if let Some(e) = sh.intake.spill_error {
        return Err(e.into());
    }
    if let Some(e) = index.io_error() {
        return Err(HuntError::SigninIndex(std::env::temp_dir(), e));
    }
    let (ids_on_disk, runs) = index.spilled();
    let mut findings = sh.intake.findings;
    findings.seal();
    reports.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Report {
        findings,
        files: reports,
        detections: coverage,
        skipped: skipped.iter().map(|p| p.display().to_string()).collect(),
        bytes: progress.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        iocs: (0, 0, 0),
        signin_index: SigninIndexSummary {
            signins: index.signins,
            ids_on_disk,
            runs,
        },
        detection_state_runs: 0,
    })
}

/// Merges the shards kept between batches into the detections, each
/// detection on whichever core is free: this is the end of the hunt, and
/// a detection with hundreds of thousands of keys takes tens of
/// milliseconds.
fn merge_kept(sh: &mut Shared) {
    let sets = std::mem::take(&mut sh.kept);
    let mut shards: Vec<Vec<Box<dyn Detection>>> = sh
        .detections
        .iter()
        .map(|_| Vec::with_capacity(sets.len()))
        .collect();
    for set in sets {
        for (of_one, s) in shards.iter_mut().zip(set) {
            of_one.push(s);
        }
    }
    let found: Vec<Finding> = sh
        .detections
        .par_iter_mut()
        .zip(shards)
        .with_max_len(1)
        .flat_map_iter(|(d, of_one)| {
            for s in of_one {
                d.merge(s);
            }
            d.take_findings()
        })
        .collect();
    if let Some(run) = sh.intake.hand_over(found) {
        sh.intake.put_run(run.write());
    }
}

/// Makes the sign-ins read so far the index the next files are judged by.
fn freeze_index(shared: &Mutex<Shared>) {
    let mut sh = shared.lock().expect("no panics while locked");
    // The next sign-ins keep to the same memory.
    let memory = sh.index.late.memory();
    let late = std::mem::replace(&mut sh.index.late, SigninIndex::with_memory(memory));
    let mut frozen = std::mem::take(&mut sh.index.frozen);
    let index = Arc::make_mut(&mut frozen);
    index.merge(late);
    index.seal();
    sh.index.frozen = frozen;
}

/// Reads one prepared file through the detections; returns its report.
/// A file that can be `reread` is withheld from the detections blind
/// without sign-ins while the index holds none, and noted in
/// [`Shared::withheld_files`] if that withheld a record from them.
fn read_file(
    path: &Path,
    rep: FileReport,
    ready: Ready,
    plan: &Plan,
    shared: &Mutex<Shared>,
    in_flight: &AtomicUsize,
    rereadable: bool,
) -> FileReport {
    let (signins, forks) = {
        let sh = shared.lock().expect("no panics while locked");
        let forks: Vec<Box<dyn Detection>> = sh.detections.iter().map(|d| d.fork()).collect();
        (sh.index.frozen.clone(), forks)
    };
    let withheld = if signins.signins == 0 && rereadable {
        plan.blind_without_signins
    } else {
        0
    };
    // A worker takes a set of shards kept from an earlier batch, or forks
    // one from these templates (not from the shared detections, so that
    // forking holds the hunt's lock no longer than a pop).
    let templates = Mutex::new(forks);
    let fork = || {
        let kept = shared.lock().expect("no panics while locked").kept.pop();
        kept.unwrap_or_else(|| {
            let t = templates.lock().expect("no panics while locked");
            t.iter().map(|d| d.fork()).collect::<Vec<_>>()
        })
    };
    let ctx = Ctx {
        plan: Some(plan),
        file: Arc::from(path.display().to_string()),
        hint: kind_hint(ready.sniffed.format),
        signins,
        stats: RecordStats::default(),
        fork: &fork,
        pool: &plan.pool,
        in_flight,
        withheld,
        withheld_some: AtomicBool::new(false),
    };
    let file = Mutex::new(rep);
    let res = pump(&ctx, ready, shared, &file);
    if ctx.withheld_some.into_inner() {
        shared
            .lock()
            .expect("no panics while locked")
            .withheld_files
            .push(path.to_path_buf());
    }
    let mut rep = file.into_inner().expect("no panics while locked");
    finish_report(&mut rep, res);
    rep
}

fn finish_report(rep: &mut FileReport, res: std::io::Result<()>) {
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
}

/// Splits a file into batches on this worker and processes them on the
/// rayon pool.
fn pump(
    ctx: &Ctx<'_>,
    ready: Ready,
    shared: &Mutex<Shared>,
    file: &Mutex<FileReport>,
) -> std::io::Result<()> {
    let Ready {
        opened,
        head,
        sniffed,
    } = ready;
    let order = Mutex::new(InFileOrder::default());
    let work = |(seq, b): (u64, Batch)| {
        let mut out = ctx.process(b);
        let spare = std::mem::take(&mut out.spare);
        absorb(shared, file, &order, seq, out);
        ctx.pool.give(spare);
    };
    let work = &work;
    // The file's batches read and not yet worked on, oldest first.
    let queue: Mutex<VecDeque<(u64, Batch)>> = Mutex::new(VecDeque::new());
    let oldest = || queue.lock().expect("no panics while locked").pop_front();
    let oldest = &oldest;
    let in_flight = ctx.in_flight;
    let most_in_flight = 2 * rayon::current_num_threads();
    // The file is read on this worker, not on a reader thread of its own:
    // a worker waiting on such a thread for a file's batch (most exports
    // are many files of one batch) sat idle a fifth of the time. Each
    // batch but the last is offered to whichever worker is free, while
    // fewer than two per worker are out over the whole hunt (so memory
    // stays bounded however many files are read at once); past that, and
    // for the last, this worker works on one itself.
    //
    // What is offered is a turn, not a batch: whoever works, the reader or
    // a worker taking a turn, takes the file's oldest batch. The turns
    // wait on the reader's own deque until a worker is free, and with
    // every worker reading a file of its own none is until its file ends.
    // Had each turn carried its batch, the reader would have worked on
    // the newer batches meanwhile, and every one of them, merged in the
    // file's order ([`InFileOrder`]), waited for the offered ones: two
    // files of 1.35 million Sigma matches each held 341 batches of matches
    // (2.2 GB).
    rayon::in_place_scope(|s| {
        let mut held: Option<(u64, Batch)> = None;
        let mut batches = 0u64;
        let res = read_batches(
            sniffed.container,
            sniffed.delimiter,
            opened.reader,
            head,
            &mut |b| {
                batches += 1;
                let Some(prev) = held.replace((batches - 1, b)) else {
                    return;
                };
                queue
                    .lock()
                    .expect("no panics while locked")
                    .push_back(prev);
                let taken = in_flight
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < most_in_flight).then_some(n + 1)
                    })
                    .is_ok();
                if taken {
                    s.spawn(move |_| {
                        // Given back however the work ends.
                        struct Out<'a>(&'a AtomicUsize);
                        impl Drop for Out<'_> {
                            fn drop(&mut self) {
                                self.0.fetch_sub(1, Ordering::AcqRel);
                            }
                        }
                        let _out = Out(in_flight);
                        // The reader may have worked on every batch since.
                        if let Some(batch) = oldest() {
                            work(batch);
                        }
                    });
                } else if let Some(batch) = oldest() {
                    work(batch);
                }
            },
            ctx.pool,
        );
        while let Some(batch) = oldest() {
            work(batch);
        }
        if let Some(last) = held {
            work(last);
        }
        res
    })
}

/// Reads one file into events, parsing every record in full (no screen, no
/// detections): the entry point for rule engines and tests. Events come in
/// no particular order; sort by [`Event::locator`] when order matters.
pub fn read_events(path: &Path, forced: Option<Format>) -> (FileReport, Vec<Event>) {
    let (rep, ready) = prepare(path, forced, Arc::new(AtomicU64::new(0)), None);
    let Some(ready) = ready else {
        return (rep, Vec::new());
    };
    let mut shared = Shared::new(
        Vec::new(),
        Intake::new(&HuntConfig::default()),
        DEFAULT_INDEX_MEMORY,
    );
    shared.collected = Some(Vec::new());
    let shared = Mutex::new(shared);
    let file = Mutex::new(rep);
    let no_forks = || Vec::new();
    let pool = BufferPool::default();
    let ctx = Ctx {
        plan: None,
        file: Arc::from(path.display().to_string()),
        hint: kind_hint(ready.sniffed.format),
        signins: Arc::default(),
        stats: RecordStats::default(),
        fork: &no_forks,
        pool: &pool,
        in_flight: &AtomicUsize::new(0),
        withheld: 0,
        withheld_some: AtomicBool::new(false),
    };
    let res = pump(&ctx, ready, &shared, &file);
    let sh = shared.into_inner().expect("no panics while locked");
    let mut rep = file.into_inner().expect("no panics while locked");
    finish_report(&mut rep, res);
    let mut evs = sh.collected.unwrap_or_default();
    evs.sort_by_key(|e| e.locator);
    (rep, evs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::io::Write;
    use std::sync::atomic::AtomicUsize;

    use time::OffsetDateTime;
    use tokenward_detect::{shard_of, Kinds, Outcome, Verdict};

    /// Everything a probe detection saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        observed: Vec<(EventKind, String)>,
        unparsed: Vec<(Option<String>, Option<OffsetDateTime>)>,
        /// Sign-ins in the index when each event was observed.
        index_sizes: Vec<u64>,
        /// Per observed event: whether it was projected (not parsed whole).
        projected: Vec<bool>,
        /// Per observed event: its workload and time.
        workloads: Vec<(Option<String>, Option<OffsetDateTime>)>,
        /// Per observed event: whether its user could be read (it was
        /// parsed whole, or projected with the normalised fields).
        user_kept: Vec<bool>,
        /// Per observed event: the words it carries ([`Event::words`]).
        words: Vec<Option<String>>,
        /// Records the engine had counted when the detection finished.
        records_at_finish: Option<u64>,
        /// Shards merged into the detection.
        merges: usize,
        /// Most shards forked and not yet merged, seen at a merge.
        most_unmerged: usize,
        /// Calls of `take_findings` that handed findings over.
        handovers: usize,
    }

    impl Seen {
        /// Per observed event, sorted: the value read and whether the event
        /// was projected.
        fn read_and_projected(&self) -> Vec<(String, bool)> {
            let mut v: Vec<(String, bool)> = self
                .observed
                .iter()
                .map(|o| o.1.clone())
                .zip(self.projected.iter().copied())
                .collect();
            v.sort();
            v
        }
    }

    /// A detection that records what the engine hands it.
    struct Probe {
        needs: fn() -> Needs,
        /// Path read on each event (must be declared).
        read: Option<&'static str>,
        seen: Seen,
        sink: Arc<Mutex<Seen>>,
        forks: Arc<AtomicUsize>,
        /// [`Detection::merges_each_batch`].
        merges_each_batch: bool,
        /// Makes a finding of every event it observes
        /// ([`Probe::finding_everything`]).
        finds: bool,
        /// Findings not yet taken.
        pending: Vec<Finding>,
    }

    impl Probe {
        fn boxed(
            needs: fn() -> Needs,
            read: Option<&'static str>,
        ) -> (Box<dyn Detection>, Arc<Mutex<Seen>>) {
            let sink = Arc::new(Mutex::new(Seen::default()));
            let p = Probe {
                needs,
                read,
                seen: Seen::default(),
                sink: sink.clone(),
                forks: Arc::new(AtomicUsize::new(0)),
                merges_each_batch: false,
                finds: false,
                pending: Vec::new(),
            };
            (Box::new(p), sink)
        }

        /// [`Probe::boxed`], then `set` on it.
        fn set(
            needs: fn() -> Needs,
            read: Option<&'static str>,
            set: fn(&mut Probe),
        ) -> (Box<dyn Detection>, Arc<Mutex<Seen>>) {
            let (p, sink) = Probe::boxed(needs, read);
            let mut p = shard_of::<Probe>(p);
            set(&mut p);
            (Box::new(p), sink)
        }

        /// [`Probe::boxed`], making a finding of every event it observes.
        fn finding_everything(
            needs: fn() -> Needs,
            read: Option<&'static str>,
        ) -> (Box<dyn Detection>, Arc<Mutex<Seen>>) {
            Probe::set(needs, read, |p| p.finds = true)
        }

        /// [`Probe::boxed`], merged after each batch.
        fn merged_each_batch(
            needs: fn() -> Needs,
            read: Option<&'static str>,
        ) -> (Box<dyn Detection>, Arc<Mutex<Seen>>) {
            Probe::set(needs, read, |p| p.merges_each_batch = true)
        }
    }

    impl Detection for Probe {
        fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
            vec![(Cow::Borrowed("probe"), Cow::Borrowed("probe"))]
        }
        fn needs(&self) -> Needs {
            (self.needs)()
        }
        fn fork(&self) -> Box<dyn Detection> {
            self.forks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(Probe {
                needs: self.needs,
                read: self.read,
                seen: Seen::default(),
                sink: self.sink.clone(),
                forks: self.forks.clone(),
                merges_each_batch: self.merges_each_batch,
                finds: self.finds,
                pending: Vec::new(),
            })
        }
        fn take_findings(&mut self) -> Vec<Finding> {
            if !self.pending.is_empty() {
                self.sink.lock().unwrap().handovers += 1;
            }
            std::mem::take(&mut self.pending)
        }
        fn merges_each_batch(&self) -> bool {
            self.merges_each_batch
        }
        fn observe(&mut self, ev: &Event, cx: &Context<'_>) {
            let v = self.read.and_then(|p| ev.get_str(p)).unwrap_or_default();
            self.seen.observed.push((ev.kind, v));
            self.seen.index_sizes.push(cx.signins.signins);
            self.seen.projected.push(ev.projection.is_some());
            self.seen
                .workloads
                .push((ev.workload().map(str::to_string), ev.time));
            self.seen
                .user_kept
                .push(ev.projection.as_ref().is_none_or(|p| p.reaches("UserId")));
            self.seen
                .words
                .push(ev.words.as_ref().map(|w| w.text().to_string()));
            if self.finds {
                self.pending.push(tokenward_event::Rep::of(ev).finding(
                    Cow::Borrowed("probe"),
                    Cow::Borrowed("probe"),
                    tokenward_event::Severity::Low,
                    Map::new(),
                ));
            }
        }
        fn observe_unparsed(&mut self, t: Option<OffsetDateTime>, w: Option<&str>) {
            self.seen.unparsed.push((w.map(str::to_string), t));
        }
        fn merge(&mut self, shard: Box<dyn Detection>) {
            let mut shard = shard_of::<Probe>(shard);
            self.pending.append(&mut shard.pending);
            let o = shard.seen;
            let mut s = self.sink.lock().unwrap();
            s.merges += 1;
            let unmerged = self.forks.load(std::sync::atomic::Ordering::Relaxed) - s.merges;
            s.most_unmerged = s.most_unmerged.max(unmerged);
            s.observed.extend(o.observed);
            s.unparsed.extend(o.unparsed);
            s.index_sizes.extend(o.index_sizes);
            s.projected.extend(o.projected);
            s.workloads.extend(o.workloads);
            s.user_kept.extend(o.user_kept);
            s.words.extend(o.words);
        }
        fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
            self.sink.lock().unwrap().records_at_finish = Some(cx.records.records);
            let info = tokenward_detect::Info {
                id: "probe",
                title: "probe",
                requires: "",
                attack: &[],
                weight: tokenward_detect::Weight::Weak,
            };
            Outcome::of(&info, Vec::new(), Verdict::Ok(None))
        }
    }

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::File::create(d.path().join(name))
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        d
    }

    /// The sign-ins read after a freeze keep to the memory given, as those
    /// before it did (freezing once put a default index in their place).
    #[test]
    fn the_index_keeps_its_memory_across_freezes() {
        let shared = Mutex::new(Shared::new(
            Vec::new(),
            Intake::new(&HuntConfig::default()),
            4096,
        ));
        for _ in 0..2 {
            freeze_index(&shared);
            let sh = shared.lock().unwrap();
            assert_eq!(
                (sh.index.frozen.memory(), sh.index.late.memory()),
                (4096, 4096)
            );
        }
    }

    fn hunt(d: &tempfile::TempDir, ds: Vec<Box<dyn Detection>>) -> Report {
        let cfg = HuntConfig {
            inputs: vec![d.path().to_path_buf()],
            ..Default::default()
        };
        run_detections(&cfg, ds, Arc::new(AtomicU64::new(0))).unwrap()
    }

    const UAL: &str = r#"{"CreationTime":"2023-06-10T10:00:00","Operation":"Send","Workload":"Exchange","UserId":"a@x","Marker":{"Inner":"m1"}}"#;
    const UAL_NEEDLE: &str = r#"{"CreationTime":"2023-06-10T11:00:00","Operation":"NEEDLE","Workload":"SharePoint","UserId":"b@x","Marker":{"Inner":"m2"}}"#;
    const SIGNIN: &str = r#"{"createdDateTime":"2023-06-10T09:00:00Z","userPrincipalName":"a@x","appId":"a","ipAddress":"198.51.100.1","uniqueTokenIdentifier":"T1"}"#;

    fn anchored_needle() -> Needs {
        Needs::anchored(Kinds::ALL, &["NEEDLE"], &["Marker.Inner"])
    }

    /// A reader of every record's time and workload alone.
    fn light() -> Needs {
        Needs::time_and_workload()
    }

    #[test]
    fn a_detection_sees_exactly_the_records_its_anchors_match_with_its_declared_fields() {
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{UAL_NEEDLE}\n{UAL}\n"))]);
        let (p, seen) = Probe::boxed(anchored_needle, Some("Marker.Inner"));
        let r = hunt(&d, vec![p]);
        let s = seen.lock().unwrap();
        assert_eq!(s.observed, vec![(EventKind::Audit, "m2".to_string())]);
        assert_eq!(r.totals(), (3, 3, 0));
    }

    /// Records inside a `records` or `value` envelope are records like
    /// any other: screened one by one (a detection sees only those its
    /// anchors match), parsed only as far as their readers need, each
    /// accounted for with its own locator, a duplicate key counted in the
    /// record that has it.
    #[test]
    fn records_inside_envelopes_are_screened_and_counted_one_by_one() {
        let dup = UAL_NEEDLE.replace(r#""UserId":"b@x""#, r#""UserId":"b@x","UserId":"c@x""#);
        let one_line = format!(r#"{{"records":[{UAL},{UAL_NEEDLE},7,{dup}]}}"#);
        let page = format!(
            "{{\n \"@odata.context\": \"x\",\n \"value\": [\n  {UAL},\n  {UAL_NEEDLE}\n ]\n}}\n"
        );
        let d = dir(&[("a.json", &one_line), ("b.json", &page)]);
        let (p, seen) = Probe::boxed(anchored_needle, Some("Marker.Inner"));
        let r = hunt(&d, vec![p]);
        let s = seen.lock().unwrap();
        assert_eq!(s.observed, vec![(EventKind::Audit, "m2".to_string()); 3]);
        assert_eq!(r.totals(), (6, 5, 1));
        let a = &r.files[0];
        assert_eq!((a.records_read, a.records_rejected), (4, 1));
        assert_eq!(a.first_rejects[0].locator, "record 3 (line 1)");
        assert_eq!(a.records_with_duplicate_keys, 1);
        assert_eq!(r.files[1].records_read, 2);
    }

    /// An object is an envelope only if it holds nothing but its records
    /// (and Graph's `@odata.*` members): a record that has a `value` or
    /// `records` array of its own is a record.
    #[test]
    fn a_record_with_a_value_array_is_a_record() {
        let own = UAL_NEEDLE.replace(r#""Workload""#, r#""value":[1,"x"],"Workload""#);
        // Pages of Graph, the older Azure AD Graph and Resource Manager, as
        // lines of a file of plain records: read whole, then unpacked.
        let graph =
            format!(r#"{{"@odata.context":"x","value":[{UAL_NEEDLE}],"@odata.nextLink":"y"}}"#);
        let aad = format!(r#"{{"odata.metadata":"x","value":[{UAL_NEEDLE}]}}"#);
        let arm = format!(r#"{{"value":[{UAL_NEEDLE}],"nextLink":"y"}}"#);
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{own}\n{graph}\n{aad}\n{arm}\n"))]);
        let (p, seen) = Probe::boxed(anchored_needle, Some("Marker.Inner"));
        let r = hunt(&d, vec![p]);
        assert_eq!(r.totals(), (5, 5, 0));
        assert_eq!(seen.lock().unwrap().observed.len(), 4);
    }

    /// A file of one envelope a line (an Event Hubs export) loses only the
    /// record a cut line ends inside: the lines after it are read.
    #[test]
    fn a_cut_line_of_envelopes_costs_only_its_record() {
        let text = format!(
            "{{\"records\":[{UAL}]}}\n{{\"records\":[{UAL_NEEDLE},{{\"CreationTime\":\n{{\"records\":[{UAL_NEEDLE},{UAL}]}}\n"
        );
        // The same with the first line cut.
        let first_cut = format!(
            "{{\"records\":[{UAL_NEEDLE},{{\"CreationTime\":\n{{\"records\":[{UAL_NEEDLE},{UAL}]}}\n"
        );
        let d = dir(&[("PT1H.json", &text), ("PT1H-2.json", &first_cut)]);
        let (p, seen) = Probe::boxed(anchored_needle, Some("Marker.Inner"));
        let r = hunt(&d, vec![p]);
        assert_eq!(seen.lock().unwrap().observed.len(), 4);
        assert_eq!(r.totals(), (9, 7, 2));
        assert_eq!(
            r.files[0].first_rejects[0].reason,
            "truncated JSON: its line ends inside this record"
        );
    }

    #[test]
    fn records_nobody_needs_parsed_give_their_time_and_workload() {
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{UAL_NEEDLE}\n"))]);
        let (light_probe, light_seen) = Probe::boxed(light, None);
        let (needle_probe, _) = Probe::boxed(anchored_needle, Some("Marker.Inner"));
        hunt(&d, vec![light_probe, needle_probe]);
        let s = light_seen.lock().unwrap();
        // The NEEDLE record is parsed for the other detection, so the light
        // one gets it as an event; the other comes off the bytes.
        assert_eq!(s.observed.len(), 1);
        assert_eq!(s.unparsed.len(), 1);
        assert_eq!(s.unparsed[0].0.as_deref(), Some("Exchange"));
        assert!(s.unparsed[0].1.is_some());
    }

    /// A record read unparsed for its time and workload must still be
    /// JSON a full parse reads: one that is not is refused with its
    /// reason, not counted as read.
    #[test]
    fn records_read_unparsed_are_refused_when_not_json() {
        let bad = [
            r#"{"CreationTime":"2023-06-10T10:00:01","Workload":"Exchange","UserId":,}"#,
            r#"{"CreationTime":"2023-06-10T10:00:02","Workload":"Exchange","UserId":"a" "b"}"#,
            r#"{"CreationTime":"2023-06-10T10:00:03","Workload":"Exchange","Count":1e999}"#,
            r#"{"CreationTime":"2023-06-10T10:00:04","Workload":"Exchange","UserId":"a\x"}"#,
        ];
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{}\n", bad.join("\n")))]);
        let (light_probe, light_seen) = Probe::boxed(light, None);
        let r = hunt(&d, vec![light_probe]);
        assert_eq!(
            light_seen.lock().unwrap().unparsed.len(),
            1,
            "the JSON one alone"
        );
        let f = &r.files[0];
        assert_eq!(
            (f.records_read, f.records_evaluated, f.records_rejected),
            (5, 1, 4)
        );
        assert!(
            f.first_rejects
                .iter()
                .all(|n| n.reason.starts_with("invalid JSON")),
            "{:?}",
            f.first_rejects
        );
    }

    /// A reader of time and workload alone sees, from every record of the
    /// sample logs and the example (JSON, JSON arrays and envelopes,
    /// PowerShell, Purview and Log Analytics CSV, gzip), the kind, time
    /// and workload it saw when every record was projected in full for
    /// another reader: the narrow projection answers alike.
    #[test]
    fn time_and_workload_readers_see_what_a_full_projection_shows() {
        fn every_record() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &[], &["UserId"]);
            n.anchors = Anchors::Every;
            n
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cfg = HuntConfig {
            inputs: vec![
                root.join("tests/fixtures/logs"),
                root.join("examples/storm-0558/logs"),
            ],
            ..Default::default()
        };
        let seen = |with_full: bool| {
            let (light_probe, light_seen) = Probe::boxed(light, None);
            let mut ds = vec![light_probe];
            if with_full {
                ds.push(Probe::boxed(every_record, None).0);
            }
            let r = run_detections(&cfg, ds, Arc::new(AtomicU64::new(0))).unwrap();
            let s = light_seen.lock().unwrap();
            let mut all: Vec<(EventKind, Option<String>, Option<OffsetDateTime>)> = s
                .observed
                .iter()
                .zip(&s.workloads)
                .map(|((kind, _), (w, t))| (*kind, w.clone(), *t))
                .collect();
            // Off the bytes: audit records.
            all.extend(
                s.unparsed
                    .iter()
                    .map(|(w, t)| (EventKind::Audit, w.clone(), *t)),
            );
            all.sort();
            (all, s.user_kept.iter().filter(|k| !**k).count(), r.totals())
        };
        let (narrow, narrowed, totals) = seen(false);
        let (full, fully, full_totals) = seen(true);
        assert_eq!(totals, full_totals);
        assert_eq!(
            narrow.len() as u64,
            totals.1,
            "every record evaluated is seen"
        );
        assert!(narrowed > 1_000, "records projected narrowly: {narrowed}");
        assert_eq!(fully, 0);
        assert_eq!(narrow, full);
    }

    /// A record whose audit record is JSON in a string (a PowerShell
    /// export's `AuditData`) has its time and workload read from that
    /// JSON, though nobody needs it parsed (a scan of the carrier's bytes
    /// would find neither key, escaped as it is there): off the carried
    /// record's text where it says them plainly, else projected for what
    /// gives its kind, time and workload alone.
    #[test]
    fn records_carrying_json_in_a_string_give_its_time_and_workload() {
        let audit = serde_json::to_string(UAL).unwrap();
        let ps = format!(
            r#"{{"CreationDate":"6/10/2023 10:00:00 AM","UserIds":"a@x","Operations":"Send","AuditData":{audit}}}"#
        );
        // Not plain: the carried record names its workload twice.
        let twice = serde_json::to_string(&UAL.replace(
            r#""Workload":"Exchange""#,
            r#""Workload":"Teams","Workload":"Exchange""#,
        ))
        .unwrap();
        let ps_twice = ps.replace(&audit, &twice);
        let d = dir(&[("a.jsonl", &format!("{ps}\n{ps_twice}\n{UAL}\n"))]);
        let (light_probe, light_seen) = Probe::boxed(light, None);
        let r = hunt(&d, vec![light_probe]);
        assert_eq!(r.files[0].records_without_time, 0);
        assert_eq!(r.files[0].records_with_duplicate_keys, 1);
        let s = light_seen.lock().unwrap();
        let at = time::macros::datetime!(2023-06-10 10:00 UTC);
        let exchange = (Some("Exchange".to_string()), Some(at));
        // Parsed, as its carried record does not say its workload plainly,
        // for what gives its kind, time and workload alone (the last copy
        // of the workload), not every normalised field ...
        assert_eq!(s.workloads, vec![exchange.clone()]);
        assert_eq!(s.user_kept, vec![false]);
        // ... and the other carried record and the plain one read off
        // their text, alike.
        assert_eq!(s.unparsed, vec![exchange.clone(), exchange]);
        drop(s);
        // Read for another detection too, it keeps the normalised fields.
        let d = dir(&[("a.jsonl", &format!("{}\n", ps.replace("Send", "NEEDLE")))]);
        let (light_probe, light_seen) = Probe::boxed(light, None);
        let (needle_probe, _) = Probe::boxed(anchored_needle, None);
        hunt(&d, vec![light_probe, needle_probe]);
        assert_eq!(light_seen.lock().unwrap().user_kept, vec![true]);
    }

    /// A Purview (or PowerShell CSV) row nobody needs parsed is read off
    /// its `AuditData` cell, as a JSON record is off its bytes, and gives
    /// what its event would: the cell's time and workload, not the
    /// `CreationDate` column's. A row is projected instead when its cell
    /// does not say them plainly, when its header names a column twice,
    /// or when it is read for another detection.
    #[test]
    fn rows_nobody_needs_parsed_are_read_off_their_audit_data_cell() {
        let cell = |record: &str| format!("\"{}\"", record.replace('"', "\"\""));
        let header = "RecordId,CreationDate,RecordType,Operation,UserId,AuditData";
        let row = |id: u32, record: &str| {
            format!("{id},2023-06-11T00:00:00Z,2,Send,a@x,{}\n", cell(record))
        };
        let twice = UAL.replace(
            r#""Workload":"Exchange""#,
            r#""Workload":"Exchange","Workload":"SharePoint""#,
        );
        let purview = format!(
            "{header}\n{}{}{}",
            row(1, UAL),
            row(2, &twice),
            row(3, UAL_NEEDLE)
        );
        let later = cell(&UAL.replace("10:00:00", "12:00:00"));
        let doubled = format!(
            "{header},AuditData\n{}",
            row(4, UAL).replace('\n', &format!(",{later}\n"))
        );
        let d = dir(&[("a.csv", &purview), ("b.csv", &doubled)]);
        let (light_probe, light_seen) = Probe::boxed(light, None);
        let (needle_probe, _) = Probe::boxed(anchored_needle, None);
        let r = hunt(&d, vec![light_probe, needle_probe]);
        assert_eq!(r.totals(), (4, 4, 0));
        // The earlier of two `AuditData` cells is a copy the row overwrote.
        assert_eq!(r.files[1].records_with_duplicate_keys, 1);
        let s = light_seen.lock().unwrap();
        let at = |h: i64| time::macros::datetime!(2023-06-10 00:00 UTC) + time::Duration::hours(h);
        // Read off its cell: the first row alone.
        assert_eq!(
            s.unparsed,
            vec![(Some("Exchange".to_string()), Some(at(10)))]
        );
        // Projected: `Workload` twice (the last copy wins), the row the
        // other detection reads, and the row of a header that names
        // `AuditData` twice (the last is read).
        let mut parsed = s.workloads.clone();
        parsed.sort();
        assert_eq!(
            parsed,
            vec![
                (Some("Exchange".to_string()), Some(at(12))),
                (Some("SharePoint".to_string()), Some(at(10))),
                (Some("SharePoint".to_string()), Some(at(11))),
            ]
        );
    }

    #[test]
    fn records_are_parsed_whole_only_where_a_whole_record_screen_passes() {
        fn sometimes_whole() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &["Operation"], &["Marker.Inner"]);
            n.whole_record = WholeRecord::When(
                Kinds::ALL,
                Arc::new(|b: &[u8]| memchr::memmem::find(b, b"NEEDLE").is_some()),
            );
            n
        }
        fn always_whole() -> Needs {
            let mut n = sometimes_whole();
            n.whole_record = WholeRecord::Always;
            n
        }
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{UAL_NEEDLE}\n"))]);
        let (p, seen) = Probe::boxed(sometimes_whole, Some("Marker.Inner"));
        hunt(&d, vec![p]);
        let got = seen.lock().unwrap().read_and_projected();
        assert_eq!(
            got,
            vec![("m1".to_string(), true), ("m2".to_string(), false)]
        );
        let (p, seen) = Probe::boxed(always_whole, Some("Marker.Inner"));
        hunt(&d, vec![p]);
        assert_eq!(seen.lock().unwrap().projected, vec![false, false]);
    }

    /// A reader of words gets the records its screen passes projected,
    /// carrying their words; one whose words cannot be read off its text
    /// (a key named twice) whole, with none; the others projected, with
    /// none.
    #[test]
    fn words_readers_get_projected_records_carrying_their_words() {
        fn words_on_needle() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &["Operation"], &["Marker.Inner"]);
            n.whole_record = WholeRecord::WordsWhen(
                Kinds::ALL,
                Arc::new(|b: &[u8]| memchr::memmem::find(b, b"NEEDLE").is_some()),
            );
            n
        }
        let twice = UAL_NEEDLE
            .replace(r#""UserId":"b@x""#, r#""UserId":"c@x","UserId":"b@x""#)
            .replace("m2", "m3");
        assert_ne!(twice, UAL_NEEDLE);
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{UAL_NEEDLE}\n{twice}\n"))]);
        let (p, seen) = Probe::boxed(words_on_needle, Some("Marker.Inner"));
        let r = hunt(&d, vec![p]);
        assert_eq!(r.totals(), (3, 3, 0));
        let s = seen.lock().unwrap();
        let mut got: Vec<(String, bool, Option<String>)> = s
            .observed
            .iter()
            .zip(&s.projected)
            .zip(&s.words)
            .map(|((o, p), w)| (o.1.clone(), *p, w.clone()))
            .collect();
        got.sort();
        let needle_words = "2023-06-10T11:00:00\0NEEDLE\0SharePoint\0b@x\0m2";
        assert_eq!(
            got,
            vec![
                ("m1".to_string(), true, None),
                ("m2".to_string(), true, Some(needle_words.to_string())),
                ("m3".to_string(), false, None),
            ]
        );
    }

    /// A whole-record screen for some kinds never makes a record of
    /// another kind whole: the record is projected first, and only one of
    /// the screen's kinds is then screened (and parsed again, whole).
    #[test]
    fn a_whole_record_screen_applies_only_to_its_kinds() {
        fn whole_signins_on_needle() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &["a@x"], &["Marker.Inner"]);
            n.whole_record = WholeRecord::When(
                Kinds::of(&[EventKind::SignIn]),
                Arc::new(|b: &[u8]| memchr::memmem::find(b, b"NEEDLE").is_some()),
            );
            n
        }
        let signin_needle = SIGNIN.replace(r#""appId":"a""#, r#""appId":"NEEDLE""#);
        assert_ne!(signin_needle, SIGNIN);
        let audit_needle = UAL_NEEDLE.replace("b@x", "a@x");
        let d = dir(&[(
            "a.jsonl",
            &format!("{UAL}\n{audit_needle}\n{SIGNIN}\n{signin_needle}\n"),
        )]);
        let (p, seen) = Probe::boxed(whole_signins_on_needle, None);
        let r = hunt(&d, vec![p]);
        assert_eq!(r.totals(), (4, 4, 0));
        let s = seen.lock().unwrap();
        assert_eq!(s.observed.len(), 4);
        // Only the sign-in holding NEEDLE is whole; the audit record
        // holding it stays projected.
        let whole: Vec<EventKind> = s
            .observed
            .iter()
            .zip(&s.projected)
            .filter(|(_, projected)| !**projected)
            .map(|(o, _)| o.0)
            .collect();
        assert_eq!(whole, vec![EventKind::SignIn]);
    }

    /// Two readers' anchors that start at the same place in a record (one
    /// is the start of the other) both route it: a search that reports one
    /// match per place would hand the record to one reader only.
    #[test]
    fn anchors_sharing_a_start_route_to_every_reader() {
        fn short() -> Needs {
            Needs::anchored(Kinds::ALL, &["NEED"], &["Marker.Inner"])
        }
        fn long() -> Needs {
            Needs::anchored(Kinds::ALL, &["NEEDLE"], &["Marker.Inner"])
        }
        fn longer() -> Needs {
            Needs::anchored(Kinds::ALL, &["NEEDLE\",\"Workload"], &["Marker.Inner"])
        }
        fn inside() -> Needs {
            Needs::anchored(Kinds::ALL, &["EDLE\",\"Work"], &["Marker.Inner"])
        }
        // Enough texts of another reader that the literals no longer fit
        // the SIMD searchers and one automaton searches them.
        fn crowd() -> Needs {
            let texts: Vec<String> = (0..400).map(|i| format!("NOT-IN-ANY-RECORD-{i}")).collect();
            let mut n = Needs::anchored(Kinds::ALL, &[], &["Marker.Inner"]);
            n.anchors = Anchors::AnyOf(texts);
            n
        }
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{UAL_NEEDLE}\n"))]);
        let makers: [fn() -> Needs; 4] = [short, long, longer, inside];
        for (order, crowded) in [
            ([0, 1, 2, 3], false),
            ([3, 2, 1, 0], false),
            ([1, 0, 3, 2], false),
            ([0, 1, 2, 3], true),
            ([2, 3, 0, 1], true),
        ] {
            let mut probes = Vec::new();
            let mut sinks = Vec::new();
            for i in order {
                let (p, seen) = Probe::boxed(makers[i], Some("Marker.Inner"));
                probes.push(p);
                sinks.push(seen);
            }
            if crowded {
                probes.push(Probe::boxed(crowd, None).0);
            }
            hunt(&d, probes);
            for (i, seen) in order.iter().zip(&sinks) {
                assert_eq!(
                    seen.lock().unwrap().read_and_projected(),
                    vec![("m2".to_string(), true)],
                    "reader {i} in order {order:?}, crowded: {crowded}"
                );
            }
        }
    }

    /// Whole-record texts are found in the literal pass: a record holding
    /// one is read whole for the reader that declared it, and another
    /// reader's text does not make it whole for a reader that sees it
    /// without that other reader.
    #[test]
    fn whole_record_texts_are_found_in_the_literal_pass() {
        fn whole_on_needle() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &["Operation"], &["Marker.Inner"]);
            n.whole_record = WholeRecord::WhenAnyOf(vec!["NEEDLE".into()]);
            n
        }
        fn elsewhere_whole_on_needle() -> Needs {
            let mut n = whole_on_needle();
            n.anchors = Anchors::AnyOf(vec!["NOT-IN-ANY-RECORD".into()]);
            n
        }
        fn never_whole() -> Needs {
            Needs::anchored(Kinds::ALL, &["Operation"], &["Marker.Inner"])
        }
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{UAL_NEEDLE}\n"))]);
        let (p, seen) = Probe::boxed(whole_on_needle, Some("Marker.Inner"));
        hunt(&d, vec![p]);
        assert_eq!(
            seen.lock().unwrap().read_and_projected(),
            vec![("m1".to_string(), true), ("m2".to_string(), false)]
        );
        let (never, seen) = Probe::boxed(never_whole, Some("Marker.Inner"));
        let (elsewhere, _) = Probe::boxed(elsewhere_whole_on_needle, Some("Marker.Inner"));
        hunt(&d, vec![never, elsewhere]);
        assert_eq!(seen.lock().unwrap().projected, vec![true, true]);
    }

    /// Columns read as a JSON object's keys: each name once, from its last
    /// column, in name order; the earlier columns of a name are the ones
    /// overwritten.
    #[test]
    fn csv_columns_read_like_object_keys() {
        let header: Vec<String> = ["b", "a", "b", "c", "a"].map(String::from).to_vec();
        let c = Columns::of(&header);
        assert_eq!(c.read, [4, 2, 3]);
        assert_eq!(c.overwritten, [0, 1]);
        assert!(c.folds.is_empty());
        let plain: Vec<String> = ["z", "y"].map(String::from).to_vec();
        let c = Columns::of(&plain);
        assert_eq!((c.read, c.overwritten), (vec![1, 0], vec![]));
    }

    /// A Log Analytics portal CSV row is projected, not parsed whole, and
    /// reads its renamed columns under the table's names as the full parse
    /// does: `X [UTC]`; `X_dynamic`, or `X_string` when it is empty; of two
    /// renamed columns of one name, the last that has a value.
    #[test]
    fn log_analytics_csv_rows_are_projected_with_columns_folded() {
        fn needs() -> Needs {
            Needs::anchored(
                Kinds::ALL,
                &["SigninLogs"],
                &[
                    "TimeGenerated",
                    "LocationDetails.city",
                    "Status.errorCode",
                    "Dup",
                ],
            )
        }
        fn whole() -> Needs {
            let mut n = needs();
            n.whole_record = WholeRecord::WhenAnyOf(vec!["SigninLogs".into()]);
            n
        }
        let csv = "TimeGenerated [UTC],Type,LocationDetails_dynamic,LocationDetails_string,Status_dynamic,Status_string,Dup [UTC],Dup_dynamic\n\
            \"4/28/2021, 2:08:45.221 PM\",SigninLogs,\"{\"\"city\"\":\"\"Oslo\"\"}\",,,\"{\"\"errorCode\"\":50126}\",a,b\n\
            \"4/28/2021, 2:09:45.221 PM\",SigninLogs,,\"{\"\"city\"\":\"\"Bergen\"\"}\",\"{\"\"errorCode\"\":0}\",,c,\n";
        let d = dir(&[("SigninLogs.csv", csv)]);
        let cases: [(&'static str, [&str; 2]); 4] = [
            (
                "TimeGenerated",
                ["4/28/2021, 2:08:45.221 PM", "4/28/2021, 2:09:45.221 PM"],
            ),
            ("LocationDetails.city", ["Bergen", "Oslo"]),
            ("Status.errorCode", ["0", "50126"]),
            ("Dup", ["b", "c"]),
        ];
        for (path, want) in cases {
            for (how, projected) in [(needs as fn() -> Needs, true), (whole, false)] {
                let (p, seen) = Probe::boxed(how, Some(path));
                let r = hunt(&d, vec![p]);
                assert_eq!(r.totals(), (2, 2, 0));
                let got = seen.lock().unwrap().read_and_projected();
                let want: Vec<(String, bool)> =
                    want.iter().map(|w| (w.to_string(), projected)).collect();
                assert_eq!(got, want, "{path}");
            }
        }
    }

    /// A CSV row is screened as `"column":value` lines: a detection's own
    /// screen and its whole-record screen see the columns and the JSON in
    /// cells as written, as on a JSON line.
    #[test]
    fn csv_rows_pass_through_detections_own_screens() {
        fn screened() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &[], &["Marker.Inner"]);
            n.anchors = Anchors::Screen(Arc::new(|_, b: &[u8]| {
                memchr::memmem::find(b, b"\"Operation\":").is_some()
                    && memchr::memmem::find(b, b"Marker").is_some()
            }));
            n.whole_record = WholeRecord::When(
                Kinds::ALL,
                Arc::new(|b: &[u8]| memchr::memmem::find(b, b"NEEDLE").is_some()),
            );
            n
        }
        let csv = "RecordId,CreationDate,Operation,AuditData\n\
            1,2023-06-10T10:00:00Z,Send,\"{\"\"CreationTime\"\":\"\"2023-06-10T10:00:00\"\",\"\"Marker\"\":{\"\"Inner\"\":\"\"m1\"\"}}\"\n\
            2,2023-06-10T11:00:00Z,NEEDLE,\"{\"\"CreationTime\"\":\"\"2023-06-10T11:00:00\"\",\"\"Marker\"\":{\"\"Inner\"\":\"\"m2\"\"}}\"\n\
            3,2023-06-10T12:00:00Z,Send,\"{\"\"CreationTime\"\":\"\"2023-06-10T12:00:00\"\"}\"\n";
        let d = dir(&[("audit.csv", csv)]);
        let (p, seen) = Probe::boxed(screened, Some("Marker.Inner"));
        let r = hunt(&d, vec![p]);
        assert_eq!(r.totals(), (3, 3, 0));
        let got = seen.lock().unwrap().read_and_projected();
        // Row 3 has no Marker: screened out. Row 2 names NEEDLE: whole.
        assert_eq!(
            got,
            vec![("m1".to_string(), true), ("m2".to_string(), false)]
        );
        // The same with the whole-record text found by the literal pass.
        fn texts() -> Needs {
            let mut n = screened();
            n.whole_record = WholeRecord::WhenAnyOf(vec!["NEEDLE".into()]);
            n
        }
        let (p, seen) = Probe::boxed(texts, Some("Marker.Inner"));
        hunt(&d, vec![p]);
        assert_eq!(
            seen.lock().unwrap().read_and_projected(),
            vec![("m1".to_string(), true), ("m2".to_string(), false)]
        );
        // The same for a reader of words, which a row's columns do not
        // carry: the row is built whole.
        fn words() -> Needs {
            let mut n = screened();
            n.whole_record = WholeRecord::WordsWhen(
                Kinds::ALL,
                Arc::new(|b: &[u8]| memchr::memmem::find(b, b"NEEDLE").is_some()),
            );
            n
        }
        let (p, seen) = Probe::boxed(words, Some("Marker.Inner"));
        hunt(&d, vec![p]);
        assert_eq!(
            seen.lock().unwrap().read_and_projected(),
            vec![("m1".to_string(), true), ("m2".to_string(), false)]
        );
    }

    /// Rows of one CSV batch projected for different readers each get the
    /// columns their readers declared: where a projection keeps each
    /// column is worked out once a batch, per projection.
    #[test]
    fn csv_rows_for_different_readers_get_their_own_columns() {
        fn alpha() -> Needs {
            Needs::anchored(Kinds::ALL, &["alpha"], &["ColA"])
        }
        fn beta() -> Needs {
            Needs::anchored(Kinds::ALL, &["beta"], &["ColB"])
        }
        let mut csv = String::from("CreationTime,Operation,Workload,UserId,ColB,ColA\n");
        let mut want_a = Vec::new();
        let mut want_b = Vec::new();
        for i in 0..40 {
            // Rows for one, the other, both and neither, interleaved.
            let a = if i % 2 == 0 {
                format!("alpha{i}")
            } else {
                format!("x{i}")
            };
            let b = if i % 3 == 0 {
                format!("beta{i}")
            } else {
                format!("y{i}")
            };
            if a.starts_with("alpha") {
                want_a.push(a.clone());
            }
            if b.starts_with("beta") {
                want_b.push(b.clone());
            }
            csv.push_str(&format!("2023-06-10T10:00:00,Send,Exchange,u@x,{b},{a}\n"));
        }
        let d = dir(&[("rows.csv", &csv)]);
        let (pa, seen_a) = Probe::boxed(alpha, Some("ColA"));
        let (pb, seen_b) = Probe::boxed(beta, Some("ColB"));
        let r = hunt(&d, vec![pa, pb]);
        assert_eq!(r.totals(), (40, 40, 0));
        for (seen, mut want) in [(seen_a, want_a), (seen_b, want_b)] {
            let mut got: Vec<String> = seen
                .lock()
                .unwrap()
                .observed
                .iter()
                .map(|o| o.1.clone())
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
    }

    /// A screen told the kind of the records before: a record of another
    /// kind is asked about again with its own kind once parsed, and reaches
    /// the detection with the paths it declared, on JSON lines (light path
    /// included), CSV rows and records read whole.
    #[test]
    fn a_screen_told_the_wrong_kind_is_asked_again() {
        fn by_kind() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &[], &["Marker"]);
            n.anchors = Anchors::Screen(Arc::new(|kind, b: &[u8]| {
                let has = |t: &[u8]| memchr::memmem::find(b, t).is_some();
                match kind {
                    Some(EventKind::Audit) => has(b"audit-hit"),
                    Some(EventKind::SignIn) => has(b"signin-hit"),
                    Some(_) => false,
                    None => has(b"audit-hit") || has(b"signin-hit"),
                }
            }));
            n
        }
        let ual = |n: u32, m: &str| {
            format!(
                r#"{{"CreationTime":"2023-06-10T10:00:{n:02}","Operation":"Send","Workload":"Exchange","UserId":"a@x","Marker":"{m}"}}"#
            )
        };
        let signin = |n: u32, m: &str| {
            format!(
                r#"{{"createdDateTime":"2023-06-10T09:00:{n:02}Z","userPrincipalName":"a@x","appId":"a","ipAddress":"198.51.100.1","Marker":"{m}"}}"#
            )
        };
        // An audit file (its first record): the plain audit record after
        // two sign-ins is screened as a sign-in, so it must not be read off
        // its bytes for time and workload alone. After two audit records
        // the screen is told the next is one: a sign-in's text in it is
        // not enough.
        let lines = [
            ual(1, "u-miss"),
            signin(2, "s-signin-hit"),
            signin(3, "s-signin-hit"),
            ual(4, "u-audit-hit"),
            ual(5, "u-audit-hit"),
            ual(6, "u-signin-hit"),
            ual(7, "u-miss"),
            signin(8, "s-signin-hit"),
            ual(9, "u-miss"),
            ual(10, "u-miss"),
            // Opens as a plain audit record, but its table makes it a
            // sign-in: not taken for an audit record unparsed.
            ual(11, "t-signin-hit").replace("\"Operation\":\"Send\"", "\"Type\":\"SigninLogs\""),
        ]
        .join("\n");
        let d = dir(&[("mixed.jsonl", &lines)]);
        let (p, seen) = Probe::boxed(by_kind, Some("Marker"));
        let r = hunt(&d, vec![p]);
        assert_eq!(r.totals(), (11, 11, 0));
        let want = |v: &[&str]| v.iter().map(|m| (m.to_string(), true)).collect::<Vec<_>>();
        let hits = want(&[
            "s-signin-hit",
            "s-signin-hit",
            "s-signin-hit",
            "t-signin-hit",
            "u-audit-hit",
            "u-audit-hit",
        ]);
        assert_eq!(seen.lock().unwrap().read_and_projected(), hits);

        // The same kinds and markers as CSV rows, told apart by the table
        // they name.
        let mut csv = String::from("Type,TimeGenerated,Marker\n");
        for (i, line) in lines.split('\n').enumerate() {
            let table = if line.contains("CreationTime") && !line.contains("SigninLogs") {
                "OfficeActivity"
            } else {
                "SigninLogs"
            };
            let marker = line
                .rsplit("\"Marker\":\"")
                .next()
                .unwrap()
                .trim_end_matches("\"}");
            csv.push_str(&format!("{table},2023-06-10T10:00:{i:02}Z,{marker}\n"));
        }
        let d = dir(&[("mixed.csv", &csv)]);
        let (p, seen) = Probe::boxed(by_kind, Some("Marker"));
        let r = hunt(&d, vec![p]);
        assert_eq!(r.totals(), (11, 11, 0));
        // Rows asked about again are built whole, not projected again.
        let markers = |v: Vec<(String, bool)>| v.into_iter().map(|(m, _)| m).collect::<Vec<_>>();
        assert_eq!(
            markers(seen.lock().unwrap().read_and_projected()),
            markers(hits.clone())
        );

        // Read whole: records another reader reads whole are asked about
        // again too.
        fn whole() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &[], &[]);
            n.anchors = Anchors::Every;
            n.whole_record = WholeRecord::Always;
            n
        }
        for (name, text) in [("mixed.jsonl", &lines), ("mixed.csv", &csv)] {
            let d = dir(&[(name, text)]);
            let (p, seen) = Probe::boxed(by_kind, Some("Marker"));
            let (w, _) = Probe::boxed(whole, None);
            hunt(&d, vec![p, w]);
            let got = seen.lock().unwrap().read_and_projected();
            assert!(got.iter().all(|(_, projected)| !projected), "{name}");
            assert_eq!(markers(got), markers(hits.clone()), "{name}");
        }
    }

    #[test]
    fn kinds_route_events() {
        fn signins_only() -> Needs {
            let mut n = Needs::anchored(Kinds::of(&[EventKind::SignIn]), &[], &[]);
            n.anchors = Anchors::Every;
            n
        }
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{SIGNIN}\n"))]);
        let (p, seen) = Probe::boxed(signins_only, None);
        hunt(&d, vec![p]);
        let kinds: Vec<EventKind> = seen.lock().unwrap().observed.iter().map(|o| o.0).collect();
        assert_eq!(kinds, vec![EventKind::SignIn]);
    }

    /// A reader of the index over audit records holding `Send`.
    fn index_reader() -> Needs {
        let mut n = Needs::anchored(Kinds::of(&[EventKind::Audit]), &["Send"], &[]);
        n.signin_index = true;
        n
    }

    /// The same, blind without sign-ins.
    fn blind_without_signins() -> Needs {
        let mut n = index_reader();
        n.blind_without_signins = true;
        n
    }

    #[test]
    fn a_detection_blind_without_signins_is_shown_no_record_of_an_export_without_them() {
        let d = dir(&[("a-ual.jsonl", &format!("{UAL}\n{UAL}\n"))]);
        let (p, seen) = Probe::boxed(blind_without_signins, None);
        let r = hunt(&d, vec![p]);
        assert!(seen.lock().unwrap().observed.is_empty());
        assert_eq!(r.totals(), (2, 2, 0), "every record still counted");
        // One that is not blind without them is shown them.
        let (p, seen) = Probe::boxed(index_reader, None);
        hunt(&d, vec![p]);
        assert_eq!(seen.lock().unwrap().index_sizes, vec![0, 0]);
    }

    /// Sign-ins found after records were withheld: in a file of audit
    /// records (read with no sign-in indexed), in a sign-in file (read
    /// while the index is built), in a CSV export and in an envelope the
    /// reader does not split. Each withheld record is shown once, with
    /// every sign-in indexed, and counted once; a detection not blind
    /// without sign-ins sees each record once, the first time.
    #[test]
    fn records_withheld_before_signins_turn_up_are_shown_once_with_every_signin() {
        let mixed = dir(&[("a-mixed.jsonl", &format!("{UAL}\n{UAL}\n{SIGNIN}\n"))]);
        let in_signins = dir(&[
            ("b-signins.jsonl", &format!("{SIGNIN}\n{UAL}\n")),
            ("c-ual.jsonl", &format!("{UAL}\n")),
        ]);
        let csv = "RecordId,CreationDate,RecordType,Operation,UserId,AuditData\n1,2023-06-10T10:00:00Z,2,Send,a@x,\"{\"\"CreationTime\"\":\"\"2023-06-10T10:00:00\"\",\"\"Operation\"\":\"\"Send\"\"}\"\n";
        let other_containers = dir(&[
            ("a-rows.csv", csv),
            (
                "b-mixed.jsonl",
                &format!("{UAL}\n{{\"records\":[{UAL}]}}\n{SIGNIN}\n"),
            ),
        ]);
        for (d, records, audit) in [(mixed, 3, 2), (in_signins, 3, 2), (other_containers, 4, 3)] {
            let (p, seen) = Probe::boxed(blind_without_signins, None);
            let (q, others) = Probe::boxed(index_reader, None);
            let r = hunt(&d, vec![p, q]);
            let s = seen.lock().unwrap();
            assert_eq!(s.index_sizes, vec![1; audit], "{:?}", r.files);
            assert_eq!(others.lock().unwrap().observed.len(), audit);
            assert_eq!(r.totals(), (records, records, 0));
            assert_eq!(s.records_at_finish, Some(records));
            // Parsed again, a record is not counted again.
            let parsed: u64 = r.files.iter().flat_map(|f| f.parsed_by_kind.values()).sum();
            assert!(parsed <= records, "{:?}", r.files);
        }
    }

    #[test]
    fn sign_in_files_are_read_first_when_a_detection_reads_the_index() {
        fn with_index() -> Needs {
            let mut n = Needs::anchored(Kinds::of(&[EventKind::Audit]), &["Send"], &[]);
            n.signin_index = true;
            n
        }
        // "a-" sorts before "z-": without the ordering the audit file
        // would be read first, before any sign-in is indexed.
        let d = dir(&[
            ("a-ual.jsonl", &format!("{UAL}\n")),
            ("z-signins.jsonl", &format!("{SIGNIN}\n")),
        ]);
        let (p, seen) = Probe::boxed(with_index, None);
        hunt(&d, vec![p]);
        assert_eq!(seen.lock().unwrap().index_sizes, vec![1]);
    }

    #[test]
    fn every_record_is_read_evaluated_or_rejected_in_every_container() {
        let lines = format!("{UAL}\n{{not json\n\"a string\"\n\n{UAL_NEEDLE}\n{{\"a\":1\n");
        let mut bad_utf8 = format!("{UAL}\n").into_bytes();
        bad_utf8.extend_from_slice(b"{\"Operation\":\"\xff\"}\n");
        let array = format!("[{UAL}, 5, {UAL_NEEDLE}]");
        let csv = "RecordId,CreationDate,RecordType,Operation,UserId,AuditData\n1,2023-06-10T10:00:00Z,2,Send,a@x,\"{\"\"CreationTime\"\":\"\"2023-06-10T10:00:00\"\",\"\"Operation\"\":\"\"Send\"\"}\"\n2,x,2\n";
        let d = dir(&[
            ("lines.jsonl", &lines),
            ("array.json", &array),
            ("audit.csv", csv),
        ]);
        std::fs::write(d.path().join("utf8.jsonl"), bad_utf8).unwrap();
        let (p, _) = Probe::boxed(anchored_needle, None);
        let r = hunt(&d, vec![p]);
        for f in &r.files {
            assert_eq!(
                f.records_read,
                f.records_evaluated + f.records_rejected,
                "{}: {f:?}",
                f.path
            );
        }
        let by = |name: &str| r.files.iter().find(|f| f.path.ends_with(name)).unwrap();
        assert_eq!(
            (
                by("lines.jsonl").records_read,
                by("lines.jsonl").records_rejected
            ),
            (5, 3)
        );
        assert_eq!(
            (
                by("array.json").records_read,
                by("array.json").records_rejected
            ),
            (3, 1)
        );
        assert_eq!(
            (
                by("utf8.jsonl").records_read,
                by("utf8.jsonl").records_rejected
            ),
            (2, 1)
        );
        assert_eq!(by("audit.csv").records_read, 2);
        assert_eq!(by("audit.csv").records_rejected, 1);
    }

    #[test]
    fn records_without_a_readable_time_are_counted_parsed_or_not() {
        let bad = UAL_NEEDLE.replace("2023-06-10T11:00:00", "yesterday");
        let none = r#"{"Operation":"Send","Workload":"Exchange"}"#;
        let d = dir(&[("a.jsonl", &format!("{UAL}\n{bad}\n{none}\n"))]);
        let (p, _) = Probe::boxed(anchored_needle, None);
        let r = hunt(&d, vec![p]);
        // `bad` is parsed (NEEDLE), `none` only scanned: both counted.
        assert_eq!(r.files[0].records_without_time, 2);
        assert_eq!(r.totals(), (3, 3, 0));
    }

    #[test]
    fn records_naming_a_read_field_twice_are_counted() {
        let dup = UAL_NEEDLE.replace(r#""UserId":"b@x""#, r#""UserId":"b@x","UserId":"evil@x""#);
        let unread = UAL.replace(r#""UserId":"a@x""#, r#""UserId":"a@x","UserId":"c@x""#);
        let d = dir(&[("a.jsonl", &format!("{dup}\n{unread}\n{UAL_NEEDLE}\n"))]);
        let (p, _) = Probe::boxed(anchored_needle, None);
        let r = hunt(&d, vec![p]);
        // Only the parsed record is judged: nobody read the other one.
        assert_eq!(r.files[0].records_with_duplicate_keys, 1);
    }

    #[test]
    fn each_record_of_a_file_of_several_batches_is_observed_once() {
        // Enough records for several batches of one file.
        let mut text = String::new();
        for i in 0..60_000 {
            text.push_str(&UAL_NEEDLE.replace("m2", &format!("m{i}")));
            text.push('\n');
        }
        let d = dir(&[("big.jsonl", &text)]);
        let (p, seen) = Probe::boxed(anchored_needle, Some("Marker.Inner"));
        let r = hunt(&d, vec![p]);
        let s = seen.lock().unwrap();
        assert_eq!(s.observed.len(), 60_000);
        let distinct: std::collections::HashSet<&String> =
            s.observed.iter().map(|o| &o.1).collect();
        assert_eq!(distinct.len(), 60_000, "each record observed once");
        assert_eq!(r.totals(), (60_000, 60_000, 0));
    }

    /// JSON lines of needles, each with its own marker, filling `batches`
    /// batches of lines; and how many there are.
    fn needles_filling(batches: usize) -> (String, u64) {
        let mut text = String::new();
        let mut records = 0;
        while text.len() < batches * tokenward_logread::records::LINES_BATCH {
            text.push_str(&UAL_NEEDLE.replace("m2", &format!("m{records}")));
            text.push('\n');
            records += 1;
        }
        (text, records)
    }

    /// A shard observes batch after batch and is merged when the hunt
    /// ends, unless its detection asks to be merged after each batch; both
    /// see every record once.
    #[test]
    fn shards_observe_batch_after_batch_unless_merged_each_batch() {
        let (text, records) = needles_filling(6);
        let d = dir(&[("big.jsonl", &text)]);
        // Two workers keep a set each; sixteen keep at most
        // `KEPT_SETS_MAX`, and merge the rest after each batch.
        for workers in [2, 16] {
            let (kept, kept_seen) = Probe::boxed(anchored_needle, Some("Marker.Inner"));
            let (each, each_seen) = Probe::merged_each_batch(anchored_needle, Some("Marker.Inner"));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .build()
                .unwrap();
            let r = pool.install(|| hunt(&d, vec![kept, each]));
            assert_eq!(r.totals(), (records, records, 0));
            for seen in [&kept_seen, &each_seen] {
                let s = seen.lock().unwrap();
                let distinct: std::collections::HashSet<&String> =
                    s.observed.iter().map(|o| &o.1).collect();
                assert_eq!(s.observed.len() as u64, records, "{workers} workers");
                assert_eq!(distinct.len() as u64, records, "each record observed once");
            }
            // One per batch.
            let each_merges = each_seen.lock().unwrap().merges;
            assert!(each_merges >= 6, "{each_merges}");
            if workers == 2 {
                // One set of shards per batch worked on at once.
                let kept_merges = kept_seen.lock().unwrap().merges;
                assert!((1..=workers).contains(&kept_merges), "{kept_merges}");
            }
        }
    }

    /// A detection merged after each batch gets a file's batches in the
    /// file's order, however the workers finish them: the Sigma rule set
    /// decides a correlation's older windows as later matches arrive, and
    /// a batch merged after the ones that follow it lost its matches.
    #[test]
    fn batches_merged_each_batch_come_in_file_order() {
        let (text, records) = needles_filling(8);
        let d = dir(&[("big.jsonl", &text)]);
        let want: Vec<String> = (0..records).map(|i| format!("m{i}")).collect();
        for workers in [2, 4, 8] {
            let (each, seen) = Probe::merged_each_batch(anchored_needle, Some("Marker.Inner"));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .build()
                .unwrap();
            let r = pool.install(|| hunt(&d, vec![each]));
            assert_eq!(r.totals(), (records, records, 0));
            let s = seen.lock().unwrap();
            let got: Vec<&String> = s.observed.iter().map(|o| &o.1).collect();
            assert_eq!(got.len(), want.len(), "every record observed once");
            let first_out_of_order = got.iter().zip(&want).position(|(g, w)| *g != w);
            assert_eq!(
                first_out_of_order, None,
                "{workers} workers, {} merges",
                s.merges
            );
            assert!(s.merges >= 8, "{} merges", s.merges);
        }
    }

    /// Two workers each reading a file of many batches, with a detection
    /// merged after each batch, hold a few of its shards at once, not a
    /// file's worth: a batch offered to another worker waited on the
    /// reader's deque until a worker was free (none is while each reads a
    /// file), the reader worked on the newer batches meanwhile, and each
    /// of them waited for the offered ones to be merged first.
    #[test]
    fn readers_of_two_files_hold_a_few_batches_of_shards() {
        const BATCHES: usize = 40;
        // One record a batch, that nobody reads: the work is the merging.
        let pad = "a".repeat(tokenward_logread::records::LINES_BATCH);
        let line = format!(
            r#"{{"CreationTime":"2024-01-01T00:00:00","Workload":"Exchange","Pad":"{pad}"}}"#
        );
        let text = format!("{line}\n").repeat(BATCHES);
        let d = dir(&[("a.jsonl", &text), ("b.jsonl", &text)]);
        let (each, seen) = Probe::merged_each_batch(anchored_needle, None);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let r = pool.install(|| hunt(&d, vec![each]));
        assert_eq!(r.totals().0, 2 * BATCHES as u64);
        let s = seen.lock().unwrap();
        assert!(s.merges >= 2 * BATCHES, "{} merges", s.merges);
        // Batches being worked on, and a few waiting for an earlier one
        // (4 here; 82 when they waited for the offered ones).
        assert!(
            s.most_unmerged <= 8,
            "{} shards held at once",
            s.most_unmerged
        );
    }

    /// A kept shard's findings are handed over after each batch it
    /// observed, not when the hunt ends, and each is reported once, over
    /// several files.
    #[test]
    fn findings_of_kept_shards_are_handed_over_batch_by_batch() {
        let (text, records) = needles_filling(3);
        let d = dir(&[("a.jsonl", &text), ("b.jsonl", &text)]);
        let (p, seen) = Probe::finding_everything(anchored_needle, Some("Marker.Inner"));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let r = pool.install(|| hunt(&d, vec![p]));
        assert_eq!(r.totals(), (2 * records, 2 * records, 0));
        assert_eq!(r.findings.len(), 2 * records);
        let s = seen.lock().unwrap();
        assert!(s.merges <= 2, "{} merges", s.merges);
        // Three or more batches a file.
        assert!(s.handovers >= 6, "{} hand-overs", s.handovers);
    }

    /// The readers `plan`'s literal pass and screens send `record` to.
    fn screened_readers(plan: &Plan, record: &str) -> Mask {
        let mut hits = Vec::new();
        plan.literals
            .as_ref()
            .unwrap()
            .find_all(record.as_bytes(), &mut hits);
        let mut screening = ScreenState::default();
        plan.readers(&hits, record.as_bytes(), &mut screening, None, 0)
            .readers
    }

    /// An anchor holding characters some writers escape is found however
    /// the record spells them, and only where all its runs are; one with
    /// no run to look for screens nothing out.
    #[test]
    fn anchors_are_found_whatever_a_writer_escapes() {
        fn agent() -> Needs {
            Needs::anchored(
                Kinds::ALL,
                &["EvilTool/2.0 (+https://x.example/?a=1&b=2)"],
                &[],
            )
        }
        fn unscreenable() -> Needs {
            Needs::anchored(Kinds::ALL, &["a<b"], &[])
        }
        let (pa, _) = Probe::boxed(agent, None);
        let plan = Plan::new(&[pa]);
        let readers = |record: &str| screened_readers(&plan, record);
        for spelled in [
            r#"{"UserAgent":"EvilTool/2.0 (+https://x.example/?a=1&b=2)"}"#,
            // System.Text.Json's default encoder; Sentinel's OfficeActivity.
            r#"{"UserAgent":"EvilTool/2.0 (\u002Bhttps://x.example/?a=1\u0026b=2)"}"#,
            // PHP's slashes, and everything escaped at once.
            r#"{"UserAgent":"EvilTool\/2.0 (+https:\/\/x.example\/?a=1&b=2)"}"#,
            r#"{"UserAgent":"EvilTool\u002f2.0 (\u002bhttps:\u002f\u002fx.example\u002f?a=1\u0026b=2)"}"#,
            // In a CSV row as the engine screens it.
            "\"UserAgent\":EvilTool/2.0 (+https://x.example/?a=1&b=2)\n",
        ] {
            let value: serde_json::Value =
                serde_json::from_str(spelled).unwrap_or(serde_json::json!(null));
            if let Some(ua) = value["UserAgent"].as_str() {
                assert_eq!(ua, "EvilTool/2.0 (+https://x.example/?a=1&b=2)");
            }
            assert_eq!(readers(spelled), 1, "{spelled}");
        }
        for other in [
            r#"{"UserAgent":"EvilTool/3.0 (+https://x.example/?a=1&b=2)"}"#,
            r#"{"UserAgent":"GoodTool/2.0 (+https://x.example/?a=1&b=2)"}"#,
            r#"{"UserAgent":"EvilTool/2.0 (+https://y.example/?a=1&b=2)"}"#,
        ] {
            assert_eq!(readers(other), 0, "{other}");
        }
        let (pu, _) = Probe::boxed(unscreenable, None);
        assert_eq!(Plan::new(&[pu]).every, 1);
    }

    /// A worker screens its records with one [`ScreenState`]: a text's
    /// runs, checked once in a record however often its pattern occurs,
    /// are checked again in the next record, whether they were found in
    /// the one before or not.
    #[test]
    fn a_texts_runs_are_checked_afresh_in_each_record() {
        fn agent() -> Needs {
            Needs::anchored(Kinds::ALL, &["EvilTool/2.0 (+https://x.example/)"], &[])
        }
        let (pa, _) = Probe::boxed(agent, None);
        let plan = Plan::new(&[pa]);
        let held = r#"{"UserAgent":"EvilTool/2.0 (+https://x.example/)","Agent":"EvilTool/2.0 (+https://x.example/)"}"#;
        let lacking = r#"{"UserAgent":"EvilTool/2.0 (+https://y.example/)","Agent":"EvilTool/2.0 (+https://y.example/)"}"#;
        let mut screening = ScreenState::default();
        let mut hits = Vec::new();
        let got: Vec<Mask> = [held, lacking, lacking, held, held, lacking]
            .iter()
            .map(|record| {
                plan.literals
                    .as_ref()
                    .unwrap()
                    .find_all(record.as_bytes(), &mut hits);
                plan.readers(&hits, record.as_bytes(), &mut screening, None, 0)
                    .readers
            })
            .collect();
        assert_eq!(got, [1, 0, 0, 1, 1, 0]);
    }

    /// An anchor in any case is found however a record spells its case
    /// and its escapes, and only where every run of it is; one without
    /// letters is an exact anchor; anchors in one case keep to it.
    #[test]
    fn any_case_anchors_are_found_in_any_case() {
        fn agent() -> Needs {
            let mut n = Needs::anchored(Kinds::ALL, &[], &[]);
            n.anchors = Anchors::AnyOfIgnoringCase(vec![
                "Client=REST;Client=RESTSystem;;".into(),
                "EvilTool/2.0".into(),
                "92.0.4515.159 ".into(),
            ]);
            n
        }
        fn exact() -> Needs {
            Needs::anchored(Kinds::ALL, &["Client=REST;Client=RESTSystem;;"], &[])
        }
        let (pa, _) = Probe::boxed(agent, None);
        let (pe, _) = Probe::boxed(exact, None);
        let plan = Plan::new(&[pa, pe]);
        let readers = |record: &str| screened_readers(&plan, record);
        assert_eq!(readers(r#"{"ua":"Client=REST;Client=RESTSystem;;"}"#), 0b11);
        for spelled in [
            r#"{"ua":"client=rest;client=restsystem;;"}"#,
            r#"{"ua":"CLIENT=REST;CLIENT=RESTSYSTEM;;"}"#,
            r#"{"ua":"Client=Rest;client=RESTsystem;;"}"#,
            r#"{"ua":"eviltool/2.0"}"#,
            r#"{"ua":"EVILTOOL\/2.0 (Linux)"}"#,
            r#"{"ua":"x CHROME/92.0.4515.159 SAFARI"}"#,
        ] {
            assert_eq!(readers(spelled), 0b01, "{spelled}");
        }
        for other in [
            r#"{"ua":"Client=REST;Client=RESTSystem;"}"#,
            r#"{"ua":"client=rest;client=restsys;;"}"#,
            r#"{"ua":"RESTSystem;; Client=REST"}"#,
            r#"{"ua":"EvilTool/2.1"}"#,
            r#"{"ua":"GoodTool/2.0"}"#,
            r#"{"ua":"Chrome/92.0.4515.158 Safari"}"#,
        ] {
            assert_eq!(readers(other), 0, "{other}");
        }
    }

    #[test]
    fn the_plan_unites_anchors_and_keeps_their_readers() {
        fn a() -> Needs {
            Needs::anchored(Kinds::ALL, &["X", "Y"], &[])
        }
        fn b() -> Needs {
            Needs::anchored(Kinds::ALL, &["Y"], &["Deep.Path"])
        }
        let (pa, _) = Probe::boxed(a, None);
        let (pb, _) = Probe::boxed(b, None);
        let plan = Plan::new(&[pa, pb]);
        let mut hits = Vec::new();
        plan.literals
            .as_ref()
            .unwrap()
            .find_all(b"..Y..", &mut hits);
        let mut screening = ScreenState::default();
        assert_eq!(
            plan.readers(&hits, b"..Y..", &mut screening, None, 0)
                .readers,
            0b11
        );
        plan.literals
            .as_ref()
            .unwrap()
            .find_all(b"..X..", &mut hits);
        assert_eq!(
            plan.readers(&hits, b"..X..", &mut screening, None, 0)
                .readers,
            0b01
        );
        assert!(plan.projection(0b10).reaches("Deep.Path"));
        assert!(!plan.projection(0b01).reaches("Deep.Path"));
        assert!(plan.index_slot.is_none());
    }

    /// An indicator user agent of characters longer than a byte (an
    /// `--ioc` line is taken as written) reaches its detection: the
    /// literal pass once looked for four-byte pieces of whole characters,
    /// which `微信` has none of, and never found it.
    #[test]
    fn a_user_agent_indicator_of_multibyte_characters_is_found() {
        // Equal to the indicator, as short user agents must be.
        let ua = "微信";
        let rec = |agent: &str| {
            format!(
                r#"{{"CreationTime":"2023-06-10T10:00:00","Operation":"FileAccessed","Workload":"SharePoint","UserId":"a@x","ClientIP":"198.51.100.7","UserAgent":"{agent}"}}"#
            )
        };
        let d = dir(&[
            ("iocs.txt", "ua:微信\n"),
            (
                "a.jsonl",
                &format!("{}\n{}\n", rec(ua), rec("Mozilla/5.0 (Windows NT 10.0)")),
            ),
        ]);
        let cfg = HuntConfig {
            inputs: vec![d.path().join("a.jsonl")],
            ioc_files: vec![d.path().join("iocs.txt")],
            ..Default::default()
        };
        let r = run(&cfg, Arc::new(AtomicU64::new(0))).unwrap();
        let found: Vec<Finding> = r
            .findings
            .iter()
            .unwrap()
            .map(|f| f.unwrap().into_owned())
            .filter(|f| f.rule_id == "tw-ioc-useragent")
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].source_locator, "line 1");
    }

    /// The literal pass by cover texts finds every (place, pattern) an
    /// overlapping automaton finds, with the built-in anchors: on the
    /// example intrusion's logs, whose records hold many of them, and on
    /// texts made of anchors cut and run together (overlaps, patterns
    /// inside patterns, case variants).
    #[test]
    fn the_literal_pass_finds_what_an_automaton_finds() {
        let ds = detections(
            &HuntConfig::default(),
            Arc::new(IocSet::builtin()),
            StateDisk::new(DEFAULT_STATE_MEMORY),
        );
        let mut lits: Vec<String> = Vec::new();
        for d in &ds {
            let n = d.needs();
            let anchors = match &n.anchors {
                Anchors::AnyOf(t) => t.clone(),
                _ => Vec::new(),
            };
            let whole = match &n.whole_record {
                WholeRecord::WhenAnyOf(t) => t.clone(),
                _ => Vec::new(),
            };
            for t in anchors.into_iter().chain(whole) {
                if !t.is_empty() && !lits.contains(&t) {
                    lits.push(t);
                }
            }
        }
        assert!(lits.len() > 64, "more anchors than one SIMD searcher takes");
        // The built-ins have no pattern starting another: add some, one
        // shorter than a cover text, and user agents an `--ioc` file may
        // give of characters longer than a byte.
        lits.extend(
            ["NEEDLE", "NEED", "EDLEN", "LEN", "id", "idzq", "微信", "é€"].map(String::from),
        );
        let pass = Literals::new(&lits);
        #[cfg(target_arch = "x86_64")]
        let simd = std::is_x86_feature_detected!("ssse3");
        #[cfg(not(target_arch = "x86_64"))]
        let simd = cfg!(target_arch = "aarch64");
        let Literals::Cover(cover) = &pass else {
            // No SIMD here: the automaton is the pass.
            assert!(!simd, "a machine with SIMD searches cover texts");
            return;
        };
        assert!(cover.passes() <= LITERAL_SEARCHERS_MAX);
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(&lits)
            .unwrap();
        let check = |hay: &[u8]| {
            let mut got = Vec::new();
            pass.find_all(hay, &mut got);
            let mut want: Vec<(usize, usize)> = automaton
                .find_overlapping_iter(hay)
                .map(|m| (m.start(), m.pattern().as_usize()))
                .collect();
            want.sort_unstable();
            want.dedup();
            assert_eq!(got, want);
            got.len()
        };
        let mut found = 0;
        for dir in ["ual", "entra", "purview", "tokenward-gateway"] {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/storm-0558/logs")
                .join(dir);
            for f in std::fs::read_dir(root).unwrap() {
                found += check(&std::fs::read(f.unwrap().path()).unwrap());
            }
        }
        assert!(found > 100, "the example holds anchors: {found}");
        let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        let mut next = |n: usize| rng.usize(0..n);
        for _ in 0..3000 {
            let mut hay = Vec::new();
            for _ in 0..next(8) {
                let l = lits[next(lits.len())].as_bytes();
                let (a, b) = (next(l.len() / 2 + 1), l.len() - next(l.len() / 2 + 1));
                hay.extend_from_slice(&l[a.min(b)..b.max(a)]);
                if next(3) == 0 {
                    hay.push(b" .x:\"\\"[next(6)]);
                }
            }
            check(&hay);
        }
    }

    /// Runs `screen` through a streak tracker over `answers` (what the
    /// screen would say of each record) and returns what the tracker let
    /// through and how often it asked the screen.
    fn screened_by_streaks(answers: &[bool]) -> (Vec<bool>, usize) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let screen: KindScreenFn = Arc::new(move |_, b: &[u8]| {
            counter.fetch_add(1, Ordering::Relaxed);
            b == b"y"
        });
        let mut screening = ScreenState::default();
        let passed = answers
            .iter()
            .map(|&a| screening.passes(0, &screen, None, if a { b"y" } else { b"n" }))
            .collect();
        (passed, asked.load(Ordering::Relaxed))
    }

    #[test]
    fn a_screen_that_passes_every_record_is_sampled_not_run_on_each() {
        let (passed, asked) = screened_by_streaks(&[true; 512]);
        assert!(passed.iter().all(|&p| p));
        let after = 512 - SCREEN_TRUSTED_AFTER as usize;
        assert_eq!(
            asked,
            SCREEN_TRUSTED_AFTER as usize + after.div_ceil(SCREEN_SAMPLE_EVERY as usize)
        );
    }

    #[test]
    fn a_screen_that_rules_records_out_keeps_running_on_each() {
        // Every other record fails: no streak ever builds.
        let answers: Vec<bool> = (0..512).map(|i| i % 2 == 0).collect();
        let (passed, asked) = screened_by_streaks(&answers);
        assert_eq!(passed, answers);
        assert_eq!(asked, 512);
    }

    #[test]
    fn a_sampled_record_the_screen_rules_out_ends_the_skipping() {
        // A long streak, then records the screen rules out: the first
        // sample among them is refused and every later one is screened.
        let mut answers = vec![true; 100];
        answers.extend([false; 100]);
        let (passed, asked) = screened_by_streaks(&answers);
        let first_refused = passed.iter().position(|&p| !p).expect("one is refused");
        assert!(first_refused >= 100 && first_refused < 100 + SCREEN_SAMPLE_EVERY as usize);
        assert!(passed[first_refused..].iter().all(|&p| !p));
        assert_eq!(passed[..100], answers[..100]);
        let skipped_in_streak = 100 - SCREEN_TRUSTED_AFTER as usize;
        let sampled = skipped_in_streak.div_ceil(SCREEN_SAMPLE_EVERY as usize);
        assert_eq!(
            asked,
            SCREEN_TRUSTED_AFTER as usize + sampled + (200 - first_refused)
        );
    }
}
