//! Timestamp parsing for every shape the Microsoft exports use (logs.md §6).
//!
//! Hand-rolled rather than `time::format_description` because one call must
//! accept ISO 8601 with 0–7 fractional digits, with or without a zone, and the
//! US-locale forms of the Purview and Log Analytics CSV exports; trying a list
//! of format descriptions per field would cost several failed parses per record.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parses a timestamp and returns it in UTC.
///
/// Accepted: `2015-06-29T20:03:19` (zone-less, taken as UTC, as the UAL
/// schema specifies), `...Z`, `...±HH:MM`, 0–9 fractional digits, a space
/// instead of `T`, `9/20/2023 4:05:03 AM`, `4/28/2021, 3:05:26.000 PM`,
/// `4/28/2021 15:05:26`, `/Date(1709251807000)/` (milliseconds since
/// 1970, as Windows PowerShell's `ConvertTo-Json` writes a date, with or
/// without a `±hhmm` that names the writer's zone, not the instant), and
/// surrounding whitespace.
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        parse_iso(b)
    } else if let Some(ms) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        parse_dotnet_ms(ms)
    } else if b.contains(&b'/') {
        parse_us(b)
    } else {
        None
    }
}

/// The inside of `/Date(...)/`: signed milliseconds since 1970 UTC, then
/// an optional `+hhmm` or `-hhmm` zone, which does not move the instant.
fn parse_dotnet_ms(inner: &str) -> Option<OffsetDateTime> {
    let b = inner.as_bytes();
    let digits_from = usize::from(b.first() == Some(&b'-'));
    let end = b[digits_from..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(b.len(), |p| p + digits_from);
    if end == digits_from || end - digits_from > 15 {
        return None;
    }
    let zone = &b[end..];
    if !(zone.is_empty()
        || zone.len() == 5
            && matches!(zone[0], b'+' | b'-')
            && zone[1..].iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let ms: i64 = inner[..end].parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

#[allow(clippy::too_many_arguments)] // one argument per calendar/clock field reads clearest
fn make(
    y: u32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    nanos: u32,
    off_secs: i32,
) -> Option<OffsetDateTime> {
    let month = Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
    // Leap seconds (`:60`) are folded into the preceding second.
    let s = s.min(59);
    let t = Time::from_hms_nano(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
        nanos,
    )
    .ok()?;
    let off = UtcOffset::from_whole_seconds(off_secs).ok()?;
    // Checked: a time near either end of the years `time` holds may have
    // no UTC form (`9999-12-31T23:30:00-01:00`), and converting it
    // unchecked panics; such a time is unreadable, as a malformed one is.
    PrimitiveDateTime::new(date, t)
        .assume_offset(off)
        .checked_to_offset(UtcOffset::UTC)
}

fn frac_nanos(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 9 {
            n = n * 10 + u32::from(c - b'0');
        }
    }
    for _ in b.len()..9 {
        n *= 10;
    }
    Some(n)
}

fn parse_iso(b: &[u8]) -> Option<OffsetDateTime> {
    let y = digits(&b[0..4])?;
    let mo = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if b.len() == 10 {
        return make(y, mo, d, 0, 0, 0, 0, 0);
    }
    if b.len() < 16 || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b[13] != b':' {
        return None;
    }
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let mut i = 16;
    let mut s = 0;
    if b.len() >= 19 && b[16] == b':' {
        s = digits(&b[17..19])?;
        i = 19;
    }
    let mut nanos = 0;
    if i < b.len() && (b[i] == b'.' || b[i] == b',') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        nanos = frac_nanos(&b[start..end])?;
        i = end;
    }
    let rest = &b[i..];
    let off = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), r @ ..] => {
            let (oh, om) = match r.len() {
                5 if r[2] == b':' => (digits(&r[0..2])?, digits(&r[3..5])?),
                4 => (digits(&r[0..2])?, digits(&r[2..4])?),
                2 => (digits(r)?, 0),
                _ => return None,
            };
            let secs = i32::try_from(oh * 3600 + om * 60).ok()?;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    make(y, mo, d, h, mi, s, nanos, off)
}

