//! A finding's evidence: the fields that matched and the reasoning values.

use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A finding's evidence, read as one JSON object.
///
/// Part of it may be shared by every finding of one rule (a Sigma rule's
/// id, title, level, author, licence, file and ATT&CK tags): the hunt over
/// 500 MB of sign-ins made 71,169 Sigma findings, and a copy of those seven
/// entries in each was most of their memory. Shared entries are held once,
/// behind an [`Arc`]; every reader sees one object, in key order, with the
/// finding's own entries taking precedence over shared ones of the same
/// name.
///
/// The finding's own entries are a vector kept in key order, not a map: a
/// map's first node holds room for eleven entries, and most findings have
/// one to five.
#[derive(Clone, Default)]
pub struct Evidence {
    own: Vec<(String, Value)>,
    shared: Option<Arc<Map<String, Value>>>,
}

impl Evidence {
    /// Evidence of `own` entries on top of entries `shared` with other
    /// findings.
    pub fn with_shared(shared: Arc<Map<String, Value>>, own: Map<String, Value>) -> Evidence {
        // Merging reads both parts in key order; a `Map` iterates so unless
        // serde_json's `preserve_order` is on (a test below fails then).
        debug_assert!(shared.keys().zip(shared.keys().skip(1)).all(|(a, b)| a < b));
        Evidence {
            shared: Some(shared),
            ..Evidence::from(own)
        }
    }

    /// The value of one entry.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.own.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => Some(&self.own[i].1),
            Err(_) => self.shared.as_deref().and_then(|s| s.get(key)),
        }
    }

    /// Whether an entry is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets one of the finding's own entries.
    pub fn insert(&mut self, key: String, value: Value) {
        match self.own.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.own[i].1 = value,
            Err(i) => self.own.insert(i, (key, value)),
        }
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.iter_marked().map(|(k, v, _)| (k, v))
    }

    /// Every entry, in key order, each shared one with its place in the
    /// shared part ([`Evidence::shared_part`]) in that part's key order, so
    /// that a writer of many findings may render each shared entry once.
    pub fn iter_marked(&self) -> impl Iterator<Item = (&String, &Value, Option<usize>)> {
        let shared = self.shared.as_deref().into_iter().flatten();
        Merged {
            own: self.own.iter().map(|(k, v)| (k, v, None)).peekable(),
            shared: shared
                .enumerate()
                .map(|(i, (k, v))| (k, v, Some(i)))
                .peekable(),
        }
    }

    /// The entries shared with other findings, if any.
    pub fn shared_part(&self) -> Option<&Arc<Map<String, Value>>> {
        self.shared.as_ref()
    }

    /// The entries shared with other findings, when the finding has no
    /// entries of its own: what a holder of many findings may keep once
    /// for all that share it.
    pub fn only_shared(&self) -> Option<&Arc<Map<String, Value>>> {
        self.shared.as_ref().filter(|_| self.own.is_empty())
    }

    /// Appends the evidence as JSON, the bytes `serde_json` writes for it
    /// (a finding's `evidence`, a CSV timeline's cell), its shared entries
    /// taken from `parts`, rendered once for every finding that shares
    /// them.
    pub fn write_json(&self, out: &mut Vec<u8>, parts: &mut RenderedParts) {
        out.push(b'{');
        let rendered = self.shared.as_ref().map(|p| parts.of(p));
        for (i, (k, v, shared)) in self.iter_marked().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match (shared, rendered) {
                (Some(place), Some(r)) => out.extend_from_slice(&r[place]),
                _ => write_json_entry(out, k, v),
            }
        }
        out.push(b'}');
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.own.is_empty() && self.shared.as_deref().is_none_or(Map::is_empty)
    }

    /// The same evidence with only the own entries named in `keys` (shared
    /// entries stay shared): what a reader of a few entries keeps.
    pub fn subset(&self, keys: &[&str]) -> Evidence {
        Evidence {
            own: self
                .own
                .iter()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .cloned()
                .collect(),
            shared: self.shared.clone(),
        }
    }

    /// About how many heap bytes the finding's own entries take (shared
    /// entries are not counted: every finding of the rule holds them once).
    /// What a holder of many findings budgets its memory by.
    pub fn own_heap_bytes(&self) -> usize {
        const ENTRY: usize = std::mem::size_of::<(String, Value)>();
        self.own
            .iter()
            .map(|(k, v)| ENTRY + k.len() + value_heap_bytes(v))
            .sum()
    }

    /// Takes out the entries shared with other findings, leaving the
    /// finding's own: a holder that writes many findings writes each
    /// shared part once and puts it back with [`Evidence::put_shared`].
    pub fn take_shared(&mut self) -> Option<Arc<Map<String, Value>>> {
        self.shared.take()
    }

    /// Puts back entries taken by [`Evidence::take_shared`].
    pub fn put_shared(&mut self, shared: Arc<Map<String, Value>>) {
        self.shared = Some(shared);
    }

    /// The entries as one JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Entries shared by many findings' evidence ([`Evidence::shared_part`]).
