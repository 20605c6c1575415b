//! The one event model shared by every input format.
//!
//! An [`Event`] keeps the original record as a `serde_json::Value` (with
//! nested JSON that arrived as strings expanded in place, so
//! `AuditData.AppAccessContext.UniqueTokenId` is a path like any other) plus
//! the normalised fields every detection and output needs.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::projection::{Projection, NESTED_DEPTH};
use crate::timefmt::parse_timestamp;
use crate::words::Words;
use tokenward_logread::Locator;
use tokenward_net::parse_client_ip;

/// What an event is, independent of the carrier it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A Microsoft 365 unified audit log record (any carrier: Management
    /// Activity API, Purview CSV `AuditData`, Sentinel `OfficeActivity`,
    /// Defender `CloudAppEvents.RawEventData`).
    Audit,
    /// An Entra ID sign-in (interactive, non-interactive, service principal,
    /// managed identity).
    SignIn,
    /// An Entra ID directory audit (`directoryAudit`, `AuditLogs`).
    DirectoryAudit,
    /// An Azure Activity (control-plane) record.
    AzureActivity,
    /// A request line of the `tokenward gateway` access log.
    Gateway,
    /// Anything else (risk detections, configuration snapshots, Windows rows).
    Other,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 6] = [
        EventKind::Audit,
        EventKind::SignIn,
        EventKind::DirectoryAudit,
        EventKind::AzureActivity,
        EventKind::Gateway,
        EventKind::Other,
    ];

    /// Stable lower-case name used in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Audit => "audit",
            EventKind::SignIn => "signin",
            EventKind::DirectoryAudit => "directory-audit",
            EventKind::AzureActivity => "azure-activity",
            EventKind::Gateway => "gateway",
            EventKind::Other => "other",
        }
    }
}

/// Keys of the objects that wrap the actual record in some exports
/// ([`Event::inner`]).
pub const WRAPPERS: [&str; 3] = ["AuditData", "RawEventData", "properties"];

/// One input record, parsed and normalised.
#[derive(Clone, Debug)]
pub struct Event {
    /// What the record is.
    pub kind: EventKind,
    /// The original record; JSON carried as strings is expanded in place.
    /// Read-only once built: lookups go through key filters built from it.
    pub record: Value,
    /// Key of the object holding the actual audit record inside a wrapper
    /// (`AuditData`, `RawEventData`, `properties`), looked up before the root.
    pub inner: Option<&'static str>,
    /// Event time in UTC.
    pub time: Option<OffsetDateTime>,
    /// File the record came from.
    pub source_file: Arc<str>,
    /// Position of the record in that file.
    pub locator: Locator,
    /// For a projected event, the fields its record kept: every other
    /// lookup would answer wrongly, and test and debug builds refuse it.
    pub projection: Option<Arc<Projection>>,
    /// Earlier copies of keys the record names twice in one object, as
    /// (key, value): [`Event::record`] keeps the last copy, as most JSON
    /// parsers do, and indicator detections search these too
    /// ([`crate::shadow`]). Empty for almost every record.
    pub shadowed: Vec<(String, Value)>,
    /// For a projected event, every value of its record as text
    /// ([`Words::of_json`]), set by the engine where a reader searches any
    /// value. `None` otherwise: for a record built whole, whose words are
    /// its own, and for a projected event no such reader reads.
    pub words: Option<Box<Words>>,
    /// Key filters of the wrapped record and of the root, built with the
    /// event: lookups skip a map that cannot hold the path's first step.
    keys: (KeyFilter, KeyFilter),
    /// The other normalised fields, each looked up when first asked for.
    normal: Normal,
}

// Events are shared between threads (library users and the fuzz targets
// keep them in statics): the lazily found fields must not take that away.
const _: fn() = || {
    fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Event>();
};

/// Normalised fields of an [`Event`] other than its time, each found on
/// first use ([`Event::user`] and the others). Each tries several names
/// in two passes, and most records are read by detections that ask for
/// a few of them (the engine counts every record's workload; a Sigma
/// rule set asks for the rest only to report a match): finding them all
/// for every record was about 7 % of the CPU of a hunt over UAL or
/// Purview CSV exports with the SigmaHQ rules.
#[derive(Clone, Debug, Default)]
struct Normal {
    user: OnceLock<Option<Arc<str>>>,
    client_ip: OnceLock<Option<Arc<str>>>,
    app_id: OnceLock<Option<Arc<str>>>,
    client_app_id: OnceLock<Option<Arc<str>>>,
    session_id: OnceLock<Option<Arc<str>>>,
    token_id: OnceLock<Option<Arc<str>>>,
    operation: OnceLock<Option<Arc<str>>>,
    result: OnceLock<Option<Arc<str>>>,
    workload: OnceLock<Option<Arc<str>>>,
    user_agent: OnceLock<Option<Arc<str>>>,
    mailbox: OnceLock<Option<Arc<str>>>,
    record_type: OnceLock<Option<u32>>,
}

/// Which keys an object has, as a 1024-bit filter over (length, first and
/// last byte, ASCII case ignored): a key that equals a path step, exactly
/// or but for case, sets that step's bit. Most candidate names of the
/// normalised fields are absent from any one export, and most lookups of
/// them end here instead of scanning the map. (With 256 bits, 46 % of the
/// map lookups of a hunt over mailbox records found nothing; 1024 bits cut
/// those by a third, and by 40 % on sign-ins.)
#[derive(Clone, Copy, Debug)]
struct KeyFilter([u64; 16]);

impl KeyFilter {
    /// Passes every path: not an object, or not known.
    const ANY: KeyFilter = KeyFilter([u64::MAX; 16]);

    fn of(v: Option<&Value>) -> KeyFilter {
        let Some(Value::Object(m)) = v else {
            return KeyFilter::ANY;
        };
        let mut f = KeyFilter([0; 16]);
        for k in m.keys() {
            let b = key_bit(k.as_bytes());
            f.0[b >> 6] |= 1 << (b & 63);
        }
        f
    }

    /// Whether a lookup of the path of `bits` in the object may find
    /// something: it holds the whole path as one key, or a key for the
    /// part before some dot (the steps [`lookup`] and [`lookup_all`] try
    /// first). An empty path, or one with more dots than [`PathBits`]
    /// records, always may.
    fn may_hold(&self, bits: &PathBits) -> bool {
        let Some(steps) = bits.steps() else {
            return true;
        };
        steps.iter().any(|&i| self.has(i))
    }

    /// Whether the object may hold step `k` of the path of `bits` as a key:
    /// step 0 is the whole path, step `k` the part before its `k`th dot
    /// (unknown steps may be held).
    fn may_hold_step(&self, bits: &PathBits, k: usize) -> bool {
        bits.steps()
            .and_then(|s| s.get(k))
            .is_none_or(|&i| self.has(i))
    }

    fn has(&self, bit: u16) -> bool {
        self.0[usize::from(bit) >> 6] & (1 << (bit & 63)) != 0
    }
}

/// The key-filter bits of a dotted path: of the whole path and of the part
/// before each dot. Worked out once per lookup, and at compile time for
/// the candidate names of the normalised fields, which every event looks
/// up: working them out on each check, twice a lookup, was 5 % of the
/// instructions of a hunt over the mailbox bench shape and 2.5 % over
/// sign-ins with the SigmaHQ rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PathBits {
    bits: [u16; 4],
    /// How many of `bits` count; 0 for a path that any object may hold (an
    /// empty one, or one with more dots than `bits` has room for).
    len: u8,
}

impl PathBits {
    /// Bits any object passes.
    const ANY: PathBits = PathBits {
        bits: [0; 4],
        len: 0,
    };

    /// The bits of `path`; usable in constants.
    pub const fn of(path: &str) -> PathBits {
        let b = path.as_bytes();
        if b.is_empty() {
            return PathBits::ANY;
        }
        let mut bits = [key_bit(b) as u16, 0, 0, 0];
        let mut len = 1;
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'.' {
                if len == bits.len() {
                    return PathBits::ANY;
                }
                bits[len] = key_bit(b.split_at(i).0) as u16;
                len += 1;
            }
            i += 1;
        }
        PathBits {
            bits,
            len: len as u8,
        }
    }

    /// The bits to test, or `None` when any object may hold the path.
    fn steps(&self) -> Option<&[u16]> {
        (self.len > 0).then(|| &self.bits[..usize::from(self.len)])
    }
}

