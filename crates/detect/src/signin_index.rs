//! The sign-in index: which tokens, sessions and client addresses Entra
//! sign-ins issued or used, and over what time. Detections that declare
//! [`Needs::signin_index`](super::Needs::signin_index) read it; the engine
//! builds it in parallel shards from sign-in events, reading sign-in files
//! before the others so that audit records already explained by a sign-in
//! are settled as they stream by.

use std::collections::{BTreeSet, HashMap, HashSet};

use time::{Duration, OffsetDateTime};

use super::{widen, KeyHasher, Kinds, Needs};
use tokenward_event::{Event, EventKind};

/// Tokens, sessions and addresses of the sign-ins read.
#[derive(Clone, Debug, Default)]
pub struct SigninIndex {
    /// Sign-in events indexed.
    pub signins: u64,
    /// `uniqueTokenIdentifier` values.
    pub tokens: HashSet<String, KeyHasher>,
    /// Session ids, lower-cased (audit records spell them in either case).
    pub sessions: HashSet<String, KeyHasher>,
    /// Client addresses.
    pub ips: HashSet<String, KeyHasher>,
    /// First and last sign-in time.
    pub range: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Per tenant (lower-cased; empty when the sign-in names none), the UTC
    /// days that have sign-ins. Coverage has holes: sign-ins on two days
    /// months apart do not cover the months between.
    pub days: HashMap<String, BTreeSet<i64>, KeyHasher>,
}

/// Fields naming the tenant of a sign-in, in the export shapes seen
/// (Graph `resourceTenantId`, Azure Monitor `tenantId`, Log Analytics
/// `AADTenantId`); names match in any case.
pub const SIGNIN_TENANT_FIELDS: &[&str] = &["resourceTenantId", "tenantId", "AADTenantId"];

/// Fields naming the tenant an audit record belongs to.
pub const AUDIT_TENANT_FIELDS: &[&str] = &["OrganizationId"];

/// The first tenant id `ev` names among `fields`, lower-cased.
pub fn tenant_of(ev: &Event, fields: &[&str]) -> Option<String> {
    fields
        .iter()
        .find_map(|f| ev.scalar(f))
        .map(|t| t.to_ascii_lowercase())
}

fn day_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

/// What the sign-ins say about one moment of one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cover {
    /// Sign-ins of the tenant exist on the days around the moment.
    Covered,
    /// The tenant has sign-ins, but not around that moment.
    Hole,
    /// No sign-in names the tenant (or, with several tenants, the record
    /// names none).
    OtherTenant,
}

impl SigninIndex {
    /// What the index reads: sign-in records, recognised by the names of
    /// their time column or table in every export shape.
    pub fn needs() -> Needs {
        Needs::anchored(
            Kinds::of(&[EventKind::SignIn]),
            &[
                "createdDateTime",
                "CreatedDateTime",
                "SignInLogs",
                "SigninLogs",
            ],
            SIGNIN_TENANT_FIELDS,
        )
    }

    /// Indexes one sign-in event.
    pub fn observe(&mut self, ev: &Event) {
        self.signins += 1;
        if let Some(t) = ev.token_id() {
            self.tokens.insert(t.to_owned());
        }
        if let Some(s) = ev.session_id() {
            self.sessions.insert(s.to_ascii_lowercase());
        }
        if let Some(ip) = ev.client_ip() {
            self.ips.insert(ip.to_owned());
        }
        if let Some(t) = ev.time {
            widen(&mut self.range, t);
            let day = day_of(t);
            let tenant = SIGNIN_TENANT_FIELDS.iter().find_map(|f| ev.scalar(f));
            let tenant = tenant.as_deref().unwrap_or("");
            // This runs for every sign-in: the tenant id is copied only when
            // it is new or not lower-case (exports write it lower-case).
            if tenant.bytes().any(|b| b.is_ascii_uppercase()) {
                self.days
                    .entry(tenant.to_ascii_lowercase())
                    .or_default()
                    .insert(day);
            } else if let Some(days) = self.days.get_mut(tenant) {
                days.insert(day);
            } else {
                self.days.insert(tenant.to_owned(), BTreeSet::from([day]));
            }
        }
    }

    /// Folds a shard into this index.
    pub fn merge(&mut self, o: SigninIndex) {
        self.signins += o.signins;
        self.tokens.extend(o.tokens);
        self.sessions.extend(o.sessions);
        self.ips.extend(o.ips);
        self.range = super::union(self.range, o.range);
        for (tenant, days) in o.days {
            self.days.entry(tenant).or_default().extend(days);
        }
    }

