//! Per-key aggregates whose keys are texts read off events (mailbox,
//! session, app ids), looked up by borrowing those texts.
//!
//! A `HashMap<(String, String, i64), _>` can only be asked with an owned
//! key, so every MailItemsAccessed record copied its mailbox and session
//! before the lookup, and dropped them again when the bucket existed. Those
//! copies, and comparing keys through them, were most of what
//! `tw-mail-bind-spike` cost. [`Keyed`] hashes and compares the borrowed
//! texts, and copies them only into a new entry.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::{Entry, HashTable};

use crate::KeyHasher;

/// A key, or one part of one, that can be looked up by a borrowed form.
/// The borrowed form's `Hash` and `Eq` are the key's: an entry is found
/// exactly when its key, borrowed, equals the one asked for.
pub trait KeyPart {
    /// The borrowed form (`&str` for a boxed text).
    type Ref<'a>: Hash + Eq + Copy
    where
        Self: 'a;
    /// This key, borrowed.
    fn as_part(&self) -> Self::Ref<'_>;
    /// The owned key of a borrowed one.
    fn from_part(part: Self::Ref<'_>) -> Self;
    /// Whether this key, borrowed, equals `part` (what `==` on the
    /// borrowed forms says; a method, as the two borrow for different
    /// lifetimes).
    fn matches(&self, part: Self::Ref<'_>) -> bool;
}

impl KeyPart for Box<str> {
    type Ref<'a> = &'a str;
    fn as_part(&self) -> &str {
        self
    }
    fn from_part(part: &str) -> Self {
        part.into()
    }
    fn matches(&self, part: &str) -> bool {
        **self == *part
    }
}

impl KeyPart for i64 {
    type Ref<'a> = i64;
    fn as_part(&self) -> i64 {
        *self
    }
    fn from_part(part: i64) -> Self {
        part
    }
    fn matches(&self, part: i64) -> bool {
        *self == part
    }
}

macro_rules! tuple_key {
    ($($part:ident $at:tt),+) => {
        impl<$($part: KeyPart),+> KeyPart for ($($part,)+) {
            type Ref<'a> = ($($part::Ref<'a>,)+) where Self: 'a;
            fn as_part(&self) -> Self::Ref<'_> {
                ($(self.$at.as_part(),)+)
            }
            fn from_part(part: Self::Ref<'_>) -> Self {
                ($($part::from_part(part.$at),)+)
            }
            fn matches(&self, part: Self::Ref<'_>) -> bool {
                $(self.$at.matches(part.$at))&&+
            }
        }
    };
}

tuple_key!(A 0, B 1);
tuple_key!(A 0, B 1, C 2);

/// The hasher of every [`Keyed`] table: seeded at random once a process
/// ([`KeyHasher`]), so that the hashes a shard's table stores hold in the
/// table it is merged into.
fn hasher() -> &'static KeyHasher {
    static HASHER: std::sync::OnceLock<KeyHasher> = std::sync::OnceLock::new();
    HASHER.get_or_init(KeyHasher::default)
}

/// The hash a [`Keyed`] table files `key` under (and a spilling map's
/// filter of written keys).
pub(crate) fn key_hash<R: Hash>(key: R) -> u64 {
    hasher().hash_one(key)
}

/// An entry: its key's hash, kept so that growing or merging a table
/// never reads a key's texts again (each one a trip to memory elsewhere),
/// the key and the value.
type Slot<K, V> = (u64, K, V);

/// Values per key, looked up by the key's borrowed form.
pub struct Keyed<K, V> {
    table: HashTable<Slot<K, V>>,
}

impl<K, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed {
            table: HashTable::new(),
        }
    }
}

impl<K: KeyPart, V> Keyed<K, V> {
    /// The value of `key`, if any.
    pub fn get(&self, key: K::Ref<'_>) -> Option<&V> {
        let hash = key_hash(key);
        self.table
            .find(hash, |(h, k, _)| *h == hash && k.matches(key))
            .map(|(_, _, v)| v)
    }

    /// The value of `key`, if any, to change.
    pub fn get_mut(&mut self, key: K::Ref<'_>) -> Option<&mut V> {
        let hash = key_hash(key);
        self.table
            .find_mut(hash, |(h, k, _)| *h == hash && k.matches(key))
            .map(|(_, _, v)| v)
    }

    /// The value of `key`, made by `make` (and the key copied) if absent.
    pub fn get_or_insert_with(&mut self, key: K::Ref<'_>, make: impl FnOnce() -> V) -> &mut V {
        let hash = key_hash(key);
        let entry = self.table.entry(
            hash,
            |(h, k, _)| *h == hash && k.matches(key),
            |(h, _, _)| *h,
        );
        &mut entry
            .or_insert_with(|| (hash, K::from_part(key), make()))
            .into_mut()
            .2
    }

