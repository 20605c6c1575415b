//! Findings → incidents.
//!
//! Findings are joined when they share a session id, a token id, an
//! implicated client IP, or a user within a day of each other; windows
//! where activity went unlogged (audit gaps) join the incidents they
//! overlap. Each incident is weighed by how many *independent* detections
//! corroborate it, so one weak signal alone is never "high". The rules are
//! written out in docs/incidents.md so a user can argue with them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use hashbrown::HashTable;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokenward_detect::{builtin_info, Weight};
use tokenward_event::timefmt::{parse_timestamp, rfc3339};
use tokenward_event::{Evidence, Finding, Severity};
use tokenward_spill::KeyHasher;

/// Findings of one user closer than this are one story.
pub const SAME_USER_WINDOW: Duration = Duration::hours(24);

/// An unlogged window this close to an incident belongs to it.
pub const UNLOGGED_REACH: Duration = Duration::hours(24);

/// Score at which an incident with a strong detection is "high".
pub const HIGH_SCORE: u32 = 5;

/// Score at which an incident is at least "medium".
pub const MEDIUM_SCORE: u32 = 3;

/// A stretch of time in which activity happened but was not logged, or
/// logging was switched off.
///
/// Fields are in key order: the run summary, whose keys are sorted, writes
/// it as serde derives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unlogged {
    /// One line on what happened.
    pub detail: String,
    /// The detection that showed it.
    pub detection: String,
    /// End, RFC 3339, when the logs say.
    pub end: Option<String>,
    /// `throttled`, `audit-gap` or `tampering`.
    pub kind: &'static str,
    /// Start, RFC 3339.
    pub start: Option<String>,
}

/// What the attacker read, as far as the logs say.
///
/// Fields are in key order: the run summary, whose keys are sorted, writes
/// it as serde derives it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Read {
    /// Mailbox exports or compliance searches.
    pub exports: u64,
    /// Folders named in the evidence.
    pub folders: Vec<String>,
    /// Mail items bound (opened) on the days flagged.
    pub items_bound: u64,
    /// Mailbox sync operations by unusual clients.
    pub syncs: u64,
}

/// One detection's part in an incident.
///
/// Fields are in key order: the run summary, whose keys are sorted, writes
/// it as serde derives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetectionPart {
    /// ATT&CK techniques.
    pub attack: Vec<String>,
    /// Findings of it in the incident.
    pub findings: usize,
    /// Detection (or Sigma rule) id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its weight here (`weak`, `moderate`, `strong`).
    pub weight: &'static str,
}

/// A group of findings that tell one story.
///
/// Fields are in key order: the run summary, whose keys are sorted, writes
/// it as serde derives it.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    /// Application ids.
    pub apps: Vec<String>,
    /// ATT&CK techniques of the detections involved.
    pub attack: Vec<String>,
    /// Client IPs.
    pub client_ips: Vec<String>,
    /// Per detection: count, weight, ATT&CK.
    pub detection_parts: Vec<DetectionPart>,
    /// Detection ids, strongest first.
    pub detections: Vec<String>,
    /// Number of findings (unlogged windows attached by time included).
    pub findings: usize,
    /// Earliest finding, RFC 3339.
    pub first_seen: Option<String>,
    /// `INC-0001`, …, in order of severity, then first seen.
    pub id: String,
    /// Latest finding, RFC 3339.
    pub last_seen: Option<String>,
    /// Mailboxes named in the evidence.
    pub mailboxes: Vec<String>,
    /// Places in the [`Slims`] given to [`build`] (the order their
    /// findings were pushed in), in time order.
    #[serde(skip)]
    pub members: Vec<usize>,
    /// What was read.
    pub read: Read,
    /// Sum of the strongest weight of each distinct detection.
    pub score: u32,
    /// Session ids.
    pub sessions: Vec<String>,
    /// Severity from corroboration.
    pub severity: Severity,
    /// Token ids.
    pub tokens: Vec<String>,
    /// Windows that went unlogged.
    pub unlogged: Vec<Unlogged>,
    /// Users (UPNs) named by the findings.
    pub users: Vec<String>,
    /// Why this severity, in words.
    pub why: String,
}

struct Dsu(Vec<u32>);

impl Dsu {
    fn new(n: usize) -> Dsu {
        Dsu((0..n).map(place).collect())
    }
    fn find(&mut self, i: usize) -> usize {
        let mut i = place(i);
        while self.0[i as usize] != i {
            self.0[i as usize] = self.0[self.0[i as usize] as usize];
            i = self.0[i as usize];
        }
        i as usize
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = place(a.min(b));
        }
    }
}

/// A place (of a finding, text, detection, kept evidence or group) as the
/// `u32` it is held by; never [`NONE`].
fn place(i: usize) -> u32 {
    // Four billion findings would take far more memory than any machine
    // has before their place stopped fitting.
    u32::try_from(i)
        .ok()
        .filter(|&p| p != NONE)
        .expect("fewer than 2^32 - 1 findings and texts")
}

/// No place: a finding without this text or kept evidence, a text no
/// finding has yet held in this field, a root with no group yet.
const NONE: u32 = u32::MAX;

/// The weight of finding `i`: its detection's own, capped by the
/// finding's severity (a detection that downgraded its finding meant it).
/// Sigma rules weigh by level: high or critical is moderate, others weak.
pub fn weight_of(s: &Slims, i: usize) -> Weight {
    let by_severity = match s.severity(i) {
        Severity::High => Weight::Strong,
        Severity::Medium => Weight::Moderate,
        Severity::Low => Weight::Weak,
    };
    match builtin_info(s.rule_id(i)) {
        Some(info) => info.weight.min(by_severity),
        None => by_severity.min(Weight::Moderate),
    }
}

fn weight_name(w: Weight) -> &'static str {
    match w {
        Weight::Weak => "weak",
        Weight::Moderate => "moderate",
        Weight::Strong => "strong",
    }
}

/// The kind of unlogged window a detection's findings show, if any.
fn unlogged_kind(rule_id: &str) -> Option<&'static str> {
    match rule_id {
        "tw-mail-throttled" => Some("throttled"),
        "tw-audit-gap" => Some("audit-gap"),
        "tw-audit-tampering" => Some("tampering"),
        _ => None,
    }
}

