//! The findings of a hunt, held in memory up to a budget and spilled to
//! sorted runs on disk beyond it, then read back merged in report order.
//!
//! A Sigma rule that fires on most records (sign-ins from non-compliant
//! devices, say) makes about as many findings as the export has records:
//! 71,169 over 500 MB of sign-ins, about 2 KB each in memory. Held whole,
//! they grow with the input; spilled, memory stays at the budget whatever
//! the input size. A run is sorted before it is written, and reading
//! merges the runs and the findings still held, so the order is exactly
//! that of sorting every finding at once (ties keep the order findings
//! arrived in).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::ser::{Error as _, SerializeSeq};
use serde::Serialize;
use serde_json::{Map, Value};
use tokenward_event::Finding;

use crate::spill::{self, Places, Tables};

/// Findings held in memory before they spill to disk, by
/// [`Finding::approx_bytes`]: with allocator overhead the findings then
/// take about twice this.
pub const DEFAULT_MEMORY: usize = 32 << 20;

/// This many runs of one size are merged into one, as the digits of a
/// counter carry: reading holds at most this many files open per size
/// (sizes grow by this factor), and each finding is rewritten once per
/// size, whatever the budget and the input size.
const MERGE_FAN: usize = 32;

/// A spill file could not be written or read back.
#[derive(Debug, thiserror::Error)]
#[error("findings spilled to {path}: {reason}")]
pub struct SpillError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

