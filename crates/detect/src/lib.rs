//! The detection interface and tokenward's built-in detections.
//!
//! Every detection, built-in or a Sigma rule set, says what it reads in its
//! [`Needs`]: the event kinds it looks at, the literal texts a record must
//! contain to matter to it, the paths it reads, whether it needs the whole
//! record or the sign-in index. The engine derives everything else from
//! those declarations: the literal screen over the raw bytes, which fields
//! it extracts from a record (the projection), which records it parses at
//! all, and the order it reads files in. A detection observes the events
//! routed to it, can be split into shards that observe batches in parallel
//! and are merged back, and finishes with findings and its [`Coverage`].
//!
//! Adding a built-in detection: write one file with a [`Detection`]
//! implementation and an [`Info`], and add one line to [`BUILTINS`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::any::Any;
use std::borrow::{Borrow, Cow};
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use tokenward_event::{Event, EventKind, Finding, Rep, Severity};

use crate::ioc::IocSet;

pub use tokenward_event::{Coverage, Status};
use tokenward_spill::{keyed, spilling, KeyHasher};

mod aggregate;
pub mod audit_gap;
pub mod audit_tampering;
pub mod gateway_rejected_burst;
pub mod ioc;
pub mod ioc_ip;
pub mod ioc_key;
pub mod ioc_useragent;
pub mod mail;
pub mod mail_bind_spike;
pub mod mail_new_client_app;
pub mod mail_sync_unusual_client;
pub mod mail_throttled;
pub mod mailbox_export;
pub mod owa_token_for_resource;
pub mod signin_index;
pub mod token_without_signin;

#[cfg(test)]
pub(crate) mod testing;

pub use aggregate::Grouped;
pub use signin_index::SigninIndex;

/// A set of event kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// Every kind.
    pub const ALL: Kinds = Kinds(0x3f);

    /// The set of the given kinds.
    pub const fn of(kinds: &[EventKind]) -> Kinds {
        let mut bits = 0u8;
        let mut i = 0;
        while i < kinds.len() {
            bits |= 1 << kinds[i] as u8;
            i += 1;
        }
        Kinds(bits)
    }

    /// Whether `k` is in the set.
    pub fn contains(self, k: EventKind) -> bool {
        self.0 & (1 << k as u8) != 0
    }
}

/// A screen over a record's raw bytes for [`WholeRecord::When`] and
/// [`WholeRecord::WordsWhen`]: `true` when the detection reads the record
/// whole, or its words.
pub type ScreenFn = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A screen of a detection's own over a record's raw bytes that may be told
/// the record's kind: `true` when a record of that kind (`None`: of any
/// kind) with these bytes may matter to it. Told a kind, it may answer for
/// that kind alone, as a screen of the texts of that kind's rules: the
/// engine guesses the kind from the records before (the kind is only known
/// once a record is parsed), and asks again, with the kind the record
/// turned out to be, whenever the guess was wrong and the screen said no.
pub type KindScreenFn = Arc<dyn Fn(Option<EventKind>, &[u8]) -> bool + Send + Sync>;

/// Which records a detection wants to see, judged on the raw bytes before
/// any parsing.
#[derive(Clone)]
pub enum Anchors {
    /// Every record.
    Every,
    /// Records whose bytes contain at least one of these texts (matched
    /// case-sensitively, so list the spellings exports use). A record
    /// without any of them is never shown to the detection: list every
    /// text without which it could not act on a record. A text holding
    /// characters some JSON writers escape and others do not (`/`, `'`,
    /// `<`, `>`, `&`, `+`, a backquote, non-ASCII) is found where all its
    /// runs between them are, however the record spells those characters
    /// (a text none of whose runs has three bytes screens nothing out);
    /// `"`, `\` and control characters are the detection's to spell (as
    /// JSON syntax, the quotes around a key, they are as written; in a
    /// value every writer escapes them, `"` as `\"` or `\u0022`).
    AnyOf(Vec<String>),
    /// Records whose bytes contain at least one of these texts, ASCII case
    /// ignored: for a detection that matches a value in any case (a user
    /// agent an analyst typed in another case than the log writes it).
    /// Escapes as for [`Anchors::AnyOf`]. Texts without letters cost no
    /// more than there; any other is looked for by one short piece in each
    /// of its case spellings, so list few.
    AnyOfIgnoringCase(Vec<String>),
    /// A screen of its own, for anchors that are not a plain list (a Sigma
    /// rule set's AND/OR texts).
    Screen(KindScreenFn),
}