/// What kind of unlogged window finding `i` shows, if any.
fn unlogged_of(s: &Slims, i: usize) -> Option<Unlogged> {
    let text = |k: &str| evidence(s, i, k).and_then(Value::as_str).map(str::to_owned);
    let kind = unlogged_kind(s.rule_id(i))?;
    let start = s.time(i).map(rfc3339);
    let (end, detail) = match kind {
        "throttled" => (
            text("unlogged_until"),
            format!(
                "MailItemsAccessed throttled for {}: access in the next 24 h was not logged",
                text("mailbox")
                    .or_else(|| s.user(i).map(str::to_owned))
                    .unwrap_or_default()
            ),
        ),
        "audit-gap" => (
            text("gap_end"),
            format!(
                "no {} records for {} hours",
                text("workload").unwrap_or_else(|| "audit".into()),
                evidence(s, i, "hours")
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            ),
        ),
        _ => (
            None,
            text("why").unwrap_or_else(|| "audit logging disabled or bypassed".into()),
        ),
    };
    let start = if kind == "audit-gap" {
        text("gap_start").or(start)
    } else {
        start
    };
    Some(Unlogged {
        kind,
        start,
        end,
        detection: s.rule_id(i).to_string(),
        detail,
    })
}

/// A finding that carries no identity at all, only a time window (an audit
/// gap): it joins incidents by time, not by shared values.
fn is_floating(s: &Slims, i: usize) -> bool {
    let f = &s.slims[i];
    [f.user, f.session_id, f.token_id, f.client_ip]
        .iter()
        .all(|&t| t == NONE)
}

/// The client IPs (as texts of [`Slims`]) that a finding implicates on its
/// own: those of IOC-IP findings and of strong detections. Benign shared
/// addresses (office NAT) therefore never join unrelated users.
fn implicated_ips(s: &Slims) -> Vec<bool> {
    let mut implicated = vec![false; s.texts.len()];
    for i in 0..s.len() {
        let ip = s.slims[i].client_ip;
        if ip != NONE && (s.rule_id(i) == "tw-ioc-ip" || weight_of(s, i) == Weight::Strong) {
            implicated[ip as usize] = true;
        }
    }
    implicated
}

fn window_of(s: &Slims, i: usize) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    let parse = |k: &str| {
        evidence(s, i, k)
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
    };
    (
        parse("gap_start").or(s.time(i)),
        parse("gap_end").or(s.time(i)),
    )
}

/// The evidence entries [`build`] reads.
pub const EVIDENCE_READ: [&str; 10] = [
    "attack",
    "folders",
    "gap_end",
    "gap_start",
    "hours",
    "items_bound_that_day",
    "mailbox",
    "unlogged_until",
    "why",
    "workload",
];

/// One entry of finding `i`'s evidence, as [`build`] reads every one: a
/// key missing from [`EVIDENCE_READ`] is not kept in [`Slims`], so
/// reading one fails every debug build's tests.
fn evidence<'a>(s: &'a Slims, i: usize, key: &str) -> Option<&'a Value> {
    debug_assert!(
        EVIDENCE_READ.contains(&key),
        "incidents read evidence {key:?}: add it to EVIDENCE_READ"
    );
    let at = s.slims[i].evidence;
    (at != NONE)
        .then(|| s.evidence[at as usize].get(key))
        .flatten()
}

/// Texts end to end in one buffer, each named by its place.
#[derive(Default)]
struct Spans {
    bytes: String,
    /// Where each text ends in `bytes`; it starts where the one before ends.
    ends: Vec<usize>,
}

impl Spans {
    fn get(&self, id: u32) -> &str {
        let id = id as usize;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        &self.bytes[start..self.ends[id]]
    }

    fn push(&mut self, text: &str) -> u32 {
        let id = place(self.ends.len());
        self.bytes.push_str(text);
        self.ends.push(self.bytes.len());
        id
    }
}

/// Texts held once each, end to end in one buffer: a finding's user,
/// addresses and ids are numbers into it.
#[derive(Default)]
struct Texts {
    spans: Spans,
    /// The texts' numbers, by their hash.
    index: HashTable<u32>,
    hasher: KeyHasher,
}

impl Texts {
    fn len(&self) -> usize {
        self.spans.ends.len()
    }

    fn get(&self, id: u32) -> &str {
        self.spans.get(id)
    }

    /// The number of `text`, given one if it is new.
    fn number(&mut self, text: &str) -> u32 {
        let hash = self.hasher.hash_one(text);
        let Texts {
            spans,
            index,
            hasher,
        } = self;
        if let Some(&id) = index.find(hash, |&id| spans.get(id) == text) {
            return id;
        }
        let id = spans.push(text);
        index.insert_unique(hash, id, |&id| hasher.hash_one(spans.get(id)));
        id
    }

    fn opt_number(&mut self, text: Option<&str>) -> u32 {
        text.map_or(NONE, |t| self.number(t))
    }
}

/// One finding as [`Slims`] hold it: numbers into their tables.
#[derive(Clone, Copy)]
struct Slim {
    time: Option<OffsetDateTime>,
    rule: u32,
    user: u32,
    client_ip: u32,
    app_id: u32,
    session_id: u32,
    token_id: u32,
    evidence: u32,
    severity: Severity,
}

/// Findings cut down to what [`build`] reads, for a caller that keeps
/// every finding only to group them. Each text (user, client address, app,
/// session and token id) is held once, end to end with the others, and a
/// finding names it by number; so are each detection's names and each
/// kept evidence. A Sigma finding over sign-ins took about 800 bytes as a
/// cut-down [`Finding`], and about 280 as one with its own copies of the
/// session and token ids and shared copies of the other texts; it is now
/// about 170 with its share of the incidents' own lists (docs/limits.md).
#[derive(Default)]
pub struct Slims {
    slims: Vec<Slim>,
    texts: Texts,
    /// Detection id and title. Sigma ids are not checked unique (a copied
    /// rule keeps its id), so each title of an id is its own entry.
    rules: Vec<(String, String)>,
    /// Places in `rules`, by detection id.
    rule_places: HashMap<String, Vec<u32>, KeyHasher>,
    /// The evidence entries grouping reads, where a finding has some.
    evidence: Vec<Evidence>,
    /// The place in `evidence` of findings whose evidence is only entries
    /// shared with others (a Sigma rule's), by the address of those.
    shared_evidence: HashMap<usize, u32, KeyHasher>,
}

