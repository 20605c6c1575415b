//! Keyed state (of detections, Sigma correlations, report pivots) that
//! moves to disk past its memory.
//!
//! A detection that aggregates per session (tw-token-without-signin keeps
//! each session no sign-in explains, with up to a thousand token ids) holds
//! state that grows with the distinct keys of its input: about 3.5 KB a
//! session, 300 MB over 3 GB of UAL full of unexplained sessions. A
//! [`SpillingMap`] holds its entries in memory up to its share of the
//! hunt's budget ([`StateDisk`]), then writes them, sorted by key, to an
//! anonymous temporary file (a run) and starts again. At the end its
//! entries are read back merged by key, values of one key folded
//! together, so the detection judges each key once, whole, as if nothing
//! had spilled. Folding must therefore give the same value whatever order
//! the parts of a key arrive in, which the aggregates shards merge with
//! already do. A key whose folded value may not fit in memory (a
//! correlation group of millions of matches) is drained by its parts
//! instead ([`SpillingMap::drain_parts`]): its large values are handed on
//! unread, for the caller to read a stretch at a time.
//!
//! Runs are merged as the digits of a counter carry: [`MERGE_FAN`] runs of
//! one level make one of the next, so a copy of the state never holds more
//! than [`MERGE_FAN`] files open per level, and each entry is rewritten
//! once per level (a logarithm of the input, base [`MERGE_FAN`]).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokenward_event::codec::{self, Cursor};

use crate::keyed::{key_hash, KeyPart, Keyed};

/// The default memory of all detections' keyed state, in bytes.
pub const DEFAULT_STATE_MEMORY: usize = 64 << 20;

/// Past the budget, a map spills only if it holds at least this fraction
/// of it: writing out a map of a few entries frees nothing, and the maps
/// of a hunt (the one shards merge into and one per batch at work, for
/// each detection that keeps one) are fewer than this, so some map
/// always holds that much when all of them together are past the budget.
const SPILLER_FRACTION: usize = 16;

/// Values that stay ([`Spillable::stays`]) are kept when their map
/// spills while they hold at most this many budgets, the staying values
/// of every map of the hunt together (besides the budget of the rest);
/// past it they are written out too, the spilling map's largest first.
/// They are kept small by what their holder decides as the hunt goes,
/// and one that is not (a correlation group quiet for two days, then a
/// million matches a day, held its last two days whole: 561 MiB) would
/// otherwise grow past any budget; a share per map let a rule set of
/// several correlations fed by one flood hold this many budgets for each. A correlation group decided as the hunt goes holds two days of
/// its matches, up to twice that between decisions: a group of 50,000
/// matches a day, about 56 MiB by its estimate, stays.
pub const STAYING_BUDGETS: usize = 2;

/// A map tells the [`StateDisk`] how much it holds in steps of at most
/// this many bytes: each telling is an atomic add on a line all cores
/// share.
const TELL_STEP: usize = 64 << 10;

/// Runs merged at once.
pub const MERGE_FAN: usize = 32;

/// A key of a [`SpillingMap`]: looked up by its borrowed form, ordered
/// (runs are sorted by it), written to a run and read back.
pub trait SpillKey: KeyPart + Ord + Sized {
    /// About how many bytes a key holds in memory besides its slot, told
    /// by its borrowed form.
    fn part_bytes(part: Self::Ref<'_>) -> usize;
    /// Appends this key to a record.
    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()>;
    /// Reads back a key [`SpillKey::write`] wrote.
    fn read(c: &mut Cursor<'_>) -> Result<Self, String>;
}

impl SpillKey for Box<str> {
    fn part_bytes(part: &str) -> usize {
        part.len()
    }
    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        codec::put_text(buf, self)
    }
    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        c.text().map(Box::from)
    }
}

impl SpillKey for i64 {
    fn part_bytes(_: i64) -> usize {
        0
    }
    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        codec::put_u64(buf, *self as u64);
        Ok(())
    }
    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        c.u64().map(|n| n as i64)
    }
}

macro_rules! tuple_spill_key {
    ($($part:ident $at:tt),+) => {
        impl<$($part: SpillKey),+> SpillKey for ($($part,)+) {
            fn part_bytes(part: Self::Ref<'_>) -> usize {
                0 $(+ $part::part_bytes(part.$at))+
            }
            fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
                $(self.$at.write(buf)?;)+
                Ok(())
            }
            fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
                Ok(($($part::read(c)?,)+))
            }
        }
    };
}

tuple_spill_key!(A 0, B 1);
tuple_spill_key!(A 0, B 1, C 2);

/// A value of a [`SpillingMap`]: written to a run and read back, and
/// folded with another value of the same key.
pub trait Spillable: Sized {
    /// About how many bytes this value holds in memory, its slot
    /// included: what the map budgets by.
    fn approx_bytes(&self) -> usize;
    /// Appends this value to a record.
    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()>;
    /// Reads back a value [`Spillable::write`] wrote.
    fn read(c: &mut Cursor<'_>) -> Result<Self, String>;
    /// Takes in another value of the same key. The result must not depend
    /// on which of the two is `self`, nor on the order values arrive in.
    fn fold(&mut self, other: Self);
    /// Whether this value stays in memory when its map spills: a value
    /// that is worked on as the hunt goes (a correlation group whose
    /// windows are decided while it is read) and is kept small that way.
    /// Staying values past their share ([`STAYING_BUDGETS`] budgets) are
    /// written out all the same.
    fn stays(&self) -> bool {
        false
    }
    /// Whether a map of such values remembers the keys it writes out
    /// during the hunt ([`SpillingMap::may_have_written`]), in a filter of
    /// 1 MiB besides the budget: for values decided as the hunt goes.
    const REMEMBERS_WRITTEN: bool = false;
}

/// What a text kept in a set holds besides its bytes: the `String`, the
/// tree's share of a node, the allocator's header.
pub const SET_ITEM_BYTES: usize = 48;

/// About how many bytes a set of texts holds in memory.
pub fn set_bytes(set: &BTreeSet<String>) -> usize {
    set.iter().map(|t| t.len() + SET_ITEM_BYTES).sum()
}

/// Appends a set of texts to a record: its size, then each text.
pub fn write_set(buf: &mut Vec<u8>, set: &BTreeSet<String>) -> io::Result<()> {
    codec::put_u32(buf, codec::count(set.len())?);
    for t in set {
        codec::put_text(buf, t)?;
    }
    Ok(())
}

/// Reads back a set [`write_set`] wrote.
pub fn read_set(c: &mut Cursor<'_>) -> Result<BTreeSet<String>, String> {
    (0..c.u32()?).map(|_| c.text().map(str::to_owned)).collect()
}

/// What the keyed state of a hunt's detections may hold in memory, and
/// what happened past it: shared by every [`SpillingMap`] of the hunt.
#[derive(Debug)]
pub struct StateDisk {
    /// Bytes all maps together may hold before the larger ones spill.
    budget: usize,
    /// Bytes the maps hold, as they last told.
    held: AtomicUsize,
    /// Of `held`, those of values that stayed at their map's last spill.
    staying: AtomicUsize,
    runs_written: AtomicU64,
    /// The first error writing or reading a run.
    error: Mutex<Option<String>>,
}

impl StateDisk {
    /// Keyed state of at most about `budget` bytes in memory, all
    /// detections together. With `0`, a map writes what it holds out at
    /// every insert, growth and merge (a test of the disk path).
    pub fn new(budget: usize) -> Arc<StateDisk> {
        Arc::new(StateDisk {
            budget,
            held: AtomicUsize::new(0),
            staying: AtomicUsize::new(0),
            runs_written: AtomicU64::new(0),
            error: Mutex::new(None),
        })
    }