type SharedPart = Arc<Map<String, Value>>;

/// Shared evidence parts rendered as JSON, for writing many findings
/// ([`Evidence::write_json`]): each part's entries are rendered once, not
/// once per finding. A Sigma rule's shared part (its title, author,
/// licence, file and tags) is about half of each of its findings' JSON.
#[derive(Default)]
pub struct RenderedParts {
    /// By the address of the part's `Arc`, which the entry keeps alive so
    /// that the address cannot be reused by another part meanwhile: each
    /// entry of the part as `"key":value`, in the part's key order.
    parts: std::collections::HashMap<usize, (SharedPart, Vec<Vec<u8>>)>,
}

impl RenderedParts {
    fn of(&mut self, part: &SharedPart) -> &[Vec<u8>] {
        let entry = self
            .parts
            .entry(Arc::as_ptr(part) as usize)
            .or_insert_with(|| {
                let rendered = part
                    .iter()
                    .map(|(k, v)| {
                        let mut out = Vec::new();
                        write_json_entry(&mut out, k, v);
                        out
                    })
                    .collect();
                (Arc::clone(part), rendered)
            });
        &entry.1
    }

    /// How many parts are rendered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.parts.len()
    }
}

/// Writes a string as JSON, as `serde_json` does: text without a quote, a
/// backslash or a control character is copied whole.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // No early exit inside a block, so the compiler compares sixteen bytes
    // at a time.
    let plain = s.as_bytes().chunks(16).all(|block| {
        !block.iter().fold(false, |seen, &b| {
            seen | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to memory");
    }
}

/// Writes one object entry, `"key":value`, as `serde_json` does.
fn write_json_entry(out: &mut Vec<u8>, k: &str, v: &Value) {
    write_json_str(out, k);
    out.push(b':');
    serde_json::to_writer(&mut *out, v).expect("writing to memory");
}

/// About how many heap bytes a JSON value holds beyond its own slot.
fn value_heap_bytes(v: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>();
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(|x| SLOT + value_heap_bytes(x)).sum(),
        // A map node per entry, about: key, value and links.
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| 2 * SLOT + k.len() + value_heap_bytes(x))
            .sum(),
        _ => 0,
    }
}

/// Two key-ordered entry lists read as one; on equal keys the first
/// (the finding's own) wins and the other is skipped.
struct Merged<A: Iterator, B: Iterator> {
    own: std::iter::Peekable<A>,
    shared: std::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for Merged<A, B>
where
    A: Iterator<Item = (&'a String, &'a Value, Option<usize>)>,
    B: Iterator<Item = (&'a String, &'a Value, Option<usize>)>,
{
    type Item = (&'a String, &'a Value, Option<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.own.peek(), self.shared.peek()) {
            (Some((a, _, _)), Some((b, _, _))) => {
                if a < b {
                    self.own.next()
                } else if b < a {
                    self.shared.next()
                } else {
                    self.shared.next();
                    self.own.next()
                }
            }
            (Some(_), None) => self.own.next(),
            (None, _) => self.shared.next(),
        }
    }
}

/// Equal when they read as the same object, however it is split.
impl PartialEq for Evidence {
    fn eq(&self, other: &Evidence) -> bool {
        self.iter().eq(other.iter())
    }
}

/// Written as the object it reads as.
impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl From<Map<String, Value>> for Evidence {
    fn from(own: Map<String, Value>) -> Evidence {
        let mut own: Vec<(String, Value)> = own.into_iter().collect();
        // Already in order unless serde_json keeps insertion order (its
        // `preserve_order` feature); then this puts it in order.
        own.sort_by(|a, b| a.0.cmp(&b.0));
        Evidence { own, shared: None }
    }
}

