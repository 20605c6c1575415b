//! `tw-mail-new-client-app`: a mailbox read by an (AppId, ClientAppId) pair
//! first seen for it after the baseline (the first `--baseline-days` of the
//! MailItemsAccessed data).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::keyed::Keyed;
use crate::KeyHasher;

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::mail::{self, is_mail};
use super::{
    evidence, free_aside, opt, shard_of, union, widen, Builtin, Context, Detection, Info, Kinds,
    Needs, Outcome, Verdict, Weight,
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

/// Mailboxes taking up one client app after the baseline that make it a
/// rollout (at least this many, and a quarter of the mailboxes seen).
pub const ROLLOUT_MIN_MAILBOXES: usize = 5;

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

/// (mailbox, AppId, ClientAppId).
type PairKey = (Box<str>, Box<str>, Box<str>);

/// The detection.
pub struct MailNewClientApp {
    baseline_days: u32,
    /// Times of the MailItemsAccessed records.
    range: Option<(OffsetDateTime, OffsetDateTime)>,
    /// (mailbox, AppId, ClientAppId) -> first use.
    pairs: Keyed<PairKey, PairSeen>,
    /// (AppId, ClientAppId) -> first use on any mailbox.
    tenant_pairs: Keyed<(Box<str>, Box<str>), OffsetDateTime>,
}

impl MailNewClientApp {
    fn new(baseline_days: u32) -> MailNewClientApp {
        MailNewClientApp {
            baseline_days,
            range: None,
            pairs: Keyed::default(),
            tenant_pairs: Keyed::default(),
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
        let app = ev.app_id().unwrap_or("-");
        let capp = ev.client_app_id().unwrap_or("-");
        if let Some(t) = ev.time {
            let tp = self.tenant_pairs.get_or_insert_with((app, capp), || t);
            *tp = (*tp).min(t);
        }
        let p = self
            .pairs
            .get_or_insert_with((mail::mailbox(ev), app, capp), || PairSeen {
                rep: Rep::of(ev),
                count: 0,
                client_info: mail::client(ev),
            });
        p.count += 1;
        // A new pair's own record is not earlier than itself.
        if Rep::event_earlier(ev, &p.rep) {
            p.rep = Rep::of(ev);
            p.client_info = mail::client(ev);
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<MailNewClientApp>(shard);
        self.range = union(self.range, o.range);
        self.tenant_pairs
            .merge(o.tenant_pairs, |mine, t| *mine = (*mine).min(t));
        self.pairs.merge(o.pairs, |mine, p| {
            mine.count += p.count;
            if p.rep.earlier_than(&mine.rep) {
                mine.rep = p.rep;
                mine.client_info = p.client_info;
            }
        });
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
        // A client app that many mailboxes take up after the baseline is a
        // rollout (a change many users made), not one account's tokens in
        // a stranger's hands: its findings stay, at low severity.
        let mut adopters: HashMap<(&str, &str), usize, KeyHasher> = HashMap::default();
        let mut mailboxes: HashSet<&str, KeyHasher> = HashSet::default();
        for ((mailbox, app, capp), seen) in self.pairs.iter() {
            mailboxes.insert(mailbox);
            if seen.rep.time.is_some_and(|t| t >= cut) {
                *adopters.entry((&**app, &**capp)).or_default() += 1;
            }
        }
        let rollout_min = ROLLOUT_MIN_MAILBOXES.max(mailboxes.len().div_ceil(4));
        let mut rollouts = 0usize;
        let mut findings = Vec::new();
        for ((mailbox, app, capp), seen) in self.pairs.iter() {
            let Some(t) = seen.rep.time else { continue };
            if t < cut {
                continue;
            }
            let tenant_first = self.tenant_pairs.get((app, capp)).copied();
            let new_to_tenant = tenant_first.is_none_or(|f| f >= cut);
            let adopted_by = adopters.get(&(&**app, &**capp)).copied().unwrap_or(0);
            let rollout = adopted_by >= rollout_min;
            rollouts += usize::from(rollout);
            let sev = if rollout {
                Severity::Low
            } else if new_to_tenant {
                Severity::High
            } else {
                Severity::Medium
            };
            let e = evidence(&[
                ("mailbox", json!(mailbox)),
                ("AppId", json!(app)),
                ("ClientAppId", json!(capp)),
                ("ClientInfoString", opt(seen.client_info.as_ref())),
                ("records", json!(seen.count)),
                ("baseline_end", json!(rfc3339(cut))),
                ("mailboxes_taking_it_up", json!(adopted_by)),
                (
                    "why",
                    json!(if rollout {
                        format!("{adopted_by} mailboxes took up this pair after the baseline: a rollout many users made, low severity on its own")
                    } else if new_to_tenant {
                        "pair never seen in the tenant during the baseline".to_owned()
                    } else {
                        "pair seen on other mailboxes, but new for this one".to_owned()
                    }),
                ),
            ]);
            findings.push(INFO.finding(&seen.rep, sev, e));
        }
        let note = format!(
            "baseline {} .. {} (first {} days of the data); {rollouts} finding(s) lowered as rollouts (a pair taken up by {rollout_min} or more of {} mailboxes)",
            rfc3339(start),
            rfc3339(cut),
            self.baseline_days,
            mailboxes.len()
        );
        drop((adopters, mailboxes));
        if !self.pairs.is_empty() {
            free_aside((self.pairs, self.tenant_pairs));
        }
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

    /// A new client app that eight of ten mailboxes take up is a rollout:
    /// each mailbox still gets its finding, at low severity, while the one
    /// mailbox with an app nobody else uses stays high.
    #[test]
    fn a_rollout_many_mailboxes_take_up_is_low() {
        let mut records: Vec<Value> = (0..10)
            .map(|i| mia(1, &format!("u{i}@x"), "outlook"))
            .collect();
        records.extend((0..8).map(|i| mia(20, &format!("u{i}@x"), "new-outlook")));
        records.push(mia(21, "u9@x", "evil"));
        let out = run(det(), &records);
        assert_eq!(out.findings.len(), 9);
        for f in &out.findings {
            let app = f
                .evidence
                .get("AppId")
                .expect("every finding names its app");
            let expected = if app == "evil" {
                Severity::High
            } else {
                Severity::Low
            };
            assert_eq!(f.severity, expected, "{:?}", f.evidence);
        }
        let note = out.coverage[0].note.as_deref().unwrap();
        assert!(note.contains("8 finding(s) lowered as rollouts"), "{note}");
        // Below the threshold (4 of 10 mailboxes < 5) it is not a rollout.
        let mut records: Vec<Value> = (0..10)
            .map(|i| mia(1, &format!("u{i}@x"), "outlook"))
            .collect();
        records.extend((0..4).map(|i| mia(20, &format!("u{i}@x"), "new-outlook")));
        let out = run(det(), &records);
        assert!(out.findings.iter().all(|f| f.severity == Severity::High));
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
