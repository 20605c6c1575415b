//! The record format of spilled findings: length-prefixed binary fields,
//! written and read back only by this process.
//!
//! Findings used to spill as JSON lines, and a hunt whose rule fired on
//! most of 500 MB of sign-ins (71,169 findings) spent about a tenth of its
//! CPU writing them and parsing them back twice (once for the output, once
//! for the incidents): escaping and scanning text that no one else reads.
//! Here every text is its length and its bytes, a time is its exact
//! nanoseconds, and the parts many findings share (a Sigma rule's evidence,
//! the source file's name) are written as their place in a table the
//! [`crate::findings::Findings`] keep.
//!
//! A record is a little-endian `u32` length and that many bytes:
//!
//! ```text
//! flags u8          bit 0: time follows; bit 1: shared evidence place follows
//! time i128         nanoseconds since the Unix epoch (if flagged)
//! shared u32        place of the shared evidence part (if flagged)
//! severity u8       0 low, 1 medium, 2 high
//! rule_id, rule_title                                  text
//! user, client_ip, app_id, session_id, token_id        optional text
//! file u32          place of the source file's name
//! source_locator                                       text
//! entries u32, then each: key text, value              the own evidence
//! ```
//!
//! Text is a `u32` length and UTF-8 bytes; optional text uses the length
//! `u32::MAX` for none. A value is a tag byte and its payload: null, false,
//! true, an unsigned, signed or floating number (8 bytes), text, an array
//! (`u32` count and values) or an object (`u32` count and key, value pairs).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::sync::Arc;

use serde_json::{Map, Number, Value};
use tokenward_event::codec::{
    count, put_opt_text, put_text, put_u32, read_record, write_record, Cursor,
};
use tokenward_event::{Evidence, Finding, Severity};

/// Places of the parts spilled findings share, by the parts' own order.
#[derive(Clone, Copy)]
pub(crate) struct Tables<'a> {
    /// Shared evidence parts.
    pub evidence: &'a [Arc<Map<String, Value>>],
    /// Source file names.
    pub files: &'a [Arc<str>],
}

/// Where a finding's shared parts are in the [`Tables`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Places {
    /// Of its shared evidence, if it had one (taken out of the finding).
    pub evidence: Option<usize>,
    /// Of its source file's name.
    pub file: usize,
}

const HAS_TIME: u8 = 1;
const HAS_SHARED: u8 = 2;

/// Deeper values in a record are refused when reading: the writer never
/// nests evidence this deep, and a damaged file must not exhaust the stack.
const MAX_DEPTH: u32 = 128;

/// Writes one finding (its shared evidence already taken out) as a record;
/// `buf` is scratch space the caller may reuse.
pub(crate) fn write(
    w: &mut impl Write,
    f: &Finding,
    at: Places,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    let mut flags = 0;
    if f.time.is_some() {
        flags |= HAS_TIME;
    }
    if at.evidence.is_some() {
        flags |= HAS_SHARED;
    }
    buf.push(flags);
    if let Some(t) = f.time {
        buf.extend_from_slice(&t.unix_timestamp_nanos().to_le_bytes());
    }
    if let Some(p) = at.evidence {
        put_u32(buf, count(p)?);
    }
    buf.push(match f.severity {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
    });
    put_text(buf, &f.rule_id)?;
    put_text(buf, &f.rule_title)?;
    for t in [&f.user, &f.client_ip, &f.app_id, &f.session_id, &f.token_id] {
        put_opt_text(buf, t.as_deref())?;
    }
    put_u32(buf, count(at.file)?);
    put_text(buf, &f.source_locator)?;
    put_u32(buf, count(f.evidence.iter().count())?);
    for (k, v) in f.evidence.iter() {
        put_text(buf, k)?;
        put_value(buf, v)?;
    }
    write_record(w, buf)
}

/// Reads the next record into `buf` and decodes it: `None` at the end of
/// the file. A damaged record is an error saying what is wrong with it.
pub(crate) fn read(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
    tables: &Tables<'_>,
) -> Result<Option<Finding>, String> {
    if !read_record(r, buf)? {
        return Ok(None);
    }
    let mut c = Cursor::new(buf);
    let f = decode(&mut c, tables)?;
    if c.left() != 0 {
        return Err(format!("{} bytes after the finding", c.left()));
    }
    Ok(Some(f))
}

