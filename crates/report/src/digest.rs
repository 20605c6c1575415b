//! What the page shows of the findings, gathered as they stream past, so
//! that the page is made in memory bounded whatever their number.
//!
//! The findings are read twice, in report order. The first pass
//! ([`Digest`]) counts them, ranks the pivots, keeps the first IOC hits and
//! the most severe findings. The incidents are built beside it. The second
//! pass ([`Shown`]) keeps the findings the incidents shown in full list or
//! chart, and the time span of each such incident.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io;

use time::OffsetDateTime;
use tokenward_event::{Finding, Severity};
use tokenward_incident::Incident;

use crate::pivot::{Pivot, PivotTop, RuleNumber};
use crate::{
    MAX_DETAILED_INCIDENTS, MAX_FINDINGS_LISTED, MAX_FINDINGS_PER_INCIDENT, MAX_PIVOT_ROWS,
    MAX_TIMELINE_MARKS,
};
use tokenward_spill::spilling::StateDisk;

/// Memory the pivots hold, in all, before writing rows to temporary files.
pub const DEFAULT_PIVOT_MEMORY: usize = 32 << 20;

/// The pivots, in the order the page shows them: id and column name.
pub(crate) const PIVOTS: [(&str, &str); 4] = [
    ("user", "User"),
    ("ip", "Client IP"),
    ("app", "App"),
    ("detection", "Detection"),
];

/// The first pass over the findings, in report order.
pub struct Digest {
    findings: u64,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    /// Detection ids by number, and numbers by id.
    rule_ids: Vec<Box<str>>,
    rule_numbers: HashMap<Box<str>, RuleNumber>,
    /// The detection pivot's value of each title of an id (Sigma ids are
    /// not checked unique).
    detection_values: HashMap<Box<str>, Vec<Titled>>,
    pivots: [Pivot; 4],
    iocs: Vec<Finding>,
    ioc_hits: u64,
    most_severe: BinaryHeap<BySeverity>,
}

/// A detection's title and its value in the detection pivot.
type Titled = (Box<str>, Box<str>);

/// A finding placed in the all-findings table: most severe first, then
/// earliest, then as read.
struct BySeverity {
    key: (Reverse<Severity>, Option<OffsetDateTime>, u64),
    finding: Finding,
}