    /// Bytes all maps hold in memory, as they last told (in steps of at
    /// most 64 KiB each).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Runs written to disk so far, merges included.
    pub fn runs_written(&self) -> u64 {
        self.runs_written.load(Ordering::Relaxed)
    }

    /// The first error writing or reading a run: the detections' results
    /// are then incomplete, and the hunt must fail.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("no panics while locked").clone()
    }

    /// Records an error writing or reading state, as the maps do (the
    /// first is kept); the maps stop writing from then on.
    pub fn fail(&self, what: String) {
        let mut e = self.error.lock().expect("no panics while locked");
        e.get_or_insert(what);
    }

    fn failed(&self) -> bool {
        self.error.lock().expect("no panics while locked").is_some()
    }
}

/// A sorted run on disk, and how many merges made it.
struct Run {
    file: File,
    level: u32,
}

/// Values per key, held in memory while all maps of the hunt together
/// hold less than [`StateDisk`]'s budget, and in sorted runs on disk past
/// it. Read whole, merged by key, in key order, with
/// [`SpillingMap::drain`].
pub struct SpillingMap<K: SpillKey, V: Spillable> {
    held: Keyed<K, V>,
    held_bytes: usize,
    /// Of `held_bytes`, those of values that stayed at the last spill
    /// ([`Spillable::stays`]): only the others make the map spill again.
    stays_bytes: usize,
    /// Of `held_bytes`, those told to the [`StateDisk`].
    told: usize,
    /// Of `stays_bytes`, those told to the [`StateDisk`] as staying.
    stays_told: usize,
    /// By level, highest first.
    runs: Vec<Run>,
    disk: Arc<StateDisk>,
    /// The keys whose values were written out while the hunt went
    /// ([`SpillingMap::may_have_written`]), made at the first such spill.
    written: Option<WrittenKeys>,
}

/// Bits of a [`WrittenKeys`] filter: 1 MiB, whatever the keys.
const WRITTEN_BITS: u64 = 1 << 23;
/// Bits set per key.
const WRITTEN_PROBES: u64 = 4;

/// The keys a map wrote out, as a Bloom filter of a fixed size: a key
/// written is always found; another is found rarely while few were
/// written (about 1 in 700 after 450,000 keys), and ever more often past
/// a few million, when nearly every key is. A holder that asks only to
/// be careful (a correlation deciding windows as the hunt goes) is then
/// careful with every key, which is correct and bounded, where remembering
/// each key would grow with them.
struct WrittenKeys {
    bits: Box<[u64]>,
}

impl WrittenKeys {
    fn new() -> WrittenKeys {
        WrittenKeys {
            bits: vec![0; (WRITTEN_BITS / 64) as usize].into_boxed_slice(),
        }
    }

