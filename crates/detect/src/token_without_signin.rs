//! `tw-token-without-signin`: Exchange, SharePoint and OneDrive records
//! whose token and session no Entra sign-in in the given logs issued.
//! Forged tokens are never issued by Entra, so they never appear there.

use std::borrow::Cow;

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{
    contains_ignore_ascii_case, coverage_of, evidence, finish_collected, free_aside, keep_smallest,
    keep_smallest_of, opt, shard_of, would_keep, Builtin, Context, Coverage, Detection, Info,
    Kinds, Needs, Outcome, Verdict, Weight,
};
use crate::signin_index::{tenant_of, Cover, AUDIT_TENANT_FIELDS};
use crate::spilling::{
    read_set, set_bytes, write_set, Spillable, SpillingMap, StateDisk, DEFAULT_STATE_MEMORY,
    SET_ITEM_BYTES,
};
use tokenward_event::codec::{self, Cursor};
use tokenward_event::timefmt::{parse_timestamp, rfc3339};
use tokenward_event::{Event, EventKind};
use tokenward_event::{Finding, Rep, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-token-without-signin",
    title: "Audit record with a token no Entra sign-in issued",
    requires:
        "audit records with UniqueTokenId/AADSessionId and Entra sign-in logs covering their time",
    attack: &["T1606", "T1550.001"],
    weight: Weight::Strong,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |setup| Box::new(TokenWithoutSignin::new(setup.state.clone())),
};

/// The consumer (MSA) tenant: an enterprise resource should never see it.
const CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// Workloads whose records carry the token that reached them (the
/// workload contains one, ASCII case ignored).
pub const WORKLOADS: &[&str] = &["exchange", "sharepoint", "onedrive"];
/// `UserType` values of app-only tokens: Application, ServicePrincipal.
pub const APP_ONLY_USER_TYPES: &[&str] = &["5", "6", "Application", "ServicePrincipal"];
/// The user SharePoint names for an app acting as itself.
pub const APP_ONLY_USER: &str = "app@sharepoint";
/// Token ids and operations kept per unexplained session.
const TOKENS_KEPT: usize = 1000;
const OPERATIONS_KEPT: usize = 8;

/// What the earliest record of an unexplained session says of it. The
/// earliest record speaks for the session (not the first one read), so
/// the answer does not depend on the order files and shards are read in.
struct Said {
    token: Option<String>,
    aad_session: Option<String>,
    exchange_session: Option<String>,
    issued: Option<OffsetDateTime>,
    workload: String,
    token_tenant: Option<String>,
    /// The tenant the record belongs to (`OrganizationId`).
    tenant: Option<String>,
}

/// An unexplained session (or token without a session).
struct Candidate {
    rep: Rep,
    said: Said,
    count: u64,
    last: Option<OffsetDateTime>,
    operations: BTreeSet<String>,
    tokens: BTreeSet<String>,
}

impl Spillable for Candidate {
    fn approx_bytes(&self) -> usize {
        let texts = |ts: &[Option<&str>]| ts.iter().flatten().map(|t| t.len() + 16).sum::<usize>();
        // The slot: the key's hash and box beside the value.
        std::mem::size_of::<Candidate>()
            + 24
            + texts(&[
                self.rep.user.as_deref(),
                self.rep.client_ip.as_deref(),
                self.rep.app_id.as_deref(),
                self.rep.session_id.as_deref(),
                self.rep.token_id.as_deref(),
                self.said.token.as_deref(),
                self.said.aad_session.as_deref(),
                self.said.exchange_session.as_deref(),
                Some(&self.said.workload),
                self.said.token_tenant.as_deref(),
                self.said.tenant.as_deref(),
            ])
            + set_bytes(&self.tokens)
            + set_bytes(&self.operations)
    }

    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.rep.write(buf)?;
        let said = &self.said;
        for t in [&said.token, &said.aad_session, &said.exchange_session] {
            codec::put_opt_text(buf, t.as_deref())?;
        }
        codec::put_opt_time(buf, said.issued);
        codec::put_text(buf, &said.workload)?;
        codec::put_opt_text(buf, said.token_tenant.as_deref())?;
        codec::put_opt_text(buf, said.tenant.as_deref())?;
        codec::put_u64(buf, self.count);
        codec::put_opt_time(buf, self.last);
        write_set(buf, &self.operations)?;
        write_set(buf, &self.tokens)
    }

    fn read(c: &mut Cursor<'_>) -> Result<Self, String> {
        let rep = Rep::read(c)?;
        let opt = |c: &mut Cursor<'_>| c.opt_text().map(|t| t.map(str::to_owned));
        let (token, aad_session, exchange_session) = (opt(c)?, opt(c)?, opt(c)?);
        let issued = c.opt_time()?;
        let workload = c.text()?.to_owned();
        let (token_tenant, tenant) = (opt(c)?, opt(c)?);
        let count = c.u64()?;
        let last = c.opt_time()?;
        let (operations, tokens) = (read_set(c)?, read_set(c)?);
        Ok(Candidate {
            rep,
            said: Said {
                token,
                aad_session,
                exchange_session,
                issued,
                workload,
                token_tenant,
                tenant,
            },
            count,
            last,
            operations,
            tokens,
        })
    }

    fn fold(&mut self, other: Self) {
        self.count += other.count;
        self.last = self.last.max(other.last);
        keep_smallest_of(&mut self.tokens, other.tokens, TOKENS_KEPT);
        keep_smallest_of(&mut self.operations, other.operations, OPERATIONS_KEPT);
        if other.rep.earlier_than(&self.rep) {
            self.rep = other.rep;
            self.said = other.said;
        }
    }
}

