//! Correlation rules (Sigma v2): `event_count`, `value_count`, `temporal`,
//! `temporal_ordered`, `value_sum`, `value_avg`, `value_percentile` and
//! `value_median`, with `group-by`, `timespan`, `aliases`, `generate` and
//! chaining (a correlation may refer to correlations).
//!
//! Windows slide: each matched event opens a window `[t, t + timespan]`; a
//! window that meets the condition is reported once, and the next window
//! starts after its last event (one finding per burst, not one per sliding
//! step). State holds only the base-rule matches of each group, sorted by
//! time; windows that can no longer change (older than the newest match
//! minus the timespan and a lateness allowance for out-of-order input) are
//! decided and dropped as the hunt goes, the rest at the end.
//!
//! Groups are held in [`SpillingMap`]s: past the hunt's budget for keyed
//! state ([`StateDisk`]), a correlation's groups move to disk, sorted by
//! group, and come back merged group by group when the hunt ends. A group
//! of few matches (an OWA session's token renewals) is never decided
//! early, since lateness is measured per group, so such groups once piled
//! up until a cap dropped further matches; now they spill, and are
//! decided whole when the hunt ends. A group whose windows are decided as
//! the hunt goes stays in memory ([`Spillable::stays`]), kept small by
//! those decisions, while the staying groups of all correlations together
//! hold at most
//! [`STAYING_BUDGETS`](tokenward_spill::spilling::STAYING_BUDGETS) budgets
//! (the largest are written out past it). A group a part of which was
//! written out is never decided early: its windows are decided when the
//! hunt ends, over all its parts ([`SpillingMap::may_have_written`]).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::mapping::Mapping;
use super::matcher::Cmp;
use super::section::{EvalCtx, FieldId, Fields};
use super::yaml::Y;
use super::{Hit, LoadIssue, Rule, RuleMeta, RuleSet};
use std::borrow::Cow;
use std::collections::BinaryHeap;

use tokenward_event::codec::{self, Cursor};
use tokenward_event::timefmt::rfc3339;
use tokenward_event::{Coverage, Status};
use tokenward_event::{Finding, Rep, SharedTexts};
use tokenward_spill::keyed::KeyPart;
use tokenward_spill::spilling::{LargePart, Parts, SpillKey, Spillable, SpillingMap, StateDisk};

/// Out-of-order input tolerated before a window is decided early (ms).
pub const LATENESS_MS: i64 = 24 * 3600 * 1000;

/// Matches held, over every correlation, before windows are decided early
/// (with the [`LATENESS_MS`] allowance): fewer, and every window is decided
/// when the hunt ends, over all its matches, in whatever order files and
/// batches brought them. Deciding early from the first 64 matches of a
/// group dropped as late the matches of a file read beside a later one
/// (two files of a month's halves lost a fifth of their bursts, a
/// different number each run). About 30 MiB of matches.
pub const DECIDE_EARLY_FROM: usize = 1 << 16;

/// Most matches of one group in memory when the hunt ends: a group of
/// more is decided a stretch of time at a time, each stretch read from
/// its parts on disk (`Sigma::decide_stretches`). Only where more than
/// three quarters of this many fall within one timespan are some left
/// out of windows, counted in [`CorrStats::over_budget`] and named in
/// the correlation's note. One group of a million matches in one
/// timespan peaked at 156-179 MiB with this many held
/// (`bench/correlation_bench.sh`).
pub const GROUP_MAX: usize = 200_000;

/// More matches of a group than this within one timespan, of
/// `group_max` decided at once, and a stretch would move on by less than
/// a quarter of itself ([`Sigma::decide_stretches`]): the windows there
/// are decided on the matches held, and the next timespan's are left out.
fn dense_span(group_max: usize) -> usize {
    group_max - group_max / 4
}

/// Matches a group holds before its windows are decided early.
const DENSE: usize = 64;

/// Correlation type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Number of events.
    EventCount,
    /// Number of distinct values of `field`.
    ValueCount,
    /// All referenced rules within the timespan, any order.
    Temporal,
    /// All referenced rules within the timespan, in order.
    TemporalOrdered,
    /// Sum of `field`.
    ValueSum,
    /// Mean of `field`.
    ValueAvg,
    /// A percentile of `field`.
    ValuePercentile,
    /// Median of `field`.
    ValueMedian,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "event_count" => Kind::EventCount,
            "value_count" => Kind::ValueCount,
            "temporal" => Kind::Temporal,
            "temporal_ordered" => Kind::TemporalOrdered,
            "value_sum" => Kind::ValueSum,
            "value_avg" => Kind::ValueAvg,
            "value_percentile" => Kind::ValuePercentile,
            "value_median" => Kind::ValueMedian,
            _ => return None,
        })
    }

    fn needs_field(self) -> bool {
        !matches!(
            self,
            Kind::EventCount | Kind::Temporal | Kind::TemporalOrdered
        )
    }
}

/// What a correlation refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    /// A detection rule (index into [`RuleSet::rules`]).
    Rule(usize),
    /// A correlation (index into [`RuleSet::correlations`]).
    Corr(usize),
}

/// A condition operator (`neq` as pySigma accepts it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A comparison.
    Cmp(Cmp),
    /// Not equal.
    Neq,
}

/// A compiled correlation rule.
#[derive(Debug)]
pub struct Correlation {
    /// Metadata.
    pub meta: RuleMeta,
    /// Type.
    pub kind: Kind,
    /// Referenced rules, in order.
    pub refs: Vec<Ref>,
    /// Group-by names (aliases or field names).
    pub group_by: Vec<String>,
    /// Timespan in milliseconds.
    pub span_ms: i64,
    /// Condition, AND-linked.
    pub cond: Vec<(Op, f64)>,
    /// Field for the value_* types.
    pub field: Option<String>,
    /// Percentile for value_percentile.
    pub percentile: f64,
    /// Alias -> (rule id or name -> field).
    pub aliases: HashMap<String, HashMap<String, String>>,
    /// Whether referenced rules also report their own matches.
    pub generate: bool,
    /// Whether this correlation reports (false when an outer correlation
    /// refers to it without `generate`).
    pub output: bool,
    /// Outer correlations fed by this one.
    pub feeds: Vec<usize>,
    /// (rule, mapping) -> group-by field ids and the value field id.
    ext: HashMap<(usize, usize), (Vec<FieldId>, Option<FieldId>)>,
    /// This correlation's own index.
    self_index: usize,
}

/// The group key and values one event gives a correlation.
#[derive(Debug, Clone)]
pub struct Extract {
    /// Correlation index.
    pub corr: usize,
    /// Position of the rule among the correlation's references.
    pub pos: usize,
    /// Group-by values (None: field absent).
    pub group: Vec<Option<String>>,
    /// Values of the correlation's field.
    pub values: Vec<String>,
}

impl Correlation {
    /// Pulls the group key and value from a matching event.
    pub fn extract(&self, ri: usize, mi: usize, ctx: &mut EvalCtx<'_, '_>) -> Extract {
        let ci = self.self_index;
        let pos = self
            .refs
            .iter()
            .position(|r| *r == Ref::Rule(ri))
            .unwrap_or(0);
        let (g, v) = self.ext.get(&(ri, mi)).cloned().unwrap_or_default();
        let group = g.iter().map(|&f| ctx.first_text(f)).collect();
        let values = v
            .map(|f| {
                ctx.values(f)
                    .iter()
                    .filter(|x| !x.null)
                    .map(|x| x.text().to_string())
                    .collect()
            })
            .unwrap_or_default();
        Extract {
            corr: ci,
            pos,
            group,
            values,
        }
    }

    /// The fields an event matched by rule `rule` under mapping `mapping`
    /// gives this correlation: its group-by fields, in order, and the
    /// value field of the value_* kinds.
    pub fn extraction(&self, rule: usize, mapping: usize) -> Option<(&[FieldId], Option<FieldId>)> {
        self.ext
            .get(&(rule, mapping))
            .map(|(g, v)| (g.as_slice(), *v))
    }

    fn field_for(&self, name: &str, rule_keys: &[&str]) -> String {
        if let Some(a) = self.aliases.get(name) {
            for k in rule_keys {
                if let Some(f) = a.get(*k) {
                    return f.clone();
                }
            }
        }
        name.to_string()
    }

    fn holds(&self, x: f64) -> bool {
        self.cond.iter().all(|(op, n)| match op {
            Op::Cmp(c) => c.test(x, *n),
            Op::Neq => x != *n,
        })
    }
}

fn timespan_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()]
        .parse()
        .ok()
        .filter(|&n| n > 0)?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        'w' => 604_800,
        'M' => 2_629_746,
        'y' => 31_556_952,
        _ => return None,
    };
    n.checked_mul(secs * 1000)
}

