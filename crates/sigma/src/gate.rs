//! Which rules of a log source can match an event, found with a few hash
//! lookups of its field values instead of by trying every rule.
//!
//! Most rules require one field to equal one of a few values
//! (`ResultType: 50126`, `Operation: Set-Mailbox`): that field-value pair
//! is the rule's *gate*. An event none of whose values opens a rule's gate
//! cannot match the rule, so the rule is not evaluated. Rules without a
//! gate (negations only, wildcards, keywords) are always evaluated. The
//! gate is only ever a condition the rule cannot match without, so
//! skipping changes no result.

use std::collections::HashMap;

use crate::cond::Cond;
use crate::matcher::StrTest;
use crate::section::{EvalCtx, FieldId, Item, Leaf, Search, Section};

/// A value that opens a gate.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Key {
    /// Equal as written.
    Cased(String),
    /// Equal after lower-casing (held lower-cased).
    Folded(String),
    /// Equal as a number (the bits of the number, zero unsigned).
    Number(u64),
}

/// What a rule cannot match without: some value of one of these fields
/// equal to its key.
pub(crate) type Gate = Vec<(FieldId, Key)>;

fn number_key(n: f64) -> u64 {
    // `0 == -0` as numbers; their bits differ.
    if n == 0.0 {
        0
    } else {
        n.to_bits()
    }
}

/// The gate of a detection section, if its condition has one.
pub(crate) fn of_section(d: &Section) -> Option<Gate> {
    of_cond(&d.cond, d)
}

/// Every gate of `parts` as one (each part must have one): the rule
/// matches only if one of the parts does.
fn union(parts: impl Iterator<Item = Option<Gate>>) -> Option<Gate> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Some(out)
}

fn of_cond(c: &Cond, d: &Section) -> Option<Gate> {
    let search = |i: usize| d.searches.get(i).and_then(of_search);
    match c {
        Cond::Id(i) => search(*i),
        Cond::Not(_) => None,
        // Every part is needed: any part's gate is the whole's.
        Cond::And(v) => v.iter().find_map(|x| of_cond(x, d)),
        Cond::Or(v) => union(v.iter().map(|x| of_cond(x, d))),
        Cond::Of(n, ids) if *n == usize::MAX => ids.iter().find_map(|&i| search(i)),
        Cond::Of(n, ids) if *n >= 1 => union(ids.iter().map(|&i| search(i))),
        Cond::Of(..) => None,
    }
}

fn of_search(s: &Search) -> Option<Gate> {
    match s {
        Search::And(items) => items.iter().find_map(of_item),
        Search::Or(alts) => union(alts.iter().map(of_search)),
    }
}

/// A field item whose every value is a plain equality: one of its values
/// must be the field's.
fn of_item(it: &Item) -> Option<Gate> {
    let f = it.field?;
    if it.neq || it.all || it.exact.is_some() || it.leaves.is_empty() {
        return None;
    }
    let mut gate = Vec::new();
    for l in &it.leaves {
        let Leaf::Str(m, number) = l else {
            return None;
        };
        let StrTest::Exact(text) = &m.test else {
            return None;
        };
        gate.push((
            f,
            if m.cased {
                Key::Cased(text.clone())
            } else {
                Key::Folded(text.clone())
            },
        ));
        if let Some(n) = number {
            gate.push((f, Key::Number(number_key(*n))));
        }
    }
    Some(gate)
}

/// Most rules of one log source that gates track: their places in the
/// source's rule list are bits of a fixed array.
const GATED_RULES_MAX: usize = 512;

/// A set of places in a log source's rule list, as bits.
pub(crate) type Places = [u64; GATED_RULES_MAX / 64];

/// Gate maps hash with foldhash: SipHash was most of a lookup, made for
/// every gated field of every event. Their keys come from the rules, so a
/// log cannot lengthen their probe sequences.
type GateMap<K> = HashMap<K, Vec<u16>, foldhash::fast::FixedState>;

/// The rules of one log source a field's values open, by place.
#[derive(Debug, Default)]
struct FieldGates {
    cased: GateMap<String>,
    folded: GateMap<String>,
    numbers: GateMap<u64>,
    /// Some text key could be an object's or array's JSON text: only then
    /// are such values written out to be looked up.
    json_keys: bool,
}

/// The gates of one log source's rules.
#[derive(Debug)]
pub(crate) struct SourceGates {
    /// Places of the rules evaluated whatever the event holds.
    open: Places,
    fields: Vec<(FieldId, FieldGates)>,
}

impl SourceGates {
    /// Gates of a log source's rules, given each rule's gate in list
    /// order; `None` when no rule has one (or there are too many rules
    /// to track).
    pub(crate) fn new(gates: &[Option<Gate>]) -> Option<SourceGates> {
        if gates.len() > GATED_RULES_MAX || gates.iter().all(Option::is_none) {
            return None;
        }
        let mut g = SourceGates {
            open: [0; GATED_RULES_MAX / 64],
            fields: Vec::new(),
        };
        for (place, gate) in gates.iter().enumerate() {
            let Some(gate) = gate else {
                g.open[place / 64] |= 1 << (place % 64);
                continue;
            };
            for (f, key) in gate {
                let at = match g.fields.iter().position(|(x, _)| x == f) {
                    Some(at) => at,
                    None => {
                        g.fields.push((*f, FieldGates::default()));
                        g.fields.len() - 1
                    }
                };
                let fg = &mut g.fields[at].1;
                if let Key::Cased(t) | Key::Folded(t) = key {
                    fg.json_keys |= t.starts_with(['{', '[']);
                }
                let places = match key {
                    Key::Cased(s) => fg.cased.entry(s.clone()).or_default(),
                    Key::Folded(s) => fg.folded.entry(s.clone()).or_default(),
                    Key::Number(n) => fg.numbers.entry(*n).or_default(),
                };
                let place = place as u16;
                if places.last() != Some(&place) {
                    places.push(place);
                }
            }
        }
        Some(g)
    }

    /// The places of the rules an event may match: the open ones and
    /// those some value of the event opens.
    pub(crate) fn opened(&self, ctx: &mut EvalCtx<'_, '_>) -> Places {
        let mut out = self.open;
        let mut mark = |places: Option<&Vec<u16>>| {
            for &p in places.into_iter().flatten() {
                out[usize::from(p) / 64] |= 1 << (p % 64);
            }
        };
        for (f, fg) in &self.fields {
            for v in ctx.values(*f).iter().filter(|v| !v.null) {
                if !fg.numbers.is_empty() {
                    mark(v.number().and_then(|n| fg.numbers.get(&number_key(n))));
                }
                // An object's or array's text is JSON: it equals no key
                // that does not open as JSON does.
                if v.is_tree() && !fg.json_keys {
                    continue;
                }
                if !fg.cased.is_empty() {
                    mark(fg.cased.get(v.text()));
                }
                if !fg.folded.is_empty() {
                    mark(fg.folded.get(v.lower()));
                }
            }
        }
        out
    }
}

/// Whether the rule at `place` is among `opened`.
pub(crate) fn is_open(opened: &Places, place: usize) -> bool {
    opened[place / 64] & (1 << (place % 64)) != 0
}
