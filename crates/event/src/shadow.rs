//! Keys named twice in one JSON object. Like most JSON parsers, tokenward
//! keeps the last copy, but a record that says two things under one name
//! may be crafted to read differently in different tools: an indicator put
//! in the first copy would be invisible to a last-copy reading. So every
//! parse of a record notes the copies it overwrote (on the parsing
//! thread), the engine attaches them to the event
//! ([`crate::Event::shadowed`]) and counts the record, and indicator
//! detections search them too.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

thread_local! {
    static SHADOWED: RefCell<Vec<(String, Value)>> = const { RefCell::new(Vec::new()) };
}

/// Forgets the copies noted so far on this thread (a new record begins).
pub fn reset() {
    SHADOWED.with(|s| s.borrow_mut().clear());
}

/// Notes that `key`'s earlier copy `value` was overwritten (by a parse
/// here, or by a reader that keeps the last of two named copies, as of
/// two CSV columns with one name).
pub fn note(key: &str, value: Value) {
    SHADOWED.with(|s| s.borrow_mut().push((key.to_owned(), value)));
}

/// Whether a copy was overwritten since the last [`reset`] on this thread.
pub fn any() -> bool {
    SHADOWED.with(|s| !s.borrow().is_empty())
}

/// The overwritten copies since the last [`reset`] on this thread, as
/// (key, earlier value), in the order met; the list is emptied.
pub fn take() -> Vec<(String, Value)> {
    SHADOWED.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Parses a whole JSON value as `serde_json` does, noting overwritten
/// copies of duplicate keys. Does not [`reset`] first. Takes text, which
/// is already UTF-8, so no string inside is checked again.
pub fn parse_str(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Whole.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// A whole value, built as `serde_json::Value` builds itself, noting
/// overwritten copies.
pub struct Whole;

impl<'de> DeserializeSeed<'de> for Whole {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(FullVisitor)
    }
}

struct FullVisitor;

impl<'de> Visitor<'de> for FullVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = a.next_element_seed(Whole)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = a.next_key::<String>()? {
            let v = a.next_value_seed(Whole)?;
            insert_noting(&mut out, k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Inserts `v` under `k` (one lookup), noting the copy it replaces.
pub(crate) fn insert_noting(m: &mut Map<String, Value>, k: String, v: Value) {
    match m.entry(k) {
        serde_json::map::Entry::Vacant(e) => {
            e.insert(v);
        }
        serde_json::map::Entry::Occupied(mut e) => {
            let old = e.insert(v);
            note(e.key(), old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_parse_keeps_the_last_copy_and_notes_the_earlier_ones() {
        reset();
        let v = parse_str(r#"{"a":1,"b":{"ip":"203.0.113.9","ip":"10.0.0.1"},"a":[2,{"a":3}]}"#)
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a":[2,{"a":3}],"b":{"ip":"10.0.0.1"}})
        );
        let s = take();
        assert_eq!(
            s,
            vec![
                ("ip".to_string(), Value::from("203.0.113.9")),
                ("a".to_string(), Value::from(1))
            ]
        );
        assert!(!any(), "taken");
    }

    #[test]
    fn a_full_parse_is_serde_json_s_parse() {
        for t in [
            r#"{"x":1.5e300,"y":-0,"z":18446744073709551615,"w":-9223372036854775808,"s":"\u00e9\n"}"#,
            r#"[null,true,false,{},[],""]"#,
        ] {
            assert_eq!(
                parse_str(t).unwrap(),
                serde_json::from_str::<Value>(t).unwrap()
            );
        }
        for bad in [r#"{"a":1"#, r#"{"a":1}x"#, r#"{"a":nan}"#] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
    }
}
