//! Finding input files, undoing compression and text encodings, and sniffing
//! each file's format from its first bytes.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::format::{csv_format, envelope_format, json_format, Container, Format};
use crate::split::{first_csv_header, JsonSplitter, Piece};

/// Extensions read when walking a directory; files named explicitly are
/// always read, whatever their name.
const LOG_EXTENSIONS: &[&str] = &["json", "jsonl", "ndjson", "csv", "log", "txt", "gz", "tsv"];

/// Expands the given paths into files: directories recursively (sorted, so
/// runs are reproducible), keeping only log-like extensions there. Returns
/// the files, the directory entries that were skipped, and the inputs that
/// could not be read.
///
/// A directory walk reads each file once however many links lead to it,
/// enters each directory once (a symlink loop ends there), and leaves out
/// what is not a regular file (a FIFO would block the hunt forever, a
/// device never end). A path named on the command line is read whatever it
/// is: `/dev/stdin` and pipes work.
pub fn discover(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut w = Walk::default();
    for p in inputs {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => w.dir(p),
            Ok(_) => {
                if w.first_visit(p) {
                    w.files.push(p.clone());
                }
            }
            Err(e) => w.errors.push((p.clone(), e.to_string())),
        }
    }
    (w.files, w.skipped, w.errors)
}

#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    skipped: Vec<PathBuf>,
    errors: Vec<(PathBuf, String)>,
    /// Canonical paths of the files and directories met so far.
    seen: std::collections::HashSet<PathBuf>,
}

impl Walk {
    /// Whether `p` (through any links) has not been met before.
    fn first_visit(&mut self, p: &Path) -> bool {
        match std::fs::canonicalize(p) {
            Ok(c) => self.seen.insert(c),
            // Unresolvable: reading it will say why.
            Err(_) => true,
        }
    }

    fn dir(&mut self, dir: &Path) {
        if !self.first_visit(dir) {
            self.skipped.push(dir.to_path_buf());
            return;
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                self.errors.push((dir.to_path_buf(), e.to_string()));
                return;
            }
        };
        entries.sort();
        for p in entries {
            let meta = std::fs::metadata(&p);
            if meta.as_ref().is_ok_and(|m| m.is_dir()) {
                self.dir(&p);
                continue;
            }
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .unwrap_or_default();
            let regular = meta.as_ref().is_ok_and(|m| m.is_file());
            if !LOG_EXTENSIONS.contains(&ext.as_str()) || (meta.is_ok() && !regular) {
                self.skipped.push(p);
            } else if self.first_visit(&p) {
                self.files.push(p);
            } else {
                self.skipped.push(p);
            }
        }
    }
}

