//! Records out of a decoded stream, in batches for parallel workers.

use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::format::Container;
use crate::split::{CsvReader, CsvRow, JsonSplitter, Piece, ValueEnd};

/// Bytes of JSON lines a batch holds (a batch ends at the first line end
/// past it). A batch is read in passes (the literal screen over all of it,
/// then record by record), so it is sized to stay in a core's 1 MiB
/// level-2 cache between them: 4 MiB batches cost 4 % more CPU on mailbox
/// audit and sign-in exports.
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

impl BufferPool {
    /// An empty buffer with room for a batch.
    pub fn take(&self) -> Vec<u8> {
        self.bufs
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_else(|| Vec::with_capacity(LINES_BATCH + 64 * 1024))
    }

    /// Returns a batch's buffer.
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < LINES_BATCH {
            return;
        }
        buf.clear();
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

/// Longest record read: a longer one is rejected with its locator and
/// skipped, so one crafted line (a gzip bomb inflates to one endless line)
/// cannot exhaust memory.
pub const MAX_RECORD: usize = 64 << 20;

/// Fills `buf` from `r` with up to `need` more bytes. A read error ends the
/// stream (the bytes before it are kept, and the error is kept for the
/// end): a truncated gzip member still yields every record before the cut.
fn fill(
    r: &mut dyn Read,
    buf: &mut Vec<u8>,
    need: usize,
    failed: &mut Option<std::io::Error>,
) -> bool {
    // read_to_end grows the buffer only as far as the data goes and never
    // zeroes what it fills.
    match r.take(need as u64).read_to_end(buf) {
        Ok(n) => n < need,
        Err(e) => {
            *failed = Some(e);
            true
        }
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
    let mut buf = pool.take();
    buf.extend_from_slice(&head);
    let mut line = 1u64;
    let mut eof = false;
    let mut failed = None;
    loop {
        let mut want = LINES_BATCH;
        loop {
            if !eof && buf.len() < want {
                let need = want - buf.len();
                eof = fill(&mut r, &mut buf, need, &mut failed);
            }
            if eof || memchr::memrchr(b'\n', &buf).is_some() {
                break;
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
        }
        if eof {
            if !buf.is_empty() {
                sink(Batch::Lines {
                    data: buf,
                    first_line: line,
                });
            }
            return failed.map_or(Ok(()), Err);
        }
        let cut = memchr::memrchr(b'\n', &buf)
            .map(|p| p + 1)
            .unwrap_or(buf.len());
        let mut nb = pool.take();
        nb.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        let n = memchr::memchr_iter(b'\n', &buf).count() as u64;
        sink(Batch::Lines {
            data: buf,
            first_line: line,
        });
        line += n;
        buf = nb;
    }
}

/// Discards the rest of an oversized line; `buf` keeps what follows its
/// line end. `false` when the stream ended first.
fn skip_line(r: &mut dyn Read, buf: &mut Vec<u8>, failed: &mut Option<std::io::Error>) -> bool {
    loop {
        if let Some(p) = memchr::memchr(b'\n', buf) {
            buf.drain(..=p);
            return true;
        }
        buf.clear();
        if fill(r, buf, 1 << 20, failed) && memchr::memchr(b'\n', buf).is_none() {
            buf.clear();
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
    let mut buf = head;
    let mut eof = false;
    let mut data = pool.take();
    let mut items = Vec::new();
    let mut failed = None;
    let line_mode = sp.is_lines();
    loop {
        if !eof {
            eof = fill(&mut r, &mut buf, 1 << 20, &mut failed);
        }
        let used = sp.feed(&buf, eof, &mut |p| match p {
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
        buf.drain(..used);
        if buf.len() > MAX_RECORD {
            // `buf` starts with one record that is already too large:
            // skip to its end keeping only its nesting state.
            // In line mode it ends at its line's end at the latest (the
            // line end stays, and ends the line for the splitter).
            let mut end = ValueEnd::default();
            let mut lines = 0u64;
            let cut = loop {
                let line_end = line_mode.then(|| memchr::memchr(b'\n', &buf)).flatten();
                if let Some(n) = end.scan(&buf[..line_end.unwrap_or(buf.len())]) {
                    lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                    buf.drain(..n);
                    break "";
                }
                if let Some(n) = line_end {
                    buf.drain(..n);
                    break " (its line ends inside it)";
                }
                lines += memchr::memchr_iter(b'\n', &buf).count() as u64;
                buf.clear();
                if eof {
                    break " (the file ends inside it)";
                }
                eof = fill(&mut r, &mut buf, 1 << 20, &mut failed);
                if eof && buf.is_empty() {
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
            let b = Batch::Pieces {
                data: std::mem::replace(&mut data, pool.take()),
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
    let mut buf = pool.take();
    buf.extend_from_slice(&head);
    let mut cr = CsvReader::with_buffer(r, buf, delim);
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
