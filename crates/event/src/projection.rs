//! Projection: a record parsed for the fields its readers declared, and
//! nothing else.
//!
//! A [`Projection`] is built from dotted paths (the union of what the
//! normalisation and the detections a record is routed to declared). One
//! pass over the record's bytes keeps the object keys on those paths,
//! matched ignoring ASCII case as [`crate::event::lookup`] matches them,
//! and skips every other value without building it. JSON carried in a
//! string (`AuditData`, `OperationProperties`, Log Analytics dynamic
//! columns) is parsed the same way when a path goes through it, so a
//! lookup of any declared path answers exactly as on the full record.
//! The pass is a scanner of this module's own, tested against the
//! serde_json visitor it replaced: that visitor's plumbing for each key
//! and value cost more than reading the bytes.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::event::expand_value;
use tokenward_logread::words::{bytes_below, bytes_equal, slices_equal, word_at};

/// Keys under which exports wrap the actual record; every path is also
/// looked up inside them ([`crate::event::Event::get`]).
pub const WRAPPERS: [&str; 3] = ["AuditData", "RawEventData", "properties"];

/// How many levels of JSON-in-a-string are expanded, as for full records.
pub const NESTED_DEPTH: u32 = 3;

/// Where a [`Projection`] keeps a key of the records' root, from
/// [`Projection::root_slot`]; meaningful to that projection alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootSlot(usize);

#[derive(Clone, Debug)]
enum Slot {
    /// Keep the value whole.
    Whole,
    /// Keep only the listed keys inside (scalars as they are; with no
    /// keys listed, an object empty and an array with its scalars, its
    /// objects and arrays so emptied: what a key declared for scalar reads
    /// alone keeps, [`Projection::add_scalar`]).
    Inner(Box<Node>),
}

#[derive(Clone, Debug, Default)]
struct Node {
    /// Lower-cased key, the key as first declared, and what to keep of
    /// its value.
    keys: Vec<(String, String, Slot)>,
    /// By key length (the vector's index): the key's first and last byte
    /// and its index in `keys`. Most record keys fail on length, and most
    /// of the rest on those two bytes, without a call or a hash.
    by_len: Vec<Vec<(u8, u8, usize)>>,
    /// Keys declared for scalar reads ([`Projection::add_scalar`]),
    /// lower-cased: kept as the keys below them ([`Slot::Inner`], with
    /// none or some), they answer such a read as the whole value.
    scalar_reads: Vec<String>,
}

/// First and last byte of a key, lower-cased (0 for an empty one): with
/// the length, what key lookups compare before the whole key.
pub(crate) const fn ends(k: &[u8]) -> (u8, u8) {
    match (k.first(), k.last()) {
        (Some(f), Some(l)) => (f.to_ascii_lowercase(), l.to_ascii_lowercase()),
        _ => (0, 0),
    }
}

impl Node {
    fn find(&self, key: &str) -> Option<&Slot> {
        self.find_index(key).map(|i| &self.keys[i].2)
    }

    /// The place in `keys` of the key `key` names (ASCII case ignored).
    fn find_index(&self, key: &str) -> Option<usize> {
        let ids = self.by_len.get(key.len())?;
        let (first, last) = ends(key.as_bytes());
        ids.iter()
            .filter(|&&(f, l, _)| f == first && l == last)
            .map(|&(_, _, i)| i)
            // Records mostly spell keys as detections declare them: a
            // byte comparison answers first, where comparing folded bytes
            // was 3 % of a hunt over mailbox audit records.
            .find(|&i| {
                let (k, spelled, _) = &self.keys[i];
                slices_equal(spelled.as_bytes(), key.as_bytes()) || k.eq_ignore_ascii_case(key)
            })
    }

    fn slot_mut(&mut self, key: &str) -> &mut Slot {
        let lower = key.to_ascii_lowercase();
        if let Some(i) = self.keys.iter().position(|(k, _, _)| *k == lower) {
            return &mut self.keys[i].2;
        }
        if self.by_len.len() <= lower.len() {
            self.by_len.resize_with(lower.len() + 1, Vec::new);
        }
        let (first, last) = ends(lower.as_bytes());
        self.by_len[lower.len()].push((first, last, self.keys.len()));
        self.keys
            .push((lower, key.to_owned(), Slot::Inner(Box::default())));
        &mut self.keys.last_mut().expect("just pushed").2
    }

    /// Adds a path the way [`crate::event::lookup`] walks it: the whole
    /// path as one key, and every dotted prefix as a key with the rest of
    /// the path below it.
    fn insert(&mut self, path: &str) {
        if path.is_empty() {
            return;
        }
        // A numeric step indexes an array whose elements are projected
        // with the array's own node: keep such arrays whole.
        let mut segs = path.split('.');
        if let Some(pos) = segs.position(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        {
            let whole: Vec<&str> = path.split('.').take(pos).collect();
            if whole.is_empty() {
                return;
            }
            self.insert_whole(&whole.join("."));
            return;
        }
        self.insert_whole(path);
        for (i, _) in path.match_indices('.') {
            if let Slot::Inner(n) = self.slot_mut(&path[..i]) {
                n.insert(&path[i + 1..]);
            }
        }
    }

    fn insert_whole(&mut self, path: &str) {
        *self.slot_mut(path) = Slot::Whole;
        for (i, _) in path.match_indices('.') {
            if let Slot::Inner(n) = self.slot_mut(&path[..i]) {
                n.insert_whole(&path[i + 1..]);
            }
        }
    }

    /// Keeps `key` for scalar reads: as the keys below it, none unless
    /// declared (a key already kept whole stays so).
    fn insert_scalar(&mut self, key: &str) {
        self.slot_mut(key);
        let lower = key.to_ascii_lowercase();
        if !self.scalar_reads.contains(&lower) {
            self.scalar_reads.push(lower);
        }
    }

    fn reaches(&self, path: &str) -> bool {
        match self.find(path) {
            Some(Slot::Whole) => return true,
            Some(Slot::Inner(_))
                if self
                    .scalar_reads
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(path)) =>
            {
                return true
            }
            _ => {}
        }
        path.match_indices('.')
            .any(|(i, _)| match self.find(&path[..i]) {
                Some(Slot::Whole) => true,
                Some(Slot::Inner(n)) => n.reaches(&path[i + 1..]),
                None => false,
            })
    }
}

/// The fields to keep of a record.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    root: Node,
}

/// What projecting a record's bytes gave.
#[derive(Debug)]
pub enum Projected {
    /// The kept fields of a JSON object.
    Object(Value),
    /// Not something a projection can answer for: an envelope of records,
    /// renamed Log Analytics columns, not a JSON object, or JSON a full
    /// parse refuses for more than its grammar (nested too deep, an escape
    /// of half a surrogate pair, a number out of range), which that parse
    /// words. Parse it in full.
    Full,
}

impl Projection {
    /// A projection keeping `paths`, each looked up from the root and
    /// inside every wrapper ([`WRAPPERS`]).
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Projection {
        let mut p = Projection::default();
        for path in paths {
            p.add(path);
        }
        p
    }

    /// Adds one path.
    pub fn add(&mut self, path: &str) {
        self.root.insert(path);
        for w in WRAPPERS {
            if let Slot::Inner(n) = self.root.slot_mut(w) {
                n.insert(path);
            }
        }
    }

    /// Adds a root key read only as a scalar (a normalised field's
    /// candidate name): its value is kept when it is a scalar, and an object
    /// is kept with no keys (an array with its scalars, its objects and
    /// arrays so emptied), which such a read answers as the whole value (no
    /// scalar there) without building what is inside. A path that
    /// keeps the key otherwise ([`Projection::add`]) wins, before or after.
    /// An Azure Activity record's `identity` (its token's authorization and
    /// claims, some 30 values) is a sign-in's user name elsewhere: kept
    /// whole for that read, it was 5 % of a hunt over Azure Activity.
    pub fn add_scalar(&mut self, key: &str) {
        debug_assert!(!key.contains('.'), "a root key, not a path: {key}");
        self.root.insert_scalar(key);
        for w in WRAPPERS {
            if let Slot::Inner(n) = self.root.slot_mut(w) {
                n.insert_scalar(key);
            }
        }
    }

    /// Whether a lookup of `path` on a projected record answers as on the
    /// full record (the path, or a prefix of it, is kept whole; or, for
    /// scalar reads, the key is kept for them).
    pub fn reaches(&self, path: &str) -> bool {
        self.root.reaches(path)
    }

    /// Projects a JSON object given as text, in one pass: a record is
    /// projected only if a full parse reads it. Errors are serde_json's
    /// words for text that is not JSON; text that is, but that a full
    /// parse refuses (nested too deep, say), is [`Projected::Full`], as is
    /// any text whose root is not an object or that names a key which
    /// [`forces_full`], found without reading further (the full parse
    /// then checks the rest).
    pub fn parse(&self, text: &str) -> Result<Projected, serde_json::Error> {
        crate::shadow::reset();
        match Scan::new(text).root(&self.root) {
            Ok(p) => Ok(p),
            // Worded as serde_json words it; a text it reads but would
            // not build on these paths is the full parse's to refuse.
            Err(Stop) => serde_json::from_str::<IgnoredAny>(text).map(|_| Projected::Full),
        }
    }

    /// Where the projection keeps the root key `key`, if it does: a CSV
    /// header's columns are looked up once for a batch of rows instead of
    /// once a row (looking up some 40 columns of a Log Analytics export
    /// was a tenth of reading it).
    pub fn root_slot(&self, key: &str) -> Option<RootSlot> {
        self.root.find_index(key).map(RootSlot)
    }

