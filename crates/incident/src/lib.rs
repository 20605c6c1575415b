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
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokenward_detect::{builtin_info, KeyHasher, Weight};
use tokenward_event::timefmt::{parse_timestamp, rfc3339};
use tokenward_event::{Evidence, Finding, Severity};

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
    /// Indices into the findings given to [`build`], in time order.
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

struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// The weight of a detection's finding: the detection's own, capped by the
/// finding's severity (a detection that downgraded its finding meant it).
/// Sigma rules weigh by level: high or critical is moderate, others weak.
pub fn weight_of(f: &impl Member) -> Weight {
    let by_severity = match f.severity() {
        Severity::High => Weight::Strong,
        Severity::Medium => Weight::Moderate,
        Severity::Low => Weight::Weak,
    };
    match builtin_info(f.rule_id()) {
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

/// What kind of unlogged window a finding shows, if any.
fn unlogged_of(f: &impl Member) -> Option<Unlogged> {
    let text = |k: &str| evidence(f, k).and_then(Value::as_str).map(str::to_owned);
    let kind = unlogged_kind(f.rule_id())?;
    let start = f.time().map(rfc3339);
    let (end, detail) = match kind {
        "throttled" => (
            text("unlogged_until"),
            format!(
                "MailItemsAccessed throttled for {}: access in the next 24 h was not logged",
                text("mailbox")
                    .or_else(|| f.user().map(str::to_owned))
                    .unwrap_or_default()
            ),
        ),
        "audit-gap" => (
            text("gap_end"),
            format!(
                "no {} records for {} hours",
                text("workload").unwrap_or_else(|| "audit".into()),
                evidence(f, "hours")
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
        detection: f.rule_id().to_string(),
        detail,
    })
}

/// A finding that carries no identity at all, only a time window (an audit
/// gap): it joins incidents by time, not by shared values.
fn is_floating(f: &impl Member) -> bool {
    f.user().is_none()
        && f.session_id().is_none()
        && f.token_id().is_none()
        && f.client_ip().is_none()
}

/// Client IPs that a finding implicates on its own: those of IOC-IP
/// findings and of strong detections. Benign shared addresses (office NAT)
/// therefore never join unrelated users.
fn implicated_ips<M: Member>(findings: &[M]) -> BTreeSet<&str> {
    findings
        .iter()
        .filter(|f| f.rule_id() == "tw-ioc-ip" || weight_of(*f) == Weight::Strong)
        .filter_map(|f| f.client_ip())
        .collect()
}

fn window_of(f: &impl Member) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    let parse = |k: &str| {
        evidence(f, k)
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
    };
    (
        parse("gap_start").or(f.time()),
        parse("gap_end").or(f.time()),
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

/// One entry of a finding's evidence, as [`build`] reads every one: a key
/// missing from [`EVIDENCE_READ`] would be gone from [`Slim`] findings, so
/// reading one fails every debug build's tests.
fn evidence<'a>(f: &'a impl Member, key: &str) -> Option<&'a Value> {
    debug_assert!(
        EVIDENCE_READ.contains(&key),
        "incidents read evidence {key:?}: add it to EVIDENCE_READ"
    );
    f.evidence_entry(key)
}

/// What grouping reads of a finding: a whole [`Finding`], or a [`Slim`]
/// copy a caller keeps only to group.
pub trait Member: Sync {
    /// Detection id.
    fn rule_id(&self) -> &str;
    /// Detection title.
    fn rule_title(&self) -> &str;
    /// Severity.
    fn severity(&self) -> Severity;
    /// Time.
    fn time(&self) -> Option<OffsetDateTime>;
    /// Acting user.
    fn user(&self) -> Option<&str>;
    /// Client address.
    fn client_ip(&self) -> Option<&str>;
    /// Application id.
    fn app_id(&self) -> Option<&str>;
    /// Session id.
    fn session_id(&self) -> Option<&str>;
    /// Token id.
    fn token_id(&self) -> Option<&str>;
    /// One evidence entry; grouping asks only for those in
    /// [`EVIDENCE_READ`].
    fn evidence_entry(&self, key: &str) -> Option<&Value>;
}

impl Member for Finding {
    fn rule_id(&self) -> &str {
        &self.rule_id
    }
    fn rule_title(&self) -> &str {
        &self.rule_title
    }
    fn severity(&self) -> Severity {
        self.severity
    }
    fn time(&self) -> Option<OffsetDateTime> {
        self.time
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    fn client_ip(&self) -> Option<&str> {
        self.client_ip.as_deref()
    }
    fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }
    fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }
    fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }
    fn evidence_entry(&self, key: &str) -> Option<&Value> {
        self.evidence.get(key)
    }
}