impl Slims {
    /// Room for `n` findings before growing.
    pub fn with_capacity(n: usize) -> Slims {
        Slims {
            slims: Vec::with_capacity(n),
            ..Slims::default()
        }
    }

    /// The slim copies of `findings`, in order.
    pub fn of(findings: &[Finding]) -> Slims {
        let mut s = Slims::with_capacity(findings.len());
        for f in findings {
            s.push(f);
        }
        s
    }

    /// Adds the slim copy of `f`; it is the `len()`-th before the call.
    pub fn push(&mut self, f: &Finding) {
        let rule = self.rule_place(&f.rule_id, &f.rule_title);
        let kept = f.evidence.subset(&EVIDENCE_READ);
        let evidence = if kept.is_empty() {
            NONE
        } else if let Some(shared) = kept.only_shared() {
            // The first evidence kept holds the shared entries, so their
            // address is not reused for other entries while `self` lives.
            let key = std::sync::Arc::as_ptr(shared) as *const u8 as usize;
            let next = place(self.evidence.len());
            match self.shared_evidence.entry(key) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    e.insert(next);
                    self.evidence.push(kept);
                    next
                }
            }
        } else {
            self.evidence.push(kept);
            place(self.evidence.len() - 1)
        };
        let t = &mut self.texts;
        let slim = Slim {
            time: f.time,
            rule,
            user: t.opt_number(f.user.as_deref()),
            client_ip: t.opt_number(f.client_ip.as_deref()),
            app_id: t.opt_number(f.app_id.as_deref()),
            session_id: t.opt_number(f.session_id.as_deref()),
            token_id: t.opt_number(f.token_id.as_deref()),
            evidence,
            severity: f.severity,
        };
        self.slims.push(slim);
    }

    fn rule_place(&mut self, id: &str, title: &str) -> u32 {
        let next = place(self.rules.len());
        let places = match self.rule_places.get_mut(id) {
            Some(p) => p,
            None => self.rule_places.entry(id.to_owned()).or_default(),
        };
        match places.iter().find(|&&p| self.rules[p as usize].1 == title) {
            Some(&p) => p,
            None => {
                places.push(next);
                self.rules.push((id.to_owned(), title.to_owned()));
                next
            }
        }
    }

    /// How many findings.
    pub fn len(&self) -> usize {
        self.slims.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slims.is_empty()
    }

    fn text(&self, id: u32) -> Option<&str> {
        (id != NONE).then(|| self.texts.get(id))
    }

    fn rule_id(&self, i: usize) -> &str {
        &self.rules[self.slims[i].rule as usize].0
    }
    fn rule_title(&self, i: usize) -> &str {
        &self.rules[self.slims[i].rule as usize].1
    }
    fn severity(&self, i: usize) -> Severity {
        self.slims[i].severity
    }
    fn time(&self, i: usize) -> Option<OffsetDateTime> {
        self.slims[i].time
    }
    fn user(&self, i: usize) -> Option<&str> {
        self.text(self.slims[i].user)
    }
}

/// Findings weighed into incidents by default ([`left_out`]): with the
/// slim copy of each and the incidents' lists, about 85 MB.
pub const WEIGHED_MAX: u64 = 500_000;

/// The rules whose findings incidents leave out so that at most `max` are
/// weighed, each with its count of findings: Sigma rules before built-in
/// detections, and among each the rules with the most findings first (ties
/// by id), until the rest number `max` or fewer.
///
/// Incidents weigh every finding against the others and keep a slim copy
/// of each ([`Slims`]), so this bounds their memory whatever the input. A
/// Sigma rule that fires this often (on most sign-ins) says the least
/// about any one incident. Built-in detections go last: their findings
/// are few, and an indicator match behind a spray of millions of sign-ins
/// is what an incident is for.
pub fn left_out<'a>(
    per_rule: impl IntoIterator<Item = (&'a str, u64)>,
    max: u64,
) -> Vec<(String, u64)> {
    let mut rules: Vec<(&str, u64)> = per_rule.into_iter().collect();
    rules.sort_by_key(|&(id, n)| (builtin_info(id).is_some(), std::cmp::Reverse(n), id));
    let mut weighed: u64 = rules.iter().map(|r| r.1).sum();
    let mut out = Vec::new();
    for (id, n) in rules {
        if weighed <= max {
            break;
        }
        weighed -= n;
        out.push((id.to_owned(), n));
    }
    out
}

/// The summary's key for the rules [`left_out`] named.
pub const LEFT_OUT_KEY: &str = "left_out_of_incidents";

/// Writes the rules [`left_out`] named into a run summary, under
/// [`LEFT_OUT_KEY`], as `{"rule_id": ..., "findings": N}` each (nothing
/// when the summary is not an object).
pub fn put_left_out(summary: &mut Value, rules: &[(String, u64)]) {
    if let Some(s) = summary.as_object_mut() {
        let rules = rules
            .iter()
            .map(|(id, n)| serde_json::json!({"rule_id": id, "findings": n}));
        s.insert(LEFT_OUT_KEY.into(), rules.collect());
    }
}

/// The rules a run summary names as left out of incidents
/// ([`put_left_out`]), in its order, each with its count of findings.
pub fn left_out_in(summary: &Value) -> Vec<(&str, u64)> {
    summary[LEFT_OUT_KEY]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Some((r["rule_id"].as_str()?, r["findings"].as_u64().unwrap_or(0))))
        .collect()
}

