//! Detection sections: search identifiers compiled to matchers, and their
//! evaluation over an event with every field value looked up once.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Range;

use serde_json::Value;
use tokenward_event::Words;

use super::cond::{self, Cond};
use super::mapping::Mapping;
use super::matcher::{
    as_number, as_time, base64, base64offset, cidr_literal, utf16, windash, Cidr, Cmp, SStr,
    StrMatch, StrTest, TimePart, Tok,
};
use super::yaml::Y;
use tokenward_event::{escapes, lookup_all, Event, PathBits};

/// Index of a resolved field in [`Fields`].
pub type FieldId = u32;

/// One candidate path, split at `[key=value]` selectors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathSpec {
    // Private, read through accessors: `head_bits` must stay the bits of
    // `head`, or lookups miss in release builds.
    head: String,
    steps: Vec<(String, String, String)>,
    /// The key-filter bits of `head`, worked out once for every event.
    head_bits: PathBits,
}

impl PathSpec {
    /// Plain dotted path before the first selector.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Selector steps: (selector key, value, rest path).
    pub fn steps(&self) -> &[(String, String, String)] {
        &self.steps
    }

    /// Parses a mapping path.
    pub fn parse(p: &str) -> PathSpec {
        let mut steps = Vec::new();
        let (head, mut rest) = match p.find('[') {
            Some(i) => (p[..i].to_string(), &p[i..]),
            None => {
                return PathSpec {
                    head: p.to_string(),
                    steps,
                    head_bits: PathBits::of(p),
                }
            }
        };
        while let Some(r) = rest.strip_prefix('[') {
            let Some(close) = r.find(']') else { break };
            let sel = &r[..close];
            let (k, v) = sel.split_once('=').unwrap_or((sel, ""));
            let after = r[close + 1..].trim_start_matches('.');
            let next = after.find('[').unwrap_or(after.len());
            steps.push((k.to_string(), v.to_string(), after[..next].to_string()));
            rest = &after[next..];
        }
        let head_bits = PathBits::of(&head);
        PathSpec {
            head,
            steps,
            head_bits,
        }
    }

    /// Appends the values the path reaches in `ev` to `out`.
    fn resolve<'e>(&self, ev: &'e Event, out: &mut Vec<&'e Value>) {
        if self.steps.is_empty() {
            ev.get_all_into(&self.head, &self.head_bits, out);
            return;
        }
        let mut cur = ev.get_all_at(&self.head, &self.head_bits);
        for (k, v, rest) in &self.steps {
            let mut next = Vec::new();
            for x in cur {
                let hit = x.as_object().is_some_and(|m| {
                    m.iter().any(|(mk, mv)| {
                        mk.eq_ignore_ascii_case(k)
                            && mv.as_str().is_some_and(|s| s.eq_ignore_ascii_case(v))
                    })
                });
                if hit {
                    lookup_all(x, rest, &mut next);
                }
            }
            cur = next;
        }
        out.extend(cur);
    }
}

/// Every field a rule set reads, each as its candidate paths.
#[derive(Debug, Default)]
pub struct Fields {
    /// Candidate paths by id.
    pub paths: Vec<Vec<PathSpec>>,
    /// Sigma name by id (for evidence).
    pub names: Vec<String>,
    index: HashMap<(usize, String), FieldId>,
}

impl Fields {
    /// Whether some field's path starts at the record itself (its first
    /// step is empty): matching it may then read anything in a record.
    pub fn some_path_starts_at_the_record(&self) -> bool {
        self.paths.iter().flatten().any(|p| p.head().is_empty())
    }

    /// The id of a Sigma field name under a mapping (interned).
    pub fn intern(&mut self, mapping_idx: usize, mapping: &Mapping, name: &str) -> FieldId {
        if let Some(&id) = self.index.get(&(mapping_idx, name.to_string())) {
            return id;
        }
        let id = self.paths.len() as FieldId;
        self.paths.push(
            mapping
                .paths(name)
                .iter()
                .map(|p| PathSpec::parse(p))
                .collect(),
        );
        self.names.push(name.to_string());
        self.index.insert((mapping_idx, name.to_string()), id);
        id
    }
}

/// A leaf test on one value.
#[derive(Clone, Debug)]
pub enum Leaf {
    /// String test; the number is set when the rule value was an integer,
    /// so `ResultType: 50126` also matches a numeric `50126.0`.
    Str(Box<StrMatch>, Option<f64>),
    /// `null`: the field is absent or null.
    Null,
    /// `exists`.
    Exists(bool),
    /// `gt`/`gte`/`lt`/`lte` on a number.
    Num(Cmp, f64),
    /// A time-part modifier, with a comparison.
    Time(TimePart, Cmp, f64),
    /// `cidr`.
    Cidr(Cidr),
    /// `fieldref`: compare with another field's values.
    FieldRef {
        /// The other field.
        other: FieldId,
        /// 0 equal, 1 startswith, 2 endswith, 3 contains.
        how: u8,
        /// Case-sensitive.
        cased: bool,
    },
}

/// A detection item: one field (or the whole event, for keywords) and its
/// values, OR-linked unless `all`.
#[derive(Clone, Debug)]
pub struct Item {
    /// `None` for keyword searches.
    pub field: Option<FieldId>,
    /// The tests.
    pub leaves: Vec<Leaf>,
    /// Every value must match.
    pub all: bool,
    /// `neq`: the field is present and matches none of the values.
    pub neq: bool,
    /// Many plain values, looked up in sets rather than tried one by one.
    pub exact: Option<Box<ExactSet>>,
}