/// A candidate name of a normalised field, with its bits.
type Probe = (&'static str, PathBits);

/// The probes of a list of candidate names, in order.
const fn probes<const N: usize>(paths: &[&'static str]) -> [Probe; N] {
    // Evaluated at compile time: a length that drops a candidate does not build.
    assert!(N == paths.len(), "one probe for each candidate");
    let mut out = [("", PathBits::ANY); N];
    let mut i = 0;
    while i < N {
        out[i] = (paths[i], PathBits::of(paths[i]));
        i += 1;
    }
    out
}

/// The filter bit of a key or path step.
#[inline]
const fn key_bit(k: &[u8]) -> usize {
    let (first, last) = crate::projection::ends(k);
    let h = (k.len() as u64 | (first as u64) << 16 | (last as u64) << 24)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 54) as usize
}

fn get_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let exact_only = EXACT_ONLY.with(|c| c.get());
    // Projected records are small: one pass that compares lengths first
    // answers both the exact and the case-insensitive question, where a
    // tree search and then a scan did each string comparison twice.
    if m.len() <= SMALL_MAP {
        let mut folded = None;
        for (k, v) in m {
            match key_match(k, key) {
                KeyMatch::Exact => return Some(v),
                KeyMatch::Folded if folded.is_none() => folded = Some(v),
                _ => {}
            }
        }
        if exact_only && folded.is_some() {
            FOLDED_SEEN.with(|c| c.set(true));
            return None;
        }
        return folded;
    }
    if let Some(v) = m.get(key) {
        return Some(v);
    }
    if exact_only {
        // Not scanned: a folded match may be there.
        FOLDED_SEEN.with(|c| c.set(true));
        return None;
    }
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

#[derive(PartialEq)]
enum KeyMatch {
    Exact,
    /// Equal but for ASCII case.
    Folded,
    Different,
}

/// Compares a record key with a looked-up name in one pass (keys are
/// short: a call to `memcmp` and then a case-folding compare cost more).
#[inline]
fn key_match(k: &str, key: &str) -> KeyMatch {
    let (k, key) = (k.as_bytes(), key.as_bytes());
    if k.len() != key.len() {
        return KeyMatch::Different;
    }
    let mut exact = true;
    for (a, b) in k.iter().zip(key) {
        if a != b {
            if !a.eq_ignore_ascii_case(b) {
                return KeyMatch::Different;
            }
            exact = false;
        }
    }
    if exact {
        KeyMatch::Exact
    } else {
        KeyMatch::Folded
    }
}

/// Maps up to this size are searched with one linear pass.
const SMALL_MAP: usize = 24;

thread_local! {
    // Set while normalising: candidate field lists are tried with exact
    // names first, so the case-insensitive scan only runs when no candidate
    // matched exactly (it dominated the profile otherwise).
    static EXACT_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    // Set when an exact-only lookup passed over a key that matches but for
    // case (or a map too large to have been scanned). Without one, the
    // case-insensitive pass would follow the same steps and find nothing.
    static FOLDED_SEEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn exact_then_ci<T>(f: impl Fn() -> Option<T>) -> Option<T> {
    fresh(|| {
        EXACT_ONLY.set(true);
        let r = f();
        EXACT_ONLY.set(false);
        if r.is_none() && FOLDED_SEEN.get() {
            return f();
        }
        r
    })
}

/// A normalised field: found by `find` the first time it is asked for.
/// Kept shared, so that a detection's representative of the event
/// ([`crate::Rep::of`]) holds it without a copy.
fn found<'a>(
    cell: &'a OnceLock<Option<Arc<str>>>,
    find: impl FnOnce() -> Option<Cow<'a, str>>,
) -> Option<&'a str> {
    cell.get_or_init(|| fresh(find).map(|c| Arc::from(&*c)))
        .as_deref()
}

/// `s` in lower case, borrowed when it is already.
fn lowered(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        s
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Runs `f` as if no search were running, and puts the running one's
/// state back: a normalised field is found when first asked for, which
/// may be inside another search's exact-only pass.
fn fresh<T>(f: impl FnOnce() -> T) -> T {
    let outer = (EXACT_ONLY.get(), FOLDED_SEEN.get());
    EXACT_ONLY.set(false);
    FOLDED_SEEN.set(false);
    let r = f();
    EXACT_ONLY.set(outer.0);
    FOLDED_SEEN.set(outer.1);
    r
}

/// Looks up a dotted path in a JSON value.
///
/// Each step matches an object key exactly, then case-insensitively; a key
/// that itself contains dots is tried whole before the path is split. A
/// numeric step indexes an array; any other step on an array searches its
/// elements in order and returns the first hit. Use [`lookup_all`] to get
/// every hit across arrays.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    lookup_filtered(v, path, None)
}

/// [`lookup`], with the key filter of `v` (an object's) and the bits of
/// `path` when known: a step the filter rules out is not looked for. A
/// path's whole text is seldom a key, and in a map past [`SMALL_MAP`]
/// looking for it and missing took a tree search and a scan of every key
/// (2 % of the CPU of a hunt over Log Analytics rows with the SigmaHQ
/// rules, which look up dotted fields in some 40 columns).
fn lookup_filtered<'a>(
    v: &'a Value,
    path: &str,
    known: Option<(&KeyFilter, &PathBits)>,
) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    let may_hold = |k: usize| known.is_none_or(|(f, bits)| f.may_hold_step(bits, k));
    match v {
        Value::Object(m) => {
            if may_hold(0) {
                if let Some(x) = get_ci(m, path) {
                    return Some(x);
                }
            }
            // Paths are short: a byte loop beats a searcher's set-up.
            let dots = path.bytes().enumerate().filter(|(_, b)| *b == b'.');
            for (k, (i, _)) in dots.enumerate() {
                if !may_hold(k + 1) {
                    continue;
                }
                if let Some(child) = get_ci(m, &path[..i]) {
                    if let Some(r) = lookup(child, &path[i + 1..]) {
                        return Some(r);
                    }
                }
            }
            None
        }
        Value::Array(a) => {
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            if let Ok(i) = head.parse::<usize>() {
                return a.get(i).and_then(|x| lookup(x, rest));
            }
            a.iter().find_map(|x| lookup(x, path))
        }
        _ => None,
    }
}

/// Collects every value reachable by a dotted path, fanning out over arrays
/// (`Folders.FolderItems.InternetMessageId` yields every message id).
pub fn lookup_all<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    lookup_all_filtered(v, path, None, out);
}

/// [`lookup_all`], with the key filter of `v` and the bits of `path` when
/// known ([`lookup_filtered`]).
fn lookup_all_filtered<'a>(
    v: &'a Value,
    path: &str,
    known: Option<(&KeyFilter, &PathBits)>,
    out: &mut Vec<&'a Value>,
) {
    if path.is_empty() {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            _ => out.push(v),
        }
        return;
    }
    let may_hold = |k: usize| known.is_none_or(|(f, bits)| f.may_hold_step(bits, k));
    match v {
        Value::Object(m) => {
            if may_hold(0) {
                if let Some(x) = get_ci(m, path) {
                    lookup_all(x, "", out);
                    return;
                }
            }
            let Some((head, rest)) = path.split_once('.') else {
                return;
            };
            if !may_hold(1) {
                return;
            }
            if let Some(child) = get_ci(m, head) {
                lookup_all(child, rest, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                lookup_all(x, path, out);
            }
        }
        _ => {}
    }
}

/// Renders a scalar JSON value as text (`null`, objects and arrays give `None`).
pub fn scalar_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// [`scalar_str`], borrowed when the value is a string.
fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => nonempty(s).map(Cow::Borrowed),
        other => scalar_str(other).map(Cow::Owned),
    }
}

