//! RFC 3339 time stamps at the edges (policy files, CLI, reports).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 time stamp into seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))
}

/// Formats seconds since the epoch as RFC 3339 UTC; out-of-range values
/// are shown as the raw number.
pub fn format_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}