/// The exact (wildcard-free) string values of a long value list, in hash
/// sets: a rule listing 100,000 user names costs one lookup per field
/// value, not 100,000 comparisons. Only for items matching any value.
#[derive(Clone, Debug, Default)]
pub struct ExactSet {
    cased: std::collections::HashSet<String>,
    folded: std::collections::HashSet<String>,
    /// `contains` values (wildcards on both sides), as one automaton each
    /// for cased and case-folded values.
    contains_cased: Option<aho_corasick::AhoCorasick>,
    contains_folded: Option<aho_corasick::AhoCorasick>,
    /// The other leaves, tried one by one.
    rest: Vec<usize>,
}

/// Value lists shorter than this are tried one by one.
const EXACT_SET_MIN: usize = 16;

impl ExactSet {
    fn of(leaves: &[Leaf], all: bool) -> Option<Box<ExactSet>> {
        if all {
            return None;
        }
        let mut x = ExactSet::default();
        let (mut cc, mut cf): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for (i, l) in leaves.iter().enumerate() {
            match l {
                Leaf::Str(sm, None) => match &sm.test {
                    StrTest::Exact(v) if sm.cased => {
                        x.cased.insert(v.clone());
                    }
                    StrTest::Exact(v) => {
                        x.folded.insert(v.clone());
                    }
                    StrTest::Contains(v, _) if sm.cased => cc.push(v),
                    StrTest::Contains(v, _) => cf.push(v),
                    _ => x.rest.push(i),
                },
                _ => x.rest.push(i),
            }
        }
        let n = x.cased.len() + x.folded.len() + cc.len() + cf.len();
        if n < EXACT_SET_MIN {
            return None;
        }
        let automaton = |pats: &[&str]| {
            (!pats.is_empty()).then(|| {
                aho_corasick::AhoCorasick::builder()
                    .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                    .build(pats)
                    .expect("literal patterns build")
            })
        };
        x.contains_cased = automaton(&cc);
        x.contains_folded = automaton(&cf);
        Some(Box::new(x))
    }
}

/// Estimated heap bytes of one compiled regex of this pattern: the
/// compiled program grows with the pattern, and each regex carries a cache
/// pool and its own prefilter.
fn regex_bytes(pattern: &str) -> usize {
    REGEX_BASE_BYTES + REGEX_BYTES_PER_PATTERN_BYTE * pattern.len()
}

const REGEX_BASE_BYTES: usize = 6 * 1024;
const REGEX_BYTES_PER_PATTERN_BYTE: usize = 64;

/// A search identifier.
#[derive(Clone, Debug)]
pub enum Search {
    /// A map: every item.
    And(Vec<Item>),
    /// A list: any element.
    Or(Vec<Search>),
}

/// A compiled detection section for one log-source mapping.
#[derive(Clone, Debug)]
pub struct Section {
    /// Identifier names, in file order.
    pub names: Vec<String>,
    /// Compiled identifiers.
    pub searches: Vec<Search>,
    /// The condition (a list of conditions is their `or`).
    pub cond: Cond,
    /// Fields the rule names, for evidence.
    pub fields: Vec<FieldId>,
}

impl Search {
    fn has_keywords(&self) -> bool {
        match self {
            Search::And(items) => items.iter().any(|i| i.field.is_none()),
            Search::Or(v) => v.iter().any(Search::has_keywords),
        }
    }

    fn keywords_in_words_alone(&self) -> bool {
        match self {
            Search::And(items) => items
                .iter()
                .filter(|i| i.field.is_none())
                .all(|i| i.exact.is_none() && i.leaves.iter().all(|l| contained_text(l).is_some())),
            Search::Or(v) => v.iter().all(Search::keywords_in_words_alone),
        }
    }
}

/// A keyword leaf that is a text some value contains, which [`EvalCtx`]
/// looks for in the record's [`Words`] alone: whether it is cased, and its
/// finder.
fn contained_text(leaf: &Leaf) -> Option<(bool, &memchr::memmem::Finder<'static>)> {
    let Leaf::Str(sm, None) = leaf else {
        return None;
    };
    let StrTest::Contains(needle, finder) = &sm.test else {
        return None;
    };
    (!needle.is_empty() && !needle.contains('\0')).then_some((sm.cased, &**finder))
}

