//! Pivot tables: findings counted by one value (a user, a client address,
//! an app, a detection), with memory bounded whatever the number of values.
//!
//! A rule that fires on most sign-ins of a large export names millions of
//! distinct client addresses. Past their memory, the pivots write their
//! rows, sorted by value, to temporary files and start again (a
//! [`SpillingMap`]); at the end the runs are merged by value, rows of one
//! value added together, and only the highest-ranked rows are kept. The
//! page so shows the rows it would show with every row in memory.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;

use time::OffsetDateTime;
use tokenward_event::codec::{self, Cursor};
use tokenward_event::Severity;
use tokenward_spill::spilling::{Spillable, SpillingMap, StateDisk};

/// Detections named in one pivot row: those first met in the findings
/// (in report order), so that which are named does not depend on where
/// runs were cut.
pub const MAX_ROW_DETECTIONS: usize = 50;

/// Bytes a row costs in memory beyond its value's text and its detections:
/// the map's entry (about 112 bytes) with the map's spare room (a map
/// between growths is 1.1 to 2.3 times its entries), and the allocations
/// of the value and the detections with their allocator headers.
const ROW_OVERHEAD: usize = 224;

/// A detection's number: the place its id was first met among the findings
/// a digest saw. Findings come in report order, so numbers are the same in
/// every run over the same findings.
pub type RuleNumber = u32;

/// The findings of one value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PivotRow {
    /// Findings naming the value.
    pub total: u64,
    /// Of them, high-severity ones.
    pub high: u64,
    /// Up to [`MAX_ROW_DETECTIONS`] detections among them, smallest number
    /// first.
    pub detections: Vec<RuleNumber>,
    /// Whether more detections than those named found it.
    pub more_detections: bool,
    /// Earliest finding time.
    pub first: Option<OffsetDateTime>,
    /// Latest finding time.
    pub last: Option<OffsetDateTime>,
}

impl PivotRow {
    fn count(&mut self, severity: Severity, time: Option<OffsetDateTime>, rule: RuleNumber) {
        self.total += 1;
        self.high += u64::from(severity == Severity::High);
        self.add_detection(rule);
        self.add_time(time, time);
    }

    fn add_detection(&mut self, rule: RuleNumber) {
        if let Err(at) = self.detections.binary_search(&rule) {
            self.detections.insert(at, rule);
            if self.detections.len() > MAX_ROW_DETECTIONS {
                self.detections.pop();
                self.more_detections = true;
            }
        }
    }

    fn add_time(&mut self, first: Option<OffsetDateTime>, last: Option<OffsetDateTime>) {
        self.first = match (self.first, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Adds another row of the same value.
    fn absorb(&mut self, other: PivotRow) {
        self.total += other.total;
        self.high += other.high;
        self.more_detections |= other.more_detections;
        for d in other.detections {
            self.add_detection(d);
        }
        self.add_time(other.first, other.last);
    }
}

/// The rows a pivot shows and how many values it counted.
#[derive(Debug, Default)]
pub struct PivotTop {
    /// The highest-ranked rows: most high-severity findings first, then
    /// most findings, then by value.
    pub rows: Vec<(String, PivotRow)>,
    /// Distinct values counted.
    pub values: u64,
}

impl Spillable for PivotRow {
    fn approx_bytes(&self) -> usize {
        ROW_OVERHEAD + self.detections.len() * 4
    }

    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        codec::put_u64(buf, self.total);
        codec::put_u64(buf, self.high);
        codec::put_opt_time(buf, self.first);
        codec::put_opt_time(buf, self.last);
        // At most MAX_ROW_DETECTIONS, so it fits a byte.
        buf.extend_from_slice(&[u8::from(self.more_detections), self.detections.len() as u8]);
        for d in &self.detections {
            codec::put_u32(buf, *d);
        }
        Ok(())
    }

    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        let (total, high) = (c.u64()?, c.u64()?);
        let (first, last) = (c.opt_time()?, c.opt_time()?);
        let [more, n] = c.array()?;
        let detections = (0..n).map(|_| c.u32()).collect::<Result<_, _>>()?;
        Ok(PivotRow {
            total,
            high,
            detections,
            more_detections: more != 0,
            first,
            last,
        })
    }

    fn fold(&mut self, other: PivotRow) {
        self.absorb(other);
    }
}

/// Findings counted by value, in memory while the digest's pivots hold
/// less than their budget together, and in sorted runs on disk past it
/// (a [`SpillingMap`], as detections keep their state).
pub(crate) struct Pivot {
    rows: SpillingMap<Box<str>, PivotRow>,
    disk: Arc<StateDisk>,
}

impl Pivot {
    /// A pivot holding its rows within `disk`'s budget, shared with the
    /// other pivots of a digest.
    pub(crate) fn new(disk: Arc<StateDisk>) -> Pivot {
        Pivot {
            rows: SpillingMap::new(disk.clone()),
            disk,
        }
    }

    /// Counts one finding under `value`.
    pub(crate) fn count(
        &mut self,
        value: &str,
        severity: Severity,
        time: Option<OffsetDateTime>,
        rule: RuleNumber,
    ) {
        let row = self.rows.get_or_insert_with(value, PivotRow::default);
        let named = row.detections.len();
        row.count(severity, time, rule);
        let grown = (row.detections.len() - named) * 4;
        self.rows.grew(grown);
    }

    /// The `max` highest-ranked rows, every run merged in; an error when
    /// rows could not be written out or read back.
    pub(crate) fn top(self, max: usize) -> io::Result<PivotTop> {
        let mut top = Top::new(max);
        self.rows
            .drain(|value, row| top.offer(String::from(value), row));
        match self.disk.error() {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(top.finish()),
        }
    }
}

