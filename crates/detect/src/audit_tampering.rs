//! `tw-audit-tampering`: audit logging disabled or bypassed: admin-audit
//! ingestion off, mailbox audit bypass, mailbox or organisation auditing
//! off, audit action lists without MailItemsAccessed, Azure
//! diagnostic-setting deletes.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::{
    evidence, is_false, is_true, opt, shard_of, Builtin, Context, Detection, Info, Kinds, Needs,
    Outcome, Verdict, Weight,
};
use tokenward_event::{Event, EventKind};
use tokenward_event::{Finding, Rep, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-audit-tampering",
    title: "Audit logging disabled or bypassed",
    requires: "Exchange admin audit records (RecordType 1) or Azure Activity",
    attack: &["T1562.008"],
    weight: Weight::Strong,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |_| Box::new(AuditTampering::default()),
};

/// The detection.
#[derive(Default)]
pub struct AuditTampering {
    /// Audit-configuration records seen.
    seen: u64,
    findings: Vec<Finding>,
}

impl Detection for AuditTampering {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::anchored(
            Kinds::of(&[EventKind::Audit, EventKind::AzureActivity]),
            &[
                "AuditLogConfig",
                "AuditBypass",
                "AuditEnabled",
                "AuditDisabled",
                "AuditOwner",
                "AuditDelegate",
                "AuditAdmin",
                "diagnosticSettings",
                "DIAGNOSTICSETTINGS",
                "diagnosticsettings",
            ],
            &["Parameters"],
        )
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(AuditTampering::default())
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        self.seen += 1;
        let hit = match ev.kind {
            EventKind::AzureActivity => azure(ev),
            _ => exchange(ev),
        };
        if let Some((sev, why, mut e)) = hit {
            e.insert("operation".into(), opt(ev.operation()));
            e.insert("why".into(), json!(why));
            self.findings.push(INFO.finding(&Rep::of(ev), sev, e));
        }
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<AuditTampering>(shard);
        self.seen += o.seen;
        self.findings.extend(o.findings);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let verdict = Verdict::blind_if(
            self.seen == 0 && !cx.records.has_workload("exchange"),
            "no Exchange admin audit records (RecordType 1) or Azure Activity records",
        );
        Outcome::of(&INFO, self.findings, verdict)
    }
}

type Hit = (Severity, String, Map<String, Value>);

fn azure(ev: &Event) -> Option<Hit> {
    let op = ev.operation()?.to_ascii_lowercase();
    op.contains("diagnosticsettings/delete").then(|| {
        (
            Severity::High,
            "diagnostic setting deleted: logs stop flowing to their destination".to_string(),
            Map::new(),
        )
    })
}

fn exchange(ev: &Event) -> Option<Hit> {
    let op = ev.operation().unwrap_or_default().to_ascii_lowercase();
    let p = |name: &str| ev.name_value("Parameters", name);
    let mut hit = None;
    if op == "set-adminauditlogconfig" {
        for name in ["UnifiedAuditLogIngestionEnabled", "AdminAuditLogEnabled"] {
            if let Some(v) = p(name).filter(|v| is_false(v)) {
                hit = Some((
                    Severity::High,
                    format!("{name} set to {v}: audit records stop being written"),
                    evidence(&[(name, json!(v))]),
                ));
            }
        }
    } else if op.contains("mailboxauditbypassassociation") {
        let v = p("AuditBypassEnabled");
        if v.as_deref().is_none_or(is_true) || op.starts_with("new-") {
            hit = Some((
                Severity::High,
                "mailbox audit bypass: actions of this account are no longer logged".into(),
                evidence(&[
                    ("AuditBypassEnabled", opt(v.as_ref())),
                    ("Identity", opt(p("Identity").as_ref())),
                ]),
            ));
        }
    } else if op == "set-mailbox" {
        if let Some(v) = p("AuditEnabled").filter(|v| is_false(v)) {
            hit = Some((
                Severity::High,
                "mailbox auditing disabled".into(),
                evidence(&[
                    ("AuditEnabled", json!(v)),
                    ("Identity", opt(p("Identity").as_ref())),
                ]),
            ));
        } else {
            for name in ["AuditOwner", "AuditDelegate", "AuditAdmin"] {
                if let Some(v) = p(name) {
                    if !v.to_ascii_lowercase().contains("mailitemsaccessed") {
                        hit = Some((
                            Severity::Medium,
                            format!("{name} set without MailItemsAccessed: mail reads of this logon type go unlogged"),
                            evidence(&[(name, json!(v)), ("Identity", opt(p("Identity").as_ref()))]),
                        ));
                    }
                }
            }
        }
    } else if op == "set-organizationconfig" {
        if let Some(v) = p("AuditDisabled").filter(|v| is_true(v)) {
            hit = Some((
                Severity::High,
                "mailbox auditing disabled for the whole organisation".into(),
                evidence(&[("AuditDisabled", json!(v))]),
            ));
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cmdlet, run};
    use crate::Status;
    use serde_json::json;

    #[test]
    fn switching_off_unified_audit_ingestion_is_high() {
        let out = run(
            Box::new(AuditTampering::default()),
            &[cmdlet(
                "Set-AdminAuditLogConfig",
                json!([{"Name": "UnifiedAuditLogIngestionEnabled", "Value": "False"}]),
            )],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::High);
    }

    #[test]
    fn audit_actions_without_mail_items_accessed_are_medium_with_it_nothing() {
        let out = run(
            Box::new(AuditTampering::default()),
            &[
                cmdlet(
                    "Set-Mailbox",
                    json!([{"Name": "AuditOwner", "Value": "Update,HardDelete"}, {"Name": "Identity", "Value": "dan"}]),
                ),
                cmdlet(
                    "Set-Mailbox",
                    json!([{"Name": "AuditOwner", "Value": "Update,MailItemsAccessed"}]),
                ),
            ],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::Medium);
        assert_eq!(out.findings[0].evidence["Identity"], json!("dan"));
    }

    #[test]
    fn turning_auditing_on_is_not_tampering() {
        let out = run(
            Box::new(AuditTampering::default()),
            &[
                cmdlet(
                    "Set-AdminAuditLogConfig",
                    json!([{"Name": "UnifiedAuditLogIngestionEnabled", "Value": "True"}]),
                ),
                cmdlet(
                    "Set-Mailbox",
                    json!([{"Name": "AuditEnabled", "Value": "True"}]),
                ),
            ],
        );
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn deleting_an_azure_diagnostic_setting_is_high() {
        let out = run(
            Box::new(AuditTampering::default()),
            &[
                json!({"TimeGenerated": "2023-06-10T10:00:00Z", "Type": "AzureActivity", "Caller": "a@x",
                     "OperationNameValue": "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE"}),
            ],
        );
        assert_eq!(out.findings.len(), 1);
    }

    #[test]
    fn logs_without_exchange_or_azure_activity_are_blind() {
        let out = run(
            Box::new(AuditTampering::default()),
            &[
                json!({"CreationTime": "2023-06-10T10:00:00", "Operation": "FileAccessed", "Workload": "SharePoint"}),
            ],
        );
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
