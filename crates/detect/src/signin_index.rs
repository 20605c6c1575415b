//! The sign-in index: which tokens, sessions and client addresses Entra
//! sign-ins issued or used, and over what time. Detections that declare
//! [`Needs::signin_index`](super::Needs::signin_index) read it; the engine
//! builds it in parallel shards from sign-in events, reading sign-in files
//! before the others so that audit records already explained by a sign-in
//! are settled as they stream by.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, OnceLock};

use time::{Duration, OffsetDateTime};

use super::{widen, KeyHasher, Kinds, Needs};
use tokenward_event::{Event, EventKind};
use tokenward_spill::spilling::read_at;

/// Bytes of packed ids the index holds in memory before it moves the
/// largest sets to temporary files ([`SigninIndex::with_memory`]).
pub const DEFAULT_INDEX_MEMORY: usize = 32 << 20;

/// Tokens, sessions and addresses of the sign-ins read.
#[derive(Clone, Debug)]
pub struct SigninIndex {
    /// Sign-in events indexed.
    pub signins: u64,
    /// `uniqueTokenIdentifier` values.
    pub tokens: Ids,
    /// Session ids, lower-cased (audit records spell them in either case).
    pub sessions: Ids,
    /// Client addresses.
    pub ips: Ids,
    /// First and last sign-in time.
    pub range: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Per tenant (lower-cased; empty when the sign-in names none), the UTC
    /// days that have sign-ins. Coverage has holes: sign-ins on two days
    /// months apart do not cover the months between.
    pub days: HashMap<String, BTreeSet<i64>, KeyHasher>,
    /// Bytes of packed ids held in memory before the largest sets spill.
    memory: usize,
    /// The first error writing ids to a temporary file (they stayed in
    /// memory).
    spill_error: Option<String>,
}

impl Default for SigninIndex {
    fn default() -> SigninIndex {
        SigninIndex::with_memory(DEFAULT_INDEX_MEMORY)
    }
}

/// Fields naming the tenant of a sign-in, in the export shapes seen
/// (Graph `resourceTenantId`, Azure Monitor `tenantId`, Log Analytics
/// `AADTenantId`); names match in any case.
pub const SIGNIN_TENANT_FIELDS: &[&str] = &["resourceTenantId", "tenantId", "AADTenantId"];

/// Fields naming the tenant an audit record belongs to.
pub const AUDIT_TENANT_FIELDS: &[&str] = &["OrganizationId"];

/// The first tenant id `ev` names among `fields`, lower-cased.
pub fn tenant_of(ev: &Event, fields: &[&str]) -> Option<String> {
    fields
        .iter()
        .find_map(|f| ev.scalar(f))
        .map(|t| t.to_ascii_lowercase())
}

fn day_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

/// What the sign-ins say about one moment of one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cover {
    /// Sign-ins of the tenant exist on the days around the moment.
    Covered,
    /// The tenant has sign-ins, but not around that moment.
    Hole,
    /// No sign-in names the tenant (or, with several tenants, the record
    /// names none).
    OtherTenant,
}

impl SigninIndex {
    /// What the index reads: sign-in records, recognised by the names of
    /// their time column or table in every export shape.
    pub fn needs() -> Needs {
        Needs::anchored(
            Kinds::of(&[EventKind::SignIn]),
            &[
                "createdDateTime",
                "CreatedDateTime",
                "SignInLogs",
                "SigninLogs",
            ],
            SIGNIN_TENANT_FIELDS,
        )
    }

    /// Indexes one sign-in event.
    pub fn observe(&mut self, ev: &Event) {
        self.signins += 1;
        if let Some(t) = ev.token_id() {
            self.tokens.insert(t);
        }
        if let Some(s) = ev.session_id() {
            if s.bytes().any(|b| b.is_ascii_uppercase()) {
                self.sessions.insert(&s.to_ascii_lowercase());
            } else {
                self.sessions.insert(s);
            }
        }
        if let Some(ip) = ev.client_ip() {
            self.ips.insert(ip);
        }
        if let Some(t) = ev.time {
            widen(&mut self.range, t);
            let day = day_of(t);
            let tenant = SIGNIN_TENANT_FIELDS.iter().find_map(|f| ev.scalar(f));
            let tenant = tenant.as_deref().unwrap_or("");
            // This runs for every sign-in: the tenant id is copied only when
            // it is new or not lower-case (exports write it lower-case).
            if tenant.bytes().any(|b| b.is_ascii_uppercase()) {
                self.days
                    .entry(tenant.to_ascii_lowercase())
                    .or_default()
                    .insert(day);
            } else if let Some(days) = self.days.get_mut(tenant) {
                days.insert(day);
            } else {
                self.days.insert(tenant.to_owned(), BTreeSet::from([day]));
            }
        }
    }

    /// An empty index that holds at most `memory` bytes of packed ids
    /// (GUIDs, token ids, IPv4 addresses) in memory when shards merge into
    /// it: past that, the largest sets are written, sorted, to anonymous
    /// temporary files (in `TMPDIR`) until half of it is held, and a
    /// lookup reads one 4 KiB block of a file. Ids of other spellings
    /// stay in memory.
    pub fn with_memory(memory: usize) -> SigninIndex {
        SigninIndex {
            signins: 0,
            tokens: Ids::default(),
            sessions: Ids::default(),
            ips: Ids::default(),
            range: None,
            days: HashMap::default(),
            memory,
            spill_error: None,
        }
    }