/// `M/D/YYYY[,] h:mm[:ss[.fff]] [AM|PM]`, as written by en-US exports.
fn parse_us(b: &[u8]) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(b).ok()?;
    let (date, rest) = match s.find([' ', ',']) {
        Some(p) => (&s[..p], s[p..].trim_start_matches([',', ' '])),
        None => (s, ""),
    };
    let mut dp = date.split('/');
    let mo = digits(dp.next()?.as_bytes())?;
    let d = digits(dp.next()?.as_bytes())?;
    let y = digits(dp.next()?.as_bytes())?;
    if dp.next().is_some() || y < 1000 {
        return None;
    }
    if rest.is_empty() {
        return make(y, mo, d, 0, 0, 0, 0, 0);
    }
    let mut parts = rest.split_whitespace();
    let clock = parts.next()?;
    let ampm = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let mut cp = clock.split(':');
    let mut h = digits(cp.next()?.as_bytes())?;
    let mi = digits(cp.next()?.as_bytes())?;
    let (sec, nanos) = match cp.next() {
        Some(sf) => match sf.split_once('.') {
            Some((a, f)) => (digits(a.as_bytes())?, frac_nanos(f.as_bytes())?),
            None => (digits(sf.as_bytes())?, 0),
        },
        None => (0, 0),
    };
    match ampm.map(|a| a.to_ascii_uppercase()).as_deref() {
        Some("AM") if h == 12 => h = 0,
        Some("PM") if h != 12 => h += 12,
        Some("AM" | "PM") | None => {}
        Some(_) => return None,
    }
    make(y, mo, d, h, mi, sec, nanos, 0)
}

/// Formats a time as RFC 3339 in UTC with whole seconds or, when present,
/// the sub-second digits (`2023-06-20T03:14:07Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    with_rfc3339(t, str::to_owned)
}

/// Hands the text of [`rfc3339`] to `f`, without allocating it for the
/// years the digits of [`Rfc3339`] hold (a finding serialising its time).
pub(crate) fn with_rfc3339<R>(t: OffsetDateTime, f: impl FnOnce(&str) -> R) -> R {
    match Rfc3339::of(t) {
        Some(r) => f(r.as_str()),
        None => f(&rfc3339_formatted(t)),
    }
}