/// A finding cut down to what [`build`] reads, for a caller that keeps
/// every finding only to group them ([`Slimmer`] makes them). A Sigma
/// finding over sign-ins took about 800 bytes as a cut-down [`Finding`];
/// this shares its detection's names and the users, addresses and apps
/// many findings repeat, and keeps only the evidence entries grouping
/// reads. `build` over slim findings makes the same incidents as over
/// whole ones.
#[derive(Clone, Debug)]
pub struct Slim {
    /// Detection id and title, one copy per detection.
    rule: Arc<(String, String)>,
    severity: Severity,
    time: Option<OffsetDateTime>,
    user: Option<Arc<str>>,
    client_ip: Option<Arc<str>>,
    app_id: Option<Arc<str>>,
    /// Session and token ids are mostly one per finding: not shared.
    session_id: Option<Box<str>>,
    token_id: Option<Box<str>>,
    evidence: Evidence,
}

impl Member for Slim {
    fn rule_id(&self) -> &str {
        &self.rule.0
    }
    fn rule_title(&self) -> &str {
        &self.rule.1
    }
    fn severity(&self) -> Severity {
        self.severity
    }
    fn time(&self) -> Option<OffsetDateTime> {
        self.time
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    fn client_ip(&self) -> Option<&str> {
        self.client_ip.as_deref()
    }
    fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }
    fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }
    fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }
    fn evidence_entry(&self, key: &str) -> Option<&Value> {
        self.evidence.get(key)
    }
}

/// Makes [`Slim`] findings, holding one copy of each detection's names and
/// of each user, client address and app id it has seen.
#[derive(Default)]
pub struct Slimmer {
    /// By id: Sigma ids are not checked unique (a copied rule keeps its
    /// id), so each title of an id is its own entry.
    rules: HashMap<String, Vec<Arc<(String, String)>>, KeyHasher>,
    texts: HashSet<Arc<str>, KeyHasher>,
}

impl Slimmer {
    /// The slim copy of `f`.
    pub fn slim(&mut self, f: &Finding) -> Slim {
        if !self.rules.contains_key(&*f.rule_id) {
            self.rules.insert(f.rule_id.to_string(), Vec::new());
        }
        let titles = self.rules.get_mut(&*f.rule_id).expect("inserted above");
        let rule = match titles.iter().find(|r| r.1 == f.rule_title) {
            Some(r) => r.clone(),
            None => {
                let r = Arc::new((f.rule_id.to_string(), f.rule_title.to_string()));
                titles.push(r.clone());
                r
            }
        };
        let mut shared = |t: &Option<String>| -> Option<Arc<str>> {
            let t = t.as_deref()?;
            Some(match self.texts.get(t) {
                Some(a) => a.clone(),
                None => {
                    let a: Arc<str> = Arc::from(t);
                    self.texts.insert(a.clone());
                    a
                }
            })
        };
        Slim {
            rule,
            severity: f.severity,
            time: f.time,
            user: shared(&f.user),
            client_ip: shared(&f.client_ip),
            app_id: shared(&f.app_id),
            session_id: f.session_id.as_deref().map(Box::from),
            token_id: f.token_id.as_deref().map(Box::from),
            evidence: f.evidence.subset(&EVIDENCE_READ),
        }
    }
}