/// Counts bytes read from the underlying file, for progress reporting.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Transcodes UTF-16 (with the BOM already removed) to UTF-8, streaming.
struct Utf16ToUtf8<R> {
    inner: R,
    big_endian: bool,
    /// UTF-16 bytes: the `kept` first are left from the last read (an odd
    /// byte and a high surrogate whose partner has not arrived, at most 3),
    /// and each read lands after them. Zeroed once, not per read.
    raw: Vec<u8>,
    kept: usize,
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

/// UTF-16 bytes read at a time.
const UTF16_CHUNK: usize = 256 * 1024;

impl<R> Utf16ToUtf8<R> {
    fn new(inner: R, big_endian: bool) -> Utf16ToUtf8<R> {
        Utf16ToUtf8 {
            inner,
            big_endian,
            // Room for a whole read after the bytes kept.
            raw: vec![0; UTF16_CHUNK + 4],
            kept: 0,
            out: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }
}

impl<R: Read> Read for Utf16ToUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos >= self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.out.clear();
            self.out_pos = 0;
            // A failed read changes nothing: it may be retried.
            let n = self.inner.read(&mut self.raw[self.kept..])?;
            if n == 0 {
                self.eof = true;
                if self.kept > 0 {
                    // An odd trailing byte or lone surrogate: keep it visible.
                    self.out.extend_from_slice("\u{FFFD}".as_bytes());
                    self.kept = 0;
                }
                continue;
            }
            let end = self.kept + n;
            let used = utf16_to_utf8(&self.raw[..end & !1], self.big_endian, &mut self.out);
            self.raw.copy_within(used..end, 0);
            self.kept = end - used;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Appends the UTF-8 of the UTF-16 code units in `bytes` (an even number)
/// to `out`, as [`char::decode_utf16`] decodes them with each unpaired
/// surrogate replaced by U+FFFD, and returns how many bytes it used: all
/// but a final high surrogate, whose partner may come in the next read.
///
/// Exports written by Windows PowerShell (`Out-File`, `>`) are UTF-16 and
/// almost all ASCII: sixteen units at a time, else four, that are all
/// ASCII are copied as their low bytes. Decoding one character at a time
/// ran at under 1 GB/s, on the reading thread, and doubled the CPU time
/// of a hunt.
fn utf16_to_utf8(bytes: &[u8], big_endian: bool, out: &mut Vec<u8>) -> usize {
    let unit = |i: usize| {
        let pair = [bytes[i], bytes[i + 1]];
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    };
    out.reserve(bytes.len() / 2);
    let mut i = 0;
    while i < bytes.len() {
        if let Some(units) = bytes.get(i..i + 32) {
            if let Some(ascii) = ascii_16(units.try_into().expect("32 bytes"), big_endian) {
                out.extend_from_slice(&ascii);
                i += 32;
                continue;
            }
        }
        if let Some(eight) = bytes.get(i..i + 8) {
            if let Some(ascii) = ascii_4(eight.try_into().expect("eight bytes"), big_endian) {
                out.extend_from_slice(&ascii);
                i += 8;
                continue;
            }
        }
        let u = unit(i);
        let ch = match u {
            0xD800..=0xDBFF => {
                if i + 2 >= bytes.len() {
                    // Its partner, if any, is in the next read.
                    return i;
                }
                let next = unit(i + 2);
                if (0xDC00..=0xDFFF).contains(&next) {
                    i += 2;
                    let c = 0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(next) - 0xDC00);
                    char::from_u32(c).unwrap_or('\u{FFFD}')
                } else {
                    '\u{FFFD}'
                }
            }
            0xDC00..=0xDFFF => '\u{FFFD}',
            _ => char::from_u32(u32::from(u)).unwrap_or('\u{FFFD}'),
        };
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
        i += 2;
    }
    i
}

/// The low bytes of sixteen UTF-16 units (32 bytes) if all are ASCII:
/// with SSE2, one test of the two halves and one pack of them. The word
/// path below took a fifth of the CPU of a hunt over a PowerShell export
/// (copying its low bytes out by shifts).
#[cfg(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
))]
#[inline]
fn ascii_16(units: &[u8; 32], big_endian: bool) -> Option<[u8; 16]> {
    use safe_arch::{bitand_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i};
    use safe_arch::{move_mask_i8_m128i, pack_i16_to_u8_m128i, set_splat_i16_m128i};
    use safe_arch::{shl_imm_u16_m128i, shr_imm_u16_m128i, store_unaligned_m128i, zeroed_m128i};
    let (first, second) = units.split_at(16);
    let mut a = load_unaligned_m128i(first.try_into().expect("16 bytes"));
    let mut b = load_unaligned_m128i(second.try_into().expect("16 bytes"));
    if big_endian {
        // Each unit's low byte to the low byte of its lane.
        let swap = |v| bitor_m128i(shr_imm_u16_m128i::<8>(v), shl_imm_u16_m128i::<8>(v));
        a = swap(a);
        b = swap(b);
    }
    // An ASCII unit is below 0x80: none of the bits 0xFF80 is set.
    let high = bitand_m128i(bitor_m128i(a, b), set_splat_i16_m128i(0xFF80_u16 as i16));
    if move_mask_i8_m128i(cmp_eq_mask_i8_m128i(high, zeroed_m128i())) != 0xFFFF {
        return None;
    }
    let mut out = [0u8; 16];
    store_unaligned_m128i(&mut out, pack_i16_to_u8_m128i(a, b));
    Some(out)
}

#[cfg(not(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
)))]
fn ascii_16(units: &[u8; 32], big_endian: bool) -> Option<[u8; 16]> {
    ascii_16_by_words(units, big_endian)
}

