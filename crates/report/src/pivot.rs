//! Pivot tables: findings counted by one value (a user, a client address,
//! an app, a detection), with memory bounded whatever the number of values.
//!
//! A rule that fires on most sign-ins of a large export names millions of
//! distinct client addresses. Past its memory, a pivot writes its rows,
//! sorted by value, as a run at the end of its anonymous temporary file
//! and starts again; at the end the runs are merged by value, rows of one
//! value added together, and only the highest-ranked rows are kept. The
//! page so shows the rows it would show with every row in memory. Runs
//! are written and read by position, so a pivot keeps one file open
//! however many runs it wrote. Merged runs are appended and the runs they
//! merge are not freed: the file grows to the rows written times one plus
//! the levels of merging, on disk, until the page is made.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use time::OffsetDateTime;
use tokenward_event::Severity;

/// Detections named in one pivot row: those first met in the findings
/// (in report order), so that which are named does not depend on where
/// runs were cut.
pub const MAX_ROW_DETECTIONS: usize = 50;

/// Runs merged at once: bounds the read buffers held.
const MERGE_FAN: usize = 64;

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

    fn bytes(&self, value: &str) -> usize {
        value.len() + ROW_OVERHEAD + self.detections.len() * 4
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

/// Findings counted by value, in memory up to a budget and on disk past it.
pub(crate) struct Pivot {
    rows: HashMap<Box<str>, PivotRow>,
    bytes: usize,
    budget: usize,
    /// Where runs are written, one after the other, once one is, and
    /// how long it is.
    file: Option<(File, u64)>,
    runs: Vec<Run>,
}

/// A run written to disk: where its rows (sorted by value) are in the
/// pivot's file, and how many.
#[derive(Clone, Copy)]
struct Run {
    start: u64,
    end: u64,
    rows: u64,
}

impl Pivot {
    /// A pivot holding rows of about `budget` bytes before writing them out.
    pub(crate) fn new(budget: usize) -> Pivot {
        Pivot {
            rows: HashMap::new(),
            bytes: 0,
            budget,
            file: None,
            runs: Vec::new(),
        }
    }

    /// Counts one finding under `value`.
    pub(crate) fn count(
        &mut self,
        value: &str,
        severity: Severity,
        time: Option<OffsetDateTime>,
        rule: RuleNumber,
    ) -> io::Result<()> {
        let row = match self.rows.get_mut(value) {
            Some(row) => {
                self.bytes -= row.bytes(value);
                row
            }
            None => self.rows.entry(value.into()).or_default(),
        };
        row.count(severity, time, rule);
        self.bytes += row.bytes(value);
        if self.bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the rows held, sorted by value, as a run.
    fn spill(&mut self) -> io::Result<()> {
        let mut rows: Vec<(Box<str>, PivotRow)> = self.rows.drain().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.bytes = 0;
        let (file, len) = match &mut self.file {
            Some(f) => f,
            None => self.file.insert((tempfile::tempfile()?, 0)),
        };
        let run = append(file, len, |w| {
            for (value, row) in &rows {
                write_row(w, value, row)?;
            }
            Ok(rows.len() as u64)
        })?;
        self.runs.push(run);
        Ok(())
    }

    /// The `max` highest-ranked rows, every run merged in.
    pub(crate) fn top(mut self, max: usize) -> io::Result<PivotTop> {
        let mut top = Top::new(max);
        if self.runs.is_empty() {
            for (value, row) in self.rows {
                top.offer(String::from(value), row);
            }
            return Ok(top.finish());
        }
        self.spill()?;
        let ((file, mut len), mut runs) = (self.file.expect("a run was written"), self.runs);
        // Merged runs go to the file's end while the runs they merge are
        // read from before it.
        while runs.len() > MERGE_FAN {
            let rest = runs.split_off(MERGE_FAN);
            let merged = append(&file, &mut len, |w| {
                let mut rows = 0;
                merge(&file, &runs, |value, row| {
                    rows += 1;
                    write_row(w, &value, &row)
                })?;
                Ok(rows)
            })?;
            runs = rest;
            runs.push(merged);
        }
        merge(&file, &runs, |value, row| {
            top.offer(value, row);
            Ok(())
        })?;
        Ok(top.finish())
    }
}

/// Writes a run at `len`, the end of `file`, with `write`, which returns
/// how many rows it wrote; `len` is then the new end.
fn append(
    file: &File,
    len: &mut u64,
    write: impl FnOnce(&mut BufWriter<Placed<'_>>) -> io::Result<u64>,
) -> io::Result<Run> {
    let start = *len;
    let mut w = BufWriter::with_capacity(1 << 16, Placed { file, at: start });
    let rows = write(&mut w)?;
    w.flush()?;
    let end = w.get_ref().at;
    *len = end;
    Ok(Run { start, end, rows })
}

/// Writes to `file` from `at` on, by position: the file's cursor is
/// shared, and reading by position moves it on some systems.
struct Placed<'a> {
    file: &'a File,
    at: u64,
}

impl Write for Placed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::write_at(self.file, buf, self.at)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_write(self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One run of a pivot's file, read by position: the runs of one file are
/// read side by side, and merged runs are written at its end meanwhile.
struct Segment<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for Segment<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want =
            usize::try_from(self.end - self.at).map_or(buf.len(), |left| left.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let n = read_at(self.file, &mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Reads what `file` holds at `offset` into `buf`.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }
}

/// Nanoseconds since the epoch, or `i128::MIN` for none.
fn nanos(t: Option<OffsetDateTime>) -> i128 {
    t.map_or(i128::MIN, OffsetDateTime::unix_timestamp_nanos)
}

fn time_of(nanos: i128) -> io::Result<Option<OffsetDateTime>> {
    if nanos == i128::MIN {
        return Ok(None);
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A row: value length (`u32`) and bytes, total and high (`u64`), first
/// and last time (`i128` nanoseconds), a flag for more detections, the
/// count of detections (`u8`) and their numbers (`u32`), little-endian.
fn write_row(w: &mut impl Write, value: &str, row: &PivotRow) -> io::Result<()> {
    let len =
        u32::try_from(value.len()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(value.as_bytes())?;
    w.write_all(&row.total.to_le_bytes())?;
    w.write_all(&row.high.to_le_bytes())?;
    w.write_all(&nanos(row.first).to_le_bytes())?;
    w.write_all(&nanos(row.last).to_le_bytes())?;
    // At most MAX_ROW_DETECTIONS, so it fits a byte.
    w.write_all(&[u8::from(row.more_detections), row.detections.len() as u8])?;
    for d in &row.detections {
        w.write_all(&d.to_le_bytes())?;
    }
    Ok(())
}

fn array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// A run being read back.
struct RunReader<'a> {
    records: BufReader<Segment<'a>>,
    left: u64,
}

impl RunReader<'_> {
    /// The next row, or `None` past the last written: a run cut short is
    /// an error, not a shorter table.
    fn next(&mut self) -> io::Result<Option<(String, PivotRow)>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        read_row(&mut self.records).map(Some)
    }
}

fn read_row(r: &mut impl Read) -> io::Result<(String, PivotRow)> {
    let len = u32::from_le_bytes(array(r)?);
    let mut value = vec![0; len as usize];
    r.read_exact(&mut value)?;
    let value =
        String::from_utf8(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let total = u64::from_le_bytes(array(r)?);
    let high = u64::from_le_bytes(array(r)?);
    let first = time_of(i128::from_le_bytes(array(r)?))?;
    let last = time_of(i128::from_le_bytes(array(r)?))?;
    let [more, n] = array(r)?;
    let detections = (0..n)
        .map(|_| array(r).map(u32::from_le_bytes))
        .collect::<io::Result<_>>()?;
    Ok((
        value,
        PivotRow {
            total,
            high,
            detections,
            more_detections: more != 0,
            first,
            last,
        },
    ))
}

/// Hands each value of the runs to `each` once, in value order, with its
/// rows added together.
fn merge(
    file: &File,
    runs: &[Run],
    mut each: impl FnMut(String, PivotRow) -> io::Result<()>,
) -> io::Result<()> {
    let mut readers: Vec<RunReader> = runs
        .iter()
        .map(|run| RunReader {
            records: BufReader::with_capacity(
                1 << 14,
                Segment {
                    file,
                    at: run.start,
                    end: run.end,
                },
            ),
            left: run.rows,
        })
        .collect();
    let mut heads: Vec<Option<PivotRow>> = Vec::with_capacity(readers.len());
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (i, r) in readers.iter_mut().enumerate() {
        let head = r.next()?;
        heads.push(head.map(|(value, row)| {
            heap.push(Reverse((value, i)));
            row
        }));
    }
    while let Some(Reverse((value, i))) = heap.pop() {
        let mut row = heads[i].take().expect("a run in the heap has a head");
        if let Some((next, next_row)) = readers[i].next()? {
            heads[i] = Some(next_row);
            heap.push(Reverse((next, i)));
        }
        while heap.peek().is_some_and(|Reverse((v, _))| *v == value) {
            let Reverse((_, j)) = heap.pop().expect("peeked");
            row.absorb(heads[j].take().expect("a run in the heap has a head"));
            if let Some((next, next_row)) = readers[j].next()? {
                heads[j] = Some(next_row);
                heap.push(Reverse((next, j)));
            }
        }
        each(value, row)?;
    }
    Ok(())
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
        let mut p = Pivot::new(budget);
        for (v, s, t, r) in findings {
            p.count(v, *s, *t, *r).unwrap();
        }
        let runs = p.runs.len();
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
        let mut p = Pivot::new(usize::MAX);
        for rule in (0..60).rev() {
            p.count("alice", Severity::Low, None, rule).unwrap();
        }
        p.count("bob", Severity::High, None, 3).unwrap();
        let top = p.top(10).unwrap();
        assert_eq!(top.rows[0].0, "bob");
        let alice = &top.rows[1].1;
        assert_eq!(alice.detections, (0..50).collect::<Vec<_>>());
        assert!(alice.more_detections && !top.rows[0].1.more_detections);
        assert_eq!((alice.total, alice.first), (60, None));
    }

    #[test]
    fn a_damaged_run_is_an_error_not_a_short_table() {
        let mut p = Pivot::new(1);
        p.count("alice", Severity::Low, None, 1).unwrap();
        p.count("bob", Severity::Low, None, 1).unwrap();
        assert_eq!(p.runs.len(), 2);
        p.file
            .as_ref()
            .unwrap()
            .0
            .set_len(p.runs[0].start + 6)
            .unwrap();
        let e = p.top(10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
