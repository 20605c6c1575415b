//! Sigma correlations with the embedded engine's window semantics
//! (tokenward_sigma::correlate): per group, the matches sorted by time;
//! each match opens the window `[t, t + timespan]`; the first window that
//! meets the condition is reported (at its first match) and the next one
//! may only open after its last match.
//!
//! In SQL that is three steps. Matches are ordered by time in
//! milliseconds, then file and position (line, record). Window functions give, for the
//! window each match opens, its aggregate and where it ends. A fold over
//! each group's matches, in order, then picks the windows exactly as the
//! greedy scan does: a match may open a reported window only past the end
//! of the last one.
//!
//! One difference remains, in matches of one group within the same
//! millisecond, which hunt orders as they arrive (so its own answer there
//! depends on thread timing): a RANGE frame starts at the first of such
//! ties, so every tie gets the aggregate of the window the first opens.
//! `event_count` is exact (counted from row numbers), and so are the other
//! counting kinds under `gt`/`gte` conditions, since a window that fails
//! cannot succeed with fewer matches.

use tokenward_sigma::correlate::{Correlation, Kind, Op, Ref};
use tokenward_sigma::matcher::Cmp;

use crate::dialect::Dialect;
use crate::sigma::SigmaCompiler;

/// Longest timespan ClickHouse takes as a RANGE frame offset.
const CLICKHOUSE_SPAN_MAX_MS: i64 = i32::MAX as i64;

/// The head of a findings `SELECT`: the rule's id and title and the
/// severity (an SQL expression), named as in hunt's JSONL findings.
pub(crate) fn finding_head(d: Dialect, id: &str, title: &str, severity: &str) -> String {
    format!(
        "SELECT {} AS rule_id, {} AS rule_title, {severity} AS severity",
        d.lit(id),
        d.lit(title)
    )
}

/// The event columns a finding carries, after rule id, title, severity.
pub(crate) const EVENT_COLUMNS: [&str; 8] = {
    let all = crate::FINDING_COLUMNS;
    [
        all[3], all[4], all[5], all[6], all[7], all[8], all[9], all[10],
    ]
};

/// One compiled correlation: its query steps (name, body) and the SELECT
/// of its findings.
pub(crate) struct Compiled {
    pub(crate) steps: Vec<(String, String)>,
    pub(crate) select: String,
}

fn cmp(op: &Op, v: &str, n: &str) -> String {
    match op {
        Op::Cmp(Cmp::Lt) => format!("{v} < {n}"),
        Op::Cmp(Cmp::Lte) => format!("{v} <= {n}"),
        Op::Cmp(Cmp::Gt) => format!("{v} > {n}"),
        Op::Cmp(Cmp::Gte) => format!("{v} >= {n}"),
        Op::Cmp(Cmp::Eq) => format!("{v} = {n}"),
        Op::Neq => format!("{v} <> {n}"),
    }
}