impl SpillError {
    fn at(path: &Path, reason: impl ToString) -> SpillError {
        SpillError {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<SpillError> for io::Error {
    fn from(e: SpillError) -> io::Error {
        io::Error::other(e)
    }
}

/// Held findings taken out to be written as a sorted run
/// ([`Findings::take_run`]).
#[derive(Debug)]
#[must_use = "a taken run must be written and put back, or its findings are lost"]
pub struct PendingRun {
    /// Its place in the order runs were taken.
    number: u64,
    path: PathBuf,
    /// In arrival order.
    findings: Vec<Finding>,
    /// The places of each finding's shared parts, in the same order.
    places: Vec<Places>,
}

/// A run written to disk, to put back in its place ([`Findings::put_run`]).
#[derive(Debug)]
#[must_use = "a written run must be put back, or its findings are lost"]
pub struct WrittenRun {
    number: u64,
    path: PathBuf,
}

impl PendingRun {
    /// Sorts the findings and writes them out. Needs nothing of the
    /// [`Findings`] they came from.
    pub fn write(self) -> Result<WrittenRun, SpillError> {
        // Stable: ties keep the order the findings arrived in. Their
        // places are sorted, not the findings, some 250 bytes each.
        let mut order: Vec<usize> = (0..self.findings.len()).collect();
        order.sort_by(|&a, &b| self.findings[a].report_order(&self.findings[b]));
        let path = &self.path;
        let write = || -> io::Result<()> {
            let mut w = BufWriter::with_capacity(1 << 16, File::create(path)?);
            let mut buf = Vec::new();
            for i in order {
                spill::write(&mut w, &self.findings[i], self.places[i], &mut buf)?;
            }
            w.flush()
        };
        write().map_err(|e| SpillError::at(path, e))?;
        Ok(WrittenRun {
            number: self.number,
            path: self.path,
        })
    }
}

/// The findings of a hunt in report order ([`Finding::report_order`]).
#[derive(Debug)]
pub struct Findings {
    budget: usize,
    /// Not yet spilled, in arrival order until [`Findings::seal`] sorts them.
    held: Vec<Finding>,
    held_bytes: usize,
    /// Spilled runs, each sorted, in the order their findings arrived,
    /// with how many merges made each (levels never rise from the first
    /// run to the last).
    runs: Vec<(PathBuf, u32)>,
    /// Runs taken out so far ([`Findings::take_run`]): the next one's
    /// number.
    taken: u64,
    /// Taken runs that joined `runs` (merged or not): the number of the
    /// next to join.
    returned: u64,
    /// Written runs put back before some run taken earlier, by number:
    /// they join `runs` in the order they were taken, so merging stays as
    /// the digits of a counter carry whatever order writers finish in.
    early: BTreeMap<u64, PathBuf>,
    /// Evidence shared by many findings (a Sigma rule's metadata), written
    /// to runs as its place here.
    shared: SharedEvidence,
    /// Source file names, written to runs as their place here.
    files: Files,
    dir: Option<tempfile::TempDir>,
    len: u64,
    /// Findings by detection (or Sigma rule) id.
    per_rule: HashMap<String, u64>,
    sealed: bool,
}

/// Counts `f` under its rule id.
fn count_rule(per_rule: &mut HashMap<String, u64>, f: &Finding) {
    match per_rule.get_mut(f.rule_id.as_ref()) {
        Some(n) => *n += 1,
        None => {
            per_rule.insert(f.rule_id.to_string(), 1);
        }
    }
}

/// Each distinct shared evidence part spilled findings carried, in the
/// order first met. A spilled finding names its part by place: a Sigma
/// finding's shared part (rule title, author, licence, file, tags) is half
/// of it, written and read back once per finding otherwise; read back,
/// findings share one copy of it again.
#[derive(Debug, Default)]
struct SharedEvidence {
    parts: Vec<Arc<Map<String, Value>>>,
    /// Place of each part, by the address its `Arc` shares.
    places: HashMap<usize, usize>,
}

/// Each distinct source file name spilled findings came from, in the
/// order first met, by its text: findings of one file usually share one
/// name, but a detection may make its own copy.
#[derive(Debug, Default)]
struct Files {
    parts: Vec<Arc<str>>,
    places: HashMap<Arc<str>, usize, tokenward_spill::KeyHasher>,
}

impl Files {
    fn place(&mut self, name: &Arc<str>) -> usize {
        if let Some(&p) = self.places.get(name) {
            return p;
        }
        self.parts.push(Arc::clone(name));
        self.places.insert(Arc::clone(name), self.parts.len() - 1);
        self.parts.len() - 1
    }
}

impl SharedEvidence {
    fn place(&mut self, part: &Arc<Map<String, Value>>) -> usize {
        let parts = &mut self.parts;
        *self
            .places
            .entry(Arc::as_ptr(part) as usize)
            .or_insert_with(|| {
                parts.push(Arc::clone(part));
                parts.len() - 1
            })
    }
}

impl Default for Findings {
    fn default() -> Findings {
        Findings::with_budget(DEFAULT_MEMORY)
    }
}

impl Findings {
    /// An empty set that holds about `budget` bytes of findings in memory
    /// before spilling them to a temporary directory (in `TMPDIR`).
    pub fn with_budget(budget: usize) -> Findings {
        Findings {
            budget,
            held: Vec::new(),
            held_bytes: 0,
            runs: Vec::new(),
            taken: 0,
            returned: 0,
            early: BTreeMap::new(),
            shared: SharedEvidence::default(),
            files: Files::default(),
            dir: None,
            len: 0,
            per_rule: HashMap::new(),
            sealed: false,
        }
    }

    /// Findings already in report order (the caller's promise: they are
    /// not sorted again), held in memory.
    pub fn from_sorted(findings: Vec<Finding>) -> Findings {
        let mut per_rule = HashMap::new();
        for f in &findings {
            count_rule(&mut per_rule, f);
        }
        Findings {
            len: findings.len() as u64,
            held: findings,
            per_rule,
            sealed: true,
            ..Findings::with_budget(usize::MAX)
        }
    }

    /// Adds a finding, spilling the held ones first when they are over
    /// the budget.
    pub fn push(&mut self, f: Finding) -> Result<(), SpillError> {
        if self.add(f) {
            let run = self.take_run()?.write()?;
            self.put_run(run)?;
        }
        Ok(())
    }

    /// Adds a finding without spilling: whether the held findings are now
    /// over the budget, and should be taken out as a run
    /// ([`Findings::take_run`]).
    pub fn add(&mut self, f: Finding) -> bool {
        debug_assert!(!self.sealed, "findings added after sealing");
        self.held_bytes += f.approx_bytes();
        count_rule(&mut self.per_rule, &f);
        self.held.push(f);
        self.len += 1;
        self.held_bytes > self.budget
    }

    /// Takes the held findings out as a run to write, keeping its place
    /// among the runs: a caller that guards these findings with a lock
    /// writes the run ([`PendingRun::write`]) outside it, so that others
    /// may add findings meanwhile, then puts it back
    /// ([`Findings::put_run`]). Every taken run must be put back before
    /// the findings are sealed (reading is an error otherwise). A run
    /// put back before one taken earlier waits for it. Memory then holds,
    /// besides the held findings, each run on its way to disk: the budget
    /// and whatever batch of findings crossed it.
    pub fn take_run(&mut self) -> Result<PendingRun, SpillError> {
        if self.dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("tokenward-findings-")
                .tempdir()
                .map_err(|e| SpillError::at(&std::env::temp_dir(), e))?;
            self.dir = Some(dir);
        }
        let dir = self.dir.as_ref().expect("made above").path();
        // Named by its number and level: a merge is named by the number
        // of the last run in it, and merges ending at one run each rise a
        // level.
        let number = self.taken;
        self.taken += 1;
        let path = dir.join(format!("run-{number:05}-0"));
        self.held_bytes = 0;
        // Taken under the lock the workers hand their findings over with
        // (`Intake::hand_over`): the next run starts at this one's size,
        // so it is not copied as it doubles, and the findings stay where
        // they are.
        let size = self.held.len();
        let mut findings = std::mem::replace(&mut self.held, Vec::with_capacity(size));
        let places = findings.iter_mut().map(|f| self.places(f)).collect();
        Ok(PendingRun {
            number,
            path,
            findings,
            places,
        })
    }

    /// Takes a finding's shared evidence out and gives the places of its
    /// shared parts, for spilling it.
    fn places(&mut self, f: &mut Finding) -> Places {
        Places {
            evidence: f.evidence.take_shared().map(|p| self.shared.place(&p)),
            file: self.files.place(&f.source_file),
        }
    }

    /// The tables spilled findings name their shared parts in.
    fn tables(&self) -> Tables<'_> {
        Tables {
            evidence: &self.shared.parts,
            files: &self.files.parts,
        }
    }

    /// Puts a written run back in its place, once every run taken
    /// before it is back, and merges runs as they fill a level.
    pub fn put_run(&mut self, run: WrittenRun) -> Result<(), SpillError> {
        debug_assert!(
            run.number < self.taken,
            "a run not taken from these findings"
        );
        self.early.insert(run.number, run.path);
        while let Some(path) = self.early.remove(&self.returned) {
            self.returned += 1;
            self.runs.push((path, 0));
            while let Some(level) = self.full_level() {
                self.merge_last_runs(level)?;
            }
        }
        Ok(())
    }

    /// Puts the held findings in report order; reading needs it.
    pub fn seal(&mut self) {
        use rayon::slice::ParallelSliceMut;
        // On every core: it runs once the detections are done, and with a
        // rule that fires on most records it held up the output alone.
        // Stable, as the sort of a spilled run.
        self.held.par_sort_by(Finding::report_order);
        self.sealed = true;
    }

    /// Number of findings.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many findings each detection (or Sigma rule) id has, in no
    /// particular order.
    pub fn per_rule(&self) -> impl Iterator<Item = (&str, u64)> {
        self.per_rule.iter().map(|(id, &n)| (id.as_str(), n))
    }

    /// The temporary directory spilled runs are in, once there is one. It
    /// is removed when these findings are dropped.
    pub fn spill_dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }

    /// How many sorted runs went to disk (0: all in memory).
    pub fn spilled_runs(&self) -> usize {
        self.runs.len()
    }

    /// The level of the last [`MERGE_FAN`] runs, when they share one.
    fn full_level(&self) -> Option<u32> {
        let tail = self.runs.get(self.runs.len().checked_sub(MERGE_FAN)?..)?;
        let level = tail[0].1;
        tail.iter().all(|r| r.1 == level).then_some(level)
    }

    /// Merges the last [`MERGE_FAN`] runs into one a level up, in their
    /// place, and removes them. (Held findings arrived after them, and
    /// stay held.)
    fn merge_last_runs(&mut self, level: u32) -> Result<(), SpillError> {
        let first = self.runs.len() - MERGE_FAN;
        let dir = self.dir.as_ref().expect("runs live in it").path();
        let last = self.returned - 1;
        let path = dir.join(format!("run-{last:05}-{}", level + 1));
        let mut w = BufWriter::with_capacity(
            1 << 16,
            File::create(&path).map_err(|e| SpillError::at(&path, e))?,
        );
        // Every part read back is already placed; the tables are lent to
        // the readers while the writer looks places up.
        let (evidence, files) = (self.shared.parts.clone(), self.files.parts.clone());
        let tables = Tables {
            evidence: &evidence,
            files: &files,
        };
        let mut buf = Vec::new();
        for f in merged(&self.runs[first..], &[], tables)? {
            let mut f = f?.into_owned();
            let at = self.places(&mut f);
            spill::write(&mut w, &f, at, &mut buf).map_err(|e| SpillError::at(&path, e))?;
        }
        w.flush().map_err(|e| SpillError::at(&path, e))?;
        let old: Vec<(PathBuf, u32)> = self.runs.drain(first..).collect();
        self.runs.push((path, level + 1));
        for (old, _) in old {
            // Its findings are in the merged run now; a file that stays is
            // removed with the directory.
            let _ = std::fs::remove_file(&old);
        }
        Ok(())
    }