impl Section {
    /// About how many bytes the compiled section holds on the heap: its
    /// value lists, sets, automata and regexes. An estimate (regexes do not
    /// report their size; they are counted by pattern length, calibrated
    /// against allocation counts in `tests/hostile_rules.rs`), used for the
    /// per-rule budget at load time.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        fn string(s: &str) -> usize {
            s.len()
        }
        fn leaf(l: &Leaf) -> usize {
            match l {
                Leaf::Str(sm, _) => {
                    size_of::<StrMatch>()
                        + match &sm.test {
                            StrTest::Exact(v) | StrTest::Prefix(v) | StrTest::Suffix(v) => {
                                string(v)
                            }
                            // The finder owns a copy of the needle and its tables.
                            StrTest::Contains(v, _) => 2 * string(v) + 320,
                            StrTest::Wildcard(re, toks) => {
                                regex_bytes(re.as_str())
                                    + toks.len() * size_of::<Tok>()
                                    + toks
                                        .iter()
                                        .map(|t| match t {
                                            Tok::Lit(x) => string(x),
                                            _ => 0,
                                        })
                                        .sum::<usize>()
                            }
                            StrTest::Regex(re) => regex_bytes(re.as_str()),
                        }
                }
                _ => 0,
            }
        }
        fn set(s: &std::collections::HashSet<String>) -> usize {
            s.capacity() * (size_of::<String>() + 1) + s.iter().map(|x| string(x)).sum::<usize>()
        }
        fn item(i: &Item) -> usize {
            let mut n =
                i.leaves.capacity() * size_of::<Leaf>() + i.leaves.iter().map(leaf).sum::<usize>();
            if let Some(x) = &i.exact {
                n += size_of::<ExactSet>()
                    + set(&x.cased)
                    + set(&x.folded)
                    + x.rest.capacity() * size_of::<usize>();
                for a in [&x.contains_cased, &x.contains_folded]
                    .into_iter()
                    .flatten()
                {
                    n += a.memory_usage();
                }
            }
            n
        }
        fn search(s: &Search) -> usize {
            match s {
                Search::And(items) => {
                    items.capacity() * size_of::<Item>() + items.iter().map(item).sum::<usize>()
                }
                Search::Or(v) => {
                    v.capacity() * size_of::<Search>() + v.iter().map(search).sum::<usize>()
                }
            }
        }
        self.searches.iter().map(search).sum::<usize>()
            + self
                .names
                .iter()
                .map(|n| size_of::<String>() + string(n))
                .sum::<usize>()
    }

    /// Whether a search of the section matches text anywhere in a record
    /// (keywords) rather than in named fields.
    pub fn has_keywords(&self) -> bool {
        self.searches.iter().any(Search::has_keywords)
    }

    /// Whether its keywords are found in the record's [`Words`] alone:
    /// each is a text some value contains (not a value's start, end or
    /// whole, a pattern, or one of a set of many values, which read the
    /// values one by one from the record).
    pub fn keywords_in_words_alone(&self) -> bool {
        self.searches.iter().all(Search::keywords_in_words_alone)
    }
}

/// What compiling a value can run into.
#[derive(Debug)]
pub enum CompileError {
    /// The rule is wrong.
    Invalid(String),
    /// A placeholder has no values (the rule is fine but cannot run).
    Placeholder(String),
}

impl From<String> for CompileError {
    fn from(s: String) -> Self {
        CompileError::Invalid(s)
    }
}

/// Placeholder values for `expand` (`%name%` -> values).
pub type Placeholders = HashMap<String, Vec<String>>;

struct Ctx<'a> {
    fields: &'a mut Fields,
    mapping_idx: usize,
    mapping: &'a Mapping,
    placeholders: &'a Placeholders,
    used: Vec<FieldId>,
}

const MODIFIERS: &[&str] = &[
    "contains",
    "startswith",
    "endswith",
    "all",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "base64",
    "base64offset",
    "utf16le",
    "utf16be",
    "utf16",
    "wide",
    "windash",
    "exists",
    "fieldref",
    "gt",
    "gte",
    "lt",
    "lte",
    "neq",
    "expand",
    "cased",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
];

fn expand(s: &str, ph: &Placeholders) -> Result<Vec<String>, CompileError> {
    // Split into literal text and %name% placeholders; `\%` is a literal %.
    let mut parts: Vec<Result<String, String>> = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'%') {
            // Keep the escape for the wildcard parser? `%` is not a
            // wildcard, so the plain character is enough.
            lit.push('%');
            chars.next();
        } else if c == '%' {
            let mut name = String::new();
            let mut closed = false;
            for n in chars.by_ref() {
                if n == '%' {
                    closed = true;
                    break;
                }
                name.push(n);
            }
            if !closed {
                lit.push('%');
                lit.push_str(&name);
            } else {
                parts.push(Ok(std::mem::take(&mut lit)));
                parts.push(Err(name));
            }
        } else {
            lit.push(c);
        }
    }
    parts.push(Ok(lit));
    let mut outs = vec![String::new()];
    for p in parts {
        match p {
            Ok(l) => outs.iter_mut().for_each(|o| o.push_str(&l)),
            Err(name) => {
                let vals = ph.get(&name).ok_or_else(|| {
                    CompileError::Placeholder(format!("placeholder %{name}% has no values"))
                })?;
                if vals.is_empty() {
                    return Err(CompileError::Placeholder(format!(
                        "placeholder %{name}% has no values"
                    )));
                }
                outs = outs
                    .iter()
                    .flat_map(|o| vals.iter().map(move |v| format!("{o}{v}")))
                    .collect();
            }
        }
    }
    Ok(outs)
}

fn cmp_of(m: &str) -> Option<Cmp> {
    Some(match m {
        "gt" => Cmp::Gt,
        "gte" => Cmp::Gte,
        "lt" => Cmp::Lt,
        "lte" => Cmp::Lte,
        _ => return None,
    })
}

fn time_of(m: &str) -> Option<TimePart> {
    Some(match m {
        "minute" => TimePart::Minute,
        "hour" => TimePart::Hour,
        "day" => TimePart::Day,
        "week" => TimePart::Week,
        "month" => TimePart::Month,
        "year" => TimePart::Year,
        _ => return None,
    })
}

fn number_of(v: &Y) -> Option<f64> {
    match v {
        Y::Int(i) => Some(*i as f64),
        Y::Float(f) => Some(*f),
        Y::Str(s) => as_number(s),
        _ => None,
    }
}