/// [`ascii_16`] without SIMD: one test of the four words' high bits and
/// one copy, where four-unit steps took four of each. (With SSE2 only the
/// tests call it, to hold the two to one answer.)
#[cfg_attr(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2"
    ),
    allow(dead_code)
)]
fn ascii_16_by_words(units: &[u8; 32], big_endian: bool) -> Option<[u8; 16]> {
    let any = units
        .chunks_exact(8)
        .fold(0, |acc, e| acc | utf16_word(e, big_endian));
    if any & NOT_ASCII != 0 {
        return None;
    }
    let mut ascii = [0u8; 16];
    for (four, e) in ascii.chunks_exact_mut(4).zip(units.chunks_exact(8)) {
        four.copy_from_slice(&low_bytes(e, big_endian));
    }
    Some(ascii)
}

/// The low bytes of four UTF-16 units (8 bytes) if all are ASCII.
fn ascii_4(units: &[u8; 8], big_endian: bool) -> Option<[u8; 4]> {
    (utf16_word(units, big_endian) & NOT_ASCII == 0).then(|| low_bytes(units, big_endian))
}

/// The high byte of each of four units, and the top bit of each low byte:
/// zero when all four are ASCII. Units are 16-bit lanes of the word read
/// in the data's own byte order ([`utf16_word`]).
const NOT_ASCII: u64 = 0xFF80_FF80_FF80_FF80;

/// Four UTF-16 units (8 bytes) as a word in the data's byte order.
fn utf16_word(eight: &[u8], big_endian: bool) -> u64 {
    let eight: [u8; 8] = eight.try_into().expect("eight bytes");
    if big_endian {
        u64::from_be_bytes(eight)
    } else {
        u64::from_le_bytes(eight)
    }
}

/// The low bytes of four ASCII units, by shifts in a word rather than a
/// byte at a time (which the compiler did not vectorise).
fn low_bytes(eight: &[u8], big_endian: bool) -> [u8; 4] {
    let eight: [u8; 8] = eight.try_into().expect("eight bytes");
    // Low bytes at the even places of the word, high (zero) bytes between.
    let w = u64::from_le_bytes(eight) >> (8 * u32::from(big_endian));
    let w = (w | w >> 8) & 0x0000_FFFF_0000_FFFF;
    let w = (w | w >> 16) & 0xFFFF_FFFF;
    (w as u32).to_le_bytes()
}

fn read_up_to<R: Read + ?Sized>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    read_more(r, &mut buf, n)?;
    Ok(buf)
}

/// Text encoding found at the start of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 without a byte-order mark.
    Utf8,
    /// UTF-8 with a byte-order mark.
    Utf8Bom,
    /// UTF-16 little-endian with a BOM.
    Utf16Le,
    /// UTF-16 big-endian with a BOM.
    Utf16Be,
}

/// A decoded input stream (gzip undone, BOM stripped, UTF-16 transcoded).
pub struct Opened {
    /// The UTF-8 byte stream.
    pub reader: Box<dyn Read + Send>,
    /// Whether the file was gzip-compressed.
    pub gzip: bool,
    /// The text encoding found.
    pub encoding: Encoding,
}

/// Opens a file and returns its decoded UTF-8 stream.
pub fn open(path: &Path, counter: Arc<AtomicU64>) -> io::Result<Opened> {
    let file = File::open(path)?;
    let mut raw: Box<dyn Read + Send> = Box::new(Counting {
        inner: file,
        counter,
    });
    let magic = read_up_to(&mut raw, 2)?;
    let gzip = magic == [0x1f, 0x8b];
    let mut stream: Box<dyn Read + Send> = Box::new(Cursor::new(magic).chain(raw));
    if gzip {
        stream = Box::new(flate2::read::MultiGzDecoder::new(stream));
    }
    let head = read_up_to(&mut stream, 3)?;
    let (encoding, skip) = match head.as_slice() {
        [0xEF, 0xBB, 0xBF, ..] => (Encoding::Utf8Bom, 3),
        [0xFF, 0xFE, ..] => (Encoding::Utf16Le, 2),
        [0xFE, 0xFF, ..] => (Encoding::Utf16Be, 2),
        _ => (Encoding::Utf8, 0),
    };
    let rest = head[skip..].to_vec();
    let stream: Box<dyn Read + Send> = Box::new(Cursor::new(rest).chain(stream));
    let reader: Box<dyn Read + Send> = match encoding {
        Encoding::Utf16Le | Encoding::Utf16Be => {
            Box::new(Utf16ToUtf8::new(stream, encoding == Encoding::Utf16Be))
        }
        _ => stream,
    };
    Ok(Opened {
        reader,
        gzip,
        encoding,
    })
}