    /// Every finding in report order. Spilled ones are read back from
    /// disk (each read is a fresh pass), held ones are lent.
    pub fn iter(&self) -> Result<Iter<'_>, SpillError> {
        debug_assert!(self.sealed, "findings read before sealing");
        if self.returned != self.taken {
            // Reading without them would lose their findings silently.
            let dir = self.spill_dir().unwrap_or(Path::new("."));
            return Err(SpillError::at(
                dir,
                format!(
                    "{} of {} runs taken out were never put back",
                    self.taken - self.returned,
                    self.taken
                ),
            ));
        }
        merged(&self.runs, &self.held, self.tables())
    }

    /// Every finding, in report order, in memory: for callers that need
    /// them all at once (and so hold them all).
    pub fn to_vec(&self) -> Result<Vec<Finding>, SpillError> {
        self.iter()?.map(|f| f.map(Cow::into_owned)).collect()
    }

    /// Every finding in report order, when none was spilled (no run was
    /// ever taken out, written or not).
    pub fn as_slice(&self) -> Option<&[Finding]> {
        debug_assert!(self.sealed, "findings read before sealing");
        (self.taken == 0).then_some(&self.held[..])
    }
}

/// `runs` and then `held` (each sorted, in the order they arrived) merged
/// in report order.
fn merged<'a>(
    runs: &[(PathBuf, u32)],
    held: &'a [Finding],
    tables: Tables<'a>,
) -> Result<Iter<'a>, SpillError> {
    let mut heap = BinaryHeap::with_capacity(runs.len());
    let mut readers = Vec::with_capacity(runs.len());
    for (i, (path, _)) in runs.iter().enumerate() {
        let file = File::open(path).map_err(|e| SpillError::at(path, e))?;
        let mut r = RunReader {
            path: path.clone(),
            records: BufReader::with_capacity(1 << 16, file),
            buf: Vec::new(),
            number: 0,
            tables,
        };
        if let Some(f) = r.next()? {
            heap.push(Head { f, source: i });
        }
        readers.push(r);
    }
    Ok(Iter {
        held,
        next_held: 0,
        readers,
        heap,
    })
}

struct RunReader<'a> {
    path: PathBuf,
    records: BufReader<File>,
    buf: Vec<u8>,
    number: u64,
    tables: Tables<'a>,
}