/// The detection.
pub struct TokenWithoutSignin {
    /// Token-bearing records of the workloads above.
    token_records: u64,
    /// Of those, explained by a sign-in as they streamed by.
    joined: u64,
    /// Of those, carrying app-only tokens, which user sign-in logs never
    /// show (they appear in service-principal sign-ins, if anywhere).
    app_only: u64,
    /// By session (or token without one); past its memory, on disk.
    candidates: SpillingMap<Box<str>, Candidate>,
}

impl TokenWithoutSignin {
    /// The detection, its unexplained sessions spilling as `state` says.
    pub fn new(state: Arc<StateDisk>) -> Self {
        TokenWithoutSignin {
            token_records: 0,
            joined: 0,
            app_only: 0,
            candidates: SpillingMap::new(state),
        }
    }
}

impl Default for TokenWithoutSignin {
    fn default() -> Self {
        Self::new(StateDisk::new(DEFAULT_STATE_MEMORY))
    }
}

impl Detection for TokenWithoutSignin {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        let mut n = Needs::anchored(
            Kinds::of(&[EventKind::Audit]),
            &["UniqueTokenId", "uniqueTokenId", "AADSessionId"],
            &[
                "AppAccessContext.UniqueTokenId",
                "UniqueTokenId",
                "AppAccessContext.AADSessionId",
                "AADSessionId",
                "SessionId",
                "AppAccessContext.IssuedAtTime",
                "TokenTenantId",
                "OrganizationId",
                "UserType",
            ],
        );
        n.signin_index = true;
        n.blind_without_signins = true;
        n
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(TokenWithoutSignin {
            token_records: 0,
            joined: 0,
            app_only: 0,
            candidates: self.candidates.fork(),
        })
    }

    fn observe(&mut self, ev: &Event, cx: &Context<'_>) {
        let wl = ev.workload().unwrap_or_default();
        if !WORKLOADS.iter().any(|w| contains_ignore_ascii_case(wl, w)) {
            return;
        }
        // Borrowed: half of a UAL export carries a token, and most of
        // those repeat a session already held, which needs no copy.
        let token = ev
            .scalar("AppAccessContext.UniqueTokenId")
            .or_else(|| ev.scalar("UniqueTokenId"));
        let aad = ev
            .scalar("AppAccessContext.AADSessionId")
            .or_else(|| ev.scalar("AADSessionId"));
        if token.is_none() && aad.is_none() {
            return;
        }
        self.token_records += 1;
        if is_app_only(ev) {
            self.app_only += 1;
            return;
        }
        let exch = ev.scalar("SessionId");
        if cx
            .signins
            .issued(token.as_deref(), aad.as_deref(), exch.as_deref())
        {
            self.joined += 1;
            return;
        }
        // One finding per session (or per token without one): a forged
        // session typically carries many tokens.
        let key = aad.as_deref().or(token.as_deref()).unwrap_or_default();
        let said = || Said {
            token: token.as_deref().map(str::to_owned),
            aad_session: aad.as_deref().map(str::to_owned),
            exchange_session: exch.as_deref().map(str::to_owned),
            issued: ev
                .scalar("AppAccessContext.IssuedAtTime")
                .and_then(|s| parse_timestamp(&s)),
            workload: wl.to_string(),
            token_tenant: ev.get_str("TokenTenantId"),
            tenant: tenant_of(ev, AUDIT_TENANT_FIELDS),
        };
        let c = self.candidates.get_or_insert_with(key, || Candidate {
            rep: Rep::of(ev),
            said: said(),
            count: 0,
            last: None,
            operations: BTreeSet::new(),
            tokens: BTreeSet::new(),
        });
        // Never true of a candidate just made of this record.
        if Rep::event_earlier(ev, &c.rep) {
            c.rep = Rep::of(ev);
            c.said = said();
        }
        c.count += 1;
        c.last = c.last.max(ev.time);
        let mut grew = 0;
        if let Some(t) = token {
            if would_keep(&c.tokens, &*t, TOKENS_KEPT) {
                grew += t.len() + SET_ITEM_BYTES;
                keep_smallest(&mut c.tokens, t.into_owned(), TOKENS_KEPT);
            }
        }
        if let Some(op) = ev.operation() {
            if would_keep(&c.operations, op, OPERATIONS_KEPT) {
                grew += op.len() + SET_ITEM_BYTES;
                keep_smallest(&mut c.operations, op.to_owned(), OPERATIONS_KEPT);
            }
        }
        // Counted as added even when one made room: an estimate on the
        // high side spills a little early, never late.
        self.candidates.grew(grew);
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<TokenWithoutSignin>(shard);
        self.token_records += o.token_records;
        self.joined += o.joined;
        self.app_only += o.app_only;
        self.candidates.merge(o.candidates);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        finish_collected(self, cx)
    }

    // One finding per unexplained session, each made as its session is
    // judged and let go: held all at once beside the sessions, they were
    // as large again (about 2 KB a finding).
    fn finish_into(
        self: Box<Self>,
        cx: &Context<'_>,
        found: &mut dyn FnMut(Finding),
    ) -> Vec<Coverage> {
        let idx = cx.signins;
        if idx.signins == 0 {
            if !self.candidates.is_empty() {
                free_aside(self.candidates);
            }
            return coverage_of(&INFO, 0, Verdict::Blind("no Entra sign-in logs given: cannot tell issued tokens from forged ones (give interactive and non-interactive sign-ins)".into()));
        }
        if self.token_records == 0 {
            return coverage_of(&INFO, 0, Verdict::Blind("no Exchange/SharePoint audit records carry AppAccessContext.UniqueTokenId or AADSessionId".into()));
        }
        let (mut holes, mut other_tenant, mut judged) = (0u64, 0u64, self.joined);
        let mut hits = 0;
        self.candidates.drain(|_, c| {
            // Sign-ins read after the record may explain it.
            if idx.issued(
                c.said.token.as_deref(),
                c.said.aad_session.as_deref(),
                c.said.exchange_session.as_deref(),
            ) || c.tokens.iter().any(|t| idx.tokens.contains(t))
            {
                judged += c.count;
                return;
            }
            match idx.covers(c.said.tenant.as_deref(), c.rep.time, c.said.issued) {
                Cover::Covered => {}
                Cover::Hole => {
                    holes += c.count;
                    return;
                }
                Cover::OtherTenant => {
                    other_tenant += c.count;
                    return;
                }
            }
            judged += c.count;
            let consumer = c
                .said
                .token_tenant
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(CONSUMER_TENANT));
            let mut e = evidence(&[
                ("UniqueTokenId", opt(c.said.token.as_ref())),
                ("AADSessionId", opt(c.said.aad_session.as_ref())),
                ("SessionId", opt(c.said.exchange_session.as_ref())),
                ("IssuedAtTime", c.said.issued.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                ("workload", json!(c.said.workload)),
                ("distinct_tokens", json!(c.tokens.len())),
                ("operations", json!(c.operations)),
                ("records", json!(c.count)),
                ("last_seen", c.last.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                ("signin_coverage", json!(idx.describe(c.said.tenant.as_deref()))),
                ("why", json!("no sign-in in the given logs issued this token or session; forged tokens are never issued by Entra")),
            ]);
            if consumer {
                e.insert(
                    "TokenTenantId".into(),
                    json!(format!("{CONSUMER_TENANT} (consumer MSA tenant)")),
                );
            }
            found(INFO.finding(&c.rep, Severity::High, e));
            hits += 1;
        });
        let (a, b) = idx.range.expect("sign-ins counted");
        let note = format!(
            "sign-ins {} .. {} ({} tenant(s)); {} of {} token-bearing records judged; not judged: {} on days without sign-ins of their tenant, {} of tenants with no sign-ins given, {} with app-only tokens",
            rfc3339(a),
            rfc3339(b),
            idx.days.keys().filter(|k| !k.is_empty()).count().max(1),
            judged,
            self.token_records,
            holes,
            other_tenant,
            self.app_only
        );
        let verdict = if judged == 0 {
            Verdict::Blind(note)
        } else {
            Verdict::Ok(Some(note))
        };
        coverage_of(&INFO, hits, verdict)
    }
}