fn decode(c: &mut Cursor<'_>, tables: &Tables<'_>) -> Result<Finding, String> {
    let flags = c.u8()?;
    if flags & !(HAS_TIME | HAS_SHARED) != 0 {
        return Err(format!("flags {flags:#x}"));
    }
    let time = if flags & HAS_TIME != 0 {
        Some(c.time()?)
    } else {
        None
    };
    let shared = if flags & HAS_SHARED != 0 {
        let p = c.u32()?;
        Some(
            tables
                .evidence
                .get(p as usize)
                .ok_or_else(|| format!("shared evidence {p}"))?,
        )
    } else {
        None
    };
    let severity = match c.u8()? {
        0 => Severity::Low,
        1 => Severity::Medium,
        2 => Severity::High,
        s => return Err(format!("severity {s}")),
    };
    let rule_id = Cow::Owned(c.text()?.to_owned());
    let rule_title = Cow::Owned(c.text()?.to_owned());
    let mut opt = || c.opt_text().map(|t| t.map(str::to_owned));
    let (user, client_ip, app_id, session_id, token_id) = (opt()?, opt()?, opt()?, opt()?, opt()?);
    let file = c.u32()?;
    let source_file = tables
        .files
        .get(file as usize)
        .ok_or_else(|| format!("source file {file}"))?
        .clone();
    let source_locator = c.text()?.to_owned();
    let mut evidence = Evidence::default();
    for _ in 0..c.u32()? {
        let k = c.text()?.to_owned();
        let v = c.value(0)?;
        evidence.insert(k, v);
    }
    if let Some(part) = shared {
        evidence.put_shared(Arc::clone(part));
    }
    Ok(Finding {
        rule_id,
        rule_title,
        severity,
        time,
        user,
        client_ip,
        app_id,
        session_id,
        token_id,
        source_file,
        source_locator,
        evidence,
    })
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const UNSIGNED: u8 = 3;
const SIGNED: u8 = 4;
const FLOAT: u8 = 5;
const TEXT: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

fn put_value(buf: &mut Vec<u8>, v: &Value) -> io::Result<()> {
    match v {
        Value::Null => buf.push(NULL),
        Value::Bool(false) => buf.push(FALSE),
        Value::Bool(true) => buf.push(TRUE),
        Value::Number(n) => put_number(buf, n),
        Value::String(s) => {
            buf.push(TEXT);
            put_text(buf, s)?;
        }
        Value::Array(a) => {
            buf.push(ARRAY);
            put_u32(buf, count(a.len())?);
            for x in a {
                put_value(buf, x)?;
            }
        }
        Value::Object(m) => {
            buf.push(OBJECT);
            put_u32(buf, count(m.len())?);
            for (k, x) in m {
                put_text(buf, k)?;
                put_value(buf, x)?;
            }
        }
    }
    Ok(())
}

/// A number as the one of serde_json's three forms it is held in, so that
/// it reads back as the same form and is written out the same.
fn put_number(buf: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        buf.push(UNSIGNED);
        buf.extend_from_slice(&u.to_le_bytes());
    } else if let Some(i) = n.as_i64() {
        buf.push(SIGNED);
        buf.extend_from_slice(&i.to_le_bytes());
    } else {
        buf.push(FLOAT);
        let f = n.as_f64().expect("a number is u64, i64 or f64");
        buf.extend_from_slice(&f.to_bits().to_le_bytes());
    }
}

/// Evidence values, read from a record.
trait ValueCursor {
    /// A value nested `depth` deep.
    fn value(&mut self, depth: u32) -> Result<Value, String>;
}