    /// Sorts the ids added since the last seal in ([`Ids::seal`]); do
    /// so before judging records against the index.
    pub fn seal(&mut self) {
        for ids in [&mut self.tokens, &mut self.sessions, &mut self.ips] {
            if let Err(e) = ids.seal() {
                self.spill_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Folds a shard into this index, then keeps to the index's memory.
    pub fn merge(&mut self, o: SigninIndex) {
        self.signins += o.signins;
        self.tokens.merge(o.tokens);
        self.sessions.merge(o.sessions);
        self.ips.merge(o.ips);
        self.range = super::union(self.range, o.range);
        for (tenant, days) in o.days {
            self.days.entry(tenant).or_default().extend(days);
        }
        self.spill_error = self.spill_error.take().or(o.spill_error);
        if self.spill_error.is_none() {
            if let Err(e) = self.keep_to_memory() {
                self.spill_error = Some(e.to_string());
            }
        }
    }

    /// Past the index's memory, spills the sets of numbers that hold the
    /// most, largest first, until at most half of it is held: so a set
    /// spills in runs of a size worth a file, not on every merge.
    fn keep_to_memory(&mut self) -> io::Result<()> {
        let memory = self.memory;
        let mut sets: Vec<&mut dyn NumberSet> =
            [&mut self.tokens, &mut self.sessions, &mut self.ips]
                .into_iter()
                .flat_map(Ids::sets_mut)
                .collect();
        let mut held: usize = sets.iter().map(|n| n.held_bytes()).sum();
        if held <= memory {
            return Ok(());
        }
        sets.sort_by_key(|n| Reverse(n.held_bytes()));
        for set in sets {
            if held <= memory / 2 {
                break;
            }
            held -= set.held_bytes();
            set.spill()?;
        }
        Ok(())
    }

    /// The bytes of packed ids it holds in memory before spilling.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Ids in runs on disk, and how many runs hold them.
    pub fn spilled(&self) -> (usize, usize) {
        [&self.tokens, &self.sessions, &self.ips]
            .into_iter()
            .flat_map(Ids::sets)
            .map(|n| n.spilled())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// The first error writing ids to a temporary file or reading them
    /// back. After a write error the ids stayed in memory, so the answers
    /// were right but the memory bound was not kept; after a read error a
    /// lookup answered "not issued", so findings may be wrong. Either
    /// fails a hunt.
    pub fn io_error(&self) -> Option<String> {
        self.spill_error.clone().or_else(|| {
            [&self.tokens, &self.sessions, &self.ips]
                .into_iter()
                .flat_map(Ids::sets)
                .find_map(|n| n.read_error())
        })
    }

    /// The days with sign-ins that can speak for a record of `tenant`:
    /// that tenant's, plus those of sign-ins that name no tenant. A record
    /// that names no tenant is judged only when the sign-ins are of one
    /// tenant.
    fn days_for(&self, tenant: Option<&str>) -> Vec<&BTreeSet<i64>> {
        let anonymous = self.days.get("");
        let named: Vec<(&String, &BTreeSet<i64>)> =
            self.days.iter().filter(|(k, _)| !k.is_empty()).collect();
        let mut out: Vec<&BTreeSet<i64>> = anonymous.into_iter().collect();
        match tenant {
            Some(t) => {
                if let Some(d) = self.days.get(&t.to_ascii_lowercase()) {
                    out.push(d);
                }
            }
            None if named.len() == 1 => out.push(named[0].1),
            None => {}
        }
        out
    }

    /// Whether the sign-ins of `tenant` cover the issuance of a token used
    /// at `used` (issued at `issued`, when the record says): the day of
    /// issuance has sign-ins, and so does the day before when the token
    /// could have been issued then (up to two hours, an access token's
    /// lifetime, before its use).
    pub fn covers(
        &self,
        tenant: Option<&str>,
        used: Option<OffsetDateTime>,
        issued: Option<OffsetDateTime>,
    ) -> Cover {
        let sets = self.days_for(tenant);
        if sets.is_empty() {
            return Cover::OtherTenant;
        }
        let has = |t: OffsetDateTime| sets.iter().any(|d| d.contains(&day_of(t)));
        let ok = match (issued, used) {
            (Some(i), _) => has(i),
            (None, Some(u)) => has(u) && has(u - Duration::hours(2)),
            (None, None) => false,
        };
        if ok {
            Cover::Covered
        } else {
            Cover::Hole
        }
    }

    /// The coverage of `tenant` in words, for notes and evidence.
    pub fn describe(&self, tenant: Option<&str>) -> String {
        let sets = self.days_for(tenant);
        let days: BTreeSet<i64> = sets.into_iter().flatten().copied().collect();
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return format!("no sign-ins of tenant {}", tenant.unwrap_or("(unnamed)"));
        };
        let date = |d: i64| {
            OffsetDateTime::from_unix_timestamp(d * 86_400)
                .map(|t| t.date().to_string())
                .unwrap_or_default()
        };
        let span = last - first + 1;
        format!(
            "sign-ins on {} of the {span} day(s) {} .. {}{}",
            days.len(),
            date(*first),
            date(*last),
            tenant
                .map(|t| format!(" for tenant {t}"))
                .unwrap_or_default()
        )
    }

    /// Whether a sign-in issued this token, or signed in this Entra or
    /// Exchange session.
    pub fn issued(&self, token: Option<&str>, aad: Option<&str>, exch: Option<&str>) -> bool {
        token.is_some_and(|t| self.tokens.contains(t))
            || [aad, exch]
                .into_iter()
                .flatten()
                .any(|s| self.has_session(s))
    }

    /// Whether a session id (any case) signed in. Ids are kept lower-cased
    /// and most arrive that way: the copy is made only when needed (this
    /// runs for every token-bearing audit record).
    pub fn has_session(&self, s: &str) -> bool {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            self.sessions.contains(&s.to_ascii_lowercase())
        } else {
            self.sessions.contains(s)
        }
    }
}

/// A set of ids (token ids, session ids, client addresses) that keeps the
/// usual spellings as numbers: a lower-case GUID as 128 bits, any 22
/// characters of base64url (a token's 16 bytes) as 132, a dotted IPv4
/// address as 32, anything else as text. Only a spelling that is the one
/// spelling of its number is packed (no upper-case hex, no leading zeros),
/// so membership is exactly that of the texts. The index holds one entry
/// per sign-in token: as text each took an allocation, a hash of the text
/// and another when shards merge, and a lookup read the text from another
/// place in memory than the table. The numbers are kept in sorted arrays
/// (`Numbers`), not hash sets: the index grows with the sign-ins read,
/// and a set of `u128` took about 26 bytes an entry (the table's empty
/// slots and control bytes), an array takes 16.
#[derive(Clone, Debug, Default)]
pub struct Ids {
    guids: Numbers<u128>,
    /// By the last four bits (zero for the standard spelling of 16 bytes):
    /// an array of (u128, u8) would take 32 bytes an entry, u128's
    /// alignment padding the byte out.
    base64url: [Numbers<u128>; 16],
    ipv4: Numbers<u32>,
    text: HashSet<String, KeyHasher>,
}

/// A set of numbers as an array: those sealed sorted and each once, then
/// those added since in the order they came. Adding is a push; shards merge
/// by appending; [`Numbers::seal`] sorts once the adding is done (the
/// engine seals the index before the files it judges are read). Ids are
/// random (GUIDs, token bytes), so a lookup interpolates where the number
/// would be and finds it in two or three steps; a binary search (about
/// twenty steps, most of them cache misses in an array of millions) ends
/// the search when the numbers are not spread evenly.
///
/// Past the index's memory ([`SigninIndex::with_memory`]) the array moves
/// to a temporary file as a sorted run ([`Numbers::spill`]); sealing
/// merges the runs into one, and a lookup reads one block of it.
#[derive(Clone, Debug, Default)]
struct Numbers<T> {
    all: Vec<T>,
    /// How many of `all`, from the start, are sorted and each once.
    sorted: usize,
    /// Numbers moved to temporary files. Each run is sorted and holds a
    /// number once; runs may share numbers until sealed into one.
    runs: Vec<Arc<Run<T>>>,
}

/// A number [`Numbers`] can hold: ordered, placed on a line for
/// interpolation, and written to a run as `BYTES` little-endian bytes.
trait Number: Ord + Copy + std::fmt::Debug {
    const BYTES: usize;
    fn place(self) -> f64;
    fn put(self, out: &mut Vec<u8>);
    fn take(b: &[u8]) -> Self;
}

/// [`Number`] for an unsigned integer type.
macro_rules! number {
    ($t:ty) => {
        impl Number for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            fn place(self) -> f64 {
                self as f64
            }
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b[..Self::BYTES].try_into().expect("a number's bytes"))
            }
        }
    };
}
number!(u128);
number!(u32);