    /// The days with sign-ins that can speak for a record of `tenant`:
    /// that tenant's, plus those of sign-ins that name no tenant. A record
    /// that names no tenant is judged only when the sign-ins are of one
    /// tenant.
    fn days_for(&self, tenant: Option<&str>) -> Vec<&BTreeSet<i64>> {
        let anonymous = self.days.get("");
        let named: Vec<(&String, &BTreeSet<i64>)> =
            self.days.iter().filter(|(k, _)| !k.is_empty()).collect();
        let mut out: Vec<&BTreeSet<i64>> = anonymous.into_iter().collect();
        match tenant {
            Some(t) => {
                if let Some(d) = self.days.get(&t.to_ascii_lowercase()) {
                    out.push(d);
                }
            }
            None if named.len() == 1 => out.push(named[0].1),
            None => {}
        }
        out
    }

    /// Whether the sign-ins of `tenant` cover the issuance of a token used
    /// at `used` (issued at `issued`, when the record says): the day of
    /// issuance has sign-ins, and so does the day before when the token
    /// could have been issued then (up to two hours, an access token's
    /// lifetime, before its use).
    pub fn covers(
        &self,
        tenant: Option<&str>,
        used: Option<OffsetDateTime>,
        issued: Option<OffsetDateTime>,
    ) -> Cover {
        let sets = self.days_for(tenant);
        if sets.is_empty() {
            return Cover::OtherTenant;
        }
        let has = |t: OffsetDateTime| sets.iter().any(|d| d.contains(&day_of(t)));
        let ok = match (issued, used) {
            (Some(i), _) => has(i),
            (None, Some(u)) => has(u) && has(u - Duration::hours(2)),
            (None, None) => false,
        };
        if ok {
            Cover::Covered
        } else {
            Cover::Hole
        }
    }

    /// The coverage of `tenant` in words, for notes and evidence.
    pub fn describe(&self, tenant: Option<&str>) -> String {
        let sets = self.days_for(tenant);
        let days: BTreeSet<i64> = sets.into_iter().flatten().copied().collect();
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return format!("no sign-ins of tenant {}", tenant.unwrap_or("(unnamed)"));
        };
        let date = |d: i64| {
            OffsetDateTime::from_unix_timestamp(d * 86_400)
                .map(|t| t.date().to_string())
                .unwrap_or_default()
        };
        let span = last - first + 1;
        format!(
            "sign-ins on {} of the {span} day(s) {} .. {}{}",
            days.len(),
            date(*first),
            date(*last),
            tenant
                .map(|t| format!(" for tenant {t}"))
                .unwrap_or_default()
        )
    }

    /// Whether a sign-in issued this token, or signed in this Entra or
    /// Exchange session.
    pub fn issued(&self, token: Option<&str>, aad: Option<&str>, exch: Option<&str>) -> bool {
        token.is_some_and(|t| self.tokens.contains(t))
            || [aad, exch]
                .into_iter()
                .flatten()
                .any(|s| self.has_session(s))
    }

    /// Whether a session id (any case) signed in. Ids are kept lower-cased
    /// and most arrive that way: the copy is made only when needed (this
    /// runs for every token-bearing audit record).
    pub fn has_session(&self, s: &str) -> bool {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            self.sessions.contains(&s.to_ascii_lowercase())
        } else {
            self.sessions.contains(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;
    use serde_json::json;

    #[test]
    fn indexes_tokens_sessions_and_addresses_and_merges_shards() {
        let mut a = SigninIndex::default();
        a.observe(&event(json!({"createdDateTime": "2023-06-01T10:00:00Z", "userPrincipalName": "a@x", "ipAddress": "198.51.100.1", "uniqueTokenIdentifier": "T1", "sessionId": "S-ONE"})));
        let mut b = SigninIndex::default();
        b.observe(&event(json!({"createdDateTime": "2023-06-03T10:00:00Z", "userPrincipalName": "b@x", "ipAddress": "198.51.100.2", "uniqueTokenIdentifier": "T2"})));
        a.merge(b);
        assert_eq!(a.signins, 2);
        assert!(a.issued(Some("T2"), None, None));
        assert!(
            a.issued(None, Some("s-one"), None),
            "sessions match in any case"
        );
        assert!(a.issued(None, None, Some("S-One")));
        assert!(!a.issued(Some("T3"), Some("s-two"), None));
        assert!(a.ips.contains("198.51.100.2"));
        let (first, last) = a.range.unwrap();
        assert_eq!((first.day(), last.day()), (1, 3));
    }
}