/// Resolves correlation documents against the loaded detection rules.
pub(super) fn resolve(
    docs: Vec<(RuleMeta, Y)>,
    rules: &mut [Rule],
    fields: &mut Fields,
    mappings: &[Mapping],
    issues: &mut Vec<LoadIssue>,
) -> Vec<Correlation> {
    let mut out: Vec<Correlation> = Vec::new();
    // Parse first, resolve references after, so order across files does not
    // matter and correlations may refer to correlations.
    let mut parsed: Vec<(Correlation, Vec<String>)> = Vec::new();
    for (meta, y) in docs {
        let issue = |reason: String| LoadIssue {
            file: meta.file.clone(),
            line: meta.line,
            rule: Some(meta.id.to_string()),
            kind: "error",
            reason,
        };
        let c = y.get("correlation").expect("checked by caller");
        let kind = match c.get("type").and_then(Y::as_text) {
            Some(t) => match Kind::parse(&t) {
                Some(k) => k,
                None => {
                    issues.push(issue(format!("unknown correlation type `{t}`")));
                    continue;
                }
            },
            None => {
                issues.push(issue("correlation without type".into()));
                continue;
            }
        };
        let refs = c.get("rules").map(Y::text_list).unwrap_or_default();
        if refs.is_empty() {
            issues.push(issue("correlation without rules".into()));
            continue;
        }
        let Some(span_ms) = c
            .get("timespan")
            .and_then(Y::as_text)
            .and_then(|t| timespan_ms(&t))
        else {
            issues.push(issue(
                "missing or invalid timespan (number + s, m, h, d, w, M or y)".into(),
            ));
            continue;
        };
        let group_by = c.get("group-by").map(Y::text_list).unwrap_or_default();
        let mut cond = Vec::new();
        let mut field = None;
        let mut percentile = 50.0;
        match c.get("condition") {
            Some(Y::Map(m)) => {
                let mut bad = None;
                for (k, v) in m {
                    let num = match v {
                        Y::Int(i) => Some(*i as f64),
                        Y::Float(f) => Some(*f),
                        _ => None,
                    };
                    match k.as_str() {
                        "field" => field = v.as_text(),
                        "percentile" => match num {
                            Some(p) if (0.0..=100.0).contains(&p) => percentile = p,
                            _ => bad = Some(format!("invalid percentile {v:?}")),
                        },
                        op => {
                            let o = match op {
                                "gt" => Op::Cmp(Cmp::Gt),
                                "gte" => Op::Cmp(Cmp::Gte),
                                "lt" => Op::Cmp(Cmp::Lt),
                                "lte" => Op::Cmp(Cmp::Lte),
                                "eq" => Op::Cmp(Cmp::Eq),
                                "neq" => Op::Neq,
                                other => {
                                    bad = Some(format!("unknown condition key `{other}`"));
                                    continue;
                                }
                            };
                            match num {
                                Some(n) => cond.push((o, n)),
                                None => bad = Some(format!("condition `{op}` needs a number")),
                            }
                        }
                    }
                }
                if let Some(b) = bad {
                    issues.push(issue(b));
                    continue;
                }
            }
            Some(Y::Str(_)) => {
                issues.push(issue(
                    "extended (expression) correlation conditions are Sigma v2.2; not supported"
                        .into(),
                ));
                continue;
            }
            Some(_) => {
                issues.push(issue("condition must be a map".into()));
                continue;
            }
            None => {}
        }
        if cond.is_empty() {
            if matches!(kind, Kind::Temporal | Kind::TemporalOrdered) {
                cond.push((Op::Cmp(Cmp::Gte), refs.len() as f64));
            } else {
                issues.push(issue("correlation without condition".into()));
                continue;
            }
        }
        if kind.needs_field() && field.is_none() {
            issues.push(issue(format!("{kind:?} correlation needs condition.field")));
            continue;
        }
        let mut aliases = HashMap::new();
        if let Some(Y::Map(m)) = c.get("aliases") {
            for (alias, v) in m {
                let mut per = HashMap::new();
                if let Y::Map(rm) = v {
                    for (r, f) in rm {
                        per.insert(r.clone(), f.as_text().unwrap_or_default());
                    }
                }
                aliases.insert(alias.clone(), per);
            }
        }
        let generate = matches!(c.get("generate"), Some(Y::Bool(true)));
        parsed.push((
            Correlation {
                meta,
                kind,
                refs: Vec::new(),
                group_by,
                span_ms,
                cond,
                field,
                percentile,
                aliases,
                generate,
                output: true,
                feeds: Vec::new(),
                ext: HashMap::new(),
                self_index: 0,
            },
            refs,
        ));
    }
    // Name/id lookup over rules and correlations.
    let mut by_key: HashMap<String, Ref> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        by_key.insert(r.meta.id.to_string(), Ref::Rule(i));
        if let Some(n) = &r.meta.name {
            by_key.insert(n.clone(), Ref::Rule(i));
        }
    }
    for (i, (c, _)) in parsed.iter().enumerate() {
        by_key.insert(c.meta.id.to_string(), Ref::Corr(i));
        if let Some(n) = &c.meta.name {
            by_key.insert(n.clone(), Ref::Corr(i));
        }
    }
    let mut ok = vec![true; parsed.len()];
    for (i, (c, refs)) in parsed.iter_mut().enumerate() {
        for r in refs.iter() {
            match by_key.get(r) {
                Some(&x) if x != Ref::Corr(i) => c.refs.push(x),
                _ => {
                    issues.push(LoadIssue {
                        file: c.meta.file.clone(),
                        line: c.meta.line,
                        rule: Some(c.meta.id.to_string()),
                        kind: "error",
                        reason: format!(
                            "refers to rule `{r}`, which is not loaded (or could not load)"
                        ),
                    });
                    ok[i] = false;
                    break;
                }
            }
        }
    }
    // Drop broken ones (and, transitively, those that refer to them),
    // renumbering correlation references. A worklist over who refers to
    // whom: a long chain is dropped in one pass, not one link per pass.
    let mut referrers: Vec<Vec<usize>> = vec![Vec::new(); parsed.len()];
    for (i, (c, _)) in parsed.iter().enumerate() {
        for r in &c.refs {
            if let Ref::Corr(j) = r {
                referrers[*j].push(i);
            }
        }
    }
    let mut broken: Vec<usize> = (0..parsed.len()).filter(|&i| !ok[i]).collect();
    while let Some(j) = broken.pop() {
        for &i in &referrers[j] {
            if ok[i] {
                ok[i] = false;
                broken.push(i);
                let c = &parsed[i].0;
                issues.push(LoadIssue {
                    file: c.meta.file.clone(),
                    line: c.meta.line,
                    rule: Some(c.meta.id.to_string()),
                    kind: "error",
                    reason: "refers to a correlation that could not load".into(),
                });
            }
        }
    }
    let mut renum = vec![usize::MAX; parsed.len()];
    let mut k = 0;
    for i in 0..parsed.len() {
        if ok[i] {
            renum[i] = k;
            k += 1;
        }
    }
    for (i, (mut c, _)) in parsed.into_iter().enumerate() {
        if !ok[i] {
            continue;
        }
        for r in c.refs.iter_mut() {
            if let Ref::Corr(j) = r {
                *j = renum[*j];
            }
        }
        c.self_index = out.len();
        out.push(c);
    }
    // Cycles would never settle; refuse every correlation on one.
    let graph: Vec<Vec<usize>> = out
        .iter()
        .map(|c| {
            c.refs
                .iter()
                .filter_map(|r| match r {
                    Ref::Corr(j) => Some(*j),
                    Ref::Rule(_) => None,
                })
                .collect()
        })
        .collect();
    for (i, cyclic) in on_cycles(&graph).into_iter().enumerate() {
        if cyclic {
            issues.push(LoadIssue {
                file: out[i].meta.file.clone(),
                line: out[i].meta.line,
                rule: Some(out[i].meta.id.to_string()),
                kind: "error",
                reason: "correlation refers to itself through other correlations".into(),
            });
            out[i].refs.clear();
        }
    }
    // Wire rules and correlations together and intern the fields each
    // (rule, mapping) pair must extract.
    for ci in 0..out.len() {
        let refs = out[ci].refs.clone();
        let generate = out[ci].generate;
        for r in refs {
            match r {
                Ref::Rule(ri) => {
                    let rule = &mut rules[ri];
                    // Correlations are wired in order, so a repeat is the last one.
                    if rule.feeds.last() != Some(&ci) {
                        rule.feeds.push(ci);
                    }
                    if !generate {
                        rule.output = false;
                    }
                    let mut keys: Vec<&str> = vec![rule.meta.id.as_str()];
                    if let Some(n) = &rule.meta.name {
                        keys.push(n);
                    }
                    for (mi, _) in &rule.compiled {
                        let g = out[ci]
                            .group_by
                            .iter()
                            .map(|g| {
                                let f = out[ci].field_for(g, &keys);
                                fields.intern(*mi, &mappings[*mi], &f)
                            })
                            .collect();
                        let v = out[ci]
                            .field
                            .clone()
                            .map(|f| fields.intern(*mi, &mappings[*mi], &f));
                        out[ci].ext.insert((ri, *mi), (g, v));
                    }
                }
                Ref::Corr(j) => {
                    if out[j].feeds.last() != Some(&ci) {
                        out[j].feeds.push(ci);
                    }
                    if !generate {
                        out[j].output = false;
                    }
                }
            }
        }
    }
    out
}

#[derive(Clone, Debug)]
struct Entry {
    t: i64,
    pos: usize,
    values: Vec<String>,
    rep: Rep,
}

impl Entry {
    /// Its place among a group's matches: by time, then file and place,
    /// then values (a tie only where one record gave a group two matches
    /// of one rule; ordered all the same, so that which of them a
    /// stretch keeps is the one the next stretch knows it kept).
    fn order(&self) -> (i64, &str, u64, u64, usize, &[String]) {
        (
            self.t,
            &self.rep.file,
            self.rep.locator.line,
            self.rep.locator.record,
            self.pos,
            &self.values,
        )
    }

    /// About how many bytes it holds: itself twice (its group's vector
    /// grows by doubling), its values, and the texts of its
    /// representative (each the event's own), with what the allocator
    /// adds to each: 200,000 matches of one group, held, took about 700
    /// bytes each.
    fn approx_bytes(&self) -> usize {
        let texts = [
            &self.rep.user,
            &self.rep.client_ip,
            &self.rep.app_id,
            &self.rep.session_id,
            &self.rep.token_id,
        ];
        2 * std::mem::size_of::<Entry>()
            + self.values.iter().map(|v| v.len() + 64).sum::<usize>()
            + texts
                .iter()
                .flat_map(|t| t.as_deref())
                .map(|t| t.len() + 48)
                .sum::<usize>()
    }

    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        codec::put_u64(buf, self.t as u64);
        codec::put_u64(buf, self.pos as u64);
        codec::put_u32(buf, codec::count(self.values.len())?);
        for v in &self.values {
            codec::put_text(buf, v)?;
        }
        self.rep.write(buf)
    }

    fn read(c: &mut Cursor<'_>, shared: &mut SharedTexts) -> Result<Entry, String> {
        let t = c.u64()? as i64;
        Entry::read_after_time(t, c, shared)
    }

    /// Reads the rest of an entry whose time `t` was read.
    fn read_after_time(
        t: i64,
        c: &mut Cursor<'_>,
        shared: &mut SharedTexts,
    ) -> Result<Entry, String> {
        let pos = c.u64()? as usize;
        let values = (0..c.u32()?)
            .map(|_| c.text().map(str::to_owned))
            .collect::<Result<_, _>>()?;
        Ok(Entry {
            t,
            pos,
            values,
            rep: Rep::read_sharing(c, shared)?,
        })
    }

    /// Passes over the rest of an entry whose time was read, building
    /// nothing.
    fn skip_after_time(c: &mut Cursor<'_>) -> Result<(), String> {
        c.u64()?;
        for _ in 0..c.u32()? {
            c.opt_bytes()?.ok_or("text missing")?;
        }
        Rep::skip(c)
    }
}

/// A correlation group's key: its `group-by` values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey(Vec<Option<String>>);

impl KeyPart for GroupKey {
    type Ref<'a> = &'a [Option<String>];
    fn as_part(&self) -> &[Option<String>] {
        &self.0
    }
    fn from_part(part: &[Option<String>]) -> Self {
        GroupKey(part.to_vec())
    }
    fn matches(&self, part: &[Option<String>]) -> bool {
        self.0 == part
    }
}

