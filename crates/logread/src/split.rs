//! Splitting byte streams into records without parsing them: JSON values by
//! structure (arrays, envelopes, pretty-printed objects) and CSV rows by
//! quote balance, with resynchronisation after a broken quote.

use std::io::Read;

use memchr::memchr;

use crate::words::{bytes_equal, bytes_exactly, word_at, TOPS};

/// A piece of a JSON stream found by [`JsonSplitter`].
pub enum Piece<'a> {
    /// One complete value: a top-level value, an element of a top-level
    /// array, or a record of an envelope.
    Record {
        /// The value's bytes.
        bytes: &'a [u8],
        /// 1-based line of its first byte.
        line: u64,
        /// 1-based record index.
        index: u64,
    },
    /// The stream ended inside a value.
    Truncated {
        /// 1-based line where the value started.
        line: u64,
        /// 1-based record index.
        index: u64,
    },
    /// A byte that cannot start a JSON value; the splitter skipped to the next line.
    Garbage {
        /// 1-based line of the byte.
        line: u64,
        /// The byte.
        byte: u8,
    },
}

/// Incremental splitter for JSON arrays, envelopes and concatenated JSON
/// values.
///
/// An envelope is a top-level object holding its records in a `records`
/// array (Azure Monitor diagnostic exports) or a `value` array (Microsoft
/// Graph and Azure Resource Manager pages), before which it has only
/// metadata members ([`is_envelope_metadata`]). Its records
/// are split like a top-level array's elements, numbered from 1 in each
/// envelope, and its other members are skipped: an export of one envelope
/// hundreds of MiB long is read record by record, never held whole.
///
/// The state kept between calls is only the one at record boundaries: an
/// incomplete record is rescanned from its start once more bytes arrive,
/// which costs nothing for records smaller than the read buffer.
#[derive(Default)]
pub struct JsonSplitter {
    at: At,
    /// The stream's record index before the envelope, which counts as one
    /// value of the stream.
    index_before_envelope: u64,
    /// The last call ended in a line that held garbage: skip to its end.
    discarding: bool,
    /// Line mode ([`JsonSplitter::lines`]).
    lines: bool,
    line: u64,
    index: u64,
}

/// Where a [`JsonSplitter`] is, between records.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum At {
    /// Between top-level values.
    #[default]
    Top,
    /// Between the elements of a top-level array.
    Array,
    /// Between the records of an envelope.
    Envelope,
    /// After an envelope's records: its other members are skipped up to
    /// its `}`.
    EnvelopeTail,
}

/// The first byte at or after `j` that is not JSON whitespace.
fn skip_ws(buf: &[u8], mut j: usize) -> Option<usize> {
    while j < buf.len() {
        if !matches!(buf[j], b' ' | b'\t' | b'\r' | b'\n') {
            return Some(j);
        }
        j += 1;
    }
    None
}

/// Whether a member of an object is an envelope's metadata, not a field
/// of a record: Microsoft Graph's `@odata.*`, the older Azure AD Graph's
/// `odata.*`, and Azure Resource Manager's `nextLink`.
pub fn is_envelope_metadata(key: &[u8]) -> bool {
    key.starts_with(b"@odata") || key.starts_with(b"odata.") || key == b"nextLink"
}

/// Whether the object opening at `start` is an envelope ([`JsonSplitter`]):
/// `Some(Some((p, key)))` with `p` just after the `[` of its records and
/// `key` the member holding them, `Some(None)` when it is not one, `None`
/// when `buf` ends before that is known.
pub(crate) fn envelope_records(buf: &[u8], start: usize) -> Option<Option<(usize, &'static str)>> {
    let mut j = start + 1;
    loop {
        j = skip_ws(buf, j)?;
        let (key, value) = match member(buf, j) {
            Ok(m) => m,
            Err(true) => return None,
            Err(false) => return Some(None),
        };
        j = value;
        let name = match key {
            b"records" => "records",
            b"value" => "value",
            _ => "",
        };
        if !name.is_empty() {
            return Some((buf[j] == b'[').then_some((j + 1, name)));
        }
        if !is_envelope_metadata(key) {
            return Some(None);
        }
        j = match scan_brackets(buf, j) {
            Scan::Complete(e) => e,
            Scan::Incomplete => return None,
        };
        j = skip_ws(buf, j)?;
        if buf[j] != b',' {
            return Some(None);
        }
        j += 1;
    }
}

/// The key of the object member starting at `j` and where its value
/// starts: `Err(true)` when `buf` ends first, `Err(false)` when it is not
/// a member (`"key"`, `:`).
fn member(buf: &[u8], j: usize) -> Result<(&[u8], usize), bool> {
    if buf[j] != b'"' {
        return Err(false);
    }
    let end = skip_string(buf, j + 1).ok_or(true)?;
    let colon = skip_ws(buf, end).ok_or(true)?;
    if buf[colon] != b':' {
        return Err(false);
    }
    Ok((&buf[j + 1..end - 1], skip_ws(buf, colon + 1).ok_or(true)?))
}

/// Where the envelope member starting at `j` (a key, `:` and a value)
/// ends: `Err(true)` when `buf` ends first, `Err(false)` when it is not a
/// member.
fn member_end(buf: &[u8], j: usize) -> Result<usize, bool> {
    let (_, v) = member(buf, j)?;
    match scan_brackets(buf, v) {
        Scan::Complete(e) => Ok(e),
        Scan::Incomplete => Err(true),
    }
}

enum Scan {
    Complete(usize),
    Incomplete,
}

/// Where the JSON value at `start` ends, by brackets and strings alone,
/// a block of 64 bytes at a time ([`Blocks`]): lenient, so that a malformed
/// record is still delimited (and rejected whole by the parser). Only the
/// start's bracket pair is counted: well-formed JSON closes an object
/// with `}` however many arrays it holds. (serde_json skipped a
/// well-formed value first, at 2.5 GB/s on short keys and values where a
/// search call per string ran at 1.5; but it also checked the value, which
/// the parser does again, and on JSON carried in strings, an escape every
/// few bytes, it was a tenth of the CPU of a PowerShell export.)
fn scan_brackets(buf: &[u8], start: usize) -> Scan {
    let (open, close) = match buf[start] {
        b'{' => (b'{', b'}'),
        b'[' => (b'[', b']'),
        b'"' => {
            return match skip_string(buf, start + 1) {
                Some(e) => Scan::Complete(e),
                None => Scan::Incomplete,
            }
        }
        _ => {
            let mut j = start;
            while j < buf.len()
                && !matches!(buf[j], b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            return if j < buf.len() {
                Scan::Complete(j)
            } else {
                Scan::Incomplete
            };
        }
    };
    // Well-formed JSON closes an object with `}` however many arrays it
    // holds, so tracking only this bracket pair (and strings) is enough.
    let mut blocks = Blocks::default();
    let mut depth = 0u32;
    let mut at = start;
    while at < buf.len() {
        let end = (at + BLOCK).min(buf.len());
        let block: [u8; BLOCK] = match buf[at..end].try_into() {
            Ok(b) => b,
            // The last, short block: spaces after it hold no quote,
            // backslash or bracket.
            Err(_) => {
                let mut b = [b' '; BLOCK];
                b[..end - at].copy_from_slice(&buf[at..end]);
                b
            }
        };
        let [quotes, backslashes, opens, closes] = masks(&block, open, close);
        let outside = !blocks.in_strings(&block, quotes, backslashes);
        let opens = opens & outside;
        let mut brackets = (opens | closes) & outside;
        while brackets != 0 {
            let bit = brackets & brackets.wrapping_neg();
            if opens & bit != 0 {
                depth += 1;
            } else {
                depth -= 1;
                if depth == 0 {
                    return Scan::Complete(at + bit.trailing_zeros() as usize + 1);
                }
            }
            brackets ^= bit;
        }
        at = end;
    }
    Scan::Incomplete
}

/// Bytes the bracket scan reads at once: one bit each in a `u64`.
const BLOCK: usize = 64;

/// The bits of a block's quotes, backslashes, `open` brackets and `close`
/// brackets, in that order. SSE2 compares and mask moves read a block in
/// 16 instructions, where a byte-wise scan stopped at every quote (a Graph
/// or Azure Monitor sign-in has one every ten bytes or so): splitting an
/// envelope of sign-ins ran at 6.7 GB/s, against 1.7 stopping at each
/// string. Every x86-64 processor has SSE2.
#[cfg(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
))]
#[inline(always)]
fn masks(block: &[u8; BLOCK], open: u8, close: u8) -> [u64; 4] {
    use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i};
    use safe_arch::{m128i, set_splat_i8_m128i};
    let wanted = [b'"', b'\\', open, close].map(|c| set_splat_i8_m128i(c as i8));
    let mut out = [0u64; 4];
    for (k, part) in block.chunks_exact(16).enumerate() {
        let part: m128i = load_unaligned_m128i(part.try_into().expect("16 bytes"));
        for (bits, &c) in out.iter_mut().zip(&wanted) {
            let found = move_mask_i8_m128i(cmp_eq_mask_i8_m128i(part, c));
            *bits |= u64::from(found as u16) << (16 * k);
        }
    }
    out
}