    /// Folds another set of values into this one: `fold` takes a value of
    /// the same key into the one kept. The smaller set is walked into the
    /// larger, so merging into an empty set costs nothing; `fold` must
    /// therefore give the same result whichever value it is handed.
    pub fn merge(&mut self, mut theirs: Keyed<K, V>, mut fold: impl FnMut(&mut V, V)) {
        if theirs.len() > self.len() {
            std::mem::swap(self, &mut theirs);
        }
        for (hash, k, v) in theirs.table {
            match self.table.entry(
                hash,
                |(h, mine, _)| *h == hash && mine.matches(k.as_part()),
                |(h, _, _)| *h,
            ) {
                Entry::Occupied(mut e) => fold(&mut e.get_mut().2, v),
                Entry::Vacant(e) => {
                    e.insert((hash, k, v));
                }
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table.iter().map(|(_, k, v)| (k, v))
    }
}

impl<K, V> IntoIterator for Keyed<K, V> {
    type Item = (K, V);
    type IntoIter =
        std::iter::Map<hashbrown::hash_table::IntoIter<Slot<K, V>>, fn(Slot<K, V>) -> (K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.table.into_iter().map(|(_, k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    type Key = (Box<str>, Box<str>, i64);

    fn text(rng: &mut fastrand::Rng) -> String {
        // Few distinct texts, so keys repeat and differ in one part only.
        ["a", "b", "ab", "", "é"][rng.usize(..5)].to_string()
    }

    /// Counted by borrowed keys and merged in pieces, the counts are those
    /// of a `HashMap` of owned keys fed the same keys: a key is found
    /// exactly when all its parts are equal.
    #[test]
    fn borrowed_lookups_and_merges_count_as_a_map_of_owned_keys() {
        type Counts = HashMap<(String, String, i64), u64>;
        let mut rng = fastrand::Rng::with_seed(3);
        for round in 0..50 {
            let mut expected = Counts::new();
            let mut pieces: Vec<(Keyed<Key, u64>, Counts)> =
                (0..3).map(|_| Default::default()).collect();
            for _ in 0..rng.usize(0..200) {
                let (a, b, d) = (text(&mut rng), text(&mut rng), rng.i64(-2..2));
                *expected.entry((a.clone(), b.clone(), d)).or_default() += 1;
                let (piece, counts) = &mut pieces[rng.usize(..3)];
                let count = counts.entry((a.clone(), b.clone(), d)).or_default();
                // Found by `get_mut` exactly when there, else made.
                match piece.get_mut((&a, &b, d)) {
                    Some(n) => {
                        assert_eq!(*n, *count);
                        *n += 1;
                    }
                    None => {
                        assert_eq!(*count, 0);
                        *piece.get_or_insert_with((&a, &b, d), || 0) += 1;
                    }
                }
                *count += 1;
            }
            // Every piece answers for its own keys, and only those.
            for (piece, counts) in &pieces {
                assert_eq!(piece.len(), counts.len());
                for a in ["a", "b", "ab", "", "é"] {
                    for b in ["a", "b", "ab", "", "é"] {
                        for d in -2..2 {
                            let want = counts.get(&(a.into(), b.into(), d));
                            assert_eq!(piece.get((a, b, d)), want, "{a:?} {b:?} {d}");
                        }
                    }
                }
            }
            let pieces: Vec<Keyed<Key, u64>> = pieces.into_iter().map(|(p, _)| p).collect();
            let mut all = Keyed::default();
            for p in pieces {
                all.merge(p, |mine, theirs| *mine += theirs);
            }
            let got: HashMap<(String, String, i64), u64> = all
                .into_iter()
                .map(|((a, b, d), n)| ((a.into(), b.into(), d), n))
                .collect();
            assert_eq!(got, expected, "round {round}");
        }
    }

    /// Either side may be the larger: the keys of both are kept, values
    /// of a shared key are folded, and into an empty set the other's
    /// table moves whole (its values stay where they are) instead of
    /// being walked key by key.
    #[test]
    fn a_larger_set_merged_in_keeps_every_key_once() {
        let set = |kv: &[(&str, u32)]| -> Keyed<Box<str>, u32> {
            let mut k = Keyed::default();
            for (key, v) in kv {
                *k.get_or_insert_with(*key, || 0) += v;
            }
            k
        };
        let sorted = |k: Keyed<Box<str>, u32>| {
            let mut v: Vec<(Box<str>, u32)> = k.into_iter().collect();
            v.sort();
            v
        };
        let want = sorted(set(&[("a", 1), ("b", 12), ("c", 20), ("d", 30)]));
        for (mine, theirs) in [
            (
                set(&[("a", 1), ("b", 2)]),
                set(&[("b", 10), ("c", 20), ("d", 30)]),
            ),
            (
                set(&[("b", 10), ("c", 20), ("d", 30)]),
                set(&[("a", 1), ("b", 2)]),
            ),
        ] {
            let mut mine = mine;
            mine.merge(theirs, |m, v| *m += v);
            assert_eq!(sorted(mine), want);
        }
        let theirs = set(&[("d", 30)]);
        let before = theirs.get("d").map(|v| v as *const u32);
        let mut mine = Keyed::default();
        mine.merge(theirs, |m, v| *m += v);
        assert_eq!(mine.get("d").map(|v| v as *const u32), before);
    }

    #[test]
    fn tuple_keys_merge_by_every_part() {
        let mut small: Keyed<(Box<str>, i64), u32> = Keyed::default();
        *small.get_or_insert_with(("x", 1), || 0) += 1;
        let mut large: Keyed<(Box<str>, i64), u32> = Keyed::default();
        for d in 0..10 {
            *large.get_or_insert_with(("x", d), || 0) += 10;
        }
        small.merge(large, |mine, theirs| *mine += theirs);
        assert_eq!(small.len(), 10);
        assert_eq!(small.get_mut(("x", 1)).copied(), Some(11));
        assert_eq!(small.get_mut(("x", 2)).copied(), Some(10));
        assert_eq!(small.get_mut(("y", 1)), None);
    }
}