/// [`rfc3339`] through `format!`, for the years the digits of [`Rfc3339`]
/// do not hold. A time with no UTC form in the years `time` holds (never
/// one [`parse_timestamp`] gives) is written with its own offset.
fn rfc3339_formatted(t: OffsetDateTime) -> String {
    let Some(t) = t.checked_to_offset(UtcOffset::UTC) else {
        let (h, m, _) = t.offset().as_hms();
        let sign = if t.offset().is_negative() { '-' } else { '+' };
        let zone = format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs());
        return rfc3339_formatted(t.replace_offset(UtcOffset::UTC)).replace('Z', &zone);
    };
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let n = t.nanosecond();
    if n == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{n:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

/// The text of [`rfc3339`] written into a buffer of its own: every finding
/// written out formats its time, and four `format!` calls a time were 2 %
/// of the instructions of a hunt whose rule fires on most sign-ins.
struct Rfc3339 {
    /// `YYYY-MM-DDTHH:MM:SS`, up to ten bytes of `.fraction`, `Z`.
    text: [u8; 30],
    len: usize,
}

impl Rfc3339 {
    /// `None` for a UTC year before 0 or after 9999, or no UTC form.
    fn of(t: OffsetDateTime) -> Option<Rfc3339> {
        let t = t.checked_to_offset(UtcOffset::UTC)?;
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut text = [0u8; 30];
        let mut put = |at: usize, digits: usize, mut n: u32| {
            for i in (at..at + digits).rev() {
                text[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(t.month())));
        put(8, 2, u32::from(t.day()));
        put(11, 2, u32::from(t.hour()));
        put(14, 2, u32::from(t.minute()));
        put(17, 2, u32::from(t.second()));
        let mut len = 19;
        let nanos = t.nanosecond();
        if nanos != 0 {
            put(20, 9, nanos);
            len = 29;
            while text[len - 1] == b'0' {
                len -= 1;
            }
        }
        for (at, b) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            text[at] = b;
        }
        text[len] = b'Z';
        Some(Rfc3339 { text, len: len + 1 })
    }

    /// The RFC 3339 text, borrowed from the buffer (no allocation).
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).expect("ASCII digits and separators")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        rfc3339(parse_timestamp(s).unwrap_or_else(|| panic!("no parse: {s}")))
    }

    /// A time whose UTC form falls past the years `time` holds is
    /// unreadable, not a panic: one crafted record must not end a hunt.
    #[test]
    fn times_without_a_utc_form_are_unreadable() {
        assert_eq!(parse_timestamp("9999-12-31T23:30:00-01:00"), None);
        let last = parse_timestamp("9999-12-31T23:30:00+01:00").expect("UTC 22:30");
        assert_eq!(rfc3339(last), "9999-12-31T22:30:00Z");
        // Formatting a time that has no UTC form keeps its own offset.
        let edge = time::macros::datetime!(9999-12-31 23:30 -01:00);
        assert_eq!(rfc3339(edge), "9999-12-31T23:30:00-01:00");
    }

    /// The digits written by hand are the text `format!` gives, with and
    /// without sub-second digits, at the ends of the years they hold, and
    /// the years they do not hold still format.
    #[test]
    fn rfc3339_by_hand_reads_as_formatted() {
        let times = [
            "2023-06-20T03:14:07Z",
            "2023-06-20T03:14:07.5Z",
            "2023-06-20T03:14:07.1234567Z",
            "2024-02-29T23:59:59.000000001Z",
            "2024-03-01T00:00:00.100Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2023-06-20T05:14:07+02:00",
        ];
        for s in times {
            let t = parse_timestamp(s).unwrap_or_else(|| panic!("no parse: {s}"));
            assert!(Rfc3339::of(t).is_some(), "{s}");
            assert_eq!(rfc3339(t), rfc3339_formatted(t), "{s}");
        }
        assert_eq!(
            r("2023-06-20T03:14:07.1234567Z"),
            "2023-06-20T03:14:07.1234567Z"
        );
        // An offset that takes the UTC date out of the years the digits hold.
        let t = parse_timestamp("0000-01-01T00:30:00+01:00").expect("a UTC time in year -1");
        assert!(Rfc3339::of(t).is_none());
        assert_eq!(rfc3339(t), "-001-12-31T23:30:00Z");
        let before_year_0 = OffsetDateTime::from_unix_timestamp(-62_167_219_201).unwrap();
        assert!(Rfc3339::of(before_year_0).is_none());
        assert_eq!(rfc3339(before_year_0), "-001-12-31T23:59:59Z");
    }

    #[test]
    fn all_logs_md_shapes() {
        assert_eq!(r("2015-06-29T20:03:19"), "2015-06-29T20:03:19Z");
        assert_eq!(r("2021-08-02T13:32:07.0000000Z"), "2021-08-02T13:32:07Z");
        assert_eq!(
            r("2019-03-12T16:02:15.5522137Z"),
            "2019-03-12T16:02:15.5522137Z"
        );
        assert_eq!(
            r("2019-10-18T04:45:48.0729893-05:00"),
            "2019-10-18T09:45:48.0729893Z"
        );
        assert_eq!(r("2025-05-02T00:32:36Z"), "2025-05-02T00:32:36Z");
        assert_eq!(
            r("2025-05-02T09:19:09.286602Z"),
            "2025-05-02T09:19:09.286602Z"
        );
        assert_eq!(r("9/20/2023 4:05:03 AM"), "2023-09-20T04:05:03Z");
        assert_eq!(r("4/28/2021, 3:05:26.000 PM"), "2021-04-28T15:05:26Z");
        assert_eq!(r("12/1/2021, 12:00:01.000 AM"), "2021-12-01T00:00:01Z");
        assert_eq!(r("2026-01-24T06:54:24.0000000Z "), "2026-01-24T06:54:24Z");
        assert_eq!(r("2025-01-15 14:20:35.456"), "2025-01-15T14:20:35.456Z");
    }

    /// Windows PowerShell's `ConvertTo-Json` writes a `DateTime` as
    /// `"\/Date(ms)\/"` (JSON text for `/Date(ms)/`), with the writer's
    /// zone after the milliseconds when the date was local; the instant
    /// is the milliseconds either way.
    #[test]
    fn powershell_json_dates() {
        assert_eq!(r("/Date(1709251807000)/"), "2024-03-01T00:10:07Z");
        assert_eq!(r("/Date(1709251807123+0100)/"), "2024-03-01T00:10:07.123Z");
        assert_eq!(r("/Date(1709251807000-0500)/"), "2024-03-01T00:10:07Z");
        assert_eq!(r(" /Date(-86400000)/ "), "1969-12-31T00:00:00Z");
        for bad in [
            "/Date()/",
            "/Date(-)/",
            "/Date(17092518070x0)/",
            "/Date(1709251807000+01)/",
            "/Date(1709251807000)",
            "/Date(9999999999999999999)/",
            "Date(1709251807000)",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "abc",
            "2023-13-01T00:00:00Z",
            "13/45/2021 1:00 PM",
            "2023-01-01Tx",
        ] {
            assert!(parse_timestamp(s).is_none(), "{s}");
        }
    }
}
