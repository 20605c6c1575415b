//! `tw-ioc-ip`: a client, actor or caller address equal to, or inside, an
//! indicator (the Storm-0558 addresses of Microsoft's 2023-07-14 report,
//! plus `--ioc`).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;
use time::Duration;

use super::{
    day, evidence, opt, shard_of, Anchors, Builtin, Context, Detection, Grouped, Info, Kinds,
    Needs, Outcome, Verdict, Weight,
};
use crate::ioc::{shadowed_field, IocSet};
use tokenward_event::Event;
use tokenward_event::Severity;

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-ioc-ip",
    title: "Storm-0558 / user IOC IP address",
    requires: "records with a client IP",
    attack: &["T1078.004"],
    weight: Weight::Moderate,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| Box::new(IocIp::new(s.iocs.clone(), s.options.ioc_window_margin_days)),
};

/// Address fields besides the normalised client address.
pub const FIELDS: &[&str] = &[
    "ClientIPAddress",
    "ActorIpAddress",
    "ClientIP",
    "callerIpAddress",
    "ipAddress",
    "IPAddress",
];

/// The detection.
pub struct IocIp {
    iocs: Arc<IocSet>,
    margin_days: i64,
    hits: Grouped,
}

impl IocIp {
    fn new(iocs: Arc<IocSet>, margin_days: i64) -> IocIp {
        IocIp {
            iocs,
            margin_days,
            hits: Grouped::default(),
        }
    }
}

impl Detection for IocIp {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        let mut n = Needs::anchored(Kinds::ALL, &[], FIELDS);
        // A network indicator matches addresses no literal names.
        n.anchors = match self.iocs.ip_literals() {
            Some(lits) => Anchors::AnyOf(lits),
            None => Anchors::Every,
        };
        n
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(IocIp::new(self.iocs.clone(), self.margin_days))
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut cands: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        if let Some(ip) = ev.client_ip() {
            cands.push((Cow::Borrowed("client_ip"), Cow::Borrowed(ip)));
        }
        for f in FIELDS {
            if let Some(v) = ev.scalar(f) {
                cands.push((Cow::Borrowed(*f), v));
            }
        }
        // An address hidden in the earlier copy of a key named twice.
        for paths in [FIELDS, tokenward_event::event::IP_FIELDS] {
            for (k, v) in ev.shadowed_scalars(paths) {
                cands.push((Cow::Owned(shadowed_field(k)), v));
            }
        }
        for (field, raw) in cands {
            let Some(ip) = tokenward_net::parse_client_ip(&raw) else {
                continue;
            };
            if seen.contains(&ip) {
                continue;
            }
            seen.push(ip);
            let Some(hit) = self.iocs.match_ip(ip) else {
                continue;
            };
            let margin = Duration::days(self.margin_days);
            let in_window = match (ev.time, hit.first_seen, hit.last_seen) {
                (Some(t), Some(a), Some(b)) => {
                    let d = t.date();
                    d >= a - margin && d <= b + margin
                }
                _ => true,
            };
            let sev = if in_window {
                Severity::High
            } else {
                Severity::Medium
            };
            let key = format!(
                "{ip}|{}|{}|{}",
                ev.user().unwrap_or(""),
                ev.session_id().unwrap_or(""),
                day(ev.time)
            );
            self.hits.add(key, ev, sev, || {
                let mut e = evidence(&[
                    ("field", json!(field)),
                    ("ip", json!(ip.to_string())),
                    ("indicator", json!(hit.net.to_string())),
                    ("source", json!(hit.source)),
                    ("operation", opt(ev.operation())),
                ]);
                if let (Some(a), Some(b)) = (hit.first_seen, hit.last_seen) {
                    e.insert("published_window".into(), json!(format!("{a} .. {b}")));
                    if !in_window {
                        e.insert(
                            "note".into(),
                            json!("outside the published activity window (±30 days)"),
                        );
                    }
                }
                e
            });
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        self.hits.merge(shard_of::<IocIp>(shard).hits);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let verdict = Verdict::blind_if(cx.records.records == 0, "no records");
        Outcome::of(&INFO, self.hits.findings(&INFO), verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{make_with, run};
    use crate::Status;
    use serde_json::{json, Value};

    fn det(iocs: IocSet) -> Box<dyn Detection> {
        make_with(&BUILTIN, iocs)
    }

    fn ual(ip: &str, time: &str, user: &str) -> Value {
        json!({"CreationTime": time, "Operation": "MailItemsAccessed", "Workload": "Exchange",
               "UserId": user, "ClientIPAddress": ip, "AppAccessContext": {"AADSessionId": "s1"}})
    }

    #[test]
    fn storm_address_in_its_window_is_high_and_grouped_per_user_session_day() {
        let out = run(
            det(IocSet::builtin()),
            &[
                ual("195.26.87.219", "2023-06-10T10:00:00", "a@x"),
                ual("195.26.87.219:443", "2023-06-10T11:00:00", "a@x"),
                ual("195.26.87.219", "2023-06-10T12:00:00", "b@x"),
            ],
        );
        assert_eq!(out.findings.len(), 2, "one group per user");
        let a = out
            .findings
            .iter()
            .find(|f| f.user.as_deref() == Some("a@x"))
            .unwrap();
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.evidence["records"], json!(2));
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn outside_the_published_window_is_medium() {
        let out = run(
            det(IocSet::builtin()),
            &[ual("195.26.87.219", "2021-01-10T10:00:00", "a@x")],
        );
        assert_eq!(out.findings[0].severity, Severity::Medium);
    }

    #[test]
    fn other_addresses_do_not_fire() {
        let out = run(
            det(IocSet::builtin()),
            &[ual("198.51.100.7", "2023-06-10T10:00:00", "a@x")],
        );
        assert!(out.findings.is_empty());
    }

    #[test]
    fn network_indicators_see_every_record() {
        let dir = tempdir();
        let f = dir.join("iocs.txt");
        std::fs::write(&f, "198.51.100.0/24\n").unwrap();
        let mut s = IocSet::default();
        s.load_file(&f).unwrap();
        let d = det(s);
        assert!(matches!(d.needs().anchors, Anchors::Every));
        let out = run(d, &[ual("198.51.100.77", "2023-06-10T10:00:00", "a@x")]);
        assert_eq!(out.findings.len(), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn no_records_is_blind() {
        let out = run(det(IocSet::builtin()), &[]);
        assert_eq!(out.coverage[0].status, Status::Blind);
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "tw-ioc-ip-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
