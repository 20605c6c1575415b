//! The one event model shared by every input format.
//!
//! An [`Event`] keeps the original record as a `serde_json::Value` (with
//! nested JSON that arrived as strings expanded in place, so
//! `AuditData.AppAccessContext.UniqueTokenId` is a path like any other) plus
//! the normalised fields every detection and output needs.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::ip::parse_client_ip;
use crate::timefmt::parse_timestamp;

/// What an event is, independent of the carrier it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A Microsoft 365 unified audit log record (any carrier: Management
    /// Activity API, Purview CSV `AuditData`, Sentinel `OfficeActivity`,
    /// Defender `CloudAppEvents.RawEventData`).
    Audit,
    /// An Entra ID sign-in (interactive, non-interactive, service principal,
    /// managed identity).
    SignIn,
    /// An Entra ID directory audit (`directoryAudit`, `AuditLogs`).
    DirectoryAudit,
    /// An Azure Activity (control-plane) record.
    AzureActivity,
    /// A request line of the `tokenward gateway` access log.
    Gateway,
    /// Anything else (risk detections, configuration snapshots, Windows rows).
    Other,
}

impl EventKind {
    /// Stable lower-case name used in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Audit => "audit",
            EventKind::SignIn => "signin",
            EventKind::DirectoryAudit => "directory-audit",
            EventKind::AzureActivity => "azure-activity",
            EventKind::Gateway => "gateway",
            EventKind::Other => "other",
        }
    }
}

/// Where a record sits in its file: 1-based line of its first byte when the
/// carrier has lines, and its 1-based record index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locator {
    /// 1-based line number of the record's first byte (0 when unknown).
    pub line: u64,
    /// 1-based index of the record within the file.
    pub record: u64,
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.record) {
            (0, r) => write!(f, "record {r}"),
            (l, r) if l == r => write!(f, "line {l}"),
            (l, r) => write!(f, "record {r} (line {l})"),
        }
    }
}

/// One input record, parsed and normalised.
#[derive(Clone, Debug)]
pub struct Event {
    /// What the record is.
    pub kind: EventKind,
    /// The original record; JSON carried as strings is expanded in place.
    pub record: Value,
    /// Key of the object holding the actual audit record inside a wrapper
    /// (`AuditData`, `RawEventData`, `properties`), looked up before the root.
    pub inner: Option<&'static str>,
    /// Event time in UTC.
    pub time: Option<OffsetDateTime>,
    /// Acting user, lower-cased (UPNs appear in mixed case in the same log).
    pub user: Option<String>,
    /// Client address without port.
    pub client_ip: Option<String>,
    /// Application (resource or API) id: `AppId`, `appId`, `ApplicationId`.
    pub app_id: Option<String>,
    /// Calling client application id: `ClientAppId`, `AppAccessContext.ClientAppId`.
    pub client_app_id: Option<String>,
    /// Entra session: `AppAccessContext.AADSessionId`, Exchange `SessionId`, sign-in `sessionId`.
    pub session_id: Option<String>,
    /// Token id: `AppAccessContext.UniqueTokenId`, `UniqueTokenIdentifier`, `uniqueTokenIdentifier`.
    pub token_id: Option<String>,
    /// Operation or activity name.
    pub operation: Option<String>,
    /// Result (`ResultStatus`, sign-in error code, `result`).
    pub result: Option<String>,
    /// Workload / service (`Workload`, `OfficeWorkload`, `category`, table type).
    pub workload: Option<String>,
    /// User agent or Exchange `ClientInfoString`.
    pub user_agent: Option<String>,
    /// UAL record type as a number when known.
    pub record_type: Option<u32>,
    /// File the record came from.
    pub source_file: Arc<str>,
    /// Position of the record in that file.
    pub locator: Locator,
    /// `record` holds only the root fields the built-in detections can read
    /// ([`Event::from_json_narrow`]); other fields were skipped unparsed.
    pub narrow: bool,
    /// For a narrow event, which [`NARROW_ROOTS`] (by [`narrow_root_index`])
    /// its root keys are: a root lookup that can match none of them is
    /// answered `None` without scanning the keys case-insensitively.
    roots: u128,
    /// A MailItemsAccessed record read by [`Event::from_json_fast`]: no
    /// record tree; the built-in detections' fields are answered from here.
    fast: Option<Box<Fast>>,
}

fn get_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(v) = m.get(key) {
        return Some(v);
    }
    if EXACT_ONLY.with(|c| c.get()) {
        return None;
    }
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

thread_local! {
    // Set while normalising: candidate field lists are tried with exact
    // names first, so the case-insensitive scan only runs when no candidate
    // matched exactly (it dominated the profile otherwise).
    static EXACT_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn exact_then_ci<T>(f: impl Fn() -> Option<T>) -> Option<T> {
    EXACT_ONLY.with(|c| c.set(true));
    let r = f();
    EXACT_ONLY.with(|c| c.set(false));
    r.or_else(f)
}

/// Looks up a dotted path in a JSON value.
///
/// Each step matches an object key exactly, then case-insensitively; a key
/// that itself contains dots is tried whole before the path is split. A
/// numeric step indexes an array; any other step on an array searches its
/// elements in order and returns the first hit. Use [`lookup_all`] to get
/// every hit across arrays.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    match v {
        Value::Object(m) => {
            if let Some(x) = get_ci(m, path) {
                return Some(x);
            }
            for (i, _) in path.match_indices('.') {
                if let Some(child) = get_ci(m, &path[..i]) {
                    if let Some(r) = lookup(child, &path[i + 1..]) {
                        return Some(r);
                    }
                }
            }
            None
        }
        Value::Array(a) => {
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            if let Ok(i) = head.parse::<usize>() {
                return a.get(i).and_then(|x| lookup(x, rest));
            }
            a.iter().find_map(|x| lookup(x, path))
        }
        _ => None,
    }
}

/// Collects every value reachable by a dotted path, fanning out over arrays
/// (`Folders.FolderItems.InternetMessageId` yields every message id).
pub fn lookup_all<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    if path.is_empty() {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            _ => out.push(v),
        }
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(x) = get_ci(m, path) {
                lookup_all(x, "", out);
                return;
            }
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            if let Some(child) = get_ci(m, head) {
                lookup_all(child, rest, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                lookup_all(x, path, out);
            }
        }
        _ => {}
    }
}