impl std::fmt::Debug for Anchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anchors::Every => f.write_str("Every"),
            Anchors::AnyOf(v) => f.debug_tuple("AnyOf").field(v).finish(),
            Anchors::AnyOfIgnoringCase(v) => f.debug_tuple("AnyOfIgnoringCase").field(v).finish(),
            Anchors::Screen(_) => f.write_str("Screen(..)"),
        }
    }
}

/// What a detection reads. The engine builds its screen, projection and
/// file order from the union of every detection's needs.
#[derive(Clone, Debug)]
pub struct Needs {
    /// Kinds of event it observes; others are never routed to it.
    pub kinds: Kinds,
    /// Which records matter to it.
    pub anchors: Anchors,
    /// Dotted paths it reads with [`Event::get`] and its relatives, beyond
    /// the normalised fields every event has. A path is looked up in the
    /// wrapped record (`AuditData`, `RawEventData`, `properties`) first,
    /// then from the root; JSON carried in strings and Name/Value bags
    /// (`OperationProperties`, `ExtendedProperties`, `Parameters`) are
    /// reached through the path of the bag. Test and debug builds check
    /// every lookup against this list.
    pub fields: Vec<Cow<'static, str>>,
    /// Which of its records it reads whole, or whose every value it
    /// searches (as keyword rules do): those are parsed in full or carry
    /// their words, the others projected.
    pub whole_record: WholeRecord,
    /// For records no detection wants parsed, it takes just their time and
    /// workload ([`Detection::observe_unparsed`]), which the engine reads
    /// off the bytes where they say them plainly
    /// (`tokenward_event::projection::plain_audit`), and
    /// otherwise from the record projected and observed as an event.
    pub unparsed_time_and_workload: bool,
    /// It reads the sign-in index ([`Context::signins`]): the engine reads
    /// sign-in files first and builds the index before other records.
    pub signin_index: bool,
    /// It reads the sign-in index and is blind without sign-ins, whatever
    /// else it saw: its [`Detection::finish`] reports [`Verdict::Blind`]
    /// when [`Context::signins`] holds none. While the index holds no
    /// sign-in, the engine hands it no record of a file it can read again;
    /// if sign-ins turn up later in the hunt (a file mixing kinds, or
    /// audit records inside a sign-in file, read while the index is
    /// built), the files it was not shown are read again for it alone,
    /// with every sign-in in the index. Set it with `signin_index`. An export without sign-ins thus costs it
    /// nothing: it would gather every unexplained session only to report
    /// itself blind.
    pub blind_without_signins: bool,
}

impl Needs {
    /// Needs of a detection that takes every record's time and workload
    /// and nothing else (a record nobody else reads need not be parsed).
    /// Its `observe` may read an event's kind, time and workload only: a
    /// record no other detection reads is projected to what gives those
    /// (`tokenward_event::time_and_workload_paths`), by the engine and by
    /// the tests' `testing::run` alike.
    pub fn time_and_workload() -> Needs {
        Needs {
            kinds: Kinds::ALL,
            anchors: Anchors::Every,
            fields: Vec::new(),
            whole_record: WholeRecord::Never,
            unparsed_time_and_workload: true,
            signin_index: false,
            blind_without_signins: false,
        }
    }

