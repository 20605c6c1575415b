//! The built-in detections. Each has a stable id (users filter and suppress
//! by it). Stateless checks report as records stream by; stateful ones keep
//! per-key aggregates (never whole events) and decide in [`Detector::finish`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Map, Value};
use time::{Duration, OffsetDateTime};

use crate::event::{Event, EventKind};
use crate::finding::{Finding, Rep, Severity};
use crate::ioc::IocSet;
use crate::timefmt::{parse_timestamp, rfc3339};

/// A built-in detection.
#[derive(Debug)]
pub struct Rule {
    /// Stable id.
    pub id: &'static str,
    /// Short title.
    pub title: &'static str,
    /// What it needs to see to be able to fire.
    pub needs: &'static str,
}

/// Every built-in detection, in report order.
pub const RULES: &[Rule] = &[
    Rule { id: "tw-ioc-ip", title: "Storm-0558 / user IOC IP address", needs: "records with a client IP" },
    Rule { id: "tw-ioc-useragent", title: "Storm-0558 / user IOC user agent", needs: "records with a user agent or ClientInfoString" },
    Rule { id: "tw-ioc-key", title: "Token signed with a known-compromised key", needs: "records carrying token headers (kid/x5t) or key thumbprints; Microsoft 365 and Entra logs never do" },
    Rule { id: "tw-mail-new-client-app", title: "Mailbox accessed by a new (AppId, ClientAppId) pair", needs: "MailItemsAccessed records spanning more than the baseline window" },
    Rule { id: "tw-token-without-signin", title: "Audit record with a token no Entra sign-in issued", needs: "audit records with UniqueTokenId/AADSessionId and Entra sign-in logs covering their time" },
    Rule { id: "tw-owa-token-for-resource", title: "OWA GetAccessTokenForResource for a session or IP that never signed in", needs: "OWA token-issuance records (RecordType 275 OWAAuth) and Entra sign-in logs" },
    Rule { id: "tw-mail-bind-spike", title: "Mail Bind volume far above the mailbox baseline", needs: "MailItemsAccessed Bind records, several sessions/days per mailbox" },
    Rule { id: "tw-mail-throttled", title: "MailItemsAccessed throttled: 24 h of access went unlogged", needs: "MailItemsAccessed records with IsThrottled" },
    Rule { id: "tw-mail-sync-unusual-client", title: "Mailbox Sync by a client other than desktop Outlook", needs: "MailItemsAccessed records with MailAccessType" },
    Rule { id: "tw-audit-tampering", title: "Audit logging disabled or bypassed", needs: "Exchange admin audit records (RecordType 1) or Azure Activity" },
    Rule { id: "tw-audit-gap", title: "No records for an active workload", needs: "records of a workload spread over three days or more" },
    Rule { id: "tw-gateway-rejected-burst", title: "Burst of rejected tokens from one client at the gateway", needs: "tokenward gateway access logs (docs/gateway.md)" },
];

fn rule(id: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.id == id)
        .expect("rule ids are static")
}

/// Tunables of the stateful detections.
#[derive(Clone, Debug)]
pub struct Options {
    /// Days at the start of the MailItemsAccessed data used as the baseline.
    pub baseline_days: u32,
    /// Minimum length of an audit gap, in hours.
    pub gap_hours: u32,
    /// A Bind bucket is a spike at this many times the mailbox median...
    pub bind_spike_factor: u64,
    /// ...and at least this many items.
    pub bind_spike_min: u64,
    /// OWA token issuances in one session that make a renewal chain.
    pub owa_chain_min: u64,
    /// Margin around an IOC's published first/last-seen dates, in days.
    pub ioc_window_margin_days: i64,
    /// Rejected gateway requests from one client IP that make a burst...
    pub gateway_burst_min: u64,
    /// ...within this many consecutive UTC minutes.
    pub gateway_burst_minutes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            baseline_days: 14,
            gap_hours: 24,
            bind_spike_factor: 10,
            bind_spike_min: 100,
            owa_chain_min: 3,
            ioc_window_margin_days: 30,
            // A client retrying one expired token stays far below this; a
            // forger trying keys, tenants or victims does not.
            gateway_burst_min: 20,
            gateway_burst_minutes: 5,
        }
    }
}