    /// The bits of a key's hash (double hashing of its two halves).
    fn places(hash: u64) -> impl Iterator<Item = usize> {
        let (a, b) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..WRITTEN_PROBES)
            .map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % WRITTEN_BITS) as usize)
    }

    fn insert(&mut self, hash: u64) {
        for p in Self::places(hash) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    fn may_hold(&self, hash: u64) -> bool {
        Self::places(hash).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    fn union(&mut self, other: &WrittenKeys) {
        for (mine, theirs) in self.bits.iter_mut().zip(other.bits.iter()) {
            *mine |= theirs;
        }
    }
}

impl<K: SpillKey, V: Spillable> SpillingMap<K, V> {
    /// An empty map spilling as `disk` says.
    pub fn new(disk: Arc<StateDisk>) -> Self {
        SpillingMap {
            held: Keyed::default(),
            held_bytes: 0,
            stays_bytes: 0,
            told: 0,
            stays_told: 0,
            runs: Vec::new(),
            disk,
            written: None,
        }
    }

    /// An empty map spilling as this one does.
    pub fn fork(&self) -> Self {
        Self::new(self.disk.clone())
    }

    /// The value held in memory for `key`, made by `make` if none is (one
    /// on disk is not looked up: it is folded in at the end), in one
    /// lookup: most keys of some detections (mailbox buckets) are new.
    /// The map spills first if the hunt's maps are past their budget.
    pub fn get_or_insert_with(&mut self, key: K::Ref<'_>, make: impl FnOnce() -> V) -> &mut V {
        self.spill_past_budget();
        let mut made = 0;
        let value = self.held.get_or_insert_with(key, || {
            let v = make();
            made = K::part_bytes(key) + v.approx_bytes();
            v
        });
        self.held_bytes += made;
        value
    }

    /// Counts `bytes` more held by a value changed in place.
    pub fn grew(&mut self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.held_bytes += bytes;
        // A map whose keys only grow (sessions gaining token ids) must
        // spill as one that gains keys does.
        self.spill_past_budget();
    }

    /// Counts `bytes` fewer held by a value changed in place (the values
    /// that stay are those that shrink: they count as fewer too, so the
    /// map spills no later than it should).
    pub fn shrank(&mut self, bytes: usize) {
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
        self.stays_bytes = self.stays_bytes.saturating_sub(bytes);
    }

    /// The value held in memory for `key`, if any, without spilling.
    pub fn get_mut(&mut self, key: K::Ref<'_>) -> Option<&mut V> {
        self.held.get_mut(key)
    }

    /// Whether a value of `key` may have been written out while the hunt
    /// went: always when one was, sometimes when not (the keys written are
    /// kept in a Bloom filter of 1 MiB: about 1 in 700 others is found
    /// after 450,000 keys written, most past a few million). Always false
    /// for values that do not ask for it ([`Spillable::REMEMBERS_WRITTEN`]).
    /// The value held for it now (if any) may then be only the part
    /// since, and a holder that decides as the hunt goes must not decide
    /// on it alone.
    pub fn may_have_written(&self, key: K::Ref<'_>) -> bool {
        self.written
            .as_ref()
            .is_some_and(|w| w.may_hold(key_hash(key)))
    }

    /// Tells the [`StateDisk`] how much of what this map holds stayed.
    fn tell_staying(&mut self) {
        settle(&self.disk.staying, self.stays_bytes, &mut self.stays_told);
    }

    /// Tells the [`StateDisk`] what this map holds now.
    fn tell(&mut self) {
        settle(&self.disk.held, self.held_bytes, &mut self.told);
    }

    /// Whether some of its entries are on disk.
    pub fn has_written(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Whether nothing is held or spilled.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.runs.is_empty()
    }

    /// Takes in another map's entries, folding values of shared keys.
    pub fn merge(&mut self, mut other: SpillingMap<K, V>) {
        // What the other told moves here with its entries.
        self.held_bytes += other.held_bytes;
        self.told += std::mem::take(&mut other.told);
        self.stays_bytes += std::mem::take(&mut other.stays_bytes);
        self.stays_told += std::mem::take(&mut other.stays_told);
        // A key both hold is counted twice until the next spill: too
        // much, never too little. Taking off what a fold saves, by the
        // values' estimates, undercounted wherever a detection counts
        // growth less exactly than the estimate (a replaced record), and
        // could let a map grow past the budget.
        self.held.merge(std::mem::take(&mut other.held), V::fold);
        match (&mut self.written, other.written.take()) {
            (Some(mine), Some(theirs)) => mine.union(&theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        self.runs.append(&mut other.runs);
        self.runs.sort_by_key(|r| Reverse(r.level));
        self.spill_past_budget();
        self.compact();
    }

    /// Writes every held entry out, values that stay included, as
    /// [`SpillingMap::drain`] does before it merges: for a map waiting to
    /// be drained while others are, which would otherwise hold its
    /// entries beside theirs.
    pub fn write_out(&mut self) {
        self.spill(true);
        self.compact();
    }

    /// Every key and its whole value, once each, in key order. Stops
    /// early, with the error in the [`StateDisk`], if a run cannot be read
    /// back.
    pub fn drain(mut self, mut each: impl FnMut(K, V)) {
        let runs = match self.final_runs() {
            ToDrain::Runs(runs) => runs,
            ToDrain::Held(held) => {
                for (k, v) in held {
                    each(k, v);
                }
                return;
            }
        };
        let mut each = |out: Merged<K, V>| {
            if let Merged::Folded(k, v) = out {
                each(k, v);
            }
            Ok(())
        };
        if let Err(e) = merged(runs, false, &mut each) {
            self.disk.fail(e);
        }
    }

    /// Every key once, in key order, with its values as they lie: the
    /// small ones read and folded, each too large to read with its key
    /// (over 64 KiB) left where it is, to be read as often as
    /// the caller needs ([`Parts`]). For values one of which, folded, may
    /// not fit in memory: a correlation group of millions of matches is
    /// decided a stretch of time at a time, each stretch read from its
    /// parts. An error `each` returns, or a run that cannot be read back,
    /// stops it, with the error in the [`StateDisk`].
    pub fn drain_parts(mut self, mut each: impl FnMut(K, Parts<V>) -> Result<(), String>) {
        let runs = match self.final_runs() {
            ToDrain::Runs(runs) => runs,
            ToDrain::Held(held) => {
                for (k, v) in held {
                    let parts = Parts {
                        small: Some(v),
                        large: Vec::new(),
                    };
                    if let Err(e) = each(k, parts) {
                        self.disk.fail(e);
                        return;
                    }
                }
                return;
            }
        };
        // The key whose values are coming, and those come so far.
        let mut open: Option<(K, Parts<V>)> = None;
        let mut sink = |out: Merged<K, V>| {
            let (key, part) = match out {
                Merged::Folded(k, v) => (KeyOf::Owned(k), PartOf::Small(v)),
                Merged::Large {
                    key,
                    from,
                    offset,
                    len,
                } => {
                    let file = from
                        .input
                        .get_ref()
                        .try_clone()
                        .map_err(|e| format!("detection state on disk: {e}"))?;
                    let at = from.at;
                    (
                        KeyOf::Borrowed(key),
                        PartOf::Large(LargePart {
                            file,
                            offset,
                            len,
                            at,
                        }),
                    )
                }
            };
            let same = open.as_ref().is_some_and(|(k, _)| key.is(k));
            if !same {
                if let Some((k, p)) = open.take() {
                    each(k, p)?;
                }
                open = Some((key.owned(), Parts::default()));
            }
            let (_, parts) = open.as_mut().expect("opened above");
            match part {
                PartOf::Small(v) => match &mut parts.small {
                    Some(s) => s.fold(v),
                    None => parts.small = Some(v),
                },
                PartOf::Large(l) => parts.large.push(l),
            }
            Ok(())
        };
        let done = merged(runs, true, &mut sink);
        let done = done.and_then(|()| match open.take() {
            Some((k, p)) => each(k, p),
            None => Ok(()),
        });
        if let Err(e) = done {
            self.disk.fail(e);
        }
    }

    /// What there is to drain: the runs, merged down to one merge's
    /// worth, every held entry written out first; or, when nothing was
    /// ever written, the held entries in key order. No runs at all when a
    /// run could not be written or merged (the error is in the
    /// [`StateDisk`]).
    fn final_runs(&mut self) -> ToDrain<K, V> {
        if self.runs.is_empty() {
            self.held_bytes = 0;
            self.tell();
            return ToDrain::Held(sorted(std::mem::take(&mut self.held)));
        }
        self.spill(true);
        if self.disk.failed() {
            return ToDrain::Runs(Vec::new());
        }
        // The lowest levels first: the smallest runs.
        while self.runs.len() > MERGE_FAN {
            if !self.merge_fan_from(self.runs.len() - MERGE_FAN) {
                return ToDrain::Runs(Vec::new());
            }
        }
        ToDrain::Runs(std::mem::take(&mut self.runs))
    }

    fn spill_past_budget(&mut self) {
        let budget = self.disk.budget;
        if self.held_bytes.abs_diff(self.told) >= TELL_STEP.min(budget / 64) {
            self.tell();
        }
        // The map's own size first: it is checked for every record, and
        // the shared count is a load from a line other cores write.
        if self.held_bytes - self.stays_bytes.min(self.held_bytes) >= budget / SPILLER_FRACTION
            && !self.held.is_empty()
            && self.disk.held.load(Ordering::Relaxed) > budget
        {
            self.spill(false);
            self.compact();
        }
    }

    /// Writes the held entries out as a run. Once a run could not be
    /// written or read (here or by another map), the entries are let go
    /// instead: the hunt fails when every file is read and writes no
    /// result, so holding them would only grow memory until then, as the
    /// findings store drops findings once it failed.
    ///
    /// Values that stay ([`Spillable::stays`]) are kept, unless `all`;
    /// past their share ([`STAYING_BUDGETS`]) the largest go too, until
    /// those left hold one budget. Unless `all` (the end), the keys
    /// written are remembered where the values ask for it
    /// ([`Spillable::REMEMBERS_WRITTEN`]).
    fn spill(&mut self, all: bool) {
        if self.held.is_empty() {
            return;
        }
        let mut entries = sorted(std::mem::take(&mut self.held));
        self.held_bytes = 0;
        let entry_bytes = |(k, v): &(K, V)| K::part_bytes(k.as_part()) + v.approx_bytes();
        let staying: usize = if all {
            0
        } else {
            entries
                .iter()
                .filter(|(_, v)| v.stays())
                .map(entry_bytes)
                .sum()
        };
        if staying > 0 {
            // Split only when some value stays: a second vector of every
            // entry, at the moment the map is largest, for nothing
            // otherwise.
            let (mut stay, mut go): (Vec<_>, Vec<_>) =
                entries.into_iter().partition(|(_, v)| v.stays());
            let mut kept = staying;
            // What other maps' values that stay held at their last spill.
            let others = self
                .disk
                .staying
                .load(Ordering::Relaxed)
                .saturating_sub(self.stays_told);
            if staying + others > self.disk.budget.saturating_mul(STAYING_BUDGETS) {
                // The largest go, until those left (here and elsewhere)
                // hold one budget: the others keep being decided as the
                // hunt goes.
                stay.sort_by_cached_key(|e| Reverse(entry_bytes(e)));
                let mut leaving = 0;
                while kept + others > self.disk.budget && leaving < stay.len() {
                    kept -= entry_bytes(&stay[leaving]);
                    leaving += 1;
                }
                go.extend(stay.drain(..leaving));
                go.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            }
            self.held_bytes = kept;
            for (k, v) in stay {
                self.held.get_or_insert_with(k.as_part(), || v);
            }
            entries = go;
        }
        self.stays_bytes = self.held_bytes;
        self.tell_staying();
        self.tell();
        if self.disk.failed() || entries.is_empty() {
            return;
        }
        if !all && V::REMEMBERS_WRITTEN {
            let written = self.written.get_or_insert_with(WrittenKeys::new);
            for (k, _) in &entries {
                written.insert(key_hash(k.as_part()));
            }
        }
        match write_run(entries.iter().map(|(k, v)| (k, v))) {
            Ok(file) => {
                self.disk.runs_written.fetch_add(1, Ordering::Relaxed);
                self.runs.push(Run { file, level: 0 });
            }
            Err(e) => self
                .disk
                .fail(format!("writing detection state to a temporary file: {e}")),
        }
    }

    /// Merges every [`MERGE_FAN`] runs of one level into one of the next.
    fn compact(&mut self) {
        loop {
            if self.disk.failed() {
                return;
            }
            // Runs are by level, highest first: the lowest level holding
            // a full fan of runs, where a merge of maps may have left one
            // above the lowest.
            let full = (0..self.runs.len().saturating_sub(MERGE_FAN - 1))
                .rev()
                .find(|&i| self.runs[i].level == self.runs[i + MERGE_FAN - 1].level);
            match full {
                Some(from) if self.merge_fan_from(from) => {}
                _ => return,
            }
        }
    }

    /// Merges the [`MERGE_FAN`] runs from `from` on into one a level above
    /// the highest of them; whether it could.
    fn merge_fan_from(&mut self, from: usize) -> bool {
        let level = self.runs[from].level + 1;
        let some: Vec<Run> = self.runs.drain(from..from + MERGE_FAN).collect();
        match self.merge_to_run(some, level) {
            Some(run) => {
                self.runs.push(run);
                self.runs.sort_by_key(|r| Reverse(r.level));
                true
            }
            None => false,
        }
    }

    fn merge_to_run(&self, runs: Vec<Run>, level: u32) -> Option<Run> {
        let write = || -> Result<File, String> {
            let mut w = RunWriter::new().map_err(|e| e.to_string())?;
            let mut copy = Vec::new();
            // Large values (a correlation group's parts) are copied as
            // they are, each an entry of its own: folding them held a
            // dense group's parts at once, and one group of 1.5 million
            // matches peaked at 300-325 MiB in a merge of its runs.
            // Draining folds them, once.
            merged(runs, true, &mut |out: Merged<K, V>| {
                match out {
                    Merged::Folded(k, v) => w.put(&k, &v),
                    Merged::Large {
                        key,
                        from,
                        offset,
                        len,
                    } => w.put_copied(key, from, offset, len, &mut copy),
                }
                .map_err(|e| e.to_string())
            })?;
            w.finish().map_err(|e| e.to_string())
        };
        match write() {
            Ok(file) => {
                self.disk.runs_written.fetch_add(1, Ordering::Relaxed);
                Some(Run { file, level })
            }
            Err(e) => {
                self.disk
                    .fail(format!("merging detection state on disk: {e}"));
                None
            }
        }
    }
}

impl<K: SpillKey, V: Spillable> std::fmt::Debug for SpillingMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillingMap")
            .field("held_entries", &self.held.len())
            .field("held_bytes", &self.held_bytes)
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl<K: SpillKey, V: Spillable> Drop for SpillingMap<K, V> {
    fn drop(&mut self) {
        // What it held is no longer held.
        self.held_bytes = 0;
        self.stays_bytes = 0;
        self.tell_staying();
        self.tell();
    }
}

/// Moves a shared count by what a map holds now against what it told
/// (`told`), and remembers what it told.
fn settle(count: &AtomicUsize, now: usize, told: &mut usize) {
    if now >= *told {
        count.fetch_add(now - *told, Ordering::Relaxed);
    } else {
        count.fetch_sub(*told - now, Ordering::Relaxed);
    }
    *told = now;
}

/// Entries in key order.
fn sorted<K: SpillKey, V>(held: Keyed<K, V>) -> Vec<(K, V)> {
    let mut entries: Vec<(K, V)> = held.into_iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// Writes entries, in key order, to a new anonymous temporary file.
fn write_run<'a, K: SpillKey + 'a, V: Spillable + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a V)>,
) -> io::Result<File> {
    let mut w = RunWriter::new()?;
    for (k, v) in entries {
        w.put(k, v)?;
    }
    w.finish()
}

struct RunWriter {
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl RunWriter {
    fn new() -> io::Result<RunWriter> {
        Ok(RunWriter {
            out: BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
            buf: Vec::new(),
        })
    }

    /// An entry: its key and its value, each a record, so that a merge
    /// reads keys and leaves values where they are until it takes them.
    fn put<K: SpillKey, V: Spillable>(&mut self, key: &K, value: &V) -> io::Result<()> {
        self.put_key(key)?;
        self.buf.clear();
        value.write(&mut self.buf)?;
        codec::write_record(&mut self.out, &self.buf)
    }

    /// An entry's key record.
    fn put_key<K: SpillKey>(&mut self, key: &K) -> io::Result<()> {
        self.buf.clear();
        key.write(&mut self.buf)?;
        codec::write_record(&mut self.out, &self.buf)
    }

    /// An entry whose value is copied from another run as it is, in
    /// pieces of at most [`VALUE_READ_AT_ONCE`] bytes through `buf`.
    fn put_copied<K: SpillKey>(
        &mut self,
        key: &K,
        from: &RunReader,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        self.put_key(key)?;
        let len32 = u32::try_from(len).map_err(|_| io::Error::other("value over 4 GiB"))?;
        io::Write::write_all(&mut self.out, &len32.to_le_bytes())?;
        let mut done = 0;
        while done < len {
            let piece = (len - done).min(VALUE_READ_AT_ONCE) as usize;
            buf.resize(piece, 0);
            read_at(from.input.get_ref(), buf, offset + done)?;
            io::Write::write_all(&mut self.out, buf)?;
            done += piece as u64;
        }
        Ok(())
    }

    fn finish(self) -> io::Result<File> {
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(file)
    }
}

/// A run read front to back: keys as they come, values where they are.
struct RunReader {
    input: BufReader<File>,
    /// Where `input` is in the file.
    pos: u64,
    /// The file's length: a value said to run past it is damage.
    len: u64,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader {
    fn new(file: File) -> Result<RunReader, String> {
        let len = file
            .metadata()
            .map_err(|e| format!("detection state on disk: {e}"))?
            .len();
        Ok(RunReader {
            input: BufReader::with_capacity(1 << 16, file),
            pos: 0,
            len,
            buf: Vec::new(),
            at: 0,
        })
    }

    /// The next entry's key, and its value if small, else where it is.
    /// The merge holds each run's next entry: a key's large values (a
    /// correlation group's parts), read in full, held the whole group at
    /// once, several times over.
    fn next<K: SpillKey>(&mut self) -> Result<Option<(K, Pending)>, String> {
        self.at += 1;
        let at = self.at;
        let damaged = |e: String| format!("detection state read back from disk, entry {at}: {e}");
        if !codec::read_record(&mut self.input, &mut self.buf).map_err(damaged)? {
            return Ok(None);
        }
        self.pos += 4 + self.buf.len() as u64;
        let mut c = Cursor::new(&self.buf);
        let key = K::read(&mut c).map_err(damaged)?;
        if c.left() != 0 {
            return Err(damaged(format!("{} bytes after the key", c.left())));
        }
        let mut len = [0u8; 4];
        io::Read::read_exact(&mut self.input, &mut len)
            .map_err(|e| damaged(format!("value length: {e}")))?;
        let len = u64::from(u32::from_le_bytes(len));
        let offset = self.pos + 4;
        if offset + len > self.len {
            return Err(damaged(format!("value of {len} bytes cut short")));
        }
        self.pos = offset + len;
        let value = if len <= VALUE_READ_AT_ONCE {
            let mut bytes = vec![0u8; len as usize];
            io::Read::read_exact(&mut self.input, &mut bytes)
                .map_err(|e| damaged(e.to_string()))?;
            Value::Read(bytes)
        } else {
            self.input
                .seek_relative(len as i64)
                .map_err(|e| damaged(e.to_string()))?;
            Value::At { offset, len }
        };
        Ok(Some((key, Pending { value, at })))
    }

    /// Reads a value [`RunReader::next`] read or passed over.
    fn value<V: Spillable>(&self, p: Pending) -> Result<V, String> {
        let damaged =
            |e: String| format!("detection state read back from disk, entry {}: {e}", p.at);
        let bytes = match p.value {
            Value::Read(bytes) => bytes,
            Value::At { offset, len } => {
                let mut bytes = vec![0u8; len as usize];
                read_at(self.input.get_ref(), &mut bytes, offset)
                    .map_err(|e| damaged(e.to_string()))?;
                bytes
            }
        };
        let mut c = Cursor::new(&bytes);
        let value = V::read(&mut c).map_err(damaged)?;
        match c.left() {
            0 => Ok(value),
            n => Err(damaged(format!("{n} bytes after the entry"))),
        }
    }
}

/// Values up to this size are read with their key: a read of its own
/// for each (a system call) cost more than holding them, and most values
/// (sessions, buckets, pivot rows) are small.
const VALUE_READ_AT_ONCE: u64 = 64 << 10;

/// An entry's value, and the entry's place in its run.
struct Pending {
    value: Value,
    at: usize,
}

/// A value as the merge holds it until it takes it.
enum Value {
    /// Read already.
    Read(Vec<u8>),
    /// Where it is in the run (a large one: a correlation group's part).
    At { offset: u64, len: u64 },
}

/// Reads `buf.len()` bytes of `file` from `offset` without moving its
/// cursor (a run's reader reads on from where it is; the sign-in index's
/// workers look up one run at once).
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        // `seek_read` moves the cursor there: it is put back.
        let mut f = file;
        let cursor = f.stream_position()?;
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        f.seek(io::SeekFrom::Start(cursor)).map(|_| ())
    }
}

/// What a map drains ([`SpillingMap::final_runs`]).
enum ToDrain<K, V> {
    Runs(Vec<Run>),
    Held(Vec<(K, V)>),
}

/// A key's values as [`SpillingMap::drain_parts`] hands them on.
#[derive(Debug)]
pub struct Parts<V> {
    /// Its small values, folded.
    pub small: Option<V>,
    /// Its large values, where they lie.
    pub large: Vec<LargePart>,
}

impl<V> Default for Parts<V> {
    fn default() -> Self {
        Parts {
            small: None,
            large: Vec::new(),
        }
    }
}

impl<V: Spillable> Parts<V> {
    /// Every value read and folded into one: what [`SpillingMap::drain`]
    /// would have handed on.
    pub fn folded(self) -> Result<Option<V>, String> {
        let mut out = self.small;
        let mut buf = Vec::new();
        for l in &self.large {
            let v: V = l.value(&mut buf)?;
            match &mut out {
                Some(o) => o.fold(v),
                None => out = Some(v),
            }
        }
        Ok(out)
    }
}

/// A value too large to read with its key, where it lies in a run.
#[derive(Debug)]
pub struct LargePart {
    file: File,
    offset: u64,
    len: u64,
    /// The entry's place in its run, for errors.
    at: usize,
}

impl LargePart {
    /// The `len` bytes of `file` from `offset` on, as a value.
    pub fn new(file: File, offset: u64, len: u64) -> LargePart {
        LargePart {
            file,
            offset,
            len,
            at: 0,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes (a value always has some).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads its first `n` bytes (all of it, if shorter) into `buf`.
    pub fn read_head(&self, buf: &mut Vec<u8>, n: u64) -> Result<(), String> {
        buf.resize(n.min(self.len) as usize, 0);
        read_at(&self.file, buf, self.offset).map_err(|e| self.damaged(e.to_string()))
    }

    /// Reads `out.len()` of its bytes from `start` on.
    pub fn read_into(&self, out: &mut [u8], start: u64) -> Result<(), String> {
        if start + out.len() as u64 > self.len {
            return Err(self.damaged(format!(
                "{} bytes from {start} wanted of {}",
                out.len(),
                self.len
            )));
        }
        read_at(&self.file, out, self.offset + start).map_err(|e| self.damaged(e.to_string()))
    }

    /// Reads it whole into `buf`.
    pub fn read(&self, buf: &mut Vec<u8>) -> Result<(), String> {
        self.read_head(buf, self.len)
    }

    /// Reads it whole as a value.
    pub fn value<V: Spillable>(&self, buf: &mut Vec<u8>) -> Result<V, String> {
        self.read(buf)?;
        let mut c = Cursor::new(buf);
        let value = V::read(&mut c).map_err(|e| self.damaged(e))?;
        match c.left() {
            0 => Ok(value),
            n => Err(self.damaged(format!("{n} bytes after the entry"))),
        }
    }

    /// `e`, said of this value.
    pub fn damaged(&self, e: String) -> String {
        format!(
            "detection state read back from disk, entry {}: {e}",
            self.at
        )
    }
}

/// A drained key: the merge's own, or one lent with a large value.
enum KeyOf<'a, K> {
    Owned(K),
    Borrowed(&'a K),
}

impl<K: SpillKey> KeyOf<'_, K> {
    fn is(&self, k: &K) -> bool {
        match self {
            KeyOf::Owned(o) => o == k,
            KeyOf::Borrowed(b) => *b == k,
        }
    }

    fn owned(self) -> K {
        match self {
            KeyOf::Owned(o) => o,
            KeyOf::Borrowed(b) => K::from_part(b.as_part()),
        }
    }
}

/// A drained value, read or not.
enum PartOf<V> {
    Small(V),
    Large(LargePart),
}

/// What a merge hands on, in key order.
enum Merged<'a, K, V> {
    /// A key and its values folded into one.
    Folded(K, V),
    /// A value too large to read with its key ([`VALUE_READ_AT_ONCE`]),
    /// where it is, unread: with `pass_large`, a key's large values are
    /// handed on each alone, besides its small ones folded.
    Large {
        key: &'a K,
        from: &'a RunReader,
        offset: u64,
        len: u64,
    },
}

/// Where a merge hands what it merged; an error stops it.
type MergeSink<'s, K, V> = dyn FnMut(Merged<'_, K, V>) -> Result<(), String> + 's;

/// The entries of sorted runs, merged by key, each key's values folded
/// into one as they are read (but for large ones with `pass_large`),
/// handed to `each` in key order.
fn merged<K: SpillKey, V: Spillable>(
    runs: Vec<Run>,
    pass_large: bool,
    each: &mut MergeSink<'_, K, V>,
) -> Result<(), String> {
    let mut readers: Vec<RunReader> = runs
        .into_iter()
        .map(|r| RunReader::new(r.file))
        .collect::<Result<_, _>>()?;
    let mut heads: Vec<Option<Pending>> = Vec::with_capacity(readers.len());
    let mut order = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        match r.next::<K>()? {
            Some((k, v)) => {
                order.push(Reverse((k, i)));
                heads.push(Some(v));
            }
            None => heads.push(None),
        }
    }
    let mut last: Option<(K, V)> = None;
    while let Some(Reverse((key, i))) = order.pop() {
        let head = heads[i].take().expect("a head for each queued run");
        let value = match head.value {
            Value::At { offset, len } if pass_large => {
                if let Some((k, v)) = last.take() {
                    each(Merged::Folded(k, v))?;
                }
                each(Merged::Large {
                    key: &key,
                    from: &readers[i],
                    offset,
                    len,
                })?;
                None
            }
            _ => Some(readers[i].value::<V>(head)?),
        };
        if let Some((k, v)) = readers[i].next::<K>()? {
            if k < key {
                return Err(format!(
                    "detection state read back from disk, entry {}: key out of order",
                    readers[i].at
                ));
            }
            order.push(Reverse((k, i)));
            heads[i] = Some(v);
        }
        let Some(value) = value else { continue };
        match &mut last {
            Some((k, v)) if *k == key => v.fold(value),
            _ => {
                if let Some((k, v)) = last.replace((key, value)) {
                    each(Merged::Folded(k, v))?;
                }
            }
        }
    }
    if let Some((k, v)) = last {
        each(Merged::Folded(k, v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A count and the smallest few texts seen, as detections keep.
    #[derive(Clone, Debug, PartialEq, Default)]
    struct Tally {
        count: u64,
        smallest: BTreeSet<String>,
    }

    const KEPT: usize = 3;

    impl Spillable for Tally {
        fn approx_bytes(&self) -> usize {
            64 + self.smallest.iter().map(|s| s.len() + 32).sum::<usize>()
        }
        fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
            codec::put_u64(buf, self.count);
            codec::put_u32(buf, self.smallest.len() as u32);
            for s in &self.smallest {
                codec::put_text(buf, s)?;
            }
            Ok(())
        }
        fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
            let count = c.u64()?;
            let mut smallest = BTreeSet::new();
            for _ in 0..c.u32()? {
                smallest.insert(c.text()?.to_owned());
            }
            Ok(Tally { count, smallest })
        }
        fn fold(&mut self, other: Self) {
            self.count += other.count;
            self.smallest.extend(other.smallest);
            while self.smallest.len() > KEPT {
                self.smallest.pop_last();
            }
        }
    }

    fn add(map: &mut SpillingMap<Box<str>, Tally>, key: &str, seen: &str) {
        let one = Tally {
            count: 1,
            smallest: [seen.to_owned()].into(),
        };
        let mut made = false;
        let held = map.get_or_insert_with(key, || {
            made = true;
            one.clone()
        });
        if !made {
            held.fold(one);
            map.grew(40);
        }
    }

    fn drained(map: SpillingMap<Box<str>, Tally>) -> (BTreeMap<Box<str>, Tally>, Vec<Box<str>>) {
        let mut got = BTreeMap::new();
        let mut order = Vec::new();
        map.drain(|k, v| {
            order.push(k.clone());
            assert!(got.insert(k, v).is_none(), "a key handed over twice");
        });
        (got, order)
    }

    /// A count that stays in memory from 100 on, as a correlation group
    /// decided while the hunt goes does.
    #[derive(Debug, PartialEq)]
    struct Count(u64);

    impl Spillable for Count {
        fn approx_bytes(&self) -> usize {
            64
        }
        fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
            codec::put_u64(buf, self.0);
            Ok(())
        }
        fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
            c.u64().map(Count)
        }
        fn fold(&mut self, other: Self) {
            self.0 += other.0;
        }
        fn stays(&self) -> bool {
            self.0 >= 100
        }
        const REMEMBERS_WRITTEN: bool = true;
    }

    /// Values that stay are kept in memory when their map spills, the
    /// others are written; each key comes out whole at the end.
    #[test]
    fn values_that_stay_are_not_written() {
        // Spills at every change past 32 bytes held, and "busy" (68
        // bytes) is within the staying values' share.
        let disk = StateDisk::new(512);
        let mut map: SpillingMap<Box<str>, Count> = SpillingMap::new(disk.clone());
        map.get_or_insert_with("busy", || Count(0)).0 = 500;
        for i in 0..300u64 {
            let key = format!("k{}", i % 30);
            map.get_or_insert_with(&key, || Count(0)).0 += 1;
            map.get_or_insert_with("busy", || Count(0)).0 += 1;
        }
        assert!(disk.runs_written() > 0);
        assert_eq!(map.held.get("busy"), Some(&Count(800)), "stayed, whole");
        assert!(!map.may_have_written("busy"));
        assert!((0..30).all(|i| map.may_have_written(&format!("k{i}"))));
        // The others: about the budget's worth of 66-byte counts.
        assert!(map.held.len() <= 10, "{} held", map.held.len());
        let mut got = Vec::new();
        map.drain(|k, v| got.push((k, v.0)));
        assert_eq!(disk.error(), None);
        let mut want: Vec<(Box<str>, u64)> =
            (0..30).map(|i| (format!("k{i}").into(), 10)).collect();
        want.push(("busy".into(), 800));
        want.sort();
        assert_eq!(got, want);
    }

    /// The filter of written keys finds every key put in, and few others
    /// while it holds few; merged, it holds both sides' keys.
    #[test]
    fn written_keys_are_always_found_and_others_rarely() {
        let mut rng = fastrand::Rng::with_seed(9);
        let (mut a, mut b) = (WrittenKeys::new(), WrittenKeys::new());
        let put: Vec<u64> = (0..200_000).map(|_| rng.u64(..)).collect();
        for (i, &h) in put.iter().enumerate() {
            if i % 2 == 0 {
                a.insert(h)
            } else {
                b.insert(h)
            }
        }
        a.union(&b);
        assert!(put.iter().all(|&h| a.may_hold(h)));
        let others = (0..100_000).filter(|_| a.may_hold(rng.u64(..))).count();
        // About 1 in 15,000 at 200,000 keys (7 expected).
        assert!(others < 50, "{others} of 100,000 others found");
    }

    /// Values that stay but outgrow their share of the budget are written
    /// out like the others, the largest first until those left hold one
    /// budget, and their keys remembered as written; each key still comes
    /// out whole at the end.
    #[test]
    fn values_that_stay_past_their_share_are_written_and_remembered() {
        // Staying counts of 66 bytes: the fourth takes them past twice
        // 100, and the spill before the fifth is made writes three out
        // (66 bytes left, within one budget).
        let disk = StateDisk::new(100);
        let mut map: SpillingMap<Box<str>, Count> = SpillingMap::new(disk.clone());
        for b in 0..5 {
            map.get_or_insert_with(&format!("b{b}"), || Count(100));
        }
        for i in 0..200u64 {
            map.get_or_insert_with(&format!("k{}", i % 20), || Count(0))
                .0 += 1;
            map.get_or_insert_with(&format!("b{}", i % 5), || Count(0))
                .0 += 1;
        }
        assert!(disk.runs_written() > 0);
        assert!((0..3).all(|b| map.may_have_written(&format!("b{b}"))));
        // Within the share, they stayed.
        for b in ["b3", "b4"] {
            assert!(!map.may_have_written(b));
            assert_eq!(map.held.get(b), Some(&Count(140)));
        }
        assert!((0..20).all(|k| map.may_have_written(&format!("k{k}"))));
        assert!(!map.may_have_written("never seen"));
        // Memory holds the two that stay and what came since the last
        // spill (a spill at every change past 100 bytes), not every count.
        assert!(map.held.len() <= 4, "{} held", map.held.len());
        let mut got = Vec::new();
        map.drain(|k, v| got.push((k, v.0)));
        assert_eq!(disk.error(), None);
        let mut want: Vec<(Box<str>, u64)> = (0..20)
            .map(|k| (format!("k{k}").into(), 10))
            .chain((0..5).map(|b| (format!("b{b}").into(), 140)))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    /// The share of values that stay is one for every map of the hunt:
    /// two maps (two correlations fed the same flood) whose staying values
    /// together pass it write out those of the map that spills, where a
    /// share each kept twice as much; together within it, both keep theirs.
    #[test]
    fn values_that_stay_share_one_share_across_maps() {
        // Staying counts of 66 bytes against a budget of 100: a share of
        // 200 holds three.
        let fill = |map: &mut SpillingMap<Box<str>, Count>, prefix: &str, staying: usize| {
            for b in 0..staying {
                map.get_or_insert_with(&format!("{prefix}{b}"), || Count(100));
            }
            for i in 0..40u64 {
                map.get_or_insert_with(&format!("{prefix}k{}", i % 10), || Count(0))
                    .0 += 1;
            }
        };
        for (b_staying, b_written) in [(1, false), (2, true)] {
            let disk = StateDisk::new(100);
            let mut a: SpillingMap<Box<str>, Count> = SpillingMap::new(disk.clone());
            let mut b: SpillingMap<Box<str>, Count> = SpillingMap::new(disk.clone());
            fill(&mut a, "a", 2);
            fill(&mut b, "b", b_staying);
            assert!(!a.may_have_written("a0") && !a.may_have_written("a1"));
            for k in 0..b_staying {
                assert_eq!(b.may_have_written(&format!("b{k}")), b_written, "b{k}");
            }
            assert!(b.may_have_written("bk0"), "the others are written");
            for (map, prefix, staying) in [(a, "a", 2), (b, "b", b_staying)] {
                let mut got = Vec::new();
                map.drain(|k, v| got.push((k, v.0)));
                let mut want: Vec<(Box<str>, u64)> = (0..10)
                    .map(|k| (format!("{prefix}k{k}").into(), 4))
                    .chain((0..staying).map(|b| (format!("{prefix}{b}").into(), 100)))
                    .collect();
                want.sort();
                assert_eq!(got, want);
            }
            assert_eq!(disk.error(), None);
            assert_eq!(disk.staying.load(Ordering::Relaxed), 0, "drained");
        }
    }

    /// Whatever the budget (everything spilled, some, none), across
    /// shards merged in pieces, and with more runs than merge at once (so
    /// merges of merges happen), each key comes out once with the value
    /// a map that never spilled holds.
    #[test]
    fn spilled_entries_come_back_as_held_ones() {
        let mut rng = fastrand::Rng::with_seed(5);
        let keys: Vec<String> = (0..3000)
            .map(|i| format!("session-{}", i * 7919 % 3001))
            .collect();
        let events: Vec<(usize, String)> = (0..40_000)
            .map(|_| (rng.usize(..keys.len()), format!("t{}", rng.u32(..500))))
            .collect();
        let mut want = BTreeMap::<Box<str>, Tally>::new();
        for (k, t) in &events {
            let one = Tally {
                count: 1,
                smallest: [t.clone()].into(),
            };
            match want.get_mut(keys[*k].as_str()) {
                Some(v) => v.fold(one),
                None => {
                    want.insert(keys[*k].as_str().into(), one);
                }
            }
        }
        for budget in [0, 64 << 10, 1 << 20, 1 << 30] {
            let disk = StateDisk::new(budget);
            let mut main = SpillingMap::new(disk.clone());
            for chunk in events.chunks(5000) {
                let mut shard = main.fork();
                for (k, t) in chunk {
                    add(&mut shard, &keys[*k], t);
                }
                main.merge(shard);
            }
            let runs = disk.runs_written();
            let (got, order) = drained(main);
            assert_eq!(disk.error(), None);
            assert_eq!(got, want, "budget {budget}");
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted, "budget {budget}: keys come out in key order");
            if budget <= 64 << 10 {
                assert!(runs as usize > MERGE_FAN, "budget {budget}: {runs} runs");
            }
            if budget == 1 << 30 {
                assert_eq!(runs, 0);
            }
        }
    }

    /// A map whose few keys keep growing (sessions gaining token ids)
    /// spills as one that gains keys does, and tells the disk so that
    /// other maps see it; dropped, it holds nothing.
    #[test]
    fn growth_of_held_values_spills() {
        let disk = StateDisk::new(64 << 10);
        let mut map = SpillingMap::<Box<str>, Tally>::new(disk.clone());
        for round in 0..200 {
            for key in ["a", "b"] {
                add(&mut map, key, &format!("t{round}"));
                // Each value grows by 1 KB a round, not counted by `add`.
                map.grew(1000);
            }
        }
        assert!(disk.runs_written() > 2, "{}", disk.runs_written());
        assert!(disk.held.load(Ordering::Relaxed) < 64 << 10);
        let (got, _) = drained(map);
        assert_eq!(got["a"].count, 200);
        assert_eq!(disk.held.load(Ordering::Relaxed), 0);
    }

    /// Merged maps that share keys count at least what they hold, so a
    /// merge never lets a map pass the budget unseen.
    #[test]
    fn a_merge_never_counts_less_than_it_holds() {
        let disk = StateDisk::new(1 << 30);
        let (mut mine, mut theirs) = (
            SpillingMap::<Box<str>, Tally>::new(disk.clone()),
            SpillingMap::<Box<str>, Tally>::new(disk.clone()),
        );
        for i in 0..100 {
            add(&mut mine, &format!("k{i}"), "a");
            add(&mut theirs, &format!("k{i}"), &format!("b{i}"));
        }
        mine.merge(theirs);
        let holds: usize = mine
            .held
            .iter()
            .map(|(k, v)| k.len() + v.approx_bytes())
            .sum();
        assert!(mine.held_bytes >= holds, "{} < {holds}", mine.held_bytes);
        mine.tell();
        assert_eq!(disk.held.load(Ordering::Relaxed), mine.held_bytes);
    }

    /// Once a run could not be written, a map past the budget lets its
    /// entries go rather than hold them until the hunt fails.
    #[test]
    fn after_a_failure_memory_stays_bounded() {
        let disk = StateDisk::new(64 << 10);
        disk.fail("disk full".into());
        let mut map = SpillingMap::<Box<str>, Tally>::new(disk.clone());
        for i in 0..5000 {
            add(&mut map, &format!("session-{i}"), "t");
            // Within a telling step (a 64th of the budget) and an entry.
            assert!(
                map.held_bytes <= (64 << 10) + 1024 + 200,
                "{}",
                map.held_bytes
            );
        }
        assert_eq!(disk.runs_written(), 0);
        assert_eq!(disk.error().as_deref(), Some("disk full"));
    }

    /// A merge of maps can leave a full fan of runs on a level above the
    /// lowest (31 runs of level 1 and one of level 0, plus another map's
    /// run of level 1): that level is merged too, so no level keeps a fan
    /// of files open, and every key still comes out once.
    #[test]
    fn every_level_with_a_full_fan_is_merged() {
        let run_of = |key: String, level: u32| {
            let entry = [(
                Box::<str>::from(key),
                Tally {
                    count: 1,
                    smallest: BTreeSet::new(),
                },
            )];
            Run {
                file: write_run(entry.iter().map(|(k, v)| (k, v))).unwrap(),
                level,
            }
        };
        let disk = StateDisk::new(1 << 30);
        let mut mine = SpillingMap::<Box<str>, Tally>::new(disk.clone());
        for i in 0..MERGE_FAN - 1 {
            mine.runs.push(run_of(format!("k{i:03}"), 1));
        }
        mine.runs.push(run_of("zero".into(), 0));
        let mut theirs = mine.fork();
        theirs.runs.push(run_of("theirs".into(), 1));
        mine.merge(theirs);
        let levels: Vec<u32> = mine.runs.iter().map(|r| r.level).collect();
        assert_eq!(levels, [2, 0]);
        let (got, _) = drained(mine);
        assert_eq!(got.len(), MERGE_FAN + 1);
        assert_eq!(disk.error(), None);
    }

    /// A large value (a correlation group's part) and how many parts were
    /// folded into it; reads of large values are counted per thread.
    #[derive(Debug)]
    struct Part {
        parts: u64,
        bytes: Vec<u8>,
    }

    thread_local! {
        static LARGE_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    impl Spillable for Part {
        fn approx_bytes(&self) -> usize {
            64 + self.bytes.len()
        }
        fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
            codec::put_u64(buf, self.parts);
            codec::put_u32(buf, codec::count(self.bytes.len())?);
            buf.extend_from_slice(&self.bytes);
            Ok(())
        }
        fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
            let parts = c.u64()?;
            let bytes: Vec<u8> = (0..c.u32()?).map(|_| c.u8()).collect::<Result<_, _>>()?;
            if bytes.len() as u64 > VALUE_READ_AT_ONCE {
                LARGE_READS.with(|n| n.set(n.get() + 1));
            }
            Ok(Part { parts, bytes })
        }
        fn fold(&mut self, other: Self) {
            self.parts += other.parts;
            assert_eq!(self.bytes, other.bytes, "parts keep their bytes");
        }
    }

    /// `times` parts of key "dense" holding `payload`, and as many small
    /// ones of keys "small0" to the one before "small{smalls}" in turn.
    fn dense_and_small(
        map: &mut SpillingMap<Box<str>, Part>,
        payload: &[u8],
        times: u64,
        smalls: u64,
    ) {
        for i in 0..times {
            map.get_or_insert_with("dense", || Part {
                parts: 1,
                bytes: payload.to_vec(),
            });
            map.get_or_insert_with(&format!("small{}", i % smalls), || Part {
                parts: 1,
                bytes: vec![7; 10],
            });
        }
    }

    /// Merging runs copies a key's large values as they are, each an
    /// entry of its own, instead of reading and folding them (which held
    /// all of a dense group's parts at once); draining folds them, once,
    /// with the key's small values.
    #[test]
    fn merging_runs_copies_large_values_and_draining_folds_them() {
        let payload: Vec<u8> = (0..(VALUE_READ_AT_ONCE as usize + 5000))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let disk = StateDisk::new(0);
        let mut map: SpillingMap<Box<str>, Part> = SpillingMap::new(disk.clone());
        let parts = 2 * MERGE_FAN as u64 + 3;
        // Budget 0: every insert writes the map out, a run each.
        dense_and_small(&mut map, &payload, parts, 4);
        assert!(
            map.runs.iter().any(|r| r.level >= 1),
            "runs were merged: {:?}",
            map.runs.iter().map(|r| r.level).collect::<Vec<_>>()
        );
        assert_eq!(LARGE_READS.with(|n| n.get()), 0, "no large value read");
        let mut got = Vec::new();
        map.drain(|k, v| got.push((k.to_string(), v.parts, v.bytes.len())));
        assert_eq!(disk.error(), None);
        assert_eq!(
            LARGE_READS.with(|n| n.get()),
            parts as usize,
            "each read once"
        );
        let mut want = vec![("dense".to_string(), parts, payload.len())];
        want.extend((0..4).map(|s| {
            (
                format!("small{s}"),
                parts.div_ceil(4) - u64::from(s >= parts % 4 && parts % 4 != 0),
                10,
            )
        }));
        want.sort();
        assert_eq!(got, want);
    }

    /// Draining by parts hands on a key's large values unread, to be read
    /// as often as wanted, and its small ones folded; folding the parts
    /// gives what draining gives.
    #[test]
    fn draining_by_parts_leaves_large_values_unread_and_folds_to_what_draining_gives() {
        let payload: Vec<u8> = (0..(VALUE_READ_AT_ONCE as usize + 100))
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let fill = |map: &mut SpillingMap<Box<str>, Part>| {
            dense_and_small(map, &payload, MERGE_FAN as u64 + 5, 3);
        };
        let disk = StateDisk::new(0);
        let mut whole: SpillingMap<Box<str>, Part> = SpillingMap::new(disk.clone());
        fill(&mut whole);
        let mut want = Vec::new();
        whole.drain(|k, v| want.push((k.to_string(), v.parts)));
        let mut by_parts: SpillingMap<Box<str>, Part> = SpillingMap::new(disk.clone());
        fill(&mut by_parts);
        LARGE_READS.with(|n| n.set(0));
        let mut got = Vec::new();
        let mut large_seen = 0;
        by_parts.drain_parts(|k, parts| {
            assert_eq!(LARGE_READS.with(|n| n.get()), 0, "{k}: read before asked");
            large_seen += parts.large.len();
            if let Some(l) = parts.large.first() {
                assert!(l.len() > VALUE_READ_AT_ONCE);
                // Read twice: the same each time.
                let mut a = Vec::new();
                let mut b = Vec::new();
                l.read(&mut a)?;
                l.read(&mut b)?;
                assert_eq!(a, b);
            }
            let v = parts.folded()?.expect("every key has a value");
            LARGE_READS.with(|n| n.set(0));
            got.push((k.to_string(), v.parts));
            Ok(())
        });
        assert_eq!(disk.error(), None);
        assert_eq!(large_seen, MERGE_FAN + 5, "each of the dense key's parts");
        assert_eq!(got, want);
        // Held, never written: every value comes as a small one.
        let mut held: SpillingMap<Box<str>, Part> =
            SpillingMap::new(StateDisk::new(usize::MAX / 2));
        held.get_or_insert_with("k", || Part {
            parts: 4,
            bytes: vec![1],
        });
        let mut seen = Vec::new();
        held.drain_parts(|k, p| {
            seen.push((k.to_string(), p.large.len(), p.small.map(|v| v.parts)));
            Ok(())
        });
        assert_eq!(seen, [("k".to_string(), 0, Some(4))]);
    }

    /// An error the caller of [`SpillingMap::drain_parts`] returns stops
    /// it and is the disk's error.
    #[test]
    fn an_error_draining_by_parts_stops_it() {
        let disk = StateDisk::new(0);
        let mut map: SpillingMap<Box<str>, Part> = SpillingMap::new(disk.clone());
        for k in ["a", "b", "c"] {
            map.get_or_insert_with(k, || Part {
                parts: 1,
                bytes: vec![1],
            });
        }
        let mut keys = Vec::new();
        map.drain_parts(|k, _| {
            keys.push(k.to_string());
            if &*k == "b" {
                Err("damaged".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(disk.error().as_deref(), Some("damaged"));
    }

    /// A run damaged on disk (cut short, or its entries out of order) is
    /// an error in the [`StateDisk`], never a short or wrong answer taken
    /// as whole.
    #[test]
    fn a_damaged_run_is_an_error() {
        let entry = |k: &str| {
            (
                Box::<str>::from(k),
                Tally {
                    count: 1,
                    smallest: BTreeSet::new(),
                },
            )
        };
        let a = [entry("a"), entry("c")];
        let file = write_run(a.iter().map(|(k, v)| (k, v))).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - 3).unwrap();
        let b = [entry("b")];
        let other = write_run(b.iter().map(|(k, v)| (k, v))).unwrap();
        let runs = vec![
            Run { file, level: 0 },
            Run {
                file: other,
                level: 0,
            },
        ];
        let mut seen = Vec::new();
        let err = merged::<Box<str>, Tally>(runs, false, &mut |out| {
            if let Merged::Folded(k, _) = out {
                seen.push(k);
            }
            Ok(())
        })
        .unwrap_err();
        assert!(err.contains("entry 2") && err.contains("cut"), "{err}");

        let backwards = [entry("z"), entry("a")];
        let file = write_run(backwards.iter().map(|(k, v)| (k, v))).unwrap();
        let err = merged::<Box<str>, Tally>(vec![Run { file, level: 0 }], false, &mut |_| Ok(()))
            .unwrap_err();
        assert!(err.contains("out of order"), "{err}");

        // Through a map: the error reaches the disk, and the hunt fails.
        let disk = StateDisk::new(0);
        let mut map = SpillingMap::<Box<str>, Tally>::new(disk.clone());
        add(&mut map, "k", "x");
        add(&mut map, "l", "x");
        let bad = write_run(backwards.iter().map(|(k, v)| (k, v))).unwrap();
        map.runs.push(Run {
            file: bad,
            level: 0,
        });
        drained(map);
        assert!(disk.error().unwrap().contains("out of order"));
    }
}
