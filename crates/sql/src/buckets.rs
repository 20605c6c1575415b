//! The built-ins that count records in time buckets: `tw-audit-gap`
//! (hours with records, per workload or log) and
//! `tw-gateway-rejected-burst` (refused tokens per client address and
//! minute). Both keep one row per bucket, so their state is small and
//! spans every partition once the buckets are counted.

use tokenward_detect::{audit_gap, gateway_rejected_burst as burst};
use tokenward_detect::{Info, Needs, Setup};
use tokenward_event::{EventKind, Severity};

use crate::builtin::{earliest, kinds_of, screen, Compiled};
use crate::dialect::Dialect;

/// Milliseconds since the epoch of the event's time (null without one).
fn time_ms(d: Dialect) -> String {
    d.millis(&d.ident("time"))
}

/// Whole `unit`s of milliseconds since the epoch, rounded down.
fn bucket(ms: &str, unit: u64) -> String {
    format!("CAST(floor(({ms}) / {unit}) AS BIGINT)")
}

/// A null of the finding's text columns.
fn null_text(d: Dialect) -> &'static str {
    match d {
        Dialect::ClickHouse => "CAST(NULL AS Nullable(String))",
        Dialect::Spark => "CAST(NULL AS STRING)",
    }
}

/// `tw-audit-gap` (crates/detect/src/audit_gap.rs): per workload (or log),
/// the hours with records; where they span three days over a day of
/// distinct hours, every run of silent hours at least the configured gap
/// and twice the 90th-percentile run of the others is a finding, dated at
/// the first silent hour, with no record to point to.
pub(crate) fn audit_gap(
    d: Dialect,
    needs: &Needs,
    info: &Info,
    from: &str,
    setup: &Setup,
) -> Result<Compiled, String> {
    let screen = screen(d, needs)?;
    let kind = d.ident("log_kind");
    let mut arms = Vec::new();
    for k in kinds_of(needs) {
        let Some(name) = audit_gap::series_of_kind(k) else {
            continue;
        };
        let value = if k == EventKind::Audit {
            format!("coalesce({}, {})", d.ident("workload"), d.lit(name))
        } else {
            d.lit(name)
        };
        arms.push((format!("{kind} = {}", d.lit(k.as_str())), value));
    }
    let series = d.first_of(&arms, "NULL");
    let name = "b_audit_gap";
    let hour = bucket(&time_ms(d), 3_600_000);
    let (sorted, at) = match d {
        Dialect::ClickHouse => ("arraySort(groupArray(len))", "lens[{i}]"),
        Dialect::Spark => (
            "array_sort(collect_list(len))",
            "element_at(lens, CAST({i} AS INT))",
        ),
    };
    let at = |i: &str| at.replace("{i}", i);
    let size = match d {
        Dialect::ClickHouse => "length(lens)",
        Dialect::Spark => "size(lens)",
    };
    let nine_tenths = match d {
        Dialect::ClickHouse => format!("least(intDiv({size} * 9, 10), {size} - 1) + 1"),
        Dialect::Spark => format!("least(({size} * 9) DIV 10, {size} - 1) + 1"),
    };
    let p90 = format!("CASE WHEN {size} = 0 THEN 0 ELSE {} END", at(&nine_tenths));
    // The longest run must not set its own bar.
    let typical = format!(
        "CASE WHEN {size} >= 2 AND {p90} = {} THEN {} ELSE {p90} END",
        at(size),
        at(&format!("{size} - 1"))
    );
    let gap_hours = setup.options.gap_hours;
    let start = match d {
        Dialect::ClickHouse => "toDateTime64((r.a + 1) * 3600, 3, 'UTC')",
        Dialect::Spark => "timestamp_seconds((r.a + 1) * 3600)",
    };
    let steps = vec![
        (
            format!("{name}_h"),
            format!(
                "  SELECT DISTINCT s, h\n  FROM (\n    SELECT {series} AS s, {hour} AS h\n    FROM {from}\n    WHERE {screen} AND {} IS NOT NULL\n  ) AS x\n  WHERE s IS NOT NULL",
                d.ident("time")
            ),
        ),
        (
            format!("{name}_p"),
            format!(
                "  SELECT s, h,\n    max(h) OVER (PARTITION BY s ORDER BY h ROWS BETWEEN 1 PRECEDING AND 1 PRECEDING) AS prev,\n    row_number() OVER (PARTITION BY s ORDER BY h) AS rn\n  FROM {name}_h"
            ),
        ),
        (
            format!("{name}_r"),
            format!("  SELECT s, prev AS a, h - prev - 1 AS len\n  FROM {name}_p\n  WHERE rn > 1 AND h - prev > 1"),
        ),
        (
            format!("{name}_s"),
            format!(
                "  SELECT s\n  FROM {name}_h\n  GROUP BY s\n  HAVING max(h) - min(h) >= {} AND count(*) >= {}",
                audit_gap::SPAN_HOURS_MIN,
                audit_gap::ACTIVE_HOURS_MIN
            ),
        ),
        (
            format!("{name}_t"),
            format!(
                "  SELECT s, greatest({gap_hours}, 2 * ({typical})) AS threshold\n  FROM (\n    SELECT s, {sorted} AS lens\n    FROM {name}_r\n    GROUP BY s\n  ) AS x"
            ),
        ),
    ];
    let null = null_text(d);
    let select = format!(
        "{}, {start} AS {}, {null} AS {}, {null} AS {}, {null} AS {}, {null} AS {}, {null} AS {}, '' AS {}, '' AS {}\nFROM {name}_r AS r\nINNER JOIN {name}_s AS j ON j.s = r.s\nINNER JOIN {name}_t AS t ON t.s = r.s\nWHERE r.len >= t.threshold",
        crate::corr::finding_head(d, info.id, info.title, &d.lit(Severity::Medium.as_str())),
        d.ident("time"),
        d.ident("user"),
        d.ident("client_ip"),
        d.ident("app_id"),
        d.ident("session_id"),
        d.ident("token_id"),
        d.ident("source_file"),
        d.ident("source_locator"),
    );
    Ok(Compiled::Grouped { steps, select })
}