/// Interpolation steps a lookup takes before it searches by halves.
const INTERPOLATION_STEPS: u32 = 6;

impl<T: Number> Numbers<T> {
    fn insert(&mut self, v: T) {
        self.all.push(v);
    }

    fn contains(&self, v: T) -> bool {
        let (sorted, added) = self.all.split_at(self.sorted);
        find_sorted(sorted, v) || added.contains(&v) || self.runs.iter().any(|r| r.contains(v))
    }

    fn extend(&mut self, o: Numbers<T>) {
        if self.all.is_empty() && self.runs.is_empty() {
            *self = o;
            // `o` may have been sealed: keep what it knows.
            return;
        }
        self.all.extend(o.all);
        self.runs.extend(o.runs);
    }

    /// How many numbers there are; exact once sealed (runs not yet merged
    /// may hold a number more than once).
    fn len(&self) -> usize {
        let (sorted, added) = self.all.split_at(self.sorted);
        let new: BTreeSet<T> = added
            .iter()
            .copied()
            .filter(|v| !find_sorted(sorted, *v))
            .collect();
        sorted.len() + new.len() + self.runs.iter().map(|r| r.count).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty() && self.runs.is_empty()
    }

    /// Merges [`RUNS_MERGED`] runs of one level into one of the next, as
    /// the digits of a counter carry: a set holds fewer than that many
    /// runs of each level open, however small the memory given and large
    /// the input, and each number is rewritten once a level.
    fn carry(&mut self) -> io::Result<()> {
        loop {
            let mut levels: Vec<u32> = self.runs.iter().map(|r| r.level).collect();
            levels.sort_unstable();
            let Some(level) = levels
                .windows(RUNS_MERGED)
                .find(|w| w[0] == w[RUNS_MERGED - 1])
                .map(|w| w[0])
            else {
                return Ok(());
            };
            let same: Vec<&Arc<Run<T>>> = self.runs.iter().filter(|r| r.level == level).collect();
            let merged = Run::merge(&same, &[], level + 1)?;
            self.runs.retain(|r| r.level != level);
            self.runs.push(Arc::new(merged));
        }
    }
}

