//! `tw-owa-token-for-resource`: OWA `GetAccessTokenForResource` (RecordType
//! 275 `OWAAuth`) issuances for a session that never signed in, or to an
//! address that never signed in: how Storm-0558 renewed forged sessions.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{
    coverage_of, evidence, finish_collected, keep_smallest, keep_smallest_of, opt, shard_of,
    Builtin, Context, Coverage, Detection, Info, Kinds, Needs, Outcome, Verdict, Weight,
};
use crate::signin_index::{tenant_of, Cover, AUDIT_TENANT_FIELDS};
use crate::spilling::{read_set, set_bytes, write_set, Spillable, SpillingMap, StateDisk};
use tokenward_event::codec::{self, Cursor};
use tokenward_event::timefmt::rfc3339;
use tokenward_event::{Event, EventKind};
use tokenward_event::{Finding, Rep, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-owa-token-for-resource",
    title: "OWA GetAccessTokenForResource for a session or IP that never signed in",
    requires: "OWA token-issuance records (RecordType 275 OWAAuth) and Entra sign-in logs",
    attack: &["T1550.001"],
    weight: Weight::Strong,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| {
        Box::new(OwaTokenForResource::new(
            s.options.owa_chain_min,
            s.state.clone(),
        ))
    },
};

/// Addresses and resources kept per session.
const KEPT: usize = 16;

struct Issuances {
    rep: Rep,
    count: u64,
    last: Option<OffsetDateTime>,
    ips: BTreeSet<String>,
    resources: BTreeSet<String>,
    session: Option<String>,
    /// An address that had not signed in when its issuance was read, kept
    /// even when `ips` is full, so the verdict never hangs on which
    /// addresses the evidence kept.
    unknown_ip: Option<String>,
    /// The tenant of the earliest record (`OrganizationId`).
    tenant: Option<String>,
}