/// Groups findings into incidents, most severe first.
pub fn build(s: &Slims) -> Vec<Incident> {
    let n = s.len();
    let mut dsu = Dsu::new(n);
    let implicated = implicated_ips(s);
    // The first finding holding each text as its session id, token id or
    // implicated address, by the text's number: an equal text is the same
    // number, so no map of texts is needed.
    let mut first_by = vec![[NONE; 3]; s.texts.len()];
    for (i, f) in s.slims.iter().enumerate() {
        let ip = if f.client_ip != NONE && implicated[f.client_ip as usize] {
            f.client_ip
        } else {
            NONE
        };
        for (tag, id) in [f.session_id, f.token_id, ip].into_iter().enumerate() {
            if id == NONE || s.texts.get(id).is_empty() {
                continue;
            }
            match first_by[id as usize][tag] {
                NONE => first_by[id as usize][tag] = place(i),
                first => dsu.join(i, first as usize),
            }
        }
    }
    // One user's findings within a day of each other: each user's in
    // order of time (then place), each joined to the one before it. A
    // user's number stands for the user; which comes first changes no join.
    let mut by_user: Vec<(u32, OffsetDateTime, u32)> = s
        .slims
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((f.user, f.time?, place(i))).filter(|u| u.0 != NONE))
        .collect();
    by_user.par_sort_unstable();
    for pair in by_user.windows(2) {
        let ((user_a, time_a, a), (user_b, time_b, b)) = (pair[0], pair[1]);
        if user_a == user_b && time_b - time_a <= SAME_USER_WINDOW {
            dsu.join(a as usize, b as usize);
        }
    }
    drop(by_user);
    drop(first_by);
    // Groups in the order of their first finding (a group's root is its
    // first finding, as joins keep the lower place).
    let mut group_of_root = vec![NONE; n];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut floating = Vec::new();
    for i in 0..n {
        if is_floating(s, i) && unlogged_kind(s.rule_id(i)).is_some() {
            floating.push(i);
            continue;
        }
        let root = dsu.find(i);
        if group_of_root[root] == NONE {
            group_of_root[root] = place(groups.len());
            groups.push(Vec::new());
        }
        groups[group_of_root[root] as usize].push(i);
    }
    drop(group_of_root);
    let mut spans: Vec<(Vec<usize>, Option<OffsetDateTime>, Option<OffsetDateTime>)> = groups
        .into_iter()
        .map(|members| {
            let times = members.iter().filter_map(|&i| s.time(i));
            let first = times.clone().min();
            let last = times.max();
            (members, first, last)
        })
        .collect();
    // Floating windows attach to every incident they come near; alone, they
    // are incidents of their own.
    let mut attached: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    for &i in &floating {
        let (start, end) = window_of(s, i);
        let mut placed = false;
        for (g, (_, first, last)) in spans.iter().enumerate() {
            if let (Some(start), Some(end), Some(first), Some(last)) = (start, end, first, last) {
                if start <= *last + UNLOGGED_REACH && end >= *first - UNLOGGED_REACH {
                    attached[g].push(i);
                    placed = true;
                }
            }
        }
        if !placed {
            spans.push((vec![i], s.time(i), s.time(i)));
            attached.push(Vec::new());
        }
    }
    // Groups are summarised on every core: a rule that fires on most
    // records of a large export makes tens of thousands of them.
    let mut incidents: Vec<Incident> = spans
        .into_par_iter()
        .zip(attached)
        .map(|((members, _, _), extra)| summarise(s, members, extra))
        .collect();
    incidents.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.score.cmp(&a.score))
            .then(a.first_seen.cmp(&b.first_seen))
    });
    let width = incidents.len().to_string().len().max(4);
    for (k, inc) in incidents.iter_mut().enumerate() {
        inc.id = format!("INC-{:0width$}", k + 1);
    }
    incidents
}