impl Ctx<'_> {
    fn field(&mut self, name: &str) -> FieldId {
        let id = self.fields.intern(self.mapping_idx, self.mapping, name);
        if !self.used.contains(&id) {
            self.used.push(id);
        }
        id
    }

    fn item(&mut self, key: &str, val: &Y) -> Result<Item, CompileError> {
        let mut parts = key.split('|');
        let fname = parts.next().unwrap_or("");
        let mods: Vec<&str> = parts.collect();
        for m in &mods {
            if !MODIFIERS.contains(m) {
                return Err(CompileError::Invalid(format!(
                    "unknown modifier `{m}` in `{key}`"
                )));
            }
            if matches!(*m, "i" | "m" | "s") && !mods.contains(&"re") {
                return Err(CompileError::Invalid(format!(
                    "modifier `{m}` is a regex flag and needs `re` (in `{key}`)"
                )));
            }
        }
        let has = |m: &str| mods.contains(&m);
        let field = if fname.is_empty() {
            None
        } else {
            Some(self.field(fname))
        };
        let values: Vec<&Y> = match val {
            Y::Seq(v) => v.iter().collect(),
            other => vec![other],
        };
        if values.is_empty() {
            return Err(CompileError::Invalid(format!(
                "`{key}` has an empty value list"
            )));
        }
        if has("all") && values.len() < 2 && field.is_some() {
            return Err(CompileError::Invalid(format!(
                "`all` needs a list of at least two values (in `{key}`)"
            )));
        }
        let cased = has("cased");
        let mut leaves = Vec::new();
        for v in values {
            self.leaves(key, field, &mods, cased, v, &mut leaves)?;
        }
        let exact = ExactSet::of(&leaves, has("all"));
        Ok(Item {
            field,
            leaves,
            all: has("all"),
            neq: has("neq"),
            exact,
        })
    }

    fn leaves(
        &mut self,
        key: &str,
        field: Option<FieldId>,
        mods: &[&str],
        cased: bool,
        v: &Y,
        out: &mut Vec<Leaf>,
    ) -> Result<(), CompileError> {
        let has = |m: &str| mods.contains(&m);
        if has("exists") {
            let Y::Bool(b) = v else {
                return Err(CompileError::Invalid(format!(
                    "`{key}`: exists takes true or false"
                )));
            };
            if field.is_none() {
                return Err(CompileError::Invalid("exists needs a field".into()));
            }
            out.push(Leaf::Exists(*b));
            return Ok(());
        }
        if matches!(v, Y::Null) {
            if field.is_none() {
                return Err(CompileError::Invalid("a keyword cannot be null".into()));
            }
            out.push(Leaf::Null);
            return Ok(());
        }
        if let Some(tp) = mods.iter().find_map(|m| time_of(m)) {
            let cmp = mods.iter().find_map(|m| cmp_of(m)).unwrap_or(Cmp::Eq);
            let n = number_of(v).ok_or_else(|| format!("`{key}`: {v:?} is not a number"))?;
            out.push(Leaf::Time(tp, cmp, n));
            return Ok(());
        }
        if let Some(cmp) = mods.iter().find_map(|m| cmp_of(m)) {
            let n = number_of(v).ok_or_else(|| format!("`{key}`: {v:?} is not a number"))?;
            out.push(Leaf::Num(cmp, n));
            return Ok(());
        }
        let text = match v {
            Y::Seq(_) | Y::Map(_) => {
                return Err(CompileError::Invalid(format!(
                    "`{key}`: values must be scalars"
                )))
            }
            other => other.scalar_text().unwrap_or_default(),
        };
        if has("fieldref") {
            let other = self.field(&text);
            let how = if has("startswith") {
                1
            } else if has("endswith") {
                2
            } else if has("contains") {
                3
            } else {
                0
            };
            out.push(Leaf::FieldRef { other, how, cased });
            return Ok(());
        }
        if has("cidr") {
            out.push(Leaf::Cidr(Cidr::parse(&text)?));
            return Ok(());
        }
        if has("re") {
            out.push(Leaf::Str(
                Box::new(StrMatch::regex(&text, has("i"), has("m"), has("s"))?),
                None,
            ));
            return Ok(());
        }
        let num = match v {
            Y::Int(i) => Some(*i as f64),
            _ => None,
        };
        let texts = if has("expand") {
            expand(&text, self.placeholders)?
        } else {
            vec![text]
        };
        let mut vals: Vec<SStr> = texts.iter().map(|t| SStr::parse(t)).collect();
        for m in mods {
            vals = match *m {
                "contains" => vals
                    .into_iter()
                    .map(|mut s| {
                        s.star_front();
                        s.star_back();
                        s
                    })
                    .collect(),
                "startswith" => vals
                    .into_iter()
                    .map(|mut s| {
                        s.star_back();
                        s
                    })
                    .collect(),
                "endswith" => vals
                    .into_iter()
                    .map(|mut s| {
                        s.star_front();
                        s
                    })
                    .collect(),
                "windash" => vals.iter().flat_map(windash).collect(),
                "base64" => vals.iter().map(base64).collect::<Result<_, _>>()?,
                "base64offset" => {
                    let mut o = Vec::new();
                    for s in &vals {
                        o.extend(base64offset(s)?);
                    }
                    o
                }
                "utf16le" | "wide" => vals
                    .iter()
                    .map(|s| utf16(s, false, false))
                    .collect::<Result<_, _>>()?,
                "utf16be" => vals
                    .iter()
                    .map(|s| utf16(s, true, false))
                    .collect::<Result<_, _>>()?,
                "utf16" => vals
                    .iter()
                    .map(|s| utf16(s, false, true))
                    .collect::<Result<_, _>>()?,
                _ => vals,
            };
        }
        if field.is_none() {
            // Keywords search the whole event: an unbounded match.
            for s in vals.iter_mut() {
                s.star_front();
                s.star_back();
            }
        }
        for s in &vals {
            out.push(Leaf::Str(Box::new(StrMatch::from_sstr(s, cased)?), num));
        }
        Ok(())
    }

    fn search(&mut self, name: &str, v: &Y) -> Result<Search, CompileError> {
        match v {
            Y::Map(m) => {
                if m.is_empty() {
                    return Err(CompileError::Invalid(format!("`{name}` is empty")));
                }
                let mut items = Vec::new();
                for (k, val) in m {
                    items.push(self.item(k, val)?);
                }
                Ok(Search::And(items))
            }
            Y::Seq(list) => {
                if list.is_empty() {
                    return Err(CompileError::Invalid(format!("`{name}` is an empty list")));
                }
                // Plain values form one keyword item; maps are alternatives.
                let mut alts = Vec::new();
                let mut kws = Vec::new();
                for x in list {
                    match x {
                        Y::Map(_) => alts.push(self.search(name, x)?),
                        Y::Seq(_) => {
                            return Err(CompileError::Invalid(format!(
                                "`{name}`: nested lists are not Sigma"
                            )))
                        }
                        other => kws.push(other.clone()),
                    }
                }
                if !kws.is_empty() {
                    alts.push(Search::And(vec![self.item("", &Y::Seq(kws))?]));
                }
                Ok(if alts.len() == 1 {
                    alts.remove(0)
                } else {
                    Search::Or(alts)
                })
            }
            Y::Null => Err(CompileError::Invalid(format!("`{name}` has no value"))),
            scalar => Ok(Search::And(vec![self.item("", scalar)?])),
        }
    }
}

