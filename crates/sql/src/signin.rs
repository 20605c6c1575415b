//! The built-ins that join audit records to the Entra sign-ins given:
//! `tw-token-without-signin` and `tw-owa-token-for-resource`. Hunt builds
//! one sign-in index over every sign-in record (tokens, sessions, client
//! addresses, and per tenant the UTC days that have sign-ins); here the
//! same index is a handful of small distinct sets over the whole table,
//! joined to the candidate records. The index spans every partition by
//! construction: an engine computes the sets before the joins, so no
//! partition sees only part of them.

use tokenward_detect::signin_index::{SigninIndex, AUDIT_TENANT_FIELDS, SIGNIN_TENANT_FIELDS};
use tokenward_detect::{owa_token_for_resource as owa, token_without_signin as tws};
use tokenward_detect::{Info, Needs};
use tokenward_event::EventKind;

use crate::builtin::{earliest, get_str, kinds_of, screen, utc_day, Compiled};
use crate::dialect::Dialect;
use crate::sigma::SigmaCompiler;

/// The sign-in index as query steps, named `si_*`; every built-in that
/// joins to it emits the same steps, and the script keeps one copy.
fn index_steps(sc: &mut SigmaCompiler<'_>, from: &str) -> Result<Vec<(String, String)>, String> {
    let d = sc.d;
    let needs = SigninIndex::needs();
    let screen = screen(d, &needs)?;
    let signin = [EventKind::SignIn];
    let tenants: Vec<String> = SIGNIN_TENANT_FIELDS
        .iter()
        .map(|f| get_str(sc, f, &signin))
        .collect();
    let (day, _) = utc_day(d);
    let e = |c: &str| d.ident(c);
    Ok(vec![
        (
            "si_e".into(),
            format!(
                "  SELECT {} AS si_token, {} AS si_session, {} AS si_ip, coalesce({}, '') AS si_tenant, CASE WHEN {} IS NOT NULL THEN {day} END AS si_day\n  FROM {from}\n  WHERE {} = 'signin' AND {screen}",
                e("token_id"),
                d.lower_ascii(&e("session_id")),
                e("client_ip"),
                d.lower_ascii(&format!("coalesce({})", tenants.join(", "))),
                e("time"),
                e("log_kind"),
            ),
        ),
        (
            "si_tok".into(),
            "  SELECT DISTINCT si_token, 1 AS si_tok_hit\n  FROM si_e\n  WHERE si_token IS NOT NULL".into(),
        ),
        (
            "si_ses".into(),
            "  SELECT DISTINCT si_session, 1 AS si_ses_hit\n  FROM si_e\n  WHERE si_session IS NOT NULL".into(),
        ),
        (
            "si_ips".into(),
            "  SELECT DISTINCT si_ip, 1 AS si_ip_hit\n  FROM si_e\n  WHERE si_ip IS NOT NULL".into(),
        ),
        (
            "si_days".into(),
            "  SELECT DISTINCT si_tenant, si_day, 1 AS si_day_hit\n  FROM si_e\n  WHERE si_day IS NOT NULL".into(),
        ),
        (
            "si_anon".into(),
            "  SELECT DISTINCT si_day AS si_anon_day, 1 AS si_anon_hit\n  FROM si_days\n  WHERE si_tenant = ''".into(),
        ),
        (
            "si_named".into(),
            "  SELECT count(DISTINCT si_tenant) AS si_n, min(si_tenant) AS si_only\n  FROM si_days\n  WHERE si_tenant <> ''".into(),
        ),
    ])
}