    /// Projects a record already split into named text columns (CSV), as
    /// (column name, cell, the column's [`Projection::root_slot`]) read as
    /// from a JSON object of the row: a later pair of one name replaces an
    /// earlier (of two columns with one name, the caller passes the later
    /// and notes the earlier). Only the columns kept are copied into the
    /// result. Renamed Log Analytics columns ([`forces_full`]) are the
    /// caller's to pass again under the table's names, after every column,
    /// as a full parse folds them.
    ///
    /// Pairs passed in key order (a later pair of one name still after
    /// the earlier) are built into the map without searching it: inserting
    /// some 40 columns of a Log Analytics row one by one searched the tree
    /// for each, 5 % of a hunt over such exports with SigmaHQ rules.
    pub fn project_slotted<'r>(
        &self,
        row: impl IntoIterator<Item = (&'r str, &'r str, Option<RootSlot>)>,
    ) -> Value {
        let out: Map<String, Value> = row
            .into_iter()
            .filter_map(|(k, cell, slot)| {
                let (lower, _, kept) = slot.and_then(|RootSlot(i)| self.root.keys.get(i))?;
                debug_assert!(
                    lower.eq_ignore_ascii_case(k),
                    "a slot of this projection's, for {k}"
                );
                let v = match kept {
                    Slot::Whole => {
                        let mut v = Value::String(cell.to_owned());
                        expand_value(&mut v, NESTED_DEPTH);
                        v
                    }
                    Slot::Inner(n) => project_str(Cow::Borrowed(cell), n, NESTED_DEPTH),
                };
                Some((k.to_owned(), v))
            })
            // A map built from pairs keeps the last of one key, as
            // inserting them in turn does.
            .collect();
        Value::Object(out)
    }
}

/// Keys that change what a record is: envelopes of records and renamed
/// Log Analytics columns, which the full parse folds.
pub fn forces_full(k: &str) -> bool {
    k == "records" || k == "value" || k.ends_with(" [UTC]") || k.ends_with("_dynamic")
}

/// A string value on a projected path: JSON inside is projected with the
/// path's node, as a full parse would have expanded it.
fn project_str(s: Cow<'_, str>, node: &Node, depth: u32) -> Value {
    if let Some(t) = crate::event::carried_json(&s, depth) {
        let mut scan = Scan::new(t);
        if let Ok(v) = scan
            .inner(node, depth - 1)
            .and_then(|v| scan.end().map(|()| v))
        {
            return v;
        }
    }
    Value::String(s.into_owned())
}

/// A scan stopped: the text is not JSON a full parse reads (serde_json's
/// grammar, nesting past its depth limit, an escape of half a surrogate
/// pair, a number out of range).
#[derive(Debug)]
pub(crate) struct Stop;

pub(crate) type Scanned<T> = Result<T, Stop>;

/// serde_json's recursion limit: objects and arrays may nest this deep,
/// less one.
const DEPTH_LIMIT: u32 = 128;

/// One pass over a JSON text that keeps what a [`Node`] names.
///
/// It reads exactly the texts a full parse ([`crate::shadow::parse_str`])
/// reads: RFC 8259's grammar (control characters, unknown escapes and
/// `\u` without four hex digits refused inside strings), serde_json's
/// depth limit, escapes of surrogates only in pairs, numbers in range,
/// checked in skipped values too; and builds the values serde_json
/// builds: numbers other than plain unsigned integers are read by
/// serde_json, strings unescaped as it unescapes them. It replaced
/// serde_json's visitor, whose per-key and per-value plumbing was most of
/// the time a projection took besides building the kept values, and
/// which let through, in values it skipped, numbers out of range, halves
/// of surrogate pairs and nesting past its limit, which a full parse of
/// the same record refuses.
pub(crate) struct Scan<'t> {
    text: &'t str,
    /// The next byte to read.
    pub(crate) at: usize,
    /// Objects and arrays open that count against [`DEPTH_LIMIT`].
    pub(crate) depth: u32,
    /// The closing bytes of the containers open in a value being skipped,
    /// innermost last.
    skipping: Vec<u8>,
    /// When a whole text is skipped and its root keys noted: whether one
    /// is a key of another kind than audit ([`names_another_kind`]).
    root_keys: Option<bool>,
    /// When a whole text is skipped for [`plain_audit`]: its strings
    /// spelled `CreationTime` and `Workload`.
    plain: Option<PlainKeys>,
}

/// What [`plain_audit`]'s scan notes of the strings spelled `CreationTime`
/// and `Workload` (keys or values, anywhere): how many there are, and
/// where each one that is a root key ends.
#[derive(Default)]
struct PlainKeys {
    times: u32,
    workloads: u32,
    time_key_end: Option<usize>,
    workload_key_end: Option<usize>,
}

impl PlainKeys {
    /// Notes the string `raw` (its bytes between the quotes), which ends
    /// at `end`, a root key or not.
    #[inline]
    fn note(&mut self, raw: &[u8], end: usize, root_key: bool) {
        // Slices compare their lengths first: most strings fail there.
        if raw == b"CreationTime" {
            self.times += 1;
            if root_key {
                self.time_key_end = Some(end);
            }
        } else if raw == b"Workload" {
            self.workloads += 1;
            if root_key {
                self.workload_key_end = Some(end);
            }
        }
    }
}

impl<'t> Scan<'t> {
    pub(crate) fn new(text: &'t str) -> Scan<'t> {
        Scan {
            text,
            at: 0,
            depth: 0,
            skipping: Vec::new(),
            root_keys: None,
            plain: None,
        }
    }

    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    pub(crate) fn peek(&mut self) -> Scanned<u8> {
        let b = self.bytes();
        self.at = past_space(b, self.at);
        b.get(self.at).copied().ok_or(Stop)
    }

    /// Consumes `c`, after whitespace.
    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> Scanned<()> {
        if self.peek()? != c {
            return Err(Stop);
        }
        self.at += 1;
        Ok(())
    }

    /// Only whitespace is left.
    pub(crate) fn end(&mut self) -> Scanned<()> {
        match self.peek() {
            Err(Stop) => Ok(()),
            Ok(_) => Err(Stop),
        }
    }

    /// Opens an object or array that serde_json would count.
    pub(crate) fn enter(&mut self) -> Scanned<()> {
        self.depth += 1;
        if self.depth >= DEPTH_LIMIT {
            return Err(Stop);
        }
        Ok(())
    }

    /// The root: an object's kept fields, or [`Projected::Full`] for
    /// anything else (an envelope, renamed columns, not an object), which
    /// the caller parses in full whatever follows.
    fn root(&mut self, node: &Node) -> Scanned<Projected> {
        if self.peek()? != b'{' {
            return Ok(Projected::Full);
        }
        self.at += 1;
        let Some(out) = self.object(node, NESTED_DEPTH, true)? else {
            return Ok(Projected::Full);
        };
        self.end()?;
        Ok(Projected::Object(Value::Object(out)))
    }

    /// An object's fields that `node` keeps, after its `{`; `None` when
    /// `root` and a key [`forces_full`].
    fn object(
        &mut self,
        node: &Node,
        nested: u32,
        root: bool,
    ) -> Scanned<Option<Map<String, Value>>> {
        self.enter()?;
        let mut out = Map::new();
        if self.peek()? == b'}' {
            self.at += 1;
            self.depth -= 1;
            return Ok(Some(out));
        }
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            if root && forces_full(&key) {
                return Ok(None);
            }
            match node.find(&key) {
                Some(Slot::Whole) => {
                    let mut v = self.whole()?;
                    expand_value(&mut v, nested);
                    crate::shadow::insert_noting(&mut out, key.into_owned(), v);
                }
                Some(Slot::Inner(n)) => {
                    let v = self.inner(n, nested)?;
                    crate::shadow::insert_noting(&mut out, key.into_owned(), v);
                }
                None => self.skip()?,
            }
            if self.close_or_next(b'}')? {
                self.depth -= 1;
                return Ok(Some(out));
            }
        }
    }

    /// A value below a kept key: objects keep their node's keys, arrays
    /// project each element, strings holding JSON are projected too.
    fn inner(&mut self, node: &Node, nested: u32) -> Scanned<Value> {
        match self.peek()? {
            b'{' => {
                self.at += 1;
                let out = self.object(node, nested, false)?.unwrap_or_default();
                Ok(Value::Object(out))
            }
            b'[' => {
                self.at += 1;
                self.array(|scan| scan.inner(node, nested))
            }
            b'"' => {
                let s = self.string_text()?;
                Ok(project_str(s, node, nested))
            }
            _ => self.whole(),
        }
    }

    /// An array after its `[`, each element read by `element`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Scanned<Value>) -> Scanned<Value> {
        self.enter()?;
        let mut out = Vec::new();
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                out.push(element(self)?);
                if self.close_or_next(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Ok(Value::Array(out))
    }

    /// After an element: true past the container's `close`, false past a
    /// comma.
    #[inline]
    pub(crate) fn close_or_next(&mut self, close: u8) -> Scanned<bool> {
        let (at, closed) = past_element(self.bytes(), self.at, close)?;
        self.at = at;
        Ok(closed)
    }

