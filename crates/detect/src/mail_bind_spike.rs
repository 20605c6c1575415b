//! `tw-mail-bind-spike`: Bind items per (mailbox, session, day) at least
//! max(factor x the mailbox's median, minimum): bulk reading of a mailbox.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::keyed::Keyed;
use crate::KeyHasher;

use serde_json::json;

use super::mail::{self, is_mail};
use super::{
    day, evidence, free_aside, shard_of, Builtin, Context, Detection, Info, Kinds, Needs, Outcome,
    Verdict, Weight,
};
use tokenward_event::{Event, EventKind};
use tokenward_event::{Rep, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-mail-bind-spike",
    title: "Mail Bind volume far above the mailbox baseline",
    requires: "MailItemsAccessed Bind records, several sessions/days per mailbox",
    attack: &["T1114.002"],
    weight: Weight::Moderate,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| {
        Box::new(MailBindSpike::new(
            s.options.bind_spike_factor,
            s.options.bind_spike_min,
        ))
    },
};

/// Session-days a mailbox needs before its median means anything.
pub const MIN_SESSION_DAYS: usize = 5;

struct Bucket {
    items: u64,
    records: u64,
    /// Boxed: most buckets have one record, and the table moves its
    /// entries each time it grows.
    rep: Box<Rep>,
}

/// The detection.
pub struct MailBindSpike {
    factor: u64,
    min: u64,
    bind_records: u64,
    /// (mailbox, session or IP, day) -> items bound.
    buckets: Keyed<(Box<str>, Box<str>, i64), Bucket>,
}

impl MailBindSpike {
    fn new(factor: u64, min: u64) -> MailBindSpike {
        MailBindSpike {
            factor,
            min,
            bind_records: 0,
            buckets: Keyed::default(),
        }
    }
}

impl Detection for MailBindSpike {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::anchored(Kinds::of(&[EventKind::Audit]), mail::ANCHORS, mail::FIELDS)
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(MailBindSpike::new(self.factor, self.min))
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        if !is_mail(ev) || !mail::access_type(ev).is_some_and(|a| a.eq_ignore_ascii_case("Bind")) {
            return;
        }
        self.bind_records += 1;
        let items = ev.bind_items();
        let sess = ev.session_id().or_else(|| ev.client_ip()).unwrap_or("-");
        let key = (mail::mailbox(ev), sess, day(ev.time));
        let b = self.buckets.get_or_insert_with(key, || Bucket {
            items: 0,
            records: 0,
            rep: Box::new(Rep::of(ev)),
        });
        b.items += items;
        b.records += 1;
        if Rep::event_earlier(ev, &b.rep) {
            *b.rep = Rep::of(ev);
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<MailBindSpike>(shard);
        self.bind_records += o.bind_records;
        self.buckets.merge(o.buckets, |m, b| {
            m.items += b.items;
            m.records += b.records;
            if b.rep.earlier_than(&m.rep) {
                m.rep = b.rep;
            }
        });
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        if self.bind_records == 0 {
            return Outcome::of(
                &INFO,
                Vec::new(),
                Verdict::Blind("no MailItemsAccessed Bind records".into()),
            );
        }
        let mut per_mailbox: HashMap<&str, Vec<u64>, KeyHasher> = HashMap::default();
        for ((mb, _, _), b) in self.buckets.iter() {
            per_mailbox.entry(mb).or_default().push(b.items);
        }
        let mut medians: HashMap<&str, u64, KeyHasher> = HashMap::default();
        let mut unjudged = 0;
        for (mb, v) in per_mailbox.iter_mut() {
            if v.len() < MIN_SESSION_DAYS {
                unjudged += 1;
                continue;
            }
            v.sort_unstable();
            medians.insert(mb, v[v.len() / 2]);
        }
        let mut findings = Vec::new();
        for ((mb, sess, _), b) in self.buckets.iter() {
            let Some(&med) = medians.get(&**mb) else {
                continue;
            };
            let threshold = (med.max(1) * self.factor).max(self.min);
            if b.items >= threshold {
                let e = evidence(&[
                    ("mailbox", json!(mb)),
                    ("session_or_ip", json!(sess)),
                    ("items_bound_that_day", json!(b.items)),
                    ("records", json!(b.records)),
                    ("mailbox_median_per_session_day", json!(med)),
                    ("threshold", json!(threshold)),
                ]);
                findings.push(INFO.finding(&b.rep, Severity::High, e));
            }
        }
        let none_judged = medians.is_empty();
        drop((per_mailbox, medians));
        if !self.buckets.is_empty() {
            free_aside(self.buckets);
        }
        let verdict = if unjudged > 0 {
            let why = format!("{unjudged} mailbox(es) had fewer than {MIN_SESSION_DAYS} session-days of Bind records and were not judged");
            if none_judged {
                Verdict::Blind(why)
            } else {
                Verdict::Ok(Some(why))
            }
        } else {
            Verdict::Ok(None)
        };
        Outcome::of(&INFO, findings, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;
    use crate::Status;
    use serde_json::{json, Value};

    fn bind(day: u32, session: &str, items: u64) -> Value {
        json!({"CreationTime": format!("2023-06-{day:02}T10:00:00"), "Operation": "MailItemsAccessed",
               "Workload": "Exchange", "UserId": "a@x", "OperationCount": items,
               "AppAccessContext": {"AADSessionId": session},
               "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]})
    }

    fn det() -> Box<dyn Detection> {
        Box::new(MailBindSpike::new(10, 100))
    }

    #[test]
    fn a_day_far_above_the_mailbox_median_fires() {
        let mut recs: Vec<Value> = (1..=6).map(|d| bind(d, "s", 5)).collect();
        recs.push(bind(7, "forged", 600));
        let out = run(det(), &recs);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].evidence["items_bound_that_day"], json!(600));
        assert_eq!(out.findings[0].evidence["threshold"], json!(100));
    }

    #[test]
    fn ordinary_days_do_not_fire() {
        let recs: Vec<Value> = (1..=7).map(|d| bind(d, "s", 50)).collect();
        let out = run(det(), &recs);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn a_mailbox_with_few_session_days_is_not_judged() {
        let out = run(det(), &[bind(1, "s", 5), bind(2, "forged", 900)]);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