/// The steps that decide `SigninIndex::covers` for each group of `groups`
/// (a step with the columns `c_tenant`, the record's tenant lower-cased or
/// null, `c_day1` and `c_day2`, the days that must have sign-ins, null when
/// unknown), adding the column `covered`. Sign-ins that name no tenant
/// speak for every record; a record that names none is judged by the only
/// named tenant when there is one.
fn coverage_step(name: &str, groups: &str, columns: &[String]) -> (String, String) {
    let cols = columns
        .iter()
        .map(|c| format!("c.{c} AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    (
        name.to_string(),
        format!(
            "  SELECT {cols},
    (coalesce(a1.si_anon_hit, 0) = 1 OR coalesce(t1.si_day_hit, 0) = 1)
    AND (coalesce(a2.si_anon_hit, 0) = 1 OR coalesce(t2.si_day_hit, 0) = 1) AS covered
  FROM (
    SELECT g.*, CASE WHEN g.c_tenant IS NOT NULL THEN g.c_tenant WHEN n.si_n = 1 THEN n.si_only END AS c_for
    FROM {groups} AS g CROSS JOIN si_named AS n
  ) AS c
  LEFT JOIN si_anon AS a1 ON a1.si_anon_day = c.c_day1
  LEFT JOIN si_anon AS a2 ON a2.si_anon_day = c.c_day2
  LEFT JOIN si_days AS t1 ON t1.si_tenant = c.c_for AND t1.si_day = c.c_day1
  LEFT JOIN si_days AS t2 ON t2.si_tenant = c.c_for AND t2.si_day = c.c_day2"
        ),
    )
}

/// The steps after grouping (the step `<name>_g`, whose columns are
/// `names`): the two days each group needs sign-ins on (the same day twice
/// when one is enough), whether the sign-ins cover them, and the findings
/// SELECT of the groups covered.
fn judge_groups(
    d: Dialect,
    info: &Info,
    name: &str,
    day1: &str,
    day2: &str,
    names: &[String],
    steps: &mut Vec<(String, String)>,
) -> String {
    steps.push((
        format!("{name}_d"),
        format!("  SELECT *, {day1} AS c_day1, {day2} AS c_day2\n  FROM {name}_g"),
    ));
    steps.push(coverage_step(
        &format!("{name}_c"),
        &format!("{name}_d"),
        names,
    ));
    let event_cols: Vec<String> = crate::corr::EVENT_COLUMNS
        .iter()
        .map(|c| d.ident(c))
        .collect();
    findings_select(d, info, &format!("{name}_c"), &event_cols)
}

/// The day of a time in milliseconds, as `utc_day` reckons it.
fn day_of_ms(ms: &str) -> String {
    format!("CAST(floor(({ms}) / 86400000) AS BIGINT)")
}

/// The finding columns of a step whose rows are findings.
fn findings_select(d: Dialect, info: &Info, from: &str, columns: &[String]) -> String {
    format!(
        "{}, {}\nFROM {from}\nWHERE covered",
        crate::corr::finding_head(d, info.id, info.title, "'high'"),
        columns.join(", ")
    )
}

/// The grouping step shared by both detections: per group `g0` of the
/// step `from`, the earliest record's event columns and `extra` values
/// (named as given), as columns.
fn earliest_per_group(d: Dialect, from: &str, extra: &[(&str, &str)]) -> (String, Vec<String>) {
    let extra_exprs: Vec<String> = extra.iter().map(|(_, e)| e.to_string()).collect();
    let (pick, mut cols) = earliest(d, "w", &extra_exprs);
    let names: Vec<String> = crate::corr::EVENT_COLUMNS
        .iter()
        .map(|c| d.ident(c))
        .chain(extra.iter().map(|(n, _)| n.to_string()))
        .collect();
    // `earliest` names the event columns; the extras are named here.
    let n_event = crate::corr::EVENT_COLUMNS.len();
    for (i, (n, _)) in extra.iter().enumerate() {
        let at = match d {
            Dialect::ClickHouse => format!("w.{}", n_event + i + 1),
            Dialect::Spark => format!("w.x{i}"),
        };
        cols.push(format!("{at} AS {n}"));
    }
    let step = format!(
        "  SELECT {}\n  FROM (\n    SELECT {pick} AS w\n    FROM {from}\n    GROUP BY g0\n  ) AS p",
        cols.join(", ")
    );
    (step, names)
}

/// `tw-token-without-signin` (crates/detect/src/token_without_signin.rs):
/// Exchange, SharePoint and OneDrive records whose token and sessions no
/// sign-in issued, one finding per Entra session (else token), judged only
/// where the sign-ins of the record's tenant cover the day the token was
/// issued (else the day of use and two hours before it).
pub(crate) fn token_without_signin(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &Info,
    from: &str,
) -> Result<Compiled, String> {
    let d = sc.d;
    let mut steps = index_steps(sc, from)?;
    let kinds = kinds_of(needs);
    let screen = screen(d, needs)?;
    let first = |sc: &mut SigmaCompiler<'_>, paths: &[&str]| -> String {
        let v: Vec<String> = paths.iter().map(|p| get_str(sc, p, &kinds)).collect();
        format!("coalesce({})", v.join(", "))
    };
    let token = first(sc, &["AppAccessContext.UniqueTokenId", "UniqueTokenId"]);
    let aad = first(sc, &["AppAccessContext.AADSessionId", "AADSessionId"]);
    let exch = get_str(sc, "SessionId", &kinds);
    let issued = get_str(sc, "AppAccessContext.IssuedAtTime", &kinds);
    let user_type = get_str(sc, "UserType", &kinds);
    let tenant = first(sc, AUDIT_TENANT_FIELDS);
    let workload = d.lower_ascii(&format!("coalesce({}, '')", d.ident("workload")));
    let workloads: Vec<String> = tws::WORKLOADS
        .iter()
        .map(|w| d.contains(&workload, &d.lit(w)))
        .collect();
    let app_types: Vec<String> = tws::APP_ONLY_USER_TYPES.iter().map(|t| d.lit(t)).collect();
    let app_only = format!(
        "(coalesce({user_type} IN ({}), false) OR coalesce({} = {}, false))",
        app_types.join(", "),
        d.lower_ascii(&d.ident("user")),
        d.lit(tws::APP_ONLY_USER)
    );
    let kind_filter = d.kind_in(&kinds);
    let (_, ms) = utc_day(d);
    let name = "b_token_signin";
    steps.push((
        format!("{name}_r"),
        format!(
            "  SELECT *, {token} AS t_token, {aad} AS t_aad, {exch} AS t_exch, {} AS t_issued_day, {} AS t_tenant, coalesce({ms}, 0) AS g_ms\n  FROM {from}\n  WHERE ({}) AND {screen} AND ({})",
            d.text_utc_day(&issued),
            d.lower_ascii(&tenant),
            kind_filter,
            workloads.join(" OR "),
        ),
    ));
    // Records with a token or session, not app-only, that no sign-in
    // explains by token, Entra session or Exchange session.
    steps.push((
        format!("{name}_u"),
        format!(
            "  SELECT r.*, coalesce(r.t_aad, r.t_token) AS g0
  FROM (
    SELECT *, {} AS t_aad_l, {} AS t_exch_l
    FROM {name}_r
    WHERE (t_token IS NOT NULL OR t_aad IS NOT NULL) AND NOT {app_only}
  ) AS r
  LEFT JOIN si_tok AS k ON k.si_token = r.t_token
  LEFT JOIN si_ses AS s1 ON s1.si_session = r.t_aad_l
  LEFT JOIN si_ses AS s2 ON s2.si_session = r.t_exch_l
  WHERE coalesce(k.si_tok_hit, 0) = 0 AND coalesce(s1.si_ses_hit, 0) = 0 AND coalesce(s2.si_ses_hit, 0) = 0",
            d.lower_ascii("t_aad"),
            d.lower_ascii("t_exch"),
        ),
    ));
    let (group_step, names) = earliest_per_group(
        d,
        &format!("{name}_u"),
        &[("c_tenant", "t_tenant"), ("c_issued_day", "t_issued_day")],
    );
    steps.push((format!("{name}_g"), group_step));
    // The days that must have sign-ins: the issuance day when the record
    // gives one, else the day of use and the day two hours before it.
    let time_ms = d.millis(&d.ident("time"));
    let day1 = format!("coalesce(c_issued_day, {})", day_of_ms(&time_ms));
    let day2 = format!(
        "coalesce(c_issued_day, {})",
        day_of_ms(&format!("{time_ms} - 7200000"))
    );
    let select = judge_groups(d, info, name, &day1, &day2, &names, &mut steps);
    Ok(Compiled::Grouped { steps, select })
}