    /// A whole value, built as [`crate::shadow::Whole`] builds it.
    fn whole(&mut self) -> Scanned<Value> {
        match self.peek()? {
            b'"' => Ok(Value::String(self.string_text()?.into_owned())),
            b'{' => {
                self.at += 1;
                self.enter()?;
                let mut out = Map::new();
                if self.peek()? == b'}' {
                    self.at += 1;
                } else {
                    loop {
                        let key = self.key()?;
                        self.eat(b':')?;
                        let v = self.whole()?;
                        crate::shadow::insert_noting(&mut out, key.into_owned(), v);
                        if self.close_or_next(b'}')? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(Value::Object(out))
            }
            b'[' => {
                self.at += 1;
                self.array(Self::whole)
            }
            b't' => self.literal(b"true").map(|()| Value::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Value::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Value::Null),
            _ => self.number_value(),
        }
    }

    /// A number, built as serde_json builds it.
    pub(crate) fn number_value(&mut self) -> Scanned<Value> {
        let from = self.at;
        self.number()?;
        let n = &self.text[from..self.at];
        // serde_json reads a plain unsigned integer that fits as one; the
        // rest (signs, fractions, exponents, large) it reads its own way,
        // so it reads them.
        if n.len() < 20 && n.bytes().all(|c| c.is_ascii_digit()) {
            if let Ok(u) = n.parse::<u64>() {
                return Ok(Value::from(u));
            }
        }
        serde_json::from_str(n).map_err(|_| Stop)
    }

    /// Skips a value, checking it as serde_json checks a value it builds
    /// (not only its grammar, as it checks a value it skips: also its
    /// depth limit, escapes of half a surrogate pair, numbers out of
    /// range), so that a record is projected only if a full parse reads
    /// it. Root keys and plain strings are noted when this scan notes
    /// them ([`scan_whole`]).
    fn skip(&mut self) -> Scanned<()> {
        if self.root_keys.is_none() && self.plain.is_none() {
            return self.skip_noting(&mut ());
        }
        let mut notes = WholeNotes {
            root_keys: self.root_keys.take(),
            plain: self.plain.take(),
        };
        let skipped = self.skip_noting(&mut notes);
        self.root_keys = notes.root_keys;
        self.plain = notes.plain;
        skipped
    }

    /// [`Scan::skip`], each string shown to `notes`. One loop over a
    /// position held in a local, containers tracked on a stack rather
    /// than by recursion: skipped values are most of the bytes of a
    /// sign-in, and a call per string and per key cost 4-6 % of the
    /// instructions of a hunt over sign-ins or UAL records.
    #[inline(always)]
    fn skip_noting<N: StringNotes>(&mut self, notes: &mut N) -> Scanned<()> {
        let (text, b) = (self.text, self.bytes());
        let base = self.skipping.len();
        let mut i = self.at;
        loop {
            i = past_space(b, i);
            match b.get(i) {
                Some(b'"') => i = past_string(text, i, false, notes)?,
                Some(&open @ (b'{' | b'[')) => {
                    self.enter()?;
                    // `}` and `]` follow `{` and `[` but for one byte.
                    let close = open + 2;
                    i = past_space(b, i + 1);
                    if b.get(i) == Some(&close) {
                        i += 1;
                        self.depth -= 1;
                    } else {
                        self.skipping.push(close);
                        if close == b'}' {
                            i = past_key(text, i, self.skipping.len() == 1, notes)?;
                        }
                        continue;
                    }
                }
                Some(b't') => i = past_word(b, i, b"true")?,
                Some(b'f') => i = past_word(b, i, b"false")?,
                Some(b'n') => i = past_word(b, i, b"null")?,
                Some(_) => {
                    let (end, exponent) = number_end(b, i)?;
                    // Only an exponent or hundreds of digits can put a
                    // number out of the range serde_json builds.
                    if (exponent || end - i > 300)
                        && serde_json::from_str::<Value>(&text[i..end]).is_err()
                    {
                        return Err(Stop);
                    }
                    i = end;
                }
                None => return Err(Stop),
            }
            // Past a value: close what it ended, until the next element.
            loop {
                let Some(&close) = self.skipping.get(base..).and_then(<[u8]>::last) else {
                    self.at = i;
                    return Ok(());
                };
                let closed;
                (i, closed) = past_element(b, i, close)?;
                if closed {
                    self.skipping.pop();
                    self.depth -= 1;
                } else {
                    if close == b'}' {
                        i = past_key(text, i, self.skipping.len() == 1, notes)?;
                    }
                    break;
                }
            }
        }
    }

    /// An object key (a string is expected).
    pub(crate) fn key(&mut self) -> Scanned<Cow<'t, str>> {
        if self.peek()? != b'"' {
            return Err(Stop);
        }
        self.string_text()
    }

    /// A string's text, at its opening quote: borrowed when it has no
    /// escape, else unescaped as serde_json unescapes a string it builds
    /// (an escaped half of a surrogate pair refused), in the same pass:
    /// JSON carried in a string (a PowerShell export's `AuditData`) has an
    /// escape every few bytes.
    #[inline(always)]
    pub(crate) fn string_text(&mut self) -> Scanned<Cow<'t, str>> {
        let b = self.bytes();
        let from = self.at + 1;
        let i = to_special(b, from);
        if b.get(i) == Some(&b'"') {
            self.at = i + 1;
            return Ok(Cow::Borrowed(&self.text[from..i]));
        }
        self.string_text_on(from, i)
    }

    /// [`Scan::string_text`] of a string whose text starts at `from`, past
    /// its first byte `i` that is no plain character. Most strings have
    /// none but their closing quote: out of line, this loop no longer
    /// weighs on every call.
    #[inline(never)]
    fn string_text_on(&mut self, from: usize, mut i: usize) -> Scanned<Cow<'t, str>> {
        let b = self.bytes();
        let mut out = String::with_capacity(i - from + 32);
        let mut run = from;
        loop {
            match b.get(i) {
                Some(b'"') => {
                    out.push_str(&self.text[run..i]);
                    self.at = i + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..i]);
                    // JSON carried in a string escapes its quotes: an
                    // escape every few bytes, answered here without a call.
                    if b.get(i + 1) == Some(&b'"') {
                        out.push('"');
                        i += 2;
                    } else {
                        let (c, len) = unescape(b, i)?;
                        out.push(c);
                        i += len;
                    }
                    run = i;
                }
                // A control character, or the end of the text.
                _ => return Err(Stop),
            }
            i = to_special(b, i);
        }
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        self.at = past_word(self.bytes(), self.at, word)?;
        Ok(())
    }

    /// Past a number, as RFC 8259 writes one; whether it has an exponent.
    pub(crate) fn number(&mut self) -> Scanned<bool> {
        let (end, exponent) = number_end(self.bytes(), self.at)?;
        self.at = end;
        Ok(exponent)
    }
}

/// Past a number at `i`, as RFC 8259 writes one: where it ends, and
/// whether it has an exponent.
#[inline]
fn number_end(b: &[u8], mut i: usize) -> Scanned<(usize, bool)> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return Err(Stop),
    }
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return Err(Stop);
        }
        i = j;
    }
    let exponent = matches!(b.get(i), Some(b'e' | b'E'));
    if exponent {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return Err(Stop);
        }
        i = j;
    }
    Ok((i, exponent))
}

/// Past the whitespace JSON allows from `i`.
#[inline(always)]
fn past_space(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// After an element of a container at `i` (before whitespace): past the
/// container's `close` (true) or the comma before the next element.
#[inline(always)]
fn past_element(b: &[u8], i: usize, close: u8) -> Scanned<(usize, bool)> {
    let i = past_space(b, i);
    match b.get(i) {
        Some(b',') => Ok((i + 1, false)),
        Some(&c) if c == close => Ok((i + 1, true)),
        _ => Err(Stop),
    }
}

/// Past the literal `word` at `i`.
#[inline]
fn past_word(b: &[u8], i: usize, word: &[u8]) -> Scanned<usize> {
    if b.get(i..i + word.len()) != Some(word) {
        return Err(Stop);
    }
    Ok(i + word.len())
}

/// The closing quote of a string whose text starts at `from`, and
/// whether the string has escapes, checked as serde_json checks a string
/// it reads (escapes well formed, no control character).
#[inline(always)]
fn string_end(b: &[u8], from: usize) -> Scanned<(usize, bool)> {
    let mut i = from;
    let mut escaped = false;
    loop {
        i = to_special(b, i);
        match b.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u')
                        if b.get(i + 2..i + 6)
                            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        i += 6
                    }
                    _ => return Err(Stop),
                }
            }
            // A control character, or the end of the text.
            _ => return Err(Stop),
        }
    }
}

/// Past a skipped string at its opening quote `i`, checked as serde_json
/// checks a string it builds, and shown to `notes`.
#[inline(always)]
fn past_string<N: StringNotes>(
    text: &str,
    i: usize,
    root_key: bool,
    notes: &mut N,
) -> Scanned<usize> {
    let b = text.as_bytes();
    let from = i + 1;
    let (to, escaped) = string_end(b, from)?;
    if escaped {
        surrogates_paired(&b[..to], from)?;
    }
    notes.string(text, from, to, escaped, root_key);
    Ok(to + 1)
}

/// Checks the escapes of a string read from `from` to the end of `b`
/// (its closing quote): a half of a surrogate pair is the one thing more
/// than its grammar that a string serde_json builds may not hold.
#[inline(never)]
fn surrogates_paired(b: &[u8], from: usize) -> Scanned<()> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\\', &b[i..]) {
        let (_, len) = unescape(b, i + p)?;
        i += p + len;
    }
    Ok(())
}

/// Past a skipped object's key at `i` (after whitespace) and its colon;
/// `root_key` when the object is the root of a whole text skipped.
#[inline(always)]
fn past_key<N: StringNotes>(text: &str, i: usize, root_key: bool, notes: &mut N) -> Scanned<usize> {
    let b = text.as_bytes();
    let i = past_space(b, i);
    if b.get(i) != Some(&b'"') {
        return Err(Stop);
    }
    let i = past_space(b, past_string(text, i, root_key, notes)?);
    if b.get(i) != Some(&b':') {
        return Err(Stop);
    }
    Ok(i + 1)
}

/// [`names_another_kind`] of an escaped key whose text starts at `from`,
/// unescaped as the full parse names it (the string was checked, so it
/// reads).
#[cold]
fn escaped_names_another_kind(text: &str, from: usize) -> bool {
    let mut scan = Scan::new(text);
    scan.at = from - 1;
    scan.string_text().is_ok_and(|k| names_another_kind(&k))
}

/// What a scan that skips values notes of their strings.
trait StringNotes {
    /// The string `text[from..to]` (as written, between its quotes) was
    /// skipped; `root_key` when it is a key of the root of a whole text
    /// skipped.
    fn string(&mut self, text: &str, from: usize, to: usize, escaped: bool, root_key: bool);
}