#[cfg(not(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
)))]
fn masks(block: &[u8; BLOCK], open: u8, close: u8) -> [u64; 4] {
    masks_bytewise(block, open, close)
}

/// [`masks`] a byte at a time: for processors without SSE2, and to check
/// the vector reading against.
#[cfg_attr(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2",
        not(test)
    ),
    allow(dead_code)
)]
fn masks_bytewise(block: &[u8; BLOCK], open: u8, close: u8) -> [u64; 4] {
    [b'"', b'\\', open, close].map(|c| {
        block
            .iter()
            .enumerate()
            .fold(0u64, |bits, (i, &b)| bits | u64::from(b == c) << i)
    })
}

/// Where the strings are, block after block of a JSON text read from
/// outside any string.
#[derive(Default)]
struct Blocks {
    /// The first byte of the next block is escaped (a backslash that was
    /// no escape itself ended this one).
    escaped_next: bool,
    /// The next block starts inside a string: all ones, else zero.
    in_string_next: u64,
}

impl Blocks {
    /// The bits of the bytes of `block` inside a string, its opening quote
    /// included and its closing one not.
    fn in_strings(&mut self, block: &[u8; BLOCK], quotes: u64, backslashes: u64) -> u64 {
        let (escaped_next, in_string_next) = (self.escaped_next, self.in_string_next);
        let quotes = quotes & !self.escaped(backslashes);
        // Each unescaped quote flips in and out of a string: the running
        // xor of the quotes up to each byte.
        let mut inside = quotes;
        for shift in [1, 2, 4, 8, 16, 32] {
            inside ^= inside << shift;
        }
        inside ^= in_string_next;
        if backslashes & !inside != 0 {
            // A backslash outside a string escapes nothing (the JSON is
            // malformed): read the block again a byte at a time.
            (self.escaped_next, self.in_string_next) = (escaped_next, in_string_next);
            return self.in_strings_bytewise(block);
        }
        self.in_string_next = 0u64.wrapping_sub(inside >> 63);
        inside
    }

    /// [`Blocks::in_strings`] a byte at a time, for blocks with a
    /// backslash outside strings, where only a backslash inside a string
    /// escapes the byte after it (the block-wise reading assumes every
    /// backslash does).
    fn in_strings_bytewise(&mut self, block: &[u8; BLOCK]) -> u64 {
        let mut inside = 0u64;
        let mut in_string = self.in_string_next != 0;
        for (i, &b) in block.iter().enumerate() {
            if in_string {
                if self.escaped_next {
                    self.escaped_next = false;
                } else if b == b'\\' {
                    self.escaped_next = true;
                } else if b == b'"' {
                    in_string = false;
                    continue;
                }
                inside |= 1 << i;
            } else if b == b'"' {
                in_string = true;
                inside |= 1 << i;
            }
        }
        self.in_string_next = 0u64.wrapping_sub(u64::from(in_string));
        inside
    }

    /// The bits of the bytes a backslash escapes, given the backslashes,
    /// without a step per backslash: JSON carried in a string (a
    /// PowerShell export's `AuditData`) escapes a quote every few bytes.
    /// In a run of backslashes every other one escapes the next byte,
    /// counting from the run's start: subtracting the runs from the odd
    /// bits marks, run by run, the escapes and the bytes they escape
    /// (simdjson's escape scanner).
    fn escaped(&mut self, backslashes: u64) -> u64 {
        const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;
        let carried = u64::from(std::mem::take(&mut self.escaped_next));
        if backslashes == 0 {
            return carried;
        }
        // An escaped backslash at the start escapes nothing.
        let escapes_maybe = backslashes & !carried;
        let code = ((escapes_maybe << 1) | ODD_BITS).wrapping_sub(escapes_maybe) ^ ODD_BITS;
        let escaped = code ^ (backslashes | carried);
        self.escaped_next = (code & backslashes) >> 63 != 0;
        escaped
    }
}

/// Finds where a JSON value ends across chunks, keeping only its nesting
/// state: an oversized record is skipped without being held.
#[derive(Default)]
pub struct ValueEnd {
    depth: u64,
    in_string: bool,
    escaped: bool,
    started: bool,
    scalar: bool,
}