/// Compiles a rule's `detection` section under one mapping.
pub fn compile(
    det: &Y,
    fields: &mut Fields,
    mapping_idx: usize,
    mapping: &Mapping,
    placeholders: &Placeholders,
) -> Result<Section, CompileError> {
    let Y::Map(m) = det else {
        return Err(CompileError::Invalid("detection must be a map".into()));
    };
    let mut ctx = Ctx {
        fields,
        mapping_idx,
        mapping,
        placeholders,
        used: Vec::new(),
    };
    let mut names = Vec::new();
    let mut searches = Vec::new();
    let mut condition = None;
    for (k, v) in m {
        if k == "condition" {
            condition = Some(v);
            continue;
        }
        if k == "timeframe" {
            return Err(CompileError::Invalid(
                "`timeframe` is Sigma v1 aggregation; use a correlation rule".into(),
            ));
        }
        searches.push(ctx.search(k, v)?);
        names.push(k.clone());
    }
    let condition = condition.ok_or_else(|| CompileError::Invalid("missing condition".into()))?;
    let conds: Vec<String> = match condition {
        Y::Seq(v) => v.iter().filter_map(Y::scalar_text).collect(),
        other => other.scalar_text().into_iter().collect(),
    };
    if conds.is_empty() {
        return Err(CompileError::Invalid("empty condition".into()));
    }
    let mut parsed = conds
        .iter()
        .map(|c| {
            cond::parse(c, &names).map_err(|e| {
                // The rule is the attacker's text: quote a bounded part.
                let shown: String = c.chars().take(80).collect();
                let more = if shown.len() < c.len() { "..." } else { "" };
                format!("condition `{shown}{more}`: {e}")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cond = if parsed.len() == 1 {
        parsed.remove(0)
    } else {
        Cond::Or(parsed)
    };
    Ok(Section {
        names,
        searches,
        cond,
        fields: ctx.used,
    })
}

/// One field value of an event, with its text, lower-cased text, number
/// and address made on demand: most values opened no gate and matched no
/// rule, and a number or object written out as text for nothing was an
/// allocation per value (the `status` object of every sign-in).
pub struct Fv<'e> {
    value: &'e Value,
    /// JSON null.
    pub null: bool,
    text: OnceCell<Cow<'e, str>>,
    /// `None` when the text is its own lower case.
    lower: OnceCell<Option<String>>,
    ip: OnceCell<Option<std::net::IpAddr>>,
}

impl<'e> Fv<'e> {
    fn of(v: &'e Value) -> Fv<'e> {
        Fv {
            value: v,
            null: v.is_null(),
            text: OnceCell::new(),
            lower: OnceCell::new(),
            ip: OnceCell::new(),
        }
    }

    /// The value as text (objects and arrays as compact JSON, null empty).
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| match self.value {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            Value::Null => Cow::Borrowed(""),
            Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            other => Cow::Owned(other.to_string()),
        })
    }

    /// Whether the value is an object or an array, whose text is JSON.
    pub fn is_tree(&self) -> bool {
        self.value.is_object() || self.value.is_array()
    }

    /// The value as a number, as [`as_number`] reads its text (a JSON
    /// number as itself: its text reads back as the same number).
    pub fn number(&self) -> Option<f64> {
        match self.value {
            Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
            Value::String(s) => as_number(s),
            _ => None,
        }
    }

    /// The value as an IP address (port and brackets removed), parsed once.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        *self
            .ip
            .get_or_init(|| tokenward_net::parse_client_ip(self.text()))
    }

    /// The lower-cased text.
    pub fn lower(&self) -> &str {
        // Most values (ids, addresses, codes) are lower-case ASCII
        // already: their text serves, with no copy for each value a rule
        // set compares ignoring case.
        self.lower
            .get_or_init(|| {
                let t = self.text();
                (!t.is_ascii() || t.bytes().any(|b| b.is_ascii_uppercase()))
                    .then(|| t.to_lowercase())
            })
            .as_deref()
            .unwrap_or_else(|| self.text())
    }
}

thread_local! {
    /// By field id: the number of the context ([`EvalCtx::number`]) that
    /// resolved the field last on this thread, and where its values are
    /// in that context's `vals`. Looking a field up by its id here, where
    /// each rule's items searched a list of the fields resolved so far,
    /// saves about 2 % of a hunt over sign-ins with the SigmaHQ rules,
    /// which resolve some 40 fields an event and look them up hundreds of
    /// times; keeping the table between events (a context's number tells
    /// its entries from older ones) saves clearing it for each.
    static RESOLVED: RefCell<Vec<(u64, u32, u32)>> = const { RefCell::new(Vec::new()) };
    /// The number of the next context made on this thread.
    static NEXT_CONTEXT: Cell<u64> = const { Cell::new(1) };
}

/// Per-event evaluation state: field values resolved once, on first use.
/// Stays on the thread that made it (its resolved fields are that
/// thread's).
pub struct EvalCtx<'e, 'f> {
    ev: &'e Event,
    fields: &'f Fields,
    /// Its entries in [`RESOLVED`]: unique on its thread.
    number: u64,
    /// Not `Send`: the number means nothing on another thread.
    on_this_thread: PhantomData<*const ()>,
    vals: Vec<Fv<'e>>,
    /// Scratch for the values a field's paths reach.
    reached: Vec<&'e Value>,
    words: Option<Vec<Fv<'e>>>,
    /// The words of an event built whole, joined: built once for the
    /// event, when a rule first searches for a keyword, and shared by
    /// every rule after. (A projected event carries its own.)
    own_words: Option<Words>,
}

fn scalars<'e>(v: &'e Value, out: &mut Vec<Fv<'e>>) {
    match v {
        Value::Object(m) => m.values().for_each(|x| scalars(x, out)),
        Value::Array(a) => a.iter().for_each(|x| scalars(x, out)),
        Value::Null => {}
        other => out.push(Fv::of(other)),
    }
}