impl Spillable for Issuances {
    fn approx_bytes(&self) -> usize {
        let r = &self.rep;
        let texts = [&r.user, &r.client_ip, &r.app_id, &r.session_id, &r.token_id]
            .into_iter()
            .flatten()
            .map(|t| t.len() + 16)
            .chain(
                [&self.session, &self.unknown_ip, &self.tenant]
                    .into_iter()
                    .flatten()
                    .map(|t| t.len() + 16),
            )
            .sum::<usize>();
        // The slot: the key's hash and box beside the value.
        std::mem::size_of::<Issuances>()
            + 24
            + texts
            + set_bytes(&self.ips)
            + set_bytes(&self.resources)
    }

    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.rep.write(buf)?;
        codec::put_u64(buf, self.count);
        codec::put_opt_time(buf, self.last);
        write_set(buf, &self.ips)?;
        write_set(buf, &self.resources)?;
        for t in [&self.session, &self.unknown_ip, &self.tenant] {
            codec::put_opt_text(buf, t.as_deref())?;
        }
        Ok(())
    }

    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        let rep = Rep::read(c)?;
        let count = c.u64()?;
        let last = c.opt_time()?;
        let (ips, resources) = (read_set(c)?, read_set(c)?);
        let opt = |c: &mut Cursor<'_>| c.opt_text().map(|t| t.map(str::to_owned));
        let (session, unknown_ip, tenant) = (opt(c)?, opt(c)?, opt(c)?);
        Ok(Issuances {
            rep,
            count,
            last,
            ips,
            resources,
            session,
            unknown_ip,
            tenant,
        })
    }

    fn fold(&mut self, s: Self) {
        self.count += s.count;
        self.last = self.last.max(s.last);
        keep_smallest_of(&mut self.ips, s.ips, KEPT);
        keep_smallest_of(&mut self.resources, s.resources, KEPT);
        if s.rep.earlier_than(&self.rep) {
            self.rep = s.rep;
            self.tenant = s.tenant;
        }
        self.session = self.session.take().or(s.session);
        self.unknown_ip = match (self.unknown_ip.take(), s.unknown_ip) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The detection.
pub struct OwaTokenForResource {
    chain_min: u64,
    records: u64,
    /// Session (else IP) -> issuances not explained by a sign-in so far;
    /// past its memory, on disk.
    sessions: SpillingMap<Box<str>, Issuances>,
}

impl OwaTokenForResource {
    fn new(chain_min: u64, state: Arc<StateDisk>) -> OwaTokenForResource {
        OwaTokenForResource {
            chain_min,
            records: 0,
            sessions: SpillingMap::new(state),
        }
    }
}

/// An operation containing this (ASCII case ignored) issues a token.
pub const ISSUANCE_OPERATION: &str = "accesstokenforresource";
/// The UAL record type of OWA token issuances, and its name (also seen as
/// the operation).
pub const OWA_AUTH: (u32, &str) = (275, "OWAAuth");

/// Whether the event is an OWA token issuance.
fn is_issuance(ev: &Event) -> bool {
    let op = ev.operation().unwrap_or_default();
    op.to_ascii_lowercase().contains(ISSUANCE_OPERATION)
        || ev.record_type() == Some(OWA_AUTH.0)
        || op.eq_ignore_ascii_case(OWA_AUTH.1)
}

impl Detection for OwaTokenForResource {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        let mut n = Needs::anchored(
            Kinds::of(&[EventKind::Audit]),
            &[
                "AccessTokenForResource",
                "AccessTokenforResource",
                "OWAAuth",
                "\"RecordType\":275",
                "\"RecordType\": 275",
                "\"RecordType\":\"275\"",
            ],
            &[
                "SessionId",
                "ResourceURL",
                "ResourceUrl",
                "Resource",
                "OrganizationId",
            ],
        );
        n.signin_index = true;
        n
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(OwaTokenForResource {
            chain_min: self.chain_min,
            records: 0,
            sessions: self.sessions.fork(),
        })
    }

    fn observe(&mut self, ev: &Event, cx: &Context<'_>) {
        if !is_issuance(ev) {
            return;
        }
        self.records += 1;
        let session = ev
            .session_id()
            .map(str::to_owned)
            .or_else(|| ev.get_str("SessionId"));
        let ip = ev.client_ip().map(str::to_owned);
        let known_session = session
            .as_deref()
            .is_some_and(|s| cx.signins.has_session(s));
        let known_ip = ip.as_ref().is_some_and(|i| cx.signins.ips.contains(i));
        if known_session && known_ip {
            // Sign-in sets only grow, so this issuance stays explained.
            return;
        }
        let key = session.as_deref().or(ip.as_deref()).unwrap_or("-");
        let a = self.sessions.get_or_insert_with(key, || Issuances {
            rep: Rep::of(ev),
            count: 0,
            last: None,
            ips: BTreeSet::new(),
            resources: BTreeSet::new(),
            session: session.clone(),
            unknown_ip: None,
            tenant: tenant_of(ev, AUDIT_TENANT_FIELDS),
        });
        // Counted as the map's estimate counts it: issuances are few
        // (one per OWA token), and a count short of the estimate would
        // let the map grow past its budget.
        let held_before = a.approx_bytes();
        a.count += 1;
        a.last = a.last.max(ev.time);
        if let Some(i) = ip {
            // The smallest address unknown when read: which one arrived
            // first depends on the workers.
            let replaces = a
                .unknown_ip
                .as_ref()
                .is_none_or(|k| i < *k || cx.signins.ips.contains(k));
            if !known_ip && replaces {
                a.unknown_ip = Some(i.clone());
            }
            keep_smallest(&mut a.ips, i, KEPT);
        }
        if let Some(r) = ev.first_str(&["ResourceURL", "ResourceUrl", "Resource"]) {
            keep_smallest(&mut a.resources, r, KEPT);
        }
        if Rep::event_earlier(ev, &a.rep) {
            a.rep = Rep::of(ev);
            a.tenant = tenant_of(ev, AUDIT_TENANT_FIELDS);
        }
        let grew = a.approx_bytes().saturating_sub(held_before);
        self.sessions.grew(grew);
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<OwaTokenForResource>(shard);
        self.records += o.records;
        self.sessions.merge(o.sessions);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        finish_collected(self, cx)
    }

    // Session by session as they come out of the map, each finding
    // handed over as it is made.
    fn finish_into(
        self: Box<Self>,
        cx: &Context<'_>,
        found: &mut dyn FnMut(Finding),
    ) -> Vec<Coverage> {
        if self.records == 0 {
            return coverage_of(&INFO, 0, Verdict::Blind("no OWA token-issuance records (RecordType 275 OWAAuth, in the UAL schema since 2024; or operations named GetAccessTokenForResource)".into()));
        }
        if cx.signins.signins == 0 {
            return coverage_of(
                &INFO,
                0,
                Verdict::Blind(
                    "no Entra sign-in logs given to tell which sessions and IPs signed in".into(),
                ),
            );
        }
        let (mut not_judged, mut hits) = (0u64, 0);
        let chain_min = self.chain_min;
        self.sessions.drain(|_, a| {
            // "Never signed in" is a claim only the sign-ins of the same
            // tenant, on the day the chain began, can support.
            if cx.signins.covers(a.tenant.as_deref(), a.rep.time, None) != Cover::Covered {
                not_judged += a.count;
                return;
            }
            let known_session = a
                .session
                .as_deref()
                .is_some_and(|s| cx.signins.has_session(s));
            let unknown_ips: BTreeSet<&String> = a
                .ips
                .iter()
                .chain(&a.unknown_ip)
                .filter(|i| !cx.signins.ips.contains(i))
                .collect();
            if known_session && unknown_ips.is_empty() {
                return;
            }
            let mut why = Vec::new();
            if !known_session {
                why.push("session never signed in".to_string());
            }
            if !unknown_ips.is_empty() {
                why.push("issued to an IP that never signed in".to_string());
            }
            if a.count >= chain_min {
                why.push(format!("renewal chain of {} issuances", a.count));
            }
            let e = evidence(&[
                ("session", opt(a.session.as_ref())),
                ("issuances", json!(a.count)),
                ("ips", json!(a.ips)),
                ("ips_never_signed_in", json!(unknown_ips)),
                ("resources", json!(a.resources)),
                (
                    "last_seen",
                    a.last.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null),
                ),
                ("why", json!(why.join("; "))),
                (
                    "signin_coverage",
                    json!(cx.signins.describe(a.tenant.as_deref())),
                ),
            ]);
            found(INFO.finding(&a.rep, Severity::High, e));
            hits += 1;
        });
        // Issuances explained by a sign-in as they streamed by were judged.
        let judged = self.records - not_judged;
        let note = format!(
            "{judged} of {} issuances judged; {not_judged} began where the sign-ins given do not cover their tenant and day",
            self.records
        );
        let verdict = if judged == 0 {
            Verdict::Blind(note)
        } else {
            Verdict::Ok(Some(note))
        };
        coverage_of(&INFO, hits, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spilling::DEFAULT_STATE_MEMORY;
    use crate::testing::{run_with, same_when_spilled, signins};
    use crate::{SigninIndex, Status};
    use serde_json::{json, Value};

    fn det() -> Box<dyn Detection> {
        Box::new(OwaTokenForResource::new(
            3,
            StateDisk::new(DEFAULT_STATE_MEMORY),
        ))
    }

    fn owa(minute: u32, session: &str, ip: &str) -> Value {
        json!({"CreationTime": format!("2023-06-10T10:{minute:02}:00"), "Operation": "GetAccessTokenForResource",
               "RecordType": 275, "Workload": "Exchange", "UserId": "a@x", "ClientIP": ip,
               "SessionId": session, "ResourceURL": "https://outlook.office.com"})
    }

    fn idx() -> SigninIndex {
        signins(&[
            json!({"createdDateTime": "2023-06-10T09:00:00Z", "userPrincipalName": "a@x",
                         "appId": "owa", "ipAddress": "198.51.100.1", "sessionId": "good"}),
        ])
    }

    #[test]
    fn a_renewal_chain_of_a_session_that_never_signed_in_fires() {
        let det = det();
        let out = run_with(
            det,
            &idx(),
            &[
                owa(1, "forged", "51.89.156.153"),
                owa(2, "forged", "51.89.156.153"),
                owa(3, "forged", "51.89.156.153"),
            ],
        );
        assert_eq!(out.findings.len(), 1);
        let why = out.findings[0].evidence["why"].as_str().unwrap();
        assert!(
            why.contains("session never signed in") && why.contains("renewal chain of 3"),
            "{why}"
        );
    }

    /// Entra keeps sign-ins for 30 days, the UAL longer: a chain that
    /// began before the sign-in logs do is not "never signed in".
    #[test]
    fn chains_before_the_sign_in_logs_begin_are_not_judged() {
        let early: Vec<Value> = (1..=3)
            .map(|m| {
                let text = owa(m, "OLD", "203.0.113.9")
                    .to_string()
                    .replace("2023-06-10", "2023-05-01");
                serde_json::from_str(&text).unwrap()
            })
            .collect();
        let out = run_with(det(), &idx(), &early);
        assert!(out.findings.is_empty(), "{:?}", out.findings);
        assert_eq!(out.coverage[0].status, Status::Blind);
        let with_covered = [early, vec![owa(1, "NEW", "203.0.113.9")]].concat();
        let out = run_with(det(), &idx(), &with_covered);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].evidence["session"], "NEW");
    }

    #[test]
    fn a_signed_in_session_from_its_own_address_does_not_fire() {
        let out = run_with(det(), &idx(), &[owa(1, "GOOD", "198.51.100.1")]);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn a_known_session_from_a_new_address_fires() {
        let out = run_with(det(), &idx(), &[owa(1, "good", "203.0.113.9")]);
        assert_eq!(out.findings.len(), 1);
    }

    /// The verdict does not hang on which addresses the evidence kept: a
    /// signed-in session that reached a new address after more than
    /// `KEPT` known ones still fires.
    #[test]
    fn a_new_address_past_the_kept_ones_still_fires() {
        let known: Vec<Value> = (0..=KEPT)
            .map(|i| {
                json!({"createdDateTime": "2023-06-10T09:00:00Z", "userPrincipalName": "a@x",
                            "ipAddress": format!("198.51.100.{i}"), "sessionId": "good"})
            })
            .collect();
        let idx = signins(&known);
        let mut records: Vec<Value> = (0..=KEPT)
            .map(|i| owa(1, "good", &format!("198.51.100.{i}")))
            .collect();
        records.push(owa(2, "good", "203.0.113.9"));
        let out = run_with(det(), &idx, &records);
        assert_eq!(out.findings.len(), 1, "{:?}", out.coverage);
        let why = out.findings[0].evidence["why"].as_str().unwrap();
        assert!(why.contains("IP that never signed in"), "{why}");
        assert_eq!(
            out.findings[0].evidence["ips_never_signed_in"],
            json!(["203.0.113.9"])
        );
        // Without the new address, nothing to say.
        records.pop();
        let out = run_with(det(), &idx, &records);
        assert!(out.findings.is_empty());
    }

    /// More addresses that never signed in than the evidence keeps: the
    /// ones named are the same whatever order the issuances are read in
    /// (the first to come used to be kept).
    #[test]
    fn the_addresses_named_do_not_depend_on_read_order() {
        let mut records: Vec<Value> = (0..20)
            .map(|i| owa(1, "good", &format!("203.0.113.{i}")))
            .collect();
        let mut all: Vec<String> = (0..20).map(|i| format!("203.0.113.{i}")).collect();
        all.sort();
        let want = json!(all[..KEPT]);
        for _ in 0..4 {
            let out = run_with(det(), &idx(), &records);
            assert_eq!(out.findings.len(), 1, "{:?}", out.coverage);
            let e = &out.findings[0].evidence;
            assert_eq!((&e["ips"], &e["ips_never_signed_in"]), (&want, &want));
            records.rotate_left(7);
        }
    }

    /// The earliest issuance's tenant decides coverage, whatever the order.
    #[test]
    fn the_earliest_issuance_names_the_tenant() {
        let idx = signins(&[
            json!({"createdDateTime": "2023-06-10T09:00:00Z", "userPrincipalName": "a@x",
                                   "ipAddress": "198.51.100.1", "sessionId": "good", "tenantId": "tenant-a"}),
        ]);
        let mut first = owa(1, "forged", "203.0.113.9");
        first["OrganizationId"] = json!("TENANT-A");
        let mut second = owa(2, "forged", "203.0.113.9");
        second["OrganizationId"] = json!("tenant-b");
        for records in [[first.clone(), second.clone()], [second, first]] {
            let out = run_with(det(), &idx, &records);
            assert_eq!(out.findings.len(), 1);
        }
    }

    #[test]
    fn without_sign_ins_it_is_blind() {
        let out = run_with(
            det(),
            &SigninIndex::default(),
            &[owa(1, "x", "203.0.113.9")],
        );
        assert_eq!(out.coverage[0].status, Status::Blind);
    }

    /// Sessions written to disk at every change (a budget of 0) and merged back
    /// are judged as held ones: chains split between both shards, a
    /// signed-in session reaching a new address, one that stays explained,
    /// and issuances keyed by address for want of a session.
    #[test]
    fn sessions_spilled_to_disk_are_judged_as_held_ones() {
        let mut records = Vec::new();
        for m in 0..24u32 {
            let session = ["forged", "good", "other"][m as usize % 3];
            let ip = if m % 4 == 0 {
                "203.0.113.9"
            } else {
                "198.51.100.1"
            };
            records.push(owa(m % 60, session, ip));
        }
        let mut no_session = owa(30, "", "203.0.113.77");
        no_session.as_object_mut().unwrap().remove("SessionId");
        records.push(no_session);
        let out = same_when_spilled(
            |state| Box::new(OwaTokenForResource::new(3, state)),
            &idx(),
            &records,
        );
        // forged, other, the address alone; and good, which reached
        // 203.0.113.9 (its issuances to a signed-in address were explained
        // as they were read, so it is no chain).
        assert_eq!(out.findings.len(), 4, "{:?}", out.coverage);
        let chains = out
            .findings
            .iter()
            .filter(|f| {
                f.evidence["why"]
                    .as_str()
                    .unwrap()
                    .contains("renewal chain of 8")
            })
            .count();
        assert_eq!(chains, 2);
    }
}