impl RunReader<'_> {
    fn next(&mut self) -> Result<Option<Finding>, SpillError> {
        self.number += 1;
        spill::read(&mut self.records, &mut self.buf, &self.tables)
            .map_err(|why| SpillError::at(&self.path, format!("record {}: {why}", self.number)))
    }
}

/// The next finding of a spilled run (by index: earlier runs hold
/// findings that arrived earlier). Held findings are not in the heap;
/// [`Iter::next`] weighs them against its top.
struct Head {
    f: Finding,
    source: usize,
}

impl Ord for Head {
    /// Reversed, so the max-heap yields the first finding; equal findings
    /// come from the earlier source first.
    fn cmp(&self, o: &Head) -> Ordering {
        self.f
            .report_order(&o.f)
            .then(self.source.cmp(&o.source))
            .reverse()
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Head) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Head {
    fn eq(&self, o: &Head) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Head {}

/// Findings in report order: see [`Findings::iter`].
pub struct Iter<'a> {
    held: &'a [Finding],
    next_held: usize,
    readers: Vec<RunReader<'a>>,
    heap: BinaryHeap<Head>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<Cow<'a, Finding>, SpillError>;

    fn next(&mut self) -> Option<Self::Item> {
        let held = self.held.get(self.next_held);
        let Some(top) = self.heap.peek() else {
            self.next_held += 1;
            return held.map(|f| Ok(Cow::Borrowed(f)));
        };
        // Held findings arrived after every spilled one: on a tie the run
        // goes first.
        if let Some(h) = held {
            if h.report_order(&top.f) == Ordering::Less {
                self.next_held += 1;
                return Some(Ok(Cow::Borrowed(h)));
            }
        }
        let Head { f, source } = self.heap.pop().expect("peeked");
        match self.readers[source].next() {
            Ok(Some(next)) => self.heap.push(Head { f: next, source }),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(Cow::Owned(f)))
    }
}

/// Written as a JSON array, in report order.
impl Serialize for Findings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(usize::try_from(self.len).ok())?;
        for f in self.iter().map_err(S::Error::custom)? {
            seq.serialize_element(&*f.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use time::OffsetDateTime;
    use tokenward_event::{Evidence, Severity};

    fn finding(rule: &str, secs: Option<i64>, locator: &str, note: f64) -> Finding {
        let mut evidence = Evidence::default();
        evidence.insert("note".into(), serde_json::json!(note));
        evidence.insert(
            "why".into(),
            serde_json::json!(format!("{rule} at {locator}")),
        );
        Finding {
            rule_id: Cow::Owned(rule.into()),
            rule_title: Cow::Borrowed("title"),
            severity: Severity::Medium,
            time: secs.map(|s| {
                OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(s) * 1_000_000_000 + 123_456_789,
                )
                .unwrap()
            }),
            user: Some(format!("user{locator}")),
            client_ip: None,
            app_id: None,
            session_id: Some("s".into()),
            token_id: None,
            source_file: Arc::from("f.jsonl"),
            source_locator: locator.into(),
            evidence,
        }
    }

    /// A few hundred findings in a scrambled order, some without time and
    /// some tied on every sort key (told apart only by their evidence, so
    /// a merge that lost arrival order on ties writes other bytes), with
    /// every kind of evidence: rule b's findings share one part, a third
    /// of rule a's share another (in which an own entry overrides a shared
    /// one), the rest share none.
    fn scrambled() -> Vec<Finding> {
        let part = |v: serde_json::Value| Arc::new(v.as_object().cloned().unwrap());
        let part_b = part(serde_json::json!({"sigma_title": "B", "attack": ["T1078"]}));
        let part_a = part(serde_json::json!({"note": "shadowed by own", "sigma_title": "A"}));
        (0..300u32)
            .map(|i| {
                let k = (i * 7919) % 300;
                let secs = (k % 17 != 0).then_some(i64::from(k / 30));
                let rule = if k % 2 == 0 { "b" } else { "a" };
                let mut f = finding(rule, secs, &format!("line {}", k / 20), f64::from(i) * 0.1);
                if rule == "b" {
                    f.evidence.put_shared(Arc::clone(&part_b));
                } else if k % 3 == 0 {
                    f.evidence.put_shared(Arc::clone(&part_a));
                }
                f
            })
            .collect()
    }

    #[test]
    fn scrambled_findings_tie_on_every_sort_key() {
        let all = scrambled();
        let tied = all
            .iter()
            .enumerate()
            .filter(|(i, a)| {
                all[..*i]
                    .iter()
                    .any(|b| a.report_order(b) == Ordering::Equal)
            })
            .count();
        assert!(tied > 100, "{tied} tied findings");
    }

    fn json_lines<'a>(it: impl Iterator<Item = &'a Finding>) -> Vec<String> {
        it.map(|f| serde_json::to_string(f).unwrap()).collect()
    }

