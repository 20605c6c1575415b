//! `tw-mail-bind-spike`: Bind items per (mailbox, session, day) at least
//! max(factor x the mailbox's median, minimum): bulk reading of a mailbox.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use crate::spilling::{Spillable, SpillingMap, StateDisk};
use tokenward_event::codec::{self, Cursor};

use serde_json::json;

use super::mail::{self, is_mail};
use super::{
    coverage_of, day, evidence, finish_collected, shard_of, Builtin, Context, Coverage, Detection,
    Info, Kinds, Needs, Outcome, Verdict, Weight,
};
use tokenward_event::{Event, EventKind};
use tokenward_event::{Finding, Rep, Severity};

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
            s.state.clone(),
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

impl Spillable for Bucket {
    fn approx_bytes(&self) -> usize {
        let r = &self.rep;
        let texts = [&r.user, &r.client_ip, &r.app_id, &r.session_id, &r.token_id]
            .into_iter()
            .flatten()
            .map(|t| t.len() + 16)
            .sum::<usize>();
        // The slot: the key's hash, boxes and day beside the value.
        std::mem::size_of::<Bucket>() + 48 + std::mem::size_of::<Rep>() + texts
    }

    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        codec::put_u64(buf, self.items);
        codec::put_u64(buf, self.records);
        self.rep.write(buf)
    }

    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        Ok(Bucket {
            items: c.u64()?,
            records: c.u64()?,
            rep: Box::new(Rep::read(c)?),
        })
    }

    fn fold(&mut self, other: Self) {
        self.items += other.items;
        self.records += other.records;
        if other.rep.earlier_than(&self.rep) {
            self.rep = other.rep;
        }
    }
}

/// (mailbox, session or IP, day): mailbox first, so that the buckets of
/// a mailbox come out of [`SpillingMap::drain`] together.
type BucketKey = (Box<str>, Box<str>, i64);

/// The detection.
pub struct MailBindSpike {
    factor: u64,
    min: u64,
    bind_records: u64,
    /// Items bound per (mailbox, session or IP, day).
    buckets: SpillingMap<BucketKey, Bucket>,
}

impl MailBindSpike {
    fn new(factor: u64, min: u64, state: Arc<StateDisk>) -> MailBindSpike {
        MailBindSpike {
            factor,
            min,
            bind_records: 0,
            buckets: SpillingMap::new(state),
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
        Box::new(MailBindSpike {
            factor: self.factor,
            min: self.min,
            bind_records: 0,
            buckets: self.buckets.fork(),
        })
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
        self.buckets.merge(o.buckets);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        finish_collected(self, cx)
    }

    // Mailbox by mailbox, as the buckets come out of the map in key
    // order: of one mailbox at a time, its buckets' items and the buckets
    // that can fire are held (`Judge`).
    fn finish_into(
        self: Box<Self>,
        _: &Context<'_>,
        found: &mut dyn FnMut(Finding),
    ) -> Vec<Coverage> {
        if self.bind_records == 0 {
            return coverage_of(
                &INFO,
                0,
                Verdict::Blind("no MailItemsAccessed Bind records".into()),
            );
        }
        let mut judge = Judge {
            factor: self.factor,
            min: self.min,
            judged: 0,
            unjudged: 0,
            hits: 0,
            found,
            items: Vec::new(),
            over_min: Vec::new(),
        };
        let mut mailbox: Option<Box<str>> = None;
        self.buckets.drain(|(mb, session, _), bucket| {
            if mailbox.as_deref() != Some(&*mb) {
                if let Some(done) = mailbox.replace(mb) {
                    judge.mailbox(&done);
                }
            }
            judge.add(session, bucket);
        });
        if let Some(done) = mailbox {
            judge.mailbox(&done);
        }
        let verdict = if judge.unjudged > 0 {
            let why = format!("{} mailbox(es) had fewer than {MIN_SESSION_DAYS} session-days of Bind records and were not judged", judge.unjudged);
            if judge.judged == 0 {
                Verdict::Blind(why)
            } else {
                Verdict::Ok(Some(why))
            }
        } else {
            Verdict::Ok(None)
        };
        coverage_of(&INFO, judge.hits, verdict)
    }
}

/// Judges mailboxes one at a time, as their buckets come.
struct Judge<'a> {
    factor: u64,
    min: u64,
    judged: u64,
    unjudged: u64,
    hits: usize,
    found: &'a mut dyn FnMut(Finding),
    /// The items of each of this mailbox's buckets, for its median.
    items: Vec<u64>,
    /// Its buckets that can fire, whatever the median: a threshold is
    /// never below `min`. A mailbox reached from thousands of addresses a
    /// day for months keeps a number per bucket, not the bucket.
    over_min: Vec<(Box<str>, Bucket)>,
}

