//! The built-in detections as SQL. Each is written here by hand after the
//! detection's own code (the logic of `observe` is Rust), but what it reads
//! comes from its declaration: the event kinds and the raw-text anchors of
//! its `Needs` become the SQL's kind filter and screen, so a record hunt
//! never shows the detection is never tested here either. The equivalence
//! test holds each to hunt's findings.

use tokenward_detect::{Anchors, Detection, Needs, Setup};
use tokenward_event::EventKind;

use crate::dialect::Dialect;
use crate::sigma::SigmaCompiler;

/// A compiled built-in.
pub(crate) enum Compiled {
    /// One finding per matching record: predicates per event kind, and the
    /// severity as an SQL expression (a detection may grade its findings).
    PerRecord {
        alts: Vec<(Vec<EventKind>, String)>,
        severity: String,
    },
    /// One finding per group of matching records, represented by its
    /// earliest record: query steps and the findings SELECT.
    Grouped {
        steps: Vec<(String, String)>,
        select: String,
    },
}

/// The kinds of event a declaration routes to the detection.
pub(crate) fn kinds_of(needs: &Needs) -> Vec<EventKind> {
    EventKind::ALL
        .into_iter()
        .filter(|k| needs.kinds.contains(*k))
        .collect()
}

/// The declaration's raw-text screen over the `raw` column (texts matched
/// case-sensitively, or ASCII case ignored, as hunt screens the record's
/// bytes).
pub(crate) fn screen(d: Dialect, needs: &Needs) -> Result<String, String> {
    // Sorted: some declarations list texts from hash maps, and the same
    // rules should print the same script.
    let (raw, texts): (String, std::collections::BTreeSet<String>) = match &needs.anchors {
        Anchors::Every => return Ok("true".into()),
        Anchors::AnyOf(texts) => (d.ident("raw"), texts.iter().cloned().collect()),
        Anchors::AnyOfIgnoringCase(texts) => (
            d.lower_ascii(&d.ident("raw")),
            texts.iter().map(|t| t.to_ascii_lowercase()).collect(),
        ),
        Anchors::Screen(_) => return Err("its screen is code, not texts".into()),
    };
    Ok(format!(
        "({})",
        texts
            .iter()
            .map(|t| d.contains(&raw, &d.lit(t)))
            .collect::<Vec<_>>()
            .join(" OR ")
    ))
}

/// Compiles the built-in `id`, or says why it is not. A detection of one
/// finding per record reads the shared scan through `record`; one that
/// groups records reads `grouped`, a scan of only the values the grouped
/// built-ins read, named `from`: engines inline a step at every use, and
/// the grouped built-ins use their scan many times.
pub(crate) fn compile(
    record: &mut SigmaCompiler<'_>,
    grouped: &mut SigmaCompiler<'_>,
    id: &str,
    setup: &Setup,
    from: &str,
) -> Result<Compiled, String> {
    let Some(b) = tokenward_detect::BUILTINS.iter().find(|b| b.info.id == id) else {
        return Err("unknown built-in detection".into());
    };
    let det: Box<dyn Detection> = (b.make)(setup);
    let needs = det.needs();
    let gc = grouped;
    match id {
        "tw-audit-tampering" => audit_tampering(record, &needs),
        "tw-mailbox-export" => mailbox_export(record, &needs),
        "tw-ioc-key" => ioc_key(record, &needs, &setup.iocs),
        "tw-mail-throttled" => mail_throttled(gc, &needs, b.info, from),
        "tw-ioc-useragent" => ioc_useragent(gc, &needs, b.info, from, &setup.iocs),
        "tw-ioc-ip" => ioc_ip(gc, &needs, b.info, from, setup),
        "tw-mail-bind-spike" => mail_bind_spike(gc, &needs, b.info, from, setup),
        "tw-mail-sync-unusual-client" => mail_sync_unusual_client(gc, &needs, b.info, from),
        "tw-token-without-signin" => crate::signin::token_without_signin(gc, &needs, b.info, from),
        "tw-owa-token-for-resource" => {
            crate::signin::owa_token_for_resource(gc, &needs, b.info, from)
        }
        "tw-mail-new-client-app" => mail_new_client_app(gc, &needs, b.info, from, setup),
        "tw-audit-gap" => crate::buckets::audit_gap(gc.d, &needs, b.info, from, setup),
        "tw-gateway-rejected-burst" => {
            crate::buckets::gateway_rejected_burst(gc.d, &needs, b.info, from, setup)
        }
        _ => Err("not compiled: no SQL is written for this built-in yet".into()),
    }
}