/// What keeping to memory, sealing and accounting do with a set of
/// numbers, whatever their width: the index lists its sets of both widths
/// as one ([`Ids::sets`]).
trait NumberSet {
    /// Bytes the numbers take in memory.
    fn held_bytes(&self) -> usize;
    /// Moves the numbers in memory to a new run.
    fn spill(&mut self) -> io::Result<()>;
    /// Sorts every number in and drops repeats: in memory, or, once some
    /// were spilled, into one run with the others. When writing that run
    /// fails the runs stay as they were and the numbers in memory sorted,
    /// so lookups still answer (only slower).
    fn seal(&mut self) -> io::Result<()>;
    /// The first error reading a run back, if any.
    fn read_error(&self) -> Option<String>;
    /// Numbers in runs on disk, and how many runs hold them.
    fn spilled(&self) -> (usize, usize);
}

impl<T: Number> NumberSet for Numbers<T> {
    fn held_bytes(&self) -> usize {
        self.all.capacity() * std::mem::size_of::<T>()
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.all.is_empty() {
            return Ok(());
        }
        self.all.sort_unstable();
        self.all.dedup();
        self.runs.push(Arc::new(Run::merge(&[], &self.all, 0)?));
        self.all = Vec::new();
        self.sorted = 0;
        self.carry()
    }

    fn seal(&mut self) -> io::Result<()> {
        if self.sorted < self.all.len() {
            self.all.sort_unstable();
            self.all.dedup();
            self.all.shrink_to_fit();
            self.sorted = self.all.len();
        }
        if self.runs.is_empty() || (self.runs.len() == 1 && self.all.is_empty()) {
            return Ok(());
        }
        let runs: Vec<&Arc<Run<T>>> = self.runs.iter().collect();
        // Its level is its largest run's: it holds at least those numbers.
        let level = runs.iter().map(|r| r.level).max().unwrap_or(0);
        let merged = Run::merge(&runs, &self.all, level)?;
        self.runs = vec![Arc::new(merged)];
        self.all = Vec::new();
        self.sorted = 0;
        Ok(())
    }

    fn read_error(&self) -> Option<String> {
        self.runs.iter().find_map(|r| r.failed.get().cloned())
    }

    fn spilled(&self) -> (usize, usize) {
        (self.runs.iter().map(|r| r.count).sum(), self.runs.len())
    }
}

/// Numbers a lookup in a run reads at once: one block between two fences.
const RUN_BLOCK: usize = 256;

/// Runs of one level merged into one ([`Numbers::carry`]).
const RUNS_MERGED: usize = 16;

/// Sorted numbers, each once, in an anonymous temporary file (removed
/// when closed, so a killed hunt leaves none behind); in memory only
/// every [`RUN_BLOCK`]th number, so a run of sixteen-byte ids takes a
/// 256th of its size in memory and a lookup reads one block of 4 KiB
/// (from the page cache, which the kernel may reclaim, unlike the
/// process's own memory).
#[derive(Debug)]
struct Run<T> {
    file: File,
    count: usize,
    /// How many merges made it (0: spilled from memory).
    level: u32,
    /// The first number of each block.
    fences: Vec<T>,
    /// The first error reading the file back: the lookup that met it
    /// answered "not found", so the engine fails the hunt.
    failed: OnceLock<String>,
}

impl<T: Number> Run<T> {
    /// A run of `level` holding the numbers of `runs` and of `held`
    /// (sorted), each once. A read error one of `runs` met passes on to
    /// it: a lookup that failed answered "not issued", and merging the
    /// runs again (the error having passed) does not undo that answer.
    fn merge(runs: &[&Arc<Run<T>>], held: &[T], level: u32) -> io::Result<Run<T>> {
        let mut sources: Vec<Box<dyn Iterator<Item = io::Result<T>> + '_>> = runs
            .iter()
            .map(|r| Box::new(r.numbers()) as Box<dyn Iterator<Item = _>>)
            .collect();
        sources.push(Box::new(held.iter().copied().map(Ok)));
        let merged = Run {
            level,
            ..Run::write_merged(sources)?
        };
        if let Some(e) = runs.iter().find_map(|r| r.failed.get()) {
            let _ = merged.failed.set(e.clone());
        }
        Ok(merged)
    }

