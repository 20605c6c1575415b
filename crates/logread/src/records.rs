//! Records out of a decoded stream, in batches for parallel workers.

use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::format::Container;
use crate::split::{CsvReader, CsvRow, JsonSplitter, Piece, ValueEnd};

/// Bytes of JSON lines a batch holds: it ends at the last line end within
/// them (past them only for a longer line). A batch is read in passes
/// (the literal screen over all of it, then record by record), so it is
/// sized to stay in a core's 1 MiB level-2 cache between them: 4 MiB
/// batches cost 4 % more CPU on mailbox audit and sign-in exports.
pub const LINES_BATCH: usize = 1 << 20;
const PIECES_BATCH: usize = 1 << 20;
const ROWS_BATCH: usize = 2000;

/// Batch buffers, handed back by the workers once a batch is processed and
/// reused by every file's reader: a fresh batch buffer comes from the OS
/// as pages to fault in and zero, which cost a tenth of the time when every
/// file and batch got its own.
#[derive(Default)]
pub struct BufferPool {
    bufs: Mutex<Vec<Vec<u8>>>,
}

/// Buffers kept for reuse; more are freed.
const POOL_MAX: usize = 16;

/// Largest buffer kept for reuse: one grown for a long record is freed,
/// not handed to every later batch (and zeroed for each).
const POOLED_MAX: usize = 4 * LINES_BATCH;

impl BufferPool {
    fn pop(&self) -> Option<Vec<u8>> {
        self.bufs.lock().ok().and_then(|mut b| b.pop())
    }

    /// A buffer with room for a batch whose length is the bytes of it
    /// initialised (what its last batch wrote), so that a reader can read
    /// into them in place ([`Filled`]), growing them as it reads. (Grown
    /// to the whole room up front, it was zeroed past the last batch's
    /// data for every file: an Azure Monitor export of hourly files of a
    /// few hundred KiB each zeroed four times the bytes it read.)
    fn take_filled(&self) -> Vec<u8> {
        self.pop()
            .unwrap_or_else(|| Vec::with_capacity(LINES_BATCH + 64 * 1024))
    }

    /// An empty buffer with room for a batch.
    pub fn take(&self) -> Vec<u8> {
        match self.pop() {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(LINES_BATCH + 64 * 1024),
        }
    }

    /// Returns a batch's buffer.
    pub fn give(&self, buf: Vec<u8>) {
        if !(LINES_BATCH..=POOLED_MAX).contains(&buf.capacity()) {
            return;
        }
        if let Ok(mut b) = self.bufs.lock() {
            if b.len() < POOL_MAX {
                b.push(buf);
            }
        }
    }
}

/// Reads a stream (whose first bytes, already read, are `head`) to its end
/// and hands its records to `sink` in batches, in the stream's order, in
/// buffers from `pool` (hand them back with [`BufferPool::give`]). The
/// sink runs on the reading thread: it decides whether a batch is worked
/// on there or elsewhere.
pub fn read_batches(
    container: Container,
    delimiter: u8,
    reader: Box<dyn Read + Send>,
    head: Vec<u8>,
    sink: &mut dyn FnMut(Batch),
    pool: &BufferPool,
) -> std::io::Result<()> {
    match container {
        Container::JsonLines => read_lines(reader, head, sink, pool),
        Container::JsonStream => read_pieces(reader, head, sink, pool, JsonSplitter::new()),
        Container::EnvelopeLines => read_pieces(reader, head, sink, pool, JsonSplitter::lines()),
        Container::Csv => read_rows(reader, head, delimiter, sink, pool),
    }
}

/// A record of a JSON stream (an array's element, an envelope's record, or
/// one of concatenated values), or a stretch that could not be one.
pub enum Item {
    /// A record: its bytes in the batch's data, its first line and index.
    Rec {
        /// Start offset in the batch data.
        start: usize,
        /// End offset in the batch data.
        end: usize,
        /// 1-based line of its first byte.
        line: u64,
        /// 1-based record index.
        index: u64,
    },
    /// A rejected stretch and why.
    Bad {
        /// 1-based line.
        line: u64,
        /// 1-based record index (0 when it is not one).
        index: u64,
        /// The reason.
        reason: String,
    },
}