/// `Event::name_value(bag, name)` for events of `kinds`: the first pair
/// named `name` (ASCII case ignored) with a non-blank scalar value.
fn name_value(sc: &mut SigmaCompiler<'_>, bag: &str, name: &str, kinds: &[EventKind]) -> String {
    let key = format!(
        "{}[name={}].value",
        bag.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    );
    let vals = sc.path_values(&key, kinds);
    sc.d.first_trimmed(&vals)
}

/// `Event::name_value("Parameters", name)` for events of `kinds`.
fn parameter(sc: &mut SigmaCompiler<'_>, name: &str, kinds: &[EventKind]) -> String {
    name_value(sc, "Parameters", name, kinds)
}

/// `is_false`: `false`, `0`, `$false`, any case, trimmed (the value is
/// trimmed already).
fn is_false(d: Dialect, v: &str) -> String {
    format!(
        "coalesce({} IN ('false', '0', '$false'), false)",
        d.lower(v)
    )
}

/// `is_true`: `true` or `1`, any case, trimmed.
fn is_true(d: Dialect, v: &str) -> String {
    format!("coalesce({} IN ('true', '1'), false)", d.lower(v))
}

/// `tw-mailbox-export` (crates/detect/src/mailbox_export.rs): a mailbox
/// export request (high) or an exported compliance search (medium).
fn mailbox_export(sc: &mut SigmaCompiler<'_>, needs: &Needs) -> Result<Compiled, String> {
    let d = sc.d;
    let screen = screen(d, needs)?;
    let op = d.lower(&format!("coalesce({}, '')", d.ident("operation")));
    let export = parameter(sc, "Export", &[EventKind::Audit]);
    let request = format!("{op} = 'new-mailboxexportrequest'");
    let search = format!(
        "({op} = 'new-compliancesearchaction' AND {export} IS NOT NULL AND NOT {})",
        is_false(d, &export)
    );
    let alts = kinds_of(needs)
        .into_iter()
        .map(|k| (vec![k], format!("({screen} AND ({request} OR {search}))")))
        .collect();
    Ok(Compiled::PerRecord {
        alts,
        severity: d.if_(&request, "'high'", "'medium'"),
    })
}

/// `tw-audit-tampering` (crates/detect/src/audit_tampering.rs): one finding
/// per record that switches audit logging off or bypasses it.
fn audit_tampering(sc: &mut SigmaCompiler<'_>, needs: &Needs) -> Result<Compiled, String> {
    let d = sc.d;
    let kinds = kinds_of(needs);
    let screen = screen(d, needs)?;
    let op = d.lower(&format!("coalesce({}, '')", d.ident("operation")));
    let audit = [EventKind::Audit];
    // Event::name_value("Parameters", name): the first pair named `name`
    // (ASCII case ignored) whose value is a non-blank scalar, trimmed.
    let mut p = |name: &str| parameter(sc, name, &audit);
    let is_false = |v: &str| is_false(d, v);
    let is_true = |v: &str| is_true(d, v);
    let ingestion = p("UnifiedAuditLogIngestionEnabled");
    let admin_log = p("AdminAuditLogEnabled");
    let bypass = p("AuditBypassEnabled");
    let enabled = p("AuditEnabled");
    let disabled = p("AuditDisabled");
    let actions: Vec<String> = ["AuditOwner", "AuditDelegate", "AuditAdmin"]
        .iter()
        .map(|n| p(n))
        .collect();
    let without_mail: Vec<String> = actions
        .iter()
        .map(|v| {
            format!(
                "({v} IS NOT NULL AND NOT {})",
                d.contains(&d.lower(v), "'mailitemsaccessed'")
            )
        })
        .collect();
    let high_exchange = format!(
        "(({op} = 'set-adminauditlogconfig' AND ({} OR {})) \
         OR ({} AND ({bypass} IS NULL OR {} OR {})) \
         OR ({op} = 'set-mailbox' AND {}) \
         OR ({op} = 'set-organizationconfig' AND {}))",
        is_false(&ingestion),
        is_false(&admin_log),
        d.contains(&op, "'mailboxauditbypassassociation'"),
        is_true(&bypass),
        d.starts_with(&op, "'new-'"),
        is_false(&enabled),
        is_true(&disabled),
    );
    let medium_exchange = format!(
        "({op} = 'set-mailbox' AND NOT {} AND ({}))",
        is_false(&enabled),
        without_mail.join(" OR ")
    );
    let azure = d.contains(&op, "'diagnosticsettings/delete'");
    let kind = d.ident("log_kind");
    let mut alts = Vec::new();
    for k in kinds {
        let pred = match k {
            EventKind::AzureActivity => azure.clone(),
            EventKind::Audit => format!("({high_exchange} OR {medium_exchange})"),
            _ => continue,
        };
        alts.push((vec![k], format!("({screen} AND {pred})")));
    }
    let severity = d.if_(
        &format!("{kind} = 'audit' AND NOT {high_exchange}"),
        "'medium'",
        "'high'",
    );
    Ok(Compiled::PerRecord { alts, severity })
}