impl ValueEnd {
    /// Scans the next chunk of the value; `Some(n)` when it ends after the
    /// first `n` bytes of `chunk`.
    pub fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        for (i, &b) in chunk.iter().enumerate() {
            if !self.started {
                self.started = true;
                match b {
                    b'{' | b'[' => self.depth = 1,
                    b'"' => self.in_string = true,
                    _ => self.scalar = true,
                }
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                }
                continue;
            }
            if self.scalar {
                if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                    return Some(i);
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// Returns the offset after the closing quote of a string whose body starts at `j`.
///
/// A word at a time: the quotes of a word that no backslash escapes end
/// the string at the first of them. JSON carried in a string escapes its
/// quotes, one every few bytes, and stopping at each (as a search for the
/// next quote or backslash does) was most of splitting a PowerShell
/// export. A word with two backslashes in a row, or one after a word that
/// ended in one, is read a byte at a time.
fn skip_string(buf: &[u8], mut j: usize) -> Option<usize> {
    // The byte at `j` is escaped by a backslash that ended the last word.
    let mut escaped = false;
    while let Some(w) = word_at(buf, j) {
        let quotes = bytes_exactly(w, b'"');
        let backslashes = bytes_exactly(w, b'\\');
        if backslashes & (backslashes << 8) == 0 && !(escaped && backslashes & 0x80 != 0) {
            // Each backslash escapes the byte after it, none another
            // backslash.
            let escapes = backslashes << 8 | u64::from(escaped) << 7;
            let ends = quotes & !escapes;
            if ends != 0 {
                return Some(j + (ends.trailing_zeros() / 8) as usize + 1);
            }
            escaped = backslashes & (TOPS << 56) != 0;
            j += 8;
            continue;
        }
        if let Some(end) = string_end_in(&buf[j..j + 8], &mut escaped) {
            return Some(j + end);
        }
        j += 8;
    }
    string_end_in(buf.get(j..)?, &mut escaped).map(|end| j + end)
}

/// [`skip_string`] a byte at a time over `bytes`: the offset after the
/// closing quote if it is among them; `escaped` says whether the first
/// byte is escaped, and then whether the byte after them is.
fn string_end_in(bytes: &[u8], escaped: &mut bool) -> Option<usize> {
    for (k, &c) in bytes.iter().enumerate() {
        if *escaped {
            *escaped = false;
        } else if c == b'\\' {
            *escaped = true;
        } else if c == b'"' {
            return Some(k + 1);
        }
    }
    None
}

fn count_lines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

impl JsonSplitter {
    /// A splitter at the start of a stream.
    pub fn new() -> JsonSplitter {
        JsonSplitter {
            line: 1,
            ..JsonSplitter::default()
        }
    }

    /// A splitter of JSON lines some of which are envelopes (an Event Hubs
    /// or storage export writes one `{"records":[...]}` a line): no value
    /// runs past its line's end, so a line cut inside a record is that
    /// record truncated, and the next line is read afresh, as JSON lines
    /// are; a stream splitter would read on into the next lines looking
    /// for the cut record's end.
    pub fn lines() -> JsonSplitter {
        JsonSplitter {
            lines: true,
            ..JsonSplitter::new()
        }
    }

    /// Accounts for a record the caller skipped without handing it to
    /// [`JsonSplitter::feed`] (it was too large to hold): returns its line
    /// and index, and moves past the `lines` line ends it spanned.
    pub fn skipped(&mut self, lines: u64) -> (u64, u64) {
        self.index += 1;
        let at = (self.line, self.index);
        self.line += lines;
        at
    }

    /// Emits every complete piece in `buf` and returns how many bytes were
    /// consumed; the caller keeps `buf[consumed..]` and appends to it.
    /// With `eof`, an incomplete value is reported as truncated.
    pub fn feed(&mut self, buf: &[u8], eof: bool, emit: &mut dyn FnMut(Piece<'_>)) -> usize {
        self.feed_while(buf, eof, &mut |p| {
            emit(p);
            true
        })
    }

    /// [`JsonSplitter::feed`] that stops after the first piece for which
    /// `emit` returns `false`, returning how many bytes were consumed up to
    /// the end of that piece. Sniffing wants one record of a 256 KiB
    /// window: splitting the rest was a sixth of a hunt over an export of
    /// many small content blobs.
    pub fn feed_while(
        &mut self,
        buf: &[u8],
        eof: bool,
        emit: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> usize {
        let mut i = 0;
        // In line mode, the next line end found so far (`Some(None)`: none
        // up to the end of `buf`).
        let mut next_newline: Option<Option<usize>> = None;
        if self.discarding {
            // The rest of a line that held garbage.
            match memchr(b'\n', buf) {
                Some(p) => {
                    i = p;
                    self.discarding = false;
                }
                None => return buf.len(),
            }
        }
        loop {
            while i < buf.len() {
                match buf[i] {
                    b'\n' => {
                        self.line += 1;
                        if self.lines {
                            self.end_line();
                        }
                    }
                    b' ' | b'\t' | b'\r' => {}
                    b',' if self.at != At::Top => {}
                    _ => break,
                }
                i += 1;
            }
            if i == buf.len() {
                return i;
            }
            // What may hold the next value, and whether it ends there for
            // certain: the stream's end, or in line mode the line's. The
            // line end is searched once per line, not once per record: a
            // one-line envelope of thousands of records is one line.
            let line_end = if self.lines {
                match next_newline {
                    Some(Some(p)) if p >= i => Some(p),
                    Some(None) => None,
                    _ => {
                        let found = memchr(b'\n', &buf[i..]).map(|p| i + p);
                        next_newline = Some(found);
                        found
                    }
                }
            } else {
                None
            };
            let (view, ends) = match line_end {
                Some(p) => (&buf[..p], true),
                None => (buf, eof),
            };
            if self.at == At::EnvelopeTail {
                if view[i] == b'}' {
                    self.leave_envelope();
                    i += 1;
                    continue;
                }
                match member_end(view, i) {
                    Ok(end) => {
                        self.line += count_lines(&view[i..end]);
                        i = end;
                        continue;
                    }
                    Err(true) if !ends => return i,
                    // Cut: the envelope, as a value of the stream, is cut.
                    Err(true) => {
                        self.leave_envelope();
                        let go_on = emit(Piece::Truncated {
                            line: self.line,
                            index: self.index,
                        });
                        self.line += count_lines(&view[i..]);
                        i = view.len();
                        if !go_on {
                            return i;
                        }
                        continue;
                    }
                    // Malformed: what follows is read as values again.
                    Err(false) => self.leave_envelope(),
                }
            }
            match view[i] {
                b']' if self.at == At::Array => {
                    self.at = At::Top;
                    i += 1;
                    continue;
                }
                b']' if self.at == At::Envelope => {
                    self.at = At::EnvelopeTail;
                    i += 1;
                    continue;
                }
                b'[' if self.at == At::Top => {
                    self.at = At::Array;
                    i += 1;
                    continue;
                }
                b'{' if self.at == At::Top => match envelope_records(view, i) {
                    Some(Some((records, _))) => {
                        self.line += count_lines(&view[i..records]);
                        self.at = At::Envelope;
                        self.index_before_envelope = self.index;
                        self.index = 0;
                        i = records;
                        continue;
                    }
                    None if !ends => return i,
                    // Not an envelope (or cut before it could tell): a value.
                    _ => {}
                },
                b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {}
                other => {
                    let go_on = emit(Piece::Garbage {
                        line: self.line,
                        byte: other,
                    });
                    match memchr(b'\n', &buf[i..]) {
                        Some(p) => {
                            i += p;
                            if !go_on {
                                return i;
                            }
                            continue;
                        }
                        None => {
                            self.discarding = !eof;
                            return buf.len();
                        }
                    }
                }
            }
            let scan = scan_brackets(view, i);
            // A bare scalar running to a certain end (a line's, the
            // stream's) is complete there, not cut.
            let scan = match scan {
                Scan::Incomplete if ends && !matches!(view[i], b'{' | b'[' | b'"') => {
                    Scan::Complete(view.len())
                }
                other => other,
            };
            match scan {
                Scan::Complete(end) => {
                    self.index += 1;
                    let go_on = emit(Piece::Record {
                        bytes: &view[i..end],
                        line: self.line,
                        index: self.index,
                    });
                    self.line += count_lines(&view[i..end]);
                    i = end;
                    if !go_on {
                        return i;
                    }
                }
                Scan::Incomplete if ends => {
                    self.index += 1;
                    let go_on = emit(Piece::Truncated {
                        line: self.line,
                        index: self.index,
                    });
                    self.line += count_lines(&view[i..]);
                    i = view.len();
                    if i == buf.len() || !go_on {
                        return i;
                    }
                }
                // Rescanned with more bytes on the next call.
                Scan::Incomplete => return i,
            }
        }
    }

    /// The envelope is over (closed, cut or malformed): the stream's
    /// numbering goes on after it, as after one value.
    fn leave_envelope(&mut self) {
        self.at = At::Top;
        self.index = self.index_before_envelope + 1;
    }

    /// In line mode, a line end ends whatever was open: an envelope or
    /// array left unclosed is over (its records so far stand).
    fn end_line(&mut self) {
        match self.at {
            At::Envelope | At::EnvelopeTail => self.leave_envelope(),
            _ => self.at = At::Top,
        }
    }

    /// Whether no value is read past a line end ([`JsonSplitter::lines`]).
    pub fn is_lines(&self) -> bool {
        self.lines
    }
}

/// Finds the CSV header: skips a PowerShell `#TYPE` line, picks `,` or `;`
/// by which occurs more often outside quotes, and splits the header.
pub fn first_csv_header(text: &str) -> Option<(Vec<String>, bool, u8)> {
    let mut lines = text.lines();
    let mut line = lines.next()?;
    let mut type_line = false;
    if line.starts_with("#TYPE") {
        type_line = true;
        line = lines.next()?;
    }
    let (mut commas, mut semis, mut quoted) = (0, 0, false);
    for c in line.bytes() {
        match c {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semis += 1,
            _ => {}
        }
    }
    if commas == 0 && semis == 0 {
        return None;
    }
    let delim = if semis > commas { b';' } else { b',' };
    let fields = parse_csv_fields(line.as_bytes(), delim)?;
    if fields.iter().all(|f| f.trim().is_empty()) {
        return None;
    }
    Some((
        fields.into_iter().map(|f| f.trim().to_string()).collect(),
        type_line,
        delim,
    ))
}

fn parse_csv_fields(bytes: &[u8], delim: u8) -> Option<Vec<String>> {
    FieldSplitter::new(delim)
        .split(bytes)
        .map(|f| f.iter().map(str::to_owned).collect())
}

/// The cells of one CSV row: their unquoted text end to end, and where
/// each ends. One row is two allocations however many columns it has; a
/// reader copies out only the cells it keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cells {
    text: String,
    /// End of each field in `text`; each is a character boundary.
    ends: Vec<usize>,
}

impl Cells {
    /// How many cells.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the row has no cells.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th cell.
    ///
    /// # Panics
    /// When `i` is not below [`Cells::len`].
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// The cells in column order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.text[start..end])
    }
}

/// Splits one logical CSV record into its fields, with the csv crate's
/// state machine built once per file: building one per row was 40 % of the
/// time on Purview exports.
struct FieldSplitter {
    core: csv_core::Reader,
    delim: u8,
    out: Vec<u8>,
    ends: Vec<usize>,
}

thread_local! {
    /// Readers of dropped splitters, by delimiter, to hand out again.
    static SPARE_READERS: std::cell::RefCell<Vec<(u8, csv_core::Reader)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare readers a thread keeps at most.
const SPARE_READERS_MAX: usize = 4;

/// Copies `bytes` from `*i` to `out` from `*o` up to the first of the
/// `stops` bytes or the last whole word: 16 bytes a step with SSE2, else
/// a word at a time. In a CSV field of JSON a quote comes every few
/// bytes, too often for a search call and a copy per run; 16 bytes a step
/// copy most such runs in one. The output must never be ahead of the
/// input (`*o <= *i`, unquoting only shortens), so that a step's bytes
/// fit at `*o` as they do at `*i`; bytes copied past the stop are
/// overwritten by what follows.
fn copy_run<const N: usize>(
    bytes: &[u8],
    out: &mut [u8],
    i: &mut usize,
    o: &mut usize,
    stops: [u8; N],
) {
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2"
    ))]
    {
        use safe_arch::{bitor_m128i, cmp_eq_mask_i8_m128i, set_splat_i8_m128i};
        use safe_arch::{load_unaligned_m128i, move_mask_i8_m128i};
        let wanted = stops.map(|c| set_splat_i8_m128i(c as i8));
        while let Some(part) = bytes.get(*i..*i + 16) {
            let part: &[u8; 16] = part.try_into().expect("16 bytes");
            let v = load_unaligned_m128i(part);
            let found = wanted
                .iter()
                .map(|&c| cmp_eq_mask_i8_m128i(v, c))
                .reduce(bitor_m128i)
                .map_or(0, move_mask_i8_m128i);
            out[*o..*o + 16].copy_from_slice(part);
            // `trailing_zeros` of no stop is 32: the run is all 16 bytes.
            let run = found.trailing_zeros().min(16) as usize;
            *i += run;
            *o += run;
            if found != 0 {
                return;
            }
        }
    }
    while let Some(w) = word_at(bytes, *i) {
        let stop = stops.iter().fold(0, |m, &c| m | bytes_equal(w, c));
        let run = (stop.trailing_zeros() / 8) as usize;
        out[*o..*o + 8].copy_from_slice(&bytes[*i..*i + 8]);
        *i += run;
        *o += run;
        if stop != 0 {
            return;
        }
    }
}