/// A run of records, as the reader hands them to the workers.
pub enum Batch {
    /// Whole lines of a JSON-lines file (one record per non-blank line).
    Lines {
        /// The bytes, ending at a line end (or the end of the file).
        data: Vec<u8>,
        /// 1-based number of the first line.
        first_line: u64,
    },
    /// Records of a JSON stream.
    Pieces {
        /// The records' bytes, one after another, each followed by a line
        /// end.
        data: Vec<u8>,
        /// Where each record is in `data`.
        items: Vec<Item>,
    },
    /// Rows of a delimited file.
    Rows {
        /// The column names.
        header: Arc<Vec<String>>,
        /// The rows, or rejected lines.
        rows: Vec<CsvRow>,
        /// 1-based index of the first row.
        first_index: u64,
    },
}

/// Initialised room a [`Filled`] grows by when a read needs more: the
/// zeroing it costs is at most this much past the bytes a stream holds.
const FILL_STEP: usize = 64 * 1024;

/// Longest record read: a longer one is rejected with its locator and
/// skipped, so one crafted line (a gzip bomb inflates to one endless line)
/// cannot exhaust memory.
pub const MAX_RECORD: usize = 64 << 20;

/// Bytes read from a stream, in a buffer that stays initialised past
/// them. Reading into a vector's spare room through a `dyn Read` (as
/// `read_to_end` does) zeroes that room before each read, since the
/// standard library cannot know that the reader will not look at it:
/// 1 % of a hunt. Here only the room a buffer grows by past what its
/// last batch wrote is zeroed, [`FILL_STEP`] at a time as reads need it.
struct Filled {
    /// Initialised in full; the first `len` bytes are the stream's.
    bytes: Vec<u8>,
    len: usize,
}

impl Filled {
    /// Reads into `bytes` (initialised, whatever it holds), from its start.
    fn into(bytes: Vec<u8>) -> Filled {
        Filled { bytes, len: 0 }
    }

    /// The bytes read so far are `bytes`.
    fn holding(bytes: Vec<u8>) -> Filled {
        let len = bytes.len();
        Filled { bytes, len }
    }

    fn data(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends `more`, as if read.
    fn push(&mut self, more: &[u8]) {
        let end = self.len + more.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[self.len..end].copy_from_slice(more);
        self.len = end;
    }

    /// Keeps the first `n` bytes read, forgetting the rest.
    fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Forgets the first `n` bytes read.
    fn drain_front(&mut self, n: usize) {
        self.bytes.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// The bytes read, as a vector of their length.
    fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.truncate(self.len);
        self.bytes
    }

    /// Reads up to `need` more bytes from `r`; whether the stream ended
    /// first. A read error ends the stream (the bytes before it are kept,
    /// and the error is kept for the end): a truncated gzip member still
    /// yields every record before the cut.
    fn fill(&mut self, r: &mut dyn Read, need: usize, failed: &mut Option<std::io::Error>) -> bool {
        let end = self.len + need;
        while self.len < end {
            if self.bytes.len() == self.len {
                // Out of initialised room: a step more, never past `end`,
                // so a short stream leaves the rest of the room unzeroed.
                self.bytes.resize(end.min(self.len + FILL_STEP), 0);
            }
            let to = end.min(self.bytes.len());
            match r.read(&mut self.bytes[self.len..to]) {
                Ok(0) => return true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    *failed = Some(e);
                    return true;
                }
            }
        }
        false
    }
}

/// A rejected stretch as a batch of its own.
fn rejection(line: u64, index: u64, reason: String) -> Batch {
    Batch::Pieces {
        data: Vec::new(),
        items: vec![Item::Bad {
            line,
            index,
            reason,
        }],
    }
}

