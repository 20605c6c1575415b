//! `tw-ioc-key`: a record naming a known-compromised signing key (the
//! acquired MSA key's kid and thumbprints, or a user key indicator) in any
//! field: application and gateway JWT logs record them, Microsoft 365 and
//! Entra logs never do.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    evidence, opt, shard_of, Anchors, Builtin, Context, Detection, Info, Kinds, Needs, Outcome,
    Setup, Verdict, Weight, WholeRecord,
};
use crate::ioc::{shadowed_field, IocSet};
use tokenward_event::{Event, EventKind};
use tokenward_event::{Finding, Severity};

/// Id, title, requirements.
pub const INFO: Info = Info {
    id: "tw-ioc-key",
    title: "Token signed with a known-compromised key",
    requires: "records carrying token headers (kid/x5t) or key thumbprints; Microsoft 365 and Entra logs never do",
    attack: &["T1606"],
    weight: Weight::Strong,
};

/// Registration.
pub const BUILTIN: Builtin = Builtin {
    info: &INFO,
    make: |s| Box::new(IocKey::new(s)),
};

/// The `what` of key-id indicators, matched exactly; the others are hex
/// thumbprints, matched with colons removed and ASCII case ignored.
pub const KID: &str = "kid";

/// Fields that show a record carries token headers (coverage).
const HEADER_FIELDS: &[&str] = &["kid", "x5t", "header.kid", "jwt.header.kid", "thumbprint"];
/// Texts of those fields, as exports write them.
const HEADER_TEXTS: &[&str] = &["\"kid\"", "\"x5t\"", "thumbprint", "Thumbprint"];

/// Deepest nesting scanned for key values: deeper than any record can be
/// (the JSON parser refuses nesting past 128, and JSON held in strings is
/// expanded at most `NESTED_DEPTH` more times), so every string of every
/// record is searched, as the SQL of this detection searches every value.
const SCAN_DEPTH: u32 = 128 * (tokenward_event::projection::NESTED_DEPTH + 1);
/// Lengths of the values searched: kid (27), SHA-1 (40, 59 with colons),
/// SHA-256 (64, 95 with colons), in bytes once trimmed.
pub const VALUE_LENGTHS: [usize; 5] = [27, 40, 59, 64, 95];

/// The detection.
pub struct IocKey {
    iocs: Arc<IocSet>,
    header_records: u64,
    findings: Vec<Finding>,
}

impl IocKey {
    fn new(s: &Setup) -> IocKey {
        IocKey {
            iocs: s.iocs.clone(),
            header_records: 0,
            findings: Vec::new(),
        }
    }
}

impl Detection for IocKey {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        let key_lits = self.iocs.key_literals();
        let mut lits = key_lits.clone();
        lits.extend(HEADER_TEXTS.iter().map(|s| s.to_string()));
        // Any string anywhere may hold a key indicator, so a record that
        // holds one of their texts is read whole. One that passes the
        // screen only by a header text (`servicePrincipalCredentialThumbprint`
        // is in a third of Entra sign-ins) is read for the header fields
        // alone: no indicator can match where none of their texts is.
        Needs {
            kinds: Kinds::ALL,
            anchors: Anchors::AnyOf(lits),
            fields: HEADER_FIELDS.iter().map(|f| Cow::Borrowed(*f)).collect(),
            whole_record: WholeRecord::WhenAnyOf(key_lits),
            unparsed_time_and_workload: false,
            signin_index: false,
            blind_without_signins: false,
        }
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(IocKey {
            iocs: self.iocs.clone(),
            header_records: 0,
            findings: Vec::new(),
        })
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        if HEADER_FIELDS.iter().any(|p| ev.has(p)) {
            self.header_records += 1;
        }
        if self.iocs.keys.is_empty() {
            return;
        }
        let mut hits = Vec::new();
        find_key_values(&ev.record, &mut Vec::new(), &self.iocs, &mut hits, 0);
        // A key id hidden in the earlier copy of a key named twice.
        for (k, v) in &ev.shadowed {
            if !hits.is_empty() {
                break;
            }
            let label = shadowed_field(k);
            find_key_values(v, &mut vec![label.as_str()], &self.iocs, &mut hits, 0);
        }
        let Some((path, value, what, source)) = hits.into_iter().next() else {
            return;
        };
        let mut e = evidence(&[
            ("field", json!(path)),
            ("value", json!(value)),
            ("key_id_type", json!(what)),
            ("source", json!(source)),
        ]);
        if ev.kind == EventKind::Gateway {
            // Whether the gateway let the token through is the first
            // question about a known-bad key.
            e.insert("verdict".into(), opt(ev.result()));
            if let Some(rs) = ev.get("reasons") {
                e.insert("reasons".into(), rs.clone());
            }
            e.insert("operation".into(), opt(ev.operation()));
        }
        self.findings
            .push(INFO.finding(&tokenward_event::Rep::of(ev), Severity::High, e));
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<IocKey>(shard);
        self.header_records += o.header_records;
        self.findings.extend(o.findings);
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        let verdict = Verdict::blind_if(
            self.header_records == 0 && self.findings.is_empty(),
            "no record carries a token header (kid/x5t): Microsoft 365 and Entra logs never record the signing key; give application or proxy logs of JWT headers",
        );
        Outcome::of(&INFO, self.findings, verdict)
    }
}