/// What sniffing found out about a file.
#[derive(Clone, Debug)]
pub struct Sniffed {
    /// The format name.
    pub format: Format,
    /// How to split it into records.
    pub container: Container,
    /// CSV delimiter.
    pub delimiter: u8,
    /// The file's first record (the first element of a `value`/`records`
    /// envelope), when sniffing could parse one: what the file holds.
    pub first_record: Option<serde_json::Value>,
    /// A CSV file whose first row is a sign-in (`SigninLogs` in its
    /// `Category`/`Type` column).
    pub signin_rows: bool,
}

/// Why a file could not be read as a log at all.
#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    /// The file holds no bytes (or only whitespace).
    #[error("empty file")]
    Empty,
    /// The file is not text.
    #[error("binary data at byte {0}, not a log export")]
    Binary(usize),
    /// Text that is neither JSON nor delimited text.
    #[error("not a recognised log format: {0}")]
    Unknown(String),
}

/// How far sniffing may read: enough for the first record of most
/// exports, including a large first element of an envelope.
const SNIFF_BYTES: usize = 256 * 1024;

/// What sniffing reads first. Most exports are JSON lines whose first line
/// fits, and that line alone decides; only otherwise is the rest of
/// [`SNIFF_BYTES`] read. When sign-ins are read first every file is
/// sniffed twice, so reading a whole window each time read a third of a
/// 500 MB export of daily files again.
const SNIFF_FIRST_BYTES: usize = 32 * 1024;

/// Reads the start of a decoded stream and decides the format. Returns the
/// bytes read so the caller can replay them. Decides exactly as on the
/// whole window of `SNIFF_BYTES` (256 KiB), reading less when the first line decides.
pub fn sniff(
    reader: &mut dyn Read,
    forced: Option<Format>,
) -> io::Result<(Vec<u8>, Result<Sniffed, SniffError>)> {
    let mut head = read_up_to(reader, SNIFF_FIRST_BYTES)?;
    if head.len() == SNIFF_FIRST_BYTES {
        let res = sniff_head(&head, forced);
        if first_bytes_decide(&head, &res) {
            return Ok((head, res));
        }
        read_more(reader, &mut head, SNIFF_BYTES)?;
    }
    let res = sniff_head(&head, forced);
    Ok((head, res))
}

/// Whether what the first bytes of a window gave is what the whole window
/// would: binary data (found in the first 8 KiB), or JSON lines told by a
/// first line that ends inside them.
fn first_bytes_decide(head: &[u8], res: &Result<Sniffed, SniffError>) -> bool {
    match res {
        Err(SniffError::Binary(_)) => true,
        Ok(s) if s.container == Container::JsonLines => {
            let first = head.iter().position(|b| !b.is_ascii_whitespace());
            first.is_some_and(|f| memchr::memchr(b'\n', &head[f..]).is_some())
        }
        _ => false,
    }
}

/// Reads on until `head` holds `up_to` bytes or the stream ends.
fn read_more<R: Read + ?Sized>(reader: &mut R, head: &mut Vec<u8>, up_to: usize) -> io::Result<()> {
    let more = up_to.saturating_sub(head.len()) as u64;
    reader.take(more).read_to_end(head)?;
    Ok(())
}

/// [`sniff`] for a file reopened after an earlier sniff found `known`:
/// reads the head again (to be replayed) and trusts that finding instead
/// of judging the head again (a second parse of its first record), unless
/// the file has been emptied since.
pub fn sniff_known(
    reader: &mut dyn Read,
    known: Sniffed,
) -> io::Result<(Vec<u8>, Result<Sniffed, SniffError>)> {
    let blank = |h: &[u8]| h.iter().all(u8::is_ascii_whitespace);
    let mut head = read_up_to(reader, SNIFF_FIRST_BYTES)?;
    if head.len() == SNIFF_FIRST_BYTES && blank(&head) {
        read_more(reader, &mut head, SNIFF_BYTES)?;
    }
    let res = if blank(&head) {
        Err(SniffError::Empty)
    } else {
        Ok(known)
    };
    Ok((head, res))
}