    /// Writes the union of sorted sources, each number once.
    fn write_merged(
        mut sources: Vec<Box<dyn Iterator<Item = io::Result<T>> + '_>>,
    ) -> io::Result<Run<T>> {
        let file = tempfile::tempfile()?;
        let mut out = BufWriter::with_capacity(1 << 16, &file);
        let mut heads: BinaryHeap<Reverse<(T, usize)>> = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(v) = s.next() {
                heads.push(Reverse((v?, i)));
            }
        }
        let (mut count, mut fences, mut last) = (0usize, Vec::new(), None);
        let mut bytes = Vec::with_capacity(T::BYTES);
        while let Some(Reverse((v, i))) = heads.pop() {
            if let Some(n) = sources[i].next() {
                heads.push(Reverse((n?, i)));
            }
            if last == Some(v) {
                continue;
            }
            if count % RUN_BLOCK == 0 {
                fences.push(v);
            }
            bytes.clear();
            v.put(&mut bytes);
            out.write_all(&bytes)?;
            count += 1;
            last = Some(v);
        }
        out.flush()?;
        drop(out);
        Ok(Run {
            file,
            count,
            level: 0,
            fences,
            failed: OnceLock::new(),
        })
    }

    fn contains(&self, v: T) -> bool {
        let Some(block) = self.fences.partition_point(|&f| f <= v).checked_sub(1) else {
            return false;
        };
        let start = block * RUN_BLOCK;
        let n = RUN_BLOCK.min(self.count - start);
        let mut buf = [0u8; RUN_BLOCK * 16];
        let bytes = &mut buf[..n * T::BYTES];
        if let Err(e) = read_at(&self.file, bytes, (start * T::BYTES) as u64) {
            self.failed.get_or_init(|| e.to_string());
            return false;
        }
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match T::take(&bytes[mid * T::BYTES..]).cmp(&v) {
                Ordering::Equal => return true,
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
            }
        }
        false
    }

    /// The numbers in order, read a block at a time: a merge reads many
    /// runs at once, each through a buffer of its own.
    fn numbers(&self) -> impl Iterator<Item = io::Result<T>> + '_ {
        const AT_ONCE: usize = RUN_BLOCK * 4;
        let mut buf = vec![0u8; AT_ONCE * T::BYTES];
        let (mut next, mut held, mut at) = (0usize, 0usize, 0usize);
        std::iter::from_fn(move || {
            if at == held {
                if next == self.count {
                    return None;
                }
                let n = AT_ONCE.min(self.count - next);
                if let Err(e) = read_at(
                    &self.file,
                    &mut buf[..n * T::BYTES],
                    (next * T::BYTES) as u64,
                ) {
                    next = self.count;
                    held = 0;
                    at = 0;
                    return Some(Err(e));
                }
                next += n;
                held = n;
                at = 0;
            }
            let v = T::take(&buf[at * T::BYTES..]);
            at += 1;
            Some(Ok(v))
        })
    }
}

/// Whether the sorted `items` hold `v`: interpolating while the numbers
/// look evenly spread, then by halves.
fn find_sorted<T: Number>(items: &[T], v: T) -> bool {
    let (mut lo, mut hi) = (0, items.len());
    for _ in 0..INTERPOLATION_STEPS {
        if hi - lo <= 8 {
            break;
        }
        let (first, last) = (items[lo], items[hi - 1]);
        if v < first || v > last {
            return false;
        }
        let span = last.place() - first.place();
        let at = if span > 0.0 {
            let frac = (v.place() - first.place()) / span;
            lo + ((frac * (hi - 1 - lo) as f64) as usize).min(hi - 1 - lo)
        } else {
            lo
        };
        match items[at].cmp(&v) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = at + 1,
            std::cmp::Ordering::Greater => hi = at,
        }
    }
    items[lo..hi].binary_search(&v).is_ok()
}

/// How an id is kept ([`Ids`]).
enum Packed {
    Guid(u128),
    Base64Url((u128, u8)),
    Ipv4(u32),
    Text,
}

impl Packed {
    fn of(id: &str) -> Packed {
        let b = id.as_bytes();
        match b.len() {
            36 => guid(b).map_or(Packed::Text, Packed::Guid),
            22 => base64url_22(b).map_or(Packed::Text, Packed::Base64Url),
            7..=15 => ipv4(id).map_or(Packed::Text, Packed::Ipv4),
            _ => Packed::Text,
        }
    }
}

/// A GUID in its lower-case 8-4-4-4-12 spelling.
fn guid(b: &[u8]) -> Option<u128> {
    let mut v: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v << 4 | u128::from(d);
    }
    Some(v)
}

/// The six bits of each base64url character; `NOT_BASE64URL` for others.
const BASE64URL_BITS: [u8; 256] = {
    let mut t = [NOT_BASE64URL; 256];
    let mut i = 0;
    while i < 64 {
        let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i];
        t[c as usize] = i as u8;
        i += 1;
    }
    t
};
const NOT_BASE64URL: u8 = 0xff;

/// 22 base64url characters as their 132 bits: the first 128 (16 bytes
/// when the text is a token id) and the last four apart (zero in the
/// standard spelling of 16 bytes, but tools that make up ids do not all
/// keep them so, and each spelling is its own id).
fn base64url_22(b: &[u8]) -> Option<(u128, u8)> {
    let mut out: u128 = 0;
    let mut bad = 0u8;
    for &c in &b[..21] {
        let d = BASE64URL_BITS[usize::from(c)];
        bad |= d;
        out = out << 6 | u128::from(d & 0x3f);
    }
    let last = BASE64URL_BITS[usize::from(b[21])];
    // Six bits never set the top one: only the marker of a non-base64url
    // character does.
    if (bad | last) & 0x80 != 0 {
        return None;
    }
    Some((out << 2 | u128::from(last >> 4), last & 0x0f))
}