fn summarise(s: &Slims, mut members: Vec<usize>, attached: Vec<usize>) -> Incident {
    members.sort_by_key(|&i| (s.time(i), i));
    // Each list's texts by number first: a number is one text, and
    // comparing numbers to drop the repeats is cheaper than comparing
    // texts. Then sorted as texts, as the lists are written.
    let list = |field: fn(&Slim) -> u32| -> Vec<String> {
        let mut ids: Vec<u32> = members
            .iter()
            .map(|&i| field(&s.slims[i]))
            .filter(|&id| id != NONE)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut texts: Vec<&str> = ids.into_iter().map(|id| s.texts.get(id)).collect();
        texts.sort_unstable();
        texts.into_iter().map(str::to_owned).collect()
    };
    let users = list(|f| f.user);
    let client_ips = list(|f| f.client_ip);
    let apps = list(|f| f.app_id);
    let sessions = list(|f| f.session_id);
    let tokens = list(|f| f.token_id);
    let mut mailboxes: Vec<&str> = members
        .iter()
        .filter_map(|&i| evidence(s, i, "mailbox").and_then(Value::as_str))
        .collect();
    mailboxes.sort_unstable();
    mailboxes.dedup();
    let mailboxes = mailboxes.into_iter().map(str::to_owned).collect();
    let first = members.iter().filter_map(|&i| s.time(i)).min();
    let last = members.iter().filter_map(|&i| s.time(i)).max();

    let mut parts: BTreeMap<&str, (String, usize, Weight)> = BTreeMap::new();
    let mut read = Read::default();
    let mut folders = BTreeSet::new();
    let mut unlogged = Vec::new();
    for &i in &members {
        let w = weight_of(s, i);
        let e = parts
            .entry(s.rule_id(i))
            .or_insert_with(|| (s.rule_title(i).to_string(), 0, w));
        e.1 += 1;
        e.2 = e.2.max(w);
        match s.rule_id(i) {
            "tw-mail-bind-spike" => {
                read.items_bound += evidence(s, i, "items_bound_that_day")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
            }
            "tw-mail-sync-unusual-client" => read.syncs += 1,
            "tw-mailbox-export" => read.exports += 1,
            _ => {}
        }
        if let Some(Value::Array(fs)) = evidence(s, i, "folders") {
            folders.extend(fs.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if let Some(u) = unlogged_of(s, i) {
            unlogged.push(u);
        }
    }
    for &i in &attached {
        if let Some(u) = unlogged_of(s, i) {
            unlogged.push(u);
        }
    }
    read.folders = folders.into_iter().collect();
    let score: u32 = parts.values().map(|(_, _, w)| w.points()).sum();
    let strong = parts
        .values()
        .filter(|(_, _, w)| *w == Weight::Strong)
        .count();
    let (severity, why) = if strong >= 1 && score >= HIGH_SCORE {
        (
            Severity::High,
            format!(
                "{} independent detections corroborate each other ({strong} strong), score {score}",
                parts.len()
            ),
        )
    } else if strong >= 1 || score >= MEDIUM_SCORE {
        (
            Severity::Medium,
            if strong >= 1 {
                format!("one strong detection without corroboration, score {score}")
            } else {
                format!(
                    "{} weaker signals together, none strong, score {score}",
                    parts.len()
                )
            },
        )
    } else {
        (
            Severity::Low,
            format!(
                "{} alone: seen in benign activity too, nothing corroborates it (score {score})",
                parts.keys().copied().collect::<Vec<_>>().join(" and ")
            ),
        )
    };
    let mut detection_parts: Vec<DetectionPart> = parts
        .iter()
        .map(|(id, (title, count, w))| DetectionPart {
            id: (*id).to_owned(),
            title: title.clone(),
            findings: *count,
            weight: weight_name(*w),
            attack: attack_of(id, s, &members),
        })
        .collect();
    detection_parts.sort_by(|a, b| {
        let rank = |w: &str| match w {
            "strong" => 0,
            "moderate" => 1,
            _ => 2,
        };
        rank(a.weight)
            .cmp(&rank(b.weight))
            .then(b.findings.cmp(&a.findings))
            .then(a.id.cmp(&b.id))
    });
    let attack: BTreeSet<String> = detection_parts
        .iter()
        .flat_map(|p| p.attack.iter().cloned())
        .collect();
    let findings_count = members.len() + attached.len();
    members.extend(attached);
    Incident {
        id: String::new(),
        severity,
        score,
        why,
        users,
        mailboxes,
        client_ips,
        apps,
        sessions,
        tokens,
        first_seen: first.map(rfc3339),
        last_seen: last.map(rfc3339),
        detections: detection_parts.iter().map(|p| p.id.clone()).collect(),
        detection_parts,
        attack: attack.into_iter().collect(),
        read,
        unlogged,
        findings: findings_count,
        members,
    }
}

/// The ATT&CK techniques of detection `id`: declared by a built-in, or
/// carried in its findings' evidence (`attack`, from Sigma rule tags).
fn attack_of(id: &str, s: &Slims, members: &[usize]) -> Vec<String> {
    if let Some(info) = builtin_info(id) {
        return info.attack.iter().map(|t| (*t).to_owned()).collect();
    }
    let mut out = BTreeSet::new();
    for &i in members {
        if s.rule_id(i) == id {
            if let Some(Value::Array(tags)) = evidence(s, i, "attack") {
                out.extend(tags.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
    }
    out.into_iter().collect()
}

/// The findings incidents did not weigh: those of the rules [`left_out`]
/// named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unweighed {
    /// Rules left out.
    pub rules: usize,
    /// Their findings.
    pub findings: u64,
}

impl Unweighed {
    /// What the rules left out (each with its count of findings) add up to.
    pub fn of<'a>(left_out: impl IntoIterator<Item = (&'a str, u64)>) -> Unweighed {
        left_out
            .into_iter()
            .fold(Unweighed::default(), |u, (_, n)| Unweighed {
                rules: u.rules + 1,
                findings: u.findings + n,
            })
    }
}

/// The verdict for the top of a report or the terminal, in one or two
/// sentences: from the incidents, and saying so
/// when incidents did not weigh every finding (`unweighed`), since a
/// finding left out may be what a verdict of no compromise missed.
pub fn headline(incidents: &[Incident], unweighed: Unweighed) -> String {
    let verdict = incidents_headline(incidents, unweighed);
    if unweighed.findings == 0 {
        return verdict;
    }
    format!(
        "{verdict} Not weighed: the {} finding{} of the {} rule{} left out of incidents to bound memory (--incident-findings); read them in the findings output.",
        unweighed.findings,
        if unweighed.findings == 1 { "" } else { "s" },
        unweighed.rules,
        if unweighed.rules == 1 { "" } else { "s" },
    )
}

fn incidents_headline(incidents: &[Incident], unweighed: Unweighed) -> String {
    let high = incidents
        .iter()
        .filter(|i| i.severity == Severity::High)
        .count();
    let medium = incidents
        .iter()
        .filter(|i| i.severity == Severity::Medium)
        .count();
    let low = incidents.len() - high - medium;
    if incidents.is_empty() && unweighed.findings > 0 {
        return "No incidents among the findings weighed.".into();
    }
    if incidents.is_empty() {
        return "No findings: nothing in these logs matched a detection. Check the blind spots below before reading this as clean.".into();
    }
    let count =
        |n: usize, what: &str| format!("{n} {what} incident{}", if n == 1 { "" } else { "s" });
    if high > 0 {
        let users: BTreeSet<&str> = incidents
            .iter()
            .filter(|i| i.severity == Severity::High)
            .flat_map(|i| i.users.iter().map(String::as_str))
            .collect();
        let mut also: Vec<String> = Vec::new();
        if medium > 0 {
            also.push(count(medium, "medium"));
        }
        if low > 0 {
            also.push(count(low, "low"));
        }
        format!(
            "Likely compromise: {} affecting {}{}.",
            count(high, "high-severity"),
            users.into_iter().collect::<Vec<_>>().join(", "),
            if also.is_empty() {
                String::new()
            } else {
                format!("; also {}", also.join(" and "))
            }
        )
    } else if medium > 0 {
        format!(
            "No corroborated compromise: {} and {} need a look; none has independent detections agreeing.",
            count(medium, "medium"),
            count(low, "low")
        )
    } else {
        format!(
            "No compromise indicated: {}, each a lone weak signal that benign activity also produces.",
            count(low, "low")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};
    use std::borrow::Cow;
    use std::sync::Arc;
    use time::macros::datetime;

    struct F {
        rule: &'static str,
        severity: Severity,
        time: OffsetDateTime,
        user: Option<&'static str>,
        ip: Option<&'static str>,
        session: Option<&'static str>,
        evidence: Value,
    }

    fn f(rule: &'static str, severity: Severity, time: OffsetDateTime, user: &'static str) -> F {
        F {
            rule,
            severity,
            time,
            user: Some(user),
            ip: None,
            session: None,
            evidence: json!({}),
        }
    }

    impl F {
        fn ip(mut self, ip: &'static str) -> F {
            self.ip = Some(ip);
            self
        }
        fn session(mut self, s: &'static str) -> F {
            self.session = Some(s);
            self
        }
        fn evidence(mut self, e: Value) -> F {
            self.evidence = e;
            self
        }
        fn done(self) -> Finding {
            let evidence: Map<String, Value> =
                self.evidence.as_object().cloned().unwrap_or_default();
            Finding {
                rule_id: Cow::Borrowed(self.rule),
                rule_title: Cow::Borrowed(self.rule),
                severity: self.severity,
                time: Some(self.time),
                user: self.user.map(str::to_owned),
                client_ip: self.ip.map(str::to_owned),
                app_id: None,
                session_id: self.session.map(str::to_owned),
                token_id: None,
                source_file: "x.jsonl".into(),
                source_locator: "line 1".into(),
                evidence: evidence.into(),
            }
        }
    }

    use Severity::{High, Low, Medium};

    /// The members of each incident of `findings`, each list and the
    /// lists in order.
    fn groups_of(findings: &[Finding]) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = build(&Slims::of(findings))
            .into_iter()
            .map(|i| {
                let mut m = i.members;
                m.sort_unstable();
                m
            })
            .collect();
        groups.sort();
        groups
    }

    /// The Storm-0558 story: forged-token detections on the victim's
    /// session, audit tampering by another user through the same session,
    /// an IOC IP without a session, and an audit gap right after.
    #[test]
    fn corroborated_forgery_is_one_high_incident_with_its_unlogged_windows() {
        let t = datetime!(2023-06-19 01:10 UTC);
        let findings = vec![
            f("tw-token-without-signin", High, t, "dan").ip("195.26.87.219").session("S").done(),
            f("tw-owa-token-for-resource", High, t, "dan").ip("195.26.87.219").session("S").done(),
            f("tw-mail-bind-spike", High, t + Duration::minutes(20), "dan")
                .session("S")
                .evidence(json!({"items_bound_that_day": 1003, "mailbox": "dan"}))
                .done(),
            f("tw-ioc-ip", High, t + Duration::hours(1), "dan").ip("195.26.87.219").done(),
            f("tw-mail-throttled", High, t + Duration::hours(27), "dan")
                .session("S")
                .evidence(json!({"unlogged_until": "2023-06-21T04:30:00Z", "mailbox": "dan"}))
                .done(),
            f("tw-audit-tampering", High, t + Duration::hours(47), "erin").session("S").done(),
            Finding {
                user: None,
                ..f("tw-audit-gap", Medium, t + Duration::hours(48), "x")
                    .evidence(json!({"gap_start": "2023-06-21T01:00:00Z", "gap_end": "2023-06-22T06:00:00Z", "workload": "Exchange", "hours": 29}))
                    .done()
            },
        ];
        let incidents = build(&Slims::of(&findings));
        assert_eq!(incidents.len(), 1, "{incidents:#?}");
        let inc = &incidents[0];
        assert_eq!(inc.severity, High);
        assert_eq!(inc.users, ["dan", "erin"]);
        assert_eq!(inc.read.items_bound, 1003);
        let kinds: Vec<&str> = inc.unlogged.iter().map(|u| u.kind).collect();
        assert!(
            kinds.contains(&"throttled")
                && kinds.contains(&"tampering")
                && kinds.contains(&"audit-gap"),
            "{kinds:?}"
        );
        assert_eq!(inc.findings, 7);
        assert!(
            inc.attack.iter().any(|t| t == "T1606") && inc.attack.iter().any(|t| t == "T1562.008")
        );
    }

    /// A tenant-wide rollout of a new mail client: every user gets a "high"
    /// new-client-app finding the same morning, from the office NAT address.
    /// None of them is a high incident, and the shared address does not
    /// merge them.
    #[test]
    fn a_rollout_of_a_new_mail_client_forms_no_high_incident() {
        let t = datetime!(2024-03-04 08:00 UTC);
        let users = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"];
        let findings: Vec<Finding> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                f(
                    "tw-mail-new-client-app",
                    High,
                    t + Duration::minutes(i as i64),
                    u,
                )
                .ip("203.0.113.10")
                .done()
            })
            .collect();
        let incidents = build(&Slims::of(&findings));
        assert_eq!(incidents.len(), users.len());
        assert!(
            incidents.iter().all(|i| i.severity == Low),
            "{incidents:#?}"
        );
        assert!(headline(&incidents, Unweighed::default()).starts_with("No compromise indicated"));
    }

    /// A verdict never reads as clean when incidents left findings out:
    /// it says how many were not weighed.
    #[test]
    fn the_headline_says_what_incidents_did_not_weigh() {
        let unweighed = Unweighed::of([("rule-a", 1_999_999), ("rule-b", 1)]);
        assert_eq!(
            unweighed,
            Unweighed {
                rules: 2,
                findings: 2_000_000
            }
        );
        let none = headline(&[], unweighed);
        assert!(!none.contains("No findings"), "{none}");
        assert!(
            none.starts_with("No incidents among the findings weighed.")
                && none.contains("the 2000000 findings of the 2 rules left out of incidents"),
            "{none}"
        );
        assert!(headline(&[], Unweighed::default()).starts_with("No findings"));
        let findings = vec![f(
            "tw-ioc-useragent",
            Low,
            datetime!(2023-06-10 10:00 UTC),
            "a@x",
        )
        .done()];
        let incidents = build(&Slims::of(&findings));
        let some = headline(&incidents, Unweighed::of([("rule-a", 1)]));
        assert!(
            some.starts_with("No compromise indicated")
                && some.ends_with("the 1 finding of the 1 rule left out of incidents to bound memory (--incident-findings); read them in the findings output."),
            "{some}"
        );
    }

    /// A benign REST client whose user agent is on the Storm-0558 list,
    /// syncing one user's mailbox with a client app new to it: weak signals
    /// that agree on one user are worth a look, not "high".
    #[test]
    fn a_benign_rest_client_with_the_storm_user_agent_is_not_high() {
        let t = datetime!(2024-03-04 08:00 UTC);
        let findings = vec![
            f("tw-ioc-useragent", High, t, "svc")
                .ip("198.51.100.7")
                .done(),
            f("tw-mail-new-client-app", High, t, "svc")
                .ip("198.51.100.7")
                .done(),
            f(
                "tw-mail-sync-unusual-client",
                High,
                t + Duration::minutes(5),
                "svc",
            )
            .ip("198.51.100.7")
            .done(),
        ];
        let incidents = build(&Slims::of(&findings));
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].severity, Medium, "{:#?}", incidents[0]);
        assert!(incidents[0].why.contains("none strong"));
        // Alone, the user agent is low.
        let incidents = build(&Slims::of(&findings[..1]));
        assert_eq!(incidents[0].severity, Low);
    }

    /// One strong signal alone is worth a look, not a verdict; and a Sigma
    /// rule (not a built-in) never counts as strong.
    #[test]
    fn a_lone_strong_signal_is_medium_and_sigma_is_never_strong() {
        let t = datetime!(2024-03-04 08:00 UTC);
        let lone = build(&Slims::of(&[
            f("tw-token-without-signin", High, t, "a").done()
        ]));
        assert_eq!(lone[0].severity, Medium);
        let sigma = build(&Slims::of(&[
            f("b1f2-some-sigma-rule", High, t, "a").done(),
            f("c3d4-another-sigma-rule", High, t, "a").done(),
            f("e5f6-third-sigma-rule", High, t, "a").done(),
        ]));
        assert_eq!(sigma[0].severity, Medium, "{:#?}", sigma[0]);
        // A Sigma rule's ATT&CK tags (carried in its evidence) reach the
        // incident.
        let tagged = build(&Slims::of(&[f("b1f2-some-sigma-rule", High, t, "a")
            .evidence(json!({"attack": ["T1114.002"]}))
            .done()]));
        assert_eq!(tagged[0].attack, ["T1114.002"]);
        assert_eq!(tagged[0].detection_parts[0].attack, ["T1114.002"]);
    }

    /// Slims keep what grouping reads, each text and detection once, and
    /// the evidence nobody reads is gone; the incidents made from them
    /// carry the whole story (unlogged windows, what was read).
    #[test]
    fn slims_keep_what_grouping_reads_once() {
        let t = datetime!(2023-06-19 01:10 UTC);
        let noise = "x".repeat(500);
        let sigma_part = Arc::new(
            json!({"attack": ["T1114.002"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        let sigma = |user: &'static str, hours: i64| Finding {
            evidence: Evidence::with_shared(
                sigma_part.clone(),
                json!({"fields": {"Operation": noise}})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            ..f(
                "b1f2-some-sigma-rule",
                Medium,
                t + Duration::hours(hours),
                user,
            )
            .done()
        };
        let findings = vec![
            f("tw-token-without-signin", High, t, "dan")
                .ip("195.26.87.219")
                .session("S")
                .evidence(json!({"raw": noise, "why": "no sign-in issued it"}))
                .done(),
            f("tw-mail-bind-spike", High, t + Duration::minutes(20), "dan")
                .session("S")
                .evidence(json!({"items_bound_that_day": 1003, "mailbox": "dan", "folders": ["Inbox"], "baseline": 12}))
                .done(),
            f("tw-mail-throttled", High, t + Duration::hours(27), "dan")
                .session("S")
                .evidence(json!({"unlogged_until": "2023-06-21T04:30:00Z", "mailbox": "dan"}))
                .done(),
            Finding {
                user: None,
                ..f("tw-audit-gap", Medium, t + Duration::hours(48), "x")
                    .evidence(json!({"gap_start": "2023-06-21T01:00:00Z", "gap_end": "2023-06-22T06:00:00Z", "workload": "Exchange", "hours": 29}))
                    .done()
            },
            sigma("erin", 3),
            sigma("erin", 4),
            // A copied Sigma rule keeps its id under another title.
            Finding {
                rule_title: "a copy".into(),
                ..sigma("erin", 5)
            },
        ];
        let s = Slims::of(&findings);
        let kept = |i: usize| &s.evidence[s.slims[i].evidence as usize];
        assert!(kept(0).get("raw").is_none());
        assert_eq!(kept(0).get("why"), Some(&json!("no sign-in issued it")));
        assert_eq!(*kept(1), findings[1].evidence.subset(&EVIDENCE_READ));
        assert!(kept(4).get("fields").is_none());
        // One copy of each text, of the evidence a Sigma rule's findings
        // share, and of each title of a detection.
        assert_eq!(s.texts.len(), 4, "dan, erin, the address, the session");
        assert_eq!(s.slims[1].user, s.slims[2].user);
        assert_eq!(s.slims[4].evidence, s.slims[5].evidence);
        assert_eq!(s.evidence.len(), 5);
        assert_eq!(s.rule_title(5), "b1f2-some-sigma-rule");
        assert_eq!(s.rule_title(6), "a copy");
        assert_eq!(s.rules.len(), 6);
        assert_eq!(s.user(3), None);

        let incidents = build(&s);
        assert_eq!(incidents.len(), 2, "{incidents:#?}");
        let dan = incidents.iter().find(|i| i.users == ["dan"]).unwrap();
        assert_eq!(dan.sessions, ["S"]);
        assert_eq!(dan.client_ips, ["195.26.87.219"]);
        assert_eq!(dan.mailboxes, ["dan"]);
        assert_eq!(dan.read.items_bound, 1003);
        assert_eq!(dan.read.folders, ["Inbox"]);
        let kinds: Vec<&str> = dan.unlogged.iter().map(|u| u.kind).collect();
        assert_eq!(kinds, ["throttled", "audit-gap"]);
        assert_eq!(dan.unlogged[1].detail, "no Exchange records for 29 hours");
        assert_eq!(dan.members, [0, 1, 2, 3]);
        assert_eq!(dan.severity, High);
        assert_eq!(dan.score, 6, "strong 3 + moderate 2 + weak 1");
        assert_eq!(
            dan.why,
            "3 independent detections corroborate each other (1 strong), score 6"
        );
        assert_eq!(dan.first_seen.as_deref(), Some("2023-06-19T01:10:00Z"));
        assert_eq!(dan.last_seen.as_deref(), Some("2023-06-20T04:10:00Z"));
        assert_eq!(dan.findings, 4);
        let erin = incidents.iter().find(|i| i.users == ["erin"]).unwrap();
        assert_eq!(erin.severity, Low);
        assert_eq!(
            erin.why,
            "b1f2-some-sigma-rule alone: seen in benign activity too, nothing corroborates it (score 2)"
        );
        assert_eq!(
            (incidents[0].id.as_str(), incidents[1].id.as_str()),
            ("INC-0001", "INC-0002")
        );
        assert_eq!(incidents[0].users, ["dan"], "most severe first");
        assert_eq!(erin.attack, ["T1114.002"]);
        assert_eq!(erin.members, [4, 5, 6]);
        let titles: Vec<&str> = erin
            .detection_parts
            .iter()
            .map(|p| p.title.as_str())
            .collect();
        assert_eq!(
            titles,
            ["b1f2-some-sigma-rule"],
            "one part per detection id"
        );
        assert_eq!(erin.detection_parts[0].findings, 3);
    }

    /// Findings group as the joins say, whatever their order: those of one
    /// session, and one user's less than a day after that user's last.
    /// Checked against the groups made pair by pair, on random findings of
    /// users whose names differ in case and length.
    #[test]
    fn findings_group_by_session_and_by_each_users_day() {
        let mut rng = fastrand::Rng::with_seed(39);
        let users = ["a", "b", "B", "ab", "ba"];
        let sessions = ["s1", "s2", "s3"];
        let t0 = datetime!(2024-03-01 00:00 UTC);
        let mut joined_apart = 0;
        for _ in 0..300 {
            let findings: Vec<Finding> = (0..rng.usize(1..30))
                .map(|_| {
                    let t = t0 + Duration::minutes(rng.i64(0..4 * 24 * 60));
                    let x = f(
                        "tw-mail-new-client-app",
                        High,
                        t,
                        users[rng.usize(..users.len())],
                    );
                    match rng.u8(..4) {
                        0 => x.session(sessions[rng.usize(..sessions.len())]),
                        _ => x,
                    }
                    .done()
                })
                .collect();
            // Pair by pair: a session shared, or one user's findings with
            // none of that user's between them and less than a day apart.
            let n = findings.len();
            let mut groups = Dsu::new(n);
            for i in 0..n {
                for j in 0..n {
                    let (a, b) = (&findings[i], &findings[j]);
                    let shared = a.session_id.is_some() && a.session_id == b.session_id;
                    let next = a.user == b.user
                        && (a.time, i) < (b.time, j)
                        && b.time.unwrap() - a.time.unwrap() <= SAME_USER_WINDOW
                        && !(0..n).any(|k| {
                            findings[k].user == a.user
                                && (a.time, i) < (findings[k].time, k)
                                && (findings[k].time, k) < (b.time, j)
                        });
                    if shared || next {
                        groups.join(i, j);
                        joined_apart += usize::from(next && b.time != a.time);
                    }
                }
            }
            let mut want: Vec<Vec<usize>> = (0..n)
                .map(|i| {
                    (0..n)
                        .filter(|&j| groups.find(j) == groups.find(i))
                        .collect()
                })
                .collect();
            want.sort();
            want.dedup();
            assert_eq!(groups_of(&findings), want);
        }
        assert!(joined_apart > 100, "{joined_apart}");
    }

    /// Each join reads its own field: a token id joins findings as a
    /// session id does, an address joins them only when some finding
    /// implicates it, and an empty id, a text met in another field or a
    /// finding without a time joins nothing by itself.
    #[test]
    fn joins_read_each_field_apart() {
        let t = datetime!(2024-03-04 08:00 UTC);
        let weak =
            |user: &'static str, hours: i64| f("sig-rule", Low, t + Duration::days(hours), user);
        let token = |mut x: Finding, id: &str| {
            x.token_id = Some(id.to_owned());
            x
        };
        let untimed = |mut x: Finding| {
            x.time = None;
            x
        };
        let findings = vec![
            weak("u0", 0).session("X").done(),
            token(weak("u1", 2).done(), "X"),
            token(weak("u2", 4).done(), "T1"),
            token(weak("u3", 6).done(), "T1"),
            f("tw-ioc-ip", Medium, t + Duration::days(8), "u4")
                .ip("203.0.113.5")
                .done(),
            weak("u5", 10).ip("203.0.113.5").done(),
            weak("u6", 12).ip("198.51.100.7").done(),
            weak("u7", 14).ip("198.51.100.7").done(),
            weak("u8", 16).session("").done(),
            weak("u9", 18).session("").done(),
            untimed(weak("u10", 0).session("S2").done()),
            weak("u11", 20).session("S2").done(),
            untimed(weak("u12", 0).done()),
            untimed(weak("u12", 0).done()),
        ];
        let groups = groups_of(&findings);
        let want: Vec<Vec<usize>> = vec![
            vec![0],
            vec![1],
            vec![2, 3],
            vec![4, 5],
            vec![6],
            vec![7],
            vec![8],
            vec![9],
            vec![10, 11],
            vec![12],
            vec![13],
        ];
        assert_eq!(groups, want);
    }

    /// Past the maximum, Sigma rules go first, the most findings first,
    /// then built-in detections; never more than needed.
    #[test]
    fn the_rules_that_fire_most_are_left_out_past_the_maximum() {
        let counts = [("rare", 3), ("noisy", 900), ("mid", 90), ("also-mid", 90)];
        // Under the maximum, or at it, every finding is weighed.
        assert!(left_out(counts, 1083).is_empty());
        assert!(left_out(counts, 5000).is_empty());
        // One over: the noisiest rule goes, and only it.
        assert_eq!(left_out(counts, 1082), [("noisy".to_owned(), 900)]);
        assert_eq!(left_out(counts, 183), [("noisy".to_owned(), 900)]);
        // Then the next most, ties by id.
        assert_eq!(
            left_out(counts, 182),
            [("noisy".to_owned(), 900), ("also-mid".to_owned(), 90)]
        );
        assert_eq!(left_out(counts, 0).len(), 4);
        assert!(left_out([], 0).is_empty());
        // A built-in detection with the most findings goes after every
        // Sigma rule.
        let with_builtin = [("tw-ioc-ip", 5000), ("noisy", 900), ("rare", 3)];
        assert_eq!(left_out(with_builtin, 5003), [("noisy".to_owned(), 900)]);
        assert_eq!(
            left_out(with_builtin, 2),
            [
                ("noisy".to_owned(), 900),
                ("rare".to_owned(), 3),
                ("tw-ioc-ip".to_owned(), 5000)
            ]
        );
    }

    /// A user's findings days apart, with nothing shared, are separate
    /// stories; an audit gap far from any incident stands alone.
    #[test]
    fn distance_in_time_separates_incidents() {
        let t = datetime!(2024-03-04 08:00 UTC);
        let far_gap = Finding {
            user: None,
            ..f("tw-audit-gap", Medium, t + Duration::days(30), "x")
                .evidence(
                    json!({"gap_start": "2024-04-03T08:00:00Z", "gap_end": "2024-04-04T09:00:00Z"}),
                )
                .done()
        };
        let findings = vec![
            f("tw-mail-new-client-app", High, t, "a").done(),
            f("tw-mail-new-client-app", High, t + Duration::days(3), "a").done(),
            far_gap,
        ];
        let incidents = build(&Slims::of(&findings));
        assert_eq!(incidents.len(), 3, "{incidents:#?}");
        assert!(incidents.iter().all(|i| i.severity == Low));
    }
}
