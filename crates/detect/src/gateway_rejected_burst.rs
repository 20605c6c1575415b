//! `tw-gateway-rejected-burst`: many tokens refused at the tokenward gateway
//! from one client address within a few minutes: a forger trying keys,
//! tenants or victims, or a client replaying stolen tokens.
//!
//! State is one entry per (client IP, UTC minute), so the result does not
//! depend on the order records arrive in, and it is bounded: at most
//! [`MINUTES_MAX`] entries per verdict and [`DETAIL_BUDGET`] kept token
//! prefixes, kids and reasons; what is not kept is counted and reported.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::KeyHasher;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{
    evidence, shard_of, Builtin, Context, Detection, Info, Kinds, Needs, Outcome, Verdict, Weight,
};
use tokenward_event::timefmt::rfc3339;
use tokenward_event::{Event, EventKind};
use tokenward_event::{Finding, Rep, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-gateway-rejected-burst",
    title: "Burst of rejected tokens from one client at the gateway",
    requires: "tokenward gateway access logs (docs/gateway.md)",
    attack: &["T1606"],
    weight: Weight::Weak,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| {
        Box::new(GatewayRejectedBurst::new(
            s.options.gateway_burst_min,
            s.options.gateway_burst_minutes,
        ))
    },
};

/// Most (client IP, minute) entries kept, per verdict class.
pub const MINUTES_MAX: usize = 250_000;
/// Most token prefixes, kids and reason codes kept across all entries.
pub const DETAIL_BUDGET: usize = 1_000_000;
/// Longest kid or reason code kept: both are attacker-chosen text.
const TEXT_MAX: usize = 128;
/// How long after a burst an accepted request from the same IP is reported.
pub const FOLLOW_MINUTES: i64 = 60;
/// The gateway's verdicts on a request with a token (docs/gateway.md).
pub const REJECTED: &str = "rejected";
/// See [`REJECTED`].
pub const ACCEPTED: &str = "accepted";

/// Rejected requests of one client IP in one UTC minute.
#[derive(Default)]
struct Rejected {
    count: u64,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    rep: Option<Rep>,
    reasons: BTreeMap<String, u64>,
    /// `token_sha256_prefix` as a number (16 hex digits).
    tokens: BTreeSet<u64>,
    kids: BTreeSet<String>,
    /// Some detail was not kept.
    capped: bool,
}

impl Rejected {
    fn detail(&self) -> usize {
        self.reasons.len() + self.tokens.len() + self.kids.len()
    }

    /// Folds another shard's entry of the same minute into this one,
    /// keeping its detail while `budget` (the detection's, which each
    /// shard spent on its own) lasts.
    fn fold(&mut self, r: Rejected, budget: &mut usize) {
        self.count += r.count;
        self.first = self.first.min(r.first).or(self.first).or(r.first);
        self.last = self.last.max(r.last);
        if let Some(rep) = r.rep {
            if self.rep.as_ref().is_none_or(|x| rep.earlier_than(x)) {
                self.rep = Some(rep);
            }
        }
        self.capped |= r.capped;
        for (k, n) in r.reasons {
            let fresh = !self.reasons.contains_key(&k);
            if GatewayRejectedBurst::keep(budget, fresh, &mut self.capped) {
                *self.reasons.entry(k).or_default() += n;
            }
        }
        for t in r.tokens {
            if GatewayRejectedBurst::keep(budget, !self.tokens.contains(&t), &mut self.capped) {
                self.tokens.insert(t);
            }
        }
        for k in r.kids {
            if GatewayRejectedBurst::keep(budget, !self.kids.contains(&k), &mut self.capped) {
                self.kids.insert(k);
            }
        }
    }
}

/// Accepted requests of one client IP in one UTC minute.
struct Accepted {
    count: u64,
    first: Option<OffsetDateTime>,
    first_user: Option<String>,
}