/// Whether a detection could see what it needs.
#[derive(Clone, Debug, Serialize)]
pub struct RuleStatus {
    /// Detection id.
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// Findings reported.
    pub hits: usize,
    /// `ok`, or `blind` when the input lacked what the detection needs.
    pub status: &'static str,
    /// What was missing (blind) or a caveat (ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Per-batch facts about records that were not parsed (no detection can
/// fire on them), kept for the audit-gap detection.
#[derive(Default, Debug)]
pub struct Light {
    /// Workload -> hours (since the epoch) with at least one record.
    pub hours: HashMap<String, HashSet<i64>>,
    /// Workload -> records.
    pub counts: HashMap<String, u64>,
}

impl Light {
    /// Notes one record of a workload at a time.
    pub fn add(&mut self, workload: &str, time: Option<OffsetDateTime>) {
        if let Some(c) = self.counts.get_mut(workload) {
            *c += 1;
        } else {
            self.counts.insert(workload.to_string(), 1);
        }
        if let Some(t) = time {
            let h = t.unix_timestamp().div_euclid(3600);
            match self.hours.get_mut(workload) {
                Some(s) => {
                    s.insert(h);
                }
                None => {
                    self.hours.insert(workload.to_string(), HashSet::from([h]));
                }
            }
        }
    }
}

#[derive(Default)]
struct Agg {
    rep: Option<Rep>,
    severity: Option<Severity>,
    evidence: Map<String, Value>,
    count: u64,
    last: Option<OffsetDateTime>,
}

struct PairSeen {
    rep: Rep,
    count: u64,
    client_info: Option<String>,
}

struct BindBucket {
    items: u64,
    records: u64,
    rep: Rep,
}

struct TokenCand {
    rep: Rep,
    token: Option<String>,
    aad_session: Option<String>,
    exchange_session: Option<String>,
    issued: Option<OffsetDateTime>,
    count: u64,
    last: Option<OffsetDateTime>,
    workload: String,
    operations: BTreeSet<String>,
    tokens: BTreeSet<String>,
    token_tenant: Option<String>,
}

struct OwaAgg {
    rep: Rep,
    count: u64,
    last: Option<OffsetDateTime>,
    ips: BTreeSet<String>,
    resources: BTreeSet<String>,
    session: Option<String>,
}

/// Rejected gateway requests of one client IP in one UTC minute. Burst
/// windows are whole minutes, so the state is one entry per active minute
/// whatever the arrival order of records (batches are parsed in parallel).
#[derive(Default)]
struct GwMinute {
    rejected: u64,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    rep: Option<Rep>,
    reasons: BTreeMap<String, u64>,
    /// `token_sha256_prefix` as a number (16 hex digits).
    tokens: BTreeSet<u64>,
    kids: BTreeSet<String>,
    /// Some detail was not kept ([`GW_DETAIL_BUDGET`]).
    capped: bool,
}

/// Accepted gateway requests of one client IP in one UTC minute.
struct GwAccepted {
    count: u64,
    first: Option<OffsetDateTime>,
    first_user: Option<String>,
}

/// Most (client IP, minute) entries kept, per verdict class; records beyond
/// are counted and named in the detection's note.
const GW_MINUTES_MAX: usize = 250_000;
/// Most token prefixes, kids and reason codes kept across all entries.
const GW_DETAIL_BUDGET: usize = 1_000_000;
/// Longest kid or reason code kept: both are attacker-chosen text.
const GW_TEXT_MAX: usize = 128;
/// How long after a burst an accepted request from the same IP is reported.
const GW_FOLLOW_MINUTES: i64 = 60;

/// The gateway's state for `tw-gateway-rejected-burst`.
#[derive(Default)]
struct Gateway {
    records: u64,
    rejected: u64,
    /// Rejected records without a time or a client IP: cannot be placed.
    unplaced: u64,
    /// Records not kept because [`GW_MINUTES_MAX`] was reached.
    untracked: u64,
    rejected_minutes: HashMap<String, BTreeMap<i64, GwMinute>>,
    rejected_entries: usize,
    accepted_minutes: HashMap<String, BTreeMap<i64, GwAccepted>>,
    accepted_entries: usize,
    detail: usize,
}

fn cut_text(s: &str) -> String {
    let mut end = s.len().min(GW_TEXT_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The consumer (MSA) tenant: an enterprise resource should never see it in `tid`.
const CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Runs every detection over the events of a hunt.
pub struct Detector {
    opts: Options,
    iocs: Arc<IocSet>,
    findings: Vec<Finding>,
    aggs: HashMap<(&'static str, String), Agg>,
    records: u64,
    workload_counts: HashMap<String, u64>,
    hours: HashMap<String, HashSet<i64>>,
    kid_fields: u64,
    // Sign-in index.
    signins: u64,
    signin_tokens: HashSet<String>,
    signin_sessions: HashSet<String>,
    signin_ips: HashSet<String>,
    signin_range: Option<(OffsetDateTime, OffsetDateTime)>,
    // MailItemsAccessed.
    mia: u64,
    mia_access_field: u64,
    mia_throttle_field: u64,
    mia_bind: u64,
    mia_range: Option<(OffsetDateTime, OffsetDateTime)>,
    pairs: HashMap<(String, String, String), PairSeen>,
    tenant_pairs: HashMap<(String, String), OffsetDateTime>,
    binds: HashMap<(String, String, i64), BindBucket>,
    // Token join.
    token_records: u64,
    token_joined: u64,
    token_cands: HashMap<String, TokenCand>,
    // OWA token issuance.
    owa: u64,
    owa_aggs: HashMap<String, OwaAgg>,
    // Tampering coverage.
    admin_records: u64,
    // Gateway access logs.
    gateway: Gateway,
}

fn ev_map(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn opt(s: &Option<String>) -> Value {
    s.as_ref()
        .map(|x| Value::String(x.clone()))
        .unwrap_or(Value::Null)
}

fn day(t: Option<OffsetDateTime>) -> i64 {
    t.map(|t| t.unix_timestamp().div_euclid(86400))
        .unwrap_or(-1)
}

fn widen(r: &mut Option<(OffsetDateTime, OffsetDateTime)>, t: OffsetDateTime) {
    *r = Some(match *r {
        Some((a, b)) => (a.min(t), b.max(t)),
        None => (t, t),
    });
}

fn is_true(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true") || s.trim() == "1"
}

fn is_false(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("false") || s.trim() == "0" || s.trim() == "$false"
}

/// Desktop Outlook: MAPI (`Client=MSExchangeRPC`) on Windows, Outlook for Mac.
pub fn is_desktop_outlook(client_info: &str) -> bool {
    let c = client_info.to_ascii_lowercase();
    c.contains("msexchangerpc")
        || c.contains("outlook-mac")
        || c.contains("macoutlook")
        || c.contains("microsoft outlook")
}

/// Key under which the audit-gap detection tracks an event.
pub fn gap_key(ev: &Event) -> Option<String> {
    match ev.kind {
        EventKind::Audit => Some(ev.workload.clone().unwrap_or_else(|| "Audit".into())),
        EventKind::SignIn => Some("Entra sign-ins".into()),
        EventKind::DirectoryAudit => Some("Entra audit".into()),
        EventKind::AzureActivity => Some("Azure Activity".into()),
        // A quiet gateway means no traffic as often as lost logs.
        EventKind::Gateway | EventKind::Other => None,
    }
}

impl Detector {
    /// A detector with the given indicators and options.
    pub fn new(iocs: Arc<IocSet>, opts: Options) -> Detector {
        Detector {
            opts,
            iocs,
            findings: Vec::new(),
            aggs: HashMap::new(),
            records: 0,
            workload_counts: HashMap::new(),
            hours: HashMap::new(),
            kid_fields: 0,
            signins: 0,
            signin_tokens: HashSet::new(),
            signin_sessions: HashSet::new(),
            signin_ips: HashSet::new(),
            signin_range: None,
            mia: 0,
            mia_access_field: 0,
            mia_throttle_field: 0,
            mia_bind: 0,
            mia_range: None,
            pairs: HashMap::new(),
            tenant_pairs: HashMap::new(),
            binds: HashMap::new(),
            token_records: 0,
            token_joined: 0,
            token_cands: HashMap::new(),
            owa: 0,
            owa_aggs: HashMap::new(),
            admin_records: 0,
            gateway: Gateway::default(),
        }
    }

    /// Merges the facts of unparsed records.
    pub fn observe_light(&mut self, light: Light) {
        for (w, n) in light.counts {
            self.records += n;
            *self.workload_counts.entry(w).or_default() += n;
        }
        for (w, hs) in light.hours {
            self.hours.entry(w).or_default().extend(hs);
        }
    }

    /// Counts unparsed records that carry no workload.
    pub fn observe_uncategorised(&mut self, n: u64) {
        self.records += n;
    }

    /// Counts token-bearing audit records that the reader joined to a
    /// sign-in without parsing them.
    pub fn observe_token_joined(&mut self, n: u64) {
        self.token_records += n;
        self.token_joined += n;
    }

    /// The sign-in token ids and (lower-cased) session ids seen so far.
    pub fn joins_snapshot(&self) -> (HashSet<String>, HashSet<String>) {
        (self.signin_tokens.clone(), self.signin_sessions.clone())
    }

    /// Looks at one parsed event.
    pub fn observe(&mut self, ev: &Event) {
        crate::event::as_builtin(|| self.observe_event(ev))
    }

    fn observe_event(&mut self, ev: &Event) {
        self.records += 1;
        if let Some(k) = gap_key(ev) {
            if let Some(t) = ev.time {
                self.hours
                    .entry(k.clone())
                    .or_default()
                    .insert(t.unix_timestamp().div_euclid(3600));
            }
            *self.workload_counts.entry(k).or_default() += 1;
        }
        if ev.kind == EventKind::SignIn {
            self.index_signin(ev);
        }
        self.check_iocs(ev);
        match ev.kind {
            EventKind::Audit => {
                let op = ev.operation.clone().unwrap_or_default();
                if op.eq_ignore_ascii_case("MailItemsAccessed") {
                    self.mail_items_accessed(ev);
                }
                self.token_join(ev);
                if op.to_ascii_lowercase().contains("accesstokenforresource")
                    || ev.record_type == Some(275)
                    || op.eq_ignore_ascii_case("OWAAuth")
                {
                    self.owa_token(ev);
                }
                if ev.record_type == Some(1)
                    || op.starts_with("Set-")
                    || op.starts_with("Remove-")
                    || op.starts_with("New-")
                {
                    self.admin_records += 1;
                }
                self.tampering(ev, &op);
            }
            EventKind::Gateway => self.gateway_request(ev),
            EventKind::AzureActivity => {
                self.admin_records += 1;
                let op = ev
                    .operation
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if op.contains("diagnosticsettings/delete") {
                    let r = Rep::of(ev);
                    let f = r.finding(
                        rule("tw-audit-tampering"),
                        Severity::High,
                        ev_map(&[("operation", opt(&ev.operation)), ("why", json!("diagnostic setting deleted: logs stop flowing to their destination"))]),
                    );
                    self.findings.push(f);
                }
            }
            _ => {}
        }
    }

    fn index_signin(&mut self, ev: &Event) {
        self.signins += 1;
        if let Some(t) = &ev.token_id {
            self.signin_tokens.insert(t.clone());
        }
        if let Some(s) = &ev.session_id {
            self.signin_sessions.insert(s.to_ascii_lowercase());
        }
        if let Some(ip) = &ev.client_ip {
            self.signin_ips.insert(ip.clone());
        }
        if let Some(t) = ev.time {
            widen(&mut self.signin_range, t);
        }
    }

    fn aggregate(
        &mut self,
        id: &'static str,
        key: String,
        ev: &Event,
        sev: Severity,
        evidence: Map<String, Value>,
    ) {
        let a = self.aggs.entry((id, key)).or_default();
        let rep = Rep::of(ev);
        a.count += 1;
        a.last = a.last.max(ev.time);
        let replace = a.rep.as_ref().is_none_or(|r| rep.earlier_than(r));
        if replace {
            a.rep = Some(rep);
            a.evidence = evidence;
        }
        a.severity = a.severity.max(Some(sev));
    }

    fn check_iocs(&mut self, ev: &Event) {
        let iocs = self.iocs.clone();
        // IPs: the normalised client IP and the other address fields.
        // Borrowed, not copied: this runs for every parsed record.
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut cands: Vec<(&'static str, Cow<'_, str>)> = Vec::new();
        if let Some(ip) = &ev.client_ip {
            cands.push(("client_ip", Cow::Borrowed(ip.as_str())));
        }
        for f in [
            "ClientIPAddress",
            "ActorIpAddress",
            "ClientIP",
            "callerIpAddress",
            "ipAddress",
            "IPAddress",
        ] {
            if let Some(v) = ev.scalar(f) {
                cands.push((f, v));
            }
        }
        for (field, raw) in cands {
            let Some(ip) = crate::ip::parse_client_ip(&raw) else {
                continue;
            };
            if seen.contains(&ip) {
                continue;
            }
            seen.push(ip);
            if let Some(hit) = iocs.match_ip(ip) {
                let margin = Duration::days(self.opts.ioc_window_margin_days);
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
                let mut e = ev_map(&[
                    ("field", json!(field)),
                    ("ip", json!(ip.to_string())),
                    ("indicator", json!(hit.net.to_string())),
                    ("source", json!(hit.source)),
                    ("operation", opt(&ev.operation)),
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
                let key = format!(
                    "{ip}|{}|{}|{}",
                    ev.user.as_deref().unwrap_or(""),
                    ev.session_id.as_deref().unwrap_or(""),
                    day(ev.time)
                );
                self.aggregate("tw-ioc-ip", key, ev, sev, e);
            }
        }
        // User agents.
        if !iocs.user_agents.is_empty() {
            let mut uas: Vec<(&'static str, Cow<'_, str>)> = Vec::new();
            for f in [
                "ClientInfoString",
                "UserAgent",
                "userAgent",
                "ActorInfoString",
            ] {
                if let Some(v) = ev.scalar(f) {
                    uas.push((f, v));
                }
            }
            if let Some(v) = &ev.user_agent {
                if !uas.iter().any(|(_, u)| u == v) {
                    uas.push(("user_agent", Cow::Borrowed(v.as_str())));
                }
            }
            for (field, ua) in uas {
                let t = ua.trim();
                let hit = iocs.user_agents.iter().find(|i| {
                    t.eq_ignore_ascii_case(i.value.trim())
                        || (i.value.len() >= 40 && contains_ignore_ascii_case(t, &i.value))
                });
                if let Some(hit) = hit {
                    let sev = if hit.common {
                        Severity::Low
                    } else {
                        Severity::High
                    };
                    let mut e = ev_map(&[
                        ("field", json!(field)),
                        ("user_agent", json!(t)),
                        ("source", json!(hit.source)),
                        ("operation", opt(&ev.operation)),
                    ]);
                    if hit.common {
                        e.insert(
                            "note".into(),
                            json!(
                                "also sent by benign REST clients; weigh with the other findings"
                            ),
                        );
                    }
                    let key = format!(
                        "{}|{}|{}|{}",
                        hit.value,
                        ev.user.as_deref().unwrap_or(""),
                        ev.session_id.as_deref().unwrap_or(""),
                        day(ev.time)
                    );
                    self.aggregate("tw-ioc-useragent", key, ev, sev, e);
                    break;
                }
            }
        }
        // Signing keys: any string in the record equal to a key indicator.
        if ["kid", "x5t", "header.kid", "jwt.header.kid", "thumbprint"]
            .iter()
            .any(|p| ev.has(p))
        {
            self.kid_fields += 1;
        }
        // A narrow event exists only when the literal screen found no key
        // indicator in the record's bytes, and it holds a subset of them.
        if !iocs.keys.is_empty() && !ev.narrow {
            let mut hits = Vec::new();
            find_key_values(&ev.record, &mut Vec::new(), &iocs, &mut hits, 0);
            if let Some((path, value, what, source)) = hits.into_iter().next() {
                let r = Rep::of(ev);
                let mut e = ev_map(&[
                    ("field", json!(path)),
                    ("value", json!(value)),
                    ("key_id_type", json!(what)),
                    ("source", json!(source)),
                ]);
                if ev.kind == EventKind::Gateway {
                    // Whether the gateway let the token through is the
                    // first question about a known-bad key.
                    e.insert("verdict".into(), opt(&ev.result));
                    if let Some(rs) = ev.get("reasons") {
                        e.insert("reasons".into(), rs.clone());
                    }
                    e.insert("operation".into(), opt(&ev.operation));
                }
                let f = r.finding(rule("tw-ioc-key"), Severity::High, e);
                self.findings.push(f);
            }
        }
    }

    fn mail_items_accessed(&mut self, ev: &Event) {
        self.mia += 1;
        if let Some(t) = ev.time {
            widen(&mut self.mia_range, t);
        }
        let mailbox = ev.mailbox().unwrap_or_else(|| "(unknown mailbox)".into());
        let access = ev
            .name_value("OperationProperties", "MailAccessType")
            .or_else(|| ev.get_str("MailAccessType"));
        let throttled = ev
            .name_value("OperationProperties", "IsThrottled")
            .or_else(|| ev.get_str("IsThrottled"));
        let client = ev
            .get_str("ClientInfoString")
            .or_else(|| ev.user_agent.clone());
        // Pair baseline.
        let app = ev.app_id.clone().unwrap_or_else(|| "-".into());
        let capp = ev.client_app_id.clone().unwrap_or_else(|| "-".into());
        // Representatives are built only when they change: most records
        // land in an existing aggregate and are later than its first one.
        let e = self
            .pairs
            .entry((mailbox.clone(), app.clone(), capp.clone()))
            .or_insert_with(|| PairSeen {
                rep: Rep::of(ev),
                count: 0,
                client_info: client.clone(),
            });
        e.count += 1;
        if Rep::event_earlier(ev, &e.rep) {
            e.rep = Rep::of(ev);
            e.client_info = client.clone();
        }
        if let Some(t) = ev.time {
            let tp = self.tenant_pairs.entry((app, capp)).or_insert(t);
            *tp = (*tp).min(t);
        }
        if let Some(th) = &throttled {
            self.mia_throttle_field += 1;
            if is_true(th) {
                let until = ev.time.map(|t| rfc3339(t + Duration::hours(24)));
                let e = ev_map(&[
                    ("mailbox", json!(mailbox)),
                    ("IsThrottled", json!(th)),
                    ("unlogged_until", until.map(Value::String).unwrap_or(Value::Null)),
                    ("why", json!("more than 1,000 MailItemsAccessed records in 24 h: Exchange stops logging Bind for the next 24 h; assume every item was read")),
                ]);
                self.aggregate(
                    "tw-mail-throttled",
                    format!("{mailbox}|{}", day(ev.time)),
                    ev,
                    Severity::High,
                    e,
                );
            }
        }
        if let Some(a) = &access {
            self.mia_access_field += 1;
            if a.eq_ignore_ascii_case("Sync") {
                let ci = client.clone().unwrap_or_default();
                if !is_desktop_outlook(&ci) {
                    let e = ev_map(&[
                        ("mailbox", json!(mailbox)),
                        ("MailAccessType", json!(a)),
                        ("ClientInfoString", json!(ci)),
                        ("why", json!("Sync is logged only for desktop Outlook; another client syncing means a whole folder was downloaded")),
                    ]);
                    let key = format!(
                        "{mailbox}|{}|{ci}|{}",
                        ev.session_id.as_deref().unwrap_or(""),
                        day(ev.time)
                    );
                    self.aggregate("tw-mail-sync-unusual-client", key, ev, Severity::High, e);
                }
            } else if a.eq_ignore_ascii_case("Bind") {
                self.mia_bind += 1;
                let items = ev.bind_items();
                let sess = ev
                    .session_id
                    .clone()
                    .or_else(|| ev.client_ip.clone())
                    .unwrap_or_else(|| "-".into());
                let b = self
                    .binds
                    .entry((mailbox, sess, day(ev.time)))
                    .or_insert_with(|| BindBucket {
                        items: 0,
                        records: 0,
                        rep: Rep::of(ev),
                    });
                b.items += items;
                b.records += 1;
                if Rep::event_earlier(ev, &b.rep) {
                    b.rep = Rep::of(ev);
                }
            }
        }
    }

    fn token_join(&mut self, ev: &Event) {
        let wl = ev.workload.as_deref().unwrap_or_default();
        if !["exchange", "sharepoint", "onedrive"]
            .iter()
            .any(|w| contains_ignore_ascii_case(wl, w))
        {
            return;
        }
        let workload = wl.to_string();
        let token = ev
            .get_str("AppAccessContext.UniqueTokenId")
            .or_else(|| ev.get_str("UniqueTokenId"));
        let aad = ev
            .get_str("AppAccessContext.AADSessionId")
            .or_else(|| ev.get_str("AADSessionId"));
        if token.is_none() && aad.is_none() {
            return;
        }
        self.token_records += 1;
        let exch = ev.get_str("SessionId");
        if self.joined(&token, &aad, &exch) {
            self.token_joined += 1;
            return;
        }
        // One finding per session (or per token without one): a forged
        // session typically carries many tokens.
        let key = aad.clone().or_else(|| token.clone()).unwrap_or_default();
        let issued = ev
            .get_str("AppAccessContext.IssuedAtTime")
            .and_then(|s| parse_timestamp(&s));
        let rep = Rep::of(ev);
        let c = self.token_cands.entry(key).or_insert_with(|| TokenCand {
            rep: rep.clone(),
            token: token.clone(),
            aad_session: aad.clone(),
            exchange_session: exch.clone(),
            issued,
            count: 0,
            last: None,
            workload,
            operations: BTreeSet::new(),
            tokens: BTreeSet::new(),
            token_tenant: ev.get_str("TokenTenantId"),
        });
        c.count += 1;
        c.last = c.last.max(ev.time);
        if let Some(t) = &token {
            if c.tokens.len() < 1000 {
                c.tokens.insert(t.clone());
            }
        }
        if c.operations.len() < 8 {
            if let Some(op) = &ev.operation {
                c.operations.insert(op.clone());
            }
        }
        if rep.earlier_than(&c.rep) {
            c.rep = rep;
            c.issued = c.issued.or(issued);
        }
    }

    fn joined(&self, token: &Option<String>, aad: &Option<String>, exch: &Option<String>) -> bool {
        token
            .as_ref()
            .is_some_and(|t| self.signin_tokens.contains(t))
            || aad.as_ref().is_some_and(|s| self.known_session(s))
            || exch.as_ref().is_some_and(|s| self.known_session(s))
    }

    /// Whether a sign-in issued this session (ids are kept lower-cased;
    /// most arrive that way, so the copy is made only when needed).
    fn known_session(&self, s: &str) -> bool {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            self.signin_sessions.contains(&s.to_ascii_lowercase())
        } else {
            self.signin_sessions.contains(s)
        }
    }

    fn owa_token(&mut self, ev: &Event) {
        self.owa += 1;
        let session = ev.session_id.clone().or_else(|| ev.get_str("SessionId"));
        let ip = ev.client_ip.clone();
        let known_session = session
            .as_ref()
            .is_some_and(|s| self.signin_sessions.contains(&s.to_ascii_lowercase()));
        let known_ip = ip.as_ref().is_some_and(|i| self.signin_ips.contains(i));
        if known_session && known_ip {
            // Sign-in sets only grow, so this issuance stays explained.
            return;
        }
        let key = session
            .clone()
            .or_else(|| ip.clone())
            .unwrap_or_else(|| "-".into());
        let rep = Rep::of(ev);
        let a = self.owa_aggs.entry(key).or_insert_with(|| OwaAgg {
            rep: rep.clone(),
            count: 0,
            last: None,
            ips: BTreeSet::new(),
            resources: BTreeSet::new(),
            session: session.clone(),
        });
        a.count += 1;
        a.last = a.last.max(ev.time);
        if let Some(i) = ip {
            if a.ips.len() < 16 {
                a.ips.insert(i);
            }
        }
        if let Some(r) = ev.first_str(&["ResourceURL", "ResourceUrl", "Resource"]) {
            if a.resources.len() < 16 {
                a.resources.insert(r);
            }
        }
        if rep.earlier_than(&a.rep) {
            a.rep = rep;
        }
    }

    /// Files one gateway access-log line under its client IP and minute.
    fn gateway_request(&mut self, ev: &Event) {
        let g = &mut self.gateway;
        g.records += 1;
        let verdict = ev.result.as_deref().unwrap_or_default();
        let rejected = verdict == "rejected";
        if rejected {
            g.rejected += 1;
        } else if verdict != "accepted" {
            // no-token, not-required and bad-request lines carry no token.
            return;
        }
        let (Some(ip), Some(t)) = (ev.client_ip.as_deref(), ev.time) else {
            if rejected {
                g.unplaced += 1;
            }
            return;
        };
        let minute = t.unix_timestamp().div_euclid(60);
        if !rejected {
            let known = g
                .accepted_minutes
                .get(ip)
                .is_some_and(|m| m.contains_key(&minute));
            if !known && g.accepted_entries >= GW_MINUTES_MAX {
                g.untracked += 1;
                return;
            }
            let a = g
                .accepted_minutes
                .entry(ip.to_string())
                .or_default()
                .entry(minute)
                .or_insert_with(|| {
                    g.accepted_entries += 1;
                    GwAccepted {
                        count: 0,
                        first: None,
                        first_user: None,
                    }
                });
            a.count += 1;
            if a.first.is_none_or(|f| t < f) {
                a.first = Some(t);
                a.first_user = ev.user.clone();
            }
            return;
        }
        let known = g
            .rejected_minutes
            .get(ip)
            .is_some_and(|m| m.contains_key(&minute));
        if !known && g.rejected_entries >= GW_MINUTES_MAX {
            g.untracked += 1;
            return;
        }
        let m = g
            .rejected_minutes
            .entry(ip.to_string())
            .or_default()
            .entry(minute)
            .or_insert_with(|| {
                g.rejected_entries += 1;
                GwMinute::default()
            });
        m.rejected += 1;
        m.first = Some(m.first.map_or(t, |f| f.min(t)));
        m.last = Some(m.last.map_or(t, |l| l.max(t)));
        if m.rep.as_ref().is_none_or(|r| Rep::event_earlier(ev, r)) {
            m.rep = Some(Rep::of(ev));
        }
        let budget = &mut g.detail;
        let mut keep = |fresh: bool, capped: &mut bool| {
            if !fresh {
                return true;
            }
            if *budget >= GW_DETAIL_BUDGET {
                *capped = true;
                return false;
            }
            *budget += 1;
            true
        };
        if let Some(Value::Array(rs)) = ev.get("reasons") {
            for r in rs.iter().filter_map(Value::as_str) {
                let r = cut_text(r);
                let fresh = !m.reasons.contains_key(&r);
                if keep(fresh, &mut m.capped) {
                    *m.reasons.entry(r).or_default() += 1;
                }
            }
        }
        if let Some(tok) = ev
            .scalar("token_sha256_prefix")
            .and_then(|s| u64::from_str_radix(&s, 16).ok())
        {
            if keep(!m.tokens.contains(&tok), &mut m.capped) {
                m.tokens.insert(tok);
            }
        }
        if let Some(kid) = ev.scalar("kid") {
            let kid = cut_text(&kid);
            if keep(!m.kids.contains(&kid), &mut m.capped) {
                m.kids.insert(kid);
            }
        }
    }

    fn finish_gateway(&mut self, notes: &mut HashMap<&'static str, (bool, Option<String>)>) {
        let r = rule("tw-gateway-rejected-burst");
        let g = std::mem::take(&mut self.gateway);
        if g.records == 0 {
            notes.insert(r.id, (true, Some("no tokenward gateway access log given (docs/gateway.md): Microsoft 365 and Entra logs do not record refused tokens".into())));
            return;
        }
        let width = i64::from(self.opts.gateway_burst_minutes.max(1));
        let min = self.opts.gateway_burst_min.max(1);
        let mut ips: Vec<&String> = g.rejected_minutes.keys().collect();
        ips.sort();
        for ip in ips {
            let mins: Vec<(i64, &GwMinute)> = g.rejected_minutes[ip]
                .iter()
                .map(|(k, v)| (*k, v))
                .collect();
            // Windows of `width` minutes starting at each active minute, as
            // index ranges [i, j); overlapping qualifying windows are one burst.
            let mut bursts: Vec<(usize, usize)> = Vec::new();
            let (mut j, mut sum) = (0usize, 0u64);
            for i in 0..mins.len() {
                while j < mins.len() && mins[j].0 < mins[i].0 + width {
                    sum += mins[j].1.rejected;
                    j += 1;
                }
                if sum >= min {
                    match bursts.last_mut() {
                        Some(b) if i < b.1 => b.1 = j,
                        _ => bursts.push((i, j)),
                    }
                }
                sum -= mins[i].1.rejected;
            }
            for (a, b) in bursts {
                let part = &mins[a..b];
                let mut count = 0u64;
                let (mut start, mut end) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
                let mut rep: Option<&Rep> = None;
                let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
                let mut tokens: BTreeSet<u64> = BTreeSet::new();
                let mut kids: BTreeSet<&str> = BTreeSet::new();
                let mut capped = false;
                for (_, m) in part {
                    count += m.rejected;
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
                let (Some(rep), Some(s), Some(e)) = (rep, start, end) else {
                    continue;
                };
                let (first_min, last_min) = (part[0].0, part[part.len() - 1].0);
                let mut after = (0u64, None::<OffsetDateTime>, None::<&String>);
                if let Some(acc) = g.accepted_minutes.get(ip) {
                    for (_, x) in acc.range(first_min..=last_min + GW_FOLLOW_MINUTES) {
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
                let mut ev = ev_map(&[
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
                            "why": format!("the same client got a token accepted during the burst or up to {GW_FOLLOW_MINUTES} minutes after: a forgery that finally worked, or a legitimate client behind the same address"),
                        }),
                    );
                    Severity::High
                } else {
                    Severity::Medium
                };
                self.findings.push(rep.finding(r, sev, ev));
            }
        }
        let mut note = format!(
            "{} gateway requests, {} rejected, from {} client IP(s)",
            g.records,
            g.rejected,
            g.rejected_minutes.len()
        );
        if g.unplaced > 0 {
            note.push_str(&format!(
                "; {} rejected without a time or client IP not judged",
                g.unplaced
            ));
        }
        if g.untracked > 0 {
            note.push_str(&format!(
                "; {} requests not tracked past {GW_MINUTES_MAX} (client IP, minute) entries",
                g.untracked
            ));
        }
        notes.insert(r.id, (false, Some(note)));
    }

    fn tampering(&mut self, ev: &Event, op: &str) {
        let p = |name: &str| ev.name_value("Parameters", name);
        let mut hit: Option<(Severity, String, Map<String, Value>)> = None;
        let lop = op.to_ascii_lowercase();
        if lop == "set-adminauditlogconfig" {
            for name in ["UnifiedAuditLogIngestionEnabled", "AdminAuditLogEnabled"] {
                if let Some(v) = p(name).filter(|v| is_false(v)) {
                    hit = Some((
                        Severity::High,
                        format!("{name} set to {v}: audit records stop being written"),
                        ev_map(&[(name, json!(v))]),
                    ));
                }
            }
        } else if lop.contains("mailboxauditbypassassociation") {
            let v = p("AuditBypassEnabled");
            if v.as_deref().is_none_or(is_true) || lop.starts_with("new-") {
                hit = Some((
                    Severity::High,
                    "mailbox audit bypass: actions of this account are no longer logged".into(),
                    ev_map(&[
                        ("AuditBypassEnabled", opt(&v)),
                        ("Identity", opt(&p("Identity"))),
                    ]),
                ));
            }
        } else if lop == "set-mailbox" {
            if let Some(v) = p("AuditEnabled").filter(|v| is_false(v)) {
                hit = Some((
                    Severity::High,
                    "mailbox auditing disabled".into(),
                    ev_map(&[
                        ("AuditEnabled", json!(v)),
                        ("Identity", opt(&p("Identity"))),
                    ]),
                ));
            } else {
                for name in ["AuditOwner", "AuditDelegate", "AuditAdmin"] {
                    if let Some(v) = p(name) {
                        if !v.to_ascii_lowercase().contains("mailitemsaccessed") {
                            hit = Some((
                                Severity::Medium,
                                format!("{name} set without MailItemsAccessed: mail reads of this logon type go unlogged"),
                                ev_map(&[(name, json!(v)), ("Identity", opt(&p("Identity")))]),
                            ));
                        }
                    }
                }
            }
        } else if lop == "set-organizationconfig" {
            if let Some(v) = p("AuditDisabled").filter(|v| is_true(v)) {
                hit = Some((
                    Severity::High,
                    "mailbox auditing disabled for the whole organisation".into(),
                    ev_map(&[("AuditDisabled", json!(v))]),
                ));
            }
        }
        if let Some((sev, why, mut e)) = hit {
            e.insert("operation".into(), json!(op));
            e.insert("why".into(), json!(why));
            let f = Rep::of(ev).finding(rule("tw-audit-tampering"), sev, e);
            self.findings.push(f);
        }
    }

    /// Decides the stateful detections and returns every finding (sorted by
    /// time, then detection id) with the status of each detection.
    pub fn finish(mut self) -> (Vec<Finding>, Vec<RuleStatus>) {
        let mut notes: HashMap<&'static str, (bool, Option<String>)> = HashMap::new();
        // Aggregated stateless findings.
        for ((id, _), a) in std::mem::take(&mut self.aggs) {
            let Some(rep) = a.rep else { continue };
            let mut e = a.evidence;
            if a.count > 1 {
                e.insert("records".into(), json!(a.count));
                if let Some(l) = a.last {
                    e.insert("last_seen".into(), json!(rfc3339(l)));
                }
            }
            self.findings
                .push(rep.finding(rule(id), a.severity.unwrap_or(Severity::Medium), e));
        }
        self.finish_new_client_app(&mut notes);
        self.finish_bind(&mut notes);
        self.finish_token(&mut notes);
        self.finish_owa(&mut notes);
        self.finish_gap(&mut notes);
        self.finish_gateway(&mut notes);
        let nothing = self.records == 0;
        let blind_if = |cond: bool, msg: &str| {
            if cond {
                (true, Some(msg.to_string()))
            } else {
                (false, None)
            }
        };
        notes
            .entry("tw-ioc-ip")
            .or_insert_with(|| blind_if(nothing, "no records"));
        notes
            .entry("tw-ioc-useragent")
            .or_insert_with(|| blind_if(nothing, "no records"));
        let key_hits = self.findings.iter().any(|f| f.rule_id == "tw-ioc-key");
        notes.entry("tw-ioc-key").or_insert_with(|| {
            blind_if(
                self.kid_fields == 0 && !key_hits,
                "no record carries a token header (kid/x5t): Microsoft 365 and Entra logs never record the signing key; give application or proxy logs of JWT headers",
            )
        });
        notes.entry("tw-mail-throttled").or_insert_with(|| {
            blind_if(self.mia_throttle_field == 0, "no MailItemsAccessed records with IsThrottled (MailItemsAccessed needs Audit Premium before mid-2024)")
        });
        notes
            .entry("tw-mail-sync-unusual-client")
            .or_insert_with(|| {
                blind_if(
                    self.mia_access_field == 0,
                    "no MailItemsAccessed records with MailAccessType",
                )
            });
        let exchange = self
            .workload_counts
            .iter()
            .any(|(w, n)| *n > 0 && w.eq_ignore_ascii_case("exchange"));
        notes.entry("tw-audit-tampering").or_insert_with(|| {
            blind_if(
                self.admin_records == 0 && !exchange,
                "no Exchange admin audit records (RecordType 1) or Azure Activity records",
            )
        });
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for f in &self.findings {
            *counts.entry(f.rule_id).or_default() += 1;
        }
        let statuses = RULES
            .iter()
            .map(|r| {
                let (blind, note) = notes.remove(r.id).unwrap_or((false, None));
                RuleStatus {
                    id: r.id,
                    title: r.title,
                    hits: counts.get(r.id).copied().unwrap_or(0),
                    status: if blind { "blind" } else { "ok" },
                    note,
                }
            })
            .collect();
        let mut findings = self.findings;
        findings.sort_by(|a, b| {
            (a.time, a.rule_id, &a.source_file, &a.source_locator).cmp(&(
                b.time,
                b.rule_id,
                &b.source_file,
                &b.source_locator,
            ))
        });
        (findings, statuses)
    }

    fn finish_new_client_app(&mut self, notes: &mut HashMap<&'static str, (bool, Option<String>)>) {
        let r = rule("tw-mail-new-client-app");
        let Some((start, end)) = self.mia_range else {
            notes.insert(
                r.id,
                (
                    true,
                    Some("no MailItemsAccessed records with a time".into()),
                ),
            );
            return;
        };
        let baseline = Duration::days(i64::from(self.opts.baseline_days));
        let span = end - start;
        if span <= baseline {
            notes.insert(
                r.id,
                (
                    true,
                    Some(format!(
                        "MailItemsAccessed spans only {:.1} days ({} .. {}); the {}-day baseline leaves nothing to judge",
                        span.as_seconds_f64() / 86400.0,
                        rfc3339(start),
                        rfc3339(end),
                        self.opts.baseline_days
                    )),
                ),
            );
            return;
        }
        let cut = start + baseline;
        notes.insert(
            r.id,
            (
                false,
                Some(format!(
                    "baseline {} .. {} (first {} days of the data)",
                    rfc3339(start),
                    rfc3339(cut),
                    self.opts.baseline_days
                )),
            ),
        );
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
            let e = ev_map(&[
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
            self.findings.push(seen.rep.finding(r, sev, e));
        }
    }

    fn finish_bind(&mut self, notes: &mut HashMap<&'static str, (bool, Option<String>)>) {
        let r = rule("tw-mail-bind-spike");
        if self.mia_bind == 0 {
            notes.insert(
                r.id,
                (true, Some("no MailItemsAccessed Bind records".into())),
            );
            return;
        }
        let mut per_mailbox: HashMap<&str, Vec<u64>> = HashMap::new();
        for ((mb, _, _), b) in &self.binds {
            per_mailbox.entry(mb.as_str()).or_default().push(b.items);
        }
        let mut medians: HashMap<&str, u64> = HashMap::new();
        let mut unjudged = 0;
        for (mb, v) in per_mailbox.iter_mut() {
            if v.len() < 5 {
                unjudged += 1;
                continue;
            }
            v.sort_unstable();
            medians.insert(mb, v[v.len() / 2]);
        }
        let mut out = Vec::new();
        for ((mb, sess, _), b) in &self.binds {
            let Some(&med) = medians.get(mb.as_str()) else {
                continue;
            };
            let threshold =
                (med.max(1) * self.opts.bind_spike_factor).max(self.opts.bind_spike_min);
            if b.items >= threshold {
                let e = ev_map(&[
                    ("mailbox", json!(mb)),
                    ("session_or_ip", json!(sess)),
                    ("items_bound_that_day", json!(b.items)),
                    ("records", json!(b.records)),
                    ("mailbox_median_per_session_day", json!(med)),
                    ("threshold", json!(threshold)),
                ]);
                out.push(b.rep.finding(r, Severity::High, e));
            }
        }
        self.findings.extend(out);
        if unjudged > 0 {
            notes.insert(r.id, (medians.is_empty(), Some(format!("{unjudged} mailbox(es) had fewer than 5 session-days of Bind records and were not judged"))));
        }
    }

    fn covered(&self, t: Option<OffsetDateTime>, issued: Option<OffsetDateTime>) -> bool {
        let Some((a, b)) = self.signin_range else {
            return false;
        };
        match (issued, t) {
            (Some(i), _) => i >= a && i <= b + Duration::minutes(5),
            // Without IssuedAtTime the token may predate the record by up to
            // its lifetime; require sign-ins from well before.
            (None, Some(t)) => t - Duration::hours(2) >= a && t <= b + Duration::hours(2),
            (None, None) => false,
        }
    }

    fn finish_token(&mut self, notes: &mut HashMap<&'static str, (bool, Option<String>)>) {
        let r = rule("tw-token-without-signin");
        if self.signins == 0 {
            notes.insert(r.id, (true, Some("no Entra sign-in logs given: cannot tell issued tokens from forged ones (give interactive and non-interactive sign-ins)".into())));
            return;
        }
        if self.token_records == 0 {
            notes.insert(r.id, (true, Some("no Exchange/SharePoint audit records carry AppAccessContext.UniqueTokenId or AADSessionId".into())));
            return;
        }
        let (a, b) = self.signin_range.expect("sign-ins counted");
        let cands = std::mem::take(&mut self.token_cands);
        let (mut uncovered, mut judged) = (0u64, self.token_joined);
        for (_, c) in cands {
            if self.joined(&c.token, &c.aad_session, &c.exchange_session) {
                judged += c.count;
                continue;
            }
            if c.tokens.iter().any(|t| self.signin_tokens.contains(t)) {
                judged += c.count;
                continue;
            }
            if !self.covered(c.rep.time, c.issued) {
                uncovered += c.count;
                continue;
            }
            judged += c.count;
            let consumer = c
                .token_tenant
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(CONSUMER_TENANT));
            let mut e = ev_map(&[
                ("UniqueTokenId", opt(&c.token)),
                ("AADSessionId", opt(&c.aad_session)),
                ("SessionId", opt(&c.exchange_session)),
                ("IssuedAtTime", c.issued.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                ("workload", json!(c.workload)),
                ("distinct_tokens", json!(c.tokens.len())),
                ("operations", json!(c.operations)),
                ("records", json!(c.count)),
                ("last_seen", c.last.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                ("signin_coverage", json!(format!("{} .. {}", rfc3339(a), rfc3339(b)))),
                ("why", json!("no sign-in in the given logs issued this token or session; forged tokens are never issued by Entra")),
            ]);
            if consumer {
                e.insert(
                    "TokenTenantId".into(),
                    json!(format!("{CONSUMER_TENANT} (consumer MSA tenant)")),
                );
            }
            self.findings.push(c.rep.finding(r, Severity::High, e));
        }
        let note = format!(
            "sign-ins cover {} .. {}; {} of {} token-bearing records judged, {} outside that coverage",
            rfc3339(a),
            rfc3339(b),
            judged,
            self.token_records,
            uncovered
        );
        notes.insert(r.id, (judged == 0, Some(note)));
    }

    fn finish_owa(&mut self, notes: &mut HashMap<&'static str, (bool, Option<String>)>) {
        let r = rule("tw-owa-token-for-resource");
        if self.owa == 0 {
            notes.insert(r.id, (true, Some("no OWA token-issuance records (RecordType 275 OWAAuth, in the UAL schema since 2024; or operations named GetAccessTokenForResource)".into())));
            return;
        }
        if self.signins == 0 {
            notes.insert(
                r.id,
                (
                    true,
                    Some(
                        "no Entra sign-in logs given to tell which sessions and IPs signed in"
                            .into(),
                    ),
                ),
            );
            return;
        }
        let aggs = std::mem::take(&mut self.owa_aggs);
        for (_, a) in aggs {
            let known_session = a
                .session
                .as_ref()
                .is_some_and(|s| self.signin_sessions.contains(&s.to_ascii_lowercase()));
            let unknown_ips: Vec<&String> = a
                .ips
                .iter()
                .filter(|i| !self.signin_ips.contains(*i))
                .collect();
            if known_session && unknown_ips.is_empty() {
                continue;
            }
            let mut why = Vec::new();
            if !known_session {
                why.push("session never signed in".to_string());
            }
            if !unknown_ips.is_empty() {
                why.push("issued to an IP that never signed in".to_string());
            }
            if a.count >= self.opts.owa_chain_min {
                why.push(format!("renewal chain of {} issuances", a.count));
            }
            let e = ev_map(&[
                ("session", opt(&a.session)),
                ("issuances", json!(a.count)),
                ("ips", json!(a.ips)),
                ("resources", json!(a.resources)),
                (
                    "last_seen",
                    a.last.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null),
                ),
                ("why", json!(why.join("; "))),
            ]);
            self.findings.push(a.rep.finding(r, Severity::High, e));
        }
    }

    fn finish_gap(&mut self, notes: &mut HashMap<&'static str, (bool, Option<String>)>) {
        let r = rule("tw-audit-gap");
        let mut judged = 0;
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.hours.keys().collect();
        names.sort();
        for w in names {
            let hs = &self.hours[w];
            let mut v: Vec<i64> = hs.iter().copied().collect();
            v.sort_unstable();
            let (Some(&first), Some(&last)) = (v.first(), v.last()) else {
                continue;
            };
            if last - first < 72 || v.len() < 24 {
                continue;
            }
            judged += 1;
            let runs: Vec<(i64, i64)> = v
                .windows(2)
                .filter(|p| p[1] - p[0] > 1)
                .map(|p| (p[0], p[1]))
                .collect();
            let mut lens: Vec<i64> = runs.iter().map(|(a, b)| b - a - 1).collect();
            lens.sort_unstable();
            let typical = if lens.is_empty() {
                0
            } else {
                lens[(lens.len() * 9 / 10).min(lens.len() - 1)]
            };
            // The longest gap must not set its own bar: take the 90th
            // percentile of the others.
            let typical = if lens.len() >= 2 && typical == *lens.last().unwrap_or(&0) {
                lens[lens.len() - 2]
            } else {
                typical
            };
            let threshold = i64::from(self.opts.gap_hours).max(2 * typical);
            for (a, b) in runs {
                let len = b - a - 1;
                if len >= threshold {
                    let from = OffsetDateTime::from_unix_timestamp((a + 1) * 3600).ok();
                    let to = OffsetDateTime::from_unix_timestamp(b * 3600).ok();
                    let e = ev_map(&[
                        ("workload", json!(w)),
                        ("gap_start", from.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                        ("gap_end", to.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)),
                        ("hours", json!(len)),
                        ("threshold_hours", json!(threshold)),
                        ("records_in_workload", json!(self.workload_counts.get(w).copied().unwrap_or(0))),
                        ("why", json!("no records at all for this workload while it was active before and after; logging may have been disabled or the export is incomplete")),
                    ]);
                    out.push(Finding {
                        rule_id: r.id,
                        rule_title: r.title,
                        severity: Severity::Medium,
                        time: from,
                        user: None,
                        client_ip: None,
                        app_id: None,
                        session_id: None,
                        token_id: None,
                        source_file: String::new(),
                        source_locator: String::new(),
                        evidence: e,
                    });
                }
            }
        }
        self.findings.extend(out);
        if judged == 0 {
            notes.insert(
                r.id,
                (
                    true,
                    Some("no workload has records over three days or more".into()),
                ),
            );
        }
    }
}

/// `hay` contains `needle`, ignoring ASCII case, without allocating.
fn contains_ignore_ascii_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

fn find_key_values<'a>(
    v: &'a Value,
    path: &mut Vec<&'a str>,
    iocs: &IocSet,
    hits: &mut Vec<(String, String, &'static str, String)>,
    depth: u32,
) {
    if depth > 8 || !hits.is_empty() {
        return;
    }
    match v {
        Value::String(s) => {
            // kid (27), SHA-1 (40, 59 with colons), SHA-256 (64, 95 with colons).
            if ![27, 40, 59, 64, 95].contains(&s.trim().len()) {
                return;
            }
            let t = s.trim();
            let hex: String = t.chars().filter(|c| *c != ':').collect();
            for k in &iocs.keys {
                let m = if k.what == "kid" {
                    t == k.value
                } else {
                    hex.eq_ignore_ascii_case(&k.value)
                };
                if m {
                    hits.push((path.join("."), t.to_string(), k.what, k.source.clone()));
                    return;
                }
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k);
                find_key_values(x, path, iocs, hits, depth + 1);
                path.pop();
            }
        }
        Value::Array(a) => {
            for x in a {
                find_key_values(x, path, iocs, hits, depth + 1);
            }
        }
        _ => {}
    }
}