/// Renders a scalar JSON value as text (`null`, objects and arrays give `None`).
pub fn scalar_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Event {
    /// Looks up a dotted path: first in the wrapped audit record (`AuditData`,
    /// `RawEventData`, `properties`) when there is one, then from the root.
    pub fn get(&self, path: &str) -> Option<&Value> {
        #[cfg(debug_assertions)]
        check_narrow(self, path);
        if let Some(inner) = self.inner {
            if let Some(iv) = self.record.get(inner) {
                if let Some(v) = lookup(iv, path) {
                    return Some(v);
                }
            }
        }
        if !self.root_may_match(path) {
            return None;
        }
        lookup(&self.record, path)
    }

    /// Whether a lookup of `path` from the root can find anything: always
    /// for a full record; for a narrow one only when the whole path or one
    /// of its dotted prefixes names a root key it kept. Most lookups of the
    /// built-in detections are for fields a mail record lacks, and the
    /// case-insensitive key scan that proves it was a tenth of the profile.
    fn root_may_match(&self, path: &str) -> bool {
        if !self.narrow {
            return true;
        }
        let has = |k: &str| narrow_root_index(k).is_some_and(|i| self.roots & (1u128 << i) != 0);
        has(path) || path.match_indices('.').any(|(i, _)| has(&path[..i]))
    }

    /// [`Event::get`] rendered as a trimmed, non-empty string.
    pub fn get_str(&self, path: &str) -> Option<String> {
        self.scalar(path).map(Cow::into_owned)
    }

    /// [`Event::get_str`] borrowed when the value is a string.
    pub fn scalar(&self, path: &str) -> Option<Cow<'_, str>> {
        if let Some(f) = &self.fast {
            return match f.resolve(path) {
                Fv::Str(s) => nonempty(s).map(Cow::Borrowed),
                Fv::Num(n) => Some(Cow::Owned(n.to_string())),
                Fv::Absent | Fv::Other => None,
            };
        }
        match self.get(path)? {
            Value::String(s) => nonempty(s).map(Cow::Borrowed),
            other => scalar_str(other).map(Cow::Owned),
        }
    }

    /// Whether [`Event::get`] finds a value (`null` included).
    pub fn has(&self, path: &str) -> bool {
        match &self.fast {
            Some(f) => !matches!(f.resolve(path), Fv::Absent),
            None => self.get(path).is_some(),
        }
    }

    /// Items a MailItemsAccessed Bind record covers: `OperationCount`, else
    /// the number of `Folders.FolderItems` (at least one).
    pub fn bind_items(&self) -> u64 {
        if let Some(f) = &self.fast {
            return f
                .op_count
                .as_ref()
                .and_then(serde_json::Number::as_u64)
                .unwrap_or((f.folder_items as u64).max(1));
        }
        self.get("OperationCount")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .unwrap_or_else(|| (self.get_all("Folders.FolderItems").len() as u64).max(1))
    }

    /// The first of several paths that yields a non-empty scalar.
    pub fn first_str(&self, paths: &[&str]) -> Option<String> {
        exact_then_ci(|| paths.iter().find_map(|p| self.get_str(p)))
    }

    /// Every value reachable by a dotted path (inner record and root).
    pub fn get_all(&self, path: &str) -> Vec<&Value> {
        #[cfg(debug_assertions)]
        check_narrow(self, path);
        let mut out = Vec::new();
        if let Some(inner) = self.inner {
            if let Some(iv) = self.record.get(inner) {
                lookup_all(iv, path, &mut out);
            }
        }
        if out.is_empty() && self.root_may_match(path) {
            lookup_all(&self.record, path, &mut out);
        }
        out
    }

    /// Value of a `{Name, Value}` pair in a name/value list such as
    /// `OperationProperties`, `Parameters` or `ExtendedProperties`
    /// (names compared case-insensitively).
    pub fn name_value(&self, list: &str, name: &str) -> Option<String> {
        if let Some(f) = &self.fast {
            if !list.eq_ignore_ascii_case("OperationProperties") {
                // Other lists are narrow roots: the fast path refused them.
                return None;
            }
            return f.props.iter().find_map(|&(n, v)| {
                (f.text(n) == name || f.text(n).eq_ignore_ascii_case(name))
                    .then(|| nonempty(f.text(v)).map(str::to_string))
                    .flatten()
            });
        }
        let v = self.get(list)?;
        let Value::Array(items) = v else {
            return None;
        };
        items.iter().find_map(|it| {
            let n = it
                .get("Name")
                .or_else(|| it.get("name"))
                .and_then(Value::as_str)?;
            if n.eq_ignore_ascii_case(name) {
                it.get("Value")
                    .or_else(|| it.get("value"))
                    .and_then(scalar_str)
            } else {
                None
            }
        })
    }

    /// Builds an event from a parsed record: expands JSON carried in strings,
    /// classifies the record and fills the normalised fields. `hint` is the
    /// kind the file format suggests, used when the record itself is ambiguous.
    pub fn from_record(
        record: Value,
        hint: Option<EventKind>,
        source_file: Arc<str>,
        locator: Locator,
    ) -> Event {
        Event::build(record, hint, source_file, locator, false, 0)
    }

    /// Builds a MailItemsAccessed event from a raw JSON object without any
    /// record tree: the dozen fields the built-in detections and the
    /// normalisation read are taken as spans of one string, the rest is
    /// skipped. `None` (take [`Event::from_json_narrow`]) for anything
    /// unusual: another operation, a field some built-in lookup could reach
    /// under another spelling or shape (case variants, JSON carried in a
    /// string, numbers as strings, duplicates, `null`), envelopes. The event
    /// answers [`Event::scalar`], [`Event::get_str`], [`Event::has`],
    /// [`Event::name_value`] and [`Event::bind_items`] as the narrow event
    /// would (debug builds check every one against it); [`Event::get`]
    /// finds nothing, so only the built-in detections may see it.
    pub fn from_json_fast(bytes: &[u8], source_file: Arc<str>, locator: Locator) -> Option<Event> {
        let FastDe(f) = serde_json::from_slice::<FastDe>(bytes).ok()?;
        let f = f?;
        let s = |i: usize| f.roots[i].map(|sp| f.text(sp)).and_then(nonempty);
        let (time_s, op) = (f.roots[R_CREATION]?, s(R_OPERATION)?);
        let record_type = f
            .record_type
            .as_ref()
            .and_then(serde_json::Number::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        if !op.eq_ignore_ascii_case("MailItemsAccessed") || record_type == Some(275) {
            return None;
        }
        let aac = |i: usize| f.aac[i].map(|sp| f.text(sp)).and_then(nonempty);
        let ev = Event {
            kind: EventKind::Audit,
            record: Value::Object(Map::new()),
            inner: None,
            time: parse_timestamp(f.text(time_s)),
            user: s(R_USER).map(str::to_lowercase),
            client_ip: s(R_CLIENT_IP).or_else(|| s(R_CLIENT_IP_ADDRESS)).map(|s| {
                parse_client_ip(s)
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| s.to_string())
            }),
            app_id: s(R_APP).map(str::to_string),
            client_app_id: s(R_CLIENT_APP).map(str::to_string),
            session_id: aac(A_SESSION).or_else(|| s(R_SESSION)).map(str::to_string),
            token_id: aac(A_TOKEN).map(str::to_string),
            operation: Some(op.to_string()),
            result: s(R_RESULT).map(str::to_string),
            workload: s(R_WORKLOAD).map(str::to_string),
            user_agent: s(R_CLIENT_INFO).map(str::to_string),
            record_type,
            source_file,
            locator,
            narrow: true,
            roots: 0,
            fast: Some(Box::new(f)),
        };
        #[cfg(any(test, debug_assertions))]
        check_fast(&ev, bytes);
        Some(ev)
    }

    fn build(
        mut record: Value,
        hint: Option<EventKind>,
        source_file: Arc<str>,
        locator: Locator,
        narrow: bool,
        roots: u128,
    ) -> Event {
        expand_nested(&mut record, 3);
        fold_la_columns(&mut record);
        let (kind, inner) = classify(&record, hint);
        let mut ev = Event {
            kind,
            record,
            inner,
            time: None,
            user: None,
            client_ip: None,
            app_id: None,
            client_app_id: None,
            session_id: None,
            token_id: None,
            operation: None,
            result: None,
            workload: None,
            user_agent: None,
            record_type: None,
            source_file,
            locator,
            narrow,
            roots,
            fast: None,
        };
        ev.normalise();
        ev
    }

    /// Builds an event from a raw JSON object, keeping only the root fields
    /// that some built-in lookup can reach ([`NARROW_ROOTS`], matched
    /// case-insensitively as lookups do) and skipping the rest without
    /// allocating. For the built-in detections the result is the same as
    /// [`Event::from_record`] over the full parse, except that a scan of
    /// every string (the signing-key indicator) sees only the kept fields;
    /// the engine takes this path only when the literal screen found no
    /// indicator in the record. `None` when the bytes need the full parse:
    /// not a valid JSON object (the full parse words the rejection), an
    /// envelope (`records`/`value`), or Log Analytics renamed columns.
    pub fn from_json_narrow(
        bytes: &[u8],
        hint: Option<EventKind>,
        source_file: Arc<str>,
        locator: Locator,
    ) -> Option<Event> {
        let Narrow(m) = serde_json::from_slice::<Narrow>(bytes).ok()?;
        let (m, roots) = m?;
        // Normalisation is a built-in reader too: its paths are checked.
        Some(as_builtin(|| {
            Event::build(Value::Object(m), hint, source_file, locator, true, roots)
        }))
    }

    fn normalise(&mut self) {
        self.time = exact_then_ci(|| {
            TIME_FIELDS
                .iter()
                .filter_map(|p| self.get(p))
                .find_map(|v| v.as_str().and_then(parse_timestamp))
        });
        self.user = self.first_str(USER_FIELDS).map(|u| u.to_lowercase());
        self.client_ip = exact_then_ci(|| {
            IP_FIELDS.iter().find_map(|p| {
                let s = self.get_str(p)?;
                Some(parse_client_ip(&s).map(|ip| ip.to_string()).unwrap_or(s))
            })
        });
        self.app_id =
            self.first_str(&["AppId", "appId", "ApplicationId", "AppAccessContext.APIId"]);
        self.client_app_id =
            self.first_str(&["ClientAppId", "AppAccessContext.ClientAppId", "OAuthAppId"]);
        self.session_id =
            self.first_str(&["AppAccessContext.AADSessionId", "AADSessionId", "SessionId"]);
        self.token_id = self.first_str(&[
            "AppAccessContext.UniqueTokenId",
            "UniqueTokenId",
            "UniqueTokenIdentifier",
        ]);
        self.operation = self.first_str(&[
            "Operation",
            "Operations",
            "activityDisplayName",
            "ActionType",
            "OperationNameValue",
            "operationName",
            "OperationName",
        ]);
        self.result = match self.first_str(&["status.errorCode"]) {
            Some(code) if self.kind == EventKind::SignIn => Some(code),
            _ => self.first_str(&[
                "ResultStatus",
                "ResultType",
                "resultType",
                "result",
                "ActivityStatusValue",
            ]),
        };
        self.workload =
            self.first_str(&["Workload", "OfficeWorkload", "category", "Category", "Type"]);
        self.user_agent = self
            .first_str(&["ClientInfoString", "UserAgent", "userAgent"])
            .or_else(|| {
                self.name_value("ExtendedProperties", "UserAgent")
                    .or_else(|| self.key_value("additionalDetails", "User-Agent"))
            });
        self.record_type = exact_then_ci(|| self.get("RecordType")).and_then(|v| match v {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s
                .trim()
                .parse()
                .ok()
                .or_else(|| record_type_number(s.trim())),
            _ => None,
        });
        if self.kind == EventKind::Gateway {
            self.normalise_gateway();
        }
        if self.kind == EventKind::SignIn {
            // Sign-ins carry their ids under Graph names; read them after the
            // UAL names so a UAL record's AppAccessContext wins there.
            if self.session_id.is_none() {
                self.session_id = self.first_str(&["sessionId"]);
            }
            if self.token_id.is_none() {
                self.token_id = self.first_str(&["uniqueTokenIdentifier"]);
            }
        }
    }

    /// The gateway's access log names its fields after the token claims
    /// (docs/gateway.md); the generic lists above would take `oid`-less
    /// `sub` last and miss `azp`, `sid`, `uti`, so they are set here.
    /// Gateway events are always full parses (classification needs
    /// `verdict`, which a narrow event never keeps), so any path may be read.
    fn normalise_gateway(&mut self) {
        self.user = self.first_str(&["sub", "oid"]).map(|u| u.to_lowercase());
        self.app_id = self.first_str(&["azp", "appid", "client_id"]);
        // azp/appid name the calling client, which is what UAL's ClientAppId holds.
        self.client_app_id = self.app_id.clone();
        self.session_id = self.first_str(&["sid"]);
        self.token_id = self.first_str(&["uti", "jti"]);
        self.operation = match (self.get_str("method"), self.get_str("path")) {
            (Some(m), Some(p)) => Some(format!("{m} {p}")),
            (m, p) => m.or(p),
        };
        self.result = self.get_str("verdict");
        self.workload = Some("tokenward gateway".into());
    }

    /// Value of a `{key, value}` pair list (Graph `additionalDetails`).
    pub fn key_value(&self, list: &str, key: &str) -> Option<String> {
        let Value::Array(items) = self.get(list)? else {
            return None;
        };
        items.iter().find_map(|it| {
            let k = it
                .get("key")
                .or_else(|| it.get("Key"))
                .and_then(Value::as_str)?;
            if k.eq_ignore_ascii_case(key) {
                it.get("value")
                    .or_else(|| it.get("Value"))
                    .and_then(scalar_str)
            } else {
                None
            }
        })
    }

    /// Mailbox the record is about (`MailboxOwnerUPN`, else the user), lower-cased.
    pub fn mailbox(&self) -> Option<String> {
        self.get_str("MailboxOwnerUPN")
            .map(|s| s.to_lowercase())
            .or_else(|| self.user.clone())
    }
}