    #[test]
    fn spilled_findings_read_back_as_one_stable_sort() {
        let mut want = scrambled();
        want.sort_by(Finding::report_order);
        let want = json_lines(want.iter());
        for budget in [0, 2_000, 20_000, usize::MAX] {
            let mut store = Findings::with_budget(budget);
            for f in scrambled() {
                store.push(f).unwrap();
            }
            store.seal();
            assert_eq!(store.len(), 300);
            match budget {
                usize::MAX => assert_eq!(store.spilled_runs(), 0),
                // One run per finding, merged 32 at a time.
                0 => assert!(store.spilled_runs() < 2 * MERGE_FAN, "runs are merged"),
                _ => assert!(store.spilled_runs() > 1, "budget {budget} must spill"),
            }
            let got: Vec<Finding> = store.to_vec().unwrap();
            assert_eq!(json_lines(got.iter()), want, "budget {budget}");
            // Times survive exactly, nanoseconds included.
            let mut sorted = scrambled();
            sorted.sort_by(Finding::report_order);
            assert!(got.iter().zip(&sorted).all(|(a, b)| a.time == b.time));
            // Reading twice gives the same.
            assert_eq!(store.to_vec().unwrap().len(), 300);
            // Counted by rule as they came, spilled or held.
            let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
            for f in &got {
                *by_rule.entry(f.rule_id.to_string()).or_default() += 1;
            }
            assert!(by_rule.len() > 1);
            let mut counted: Vec<(String, u64)> =
                store.per_rule().map(|(id, n)| (id.to_owned(), n)).collect();
            counted.sort();
            assert_eq!(counted, by_rule.clone().into_iter().collect::<Vec<_>>());
            let held = Findings::from_sorted(got);
            let mut counted: Vec<(String, u64)> =
                held.per_rule().map(|(id, n)| (id.to_owned(), n)).collect();
            counted.sort();
            assert_eq!(counted, by_rule.into_iter().collect::<Vec<_>>());
        }
    }

    /// Sealing sorts on every core: above the length rayon sorts in one
    /// piece, ties (told apart only by their evidence) still keep the
    /// order they arrived in, as a sequential stable sort keeps them.
    #[test]
    fn held_findings_seal_as_one_stable_sort_past_the_parallel_threshold() {
        let many = || {
            (0..6_000u32).map(|i| {
                let k = (i * 7919) % 6_000;
                let secs = (k % 13 != 0).then_some(i64::from(k / 400));
                let rule = if k % 2 == 0 { "b" } else { "a" };
                finding(rule, secs, &format!("line {}", k / 300), f64::from(i))
            })
        };
        let mut want: Vec<Finding> = many().collect();
        want.sort_by(Finding::report_order);
        let mut store = Findings::with_budget(usize::MAX);
        for f in many() {
            store.push(f).unwrap();
        }
        store.seal();
        assert_eq!(store.spilled_runs(), 0);
        let got = store.to_vec().unwrap();
        assert_eq!(json_lines(got.iter()), json_lines(want.iter()));
    }

