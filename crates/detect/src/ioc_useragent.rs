//! `tw-ioc-useragent`: a user agent or Exchange `ClientInfoString` equal to
//! an indicator (long browser strings also as a substring).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::json;

use super::{
    contains_ignore_ascii_case, day, evidence, opt, shard_of, Builtin, Context, Detection, Grouped,
    Info, Kinds, Needs, Outcome, Verdict, Weight,
};
use crate::ioc::{shadowed_field, IocSet};
use tokenward_event::Event;
use tokenward_event::Severity;

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-ioc-useragent",
    title: "Storm-0558 / user IOC user agent",
    requires: "records with a user agent or ClientInfoString",
    attack: &[],
    weight: Weight::Weak,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| Box::new(IocUserAgent::new(s.iocs.clone())),
};

/// User-agent fields besides the normalised one.
pub const FIELDS: &[&str] = &[
    "ClientInfoString",
    "UserAgent",
    "userAgent",
    "ActorInfoString",
];

/// Indicators this long also match inside a longer user agent.
pub const SUBSTRING_MIN: usize = 40;

/// The detection.
pub struct IocUserAgent {
    iocs: Arc<IocSet>,
    hits: Grouped,
}

impl IocUserAgent {
    fn new(iocs: Arc<IocSet>) -> IocUserAgent {
        IocUserAgent {
            iocs,
            hits: Grouped::default(),
        }
    }
}

impl Detection for IocUserAgent {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        let mut n = Needs::anchored(Kinds::ALL, &[], FIELDS);
        n.anchors = self.iocs.user_agent_anchors();
        n
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(IocUserAgent::new(self.iocs.clone()))
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        let mut uas: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        for f in FIELDS {
            if let Some(v) = ev.scalar(f) {
                uas.push((Cow::Borrowed(*f), v));
            }
        }
        if let Some(v) = ev.user_agent() {
            if !uas.iter().any(|(_, u)| u == v) {
                uas.push((Cow::Borrowed("user_agent"), Cow::Borrowed(v)));
            }
        }
        // A user agent hidden in the earlier copy of a key named twice.
        for (k, v) in ev.shadowed_scalars(FIELDS) {
            uas.push((Cow::Owned(shadowed_field(k)), v));
        }
        for (field, ua) in uas {
            let t = ua.trim();
            let hit = self.iocs.user_agents.iter().find(|i| {
                t.eq_ignore_ascii_case(i.value.trim())
                    || (i.value.len() >= SUBSTRING_MIN && contains_ignore_ascii_case(t, &i.value))
            });
            let Some(hit) = hit else { continue };
            let sev = if hit.common {
                Severity::Low
            } else {
                Severity::High
            };
            let key = format!(
                "{}|{}|{}|{}",
                hit.value,
                ev.user().unwrap_or(""),
                ev.session_id().unwrap_or(""),
                day(ev.time)
            );
            self.hits.add(key, ev, sev, || {
                let mut e = evidence(&[
                    ("field", json!(field)),
                    ("user_agent", json!(t)),
                    ("source", json!(hit.source)),
                    ("operation", opt(ev.operation())),
                ]);
                if hit.common {
                    e.insert(
                        "note".into(),
                        json!("also sent by benign REST clients; weigh with the other findings"),
                    );
                }
                e
            });
            break;
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        self.hits.merge(shard_of::<IocUserAgent>(shard).hits);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let verdict = Verdict::blind_if(cx.records.records == 0, "no records");
        Outcome::of(&INFO, self.hits.findings(&INFO), verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{make, run};
    use serde_json::{json, Value};

    fn det() -> Box<dyn Detection> {
        make(&BUILTIN)
    }

    fn ual(ua: &str, user: &str) -> Value {
        json!({"CreationTime": "2023-06-10T10:00:00", "Operation": "MailItemsAccessed",
               "Workload": "Exchange", "UserId": user, "ClientInfoString": ua})
    }

    #[test]
    fn the_rest_client_string_is_low_with_a_note() {
        let out = run(det(), &[ual("Client=REST;Client=RESTSystem;;", "a@x")]);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::Low);
        assert!(out.findings[0].evidence.contains_key("note"));
    }

    #[test]
    fn ordinary_clients_do_not_fire() {
        let out = run(
            det(),
            &[ual(
                "Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                "a@x",
            )],
        );
        assert!(out.findings.is_empty());
    }

    #[test]
    fn each_user_gets_a_group() {
        let out = run(
            det(),
            &[
                ual("Client=REST;Client=RESTSystem;;", "a@x"),
                ual("Client=REST;Client=RESTSystem;;", "a@x"),
                ual("Client=REST;Client=RESTSystem;;", "b@x"),
            ],
        );
        assert_eq!(out.findings.len(), 2);
    }
}