/// Control bytes no text export holds: NUL to backspace, shift-out to
/// substitute.
fn is_binary(c: u8) -> bool {
    c < 0x09 || (0x0e..0x1b).contains(&c)
}

/// Where the first binary byte ([`is_binary`]) is in `b`. Every file is
/// sniffed, and most hold none: a block of 64 bytes is ruled out at once
/// (a loop without an early exit, which the compiler makes vector
/// compares, where a search with one took ten instructions a byte), and
/// only a block holding one is searched byte by byte.
fn first_binary(b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    b.chunks(BLOCK).enumerate().find_map(|(i, block)| {
        if !block.iter().fold(false, |any, &c| any | is_binary(c)) {
            return None;
        }
        block
            .iter()
            .position(|&c| is_binary(c))
            .map(|p| i * BLOCK + p)
    })
}

fn sniff_head(head: &[u8], forced: Option<Format>) -> Result<Sniffed, SniffError> {
    let first = head.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(SniffError::Empty);
    };
    if let Some(pos) = first_binary(&head[..head.len().min(8192)]) {
        return Err(SniffError::Binary(pos));
    }
    // The first record, looking inside `value` and `records` envelopes.
    let first_record = |v: &serde_json::Value| {
        let inner = v
            .get("value")
            .or_else(|| v.get("records"))
            .and_then(|a| a.get(0));
        Some(inner.unwrap_or(v).clone())
    };
    let c = head[first];
    if (c == b'[' || c == b'{') && forced.is_none_or(|f| !f.is_csv()) {
        // JSON lines when the first line is a complete value on its own.
        let line_end = memchr::memchr(b'\n', &head[first..])
            .map(|p| first + p)
            .unwrap_or(head.len());
        let line = &head[first..line_end];
        // A stream that opens with an envelope is split record by record,
        // whether the envelope spans lines or fills one.
        let envelope = crate::split::envelope_records(head, first).flatten();
        if c == b'{' && envelope.is_none() {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
                let fmt = forced.unwrap_or_else(|| json_format(&v, true));
                return Ok(Sniffed {
                    format: fmt,
                    container: Container::JsonLines,
                    delimiter: b',',
                    first_record: first_record(&v),
                    signin_rows: false,
                });
            }
        }
        // Envelopes a line each are split line by line, so that a cut line
        // costs only its own records: the envelope's opening and its first
        // record start on the first line (a pretty page breaks the line
        // after `"value": [`). Whether the first line parses is no test: a
        // cut first line would make the file one stream, and the cut
        // record would swallow every later line.
        let one_a_line = envelope.is_some_and(|(records, _)| {
            head[records..]
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
                .is_some_and(|p| memchr::memchr(b'\n', &head[first..=records + p]).is_none())
        });
        let mut sp = if one_a_line {
            JsonSplitter::lines()
        } else {
            JsonSplitter::new()
        };
        // The first record that parses decides.
        let mut firstrec = None;
        sp.feed_while(head, false, &mut |p: Piece<'_>| {
            if let Piece::Record { bytes, .. } = p {
                firstrec = serde_json::from_slice::<serde_json::Value>(bytes).ok();
            }
            firstrec.is_none()
        });
        let fmt = forced.unwrap_or_else(|| match envelope {
            Some((_, key)) => envelope_format(key, firstrec.as_ref()),
            None => firstrec
                .as_ref()
                .map(|v| json_format(v, false))
                .unwrap_or(Format::Json),
        });
        return Ok(Sniffed {
            format: fmt,
            container: if one_a_line {
                Container::EnvelopeLines
            } else {
                Container::JsonStream
            },
            delimiter: b',',
            // An envelope's first record is already the record.
            first_record: if envelope.is_some() {
                firstrec
            } else {
                firstrec.as_ref().and_then(first_record)
            },
            signin_rows: false,
        });
    }
    // Delimited text.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(e) => return Err(SniffError::Binary(e.valid_up_to())),
    };
    let Some((header, type_line, delimiter)) = first_csv_header(text) else {
        let line: String = text.lines().next().unwrap_or("").chars().take(60).collect();
        return Err(SniffError::Unknown(format!(
            "first line is neither JSON nor a CSV header: {line:?}"
        )));
    };
    let fmt = forced.unwrap_or_else(|| csv_format(&header, type_line, delimiter));
    let lower: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    let signin_rows = lower.iter().any(|h| h == "category" || h == "type")
        && text
            .lines()
            .nth(1)
            .is_some_and(|l| l.to_ascii_lowercase().contains("signinlogs"));
    Ok(Sniffed {
        format: fmt,
        container: Container::Csv,
        delimiter,
        first_record: None,
        signin_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tabs, line ends, form feeds and escape are text; the other C0
    /// controls below 0x1b mark a file as binary, at the first one found.
    #[test]
    fn control_bytes_mark_binary_data() {
        let binary: Vec<u8> = (0..=255u8).filter(|&b| is_binary(b)).collect();
        assert_eq!(
            binary,
            [
                &(0x00..=0x08).collect::<Vec<u8>>()[..],
                &(0x0e..=0x1a).collect::<Vec<u8>>()[..]
            ]
            .concat()
        );
        let mut head = br#"{"a":"b"}"#.to_vec();
        assert!(sniff_head(&head, None).is_ok());
        head.extend_from_slice(b"\n\t\x0c\x1b\n");
        assert!(sniff_head(&head, None).is_ok());
        head.insert(3, 0x01);
        assert!(matches!(
            sniff_head(&head, None),
            Err(SniffError::Binary(3))
        ));
        // The block search finds the first binary byte wherever it is,
        // blocks and their ends included, as a byte-by-byte search does.
        let text: Vec<u8> = (0..200u32)
            .map(|i| b" \t\n\r\x0c\x1b{a\"}"[i as usize % 10])
            .collect();
        assert_eq!(first_binary(&text), None);
        for at in 0..text.len() {
            for b in [0x00, 0x08, 0x0e, 0x1a] {
                let mut t = text.clone();
                t[at] = b;
                t[(at + 70).min(199)] = 0x01;
                assert_eq!(first_binary(&t), Some(at), "byte {b:#04x} at {at}");
            }
        }
    }

    /// Sniffing reads less when the first line decides, and decides as
    /// on the whole window every time: JSON lines with short and long
    /// first lines, CSV, JSON arrays and envelopes, leading blanks, binary
    /// data, and files shorter than the first read.
    #[test]
    fn sniffing_the_first_bytes_decides_as_the_whole_window() {
        let line =
            r#"{"CreationTime":"2023-06-10T10:00:00","Operation":"Send","Workload":"Exchange"}"#;
        let many = |l: &str, n: usize| format!("{l}\n").repeat(n);
        let long_line = format!(
            r#"{{"CreationTime":"2023-06-10T10:00:00","Operation":"Send","Pad":"{}"}}"#,
            "x".repeat(40_000)
        );
        let envelope = format!(r#"{{"records":[{}]}}"#, vec![line; 2_000].join(","));
        let csv = format!(
            "CreationDate,UserIds,Operations,AuditData\n{}",
            many("2023-06-10,a@x,Send,{}", 5_000)
        );
        let mut binary_late = many(line, 1_000).into_bytes();
        binary_late[9_000] = 0x01;
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("short JSON lines", many(line, 5_000).into_bytes(), true),
            ("one short line", format!("{line}\n").into_bytes(), true),
            (
                "a first line past the first read",
                format!("{long_line}\n{}", many(line, 100)).into_bytes(),
                false,
            ),
            ("an envelope on one line", envelope.into_bytes(), false),
            (
                "a JSON array",
                format!("[{}]", vec![line; 2_000].join(",\n")).into_bytes(),
                false,
            ),
            ("CSV", csv.into_bytes(), false),
            (
                "blank, then JSON lines",
                format!("{}{}", " ".repeat(40_000), many(line, 100)).into_bytes(),
                false,
            ),
            (
                "binary data at the start",
                [vec![0u8; 10], many(line, 1_000).into_bytes()].concat(),
                true,
            ),
            ("a control byte past 8 KiB", binary_late, true),
        ];
        for (what, bytes, brief) in cases {
            let window = &bytes[..bytes.len().min(SNIFF_BYTES)];
            let whole = format!("{:?}", sniff_head(window, None));
            let (head, res) = sniff(&mut &bytes[..], None).unwrap();
            assert_eq!(format!("{res:?}"), whole, "{what}");
            let expect_len = if brief {
                bytes.len().min(SNIFF_FIRST_BYTES)
            } else {
                window.len()
            };
            assert_eq!(head.len(), expect_len, "{what}: bytes read");
            assert_eq!(&head[..], &bytes[..head.len()], "{what}: replayable");
        }
    }

    /// A file that opens with an envelope is split record by record,
    /// whether the envelope fills one line, spans lines or runs past the
    /// sniffed window, and is named by its records.
    #[test]
    fn envelopes_are_sniffed_as_streams_of_their_records() {
        let az = r#"{"time":"2024-03-01T00:00:00Z","category":"SignInLogs","operationName":"Sign-in activity","properties":{"userPrincipalName":"a@x"}}"#;
        let graph =
            r#"{"createdDateTime":"2024-03-01T00:00:00Z","userPrincipalName":"a@x","appId":"1"}"#;
        let risk = r#"{"id":"r1","riskEventType":"anonymizedIPAddress"}"#;
        let cases = [
            (
                "one-line records envelope",
                format!(r#"{{"records":[{az},{az}]}}"#),
                Format::AzureMonitorJson,
                az,
                Container::EnvelopeLines,
            ),
            (
                "records envelope past the window",
                format!(r#"{{"records":[{}]}}"#, vec![az; 5_000].join(",")),
                Format::AzureMonitorJson,
                az,
                Container::EnvelopeLines,
            ),
            (
                "pretty Graph page",
                format!("{{\n  \"@odata.context\": \"x\",\n  \"value\": [\n    {graph}\n  ]\n}}\n"),
                Format::GraphJson,
                graph,
                Container::JsonStream,
            ),
            (
                "Graph page of other records",
                format!(r#"{{"@odata.context":"x","value":[{risk}]}}"#),
                Format::GraphJson,
                risk,
                Container::EnvelopeLines,
            ),
        ];
        for (what, text, format, first, container) in cases {
            let (_, res) = sniff(&mut text.as_bytes(), None).unwrap();
            let s = res.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(s.format, format, "{what}");
            assert_eq!(s.container, container, "{what}");
            assert_eq!(
                s.first_record,
                Some(serde_json::from_str(first).unwrap()),
                "{what}"
            );
        }
        // One envelope a line, the first line cut: still read line by line.
        let cut_first = format!("{{\"records\":[{az},{{\"b\":\n{{\"records\":[{az}]}}\n");
        let (_, res) = sniff(&mut cut_first.as_bytes(), None).unwrap();
        assert_eq!(res.unwrap().container, Container::EnvelopeLines);
        // A record that merely has a `value` array is a record.
        let (_, res) = sniff(&mut &br#"{"id":1,"value":[1]}"#[..], None).unwrap();
        assert!(matches!(res.unwrap().container, Container::JsonLines));
    }

    /// A stream is named by its first record that parses: a malformed
    /// first element (rejected later, with its reason) does not make a
    /// content blob of UAL records a generic JSON file, and a cut record
    /// after the deciding one changes nothing. (That the splitter stops
    /// there is `feeding_stops_at_the_refused_piece` in split.rs.)
    #[test]
    fn a_stream_is_named_by_its_first_record_that_parses() {
        let ual = r#"{"CreationTime":"2023-06-10T10:00:00","Operation":"Send","RecordType":2,"Workload":"Exchange","UserId":"a@x"}"#;
        let text = format!("[{{\"CreationTime\":nan}},\n{ual},\n{{\"cut\":\"");
        let (_, res) = sniff(&mut text.as_bytes(), None).unwrap();
        let s = res.unwrap();
        assert_eq!(s.format, Format::UalJson);
        assert_eq!(s.first_record, Some(serde_json::from_str(ual).unwrap()));
    }

    /// Hands out its bytes a few at a time, as a pipe or a slow disk may,
    /// and now and then is interrupted by a signal instead.
    struct Trickle<'a> {
        bytes: &'a [u8],
        sizes: fastrand::Rng,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.sizes.usize(0..8) == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.bytes.len()).min(self.sizes.usize(1..40));
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// UTF-16 is transcoded as the standard library decodes it, unpaired
    /// surrogates replaced, in either byte order and however the reads
    /// cut the units and surrogate pairs (or are interrupted, which loses
    /// and repeats nothing): ASCII runs of every length and
    /// alignment (the four-unit copy), other characters, pairs, and lone
    /// surrogates of both halves.
    #[test]
    fn sixteen_units_are_found_ascii_alike_with_and_without_simd() {
        let mut rng = fastrand::Rng::with_seed(16);
        let mut ascii = 0;
        for round in 0..20_000 {
            let big_endian = round % 2 == 1;
            let mut units = [0u8; 32];
            for pair in units.chunks_exact_mut(2) {
                let (high, low) = if big_endian { (0, 1) } else { (1, 0) };
                // Mostly ASCII units; now and then a high bit or a high byte.
                pair[low] = match rng.u16(..80) {
                    0 => 0x80 | rng.u8(..0x80),
                    _ => rng.u8(..0x80),
                };
                pair[high] = if rng.u16(..80) == 0 { rng.u8(1..) } else { 0 };
            }
            let simd = ascii_16(&units, big_endian);
            assert_eq!(
                simd,
                ascii_16_by_words(&units, big_endian),
                "{units:?} big-endian {big_endian}"
            );
            ascii += usize::from(simd.is_some());
        }
        // Both answers came up often.
        assert!(
            (5_000..15_000).contains(&ascii),
            "{ascii} of 20000 all ASCII"
        );
    }

    #[test]
    fn utf16_is_transcoded_as_std_decodes_it_whatever_the_reads() {
        let mut rng = fastrand::Rng::with_seed(16);
        let pool: [u16; 10] = [
            b'a'.into(),
            b'"'.into(),
            0x7F,
            0x80,
            0xE9,
            0x4E2D,
            0xFFFD,
            0xD83D, // high surrogate
            0xDE00, // low surrogate
            0xDBFF,
        ];
        for case in 0..3000 {
            let len = rng.usize(0..96);
            let units: Vec<u16> = (0..len)
                .map(|_| {
                    // Some cases with long ASCII runs (many units at once).
                    if rng.usize(0..if case % 2 == 0 { 4 } else { 40 }) == 0 {
                        pool[rng.usize(0..pool.len())]
                    } else {
                        u16::from(rng.u8(b' '..0x7F))
                    }
                })
                .collect();
            let expected: String = char::decode_utf16(units.iter().copied())
                .map(|c| c.unwrap_or('\u{FFFD}'))
                .collect();
            for big_endian in [false, true] {
                let bytes: Vec<u8> = units
                    .iter()
                    .flat_map(|u| {
                        if big_endian {
                            u.to_be_bytes()
                        } else {
                            u.to_le_bytes()
                        }
                    })
                    .collect();
                let trickle = Trickle {
                    bytes: &bytes,
                    sizes: fastrand::Rng::with_seed(case),
                };
                let mut r = Utf16ToUtf8::new(trickle, big_endian);
                let mut got = String::new();
                r.read_to_string(&mut got).unwrap();
                assert_eq!(got, expected, "{units:04x?}, big-endian {big_endian}");
            }
        }
        // An odd byte at the end is one replacement character.
        let mut r = Utf16ToUtf8::new(&b"a\0b"[..], false);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "a\u{FFFD}");
    }

    /// A reopened file is judged empty only when its whole window is blank.
    #[test]
    fn a_reopened_file_is_empty_only_when_blank_through_the_window() {
        let known = || sniff_head(b"{\"a\":1}\n", None).unwrap();
        let late = format!("{}{{\"a\":1}}\n", " ".repeat(100_000));
        let (head, res) = sniff_known(&mut late.as_bytes(), known()).unwrap();
        assert!(res.is_ok(), "text past the first read");
        assert_eq!(head.len(), late.len());
        let blank = " ".repeat(SNIFF_BYTES + 10);
        let (_, res) = sniff_known(&mut blank.as_bytes(), known()).unwrap();
        assert!(matches!(res, Err(SniffError::Empty)));
        let full = "{\"a\":1}\n".repeat(10_000);
        let (head, res) = sniff_known(&mut full.as_bytes(), known()).unwrap();
        assert!(res.is_ok());
        assert_eq!(head.len(), SNIFF_FIRST_BYTES);
    }
}