impl SpillKey for GroupKey {
    fn part_bytes(part: &[Option<String>]) -> usize {
        part.iter()
            .map(|v| 24 + v.as_ref().map_or(0, String::len))
            .sum()
    }
    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        codec::put_u32(buf, codec::count(self.0.len())?);
        for v in &self.0 {
            codec::put_opt_text(buf, v.as_deref())?;
        }
        Ok(())
    }
    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        (0..c.u32()?)
            .map(|_| c.opt_text().map(|v| v.map(str::to_owned)))
            .collect::<Result<_, _>>()
            .map(GroupKey)
    }
}

#[derive(Debug, Default)]
struct Group {
    /// Matches in arrival order; sorted by time before windows are decided.
    entries: Vec<Entry>,
    /// A match arrived older than the newest one: sort before deciding.
    unsorted: bool,
    /// No window may start before this time (the last reported window
    /// ended just before it).
    skip_until: i64,
    /// Entries before this time were decided and dropped.
    flushed_upto: i64,
    /// The newest match of the group. Lateness is measured per group:
    /// measured across groups, one file of recent records read before an
    /// older file decided the older file's windows before their matches
    /// arrived.
    newest: Option<i64>,
    /// Windows are decided early again only once the group holds this
    /// many matches: twice what the last early decision kept. Deciding at
    /// every new match re-read the kept span each time, which made a dense
    /// group over many days quadratic; doubling makes it amortised linear.
    decide_at: usize,
    /// Matches of a part read back from disk that came after windows of
    /// another part of the group were decided (counted with
    /// [`CorrStats::late`] when the group is decided at the end).
    late: u64,
    /// Matches left out past [`GROUP_MAX`].
    over_cap: u64,
    /// Windows were decided while the hunt went.
    decided_early: bool,
}

impl Group {
    /// The earliest and latest times of its matches (`i64::MAX` and
    /// `i64::MIN` for none).
    fn time_range(&self) -> (i64, i64) {
        self.entries
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), e| {
                (lo.min(e.t), hi.max(e.t))
            })
    }

    /// Keeps the earliest [`GROUP_MAX`] matches: the same ones however
    /// the group's parts came together.
    fn cap(&mut self) {
        if self.entries.len() <= GROUP_MAX {
            return;
        }
        // Matches behind the last window reported are in no window left.
        let skip_until = self.skip_until;
        self.entries.retain(|e| e.t >= skip_until);
        if self.entries.len() <= GROUP_MAX {
            return;
        }
        self.entries
            .select_nth_unstable_by(GROUP_MAX, |a, b| a.order().cmp(&b.order()));
        self.over_cap += (self.entries.len() - GROUP_MAX) as u64;
        self.entries.truncate(GROUP_MAX);
        self.unsorted = true;
    }
}

impl Spillable for Group {
    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Group>() + self.entries.iter().map(Entry::approx_bytes).sum::<usize>()
    }

    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        // The head says its count in four bytes.
        codec::count(self.entries.len())?;
        GroupHead::of(self).write(buf);
        // In time order: a pass over a group's parts for a stretch of
        // time stops reading a part at the first match past it.
        if self.unsorted {
            let mut by_time: Vec<&Entry> = self.entries.iter().collect();
            by_time.sort_by(|a, b| a.order().cmp(&b.order()));
            for e in by_time {
                e.write(buf)?;
            }
        } else {
            for e in &self.entries {
                e.write(buf)?;
            }
        }
        Ok(())
    }

    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        let head = GroupHead::read(c)?;
        let mut shared = SharedTexts::default();
        let entries = (0..head.entries)
            .map(|_| Entry::read(c, &mut shared))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Group {
            // Parts are sorted when decided.
            unsorted: true,
            entries,
            skip_until: head.skip_until,
            flushed_upto: head.flushed_upto,
            newest: head.newest,
            decide_at: head.decide_at,
            late: head.late,
            over_cap: head.over_cap,
            decided_early: false,
        })
    }

    /// A group decided early is written out only as it stands (no part
    /// of its key is decided early after that), so at most one part of a
    /// group has `flushed_upto` set: the other parts' matches before it
    /// are behind windows decided without them, late as matches arriving
    /// after their windows were decided are.
    fn fold(&mut self, mut other: Self) {
        let upto = self.flushed_upto.max(other.flushed_upto);
        let late_in = |g: &Group| g.entries.iter().filter(|e| e.t < upto).count() as u64;
        let late = if self.flushed_upto < upto {
            late_in(self)
        } else if other.flushed_upto < upto {
            late_in(&other)
        } else {
            0
        };
        self.late += other.late + late;
        self.over_cap += other.over_cap;
        // Past GROUP_MAX (to be cut back to it), room for exactly the
        // part: a group read back part by part reaches it, and a vector
        // doubling past it held room for as many entries again (a
        // million matches of one group peaked at 268-341 MiB, 252-288
        // since). The room is kept for the next part ([`Group::cap`]).
        if self.entries.len() + other.entries.len() > GROUP_MAX {
            self.entries.reserve_exact(other.entries.len());
        }
        self.entries.append(&mut other.entries);
        self.unsorted = true;
        self.skip_until = self.skip_until.max(other.skip_until);
        self.flushed_upto = upto;
        self.newest = self.newest.max(other.newest);
        self.decide_at = self.decide_at.max(other.decide_at);
        self.decided_early |= other.decided_early;
        self.cap();
    }

    /// A group decided early stays: written out, its later matches would
    /// start a part of their own, which is never decided early (no part
    /// of a group is decided without the others). Unless staying groups
    /// outgrow their share of the budget: then the largest are written
    /// out too, and decided when the hunt ends.
    fn stays(&self) -> bool {
        self.decided_early
    }

    const REMEMBERS_WRITTEN: bool = true;
}

/// What a group written to disk says before its matches.
#[derive(Clone, Copy, Debug, PartialEq)]
struct GroupHead {
    skip_until: i64,
    flushed_upto: i64,
    newest: Option<i64>,
    decide_at: usize,
    late: u64,
    over_cap: u64,
    /// The earliest and latest times of the matches that follow: a pass
    /// over a group's parts for a stretch of time reads only the parts
    /// that reach into it (a flood's parts, written as it was read, each
    /// hold a stretch of their own).
    earliest: i64,
    latest: i64,
    /// How many matches follow.
    entries: u32,
}

impl GroupHead {
    /// Its length on disk: what [`Spillable::write`] puts before a
    /// group's first match.
    const BYTES: u64 = 8 * 3 + 1 + 8 * 5 + 4;

    fn read(c: &mut Cursor<'_>) -> Result<GroupHead, String> {
        let skip_until = c.u64()? as i64;
        let flushed_upto = c.u64()? as i64;
        let newest = c.u64()? as i64;
        let newest = (c.u8()? == 1).then_some(newest);
        Ok(GroupHead {
            skip_until,
            flushed_upto,
            newest,
            decide_at: c.u64()? as usize,
            late: c.u64()?,
            over_cap: c.u64()?,
            earliest: c.u64()? as i64,
            latest: c.u64()? as i64,
            entries: c.u32()?,
        })
    }

    /// Writes it as [`GroupHead::read`] reads it.
    fn write(&self, buf: &mut Vec<u8>) {
        codec::put_u64(buf, self.skip_until as u64);
        codec::put_u64(buf, self.flushed_upto as u64);
        codec::put_u64(buf, self.newest.map_or(0, |n| n as u64));
        buf.push(u8::from(self.newest.is_some()));
        codec::put_u64(buf, self.decide_at as u64);
        codec::put_u64(buf, self.late);
        codec::put_u64(buf, self.over_cap);
        codec::put_u64(buf, self.earliest as u64);
        codec::put_u64(buf, self.latest as u64);
        codec::put_u32(buf, self.entries);
    }