    /// Whether a record's time and workload are all the detection reads,
    /// so that they may be taken off the bytes
    /// ([`Detection::observe_unparsed`]).
    pub fn reads_time_and_workload_only(&self) -> bool {
        self.unparsed_time_and_workload && self.fields.is_empty() && !self.whole_record.ever()
    }

    /// Needs of a detection that looks at the given kinds of record when
    /// they contain one of `anchors`, reading `fields`.
    pub fn anchored(kinds: Kinds, anchors: &[&str], fields: &[&'static str]) -> Needs {
        Needs {
            kinds,
            anchors: Anchors::AnyOf(anchors.iter().map(|s| s.to_string()).collect()),
            fields: fields.iter().map(|f| Cow::Borrowed(*f)).collect(),
            whole_record: WholeRecord::Never,
            unparsed_time_and_workload: false,
            signin_index: false,
            blind_without_signins: false,
        }
    }
}

/// Which records a detection reads whole rather than through its declared
/// paths ([`Needs::whole_record`]).
#[derive(Clone)]
pub enum WholeRecord {
    /// None: it reads only the paths it declared.
    Never,
    /// Every record routed to it.
    Always,
    /// Only the records of these kinds whose raw bytes pass this screen
    /// (for some kinds only, the engine projects a record first to learn
    /// its kind, so the screen never runs on records of other kinds). The
    /// others may reach it projected ([`Event::projection`] set): it must
    /// then read only its declared paths, which the screen and the kinds
    /// promise is enough (a Sigma rule set whose keyword rules are written
    /// for other log sources, or whose anchors are not in the record).
    When(Kinds, ScreenFn),
    /// As `When`, for a detection that reads such a record for nothing but
    /// its values as text, not its keys or shape (Sigma keywords): the
    /// engine hands it projected, carrying its
    /// [`Words`](tokenward_event::Words) ([`Event::words`]), or whole where
    /// they cannot be read off a JSON text alone (a key named twice, a CSV
    /// row). Either way it reads the words through [`Event::words`] or,
    /// where that is `None`, the record's own.
    WordsWhen(Kinds, ScreenFn),
    /// Only the records whose raw bytes hold one of these texts; the others
    /// may reach it projected, as with `When`. The engine finds these texts
    /// in the one literal pass that finds every [`Anchors::AnyOf`] text.
    WhenAnyOf(Vec<String>),
}

impl WholeRecord {
    /// Whether some record routed to the detection may be read whole (a
    /// reader of words too: where they cannot be read off).
    pub fn ever(&self) -> bool {
        match self {
            WholeRecord::Never => false,
            WholeRecord::WhenAnyOf(texts) => !texts.is_empty(),
            WholeRecord::Always | WholeRecord::When(..) | WholeRecord::WordsWhen(..) => true,
        }
    }
}

impl std::fmt::Debug for WholeRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WholeRecord::Never => f.write_str("Never"),
            WholeRecord::Always => f.write_str("Always"),
            WholeRecord::When(kinds, _) => write!(f, "When({kinds:?}, ..)"),
            WholeRecord::WordsWhen(kinds, _) => write!(f, "WordsWhen({kinds:?}, ..)"),
            WholeRecord::WhenAnyOf(texts) => f.debug_tuple("WhenAnyOf").field(texts).finish(),
        }
    }
}

/// Findings and coverage of one detection (a Sigma rule set reports one
/// coverage entry per rule).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Findings, in any order (the engine sorts).
    pub findings: Vec<Finding>,
    /// One entry per id the detection reports under.
    pub coverage: Vec<Coverage>,
}

impl Outcome {
    /// The outcome of a built-in detection: its findings, and blind with the
    /// reason when `blind` is set, else ok with an optional caveat.
    pub fn of(info: &Info, findings: Vec<Finding>, verdict: Verdict) -> Outcome {
        Outcome {
            coverage: coverage_of(info, findings.len(), verdict),
            findings,
        }
    }
}