fn read_lines(
    mut r: Box<dyn Read + Send>,
    head: Vec<u8>,
    sink: &mut dyn FnMut(Batch),
    pool: &BufferPool,
) -> std::io::Result<()> {
    let mut buf = Filled::into(pool.take_filled());
    buf.push(&head);
    let mut line = 1u64;
    let mut eof = false;
    let mut failed = None;
    loop {
        let mut want = LINES_BATCH;
        // Where the batch is cut: after its last line end.
        let last_end = loop {
            if !eof && buf.len < want {
                let need = want - buf.len;
                eof = buf.fill(&mut r, need, &mut failed);
            }
            let last_end = memchr::memrchr(b'\n', buf.data());
            if eof || last_end.is_some() {
                break last_end;
            }
            if want >= MAX_RECORD {
                // No line end in MAX_RECORD bytes: all of `buf` is one line.
                let ended = skip_line(&mut r, &mut buf, &mut failed);
                let reason = format!(
                    "record larger than {} MiB{}: skipped",
                    MAX_RECORD >> 20,
                    if ended {
                        ""
                    } else {
                        " (the file ends inside it)"
                    }
                );
                sink(rejection(line, line, reason));
                line += 1;
                eof = !ended;
                want = LINES_BATCH;
                continue;
            }
            want *= 2;
        };
        if eof {
            if buf.len > 0 {
                sink(Batch::Lines {
                    data: buf.into_bytes(),
                    first_line: line,
                });
            } else {
                pool.give(buf.bytes);
            }
            return failed.map_or(Ok(()), Err);
        }
        let cut = last_end.map_or(buf.len, |p| p + 1);
        let mut nb = Filled::into(pool.take_filled());
        nb.push(&buf.data()[cut..]);
        buf.truncate(cut);
        let n = memchr::memchr_iter(b'\n', buf.data()).count() as u64;
        sink(Batch::Lines {
            data: buf.into_bytes(),
            first_line: line,
        });
        line += n;
        buf = nb;
    }
}

/// Discards the rest of an oversized line; `buf` keeps what follows its
/// line end. `false` when the stream ended first.
fn skip_line(r: &mut dyn Read, buf: &mut Filled, failed: &mut Option<std::io::Error>) -> bool {
    loop {
        if let Some(p) = memchr::memchr(b'\n', buf.data()) {
            buf.drain_front(p + 1);
            return true;
        }
        buf.truncate(0);
        if buf.fill(r, 1 << 20, failed) && memchr::memchr(b'\n', buf.data()).is_none() {
            buf.truncate(0);
            return false;
        }
    }
}

fn read_pieces(
    mut r: Box<dyn Read + Send>,
    head: Vec<u8>,
    sink: &mut dyn FnMut(Batch),
    pool: &BufferPool,
    mut sp: JsonSplitter,
) -> std::io::Result<()> {
    let mut buf = Filled::holding(head);
    let mut eof = false;
    let mut data = pool.take();
    let mut items = Vec::new();
    let mut failed = None;
    let line_mode = sp.is_lines();
    loop {
        if !eof {
            eof = buf.fill(&mut r, 1 << 20, &mut failed);
        }
        let used = sp.feed(buf.data(), eof, &mut |p| match p {
            Piece::Record { bytes, line, index } => {
                let start = data.len();
                data.extend_from_slice(bytes);
                items.push(Item::Rec { start, end: data.len(), line, index });
                // Records end at a line end in the batch, as JSON lines do:
                // a text searched over the whole batch never spans two.
                data.push(b'\n');
            }
            Piece::Truncated { line, index } => items.push(Item::Bad {
                line,
                index,
                reason: if line_mode {
                    "truncated JSON: its line ends inside this record".into()
                } else {
                    "truncated JSON: the file ends inside this record".into()
                },
            }),
            Piece::Garbage { line, byte } => items.push(Item::Bad {
                line,
                index: 0,
                reason: format!("invalid JSON: unexpected {:?} where a record should start; skipped to the next line", byte as char),
            }),
        });
        buf.drain_front(used);
        if buf.len > MAX_RECORD {
            // `buf` starts with one record that is already too large:
            // skip to its end keeping only its nesting state.
            // In line mode it ends at its line's end at the latest (the
            // line end stays, and ends the line for the splitter).
            let mut end = ValueEnd::default();
            let mut lines = 0u64;
            let cut = loop {
                let line_end = line_mode
                    .then(|| memchr::memchr(b'\n', buf.data()))
                    .flatten();
                if let Some(n) = end.scan(&buf.data()[..line_end.unwrap_or(buf.len)]) {
                    lines += memchr::memchr_iter(b'\n', &buf.data()[..n]).count() as u64;
                    buf.drain_front(n);
                    break "";
                }
                if let Some(n) = line_end {
                    buf.drain_front(n);
                    break " (its line ends inside it)";
                }
                lines += memchr::memchr_iter(b'\n', buf.data()).count() as u64;
                buf.truncate(0);
                if eof {
                    break " (the file ends inside it)";
                }
                eof = buf.fill(&mut r, 1 << 20, &mut failed);
                if eof && buf.len == 0 {
                    break " (the file ends inside it)";
                }
            };
            let (line, index) = sp.skipped(lines);
            items.push(Item::Bad {
                line,
                index,
                reason: format!("record larger than {} MiB{cut}: skipped", MAX_RECORD >> 20),
            });
            continue;
        }
        if data.len() >= PIECES_BATCH || (eof && (!items.is_empty())) {
            let next = if eof { Vec::new() } else { pool.take() };
            let b = Batch::Pieces {
                data: std::mem::replace(&mut data, next),
                items: std::mem::take(&mut items),
            };
            sink(b);
        }
        if eof {
            return failed.map_or(Ok(()), Err);
        }
    }
}