    fn of(g: &Group) -> GroupHead {
        let (earliest, latest) = g.time_range();
        GroupHead {
            earliest,
            latest,
            skip_until: g.skip_until,
            flushed_upto: g.flushed_upto,
            newest: g.newest,
            decide_at: g.decide_at,
            late: g.late,
            over_cap: g.over_cap,
            entries: g.entries.len() as u32,
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Parts too large to read with their key read by stretches.
    pub(crate) static LARGE_PARTS_READ: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Where a pass over a large part starts: its first match not before the
/// stretch, as the passes before found it.
#[derive(Clone, Copy, Debug)]
struct Place {
    /// In the part's bytes.
    offset: u64,
    /// How many matches come before it.
    index: u32,
}

/// Bytes of a large part read on in pieces from a place: a pass holds a
/// piece, not the part (a dense group's part may hold most of a budget).
struct Pieces<'a> {
    part: &'a LargePart,
    buf: &'a mut Vec<u8>,
    /// Where `buf` starts in the part.
    buf_at: u64,
    /// Where the next entry starts in `buf`.
    pos: usize,
}

/// Bytes read from a large part at once (in tests, fewer than many
/// matches take, so that matches cross pieces everywhere).
const PIECE: u64 = if cfg!(test) { 100 } else { 256 << 10 };

impl<'a> Pieces<'a> {
    fn new(part: &'a LargePart, offset: u64, buf: &'a mut Vec<u8>) -> Pieces<'a> {
        buf.clear();
        Pieces {
            part,
            buf,
            buf_at: offset,
            pos: 0,
        }
    }

    /// Where the next entry starts in the part.
    fn offset(&self) -> u64 {
        self.buf_at + self.pos as u64
    }

    /// Reads the next entry with `read`, reading on first as far as it
    /// needs. An entry that runs past the part's end is damage.
    fn entry<T>(
        &mut self,
        mut read: impl FnMut(&mut Cursor<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        loop {
            let mut c = Cursor::new(&self.buf[self.pos..]);
            match read(&mut c) {
                Ok(v) => {
                    self.pos = self.buf.len() - c.left();
                    return Ok(v);
                }
                Err(e) => {
                    let end = self.buf_at + self.buf.len() as u64;
                    if end >= self.part.len() {
                        return Err(self.part.damaged(e));
                    }
                    // Keep the entry's start; read a piece more, or as
                    // much again for an entry larger than a piece.
                    self.buf.drain(..self.pos);
                    self.buf_at += self.pos as u64;
                    self.pos = 0;
                    let more = PIECE.max(self.buf.len() as u64).min(self.part.len() - end);
                    let have = self.buf.len();
                    self.buf.resize(have + more as usize, 0);
                    self.part.read_into(&mut self.buf[have..], end)?;
                }
            }
        }
    }
}

/// Matches a pass over a group's parts counts besides those it keeps.
#[derive(Clone, Copy)]
enum Counted {
    Nothing,
    /// Of the parts not decided early up to this time, their matches
    /// before it (late: [`Group::fold`]).
    LateBefore(i64),
    /// Those from the first time on and before the second.
    Within(i64, i64),
}

impl Counted {
    fn holds(self, t: i64, flushed_upto: i64) -> bool {
        match self {
            Counted::Nothing => false,
            Counted::LateBefore(upto) => flushed_upto < upto && t < upto,
            Counted::Within(from, until) => from <= t && t < until,
        }
    }

    /// How many of a part's matches it counts, when its head tells.
    fn whole(self, h: &GroupHead) -> Option<u64> {
        let all = u64::from(h.entries);
        match self {
            Counted::Nothing => Some(0),
            Counted::LateBefore(upto) if h.flushed_upto >= upto || h.earliest >= upto => Some(0),
            Counted::LateBefore(upto) if h.latest < upto => Some(all),
            Counted::Within(from, until) if h.latest < from || h.earliest >= until => Some(0),
            Counted::Within(from, until) if h.earliest >= from && h.latest < until => Some(all),
            _ => None,
        }
    }
}

/// One pass over a group's parts ([`Sigma::decide_stretches`]): the
/// earliest `cap` matches from `from` on, by time, then file and place,
/// but for those already held ([`Stretch::after`]).
struct Stretch {
    from: i64,
    cap: usize,
    entries: Vec<Entry>,
    /// Matches after this time are not among the earliest `cap`
    /// ([`Stretch::find_bound`]; lowered as matches at it are cut back).
    bound: i64,
    /// Some match from `from` on was left out.
    cut: bool,
    /// Where the matches held before it end: those at `from` up to the
    /// last held are not read again.
    after: Option<HeldUpTo>,
}

/// The last match held before a stretch ([`Stretch::after`]).
struct HeldUpTo {
    /// Its [`Entry::order`], owned.
    last: (i64, Arc<str>, u64, u64, usize, Vec<String>),
    /// Held matches at its time (`from`).
    at_from: usize,
    /// Held matches equal to it in order not yet met again: matches that
    /// equal in everything are told apart by none, so as many are passed
    /// over as were held.
    same_left: usize,
}

impl Stretch {
    fn new(from: i64, cap: usize) -> Stretch {
        Stretch {
            from,
            cap,
            entries: Vec::new(),
            bound: i64::MAX,
            cut: false,
            after: None,
        }
    }

    /// The stretch after the held matches `held` (in order; the last at
    /// `from`), of `cap` matches more.
    fn after(held: &[Entry], cap: usize) -> Stretch {
        let mut s = Stretch::new(i64::MAX, cap);
        if let Some(last) = held.last() {
            let (t, _, line, record, pos, values) = last.order();
            s.from = t;
            s.after = Some(HeldUpTo {
                last: (t, last.rep.file.clone(), line, record, pos, values.to_vec()),
                at_from: held.len() - held.partition_point(|e| e.t < t),
                same_left: held
                    .iter()
                    .rev()
                    .take_while(|e| e.order() == last.order())
                    .count(),
            });
        }
        s
    }

    /// Whether `e` is held already: before the last match held, or one
    /// of those equal to it, as many times as they were held.
    fn holds_already(&mut self, e: &Entry) -> bool {
        let Some(h) = &mut self.after else {
            return false;
        };
        let (t, file, line, record, pos, values) = &h.last;
        if e.t != *t {
            return false;
        }
        match e
            .order()
            .cmp(&(*t, &**file, *line, *record, *pos, &values[..]))
        {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal if h.same_left > 0 => {
                h.same_left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Reads the parts (`heads`: those of `parts.large`) that reach into
    /// the stretch or hold matches to count, and answers how many of
    /// those `counted` names there are. Matches outside the stretch are
    /// passed over unread, and parts wholly outside it and `counted`
    /// unread too.
    fn read(
        &mut self,
        parts: &Parts<Group>,
        heads: &[GroupHead],
        places: &mut [Place],
        counted: Counted,
    ) -> Result<u64, String> {
        let mut buf = Vec::new();
        if self.cap > 0 {
            self.find_bound(parts, heads, places, &mut buf)?;
        }
        let mut n = 0;
        if let Some(g) = &parts.small {
            let whole = counted.whole(&GroupHead::of(g));
            for e in &g.entries {
                n += u64::from(whole.is_none() && counted.holds(e.t, g.flushed_upto));
                if self.wants(e.t) {
                    self.push(e.clone());
                }
                self.cut |= self.leaves_out(e.t);
            }
            n += whole.unwrap_or(0);
        }
        // Places moved past the matches before `from` (`find_bound`).
        for ((l, head), place) in parts.large.iter().zip(heads).zip(places.iter()) {
            let whole = counted.whole(head);
            let reaches = self.cap > 0 && head.latest >= self.from && head.earliest <= self.bound;
            n += whole.unwrap_or(0);
            if whole.is_some() && !reaches {
                self.cut |= head.entries > 0 && self.leaves_out(head.latest);
                continue;
            }
            #[cfg(test)]
            LARGE_PARTS_READ.with(|n| n.set(n.get() + 1));
            let mut r = Pieces::new(l, place.offset, &mut buf);
            let mut shared = SharedTexts::default();
            for _ in place.index..head.entries {
                let (t, e) = r.entry(|c| {
                    let t = c.u64()? as i64;
                    // Written in time order ([`Group::write`]): the
                    // rest is later still.
                    if t > self.bound && whole.is_some() {
                        return Ok((t, None));
                    }
                    let e = if self.wants(t) {
                        Some(Entry::read_after_time(t, c, &mut shared)?)
                    } else {
                        Entry::skip_after_time(c)?;
                        None
                    };
                    Ok((t, e))
                })?;
                self.cut |= self.leaves_out(t);
                if t > self.bound && whole.is_some() {
                    break;
                }
                n += u64::from(whole.is_none() && counted.holds(t, head.flushed_upto));
                if let Some(e) = e {
                    self.push(e);
                }
            }
        }
        Ok(n)
    }

    fn wants(&self, t: i64) -> bool {
        self.cap > 0 && t >= self.from && t <= self.bound
    }

    /// Whether a match at `t` belongs in the stretch but for its bound.
    fn leaves_out(&self, t: i64) -> bool {
        self.cap > 0 && t >= self.from && t > self.bound
    }

    /// Sets the bound to the time of the `cap`-th earliest match from
    /// `from` on, reading times alone: then only the stretch's matches
    /// (and those at its last time) are read whole. Reading whole every
    /// match that might be in it, and cutting back as they came, read
    /// two or three times as many in a flood whose parts each cover the
    /// whole day. Moves each part's place past its matches before `from`.
    fn find_bound(
        &mut self,
        parts: &Parts<Group>,
        heads: &[GroupHead],
        places: &mut [Place],
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        // Matches held already are at `from`, the earliest time read:
        // among the earliest `cap` more than there are of them.
        let cap = self.cap + self.after.as_ref().map_or(0, |h| h.at_from);
        let mut earliest: BinaryHeap<i64> = BinaryHeap::with_capacity(cap + 1);
        // Whether `t` is past the `cap` earliest so far.
        let full_past =
            |e: &BinaryHeap<i64>, t: i64| e.len() >= cap && e.peek().is_some_and(|&top| t >= top);
        let take = |e: &mut BinaryHeap<i64>, t: i64| {
            if e.len() < cap {
                e.push(t);
            } else if !full_past(e, t) {
                e.pop();
                e.push(t);
            }
        };
        for e in parts.small.iter().flat_map(|g| &g.entries) {
            if e.t >= self.from {
                take(&mut earliest, e.t);
            }
        }
        for ((l, head), place) in parts.large.iter().zip(heads).zip(places) {
            if head.latest < self.from || full_past(&earliest, head.earliest) {
                continue;
            }
            let mut r = Pieces::new(l, place.offset, buf);
            for at in place.index..head.entries {
                let t = r.entry(|c| {
                    let t = c.u64()? as i64;
                    Entry::skip_after_time(c)?;
                    Ok(t)
                })?;
                if t < self.from {
                    if place.index == at {
                        *place = Place {
                            offset: r.offset(),
                            index: at + 1,
                        };
                    }
                    continue;
                }
                // In time order: the rest of the part is later still.
                if full_past(&earliest, t) {
                    break;
                }
                take(&mut earliest, t);
            }
        }
        if earliest.len() >= cap {
            self.bound = earliest.peek().copied().unwrap_or(i64::MAX);
        }
        Ok(())
    }

    fn push(&mut self, e: Entry) {
        if self.holds_already(&e) {
            return;
        }
        self.entries.push(e);
        // Cut back often enough that memory holds little more than `cap`
        // matches (the bound that was the group's), seldom enough that
        // each cut is paid for by a quarter of `cap` matches.
        if self.entries.len() >= self.cap + self.cap.div_ceil(4) {
            self.keep_earliest();
        }
    }

    /// Keeps the earliest `cap`; later matches than the latest kept are
    /// then passed over.
    fn keep_earliest(&mut self) {
        if self.entries.len() <= self.cap {
            return;
        }
        self.entries
            .select_nth_unstable_by(self.cap, |a, b| a.order().cmp(&b.order()));
        self.entries.truncate(self.cap);
        self.cut = true;
        self.bound = self.entries.iter().map(|e| e.t).max().unwrap_or(i64::MIN);
    }

    /// The stretch's matches in order, and whether some after them were
    /// left out.
    fn finish(mut self) -> (Vec<Entry>, bool) {
        self.keep_earliest();
        self.entries.sort_by(|a, b| a.order().cmp(&b.order()));
        (self.entries, self.cut)
    }
}

/// Per-correlation counters.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CorrStats {
    /// Matches of referenced rules fed in.
    pub fed: u64,
    /// Matches without a time (cannot be placed in a window).
    pub no_time: u64,
    /// Matches older than windows already decided.
    pub late: u64,
    /// Matches left out of their group's windows: more than three
    /// quarters of [`GROUP_MAX`] fell within one timespan.
    pub over_budget: u64,
    /// Findings.
    pub hits: usize,
}

/// Sigma rules at work in one hunt: turns matches into findings and runs
/// the correlations (called under the engine's lock).
#[derive(Debug)]
pub struct Sigma {
    set: Arc<RuleSet>,
    findings: Vec<Finding>,
    rule_hits: Vec<usize>,
    stats: Vec<CorrStats>,
    /// Per correlation, its groups.
    groups: Vec<SpillingMap<GroupKey, Group>>,
    /// Most matches held at once, in memory or on disk (for the report).
    pub peak_entries: usize,
    /// Matches held, not yet decided, over every correlation.
    held: usize,
    /// Entries held before windows are decided early
    /// ([`DECIDE_EARLY_FROM`] by default).
    decide_early_from: usize,
    /// Most matches of one group decided at once when the hunt ends
    /// ([`GROUP_MAX`] but in tests).
    group_max: usize,
}

impl Sigma {
    /// Starts a hunt with a rule set, its correlations' groups held in
    /// memory as `disk` allows ([`StateDisk`]: the hunt's budget for keyed
    /// state, shared with the detections that keep some).
    pub fn new(set: Arc<RuleSet>, disk: Arc<StateDisk>) -> Sigma {
        let nc = set.correlations.len();
        Sigma {
            rule_hits: vec![0; set.rules.len()],
            stats: vec![CorrStats::default(); nc],
            groups: (0..nc).map(|_| SpillingMap::new(disk.clone())).collect(),
            findings: Vec::new(),
            peak_entries: 0,
            held: 0,
            decide_early_from: DECIDE_EARLY_FROM,
            group_max: GROUP_MAX,
            set,
        }
    }

    /// Sets how many matches of one group are decided at once at the end.
    #[cfg(test)]
    pub(crate) fn set_group_max(&mut self, n: usize) {
        self.group_max = n;
    }

    /// Sets how many matches are held before windows are decided early
    /// (default [`DECIDE_EARLY_FROM`]).
    pub fn set_decide_early_from(&mut self, n: usize) {
        self.decide_early_from = n;
    }

    /// The rule set.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.set
    }

    /// Takes the matches a worker made.
    pub fn absorb(&mut self, mut hits: Vec<Hit>) {
        let findings = self.set.findings_of(&mut hits).collect();
        self.absorb_found(hits, findings);
    }

    /// [`Sigma::absorb`] for matches whose findings the worker already
    /// built with [`RuleSet::findings_of`]: building them is most of the
    /// cost, and this way it runs outside whatever guards the shared state.
    pub fn absorb_found(&mut self, hits: Vec<Hit>, findings: Vec<Finding>) {
        self.findings.extend(findings);
        for h in hits {
            self.rule_hits[h.rule] += 1;
            for x in &h.corr {
                self.feed(
                    x.corr,
                    &x.group,
                    Entry {
                        t: 0,
                        pos: x.pos,
                        values: x.values.clone(),
                        rep: h.rep.clone(),
                    },
                );
            }
        }
    }

    fn feed(&mut self, ci: usize, key: &[Option<String>], mut e: Entry) {
        self.stats[ci].fed += 1;
        let Some(t) = e.rep.time else {
            self.stats[ci].no_time += 1;
            return;
        };
        e.t = (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let bytes = e.approx_bytes();
        let groups = &mut self.groups[ci];
        let g = groups.get_or_insert_with(key, Group::default);
        let newest = g.newest.map_or(e.t, |n| n.max(e.t));
        g.newest = Some(newest);
        if e.t < g.flushed_upto {
            self.stats[ci].late += 1;
        }
        // Appended, not inserted in place: matches from parallel batches
        // and files arrive out of order, and inserting each into a sorted
        // vector made a large group quadratic. Sorted once when decided.
        let in_order = g.entries.last().is_none_or(|x| x.t <= e.t);
        g.unsorted |= !in_order;
        g.entries.push(e);
        let (first, len, decide_at) = (g.entries[0].t, g.entries.len(), g.decide_at);
        self.held += 1;
        self.peak_entries = self.peak_entries.max(self.held);
        // Decide windows that can no longer change once enough has piled
        // up. The group is taken out and put back without a spill in
        // between (the map's growth is told after): a spill there wrote
        // the group out and decided an empty one in its place.
        // A group a part of which was written out (past the budget, or
        // as staying groups outgrew their share) is decided when the hunt
        // ends, over every part: decided on the part since, windows
        // reaching back into the written part were missed, and its
        // matches behind them counted as late.
        const HELD: &str = "the group just fed, and no spill since";
        let ready = in_order && self.held >= self.decide_early_from && len >= decide_at.max(DENSE);
        if ready && self.groups[ci].may_have_written(key) {
            // Asked once: the answer does not change while the group is
            // in memory.
            self.groups[ci].get_mut(key).expect(HELD).decide_at = usize::MAX;
        } else if ready {
            let span = self.set.correlations[ci].span_ms;
            let cutoff = newest.saturating_sub(LATENESS_MS);
            if first.saturating_add(span) < cutoff {
                let g = std::mem::take(self.groups[ci].get_mut(key).expect(HELD));
                let before = g.approx_bytes();
                // Outer correlations fed by its windows are other maps.
                if let Some(kept) = self.decide(ci, key, g, Some(cutoff)) {
                    let after = kept.approx_bytes();
                    *self.groups[ci].get_mut(key).expect(HELD) = kept;
                    self.groups[ci].shrank(before.saturating_sub(after));
                }
            }
        }
        self.groups[ci].grew(bytes);
    }

    /// Decides every window of a group at the end, from its parts: folded
    /// into one when they hold at most [`Sigma::group_max`] matches,
    /// else a stretch of time at a time ([`Sigma::decide_stretches`]).
    fn decide_parts(
        &mut self,
        ci: usize,
        key: &[Option<String>],
        parts: Parts<Group>,
    ) -> Result<(), String> {
        let mut heads = Vec::with_capacity(parts.large.len());
        let mut buf = Vec::new();
        for l in &parts.large {
            l.read_head(&mut buf, GroupHead::BYTES)?;
            heads.push(GroupHead::read(&mut Cursor::new(&buf)).map_err(|e| l.damaged(e))?);
        }
        let small = parts.small.as_ref().map(GroupHead::of);
        let total: u64 = heads
            .iter()
            .chain(&small)
            .map(|h| u64::from(h.entries))
            .sum();
        if total <= self.group_max as u64 {
            let Some(mut g) = parts.folded()? else {
                return Ok(());
            };
            g.cap();
            self.stats[ci].late += g.late;
            self.stats[ci].over_budget += g.over_cap;
            self.decide(ci, key, g, None);
            return Ok(());
        }
        self.decide_stretches(ci, key, &parts, &heads, small, total)
    }

    /// Decides the windows of a group of more than [`Sigma::group_max`]
    /// matches, a stretch of time at a time: each pass over its parts
    /// reads the earliest matches after those held, up to `group_max` in
    /// all, decides the windows that end before the latest of them, and
    /// holds for the next the matches later windows need (a span before
    /// it). So every window is decided over all its matches, as if the
    /// group were held whole, in memory for `group_max` matches and one
    /// part's bytes at once, and the group's parts are read about
    /// `total / group_max` times, each match whole once. (Keeping the
    /// earliest 200,000 of a group's 1.5 million and counting the rest
    /// as unplaced missed every window after its first hours.)
    ///
    /// Where more than [`dense_span`] matches fall within one timespan, a
    /// stretch would not reach far past a window: its windows are decided
    /// on the matches held, and those of the timespan after its last are
    /// counted in [`CorrStats::over_budget`].
    fn decide_stretches(
        &mut self,
        ci: usize,
        key: &[Option<String>],
        parts: &Parts<Group>,
        heads: &[GroupHead],
        small: Option<GroupHead>,
        total: u64,
    ) -> Result<(), String> {
        let all_heads = || heads.iter().copied().chain(small);
        let upto = all_heads().map(|h| h.flushed_upto).max().unwrap_or(0);
        self.stats[ci].late += all_heads().map(|h| h.late).sum::<u64>();
        self.stats[ci].over_budget += all_heads().map(|h| h.over_cap).sum::<u64>();
        let mut skip_until = all_heads().map(|h| h.skip_until).max().unwrap_or(0);
        let span = self.set.correlations[ci].span_ms;
        let cap = self.group_max.max(1);
        let mut first = true;
        let mut places = vec![
            Place {
                offset: GroupHead::BYTES,
                index: 0,
            };
            heads.len()
        ];
        // The matches of the last stretch its decided windows left for
        // the next ones, in order: every match of the group from
        // `held_from` on, up to the last of them. The next stretch reads
        // on after them instead of reading them again (which was a
        // timespan of matches a pass, a third of a flood's in hours).
        let mut held: Vec<Entry> = Vec::new();
        let mut held_from = skip_until;
        loop {
            let mut stretch = if held.is_empty() {
                Stretch::new(held_from, cap)
            } else {
                // Held matches are fewer than `dense_span(cap)`, so a
                // stretch reads on by a quarter of `cap` or more.
                Stretch::after(&held, cap.saturating_sub(held.len()).max(1))
            };
            // Matches of the parts not decided early, behind the part that
            // was: late, as when folded ([`Group::fold`]); counted once.
            let counted = if first {
                Counted::LateBefore(upto)
            } else {
                Counted::Nothing
            };
            self.stats[ci].late += stretch.read(parts, heads, &mut places, counted)?;
            first = false;
            // The parts' places are now past the matches before it.
            let read_from = stretch.from;
            let (more, cut) = stretch.finish();
            if more.is_empty() && cut && !held.is_empty() {
                // Its bound counts the matches held at its start, so a
                // stretch reads on by one or more; were it not to, the
                // next would be this one again, for ever.
                return Err(
                    "a stretch of a correlation group read nothing past the matches held".into(),
                );
            }
            self.held += more.len();
            let mut entries = std::mem::take(&mut held);
            // Each match of `more` comes after every one held.
            entries.reserve_exact(more.len());
            entries.extend(more);
            let Some(last) = entries.last().map(|e| e.t) else {
                break;
            };
            let len = entries.len();
            let g = Group {
                entries,
                skip_until,
                ..Group::default()
            };
            if !cut {
                self.decide(ci, key, g, None);
                break;
            }
            let keep_from = last.saturating_sub(span);
            let decided = g.entries.partition_point(|e| e.t < keep_from);
            // A stretch must move on by a good share of itself, or the
            // passes grow with the square of the group.
            if len - decided <= dense_span(cap) {
                let kept = self
                    .decide(ci, key, g, Some(last))
                    .expect("a cutoff keeps the group");
                skip_until = kept.skip_until;
                held_from = keep_from.max(skip_until);
                held = kept.entries;
                // No window left starts before `skip_until`.
                let behind = held.partition_point(|e| e.t < held_from);
                held.drain(..behind);
                self.held -= behind;
            } else {
                // Windows of one span hold about `cap` matches or more.
                // Those left out are counted from where this stretch
                // read: the group holds every match before it (from
                // `held_from`), and the parts' places are past them.
                let placed = len - g.entries.partition_point(|e| e.t < read_from);
                let kept = self
                    .decide(ci, key, g, Some(i64::MAX))
                    .expect("a cutoff keeps the group");
                self.held -= kept.entries.len();
                let next = last.saturating_add(span).saturating_add(1);
                let counted = Counted::Within(read_from, next);
                let passed = Stretch::new(i64::MAX, 0).read(parts, heads, &mut places, counted)?;
                debug_assert!(passed >= placed as u64, "{passed} counted, {placed} placed");
                self.stats[ci].over_budget += passed.saturating_sub(placed as u64);
                skip_until = kept.skip_until.max(next);
                held_from = next;
            }
        }
        self.held = self.held.saturating_sub(total as usize);
        Ok(())
    }

    /// Decides the windows of one group: all of them, or (with a cutoff)
    /// those that end before it; with a cutoff, the group comes back
    /// without the entries those windows no longer need.
    fn decide(
        &mut self,
        ci: usize,
        key: &[Option<String>],
        mut g: Group,
        cutoff: Option<i64>,
    ) -> Option<Group> {
        let set = self.set.clone();
        let c = &set.correlations[ci];
        let span = c.span_ms;
        if g.unsorted {
            // Matches at the same time by file and place: in the order
            // they were read, not in which parts of the group spilled.
            g.entries.sort_by(|a, b| a.order().cmp(&b.order()));
            g.unsorted = false;
        }
        let mut emitted: Vec<(usize, usize, f64)> = Vec::new();
        let n = g.entries.len();
        let mut i = g.entries.partition_point(|x| x.t < g.skip_until);
        let mut j = i;
        // The window [i, j) slides forward over running tallies, so each
        // entry is added and removed once.
        // Windows decided now end before the cutoff: only the matches
        // before it can be in them.
        let end = cutoff.map_or(n, |cu| g.entries.partition_point(|x| x.t < cu));
        let mut tally = Tally::new(c, &g.entries[..end.max(i)], i);
        while i < n {
            let start = g.entries[i].t;
            if cutoff.is_some_and(|cu| start.saturating_add(span) >= cu) {
                break;
            }
            while j < n && g.entries[j].t <= start.saturating_add(span) {
                tally.add(c, &g.entries, j);
                j += 1;
            }
            match tally.value(c, i) {
                Some(v) if c.holds(v) => {
                    emitted.push((i, j, v));
                    g.skip_until = g.entries[j - 1].t.saturating_add(1);
                    for k in i..j {
                        tally.remove(c, &g.entries, k);
                    }
                    i = j;
                }
                _ => {
                    tally.remove(c, &g.entries, i);
                    i += 1;
                }
            }
        }
        let mut outs = Vec::new();
        for (a, b, v) in emitted {
            outs.push(self.report(ci, key, &g.entries[a..b], v));
        }
        let kept = match cutoff {
            Some(cu) => {
                let keep_from = cu.saturating_sub(span);
                let drop = g.entries.partition_point(|x| x.t < keep_from);
                g.entries.drain(..drop);
                // The group is counted by what it holds, not by the room
                // its flood left: give most of that back.
                if g.entries.capacity() > 4 * g.entries.len().max(DENSE) {
                    g.entries.shrink_to(2 * g.entries.len().max(DENSE));
                }
                self.held -= drop;
                g.flushed_upto = g.flushed_upto.max(keep_from);
                g.decide_at = 2 * g.entries.len();
                g.decided_early = true;
                Some(g)
            }
            None => {
                self.held -= g.entries.len();
                None
            }
        };
        for (outer_feed, rep, t) in outs {
            for (oc, okey, values, pos) in outer_feed {
                let mut r = rep.clone();
                r.time = t;
                self.feed(
                    oc,
                    &okey,
                    Entry {
                        t: 0,
                        pos,
                        values,
                        rep: r,
                    },
                );
            }
        }
        kept
    }

    #[allow(clippy::type_complexity)]
    fn report(
        &mut self,
        ci: usize,
        key: &[Option<String>],
        w: &[Entry],
        v: f64,
    ) -> (
        Vec<(usize, Vec<Option<String>>, Vec<String>, usize)>,
        Rep,
        Option<time::OffsetDateTime>,
    ) {
        let set = self.set.clone();
        let c = &set.correlations[ci];
        self.stats[ci].hits += 1;
        let first = &w[0].rep;
        let last_t = w.last().and_then(|e| e.rep.time);
        if c.output {
            let mut ev = c.meta.evidence();
            ev.insert(
                "correlation_type".into(),
                serde_json::to_value(c.kind).unwrap_or_default(),
            );
            let mut grp = Map::new();
            for (name, val) in c.group_by.iter().zip(key) {
                grp.insert(
                    name.clone(),
                    val.clone().map(Value::String).unwrap_or(Value::Null),
                );
            }
            ev.insert("group".into(), Value::Object(grp));
            let label = match c.kind {
                Kind::EventCount => "event_count",
                Kind::ValueCount => "value_count",
                Kind::Temporal | Kind::TemporalOrdered => "rules_matched",
                Kind::ValueSum => "value_sum",
                Kind::ValueAvg => "value_avg",
                Kind::ValuePercentile => "value_percentile",
                Kind::ValueMedian => "value_median",
            };
            ev.insert(label.into(), serde_json::json!(v));
            ev.insert("events".into(), w.len().into());
            if let Some(t) = first.time {
                ev.insert("window_start".into(), rfc3339(t).into());
            }
            if let Some(t) = last_t {
                ev.insert("window_end".into(), rfc3339(t).into());
            }
            let mut titles: Vec<&str> = Vec::new();
            for e in w {
                let t = match c.refs.get(e.pos) {
                    Some(Ref::Rule(r)) => set.rules[*r].meta.title.as_str(),
                    Some(Ref::Corr(k)) => set.correlations[*k].meta.title.as_str(),
                    None => continue,
                };
                if !titles.contains(&t) {
                    titles.push(t);
                }
            }
            ev.insert("rules".into(), titles.into());
            self.findings.push(first.finding(
                Cow::Owned(c.meta.id.clone()),
                Cow::Owned(c.meta.title.clone()),
                c.meta.severity(),
                ev,
            ));
        }
        // What outer correlations get: one entry with this group's values.
        let mut feeds = Vec::new();
        for &oc in &c.feeds {
            let o = &set.correlations[oc];
            let keys: Vec<&str> = std::iter::once(c.meta.id.as_str())
                .chain(c.meta.name.as_deref())
                .collect();
            let okey = o
                .group_by
                .iter()
                .map(|g| {
                    let f = o.field_for(g, &keys);
                    c.group_by
                        .iter()
                        .position(|x| *x == f)
                        .and_then(|p| key.get(p).cloned().flatten())
                })
                .collect();
            let values = o
                .field
                .as_ref()
                .and_then(|f| c.group_by.iter().position(|x| x == f))
                .and_then(|p| key.get(p).cloned().flatten())
                .into_iter()
                .collect();
            let pos = o.refs.iter().position(|r| *r == Ref::Corr(ci)).unwrap_or(0);
            feeds.push((oc, okey, values, pos));
        }
        (feeds, first.clone(), last_t)
    }

    /// Decides every remaining window and returns the findings (sorted by
    /// time) and a status line per rule.
    pub fn finish(mut self) -> (Vec<Finding>, Vec<Coverage>, Vec<CorrStats>) {
        // Once some went to disk, every correlation's groups go: one
        // correlation's groups are then decided beside none of the
        // others' (three correlations fed one flood each decided its
        // group of 200,000 matches beside up to a budget the others
        // held: with the share of staying groups per correlation and the
        // merges that folded a group's parts, they peaked at 343-389 MiB).
        if self.groups.len() > 1 && self.groups.iter().any(SpillingMap::has_written) {
            for groups in &mut self.groups {
                groups.write_out();
            }
        }
        // Inner correlations first: their results feed outer ones.
        let order = topo(&self.set.correlations);
        for ci in order {
            // Group by group, in key order, each whole (its parts on disk
            // folded in).
            let groups = self.groups[ci].fork();
            let groups = std::mem::replace(&mut self.groups[ci], groups);
            groups.drain_parts(|key, parts| self.decide_parts(ci, &key.0, parts));
        }
        let set = self.set.clone();
        let mut st = Vec::new();
        for (ri, r) in set.rules.iter().enumerate() {
            let seen: u64 = r.compiled.iter().map(|(mi, _)| set.seen(*mi)).sum();
            // Records the raw screen ruled out are never matched, so no
            // record reaching matching does not prove the source absent:
            // say so without calling the rule blind.
            let (status, note) = if seen == 0 {
                (
                    Status::Ok,
                    Some(format!(
                        "no {} record reached matching (none in the input, or none carried the rule's texts)",
                        r.compiled
                            .iter()
                            .map(|(mi, _)| set.mappings[*mi].name())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )),
                )
            } else if !r.output {
                (
                    Status::Ok,
                    Some(format!(
                        "{} matches feed correlations (generate: false), not reported alone",
                        self.rule_hits[ri]
                    )),
                )
            } else {
                (Status::Ok, None)
            };
            st.push(Coverage {
                id: Cow::Owned(r.meta.id.clone()),
                title: Cow::Owned(r.meta.title.clone()),
                hits: if r.output { self.rule_hits[ri] } else { 0 },
                status,
                note,
            });
        }
        for (ci, c) in set.correlations.iter().enumerate() {
            let s = &self.stats[ci];
            let mut note = format!("{} matches fed", s.fed);
            if s.no_time > 0 {
                note.push_str(&format!(", {} without a time skipped", s.no_time));
            }
            if s.late > 0 {
                note.push_str(&format!(
                    ", {} arrived after their windows were decided",
                    s.late
                ));
            }
            if s.over_budget > 0 {
                note.push_str(&format!(
                    ", {} not placed in a window because more than {} matches of their group fell within one timespan (its windows may count fewer than happened)",
                    s.over_budget,
                    dense_span(self.group_max)
                ));
            }
            st.push(Coverage {
                id: Cow::Owned(c.meta.id.clone()),
                title: Cow::Owned(c.meta.title.clone()),
                hits: if c.output { s.hits } else { 0 },
                status: if s.fed == 0 {
                    Status::Blind
                } else {
                    Status::Ok
                },
                note: Some(note),
            });
        }
        self.findings.sort_by(|a, b| {
            (a.time, &a.source_file, &a.source_locator).cmp(&(
                b.time,
                &b.source_file,
                &b.source_locator,
            ))
        });
        (self.findings, st, self.stats)
    }
}

/// Correlations in an order where every correlation comes after those it
/// refers to. Iterative: a chain of correlations in a rule file may be
/// arbitrarily long.
fn topo(cs: &[Correlation]) -> Vec<usize> {
    let mut done = vec![false; cs.len()];
    let mut out = Vec::with_capacity(cs.len());
    // (correlation, next reference to look at)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..cs.len() {
        if done[root] {
            continue;
        }
        done[root] = true;
        stack.push((root, 0));
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            match cs[i].refs.get(*next) {
                Some(r) => {
                    *next += 1;
                    if let Ref::Corr(j) = *r {
                        if !done[j] {
                            done[j] = true;
                            stack.push((j, 0));
                        }
                    }
                }
                None => {
                    out.push(i);
                    stack.pop();
                }
            }
        }
    }
    out
}

/// Which correlations lie on a cycle of references (a strongly connected
/// component of two or more; self-references are dropped earlier), by
/// Tarjan's algorithm without recursion: linear in correlations and
/// references.
fn on_cycles(refs: &[Vec<usize>]) -> Vec<bool> {
    let n = refs.len();
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut component: Vec<usize> = Vec::new();
    let mut cyclic = vec![false; n];
    let mut next_index = 0;
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        calls.push((root, 0));
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        component.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut k)) = calls.last_mut() {
            if let Some(&w) = refs[v].get(*k) {
                *k += 1;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    component.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let at = component.iter().rposition(|&x| x == v).unwrap_or(0);
                let members = component.split_off(at);
                let cycle = members.len() > 1;
                for m in members {
                    on_stack[m] = false;
                    cyclic[m] = cycle;
                }
            }
        }
    }
    cyclic
}