/// The coverage of a built-in detection that made `hits` findings: blind
/// with the reason when `verdict` is, else ok with an optional caveat.
pub fn coverage_of(info: &Info, hits: usize, verdict: Verdict) -> Vec<Coverage> {
    let (status, note) = match verdict {
        Verdict::Ok(note) => (Status::Ok, note),
        Verdict::Blind(why) => (Status::Blind, Some(why)),
    };
    vec![Coverage {
        id: Cow::Borrowed(info.id),
        title: Cow::Borrowed(info.title),
        hits,
        status,
        note,
    }]
}

/// A detection's judgement of its own coverage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It could judge; with a caveat when there is one.
    Ok(Option<String>),
    /// It could not; why.
    Blind(String),
}

impl Verdict {
    /// Blind with `why` when `cond`, else ok.
    pub fn blind_if(cond: bool, why: &str) -> Verdict {
        if cond {
            Verdict::Blind(why.to_string())
        } else {
            Verdict::Ok(None)
        }
    }
}

/// What the engine hands a detection besides the event.
pub struct Context<'a> {
    /// Sign-ins read so far: while observing, those of the files read
    /// before this one (sign-in files come first); when finishing, all.
    pub signins: &'a SigninIndex,
    /// Counts over every record evaluated, parsed or not, for coverage:
    /// given when finishing (empty while observing).
    pub records: &'a RecordStats,
}

/// What the engine counted over the records it evaluated.
#[derive(Clone, Debug, Default)]
pub struct RecordStats {
    /// Records evaluated.
    pub records: u64,
    /// Records per workload (`Workload`, `OfficeWorkload`, ...), for those
    /// that name one.
    pub workloads: std::collections::HashMap<String, u64>,
}

impl RecordStats {
    /// Counts one record.
    pub fn add(&mut self, workload: Option<&str>) {
        self.records += 1;
        if let Some(w) = workload {
            match self.workloads.get_mut(w) {
                Some(n) => *n += 1,
                None => {
                    self.workloads.insert(w.to_string(), 1);
                }
            }
        }
    }

    /// Folds another count into this one.
    pub fn merge(&mut self, o: RecordStats) {
        self.records += o.records;
        for (w, n) in o.workloads {
            *self.workloads.entry(w).or_default() += n;
        }
    }

    /// Whether some record's workload is `name` (any case).
    pub fn has_workload(&self, name: &str) -> bool {
        self.workloads
            .iter()
            .any(|(w, n)| *n > 0 && w.eq_ignore_ascii_case(name))
    }
}

/// A detection: observes the events routed to it and reports findings.
///
/// The engine calls [`Detection::fork`] for empty shards, lets a shard
/// observe batches of records on a worker thread, one after another and
/// from any file, and [`Detection::merge`]s the shards into the detection
/// when the hunt has read every file (or after each batch, for a detection
/// that [`Detection::merges_each_batch`]). Neither which batches a shard
/// sees nor the order shards merge in may change the result, but for
/// which items a detection keeps past one of its documented caps
/// (docs/limits.md).
pub trait Detection: IntoAny + Send {
    /// The id and title of every rule it reports under (one for a built-in).
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)>;
    /// What it reads.
    fn needs(&self) -> Needs;
    /// An empty shard with the same configuration.
    fn fork(&self) -> Box<dyn Detection>;
    /// Looks at one event of a kind it declared, from a record its anchors
    /// matched.
    fn observe(&mut self, ev: &Event, cx: &Context<'_>);
    /// Takes the time and workload of a record nobody needed parsed (only
    /// called when [`Needs::unparsed_time_and_workload`] is set).
    fn observe_unparsed(&mut self, _time: Option<OffsetDateTime>, _workload: Option<&str>) {}
    /// Folds a shard made by [`Detection::fork`] into this one.
    fn merge(&mut self, shard: Box<dyn Detection>);
    /// Whether each batch's shard is merged as soon as the batch is done,
    /// instead of observing the next batches too. A detection whose
    /// shards keep per-key aggregates (most do) is better off without:
    /// one shard meets each key once instead of once per batch, and no
    /// merge holds the hunt's lock. One whose shard keeps every match and
    /// is compacted only by merging (a rule set's hits, folded into
    /// correlation windows) says yes, so that a shard holds one batch's
    /// worth at most.
    fn merges_each_batch(&self) -> bool {
        false
    }
    /// Findings already decided (no later record can change them), handed
    /// over as they are made: the engine spills them to disk beyond its
    /// memory budget, where this detection would hold every one until
    /// [`Detection::finish`]. Called on a shard after each batch it
    /// observed and on the detection after each merge; what it returns is
    /// not reported again by `finish`.
    fn take_findings(&mut self) -> Vec<Finding> {
        Vec::new()
    }
    /// Decides and reports.
    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome;
    /// [`Detection::finish`], handing each finding to `found` as it is
    /// made, and returning the coverage: the engine spills findings past
    /// its memory, so a detection that makes one finding per key of an
    /// export (a session no sign-in issued) need not hold them all at
    /// once beside its keys. By default, `finish`'s findings in turn.
    fn finish_into(
        self: Box<Self>,
        cx: &Context<'_>,
        found: &mut dyn FnMut(Finding),
    ) -> Vec<Coverage> {
        let o = self.finish(cx);
        o.findings.into_iter().for_each(found);
        o.coverage
    }
}