/// Every root key a built-in lookup (normalisation, classification, the
/// built-in detections) can reach: each path looked up and each of its
/// dotted prefixes, since [`lookup`] tries a whole dotted path as one key
/// before splitting it. A narrow event keeps exactly the root keys equal to
/// one of these, ignoring ASCII case. Add a path here when a detection
/// starts reading it (debug builds assert this in [`Event::get`]).
pub const NARROW_ROOTS: &[&str] = &[
    // classify
    "AuditData",
    "RawEventData",
    "Type",
    "category",
    "properties",
    "time",
    "resourceId",
    "CreationTime",
    "Operation",
    "createdDateTime",
    "userPrincipalName",
    "appId",
    "ipAddress",
    "status",
    "uniqueTokenIdentifier",
    "activityDateTime",
    "activityDisplayName",
    // normalise (the time, user and IP lists are checked in a test)
    "TimeGenerated",
    "Timestamp",
    "eventTimestamp",
    "CreatedDateTime",
    "ActivityDateTime",
    "DetectedDateTime",
    "CreationDate",
    "StartTime",
    "timestamp",
    "UserPrincipalName",
    "UserId",
    "UserIds",
    "AccountUpn",
    "initiatedBy",
    "initiatedBy.user",
    "initiatedBy.user.userPrincipalName",
    "initiatedBy.user.ipAddress",
    "Caller",
    "UserName",
    "servicePrincipalName",
    "identity",
    "sub",
    "ClientIP",
    "ClientIPAddress",
    "Client_IPAddress",
    "ActorIpAddress",
    "IPAddress",
    "callerIpAddress",
    "InitiatingIpAddress",
    "client_ip",
    "src_ip",
    "AppId",
    "ApplicationId",
    "AppAccessContext",
    "AppAccessContext.APIId",
    "ClientAppId",
    "AppAccessContext.ClientAppId",
    "OAuthAppId",
    "AppAccessContext.AADSessionId",
    "AADSessionId",
    "SessionId",
    "AppAccessContext.UniqueTokenId",
    "UniqueTokenId",
    "UniqueTokenIdentifier",
    "Operations",
    "ActionType",
    "OperationNameValue",
    "operationName",
    "status.errorCode",
    "ResultStatus",
    "ResultType",
    "result",
    "ActivityStatusValue",
    "Workload",
    "OfficeWorkload",
    "ClientInfoString",
    "UserAgent",
    "ExtendedProperties",
    "additionalDetails",
    "RecordType",
    "sessionId",
    "MailboxOwnerUPN",
    // detections
    "ActorInfoString",
    "kid",
    "x5t",
    "header",
    "header.kid",
    "jwt",
    "jwt.header",
    "jwt.header.kid",
    "thumbprint",
    "OperationProperties",
    "MailAccessType",
    "IsThrottled",
    "OperationCount",
    "Folders",
    "Folders.FolderItems",
    "AppAccessContext.IssuedAtTime",
    "TokenTenantId",
    "ResourceURL",
    "Resource",
    "Parameters",
];

