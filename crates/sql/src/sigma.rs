//! Sigma detection rules as SQL predicates over the events table, with the
//! embedded engine's semantics: the same log-source mappings and candidate
//! paths (first that has a value wins, the wrapped record before the root),
//! the same string, number, null, `exists`, `cidr` and `fieldref` tests, and
//! the same condition logic. Whatever would behave differently is refused.

use std::collections::BTreeMap;

use tokenward_event::flat::{SELECTOR_KEYS, SELECTOR_VALUE_MAX};
use tokenward_event::EventKind;
use tokenward_sigma::cond::Cond;
use tokenward_sigma::matcher::{Cmp, StrTest};
use tokenward_sigma::section::{FieldId, Item, Leaf, PathSpec, Search, Section};
use tokenward_sigma::RuleSet;

use crate::dialect::Dialect;

/// Compiles the rules of one set; field expressions are collected once per
/// field and become columns (`f_<id>`) of the scan.
pub(crate) struct SigmaCompiler<'a> {
    pub(crate) d: Dialect,
    pub(crate) set: &'a RuleSet,
    /// Field id -> its value-array expression.
    pub(crate) columns: BTreeMap<FieldId, String>,
    /// Whether some rule searches keywords (the `words` column).
    pub(crate) words: bool,
    /// Candidate path key -> (column number, event kinds it is read for,
    /// as SQL literals).
    keys: BTreeMap<String, (usize, Vec<String>)>,
    /// Event kinds (SQL literals) of the mapping being compiled.
    kinds: Vec<String>,
}

/// The map key hunt's flattened paths use for a mapping path
/// (tokenward_event::flat), or why the path cannot be reached that way.
pub(crate) fn path_key(p: &PathSpec) -> Result<String, String> {
    if p.head().is_empty() {
        return Err("a mapping path that starts at the record itself".into());
    }
    let mut key = p.head().to_ascii_lowercase();
    for (i, (k, v, rest)) in p.steps().iter().enumerate() {
        let k = k.to_ascii_lowercase();
        if !SELECTOR_KEYS.contains(&k.as_str()) {
            return Err(format!(
                "selector `[{k}=...]`: the export writes selectors on {} only",
                SELECTOR_KEYS.join(", ")
            ));
        }
        if v.len() > SELECTOR_VALUE_MAX {
            return Err(format!(
                "selector value longer than {SELECTOR_VALUE_MAX} bytes"
            ));
        }
        if rest.is_empty() && i + 1 < p.steps().len() {
            return Err("two selectors on one object".into());
        }
        key.push_str(&format!("[{k}={}]", v.to_ascii_lowercase()));
        if !rest.is_empty() {
            key.push('.');
            key.push_str(&rest.to_ascii_lowercase());
        }
    }
    Ok(key)
}

impl<'a> SigmaCompiler<'a> {
    pub(crate) fn new(d: Dialect, set: &'a RuleSet) -> Self {
        SigmaCompiler {
            d,
            set,
            columns: BTreeMap::new(),
            words: false,
            keys: BTreeMap::new(),
            kinds: Vec::new(),
        }
    }

    /// The column holding the values of one candidate path (`k_<n>`),
    /// computed for events of the given kinds only.
    fn key_column(&mut self, key: String, kinds: &[String]) -> String {
        let n = self.keys.len();
        let entry = self.keys.entry(key).or_insert_with(|| (n, Vec::new()));
        for k in kinds {
            if !entry.1.contains(k) {
                entry.1.push(k.clone());
            }
        }
        format!("k_{}", entry.0)
    }

    /// The column of the values at a flattened path (inner record first),
    /// read for events of `kinds`: what `Event::get_all` finds there.
    pub(crate) fn path_values(&mut self, key: &str, kinds: &[EventKind]) -> String {
        let kinds: Vec<String> = kinds.iter().map(|k| self.d.lit(k.as_str())).collect();
        self.key_column(key.to_string(), &kinds)
    }

    /// Values of a field under a mapping: its first candidate path that
    /// has any.
    fn field_expr(&mut self, paths: &[PathSpec], kinds: &[String]) -> Result<String, String> {
        let keys = paths.iter().map(path_key).collect::<Result<Vec<_>, _>>()?;
        let cols: Vec<String> = keys
            .into_iter()
            .map(|k| self.key_column(k, kinds))
            .collect();
        let mut it = cols.iter().rev();
        let mut expr = it.next().ok_or("a field without paths")?.clone();
        for c in it {
            expr = self.d.if_(&self.d.not_empty(c), c, &expr);
        }
        Ok(expr)
    }

