//! `tw-mail-throttled`: `IsThrottled` true on MailItemsAccessed. Exchange
//! then stops logging Bind for 24 hours, so every item may have been read.

use std::borrow::Cow;

use serde_json::{json, Value};
use time::Duration;

use super::mail::{self, is_mail};
use super::{
    day, evidence, is_true, shard_of, Builtin, Context, Detection, Grouped, Info, Kinds, Needs,
    Outcome, Verdict, Weight,
};
use tokenward_event::timefmt::rfc3339;
use tokenward_event::Severity;
use tokenward_event::{Event, EventKind};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-mail-throttled",
    title: "MailItemsAccessed throttled: 24 h of access went unlogged",
    requires: "MailItemsAccessed records with IsThrottled",
    attack: &["T1114.002"],
    weight: Weight::Weak,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |_| Box::new(MailThrottled::default()),
};

/// The detection.
#[derive(Default)]
pub struct MailThrottled {
    /// MailItemsAccessed records that say whether they were throttled.
    with_field: u64,
    hits: Grouped,
}

impl Detection for MailThrottled {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::anchored(Kinds::of(&[EventKind::Audit]), mail::ANCHORS, mail::FIELDS)
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(MailThrottled::default())
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        if !is_mail(ev) {
            return;
        }
        let Some(th) = mail::throttled(ev) else {
            return;
        };
        self.with_field += 1;
        if !is_true(&th) {
            return;
        }
        let mailbox = mail::mailbox(ev);
        let key = format!("{mailbox}|{}", day(ev.time));
        self.hits.add(key, ev, Severity::High, || {
            let until = ev.time.map(|t| rfc3339(t + Duration::hours(24)));
            evidence(&[
                ("mailbox", json!(mailbox)),
                ("IsThrottled", json!(th)),
                ("unlogged_until", until.map(Value::String).unwrap_or(Value::Null)),
                ("why", json!("more than 1,000 MailItemsAccessed records in 24 h: Exchange stops logging Bind for the next 24 h; assume every item was read")),
            ])
        });
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<MailThrottled>(shard);
        self.with_field += o.with_field;
        self.hits.merge(o.hits);
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        let verdict = Verdict::blind_if(
            self.with_field == 0,
            "no MailItemsAccessed records with IsThrottled (MailItemsAccessed needs Audit Premium before mid-2024)",
        );
        Outcome::of(&INFO, self.hits.findings(&INFO), verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;
    use crate::Status;
    use serde_json::json;

    fn mia(throttled: &str, hour: u32) -> serde_json::Value {
        json!({"CreationTime": format!("2023-06-10T{hour:02}:00:00"), "Operation": "MailItemsAccessed",
               "Workload": "Exchange", "UserId": "a@x", "MailboxOwnerUPN": "A@x",
               "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}, {"Name": "IsThrottled", "Value": throttled}]})
    }

    #[test]
    fn throttled_records_fire_once_per_mailbox_day() {
        let out = run(
            Box::new(MailThrottled::default()),
            &[mia("True", 1), mia("True", 2), mia("False", 3)],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].evidence["mailbox"], json!("a@x"));
        assert_eq!(
            out.findings[0].evidence["unlogged_until"],
            json!("2023-06-11T01:00:00Z")
        );
        assert_eq!(out.findings[0].evidence["records"], json!(2));
    }

    #[test]
    fn unthrottled_records_do_not_fire_but_give_coverage() {
        let out = run(Box::new(MailThrottled::default()), &[mia("False", 1)]);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn records_without_the_field_are_blind() {
        let out = run(
            Box::new(MailThrottled::default()),
            &[
                json!({"CreationTime": "2023-06-10T01:00:00", "Operation": "MailItemsAccessed", "UserId": "a@x"}),
            ],
        );
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