/// `tw-owa-token-for-resource` (crates/detect/src/owa_token_for_resource.rs):
/// OWA token issuances whose session never signed in, or that reached an
/// address that never signed in, one finding per session (else address),
/// judged only where the sign-ins of the earliest issuance's tenant cover
/// its day and the two hours before it.
pub(crate) fn owa_token_for_resource(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &Info,
    from: &str,
) -> Result<Compiled, String> {
    let d = sc.d;
    let mut steps = index_steps(sc, from)?;
    let kinds = kinds_of(needs);
    let screen = screen(d, needs)?;
    let op = d.lower_ascii(&format!("coalesce({}, '')", d.ident("operation")));
    let record_type = get_str(sc, "RecordType", &kinds);
    let (number, type_name) = owa::OWA_AUTH;
    let issuance = format!(
        "({} OR coalesce({}, false) OR coalesce({} = {}, false) OR {op} = {})",
        d.contains(&op, &d.lit(owa::ISSUANCE_OPERATION)),
        d.regex(&record_type, &format!("^[+]?0*{number}$")),
        d.lower_ascii(&record_type),
        d.lit(&type_name.to_ascii_lowercase()),
        d.lit(&type_name.to_ascii_lowercase()),
    );
    let session = format!(
        "coalesce({}, {})",
        d.ident("session_id"),
        get_str(sc, "SessionId", &kinds)
    );
    let tenant = format!(
        "coalesce({})",
        AUDIT_TENANT_FIELDS
            .iter()
            .map(|f| get_str(sc, f, &kinds))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let kind_filter = d.kind_in(&kinds);
    let (_, ms) = utc_day(d);
    let name = "b_owa_token";
    steps.push((
        format!("{name}_r"),
        format!(
            "  SELECT *, {session} AS o_session, {} AS o_session_l, {} AS t_tenant, coalesce({ms}, 0) AS g_ms\n  FROM {from}\n  WHERE ({}) AND {screen} AND {issuance}",
            d.lower_ascii(&session),
            d.lower_ascii(&tenant),
            kind_filter,
        ),
    ));
    // Issuances not explained by a signed-in session from a signed-in
    // address, grouped by session, else address.
    steps.push((
        format!("{name}_u"),
        format!(
            "  SELECT r.*, coalesce(r.o_session, r.{ip}, '-') AS g0
  FROM {name}_r AS r
  LEFT JOIN si_ses AS s ON s.si_session = r.o_session_l
  LEFT JOIN si_ips AS i ON i.si_ip = r.{ip}
  WHERE NOT (coalesce(s.si_ses_hit, 0) = 1 AND coalesce(i.si_ip_hit, 0) = 1)",
            ip = d.ident("client_ip"),
        ),
    ));
    let (group_step, names) =
        earliest_per_group(d, &format!("{name}_u"), &[("c_tenant", "t_tenant")]);
    steps.push((format!("{name}_g"), group_step));
    let time_ms = d.millis(&d.ident("time"));
    let select = judge_groups(
        d,
        info,
        name,
        &day_of_ms(&time_ms),
        &day_of_ms(&format!("{time_ms} - 7200000")),
        &names,
        &mut steps,
    );
    Ok(Compiled::Grouped { steps, select })
}