impl Judge<'_> {
    /// Takes in a bucket (session or IP, and its items of a day) of the
    /// mailbox being judged.
    fn add(&mut self, session: Box<str>, bucket: Bucket) {
        self.items.push(bucket.items);
        if bucket.items >= self.min {
            self.over_min.push((session, bucket));
        }
    }

    /// Judges the buckets taken in against their median, and lets them go.
    fn mailbox(&mut self, mailbox: &str) {
        let mut items = std::mem::take(&mut self.items);
        let over_min = std::mem::take(&mut self.over_min);
        if items.len() < MIN_SESSION_DAYS {
            self.unjudged += 1;
        } else {
            self.judged += 1;
            items.sort_unstable();
            let median = items[items.len() / 2];
            let threshold = (median.max(1) * self.factor).max(self.min);
            for (session, b) in over_min {
                if b.items >= threshold {
                    let e = evidence(&[
                        ("mailbox", json!(mailbox)),
                        ("session_or_ip", json!(session)),
                        ("items_bound_that_day", json!(b.items)),
                        ("records", json!(b.records)),
                        ("mailbox_median_per_session_day", json!(median)),
                        ("threshold", json!(threshold)),
                    ]);
                    (self.found)(INFO.finding(&b.rep, Severity::High, e));
                    self.hits += 1;
                }
            }
        }
        // Kept for the next mailbox: no allocation per mailbox.
        items.clear();
        self.items = items;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, same_when_spilled};
    use crate::SigninIndex;
    use crate::Status;
    use serde_json::{json, Value};

    fn bind(day: u32, session: &str, items: u64) -> Value {
        json!({"CreationTime": format!("2023-06-{day:02}T10:00:00"), "Operation": "MailItemsAccessed",
               "Workload": "Exchange", "UserId": "a@x", "OperationCount": items,
               "AppAccessContext": {"AADSessionId": session},
               "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]})
    }

    fn det() -> Box<dyn Detection> {
        Box::new(MailBindSpike::new(
            10,
            100,
            StateDisk::new(crate::spilling::DEFAULT_STATE_MEMORY),
        ))
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

    /// A bucket at the minimum itself fires when the median is low: the
    /// buckets kept for judging are those at or above it.
    #[test]
    fn a_day_at_the_minimum_fires() {
        let mut recs: Vec<Value> = (1..=6).map(|d| bind(d, "s", 2)).collect();
        recs.push(bind(7, "forged", 100));
        recs.push(bind(8, "below", 99));
        let out = run(det(), &recs);
        assert_eq!(out.findings.len(), 1, "{:?}", out.coverage);
        assert_eq!(out.findings[0].evidence["items_bound_that_day"], json!(100));
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

    /// Buckets written to disk at every change (a budget of 0) and merged back are
    /// judged as held ones, mailbox by mailbox: here three mailboxes, one
    /// with a spike, one with ordinary days, one with too few to judge,
    /// their records split between both shards and several per bucket.
    #[test]
    fn buckets_spilled_to_disk_are_judged_as_held_ones() {
        let mut recs = Vec::new();
        for (user, days) in [("spiky@x", 1..=8), ("calm@x", 1..=8), ("new@x", 1..=2)] {
            for d in days {
                for part in 0..3 {
                    let mut r = bind(d, &format!("s{}", d % 3), 4 + part);
                    r["UserId"] = json!(user);
                    recs.push(r);
                }
            }
        }
        let mut spike = bind(9, "forged", 700);
        spike["UserId"] = json!("spiky@x");
        recs.insert(5, spike);
        let out = same_when_spilled(
            |state| Box::new(MailBindSpike::new(10, 100, state)),
            &SigninIndex::default(),
            &recs,
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].evidence["mailbox"], json!("spiky@x"));
        let note = out.coverage[0].note.as_deref().unwrap();
        assert!(note.starts_with("1 mailbox(es)"), "{note}");
    }
}