/// A boxed value as `Any`, so [`Detection::merge`] can take a shard's own
/// type back ([`shard_of`]). Every `'static` type has it.
pub trait IntoAny: Any {
    /// The value as `Box<dyn Any>`.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Any> IntoAny for T {
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Takes back the concrete type of a shard made by `fork`.
pub fn shard_of<T: 'static>(shard: Box<dyn Detection>) -> T {
    *shard
        .into_any()
        .downcast::<T>()
        .expect("a shard merges into the detection that forked it")
}

/// Frees `state` on a thread of its own, or here if no thread can be
/// started. What a detection gathered can be hundreds of thousands of
/// small allocations made on the worker threads; freeing them when it
/// finishes held up the end of a hunt, where detections finish one after
/// another on one core (20 ms of a 0.6 s hunt over 500 MB of UAL records
/// without sign-ins, for the candidates of `tw-token-without-signin`).
/// The memory is returned after `finish` returns, not before; callers set
/// aside only large state (a thread each: a few per hunt).
pub fn free_aside<T: Send + 'static>(state: T) {
    // On failure the closure, and `state` with it, is dropped at once.
    let _ = std::thread::Builder::new()
        .name("tokenward-free".into())
        .spawn(move || drop(state));
}

/// Id, title and what a built-in detection must see to fire.
#[derive(Debug)]
pub struct Info {
    /// Stable id (`tw-...`): users filter and suppress by it.
    pub id: &'static str,
    /// Short title.
    pub title: &'static str,
    /// What it needs to see to be able to fire.
    pub requires: &'static str,
    /// MITRE ATT&CK technique ids its findings point at.
    pub attack: &'static [&'static str],
    /// How much one finding says on its own, when findings are weighed
    /// together into an incident.
    pub weight: Weight,
}

/// How much a detection's finding says on its own. An incident is "high"
/// only when independent detections corroborate each other
/// (docs/incidents.md): a lone weak signal, such as a new client app that a
/// rollout also produces, never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weight {
    /// Common in benign activity too: new client apps, user agents,
    /// unusual sync clients, throttling, audit gaps, refused attempts.
    Weak,
    /// Suspicious but explainable alone: an IOC IP (infrastructure gets
    /// reused), a Bind spike, a mailbox export.
    Moderate,
    /// Hard to explain benignly: a compromised key, a token no sign-in
    /// issued, an OWA token minted for a session that never signed in,
    /// audit logging switched off.
    Strong,
}

