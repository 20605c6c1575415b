//! The binary record format of what a hunt writes to temporary files and
//! reads back itself (spilled findings, detections' state): length-prefixed
//! fields, no escaping, nothing anyone else reads.
//!
//! A record is a little-endian `u32` length and that many bytes. Inside,
//! a text is a `u32` length and UTF-8 bytes, an optional text uses the
//! length `u32::MAX` for none, numbers are little-endian, and a time is its
//! exact nanoseconds since the Unix epoch (`i128`).

use std::io::{self, Read, Write};

use time::OffsetDateTime;

/// The length an optional text is written with when there is none.
const NONE: u32 = u32::MAX;

/// A length or count as written: refused past what a `u32` holds.
pub fn count(n: usize) -> io::Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n != NONE)
        .ok_or_else(|| io::Error::other(format!("{n} is too large to write to a temporary file")))
}

/// Appends a `u32`.
pub fn put_u32(buf: &mut Vec<u8>, n: u32) {
    buf.extend_from_slice(&n.to_le_bytes());
}

/// Appends a `u64`.
pub fn put_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(&n.to_le_bytes());
}

/// Appends a text.
pub fn put_text(buf: &mut Vec<u8>, t: &str) -> io::Result<()> {
    put_u32(buf, count(t.len())?);
    buf.extend_from_slice(t.as_bytes());
    Ok(())
}

/// Appends an optional text.
pub fn put_opt_text(buf: &mut Vec<u8>, t: Option<&str>) -> io::Result<()> {
    match t {
        Some(t) => put_text(buf, t),
        None => {
            put_u32(buf, NONE);
            Ok(())
        }
    }
}

/// Appends an optional time: a flag byte, then its nanoseconds if any.
pub fn put_opt_time(buf: &mut Vec<u8>, t: Option<OffsetDateTime>) {
    match t {
        Some(t) => {
            buf.push(1);
            buf.extend_from_slice(&t.unix_timestamp_nanos().to_le_bytes());
        }
        None => buf.push(0),
    }
}

/// Writes `body` as one record.
pub fn write_record(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    w.write_all(&count(body.len())?.to_le_bytes())?;
    w.write_all(body)
}

/// Reads the next record's bytes into `buf`: `false` at the end of the
/// input. A record cut short is an error saying where.
pub fn read_record(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut len = [0u8; 4];
    loop {
        match r.read(&mut len[..1]) {
            Ok(0) => return Ok(false),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    r.read_exact(&mut len[1..])
        .map_err(|e| format!("record length: {e}"))?;
    let len = u32::from_le_bytes(len);
    buf.clear();
    // Read as far as it goes rather than sized up front: a damaged length
    // must not allocate gigabytes.
    let got = r
        .take(u64::from(len))
        .read_to_end(buf)
        .map_err(|e| format!("record of {len} bytes: {e}"))?;
    if got != len as usize {
        return Err(format!("record of {len} bytes cut after {got}"));
    }
    Ok(true)
}

/// Reads a record's bytes front to back; every read that runs past the
/// end, or finds what the writer never writes, is an error saying what.
pub struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b }
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.b.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!("{n} bytes wanted, {} left", self.b.len()));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    /// The next `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A text.
    pub fn text(&mut self) -> Result<&'a str, String> {
        self.opt_text()?.ok_or_else(|| "text missing".to_string())
    }

    /// An optional text.
    pub fn opt_text(&mut self) -> Result<Option<&'a str>, String> {
        match self.opt_bytes()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|e| format!("text: {e}")),
        }
    }

    /// An optional text's bytes, not checked as UTF-8: for passing over it.
    pub fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        let n = self.u32()?;
        if n == NONE {
            return Ok(None);
        }
        self.take(n as usize).map(Some)
    }

    /// A time's nanoseconds.
    pub fn time(&mut self) -> Result<OffsetDateTime, String> {
        let nanos = i128::from_le_bytes(self.array()?);
        OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| format!("time {nanos}: {e}"))
    }

    /// An optional time ([`put_opt_time`]).
    pub fn opt_time(&mut self) -> Result<Option<OffsetDateTime>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.time().map(Some),
            f => Err(format!("time flag {f}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_written() {
        let t = time::macros::datetime!(2024-03-01 00:14:12.661483 UTC);
        let mut body = Vec::new();
        put_text(&mut body, "é\0").unwrap();
        put_opt_text(&mut body, None).unwrap();
        put_opt_text(&mut body, Some("")).unwrap();
        put_u64(&mut body, u64::MAX);
        put_opt_time(&mut body, Some(t));
        put_opt_time(&mut body, None);
        let mut file = Vec::new();
        write_record(&mut file, &body).unwrap();
        write_record(&mut file, b"").unwrap();
        let mut r = &file[..];
        let mut buf = Vec::new();
        assert!(read_record(&mut r, &mut buf).unwrap());
        let mut c = Cursor::new(&buf);
        assert_eq!(c.text().unwrap(), "é\0");
        assert_eq!(c.opt_text().unwrap(), None);
        assert_eq!(c.opt_text().unwrap(), Some(""));
        assert_eq!(c.u64().unwrap(), u64::MAX);
        assert_eq!(c.opt_time().unwrap(), Some(t));
        assert_eq!(c.opt_time().unwrap(), None);
        assert_eq!(c.left(), 0);
        assert!(read_record(&mut r, &mut buf).unwrap());
        assert!(buf.is_empty());
        assert!(!read_record(&mut r, &mut buf).unwrap());
    }

    #[test]
    fn damaged_records_are_errors_not_guesses() {
        let mut file = Vec::new();
        write_record(&mut file, b"abcdef").unwrap();
        let cut = &file[..file.len() - 2];
        let err = read_record(&mut &cut[..], &mut Vec::new()).unwrap_err();
        assert!(err.contains("cut after 4"), "{err}");
        let err = read_record(&mut &file[..2], &mut Vec::new()).unwrap_err();
        assert!(err.contains("record length"), "{err}");
        // A missing text, a short field, a bad flag, invalid UTF-8.
        let mut c = Cursor::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.text().unwrap_err(), "text missing");
        assert!(Cursor::new(&[1, 0]).u32().is_err());
        assert!(Cursor::new(&[7]).opt_time().unwrap_err().contains("flag 7"));
        let mut c = Cursor::new(&[1, 0, 0, 0, 0xff]);
        assert!(c.text().unwrap_err().starts_with("text:"));
    }
}