/// The first string in `v` equal to a key indicator: (path, value, kind, source).
fn find_key_values<'a>(
    v: &'a Value,
    path: &mut Vec<&'a str>,
    iocs: &IocSet,
    hits: &mut Vec<(String, String, &'static str, String)>,
    depth: u32,
) {
    if depth > SCAN_DEPTH || !hits.is_empty() {
        return;
    }
    match v {
        Value::String(s) => {
            if !VALUE_LENGTHS.contains(&s.trim().len()) {
                return;
            }
            let t = s.trim();
            let hex: String = t.chars().filter(|c| *c != ':').collect();
            for k in &iocs.keys {
                let m = if k.what == KID {
                    t == k.value
                } else {
                    hex.eq_ignore_ascii_case(&k.value)
                };
                if m {
                    hits.push((path.join("."), t.to_string(), k.what, k.source.clone()));
                    return;
                }
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k);
                find_key_values(x, path, iocs, hits, depth + 1);
                path.pop();
            }
        }
        Value::Array(a) => {
            for x in a {
                find_key_values(x, path, iocs, hits, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{make, run};
    use crate::Status;
    use serde_json::json;

    fn det() -> Box<dyn Detection> {
        make(&BUILTIN)
    }

    #[test]
    fn the_storm_kid_in_an_application_log_fires() {
        let out = run(
            det(),
            &[
                json!({"time": "2023-06-10T10:00:00Z", "jwt": {"header": {"kid": "1LTMzakihiRla_8z2BEJVXeWMqo", "alg": "RS256"}}}),
            ],
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].evidence["field"], json!("jwt.header.kid"));
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn other_kids_do_not_fire_but_give_coverage() {
        let out = run(
            det(),
            &[json!({"time": "2023-06-10T10:00:00Z", "kid": "ent-2023-rs256"})],
        );
        assert!(out.findings.is_empty());
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    /// A record holding a header text but no indicator text is read for
    /// its header fields only, and still counts for coverage; one holding
    /// an indicator's text is read whole, wherever the text sits.
    #[test]
    fn only_records_holding_an_indicator_text_are_read_whole() {
        let needs = det().needs();
        let WholeRecord::WhenAnyOf(texts) = &needs.whole_record else {
            panic!(
                "expected a whole-record screen, got {:?}",
                needs.whole_record
            );
        };
        let whole = |b: &[u8]| {
            texts
                .iter()
                .any(|t| memchr::memmem::find(b, t.as_bytes()).is_some())
        };
        let signin = json!({"createdDateTime": "2024-03-01T00:00:00Z",
            "servicePrincipalCredentialThumbprint": "1EE0618970A9503219CFA43D0780CE01CFE8EC0F"});
        assert!(!whole(&serde_json::to_vec(&signin).unwrap()));
        let deep = json!({"time": "2023-06-10T10:00:00Z",
            "a": {"b": ["x", {"c": "D4:B4:CC:CD:A9:22:86:24:65:6B:FF:33:D8:11:09:55:77:96:32:AA"}]}});
        assert!(whole(&serde_json::to_vec(&deep).unwrap()));
        let out = run(det(), &[signin, deep.clone()]);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert_eq!(out.findings[0].evidence["field"], json!("a.b.c"));
        let kid_only = json!({"time": "2023-06-10T10:00:00Z", "thumbprint": "AB"});
        let out = run(det(), &[kid_only]);
        assert_eq!(out.coverage[0].status, Status::Ok);
    }

    #[test]
    fn logs_without_token_headers_are_blind() {
        let out = run(
            det(),
            &[json!({"CreationTime": "2023-06-10T10:00:00", "Operation": "Send"})],
        );
        assert_eq!(out.coverage[0].status, Status::Blind);
    }
}
