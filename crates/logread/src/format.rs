//! Input formats and their recognition from a file's first bytes (logs.md §0, §5).

use serde_json::Value;

/// How records are laid out in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// One JSON value per line (NDJSON / JSON Lines).
    JsonLines,
    /// JSON arrays, envelopes and pretty-printed objects, split by structure.
    JsonStream,
    /// JSON lines some of which are envelopes (one `{"records":[...]}` a
    /// line), split by structure within each line: no record runs past
    /// its line's end.
    EnvelopeLines,
    /// Delimited text with a header row.
    Csv,
}

/// A named export format. The name is what `--input-format` accepts and
/// what summaries report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Office 365 Management Activity API content blob (JSON array).
    UalJson,
    /// UAL records one per line, as collectors write them.
    UalJsonLines,
    /// Purview audit-search CSV export (`AuditData` column).
    PurviewCsv,
    /// `Search-UnifiedAuditLog | Export-Csv` (`#TYPE` line, `UserIds`, `;`).
    PowerShellCsv,
    /// `Search-UnifiedAuditLog | ConvertTo-Json` objects.
    PowerShellJson,
    /// Microsoft Graph `signIn` / `directoryAudit` JSON (`value` pages or bare arrays).
    GraphJson,
    /// Azure Monitor diagnostic export, `{"records":[...]}`.
    AzureMonitorJson,
    /// Azure Monitor diagnostic export as JSON lines (`PT1H.json` blobs).
    AzureMonitorJsonLines,
    /// Log Analytics / Sentinel table rows as JSON.
    LogAnalyticsJson,
    /// Log Analytics portal CSV export (`... [UTC]` columns).
    LogAnalyticsCsv,
    /// Defender XDR `CloudAppEvents` rows.
    DefenderJson,
    /// The access log of `tokenward gateway`: one JSON object per request
    /// (docs/gateway.md, "The access log").
    GatewayJsonLines,
    /// Any other JSON lines.
    JsonLines,
    /// Any other JSON (array or objects).
    Json,
    /// Any other CSV.
    Csv,
}

impl Format {
    /// Every format, for help texts.
    pub const ALL: &'static [Format] = &[
        Format::UalJson,
        Format::UalJsonLines,
        Format::PurviewCsv,
        Format::PowerShellCsv,
        Format::PowerShellJson,
        Format::GraphJson,
        Format::AzureMonitorJson,
        Format::AzureMonitorJsonLines,
        Format::LogAnalyticsJson,
        Format::LogAnalyticsCsv,
        Format::DefenderJson,
        Format::GatewayJsonLines,
        Format::JsonLines,
        Format::Json,
        Format::Csv,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Format::UalJson => "ual-json",
            Format::UalJsonLines => "ual-jsonl",
            Format::PurviewCsv => "purview-csv",
            Format::PowerShellCsv => "powershell-csv",
            Format::PowerShellJson => "powershell-json",
            Format::GraphJson => "graph-json",
            Format::AzureMonitorJson => "azure-monitor-json",
            Format::AzureMonitorJsonLines => "azure-monitor-jsonl",
            Format::LogAnalyticsJson => "log-analytics-json",
            Format::LogAnalyticsCsv => "log-analytics-csv",
            Format::DefenderJson => "defender-json",
            Format::GatewayJsonLines => "tokenward-gateway",
            Format::JsonLines => "jsonl",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    /// Parses a name as given to `--input-format`.
    pub fn from_name(s: &str) -> Option<Format> {
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }

    /// Whether the format is delimited text.
    pub fn is_csv(self) -> bool {
        matches!(
            self,
            Format::PurviewCsv | Format::PowerShellCsv | Format::LogAnalyticsCsv | Format::Csv
        )
    }

    /// Whether every record of the format is a Microsoft 365 unified
    /// audit log record, whatever its own fields say.
    pub fn holds_audit_records(self) -> bool {
        matches!(
            self,
            Format::UalJson
                | Format::UalJsonLines
                | Format::PurviewCsv
                | Format::PowerShellCsv
                | Format::PowerShellJson
                | Format::DefenderJson
        )
    }
}

fn has(m: &serde_json::Map<String, Value>, k: &str) -> bool {
    m.keys().any(|x| x.eq_ignore_ascii_case(k))
}

/// Whether an object has the keys only the gateway's access log writes
/// together: `verdict` and `token_sha256_prefix` (present, `null` included,
/// since lines without a token carry `null` there).
pub fn is_gateway_record(m: &serde_json::Map<String, Value>) -> bool {
    m.contains_key("verdict") && m.contains_key("token_sha256_prefix")
}

/// Names the format of a JSON file from its first record.
pub fn json_format(first: &Value, lines: bool) -> Format {
    let Value::Object(m) = first else {
        return if lines {
            Format::JsonLines
        } else {
            Format::Json
        };
    };
    let pick = |a: Format, b: Format| if lines { b } else { a };
    // Before the generic shapes: a gateway line also has `time`.
    if is_gateway_record(m) {
        return Format::GatewayJsonLines;
    }
    if m.get("records").is_some_and(Value::is_array) {
        return pick(Format::AzureMonitorJson, Format::AzureMonitorJsonLines);
    }
    if let Some(Value::Array(v)) = m.get("value") {
        return envelope_format("value", v.first());
    }
    if has(m, "AuditData") && (has(m, "Operations") || has(m, "CreationDate")) {
        return Format::PowerShellJson;
    }
    if has(m, "CreationTime") && has(m, "Operation") && (has(m, "RecordType") || has(m, "Workload"))
    {
        return pick(Format::UalJson, Format::UalJsonLines);
    }
    if has(m, "time") && has(m, "category") && (has(m, "operationName") || has(m, "properties")) {
        return pick(Format::AzureMonitorJson, Format::AzureMonitorJsonLines);
    }
    if has(m, "TimeGenerated") && (has(m, "Type") || has(m, "TenantId") || has(m, "SourceSystem")) {
        return Format::LogAnalyticsJson;
    }
    if (has(m, "createdDateTime") && (has(m, "userPrincipalName") || has(m, "appId")))
        || (has(m, "activityDateTime") && has(m, "activityDisplayName"))
    {
        return Format::GraphJson;
    }
    if has(m, "Timestamp") && has(m, "ActionType") {
        return Format::DefenderJson;
    }
    if lines {
        Format::JsonLines
    } else {
        Format::Json
    }
}

/// Names the format of an envelope's records, given the member holding
/// them and the first record: Azure Monitor's `records`, or a Graph page's
/// `value`, named by its record when that has a format of its own.
pub fn envelope_format(key: &str, first: Option<&Value>) -> Format {
    if key == "records" {
        return Format::AzureMonitorJson;
    }
    match first.map(|x| json_format(x, false)) {
        None | Some(Format::Json) => Format::GraphJson,
        Some(inner) => inner,
    }
}

/// Names the format of a CSV file from its header.
pub fn csv_format(header: &[String], type_line: bool, delimiter: u8) -> Format {
    let has = |k: &str| header.iter().any(|h| h.eq_ignore_ascii_case(k));
    if has("AuditData") {
        if type_line || delimiter == b';' || has("UserIds") || has("ResultIndex") {
            Format::PowerShellCsv
        } else {
            Format::PurviewCsv
        }
    } else if header.iter().any(|h| h.ends_with(" [UTC]"))
        || (has("TenantId") && has("SourceSystem"))
        || (has("SourceSystem") && has("Type"))
    {
        Format::LogAnalyticsCsv
    } else {
        Format::Csv
    }
}