impl ValueCursor for Cursor<'_> {
    fn value(&mut self, depth: u32) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("evidence nested deeper than {MAX_DEPTH}"));
        }
        Ok(match self.u8()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            UNSIGNED => Value::from(u64::from_le_bytes(self.array()?)),
            SIGNED => Value::from(i64::from_le_bytes(self.array()?)),
            FLOAT => {
                let f = f64::from_bits(u64::from_le_bytes(self.array()?));
                Value::Number(Number::from_f64(f).ok_or_else(|| format!("number {f}"))?)
            }
            TEXT => Value::String(self.text()?.to_owned()),
            ARRAY => {
                // Grown as elements are read, not sized by the count: a
                // damaged count in each of many nested arrays would
                // reserve far more than the record holds.
                let mut a = Vec::new();
                for _ in 0..self.u32()? {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(a)
            }
            OBJECT => {
                let mut m = Map::new();
                for _ in 0..self.u32()? {
                    let k = self.text()?.to_owned();
                    m.insert(k, self.value(depth + 1)?);
                }
                Value::Object(m)
            }
            t => return Err(format!("value tag {t}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding() -> Finding {
        let mut evidence = Evidence::default();
        evidence.insert(
            "fields".into(),
            json!({"a.b": "x\"y\n", "n": [1, -2, 2.5, u64::MAX, i64::MIN, null, true, false, {}]}),
        );
        evidence.insert("note".into(), json!("é\u{0}\u{1f}"));
        Finding {
            rule_id: Cow::Borrowed("tw-x"),
            rule_title: Cow::Owned("A \"title\"".into()),
            severity: Severity::High,
            time: Some(time::macros::datetime!(2024-03-01 00:14:12.661483 UTC)),
            user: Some("u@x".into()),
            client_ip: None,
            app_id: Some(String::new()),
            session_id: None,
            token_id: Some("t".into()),
            source_file: Arc::from("f.jsonl"),
            source_locator: "line 7".into(),
            evidence,
        }
    }

    fn round_trip(f: &Finding, at: Places, tables: &Tables<'_>) -> Result<Option<Finding>, String> {
        let mut out = Vec::new();
        write(&mut out, f, at, &mut Vec::new()).unwrap();
        read(&mut &out[..], &mut Vec::new(), tables)
    }

    #[test]
    fn findings_read_back_as_written() {
        let files = [Arc::from("other"), Arc::from("f.jsonl")];
        let part = Arc::new(json!({"sigma_title": "T"}).as_object().cloned().unwrap());
        let evidence = [part];
        let tables = Tables {
            evidence: &evidence,
            files: &files,
        };
        let f = finding();
        let mut without_time = finding();
        without_time.time = None;
        for (f, shared) in [(&f, None), (&without_time, Some(0))] {
            let got = round_trip(
                f,
                Places {
                    evidence: shared,
                    file: 1,
                },
                &tables,
            )
            .unwrap()
            .unwrap();
            let mut want = f.clone();
            if shared.is_some() {
                want.evidence.put_shared(Arc::clone(&evidence[0]));
            }
            // The same JSON, numbers in their forms included.
            assert_eq!(
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&want).unwrap()
            );
            assert_eq!(got.time, want.time);
            assert!(
                Arc::ptr_eq(&got.source_file, &files[1]),
                "the table's name is shared"
            );
        }
    }

    #[test]
    fn damaged_records_are_errors_saying_what_is_wrong() {
        let files = [Arc::from("f.jsonl")];
        let tables = Tables {
            evidence: &[],
            files: &files,
        };
        let mut good = Vec::new();
        write(
            &mut good,
            &finding(),
            Places {
                evidence: None,
                file: 0,
            },
            &mut Vec::new(),
        )
        .unwrap();
        let read_all = |bytes: &[u8]| read(&mut &bytes[..], &mut Vec::new(), &tables);
        assert!(read_all(&good).unwrap().is_some());
        assert!(read_all(&[]).unwrap().is_none());
        // Cut short, in the length and in the body.
        assert!(read_all(&good[..2])
            .unwrap_err()
            .starts_with("record length"));
        assert_eq!(
            read_all(&good[..good.len() - 1]).unwrap_err(),
            format!(
                "record of {} bytes cut after {}",
                good.len() - 4,
                good.len() - 5
            )
        );
        // Places never given out.
        let mut at_file_1 = Vec::new();
        write(
            &mut at_file_1,
            &finding(),
            Places {
                evidence: None,
                file: 1,
            },
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(read_all(&at_file_1).unwrap_err(), "source file 1");
        let mut shared = Vec::new();
        write(
            &mut shared,
            &finding(),
            Places {
                evidence: Some(3),
                file: 0,
            },
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(read_all(&shared).unwrap_err(), "shared evidence 3");
        // A body longer than its finding, and an unknown value tag.
        let mut long = good.clone();
        long.push(0);
        long[..4].copy_from_slice(&(good.len() as u32 - 3).to_le_bytes());
        assert_eq!(read_all(&long).unwrap_err(), "1 bytes after the finding");
        let mut ends_in_null = finding();
        ends_in_null.evidence.insert("z".into(), Value::Null);
        let mut bad_tag = Vec::new();
        write(
            &mut bad_tag,
            &ends_in_null,
            Places {
                evidence: None,
                file: 0,
            },
            &mut Vec::new(),
        )
        .unwrap();
        assert!(read_all(&bad_tag).unwrap().is_some());
        *bad_tag.last_mut().unwrap() = 99;
        assert_eq!(read_all(&bad_tag).unwrap_err(), "value tag 99");
        // Damaged bytes inside a record of the right length: its flags,
        // severity, a text's UTF-8, a time outside what `time` holds, and
        // a count of entries far past the record's end (which must not be
        // reserved up front).
        let damaged = |at: usize, bytes: &[u8]| {
            let mut d = good.clone();
            d[at..at + bytes.len()].copy_from_slice(bytes);
            read_all(&d).unwrap_err()
        };
        // Length (4), flags (1), time (16), severity (1), then rule_id's
        // length (4) and text.
        assert_eq!(damaged(4, &[0x80]), "flags 0x80");
        assert_eq!(damaged(21, &[9]), "severity 9");
        assert!(damaged(26, &[0xff]).starts_with("text: "));
        assert!(damaged(5, &i128::MAX.to_le_bytes()).starts_with("time "));
        let mut huge = Vec::new();
        huge.push(OBJECT);
        huge.extend_from_slice(&(u32::MAX - 1).to_le_bytes());
        let mut c = Cursor::new(&huge);
        assert_eq!(c.value(0).unwrap_err(), "4 bytes wanted, 0 left");
        let mut huge_array = vec![ARRAY];
        huge_array.extend_from_slice(&(u32::MAX - 1).to_le_bytes());
        let mut c = Cursor::new(&huge_array);
        assert!(c.value(0).is_err());
        // Nesting past the limit.
        let mut deep = Value::Null;
        for _ in 0..=MAX_DEPTH + 1 {
            deep = Value::Array(vec![deep]);
        }
        let mut f = finding();
        f.evidence.insert("deep".into(), deep);
        let mut out = Vec::new();
        write(
            &mut out,
            &f,
            Places {
                evidence: None,
                file: 0,
            },
            &mut Vec::new(),
        )
        .unwrap();
        assert!(read_all(&out).unwrap_err().contains("nested deeper"));
    }
}
