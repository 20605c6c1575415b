//! Every value of a record as text, for searches that look in any value
//! and not at keys or structure (Sigma keywords). Read off the record's
//! JSON text without building it ([`Words::of_json`]), a record can be
//! projected to its readers' paths and still be searched whole: building
//! the full tree of each record a keyword rule's anchors were in was a
//! tenth of a hunt over Azure Activity records with the SigmaHQ rules.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde_json::Value;

use crate::event::carried_json;
use crate::projection::{Scan, Scanned, Stop, NESTED_DEPTH};

/// The texts of a record's scalar values, those its
/// [`crate::Event::record`] holds once built: strings as themselves,
/// numbers and booleans as serde_json writes the values it parsed (`1E5`
/// as `100000.0`), nulls left out, and JSON carried in a string expanded
/// into its own values as [`crate::event::expand_nested`] expands it.
/// (The record may hold some twice: Log Analytics columns it renames.)
#[derive(Clone)]
pub struct Words {
    /// The texts, a zero byte between two.
    text: String,
    /// Where each text ends in `text`.
    ends: Vec<usize>,
    /// `text` lower-cased ([`Words::lower`]), built on first use.
    lower: OnceLock<String>,
}

impl fmt::Debug for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Words {
    fn new() -> Words {
        Words {
            text: String::new(),
            ends: Vec::new(),
            lower: OnceLock::new(),
        }
    }

    fn push(&mut self, word: &str) {
        if !self.ends.is_empty() {
            self.text.push('\0');
        }
        self.text.push_str(word);
        self.ends.push(self.text.len());
    }

    fn push_scalar(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.push(s),
            Value::Bool(b) => self.push(if *b { "true" } else { "false" }),
            Value::Null => {}
            other => self.push(&other.to_string()),
        }
    }

    /// The words of a built record (every scalar, in the record's order).
    pub fn of_value(v: &Value) -> Words {
        fn walk(v: &Value, out: &mut Words) {
            match v {
                Value::Object(m) => m.values().for_each(|x| walk(x, out)),
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                scalar => out.push_scalar(scalar),
            }
        }
        let mut out = Words::new();
        walk(v, &mut out);
        out
    }

    /// The words of a record given as JSON text: those of the record
    /// [`crate::Event::from_record`] builds of it, in the order the text
    /// writes them. `None` where they cannot be told without building it:
    /// the text is not one JSON object, or some object in it (or in JSON
    /// it carries in a string) names a key twice, whose earlier value the
    /// record drops (or names two keys of one 64-bit digest, as rare).
    pub fn of_json(text: &str) -> Option<Words> {
        // The words are about as long as the text: one allocation each.
        let mut words = Words::new();
        words.text.reserve(text.len());
        words.ends.reserve(text.len() / 16);
        let mut b = Builder {
            words,
            keys: Vec::new(),
            twice: false,
        };
        let mut scan = Scan::new(text);
        if scan.peek().ok()? != b'{' {
            return None;
        }
        b.value(&mut scan, NESTED_DEPTH).ok()?;
        scan.end().ok()?;
        Some(b.words)
    }

    /// The texts joined, a zero byte between two: a text without a zero
    /// byte is found in it only where it is in one word.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// [`Words::text`] lower-cased, as each value is lower-cased alone:
    /// the zero byte between two is neither cased nor ignored by case
    /// mapping, so no context-dependent lowering (a final sigma) reaches
    /// across it.
    pub fn lower(&self) -> &str {
        self.lower.get_or_init(|| {
            if self.text.is_ascii() {
                self.text.to_ascii_lowercase()
            } else {
                self.text.to_lowercase()
            }
        })
    }

    /// Each word.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|e| e + 1));
        starts.zip(&self.ends).map(|(s, &e)| &self.text[s..e])
    }
}

/// The words read so far, and what finds a key named twice.
struct Builder {
    words: Words,
    /// A digest of each key of the objects being read, innermost last
    /// ([`key_digest`]).
    keys: Vec<u64>,
    /// A key was named twice: the walk stopped, and no words are told.
    twice: bool,
}