/// Running aggregates of a sliding window, so that each entry is added
/// and removed once and every window's value costs O(log n) at most:
/// distinct values (`value_count`), distinct referenced rules
/// (`temporal`), the next occurrence of each rule (`temporal_ordered`), a
/// running sum (`value_sum`, `value_avg`) and counts over the ranks of the
/// values (`value_median`, `value_percentile`).
///
/// Built over the entries a decision looks at (`base..`); indices passed
/// in are positions in the group's entries.
struct Tally {
    base: usize,
    /// Entries in the window.
    len: usize,
    /// Lower-cased value -> entries in the window holding it.
    values: HashMap<String, u32>,
    /// Referenced rule position -> entries in the window.
    rules: HashMap<usize, u32>,
    /// `temporal_ordered`: for each entry from `base` (and one past the
    /// end), the index of the next entry of each referenced rule, flat.
    next: Vec<u32>,
    /// Numbers of each entry, flat, with each entry's start in `starts`.
    numbers: Vec<f64>,
    starts: Vec<usize>,
    /// Sum of the window's numbers: integers exactly, the rest with
    /// Neumaier's compensation, so removing a value undoes adding it.
    sum: ExactSum,
    /// Numbers in the window.
    count: usize,
    /// Rank of each number among the distinct numbers, and a Fenwick tree
    /// of how many of the window's numbers have each rank.
    ranks: Vec<u32>,
    distinct: Vec<f64>,
    fenwick: Vec<u32>,
}