/// `Event::get_str(path)`: the value at a path, trimmed, when not blank.
pub(crate) fn get_str(sc: &mut SigmaCompiler<'_>, path: &str, kinds: &[EventKind]) -> String {
    let vals = sc.path_values(&path.to_ascii_lowercase(), kinds);
    sc.d.first_trimmed(&vals)
}

/// What the mail detections read of a MailItemsAccessed record
/// (crates/detect/src/mail.rs), as SQL over the scan.
struct Mail {
    /// The record is a MailItemsAccessed audit record the screen lets by.
    is_mail: String,
    /// `mail::mailbox`: the owner, lower-cased, else the acting user.
    mailbox: String,
}

impl Mail {
    fn new(sc: &mut SigmaCompiler<'_>, needs: &Needs) -> Result<Mail, String> {
        let d = sc.d;
        let screen = screen(d, needs)?;
        let op = d.lower(&format!("coalesce({}, '')", d.ident("operation")));
        let owner = get_str(sc, "MailboxOwnerUPN", &[EventKind::Audit]);
        Ok(Mail {
            is_mail: format!(
                "{} = 'audit' AND {screen} AND {op} = 'mailitemsaccessed'",
                d.ident("log_kind")
            ),
            mailbox: format!("coalesce({}, {})", d.lower(&owner), d.ident("user")),
        })
    }

    /// `OperationProperties`' pair `name`, else the field `name`.
    fn property(sc: &mut SigmaCompiler<'_>, name: &str) -> String {
        let audit = [EventKind::Audit];
        let in_bag = name_value(sc, "OperationProperties", name, &audit);
        let at_root = get_str(sc, name, &audit);
        format!("coalesce({in_bag}, {at_root})")
    }
}

/// The UTC day of the event, -1 without a time (`detect::day`).
pub(crate) fn utc_day(d: Dialect) -> (String, String) {
    let time = d.ident("time");
    let ms = d.millis(&time);
    (
        format!("coalesce(CAST(floor({ms} / 86400000) AS BIGINT), -1)"),
        ms,
    )
}