impl Builder {
    /// One value of the text, its words appended (with the projection's
    /// scanner, which reads exactly the texts a full parse reads, and
    /// builds nothing but the strings that hold escapes). `depth` is how
    /// many more levels of JSON in a string are expanded.
    fn value(&mut self, scan: &mut Scan<'_>, depth: u32) -> Scanned<()> {
        match scan.peek()? {
            b'"' => {
                let s = scan.string_text()?;
                self.string(&s, depth)
            }
            b'{' => {
                scan.at += 1;
                scan.enter()?;
                let first = self.keys.len();
                if scan.peek()? == b'}' {
                    scan.at += 1;
                } else {
                    loop {
                        let digest = key_digest(&scan.key()?);
                        // Most objects have a few keys, each compared with
                        // those before; a long one is sorted once closed,
                        // so that hostile keys cost no square of their
                        // number.
                        if self.keys.len() - first < KEYS_COMPARED
                            && self.keys[first..].contains(&digest)
                        {
                            self.twice = true;
                            return Err(Stop);
                        }
                        self.keys.push(digest);
                        scan.eat(b':')?;
                        self.value(scan, depth)?;
                        if scan.close_or_next(b'}')? {
                            break;
                        }
                    }
                }
                let own = &mut self.keys[first..];
                if own.len() > KEYS_COMPARED {
                    own.sort_unstable();
                    if own.windows(2).any(|w| w[0] == w[1]) {
                        self.twice = true;
                        return Err(Stop);
                    }
                }
                self.keys.truncate(first);
                scan.depth -= 1;
                Ok(())
            }
            b'[' => {
                scan.at += 1;
                scan.enter()?;
                if scan.peek()? == b']' {
                    scan.at += 1;
                } else {
                    loop {
                        self.value(scan, depth)?;
                        if scan.close_or_next(b']')? {
                            break;
                        }
                    }
                }
                scan.depth -= 1;
                Ok(())
            }
            b't' => {
                scan.literal(b"true")?;
                self.words.push("true");
                Ok(())
            }
            b'f' => {
                scan.literal(b"false")?;
                self.words.push("false");
                Ok(())
            }
            b'n' => scan.literal(b"null"),
            _ => {
                let n = scan.number_value()?;
                self.words.push_scalar(&n);
                Ok(())
            }
        }
    }

    /// A string's words: itself, or those of the JSON it holds, as
    /// [`crate::event::expand_nested`] expands it.
    fn string(&mut self, s: &str, depth: u32) -> Scanned<()> {
        if let Some(t) = carried_json(s, depth) {
            let w = &self.words;
            let (len, words, keys) = (w.text.len(), w.ends.len(), self.keys.len());
            let mut nested = Scan::new(t);
            if self.value(&mut nested, depth - 1).is_ok() && nested.end().is_ok() {
                return Ok(());
            }
            if self.twice {
                return Err(Stop);
            }
            // Not JSON after all: the string is the word, as in the record.
            self.words.text.truncate(len);
            self.words.ends.truncate(words);
            self.keys.truncate(keys);
        }
        self.words.push(s);
        Ok(())
    }
}

/// Keys of an object compared one by one as they come; past this many,
/// the object's keys are sorted once it closes.
const KEYS_COMPARED: usize = 32;