/// App-only tokens (an application acting as itself): `UserType` 5
/// (Application) or 6 (ServicePrincipal), or SharePoint's `app@sharepoint`.
fn is_app_only(ev: &Event) -> bool {
    ev.scalar("UserType")
        .is_some_and(|t| APP_ONLY_USER_TYPES.contains(&&*t))
        || ev
            .user()
            .is_some_and(|u| u.eq_ignore_ascii_case(APP_ONLY_USER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run_with, same_when_spilled, signins};
    use crate::SigninIndex;
    use crate::Status;
    use serde_json::{json, Value};

    fn signin(hour: u32, token: &str, session: &str) -> Value {
        json!({"createdDateTime": format!("2023-06-10T{hour:02}:00:00Z"), "userPrincipalName": "a@x",
               "appId": "app", "ipAddress": "198.51.100.1", "uniqueTokenIdentifier": token, "sessionId": session})
    }

    fn ual(hour: u32, token: &str, session: &str, tenant: &str) -> Value {
        json!({"CreationTime": format!("2023-06-10T{hour:02}:30:00"), "Operation": "MailItemsAccessed",
               "Workload": "Exchange", "UserId": "a@x", "TokenTenantId": tenant,
               "AppAccessContext": {"UniqueTokenId": token, "AADSessionId": session,
                                    "IssuedAtTime": format!("2023-06-10T{hour:02}:20:00")}})
    }

    /// The same record on another day.
    fn on_day(mut record: Value, day: &str) -> Value {
        let text = record.to_string().replace("2023-06-10", day);
        record = serde_json::from_str(&text).unwrap();
        record
    }

    fn idx() -> SigninIndex {
        signins(&[signin(1, "T1", "S1"), signin(9, "T9", "S9")])
    }

    #[test]
    fn a_session_no_sign_in_issued_fires_once_with_its_token_count() {
        let out = run_with(
            Box::new(TokenWithoutSignin::default()),
            &idx(),
            &[
                ual(5, "F1", "FORGED", CONSUMER_TENANT),
                ual(6, "F2", "FORGED", CONSUMER_TENANT),
            ],
        );
        assert_eq!(out.findings.len(), 1);
        let e = &out.findings[0].evidence;
        assert_eq!(e["distinct_tokens"], json!(2));
        assert_eq!(e["records"], json!(2));
        assert!(e["TokenTenantId"].as_str().unwrap().contains("consumer"));
    }

    #[test]
    fn issued_tokens_and_sessions_do_not_fire() {
        let out = run_with(
            Box::new(TokenWithoutSignin::default()),
            &idx(),
            &[ual(2, "T1", "other", "t"), ual(3, "unknown", "s1", "t")],
        );
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn tokens_issued_outside_the_sign_in_coverage_are_not_judged() {
        let out = run_with(
            Box::new(TokenWithoutSignin::default()),
            &idx(),
            &[on_day(ual(5, "F1", "FORGED", "t"), "2023-06-12")],
        );
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Blind);
        let note = out.coverage[0].note.as_deref().unwrap();
        assert!(note.contains("1 on days without sign-ins"), "{note}");
    }

    /// Coverage is per tenant and has holes: sign-ins of tenant A on two
    /// days a month apart say nothing about the days between, nor about
    /// tenant B; an app-only token is never in user sign-ins.
    #[test]
    fn coverage_is_per_tenant_with_holes_and_app_tokens_are_not_judged() {
        let signin = |day: &str, tenant: &str| {
            json!({"createdDateTime": format!("{day}T09:00:00Z"), "userPrincipalName": "a@x",
                   "ipAddress": "198.51.100.1", "uniqueTokenIdentifier": format!("T-{day}"),
                   "sessionId": format!("S-{day}"), "resourceTenantId": tenant})
        };
        let idx = signins(&[
            signin("2023-06-01", "tenant-a"),
            signin("2023-07-01", "tenant-a"),
        ]);
        let record = |day: &str, org: &str, user: &str| {
            let mut r = on_day(
                ual(
                    10,
                    &format!("F-{day}-{org}"),
                    &format!("X-{day}-{org}"),
                    "t",
                ),
                day,
            );
            r["OrganizationId"] = json!(org);
            r["UserId"] = json!(user);
            r
        };
        let out = run_with(
            Box::new(TokenWithoutSignin::default()),
            &idx,
            &[
                record("2023-06-01", "TENANT-A", "a@x"), // covered: fires
                record("2023-06-15", "tenant-a", "a@x"), // a hole
                record("2023-06-01", "tenant-b", "b@x"), // another tenant
                record("2023-07-01", "tenant-a", "app@sharepoint"), // app-only
            ],
        );
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert_eq!(
            out.findings[0].evidence["AADSessionId"],
            "X-2023-06-01-TENANT-A"
        );
        let coverage = out.findings[0].evidence["signin_coverage"]
            .as_str()
            .unwrap();
        assert!(coverage.contains("2 of the 31 day(s)"), "{coverage}");
        let note = out.coverage[0].note.as_deref().unwrap();
        assert!(
            note.contains("1 on days without sign-ins")
                && note.contains("1 of tenants with no sign-ins")
                && note.contains("1 with app-only tokens"),
            "{note}"
        );
    }

    /// The earliest record speaks for a session whatever the order records
    /// arrive in: here it says its token was issued on a day the sign-ins
    /// cover, and a later record, read first, names a day they do not.
    #[test]
    fn the_earliest_record_speaks_for_its_session_in_any_read_order() {
        let mut later = ual(7, "F2", "FORGED", "t");
        later["AppAccessContext"]["IssuedAtTime"] = json!("2023-06-12T06:00:00");
        let earlier = ual(5, "F1", "FORGED", "t");
        for records in [
            [later.clone(), earlier.clone()],
            [earlier.clone(), later.clone()],
        ] {
            let out = run_with(Box::new(TokenWithoutSignin::default()), &idx(), &records);
            assert_eq!(out.findings.len(), 1, "{:?}", out.coverage);
            let e = &out.findings[0].evidence;
            assert_eq!(e["UniqueTokenId"], "F1");
            assert_eq!(e["IssuedAtTime"], "2023-06-10T05:20:00Z");
        }
        // Alone, the later record is judged by its own issuance day.
        let out = run_with(Box::new(TokenWithoutSignin::default()), &idx(), &[later]);
        assert!(out.findings.is_empty());
    }

    /// A session with more operations than the evidence keeps lists the
    /// same ones whatever order its records are read in (the first kept
    /// ones used to depend on which worker read which record first).
    #[test]
    fn the_operations_listed_do_not_depend_on_read_order() {
        let records: Vec<Value> = (0..12)
            .map(|i| {
                let mut r = ual(5, &format!("F{i}"), "FORGED", "t");
                r["Operation"] = json!(format!("Op{:02}", (i * 7) % 12));
                r
            })
            .collect();
        let mut reversed = records.clone();
        reversed.reverse();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut shuffled = records.clone();
        rng.shuffle(&mut shuffled);
        let listed = |records: &[Value]| {
            let out = run_with(Box::new(TokenWithoutSignin::default()), &idx(), records);
            assert_eq!(out.findings.len(), 1, "{:?}", out.coverage);
            out.findings[0].evidence["operations"].clone()
        };
        let want: Vec<String> = (0..OPERATIONS_KEPT).map(|i| format!("Op{i:02}")).collect();
        assert_eq!(listed(&records), json!(want));
        assert_eq!(listed(&reversed), json!(want));
        assert_eq!(listed(&shuffled), json!(want));
    }

    /// Sessions written to disk at every change (a budget of 0) and merged back
    /// make the findings of sessions held in memory: each session judged
    /// once, its records, tokens, operations and earliest record whole,
    /// though both shards spilled parts of it.
    #[test]
    fn sessions_spilled_to_disk_are_judged_as_held_ones() {
        let mut records = Vec::new();
        for i in 0..60u32 {
            let mut r = ual(2 + i % 7, &format!("F{i}"), &format!("S{}", i % 9), "t");
            r["Operation"] = json!(format!("Op{}", i % 11));
            records.push(r);
        }
        // Explained after the fact: its sign-in is in the index.
        records.push(ual(3, "T9", "later", "t"));
        let out = same_when_spilled(
            |state| Box::new(TokenWithoutSignin::new(state)),
            &idx(),
            &records,
        );
        // S0 to S8 but S1, which a sign-in issued.
        assert_eq!(out.findings.len(), 8);
        assert!(out
            .findings
            .iter()
            .all(|f| f.evidence["records"].as_u64() >= Some(6)));
    }

    /// The engine withholds its records while no sign-in is known
    /// ([`Needs::blind_without_signins`]): then it must find nothing, even
    /// on a session no sign-in could have issued.
    #[test]
    fn without_sign_ins_it_is_blind() {
        assert!(TokenWithoutSignin::default().needs().blind_without_signins);
        let out = run_with(
            Box::new(TokenWithoutSignin::default()),
            &SigninIndex::default(),
            &[ual(5, "F1", "FORGED", "t")],
        );
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