/// `tw-gateway-rejected-burst` (crates/detect/src/gateway_rejected_burst.rs):
/// per client address, the minutes with refused tokens; a window of the
/// configured minutes starting at such a minute with the configured
/// number of refusals starts or extends a burst, one finding per burst,
/// high when the address got a token accepted from the burst's first
/// refusal to an hour after its last minute.
pub(crate) fn gateway_rejected_burst(
    d: Dialect,
    needs: &Needs,
    info: &Info,
    from: &str,
    setup: &Setup,
) -> Result<Compiled, String> {
    let screen = screen(d, needs)?;
    let kinds = d.kind_in(&kinds_of(needs));
    let width = u64::from(setup.options.gateway_burst_minutes.max(1));
    let min = setup.options.gateway_burst_min.max(1);
    let name = "b_gateway_burst";
    let ms = time_ms(d);
    let (ip, result, time) = (d.ident("client_ip"), d.ident("result"), d.ident("time"));
    let (pick, cols) = earliest(d, "w", &[]);
    let per_ip = "PARTITION BY ip ORDER BY m";
    let steps = vec![
        (
            format!("{name}_r"),
            format!(
                "  SELECT *, {ip} AS ip, {} AS m, {ms} AS g_ms\n  FROM {from}\n  WHERE {kinds} AND {screen} AND {result} IN ({}, {}) AND {ip} IS NOT NULL AND {time} IS NOT NULL",
                bucket(&ms, 60_000),
                d.lit(burst::REJECTED),
                d.lit(burst::ACCEPTED),
            ),
        ),
        // Refused tokens per address and minute, with the minute's
        // earliest record and first time.
        (
            format!("{name}_m"),
            format!(
                "  SELECT ip, m, count(*) AS n, min(g_ms) AS first_ms, {pick} AS w\n  FROM {name}_r\n  WHERE {result} = {}\n  GROUP BY ip, m",
                d.lit(burst::REJECTED)
            ),
        ),
        // Each minute opens a window; one that holds enough refusals
        // qualifies, and reaches to the last minute inside it.
        (
            format!("{name}_w"),
            format!(
                "  SELECT *, win >= {min} AS q, CASE WHEN win >= {min} THEN win_end END AS q_end\n  FROM (\n    SELECT *,\n      sum(n) OVER ({per_ip} RANGE BETWEEN CURRENT ROW AND {} FOLLOWING) AS win,\n      max(m) OVER ({per_ip} RANGE BETWEEN CURRENT ROW AND {} FOLLOWING) AS win_end\n    FROM {name}_m\n  ) AS x",
                width - 1,
                width - 1
            ),
        ),
        // A qualifying window past the reach of every earlier one starts
        // a burst; the others extend it.
        (
            format!("{name}_s"),
            format!(
                "  SELECT *, sum(CASE WHEN q AND (prev_end IS NULL OR m > prev_end) THEN 1 ELSE 0 END) OVER ({per_ip} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS burst\n  FROM (\n    SELECT *, max(q_end) OVER ({per_ip} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end\n    FROM {name}_w\n  ) AS x"
            ),
        ),
        (
            format!("{name}_b"),
            format!(
                "  SELECT ip, burst, min(m) AS start_m, max(q_end) AS end_m\n  FROM {name}_s\n  WHERE burst > 0\n  GROUP BY ip, burst"
            ),
        ),
        // The burst's minutes: from its start to the reach of its last
        // qualifying window; its first refusal and earliest record.
        (
            format!("{name}_f"),
            format!(
                "  SELECT b.ip AS ip, b.burst AS burst, b.start_m AS start_m, b.end_m AS end_m, min(s.first_ms) AS first_ms, {} AS w\n  FROM {name}_b AS b\n  INNER JOIN {name}_s AS s ON s.ip = b.ip AND s.burst = b.burst\n  WHERE s.m <= b.end_m\n  GROUP BY b.ip, b.burst, b.start_m, b.end_m",
                match d {
                    Dialect::ClickHouse => "argMin(s.w, s.m)",
                    Dialect::Spark => "min_by(s.w, s.m)",
                }
            ),
        ),
        (
            format!("{name}_a"),
            format!(
                "  SELECT ip, m, min(g_ms) AS first_ms\n  FROM {name}_r\n  WHERE {result} = {}\n  GROUP BY ip, m",
                d.lit(burst::ACCEPTED)
            ),
        ),
        (
            format!("{name}_h"),
            format!(
                "  SELECT f.ip AS ip, f.burst AS burst, max(CASE WHEN a.m >= f.start_m AND a.m <= f.end_m + {} AND a.first_ms >= f.first_ms THEN 1 ELSE 0 END) AS high\n  FROM {name}_f AS f\n  LEFT JOIN {name}_a AS a ON a.ip = f.ip\n  GROUP BY f.ip, f.burst",
                burst::FOLLOW_MINUTES
            ),
        ),
    ];
    let select = format!(
        "{}, {}\nFROM (\n  SELECT f.w AS w, f.ip AS ip, f.burst AS burst\n  FROM {name}_f AS f\n) AS p\nINNER JOIN {name}_h AS h ON h.ip = p.ip AND h.burst = p.burst",
        crate::corr::finding_head(d, info.id, info.title, "CASE WHEN h.high = 1 THEN 'high' ELSE 'medium' END"),
        cols.join(", ")
    );
    Ok(Compiled::Grouped { steps, select })
}