    /// The column of a field (`f_<id>`), for the mapping entered last.
    pub(crate) fn column(&mut self, id: FieldId) -> Result<String, String> {
        if !self.columns.contains_key(&id) {
            let e = self.field_expr(&self.set.fields.paths[id as usize], &self.kinds.clone())?;
            self.columns.insert(id, e);
        }
        Ok(format!("f_{id}"))
    }

    /// The scan's derived columns, in the order they must be computed:
    /// per candidate path its values in the wrapped record (`w_`) and at
    /// the root (`r_`), then which of them counts (`k_`), then the fields
    /// (`f_`) and the keyword values. Each level is one step of the query.
    pub(crate) fn levels(&self) -> Vec<Vec<(String, String)>> {
        let d = self.d;
        let at = |key: &str| {
            d.concat(
                &d.map_get("fields_read", key),
                &d.map_get("objects_read", key),
            )
        };
        // Every key a lookup may ask for: each candidate path, at the root
        // and under each wrapper.
        let mut wanted = Vec::new();
        for key in self.keys.keys() {
            wanted.push(d.lit(key));
            for w in tokenward_event::event::WRAPPERS {
                wanted.push(d.lit(&format!("{}.{key}", w.to_ascii_lowercase())));
            }
        }
        let narrowed = vec![
            (
                "fields_read".to_string(),
                d.map_only(&d.ident("fields"), &wanted),
            ),
            (
                "objects_read".to_string(),
                d.map_only(&d.ident("objects"), &wanted),
            ),
        ];
        let inner = d.ident("inner");
        let kind = d.ident("log_kind");
        let mut lookups = Vec::new();
        let mut chosen = Vec::new();
        let mut keys: Vec<(&String, &(usize, Vec<String>))> = self.keys.iter().collect();
        keys.sort_by_key(|(_, (n, _))| *n);
        for (key, (n, kinds)) in keys {
            // Values are looked up only for events some rule reading them
            // applies to.
            let only = format!("{kind} IN ({})", kinds.join(", "));
            let wrapped = at(&d.concat_str(&[&inner, "'.'", &d.lit(key)]));
            lookups.push((
                format!("w_{n}"),
                d.if_(
                    &format!("{only} AND {inner} <> ''"),
                    &wrapped,
                    d.empty_array(),
                ),
            ));
            lookups.push((
                format!("r_{n}"),
                d.if_(&only, &at(&d.lit(key)), d.empty_array()),
            ));
            chosen.push((
                format!("k_{n}"),
                d.if_(
                    &d.not_empty(&format!("w_{n}")),
                    &format!("w_{n}"),
                    &format!("r_{n}"),
                ),
            ));
        }
        let fields: Vec<(String, String)> = self
            .columns
            .iter()
            .map(|(id, e)| (format!("f_{id}"), e.clone()))
            .collect();
        let mut derived = Vec::new();
        for id in self.columns.keys() {
            derived.push((format!("n_{id}"), d.non_null(&format!("f_{id}"))));
            derived.push((
                format!("l_{id}"),
                d.map(&d.non_null(&format!("f_{id}")), "x", &d.lower("x")),
            ));
        }
        if self.words {
            let words = d.non_null(&d.all_values(&d.ident("fields")));
            derived.push(("words".into(), words.clone()));
            derived.push(("words_l".into(), d.map(&words, "x", &d.lower("x"))));
        }
        vec![narrowed, lookups, chosen, fields, derived]
    }

    /// The rule's predicates, one per log source, each with the event kinds
    /// its records are: an event matches when it matches the predicate of
    /// a source whose records it is.
    pub(crate) fn rule(
        &mut self,
        compiled: &[(usize, Section)],
    ) -> Result<Vec<(Vec<EventKind>, String)>, String> {
        let preds = self.per_mapping(compiled)?;
        Ok(compiled
            .iter()
            .zip(preds)
            .map(|((mi, _), p)| (self.set.mappings[*mi].kinds.clone(), p))
            .collect())
    }