/// A CSV reader for `delim` that behaves as a new one: a spare one of
/// this thread, reset, or else a new one. Building one compiles its
/// state machine (about 255,000 instructions), and every CSV file's head
/// and every batch of its rows made one: 6 % of a hunt over Log Analytics
/// exports of a few hundred kilobytes a file. (Cloning a built reader does
/// not do: csv_core's `Clone` copies only part of its state machine.)
fn csv_reader(delim: u8) -> csv_core::Reader {
    let spare = SPARE_READERS.with_borrow_mut(|spare| {
        let i = spare.iter().position(|(d, _)| *d == delim)?;
        Some(spare.swap_remove(i).1)
    });
    match spare {
        Some(mut r) => {
            r.reset();
            r
        }
        None => csv_core::ReaderBuilder::new().delimiter(delim).build(),
    }
}

impl Drop for FieldSplitter {
    fn drop(&mut self) {
        let core = std::mem::take(&mut self.core);
        // `try_with`: a splitter dropped while its thread's locals are torn
        // down just lets its reader go (a panic in drop would abort).
        let _ = SPARE_READERS.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_READERS_MAX {
                spare.push((self.delim, core));
            }
        });
    }
}

impl FieldSplitter {
    fn new(delim: u8) -> FieldSplitter {
        FieldSplitter {
            core: csv_reader(delim),
            delim,
            out: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The fields of `bytes` (one record), `None` when a field is not UTF-8.
    fn split(&mut self, bytes: &[u8]) -> Option<Cells> {
        let nends = match self.split_plain(bytes) {
            Some(n) => n,
            None => self.split_core(bytes),
        };
        if nends == 0 {
            return None;
        }
        // Checked whole, then at each field's end: every field is UTF-8
        // exactly when the text is and no field ends inside a character.
        let text = std::str::from_utf8(&self.out[..self.ends[nends - 1]]).ok()?;
        let ends = &self.ends[..nends];
        if !ends.iter().all(|&e| text.is_char_boundary(e)) {
            return None;
        }
        Some(Cells {
            text: text.to_owned(),
            ends: ends.to_vec(),
        })
    }

    /// Splits a record written the plain way, as csv_core would split it:
    /// every field either holds no quote and no line end, or is quoted
    /// whole with the quotes inside doubled. Such a record is copied in one
    /// loop into a buffer of its size; csv_core steps a state machine once
    /// a byte, which was 17 % of the CPU of a hunt over a Purview export
    /// (the `AuditData` cell is JSON, a quote every few bytes, each
    /// doubled).
    /// `None`, with nothing decided, for anything else (a quote inside an
    /// unquoted field, text after a closing quote, a line end outside
    /// quotes, no bytes): csv_core's leniency answers those.
    fn split_plain(&mut self, bytes: &[u8]) -> Option<usize> {
        let delim = self.delim;
        if bytes.is_empty() || matches!(delim, b'"' | b'\r' | b'\n') {
            return None;
        }
        // Unquoting only shortens: the output never outgrows the input.
        if self.out.len() < bytes.len() {
            self.out.resize(bytes.len(), 0);
        }
        let out = &mut self.out[..bytes.len()];
        let (mut nends, mut i, mut o) = (0, 0, 0);
        loop {
            if bytes.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    copy_run(bytes, out, &mut i, &mut o, [b'"']);
                    let &c = bytes.get(i)?;
                    i += 1;
                    if c == b'"' {
                        match bytes.get(i) {
                            Some(b'"') => i += 1,
                            Some(&d) if d == delim => break,
                            None => break,
                            Some(_) => return None,
                        }
                    }
                    out[o] = c;
                    o += 1;
                }
            } else {
                loop {
                    copy_run(bytes, out, &mut i, &mut o, [delim, b'"', b'\r', b'\n']);
                    let Some(&c) = bytes.get(i) else { break };
                    if c == delim {
                        break;
                    }
                    if matches!(c, b'"' | b'\r' | b'\n') {
                        return None;
                    }
                    out[o] = c;
                    o += 1;
                    i += 1;
                }
            }
            if nends < self.ends.len() {
                self.ends[nends] = o;
            } else {
                self.ends.push(o);
            }
            nends += 1;
            if i >= bytes.len() {
                return Some(nends);
            }
            // Past the delimiter; a record ending in one has an empty last
            // field, as csv_core reads it.
            i += 1;
        }
    }

    /// Splits `bytes` with csv_core; how many fields it found.
    fn split_core(&mut self, bytes: &[u8]) -> usize {
        use csv_core::ReadRecordResult;
        self.core.reset();
        // Unquoting only shortens: the output never outgrows the input.
        // Only grown, never cleared: the reader writes what is read back.
        if self.out.len() <= bytes.len() {
            self.out.resize(bytes.len() + 1, 0);
        }
        if self.ends.len() < 16 {
            self.ends.resize(16, 0);
        }
        let (mut input, mut nout, mut nends) = (bytes, 0, 0);
        loop {
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nends..]);
            input = &input[nin..];
            nout += o;
            nends += e;
            match res {
                // An empty input tells the reader the record ended.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        nends
    }
}

/// How many `"` bytes `bytes` holds.
fn quote_count(bytes: &[u8]) -> usize {
    // memchr counts 32 bytes a step; the plain filter-and-count compiled
    // to 4 bytes a step (each comparison widened to a 64-bit counter), and
    // was most of the time spent finding where a Purview row ends.
    memchr::memchr_iter(b'"', bytes).count()
}

/// One CSV row, or why a stretch of lines was not one.
pub enum CsvRow {
    /// A row's fields and its first line.
    Row(Cells, u64),
    /// A rejected line and the reason.
    Reject(u64, String),
}

/// Reads CSV rows from a stream, tracking line numbers, allowing quoted
/// fields with real newlines (Log Analytics exports pretty-print JSON in
/// cells), and recovering from an unbalanced quote by rejecting the line it
/// started on and resuming on the next line.
pub struct CsvReader<R> {
    inner: R,
    /// The stream's bytes read and not yet passed, `pos..len`, and room
    /// after them that holds bytes already (zeroed once, or left from an
    /// earlier file): reads land in it without zeroing it again.
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    eof: bool,
    line: u64,
    fields: FieldSplitter,
    /// The read error that ended the stream, if one did.
    failed: Option<std::io::Error>,
    /// Header fields (after the optional `#TYPE` line).
    pub header: Vec<String>,
}

const MAX_CSV_RECORD: usize = 64 << 20;

impl<R: Read> CsvReader<R> {
    /// Starts reading; the header is read by the first call to [`CsvReader::next_row`].
    pub fn new(inner: R, delim: u8) -> Self {
        Self::with_buffer(inner, Vec::new(), &[], delim)
    }

    /// Starts reading with `head`, the stream's first bytes (read before
    /// `inner`'s), into `buf`, whose bytes are only room: a buffer with
    /// room for a read (see [`CsvReader::into_buffer`]) saves growing and
    /// zeroing a fresh one for every file.
    pub fn with_buffer(inner: R, mut buf: Vec<u8>, head: &[u8], delim: u8) -> Self {
        if buf.len() < head.len() {
            buf.resize(head.len(), 0);
        }
        buf[..head.len()].copy_from_slice(head);
        CsvReader {
            inner,
            buf,
            len: head.len(),
            pos: 0,
            eof: false,
            line: 1,
            fields: FieldSplitter::new(delim),
            failed: None,
            header: Vec::new(),
        }
    }