/// Groups findings into incidents, most severe first.
pub fn build<M: Member>(findings: &[M]) -> Vec<Incident> {
    let n = findings.len();
    let mut dsu = Dsu((0..n).collect());
    let ips = implicated_ips(findings);
    // Sized for a session and a token id a finding, most of them met
    // once: grown from nothing, the map was rehashed at every doubling.
    let mut first_by: HashMap<(u8, &str), usize, KeyHasher> =
        HashMap::with_capacity_and_hasher(2 * n, KeyHasher::default());
    for (i, f) in findings.iter().enumerate() {
        let keys = [
            (0u8, f.session_id()),
            (1, f.token_id()),
            (2, f.client_ip().filter(|ip| ips.contains(ip))),
        ];
        for (tag, key) in keys {
            if let Some(key) = key.filter(|k| !k.is_empty()) {
                match first_by.entry((tag, key)) {
                    Entry::Occupied(e) => dsu.join(i, *e.get()),
                    Entry::Vacant(e) => {
                        e.insert(i);
                    }
                }
            }
        }
    }
    // One user's findings within a day of each other: each user's in
    // order of time (then place), each joined to the one before it. Users
    // are numbered first, so that the sort compares numbers, not texts a
    // pointer away; which user comes first changes no join.
    let mut number: HashMap<&str, u32, KeyHasher> = HashMap::default();
    let mut by_user: Vec<(u32, OffsetDateTime, usize)> = Vec::with_capacity(n);
    for (i, f) in findings.iter().enumerate() {
        if let (Some(user), Some(t)) = (f.user(), f.time()) {
            let next = number.len() as u32;
            by_user.push((*number.entry(user).or_insert(next), t, i));
        }
    }
    by_user.par_sort_unstable();
    for pair in by_user.windows(2) {
        let ((user_a, time_a, a), (user_b, time_b, b)) = (pair[0], pair[1]);
        if user_a == user_b && time_b - time_a <= SAME_USER_WINDOW {
            dsu.join(a, b);
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut floating = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        if is_floating(f) && unlogged_kind(f.rule_id()).is_some() {
            floating.push(i);
        } else {
            groups.entry(dsu.find(i)).or_default().push(i);
        }
    }
    let mut spans: Vec<(Vec<usize>, Option<OffsetDateTime>, Option<OffsetDateTime>)> = groups
        .into_values()
        .map(|members| {
            let times = members.iter().filter_map(|&i| findings[i].time());
            let first = times.clone().min();
            let last = times.max();
            (members, first, last)
        })
        .collect();
    // Floating windows attach to every incident they come near; alone, they
    // are incidents of their own.
    let mut attached: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    for &i in &floating {
        let (start, end) = window_of(&findings[i]);
        let mut placed = false;
        for (g, (_, first, last)) in spans.iter().enumerate() {
            if let (Some(s), Some(e), Some(first), Some(last)) = (start, end, first, last) {
                if s <= *last + UNLOGGED_REACH && e >= *first - UNLOGGED_REACH {
                    attached[g].push(i);
                    placed = true;
                }
            }
        }
        if !placed {
            spans.push((vec![i], findings[i].time(), findings[i].time()));
            attached.push(Vec::new());
        }
    }
    // Groups are summarised on every core: a rule that fires on most
    // records of a large export makes tens of thousands of them.
    let mut incidents: Vec<Incident> = spans
        .into_par_iter()
        .zip(attached)
        .map(|((members, _, _), extra)| summarise(findings, members, extra))
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

fn summarise<M: Member>(findings: &[M], mut members: Vec<usize>, attached: Vec<usize>) -> Incident {
    members.sort_by_key(|&i| (findings[i].time(), i));
    // Sorted and deduplicated in a vector: with a tree per list,
    // summarising the incidents of a rule that fires on most sign-ins
    // took half as long again.
    let set = |get: &dyn Fn(&M) -> Option<&str>| -> Vec<String> {
        let mut s: Vec<&str> = members.iter().filter_map(|&i| get(&findings[i])).collect();
        s.sort_unstable();
        s.dedup();
        s.into_iter().map(str::to_owned).collect()
    };
    let users = set(&|f| f.user());
    let mailboxes = set(&|f| evidence(f, "mailbox").and_then(Value::as_str));
    let client_ips = set(&|f| f.client_ip());
    let apps = set(&|f| f.app_id());
    let sessions = set(&|f| f.session_id());
    let tokens = set(&|f| f.token_id());
    let first = members.iter().filter_map(|&i| findings[i].time()).min();
    let last = members.iter().filter_map(|&i| findings[i].time()).max();

    let mut parts: BTreeMap<&str, (String, usize, Weight)> = BTreeMap::new();
    let mut read = Read::default();
    let mut folders = BTreeSet::new();
    let mut unlogged = Vec::new();
    for &i in &members {
        let f = &findings[i];
        let w = weight_of(f);
        let e = parts
            .entry(f.rule_id())
            .or_insert_with(|| (f.rule_title().to_string(), 0, w));
        e.1 += 1;
        e.2 = e.2.max(w);
        match f.rule_id() {
            "tw-mail-bind-spike" => {
                read.items_bound += evidence(f, "items_bound_that_day")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
            }
            "tw-mail-sync-unusual-client" => read.syncs += 1,
            "tw-mailbox-export" => read.exports += 1,
            _ => {}
        }
        if let Some(Value::Array(fs)) = evidence(f, "folders") {
            folders.extend(fs.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if let Some(u) = unlogged_of(f) {
            unlogged.push(u);
        }
    }
    for &i in &attached {
        if let Some(u) = unlogged_of(&findings[i]) {
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
            attack: attack_of(id, findings, &members),
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
fn attack_of<M: Member>(id: &str, findings: &[M], members: &[usize]) -> Vec<String> {
    if let Some(info) = builtin_info(id) {
        return info.attack.iter().map(|t| (*t).to_owned()).collect();
    }
    let mut out = BTreeSet::new();
    for &i in members {
        if findings[i].rule_id() == id {
            if let Some(Value::Array(tags)) = evidence(&findings[i], "attack") {
                out.extend(tags.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
    }
    out.into_iter().collect()
}

/// One sentence for the top of a report or the terminal.
pub fn headline(incidents: &[Incident]) -> String {
    let high = incidents
        .iter()
        .filter(|i| i.severity == Severity::High)
        .count();
    let medium = incidents
        .iter()
        .filter(|i| i.severity == Severity::Medium)
        .count();
    let low = incidents.len() - high - medium;
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
        let incidents = build(&findings);
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
        let incidents = build(&findings);
        assert_eq!(incidents.len(), users.len());
        assert!(
            incidents.iter().all(|i| i.severity == Low),
            "{incidents:#?}"
        );
        assert!(headline(&incidents).starts_with("No compromise indicated"));
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
        let incidents = build(&findings);
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].severity, Medium, "{:#?}", incidents[0]);
        assert!(incidents[0].why.contains("none strong"));
        // Alone, the user agent is low.
        let incidents = build(&findings[..1]);
        assert_eq!(incidents[0].severity, Low);
    }

    /// One strong signal alone is worth a look, not a verdict; and a Sigma
    /// rule (not a built-in) never counts as strong.
    #[test]
    fn a_lone_strong_signal_is_medium_and_sigma_is_never_strong() {
        let t = datetime!(2024-03-04 08:00 UTC);
        let lone = build(&[f("tw-token-without-signin", High, t, "a").done()]);
        assert_eq!(lone[0].severity, Medium);
        let sigma = build(&[
            f("b1f2-some-sigma-rule", High, t, "a").done(),
            f("c3d4-another-sigma-rule", High, t, "a").done(),
            f("e5f6-third-sigma-rule", High, t, "a").done(),
        ]);
        assert_eq!(sigma[0].severity, Medium, "{:#?}", sigma[0]);
        // A Sigma rule's ATT&CK tags (carried in its evidence) reach the
        // incident.
        let tagged = build(&[f("b1f2-some-sigma-rule", High, t, "a")
            .evidence(json!({"attack": ["T1114.002"]}))
            .done()]);
        assert_eq!(tagged[0].attack, ["T1114.002"]);
        assert_eq!(tagged[0].detection_parts[0].attack, ["T1114.002"]);
    }

    /// Slim findings (what a hunt keeps for grouping) make the same
    /// incidents as whole ones, unlogged windows and summaries included,
    /// while the evidence nobody reads is gone.
    #[test]
    fn slim_findings_group_as_whole_ones() {
        let t = datetime!(2023-06-19 01:10 UTC);
        let noise = "x".repeat(500);
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
            f("b1f2-some-sigma-rule", Medium, t + Duration::hours(3), "erin")
                .evidence(json!({"attack": ["T1114.002"], "fields": {"Operation": noise}}))
                .done(),
        ];
        let mut slimmer = Slimmer::default();
        let slim: Vec<Slim> = findings.iter().map(|f| slimmer.slim(f)).collect();
        assert!(slim[0].evidence_entry("raw").is_none());
        assert!(slim[4].evidence_entry("fields").is_none());
        assert_eq!(
            slim[1].evidence,
            findings[1].evidence.subset(&EVIDENCE_READ)
        );
        // One copy of a user and of a detection's names for all.
        let (u1, u2) = (slim[1].user.as_ref(), slim[2].user.as_ref());
        assert!(Arc::ptr_eq(u1.unwrap(), u2.unwrap()));
        assert!(Arc::ptr_eq(&slim[1].rule, &slimmer.slim(&findings[1]).rule));
        // A copied Sigma rule keeps its id under another title: both stay.
        let copied = Finding {
            rule_title: "a copy".into(),
            ..findings[4].clone()
        };
        assert_eq!(slimmer.slim(&copied).rule_title(), "a copy");
        assert_eq!(
            slimmer.slim(&findings[4]).rule_title(),
            findings[4].rule_title
        );
        let (whole, cut) = (build(&findings), build(&slim));
        assert_eq!(
            serde_json::to_value(&cut).unwrap(),
            serde_json::to_value(&whole).unwrap()
        );
        let members = |v: &[Incident]| v.iter().map(|i| i.members.clone()).collect::<Vec<_>>();
        assert_eq!(members(&cut), members(&whole));
        assert_eq!(whole.len(), 2, "{whole:#?}");
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
            let mut groups = Dsu((0..n).collect());
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
            let mut got: Vec<Vec<usize>> = build(&findings)
                .into_iter()
                .map(|inc| {
                    let mut m = inc.members;
                    m.sort_unstable();
                    m
                })
                .collect();
            got.sort();
            assert_eq!(got, want);
        }
        assert!(joined_apart > 100, "{joined_apart}");
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
        let incidents = build(&findings);
        assert_eq!(incidents.len(), 3, "{incidents:#?}");
        assert!(incidents.iter().all(|i| i.severity == Low));
    }
}