impl Tally {
    fn new(c: &Correlation, entries: &[Entry], base: usize) -> Tally {
        let mut t = Tally {
            base,
            len: 0,
            values: HashMap::new(),
            rules: HashMap::new(),
            next: Vec::new(),
            numbers: Vec::new(),
            starts: Vec::new(),
            sum: ExactSum::default(),
            count: 0,
            ranks: Vec::new(),
            distinct: Vec::new(),
            fenwick: Vec::new(),
        };
        let tail = &entries[base..];
        match c.kind {
            Kind::TemporalOrdered => {
                let r = c.refs.len();
                let end = tail.len() as u32;
                t.next = vec![end; (tail.len() + 1) * r];
                for k in (0..tail.len()).rev() {
                    let (here, after) = t.next.split_at_mut((k + 1) * r);
                    here[k * r..].copy_from_slice(&after[..r]);
                    if tail[k].pos < r {
                        here[k * r + tail[k].pos] = k as u32;
                    }
                }
            }
            Kind::ValueSum | Kind::ValueAvg | Kind::ValueMedian | Kind::ValuePercentile => {
                for e in tail {
                    t.starts.push(t.numbers.len());
                    t.numbers
                        .extend(e.values.iter().filter_map(|v| super::matcher::as_number(v)));
                }
                t.starts.push(t.numbers.len());
                if matches!(c.kind, Kind::ValueMedian | Kind::ValuePercentile) {
                    t.distinct = t.numbers.clone();
                    t.distinct.sort_by(|a, b| a.total_cmp(b));
                    t.distinct.dedup_by(|a, b| a.total_cmp(b).is_eq());
                    t.ranks = t
                        .numbers
                        .iter()
                        .map(|x| {
                            t.distinct.binary_search_by(|d| d.total_cmp(x)).unwrap_or(0) as u32
                        })
                        .collect();
                    t.fenwick = vec![0; t.distinct.len() + 1];
                }
            }
            _ => {}
        }
        t
    }