#[cfg(debug_assertions)]
thread_local! {
    /// Set while the built-in detections look at an event: their lookups on
    /// a narrow event must stay inside [`NARROW_ROOTS`]. Other callers (rule
    /// engines) may ask narrow events anything; the answer is just absent.
    static BUILTIN_LOOKUPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as the built-in detections, whose narrow-event lookups debug
/// builds check against [`NARROW_ROOTS`].
pub(crate) fn as_builtin<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(debug_assertions)]
    BUILTIN_LOOKUPS.with(|c| c.set(true));
    let r = f();
    #[cfg(debug_assertions)]
    BUILTIN_LOOKUPS.with(|c| c.set(false));
    r
}

#[cfg(debug_assertions)]
fn check_narrow(ev: &Event, path: &str) {
    assert!(
        ev.fast.is_none() || !BUILTIN_LOOKUPS.with(|c| c.get()),
        "{path:?} asked of a fast event through Event::get: use the fast-aware accessors"
    );
    assert!(
        !ev.narrow || !BUILTIN_LOOKUPS.with(|c| c.get()) || narrow_reaches(path),
        "{path:?} is not in NARROW_ROOTS: a narrow event cannot answer it"
    );
}

#[cfg(any(test, debug_assertions))]
/// Whether a narrow event answers `path` like the full record would: the
/// path and each of its dotted prefixes must be kept root keys.
fn narrow_reaches(path: &str) -> bool {
    path.match_indices('.')
        .map(|(i, _)| &path[..i])
        .chain(std::iter::once(path))
        .all(is_narrow_root)
}

#[cfg(any(test, debug_assertions))]
fn is_narrow_root(key: &str) -> bool {
    narrow_root_index(key).is_some()
}

// Narrow events record their root keys as bits of a u128.
const _: () = assert!(NARROW_ROOTS.len() <= 128);

/// Position in [`NARROW_ROOTS`] of the first entry equal to `key` ignoring
/// ASCII case, so keys that differ only in case share an index.
fn narrow_root_index(key: &str) -> Option<u8> {
    // Bucketed by length: most record keys fail on the length alone.
    type Buckets = Vec<Vec<(&'static str, u8)>>;
    static BY_LEN: std::sync::OnceLock<Buckets> = std::sync::OnceLock::new();
    let t = BY_LEN.get_or_init(|| {
        let mut t: Buckets = Vec::new();
        for (i, r) in NARROW_ROOTS.iter().enumerate() {
            if t.len() <= r.len() {
                t.resize(r.len() + 1, Vec::new());
            }
            let first = NARROW_ROOTS
                .iter()
                .position(|o| o.eq_ignore_ascii_case(r))
                .unwrap_or(i);
            if first == i {
                t[r.len()].push((r, i as u8));
            }
        }
        t
    });
    t.get(key.len())?
        .iter()
        .find(|(r, _)| r.eq_ignore_ascii_case(key))
        .map(|&(_, i)| i)
}

/// The kept root fields of a JSON object, or `None` when the record must
/// take the full parse (see [`Event::from_json_narrow`]).
/// With the kept roots' bits ([`narrow_root_index`]).
struct Narrow(Option<(Map<String, Value>, u128)>);

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Narrow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Narrow;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Narrow, A::Error> {
                let mut m = Map::new();
                let mut roots = 0u128;
                let mut whole = false;
                while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
                    // Envelopes and renamed Log Analytics columns change what
                    // the record is; leave them to the full parse.
                    whole |= k == "records"
                        || k == "value"
                        || k.ends_with(" [UTC]")
                        || k.ends_with("_dynamic");
                    match narrow_root_index(&k).filter(|_| !whole) {
                        Some(i) => {
                            roots |= 1u128 << i;
                            let v = a.next_value::<Value>()?;
                            m.insert(k.into_owned(), v);
                        }
                        None => {
                            a.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Narrow((!whole).then_some((m, roots))))
            }
        }
        d.deserialize_map(V)
    }
}