impl Weight {
    /// Points towards an incident's score.
    pub fn points(self) -> u32 {
        match self {
            Weight::Weak => 1,
            Weight::Moderate => 2,
            Weight::Strong => 3,
        }
    }
}

/// The [`Info`] of a built-in detection by id.
pub fn builtin_info(id: &str) -> Option<&'static Info> {
    // Every built-in id starts with `tw-` (a test holds them to it); Sigma
    // ids, most findings of a large hunt, are answered without comparing
    // them to every built-in id.
    if !id.starts_with(BUILTIN_ID_PREFIX) {
        return None;
    }
    BUILTINS.iter().map(|b| b.info).find(|i| i.id == id)
}

/// The prefix of every built-in detection id.
pub const BUILTIN_ID_PREFIX: &str = "tw-";

impl Info {
    /// The `(id, title)` pair of [`Detection::ids`].
    pub fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        vec![(Cow::Borrowed(self.id), Cow::Borrowed(self.title))]
    }

    /// A finding of this detection.
    pub fn finding(&self, rep: &Rep, severity: Severity, evidence: Map<String, Value>) -> Finding {
        rep.finding(
            Cow::Borrowed(self.id),
            Cow::Borrowed(self.title),
            severity,
            evidence,
        )
    }
}

/// Tunables of the built-in detections.
#[derive(Clone, Debug)]
pub struct Options {
    /// Days at the start of the MailItemsAccessed data used as the baseline.
    pub baseline_days: u32,
    /// Minimum length of an audit gap, in hours.
    pub gap_hours: u32,
    /// A Bind bucket is a spike at this many times the mailbox median...
    pub bind_spike_factor: u64,
    /// ...and at least this many items.
    pub bind_spike_min: u64,
    /// OWA token issuances in one session that make a renewal chain.
    pub owa_chain_min: u64,
    /// Margin around an IOC's published first/last-seen dates, in days.
    pub ioc_window_margin_days: i64,
    /// Rejected gateway requests from one client IP that make a burst...
    pub gateway_burst_min: u64,
    /// ...within this many consecutive UTC minutes.
    pub gateway_burst_minutes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            baseline_days: 14,
            gap_hours: 24,
            bind_spike_factor: 10,
            bind_spike_min: 100,
            owa_chain_min: 3,
            ioc_window_margin_days: 30,
            // A client retrying one expired token stays far below this; a
            // forger trying keys, tenants or victims does not.
            gateway_burst_min: 20,
            gateway_burst_minutes: 5,
        }
    }
}

/// What built-in detections are made from.
pub struct Setup {
    /// Indicators in force.
    pub iocs: Arc<IocSet>,
    /// Tunables.
    pub options: Options,
    /// Where keyed state goes past its memory ([`spilling`]).
    pub state: Arc<spilling::StateDisk>,
}

/// A registered built-in detection.
pub struct Builtin {
    /// Its id, title and requirements.
    pub info: &'static Info,
    /// Makes it for a hunt.
    pub make: fn(&Setup) -> Box<dyn Detection>,
}

/// Every built-in detection, in report order.
pub const BUILTINS: &[Builtin] = &[
    ioc_ip::BUILTIN,
    ioc_useragent::BUILTIN,
    ioc_key::BUILTIN,
    mail_new_client_app::BUILTIN,
    token_without_signin::BUILTIN,
    owa_token_for_resource::BUILTIN,
    mail_bind_spike::BUILTIN,
    mail_throttled::BUILTIN,
    mail_sync_unusual_client::BUILTIN,
    audit_tampering::BUILTIN,
    audit_gap::BUILTIN,
    gateway_rejected_burst::BUILTIN,
    mailbox_export::BUILTIN,
];

/// The built-in detections for a hunt.
pub fn builtins(setup: &Setup) -> Vec<Box<dyn Detection>> {
    BUILTINS.iter().map(|b| (b.make)(setup)).collect()
}

