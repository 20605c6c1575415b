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

/// A compiled built-in: predicates per event kind, and the severity as an
/// SQL expression (a detection may grade its findings).
pub(crate) struct Compiled {
    pub(crate) alts: Vec<(Vec<EventKind>, String)>,
    pub(crate) severity: String,
}

/// The kinds of event a declaration routes to the detection.
fn kinds_of(needs: &Needs) -> Vec<EventKind> {
    EventKind::ALL
        .into_iter()
        .filter(|k| needs.kinds.contains(*k))
        .collect()
}

/// The declaration's raw-text screen over the `raw` column (texts matched
/// case-sensitively, as hunt screens the record's bytes).
fn screen(d: Dialect, needs: &Needs) -> Result<String, String> {
    match &needs.anchors {
        Anchors::Every => Ok("true".into()),
        Anchors::AnyOf(texts) => Ok(format!(
            "({})",
            texts
                .iter()
                .map(|t| d.contains(&d.ident("raw"), &d.lit(t)))
                .collect::<Vec<_>>()
                .join(" OR ")
        )),
        Anchors::Screen(_) => Err("its screen is code, not texts".into()),
    }
}

/// Compiles the built-in `id`, or says why it is not.
pub(crate) fn compile(
    sc: &mut SigmaCompiler<'_>,
    id: &str,
    setup: &Setup,
) -> Result<Compiled, String> {
    let Some(b) = tokenward_detect::BUILTINS.iter().find(|b| b.info.id == id) else {
        return Err("unknown built-in detection".into());
    };
    let det: Box<dyn Detection> = (b.make)(setup);
    let needs = det.needs();
    match id {
        "tw-audit-tampering" => audit_tampering(sc, &needs),
        "tw-mailbox-export" => mailbox_export(sc, &needs),
        _ => Err(not_yet(id).into()),
    }
}

/// Why a built-in is not compiled yet: what it needs across records.
fn not_yet(id: &str) -> &'static str {
    match id {
        "tw-ioc-ip" | "tw-ioc-useragent" | "tw-ioc-key" => {
            "not compiled yet: its indicator list with per-indicator time windows would be a table joined in"
        }
        "tw-mail-new-client-app" => {
            "not compiled yet: needs each mailbox's 14-day baseline and the rollout test across mailboxes"
        }
        "tw-token-without-signin" | "tw-owa-token-for-resource" => {
            "not compiled yet: needs the sign-in join per tenant and day of sign-in coverage"
        }
        "tw-mail-bind-spike" => "not compiled yet: needs each mailbox's median per bucket",
        "tw-audit-gap" => "not compiled yet: needs per-source time coverage",
        "tw-mail-throttled" | "tw-mail-sync-unusual-client" => {
            "not compiled yet: groups its findings per mailbox and day"
        }
        "tw-gateway-rejected-burst" => "not compiled yet: needs per-address minute buckets",
        _ => "not compiled yet",
    }
}

/// `Event::name_value("Parameters", name)` for events of `kinds`.
fn parameter(sc: &mut SigmaCompiler<'_>, name: &str, kinds: &[EventKind]) -> String {
    let key = format!("parameters[name={}].value", name.to_ascii_lowercase());
    let vals = sc.path_values(&key, kinds);
    sc.d.first_trimmed(&vals)
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
    Ok(Compiled {
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
    Ok(Compiled { alts, severity })
}
