//! Findings grouped per key (indicator, user, session, day...): one finding
//! per group, represented by its earliest record, with the record count.

use crate::keyed::Keyed;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::Info;
use tokenward_event::timefmt::rfc3339;
use tokenward_event::Event;
use tokenward_event::{Finding, Rep, Severity};

struct Group {
    rep: Rep,
    severity: Severity,
    evidence: Map<String, Value>,
    count: u64,
    last: Option<OffsetDateTime>,
}

/// Hits grouped by key. The group keeps the earliest record's evidence, the
/// highest severity, the count and the last time, so shards merge in any
/// order to the same result.
#[derive(Default)]
pub struct Grouped {
    groups: Keyed<Box<str>, Group>,
}

impl Grouped {
    /// Adds a hit of `ev` to the group `key`. `evidence` is only built when
    /// the event becomes the group's representative.
    pub fn add(
        &mut self,
        key: String,
        ev: &Event,
        severity: Severity,
        evidence: impl FnOnce() -> Map<String, Value>,
    ) {
        match self.groups.get_mut(&key) {
            Some(g) => {
                g.count += 1;
                g.last = g.last.max(ev.time);
                g.severity = g.severity.max(severity);
                if Rep::event_earlier(ev, &g.rep) {
                    g.rep = Rep::of(ev);
                    g.evidence = evidence();
                }
            }
            None => {
                self.groups.get_or_insert_with(&key, || Group {
                    rep: Rep::of(ev),
                    severity,
                    evidence: evidence(),
                    count: 1,
                    last: ev.time,
                });
            }
        }
    }

    /// Folds another set of groups into this one.
    pub fn merge(&mut self, other: Grouped) {
        self.groups.merge(other.groups, |g, o| {
            g.count += o.count;
            g.last = g.last.max(o.last);
            g.severity = g.severity.max(o.severity);
            if o.rep.earlier_than(&g.rep) {
                g.rep = o.rep;
                g.evidence = o.evidence;
            }
        });
    }

    /// One finding per group; `records` and `last_seen` join the evidence
    /// of groups with more than one record.
    pub fn findings(self, info: &Info) -> Vec<Finding> {
        self.groups
            .into_iter()
            .map(|(_, g)| {
                let mut e = g.evidence;
                if g.count > 1 {
                    e.insert("records".into(), json!(g.count));
                    if let Some(l) = g.last {
                        e.insert("last_seen".into(), json!(rfc3339(l)));
                    }
                }
                info.finding(&g.rep, g.severity, e)
            })
            .collect()
    }
}
