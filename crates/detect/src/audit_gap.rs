//! `tw-audit-gap`: an hour-aligned run with no records for a workload that
//! has records before and after: logging switched off, or an incomplete
//! export. Reads every record, parsed or not, for its time and workload.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::KeyHasher;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{
    evidence, shard_of, Builtin, Context, Detection, Info, Needs, Outcome, Verdict, Weight,
};
use tokenward_event::timefmt::rfc3339;
use tokenward_event::{Event, EventKind};
use tokenward_event::{Finding, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-audit-gap",
    title: "No records for an active workload",
    requires: "records of a workload spread over three days or more",
    attack: &["T1562.008"],
    weight: Weight::Weak,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| Box::new(AuditGap::new(s.options.gap_hours)),
};

/// A workload is judged when its records span this many hours...
pub const SPAN_HOURS_MIN: i64 = 72;
/// ...over at least this many distinct hours.
pub const ACTIVE_HOURS_MIN: usize = 24;

/// The detection.
pub struct AuditGap {
    gap_hours: u32,
    /// Workload -> hours (since the epoch) with at least one record.
    hours: HashMap<String, HashSet<i64, KeyHasher>, KeyHasher>,
    /// Workload -> records.
    counts: HashMap<String, u64, KeyHasher>,
}

impl AuditGap {
    fn new(gap_hours: u32) -> AuditGap {
        AuditGap {
            gap_hours,
            hours: HashMap::default(),
            counts: HashMap::default(),
        }
    }

    fn add(&mut self, workload: &str, time: Option<OffsetDateTime>) {
        match self.counts.get_mut(workload) {
            Some(c) => *c += 1,
            None => {
                self.counts.insert(workload.to_string(), 1);
            }
        }
        if let Some(t) = time {
            let h = t.unix_timestamp().div_euclid(3600);
            match self.hours.get_mut(workload) {
                Some(s) => {
                    s.insert(h);
                }
                None => {
                    self.hours
                        .insert(workload.to_string(), HashSet::from_iter([h]));
                }
            }
        }
    }
}

/// The series events of a kind count in: the log's name for Entra and
/// Azure; for audit records, the name of those without a workload (the
/// others count in their workload's). None for gateway and other logs: a
/// quiet gateway means no traffic as often as lost logs.
pub fn series_of_kind(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::Audit => Some("Audit"),
        EventKind::SignIn => Some("Entra sign-ins"),
        EventKind::DirectoryAudit => Some("Entra audit"),
        EventKind::AzureActivity => Some("Azure Activity"),
        EventKind::Gateway | EventKind::Other => None,
    }
}

/// The series an event counts in: its workload, or its log for Entra and
/// Azure.
fn series(ev: &Event) -> Option<Cow<'_, str>> {
    match (ev.kind, ev.workload()) {
        (EventKind::Audit, Some(w)) => Some(Cow::Borrowed(w)),
        (kind, _) => series_of_kind(kind).map(Cow::Borrowed),
    }
}

impl Detection for AuditGap {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::time_and_workload()
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(AuditGap::new(self.gap_hours))
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        if let Some(s) = series(ev) {
            self.add(&s, ev.time);
        }
    }

    fn observe_unparsed(&mut self, time: Option<OffsetDateTime>, workload: Option<&str>) {
        if let Some(w) = workload {
            self.add(w, time);
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<AuditGap>(shard);
        for (w, n) in o.counts {
            *self.counts.entry(w).or_default() += n;
        }
        for (w, hs) in o.hours {
            self.hours.entry(w).or_default().extend(hs);
        }
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        let mut judged = 0;
        let mut findings = Vec::new();
        let mut names: Vec<&String> = self.hours.keys().collect();
        names.sort();
        for w in names {
            let mut v: Vec<i64> = self.hours[w].iter().copied().collect();
            v.sort_unstable();
            let (Some(&first), Some(&last)) = (v.first(), v.last()) else {
                continue;
            };
            if last - first < SPAN_HOURS_MIN || v.len() < ACTIVE_HOURS_MIN {
                continue;
            }
            judged += 1;
            let runs: Vec<(i64, i64)> = v
                .windows(2)
                .filter(|p| p[1] - p[0] > 1)
                .map(|p| (p[0], p[1]))
                .collect();
            let mut lens: Vec<i64> = runs.iter().map(|(a, b)| b - a - 1).collect();
            lens.sort_unstable();
            let typical = if lens.is_empty() {
                0
            } else {
                lens[(lens.len() * 9 / 10).min(lens.len() - 1)]
            };
            // The longest gap must not set its own bar: take the 90th
            // percentile of the others.
            let typical = if lens.len() >= 2 && typical == *lens.last().unwrap_or(&0) {
                lens[lens.len() - 2]
            } else {
                typical
            };
            let threshold = i64::from(self.gap_hours).max(2 * typical);
            for (a, b) in runs {
                let len = b - a - 1;
                if len < threshold {
                    continue;
                }
                let from = OffsetDateTime::from_unix_timestamp((a + 1) * 3600).ok();
                let to = OffsetDateTime::from_unix_timestamp(b * 3600).ok();
                let e = evidence(&[
                    ("workload", json!(w)),
                    ("gap_start", from.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                    ("gap_end", to.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                    ("hours", json!(len)),
                    ("threshold_hours", json!(threshold)),
                    ("records_in_workload", json!(self.counts.get(w).copied().unwrap_or(0))),
                    ("why", json!("no records at all for this workload while it was active before and after; logging may have been disabled or the export is incomplete")),
                ]);
                findings.push(Finding {
                    rule_id: Cow::Borrowed(INFO.id),
                    rule_title: Cow::Borrowed(INFO.title),
                    severity: Severity::Medium,
                    time: from,
                    user: None,
                    client_ip: None,
                    app_id: None,
                    session_id: None,
                    token_id: None,
                    source_file: "".into(),
                    source_locator: String::new(),
                    evidence: e.into(),
                });
            }
        }
        let verdict = Verdict::blind_if(
            judged == 0,
            "no workload has records over three days or more",
        );
        Outcome::of(&INFO, findings, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;
    use crate::Status;
    use serde_json::json;

    /// One SharePoint record every working hour (08-20 UTC) over `days`
    /// days, except in `skip`: nights are the workload's usual quiet runs.
    fn hourly(days: i64, skip: std::ops::Range<i64>) -> Vec<Value> {
        (0..days * 24)
            .filter(|h| (8..20).contains(&(h % 24)) && !skip.contains(h))
            .map(|h| {
                let t = OffsetDateTime::from_unix_timestamp(1_686_009_600 + h * 3600).unwrap();
                json!({"CreationTime": rfc3339(t).trim_end_matches('Z'), "Operation": "FileAccessed", "Workload": "SharePoint"})
            })
            .collect()
    }

    #[test]
    fn a_long_silence_inside_an_active_workload_fires() {
        // Days 2 and 3 (hours 48..96) silent: from 20:00 on day 1 to 08:00
        // on day 4 is 60 hours, against nights of 12.
        let out = run(Box::new(AuditGap::new(24)), &hourly(8, 48..96));
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].evidence["hours"], json!(60));
        assert_eq!(out.findings[0].evidence["threshold_hours"], json!(24));
        assert_eq!(out.findings[0].evidence["workload"], json!("SharePoint"));
    }

    #[test]
    fn short_silences_do_not_fire() {
        let out = run(Box::new(AuditGap::new(24)), &hourly(8, 50..60));
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn less_than_three_days_is_blind() {
        let out = run(Box::new(AuditGap::new(24)), &hourly(3, 0..0));
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