/// Trimmed, `None` when empty: how [`scalar_str`] renders a string.
fn nonempty(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

/// Root string fields the fast path reads, by exact name (see [`Fast`]).
const FAST_ROOTS: [&str; 13] = [
    "CreationTime",
    "Operation",
    "ResultStatus",
    "Workload",
    "ClientIP",
    "UserId",
    "AppId",
    "ClientAppId",
    "ClientIPAddress",
    "ClientInfoString",
    "MailboxOwnerUPN",
    "SessionId",
    "TokenTenantId",
];
const R_CREATION: usize = 0;
const R_OPERATION: usize = 1;
const R_RESULT: usize = 2;
const R_WORKLOAD: usize = 3;
const R_CLIENT_IP: usize = 4;
const R_USER: usize = 5;
const R_APP: usize = 6;
const R_CLIENT_APP: usize = 7;
const R_CLIENT_IP_ADDRESS: usize = 8;
const R_CLIENT_INFO: usize = 9;
const R_SESSION: usize = 11;
/// Index in [`FAST_ROOTS`] of an exact key: a `match` compiles to a
/// length switch, where comparing every key of every record with each
/// name in turn was the top `memcmp` caller.
fn fast_root(k: &str) -> Option<usize> {
    Some(match k {
        "CreationTime" => 0,
        "Operation" => 1,
        "ResultStatus" => 2,
        "Workload" => 3,
        "ClientIP" => 4,
        "UserId" => 5,
        "AppId" => 6,
        "ClientAppId" => 7,
        "ClientIPAddress" => 8,
        "ClientInfoString" => 9,
        "MailboxOwnerUPN" => 10,
        "SessionId" => 11,
        "TokenTenantId" => 12,
        _ => return None,
    })
}

/// The other roots the fast path understands, read by shape.
const FAST_SHAPED: [&str; 5] = [
    "RecordType",
    "OperationCount",
    "AppAccessContext",
    "OperationProperties",
    "Folders",
];
/// `AppAccessContext` members read, by exact name.
const AAC_KEYS: [&str; 3] = ["AADSessionId", "UniqueTokenId", "IssuedAtTime"];
const A_SESSION: usize = 0;
const A_TOKEN: usize = 1;
/// `AppAccessContext` members some built-in lookup reaches: any other
/// spelling of these (or one the fast path does not keep) means fall back.
const AAC_LOOKED_UP: [&str; 5] = [
    "AADSessionId",
    "UniqueTokenId",
    "IssuedAtTime",
    "APIId",
    "ClientAppId",
];

type Span = (u32, u32);

/// The fields of a MailItemsAccessed record the built-in detections read,
/// as spans of one string (one allocation per event instead of a tree).
#[derive(Clone, Debug, Default)]
pub(crate) struct Fast {
    buf: String,
    roots: [Option<Span>; 13],
    aac: [Option<Span>; 3],
    has_aac: bool,
    record_type: Option<serde_json::Number>,
    op_count: Option<serde_json::Number>,
    /// `OperationProperties` `{Name, Value}` pairs, in order.
    props: Vec<(Span, Span)>,
    has_props: bool,
    /// `FolderItems` across `Folders`.
    folder_items: usize,
    has_folders: bool,
}

/// What a path resolves to in a [`Fast`] record.
enum Fv<'a> {
    Absent,
    Str(&'a str),
    Num(&'a serde_json::Number),
    /// An object or array.
    Other,
}

impl Fast {
    fn text(&self, (a, b): Span) -> &str {
        &self.buf[a as usize..b as usize]
    }

    /// Keeps a string value; refuses JSON carried in a string, which the
    /// tree path would have expanded ([`expand_nested`]).
    fn keep<E: serde::de::Error>(&mut self, s: &str) -> Result<Span, E> {
        let t = s.trim_start();
        if (t.starts_with('{') || t.starts_with('['))
            && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
        {
            return Err(E::custom("fast path: nested JSON"));
        }
        let a = self.buf.len() as u32;
        self.buf.push_str(s);
        Ok((a, self.buf.len() as u32))
    }

    /// [`lookup`] over the record the narrow path would have kept, whose
    /// only reachable roots are the ones read here (anything else made the
    /// fast path refuse the record).
    fn resolve(&self, path: &str) -> Fv<'_> {
        if let Some(i) =
            fast_root(path).or_else(|| FAST_ROOTS.iter().position(|r| r.eq_ignore_ascii_case(path)))
        {
            return self.roots[i].map_or(Fv::Absent, |sp| Fv::Str(self.text(sp)));
        }
        if path.eq_ignore_ascii_case("RecordType") {
            return self.record_type.as_ref().map_or(Fv::Absent, Fv::Num);
        }
        if path.eq_ignore_ascii_case("OperationCount") {
            return self.op_count.as_ref().map_or(Fv::Absent, Fv::Num);
        }
        let shaped = |p: &str, present: bool| p.eq_ignore_ascii_case(path).then_some(present);
        if let Some(present) = shaped("AppAccessContext", self.has_aac)
            .or_else(|| shaped("OperationProperties", self.has_props))
            .or_else(|| shaped("Folders", self.has_folders))
        {
            return if present { Fv::Other } else { Fv::Absent };
        }
        if let Some((head, rest)) = path.split_once('.') {
            if head.eq_ignore_ascii_case("AppAccessContext") {
                if let Some(i) = AAC_KEYS.iter().position(|k| k.eq_ignore_ascii_case(rest)) {
                    return self.aac[i].map_or(Fv::Absent, |sp| Fv::Str(self.text(sp)));
                }
                if AAC_LOOKED_UP.iter().any(|k| k.eq_ignore_ascii_case(rest)) {
                    // Present members with these names made the path refuse.
                    return Fv::Absent;
                }
            }
        }
        // A path through a kept root that is not kept whole cannot be
        // answered; the built-in detections never ask one (debug check).
        let reaches_kept = |p: &str| {
            FAST_ROOTS
                .iter()
                .chain(FAST_SHAPED.iter())
                .any(|r| r.eq_ignore_ascii_case(p))
        };
        debug_assert!(
            !path
                .match_indices('.')
                .any(|(i, _)| reaches_kept(&path[..i])),
            "fast event cannot answer {path:?}"
        );
        Fv::Absent
    }
}

/// Deserialises a [`Fast`] record; `None` inside when the record needs the
/// narrow or full path (errors do too: the caller falls back on any).
struct FastDe(Option<Fast>);

fn refuse<E: serde::de::Error>() -> E {
    E::custom("fast path: unusual record")
}

impl<'de> serde::Deserialize<'de> for FastDe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FastDe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<FastDe, A::Error> {
                // Sized for the usual record's kept text: growing from
                // empty took several reallocations per event.
                let mut f = Fast {
                    buf: String::with_capacity(512),
                    props: Vec::with_capacity(4),
                    ..Fast::default()
                };
                while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
                    if let Some(i) = fast_root(&k) {
                        let Key(v) = a.next_value::<Key<'de>>()?;
                        if f.roots[i].is_some() {
                            return Err(refuse());
                        }
                        f.roots[i] = Some(f.keep(&v)?);
                        continue;
                    }
                    match &*k {
                        "RecordType" | "OperationCount" => {
                            let n = a.next_value::<serde_json::Number>()?;
                            let slot = if k == "RecordType" {
                                &mut f.record_type
                            } else {
                                &mut f.op_count
                            };
                            if slot.replace(n).is_some() {
                                return Err(refuse());
                            }
                        }
                        "AppAccessContext" => {
                            if std::mem::replace(&mut f.has_aac, true) {
                                return Err(refuse());
                            }
                            let AacDe(vals) = a.next_value::<AacDe<'de>>()?;
                            for (i, v) in vals.iter().enumerate() {
                                if let Some(v) = v {
                                    f.aac[i] = Some(f.keep(v)?);
                                }
                            }
                        }
                        "OperationProperties" => {
                            if std::mem::replace(&mut f.has_props, true) {
                                return Err(refuse());
                            }
                            let PropsDe(ps) = a.next_value::<PropsDe<'de>>()?;
                            for (n, v) in ps {
                                let n = f.keep(&n)?;
                                let v = f.keep(&v)?;
                                f.props.push((n, v));
                            }
                        }
                        "Folders" => {
                            if std::mem::replace(&mut f.has_folders, true) {
                                return Err(refuse());
                            }
                            f.folder_items = a.next_value::<FoldersDe>()?.0;
                        }
                        // Envelopes, renamed Log Analytics columns and any
                        // other field a built-in lookup could reach.
                        _ if k == "records"
                            || k == "value"
                            || k.ends_with(" [UTC]")
                            || k.ends_with("_dynamic")
                            || narrow_root_index(&k).is_some() =>
                        {
                            return Err(refuse());
                        }
                        _ => {
                            a.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(FastDe(Some(f)))
            }
        }
        d.deserialize_map(V)
    }
}

/// `AppAccessContext`: the members in [`AAC_KEYS`], strings.
struct AacDe<'de>([Option<std::borrow::Cow<'de, str>>; 3]);