impl<'e, 'f> EvalCtx<'e, 'f> {
    /// A fresh context for an event.
    pub fn new(ev: &'e Event, fields: &'f Fields) -> Self {
        let number = NEXT_CONTEXT.replace(NEXT_CONTEXT.get() + 1);
        EvalCtx {
            ev,
            fields,
            number,
            on_this_thread: PhantomData,
            vals: Vec::new(),
            reached: Vec::new(),
            words: None,
            own_words: None,
        }
    }

    /// The event.
    pub fn event(&self) -> &'e Event {
        self.ev
    }

    /// Where the values of field `id` are in `vals`.
    fn slot(&mut self, id: FieldId) -> Range<usize> {
        let at = id as usize;
        let known = RESOLVED.with_borrow(|r| {
            r.get(at)
                .filter(|&&(number, _, _)| number == self.number)
                .map(|&(_, start, end)| start as usize..end as usize)
        });
        if let Some(r) = known {
            return r;
        }
        self.reached.clear();
        for p in &self.fields.paths[id as usize] {
            p.resolve(self.ev, &mut self.reached);
            if !self.reached.is_empty() {
                break;
            }
        }
        let start = self.vals.len();
        self.vals.extend(self.reached.drain(..).map(Fv::of));
        let end = self.vals.len();
        RESOLVED.with_borrow_mut(|r| {
            if r.len() <= at {
                r.resize(self.fields.paths.len().max(at + 1), (0, 0, 0));
            }
            // An event's values number far fewer than 2^32.
            debug_assert!(u32::try_from(end).is_ok(), "{end} values");
            r[at] = (self.number, start as u32, end as u32);
        });
        start..end
    }

    /// The values of a field (empty when absent).
    pub fn values(&mut self, id: FieldId) -> &[Fv<'e>] {
        let r = self.slot(id);
        &self.vals[r]
    }

    /// The first non-null value of a field as text.
    pub fn first_text(&mut self, id: FieldId) -> Option<String> {
        self.values(id)
            .iter()
            .find(|v| !v.null)
            .map(|v| v.text().to_string())
    }

    fn words(&mut self) -> &[Fv<'e>] {
        if self.words.is_none() {
            let mut w = Vec::new();
            scalars(&self.ev.record, &mut w);
            self.words = Some(w);
        }
        self.words.as_deref().unwrap_or_default()
    }

    /// The words' texts joined: those the event carries, or those of its
    /// record, built on the first call.
    fn joined_words(&mut self) -> &Words {
        let ev = self.ev;
        match &ev.words {
            Some(w) => w,
            None => self
                .own_words
                .get_or_insert_with(|| Words::of_value(&ev.record)),
        }
    }

    /// A keyword leaf that a value holds somewhere (`contains`), searched
    /// for once in all the words' texts joined by zero bytes instead of in
    /// each word: a text without a zero byte is in the joined texts only
    /// where it is in one word. An activity record has some 50 words, and
    /// searching each for each keyword of SigmaHQ's Azure Activity keyword
    /// rules (after lowering each) was 8 % of a hunt over such records.
    /// `None` for other leaves.
    fn keyword_contained(&mut self, leaf: &Leaf) -> Option<bool> {
        let (cased, finder) = contained_text(leaf)?;
        let words = self.joined_words();
        let hay = if cased { words.text() } else { words.lower() };
        Some(finder.find(hay.as_bytes()).is_some())
    }

    fn leaf_on(&mut self, leaf: &Leaf, vals_of: Option<FieldId>) -> bool {
        if vals_of.is_none() {
            if let Some(found) = self.keyword_contained(leaf) {
                return found;
            }
        }
        // FieldRef needs two fields at once: resolve the other first.
        if let Leaf::FieldRef { other, how, cased } = leaf {
            let Some(f) = vals_of else { return false };
            let os = self.slot(*other);
            let fs = self.slot(f);
            let others = &self.vals[os];
            let mine = &self.vals[fs];
            return mine.iter().filter(|v| !v.null).any(|v| {
                others.iter().filter(|o| !o.null).any(|o| {
                    let (a, b) = if *cased {
                        (v.text(), o.text())
                    } else {
                        (v.lower(), o.lower())
                    };
                    match how {
                        1 => a.starts_with(b),
                        2 => a.ends_with(b),
                        3 => a.contains(b),
                        _ => a == b,
                    }
                })
            });
        }
        let vals: &[Fv<'e>] = match vals_of {
            Some(f) => {
                let r = self.slot(f);
                &self.vals[r]
            }
            None => {
                self.words();
                self.words.as_deref().unwrap_or_default()
            }
        };
        match leaf {
            Leaf::Null => vals.is_empty() || vals.iter().any(|v| v.null),
            Leaf::Exists(b) => vals.is_empty() != *b,
            Leaf::Str(sm, num) => vals.iter().filter(|v| !v.null).any(|v| {
                sm.is_match(v.text(), v.lower()) || num.is_some_and(|n| v.number() == Some(n))
            }),
            Leaf::Num(c, n) => vals
                .iter()
                .filter_map(|v| v.number())
                .any(|x| c.test(x, *n)),
            Leaf::Time(tp, c, n) => vals
                .iter()
                .filter_map(|v| as_time(v.text()))
                .any(|t| c.test(tp.of(t), *n)),
            Leaf::Cidr(c) => vals.iter().any(|v| v.ip().is_some_and(|ip| c.contains(ip))),
            Leaf::FieldRef { .. } => false,
        }
    }

    fn item(&mut self, it: &Item) -> bool {
        if let Some(f) = it.field {
            // An absent field matches only `null` and `exists: false`
            // items; everything else is simply false, so it never breaks
            // an `or` that another branch satisfies.
            let absent = self.values(f).is_empty();
            if absent
                && !it
                    .leaves
                    .iter()
                    .any(|l| matches!(l, Leaf::Null | Leaf::Exists(false)))
            {
                return false;
            }
        }
        if let Some(x) = &it.exact {
            let in_sets = {
                let vals: &[Fv<'e>] = match it.field {
                    Some(f) => {
                        let r = self.slot(f);
                        &self.vals[r]
                    }
                    None => {
                        self.words();
                        self.words.as_deref().unwrap_or_default()
                    }
                };
                vals.iter().filter(|v| !v.null).any(|v| {
                    x.cased.contains(v.text())
                        || x.folded.contains(v.lower())
                        || x.contains_cased
                            .as_ref()
                            .is_some_and(|a| a.is_match(v.text()))
                        || x.contains_folded
                            .as_ref()
                            .is_some_and(|a| a.is_match(v.lower()))
                })
            };
            let hit = in_sets
                || x.rest
                    .iter()
                    .any(|&i| self.leaf_on(&it.leaves[i], it.field));
            return hit != it.neq;
        }
        if it.neq {
            return !it.leaves.iter().any(|l| self.leaf_on(l, it.field));
        }
        if it.all {
            it.leaves.iter().all(|l| self.leaf_on(l, it.field))
        } else {
            it.leaves.iter().any(|l| self.leaf_on(l, it.field))
        }
    }

    fn search(&mut self, s: &Search) -> bool {
        match s {
            Search::And(items) => items.iter().all(|i| self.item(i)),
            Search::Or(alts) => alts.iter().any(|a| self.search(a)),
        }
    }

    /// Evaluates a detection.
    pub fn matches(&mut self, d: &Section) -> bool {
        // Identifiers are tested lazily and at most once; most rules have
        // few, so the memo lives on the stack.
        let mut small = [None; 16];
        let mut big;
        let memo: &mut [Option<bool>] = if d.searches.len() <= small.len() {
            &mut small[..]
        } else {
            big = vec![None; d.searches.len()];
            &mut big[..]
        };
        cond::eval(&d.cond, &mut |i| {
            if let Some(b) = memo[i] {
                return b;
            }
            let b = self.search(&d.searches[i]);
            memo[i] = Some(b);
            b
        })
    }
}