    /// Per log source of a rule, the predicate that the event is a record
    /// of it and matches the detection compiled for it.
    pub(crate) fn per_mapping(
        &mut self,
        compiled: &[(usize, Section)],
    ) -> Result<Vec<String>, String> {
        let mut alts = Vec::new();
        for (mi, sec) in compiled {
            let m = &self.set.mappings[*mi];
            let kinds = self.enter(*mi);
            let mut parts = vec![format!(
                "{} IN ({})",
                self.d.ident("log_kind"),
                kinds.join(", ")
            )];
            if !m.require_any.is_empty() {
                let mut any = Vec::new();
                for f in &m.require_any {
                    let v = self.field_expr(&[PathSpec::parse(f)], &kinds)?;
                    any.push(self.d.any(&v, "x", "x IS NOT NULL"));
                }
                parts.push(format!("({})", any.join(" OR ")));
            }
            parts.push(self.cond(&sec.cond, sec)?);
            alts.push(format!("({})", parts.join(" AND ")));
        }
        Ok(alts)
    }

    /// Compiles what follows for the log source of mapping `mi`; returns
    /// its event kinds as SQL literals.
    pub(crate) fn enter(&mut self, mi: usize) -> Vec<String> {
        self.kinds = self.set.mappings[mi]
            .kinds
            .iter()
            .map(|k| self.d.lit(k.as_str()))
            .collect();
        self.kinds.clone()
    }

    fn cond(&mut self, c: &Cond, sec: &Section) -> Result<String, String> {
        Ok(match c {
            Cond::Id(i) => self.search(&sec.searches[*i])?,
            Cond::Not(x) => format!("(NOT {})", self.cond(x, sec)?),
            Cond::And(v) => self.join(v, sec, " AND ")?,
            Cond::Or(v) => self.join(v, sec, " OR ")?,
            Cond::Of(n, ids) => {
                let parts = ids
                    .iter()
                    .map(|i| self.search(&sec.searches[*i]))
                    .collect::<Result<Vec<_>, _>>()?;
                if *n == usize::MAX {
                    format!("({})", parts.join(" AND "))
                } else if *n <= 1 {
                    format!("({})", parts.join(" OR "))
                } else {
                    let ints: Vec<String> = parts.iter().map(|p| self.d.if_(p, "1", "0")).collect();
                    format!("(({}) >= {n})", ints.join(" + "))
                }
            }
        })
    }