impl PartialEq for BySeverity {
    fn eq(&self, other: &BySeverity) -> bool {
        self.key == other.key
    }
}
impl Eq for BySeverity {}
impl PartialOrd for BySeverity {
    fn partial_cmp(&self, other: &BySeverity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BySeverity {
    fn cmp(&self, other: &BySeverity) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl Default for Digest {
    fn default() -> Digest {
        Digest::with_pivot_memory(DEFAULT_PIVOT_MEMORY)
    }
}

impl Digest {
    /// A digest whose pivots hold rows of about `bytes` in all before
    /// writing them to temporary files.
    pub fn with_pivot_memory(bytes: usize) -> Digest {
        let disk = StateDisk::new(bytes);
        Digest {
            findings: 0,
            first: None,
            last: None,
            rule_ids: Vec::new(),
            rule_numbers: HashMap::new(),
            detection_values: HashMap::new(),
            pivots: std::array::from_fn(|_| Pivot::new(disk.clone())),
            iocs: Vec::new(),
            ioc_hits: 0,
            most_severe: BinaryHeap::with_capacity(MAX_FINDINGS_LISTED + 1),
        }
    }

    /// Takes in the next finding in report order. Pivot rows that could
    /// not be written out make [`Digest::finish`] an error.
    pub fn observe(&mut self, f: &Finding) {
        let seq = self.findings;
        self.findings += 1;
        if let Some(t) = f.time {
            self.first = Some(self.first.map_or(t, |a| a.min(t)));
            self.last = Some(self.last.map_or(t, |a| a.max(t)));
        }
        let rule = self.rule_number(&f.rule_id);
        let detection = self.detection_value(&f.rule_id, &f.rule_title);
        let values = [
            f.user.as_deref(),
            f.client_ip.as_deref(),
            f.app_id.as_deref(),
            Some(&*detection),
        ];
        for (pivot, value) in self.pivots.iter_mut().zip(values) {
            if let Some(v) = value {
                pivot.count(v, f.severity, f.time, rule);
            }
        }
        if f.rule_id.starts_with("tw-ioc-") {
            self.ioc_hits += 1;
            if self.iocs.len() < MAX_FINDINGS_LISTED {
                self.iocs.push(f.clone());
            }
        }
        let key = (Reverse(f.severity), f.time, seq);
        let kept = self.most_severe.len() < MAX_FINDINGS_LISTED
            || self.most_severe.peek().is_some_and(|worst| key < worst.key);
        if kept {
            self.most_severe.push(BySeverity {
                key,
                finding: f.clone(),
            });
            if self.most_severe.len() > MAX_FINDINGS_LISTED {
                self.most_severe.pop();
            }
        }
    }

    fn rule_number(&mut self, id: &str) -> RuleNumber {
        if let Some(&n) = self.rule_numbers.get(id) {
            return n;
        }
        let n = RuleNumber::try_from(self.rule_ids.len()).unwrap_or(RuleNumber::MAX);
        self.rule_ids.push(id.into());
        self.rule_numbers.insert(id.into(), n);
        n
    }

    fn detection_value(&mut self, id: &str, title: &str) -> Box<str> {
        if let Some(titles) = self.detection_values.get(id) {
            if let Some((_, v)) = titles.iter().find(|(t, _)| &**t == title) {
                return v.clone();
            }
        }
        let v: Box<str> = format!("{id} — {title}").into();
        self.detection_values
            .entry(id.into())
            .or_default()
            .push((title.into(), v.clone()));
        v
    }

    /// Ranks the pivots (reading back the rows written out) and ends the
    /// pass.
    pub fn finish(self) -> io::Result<Overview> {
        let mut pivots = Vec::with_capacity(PIVOTS.len());
        for p in self.pivots {
            pivots.push(p.top(MAX_PIVOT_ROWS)?);
        }
        Ok(Overview {
            findings: self.findings,
            first: self.first,
            last: self.last,
            rule_ids: self.rule_ids,
            pivots,
            iocs: self.iocs,
            ioc_hits: self.ioc_hits,
            most_severe: self
                .most_severe
                .into_sorted_vec()
                .into_iter()
                .map(|b| b.finding)
                .collect(),
        })
    }
}

/// What the first pass gathered for the page.
#[derive(Debug)]
pub struct Overview {
    pub(crate) findings: u64,
    pub(crate) first: Option<OffsetDateTime>,
    pub(crate) last: Option<OffsetDateTime>,
    pub(crate) rule_ids: Vec<Box<str>>,
    /// In [`PIVOTS`] order.
    pub(crate) pivots: Vec<PivotTop>,
    /// The first IOC hits in report order.
    pub(crate) iocs: Vec<Finding>,
    pub(crate) ioc_hits: u64,
    /// The most severe findings, most severe first, then earliest.
    pub(crate) most_severe: Vec<Finding>,
}

impl Overview {
    /// The id of a detection by its number.
    pub(crate) fn rule_id(&self, n: RuleNumber) -> &str {
        self.rule_ids.get(n as usize).map_or("?", |id| id)
    }
}

/// The second pass: the findings of the incidents the page shows in full.
///
/// It is told each finding the incidents weighed, with its place among
/// them (the order they were pushed to the [`tokenward_incident::Slims`]).
#[derive(Debug, Default)]
pub struct Shown {
    /// Every member of each incident shown in full, with that incident's
    /// place among them, by the member's place.
    members: Vec<(usize, usize)>,
    /// The first member not yet seen.
    next: usize,
    /// The members listed or marked on a timeline, once seen.
    kept: BTreeMap<usize, Option<Finding>>,
    /// Of each incident shown in full: what all its members tell.
    seen: Vec<Members>,
}

/// What the second pass learns from all the members of one incident.
#[derive(Clone, Copy, Debug, Default)]
struct Members {
    /// Earliest and latest time.
    span: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Whether one names no user (its timeline marks it on a row of its
    /// own).
    without_user: bool,
}

impl Shown {
    /// What the page needs of the findings of `incidents` (as built, most
    /// severe first).
    pub fn of(incidents: &[Incident]) -> Shown {
        let detailed = &incidents[..incidents.len().min(MAX_DETAILED_INCIDENTS)];
        let mut members = Vec::new();
        let mut kept = BTreeMap::new();
        for (k, inc) in detailed.iter().enumerate() {
            members.extend(inc.members.iter().map(|&i| (i, k)));
            for &i in inc.members.iter().take(MAX_FINDINGS_PER_INCIDENT) {
                kept.insert(i, None);
            }
            for &i in inc.members.iter().step_by(timeline_step(inc)) {
                kept.insert(i, None);
            }
        }
        members.sort_unstable();
        Shown {
            members,
            next: 0,
            kept,
            seen: vec![Members::default(); detailed.len()],
        }
    }

    /// Whether findings at or past `place` are still needed: a pass may
    /// stop once they are not.
    pub fn wants_from(&self, place: usize) -> bool {
        self.members.last().is_some_and(|&(last, _)| last >= place)
    }

    /// Takes in the finding at `place` among those the incidents weighed.
    /// Places must come in increasing order.
    pub fn observe(&mut self, place: usize, f: &Finding) {
        while self.members.get(self.next).is_some_and(|&(i, _)| i < place) {
            self.next += 1;
        }
        while let Some(&(i, k)) = self.members.get(self.next).filter(|m| m.0 == place) {
            let seen = &mut self.seen[k];
            if let Some(t) = f.time {
                seen.span = Some(seen.span.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
            }
            seen.without_user |= f.user.is_none();
            if let Some(slot @ None) = self.kept.get_mut(&i) {
                *slot = Some(f.clone());
            }
            self.next += 1;
        }
    }

    /// The finding at `place`, if the page lists or marks it.
    pub(crate) fn finding(&self, place: usize) -> Option<&Finding> {
        self.kept.get(&place).and_then(Option::as_ref)
    }

    /// The earliest and latest time among the members of the `k`-th
    /// incident.
    pub(crate) fn span(&self, k: usize) -> Option<(OffsetDateTime, OffsetDateTime)> {
        self.seen.get(k).and_then(|m| m.span)
    }

    /// Whether a member of the `k`-th incident names no user.
    pub(crate) fn names_no_user(&self, k: usize) -> bool {
        self.seen.get(k).is_some_and(|m| m.without_user)
    }
}

/// Every how many members of `inc` its timeline marks one.
pub(crate) fn timeline_step(inc: &Incident) -> usize {
    inc.members.len().div_ceil(MAX_TIMELINE_MARKS).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn finding(n: u64, severity: Severity, rule: &str) -> Finding {
        Finding {
            rule_id: rule.to_owned().into(),
            rule_title: "t".into(),
            severity,
            time: Some(
                OffsetDateTime::from_unix_timestamp(1_700_000_000 + (n % 977) as i64).unwrap(),
            ),
            user: Some(format!("u{}", n % 13)),
            client_ip: None,
            app_id: None,
            session_id: None,
            token_id: None,
            source_file: Arc::from("f"),
            source_locator: format!("line {n}"),
            evidence: Default::default(),
        }
    }

    /// The all-findings table lists what a sort of every finding by
    /// severity then time (stable) puts first.
    #[test]
    fn the_most_severe_are_those_a_full_sort_puts_first() {
        let all: Vec<Finding> = (0..5_000u64)
            .map(|n| {
                let sev = [Severity::Low, Severity::Medium, Severity::High][(n * 7 % 3) as usize];
                finding(n, sev, "tw-x")
            })
            .collect();
        let mut d = Digest::default();
        for f in &all {
            d.observe(f);
        }
        let o = d.finish().unwrap();
        let mut want: Vec<&Finding> = all.iter().collect();
        want.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.time.cmp(&b.time)));
        want.truncate(MAX_FINDINGS_LISTED);
        let got: Vec<&str> = o
            .most_severe
            .iter()
            .map(|f| f.source_locator.as_str())
            .collect();
        let want: Vec<&str> = want.iter().map(|f| f.source_locator.as_str()).collect();
        assert_eq!(got, want);
        assert_eq!((o.findings, o.ioc_hits), (5_000, 0));
    }

    #[test]
    fn ioc_hits_are_counted_past_those_listed() {
        let mut d = Digest::default();
        for n in 0..1_500 {
            let rule = if n % 2 == 0 { "tw-ioc-ip" } else { "tw-other" };
            d.observe(&finding(n, Severity::High, rule));
        }
        let o = d.finish().unwrap();
        assert_eq!((o.ioc_hits, o.iocs.len()), (750, 750));
        assert!(o.iocs.iter().all(|f| f.rule_id == "tw-ioc-ip"));
    }

    /// The second pass keeps exactly the members an incident lists and
    /// marks, and each incident's span over all its members.
    #[test]
    fn the_second_pass_keeps_what_the_shown_incidents_list() {
        let findings: Vec<Finding> = (0..3_000)
            .map(|n| finding(n, Severity::Low, "tw-x"))
            .collect();
        let slims = tokenward_incident::Slims::of(&findings);
        let incidents = tokenward_incident::build(&slims);
        assert!(!incidents.is_empty());
        let mut shown = Shown::of(&incidents);
        for (i, f) in findings.iter().enumerate() {
            shown.observe(i, f);
        }
        for (k, inc) in incidents.iter().take(MAX_DETAILED_INCIDENTS).enumerate() {
            for &i in inc.members.iter().take(MAX_FINDINGS_PER_INCIDENT) {
                assert_eq!(
                    shown.finding(i).unwrap().source_locator,
                    findings[i].source_locator
                );
            }
            let times = inc.members.iter().filter_map(|&i| findings[i].time);
            assert_eq!(shown.span(k), times.clone().min().zip(times.max()));
        }
        let listed = |inc: &Incident| {
            let mut kept: Vec<usize> = inc
                .members
                .iter()
                .take(MAX_FINDINGS_PER_INCIDENT)
                .copied()
                .collect();
            kept.extend(inc.members.iter().step_by(timeline_step(inc)));
            kept
        };
        let mut want: Vec<usize> = incidents
            .iter()
            .take(MAX_DETAILED_INCIDENTS)
            .flat_map(listed)
            .collect();
        want.sort_unstable();
        want.dedup();
        let mut got: Vec<usize> = shown.kept.keys().copied().collect();
        got.sort_unstable();
        assert_eq!(got, want);
        assert!(!shown.wants_from(shown.members.last().unwrap().0 + 1));
    }
}