fn read_rows(
    r: Box<dyn Read + Send>,
    head: Vec<u8>,
    delim: u8,
    sink: &mut dyn FnMut(Batch),
    pool: &BufferPool,
) -> std::io::Result<()> {
    let mut cr = CsvReader::with_buffer(r, pool.take_filled(), &head, delim);
    let mut rows = Vec::new();
    let mut header: Option<Arc<Vec<String>>> = None;
    let (mut index, mut first_index) = (0u64, 1u64);
    while let Some(row) = cr.next_row()? {
        index += 1;
        let h = header
            .get_or_insert_with(|| Arc::new(cr.header.clone()))
            .clone();
        rows.push(row);
        if rows.len() >= ROWS_BATCH {
            let b = Batch::Rows {
                header: h,
                rows: std::mem::take(&mut rows),
                first_index,
            };
            sink(b);
            first_index = index + 1;
        }
    }
    if let (false, Some(h)) = (rows.is_empty(), header) {
        sink(Batch::Rows {
            header: h,
            rows,
            first_index,
        });
    }
    let failed = cr.take_error();
    pool.give(cr.into_buffer());
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream handed out a few bytes to a few hundred KiB at a time,
    /// sometimes interrupted, and failing at byte `fails_at` when told to
    /// (instead of handing out more).
    struct Choppy {
        bytes: Vec<u8>,
        at: usize,
        rng: fastrand::Rng,
        fails_at: Option<usize>,
    }

    impl Read for Choppy {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.rng.u8(..8) == 0 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let end = self.fails_at.unwrap_or(self.bytes.len());
            if self.at == end {
                return match self.fails_at {
                    Some(_) => Err(std::io::Error::other("cut")),
                    None => Ok(0),
                };
            }
            let short = [7, 4096, 300_000][self.rng.usize(..3)];
            let n = buf.len().min(end - self.at).min(short);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// `n` JSON records of lengths from a few bytes to 40 KiB, each with
    /// its number; with `long`, the middle one is 2.5 MiB, longer than a
    /// batch.
    fn records(rng: &mut fastrand::Rng, n: usize, long: bool) -> Vec<String> {
        (0..n)
            .map(|i| {
                let pad = if long && i == n / 2 {
                    5 << 19
                } else {
                    rng.usize(..40_000)
                };
                format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(pad))
            })
            .collect()
    }

    /// The records `read_batches` hands out for `text`, and whether the
    /// read ended without an error. The first bytes come as the sniffed
    /// head; the stream fails at byte `fails_at` of `text` if given.
    /// Batches of lines start at the line after the last batch's, and
    /// records of an array come with their index, in order.
    fn read_all(
        container: Container,
        text: &str,
        fails_at: Option<usize>,
        pool: &BufferPool,
        seed: u64,
    ) -> (Vec<String>, bool) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let split = rng
            .usize(..text.len().min(3000))
            .min(fails_at.unwrap_or(usize::MAX));
        let stream = Choppy {
            bytes: text.as_bytes()[split..].to_vec(),
            at: 0,
            rng: rng.clone(),
            fails_at: fails_at.map(|f| f - split),
        };
        let mut got = Vec::new();
        let mut next_line = 1;
        let mut sink = |b: Batch| match b {
            Batch::Lines { data, first_line } => {
                assert_eq!(first_line, next_line, "a batch starts where the last ended");
                next_line += memchr::memchr_iter(b'\n', &data).count() as u64;
                let text = std::str::from_utf8(&data).unwrap();
                got.extend(text.lines().map(str::to_owned));
                pool.give(data);
            }
            Batch::Pieces { data, items } => {
                for it in items {
                    match it {
                        Item::Rec {
                            start, end, index, ..
                        } => {
                            // An envelope line's records count from 1.
                            if container == Container::JsonStream {
                                assert_eq!(index, got.len() as u64 + 1, "records in order");
                            }
                            got.push(String::from_utf8(data[start..end].to_vec()).unwrap());
                        }
                        Item::Bad { reason, .. } => {
                            assert!(fails_at.is_some(), "nothing rejected: {reason}")
                        }
                    }
                }
                pool.give(data);
            }
            Batch::Rows { .. } => panic!("no CSV here"),
        };
        let head = text.as_bytes()[..split].to_vec();
        let res = read_batches(container, b',', Box::new(stream), head, &mut sink, pool);
        (got, res.is_ok())
    }

    /// A short stream is read into a batch buffer without zeroing the
    /// buffer's whole room first (a file of a few KiB zeroed a MiB), and a
    /// buffer handed back keeps its bytes for the next read to reuse.
    #[test]
    fn short_streams_zero_little_past_their_bytes() {
        let pool = BufferPool::default();
        let text = vec![b'x'; 10_000];
        let mut failed = None;
        let mut f = Filled::into(pool.take_filled());
        assert!(
            f.fill(&mut &text[..], LINES_BATCH, &mut failed),
            "the stream ended"
        );
        assert_eq!(f.data(), &text[..]);
        assert!(
            f.bytes.len() <= text.len() + FILL_STEP,
            "{} bytes initialised to read {}",
            f.bytes.len(),
            text.len()
        );
        // Handed back full, it is read into again without growing.
        let mut big = f.into_bytes();
        big.resize(LINES_BATCH, b'y');
        pool.give(big);
        let mut f = Filled::into(pool.take_filled());
        assert_eq!(
            f.bytes.len(),
            LINES_BATCH,
            "what the last batch wrote stays"
        );
        assert!(f.fill(&mut &text[..], LINES_BATCH, &mut failed));
        assert_eq!((f.data(), f.bytes.len()), (&text[..], LINES_BATCH));
        assert!(failed.is_none());
    }

    /// Every record is handed out once, whole and in order, however the
    /// reads cut the stream, however many batches it fills and whether a
    /// record is longer than a batch, from buffers used before by longer
    /// streams (their old bytes never show through). A read error hands
    /// out every record before it and is reported.
    #[test]
    fn records_come_out_whole_whatever_the_reads() {
        let mut rng = fastrand::Rng::with_seed(5);
        let pool = BufferPool::default();
        let rounds = [
            (400, false),
            (3, false),
            (150, true),
            (1, false),
            (60, true),
        ];
        for (round, (n, long)) in rounds.into_iter().enumerate() {
            let recs = records(&mut rng, n, long);
            let lines = recs.join("\n") + "\n";
            let array = format!("[{}]", recs.join(",\n"));
            let envelopes: String = recs
                .chunks(3)
                .map(|c| format!("{{\"records\":[{}]}}\n", c.join(",")))
                .collect();
            // A cut after the first half of the records, where one ends.
            let half = n.div_ceil(2);
            let cuts = [
                (
                    Container::JsonLines,
                    &lines,
                    recs[..half].join("\n").len() + 1,
                ),
                (
                    Container::JsonStream,
                    &array,
                    recs[..half].join(",\n").len() + 3,
                ),
                (Container::EnvelopeLines, &envelopes, {
                    let whole = half / 3 * 3;
                    envelopes.lines().take(whole / 3).map(|l| l.len() + 1).sum()
                }),
            ];
            for (seed, (container, text, cut)) in cuts.into_iter().enumerate() {
                let seed = (round * 3 + seed) as u64;
                let (got, ok) = read_all(container, text, None, &pool, seed);
                assert!(ok, "{container:?}, round {round}: read to the end");
                assert_eq!(got.len(), recs.len(), "{container:?}, round {round}");
                assert!(
                    got == recs,
                    "{container:?}, round {round}: the records as written"
                );
                let (got, ok) = read_all(container, text, Some(cut.min(text.len())), &pool, seed);
                assert!(!ok, "{container:?}, round {round}: the error is reported");
                let before = if container == Container::EnvelopeLines {
                    half / 3 * 3
                } else {
                    half
                };
                assert!(
                    got.len() >= before && got[..before] == recs[..before],
                    "{container:?}, round {round}: the {before} records before the cut ({} out)",
                    got.len()
                );
            }
        }
    }
}
