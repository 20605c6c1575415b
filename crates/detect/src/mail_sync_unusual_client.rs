//! `tw-mail-sync-unusual-client`: `MailAccessType` Sync by a client other
//! than desktop Outlook. Sync is logged only for desktop Outlook; another
//! client syncing means a whole folder was downloaded.

use std::borrow::Cow;

use serde_json::json;

use super::mail::{self, is_desktop_outlook, is_mail};
use super::{
    day, evidence, shard_of, Builtin, Context, Detection, Grouped, Info, Kinds, Needs, Outcome,
    Verdict, Weight,
};
use tokenward_event::Severity;
use tokenward_event::{Event, EventKind};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-mail-sync-unusual-client",
    title: "Mailbox Sync by a client other than desktop Outlook",
    requires: "MailItemsAccessed records with MailAccessType",
    attack: &["T1114.002"],
    weight: Weight::Weak,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |_| Box::new(MailSyncUnusualClient::default()),
};

/// The detection.
#[derive(Default)]
pub struct MailSyncUnusualClient {
    /// MailItemsAccessed records that give their access type.
    with_field: u64,
    hits: Grouped,
}

impl Detection for MailSyncUnusualClient {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs::anchored(Kinds::of(&[EventKind::Audit]), mail::ANCHORS, mail::FIELDS)
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(MailSyncUnusualClient::default())
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        if !is_mail(ev) {
            return;
        }
        let Some(access) = mail::access_type(ev) else {
            return;
        };
        self.with_field += 1;
        if !access.eq_ignore_ascii_case("Sync") {
            return;
        }
        let client = mail::client(ev).unwrap_or_default();
        if is_desktop_outlook(&client) {
            return;
        }
        let mailbox = mail::mailbox(ev);
        let key = format!(
            "{mailbox}|{}|{client}|{}",
            ev.session_id().unwrap_or(""),
            day(ev.time)
        );
        self.hits.add(key, ev, Severity::High, || {
            evidence(&[
                ("mailbox", json!(mailbox)),
                ("MailAccessType", json!(access)),
                ("ClientInfoString", json!(client)),
                ("why", json!("Sync is logged only for desktop Outlook; another client syncing means a whole folder was downloaded")),
            ])
        });
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<MailSyncUnusualClient>(shard);
        self.with_field += o.with_field;
        self.hits.merge(o.hits);
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        let verdict = Verdict::blind_if(
            self.with_field == 0,
            "no MailItemsAccessed records with MailAccessType",
        );
        Outcome::of(&INFO, self.hits.findings(&INFO), verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;
    use crate::Status;
    use serde_json::json;

    fn sync(client: &str) -> serde_json::Value {
        json!({"CreationTime": "2023-06-10T01:00:00", "Operation": "MailItemsAccessed",
               "Workload": "Exchange", "UserId": "a@x", "ClientInfoString": client,
               "OperationProperties": [{"Name": "MailAccessType", "Value": "Sync"}]})
    }

    #[test]
    fn sync_by_a_rest_client_fires() {
        let out = run(
            Box::new(MailSyncUnusualClient::default()),
            &[sync("Client=REST;Client=RESTSystem;;")],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::High);
    }

    #[test]
    fn sync_by_desktop_outlook_is_normal() {
        let out = run(
            Box::new(MailSyncUnusualClient::default()),
            &[sync("Client=MSExchangeRPC"), sync("Microsoft Outlook 16.0")],
        );
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn other_operations_are_not_mail_reads() {
        let mut r = sync("Client=REST;Client=RESTSystem;;");
        r["Operation"] = json!("Send");
        r["Note"] = json!("MailItemsAccessed");
        let out = run(Box::new(MailSyncUnusualClient::default()), &[r]);
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
