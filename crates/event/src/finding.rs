//! Findings: what a detection reports, in the shape every output writes.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use crate::event::Event;
use crate::evidence::Evidence;
use crate::timefmt::with_rfc3339;
use tokenward_logread::Locator;

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context worth a look.
    Low,
    /// Suspicious; needs triage.
    Medium,
    /// Likely malicious or a direct IOC hit in the published window.
    High,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text {
        None => Ok(None),
        Some(t) => crate::timefmt::parse_timestamp(&t)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unreadable time {t:?}"))),
    }
}

fn ser_time<S: serde::Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => with_rfc3339(*t, |text| s.serialize_str(text)),
        None => s.serialize_none(),
    }
}

/// The columns of a finding other than its evidence, in output order:
/// CSV timelines, JSONL findings and the SQL scripts' result name them so.
pub const COLUMNS: [&str; 11] = [
    "rule_id",
    "rule_title",
    "severity",
    "time",
    "user",
    "client_ip",
    "app_id",
    "session_id",
    "token_id",
    "source_file",
    "source_locator",
];

/// One detection hit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Stable detection id (`tw-...`, or a Sigma rule's id).
    pub rule_id: Cow<'static, str>,
    /// Detection title.
    pub rule_title: Cow<'static, str>,
    /// Severity.
    pub severity: Severity,
    /// Time of the (first) record, RFC 3339 UTC.
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time", default)]
    pub time: Option<OffsetDateTime>,
    /// Acting user.
    pub user: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// Application id.
    pub app_id: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// Token id.
    pub token_id: Option<String>,
    /// File of the (first) record, shared with every finding and event
    /// from that file.
    pub source_file: Arc<str>,
    /// Locator of the (first) record in that file.
    pub source_locator: String,
    /// The fields that matched and the reasoning values.
    pub evidence: Evidence,
}

impl Finding {
    /// About how many bytes this finding holds in memory (its own heap
    /// text and evidence, and its slot): what a holder of many findings
    /// budgets by. Shared parts (the source file name, a rule's shared
    /// evidence) are not counted.
    pub fn approx_bytes(&self) -> usize {
        let owned = |c: &Cow<'static, str>| match c {
            Cow::Owned(s) => s.len(),
            Cow::Borrowed(_) => 0,
        };
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<Finding>()
            + owned(&self.rule_id)
            + owned(&self.rule_title)
            + text(&self.user)
            + text(&self.client_ip)
            + text(&self.app_id)
            + text(&self.session_id)
            + text(&self.token_id)
            + self.source_locator.len()
            + self.evidence.own_heap_bytes()
    }

    /// The order findings are reported in: by time (those without one
    /// first), then detection, source file and place in it.
    pub fn report_order(&self, o: &Finding) -> std::cmp::Ordering {
        (
            self.time,
            &self.rule_id,
            &self.source_file,
            &self.source_locator,
        )
            .cmp(&(o.time, &o.rule_id, &o.source_file, &o.source_locator))
    }
}

/// The parts of an event a stateful detection keeps until it decides,
/// instead of the whole record (bounded memory).
#[derive(Clone, Debug)]
pub struct Rep {
    /// Event time.
    pub time: Option<OffsetDateTime>,
    /// User.
    pub user: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// Application id.
    pub app_id: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// Token id.
    pub token_id: Option<String>,
    /// Source file.
    pub file: Arc<str>,
    /// Locator.
    pub locator: Locator,
}

impl Rep {
    /// Keeps the reporting fields of an event.
    pub fn of(ev: &Event) -> Rep {
        Rep {
            time: ev.time,
            user: ev.user().map(str::to_owned),
            client_ip: ev.client_ip().map(str::to_owned),
            app_id: ev.app_id().map(str::to_owned),
            session_id: ev.session_id().map(str::to_owned),
            token_id: ev.token_id().map(str::to_owned),
            file: ev.source_file.clone(),
            locator: ev.locator,
        }
    }

    /// Whether an event would be an earlier representative than `o`
    /// ([`Rep::earlier_than`] without building the representative).
    pub fn event_earlier(ev: &Event, o: &Rep) -> bool {
        (ev.time, &*ev.source_file, ev.locator) < (o.time, &*o.file, o.locator)
    }

    /// Whether this representative is earlier than another (by time, then position).
    pub fn earlier_than(&self, o: &Rep) -> bool {
        (self.time, &*self.file, self.locator) < (o.time, &*o.file, o.locator)
    }

    /// Turns the representative into a finding.
    pub fn finding(
        &self,
        rule_id: Cow<'static, str>,
        rule_title: Cow<'static, str>,
        severity: Severity,
        evidence: impl Into<Evidence>,
    ) -> Finding {
        Finding {
            rule_id,
            rule_title,
            severity,
            time: self.time,
            user: self.user.clone(),
            client_ip: self.client_ip.clone(),
            app_id: self.app_id.clone(),
            session_id: self.session_id.clone(),
            token_id: self.token_id.clone(),
            source_file: self.file.clone(),
            source_locator: self.locator.to_string(),
            evidence: evidence.into(),
        }
    }
}

/// Whether a detection could see what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It judged the input.
    Ok,
    /// The input lacked the events or fields it needs: silence means nothing.
    Blind,
}

/// What a detection (or a Sigma rule) reports about itself at the end of a
/// hunt.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    /// Detection id.
    pub id: Cow<'static, str>,
    /// Title.
    pub title: Cow<'static, str>,
    /// Findings reported.
    pub hits: usize,
    /// `ok`, or `blind` when the input lacked what the detection needs.
    pub status: Status,
    /// What was missing (blind) or a caveat (ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