/// A dotted-quad IPv4 address as the standard library writes it (which it
/// also parses: four decimal octets, none with a leading zero).
fn ipv4(s: &str) -> Option<u32> {
    s.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

impl Ids {
    /// Adds an id.
    pub fn insert(&mut self, id: &str) {
        match Packed::of(id) {
            Packed::Guid(v) => self.guids.insert(v),
            Packed::Base64Url((v, tail)) => self.base64url[usize::from(tail)].insert(v),
            Packed::Ipv4(v) => self.ipv4.insert(v),
            Packed::Text if self.text.contains(id) => {}
            Packed::Text => {
                self.text.insert(id.to_owned());
            }
        };
    }

    /// Whether the id was added (spelled exactly so).
    pub fn contains(&self, id: &str) -> bool {
        // Audit records without any sign-in given (a UAL export alone) ask
        // for every token: no spelling to decode then.
        if self.is_empty() {
            return false;
        }
        match Packed::of(id) {
            Packed::Guid(v) => self.guids.contains(v),
            Packed::Base64Url((v, tail)) => self.base64url[usize::from(tail)].contains(v),
            Packed::Ipv4(v) => self.ipv4.contains(v),
            Packed::Text => self.text.contains(id),
        }
    }

    /// Adds every id of `o`.
    pub fn merge(&mut self, o: Ids) {
        self.guids.extend(o.guids);
        for (mine, theirs) in self.base64url.iter_mut().zip(o.base64url) {
            mine.extend(theirs);
        }
        self.ipv4.extend(o.ipv4);
        self.text.extend(o.text);
    }

    /// Sorts the ids added since the last time in: lookups then take a
    /// few steps each, where ids added and not sealed are compared one by
    /// one. Spilled runs are merged into one file; when that fails the
    /// first error is returned, and every set is still sealed in memory.
    pub fn seal(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for set in self.sets_mut() {
            let sealed = set.seal();
            if first.is_ok() {
                first = sealed;
            }
        }
        first
    }

    /// Every set of numbers, of both widths.
    fn sets(&self) -> impl Iterator<Item = &dyn NumberSet> {
        std::iter::once(&self.guids as &dyn NumberSet)
            .chain(self.base64url.iter().map(|n| n as &dyn NumberSet))
            .chain(std::iter::once(&self.ipv4 as &dyn NumberSet))
    }

    /// [`Ids::sets`], to change.
    fn sets_mut(&mut self) -> impl Iterator<Item = &mut dyn NumberSet> {
        std::iter::once(&mut self.guids as &mut dyn NumberSet)
            .chain(self.base64url.iter_mut().map(|n| n as &mut dyn NumberSet))
            .chain(std::iter::once(&mut self.ipv4 as &mut dyn NumberSet))
    }

    /// How many ids there are.
    pub fn len(&self) -> usize {
        self.guids.len()
            + self.base64url.iter().map(Numbers::len).sum::<usize>()
            + self.ipv4.len()
            + self.text.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.guids.is_empty()
            && self.base64url.iter().all(Numbers::is_empty)
            && self.ipv4.is_empty()
            && self.text.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;
    use serde_json::json;

    /// Packed or not, an id is found exactly when the same text was added:
    /// other spellings of the same number (upper-case hex, padding bits,
    /// leading zeros, IPv4-mapped IPv6) are other ids.
    #[test]
    fn ids_answer_as_a_set_of_texts() {
        let added = [
            "623d8eb7-a4ca-43b2-8b52-b08d21870f0b",
            "3qO2a2kQdP1tXX42jtweAA",
            "UEXk2jLaXpZ5a50weOZFLw",
            "3qO2a2kQdP1tXX42jtwe_A",
            "UEXk2jLaXpZ5a50weOZFL_",
            "94.204.37.30",
            "0.0.0.0",
            "2001:db8::1",
            "S-ONE",
            "",
        ];
        let probes = [
            "623D8EB7-A4CA-43B2-8B52-B08D21870F0B",
            "623d8eb7a4ca43b28b52b08d21870f0b",
            "623d8eb7-a4ca-43b2-8b52-b08d21870f0c",
            "3qO2a2kQdP1tXX42jtweAB",
            "3qO2a2kQdP1tXX42jtweAQ",
            "3qO2a2kQdP1tXX42jtweA",
            "3qO2a2kQdP1tXX42jtwe+A",
            "UEXk2jLaXpZ5a50weOZFL/",
            "UEXk2jLaXpZ5a50weOZFLy",
            // 22 bytes, 21 characters.
            "3qO2a2kQdP1tXX42jtweé",
            "94.204.37.3",
            "094.204.37.30",
            "94.204.037.30",
            "::ffff:94.204.37.30",
            "94.204.37.30 ",
            "2001:DB8::1",
            "s-one",
            "AAAAAAAAAAAAAAAAAAAAAA",
            "00000000-0000-0000-0000-000000000000",
        ];
        let mut ids = Ids::default();
        let mut texts = HashSet::new();
        for a in added {
            ids.insert(a);
            texts.insert(a.to_string());
        }
        // A spelling with non-zero padding bits has the bytes of the one
        // with zero bits: added, the other must stay unknown, and both
        // are packed.
        ids.insert("UEXk2jLaXpZ5a50weOZFLx");
        texts.insert("UEXk2jLaXpZ5a50weOZFLx".into());
        assert_eq!(ids.len(), texts.len());
        let packed: usize = ids.base64url.iter().map(Numbers::len).sum();
        assert_eq!((ids.guids.len(), packed), (1, 5));
        assert!(!ids.text.iter().any(|t| t.len() == 22), "{:?}", ids.text);
        for p in added
            .iter()
            .chain(&probes)
            .chain(&["UEXk2jLaXpZ5a50weOZFLx"])
        {
            assert_eq!(ids.contains(p), texts.contains(*p), "{p:?}");
        }
        // Merging shards keeps every id of both.
        let mut other = Ids::default();
        other.insert("AAAAAAAAAAAAAAAAAAAAAA");
        other.insert("10.0.0.1");
        ids.merge(other);
        assert!(ids.contains("AAAAAAAAAAAAAAAAAAAAAA") && ids.contains("10.0.0.1"));
        // Zero bytes as a token id are not the zero GUID: each shape has
        // its own set.
        assert!(!ids.contains("00000000-0000-0000-0000-000000000000"));
        assert!(ids.contains("3qO2a2kQdP1tXX42jtweAA"));
    }

    /// `n` numbers drawn from `spread`, dealt in turn to three shards;
    /// after each, with one chance in `every`, `act` (seal or spill) runs
    /// on the shard that took it. Also the set of the numbers.
    fn dealt(
        rng: &mut fastrand::Rng,
        spread: fn(&mut fastrand::Rng) -> u128,
        n: usize,
        every: u16,
        act: fn(&mut Numbers<u128>) -> io::Result<()>,
    ) -> (Vec<Numbers<u128>>, HashSet<u128>) {
        let mut set = HashSet::new();
        let mut shards: Vec<Numbers<u128>> = (0..3).map(|_| Numbers::default()).collect();
        for k in 0..n {
            let v = spread(rng);
            set.insert(v);
            let shard = &mut shards[k % 3];
            shard.insert(v);
            if rng.u16(..every) == 0 {
                act(shard).expect("sealed or spilled");
            }
        }
        (shards, set)
    }

    /// `all` holds every number of `set` and, of `probes` numbers drawn
    /// from `spread` and their neighbours on both sides, only those.
    fn holds_exactly(
        all: &Numbers<u128>,
        set: &HashSet<u128>,
        spread: fn(&mut fastrand::Rng) -> u128,
        rng: &mut fastrand::Rng,
        probes: usize,
    ) {
        for &v in set {
            assert!(all.contains(v), "{v}");
        }
        for _ in 0..probes {
            let v = spread(rng);
            for probe in [v, v.wrapping_add(1), v.wrapping_sub(1)] {
                assert_eq!(all.contains(probe), set.contains(&probe), "{probe}");
            }
        }
    }

    /// Sealed, added since, or merged from shards in any state, numbers
    /// are found exactly when they were added, spread evenly or not.
    #[test]
    fn numbers_are_found_as_a_set_finds_them() {
        let mut rng = fastrand::Rng::with_seed(128);
        let spreads: [fn(&mut fastrand::Rng) -> u128; 4] = [
            |r| r.u128(..),
            // Runs of neighbours, far apart: interpolation guesses badly.
            |r| u128::from(r.u8(..)) << 120 | u128::from(r.u16(..)),
            |r| r.u128(..) >> r.u32(0..128),
            |r| u128::from(r.u8(0..3)),
        ];
        for spread in spreads {
            for _ in 0..40 {
                let n = rng.usize(0..3000);
                let (shards, set) = dealt(&mut rng, spread, n, 1000, |s| s.seal());
                let mut all = Numbers::default();
                for (k, shard) in shards.into_iter().enumerate() {
                    all.extend(shard);
                    if k == 1 && rng.bool() {
                        all.seal().expect("sealed");
                    }
                }
                assert_eq!(all.len(), set.len());
                holds_exactly(&all, &set, spread, &mut rng, 300);
                all.seal().expect("sealed");
                assert_eq!(all.sorted, set.len());
                assert_eq!(all.len(), set.len());
                holds_exactly(&all, &set, spread, &mut rng, 300);
            }
        }
    }

    /// Numbers moved to runs on disk, in shards or after merging, at any
    /// moment and any number of times, are found exactly as numbers held
    /// in memory are, before sealing and after; sealing leaves one run
    /// that holds each number once.
    #[test]
    fn spilled_numbers_are_found_as_held_ones_are() {
        let mut rng = fastrand::Rng::with_seed(45);
        let spreads: [fn(&mut fastrand::Rng) -> u128; 3] = [
            |r| r.u128(..),
            |r| u128::from(r.u8(..)) << 120 | u128::from(r.u16(..)),
            |r| u128::from(r.u16(0..2000)),
        ];
        for spread in spreads {
            for round in 0..12 {
                let n = rng.usize(0..5000);
                let (shards, set) = dealt(&mut rng, spread, n, 700, |s| s.spill());
                let mut all = Numbers::default();
                for shard in shards {
                    all.extend(shard);
                    if rng.bool() {
                        all.spill().expect("spilled");
                    }
                }
                if round == 0 {
                    all.spill().expect("spilled");
                }
                holds_exactly(&all, &set, spread, &mut rng, 500);
                all.seal().expect("sealed");
                assert!(all.runs.len() <= 1, "{} runs", all.runs.len());
                assert_eq!(all.len(), set.len());
                holds_exactly(&all, &set, spread, &mut rng, 500);
                assert_eq!(all.read_error(), None);
            }
        }
        // Four-byte numbers (IPv4 addresses) take the same path.
        let mut small: Numbers<u32> = Numbers::default();
        (0..1000u32).for_each(|v| small.insert(v * 3));
        small.spill().expect("spilled");
        (0..1000u32).for_each(|v| small.insert(v * 5));
        small.spill().expect("spilled");
        small.seal().expect("sealed");
        let want = |v: u32| v < 3000 && v % 3 == 0 || v < 5000 && v % 5 == 0;
        assert!((0..6000).all(|v| small.contains(v) == want(v)));
        assert_eq!(small.len(), (0..6000).filter(|&v| want(v)).count());
        // Many small spills carry into runs of higher levels: few files
        // stay open, and every number is still found.
        let mut many: Numbers<u32> = Numbers::default();
        for spill in 0..300u32 {
            (0..20).for_each(|v| many.insert(v * 300 + spill));
            many.spill().expect("spilled");
        }
        assert!(
            many.runs.len() < 3 * RUNS_MERGED,
            "{} runs",
            many.runs.len()
        );
        assert!(many.runs.iter().any(|r| r.level == 2));
        assert!((0..6000).all(|v| many.contains(v)) && !many.contains(6000));
        many.seal().expect("sealed");
        assert_eq!((many.runs.len(), many.len()), (1, 6000));
    }

    /// An index past its memory moves ids to disk when shards merge into
    /// it, and answers as one that holds them all; one whose run cannot be
    /// read back says so instead of answering silently.
    #[test]
    fn an_index_past_its_memory_answers_from_disk_and_reports_read_errors() {
        // 22 base64url characters ending in `A`: packed as 16 bytes.
        let token = |i: u32| format!("AAAAAAAAAAAAA{i:0>8}A");
        let signin = |i: u32| {
            event(
                json!({"createdDateTime": "2023-06-01T10:00:00Z", "userPrincipalName": "a@x",
                "ipAddress": format!("10.0.{}.{}", i / 250, i % 250),
                "uniqueTokenIdentifier": token(i),
                "sessionId": format!("00000000-0000-0000-0000-{i:0>12}")}),
            )
        };
        let mut index = SigninIndex::with_memory(4096);
        for shard_no in 0..8 {
            let mut shard = SigninIndex::default();
            for i in shard_no * 500..(shard_no + 1) * 500 {
                shard.observe(&signin(i));
            }
            index.merge(shard);
        }
        let spilled = |ids: &Ids| ids.guids.runs.len() + ids.base64url[0].runs.len();
        assert!(spilled(&index.tokens) > 0, "tokens stayed in memory");
        assert!(spilled(&index.sessions) > 0, "sessions stayed in memory");
        index.seal();
        assert_eq!(index.io_error(), None);
        assert_eq!(index.tokens.len() + index.sessions.len(), 8000);
        for i in (0..4000).step_by(7) {
            let t = token(i);
            let s = format!("00000000-0000-0000-0000-{i:0>12}");
            assert!(index.issued(Some(&t), None, None), "{t}");
            assert!(index.issued(None, Some(&s), None), "{s}");
            assert!(index.ips.contains(&format!("10.0.{}.{}", i / 250, i % 250)));
        }
        assert!(!index.issued(
            Some(&token(4001)),
            Some("00000000-0000-0000-0000-000000004001"),
            None
        ));
        // A run whose file lost its contents: the lookup cannot read it.
        let run = index.tokens.base64url[0]
            .runs
            .first()
            .expect("one run")
            .clone();
        run.file.set_len(0).expect("truncated");
        assert!(!index.issued(Some(&token(3999)), None, None));
        let err = index.io_error().expect("the read error is reported");
        assert!(
            err.contains("fill whole buffer") || err.contains("eof"),
            "{err}"
        );
    }

    #[test]
    fn indexes_tokens_sessions_and_addresses_and_merges_shards() {
        let mut a = SigninIndex::default();
        a.observe(&event(json!({"createdDateTime": "2023-06-01T10:00:00Z", "userPrincipalName": "a@x", "ipAddress": "198.51.100.1", "uniqueTokenIdentifier": "T1", "sessionId": "S-ONE"})));
        let mut b = SigninIndex::default();
        b.observe(&event(json!({"createdDateTime": "2023-06-03T10:00:00Z", "userPrincipalName": "b@x", "ipAddress": "198.51.100.2", "uniqueTokenIdentifier": "T2"})));
        a.merge(b);
        assert_eq!(a.signins, 2);
        assert!(a.issued(Some("T2"), None, None));
        assert!(
            a.issued(None, Some("s-one"), None),
            "sessions match in any case"
        );
        assert!(a.issued(None, None, Some("S-One")));
        assert!(!a.issued(Some("T3"), Some("s-two"), None));
        assert!(a.ips.contains("198.51.100.2"));
        let (first, last) = a.range.unwrap();
        assert_eq!((first.day(), last.day()), (1, 3));
    }
}
