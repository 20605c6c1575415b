//! Dates and durations in reports.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 time stamp into seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))
}

/// RFC 3339 UTC, or the raw number when out of range.
pub fn format_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// `YYYY-MM-DD` (UTC).
pub fn format_date(secs: i64) -> String {
    let full = format_rfc3339(secs);
    full.get(..10).map_or(full.clone(), str::to_owned)
}

/// A duration in whole days, or years with one decimal from two years on.
pub fn format_days(secs: i64) -> String {
    let days = secs / 86400;
    if days >= 730 {
        format!("{:.1} years", days as f64 / 365.25)
    } else if days == 1 {
        "1 day".into()
    } else {
        format!("{days} days")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_date(1_617_546_215), "2021-04-04");
        assert_eq!(format_days(86400), "1 day");
        assert_eq!(format_days(365 * 86400), "365 days");
        assert_eq!(format_days(1826 * 86400), "5.0 years");
        let t = parse_rfc3339("2023-06-15T00:00:00Z").unwrap();
        assert_eq!(format_rfc3339(t), "2023-06-15T00:00:00Z");
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