/// Evidence from `(name, value)` pairs, leaving out nulls.
pub fn evidence(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// An optional string as a JSON value.
pub fn opt<S: AsRef<str>>(s: Option<S>) -> Value {
    s.map(|x| Value::String(x.as_ref().to_owned()))
        .unwrap_or(Value::Null)
}

/// Whether [`keep_smallest`] would add `item` to `set`: checked before an
/// owned copy of it is made.
pub fn would_keep<T, Q>(set: &BTreeSet<T>, item: &Q, cap: usize) -> bool
where
    T: Ord + Borrow<Q>,
    Q: Ord + ?Sized,
{
    (set.len() < cap || set.last().is_some_and(|l| item < l.borrow())) && !set.contains(item)
}

/// Adds `item` to a set that keeps at most `cap` items: the smallest. What
/// a finding lists then depends on the records alone, not on the order in
/// which the workers read and merged them (keeping the first `cap` that
/// came listed other items from one run to the next).
pub fn keep_smallest<T: Ord>(set: &mut BTreeSet<T>, item: T, cap: usize) {
    if set.len() < cap {
        set.insert(item);
    } else if set.last().is_some_and(|l| item < *l) && set.insert(item) {
        set.pop_last();
    }
}

/// [`keep_smallest`] of each of `items`: what folding two kept sets
/// together keeps.
pub fn keep_smallest_of<T: Ord>(set: &mut BTreeSet<T>, items: BTreeSet<T>, cap: usize) {
    for item in items {
        keep_smallest(set, item, cap);
    }
}

/// [`Detection::finish`] of a detection that makes its findings in
/// [`Detection::finish_into`]: those findings, collected. Only for a
/// detection that overrides `finish_into` (whose default calls `finish`:
/// the two would call each other for ever).
pub fn finish_collected(d: Box<dyn Detection>, cx: &Context<'_>) -> Outcome {
    let mut findings = Vec::new();
    let coverage = d.finish_into(cx, &mut |f| findings.push(f));
    Outcome { findings, coverage }
}

/// UTC day number of a time (-1 without one), for per-day keys.
pub fn day(t: Option<OffsetDateTime>) -> i64 {
    t.map(|t| t.unix_timestamp().div_euclid(86400))
        .unwrap_or(-1)
}

/// Widens an optional time range to include `t`.
pub fn widen(r: &mut Option<(OffsetDateTime, OffsetDateTime)>, t: OffsetDateTime) {
    *r = Some(match *r {
        Some((a, b)) => (a.min(t), b.max(t)),
        None => (t, t),
    });
}

/// The union of two optional ranges.
pub fn union(
    a: Option<(OffsetDateTime, OffsetDateTime)>,
    b: Option<(OffsetDateTime, OffsetDateTime)>,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (x, y) => x.or(y),
    }
}

/// `true`, `1` (any case, trimmed).
pub fn is_true(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true") || s.trim() == "1"
}

/// `false`, `0`, `$false` (any case, trimmed).
pub fn is_false(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("false") || s.trim() == "0" || s.trim() == "$false"
}

/// `hay` contains `needle`, ignoring ASCII case, without allocating.
pub fn contains_ignore_ascii_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is set aside is freed, not leaked.
    #[test]
    fn state_set_aside_is_freed() {
        struct Flag(std::sync::mpsc::Sender<()>);
        impl Drop for Flag {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        free_aside(vec![Flag(tx)]);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropped on its thread");
    }

    /// `builtin_info` answers "not a built-in" from the prefix alone.
    #[test]
    fn every_builtin_id_starts_with_the_prefix_and_is_found() {
        for b in BUILTINS {
            assert!(b.info.id.starts_with(BUILTIN_ID_PREFIX), "{}", b.info.id);
            assert_eq!(builtin_info(b.info.id).map(|i| i.id), Some(b.info.id));
        }
        assert!(builtin_info("4f77e1d7-3982-4ee0-8489-abf2d6b75284").is_none());
        assert!(builtin_info("tw-no-such-detection").is_none());
    }
}