impl<'de> serde::Deserialize<'de> for AacDe<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AacDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<AacDe<'de>, A::Error> {
                let mut out: [Option<std::borrow::Cow<'de, str>>; 3] = Default::default();
                while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
                    if let Some(i) = AAC_KEYS.iter().position(|r| *r == k) {
                        let Key(v) = a.next_value::<Key<'de>>()?;
                        if out[i].replace(v).is_some() {
                            return Err(refuse());
                        }
                    } else if AAC_LOOKED_UP.iter().any(|r| r.eq_ignore_ascii_case(&k)) {
                        return Err(refuse());
                    } else {
                        a.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(AacDe(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `OperationProperties`: an array of `{"Name": string, "Value": string}`.
struct PropsDe<'de>(Vec<(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>)>);

impl<'de> serde::Deserialize<'de> for PropsDe<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PropsDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<PropsDe<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(PropDe(n, v)) = a.next_element::<PropDe<'de>>()? {
                    out.push((n, v));
                }
                Ok(PropsDe(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One `{"Name": ..., "Value": ...}` pair; both present, exact spellings
/// (`name_value` also reads lower-case ones: those fall back).
struct PropDe<'de>(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for PropDe<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PropDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<PropDe<'de>, A::Error> {
                let (mut n, mut v) = (None, None);
                while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
                    let slot = match &*k {
                        "Name" => &mut n,
                        "Value" => &mut v,
                        _ if k.eq_ignore_ascii_case("name") || k.eq_ignore_ascii_case("value") => {
                            return Err(refuse())
                        }
                        _ => {
                            a.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    let Key(x) = a.next_value::<Key<'de>>()?;
                    if slot.replace(x).is_some() {
                        return Err(refuse());
                    }
                }
                match (n, v) {
                    (Some(n), Some(v)) => Ok(PropDe(n, v)),
                    _ => Err(refuse()),
                }
            }
        }
        d.deserialize_map(V)
    }
}

/// `Folders`: an array of objects; counts their `FolderItems` arrays.
struct FoldersDe(usize);

impl<'de> serde::Deserialize<'de> for FoldersDe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FoldersDe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<FoldersDe, A::Error> {
                let mut n = 0;
                while let Some(FolderDe(k)) = a.next_element::<FolderDe>()? {
                    n += k;
                }
                Ok(FoldersDe(n))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One folder: the length of its `FolderItems` array (0 without one).
struct FolderDe(usize);

impl<'de> serde::Deserialize<'de> for FolderDe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FolderDe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<FolderDe, A::Error> {
                let mut items: Option<usize> = None;
                while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
                    if k == "FolderItems" {
                        let c = a.next_value::<CountDe>()?.0;
                        if items.replace(c).is_some() {
                            return Err(refuse());
                        }
                    } else if k.eq_ignore_ascii_case("FolderItems") {
                        return Err(refuse());
                    } else {
                        a.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(FolderDe(items.unwrap_or(0)))
            }
        }
        d.deserialize_map(V)
    }
}

/// The length of an array, its elements skipped.
struct CountDe(usize);

impl<'de> serde::Deserialize<'de> for CountDe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CountDe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<CountDe, A::Error> {
                let mut n = 0;
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(CountDe(n))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Every lookup the built-in detections make on a MailItemsAccessed record.
#[cfg(any(test, debug_assertions))]
const FAST_CHECKED: &[&str] = &[
    "ClientIPAddress",
    "ActorIpAddress",
    "ClientIP",
    "callerIpAddress",
    "ipAddress",
    "IPAddress",
    "ClientInfoString",
    "UserAgent",
    "userAgent",
    "ActorInfoString",
    "kid",
    "x5t",
    "header.kid",
    "jwt.header.kid",
    "thumbprint",
    "MailboxOwnerUPN",
    "MailAccessType",
    "IsThrottled",
    "AppAccessContext.UniqueTokenId",
    "UniqueTokenId",
    "AppAccessContext.AADSessionId",
    "AADSessionId",
    "SessionId",
    "AppAccessContext.IssuedAtTime",
    "TokenTenantId",
    "RecordType",
    "OperationCount",
];

/// Debug builds: a fast event must answer like the narrow event of the
/// same bytes, normalised fields and every detection lookup alike.
#[cfg(any(test, debug_assertions))]
fn check_fast(ev: &Event, bytes: &[u8]) {
    let n = Event::from_json_narrow(bytes, None, ev.source_file.clone(), ev.locator)
        .expect("a record the fast path reads has a narrow event");
    let norm = |e: &Event| {
        format!(
            "{:?} {:?}",
            (e.kind, e.inner, e.time, &e.user, &e.client_ip, &e.app_id),
            (
                &e.client_app_id,
                &e.session_id,
                &e.token_id,
                &e.operation,
                &e.result,
                &e.workload,
                &e.user_agent,
                e.record_type,
            )
        )
    };
    assert_eq!(norm(ev), norm(&n), "normalised fields");
    for p in FAST_CHECKED {
        assert_eq!(ev.scalar(p), n.scalar(p), "{p}");
        assert_eq!(ev.has(p), n.has(p), "{p}");
    }
    for name in ["MailAccessType", "IsThrottled", "mailaccesstype"] {
        assert_eq!(
            ev.name_value("OperationProperties", name),
            n.name_value("OperationProperties", name),
            "{name}"
        );
    }
    assert_eq!(ev.bind_items(), n.bind_items(), "bind items");
    assert_eq!(ev.mailbox(), n.mailbox(), "mailbox");
}

/// Time fields in preference order: ISO fields before locale-formatted ones.
const TIME_FIELDS: &[&str] = &[
    "CreationTime",
    "createdDateTime",
    "activityDateTime",
    "time",
    "TimeGenerated",
    "Timestamp",
    "eventTimestamp",
    "CreatedDateTime",
    "ActivityDateTime",
    "DetectedDateTime",
    "CreationDate",
    "StartTime",
    "timestamp",
];

// UPN before `UserId`: sign-in tables put the object id in `UserId`.
const USER_FIELDS: &[&str] = &[
    "userPrincipalName",
    "UserPrincipalName",
    "UserId",
    "UserIds",
    "AccountUpn",
    "initiatedBy.user.userPrincipalName",
    "InitiatedBy.user.userPrincipalName",
    "Caller",
    "caller",
    "UserName",
    "servicePrincipalName",
    "identity",
    "sub",
];

const IP_FIELDS: &[&str] = &[
    "ClientIP",
    "ClientIPAddress",
    "Client_IPAddress",
    "ActorIpAddress",
    "ipAddress",
    "IPAddress",
    "callerIpAddress",
    "CallerIpAddress",
    "InitiatingIpAddress",
    "initiatedBy.user.ipAddress",
    "InitiatedBy.user.ipAddress",
    "client_ip",
    "src_ip",
];

/// RecordType names of the UAL enum that matter here (schema doc [S1]).
pub fn record_type_number(name: &str) -> Option<u32> {
    const T: &[(&str, u32)] = &[
        ("ExchangeAdmin", 1),
        ("ExchangeItem", 2),
        ("ExchangeItemGroup", 3),
        ("SharePoint", 4),
        ("SharePointFileOperation", 6),
        ("AzureActiveDirectory", 8),
        ("AzureActiveDirectoryAccountLogon", 9),
        ("SharePointSharingOperation", 14),
        ("AzureActiveDirectoryStsLogon", 15),
        ("SecurityComplianceCenterEOPCmdlet", 18),
        ("MicrosoftTeams", 25),
        ("SharePointListOperation", 36),
        ("SecurityComplianceAlerts", 40),
        ("ExchangeItemAggregated", 50),
        ("OWAAuth", 275),
    ];
    T.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

/// Replaces string values that hold a JSON object or array with the parsed
/// value (`AuditData`, `Folders`, `OperationProperties`, `Parameters`,
/// Log Analytics dynamic columns, `modifiedProperties.newValue`, ...).
pub fn expand_nested(v: &mut Value, depth: u32) {
    match v {
        Value::Object(m) => {
            for (_, x) in m.iter_mut() {
                expand_value(x, depth);
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                expand_value(x, depth);
            }
        }
        _ => {}
    }
}

fn expand_value(x: &mut Value, depth: u32) {
    if let Value::String(s) = x {
        let t = s.trim_start();
        if depth > 0 && (t.starts_with('{') || t.starts_with('[')) {
            if let Ok(parsed) = serde_json::from_str::<Value>(t) {
                if parsed.is_object() || parsed.is_array() {
                    *x = parsed;
                    expand_nested(x, depth - 1);
                }
            }
        }
    } else {
        expand_nested(x, depth);
    }
}

/// Log Analytics portal exports rename columns: `TimeGenerated [UTC]`, and
/// dynamic columns split into `X_dynamic` / `X_string`. Expose them under
/// the table's own names (`TimeGenerated`, `X`) when those are free, so
/// rules and normalisation see one schema.
fn fold_la_columns(v: &mut Value) {
    let Value::Object(m) = v else { return };
    let renames: Vec<(String, String)> = m
        .keys()
        .filter_map(|k| {
            let base = k
                .strip_suffix(" [UTC]")
                .or_else(|| k.strip_suffix("_dynamic"))?;
            (!base.is_empty() && !m.contains_key(base)).then(|| (k.clone(), base.to_string()))
        })
        .collect();
    for (from, to) in renames {
        let val = m[&from].clone();
        let keep = !(val.is_null() || val.as_str().is_some_and(str::is_empty));
        if keep {
            m.insert(to, val);
        } else if let Some(alt) = from
            .strip_suffix("_dynamic")
            .map(|b| format!("{b}_string"))
            .and_then(|s| m.get(&s).cloned())
        {
            m.insert(to, alt);
        }
    }
}

fn has(m: &Map<String, Value>, key: &str) -> bool {
    get_ci(m, key).is_some_and(|v| !v.is_null())
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    get_ci(m, key).and_then(Value::as_str)
}

/// Decides the event kind and the wrapped-record key from the record's own
/// keys (logs.md §5), so files that mix tables still classify per record.
pub fn classify(v: &Value, hint: Option<EventKind>) -> (EventKind, Option<&'static str>) {
    let Value::Object(m) = v else {
        return (hint.unwrap_or(EventKind::Other), None);
    };
    if m.get("AuditData").is_some_and(Value::is_object) {
        return (EventKind::Audit, Some("AuditData"));
    }
    if m.get("RawEventData").is_some_and(Value::is_object) {
        return (EventKind::Audit, Some("RawEventData"));
    }
    if crate::format::is_gateway_record(m) {
        return (EventKind::Gateway, None);
    }
    let table = str_of(m, "Type").unwrap_or("").to_ascii_lowercase();
    let category = str_of(m, "category").unwrap_or("").to_ascii_lowercase();
    let inner = m
        .get("properties")
        .filter(|p| p.is_object())
        .map(|_| "properties");
    if inner.is_some() && has(m, "time") && !category.is_empty() {
        let k = if category.contains("signinlogs") {
            EventKind::SignIn
        } else if category == "auditlogs" {
            EventKind::DirectoryAudit
        } else if str_of(m, "resourceId")
            .is_some_and(|r| r.to_ascii_lowercase().starts_with("/subscriptions/"))
        {
            EventKind::AzureActivity
        } else {
            EventKind::Other
        };
        return (k, inner);
    }
    let by_table = match table.as_str() {
        "officeactivity" | "cloudappevents" => Some(EventKind::Audit),
        t if t.contains("signinlogs") => Some(EventKind::SignIn),
        "auditlogs" => Some(EventKind::DirectoryAudit),
        "azureactivity" => Some(EventKind::AzureActivity),
        // Unknown tables fall through to the shape checks below.
        _ => None,
    };
    if let Some(k) = by_table {
        return (k, None);
    }
    if has(m, "CreationTime") && has(m, "Operation") {
        return (EventKind::Audit, None);
    }
    if has(m, "createdDateTime")
        && (has(m, "userPrincipalName") || has(m, "appId"))
        && (get_ci(m, "ipAddress").is_some()
            || get_ci(m, "status").is_some()
            || get_ci(m, "uniqueTokenIdentifier").is_some())
    {
        return (EventKind::SignIn, None);
    }
    if has(m, "activityDateTime") && has(m, "activityDisplayName") {
        return (EventKind::DirectoryAudit, None);
    }
    if category.contains("signinlogs") {
        return (EventKind::SignIn, None);
    }
    (hint.unwrap_or(EventKind::Other), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_lookup() {
        let v = json!({"AuditData": {"AppAccessContext": {"UniqueTokenId": "abc"}},
                       "Folders": [{"Path": "\\Inbox", "FolderItems": [{"Id": 1}, {"Id": 2}]}],
                       "a.b": 5, "Mixed": {"CaseKey": true}});
        assert_eq!(
            lookup(&v, "AuditData.AppAccessContext.UniqueTokenId"),
            Some(&json!("abc"))
        );
        assert_eq!(
            lookup(&v, "auditdata.appaccesscontext.uniquetokenid"),
            Some(&json!("abc"))
        );
        assert_eq!(lookup(&v, "a.b"), Some(&json!(5)));
        assert_eq!(lookup(&v, "Folders.0.Path"), Some(&json!("\\Inbox")));
        assert_eq!(lookup(&v, "Folders.Path"), Some(&json!("\\Inbox")));
        let mut all = Vec::new();
        lookup_all(&v, "Folders.FolderItems.Id", &mut all);
        assert_eq!(all, vec![&json!(1), &json!(2)]);
        assert_eq!(lookup(&v, "mixed.casekey"), Some(&json!(true)));
        assert_eq!(lookup(&v, "missing.path"), None);
    }

    #[test]
    fn narrow_roots_cover_the_normalised_fields() {
        for p in TIME_FIELDS.iter().chain(USER_FIELDS).chain(IP_FIELDS) {
            assert!(narrow_reaches(p), "{p} missing from NARROW_ROOTS");
        }
    }

    #[test]
    fn narrow_parse_matches_the_full_parse() {
        let line = br#"{"CreationTime":"2023-06-19T01:30:00","Id":"x","Operation":"MailItemsAccessed","RecordType":50,"Workload":"Exchange","UserId":"Dan@Contoso.com","ClientIPAddress":"[2001:db8::5]:443","ClientInfoString":"Client=REST;Client=RESTSystem;;","Ignored":{"deep":[1,2,{"a":"b"}]},"clientip":"51.89.156.153","OperationProperties":"[{\"Name\":\"MailAccessType\",\"Value\":\"Bind\"}]","AppAccessContext":{"AADSessionId":"s1","UniqueTokenId":"t1"},"Folders":[{"FolderItems":[{"Id":1},{"Id":2}]}]}"#;
        let full = Event::from_record(
            serde_json::from_slice(line).unwrap(),
            None,
            Arc::from("f"),
            Locator::default(),
        );
        let narrow =
            Event::from_json_narrow(line, None, Arc::from("f"), Locator::default()).unwrap();
        assert!(narrow.narrow);
        assert!(narrow.record.get("Ignored").is_none());
        assert_eq!(
            format!(
                "{:?}",
                (
                    full.kind,
                    &full.user,
                    &full.client_ip,
                    &full.session_id,
                    &full.token_id,
                    &full.time,
                    &full.operation,
                    &full.record_type
                )
            ),
            format!(
                "{:?}",
                (
                    narrow.kind,
                    &narrow.user,
                    &narrow.client_ip,
                    &narrow.session_id,
                    &narrow.token_id,
                    &narrow.time,
                    &narrow.operation,
                    &narrow.record_type
                )
            )
        );
        for p in ["clientip", "OperationProperties", "Folders.FolderItems"] {
            assert_eq!(full.get_all(p), narrow.get_all(p), "{p}");
        }
        // Root lookups the kept keys rule out are answered without a scan;
        // present, case-variant, dotted and absent paths all agree.
        for p in [
            "CLIENTIP",
            "clientIPaddress",
            "appaccesscontext.uniquetokenid",
            "AppAccessContext.AADSessionId",
            "status.errorCode",
            "ActorIpAddress",
            "kid",
            "jwt.header.kid",
            "Folders.0.FolderItems",
        ] {
            assert_eq!(full.get(p), narrow.get(p), "{p}");
        }
        // Envelopes, renamed columns and bad JSON take the full parse.
        for b in [
            &br#"{"value":[]}"#[..],
            br#"{"A [UTC]":"x"}"#,
            br#"{"a":1"#,
            b"[1]",
        ] {
            assert!(Event::from_json_narrow(b, None, Arc::from("f"), Locator::default()).is_none());
        }
    }

    #[test]
    fn fast_mail_path_answers_like_the_narrow_one() {
        for r in FAST_ROOTS.iter().chain(FAST_SHAPED.iter()) {
            assert!(is_narrow_root(r), "{r}");
        }
        for (i, r) in FAST_ROOTS.iter().enumerate() {
            assert_eq!(fast_root(r), Some(i), "{r}");
        }
        let line = r#"{"CreationTime":"2023-07-13T23:15:31","Id":"e09c","Operation":"MailItemsAccessed","RecordType":50,"ResultStatus":"Succeeded","Workload":"Exchange","ClientIP":"198.51.100.24","UserId":"User1237@Fabrikam.example","AppId":"d3590ed6","ClientAppId":"d3590ed6","ClientIPAddress":"[2001:db8::5]:443","ClientInfoString":"Client=REST;Client=RESTSystem;;","MailboxOwnerUPN":"User1237@fabrikam.example","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"SessionId":"f14d","OperationCount":5,"Folders":[{"FolderItems":[{"Id":1},{"Id":2}],"Path":"\\Inbox"},{"Id":"x"}],"AppAccessContext":{"AADSessionId":"","IssuedAtTime":"2023-07-13T23:05:31","UniqueTokenId":"GWT7","Other":{"a":1}}}"#;
        let f = |l: &str| Event::from_json_fast(l.as_bytes(), Arc::from("f"), Locator::default());
        // Accepted records are checked against the narrow event inside
        // from_json_fast (check_fast) in test and debug builds.
        let ev = f(line).expect("the usual shape takes the fast path");
        assert_eq!(ev.session_id.as_deref(), Some("f14d"));
        assert_eq!(ev.client_ip.as_deref(), Some("198.51.100.24"));
        assert_eq!(ev.bind_items(), 5);
        assert!(ev.get("ClientIP").is_none(), "no record tree");
        assert!(f(&line.replace(r#""OperationCount":5,"#, "")).is_some_and(|e| e.bind_items() == 2));
        assert!(f(&line.replace(r#""ClientIP":"198.51.100.24","#, "")).is_some());
        // Anything a lookup could see differently falls back.
        for (from, to) in [
            (r#""ClientIP":"#, r#""clientip":"#),
            (
                r#""Operation":"MailItemsAccessed""#,
                r#""Operation":"Send""#,
            ),
            (r#""RecordType":50"#, r#""RecordType":"50""#),
            (r#""RecordType":50"#, r#""RecordType":275"#),
            (r#""SessionId":"f14d""#, r#""SessionId":null"#),
            (
                r#""SessionId":"f14d""#,
                r#""SessionId":"f14d","SessionId":"x""#,
            ),
            (
                r#""ClientInfoString":"Client"#,
                r#""ClientInfoString":"[1]","x":"Client"#,
            ),
            (r#""Name":"IsThrottled""#, r#""name":"IsThrottled""#),
            (
                r#""FolderItems":[{"Id":1},{"Id":2}]"#,
                r#""folderitems":[]"#,
            ),
            (r#""UniqueTokenId":"GWT7""#, r#""uniquetokenid":"GWT7""#),
            (r#""UniqueTokenId":"GWT7""#, r#""APIId":"x""#),
            (r#""Id":"e09c""#, r#""UserAgent":"x""#),
            (r#""Id":"e09c""#, r#""value":[]"#),
        ] {
            assert!(line.contains(from), "{from}");
            assert!(f(&line.replacen(from, to, 1)).is_none(), "{to}");
        }
    }

    #[test]
    fn nested_strings_expand_and_normalise() {
        let rec = json!({
            "RecordId": "1", "CreationDate": "9/20/2023 4:05:03 AM", "Operation": "MailItemsAccessed",
            "AuditData": "{\"CreationTime\":\"2023-09-20T04:05:03\",\"Operation\":\"MailItemsAccessed\",\"UserId\":\"Alice@Contoso.com\",\"ClientIPAddress\":\"[2001:db8::5]:443\",\"AppAccessContext\":{\"AADSessionId\":\"s1\",\"UniqueTokenId\":\"t1\"},\"OperationProperties\":\"[{\\\"Name\\\":\\\"MailAccessType\\\",\\\"Value\\\":\\\"Bind\\\"}]\",\"RecordType\":50}"
        });
        let ev = Event::from_record(rec, None, Arc::from("f"), Locator { line: 2, record: 1 });
        assert_eq!(ev.kind, EventKind::Audit);
        assert_eq!(ev.user.as_deref(), Some("alice@contoso.com"));
        assert_eq!(ev.client_ip.as_deref(), Some("2001:db8::5"));
        assert_eq!(ev.session_id.as_deref(), Some("s1"));
        assert_eq!(ev.token_id.as_deref(), Some("t1"));
        assert_eq!(ev.record_type, Some(50));
        assert_eq!(
            ev.name_value("OperationProperties", "mailaccesstype")
                .as_deref(),
            Some("Bind")
        );
        assert_eq!(
            crate::timefmt::rfc3339(ev.time.unwrap()),
            "2023-09-20T04:05:03Z"
        );
        assert_eq!(ev.locator.to_string(), "record 1 (line 2)");
    }
}
