//! JSON with duplicate member names rejected (RFC 7515 §4, RFC 7519 §4).
//!
//! serde_json keeps the last of two equal member names silently; a verifier
//! and an upstream service that disagree on which one counts is exactly the
//! kind of parser differential an attacker uses, so every object we read
//! goes through the visitors here.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Error from strict JSON parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// Parses a complete JSON text into a [`Value`], rejecting duplicate member
/// names at any depth and trailing content.
pub fn parse_strict_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_str(utf8_text(bytes).map_err(JsonError)?);
    let value = StrictValue::deserialize(&mut de)
        .map_err(|e| JsonError(e.to_string()))?
        .0;
    de.end().map_err(|e| JsonError(e.to_string()))?;
    Ok(value)
}

/// The bytes as text, checked as UTF-8 in one pass.
///
/// serde_json reading bytes checks each string's UTF-8 on its own, which on
/// a token's twenty short strings costs more than one pass over the whole
/// text (14 % of a claim set's parse). Outside strings only ASCII is valid
/// JSON, so the set of accepted inputs is the same.
pub(crate) fn utf8_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| not_utf8(&e))
}

/// Why bytes are not UTF-8, in the words of [`utf8_text`].
pub(crate) fn not_utf8(e: &std::str::Utf8Error) -> String {
    format!("not UTF-8: invalid byte at offset {}", e.valid_up_to())
}

/// A member name, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The error for a member name an object holds twice.
pub(crate) fn duplicate_member<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate member name \"{name}\""))
}

/// Tracks member names of one object. Objects in tokens are small, so a
/// linear scan beats hashing.
/// Each name is kept with a cheap fingerprint (length and first and last
/// byte) so most comparisons are one integer compare, and a 64-bit filter
/// over the fingerprints skips the scan for most names, which are new.
#[derive(Default)]
pub(crate) struct SeenNames<'de> {
    filter: u64,
    names: Vec<(u32, Cow<'de, str>)>,
}

fn fingerprint(name: &str) -> u32 {
    let b = name.as_bytes();
    let first = b.first().copied().unwrap_or(0);
    let last = b.last().copied().unwrap_or(0);
    ((b.len() as u32) << 16) | (u32::from(first) << 8) | u32::from(last)
}

impl<'de> SeenNames<'de> {
    pub(crate) fn insert<E: de::Error>(&mut self, name: Cow<'de, str>) -> Result<(), E> {
        let fp = fingerprint(&name);
        // Fibonacci hashing: the top six bits of the product pick the bit.
        let bit = 1u64 << (fp.wrapping_mul(0x9E37_79B1) >> 26);
        if self.filter & bit != 0 && self.names.iter().any(|(f, seen)| *f == fp && *seen == name) {
            return Err(duplicate_member(&name));
        }
        self.filter |= bit;
        if self.names.capacity() == 0 {
            self.names.reserve(24);
        }
        self.names.push((fp, name));
        Ok(())
    }
}

/// A [`Value`] built with duplicate checks.
pub(crate) struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictValueVisitor).map(StrictValue)
    }
}

struct StrictValueVisitor;

impl<'de> Visitor<'de> for StrictValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
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
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(name)) = map.next_key()? {
            if out.contains_key(name.as_ref()) {
                return Err(duplicate_member(&name));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(name.into_owned(), v);
        }
        Ok(Value::Object(out))
    }
}

/// Skips a value of any shape while still rejecting duplicate member names
/// inside it, without building it.
pub(crate) struct StrictIgnore;

impl<'de> Deserialize<'de> for StrictIgnore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictIgnoreVisitor)
    }
}

struct StrictIgnoreVisitor;