impl Event {
    /// Looks up a dotted path: first in the wrapped audit record (`AuditData`,
    /// `RawEventData`, `properties`) when there is one, then from the root.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.get_at(path, &PathBits::of(path))
    }

    /// [`Event::get`] of a path whose bits were worked out before.
    pub fn get_at(&self, path: &str, bits: &PathBits) -> Option<&Value> {
        debug_assert_eq!(*bits, PathBits::of(path), "bits of another path");
        self.check_declared(path);
        if let Some(inner) = self.inner.filter(|_| self.keys.0.may_hold(bits)) {
            if let Some(iv) = self.record.get(inner) {
                if let Some(v) = lookup_filtered(iv, path, Some((&self.keys.0, bits))) {
                    return Some(v);
                }
            }
        }
        if !self.keys.1.may_hold(bits) {
            return None;
        }
        lookup_filtered(&self.record, path, Some((&self.keys.1, bits)))
    }

    /// Test and debug builds: a projected event answers only the paths its
    /// readers declared (a detection's `Needs::fields`).
    #[inline]
    fn check_declared(&self, path: &str) {
        #[cfg(any(test, debug_assertions))]
        if let Some(p) = &self.projection {
            assert!(
                p.reaches(path),
                "{path:?} was read but not declared in the reader's Needs::fields"
            );
        }
        #[cfg(not(any(test, debug_assertions)))]
        let _ = path;
    }

    /// [`Event::get`] rendered as a trimmed, non-empty string.
    pub fn get_str(&self, path: &str) -> Option<String> {
        self.scalar(path).map(Cow::into_owned)
    }

    /// [`Event::get_str`] borrowed when the value is a string.
    pub fn scalar(&self, path: &str) -> Option<Cow<'_, str>> {
        self.scalar_at(path, &PathBits::of(path))
    }

    fn scalar_at(&self, path: &str, bits: &PathBits) -> Option<Cow<'_, str>> {
        scalar_text(self.get_at(path, bits)?)
    }

    /// Scalar texts of the earlier copies of duplicate keys
    /// ([`Event::shadowed`]) named like the last segment of one of `paths`
    /// (ASCII case ignored, as lookups fall back to), with the key.
    pub fn shadowed_scalars<'a>(
        &'a self,
        paths: &'a [&'a str],
    ) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + 'a {
        self.shadowed.iter().filter_map(move |(k, v)| {
            let named = paths.iter().any(|p| {
                p.rsplit('.')
                    .next()
                    .is_some_and(|last| last.eq_ignore_ascii_case(k))
            });
            if !named {
                return None;
            }
            let text = scalar_text(v)?;
            Some((k.as_str(), text))
        })
    }

    /// Whether [`Event::get`] finds a value (`null` included).
    pub fn has(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Items a MailItemsAccessed Bind record covers: `OperationCount`, else
    /// the number of `Folders.FolderItems` (at least one).
    pub fn bind_items(&self) -> u64 {
        self.get("OperationCount")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .unwrap_or_else(|| (self.get_all("Folders.FolderItems").len() as u64).max(1))
    }

    /// The first of several paths that yields a non-empty scalar.
    pub fn first_str(&self, paths: &[&str]) -> Option<String> {
        exact_then_ci(|| paths.iter().find_map(|p| self.get_str(p)))
    }

    /// [`Event::first_str`] over candidates whose bits were worked out at
    /// compile time.
    fn first_probed(&self, probes: &[Probe]) -> Option<Cow<'_, str>> {
        exact_then_ci(|| probes.iter().find_map(|(p, bits)| self.scalar_at(p, bits)))
    }

    /// Every value reachable by a dotted path (inner record and root).
    pub fn get_all(&self, path: &str) -> Vec<&Value> {
        self.get_all_at(path, &PathBits::of(path))
    }

    /// [`Event::get_all`] of a path whose bits were worked out before.
    pub fn get_all_at(&self, path: &str, bits: &PathBits) -> Vec<&Value> {
        let mut out = Vec::new();
        self.get_all_into(path, bits, &mut out);
        out
    }

    /// [`Event::get_all_at`] appending to `out`, for a caller that looks
    /// up many paths without a vector for each.
    pub fn get_all_into<'a>(&'a self, path: &str, bits: &PathBits, out: &mut Vec<&'a Value>) {
        debug_assert_eq!(*bits, PathBits::of(path), "bits of another path");
        self.check_declared(path);
        let before = out.len();
        if let Some(inner) = self.inner.filter(|_| self.keys.0.may_hold(bits)) {
            if let Some(iv) = self.record.get(inner) {
                lookup_all_filtered(iv, path, Some((&self.keys.0, bits)), out);
            }
        }
        if out.len() == before && self.keys.1.may_hold(bits) {
            lookup_all_filtered(&self.record, path, Some((&self.keys.1, bits)), out);
        }
    }

    /// Value of a `{Name, Value}` pair in a name/value list such as
    /// `OperationProperties`, `Parameters` or `ExtendedProperties`
    /// (names compared case-insensitively), borrowed when it is a string.
    pub fn name_value(&self, list: &str, name: &str) -> Option<Cow<'_, str>> {
        self.pair_value(list, ["Name", "name"], name, ["Value", "value"])
    }

    /// The value of the pair whose name (under either spelling of
    /// `names`) equals `name` ignoring case, in a list of pair objects.
    fn pair_value(
        &self,
        list: &str,
        names: [&str; 2],
        name: &str,
        values: [&str; 2],
    ) -> Option<Cow<'_, str>> {
        let Value::Array(items) = self.get(list)? else {
            return None;
        };
        items.iter().find_map(|it| {
            let n = it
                .get(names[0])
                .or_else(|| it.get(names[1]))
                .and_then(Value::as_str)?;
            if n.eq_ignore_ascii_case(name) {
                scalar_text(it.get(values[0]).or_else(|| it.get(values[1]))?)
            } else {
                None
            }
        })
    }

    /// Builds an event from a parsed record: expands JSON carried in strings,
    /// classifies the record and finds its time (the other normalised
    /// fields are found when first asked for). `hint` is the
    /// kind the file format suggests, used when the record itself is ambiguous.
    pub fn from_record(
        record: Value,
        hint: Option<EventKind>,
        source_file: Arc<str>,
        locator: Locator,
    ) -> Event {
        Event::build(record, hint, source_file, locator, None)
    }

    /// Builds an event from a projected record ([`Projection`]): only the
    /// declared paths can be looked up.
    pub fn from_projected(
        record: Value,
        projection: Arc<Projection>,
        hint: Option<EventKind>,
        source_file: Arc<str>,
        locator: Locator,
    ) -> Event {
        Event::build(record, hint, source_file, locator, Some(projection))
    }

    fn build(
        mut record: Value,
        hint: Option<EventKind>,
        source_file: Arc<str>,
        locator: Locator,
        projection: Option<Arc<Projection>>,
    ) -> Event {
        if projection.is_none() {
            expand_nested(&mut record, NESTED_DEPTH);
            fold_la_columns(&mut record);
        }
        let root_keys = KeyFilter::of(Some(&record));
        let (kind, inner) = classify_keyed(&record, hint, &root_keys);
        let keys = (KeyFilter::of(inner.and_then(|k| record.get(k))), root_keys);
        let mut ev = Event {
            kind,
            record,
            inner,
            time: None,
            source_file,
            locator,
            projection,
            shadowed: Vec::new(),
            words: None,
            keys,
            normal: Normal::default(),
        };
        ev.time = ev.find_time();
        ev
    }

    fn find_time(&self) -> Option<OffsetDateTime> {
        exact_then_ci(|| {
            TIME_PROBES
                .iter()
                .filter_map(|(p, bits)| self.get_at(p, bits))
                .find_map(|v| v.as_str().and_then(parse_timestamp))
        })
    }

    fn is_gateway(&self) -> bool {
        self.kind == EventKind::Gateway
    }

    /// Acting user, lower-cased (UPNs appear in mixed case in the same log).
    pub fn user(&self) -> Option<&str> {
        found(&self.normal.user, || {
            let fields = if self.is_gateway() {
                &GATEWAY_PROBES[..2]
            } else {
                &USER_PROBES[..]
            };
            self.first_probed(fields).map(lowered)
        })
    }

    /// Client address without port.
    pub fn client_ip(&self) -> Option<&str> {
        found(&self.normal.client_ip, || {
            exact_then_ci(|| {
                IP_PROBES.iter().find_map(|(p, bits)| {
                    let s = self.scalar_at(p, bits)?;
                    // A plain IPv4 address is its own canonical text (the
                    // parser refuses leading zeros): formatting it again
                    // was most of the cost of this field.
                    if s.parse::<std::net::Ipv4Addr>().is_ok() {
                        return Some(s);
                    }
                    Some(parse_client_ip(&s).map_or(s, |ip| Cow::Owned(ip.to_string())))
                })
            })
        })
    }

    /// Application (resource or API) id: `AppId`, `appId`, `ApplicationId`;
    /// an Azure Activity caller's token's `appid` claim.
    pub fn app_id(&self) -> Option<&str> {
        found(&self.normal.app_id, || {
            let fields = if self.is_gateway() {
                &GATEWAY_PROBES[2..5]
            } else {
                &APP_PROBES[..]
            };
            self.first_probed(fields)
        })
    }

    /// Calling client application id: `ClientAppId`,
    /// `AppAccessContext.ClientAppId`; a gateway token's `azp`/`appid`,
    /// which name the calling client as UAL's `ClientAppId` does.
    pub fn client_app_id(&self) -> Option<&str> {
        found(&self.normal.client_app_id, || {
            if self.is_gateway() {
                return self.app_id().map(Cow::Borrowed);
            }
            self.first_probed(&CLIENT_APP_PROBES)
        })
    }

    /// Entra session: `AppAccessContext.AADSessionId`, Exchange
    /// `SessionId`, sign-in `sessionId`.
    pub fn session_id(&self) -> Option<&str> {
        found(&self.normal.session_id, || {
            self.id(&["sid"], &SESSION_PROBES, "sessionId")
        })
    }

    /// Token id: `AppAccessContext.UniqueTokenId`,
    /// `UniqueTokenIdentifier`, `uniqueTokenIdentifier`; an Azure Activity
    /// caller's token's `uti` claim.
    pub fn token_id(&self) -> Option<&str> {
        found(&self.normal.token_id, || {
            self.id(&["uti", "jti"], &TOKEN_PROBES, "uniqueTokenIdentifier")
        })
    }

    /// An id a gateway line names by its claims, other records by
    /// `fields`, and sign-ins also by their Graph name, read after the UAL
    /// names so that a UAL record's `AppAccessContext` wins there.
    fn id(&self, claims: &[&str], fields: &[Probe], graph: &str) -> Option<Cow<'_, str>> {
        if self.is_gateway() {
            return self.first_str(claims).map(Cow::Owned);
        }
        self.first_probed(fields).or_else(|| {
            (self.kind == EventKind::SignIn)
                .then(|| self.first_str(&[graph]))
                .flatten()
                .map(Cow::Owned)
        })
    }

    /// Operation or activity name.
    pub fn operation(&self) -> Option<&str> {
        found(&self.normal.operation, || {
            if self.is_gateway() {
                return match (self.get_str("method"), self.get_str("path")) {
                    (Some(m), Some(p)) => Some(Cow::Owned(format!("{m} {p}"))),
                    (m, p) => m.or(p).map(Cow::Owned),
                };
            }
            self.first_probed(&OPERATION_PROBES)
        })
    }

    /// Result (`ResultStatus`, sign-in error code, `result`).
    pub fn result(&self) -> Option<&str> {
        found(&self.normal.result, || {
            if self.is_gateway() {
                return self.get_str("verdict").map(Cow::Owned);
            }
            // A sign-in's result is its error code; only sign-ins are asked.
            let sign_in_code = (self.kind == EventKind::SignIn)
                .then(|| self.first_str(&[STATUS_CODE]))
                .flatten()
                .map(Cow::Owned);
            sign_in_code.or_else(|| self.first_probed(&RESULT_PROBES))
        })
    }

    /// Workload / service (`Workload`, `OfficeWorkload`, `category`, table type).
    pub fn workload(&self) -> Option<&str> {
        found(&self.normal.workload, || {
            if self.is_gateway() {
                return Some(Cow::Borrowed("tokenward gateway"));
            }
            self.first_probed(&WORKLOAD_PROBES)
        })
    }

    /// User agent or Exchange `ClientInfoString`.
    pub fn user_agent(&self) -> Option<&str> {
        found(&self.normal.user_agent, || {
            self.first_probed(&USER_AGENT_PROBES).or_else(|| {
                self.name_value("ExtendedProperties", "UserAgent")
                    .or_else(|| self.key_value("additionalDetails", "User-Agent"))
            })
        })
    }

    /// UAL record type as a number when known.
    pub fn record_type(&self) -> Option<u32> {
        *self.normal.record_type.get_or_init(|| {
            fresh(|| {
                exact_then_ci(|| self.get("RecordType")).and_then(|v| match v {
                    Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                    Value::String(s) => s
                        .trim()
                        .parse()
                        .ok()
                        .or_else(|| record_type_number(s.trim())),
                    _ => None,
                })
            })
        })
    }

    /// Value of a `{key, value}` pair list (Graph `additionalDetails`).
    pub fn key_value(&self, list: &str, key: &str) -> Option<Cow<'_, str>> {
        self.pair_value(list, ["key", "Key"], key, ["value", "Value"])
    }

    /// The user, client address, application, session and token ids
    /// ([`Event::user`] and the others), shared with the event.
    pub(crate) fn reported(&self) -> [Option<Arc<str>>; 5] {
        // Found first (each is kept as it is found), then shared.
        let _ = (
            self.user(),
            self.client_ip(),
            self.app_id(),
            self.session_id(),
            self.token_id(),
        );
        let n = &self.normal;
        [&n.user, &n.client_ip, &n.app_id, &n.session_id, &n.token_id]
            .map(|cell| cell.get().cloned().flatten())
    }

    /// Mailbox the record is about (`MailboxOwnerUPN`, else the user), lower-cased.
    pub fn mailbox(&self) -> Option<&str> {
        found(&self.normal.mailbox, || {
            self.scalar("MailboxOwnerUPN")
                .map(lowered)
                .or_else(|| self.user().map(Cow::Borrowed))
        })
    }
}

