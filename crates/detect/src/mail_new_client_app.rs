//! `tw-mail-new-client-app`: a mailbox read by an (AppId, ClientAppId) pair
//! first seen for it after the baseline (the first `--baseline-days` of the
//! MailItemsAccessed data).

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::mail::{self, is_mail};
use super::{
    evidence, opt, shard_of, union, widen, Builtin, Context, Detection, Info, Kinds, Needs,
    Outcome, Verdict, Weight,
};
use tokenward_event::timefmt::rfc3339;
use tokenward_event::{Event, EventKind};
use tokenward_event::{Rep, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-mail-new-client-app",
    title: "Mailbox accessed by a new (AppId, ClientAppId) pair",
    requires: "MailItemsAccessed records spanning more than the baseline window",
    attack: &["T1550.001"],
    weight: Weight::Weak,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| Box::new(MailNewClientApp::new(s.options.baseline_days)),
};

/// First use of a pair on a mailbox.
struct PairSeen {
    rep: Rep,
    count: u64,
    client_info: Option<String>,
}

/// The detection.
pub struct MailNewClientApp {
    baseline_days: u32,
    /// Times of the MailItemsAccessed records.
    range: Option<(OffsetDateTime, OffsetDateTime)>,
    /// (mailbox, AppId, ClientAppId) -> first use.
    pairs: HashMap<(String, String, String), PairSeen>,
    /// (AppId, ClientAppId) -> first use on any mailbox.
    tenant_pairs: HashMap<(String, String), OffsetDateTime>,
}

impl MailNewClientApp {
    fn new(baseline_days: u32) -> MailNewClientApp {
        MailNewClientApp {
            baseline_days,
            range: None,
            pairs: HashMap::new(),
            tenant_pairs: HashMap::new(),
        }
    }
}

impl Detection for MailNewClientApp {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::anchored(Kinds::of(&[EventKind::Audit]), mail::ANCHORS, mail::FIELDS)
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(MailNewClientApp::new(self.baseline_days))
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        if !is_mail(ev) {
            return;
        }
        if let Some(t) = ev.time {
            widen(&mut self.range, t);
        }
        let app = ev.app_id.clone().unwrap_or_else(|| "-".into());
        let capp = ev.client_app_id.clone().unwrap_or_else(|| "-".into());
        if let Some(t) = ev.time {
            let tp = self
                .tenant_pairs
                .entry((app.clone(), capp.clone()))
                .or_insert(t);
            *tp = (*tp).min(t);
        }
        let key = (mail::mailbox(ev), app, capp);
        match self.pairs.get_mut(&key) {
            Some(p) => {
                p.count += 1;
                if Rep::event_earlier(ev, &p.rep) {
                    p.rep = Rep::of(ev);
                    p.client_info = mail::client(ev);
                }
            }
            None => {
                self.pairs.insert(
                    key,
                    PairSeen {
                        rep: Rep::of(ev),
                        count: 1,
                        client_info: mail::client(ev),
                    },
                );
            }
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<MailNewClientApp>(shard);
        self.range = union(self.range, o.range);
        for (k, t) in o.tenant_pairs {
            let tp = self.tenant_pairs.entry(k).or_insert(t);
            *tp = (*tp).min(t);
        }
        for (k, p) in o.pairs {
            match self.pairs.get_mut(&k) {
                Some(mine) => {
                    mine.count += p.count;
                    if p.rep.earlier_than(&mine.rep) {
                        mine.rep = p.rep;
                        mine.client_info = p.client_info;
                    }
                }
                None => {
                    self.pairs.insert(k, p);
                }
            }
        }
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        let Some((start, end)) = self.range else {
            return Outcome::of(
                &INFO,
                Vec::new(),
                Verdict::Blind("no MailItemsAccessed records with a time".into()),
            );
        };
        let baseline = Duration::days(i64::from(self.baseline_days));
        let span = end - start;
        if span <= baseline {
            let why = format!(
                "MailItemsAccessed spans only {:.1} days ({} .. {}); the {}-day baseline leaves nothing to judge",
                span.as_seconds_f64() / 86400.0,
                rfc3339(start),
                rfc3339(end),
                self.baseline_days
            );
            return Outcome::of(&INFO, Vec::new(), Verdict::Blind(why));
        }
        let cut = start + baseline;
        let mut findings = Vec::new();
        for ((mailbox, app, capp), seen) in &self.pairs {
            let Some(t) = seen.rep.time else { continue };
            if t < cut {
                continue;
            }
            let tenant_first = self.tenant_pairs.get(&(app.clone(), capp.clone())).copied();
            let new_to_tenant = tenant_first.is_none_or(|f| f >= cut);
            let sev = if new_to_tenant {
                Severity::High
            } else {
                Severity::Medium
            };
            let e = evidence(&[
                ("mailbox", json!(mailbox)),
                ("AppId", json!(app)),
                ("ClientAppId", json!(capp)),
                ("ClientInfoString", opt(&seen.client_info)),
                ("records", json!(seen.count)),
                ("baseline_end", json!(rfc3339(cut))),
                (
                    "why",
                    json!(if new_to_tenant {
                        "pair never seen in the tenant during the baseline"
                    } else {
                        "pair seen on other mailboxes, but new for this one"
                    }),
                ),
            ]);
            findings.push(INFO.finding(&seen.rep, sev, e));
        }
        let note = format!(
            "baseline {} .. {} (first {} days of the data)",
            rfc3339(start),
            rfc3339(cut),
            self.baseline_days
        );
        Outcome::of(&INFO, findings, Verdict::Ok(Some(note)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;
    use crate::Status;
    use serde_json::{json, Value};

    fn mia(day: u32, mailbox: &str, app: &str) -> Value {
        json!({"CreationTime": format!("2023-06-{day:02}T10:00:00"), "Operation": "MailItemsAccessed",
               "Workload": "Exchange", "UserId": mailbox, "MailboxOwnerUPN": mailbox,
               "AppId": app, "ClientAppId": app, "ClientInfoString": "Client=OWA"})
    }

    fn det() -> Box<dyn Detection> {
        Box::new(MailNewClientApp::new(14))
    }

    #[test]
    fn a_pair_new_to_the_tenant_after_the_baseline_is_high() {
        let out = run(
            det(),
            &[
                mia(1, "a@x", "owa"),
                mia(2, "b@x", "owa"),
                mia(20, "a@x", "evil"),
                mia(21, "a@x", "evil"),
            ],
        );
        assert_eq!(out.findings.len(), 1);
        let f = &out.findings[0];
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.evidence["AppId"], json!("evil"));
        assert_eq!(f.evidence["records"], json!(2));
        assert_eq!(
            f.time.unwrap().day(),
            20,
            "the first use represents the pair"
        );
    }

    #[test]
    fn a_pair_known_elsewhere_but_new_to_the_mailbox_is_medium() {
        let out = run(
            det(),
            &[
                mia(1, "a@x", "owa"),
                mia(2, "b@x", "outlook"),
                mia(20, "a@x", "outlook"),
            ],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::Medium);
    }

    #[test]
    fn pairs_of_the_baseline_do_not_fire() {
        let out = run(det(), &[mia(1, "a@x", "owa"), mia(20, "a@x", "owa")]);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn data_shorter_than_the_baseline_is_blind() {
        let out = run(det(), &[mia(1, "a@x", "owa"), mia(5, "a@x", "evil")]);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
