//! `tw-mailbox-export`: a whole mailbox copied out through Exchange's own
//! export: `New-MailboxExportRequest` (to a PST on a file share) or a
//! compliance-search export (`New-ComplianceSearchAction -Export`). Either
//! hands an actor every item at once, without one MailItemsAccessed record
//! per item; administrators rarely run them outside an eDiscovery case.

use std::borrow::Cow;

use serde_json::json;

use super::{
    evidence, opt, shard_of, Builtin, Context, Detection, Info, Kinds, Needs, Outcome, Verdict,
    Weight,
};
use tokenward_event::{Event, EventKind, Finding, Rep, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-mailbox-export",
    title: "Mailbox exported through an export request or compliance search",
    requires: "Exchange admin audit records (RecordType 1) or Purview compliance-search records",
    attack: &["T1114.002"],
    weight: Weight::Moderate,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |_| Box::new(MailboxExport::default()),
};

/// The detection.
#[derive(Default)]
pub struct MailboxExport {
    findings: Vec<Finding>,
}

impl Detection for MailboxExport {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::anchored(
            Kinds::of(&[EventKind::Audit]),
            &["MailboxExportRequest", "ComplianceSearchAction"],
            &["Parameters"],
        )
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(MailboxExport::default())
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        let op = ev.operation().unwrap_or_default();
        let p = |name: &str| ev.name_value("Parameters", name);
        let (sev, why, e) = if op.eq_ignore_ascii_case("New-MailboxExportRequest") {
            (
                Severity::High,
                "the mailbox is copied to a PST file: every item leaves at once",
                evidence(&[
                    ("Mailbox", opt(p("Mailbox").as_ref())),
                    ("FilePath", opt(p("FilePath").as_ref())),
                    ("ContentFilter", opt(p("ContentFilter").as_ref())),
                ]),
            )
        } else if op.eq_ignore_ascii_case("New-ComplianceSearchAction")
            && p("Export").is_some_and(|v| !super::is_false(&v))
        {
            (
                Severity::Medium,
                "a compliance search's results are exported for download: legitimate in eDiscovery, an exfiltration path otherwise",
                evidence(&[("SearchName", opt(p("SearchName").as_ref()))]),
            )
        } else {
            return;
        };
        let mut e = e;
        e.insert("operation".into(), json!(op));
        e.insert("why".into(), json!(why));
        self.findings.push(INFO.finding(&Rep::of(ev), sev, e));
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        self.findings
            .extend(shard_of::<MailboxExport>(shard).findings);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let verdict = Verdict::blind_if(
            self.findings.is_empty() && !cx.records.has_workload("exchange"),
            "no Exchange admin audit records: export requests would not show",
        );
        Outcome::of(&INFO, self.findings, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cmdlet, run};
    use crate::Status;
    use serde_json::json;

    #[test]
    fn an_export_request_to_a_pst_is_high() {
        let out = run(
            Box::new(MailboxExport::default()),
            &[cmdlet(
                "New-MailboxExportRequest",
                json!([{"Name": "Mailbox", "Value": "ceo"}, {"Name": "FilePath", "Value": "\\\\srv\\share\\ceo.pst"}]),
            )],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::High);
        assert_eq!(out.findings[0].evidence["Mailbox"], json!("ceo"));
    }

    #[test]
    fn a_compliance_search_export_is_medium_and_a_purge_is_not_an_export() {
        let out = run(
            Box::new(MailboxExport::default()),
            &[
                cmdlet(
                    "New-ComplianceSearchAction",
                    json!([{"Name": "SearchName", "Value": "case-1"}, {"Name": "Export", "Value": "True"}]),
                ),
                cmdlet(
                    "New-ComplianceSearchAction",
                    json!([{"Name": "SearchName", "Value": "case-1"}, {"Name": "Purge", "Value": "True"}]),
                ),
            ],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::Medium);
    }

    #[test]
    fn other_export_cmdlets_do_not_fire() {
        let out = run(
            Box::new(MailboxExport::default()),
            &[
                cmdlet("Get-MailboxExportRequest", json!([])),
                cmdlet("Remove-MailboxExportRequest", json!([])),
            ],
        );
        assert!(out.findings.is_empty());
        assert_eq!(
            out.coverage[0].status,
            Status::Ok,
            "Exchange records were seen"
        );
    }

    #[test]
    fn logs_without_exchange_are_blind() {
        let out = run(
            Box::new(MailboxExport::default()),
            &[
                json!({"CreationTime": "2023-06-10T10:00:00", "Operation": "FileAccessed", "Workload": "SharePoint"}),
            ],
        );
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