/// Compiles correlation `ci`, reading the scan step `from`.
pub(crate) fn compile(
    sc: &mut SigmaCompiler<'_>,
    ci: usize,
    from: &str,
) -> Result<Compiled, String> {
    let set = sc.set;
    let d = sc.d;
    let c: &Correlation = &set.correlations[ci];
    if !c.output {
        return Err(
            "feeds another correlation (correlations of correlations are not compiled yet)".into(),
        );
    }
    if d == Dialect::ClickHouse && c.span_ms > CLICKHOUSE_SPAN_MAX_MS {
        return Err(
            "timespan longer than 2^31-1 ms (24.8 days): ClickHouse RANGE frames take 32-bit offsets"
                .into(),
        );
    }
    let name = |s: &str| format!("c{ci}_{s}");
    let ngroups = c.group_by.len();
    let groups: Vec<String> = (0..ngroups).map(|i| format!("g{i}")).collect();

    // Step 1: the matches, one row per (event, referenced rule), each under
    // the first of the rule's log sources it matches, as hunt evaluates.
    let mut parts = Vec::new();
    for (pos, r) in c.refs.iter().enumerate() {
        let Ref::Rule(ri) = *r else {
            return Err(
                "refers to a correlation (correlations of correlations are not compiled yet)"
                    .into(),
            );
        };
        let rule = &set.rules[ri];
        let preds = sc.per_mapping(&rule.compiled)?;
        for (k, (mi, _)) in rule.compiled.iter().enumerate() {
            let (gids, vid) = c
                .extraction(ri, *mi)
                .ok_or("a referenced rule without extracted fields")?;
            sc.enter(*mi);
            let mut cols: Vec<String> = EVENT_COLUMNS
                .iter()
                .chain(&["source_line", "source_record"])
                .map(|x| d.ident(x))
                .collect();
            cols.push(format!("{pos} AS pos"));
            for (i, g) in gids.iter().enumerate() {
                let f = sc.column(*g)?;
                let nn = d.non_null(&f);
                cols.push(format!("{} AS g{i}", first_or_null(d, &nn)));
            }
            let vals = match vid {
                Some(v) => {
                    let f = sc.column(v)?;
                    let nn = d.non_null(&f);
                    match c.kind {
                        Kind::ValueCount => d.map(&nn, "x", &d.lower("x")),
                        _ => numbers(d, &nn),
                    }
                }
                None => match d {
                    Dialect::ClickHouse => "CAST([], 'Array(String)')".into(),
                    Dialect::Spark => "CAST(array() AS ARRAY<STRING>)".into(),
                },
            };
            cols.push(format!("{vals} AS vals"));
            let earlier = &preds[..k];
            let mut cond = preds[k].clone();
            if !earlier.is_empty() {
                cond = format!("{cond} AND NOT ({})", earlier.join(" OR "));
            }
            parts.push(format!(
                "  SELECT {}\n  FROM {from}\n  WHERE {} IS NOT NULL AND {cond}",
                cols.join(", "),
                d.ident("time")
            ));
        }
    }
    let mut steps = vec![(name("m"), parts.join("\n  UNION ALL\n"))];

    // Step 2: the order key, then per match the window it opens.
    let part_by = |extra: &[&str]| -> String {
        let mut v: Vec<String> = groups.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        if v.is_empty() {
            String::new()
        } else {
            format!("PARTITION BY {} ", v.join(", "))
        }
    };
    let ms = match d {
        Dialect::ClickHouse => {
            format!("toUnixTimestamp64Milli(assumeNotNull({}))", d.ident("time"))
        }
        Dialect::Spark => format!("unix_millis({})", d.ident("time")),
    };
    steps.push((
        name("k"),
        format!("  SELECT *, {ms} AS ms\n  FROM {}", name("m")),
    ));
    let reach = c.span_ms;
    let frame = format!(
        "({}ORDER BY ms RANGE BETWEEN CURRENT ROW AND {reach} FOLLOWING)",
        part_by(&[])
    );
    let value = match (c.kind, d) {
        (Kind::EventCount, _) => "CAST(wend - rn + 1 AS DOUBLE)".to_string(),
        (Kind::ValueCount, Dialect::ClickHouse) => {
            format!("toFloat64(length(groupUniqArrayArray(vals) OVER {frame}))")
        }
        (Kind::ValueCount, Dialect::Spark) => format!(
            "CAST(size(array_distinct(flatten(collect_list(vals) OVER {frame}))) AS DOUBLE)"
        ),
        (Kind::Temporal, Dialect::ClickHouse) => {
            format!("toFloat64(uniqExact(pos) OVER {frame})")
        }
        (Kind::Temporal, Dialect::Spark) => {
            format!("CAST(size(collect_set(pos) OVER {frame}) AS DOUBLE)")
        }
        (Kind::ValueSum | Kind::ValueAvg, _) => {
            let (sum, n) = match d {
                Dialect::ClickHouse => (
                    format!("sum(arraySum(vals)) OVER {frame}"),
                    format!("sum(length(vals)) OVER {frame}"),
                ),
                Dialect::Spark => (
                    format!(
                        "sum(aggregate(vals, CAST(0 AS DOUBLE), (a, x) -> a + x)) OVER {frame}"
                    ),
                    format!("sum(size(vals)) OVER {frame}"),
                ),
            };
            let v = if c.kind == Kind::ValueSum {
                sum
            } else {
                format!("({sum}) / ({n})")
            };
            d.if_(
                &format!("({n}) > 0"),
                &format!("CAST({v} AS DOUBLE)"),
                "NULL",
            )
        }
        (Kind::ValueMedian | Kind::ValuePercentile, _) => {
            let p = if c.kind == Kind::ValueMedian {
                50.0
            } else {
                c.percentile
            };
            let all = match d {
                Dialect::ClickHouse => format!("arraySort(groupArrayArray(vals) OVER {frame})"),
                Dialect::Spark => format!("sort_array(flatten(collect_list(vals) OVER {frame}))"),
            };
            let len = match d {
                Dialect::ClickHouse => format!("length({all})"),
                Dialect::Spark => format!("size({all})"),
            };
            // Nearest rank, as hunt: ceil(p/100 * n), at least 1.
            let rank = format!(
                "CAST(greatest(1, ceil({} * {len} / 100)) AS INT)",
                d.float(p)
            );
            let at = match d {
                Dialect::ClickHouse => format!("arrayElement({all}, {rank})"),
                Dialect::Spark => format!("element_at({all}, {rank})"),
            };
            d.if_(
                &format!("{len} > 0"),
                &format!("CAST({at} AS DOUBLE)"),
                "NULL",
            )
        }
        // The window must open on the first rule; the others count when
        // they follow in the order listed, each taken at its first match
        // after the one before. The frame's rows after this one (by `rn`:
        // the RANGE frame also holds earlier ties) are folded in order.
        (Kind::TemporalOrdered, Dialect::ClickHouse) => format!(
            "if(pos = 0, toFloat64(arrayFold((acc, x) -> if(x.1 > rn AND acc < {n} AND x.2 = acc, acc + 1, acc), arraySort(x -> x.1, groupArray(tuple(rn, pos)) OVER {frame}), toUInt64(1))), NULL)",
            n = c.refs.len()
        ),
        (Kind::TemporalOrdered, Dialect::Spark) => format!(
            "IF(pos = 0, CAST(aggregate(array_sort(collect_list(named_struct('rn', rn, 'pos', pos)) OVER {frame}), CAST(1 AS BIGINT), (acc, x) -> IF(x.rn > rn AND acc < {n} AND x.pos = acc, acc + 1, acc)) AS DOUBLE), NULL)",
            n = c.refs.len()
        ),
    };
    steps.push((
        name("w"),
        format!(
            "  SELECT *, row_number() OVER ({}ORDER BY ms, {}, {}, {}) AS rn,\n    count(*) OVER ({}ORDER BY ms RANGE BETWEEN UNBOUNDED PRECEDING AND {reach} FOLLOWING) AS wend\n  FROM {}",
            part_by(&[]),
            d.ident("source_file"),
            d.ident("source_line"),
            d.ident("source_record"),
            part_by(&[]),
            name("k")
        ),
    ));
    let holds: Vec<String> = c
        .cond
        .iter()
        .map(|(op, n)| cmp(op, "v", &d.float(*n)))
        .collect();
    let holds = match d {
        Dialect::ClickHouse => format!("ifNull({}, 0)", holds.join(" AND ")),
        Dialect::Spark => format!("coalesce({}, false)", holds.join(" AND ")),
    };
    steps.push((
        name("v"),
        format!(
            "  SELECT *, {holds} AS holds\n  FROM (SELECT *, {value} AS v FROM {})",
            name("w")
        ),
    ));

    // Step 3: the greedy pick, per group.
    let group_by = if groups.is_empty() {
        String::new()
    } else {
        format!("\n  GROUP BY {}", groups.join(", "))
    };
    let ev: Vec<String> = EVENT_COLUMNS.iter().map(|x| d.ident(x)).collect();
    let (pick, select_cols) = match d {
        Dialect::ClickHouse => (
            format!(
                "  SELECT arrayJoin(arrayFilter(r -> has(sel, r.1), rows)) AS w\n  FROM (\n    SELECT arraySort(x -> x.1, groupArray(tuple(rn, holds, wend, {}))) AS rows,\n      arrayFold((acc, r) -> if(r.1 >= acc.1 AND r.2, (r.3 + 1, arrayPushBack(acc.2, r.1)), acc), rows, (toUInt64(1), CAST([], 'Array(UInt64)'))).2 AS sel\n    FROM {}{group_by}\n  )",
                ev.join(", "),
                name("v")
            ),
            (0..EVENT_COLUMNS.len())
                .map(|i| format!("w.{} AS {}", i + 4, ev[i]))
                .collect::<Vec<_>>(),
        ),
        Dialect::Spark => (
            format!(
                "  SELECT explode(filter(rows, r -> array_contains(sel, CAST(r.rn AS BIGINT)))) AS w\n  FROM (\n    SELECT rows, aggregate(rows, named_struct('cur', CAST(1 AS BIGINT), 'sel', CAST(array() AS ARRAY<BIGINT>)), (acc, r) -> IF(r.rn >= acc.cur AND r.holds, named_struct('cur', CAST(r.wend + 1 AS BIGINT), 'sel', concat(acc.sel, array(CAST(r.rn AS BIGINT)))), acc)).sel AS sel\n    FROM (\n      SELECT sort_array(collect_list(named_struct('rn', rn, 'holds', holds, 'wend', wend, {}))) AS rows\n      FROM {}{group_by}\n    )\n  )",
                EVENT_COLUMNS
                    .iter()
                    .map(|x| format!("'{x}', {}", d.ident(x)))
                    .collect::<Vec<_>>()
                    .join(", "),
                name("v")
            ),
            EVENT_COLUMNS
                .iter()
                .map(|x| format!("w.{x} AS {}", d.ident(x)))
                .collect::<Vec<_>>(),
        ),
    };
    steps.push((name("f"), pick));
    let select = format!(
        "{}, {}\nFROM {}",
        finding_head(
            d,
            &c.meta.id,
            &c.meta.title,
            &d.lit(c.meta.severity().as_str())
        ),
        select_cols.join(", "),
        name("f")
    );
    Ok(Compiled { steps, select })
}

/// The first element of an array, or null when it is empty.
fn first_or_null(d: Dialect, a: &str) -> String {
    match d {
        Dialect::ClickHouse => format!("if(notEmpty({a}), {a}[1], NULL)"),
        Dialect::Spark => format!("IF(size({a}) > 0, element_at({a}, 1), NULL)"),
    }
}

/// The values of an array of strings that read as numbers (as hunt reads
/// them), as doubles.
fn numbers(d: Dialect, a: &str) -> String {
    match d {
        Dialect::ClickHouse => format!(
            "CAST(arrayFilter(x -> isNotNull(x), arrayMap(x -> {}, {a})), 'Array(Float64)')",
            d.number("x")
        ),
        Dialect::Spark => format!(
            "filter(transform({a}, x -> {}), x -> x IS NOT NULL)",
            d.number("x")
        ),
    }
}