// Azure Activity names the caller's token by its claims: under
// `identity.claims` in a diagnostic (storage or Event Hubs) export, in the
// `Claims` column (JSON text) in Log Analytics' AzureActivity.
const APP_FIELDS: &[&str] = &[
    "AppId",
    "appId",
    "ApplicationId",
    "AppAccessContext.APIId",
    "identity.claims.appid",
    "Claims.appid",
];
/// Fields naming the client app of a record, first found wins.
pub const CLIENT_APP_FIELDS: &[&str] =
    &["ClientAppId", "AppAccessContext.ClientAppId", "OAuthAppId"];
const SESSION_FIELDS: &[&str] = &["AppAccessContext.AADSessionId", "AADSessionId", "SessionId"];
const TOKEN_FIELDS: &[&str] = &[
    "AppAccessContext.UniqueTokenId",
    "UniqueTokenId",
    "UniqueTokenIdentifier",
    "identity.claims.uti",
    "Claims.uti",
];
const OPERATION_FIELDS: &[&str] = &[
    "Operation",
    "Operations",
    "activityDisplayName",
    "ActionType",
    "OperationNameValue",
    "operationName",
    "OperationName",
];
const RESULT_FIELDS: &[&str] = &[
    "ResultStatus",
    "ResultType",
    "resultType",
    "result",
    "ActivityStatusValue",
];
const WORKLOAD_FIELDS: &[&str] = &["Workload", "OfficeWorkload", "category", "Category", "Type"];
/// Fields naming the user agent, first found wins.
pub const USER_AGENT_FIELDS: &[&str] = &["ClientInfoString", "UserAgent", "userAgent"];
/// The gateway access log's claim-named fields, in the order the
/// accessors read them. The log names its fields after the token claims
/// (docs/gateway.md): the generic lists would take `oid`-less `sub` last
/// and miss `azp`, `sid`, `uti`. Every projection but the one for readers
/// of time and workload alone keeps them ([`normalised_paths`]);
/// classification reads `verdict` and `token_sha256_prefix`, which every
/// projection keeps ([`CLASSIFY_KEYS`]).
const GATEWAY_FIELDS: &[&str] = &[
    "sub",
    "oid",
    "azp",
    "appid",
    "client_id",
    "sid",
    "uti",
    "jti",
    "method",
    "path",
    "verdict",
];
/// The sign-in result code, below `status`, which [`classify`] asks for.
const STATUS_CODE: &str = "status.errorCode";
/// Other paths normalisation reads: the sign-in result, user-agent bags,
/// the record type and the Graph names of sign-in ids.
const OTHER_NORMALISED: &[&str] = &[
    STATUS_CODE,
    "ExtendedProperties",
    "additionalDetails",
    "RecordType",
    "sessionId",
    "uniqueTokenIdentifier",
];
/// Root keys [`classify`] reads. The wrappers (`AuditData`, `RawEventData`,
/// `properties`) are kept by every projection with only the declared paths
/// inside, and `status` with `errorCode`: listing them here would keep them
/// whole, which is most of a sign-in or a Purview row.
const CLASSIFY_KEYS: &[&str] = &[
    "verdict",
    "token_sha256_prefix",
    "Type",
    "category",
    "time",
    "resourceId",
    "CreationTime",
    "Operation",
    "createdDateTime",
    "userPrincipalName",
    "appId",
    "ipAddress",
    "uniqueTokenIdentifier",
    "activityDateTime",
    "activityDisplayName",
];

/// The candidate names of each normalised field, each read as a scalar
/// (the first found wins).
const PROBED_FIELDS: [&[&str]; 12] = [
    TIME_FIELDS,
    USER_FIELDS,
    IP_FIELDS,
    APP_FIELDS,
    CLIENT_APP_FIELDS,
    SESSION_FIELDS,
    TOKEN_FIELDS,
    OPERATION_FIELDS,
    RESULT_FIELDS,
    WORKLOAD_FIELDS,
    USER_AGENT_FIELDS,
    GATEWAY_FIELDS,
];

/// Every path classification and normalisation read: a projection keeps
/// these for every event, whatever else its readers declared.
pub fn normalised_paths() -> impl Iterator<Item = &'static str> {
    PROBED_FIELDS
        .into_iter()
        .chain([OTHER_NORMALISED, CLASSIFY_KEYS])
        .flatten()
        .copied()
}

/// The root names of normalised fields that nothing but a scalar read
/// asks for: a candidate name of a normalised field (each read as a
/// scalar, the first found wins) not in the lists classification and the
/// other normalisation read (spelled so: a spelling that differs only in
/// case shares the key's slot, which those lists keep whole).
fn scalar_read_keys() -> impl Iterator<Item = &'static str> {
    PROBED_FIELDS
        .into_iter()
        .flatten()
        .copied()
        .filter(|k| !k.contains('.') && !OTHER_NORMALISED.contains(k) && !CLASSIFY_KEYS.contains(k))
}

/// A projection that keeps what classification and normalisation read
/// ([`normalised_paths`]): the names only read as scalars kept for scalar
/// reads ([`Projection::add_scalar`]), so that an object under such a
/// name in another export is built only as far as declared paths go into
/// it (an Azure Activity record's `identity`, a sign-in's user name
/// elsewhere: only the claims naming the caller's user, app and token).
pub fn normalising_projection() -> Projection {
    let mut p =
        Projection::new(normalised_paths().filter(|k| !scalar_read_keys().any(|s| s == *k)));
    for k in scalar_read_keys() {
        p.add_scalar(k);
    }
    p
}

/// The paths an event's kind, time and workload are read from: what a
/// projection keeps for readers of nothing else (the engine's record
/// counts and `tw-audit-gap`), a subset of [`normalised_paths`].
/// Classification reads a few root keys (`CLASSIFY_KEYS`), and `status`
/// (kept with its `errorCode`, as every projection keeps it).
pub fn time_and_workload_paths() -> impl Iterator<Item = &'static str> {
    [TIME_FIELDS, WORKLOAD_FIELDS, CLASSIFY_KEYS, &[STATUS_CODE]]
        .into_iter()
        .flatten()
        .copied()
}