    fn numbers_of(&self, k: usize) -> std::ops::Range<usize> {
        let k = k - self.base;
        self.starts[k]..self.starts[k + 1]
    }

    fn add(&mut self, c: &Correlation, entries: &[Entry], k: usize) {
        self.len += 1;
        self.step(c, entries, k, true);
    }

    fn remove(&mut self, c: &Correlation, entries: &[Entry], k: usize) {
        self.len -= 1;
        self.step(c, entries, k, false);
    }

    fn step(&mut self, c: &Correlation, entries: &[Entry], k: usize, add: bool) {
        #[cfg(test)]
        TALLY_STEPS.with(|n| n.set(n.get() + 1));
        fn change<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, key: K, add: bool) {
            if add {
                *m.entry(key).or_default() += 1;
            } else if let Some(n) = m.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&key);
                }
            }
        }
        let e = &entries[k];
        match c.kind {
            Kind::ValueCount => {
                for v in &e.values {
                    change(&mut self.values, v.to_lowercase(), add);
                }
            }
            Kind::Temporal => change(&mut self.rules, e.pos, add),
            Kind::ValueSum | Kind::ValueAvg => {
                for i in self.numbers_of(k) {
                    let x = self.numbers[i];
                    if add {
                        self.sum.add(x);
                        self.count += 1;
                    } else {
                        self.sum.add(-x);
                        self.count -= 1;
                    }
                }
                if self.count == 0 {
                    // Nothing left to drift from.
                    self.sum = ExactSum::default();
                }
            }
            Kind::ValueMedian | Kind::ValuePercentile => {
                for i in self.numbers_of(k) {
                    let mut r = self.ranks[i] as usize + 1;
                    while r < self.fenwick.len() {
                        if add {
                            self.fenwick[r] += 1;
                        } else {
                            self.fenwick[r] -= 1;
                        }
                        r += r & r.wrapping_neg();
                    }
                    if add {
                        self.count += 1;
                    } else {
                        self.count -= 1;
                    }
                }
            }
            Kind::EventCount | Kind::TemporalOrdered => {}
        }
    }

    /// The `rank`-th smallest number in the window (1-based).
    fn nth(&self, rank: usize) -> f64 {
        let mut pos = 0;
        let mut left = rank as u32;
        let mut step = (self.fenwick.len() - 1).next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.fenwick.len() && self.fenwick[next] < left {
                pos = next;
                left -= self.fenwick[next];
            }
            step /= 2;
        }
        self.distinct[pos]
    }

    /// The aggregate of the window `[first, first + len)` (None when it
    /// yields nothing to compare, e.g. no numeric values, or an ordered
    /// sequence that is incomplete).
    fn value(&self, c: &Correlation, first: usize) -> Option<f64> {
        match c.kind {
            Kind::EventCount => Some(self.len as f64),
            Kind::ValueCount => Some(self.values.len() as f64),
            Kind::Temporal => Some(self.rules.len() as f64),
            Kind::TemporalOrdered => {
                // The window opens on the first rule; the others must
                // follow in the order listed (each taken at its first
                // occurrence after the one before).
                let r = c.refs.len();
                let (start, end) = (first - self.base, first - self.base + self.len);
                if self.len == 0 || self.next[start * r] as usize != start {
                    return None;
                }
                let mut want = 1;
                let mut at = start;
                while want < r {
                    let found = self.next[(at + 1) * r + want] as usize;
                    if found >= end {
                        break;
                    }
                    at = found;
                    want += 1;
                }
                Some(want as f64)
            }
            Kind::ValueSum => (self.count > 0).then(|| self.sum.value()),
            Kind::ValueAvg => (self.count > 0).then(|| self.sum.value() / self.count as f64),
            Kind::ValueMedian | Kind::ValuePercentile => {
                if self.count == 0 {
                    return None;
                }
                let p = if c.kind == Kind::ValueMedian {
                    50.0
                } else {
                    c.percentile
                };
                // Nearest rank.
                let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as usize;
                Some(self.nth(rank.min(self.count)))
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Matches added to or removed from a window's tally on this thread:
    /// tests check that the work grows linearly with the matches.
    pub(crate) static TALLY_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A sum values are added to and taken from: integral values (the usual
/// byte and item counts) exactly, others with Neumaier's compensation.
#[derive(Default)]
struct ExactSum {
    integers: i128,
    floats: f64,
    compensation: f64,
}

impl ExactSum {
    fn add(&mut self, x: f64) {
        if x.fract() == 0.0 && x.abs() < 9.0e18 {
            self.integers += x as i128;
            return;
        }
        let t = self.floats + x;
        self.compensation += if self.floats.abs() >= x.abs() {
            (self.floats - t) + x
        } else {
            (x - t) + self.floats
        };
        self.floats = t;
    }

    fn value(&self) -> f64 {
        self.integers as f64 + (self.floats + self.compensation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenward_event::Locator;

    /// The aggregate of a window computed from scratch: what the running
    /// tallies must agree with.
    fn recomputed(c: &Correlation, w: &[Entry]) -> Option<f64> {
        let numbers = || -> Vec<f64> {
            w.iter()
                .flat_map(|e| e.values.iter())
                .filter_map(|v| super::super::matcher::as_number(v))
                .collect()
        };
        let percentile = |mut v: Vec<f64>, p: f64| {
            if v.is_empty() {
                return None;
            }
            v.sort_by(|a, b| a.total_cmp(b));
            let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
            Some(v[rank.min(v.len()) - 1])
        };
        match c.kind {
            Kind::EventCount => Some(w.len() as f64),
            Kind::ValueCount => {
                let mut seen: Vec<String> = w
                    .iter()
                    .flat_map(|e| e.values.iter().map(|v| v.to_lowercase()))
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                Some(seen.len() as f64)
            }
            Kind::Temporal => {
                let mut pos: Vec<usize> = w.iter().map(|e| e.pos).collect();
                pos.sort_unstable();
                pos.dedup();
                Some(pos.len() as f64)
            }
            Kind::TemporalOrdered => {
                if w.first()?.pos != 0 {
                    return None;
                }
                let mut want = 1;
                for e in &w[1..] {
                    if want < c.refs.len() && e.pos == want {
                        want += 1;
                    }
                }
                Some(want as f64)
            }
            Kind::ValueSum => {
                let n = numbers();
                (!n.is_empty()).then(|| n.iter().sum())
            }
            Kind::ValueAvg => {
                let n = numbers();
                (!n.is_empty()).then(|| n.iter().sum::<f64>() / n.len() as f64)
            }
            Kind::ValueMedian => percentile(numbers(), 50.0),
            Kind::ValuePercentile => percentile(numbers(), c.percentile),
        }
    }

    fn correlation(kind: &str, extra: &str) -> RuleSet {
        let base = |n: &str| {
            format!("title: {n}\nid: {n}-id\nname: {n}\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: {n}\n    condition: sel\n---\n")
        };
        let text = format!(
            "{}{}{}title: corr\nid: corr\ncorrelation:\n    type: {kind}\n    rules: [a, b, c]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n{extra}        gte: 1\n",
            base("a"),
            base("b"),
            base("c")
        );
        let set = RuleSet::from_texts(
            [("t.yml", false, text.as_str())],
            super::super::mapping::builtin(),
            &Default::default(),
        );
        assert!(
            set.errors().next().is_none(),
            "{:?}",
            set.errors().map(|e| e.to_string()).collect::<Vec<_>>()
        );
        set
    }

    fn entries(n: usize, seed: u64) -> Vec<Entry> {
        let mut x = seed;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        (0..n)
            .map(|i| {
                let values = (0..next() % 3)
                    .map(|_| match next() % 5 {
                        0 => format!("{}", next() % 40),
                        1 => format!("{}.{}", next() % 40, next() % 100),
                        2 => format!("-{}", next() % 7),
                        3 => format!("User{}", next() % 4),
                        _ => format!("user{}", next() % 4),
                    })
                    .collect();
                Entry {
                    t: i as i64,
                    pos: (next() % 3) as usize,
                    values,
                    rep: Rep {
                        time: None,
                        user: None,
                        client_ip: None,
                        app_id: None,
                        session_id: None,
                        token_id: None,
                        file: Arc::from("f"),
                        locator: Locator { line: 1, record: 1 },
                    },
                }
            })
            .collect()
    }

    #[test]
    fn every_window_tally_equals_the_window_recomputed() {
        let kinds = [
            ("event_count", ""),
            ("value_count", "        field: UserId\n"),
            ("temporal", ""),
            ("temporal_ordered", ""),
            ("value_sum", "        field: Size\n"),
            ("value_avg", "        field: Size\n"),
            ("value_median", "        field: Size\n"),
            (
                "value_percentile",
                "        field: Size\n        percentile: 90\n",
            ),
        ];
        for (kind, extra) in kinds {
            let set = correlation(kind, extra);
            let c = &set.correlations[0];
            for seed in 0..20 {
                let es = entries(40, seed);
                let base = (seed % 5) as usize;
                // Every window [i, j) from `base` on, reached as decide
                // reaches them: entries added at the right, removed at the
                // left.
                for i in base..es.len() {
                    let mut t = Tally::new(c, &es, base);
                    for k in base..i {
                        t.add(c, &es, k);
                    }
                    for k in base..i {
                        t.remove(c, &es, k);
                    }
                    for j in i..es.len() {
                        t.add(c, &es, j);
                        let (got, want) = (t.value(c, i), recomputed(c, &es[i..=j]));
                        match (got, want) {
                            (Some(g), Some(w)) => {
                                assert!(
                                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                                    "{kind} seed {seed} [{i}, {j}]: {g} vs {w}"
                                )
                            }
                            _ => assert_eq!(got, want, "{kind} seed {seed} [{i}, {j}]"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn integer_sums_stay_exact_past_float_precision() {
        let mut s = ExactSum::default();
        for x in [9.0e15, 1.0, 1.0, -9.0e15] {
            s.add(x);
        }
        // In f64, 9e15 + 1 + 1 loses the ones.
        assert_eq!(s.value(), 2.0);
        s.add(0.1);
        s.add(0.2);
        s.add(-0.1);
        assert!((s.value() - 2.2).abs() < 1e-12);
    }

    /// A match at `t`.
    fn at(t: i64) -> Entry {
        let mut e = entries(1, t as u64).remove(0);
        e.t = t;
        e
    }

    /// Folding a group's parts counts as late the matches of a part read
    /// back that are older than windows another part decided, in either
    /// order, as they would have been had the group stayed in memory.
    #[test]
    fn folded_parts_count_matches_behind_decided_windows_as_late() {
        let decided = || Group {
            entries: vec![at(150)],
            flushed_upto: 100,
            ..Group::default()
        };
        let later = || Group {
            entries: vec![at(50), at(120), at(99)],
            ..Group::default()
        };
        for (mut a, b) in [(decided(), later()), (later(), decided())] {
            a.fold(b);
            assert_eq!((a.entries.len(), a.flushed_upto, a.late), (4, 100, 2));
            assert!(a.unsorted);
        }
    }

    /// A group stays in memory when its correlation's groups spill once
    /// its windows were decided early: written out, the matches it gets
    /// next would make a part of their own, never decided early.
    #[test]
    fn groups_decided_early_stay_when_groups_spill() {
        let group = |n: i64, decided_early| Group {
            entries: (0..n).map(at).collect(),
            decided_early,
            ..Group::default()
        };
        assert!(!group(DENSE as i64, false).stays());
        assert!(group(0, true).stays());
        let mut folded = group(3, false);
        folded.fold(group(1, true));
        assert!(folded.stays());
    }

    /// What a part's head says it counts is what counting its matches
    /// one by one gives, whenever it says.
    #[test]
    fn counts_told_by_a_head_are_those_of_its_matches() {
        let mut rng = fastrand::Rng::with_seed(4);
        let mut told = 0;
        for _ in 0..5000 {
            let times: Vec<i64> = (0..rng.usize(0..6)).map(|_| rng.i64(0..20)).collect();
            let g = Group {
                entries: times.iter().map(|&t| at(t)).collect(),
                flushed_upto: rng.i64(0..20),
                ..Group::default()
            };
            let (a, b) = (rng.i64(0..22), rng.i64(0..22));
            for counted in [
                Counted::Nothing,
                Counted::LateBefore(a),
                Counted::Within(a.min(b), a.max(b)),
            ] {
                let one_by_one = times
                    .iter()
                    .filter(|&&t| counted.holds(t, g.flushed_upto))
                    .count() as u64;
                if let Some(n) = counted.whole(&GroupHead::of(&g)) {
                    assert_eq!(n, one_by_one, "{times:?} flushed {}", g.flushed_upto);
                    told += 1;
                }
            }
        }
        assert!(told > 5000, "{told}");
    }

    /// A large part read in pieces from any place reads as the part read
    /// whole does, and one cut short anywhere is an error, never fewer
    /// matches.
    #[test]
    fn a_part_read_in_pieces_reads_as_whole_and_cut_short_is_an_error() {
        let mut g = Group {
            entries: (0..40).map(|t| at(t * 3)).collect(),
            ..Group::default()
        };
        g.entries[5].values = vec!["x".repeat(450)];
        let mut bytes = Vec::new();
        g.write(&mut bytes).unwrap();
        let path = std::env::temp_dir().join(format!("tw-pieces-{}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let file = || std::fs::File::open(&path).unwrap();
        let whole = LargePart::new(file(), 0, bytes.len() as u64);
        let head = GroupHead::of(&g);
        let parts = |l: LargePart| Parts {
            small: None,
            large: vec![l],
        };
        let start = Place {
            offset: GroupHead::BYTES,
            index: 0,
        };
        let read_from = |p: &Parts<Group>, from: i64, places: &mut [Place]| {
            let mut s = Stretch::new(from, 1000);
            s.read(p, &[head], places, Counted::Nothing).map(|_| {
                let (e, _) = s.finish();
                format!("{e:?}")
            })
        };
        let p = parts(whole);
        let mut places = [start];
        let all = read_from(&p, 0, &mut places).unwrap();
        assert_eq!(all, format!("{:?}", g.entries));
        // From the 30th match on; the place then starts the next pass there.
        let mut places = [start];
        let later = read_from(&p, 90, &mut places).unwrap();
        assert_eq!(later, format!("{:?}", &g.entries[30..]));
        assert_eq!(places[0].index, 30);
        assert_eq!(read_from(&p, 90, &mut places).unwrap(), later);
        for cut in GroupHead::BYTES..bytes.len() as u64 {
            let p = parts(LargePart::new(file(), 0, cut));
            assert!(read_from(&p, 0, &mut [start]).is_err(), "cut at {cut}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// A group reads back from a run as it was written, and a run cut
    /// anywhere is an error.
    #[test]
    fn a_group_reads_back_as_written() {
        let mut e = at(7);
        e.values = vec!["203.0.113.9".into(), String::new()];
        e.rep.user = Some(Arc::from("a@x"));
        let g = Group {
            entries: vec![e, at(-3)],
            skip_until: 5,
            flushed_upto: -2,
            newest: Some(7),
            decide_at: 64,
            late: 1,
            over_cap: 3,
            unsorted: true,
            decided_early: false,
        };
        let mut buf = Vec::new();
        g.write(&mut buf).unwrap();
        let back = Group::read(&mut Cursor::new(&buf)).unwrap();
        // Its matches in time order.
        let mut sorted = Group {
            entries: g.entries.clone(),
            ..g
        };
        sorted.entries.reverse();
        assert_eq!(format!("{back:?}"), format!("{sorted:?}"));
        // Its head is the first bytes, and says what the group holds.
        let head = GroupHead::read(&mut Cursor::new(&buf[..GroupHead::BYTES as usize])).unwrap();
        assert_eq!(head, GroupHead::of(&g));
        assert_eq!((head.earliest, head.latest, head.entries), (-3, 7, 2));
        // Passed over, each match ends where reading it ends.
        let mut c = Cursor::new(&buf);
        GroupHead::read(&mut c).unwrap();
        for _ in 0..2 {
            c.u64().unwrap();
            Entry::skip_after_time(&mut c).unwrap();
        }
        assert_eq!(c.left(), 0);
        for cut in 0..buf.len() {
            assert!(
                Group::read(&mut Cursor::new(&buf[..cut])).is_err(),
                "cut at {cut}"
            );
        }
    }
}