/// Notes nothing: a projection's skipped values.
impl StringNotes for () {
    #[inline(always)]
    fn string(&mut self, _: &str, _: usize, _: usize, _: bool, _: bool) {}
}

/// What [`scan_whole`] notes: whether a root key names another kind
/// (when asked), and the strings [`PlainKeys`] counts.
struct WholeNotes {
    root_keys: Option<bool>,
    plain: Option<PlainKeys>,
}

impl StringNotes for WholeNotes {
    #[inline(always)]
    fn string(&mut self, text: &str, from: usize, to: usize, escaped: bool, root_key: bool) {
        let root_key = root_key && self.root_keys.is_some();
        if root_key {
            let named = if escaped {
                escaped_names_another_kind(text, from)
            } else {
                names_another_kind(&text[from..to])
            };
            if named {
                self.root_keys = Some(true);
            }
        }
        if let Some(p) = &mut self.plain {
            // Its bytes as written, escapes and all: what a search of the
            // bytes for a key finds.
            p.note(&text.as_bytes()[from..to], to + 1, root_key);
        }
    }
}

/// The character of the escape at `at` (a backslash) and its length in
/// bytes, as serde_json reads it into a string: `\\u` takes four hex
/// digits of either case, and a surrogate only as the first of a pair.
fn unescape(b: &[u8], at: usize) -> Scanned<(char, usize)> {
    let c = match b.get(at + 1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let n = hex4(b, at + 2)?;
            return match n {
                0xDC00..=0xDFFF => Err(Stop),
                0xD800..=0xDBFF => {
                    if b.get(at + 6..at + 8) != Some(b"\\u") {
                        return Err(Stop);
                    }
                    let low = hex4(b, at + 8)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return Err(Stop);
                    }
                    let c = 0x1_0000 + ((u32::from(n - 0xD800) << 10) | u32::from(low - 0xDC00));
                    char::from_u32(c).map(|c| (c, 12)).ok_or(Stop)
                }
                _ => char::from_u32(u32::from(n)).map(|c| (c, 6)).ok_or(Stop),
            };
        }
        _ => return Err(Stop),
    };
    Ok((c, 2))
}

/// Four hex digits from `at`, either case.
fn hex4(b: &[u8], at: usize) -> Scanned<u16> {
    let digits = b.get(at..at + 4).ok_or(Stop)?;
    digits.iter().try_fold(0u16, |n, &d| {
        let v = char::from(d).to_digit(16).ok_or(Stop)?;
        Ok(n << 4 | v as u16)
    })
}

/// Past the ASCII digits from `i`.
#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The first byte from `i` that ends or escapes a string, or is a control
/// character a string may not hold (the text's length if none): eight
/// bytes at a time, as serde_json looks.
#[inline(always)]
fn to_special(b: &[u8], mut i: usize) -> usize {
    while let Some(w) = word_at(b, i) {
        // The lowest byte marked is always a true one.
        let found = bytes_below(w, 0x20) | bytes_equal(w, b'"') | bytes_equal(w, b'\\');
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
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

/// A record read off its bytes by [`plain_audit`].
#[derive(Debug, PartialEq, Eq)]
pub struct PlainAudit<'t> {
    /// The event's time ([`crate::Event::time`]).
    pub time: time::OffsetDateTime,
    /// The event's workload ([`crate::Event::workload`]).
    pub workload: &'t str,
    /// Whether it names at its root, in any case, a key that lets
    /// [`classify`](crate::event::classify) find a record of another kind
    /// than audit though it opens with a `CreationTime`: a gateway line's
    /// `verdict`, a table's `Type`, an Azure Monitor `category`, a
    /// sign-in's `createdDateTime` or a directory audit's
    /// `activityDateTime`; or a renamed Log Analytics column (`X [UTC]`,
    /// `X_dynamic`), which the full parse folds into `X` before
    /// classifying. Such a key below the root, as in the UAL's `Actor`
    /// lists, or such a text in a value, decides nothing; keys are
    /// compared unescaped, as the full parse names them.
    pub names_another_kind: bool,
}

/// The smallest projection: a UAL record's time and workload read off its
/// bytes, for records nobody needs parsed, in one pass that builds
/// nothing. `None` when the bytes do not say them plainly enough for that
/// to be what the event would read ([`crate::Event::time`],
/// [`crate::Event::workload`]), or when a full parse
/// ([`crate::shadow::parse_str`]) does not read the record (it would
/// count as read though it is not); such a record is parsed instead.
///
/// Plainly means: the record opens with its `CreationTime` (the first of
/// the time fields, so at its root) whose value is a time; it names
/// `CreationTime` and `Workload` (the first of the workload fields) once
/// each, exactly so, `Workload` at the root too, both values free of
/// escapes; and it has no escaped quote (`\"`, or any `\u` escape), so no
/// JSON in a string (a PowerShell export's `AuditData`, Defender's
/// `RawEventData`), and every quote in it opens or closes a string. (Other
/// escapes are common, such as the `\\` of an Exchange folder path, and
/// harmless.) A scan of any time key anywhere, as this once was,
/// counted such records and Graph directory audits (`activityDateTime`)
/// as having no time, and left them out of the per-workload gaps, which
/// they then seemed to open.
///
/// The check that a full parse reads the record and the search for the two
/// keys are one pass: apart, the search was a quarter of the work on a UAL
/// export's records that nobody needs parsed (8.5 % of the CPU of a hunt
/// over UAL with the built-ins, beside 27 % for the check).
pub fn plain_audit(text: &str) -> Option<PlainAudit<'_>> {
    let b = text.as_bytes();
    if !b.starts_with(b"{\"CreationTime\"")
        || memchr::memchr_iter(b'\\', b).any(|i| matches!(b.get(i + 1), Some(b'"' | b'u')))
    {
        return None;
    }
    let (names_another_kind, keys) = scan_whole(text, true)?;
    // No quote is escaped, so every quote opens or closes a string, and
    // every spelling of a key in the bytes is one of the strings the scan
    // met; no `\u` escape either, and no other escape makes a letter, so
    // no string that a full parse reads as one of the keys is spelled
    // otherwise.
    if (keys.times, keys.workloads) != (1, 1) {
        return None;
    }
    let plain = |s: &&str| !s.contains('\\');
    let time = string_after(b, keys.time_key_end?)
        .filter(plain)
        .and_then(crate::timefmt::parse_timestamp)?;
    let workload = string_after(b, keys.workload_key_end?)
        .filter(plain)?
        .trim();
    // A text that opens like JSON is expanded by a parse when it is JSON,
    // and is then no workload the event reads: such a record is left to
    // the parse, JSON or not.
    let reads_as_text = !workload.is_empty() && !workload.starts_with(['{', '[']);
    reads_as_text.then_some(PlainAudit {
        time,
        workload,
        names_another_kind,
    })
}

/// A record whose audit record is JSON carried in a string, read off its
/// text by [`plain_wrapped_audit`]: an audit event whatever its keys name.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainWrapped {
    /// The event's time ([`crate::Event::time`]).
    pub time: time::OffsetDateTime,
    /// The event's workload ([`crate::Event::workload`]).
    pub workload: String,
}

/// [`plain_audit`] for a record that carries its audit record as JSON in
/// the string of its root `AuditData` (a PowerShell export's): the time and
/// workload that record says plainly, read with nothing built but the
/// carried record's text. An event of the record would read them there:
/// its root `AuditData`, once JSON, is its wrapper and makes it an audit
/// event whatever else it names, and its time and workload are the first
/// of their fields, looked for in the wrapper first.
///
/// `None` unless a full parse reads the record, its root names
/// `AuditData` (spelled so) once, with a string, and no key that makes the
/// full parse read it otherwise ([`forces_full`]), and [`plain_audit`]
/// reads the carried record.
pub fn plain_wrapped_audit(text: &str) -> Option<PlainWrapped> {
    let mut scan = Scan::new(text);
    if scan.peek().ok()? != b'{' {
        return None;
    }
    scan.at += 1;
    scan.enter().ok()?;
    let mut carried = None;
    let mut wrappers = 0;
    if scan.peek().ok()? == b'}' {
        return None;
    }
    loop {
        let key = scan.key().ok()?;
        scan.eat(b':').ok()?;
        // Such a record is read on the path that folds or unpacks it.
        if forces_full(&key) {
            return None;
        }
        if key == "AuditData" {
            wrappers += 1;
            if scan.peek().ok()? != b'"' {
                return None;
            }
            carried = Some(scan.string_text().ok()?);
        } else {
            scan.skip().ok()?;
        }
        if scan.close_or_next(b'}').ok()? {
            break;
        }
    }
    scan.end().ok()?;
    if wrappers != 1 {
        return None;
    }
    let carried = carried?;
    let p = plain_audit(&carried)?;
    Some(PlainWrapped {
        time: p.time,
        workload: p.workload.to_owned(),
    })
}

/// One pass over a whole text that builds nothing: `None` unless a full
/// parse reads it; else whether it names a key of another kind at its
/// root ([`PlainAudit::names_another_kind`]) and, if `plain`, what
/// [`plain_audit`] notes of its strings (nothing otherwise).
fn scan_whole(text: &str, plain: bool) -> Option<(bool, PlainKeys)> {
    let mut scan = Scan::new(text);
    // Root keys are noted only when this is set.
    scan.root_keys = Some(false);
    scan.plain = plain.then(PlainKeys::default);
    if scan.skip().is_err() || scan.end().is_err() {
        return None;
    }
    Some((scan.root_keys == Some(true), scan.plain.unwrap_or_default()))
}

/// Whether a full parse reads a text, and whether it names a key of
/// another kind at its root: the scan [`plain_audit`] makes, without its
/// time and workload.
#[cfg(test)]
pub(crate) fn parses_and_names_another_kind(text: &str) -> (bool, bool) {
    scan_whole(text, false).map_or((false, false), |(named, _)| (true, named))
}