    /// The read error that ended the stream early, once the rows before it
    /// have been read.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.failed.take()
    }

    /// The buffer, for the next reader: its bytes are room, not data.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        // A read error ends the stream; the bytes before it are still read
        // as rows. Each fill reads 1 MiB (less only at the end) whatever
        // room the buffer has, so where an unbalanced quote is cut (past
        // MAX_CSV_RECORD) depends on the file alone, not on the buffer a
        // reader was given. A buffer with room for it (a pooled one,
        // [`CsvReader::with_buffer`]) is neither grown nor zeroed: one
        // grown from nothing for each of 456 small Log Analytics files was
        // copied as it doubled, 2 % of a hunt over them, and zeroing the
        // room before each read (as `read_to_end` does through the `dyn
        // Read` of an opened file) was 4 % more.
        const NEED: usize = 1 << 20;
        let before = self.len;
        if self.buf.len() < before + NEED {
            self.buf.resize(before + NEED, 0);
        }
        while self.len < before + NEED {
            match self.inner.read(&mut self.buf[self.len..before + NEED]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = Some(e);
                    self.eof = true;
                    break;
                }
            }
        }
        Ok(self.len > before)
    }

    /// Finds the next logical record: `(end, end_of_first_line, lines)`.
    fn logical(&mut self) -> std::io::Result<Option<(usize, usize, u64)>> {
        loop {
            let data = &self.buf[self.pos..self.len];
            let mut quoted = false;
            let mut off = 0;
            let mut first_end = None;
            let mut lines = 0u64;
            // Each quote toggles the quoted state, so only the parity of the
            // quotes before a newline matters. Counting them a line at a
            // time is one vectorised pass; stopping at each quote was
            // thousands of stops per row in Purview's escaped JSON cells.
            while let Some(p) = memchr(b'\n', &data[off..]) {
                let nl = off + p;
                if quote_count(&data[off..nl]) % 2 == 1 {
                    quoted = !quoted;
                }
                lines += 1;
                let first = *first_end.get_or_insert(nl + 1);
                if !quoted {
                    return Ok(Some((self.pos + nl + 1, self.pos + first, lines)));
                }
                off = nl + 1;
            }
            if self.eof {
                if data.is_empty() {
                    return Ok(None);
                }
                let end = self.len;
                let fe = first_end.map(|f| self.pos + f).unwrap_or(end);
                return Ok(Some((end, fe, lines + 1)));
            }
            if data.len() > MAX_CSV_RECORD {
                // Treat an over-long unbalanced stretch as ending here.
                let end = self.len;
                let fe = first_end.map(|f| self.pos + f).unwrap_or(end);
                return Ok(Some((end, fe, lines + 1)));
            }
            self.fill()?;
        }
    }

    /// The next row (`None` at end of stream). Blank lines are skipped.
    pub fn next_row(&mut self) -> std::io::Result<Option<CsvRow>> {
        loop {
            let Some((end, first_end, lines)) = self.logical()? else {
                return Ok(None);
            };
            let line = self.line;
            let raw = &self.buf[self.pos..end];
            let trimmed = trim_eol(raw);
            if trimmed.iter().all(|b| b.is_ascii_whitespace()) {
                self.pos = end;
                self.line += lines;
                continue;
            }
            if self.header.is_empty() && line == 1 && trimmed.starts_with(b"#TYPE") {
                self.pos = end;
                self.line += lines;
                continue;
            }
            let fields = self.fields.split(trimmed).unwrap_or_default();
            if self.header.is_empty() {
                self.header = fields.iter().map(|f| f.trim().to_string()).collect();
                self.pos = end;
                self.line += lines;
                continue;
            }
            let want = self.header.len();
            if fields.len() == want {
                self.pos = end;
                self.line += lines;
                return Ok(Some(CsvRow::Row(fields, line)));
            }
            if lines > 1 {
                self.pos = first_end;
                self.line += 1;
                return Ok(Some(CsvRow::Reject(
                    line,
                    format!(
                        "CSV: unbalanced quote (the quoted field never closes properly: {} fields where the header has {}); line skipped, reading resumes on the next line",
                        fields.len(),
                        want
                    ),
                )));
            }
            self.pos = end;
            self.line += lines;
            return Ok(Some(CsvRow::Reject(
                line,
                format!(
                    "CSV: row has {} fields, the header has {}",
                    fields.len(),
                    want
                ),
            )));
        }
    }
}