impl<'de> Visitor<'de> for StrictIgnoreVisitor {
    type Value = StrictIgnore;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<StrictIgnore, E> {
        Ok(StrictIgnore)
    }
    fn visit_i64<E>(self, _: i64) -> Result<StrictIgnore, E> {
        Ok(StrictIgnore)
    }
    fn visit_u64<E>(self, _: u64) -> Result<StrictIgnore, E> {
        Ok(StrictIgnore)
    }
    fn visit_f64<E>(self, _: f64) -> Result<StrictIgnore, E> {
        Ok(StrictIgnore)
    }
    fn visit_str<E>(self, _: &str) -> Result<StrictIgnore, E> {
        Ok(StrictIgnore)
    }
    fn visit_unit<E>(self) -> Result<StrictIgnore, E> {
        Ok(StrictIgnore)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictIgnore, A::Error> {
        while seq.next_element::<StrictIgnore>()?.is_some() {}
        Ok(StrictIgnore)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictIgnore, A::Error> {
        let mut seen = SeenNames::default();
        while let Some(Key(name)) = map.next_key()? {
            seen.insert(name)?;
            map.next_value::<StrictIgnore>()?;
        }
        Ok(StrictIgnore)
    }
}

/// The JSON type of a value a visitor received, for "wrong type" messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    Bool,
    Number,
    String,
    Null,
    Array,
    Object,
}

impl JsonType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            JsonType::Bool => "a boolean",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Null => "null",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SeenNames` itself, on names built to stress its filter: 300 names
    /// over many lengths and first and last bytes, so every filter bit is
    /// set and bits collide, and runs of names with one fingerprint (same
    /// length, first and last byte) that only a full comparison tells
    /// apart. A duplicate anywhere is found; distinct names never are.
    #[test]
    fn seen_names_find_every_duplicate_and_nothing_else() {
        let mut names: Vec<String> = (0..200)
            .map(|i| {
                let first = char::from(b'a' + (i % 26) as u8);
                let last = char::from(b'A' + (i / 7 % 26) as u8);
                format!("{first}{}{last}", "m".repeat(i % 11))
            })
            .collect();
        names.sort();
        names.dedup();
        // One fingerprint: length 5, 'x' first, 'z' last.
        names.extend((0..100).map(|i| format!("x{i:03}z")));
        let insert_all = |list: &[&String]| -> Result<(), serde_json::Error> {
            let mut seen = SeenNames::default();
            for n in list {
                seen.insert::<serde_json::Error>(Cow::Borrowed(n.as_str()))?;
            }
            Ok(())
        };
        let distinct: Vec<&String> = names.iter().collect();
        assert!(insert_all(&distinct).is_ok());
        assert_eq!(
            insert_all(&distinct).map(|()| distinct.len()).unwrap(),
            names.len()
        );
        for repeated in [0, 1, names.len() / 2, names.len() - 50, names.len() - 1] {
            let mut with_duplicate = distinct.clone();
            with_duplicate.push(&names[repeated]);
            let err = insert_all(&with_duplicate).unwrap_err();
            assert!(err.to_string().contains(names[repeated].as_str()), "{err}");
        }
    }

    #[test]
    fn duplicate_names_rejected_at_any_depth() {
        assert!(parse_strict_value(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_strict_value(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_strict_value(br#"{"a":[{"b":1,"b":1}]}"#).is_err());
        // An escaped spelling of the same name is the same name.
        assert!(parse_strict_value(br#"{"a":1,"\u0061":2}"#).is_err());
        assert!(parse_strict_value(br#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn trailing_content_rejected() {
        assert!(parse_strict_value(br#"{"a":1} x"#).is_err());
        assert!(parse_strict_value(br#"{"a":1}{}"#).is_err());
        assert!(parse_strict_value(b"{\"a\":1} \n").is_ok());
    }

    #[test]
    fn ignore_still_checks_duplicates() {
        let mut de = serde_json::Deserializer::from_slice(br#"[{"x":{"y":1,"y":2}}]"#);
        assert!(StrictIgnore::deserialize(&mut de).is_err());
        let mut de = serde_json::Deserializer::from_slice(br#"[{"x":{"y":1,"z":2}}]"#);
        assert!(StrictIgnore::deserialize(&mut de).is_ok());
    }
}