/// Whether a root key lets [`classify`](crate::event::classify) find a
/// record of another kind than audit (see
/// [`PlainAudit::names_another_kind`]), ASCII case ignored.
#[inline]
fn names_another_kind(key: &str) -> bool {
    const KEYS: [&str; 5] = [
        "verdict",
        "type",
        "category",
        "createddatetime",
        "activitydatetime",
    ];
    // The renamed Log Analytics columns ([`forces_full`]), which the full
    // parse folds into keys of any name.
    const ENDS: [&str; 2] = [" [utc]", "_dynamic"];
    let k = key.as_bytes();
    // Every root key is asked: most fail on length and last byte.
    if !matches!(k.len(), 4 | 7 | 8 | 15 | 16) && !matches!(k.last(), Some(b']' | b'c' | b'C')) {
        return false;
    }
    KEYS.iter().any(|n| key.eq_ignore_ascii_case(n))
        || ENDS.iter().any(|e| {
            k.len() >= e.len() && k[k.len() - e.len()..].eq_ignore_ascii_case(e.as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{lookup, lookup_all};
    use serde_json::json;

    /// The serde_json visitor the scan replaced (stop 33's code), kept as
    /// the reference the scan must agree with.
    mod reference {
        use std::borrow::Cow;
        use std::fmt;

        use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
        use serde_json::{Map, Value};

        use super::super::{forces_full, Node, Projected, Projection, Slot, NESTED_DEPTH};
        use crate::event::expand_value;

        pub(super) fn parse(p: &Projection, text: &str) -> Result<Projected, serde_json::Error> {
            crate::shadow::reset();
            let mut de = serde_json::Deserializer::from_str(text);
            let out = de.deserialize_any(RootVisitor { node: &p.root })?;
            de.end()?;
            Ok(out)
        }

        /// A string value on a projected path: JSON inside is projected with the
        /// path's node, as a full parse would have expanded it.
        fn project_str(s: Cow<'_, str>, node: &Node, depth: u32) -> Value {
            let t = s.trim_start();
            if depth > 0 && (t.starts_with('{') || t.starts_with('[')) {
                let mut de = serde_json::Deserializer::from_str(t);
                let parsed = NodeSeed {
                    node,
                    depth: depth - 1,
                }
                .deserialize(&mut de)
                .and_then(|v| de.end().map(|_| v));
                if let Ok(v) = parsed {
                    if v.is_object() || v.is_array() {
                        return v;
                    }
                }
            }
            Value::String(s.into_owned())
        }

        struct RootVisitor<'a> {
            node: &'a Node,
        }

        impl<'de> Visitor<'de> for RootVisitor<'_> {
            type Value = Projected;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Projected, A::Error> {
                let mut out = Map::new();
                let mut full = false;
                while let Some(key) = a.next_key::<Key<'de>>()? {
                    let k = key.0;
                    full |= forces_full(&k);
                    if full {
                        a.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    keep(&mut a, &mut out, self.node, k, NESTED_DEPTH)?;
                }
                Ok(if full {
                    Projected::Full
                } else {
                    Projected::Object(Value::Object(out))
                })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Projected, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Projected::Full)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Projected, E> {
                Ok(Projected::Full)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Projected, E> {
                Ok(Projected::Full)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Projected, E> {
                Ok(Projected::Full)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Projected, E> {
                Ok(Projected::Full)
            }
            fn visit_str<E>(self, _: &str) -> Result<Projected, E> {
                Ok(Projected::Full)
            }
            fn visit_unit<E>(self) -> Result<Projected, E> {
                Ok(Projected::Full)
            }
        }

        /// Reads the value of key `k` into `out` when the node keeps it.
        fn keep<'de, A: MapAccess<'de>>(
            a: &mut A,
            out: &mut Map<String, Value>,
            node: &Node,
            k: std::borrow::Cow<'de, str>,
            depth: u32,
        ) -> Result<(), A::Error> {
            match node.find(&k) {
                Some(Slot::Whole) => {
                    let mut v = a.next_value_seed(crate::shadow::Whole)?;
                    expand_value(&mut v, depth);
                    crate::shadow::insert_noting(out, k.into_owned(), v);
                }
                Some(Slot::Inner(n)) => {
                    let v = a.next_value_seed(NodeSeed { node: n, depth })?;
                    crate::shadow::insert_noting(out, k.into_owned(), v);
                }
                None => {
                    a.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }

        /// A value below a kept key: objects keep their node's keys, arrays
        /// project each element, strings holding JSON are projected too.
        struct NodeSeed<'a> {
            node: &'a Node,
            depth: u32,
        }

        impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
            type Value = Value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                d.deserialize_any(self)
            }
        }

        impl<'de> Visitor<'de> for NodeSeed<'_> {
            type Value = Value;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Map::new();
                while let Some(key) = a.next_key::<Key<'de>>()? {
                    keep(&mut a, &mut out, self.node, key.0, self.depth)?;
                }
                Ok(Value::Object(out))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element_seed(NodeSeed {
                    node: self.node,
                    depth: self.depth,
                })? {
                    out.push(v);
                }
                Ok(Value::Array(out))
            }

            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(project_str(Cow::Borrowed(s), self.node, self.depth))
            }
            fn visit_string<E>(self, s: String) -> Result<Value, E> {
                Ok(project_str(Cow::Owned(s), self.node, self.depth))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
                Ok(Value::from(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
                Ok(Value::from(n))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
        }

        /// An object key, borrowed from the input when it has no escapes.
        struct Key<'de>(std::borrow::Cow<'de, str>);

        impl<'de> serde::Deserialize<'de> for Key<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Key<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("an object key")
                    }
                    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                        Ok(Key(std::borrow::Cow::Borrowed(s)))
                    }
                    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                        Ok(Key(std::borrow::Cow::Owned(s.to_string())))
                    }
                    fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                        Ok(Key(std::borrow::Cow::Owned(s)))
                    }
                }
                d.deserialize_str(V)
            }
        }
    }

    fn full(b: &str) -> Value {
        let mut v: Value = serde_json::from_str(b).unwrap();
        crate::event::expand_nested(&mut v, NESTED_DEPTH);
        v
    }

    /// The search for other kinds' keys answers alike with and without
    /// SIMD, in any case, and only for keys at the root.
    #[test]
    fn other_kind_keys_are_found_at_the_root() {
        let cases = [
            (r#"{"CreationTime":"t","Type":"SigninLogs"}"#, true),
            (r#"{"CreationTime":"t","tYpE":"x"}"#, true),
            (r#"{"CreationTime":"t","VERDICT":"deny"}"#, true),
            (r#"{"CreationTime":"t","a":{"b":1},"Category":"c"}"#, true),
            (r#"{"CreationTime":"t","CreatedDateTime":"t"}"#, true),
            (r#"{"CreationTime":"t","activityDateTime":"t"}"#, true),
            (r#"{"CreationTime":"t","CreatedDateTime [UTC]":"t"}"#, true),
            (r#"{"CreationTime":"t","Type_dynamic":"x"}"#, true),
            // A match below the root, then one at the root.
            (
                r#"{"CreationTime":"t","Actor":[{"Type":5}],"Type":"SigninLogs"}"#,
                true,
            ),
            (r#"{"CreationTime":"t","X":"a{b[c","Type":"x"}"#, true),
            (r#"{"CreationTime":"t","X":"a{b","Y":{"type":1}}"#, false),
            (
                r#"{"CreationTime":"t","A":{"B [UTC]":1,"C_dynamic":2}}"#,
                false,
            ),
            (
                r#"{"CreationTime":"t","Actor":[{"Type":5}],"Target":{"category":"c"}}"#,
                false,
            ),
            (
                r#"{"CreationTime":"t","UserType":0,"RecordType":2,"Types":"x"}"#,
                false,
            ),
            // A value is no key; an escaped key is compared unescaped.
            (r#"{"CreationTime":"t","Operation":"Type"}"#, false),
            (r#"{"CreationTime":"t","Operation":"x [UTC]"}"#, false),
            (r#"{"CreationTime":"t","T\u0079pe":"x"}"#, true),
            (r#"{"CreationTime":"t","a\u005fdynamic":"x"}"#, true),
        ];
        for (r, named) in cases {
            assert_eq!(parses_and_names_another_kind(r), (true, named), "{r}");
        }
        // Text that is not JSON does not parse, so it is parsed in full
        // and refused, whatever its keys.
        assert!(!parses_and_names_another_kind(r#"{"CreationTime":"t","Operation":}"#).0);
    }

    /// Random record text (ASCII, with `\u` escapes for the rest): keys
    /// that projections keep and skip in several cases, repeated keys,
    /// JSON in strings, numbers serde_json reads its own way.
    fn random_value(rng: &mut fastrand::Rng, depth: u32, out: &mut String) {
        const KEYS: [&str; 18] = [
            "UserId",
            "userid",
            "AppAccessContext",
            "UniqueTokenId",
            "Folders",
            "FolderItems",
            "OperationProperties",
            "a",
            "b",
            "a.b",
            "Deep",
            "x",
            "AuditData",
            "Other",
            "value",
            "Name",
            "Skip",
            "Noise",
        ];
        const SCALARS: [&str; 31] = [
            "0",
            "-0",
            "1",
            "-1",
            "1.5",
            "1e400",
            "-1e-400",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "1E+2",
            "0.000001",
            "true",
            "false",
            "null",
            r#""""#,
            r#""plain""#,
            r#""caf\u00e9""#,
            r#""lone \ud800 half""#,
            r#""q\"uote\\ \/ \b\f\n\r\t""#,
            r#""\uD83D\uDE00""#,
            r#"" padded ""#,
            r#""\uDC00""#,
            r#""\uD83D""#,
            r#""\uD83Dx""#,
            r#""\uD83D\u0041""#,
            r#""\uD83D\n""#,
            r#""\u00""#,
            r#""\u0000\u001F\uFFFF\uabcd""#,
            "\"raw caf\u{e9} \u{65e5}\u{672c} \u{1f600}\"",
            "\"\u{a0}{\\\"UserId\\\":2}\"",
        ];
        let pick = rng.u32(0..10);
        if depth == 0 || pick < 4 {
            out.push_str(SCALARS[rng.usize(..SCALARS.len())]);
        } else if pick < 7 {
            out.push('{');
            for i in 0..rng.usize(0..5) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{:?}:", KEYS[rng.usize(..KEYS.len())]));
                random_value(rng, depth - 1, out);
            }
            out.push('}');
        } else if pick < 9 {
            out.push('[');
            for i in 0..rng.usize(0..4) {
                if i > 0 {
                    out.push(',');
                }
                random_value(rng, depth - 1, out);
            }
            out.push(']');
        } else {
            // JSON carried in a string.
            let mut inner = String::new();
            random_value(rng, depth - 1, &mut inner);
            out.push_str(&serde_json::to_string(&inner).unwrap());
        }
    }

    /// A few bytes changed where JSON is most easily broken.
    fn mutate(rng: &mut fastrand::Rng, text: &str) -> Option<String> {
        const BYTES: &[u8] = b"{}[]\",:\\ \t\r\n0-9eE.tfnu\x01\x1f";
        let mut b = text.as_bytes().to_vec();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..=b.len());
            match rng.u8(0..3) {
                0 if at < b.len() => {
                    b.remove(at);
                }
                1 if at < b.len() => b[at] = BYTES[rng.usize(..BYTES.len())],
                _ => b.insert(at, BYTES[rng.usize(..BYTES.len())]),
            }
        }
        String::from_utf8(b).ok()
    }

    /// Whether `b` is `a` with some objects or arrays left as the JSON
    /// strings they were read from, where that JSON is not what a full
    /// parse reads (so a full parse does not expand it either).
    fn alike_but_unexpanded(a: &Value, b: &Value) -> bool {
        match (a, b) {
            _ if a == b => true,
            (Value::Object(_) | Value::Array(_), Value::String(s)) => {
                crate::shadow::parse_str(s.trim_start()).is_err()
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((ka, va), (kb, vb))| ka == kb && alike_but_unexpanded(va, vb))
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(va, vb)| alike_but_unexpanded(va, vb))
            }
            _ => false,
        }
    }

    /// The scan keeps what serde_json's visitor kept and notes the same
    /// repeated keys, on every text a full parse reads; it refuses what
    /// the visitor refused, and what it let through though a full parse
    /// refuses it (in values it skipped); it tells which texts a full
    /// parse reads.
    #[test]
    fn the_scan_agrees_with_the_serde_json_visitor_it_replaced() {
        let paths = [
            "UserId",
            "AppAccessContext.UniqueTokenId",
            "Folders.FolderItems",
            "OperationProperties",
            "a.b",
            "Deep.x",
            "Other",
        ];
        let p = Projection::new(paths);
        let declared: Vec<String> = paths
            .iter()
            .flat_map(|path| {
                std::iter::once(path.to_string())
                    .chain(WRAPPERS.iter().map(move |w| format!("{w}.{path}")))
            })
            .collect();
        let deep = |open: &str, close: &str, n: usize, key: &str| {
            format!(
                r#"{{"UserId":"u","{key}":{}{}}}"#,
                open.repeat(n),
                close.repeat(n)
            )
        };
        let mut texts = vec![
            r#"{"a":1,}"#.to_string(),
            r#"{"a":[1,]}"#.to_string(),
            r#"{"Skip":[1,]}"#.to_string(),
            r#"{"Skip":[[1],]}"#.to_string(),
            r#"{"Skip":{"a":1,}}"#.to_string(),
            r#"{"Skip":{"a":[{},[]],"b":{"c":{}}}}"#.to_string(),
            r#"{"Skip":{"a" 1}}"#.to_string(),
            r#"{"Skip":{1:1}}"#.to_string(),
            r#"{"Skip":[1 2]}"#.to_string(),
            r#"{"Skip":tru}"#.to_string(),
            r#"{"Skip":-}"#.to_string(),
            r#"{"Skip":1.}"#.to_string(),
            r#"{"Skip":1e}"#.to_string(),
            format!(r#"{{"Skip":1{}}}"#, "0".repeat(400)),
            format!(r#"{{"Other":1{}}}"#, "0".repeat(400)),
            format!(r#"{{"Skip":1{},"UserId":"u"}}"#, "0".repeat(300)),
            "{\t\"UserId\"\r\n:\n\"u\" ,\"Skip\":[ 1 ,\t2 ]\r\n}".to_string(),
            "{\"UserId\":\"caf\u{e9} \u{65e5}\u{672c} \u{fc}\",\"Skip\":\"\u{fc}\u{65e5}\"}"
                .to_string(),
            r#"{"AuditData":"\u00a0 {\"UserId\":\"after no-break space\"}"}"#.to_string(),
            "{\"AuditData\":\"\u{2003}[{\\\"UserId\\\":1}]\"}".to_string(),
            r#"{"User\u0049d":"escaped key","Other":"x"}"#.to_string(),
            r#"{"\ud800":1,"UserId":"after a bad key"}"#.to_string(),
            r#"{"Skip":"\ud800","UserId":"after a skipped half pair"}"#.to_string(),
            r#"{"UserId":"\ud800\udc00\\\"\/ end"}"#.to_string(),
            r#"{"UserId":01}"#.to_string(),
            r#"{"UserId":"\x"}"#.to_string(),
            "{\"UserId\":\"tab\there\"}".to_string(),
            r#"{"Other":"\u12"}"#.to_string(),
            r#"{"Skip":"\u12"}"#.to_string(),
            r#"{"UserId":"a"} "#.to_string(),
            r#" {"UserId":"a"}"#.to_string(),
            r#"{"UserId":"a"}}"#.to_string(),
            r#"{"AuditData":"{\"UserId\":\"in\",\"UserId\":\"twice\"}"}"#.to_string(),
            r#"{"AuditData":"{\"UserId\":\"in\",\"UserId\":\"twice\""}"#.to_string(),
            r#"{"AuditData":" [{\"UserId\":1e400}]"}"#.to_string(),
        ];
        for n in [1, 126, 127, 128, 129, 300, 20_000] {
            for key in ["Other", "Skipped", "Deep"] {
                texts.push(deep("[", "]", n, key));
                texts.push(deep("{\"x\":", "}", n, key).replace(":}", ":0}"));
            }
        }
        let mut rng = fastrand::Rng::with_seed(0x5ca7);
        for _ in 0..20_000 {
            let mut t = String::new();
            random_value(&mut rng, 5, &mut t);
            if rng.bool() {
                t = format!(r#"{{"UserId":"u","Other":{t}}}"#);
            }
            if let Some(m) = mutate(&mut rng, &t).filter(|_| rng.u8(..3) == 0) {
                t = m;
            }
            texts.push(t);
        }
        let (mut objects, mut refused, mut mended) = (0, 0, 0);
        for t in &texts {
            let old = reference::parse(&p, t);
            let old_notes = crate::shadow::take();
            let new = p.parse(t);
            let new_notes = crate::shadow::take();
            assert_eq!(
                parses_and_names_another_kind(t).0,
                crate::shadow::parse_str(t).is_ok(),
                "{t}"
            );
            crate::shadow::reset();
            let full = crate::shadow::parse_str(t).ok().map(|mut v| {
                crate::event::expand_nested(&mut v, NESTED_DEPTH);
                v
            });
            crate::shadow::reset();
            match (&old, &new) {
                (Ok(Projected::Object(a)), Ok(Projected::Object(b))) if full.is_some() => {
                    // Every declared path reads as on the full record.
                    let f = full.as_ref().expect("a full parse");
                    for path in &declared {
                        let (mut on_b, mut on_f) = (Vec::new(), Vec::new());
                        lookup_all(b, path, &mut on_b);
                        lookup_all(f, path, &mut on_f);
                        assert_eq!(on_b, on_f, "{path} in {t}");
                    }
                    // The visitor's value, but for JSON in strings that a
                    // full parse does not expand.
                    assert!(alike_but_unexpanded(a, b), "{t}: {a} {b}");
                    // The same copies noted, but for JSON in a string
                    // that a full parse does not expand (its skipped
                    // values hold what a full parse refuses), which the
                    // visitor expanded; likewise in the values kept.
                    let unexpanded = |v: &Value| {
                        v.as_str()
                            .is_some_and(|s| serde_json::from_str::<Value>(s).is_err())
                    };
                    assert!(
                        old_notes.len() == new_notes.len()
                            && old_notes
                                .iter()
                                .zip(&new_notes)
                                .all(
                                    |((ka, va), (kb, vb))| ka == kb && (va == vb || unexpanded(vb))
                                ),
                        "{t}: {old_notes:?} {new_notes:?}"
                    );
                    if a != b || old_notes != new_notes {
                        mended += 1;
                    }
                    objects += 1;
                }
                // The visitor projected what a full parse refuses (in a
                // value it skipped); the scan leaves it to that parse.
                (Ok(Projected::Object(_)), Err(_) | Ok(Projected::Full)) if full.is_none() => {
                    mended += 1
                }
                (Ok(Projected::Full), Ok(Projected::Full)) => {}
                // Both go to the full parse.
                (Err(_), Err(_) | Ok(Projected::Full)) => refused += 1,
                _ => panic!("{t}: serde_json's visitor {old:?}, the scan {new:?}"),
            }
        }
        // The cases above are not all of one kind.
        assert!(
            objects > 5_000 && refused > 2_000 && mended > 50,
            "{objects} {refused} {mended}"
        );
    }

    #[test]
    fn declared_paths_answer_as_on_the_full_record() {
        let rec = r#"{"CreationTime":"2023-06-19T01:30:00","Operation":"MailItemsAccessed","Skip":{"deep":[1,{"a":"b"}]},"clientip":"51.89.156.153","OperationProperties":"[{\"Name\":\"MailAccessType\",\"Value\":\"Bind\"}]","AppAccessContext":{"AADSessionId":"s1","UniqueTokenId":"t1","Other":"x"},"Folders":[{"Path":"\\Inbox","FolderItems":[{"Id":1},{"Id":2}]}],"a.b":5,"AuditData":"{\"UserId\":\"u@x\",\"Noise\":[1,2,3]}"}"#;
        let paths = [
            "CreationTime",
            "ClientIP",
            "OperationProperties",
            "AppAccessContext.UniqueTokenId",
            "Folders.FolderItems",
            "Folders.0.Path",
            "a.b",
            "UserId",
        ];
        let p = Projection::new(paths);
        let Projected::Object(v) = p.parse(rec).unwrap() else {
            panic!("an object projects")
        };
        let f = full(rec);
        for path in paths.iter().chain(&["AuditData.UserId"]) {
            assert!(p.reaches(path), "{path}");
            assert_eq!(lookup(&v, path), lookup(&f, path), "{path}");
        }
        assert!(v.get("Skip").is_none());
        assert!(lookup(&v, "AppAccessContext.Other").is_none());
        assert!(lookup(&v, "AuditData.Noise").is_none());
        assert!(!p.reaches("Skip"));
        assert!(!p.reaches("AppAccessContext.Other"));
    }

    /// A key kept for scalar reads answers them as the whole value does,
    /// whatever its copies hold (a scalar, an object or array it does not
    /// build, JSON in a string), whether paths below it are declared too,
    /// before or after, and notes the earlier copy of a key named twice as
    /// a scalar read of the full parse's note would see it.
    #[test]
    fn keys_kept_for_scalar_reads_answer_them_as_the_whole_value() {
        fn scalar(v: Option<&Value>) -> Option<String> {
            match v? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
        let values = [
            r#""Dan Smith""#,
            "12",
            "true",
            "null",
            r#"{"claims":{"uti":"u1","upn":"a@x"},"other":[1,2]}"#,
            r#"[1,{"claims":{"uti":"u2"}}]"#,
            r#""{\"claims\":{\"uti\":\"u3\"}}""#,
            r#""[1]""#,
            r#""{not json""#,
            "{}",
        ];
        let projections: [fn() -> Projection; 4] = [
            || {
                let mut p = Projection::new(["time"]);
                p.add_scalar("identity");
                p
            },
            || {
                let mut p = Projection::new(["time"]);
                p.add_scalar("identity");
                p.add("identity.claims.uti");
                p
            },
            || {
                let mut p = Projection::new(["time", "identity.claims.uti"]);
                p.add_scalar("identity");
                p
            },
            || {
                let mut p = Projection::new(["time", "identity"]);
                p.add_scalar("identity");
                p
            },
        ];
        let mut rng = fastrand::Rng::with_seed(40);
        let mut objects = 0;
        for _ in 0..2000 {
            let copies: Vec<&str> = (0..rng.usize(1..3))
                .map(|_| values[rng.usize(..values.len())])
                .collect();
            let mut rec = String::from(r#"{"time":"2024-03-05T00:09:24Z""#);
            for c in &copies {
                rec.push_str(r#","noise":{"a":[1,2]},"identity":"#);
                rec.push_str(c);
            }
            rec.push('}');
            // The full parse, its JSON in strings expanded as an event's is.
            crate::shadow::reset();
            let mut f = crate::shadow::parse_str(&rec).unwrap();
            crate::event::expand_nested(&mut f, NESTED_DEPTH);
            let full_noted: Vec<Option<String>> = crate::shadow::take()
                .into_iter()
                .filter(|(k, _)| k == "identity")
                .map(|(_, mut v)| {
                    expand_value(&mut v, NESTED_DEPTH);
                    scalar(Some(&v))
                })
                .collect();
            for (pi, make) in projections.iter().enumerate() {
                let p = make();
                assert!(p.reaches("identity"));
                let Projected::Object(v) = p.parse(&rec).unwrap() else {
                    panic!("{rec}")
                };
                let noted: Vec<Option<String>> = crate::shadow::take()
                    .iter()
                    .filter(|(k, _)| k == "identity")
                    .map(|(_, v)| scalar(Some(v)))
                    .collect();
                let (got, want) = (lookup(&v, "identity"), lookup(&f, "identity"));
                assert_eq!(scalar(got), scalar(want), "{pi}: {rec}");
                assert_eq!(got.is_some(), want.is_some(), "{pi}: {rec}");
                assert_eq!(
                    got.is_some_and(Value::is_object),
                    want.is_some_and(Value::is_object)
                );
                assert_eq!(
                    got.is_some_and(Value::is_array),
                    want.is_some_and(Value::is_array)
                );
                assert_eq!(noted, full_noted, "{pi}: {rec}");
                if pi > 0 {
                    assert_eq!(
                        lookup(&v, "identity.claims.uti"),
                        lookup(&f, "identity.claims.uti"),
                        "{pi}: {rec}"
                    );
                }
                if pi == 0 && want.is_some_and(|w| w.as_object().is_some_and(|m| !m.is_empty())) {
                    // Not built: kept with nothing inside.
                    assert_eq!(got, Some(&json!({})));
                    objects += 1;
                }
            }
        }
        assert!(objects > 200, "{objects}");
    }

    #[test]
    fn envelopes_columns_and_non_objects_take_the_full_parse() {
        let p = Projection::new(["CreationTime"]);
        for b in [
            r#"{"value":[]}"#,
            r#"{"A [UTC]":"x"}"#,
            "[1]",
            "3",
            r#""s""#,
        ] {
            assert!(matches!(p.parse(b).unwrap(), Projected::Full), "{b}");
        }
        assert!(p.parse(r#"{"a":1"#).is_err());
        assert!(p.parse(r#"{"a":1} x"#).is_err());
    }

    #[test]
    fn columns_project_json_cells() {
        let p = Projection::new(["AppAccessContext.UniqueTokenId", "Operation"]);
        let row = [
            ("Operation", "MailItemsAccessed"),
            ("Noise", "x"),
            (
                "AuditData",
                r#"{"AppAccessContext":{"UniqueTokenId":"t9","X":1},"Y":2}"#,
            ),
        ];
        let v = p.project_slotted(row.map(|(k, cell)| (k, cell, p.root_slot(k))));
        assert_eq!(
            v,
            json!({"Operation":"MailItemsAccessed","AuditData":{"AppAccessContext":{"UniqueTokenId":"t9"}}})
        );
    }

    /// What `plain_audit` replaced: stop 36's search of the bytes for the
    /// two keys (each key spelled exactly once, the workload's at depth 1,
    /// counted byte by byte), then the scan checking that a full parse
    /// reads the text. Kept as the reference it must agree with. The scan
    /// is the one `plain_audit` runs (its own test checks it against a
    /// full parse), so this compares the search for the keys.
    fn reference_plain(text: &str) -> Option<PlainAudit<'_>> {
        let b = text.as_bytes();
        let find =
            |needle: &[u8], from: usize| memchr::memmem::find(&b[from..], needle).map(|i| i + from);
        if !b.starts_with(b"{")
            || !b[1..].starts_with(b"\"CreationTime\"")
            || memchr::memchr_iter(b'\\', b).any(|i| matches!(b.get(i + 1), Some(b'"' | b'u')))
        {
            return None;
        }
        let once = |key: &[u8]| -> Option<usize> {
            let after = find(key, 0)? + key.len();
            find(key, after).is_none().then_some(after)
        };
        let plain = |s: &&str| !s.contains('\\');
        let time = string_after(b, once(b"\"CreationTime\"")?)
            .filter(plain)
            .and_then(crate::timefmt::parse_timestamp)?;
        let after = once(b"\"Workload\"")?;
        let (mut depth, mut in_string) = (0usize, false);
        for &c in &b[..after] {
            match c {
                b'"' => in_string = !in_string,
                b'{' | b'[' if !in_string => depth += 1,
                b'}' | b']' if !in_string => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if depth != 1 {
            return None;
        }
        let workload = string_after(b, after).filter(plain)?.trim();
        if workload.is_empty() || workload.starts_with(['{', '[']) {
            return None;
        }
        let (parses, names_another_kind) = parses_and_names_another_kind(text);
        parses.then_some(PlainAudit {
            time,
            workload,
            names_another_kind,
        })
    }

    /// UAL-like record text that opens with its `CreationTime`: the keys
    /// `plain_audit` looks for named once, twice, below the root, as
    /// values, escaped, with other values than text; escapes that make
    /// JSON in strings; keys of other kinds; random values; sometimes
    /// broken.
    fn plain_like(rng: &mut fastrand::Rng) -> String {
        const TIMES: [&str; 6] = [
            r#""2023-06-10T10:00:00""#,
            r#" "2023-06-10T10:00:00Z""#,
            "\n\"2023-06-10T10:00:00\"",
            r#""bad""#,
            r#""2023-06-10T10:00:00\\""#,
            "1",
        ];
        const FIELDS: [&str; 23] = [
            r#""Workload":"Exchange""#,
            r#""Workload":"Exchange""#,
            r#""Workload": "SharePoint ""#,
            "\"Workload\":\r\n\"Teams\"",
            r#""Workload":" ""#,
            r#""Workload":1"#,
            r#""Workload":"Ex\\change""#,
            r#""Workload":" [1]""#,
            r#""X":"Workload""#,
            r#""X":["Workload"]"#,
            r#""N":{"Workload":"Y"}"#,
            r#""N":{"CreationTime":"2023-06-11T00:00:00"}"#,
            r#""CreationTimes":"x""#,
            r#""Work\\load":"x""#,
            r#""Path":"a\\b""#,
            r#""Esc":"q\"uote""#,
            r#""U":"\u0041""#,
            r#""End":"x\\""#,
            r#""Type":"x""#,
            r#""category":"c""#,
            r#""A [UTC]":1"#,
            r#""b_Dynamic":1"#,
            r#""Id":"7","Operation":"Send""#,
        ];
        // Half the records say both plainly, with other fields that
        // leave them so: the rest are mostly refused.
        let plain = rng.bool();
        let time = TIMES[rng.usize(..if plain { 2 } else { TIMES.len() })];
        let mut fields = vec![format!(r#""CreationTime":{time}"#)];
        if plain {
            fields.push(FIELDS[rng.usize(..3)].to_string());
        }
        for _ in 0..rng.usize(0..6) {
            if plain {
                fields.push(FIELDS[rng.usize(12..FIELDS.len())].to_string());
            } else if rng.u8(..4) == 0 {
                let mut v = String::new();
                random_value(rng, 3, &mut v);
                fields.push(format!(r#""K":{v}"#));
            } else {
                fields.push(FIELDS[rng.usize(..FIELDS.len())].to_string());
            }
        }
        rng.shuffle(&mut fields[1..]);
        object_of(rng, &fields, 4)
    }

    /// The object of `fields`, one time in `broken` a little broken
    /// ([`mutate`]).
    fn object_of(rng: &mut fastrand::Rng, fields: &[String], broken: u8) -> String {
        let t = format!("{{{}}}", fields.join(","));
        match mutate(rng, &t).filter(|_| rng.u8(..broken) == 0) {
            Some(m) => m,
            None => t,
        }
    }

    /// One pass answers as the two it replaced, on every text: where they
    /// answered, with the same time, workload and kind keys.
    #[test]
    fn plain_audit_answers_as_the_search_and_scan_it_replaced() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut answered = 0;
        for _ in 0..20_000 {
            let t = plain_like(&mut rng);
            let new = plain_audit(&t);
            assert_eq!(new, reference_plain(&t), "{t}");
            answered += usize::from(new.is_some());
        }
        assert!(answered > 1_000, "{answered}");
    }

    /// The length and last-byte test in front of `names_another_kind`
    /// passes every key the comparisons behind it accept.
    #[test]
    fn kind_keys_pass_the_length_test() {
        fn compared(key: &str) -> bool {
            let k = key.as_bytes();
            [
                "verdict",
                "type",
                "category",
                "createddatetime",
                "activitydatetime",
            ]
            .iter()
            .any(|n| key.eq_ignore_ascii_case(n))
                || [" [utc]", "_dynamic"].iter().any(|e| {
                    k.len() >= e.len() && k[k.len() - e.len()..].eq_ignore_ascii_case(e.as_bytes())
                })
        }
        let mut rng = fastrand::Rng::with_seed(5);
        let pieces = [
            "verdict",
            "TYPE",
            "Category",
            "createdDateTime",
            "ActivityDateTime",
            " [UTC]",
            "_dynamic",
            "_DYNAMIC",
            "x",
            "c",
            "]",
            "ab",
        ];
        let mut named = 0;
        for _ in 0..20_000 {
            let key: String = (0..rng.usize(1..3))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            assert_eq!(names_another_kind(&key), compared(&key), "{key:?}");
            named += usize::from(compared(&key));
        }
        assert!(named > 1_000, "{named}");
    }

    /// The scan answers only where the event would read the same, and
    /// says so by answering at all.
    #[test]
    fn time_and_workload_off_the_bytes_only_where_plain() {
        let plain = br#"{"CreationTime": "2023-06-10T10:00:00","Id":"1","X":{"a":"}"},"ObjectId":"a\\Inbox","Workload":" Exchange "}"#;
        let p = plain_audit(std::str::from_utf8(plain).unwrap()).unwrap();
        let (t, w) = (p.time, p.workload);
        assert_eq!(crate::timefmt::rfc3339(t), "2023-06-10T10:00:00Z");
        assert_eq!(w, "Exchange", "trimmed, as the event's");
        // The event reads the same.
        let ev = crate::Event::from_record(
            serde_json::from_slice(plain).unwrap(),
            None,
            std::sync::Arc::from("f"),
            tokenward_logread::Locator { line: 1, record: 1 },
        );
        assert_eq!((ev.time, ev.workload()), (Some(t), Some(w)));
        for not_plain in [
            // Another time field first, or none.
            &br#"{"Id":"1","CreationTime":"2023-06-10T10:00:00","Workload":"Exchange"}"#[..],
            br#"{"activityDateTime":"2023-06-10T10:00:00Z","Workload":"Exchange"}"#,
            // A time that does not parse; no workload, or a later-listed one.
            br#"{"CreationTime":"bad","Workload":"Exchange"}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","category":"SignInLogs"}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","OfficeWorkload":"Exchange"}"#,
            // Named twice (an inner record may say otherwise).
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"Exchange","AuditData":{"CreationTime":"2023-06-11T10:00:00"}}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"Exchange","X":{"Workload":"Teams"}}"#,
            // JSON in a string, escaped either way; an escaped value.
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"Exchange","AuditData":"{\"Workload\":\"Teams\"}"}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"Exchange","AuditData":"{\u0022CreationTime\u0022:\u00222023-06-11T09:00:00\u0022}"}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"Ex\u0063hange"}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"Ex\\change"}"#,
            // The workload only below the root.
            br#"{"CreationTime":"2023-06-10T10:00:00","Operation":"X","Data":{"Workload":"Teams"}}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","Items":[{"Workload":"X"}]}"#,
            // An empty workload (the next field would be read).
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":" ","category":"X"}"#,
            // A workload that opens like JSON (a parse expands the first).
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"[]","category":"X"}"#,
            br#"{"CreationTime":"2023-06-10T10:00:00","Workload":"{x"}"#,
            b"{}",
        ] {
            assert!(
                plain_audit(std::str::from_utf8(not_plain).unwrap()).is_none(),
                "{}",
                String::from_utf8_lossy(not_plain)
            );
        }
    }

    /// A record carrying its audit record in the string of `AuditData`
    /// (a PowerShell export's), with that record's own oddities
    /// ([`plain_like`]) and the carrier's: the key named twice, in
    /// another case, with another value than a string; keys that make a
    /// full parse read it otherwise; sometimes broken.
    fn wrapped_like(rng: &mut fastrand::Rng) -> String {
        let carried = serde_json::to_string(&plain_like(rng)).unwrap();
        let mut fields = vec![
            r#""RunspaceId":"6f7c5a1e""#.to_string(),
            r#""RecordType":15"#.to_string(),
            r#""CreationDate":"\/Date(1686391200000)\/""#.to_string(),
            r#""Operations":"Send""#.to_string(),
            r#""IsValid":true"#.to_string(),
            format!(r#""AuditData":{carried}"#),
        ];
        const ODD: [&str; 9] = [
            r#""AuditData":"{\"CreationTime\":\"2023-06-11T00:00:00\",\"Workload\":\"Teams\"}""#,
            r#""auditdata":"x""#,
            r#""AuditData":{"CreationTime":"2023-06-11T00:00:00","Workload":"Teams"}"#,
            r#""AuditData":7"#,
            r#""Type":"x""#,
            r#""records":[]"#,
            r#""A [UTC]":1"#,
            r#""Workload":"Root""#,
            r#""CreationTime":"2023-06-12T00:00:00""#,
        ];
        for _ in 0..rng.usize(0..3) {
            if rng.bool() {
                fields.push(ODD[rng.usize(..ODD.len())].to_string());
            }
        }
        rng.shuffle(&mut fields);
        object_of(rng, &fields, 8)
    }

    /// Where `plain_wrapped_audit` answers, a full parse reads the record
    /// and its event is an audit event with that time and workload.
    #[test]
    fn a_carried_record_is_read_plainly_only_where_its_event_reads_the_same() {
        let mut rng = fastrand::Rng::with_seed(39);
        let mut answered = 0;
        for _ in 0..20_000 {
            let t = wrapped_like(&mut rng);
            let Some(p) = plain_wrapped_audit(&t) else {
                continue;
            };
            answered += 1;
            crate::shadow::reset();
            let v = crate::shadow::parse_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
            // A carrier named twice would count as a record with a
            // duplicate key, parsed.
            assert!(
                crate::shadow::take().iter().all(|(k, _)| k != "AuditData"),
                "{t}"
            );
            let ev = crate::Event::from_record(
                v,
                Some(crate::EventKind::Audit),
                std::sync::Arc::from("f"),
                tokenward_logread::Locator { line: 1, record: 1 },
            );
            assert_eq!(ev.kind, crate::EventKind::Audit, "{t}");
            assert_eq!(
                (ev.time, ev.workload()),
                (Some(p.time), Some(p.workload.as_str())),
                "{t}"
            );
        }
        assert!(answered > 1_000, "{answered}");
    }

    #[test]
    fn duplicate_kept_keys_are_flagged() {
        let p = Projection::new(["UserId", "AppAccessContext.UniqueTokenId"]);
        p.parse(r#"{"UserId":"a","X":1,"X":2}"#).unwrap();
        assert!(!crate::shadow::any(), "keys nobody reads do not count");
        let Projected::Object(v) = p.parse(r#"{"UserId":"a","UserId":"b"}"#).unwrap() else {
            panic!()
        };
        assert!(crate::shadow::any());
        assert_eq!(v["UserId"], "b", "the last copy wins, as in a full parse");
        p.parse(r#"{"AppAccessContext":{"UniqueTokenId":"t","UniqueTokenId":"u"}}"#)
            .unwrap();
        assert!(crate::shadow::any(), "nested keys too");
        p.parse(r#"{"UserId":"a"}"#).unwrap();
        assert!(!crate::shadow::any(), "reset by each parse");
    }
}