fn trim_eol(b: &[u8]) -> &[u8] {
    let mut e = b.len();
    while e > 0 && (b[e - 1] == b'\n' || b[e - 1] == b'\r') {
        e -= 1;
    }
    &b[..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_with(JsonSplitter::new(), s)
    }

    fn split_with(mut sp: JsonSplitter, s: &str) -> Vec<String> {
        let mut out = Vec::new();
        sp.feed(s.as_bytes(), true, &mut |p| match p {
            Piece::Record { bytes, line, index } => {
                out.push(format!("{index}@{line}:{}", String::from_utf8_lossy(bytes)))
            }
            Piece::Truncated { line, index } => out.push(format!("{index}@{line}:TRUNC")),
            Piece::Garbage { line, byte } => out.push(format!("G@{line}:{}", byte as char)),
        });
        out
    }

    /// The bracket scan ends every well-formed value where serde_json
    /// does: random values whose strings hold quotes, backslashes,
    /// brackets and multi-byte characters at every place of an eight-byte
    /// word, compact and pretty, with bytes after them.
    #[test]
    fn the_bracket_scan_ends_values_where_serde_json_does() {
        fn value(rng: &mut fastrand::Rng, depth: u32) -> serde_json::Value {
            let text = |rng: &mut fastrand::Rng| -> String {
                let parts = [
                    "a",
                    "\"",
                    "\\",
                    "{",
                    "}",
                    "[",
                    "]",
                    "é",
                    "\\\"",
                    " ",
                    "\n",
                    "\u{1}",
                    "/",
                    "0123456789",
                ];
                (0..rng.usize(0..12))
                    .map(|_| *rng.choice(&parts).unwrap())
                    .collect()
            };
            match if depth == 0 {
                rng.u8(0..3)
            } else {
                rng.u8(0..5)
            } {
                0 => serde_json::Value::String(text(rng)),
                1 => serde_json::json!(rng.i64(..)),
                2 => serde_json::Value::Bool(rng.bool()),
                3 => (0..rng.usize(0..5))
                    .map(|_| value(rng, depth - 1))
                    .collect(),
                _ => serde_json::Value::Object(
                    (0..rng.usize(0..5))
                        .map(|_| (text(rng), value(rng, depth - 1)))
                        .collect(),
                ),
            }
        }
        let mut rng = fastrand::Rng::with_seed(36);
        let mut containers = 0;
        for _ in 0..3000 {
            let v = value(&mut rng, 4);
            for text in [
                serde_json::to_string(&v).unwrap(),
                serde_json::to_string_pretty(&v).unwrap(),
            ] {
                let mut buf = text.clone().into_bytes();
                buf.extend_from_slice(b",{\"next\":\"}\"}");
                let mut values =
                    serde_json::Deserializer::from_slice(&buf).into_iter::<serde::de::IgnoredAny>();
                values.next().unwrap().unwrap();
                let want = values.byte_offset();
                if matches!(buf[0], b'{' | b'[' | b'"') {
                    containers += 1;
                    assert!(
                        matches!(scan_brackets(&buf, 0), Scan::Complete(e) if e == want),
                        "{text}"
                    );
                    // And with nothing after it: its end in the last word.
                    assert!(
                        matches!(scan_brackets(&buf[..want], 0), Scan::Complete(e) if e == want),
                        "{text}"
                    );
                    // Cut anywhere inside, it is not complete.
                    let cut = rng.usize(1..want);
                    assert!(
                        matches!(scan_brackets(&buf[..cut], 0), Scan::Incomplete),
                        "{text}"
                    );
                }
            }
        }
        assert!(containers > 3000, "{containers}");
    }

    #[test]
    fn arrays_and_streams() {
        assert_eq!(
            split("[\n {\"a\":[1,{\"b\":\"}\"}]},\n {\"c\":2}\n]"),
            vec!["1@2:{\"a\":[1,{\"b\":\"}\"}]}", "2@3:{\"c\":2}"]
        );
        assert_eq!(
            split("{\"a\":1}\n{\"b\":\n2}"),
            vec!["1@1:{\"a\":1}", "2@2:{\"b\":\n2}"]
        );
        assert_eq!(
            split("[{\"a\":1},{\"b\":\"x"),
            vec!["1@1:{\"a\":1}", "2@1:TRUNC"]
        );
        assert_eq!(split("x\n{\"a\":1}"), vec!["G@1:x", "1@2:{\"a\":1}"]);
        assert_eq!(
            split("[{\"e\":\"q\\\"\"}][{\"f\":1}]"),
            vec!["1@1:{\"e\":\"q\\\"\"}", "2@1:{\"f\":1}"]
        );
    }

    /// `feed_while` stops at the piece its caller refuses, having consumed
    /// exactly up to that piece's end, and a splitter fed the rest goes on
    /// as if it had been fed everything at once.
    #[test]
    fn feeding_stops_at_the_refused_piece() {
        let text = "[{\"a\":1},\n x,\n{\"b\":2},{\"c\":3}]";
        let mut sp = JsonSplitter::new();
        let mut seen = Vec::new();
        let used = sp.feed_while(text.as_bytes(), true, &mut |p| {
            let record = matches!(p, Piece::Record { .. });
            seen.push(record);
            // Stops at the second record, past the garbage between.
            seen.iter().filter(|r| **r).count() < 2
        });
        assert_eq!(seen, vec![true, false, true]);
        assert_eq!(&text[..used], "[{\"a\":1},\n x,\n{\"b\":2}");
        let rest = split_with(sp, &text[used..]);
        assert_eq!(rest, vec!["3@3:{\"c\":3}"]);
        // Refusing nothing is `feed`.
        let mut all = Vec::new();
        let used = JsonSplitter::new().feed_while(text.as_bytes(), true, &mut |p| {
            all.push(matches!(p, Piece::Record { .. }));
            true
        });
        assert_eq!((used, all.len()), (text.len(), 4));
    }

    /// Where the value at `start` (a bracket) ends, a byte at a time:
    /// strings, their escapes and the start's bracket pair, nothing else.
    fn bracket_end_bytewise(buf: &[u8], start: usize) -> Option<usize> {
        let (open, close) = if buf[start] == b'{' {
            (b'{', b'}')
        } else {
            (b'[', b']')
        };
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        for (i, &b) in buf.iter().enumerate().skip(start) {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if b == b'"' {
                in_string = true;
            } else if b == open {
                depth += 1;
            } else if b == close {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
        }
        None
    }

    #[test]
    fn the_block_scan_ends_values_where_a_byte_wise_scan_does() {
        let mut rng = fastrand::Rng::with_seed(64);
        let parts: [&[u8]; 14] = [
            b"a",
            b"abcdefgh",
            b" ",
            b"\"",
            b"\"",
            b"\\",
            b"\\\"",
            b"\\\\",
            b"{",
            b"}",
            b"[",
            b"]",
            b"\xc3\xa9",
            b"\n",
        ];
        let (mut complete, mut past_a_block, mut backslash_at_a_block_end) = (0, 0, 0);
        for _ in 0..30_000 {
            // Text before the value, so that blocks start anywhere.
            let start = rng.usize(0..70);
            let mut buf: Vec<u8> = (0..start).map(|_| b'x').collect();
            buf.push(*rng.choice(b"{[").unwrap());
            for _ in 0..rng.usize(0..120) {
                buf.extend_from_slice(rng.choice(parts).unwrap());
            }
            // A run of backslashes ending at a block's last byte or the
            // one before, whose length decides whether the byte after it
            // (in the next block, or the block's last) is escaped.
            if rng.bool() {
                let edge = start + 64 * rng.usize(1..4);
                let run = rng.usize(1..6);
                if edge + 2 < buf.len() {
                    let end = edge - rng.usize(0..2);
                    buf[end - run..end].fill(b'\\');
                    buf[end] = *rng.choice(b"\"}]a").unwrap();
                    backslash_at_a_block_end += 1;
                }
            }
            let want = bracket_end_bytewise(&buf, start);
            let got = match scan_brackets(&buf, start) {
                Scan::Complete(end) => Some(end),
                Scan::Incomplete => None,
            };
            assert_eq!(got, want, "from {start}: {}", String::from_utf8_lossy(&buf));
            if let Some(end) = want {
                complete += 1;
                past_a_block += usize::from(end - start > 64);
            }
        }
        // The draws reach what they are for.
        assert!(complete > 5_000, "{complete}");
        assert!(past_a_block > 1_000, "{past_a_block}");
        assert!(
            backslash_at_a_block_end > 5_000,
            "{backslash_at_a_block_end}"
        );
    }

    /// Every backslash that is not itself escaped escapes the byte after
    /// it, across blocks: against a walk of the bits one by one, for
    /// backslashes sparse and dense.
    #[test]
    fn escapes_are_read_as_a_walk_reads_them() {
        let mut rng = fastrand::Rng::with_seed(63);
        for _ in 0..20_000 {
            let mut blocks = Blocks::default();
            let mut escaping = false;
            for _ in 0..3 {
                let backslashes = match rng.u8(..3) {
                    0 => rng.u64(..) & rng.u64(..) & rng.u64(..),
                    1 => rng.u64(..),
                    _ => rng.u64(..) | rng.u64(..) | rng.u64(..),
                };
                let mut want = 0u64;
                for bit in 0..64 {
                    if escaping {
                        want |= 1 << bit;
                        escaping = false;
                    } else if backslashes >> bit & 1 == 1 {
                        escaping = true;
                    }
                }
                assert_eq!(blocks.escaped(backslashes), want, "{backslashes:064b}");
                assert_eq!(blocks.escaped_next, escaping);
            }
        }
    }

    #[test]
    fn a_blocks_bits_are_its_bytes() {
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..2_000 {
            let block: [u8; BLOCK] =
                std::array::from_fn(|_| *rng.choice(b"\"\\{}[]a \xff\x80").unwrap());
            let (open, close) = *rng.choice(&[(b'{', b'}'), (b'[', b']')]).unwrap();
            assert_eq!(
                masks(&block, open, close),
                masks_bytewise(&block, open, close),
                "{block:?}"
            );
        }
    }

    /// Values the parser refuses are still delimited by their brackets,
    /// so each is one record (rejected later, with the parser's reason)
    /// and the records after it split as usual.
    #[test]
    fn malformed_values_are_delimited_by_brackets() {
        assert_eq!(
            split(r#"[{"a":nan},{"b":1,},{"c":"\q"},{"d":2}]"#),
            vec![
                r#"1@1:{"a":nan}"#,
                r#"2@1:{"b":1,}"#,
                r#"3@1:{"c":"\q"}"#,
                r#"4@1:{"d":2}"#
            ]
        );
        assert_eq!(
            split("{\"a\":[1}\n{\"b\":2}"),
            vec!["1@1:{\"a\":[1}", "2@2:{\"b\":2}"]
        );
    }

    /// Azure Monitor's `records` and Graph's `value` envelopes are split
    /// into their records, numbered from 1 in each envelope, on the lines
    /// they start on; the envelope's other members are skipped, and it
    /// counts as one value of the stream around it.
    #[test]
    fn envelopes_are_split_into_their_records() {
        assert_eq!(
            split(r#"{"records":[{"a":1},{"b":[2]}]}"#),
            vec![r#"1@1:{"a":1}"#, r#"2@1:{"b":[2]}"#]
        );
        let page = "{\n \"@odata.context\": \"https://graph/$metadata\",\n \"@odata.count\": 2,\n \"value\": [\n  {\"a\":1},\n  {\"b\":\"]}\"}\n ],\n \"@odata.nextLink\": \"https://graph/next\"\n}\n{\"c\":3}\n{\"value\":[{\"d\":4}]}";
        assert_eq!(
            split(page),
            vec![
                r#"1@5:{"a":1}"#,
                r#"2@6:{"b":"]}"}"#,
                r#"2@10:{"c":3}"#,
                r#"1@11:{"d":4}"#
            ]
        );
        // Empty, and elements that are not objects, are the reader's to judge.
        assert_eq!(
            split(r#"{"value":[]}{"value":[1,"x"]}"#),
            vec!["1@1:1", r#"2@1:"x""#]
        );
    }

    /// Only an object whose records come first (after `@odata` members)
    /// is split; any other object, and one whose `value` is not an array,
    /// is one value, read whole.
    #[test]
    fn other_objects_are_values() {
        // Metadata before the records: Graph's, the older Azure AD
        // Graph's, Resource Manager's.
        for v in [
            r#"{"@odata.count":1,"value":[{"a":1}]}"#,
            r#"{"odata.metadata":"m","value":[{"a":1}]}"#,
            r#"{"nextLink":"n","value":[{"a":1}]}"#,
        ] {
            assert_eq!(split(v), vec![r#"1@1:{"a":1}"#], "{v}");
        }
        for v in [
            r#"{"id":1,"value":[{"a":1}]}"#,
            r#"{"value":5,"records":[{"a":1}]}"#,
            r#"{"@odata.context":"x","id":2}"#,
            r#"{}"#,
        ] {
            assert_eq!(split(v), vec![format!("1@1:{v}")], "{v}");
        }
    }

    /// A stream cut inside an envelope reports its last record truncated;
    /// one cut in the envelope's opening is one truncated value.
    #[test]
    fn cut_envelopes_are_truncated_records() {
        assert_eq!(
            split(r#"{"records":[{"a":1},{"b":"#),
            vec![r#"1@1:{"a":1}"#, "2@1:TRUNC"]
        );
        assert_eq!(split(r#"{"@odata.context":"x","val"#), vec!["1@1:TRUNC"]);
    }

    /// Envelopes a line each: a line cut inside a record truncates that
    /// record only, and the next line is read afresh (a stream splitter
    /// would read on through every later line looking for its end).
    #[test]
    fn envelope_lines_end_at_their_line() {
        let text = "{\"records\":[{\"a\":1}]}\n{\"records\":[{\"a\":2},{\"b\":\n{\"records\":[{\"c\":\"x}]}\n{\"records\":[{\"d\":4}]}\n[{\"e\":5}\n{\"f\":6}";
        assert_eq!(
            split_with(JsonSplitter::lines(), text),
            vec![
                r#"1@1:{"a":1}"#,
                r#"1@2:{"a":2}"#,
                "2@2:TRUNC",
                "1@3:TRUNC",
                r#"1@4:{"d":4}"#,
                r#"5@5:{"e":5}"#,
                r#"6@6:{"f":6}"#
            ]
        );
        assert_eq!(split(text).len(), 3, "a stream reads on past the cut");
        // A bare scalar ends with its line, and is a value, not cut.
        assert_eq!(
            split_with(JsonSplitter::lines(), "17\nnull\r\n\"s\""),
            vec!["1@1:17", "2@2:null", "3@3:\"s\""]
        );
    }

    /// An envelope cut after its records is one truncated value; garbage
    /// with no line end in the buffer is reported once, however the
    /// stream is fed.
    #[test]
    fn cut_envelope_tails_and_garbage_are_reported_once() {
        assert_eq!(
            split(r#"{"records":[{"a":1}],"next":"ab"#),
            vec![r#"1@1:{"a":1}"#, "1@1:TRUNC"]
        );
        let mut sp = JsonSplitter::new();
        let mut got = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for (chunk, eof) in [("xy", false), ("z", false), ("\n{\"a\":1}", true)] {
            buf.extend_from_slice(chunk.as_bytes());
            let used = sp.feed(&buf, eof, &mut |p| {
                got.push(match p {
                    Piece::Record { index, line, .. } => format!("{index}@{line}"),
                    Piece::Truncated { .. } => "TRUNC".into(),
                    Piece::Garbage { line, byte } => format!("G@{line}:{}", byte as char),
                })
            });
            buf.drain(..used);
        }
        assert_eq!(got, vec!["G@1:x", "1@2"]);
    }

    /// Every piece, as text, of `text` fed to `sp` in chunks of the given
    /// sizes (cycled), keeping what it does not consume, as a reader does.
    fn split_in_chunks(mut sp: JsonSplitter, text: &[u8], sizes: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |p: Piece<'_>| {
            out.push(match p {
                Piece::Record { bytes, line, index } => {
                    format!("{index}@{line}:{}", String::from_utf8_lossy(bytes))
                }
                Piece::Truncated { line, index } => format!("{index}@{line}:TRUNC"),
                Piece::Garbage { line, byte } => format!("G@{line}:{}", byte as char),
            })
        };
        let mut buf: Vec<u8> = Vec::new();
        let (mut at, mut k) = (0, 0);
        while at < text.len() {
            let n = sizes[k % sizes.len()].min(text.len() - at);
            buf.extend_from_slice(&text[at..at + n]);
            at += n;
            k += 1;
            let used = sp.feed(&buf, at == text.len(), &mut push);
            buf.drain(..used);
        }
        if !buf.is_empty() {
            sp.feed(&buf, true, &mut push);
        }
        out
    }

    /// Streams made of envelopes (one a line, pretty, cut), arrays,
    /// values, garbage and blank lines split the same however they are
    /// fed: the splitter keeps no state but at record boundaries, in both
    /// modes. The streams come from a fixed pseudo-random sequence.
    #[test]
    fn any_stream_splits_alike_in_any_chunks() {
        let parts = [
            r#"{"records":[{"a":1},{"b":"x]}"}]}"#,
            "{\n \"@odata.context\": \"c\",\n \"value\": [\n  {\"c\":[1,2]},\n  {\"d\":\"\\\"}\"}\n ],\n \"@odata.nextLink\": \"n\"\n}",
            r#"[{"e":1},{"f":{"g":"["}}]"#,
            r#"{"h":1,"value":[1]}"#,
            r#"{"records":[{"i":1},{"j":"#,
            r#"{"records":[{"k":1}],"tail":"ab"#,
            "xyz",
            r#""s""#,
            "17",
            r#"{"l":"\\"}"#,
            "",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let n = 1 + (next() % 6) as usize;
            let text: String = (0..n)
                .map(|_| parts[(next() % parts.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(if next() % 2 == 0 { "\n" } else { " \n\n" });
            for lines in [false, true] {
                let make = || {
                    if lines {
                        JsonSplitter::lines()
                    } else {
                        JsonSplitter::new()
                    }
                };
                let whole = split_in_chunks(make(), text.as_bytes(), &[text.len().max(1)]);
                for sizes in [&[1usize][..], &[2, 3], &[7, 1, 13], &[64]] {
                    assert_eq!(
                        split_in_chunks(make(), text.as_bytes(), sizes),
                        whole,
                        "lines {lines}, chunks {sizes:?}, text {text:?}"
                    );
                }
            }
        }
    }

    /// Fed a byte at a time, an envelope splits as when fed whole, and
    /// the splitter never holds more than the record it is in: a one-line
    /// envelope of any size is read record by record.
    #[test]
    fn envelopes_split_alike_when_fed_in_pieces_and_hold_one_record() {
        let record = r#"{"time":"2024-03-01T00:00:00Z","category":"SignInLogs","properties":{"x":"[{\"y\":1}]"}}"#;
        let text = format!(
            "{{\"@odata.context\":\"c\",\"records\":[{}],\"tail\":{{\"z\":[1,2]}}}}\n{{\"k\":1}}",
            vec![record; 50].join(",")
        );
        let whole = split(&text);
        assert_eq!(whole.len(), 51);
        let mut sp = JsonSplitter::new();
        let mut got = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut most_held = 0;
        for &b in text.as_bytes() {
            buf.push(b);
            let used = sp.feed(&buf, false, &mut |p| {
                if let Piece::Record { bytes, line, index } = p {
                    got.push(format!("{index}@{line}:{}", String::from_utf8_lossy(bytes)))
                }
            });
            buf.drain(..used);
            most_held = most_held.max(buf.len());
        }
        sp.feed(&buf, true, &mut |p| {
            if let Piece::Record { bytes, line, index } = p {
                got.push(format!("{index}@{line}:{}", String::from_utf8_lossy(bytes)))
            }
        });
        assert_eq!(got, whole);
        assert!(most_held <= record.len() + 1, "held {most_held} bytes");
    }

    #[test]
    fn incremental_feed_matches_whole() {
        let s = "[{\"a\":\"xx\"},{\"b\":[1,2,3]},{\"c\":{\"d\":\"}\"}}]";
        let mut sp = JsonSplitter::new();
        let mut got = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for chunk in s.as_bytes().chunks(5) {
            buf.extend_from_slice(chunk);
            let used = sp.feed(&buf, false, &mut |p| {
                if let Piece::Record { bytes, .. } = p {
                    got.push(String::from_utf8_lossy(bytes).to_string())
                }
            });
            buf.drain(..used);
        }
        sp.feed(&buf, true, &mut |_| {});
        assert_eq!(
            got,
            vec!["{\"a\":\"xx\"}", "{\"b\":[1,2,3]}", "{\"c\":{\"d\":\"}\"}}"]
        );
    }

    /// Cells are checked as UTF-8 one by one in effect: a character split
    /// across two cells (each invalid alone, valid together) fails the
    /// row, as does an invalid byte; empty and quoted cells read back.
    #[test]
    fn cells_are_utf8_each_and_read_back_in_order() {
        let mut sp = FieldSplitter::new(b',');
        let f = sp.split("a,,\"b,\"\"c\"\"\",é😀,".as_bytes()).unwrap();
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            ["a", "", "b,\"c\"", "é😀", ""]
        );
        assert_eq!(f.len(), 5);
        assert_eq!((f.get(0), f.get(2), f.get(4)), ("a", "b,\"c\"", ""));
        assert!(sp.split(b"x,\xC3,\xA9").is_none());
        assert!(sp.split(b"x,\xC3\xA9").is_some());
        assert!(sp.split(b"x,\xFF").is_none());
        // The splitter's buffer is reused: a short row after a long one.
        let long = "y".repeat(5000);
        assert_eq!(
            sp.split(long.as_bytes()).unwrap().iter().next(),
            Some(long.as_str())
        );
        assert_eq!(
            sp.split(b"p,q").unwrap().iter().collect::<Vec<_>>(),
            ["p", "q"]
        );
    }

    /// The plain-record path splits every record exactly as csv_core
    /// does, field texts and count: on random records over the bytes that
    /// matter (quotes, delimiters, line ends, multi-byte characters), on
    /// both delimiters, through one splitter (buffers reused between
    /// records of any length). It also takes the records it is for.
    #[test]
    fn plain_records_split_as_csv_core_splits_them() {
        let alphabet: &[&[u8]] = &[
            b"a",
            b"b",
            b",",
            b"\t",
            b"\"",
            b"\"\"",
            b"\r",
            b"\n",
            b" ",
            "é".as_bytes(),
            b"{\"\"k\"\":1}",
            // Longer than a 16-byte step, so that quotes, delimiters and
            // line ends fall at every place of one.
            b"abcdefghijklmnopq",
            "ééééé".as_bytes(),
        ];
        let mut rng = fastrand::Rng::with_seed(30);
        let (mut plain, mut total) = (0, 0);
        for delim in [b',', b'\t'] {
            let mut sp = FieldSplitter::new(delim);
            let mut core = FieldSplitter::new(delim);
            for case in 0..20_000 {
                let mut rec = Vec::new();
                if case % 3 == 0 {
                    // Well-formed: each field plain or quoted whole.
                    for f in 0..rng.usize(1..6) {
                        if f > 0 {
                            rec.push(delim);
                        }
                        // Any bytes inside quotes (doubled quotes, line
                        // ends, delimiters, multi-byte characters).
                        let text: Vec<u8> = (0..rng.usize(0..8))
                            .flat_map(|_| *rng.choice(alphabet).unwrap())
                            .copied()
                            .collect();
                        if rng.bool() {
                            rec.push(b'"');
                            for &c in &text {
                                if c == b'"' {
                                    rec.push(b'"');
                                }
                                rec.push(c);
                            }
                            rec.push(b'"');
                        } else {
                            rec.extend(
                                text.iter()
                                    .filter(|&&c| !matches!(c, b'"' | b'\r' | b'\n') && c != delim),
                            );
                        }
                    }
                } else {
                    for _ in 0..rng.usize(0..14) {
                        rec.extend_from_slice(rng.choice(alphabet).unwrap());
                    }
                }
                total += 1;
                if sp.split_plain(&rec).is_some() {
                    plain += 1;
                }
                let want = core.split_core(&rec);
                let want = (
                    core.out[..core.ends[..want].last().copied().unwrap_or(0)].to_vec(),
                    core.ends[..want].to_vec(),
                );
                let got = sp.split(&rec).map(|c| (c.text.into_bytes(), c.ends));
                let want_cells = (!want.1.is_empty())
                    .then(|| String::from_utf8(want.0.clone()).ok())
                    .flatten()
                    .filter(|t| want.1.iter().all(|&e| t.is_char_boundary(e)))
                    .map(|t| (t.into_bytes(), want.1.clone()));
                assert_eq!(got, want_cells, "{:?}", String::from_utf8_lossy(&rec));
            }
        }
        assert!(plain * 3 > total, "the plain path took {plain} of {total}");
    }

    /// A splitter made after another was dropped mid-record reuses its
    /// reader, reset, and never one of another delimiter: it splits as a
    /// splitter with a reader built anew.
    #[test]
    fn a_reused_reader_splits_as_a_new_one() {
        let records: [&[u8]; 5] = [
            b"a,\"b,\"\"c\"\"\",d",
            b"\"unterminated,x",
            b"\"\",,\"\"\"\"\"",
            b"\"line\r\nbreak\",\"\xc3\xa9\"",
            b"plain,row,,end",
        ];
        let split_all = |sp: &mut FieldSplitter| -> Vec<(Vec<u8>, Vec<usize>)> {
            records
                .iter()
                .map(|r| {
                    let n = sp.split_core(r);
                    let ends = sp.ends[..n].to_vec();
                    (sp.out[..ends.last().copied().unwrap_or(0)].to_vec(), ends)
                })
                .collect()
        };
        let mut fresh = FieldSplitter {
            core: csv_core::ReaderBuilder::new().delimiter(b',').build(),
            delim: b',',
            out: Vec::new(),
            ends: Vec::new(),
        };
        let want = split_all(&mut fresh);
        for _ in 0..3 {
            // A spare reader of another delimiter is not taken for this one.
            drop(FieldSplitter::new(b'\t'));
            let mut used = FieldSplitter::new(b',');
            // Left inside a quoted field when dropped.
            let mut rest = [0u8; 64];
            let _ = used.core.read_field(b"\"open, never closed", &mut rest);
            drop(used);
            let mut again = FieldSplitter::new(b',');
            assert_eq!(split_all(&mut again), want);
        }
        assert!(SPARE_READERS.with_borrow(|s| s.iter().any(|(d, _)| *d == b',')));
    }

    /// Each row of `data` as `line:cell|cell...`, or `line:REJECT ` and
    /// the reason's first 20 bytes.
    fn csv_rows(data: &str) -> Vec<String> {
        rows_of(CsvReader::new(data.as_bytes(), b','))
    }

    fn rows_of<R: Read>(mut r: CsvReader<R>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            out.push(match row {
                CsvRow::Row(c, l) => format!("{l}:{}", c.iter().collect::<Vec<_>>().join("|")),
                CsvRow::Reject(l, why) => format!("{l}:REJECT {}", &why[..20]),
            });
        }
        out
    }

    /// Rows read the same whatever each read returns (a few bytes, an
    /// interruption), wherever the head given before the reads ends, and
    /// whatever bytes a reused buffer held: fills past 1 MiB, rows cut
    /// across them.
    #[test]
    fn rows_read_alike_in_any_reads_and_any_buffer() {
        struct Trickle<'a> {
            bytes: &'a [u8],
            rng: fastrand::Rng,
        }
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.rng.u8(..10) == 0 {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                let most = buf.len().min(self.bytes.len());
                let n = if most == 0 {
                    0
                } else {
                    self.rng.usize(1..=most.min(70_000))
                };
                buf[..n].copy_from_slice(&self.bytes[..n]);
                self.bytes = &self.bytes[n..];
                Ok(n)
            }
        }
        let mut rng = fastrand::Rng::with_seed(1024);
        let mut data = String::from("a,b,c\n");
        while data.len() < 2_600_000 {
            match rng.u8(..4) {
                0 => data.push_str("1,\"{\"\"k\"\": \"\"v\"\",\n \"\"n\"\": 2}\",3\n"),
                1 => data.push_str(&format!(
                    "{},\"{}\",x\n",
                    rng.u32(..),
                    "y".repeat(rng.usize(0..3000))
                )),
                2 => data.push('\n'),
                _ => data.push_str("4,\"open\n\"\"q\"\"\n\",6\r\n"),
            }
        }
        let want = csv_rows(&data);
        assert!(want.len() > 1000, "{}", want.len());
        for round in 0..6 {
            let head = rng.usize(0..5000);
            let dirty: Vec<u8> = (0..rng.usize(0..3_000_000)).map(|_| rng.u8(..)).collect();
            let trickle = Trickle {
                bytes: &data.as_bytes()[head..],
                rng: fastrand::Rng::with_seed(round),
            };
            let r = CsvReader::with_buffer(trickle, dirty, &data.as_bytes()[..head], b',');
            assert_eq!(rows_of(r), want, "round {round}, head {head}");
        }
    }

    /// Rows end at the first newline outside quotes, with doubled quotes
    /// inside cells and quoted newlines across any number of lines, and
    /// line numbers count every line.
    #[test]
    fn rows_end_at_newlines_outside_quotes() {
        let data = "a,b,c\n1,\"he said \"\"hi\"\"\",3\n4,\"x\n\"\"q\"\"\ny\",6\n7,\"\"\"\"\"\",9\n";
        assert_eq!(
            csv_rows(data),
            vec!["2:1|he said \"hi\"|3", "3:4|x\n\"q\"\ny|6", "6:7|\"\"|9"]
        );
    }

    #[test]
    fn csv_recovers_from_broken_quote() {
        let out = csv_rows("a,b,c\n1,2,3\n4,\"5,6\n7,8,9\n\"x\ny\",z,w\n");
        assert_eq!(
            out,
            vec![
                "2:1|2|3",
                "3:REJECT CSV: unbalanced quot",
                "4:7|8|9",
                "5:x\ny|z|w"
            ]
        );
    }
}