    /// Runs taken out and written while more findings arrive, put back
    /// in another order than taken (the first one last of all), read back
    /// as the one stable sort, and merged as if put back in order: the
    /// runs left are as many as the digits of their count in base 32 add
    /// up to, however late the first came back.
    #[test]
    fn runs_put_back_late_keep_their_place() {
        let mut want = scrambled();
        want.sort_by(Finding::report_order);
        let mut store = Findings::with_budget(0);
        let mut first = None;
        let mut waiting = Vec::new();
        for (i, f) in scrambled().into_iter().enumerate() {
            assert!(store.add(f), "a budget of 0 is passed by every finding");
            if i < 59 || i % 3 == 2 {
                // The first 60 findings make the first run, and then every
                // third finding stays held until the next run.
                continue;
            }
            let run = store.take_run().unwrap();
            if first.is_none() {
                first = Some(run);
            } else if i % 5 == 0 {
                waiting.push(run);
            } else {
                store.put_run(run.write().unwrap()).unwrap();
            }
            if waiting.len() == 4 {
                for run in waiting.drain(..).rev() {
                    store.put_run(run.write().unwrap()).unwrap();
                }
            }
        }
        for run in waiting.drain(..).rev() {
            store.put_run(run.write().unwrap()).unwrap();
        }
        let taken = store.taken;
        assert!(taken > MERGE_FAN as u64 * 3, "enough runs to merge");
        assert!(
            store.runs.is_empty() && store.early.len() as u64 == taken - 1,
            "runs put back before the first wait for it"
        );
        store.put_run(first.unwrap().write().unwrap()).unwrap();
        let mut digits = 0;
        let mut n = taken;
        while n > 0 {
            digits += n % MERGE_FAN as u64;
            n /= MERGE_FAN as u64;
        }
        assert_eq!(store.spilled_runs() as u64, digits);
        store.seal();
        let got = store.to_vec().unwrap();
        assert_eq!(json_lines(got.iter()), json_lines(want.iter()));
    }

    /// Reading while a taken run is still out is an error, not a read
    /// without its findings.
    #[test]
    fn a_run_never_put_back_is_an_error_when_reading() {
        let mut store = Findings::with_budget(usize::MAX);
        for f in scrambled().into_iter().take(10) {
            store.add(f);
        }
        let out = store.take_run().unwrap();
        store.seal();
        assert!(store.as_slice().is_none(), "the held findings are not all");
        let e = store.iter().map(|_| ()).unwrap_err();
        assert!(e.reason.contains("1 of 1 runs"), "{e}");
        store.put_run(out.write().unwrap()).unwrap();
        assert_eq!(store.to_vec().unwrap().len(), 10);
    }