/// Trimmed, `None` when empty: how [`scalar_str`] renders a string.
fn nonempty(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

/// Time fields in preference order: ISO fields before locale-formatted ones.
const TIME_FIELDS: &[&str] = &[
    "CreationTime",
    "createdDateTime",
    "activityDateTime",
    "time",
    "TimeGenerated",
    "Timestamp",
    "eventTimestamp",
    "CreatedDateTime",
    "ActivityDateTime",
    "DetectedDateTime",
    "CreationDate",
    "StartTime",
    "timestamp",
];

// UPN before `UserId`: sign-in tables put the object id in `UserId`.
const USER_FIELDS: &[&str] = &[
    "userPrincipalName",
    "UserPrincipalName",
    "UserId",
    "UserIds",
    "AccountUpn",
    "initiatedBy.user.userPrincipalName",
    "InitiatedBy.user.userPrincipalName",
    "Caller",
    "caller",
    "UserName",
    "servicePrincipalName",
    // A diagnostic export of Azure Activity has no caller field: the UPN is
    // a claim of the caller's token. Before `identity`, which is a
    // sign-in's display name there and these records' token.
    "identity.claims.http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "identity",
    "sub",
];

/// Fields naming the client address, first found wins.
pub const IP_FIELDS: &[&str] = &[
    "ClientIP",
    "ClientIPAddress",
    "Client_IPAddress",
    "ActorIpAddress",
    "ipAddress",
    "IPAddress",
    "callerIpAddress",
    "CallerIpAddress",
    "InitiatingIpAddress",
    "initiatedBy.user.ipAddress",
    "InitiatedBy.user.ipAddress",
    "client_ip",
    "src_ip",
];

// The candidate lists above with their key-filter bits.
const TIME_PROBES: [Probe; TIME_FIELDS.len()] = probes(TIME_FIELDS);
const USER_PROBES: [Probe; USER_FIELDS.len()] = probes(USER_FIELDS);
const IP_PROBES: [Probe; IP_FIELDS.len()] = probes(IP_FIELDS);
const APP_PROBES: [Probe; APP_FIELDS.len()] = probes(APP_FIELDS);
const CLIENT_APP_PROBES: [Probe; CLIENT_APP_FIELDS.len()] = probes(CLIENT_APP_FIELDS);
const SESSION_PROBES: [Probe; SESSION_FIELDS.len()] = probes(SESSION_FIELDS);
const TOKEN_PROBES: [Probe; TOKEN_FIELDS.len()] = probes(TOKEN_FIELDS);
const OPERATION_PROBES: [Probe; OPERATION_FIELDS.len()] = probes(OPERATION_FIELDS);
const RESULT_PROBES: [Probe; RESULT_FIELDS.len()] = probes(RESULT_FIELDS);
const WORKLOAD_PROBES: [Probe; WORKLOAD_FIELDS.len()] = probes(WORKLOAD_FIELDS);
const USER_AGENT_PROBES: [Probe; USER_AGENT_FIELDS.len()] = probes(USER_AGENT_FIELDS);
const GATEWAY_PROBES: [Probe; GATEWAY_FIELDS.len()] = probes(GATEWAY_FIELDS);

/// RecordType names of the UAL enum that matter here (schema doc \[S1\]).
pub fn record_type_number(name: &str) -> Option<u32> {
    const T: &[(&str, u32)] = &[
        ("ExchangeAdmin", 1),
        ("ExchangeItem", 2),
        ("ExchangeItemGroup", 3),
        ("SharePoint", 4),
        ("SharePointFileOperation", 6),
        ("AzureActiveDirectory", 8),
        ("AzureActiveDirectoryAccountLogon", 9),
        ("SharePointSharingOperation", 14),
        ("AzureActiveDirectoryStsLogon", 15),
        ("SecurityComplianceCenterEOPCmdlet", 18),
        ("MicrosoftTeams", 25),
        ("SharePointListOperation", 36),
        ("SecurityComplianceAlerts", 40),
        ("ExchangeItemAggregated", 50),
        ("OWAAuth", 275),
    ];
    T.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

/// Replaces string values that hold a JSON object or array with the parsed
/// value (`AuditData`, `Folders`, `OperationProperties`, `Parameters`,
/// Log Analytics dynamic columns, `modifiedProperties.newValue`, ...).
pub fn expand_nested(v: &mut Value, depth: u32) {
    match v {
        Value::Object(m) => {
            for (_, x) in m.iter_mut() {
                expand_value(x, depth);
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                expand_value(x, depth);
            }
        }
        _ => {}
    }
}

/// The JSON a string value carries, as [`expand_nested`] reads it: the
/// string from its first non-blank character, where that opens an object
/// or an array and `depth` leaves another level to expand.
pub(crate) fn carried_json(s: &str, depth: u32) -> Option<&str> {
    let t = s.trim_start();
    (depth > 0 && (t.starts_with('{') || t.starts_with('['))).then_some(t)
}

/// [`expand_nested`] for one value (a string holding JSON is parsed).
pub(crate) fn expand_value(x: &mut Value, depth: u32) {
    if let Value::String(s) = x {
        if let Some(t) = carried_json(s, depth) {
            if let Ok(parsed) = crate::shadow::parse_str(t) {
                if parsed.is_object() || parsed.is_array() {
                    *x = parsed;
                    expand_nested(x, depth - 1);
                }
            }
        }
    } else {
        expand_nested(x, depth);
    }
}

/// Log Analytics portal exports rename columns: `TimeGenerated [UTC]`, and
/// dynamic columns split into `X_dynamic` / `X_string`. Expose them under
/// the table's own names (`TimeGenerated`, `X`) when those are free, so
/// rules and normalisation see one schema.
fn fold_la_columns(v: &mut Value) {
    let Value::Object(m) = v else { return };
    let renames: Vec<(String, String)> = m
        .keys()
        .filter_map(|k| {
            let base = k
                .strip_suffix(" [UTC]")
                .or_else(|| k.strip_suffix("_dynamic"))?;
            (!base.is_empty() && !m.contains_key(base)).then(|| (k.clone(), base.to_string()))
        })
        .collect();
    for (from, to) in renames {
        let val = m[&from].clone();
        let keep = !(val.is_null() || val.as_str().is_some_and(str::is_empty));
        if keep {
            m.insert(to, val);
        } else if let Some(alt) = from
            .strip_suffix("_dynamic")
            .map(|b| format!("{b}_string"))
            .and_then(|s| m.get(&s).cloned())
        {
            m.insert(to, alt);
        }
    }
}

fn has(m: &Map<String, Value>, key: &str) -> bool {
    get_ci(m, key).is_some_and(|v| !v.is_null())
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    get_ci(m, key).and_then(Value::as_str)
}

/// Decides the event kind and the wrapped-record key from the record's own
/// keys (logs.md §5), so files that mix tables still classify per record.
pub fn classify(v: &Value, hint: Option<EventKind>) -> (EventKind, Option<&'static str>) {
    classify_keyed(v, hint, &KeyFilter::ANY)
}

/// [`classify`] with the record's key filter: a key the filter rules out
/// is not looked up. Most records lack most of the keys asked for here,
/// and looking each up in the map was most of classifying a UAL record
/// (3.5 % of a hunt over UAL exports).
fn classify_keyed(
    v: &Value,
    hint: Option<EventKind>,
    keys: &KeyFilter,
) -> (EventKind, Option<&'static str>) {
    let Value::Object(m) = v else {
        return (hint.unwrap_or(EventKind::Other), None);
    };
    let may_hold = |k: &str| keys.may_hold(&PathBits::of(k));
    let get = |k: &str| may_hold(k).then(|| m.get(k)).flatten();
    let holds = |k: &str| may_hold(k) && has(m, k);
    let text = |k: &str| may_hold(k).then(|| str_of(m, k)).flatten();
    let named = |k: &str| may_hold(k) && get_ci(m, k).is_some();
    if get("AuditData").is_some_and(Value::is_object) {
        return (EventKind::Audit, Some("AuditData"));
    }
    if get("RawEventData").is_some_and(Value::is_object) {
        return (EventKind::Audit, Some("RawEventData"));
    }
    if may_hold("verdict")
        && may_hold("token_sha256_prefix")
        && tokenward_logread::format::is_gateway_record(m)
    {
        return (EventKind::Gateway, None);
    }
    let table = text("Type").unwrap_or("").to_ascii_lowercase();
    let category = text("category").unwrap_or("").to_ascii_lowercase();
    let inner = get("properties")
        .filter(|p| p.is_object())
        .map(|_| "properties");
    if inner.is_some() && holds("time") && !category.is_empty() {
        let k = if category.contains("signinlogs") {
            EventKind::SignIn
        } else if category == "auditlogs" {
            EventKind::DirectoryAudit
        } else if text("resourceId")
            .is_some_and(|r| r.to_ascii_lowercase().starts_with("/subscriptions/"))
        {
            EventKind::AzureActivity
        } else {
            EventKind::Other
        };
        return (k, inner);
    }
    let by_table = match table.as_str() {
        "officeactivity" | "cloudappevents" => Some(EventKind::Audit),
        t if t.contains("signinlogs") => Some(EventKind::SignIn),
        "auditlogs" => Some(EventKind::DirectoryAudit),
        "azureactivity" => Some(EventKind::AzureActivity),
        // Unknown tables fall through to the shape checks below.
        _ => None,
    };
    if let Some(k) = by_table {
        return (k, None);
    }
    if holds("CreationTime") && holds("Operation") {
        return (EventKind::Audit, None);
    }
    if holds("createdDateTime")
        && (holds("userPrincipalName") || holds("appId"))
        && (named("ipAddress") || named("status") || named("uniqueTokenIdentifier"))
    {
        return (EventKind::SignIn, None);
    }
    if holds("activityDateTime") && holds("activityDisplayName") {
        return (EventKind::DirectoryAudit, None);
    }
    if category.contains("signinlogs") {
        return (EventKind::SignIn, None);
    }
    (hint.unwrap_or(EventKind::Other), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::parses_and_names_another_kind;
    use serde_json::json;

    /// Every JSON record of the repository's sample logs and examples, and
    /// records made for each way [`classify`] decides, as text.
    fn sample_records() -> Vec<String> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut out = Vec::new();
        let mut dirs = vec![
            std::path::PathBuf::from(root).join("tests/fixtures/logs"),
            std::path::PathBuf::from(root).join("examples/storm-0558/logs"),
        ];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                    continue;
                }
                let name = p.to_string_lossy().into_owned();
                if !(name.ends_with(".json") || name.ends_with(".jsonl")) {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let text = text.trim_start_matches('\u{feff}');
                let values: Vec<Value> = match serde_json::from_str::<Value>(text) {
                    Ok(Value::Array(a)) => a,
                    Ok(Value::Object(mut m)) => match m.remove("value") {
                        Some(Value::Array(a)) => a,
                        _ => vec![Value::Object(m)],
                    },
                    _ => text
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect(),
                };
                out.extend(values.iter().map(Value::to_string));
            }
        }
        assert!(out.len() > 100, "the samples are found ({})", out.len());
        let audit = r#"{\"CreationTime\":\"2024-03-01T10:00:00\",\"Operation\":\"FileAccessed\",\"Workload\":\"SharePoint\"}"#;
        out.extend([
            // A PowerShell export's wrapper, JSON in a string.
            format!(r#"{{"CreationDate":"3/1/2024 10:00:00 AM","Operations":"FileAccessed","AuditData":"{audit}"}}"#),
            // Defender's wrapper, as an object.
            r#"{"Timestamp":"2024-03-01T10:00:00Z","RawEventData":{"CreationTime":"2024-03-01T09:00:00","Workload":"Exchange"}}"#.into(),
            // A sign-in told apart by its `status` alone.
            r#"{"createdDateTime":"2024-03-01T10:00:00Z","userPrincipalName":"a@x","status":{"errorCode":0}}"#.into(),
            r#"{"createdDateTime":"2024-03-01T10:00:00Z","appId":"x","status":"0"}"#.into(),
            // Azure Monitor and Log Analytics shapes.
            r#"{"time":"2024-03-01T10:00:00Z","category":"AuditLogs","properties":{"activityDateTime":"2024-03-01T09:00:00Z"}}"#.into(),
            r#"{"time":"2024-03-01T10:00:00Z","category":"Administrative","resourceId":"/SUBSCRIPTIONS/1","properties":{}}"#.into(),
            r#"{"TimeGenerated":"2024-03-01T10:00:00Z","Type":"OfficeActivity","OfficeWorkload":"Exchange"}"#.into(),
            r#"{"TimeGenerated":"2024-03-01T10:00:00Z","Type":"SigninLogs","category":"x"}"#.into(),
            r#"{"activityDateTime":"2024-03-01T10:00:00Z","activityDisplayName":"Add user"}"#.into(),
            // A gateway line.
            r#"{"time":"2024-03-01T10:00:00Z","verdict":"reject","token_sha256_prefix":"ab","client_ip":"1.2.3.4"}"#.into(),
            // Times in other fields and case, a workload in another case.
            r#"{"creationtime":"2024-03-01T10:00:00","WORKLOAD":"Exchange","Operation":"x"}"#.into(),
            r#"{"StartTime":"2024-03-01T10:00:00Z","category":"x"}"#.into(),
        ]);
        out
    }

    /// A projection of [`time_and_workload_paths`] gives every record the
    /// kind, wrapper, time and workload its full parse gives it, whatever
    /// the file's hint: the engine projects records read for nothing else
    /// so.
    #[test]
    fn time_and_workload_paths_give_what_the_full_record_gives() {
        let p = Arc::new(crate::Projection::new(time_and_workload_paths()));
        let hints = [
            None,
            Some(EventKind::Audit),
            Some(EventKind::SignIn),
            Some(EventKind::DirectoryAudit),
        ];
        let mut compared = 0;
        for text in sample_records() {
            let crate::Projected::Object(v) = p.parse(&text).unwrap() else {
                continue;
            };
            for hint in hints {
                let loc = Locator { line: 1, record: 1 };
                let full = Event::from_record(
                    serde_json::from_str(&text).unwrap(),
                    hint,
                    Arc::from("f"),
                    loc,
                );
                let projected =
                    Event::from_projected(v.clone(), p.clone(), hint, Arc::from("f"), loc);
                assert_eq!(
                    (projected.kind, projected.inner, projected.time),
                    (full.kind, full.inner, full.time),
                    "{text} ({hint:?})"
                );
                assert_eq!(projected.workload(), full.workload(), "{text} ({hint:?})");
                compared += 1;
            }
        }
        assert!(compared > 400, "{compared}");
    }

    /// The bits worked out at compile time are those of their paths, and
    /// a key filter passes a path when the object holds it whole or holds
    /// the part before a dot, in any case, as lookups walk it.
    #[test]
    fn path_bits_pass_what_lookups_may_find_and_nothing_else() {
        let lists: [&[Probe]; 12] = [
            &TIME_PROBES,
            &USER_PROBES,
            &IP_PROBES,
            &APP_PROBES,
            &CLIENT_APP_PROBES,
            &SESSION_PROBES,
            &TOKEN_PROBES,
            &OPERATION_PROBES,
            &RESULT_PROBES,
            &WORKLOAD_PROBES,
            &USER_AGENT_PROBES,
            &GATEWAY_PROBES,
        ];
        for (path, bits) in lists.into_iter().flatten() {
            assert_eq!(*bits, PathBits::of(path), "{path}");
        }
        let record = json!({"AppAccessContext": {}, "UserId": "x", "a.b": 1});
        let keys = KeyFilter::of(Some(&record));
        for held in [
            "AppAccessContext.UniqueTokenId",
            "userid",
            "USERID",
            "a.b",
            "a.b.c",
        ] {
            assert!(keys.may_hold(&PathBits::of(held)), "{held}");
        }
        for absent in ["ClientIP", "Operation", "x.UserId"] {
            assert!(!keys.may_hold(&PathBits::of(absent)), "{absent}");
        }
        // Empty, or more dots than the bits have room for: anything may hold it.
        for any in ["", "w.x.y.z.UserId"] {
            assert!(keys.may_hold(&PathBits::of(any)), "{any:?}");
        }
    }

    /// A plain record (one that opens with its `CreationTime`) that names
    /// at its root none of the keys [`crate::projection::PlainAudit::names_another_kind`] looks
    /// for is an audit event in a file of audit records, as the engine
    /// builds it (nested JSON expanded, Log Analytics columns folded); one
    /// naming such a key may be another kind.
    #[test]
    fn plain_records_without_other_kind_keys_are_audit_events() {
        let kind = |r: &str| {
            let v: Value = serde_json::from_str(r).unwrap();
            let hint = Some(EventKind::Audit);
            Event::from_record(v, hint, Arc::from("f"), Locator::default()).kind
        };
        let other = [
            r#"{"CreationTime":"t","verdict":"deny","token_sha256_prefix":null}"#,
            r#"{"CreationTime":"t","Workload":"w","Type":"SigninLogs"}"#,
            r#"{"CreationTime":"t","TYPE":"AuditLogs"}"#,
            r#"{"CreationTime":"t","time":"t","Category":"SignInLogs","properties":{}}"#,
            r#"{"CreationTime":"t","createdDateTime":"t","userPrincipalName":"u","ipAddress":"1.2.3.4"}"#,
            r#"{"CreationTime":"t","ActivityDateTime":"t","activityDisplayName":"a"}"#,
            r#"{"CreationTime":"t","CreatedDateTime [UTC]":"t","UserPrincipalName":"u","IPAddress":"1.2.3.4"}"#,
            r#"{"CreationTime":"t","Type_dynamic":"SigninLogs"}"#,
        ];
        for r in other {
            assert_ne!(kind(r), EventKind::Audit, "{r}");
            assert_eq!(parses_and_names_another_kind(r), (true, true), "{r}");
        }
        let audit = [
            r#"{"CreationTime":"t","Operation":"Send","Workload":"Exchange","UserType":0,"RecordType":2}"#,
            r#"{"CreationTime":"t","Workload":"Exchange","Types":"x","categoryName":"y"}"#,
            r#"{"CreationTime":"t","Workload":"AzureActiveDirectory","userPrincipalName":"u","ipAddress":"1.2.3.4","time":"t"}"#,
            // Below the root, as in the `Actor` and `Target` lists of
            // directory records in the UAL.
            r#"{"CreationTime":"t","Workload":"w","Operation":"x","Actor":[{"Type":5,"ID":"u"}],"Target":{"category":"c"}}"#,
        ];
        for r in audit {
            assert_eq!(parses_and_names_another_kind(r), (true, false), "{r}");
            assert_eq!(kind(r), EventKind::Audit, "{r}");
        }
    }

    /// Classifying with the record's key filter skips only lookups that
    /// would have found nothing: every kind of record classifies as it
    /// does without the filter, case variants of the keys included.
    #[test]
    fn the_key_filter_changes_no_classification() {
        let records = [
            json!({"CreationTime": "2023-06-10T10:00:00", "Operation": "Send", "Workload": "Exchange"}),
            json!({"creationtime": "2023-06-10T10:00:00", "OPERATION": "Send"}),
            json!({"AuditData": {"CreationTime": "x", "Operation": "y"}, "RecordType": 2}),
            json!({"RawEventData": {"Operation": "y"}, "ActionType": "z"}),
            json!({"verdict": "deny", "token_sha256_prefix": null, "time": "t"}),
            json!({"time": "t", "category": "NonInteractiveUserSignInLogs", "properties": {"id": "1"}}),
            json!({"time": "t", "category": "AuditLogs", "properties": {"id": "1"}}),
            json!({"time": "t", "category": "Administrative", "resourceId": "/SUBSCRIPTIONS/1", "properties": {}}),
            json!({"Type": "SigninLogs", "TimeGenerated": "t"}),
            json!({"type": "OfficeActivity"}),
            json!({"createdDateTime": "t", "userPrincipalName": "u", "IPADDRESS": "1.2.3.4"}),
            json!({"createdDateTime": "t", "appId": "a", "Status": {"errorCode": 0}}),
            json!({"activityDateTime": "t", "activityDisplayName": "Add user"}),
            json!({"category": "SignInLogs"}),
            json!({"something": "else"}),
            json!([1, 2]),
        ];
        let mut kinds = std::collections::BTreeSet::new();
        for r in &records {
            for hint in [None, Some(EventKind::Audit)] {
                let keyed = classify_keyed(r, hint, &KeyFilter::of(Some(r)));
                assert_eq!(keyed, classify(r, hint), "{r}");
                kinds.insert(keyed.0.as_str());
            }
        }
        // The records reach every kind, so each path was taken.
        assert_eq!(kinds.len(), 6, "{kinds:?}");
    }

    #[test]
    fn dotted_lookup() {
        let v = json!({"AuditData": {"AppAccessContext": {"UniqueTokenId": "abc"}},
                       "Folders": [{"Path": "\\Inbox", "FolderItems": [{"Id": 1}, {"Id": 2}]}],
                       "a.b": 5, "Mixed": {"CaseKey": true}});
        assert_eq!(
            lookup(&v, "AuditData.AppAccessContext.UniqueTokenId"),
            Some(&json!("abc"))
        );
        assert_eq!(
            lookup(&v, "auditdata.appaccesscontext.uniquetokenid"),
            Some(&json!("abc"))
        );
        assert_eq!(lookup(&v, "a.b"), Some(&json!(5)));
        assert_eq!(lookup(&v, "Folders.0.Path"), Some(&json!("\\Inbox")));
        assert_eq!(lookup(&v, "Folders.Path"), Some(&json!("\\Inbox")));
        let mut all = Vec::new();
        lookup_all(&v, "Folders.FolderItems.Id", &mut all);
        assert_eq!(all, vec![&json!(1), &json!(2)]);
        assert_eq!(lookup(&v, "mixed.casekey"), Some(&json!(true)));
        assert_eq!(lookup(&v, "missing.path"), None);
    }

    /// The normalised fields other than the time are found when first
    /// asked for, once, and answer as the candidate lists say; one asked
    /// for while another field's search runs leaves that search's state
    /// as it was.
    #[test]
    fn normalised_fields_are_found_on_first_use() {
        let ev = Event::from_record(
            json!({"CreationTime": "2023-06-01T10:00:00", "Operation": "MailItemsAccessed",
                   "userid": "Alice@Contoso.com", "ClientIP": "[2001:db8::1]:443"}),
            None,
            Arc::from("t"),
            Locator::default(),
        );
        assert!(ev.time.is_some(), "the time is found with the event");
        assert!(ev.normal.user.get().is_none() && ev.normal.client_ip.get().is_none());
        assert_eq!(ev.operation(), Some("MailItemsAccessed"));
        assert!(ev.normal.user.get().is_none(), "only the field asked for");
        assert_eq!(
            ev.user(),
            Some("alice@contoso.com"),
            "found case-insensitively"
        );
        assert_eq!(ev.client_ip(), Some("2001:db8::1"));
        assert_eq!(
            ev.normal.user.get(),
            Some(&Some("alice@contoso.com".into()))
        );
        // Inside the exact-only pass of another search, a field's own
        // search runs both passes and puts the outer pass's state back.
        let inner = exact_then_ci(|| {
            let outer = EXACT_ONLY.get();
            let fresh = Event::from_record(
                json!({"USERID": "Bob@Contoso.com"}),
                None,
                Arc::from("t"),
                Locator::default(),
            );
            let user = fresh.user().map(str::to_owned);
            assert_eq!(
                EXACT_ONLY.get(),
                outer,
                "the outer pass's state is put back"
            );
            user
        });
        assert_eq!(inner.as_deref(), Some("bob@contoso.com"));
        // So is a field whose search is not split into passes (a gateway
        // line's operation reads `method` and `path` in any case).
        let gateway = Event::from_record(
            json!({"verdict": "accepted", "token_sha256_prefix": "ab", "Method": "GET", "PATH": "/x"}),
            None,
            Arc::from("t"),
            Locator::default(),
        );
        assert_eq!(gateway.kind, EventKind::Gateway);
        let op = exact_then_ci(|| gateway.operation().map(str::to_owned));
        assert_eq!(op.as_deref(), Some("GET /x"));
    }

    /// Azure Activity names its caller's user, app and token by the
    /// token's claims: under `identity.claims` in a diagnostic export (which
    /// has no caller field), in the `Claims` column in Log Analytics.
    #[test]
    fn azure_activity_callers_are_read_off_their_token_claims() {
        let ev = |v: Value| Event::from_record(v, None, Arc::from("t"), Locator::default());
        let claims = json!({"appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "uti": "2se-tEsQdRScaf0e2pXsTQ",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "Billy.Brooks@contoso.com",
            "name": "Billy Brooks"});
        let diagnostic = ev(
            json!({"time": "2024-03-05T00:09:24.5093186Z", "category": "Administrative",
            "resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG", "operationName": "MICROSOFT.COMPUTE/VIRTUALMACHINES/WRITE",
            "callerIpAddress": "69.24.11.61", "properties": {"eventCategory": "Administrative"},
            "identity": {"authorization": {"action": "Microsoft.Compute/virtualMachines/write"}, "claims": claims}}),
        );
        assert_eq!(diagnostic.kind, EventKind::AzureActivity);
        assert_eq!(diagnostic.user(), Some("billy.brooks@contoso.com"));
        assert_eq!(
            diagnostic.app_id(),
            Some("c44b4083-3bb0-49c1-b47d-974e53cbdf3c")
        );
        assert_eq!(diagnostic.token_id(), Some("2se-tEsQdRScaf0e2pXsTQ"));
        // Log Analytics: the caller is a column; the claims are JSON text.
        let table = ev(
            json!({"TimeGenerated": "2021-04-28T14:32:14.029Z", "Type": "AzureActivity",
            "OperationNameValue": "MICROSOFT.WEB/SITES/DELETE", "Caller": "AdeleV@M365x816222.OnMicrosoft.com",
            "Claims": claims.to_string()}),
        );
        assert_eq!(table.kind, EventKind::AzureActivity);
        assert_eq!(table.user(), Some("adelev@m365x816222.onmicrosoft.com"));
        assert_eq!(table.app_id(), Some("c44b4083-3bb0-49c1-b47d-974e53cbdf3c"));
        assert_eq!(table.token_id(), Some("2se-tEsQdRScaf0e2pXsTQ"));
        // A service principal's token has no UPN: no user, its app.
        let principal = ev(
            json!({"time": "2024-03-05T00:09:24Z", "category": "Administrative",
            "resourceId": "/SUBSCRIPTIONS/X", "operationName": "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION",
            "properties": {}, "identity": {"claims": {"appid": "a1", "uti": "u1", "appidacr": "1"}}}),
        );
        assert_eq!(
            (principal.user(), principal.app_id(), principal.token_id()),
            (None, Some("a1"), Some("u1"))
        );
        // A sign-in's `identity` is still its user where nothing else names one.
        let named = ev(
            json!({"time": "2024-03-05T00:09:24Z", "category": "SignInLogs", "identity": "Dan Smith"}),
        );
        assert_eq!(named.user(), Some("dan smith"));
    }

    /// Users and mailboxes are lower-cased as `str::to_lowercase` does,
    /// whether or not they need it (a text already in lower case is kept
    /// as found): ASCII, other scripts, a titlecase letter (not upper case,
    /// but changed by lower-casing), and texts with nothing to change.
    #[test]
    fn users_and_mailboxes_are_lower_cased_as_std_does() {
        for user in [
            "alice@contoso.com",
            "Alice@Contoso.COM",
            "ärger@x",
            "Ärger@X",
            "\u{1c5}ab@x",
            "ΣΟΦΙΑ@x",
            "1234",
        ] {
            let ev = Event::from_record(
                json!({"Operation": "MailItemsAccessed", "UserId": user,
                       "MailboxOwnerUPN": format!("M{user}")}),
                None,
                Arc::from("t"),
                Locator::default(),
            );
            let want = user.to_lowercase();
            assert_eq!(ev.user(), Some(want.as_str()), "{user:?}");
            let mailbox = format!("M{user}").to_lowercase();
            assert_eq!(ev.mailbox(), Some(mailbox.as_str()), "{user:?}");
        }
    }

    /// Normalising tries every candidate name exactly before any
    /// case-insensitively, and skips the second pass only when the first
    /// passed over no key that differs from a candidate in case alone.
    #[test]
    fn normalising_prefers_exact_names_and_still_finds_folded_ones() {
        let ev = |v: Value| Event::from_record(v, None, Arc::from("t"), Locator::default());
        // Only folded spellings: found by the second pass, in small and
        // in large (unscanned) maps.
        let small = ev(json!({"USERID": "A@x", "sessionid": "s"}));
        assert_eq!(small.user(), Some("a@x"));
        assert_eq!(small.session_id(), Some("s"));
        let mut big = Map::new();
        for i in 0..40 {
            big.insert(format!("noise{i}"), json!(i));
        }
        big.insert("CLIENTIPADDRESS".into(), json!("192.0.2.7"));
        assert!(big.len() > SMALL_MAP);
        assert_eq!(ev(Value::Object(big)).client_ip(), Some("192.0.2.7"));
        // A later candidate spelled exactly wins over an earlier one that
        // matches only in case (`AADSessionId` before `SessionId`).
        let both = ev(json!({"aadsessionid": "folded", "SessionId": "exact"}));
        assert_eq!(both.session_id(), Some("exact"));
        // A folded key below an exactly named parent.
        let nested = ev(json!({"AppAccessContext": {"uniquetokenid": "t"}}));
        assert_eq!(nested.token_id(), Some("t"));
        // Nothing to fold: nothing found.
        let none = ev(json!({"other": 1}));
        assert_eq!(
            (none.user(), none.session_id(), none.token_id()),
            (None, None, None)
        );
    }

    /// The key filters only skip lookups that would find nothing: on
    /// random records and paths (dotted keys, case variants, wrappers,
    /// arrays, maps small and past [`SMALL_MAP`]), `get` and `get_all`
    /// answer as the plain lookups do.
    #[test]
    fn key_filters_never_change_an_answer() {
        let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        let mut next = |n: usize| rng.usize(0..n);
        let steps = [
            "AuditData",
            "a",
            "A",
            "ab",
            "aB",
            "b",
            "x.y",
            "X.y",
            "properties",
            "Properties",
            "id",
            "ID",
            "ba",
        ];
        let (mut checked, mut in_wrapper) = (0, 0);
        for _ in 0..3000 {
            let mut root = Map::new();
            // Past SMALL_MAP keys, a lookup searches the tree, then scans.
            if next(3) == 0 {
                for f in 0..SMALL_MAP + 6 {
                    root.insert(format!("filler{f}"), json!(f));
                }
            }
            for _ in 0..next(6) {
                let k = steps[next(steps.len())].to_string();
                let v = match next(4) {
                    0 => json!(next(9)),
                    1 => {
                        json!({ steps[next(steps.len())]: next(9), steps[next(steps.len())]: "s" })
                    }
                    2 => json!([{ steps[next(steps.len())]: 1 }, 2]),
                    _ => json!("v"),
                };
                root.insert(k, v);
            }
            let ev = Event::from_record(
                Value::Object(root),
                None,
                Arc::from("t"),
                Locator::default(),
            );
            for _ in 0..8 {
                let path = (0..1 + next(3))
                    .map(|_| steps[next(steps.len())])
                    .collect::<Vec<_>>()
                    .join(".");
                let inner = ev.inner.and_then(|k| ev.record.get(k));
                let want = inner
                    .and_then(|iv| lookup(iv, &path))
                    .or_else(|| lookup(&ev.record, &path));
                assert_eq!(ev.get(&path), want, "{path} in {}", ev.record);
                let mut all = Vec::new();
                if let Some(iv) = inner {
                    lookup_all(iv, &path, &mut all);
                }
                if all.is_empty() {
                    lookup_all(&ev.record, &path, &mut all);
                }
                assert_eq!(ev.get_all(&path), all, "{path} in {}", ev.record);
                checked += usize::from(want.is_some());
                in_wrapper += usize::from(inner.and_then(|iv| lookup(iv, &path)).is_some());
            }
        }
        assert!(checked > 1000, "too few paths found: {checked}");
        assert!(in_wrapper > 50, "too few found in a wrapper: {in_wrapper}");
    }

    #[test]
    fn key_match_grades_exact_folded_and_different() {
        assert!(key_match("UserId", "UserId") == KeyMatch::Exact);
        assert!(key_match("userid", "UserId") == KeyMatch::Folded);
        assert!(key_match("UserIds", "UserId") == KeyMatch::Different);
        assert!(key_match("UserIe", "UserId") == KeyMatch::Different);
        assert!(key_match("", "") == KeyMatch::Exact);
    }

    /// The normalised fields of an event depend only on the paths in
    /// `normalised_paths`: a projection to them alone normalises every
    /// export shape exactly as the full record does.
    /// Client addresses in every spelling come out in one canonical text:
    /// a plain IPv4 address as it is, the others parsed and written again.
    #[test]
    fn client_addresses_are_canonical_in_every_spelling() {
        let ip = |v: &str| {
            Event::from_record(
                serde_json::json!({"CreationTime": "2023-06-10T10:00:00", "Operation": "x", "ClientIP": v}),
                None,
                Arc::from("t"),
                Locator::default(),
            )
            .client_ip()
            .map(str::to_owned)
        };
        for (given, canonical) in [
            ("203.0.113.9", "203.0.113.9"),
            (" 203.0.113.9 ", "203.0.113.9"),
            ("203.0.113.9:443", "203.0.113.9"),
            ("[2001:DB8::5]:443", "2001:db8::5"),
            ("2001:db8:0:0::5", "2001:db8::5"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
        ] {
            assert_eq!(ip(given).as_deref(), Some(canonical), "{given}");
        }
        // Not an address (a leading zero is refused, not read as octal):
        // kept as written.
        assert_eq!(ip("203.0.113.09").as_deref(), Some("203.0.113.09"));
    }

    /// A record saved by Windows PowerShell (`ConvertTo-Json`) is placed
    /// by its AuditData's ISO time, and by its `CreationDate`
    /// (`\/Date(ms)\/`) only when AuditData has none.
    #[test]
    fn powershell_records_take_the_audit_time_then_creation_date() {
        let time = |s: &str| {
            let ev = Event::from_record(
                serde_json::from_str(s).unwrap(),
                None,
                Arc::from("f"),
                Locator::default(),
            );
            ev.time.map(crate::timefmt::rfc3339)
        };
        assert_eq!(
            time(
                r#"{"CreationDate":"\/Date(1709251807000)\/","Operations":"Send","AuditData":"{\"CreationTime\":\"2024-03-01T00:10:09\",\"Operation\":\"Send\"}"}"#
            ),
            Some("2024-03-01T00:10:09Z".into())
        );
        assert_eq!(
            time(
                r#"{"CreationDate":"\/Date(1709251807000)\/","Operations":"Send","AuditData":"{\"Operation\":\"Send\"}"}"#
            ),
            Some("2024-03-01T00:10:07Z".into())
        );
    }

    #[test]
    fn projected_events_normalise_like_full_ones() {
        let shapes = [
            r#"{"RecordId":"1","CreationDate":"9/20/2023 4:05:03 AM","Operation":"MailItemsAccessed","AuditData":"{\"CreationTime\":\"2023-09-20T04:05:03\",\"Operation\":\"MailItemsAccessed\",\"Workload\":\"Exchange\",\"UserId\":\"Alice@Contoso.com\",\"ClientIPAddress\":\"[2001:db8::5]:443\",\"AppAccessContext\":{\"AADSessionId\":\"s1\",\"UniqueTokenId\":\"t1\",\"ClientAppId\":\"c\"},\"RecordType\":50,\"ClientInfoString\":\"Client=REST\"}"}"#,
            r#"{"id":"x","createdDateTime":"2023-06-10T10:00:00Z","userPrincipalName":"B@x","appId":"a","ipAddress":"198.51.100.1","status":{"errorCode":50126},"uniqueTokenIdentifier":"T","sessionId":"S","userAgent":"UA","noise":[1,2,3]}"#,
            r#"{"time":"2023-06-10T10:00:00Z","category":"NonInteractiveUserSignInLogs","resourceId":"/tenants/x","operationName":"Sign-in activity","callerIpAddress":"203.0.113.1","properties":{"userPrincipalName":"c@x","appId":"a","ipAddress":"203.0.113.1","uniqueTokenIdentifier":"U","sessionId":"S2","status":{"errorCode":0},"additionalDetails":[{"key":"User-Agent","value":"curl"}]}}"#,
            r#"{"time":"2023-06-10T10:00:00Z","client_ip":"203.0.113.5","verdict":"rejected","token_sha256_prefix":"00ff","sub":"Victim","azp":"app","sid":"s","uti":"u","method":"GET","path":"/api"}"#,
            r#"{"TimeGenerated":"2021-04-28T15:05:26Z","Type":"OfficeActivity","OfficeWorkload":"Exchange","Operation":"Send","UserId":"d@x","ClientIP":"1.2.3.4:5","ExtendedProperties":[{"Name":"UserAgent","Value":"Mozilla"}],"ResultStatus":"Succeeded"}"#,
            r#"{"activityDateTime":"2021-08-02T13:25:12Z","activityDisplayName":"Update application","initiatedBy":{"user":{"userPrincipalName":"E@x","ipAddress":"192.0.2.1"}},"result":"success"}"#,
            // Azure Activity, diagnostic export: `identity` an object whose
            // claims name the caller (kept for scalar reads and its claims).
            r#"{"time":"2024-03-05T00:09:24.5Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG","operationName":"MICROSOFT.COMPUTE/VIRTUALMACHINES/WRITE","category":"Administrative","resultType":"Start","callerIpAddress":"69.24.11.61","identity":{"authorization":{"scope":"/s","action":"Microsoft.Compute/virtualMachines/write","evidence":{"role":"Owner"}},"claims":{"appid":"c44b","uti":"2se","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"Billy@X","name":"B"}},"level":"Information","properties":{"eventCategory":"Administrative","identity":{"nested":"object"}}}"#,
            // Azure Monitor sign-in: `identity` the user's name, a string.
            r#"{"time":"2023-06-10T10:00:00Z","category":"SignInLogs","resourceId":"/tenants/x","identity":"Dan Smith","properties":{"appId":"a","identity":["not","a","name"]}}"#,
            // Log Analytics AzureActivity: the claims are JSON text.
            r#"{"TimeGenerated":"2021-04-28T14:32:14.029Z","Type":"AzureActivity","OperationNameValue":"MICROSOFT.WEB/SITES/DELETE","Caller":"AdeleV@X","CallerIpAddress":"37.142.150.162","Claims":"{\"appid\":\"c44b\",\"uti\":\"u9\"}"}"#,
        ];
        let p = Arc::new(normalising_projection());
        for s in shapes {
            let full = Event::from_record(
                serde_json::from_str(s).unwrap(),
                None,
                Arc::from("f"),
                Locator::default(),
            );
            let crate::projection::Projected::Object(v) = p.parse(s).unwrap() else {
                panic!("{s}")
            };
            let proj =
                Event::from_projected(v, p.clone(), None, Arc::from("f"), Locator::default());
            let norm = |e: &Event| {
                format!(
                    "{:?} {:?}",
                    (
                        e.kind,
                        e.inner,
                        e.time,
                        e.user(),
                        e.client_ip(),
                        e.app_id(),
                        e.client_app_id()
                    ),
                    (
                        e.session_id(),
                        e.token_id(),
                        e.operation(),
                        e.result(),
                        e.workload(),
                        e.user_agent(),
                        e.record_type()
                    ),
                )
            };
            assert_eq!(norm(&full), norm(&proj), "{s}");
        }
    }

    #[test]
    fn nested_strings_expand_and_normalise() {
        let rec = json!({
            "RecordId": "1", "CreationDate": "9/20/2023 4:05:03 AM", "Operation": "MailItemsAccessed",
            "AuditData": "{\"CreationTime\":\"2023-09-20T04:05:03\",\"Operation\":\"MailItemsAccessed\",\"UserId\":\"Alice@Contoso.com\",\"ClientIPAddress\":\"[2001:db8::5]:443\",\"AppAccessContext\":{\"AADSessionId\":\"s1\",\"UniqueTokenId\":\"t1\"},\"OperationProperties\":\"[{\\\"Name\\\":\\\"MailAccessType\\\",\\\"Value\\\":\\\"Bind\\\"}]\",\"RecordType\":50}"
        });
        let ev = Event::from_record(rec, None, Arc::from("f"), Locator { line: 2, record: 1 });
        assert_eq!(ev.kind, EventKind::Audit);
        assert_eq!(ev.user(), Some("alice@contoso.com"));
        assert_eq!(ev.client_ip(), Some("2001:db8::5"));
        assert_eq!(ev.session_id(), Some("s1"));
        assert_eq!(ev.token_id(), Some("t1"));
        assert_eq!(ev.record_type(), Some(50));
        assert_eq!(
            ev.name_value("OperationProperties", "mailaccesstype")
                .as_deref(),
            Some("Bind")
        );
        assert_eq!(
            crate::timefmt::rfc3339(ev.time.unwrap()),
            "2023-09-20T04:05:03Z"
        );
        assert_eq!(ev.locator.to_string(), "record 1 (line 2)");
    }
}