/// The detection.
pub struct GatewayRejectedBurst {
    min: u64,
    minutes: u32,
    records: u64,
    rejected: u64,
    /// Rejected records without a time or a client IP: cannot be placed.
    unplaced: u64,
    /// Records not kept because [`MINUTES_MAX`] was reached.
    untracked: u64,
    rejected_minutes: HashMap<String, BTreeMap<i64, Rejected>, KeyHasher>,
    rejected_entries: usize,
    accepted_minutes: HashMap<String, BTreeMap<i64, Accepted>, KeyHasher>,
    accepted_entries: usize,
    detail: usize,
}

fn cut_text(s: &str) -> String {
    let mut end = s.len().min(TEXT_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl GatewayRejectedBurst {
    fn new(min: u64, minutes: u32) -> GatewayRejectedBurst {
        GatewayRejectedBurst {
            min,
            minutes,
            records: 0,
            rejected: 0,
            unplaced: 0,
            untracked: 0,
            rejected_minutes: HashMap::default(),
            rejected_entries: 0,
            accepted_minutes: HashMap::default(),
            accepted_entries: 0,
            detail: 0,
        }
    }

    /// Spends detail budget on a new item; false (and marks the entry
    /// capped) when it is spent.
    fn keep(budget: &mut usize, fresh: bool, capped: &mut bool) -> bool {
        if !fresh {
            return true;
        }
        if *budget >= DETAIL_BUDGET {
            *capped = true;
            return false;
        }
        *budget += 1;
        true
    }
}

impl Detection for GatewayRejectedBurst {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::anchored(
            Kinds::of(&[EventKind::Gateway]),
            &["\"token_sha256_prefix\""],
            &["reasons", "token_sha256_prefix", "kid"],
        )
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(GatewayRejectedBurst::new(self.min, self.minutes))
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        self.records += 1;
        let verdict = ev.result().unwrap_or_default();
        let rejected = verdict == REJECTED;
        if rejected {
            self.rejected += 1;
        } else if verdict != ACCEPTED {
            // no-token, not-required and bad-request lines carry no token.
            return;
        }
        let (Some(ip), Some(t)) = (ev.client_ip(), ev.time) else {
            if rejected {
                self.unplaced += 1;
            }
            return;
        };
        let minute = t.unix_timestamp().div_euclid(60);
        if !rejected {
            let known = self
                .accepted_minutes
                .get(ip)
                .is_some_and(|m| m.contains_key(&minute));
            if !known && self.accepted_entries >= MINUTES_MAX {
                self.untracked += 1;
                return;
            }
            let entries = &mut self.accepted_entries;
            let a = self
                .accepted_minutes
                .entry(ip.to_string())
                .or_default()
                .entry(minute)
                .or_insert_with(|| {
                    *entries += 1;
                    Accepted {
                        count: 0,
                        first: None,
                        first_user: None,
                    }
                });
            a.count += 1;
            if a.first.is_none_or(|f| t < f) {
                a.first = Some(t);
                a.first_user = ev.user().map(str::to_owned);
            }
            return;
        }
        let known = self
            .rejected_minutes
            .get(ip)
            .is_some_and(|m| m.contains_key(&minute));
        if !known && self.rejected_entries >= MINUTES_MAX {
            self.untracked += 1;
            return;
        }
        let entries = &mut self.rejected_entries;
        let m = self
            .rejected_minutes
            .entry(ip.to_string())
            .or_default()
            .entry(minute)
            .or_insert_with(|| {
                *entries += 1;
                Rejected::default()
            });
        m.count += 1;
        m.first = Some(m.first.map_or(t, |f| f.min(t)));
        m.last = Some(m.last.map_or(t, |l| l.max(t)));
        if m.rep.as_ref().is_none_or(|r| Rep::event_earlier(ev, r)) {
            m.rep = Some(Rep::of(ev));
        }
        let budget = &mut self.detail;
        if let Some(Value::Array(rs)) = ev.get("reasons") {
            for r in rs.iter().filter_map(Value::as_str) {
                let r = cut_text(r);
                let fresh = !m.reasons.contains_key(&r);
                if Self::keep(budget, fresh, &mut m.capped) {
                    *m.reasons.entry(r).or_default() += 1;
                }
            }
        }
        if let Some(tok) = ev
            .scalar("token_sha256_prefix")
            .and_then(|s| u64::from_str_radix(&s, 16).ok())
        {
            if Self::keep(budget, !m.tokens.contains(&tok), &mut m.capped) {
                m.tokens.insert(tok);
            }
        }
        if let Some(kid) = ev.scalar("kid") {
            let kid = cut_text(&kid);
            if Self::keep(budget, !m.kids.contains(&kid), &mut m.capped) {
                m.kids.insert(kid);
            }
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<GatewayRejectedBurst>(shard);
        self.records += o.records;
        self.rejected += o.rejected;
        self.unplaced += o.unplaced;
        self.untracked += o.untracked;
        for (ip, mins) in o.accepted_minutes {
            let mine = self.accepted_minutes.entry(ip).or_default();
            for (minute, a) in mins {
                match mine.get_mut(&minute) {
                    Some(m) => {
                        m.count += a.count;
                        if a.first.is_some_and(|t| m.first.is_none_or(|f| t < f)) {
                            m.first = a.first;
                            m.first_user = a.first_user;
                        }
                    }
                    None if self.accepted_entries >= MINUTES_MAX => self.untracked += a.count,
                    None => {
                        self.accepted_entries += 1;
                        mine.insert(minute, a);
                    }
                }
            }
        }
        for (ip, mins) in o.rejected_minutes {
            let mine = self.rejected_minutes.entry(ip).or_default();
            for (minute, r) in mins {
                match mine.get_mut(&minute) {
                    Some(m) => m.fold(r, &mut self.detail),
                    None if self.rejected_entries >= MINUTES_MAX => self.untracked += r.count,
                    None => {
                        self.rejected_entries += 1;
                        if r.detail() <= DETAIL_BUDGET.saturating_sub(self.detail) {
                            self.detail += r.detail();
                            mine.insert(minute, r);
                        } else {
                            mine.entry(minute).or_default().fold(r, &mut self.detail);
                        }
                    }
                }
            }
        }
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        if self.records == 0 {
            return Outcome::of(&INFO, Vec::new(), Verdict::Blind("no tokenward gateway access log given (docs/gateway.md): Microsoft 365 and Entra logs do not record refused tokens".into()));
        }
        let width = i64::from(self.minutes.max(1));
        let min = self.min.max(1);
        let mut findings = Vec::new();
        let mut ips: Vec<&String> = self.rejected_minutes.keys().collect();
        ips.sort();
        for ip in ips {
            let mins: Vec<(i64, &Rejected)> = self.rejected_minutes[ip]
                .iter()
                .map(|(k, v)| (*k, v))
                .collect();
            for (a, b) in bursts(&mins, width, min) {
                if let Some(f) = self.burst_finding(ip, &mins[a..b], width, min) {
                    findings.push(f);
                }
            }
        }
        let mut note = format!(
            "{} gateway requests, {} rejected, from {} client IP(s)",
            self.records,
            self.rejected,
            self.rejected_minutes.len()
        );
        if self.unplaced > 0 {
            note.push_str(&format!(
                "; {} rejected without a time or client IP not judged",
                self.unplaced
            ));
        }
        if self.untracked > 0 {
            note.push_str(&format!(
                "; {} requests not tracked past {MINUTES_MAX} (client IP, minute) entries",
                self.untracked
            ));
        }
        Outcome::of(&INFO, findings, Verdict::Ok(Some(note)))
    }
}

/// Windows of `width` minutes starting at each active minute, as index
/// ranges `[i, j)` with at least `min` rejections; overlapping qualifying
/// windows are one burst.
fn bursts(mins: &[(i64, &Rejected)], width: i64, min: u64) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let (mut j, mut sum) = (0usize, 0u64);
    for i in 0..mins.len() {
        while j < mins.len() && mins[j].0 < mins[i].0 + width {
            sum += mins[j].1.count;
            j += 1;
        }
        if sum >= min {
            match out.last_mut() {
                Some(b) if i < b.1 => b.1 = j,
                _ => out.push((i, j)),
            }
        }
        sum -= mins[i].1.count;
    }
    out
}

impl GatewayRejectedBurst {
    fn burst_finding(
        &self,
        ip: &str,
        part: &[(i64, &Rejected)],
        width: i64,
        min: u64,
    ) -> Option<Finding> {
        let mut count = 0u64;
        let (mut start, mut end) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
        let mut rep: Option<&Rep> = None;
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        let mut tokens: BTreeSet<u64> = BTreeSet::new();
        let mut kids: BTreeSet<&str> = BTreeSet::new();
        let mut capped = false;
        for (_, m) in part {
            count += m.count;
            start = match (start, m.first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            end = end.max(m.last);
            if let Some(r) = &m.rep {
                if rep.is_none_or(|x| r.earlier_than(x)) {
                    rep = Some(r);
                }
            }
            for (k, n) in &m.reasons {
                *reasons.entry(k).or_default() += n;
            }
            tokens.extend(&m.tokens);
            kids.extend(m.kids.iter().map(String::as_str));
            capped |= m.capped;
        }
        let (rep, s, e) = (rep?, start?, end?);
        let (first_min, last_min) = (part[0].0, part[part.len() - 1].0);
        let mut after = (0u64, None::<OffsetDateTime>, None::<&String>);
        if let Some(acc) = self.accepted_minutes.get(ip) {
            for (_, x) in acc.range(first_min..=last_min + FOLLOW_MINUTES) {
                // Only requests at or after the burst's first rejection.
                if x.first.is_some_and(|f| f >= s) {
                    after.0 += x.count;
                    if after.1.is_none_or(|f| x.first.is_some_and(|y| y < f)) {
                        after.1 = x.first;
                        after.2 = x.first_user.as_ref();
                    }
                }
            }
        }
        let sample: Vec<String> = tokens
            .iter()
            .take(20)
            .map(|t| format!("{t:016x}"))
            .collect();
        let mut ev = evidence(&[
            ("client_ip", json!(ip)),
            ("rejected", json!(count)),
            ("window_start", json!(rfc3339(s))),
            ("window_end", json!(rfc3339(e))),
            ("distinct_tokens", json!(tokens.len())),
            ("token_sha256_prefixes", json!(sample)),
            ("reasons", json!(reasons)),
            ("kids", json!(kids)),
            ("threshold", json!(format!("{min} rejections within {width} minute(s)"))),
            ("why", json!("many refused tokens from one client: a forger trying keys, tenants or victims, or a client replaying stolen tokens")),
        ]);
        if capped {
            ev.insert(
                "note".into(),
                json!("detail capped: token prefixes, kids or reasons not all kept"),
            );
        }
        let sev = if after.0 > 0 {
            ev.insert(
                "accepted_after".into(),
                json!({
                    "requests": after.0,
                    "first": after.1.map(rfc3339),
                    "first_user": after.2,
                    "why": format!("the same client got a token accepted during the burst or up to {FOLLOW_MINUTES} minutes after: a forgery that finally worked, or a legitimate client behind the same address"),
                }),
            );
            Severity::High
        } else {
            Severity::Medium
        };
        Some(INFO.finding(rep, sev, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;
    use crate::Status;
    use serde_json::json;

    fn line(sec: u32, ip: &str, verdict: &str, tok: u32) -> Value {
        json!({"time": format!("2023-06-10T10:{:02}:{:02}Z", sec / 60, sec % 60), "client_ip": ip,
               "verdict": verdict, "token_sha256_prefix": format!("{tok:016x}"), "kid": "k1",
               "reasons": if verdict == "rejected" { json!(["key-out-of-scope"]) } else { json!([]) },
               "method": "GET", "path": "/api", "sub": "victim"})
    }

    fn det() -> Box<dyn Detection> {
        Box::new(GatewayRejectedBurst::new(20, 5))
    }

    /// Shards each spend the detail budget on their own; merged, the
    /// detection still keeps no more than the budget, and marks what it
    /// dropped.
    #[test]
    fn merged_shards_keep_no_more_detail_than_the_budget() {
        let rejected = |tokens: &[u64]| Rejected {
            count: tokens.len() as u64,
            tokens: tokens.iter().copied().collect(),
            ..Rejected::default()
        };
        let shard = |minutes: Vec<(i64, Rejected)>| {
            let mut d = GatewayRejectedBurst::new(20, 5);
            d.detail = minutes.iter().map(|(_, r)| r.detail()).sum();
            d.rejected_entries = minutes.len();
            d.rejected_minutes
                .insert("203.0.113.5".into(), minutes.into_iter().collect());
            Box::new(d)
        };
        let mut whole = *shard(vec![(1, rejected(&[1, 2]))]);
        // Two items of room left.
        whole.detail = DETAIL_BUDGET - 2;
        // One more token for minute 1 and a repeat; minute 2 is new with
        // three tokens.
        whole.merge(shard(vec![
            (1, rejected(&[2, 3])),
            (2, rejected(&[7, 8, 9])),
        ]));
        assert_eq!(whole.detail, DETAIL_BUDGET);
        let mins = &whole.rejected_minutes["203.0.113.5"];
        assert_eq!(mins[&1].tokens.len(), 3);
        assert!(!mins[&1].capped, "nothing of minute 1 was dropped");
        assert_eq!((mins[&2].tokens.len(), mins[&2].capped), (1, true));
        assert_eq!((mins[&1].count, mins[&2].count), (4, 3), "counts are whole");
        // Once spent, nothing new is kept.
        whole.merge(shard(vec![(1, rejected(&[4]))]));
        assert_eq!(whole.detail, DETAIL_BUDGET);
        let mins = &whole.rejected_minutes["203.0.113.5"];
        assert_eq!((mins[&1].tokens.len(), mins[&1].capped), (3, true));
    }

    #[test]
    fn twenty_rejections_in_five_minutes_are_a_burst() {
        let recs: Vec<Value> = (0..20)
            .map(|i| line(i * 10, "203.0.113.5", "rejected", i))
            .collect();
        let out = run(det(), &recs);
        assert_eq!(out.findings.len(), 1);
        let f = &out.findings[0];
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.evidence["rejected"], json!(20));
        assert_eq!(f.evidence["distinct_tokens"], json!(20));
        assert_eq!(f.evidence["reasons"]["key-out-of-scope"], json!(20));
    }

    #[test]
    fn an_acceptance_after_the_burst_makes_it_high() {
        let mut recs: Vec<Value> = (0..20)
            .map(|i| line(i * 10, "203.0.113.5", "rejected", i))
            .collect();
        recs.push(line(600, "203.0.113.5", "accepted", 99));
        let out = run(det(), &recs);
        assert_eq!(out.findings[0].severity, Severity::High);
        assert_eq!(
            out.findings[0].evidence["accepted_after"]["requests"],
            json!(1)
        );
    }

    #[test]
    fn spread_out_rejections_are_not_a_burst() {
        let recs: Vec<Value> = (0..20)
            .map(|i| line(i * 60, "203.0.113.5", "rejected", i))
            .collect();
        let out = run(det(), &recs);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn without_gateway_logs_it_is_blind() {
        let out = run(
            det(),
            &[json!({"CreationTime": "2023-06-10T10:00:00", "Operation": "Send"})],
        );
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