/// A key's 64-bit digest: two keys of one digest are taken for one key
/// named twice, which is as rare as a random collision and then only costs
/// a full parse. (A byte-by-byte FNV hash was a sixth of the walk; a
/// digest of a key's ends took keys differing only in the middle,
/// `TargetResources_0_displayName` and `_1_`, for one.)
fn key_digest(k: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Locator};
    use std::sync::Arc;

    /// The words of the record an event builds of `text`, sorted.
    fn built(text: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(text).unwrap();
        let ev = Event::from_record(v, None, Arc::from("t.jsonl"), Locator::default());
        sorted(&Words::of_value(&ev.record))
    }

    fn sorted(w: &Words) -> Vec<String> {
        let mut v: Vec<String> = w.iter().map(str::to_string).collect();
        v.sort();
        v
    }

    #[test]
    fn read_off_the_text_they_are_the_built_records_words() {
        for text in [
            r#"{"a":"x","b":[1,-2,1.5,1e5,true,false,null,""],"c":{"d":"Ü"}}"#,
            // JSON in a string, itself holding JSON in a string.
            r#"{"AuditData":"{\"Operation\":\"Set\",\"P\":\"[{\\\"Name\\\":\\\"n\\\"}]\"}"}"#,
            // Looks like JSON but is not: kept as a string.
            r#"{"a":"{not json","b":" [1,2] x","c":"[1,2]"}"#,
            // Expanded three levels deep, not four.
            r#"{"a":"{\"b\":\"{\\\"c\\\":\\\"{\\\\\\\"d\\\\\\\":\\\\\\\"{}\\\\\\\"}\\\"}\"}"}"#,
            r#"{"esc":"a\u0000b\"c\\d\/e","n":18446744073709551615}"#,
        ] {
            let w = Words::of_json(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(sorted(&w), built(text), "{text}");
        }
    }

    #[test]
    fn a_key_named_twice_anywhere_tells_no_words() {
        for text in [
            r#"{"a":"Microsoft.Compute/snapshots/write","a":"x"}"#,
            r#"{"o":{"k":1,"k":2}}"#,
            r#"{"s":"{\"k\":1,\"k\":2}"}"#,
        ] {
            assert!(Words::of_json(text).is_none(), "{text}");
        }
        // Named twice inside JSON in a string that is not JSON after all
        // (the record keeps the string): not told, which costs a full
        // parse only.
        assert!(Words::of_json(r#"{"s":"{\"k\":1,\"k\":2,"}"#).is_none());
        // JSON in a string is expanded three levels deep: a key named twice
        // at the third is a key named twice, at the fourth a string's text.
        let wrapped = |keys: &[&str]| {
            let mut text = r#"{"k":1,"k":2}"#.to_string();
            for k in keys {
                text = serde_json::json!({ *k: text }).to_string();
            }
            text
        };
        assert!(Words::of_json(&wrapped(&["c", "b", "a"])).is_none());
        let deep = wrapped(&["d", "c", "b", "a"]);
        assert_eq!(sorted(&Words::of_json(&deep).unwrap()), built(&deep));
        // Long objects, whose keys are sorted once closed.
        let many: Vec<String> = (0..100)
            .map(|i| format!("\"TargetResources_{i}_displayName\":{i}"))
            .collect();
        let distinct = format!("{{{}}}", many.join(","));
        assert_eq!(Words::of_json(&distinct).unwrap().iter().count(), 100);
        let twice = format!("{{{},\"TargetResources_3_displayName\":0}}", many.join(","));
        assert!(Words::of_json(&twice).is_none());
        // The same key in two objects is two keys.
        let w = Words::of_json(r#"{"o":{"k":1},"p":{"k":2},"k":[{"k":3},{"k":4}]}"#).unwrap();
        assert_eq!(sorted(&w), ["1", "2", "3", "4"]);
    }

    #[test]
    fn only_an_object_has_words_told() {
        for text in ["[1,2]", "\"x\"", "1", "null", "{\"a\":1} x", "{\"a\":"] {
            assert!(Words::of_json(text).is_none(), "{text}");
        }
    }

    #[test]
    fn words_are_lowered_one_by_one_and_kept_apart() {
        let w = Words::of_json(r#"{"a":"ÀB","b":"ΟΔΟΣ","c":"Cd"}"#).unwrap();
        assert_eq!(w.text(), "ÀB\0ΟΔΟΣ\0Cd");
        assert_eq!(w.lower(), "àb\0οδος\0cd");
        let ascii = Words::of_json(r#"{"a":"AB","b":"Cd"}"#).unwrap();
        assert_eq!(ascii.lower(), "ab\0cd");
    }

    #[test]
    fn random_records_have_the_built_records_words() {
        fn value(rng: &mut fastrand::Rng, depth: u32) -> Value {
            match rng.u8(0..if depth == 0 { 5 } else { 8 }) {
                0 => Value::Null,
                1 => Value::Bool(rng.bool()),
                2 => Value::from(rng.i64(-1000..1000)),
                3 => Value::from(rng.f64() * 1e6),
                4 => Value::from(
                    ["", "Ab", "{x", " [", "ü", "a\u{0}b", "q\"\\"][rng.usize(0..7)].to_string(),
                ),
                5 => Value::Array(
                    (0..rng.usize(0..4))
                        .map(|_| value(rng, depth - 1))
                        .collect(),
                ),
                6 => object(rng, depth - 1),
                // JSON carried in a string.
                _ => Value::from(object(rng, depth - 1).to_string()),
            }
        }
        fn object(rng: &mut fastrand::Rng, depth: u32) -> Value {
            let mut m = serde_json::Map::new();
            for i in 0..rng.usize(0..5) {
                m.insert(format!("k{i}"), value(rng, depth));
            }
            Value::Object(m)
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let text = object(&mut rng, 5).to_string();
            let w = Words::of_json(&text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(sorted(&w), built(&text), "{text}");
        }
    }
}