/// A row ranked for the page: more high-severity findings first, then
/// more findings, then the smaller value.
struct Ranked(String, PivotRow);

impl Ranked {
    fn rank(&self, other: &Ranked) -> Ordering {
        other
            .1
            .high
            .cmp(&self.1.high)
            .then(other.1.total.cmp(&self.1.total))
            .then(self.0.cmp(&other.0))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.rank(other)
    }
}

/// The best `max` rows offered: the worst kept is on top of the heap.
struct Top {
    max: usize,
    kept: BinaryHeap<Ranked>,
    values: u64,
}

impl Top {
    fn new(max: usize) -> Top {
        Top {
            max,
            kept: BinaryHeap::with_capacity(max + 1),
            values: 0,
        }
    }

    fn offer(&mut self, value: String, row: PivotRow) {
        self.values += 1;
        let r = Ranked(value, row);
        if self.kept.len() < self.max {
            self.kept.push(r);
        } else if self.kept.peek().is_some_and(|worst| r < *worst) {
            self.kept.pop();
            self.kept.push(r);
        }
    }

    fn finish(self) -> PivotTop {
        PivotTop {
            rows: self
                .kept
                .into_sorted_vec()
                .into_iter()
                .map(|Ranked(v, r)| (v, r))
                .collect(),
            values: self.values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokenward_spill::spilling::MERGE_FAN;

    /// Findings drawn over `values` values: (value, severity, time, rule).
    fn drawn(
        seed: u64,
        n: usize,
        values: u32,
    ) -> Vec<(String, Severity, Option<OffsetDateTime>, u32)> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| {
                let severity = match rng.u8(0..3) {
                    0 => Severity::High,
                    1 => Severity::Medium,
                    _ => Severity::Low,
                };
                let time = (rng.u8(0..10) > 0)
                    .then(|| OffsetDateTime::from_unix_timestamp(rng.i64(0..1 << 31)).unwrap());
                let value = rng.u32(0..values);
                (
                    format!("10.0.{}.{}", value / 256, value % 256),
                    severity,
                    time,
                    rng.u32(0..80),
                )
            })
            .collect()
    }

    fn counted(
        budget: usize,
        findings: &[(String, Severity, Option<OffsetDateTime>, u32)],
    ) -> (PivotTop, usize) {
        let disk = StateDisk::new(budget);
        let mut p = Pivot::new(disk.clone());
        for (v, s, t, r) in findings {
            p.count(v, *s, *t, *r);
        }
        let runs = disk.runs_written() as usize;
        (p.top(200).unwrap(), runs)
    }

    /// The rows a pivot shows are the same whether its rows stayed in
    /// memory or went to disk in many runs, merged more than once.
    #[test]
    fn rows_written_out_rank_as_rows_held() {
        for (seed, values) in [(1, 300), (2, 5_000), (3, 70_000)] {
            let findings = drawn(seed, 40_000, values);
            let (held, no_runs) = counted(usize::MAX, &findings);
            assert_eq!(no_runs, 0);
            let (spilled, runs) = counted(2_000, &findings);
            assert!(
                runs > MERGE_FAN,
                "{runs} runs: the merge of merges is not reached"
            );
            assert_eq!(spilled.values, held.values);
            assert_eq!(spilled.rows, held.rows, "seed {seed}");
            assert_eq!(held.rows.len(), 200.min(held.values as usize));
        }
    }

    /// The rows shown are the best ranked of every row counted, each with
    /// its exact counts.
    #[test]
    fn the_rows_shown_are_the_best_ranked() {
        let findings = drawn(7, 20_000, 2_000);
        let mut all: HashMap<&str, (u64, u64)> = HashMap::new();
        for (v, s, _, _) in &findings {
            let e = all.entry(v).or_default();
            e.0 += u64::from(*s == Severity::High);
            e.1 += 1;
        }
        let mut want: Vec<(&str, (u64, u64))> = all.into_iter().collect();
        want.sort_by(|a, b| {
            b.1 .0
                .cmp(&a.1 .0)
                .then(b.1 .1.cmp(&a.1 .1))
                .then(a.0.cmp(b.0))
        });
        want.truncate(200);
        let (top, _) = counted(4_000, &findings);
        let got: Vec<(&str, (u64, u64))> = top
            .rows
            .iter()
            .map(|(v, r)| (v.as_str(), (r.high, r.total)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_row_names_its_first_detections_and_says_there_are_more() {
        let mut p = Pivot::new(StateDisk::new(usize::MAX));
        for rule in (0..60).rev() {
            p.count("alice", Severity::Low, None, rule);
        }
        p.count("bob", Severity::High, None, 3);
        let top = p.top(10).unwrap();
        assert_eq!(top.rows[0].0, "bob");
        let alice = &top.rows[1].1;
        assert_eq!(alice.detections, (0..50).collect::<Vec<_>>());
        assert!(alice.more_detections && !top.rows[0].1.more_detections);
        assert_eq!((alice.total, alice.first), (60, None));
    }

    /// Rows that could not be written out or read back (a damaged run,
    /// a full disk: `tokenward_spill::spilling`'s own tests make them)
    /// make the pivot an error, not a short table.
    #[test]
    fn a_damaged_run_is_an_error_not_a_short_table() {
        let disk = StateDisk::new(0);
        let mut p = Pivot::new(disk.clone());
        p.count("alice", Severity::Low, None, 1);
        p.count("bob", Severity::Low, None, 1);
        assert!(disk.runs_written() > 0);
        disk.fail("run 1 cut short".into());
        let e = p.top(10).unwrap_err();
        assert!(e.to_string().contains("run 1 cut short"), "{e}");
    }
}