    #[test]
    fn runs_merge_like_a_counter_carries() {
        let mut store = Findings::with_budget(0);
        let n = MERGE_FAN * MERGE_FAN + 2 * MERGE_FAN + 3;
        // Two source files (named by place in every run, a level up too).
        let file = |i: usize| if i % 3 == 0 { "g.jsonl" } else { "f.jsonl" };
        for i in 0..n {
            let mut f = finding("a", Some(i as i64), "line 1", 0.0);
            f.source_file = Arc::from(file(i));
            store.push(f).unwrap();
        }
        store.seal();
        // One run of 32 * 32, two of 32, three of one: 1091 is 1, 2, 3 in
        // base 32.
        let levels: Vec<u32> = store.runs.iter().map(|r| r.1).collect();
        assert_eq!(levels, [2, 1, 1, 0, 0, 0]);
        let dir = store.dir.as_ref().unwrap().path();
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), levels.len());
        let got = store.to_vec().unwrap();
        assert_eq!(got.len(), n);
        assert!(got.windows(2).all(|w| w[0].time < w[1].time));
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, f)| &*f.source_file == file(i)));
        assert_eq!(store.files.parts.len(), 2);
    }

    #[test]
    fn a_time_before_year_one_survives_a_spill() {
        let mut early = finding("a", Some(0), "line 1", 0.0);
        // 0000-01-01T00:00:00+01:00 is year -1 in UTC.
        early.time = Some(time::macros::datetime!(0000-01-01 00:00 +1));
        let want = serde_json::to_string(&early).unwrap();
        let mut store = Findings::with_budget(0);
        store.push(early).unwrap();
        store.seal();
        assert_eq!(store.spilled_runs(), 1);
        let got = store.to_vec().unwrap();
        assert_eq!(serde_json::to_string(&got[0]).unwrap(), want);
    }

    #[test]
    fn spill_files_go_when_the_findings_do() {
        let mut store = Findings::with_budget(0);
        store.push(finding("a", Some(1), "line 1", 0.5)).unwrap();
        store.seal();
        let dir = store.dir.as_ref().unwrap().path().to_path_buf();
        assert!(dir.join("run-00000-0").is_file());
        drop(store);
        assert!(!dir.exists());
    }

    #[test]
    fn a_damaged_spill_file_is_an_error_naming_file_and_record() {
        let mut store = Findings::with_budget(0);
        store.push(finding("a", Some(1), "line 1", 0.5)).unwrap();
        store.push(finding("a", Some(2), "line 2", 0.5)).unwrap();
        store.seal();
        let run = store.runs[1].0.clone();
        // A length past the end of the file (not gigabytes allocated).
        std::fs::write(&run, "12\t{not json\n").unwrap();
        let err = store.to_vec().unwrap_err();
        assert!(err.path.ends_with("run-00001-0"), "{err}");
        assert!(err.reason.starts_with("record 1: record of "), "{err}");
        // A shared evidence place that was never given out.
        let mut bytes = Vec::new();
        let at = Places {
            evidence: Some(7),
            file: 0,
        };
        spill::write(
            &mut bytes,
            &finding("a", Some(2), "line 2", 0.5),
            at,
            &mut Vec::new(),
        )
        .unwrap();
        std::fs::write(&run, bytes).unwrap();
        let err = store.to_vec().unwrap_err();
        assert_eq!(err.reason, "record 1: shared evidence 7", "{err}");
    }

    /// A shared part (evidence, a source file's name) is written once per
    /// store, not once per finding, and findings read back share one copy
    /// of it again.
    #[test]
    fn shared_parts_are_spilled_by_place() {
        let mut store = Findings::with_budget(0);
        for f in scrambled() {
            store.push(f).unwrap();
        }
        store.seal();
        assert_eq!(store.shared.parts.len(), 2);
        assert_eq!(store.files.parts.len(), 1);
        let mut spilled = Vec::new();
        for (path, _) in &store.runs {
            spilled.extend(std::fs::read(path).unwrap());
        }
        for shared in ["sigma_title", "f.jsonl"] {
            assert!(
                !spilled
                    .windows(shared.len())
                    .any(|w| w == shared.as_bytes()),
                "{shared} written per finding"
            );
        }
        let got = store.to_vec().unwrap();
        assert!(got
            .iter()
            .all(|f| Arc::ptr_eq(&f.source_file, &store.files.parts[0])));
        let b: Vec<&Finding> = got.iter().filter(|f| f.rule_id == "b").collect();
        assert_eq!(b.len(), 150);
        assert!(b
            .iter()
            .all(|f| f.evidence.get("sigma_title") == Some(&"B".into())));
        let a_shared = got
            .iter()
            .filter(|f| f.evidence.get("sigma_title") == Some(&"A".into()))
            .count();
        assert_eq!(a_shared, 50);
        // The finding's own `note` wins over the shared one.
        assert!(got
            .iter()
            .all(|f| f.evidence.get("note").is_some_and(|n| n.is_number())));
    }

    #[test]
    fn serialises_as_one_array_in_order() {
        let mut store = Findings::with_budget(0);
        store.push(finding("a", Some(5), "line 2", 1.0)).unwrap();
        store.push(finding("a", Some(1), "line 1", 2.0)).unwrap();
        store.seal();
        let v = serde_json::to_value(&store).unwrap();
        let locs: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["source_locator"].as_str().unwrap())
            .collect();
        assert_eq!(locs, ["line 1", "line 2"]);
    }
}