/// The aggregate that picks a group's earliest record (time, then file
/// and position, as `aggregate::Grouped` does), and the finding's event
/// columns read from its result, named `w` in a step and reached as `at`.
/// The `extra` expressions ride along after the event columns (the
/// caller names them: element `9 + i` in ClickHouse, field `x<i>` in
/// Spark).
pub(crate) fn earliest(d: Dialect, at: &str, extra: &[String]) -> (String, Vec<String>) {
    let ev = crate::corr::EVENT_COLUMNS;
    let time = d.ident("time");
    let order = [
        format!("{time} IS NOT NULL"),
        "g_ms".to_string(),
        d.ident("source_file"),
        d.ident("source_line"),
        d.ident("source_record"),
    ];
    match d {
        Dialect::ClickHouse => (
            format!(
                "argMin(tuple({}), tuple({}))",
                ev.iter()
                    .map(|c| d.ident(c))
                    .chain(extra.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(", "),
                order.join(", ")
            ),
            ev.iter()
                .enumerate()
                .map(|(i, c)| format!("{at}.{} AS {}", i + 1, d.ident(c)))
                .collect(),
        ),
        Dialect::Spark => (
            format!(
                "min_by(named_struct({}), named_struct({}))",
                ev.iter()
                    .map(|c| format!("'{c}', {}", d.ident(c)))
                    .chain(
                        extra
                            .iter()
                            .enumerate()
                            .map(|(i, e)| format!("'x{i}', {e}"))
                    )
                    .collect::<Vec<_>>()
                    .join(", "),
                order
                    .iter()
                    .enumerate()
                    .map(|(i, o)| format!("'o{i}', {o}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ev.iter()
                .map(|c| format!("{at}.{c} AS {}", d.ident(c)))
                .collect(),
        ),
    }
}

/// One finding per group of matching records, represented by the group's
/// earliest record (time, then file and position), as `aggregate::Grouped`
/// picks it. `severity` is an SQL expression that depends only on the
/// group's keys.
#[allow(clippy::too_many_arguments)]
fn grouped(
    d: Dialect,
    name: &str,
    info: &tokenward_detect::Info,
    from: &str,
    matching: &str,
    explode: Option<&str>,
    groups: &[String],
    severity: &str,
) -> Compiled {
    let (_, ms) = utc_day(d);
    let mut keys: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{g} AS g{i}"))
        .collect();
    // The severity is the same for every record of a group (it depends
    // only on group keys), so it is carried as one more key.
    keys.push(format!("{severity} AS g_severity"));
    // A record may give several hits (one per value in `explode`, as `x`):
    // they are rows of their own before the keys are computed.
    let mut steps = Vec::new();
    let (source, filter) = match explode {
        Some(arr) => {
            let f = match d {
                Dialect::ClickHouse => "arrayJoin",
                Dialect::Spark => "explode",
            };
            steps.push((
                format!("{name}_j"),
                format!("  SELECT *, {f}({arr}) AS x\n  FROM {from}\n  WHERE {matching}"),
            ));
            (format!("{name}_j"), "true".to_string())
        }
        None => (from.to_string(), matching.to_string()),
    };
    steps.push((
        format!("{name}_m"),
        format!(
            "  SELECT *, {}, coalesce({ms}, 0) AS g_ms\n  FROM {source}\n  WHERE {filter}",
            keys.join(", ")
        ),
    ));
    let (pick, cols) = earliest(d, "w", &[]);
    let mut group_by: Vec<String> = (0..groups.len()).map(|i| format!("g{i}")).collect();
    group_by.push("g_severity".into());
    steps.push((
        format!("{name}_f"),
        format!(
            "  SELECT {pick} AS w, g_severity\n  FROM {name}_m\n  GROUP BY {}",
            group_by.join(", ")
        ),
    ));
    let select = format!(
        "{}, {}\nFROM {name}_f",
        crate::corr::finding_head(d, info.id, info.title, "g_severity"),
        cols.join(", ")
    );
    Compiled::Grouped { steps, select }
}

/// `tw-mail-throttled` (crates/detect/src/mail_throttled.rs): throttled
/// MailItemsAccessed records, one finding per mailbox and UTC day.
fn mail_throttled(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &tokenward_detect::Info,
    from: &str,
) -> Result<Compiled, String> {
    let d = sc.d;
    let mail = Mail::new(sc, needs)?;
    let throttled = Mail::property(sc, "IsThrottled");
    let matching = format!("{} AND {}", mail.is_mail, is_true(d, &throttled));
    Ok(grouped(
        d,
        "b_mail_throttled",
        info,
        from,
        &matching,
        None,
        &[mail.mailbox, utc_day(d).0],
        "'high'",
    ))
}

/// `tw-mail-sync-unusual-client` (crates/detect/src/mail_sync_unusual_client.rs):
/// Sync access by a client other than desktop Outlook, one finding per
/// mailbox, session, client and UTC day.
fn mail_sync_unusual_client(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &tokenward_detect::Info,
    from: &str,
) -> Result<Compiled, String> {
    let d = sc.d;
    let mail = Mail::new(sc, needs)?;
    let access = Mail::property(sc, "MailAccessType");
    // mail::client: ClientInfoString, else the user agent.
    let info_string = get_str(sc, "ClientInfoString", &[EventKind::Audit]);
    let client = format!("coalesce({info_string}, {}, '')", d.ident("user_agent"));
    let lower = d.lower(&client);
    let desktop: Vec<String> = tokenward_detect::mail::DESKTOP_OUTLOOK_MARKERS
        .iter()
        .map(|m| d.contains(&lower, &d.lit(m)))
        .collect();
    let matching = format!(
        "{} AND coalesce({} = 'sync', false) AND NOT ({})",
        mail.is_mail,
        d.lower(&access),
        desktop.join(" OR ")
    );
    Ok(grouped(
        d,
        "b_mail_sync",
        info,
        from,
        &matching,
        None,
        &[
            mail.mailbox,
            format!("coalesce({}, '')", d.ident("session_id")),
            client,
            utc_day(d).0,
        ],
        "'high'",
    ))
}

/// `tw-ioc-useragent` (crates/detect/src/ioc_useragent.rs): a user agent
/// or client-info string that is an indicator (equal ignoring case, or
/// containing one of 40 bytes or more), one finding per indicator, user,
/// session and UTC day; low when the indicator is also common in benign
/// traffic.
fn ioc_useragent(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &tokenward_detect::Info,
    from: &str,
    iocs: &tokenward_detect::ioc::IocSet,
) -> Result<Compiled, String> {
    let d = sc.d;
    if iocs.user_agents.is_empty() {
        return Err("no user-agent indicators".into());
    }
    let screen = screen(d, needs)?;
    let kinds = kinds_of(needs);
    // The candidates, in the detection's order; the normalised user agent
    // last (a duplicate of an earlier one changes nothing).
    let mut cands: Vec<String> = tokenward_detect::ioc_useragent::FIELDS
        .iter()
        .map(|f| get_str(sc, f, &kinds))
        .collect();
    // The normalised user agent is trimmed and non-blank already.
    cands.push(d.ident("user_agent"));
    // Per candidate, the 1-based index of the first indicator it matches.
    let index_of = |c: &str| -> String {
        let lc = d.lower(c);
        let arms: Vec<(String, String)> = iocs
            .user_agents
            .iter()
            .enumerate()
            .map(|(i, ioc)| {
                let mut m = format!("{lc} = {}", d.lit(&ioc.value.trim().to_ascii_lowercase()));
                // SUBSTRING_MIN in the detection: long indicators also
                // match inside a longer string.
                if ioc.value.len() >= tokenward_detect::ioc_useragent::SUBSTRING_MIN {
                    m = format!(
                        "({m} OR {})",
                        d.contains(&lc, &d.lit(&ioc.value.to_ascii_lowercase()))
                    );
                }
                (format!("coalesce({m}, false)"), (i + 1).to_string())
            })
            .collect();
        d.first_of(&arms, "0")
    };
    let firsts: Vec<(String, String)> = cands
        .iter()
        .map(|c| {
            let ix = index_of(c);
            (format!("{ix} > 0"), ix)
        })
        .collect();
    let hit = d.first_of(&firsts, "0");
    let values: Vec<String> = iocs.user_agents.iter().map(|u| d.lit(&u.value)).collect();
    let common: Vec<String> = iocs
        .user_agents
        .iter()
        .enumerate()
        .filter(|(_, u)| u.common)
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    let value = match d {
        Dialect::ClickHouse => format!("[{}][{hit}]", values.join(", ")),
        Dialect::Spark => format!("element_at(array({}), {hit})", values.join(", ")),
    };
    let severity = if common.is_empty() {
        "'high'".to_string()
    } else {
        d.if_(
            &format!("{hit} IN ({})", common.join(", ")),
            "'low'",
            "'high'",
        )
    };
    let matching = format!("{screen} AND {hit} > 0");
    Ok(grouped(
        d,
        "b_ioc_useragent",
        info,
        from,
        &matching,
        None,
        &[
            value,
            format!("coalesce({}, '')", d.ident("user")),
            format!("coalesce({}, '')", d.ident("session_id")),
            utc_day(d).0,
        ],
        &severity,
    ))
}

/// `tw-ioc-key` (crates/detect/src/ioc_key.rs): a record with a string
/// value, anywhere in it, that is a compromised key's id (exactly, once
/// trimmed) or thumbprint (colons removed, ASCII case ignored). Numbers
/// are never that long, so searching every scalar value is searching
/// every string.
fn ioc_key(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    iocs: &tokenward_detect::ioc::IocSet,
) -> Result<Compiled, String> {
    use tokenward_detect::ioc_key::{KID, VALUE_LENGTHS};
    let d = sc.d;
    if iocs.keys.is_empty() {
        return Err("no key indicators".into());
    }
    let screen = screen(d, needs)?;
    let (kids, prints): (Vec<_>, Vec<_>) = iocs.keys.iter().partition(|k| k.what == KID);
    let kids: Vec<String> = kids.iter().map(|k| d.lit(&k.value)).collect();
    let prints: Vec<String> = prints
        .iter()
        .map(|k| d.lit(&k.value.to_ascii_lowercase()))
        .collect();
    let bytes = match d {
        Dialect::ClickHouse => "length(t)",
        Dialect::Spark => "octet_length(t)",
    };
    let lengths: Vec<String> = VALUE_LENGTHS.iter().map(|n| n.to_string()).collect();
    let mut tests = Vec::new();
    if !kids.is_empty() {
        tests.push(d.in_set("t", &kids));
    }
    if !prints.is_empty() {
        let hex = d.lower_ascii(&d.replace_all("t", ":", ""));
        tests.push(d.in_set(&hex, &prints));
    }
    let values = d.all_values(&d.ident("fields"));
    let trimmed = d.map(
        &d.non_null(&values),
        "v",
        &d.replace_all("v", r"^\s+|\s+$", ""),
    );
    let hit = d.any(
        &trimmed,
        "t",
        &format!(
            "{bytes} IN ({}) AND ({})",
            lengths.join(", "),
            tests.join(" OR ")
        ),
    );
    let alts = kinds_of(needs)
        .into_iter()
        .map(|k| (vec![k], format!("({screen} AND {hit})")))
        .collect();
    Ok(Compiled::PerRecord {
        alts,
        severity: "'high'".into(),
    })
}

/// Days since 1970-01-01 of a date.
fn epoch_day(date: time::Date) -> i64 {
    i64::from(date.to_julian_day()) - 2_440_588
}

/// `tw-ioc-ip` (crates/detect/src/ioc_ip.rs): an address that is an
/// indicator, in the client address or an address field; one finding per
/// address, user, session and UTC day; medium outside the indicator's
/// published window (widened by the margin), high inside it or without one.
fn ioc_ip(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &tokenward_detect::Info,
    from: &str,
    setup: &Setup,
) -> Result<Compiled, String> {
    let d = sc.d;
    let iocs = &setup.iocs;
    let margin = setup.options.ioc_window_margin_days;
    let screen = screen(d, needs)?;
    let kinds = kinds_of(needs);
    // Hosts first (an address's own entry), then networks in order, as
    // IocSet::match_ip looks.
    let mut hosts: Vec<&tokenward_detect::ioc::IpIoc> = iocs.hosts.values().collect();
    hosts.sort_by_key(|h| h.net.addr());
    let ordered: Vec<&tokenward_detect::ioc::IpIoc> =
        hosts.into_iter().chain(iocs.networks.iter()).collect();
    if ordered.is_empty() {
        return Err("no address indicators".into());
    }
    // (first address, last address, indicator number) per indicator.
    let mut ranges = Vec::new();
    let mut windows = Vec::new();
    for (i, ioc) in ordered.iter().enumerate() {
        let std::net::IpAddr::V4(a) = ioc.net.addr() else {
            return Err(format!(
                "IPv6 indicator {}: only IPv4 indicators are compiled",
                ioc.net.addr()
            ));
        };
        let bits = 32 - u32::from(ioc.net.prefix());
        let lo = (u64::from(u32::from(a)) >> bits) << bits;
        let hi = lo + ((1u64 << bits) - 1);
        ranges.push((lo, hi, i + 1));
        if let (Some(first), Some(last)) = (ioc.first_seen, ioc.last_seen) {
            windows.push((i + 1, epoch_day(first) - margin, epoch_day(last) + margin));
        }
    }
    // The number of the first indicator holding the address `v`, or 0.
    let index_of = |v: &str| {
        let arms: Vec<(String, String)> = ranges
            .iter()
            .map(|(lo, hi, i)| {
                (
                    format!("coalesce({v} BETWEEN {lo} AND {hi}, false)"),
                    i.to_string(),
                )
            })
            .collect();
        d.first_of(&arms, "0")
    };
    let index = index_of("n");
    // Candidates: the normalised client address, then the address fields.
    let mut cands = vec![d.ident("client_ip")];
    for f in tokenward_detect::ioc_ip::FIELDS {
        cands.push(get_str(sc, f, &kinds));
    }
    let nums: Vec<String> = cands.iter().map(|c| d.ipv4_number(c)).collect();
    let distinct = match d {
        Dialect::ClickHouse => format!(
            "arrayDistinct(arrayFilter(n -> isNotNull(n), [{}]))",
            nums.join(", ")
        ),
        Dialect::Spark => format!(
            "array_distinct(filter(array({}), n -> n IS NOT NULL))",
            nums.join(", ")
        ),
    };
    let hits = match d {
        Dialect::ClickHouse => format!("arrayFilter(n -> {index} > 0, {distinct})"),
        Dialect::Spark => format!("filter({distinct}, n -> {index} > 0)"),
    };
    // A record without a hit explodes to no rows.
    let matching = screen;
    let x_index = index_of("x");
    let (day, _) = utc_day(d);
    let outside: Vec<String> = windows
        .iter()
        .map(|(i, a, b)| {
            format!(
                "({x_index} = {i} AND {} IS NOT NULL AND NOT ({day} BETWEEN {a} AND {b}))",
                d.ident("time")
            )
        })
        .collect();
    let severity = if outside.is_empty() {
        "'high'".to_string()
    } else {
        d.if_(&outside.join(" OR "), "'medium'", "'high'")
    };
    Ok(grouped(
        d,
        "b_ioc_ip",
        info,
        from,
        &matching,
        Some(&hits),
        &[
            "x".to_string(),
            format!("coalesce({}, '')", d.ident("user")),
            format!("coalesce({}, '')", d.ident("session_id")),
            day,
        ],
        &severity,
    ))
}

/// `tw-mail-new-client-app` (crates/detect/src/mail_new_client_app.rs):
/// per mailbox, the (AppId, ClientAppId) pairs whose first use falls after
/// the baseline (the first days of the MailItemsAccessed records); high
/// when the pair is new to every mailbox, medium when only to this one,
/// low when so many mailboxes took it up after the baseline that it is a
/// rollout.
fn mail_new_client_app(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &tokenward_detect::Info,
    from: &str,
    setup: &Setup,
) -> Result<Compiled, String> {
    use tokenward_detect::mail_new_client_app::ROLLOUT_MIN_MAILBOXES;
    let d = sc.d;
    let audit = [EventKind::Audit];
    let mail = Mail::new(sc, needs)?;
    let client_app: Vec<String> = tokenward_event::event::CLIENT_APP_FIELDS
        .iter()
        .map(|f| get_str(sc, f, &audit))
        .collect();
    let (_, ms) = utc_day(d);
    let name = "b_new_client_app";
    let baseline_ms = i64::from(setup.options.baseline_days) * 86_400_000;
    let (pick, cols) = earliest(d, "w", &[]);
    // The time of the earliest record, the first element of `w`.
    let rep_ms = d.millis(match d {
        Dialect::ClickHouse => "w.1",
        Dialect::Spark => "w.time",
    });
    let steps = vec![
        (
            format!("{name}_m"),
            format!(
                "  SELECT *, coalesce({}, '(unknown mailbox)') AS mb, coalesce({}, '-') AS app, coalesce({}, '-') AS capp, {ms} AS t_ms, coalesce({ms}, 0) AS g_ms\n  FROM {from}\n  WHERE {}",
                mail.mailbox,
                d.ident("app_id"),
                client_app.join(", "),
                mail.is_mail
            ),
        ),
        // The data's span and the end of its baseline.
        (
            format!("{name}_r"),
            format!(
                "  SELECT min(t_ms) + {baseline_ms} AS cut, max(t_ms) - min(t_ms) > {baseline_ms} AS judged\n  FROM {name}_m"
            ),
        ),
        // A pair's first use on each mailbox (its earliest record).
        (
            format!("{name}_p"),
            format!(
                "  SELECT mb, app, capp, {pick} AS w\n  FROM {name}_m\n  GROUP BY mb, app, capp"
            ),
        ),
        (
            format!("{name}_e"),
            format!(
                "  SELECT mb, app, capp, {}, {rep_ms} AS rep_ms\n  FROM {name}_p",
                cols.join(", ")
            ),
        ),
        // A pair's first use on any mailbox.
        (
            format!("{name}_t"),
            format!("  SELECT app, capp, min(t_ms) AS tenant_first\n  FROM {name}_m\n  GROUP BY app, capp"),
        ),
        (
            format!("{name}_n"),
            format!(
                "  SELECT greatest({ROLLOUT_MIN_MAILBOXES}, CAST(ceil(count(DISTINCT mb) / 4) AS BIGINT)) AS rollout_min\n  FROM {name}_m"
            ),
        ),
        // First uses after the baseline, and how many mailboxes took the
        // pair up then.
        (
            format!("{name}_a"),
            format!(
                "  SELECT e.*, r.cut AS cut, count(*) OVER (PARTITION BY e.app, e.capp) AS adopters\n  FROM {name}_e AS e CROSS JOIN {name}_r AS r\n  WHERE r.judged AND e.rep_ms IS NOT NULL AND e.rep_ms >= r.cut"
            ),
        ),
    ];
    let ev: Vec<String> = crate::corr::EVENT_COLUMNS
        .iter()
        .map(|c| format!("a.{}", d.ident(c)))
        .collect();
    let select = format!(
        "{}, {}\nFROM {name}_a AS a\nINNER JOIN {name}_t AS t ON t.app = a.app AND t.capp = a.capp\nCROSS JOIN {name}_n AS n",
        crate::corr::finding_head(
            d,
            info.id,
            info.title,
            "CASE WHEN a.adopters >= n.rollout_min THEN 'low' WHEN t.tenant_first IS NULL OR t.tenant_first >= a.cut THEN 'high' ELSE 'medium' END",
        ),
        ev.join(", ")
    );
    Ok(Compiled::Grouped { steps, select })
}

/// `tw-mail-bind-spike` (crates/detect/src/mail_bind_spike.rs): items bound
/// per mailbox, session (else client address) and UTC day; a bucket at
/// `factor` times its mailbox's median bucket (and at least `min` items)
/// is a spike, judged only for mailboxes with five buckets or more.
fn mail_bind_spike(
    sc: &mut SigmaCompiler<'_>,
    needs: &Needs,
    info: &tokenward_detect::Info,
    from: &str,
    setup: &Setup,
) -> Result<Compiled, String> {
    let d = sc.d;
    let audit = [EventKind::Audit];
    let mail = Mail::new(sc, needs)?;
    let access = Mail::property(sc, "MailAccessType");
    // Event::bind_items: OperationCount as a whole number, else the number
    // of folder items (at least 1).
    let count_vals = sc.path_values("operationcount", &audit);
    let folder_items = sc.path_values("folders.folderitems", &audit);
    let first = match d {
        Dialect::ClickHouse => format!("{count_vals}[1]"),
        Dialect::Spark => format!("element_at({count_vals}, 1)"),
    };
    let whole = d.lit(r"^\s*\+?[0-9]+\s*$");
    let parsed = match d {
        Dialect::ClickHouse => format!(
            "if(notEmpty({count_vals}) AND match(ifNull({first}, ''), {whole}), toUInt64OrNull(replaceRegexpAll(assumeNotNull({first}), '[^0-9]', '')), NULL)"
        ),
        Dialect::Spark => format!(
            "(CASE WHEN size({count_vals}) > 0 AND coalesce({first}, '') RLIKE {whole} THEN try_cast(regexp_replace({first}, '[^0-9]', '') AS BIGINT) END)"
        ),
    };
    let len = match d {
        Dialect::ClickHouse => format!("length({folder_items})"),
        Dialect::Spark => format!("size({folder_items})"),
    };
    let items = format!("coalesce({parsed}, greatest({len}, 1))");
    let session = format!(
        "coalesce({}, {}, '-')",
        d.ident("session_id"),
        d.ident("client_ip")
    );
    let mailbox = format!("coalesce({}, '(unknown mailbox)')", mail.mailbox);
    let (day, ms) = utc_day(d);
    let name = "b_bind_spike";
    let matching = format!(
        "{} AND coalesce({} = 'bind', false)",
        mail.is_mail,
        d.lower(&access)
    );
    let mut steps = vec![(
        format!("{name}_m"),
        format!(
            "  SELECT *, {mailbox} AS g0, {session} AS g1, {day} AS g2, {items} AS n, coalesce({ms}, 0) AS g_ms\n  FROM {from}\n  WHERE {matching}"
        ),
    )];
    let (pick, cols) = earliest(d, "b.w", &[]);
    let median = match d {
        Dialect::ClickHouse => "arraySort(groupArray(items))[intDiv(count(), 2) + 1]",
        Dialect::Spark => {
            "element_at(array_sort(collect_list(items)), CAST(floor(count(*) / 2) AS INT) + 1)"
        }
    };
    steps.push((
        format!("{name}_b"),
        format!("  SELECT g0, g1, g2, sum(n) AS items, {pick} AS w\n  FROM {name}_m\n  GROUP BY g0, g1, g2"),
    ));
    steps.push((
        format!("{name}_med"),
        format!(
            "  SELECT g0, count(*) AS buckets, {median} AS med\n  FROM {name}_b\n  GROUP BY g0"
        ),
    ));
    let judged = tokenward_detect::mail_bind_spike::MIN_SESSION_DAYS;
    let factor = setup.options.bind_spike_factor;
    let min = setup.options.bind_spike_min;
    let select = format!(
        "{}, {}\nFROM {name}_b AS b INNER JOIN {name}_med AS m ON b.g0 = m.g0\nWHERE m.buckets >= {judged} AND b.items >= greatest(greatest(m.med, 1) * {factor}, {min})",
        crate::corr::finding_head(d, info.id, info.title, "'high'"),
        cols.join(", ")
    );
    Ok(Compiled::Grouped { steps, select })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenward_detect::Kinds;

    /// Texts in any case are compared with the raw text lower-cased
    /// (ASCII letters only, as hunt ignores case), in both dialects.
    #[test]
    fn any_case_texts_screen_the_lower_cased_raw_text() {
        let mut needs = Needs::anchored(Kinds::ALL, &[], &[]);
        needs.anchors = Anchors::AnyOfIgnoringCase(vec!["Evil-Agent/Fleet".into()]);
        for d in [Dialect::ClickHouse, Dialect::Spark] {
            let sql = screen(d, &needs).unwrap();
            let raw = d.lower_ascii(&d.ident("raw"));
            assert_eq!(sql, format!("({})", d.contains(&raw, "'evil-agent/fleet'")));
        }
        needs.anchors = Anchors::AnyOf(vec!["Evil-Agent/Fleet".into()]);
        let sql = screen(Dialect::ClickHouse, &needs).unwrap();
        assert!(
            sql.contains("'Evil-Agent/Fleet'") && !sql.contains("lower"),
            "{sql}"
        );
    }
}