impl std::ops::Index<&str> for Evidence {
    type Output = Value;

    /// The entry's value, or `null` when there is none (as indexing a
    /// [`Value`] does).
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Evidence, D::Error> {
        Map::deserialize(d).map(Evidence::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn shared_entries_read_as_one_object_in_key_order() {
        let shared = Arc::new(map(json!({"b": 2, "d": 4, "sigma_id": "x"})));
        let e = Evidence::with_shared(shared, map(json!({"a": 1, "c": 3, "e": 5})));
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e", "sigma_id"]);
        assert_eq!(e.len(), 6);
        assert_eq!(e["d"], json!(4));
        assert_eq!(e["missing"], Value::Null);
        assert!(e.contains_key("sigma_id"));
        // The same bytes as the one object written out.
        let whole = json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "sigma_id": "x"});
        assert_eq!(serde_json::to_string(&e).unwrap(), whole.to_string());
        assert_eq!(Value::Object(e.to_map()), whole);
    }

    #[test]
    fn shared_entries_are_marked_with_their_place_in_the_part() {
        let shared = Arc::new(map(json!({"b": 2, "d": 4, "sigma_id": "x"})));
        let e = Evidence::with_shared(shared.clone(), map(json!({"a": 1, "d": 5})));
        let marks: Vec<(&str, Option<usize>)> = e
            .iter_marked()
            .map(|(k, _, place)| (k.as_str(), place))
            .collect();
        // `d` is the finding's own: it hides the shared one at place 1.
        assert_eq!(
            marks,
            [
                ("a", None),
                ("b", Some(0)),
                ("d", None),
                ("sigma_id", Some(2))
            ]
        );
        assert!(Arc::ptr_eq(e.shared_part().unwrap(), &shared));
        assert!(Evidence::from(map(json!({"a": 1}))).shared_part().is_none());
    }

    /// Only evidence of shared entries alone is told to be so: a holder
    /// keeps one copy of it for every finding that shares it.
    #[test]
    fn only_shared_is_shared_entries_without_own_ones() {
        let shared = Arc::new(map(json!({"attack": ["T1078"]})));
        let alone = Evidence::with_shared(shared.clone(), Map::new());
        assert!(alone.only_shared().is_some_and(|p| Arc::ptr_eq(p, &shared)));
        let with_own = Evidence::with_shared(shared, map(json!({"fields": {}})));
        assert!(with_own.only_shared().is_none());
        assert!(with_own.subset(&["attack"]).only_shared().is_some());
        assert!(Evidence::from(map(json!({"a": 1}))).only_shared().is_none());
        assert!(Evidence::default().only_shared().is_none());
    }

    #[test]
    fn own_entries_win_over_shared_ones() {
        let shared = Arc::new(map(json!({"fields": "shared", "z": 0})));
        let mut e = Evidence::with_shared(shared, map(json!({"fields": "own"})));
        e.insert("zz".into(), json!(2));
        e.insert("a".into(), json!(0));
        e.insert("a".into(), json!(1));
        assert_eq!(e["fields"], json!("own"));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"a":1,"fields":"own","z":0,"zz":2}"#
        );
    }

    /// The merge needs a shared `Map` to iterate in key order, which
    /// serde_json's `preserve_order` feature (switched on by any crate in
    /// the build) would change.
    #[test]
    fn serde_json_maps_iterate_in_key_order() {
        let m = map(json!({"b": 1, "a": 2, "c": 3}));
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn equal_and_shown_as_the_object_they_read_as() {
        let shared = Arc::new(map(json!({"b": 2})));
        let split = Evidence::with_shared(shared, map(json!({"a": 1})));
        let whole = Evidence::from(map(json!({"a": 1, "b": 2})));
        assert_eq!(split, whole);
        assert_ne!(split, Evidence::from(map(json!({"a": 1}))));
        assert_eq!(format!("{split:?}"), r#"{"a": Number(1), "b": Number(2)}"#);
    }

    #[test]
    fn reads_back_as_written() {
        let shared = Arc::new(map(json!({"k": [1, 2]})));
        let e = Evidence::with_shared(shared, map(json!({"j": {"x": "y"}})));
        let text = serde_json::to_string(&e).unwrap();
        let back: Evidence = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_map(), e.to_map());
        assert!(Evidence::default().is_empty());
    }
}