    fn join(&mut self, v: &[Cond], sec: &Section, op: &str) -> Result<String, String> {
        let parts = v
            .iter()
            .map(|x| self.cond(x, sec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("({})", parts.join(op)))
    }

    fn search(&mut self, s: &Search) -> Result<String, String> {
        match s {
            Search::And(items) => {
                let parts = items
                    .iter()
                    .map(|i| self.item(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(" AND ")))
            }
            Search::Or(alts) => {
                let parts = alts
                    .iter()
                    .map(|a| self.search(a))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(" OR ")))
            }
        }
    }

    fn item(&mut self, it: &Item) -> Result<String, String> {
        let d = self.d;
        let vals = match it.field {
            Some(f) => self.column(f)?,
            None => {
                self.words = true;
                "words".to_string()
            }
        };
        // Non-null values, and the same lower-cased, computed once per
        // field in the scan rather than once per value tested.
        let (nn, low) = match it.field {
            Some(f) => (format!("n_{f}"), format!("l_{f}")),
            // The keyword values hold no nulls.
            None => ("words".to_string(), "words_l".to_string()),
        };
        let mut tests = Vec::new();
        // Plain values of a long list become one set lookup per case mode,
        // as the embedded engine's hash sets do.
        let (mut cased, mut folded, mut ranges) = (Vec::new(), Vec::new(), Vec::new());
        for l in &it.leaves {
            if !it.all {
                if let Leaf::Cidr(c) = l {
                    ranges.push(ipv4_range(c)?);
                    continue;
                }
                if let Leaf::Str(sm, None) = l {
                    if let StrTest::Exact(s) = &sm.test {
                        if sm.cased {
                            cased.push(d.lit(s));
                        } else {
                            folded.push(d.lit(s));
                        }
                        continue;
                    }
                }
            }
            tests.push(self.leaf(l, &vals, &nn, &low)?);
        }
        for (set, arr) in [(cased, &nn), (folded, &low)] {
            match set.len() {
                0 => {}
                1 => tests.push(d.any(arr, "x", &format!("x = {}", set[0]))),
                _ => tests.push(d.any(arr, "x", &d.in_set("x", &set))),
            }
        }
        if !ranges.is_empty() {
            // Each value is read as an address once, then tried against
            // every range.
            let within: Vec<String> = ranges
                .iter()
                .map(|(lo, hi)| format!("n BETWEEN {lo} AND {hi}"))
                .collect();
            tests.push(d.any(
                &d.map(&nn, "x", &d.ipv4_number("x")),
                "n",
                &within.join(" OR "),
            ));
        }
        let body = if it.neq {
            format!("(NOT ({}))", tests.join(" OR "))
        } else if it.all {
            format!("({})", tests.join(" AND "))
        } else {
            format!("({})", tests.join(" OR "))
        };
        let absent_can_match = it
            .leaves
            .iter()
            .any(|l| matches!(l, Leaf::Null | Leaf::Exists(false)));
        Ok(if it.field.is_some() && !absent_can_match {
            // An absent field fails every other test, `neq` included.
            format!("({} AND {body})", d.not_empty(&vals))
        } else {
            body
        })
    }

    fn leaf(&mut self, l: &Leaf, vals: &str, nn: &str, low: &str) -> Result<String, String> {
        let d = self.d;
        Ok(match l {
            Leaf::Str(sm, num) => {
                // Uncased tests run on the lower-cased values (the rule's
                // text is lower-cased already); patterns carry their own
                // case flag and run on the values as written.
                let arr = match (&sm.test, sm.cased) {
                    (StrTest::Wildcard(..), _) | (_, true) => nn,
                    _ => low,
                };
                let x = "x";
                let mut t = match &sm.test {
                    StrTest::Exact(s) => format!("{x} = {}", d.lit(s)),
                    StrTest::Prefix(s) => d.starts_with(x, &d.lit(s)),
                    StrTest::Suffix(s) => d.ends_with(x, &d.lit(s)),
                    StrTest::Contains(s, _) => d.contains(x, &d.lit(s)),
                    StrTest::Wildcard(_, toks) => d.regex("x", &d.wildcard_regex(toks, sm.cased)),
                    StrTest::Regex(r) => {
                        return Err(format!(
                            "regular expression {:?}: Rust, RE2 and Java regex syntax and semantics differ, so it is not converted",
                            r.as_str()
                        ))
                    }
                };
                if let Some(n) = num {
                    // Lower-casing leaves a number's text a number.
                    t = format!("({t} OR {} = {})", d.number("x"), d.float(*n));
                }
                d.any(arr, "x", &t)
            }
            Leaf::Null => format!("(NOT {} OR {})", d.not_empty(vals), d.has_null(vals)),
            Leaf::Exists(true) => d.not_empty(vals),
            Leaf::Exists(false) => format!("(NOT {})", d.not_empty(vals)),
            Leaf::Num(c, n) => d.any(
                nn,
                "x",
                &format!("{} {} {}", d.number("x"), cmp_op(*c), d.float(*n)),
            ),
            Leaf::Time(..) => {
                return Err(
                    "time-part modifiers (minute..year) read times with tokenward's timestamp parser, which the engines do not share"
                        .into(),
                )
            }
            Leaf::Cidr(c) => {
                let range = ipv4_range(c)?;
                d.any(
                    &d.map(nn, "x", &d.ipv4_number("x")),
                    "n",
                    &format!("n BETWEEN {} AND {}", range.0, range.1),
                )
            }
            Leaf::FieldRef { other, how, cased } => {
                self.column(*other)?;
                let (mine, others) = if *cased {
                    (nn.to_string(), format!("n_{other}"))
                } else {
                    (low.to_string(), format!("l_{other}"))
                };
                let t = match how {
                    1 => d.starts_with("x", "y"),
                    2 => d.ends_with("x", "y"),
                    3 => d.contains("x", "y"),
                    _ => "x = y".to_string(),
                };
                d.any(&mine, "x", &d.any(&others, "y", &t))
            }
        })
    }
}

/// The IPv4 range of a `cidr` value as numbers, first and last address.
fn ipv4_range(c: &tokenward_sigma::matcher::Cidr) -> Result<(u64, u64), String> {
    let std::net::IpAddr::V4(a) = c.addr() else {
        return Err(format!(
            "IPv6 range {}/{}: only IPv4 ranges are compiled",
            c.addr(),
            c.prefix()
        ));
    };
    let bits = 32 - u32::from(c.prefix());
    let lo = (u64::from(u32::from(a)) >> bits) << bits;
    Ok((lo, lo + ((1u64 << bits) - 1)))
}

fn cmp_op(c: Cmp) -> &'static str {
    match c {
        Cmp::Lt => "<",
        Cmp::Lte => "<=",
        Cmp::Gt => ">",
        Cmp::Gte => ">=",
        Cmp::Eq => "=",
    }
}