/// One way a record can satisfy a rule: every clause must have one of its
/// texts in the record's raw bytes.
pub type Alt = Vec<Vec<String>>;

/// Texts that must occur in a record's raw bytes for a detection to match
/// it: any one of the alternatives, each an AND of OR-clauses (a field
/// item needs its key name and every fragment of its value). `None` when
/// no such condition is known (e.g. a rule that is only a negation).
/// Fragments avoid characters some writer escapes
/// ([`tokenward_event::escapes`]), so they are found in JSON lines, JSON
/// arrays and JSON-in-a-string however they were written; matching is
/// ASCII case-insensitive.
pub fn required_literals(d: &Section, fields: &Fields) -> Option<Vec<Alt>> {
    fn frags(s: &str) -> Vec<String> {
        escapes::verbatim_runs(s)
            .filter(|p| p.len() >= escapes::SCREEN_TEXT_MIN)
            .map(str::to_string)
            .collect()
    }
    fn leaf(l: &Leaf) -> Option<Vec<Vec<String>>> {
        let lit = match l {
            Leaf::Str(sm, None) => sm.literal().map(str::to_string),
            Leaf::Str(sm, Some(n)) if n.fract() == 0.0 => sm.literal().map(str::to_string),
            // Short prefixes ("10.") are kept: a weak filter beats none.
            Leaf::Cidr(c) => return cidr_literal(c).map(|f| vec![vec![f]]),
            _ => None,
        }?;
        let f = frags(&lit);
        (!f.is_empty()).then(|| f.into_iter().map(|x| vec![x]).collect())
    }
    // The key a positive match on a field needs in the raw record: the last
    // plain step of one of its candidate paths.
    let key = |f: FieldId| -> Option<Vec<String>> {
        let mut out = Vec::new();
        for p in &fields.paths[f as usize] {
            let last = p.steps().last().map(|s| s.2.as_str()).unwrap_or(p.head());
            let k = last.rsplit('.').next().unwrap_or(last);
            if k.len() < escapes::SCREEN_TEXT_MIN || k.chars().any(escapes::may_be_escaped) {
                return None;
            }
            out.push(k.to_string());
        }
        (!out.is_empty()).then_some(out)
    };
    let weight = |a: &Alt| -> usize {
        a.iter()
            .map(|c| c.iter().map(String::len).min().unwrap_or(0))
            .sum()
    };
    let best = |sets: Vec<Option<Vec<Alt>>>| -> Option<Vec<Alt>> {
        sets.into_iter()
            .flatten()
            .max_by_key(|alts| alts.iter().map(weight).min().unwrap_or(0))
    };
    fn union(sets: Vec<Option<Vec<Alt>>>) -> Option<Vec<Alt>> {
        let mut out = Vec::new();
        for s in sets {
            out.extend(s?);
        }
        (!out.is_empty()).then_some(out)
    }
    let item = |it: &Item| -> Option<Vec<Alt>> {
        if it.neq {
            return None;
        }
        let k = match it.field {
            Some(f) => {
                if it
                    .leaves
                    .iter()
                    .any(|l| matches!(l, Leaf::Null | Leaf::Exists(false)))
                {
                    return None;
                }
                Some(key(f))
            }
            None => None,
        };
        // The key clause goes last: the prefilter relies on that to anchor
        // on values rather than on keys.
        let with_key = |mut a: Alt| -> Alt {
            if let Some(Some(kc)) = &k {
                a.push(kc.clone());
            }
            a
        };
        let leaves: Vec<Option<Vec<Vec<String>>>> = it.leaves.iter().map(leaf).collect();
        if it.all {
            let mut a = Vec::new();
            for l in leaves.into_iter().flatten() {
                a.extend(l);
            }
            let a = with_key(a);
            return (!a.is_empty()).then(|| vec![a]);
        }
        let mut alts = Vec::new();
        for l in leaves {
            match l {
                Some(cl) => alts.push(with_key(cl)),
                None => {
                    // A leaf without a literal: only the key is required.
                    let a = with_key(Vec::new());
                    if a.is_empty() {
                        return None;
                    }
                    alts.push(a);
                }
            }
        }
        (!alts.is_empty()).then_some(alts)
    };
    let search = |s: &Search| -> Option<Vec<Alt>> {
        fn go(
            s: &Search,
            item: &dyn Fn(&Item) -> Option<Vec<Alt>>,
            best: &dyn Fn(Vec<Option<Vec<Alt>>>) -> Option<Vec<Alt>>,
        ) -> Option<Vec<Alt>> {
            match s {
                Search::And(items) => best(items.iter().map(item).collect()),
                Search::Or(alts) => union(alts.iter().map(|a| go(a, item, best)).collect()),
            }
        }
        go(s, &item, &best)
    };
    fn cond(
        c: &Cond,
        d: &Section,
        search: &dyn Fn(&Search) -> Option<Vec<Alt>>,
        best: &dyn Fn(Vec<Option<Vec<Alt>>>) -> Option<Vec<Alt>>,
    ) -> Option<Vec<Alt>> {
        match c {
            Cond::Id(i) => search(&d.searches[*i]),
            Cond::Not(_) => None,
            Cond::And(v) => best(v.iter().map(|x| cond(x, d, search, best)).collect()),
            Cond::Or(v) => union(v.iter().map(|x| cond(x, d, search, best)).collect()),
            Cond::Of(n, ids) if *n == usize::MAX || ids.len() == 1 => {
                best(ids.iter().map(|i| search(&d.searches[*i])).collect())
            }
            Cond::Of(_, ids) => union(ids.iter().map(|i| search(&d.searches[*i])).collect()),
        }
    }
    cond(&d.cond, d, &search, &best)
}

#[cfg(test)]
mod tests {
    use super::Fv;
    use serde_json::{json, Value};

    /// A value's lower case is its text's full lower case, whether the
    /// text is borrowed (lower-case ASCII) or copied.
    #[test]
    fn lower_case_is_the_texts_own_or_a_lowered_copy() {
        let cases: [(Value, &str); 7] = [
            (json!("already-lower 10.0.0.1"), "already-lower 10.0.0.1"),
            (json!("MiXeD Case"), "mixed case"),
            (json!("ÉCOLE"), "école"),
            // Titlecase: not upper case, yet lowered.
            (json!("ǅ"), "ǆ"),
            (json!(50126), "50126"),
            (json!(true), "true"),
            (json!({"A": "B"}), r#"{"a":"b"}"#),
        ];
        for (v, lower) in &cases {
            assert_eq!(Fv::of(v).lower(), *lower, "{v}");
        }
    }
}
