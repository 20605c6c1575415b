//! Findings: what a detection reports, in the shape every output writes.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use crate::codec;
use crate::event::Event;
use crate::evidence::{write_json_str, Evidence, RenderedParts};
use crate::timefmt::with_rfc3339;
use tokenward_logread::Locator;

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context worth a look.
    Low,
    /// Suspicious; needs triage.
    Medium,
    /// Likely malicious or a direct IOC hit in the published window.
    High,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text {
        None => Ok(None),
        Some(t) => crate::timefmt::parse_timestamp(&t)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unreadable time {t:?}"))),
    }
}

fn ser_time<S: serde::Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => with_rfc3339(*t, |text| s.serialize_str(text)),
        None => s.serialize_none(),
    }
}

/// The columns of a finding other than its evidence, in output order:
/// CSV timelines, JSONL findings and the SQL scripts' result name them so.
pub const COLUMNS: [&str; 11] = [
    "rule_id",
    "rule_title",
    "severity",
    "time",
    "user",
    "client_ip",
    "app_id",
    "session_id",
    "token_id",
    "source_file",
    "source_locator",
];

/// One detection hit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Stable detection id (`tw-...`, or a Sigma rule's id).
    pub rule_id: Cow<'static, str>,
    /// Detection title.
    pub rule_title: Cow<'static, str>,
    /// Severity.
    pub severity: Severity,
    /// Time of the (first) record, RFC 3339 UTC.
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time", default)]
    pub time: Option<OffsetDateTime>,
    /// Acting user.
    pub user: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// Application id.
    pub app_id: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// Token id.
    pub token_id: Option<String>,
    /// File of the (first) record, shared with every finding and event
    /// from that file.
    pub source_file: Arc<str>,
    /// Locator of the (first) record in that file.
    pub source_locator: String,
    /// The fields that matched and the reasoning values.
    pub evidence: Evidence,
}

fn write_json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

impl Finding {
    /// Appends the finding as JSON: the bytes `serde_json` writes for it
    /// (the output's JSON lines), with the entries of shared evidence
    /// taken from `parts` rendered once. With a rule that fires on most
    /// records, serialising the findings was most of the end of a hunt.
    pub fn write_json(&self, out: &mut Vec<u8>, parts: &mut RenderedParts) {
        out.extend_from_slice(b"{\"rule_id\":");
        write_json_str(out, &self.rule_id);
        out.extend_from_slice(b",\"rule_title\":");
        write_json_str(out, &self.rule_title);
        out.extend_from_slice(b",\"severity\":\"");
        out.extend_from_slice(self.severity.as_str().as_bytes());
        out.extend_from_slice(b"\",\"time\":");
        match self.time {
            Some(t) => with_rfc3339(t, |text| write_json_str(out, text)),
            None => out.extend_from_slice(b"null"),
        }
        for (name, value) in [
            (&b",\"user\":"[..], &self.user),
            (b",\"client_ip\":", &self.client_ip),
            (b",\"app_id\":", &self.app_id),
            (b",\"session_id\":", &self.session_id),
            (b",\"token_id\":", &self.token_id),
        ] {
            out.extend_from_slice(name);
            write_json_opt(out, value.as_deref());
        }
        out.extend_from_slice(b",\"source_file\":");
        write_json_str(out, &self.source_file);
        out.extend_from_slice(b",\"source_locator\":");
        write_json_str(out, &self.source_locator);
        out.extend_from_slice(b",\"evidence\":");
        self.evidence.write_json(out, parts);
        out.push(b'}');
    }

    /// About how many bytes this finding holds in memory (its own heap
    /// text and evidence, and its slot): what a holder of many findings
    /// budgets by. Shared parts (the source file name, a rule's shared
    /// evidence) are not counted.
    pub fn approx_bytes(&self) -> usize {
        let owned = |c: &Cow<'static, str>| match c {
            Cow::Owned(s) => s.len(),
            Cow::Borrowed(_) => 0,
        };
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<Finding>()
            + owned(&self.rule_id)
            + owned(&self.rule_title)
            + text(&self.user)
            + text(&self.client_ip)
            + text(&self.app_id)
            + text(&self.session_id)
            + text(&self.token_id)
            + self.source_locator.len()
            + self.evidence.own_heap_bytes()
    }

    /// The order findings are reported in: by time (those without one
    /// first), then detection, source file and place in it.
    pub fn report_order(&self, o: &Finding) -> std::cmp::Ordering {
        (
            self.time,
            &self.rule_id,
            &self.source_file,
            &self.source_locator,
        )
            .cmp(&(o.time, &o.rule_id, &o.source_file, &o.source_locator))
    }
}

/// The parts of an event a stateful detection keeps until it decides,
/// instead of the whole record (bounded memory).
#[derive(Clone, Debug, PartialEq)]
pub struct Rep {
    /// Event time.
    pub time: Option<OffsetDateTime>,
    /// User.
    pub user: Option<Arc<str>>,
    /// Client address.
    pub client_ip: Option<Arc<str>>,
    /// Application id.
    pub app_id: Option<Arc<str>>,
    /// Session id.
    pub session_id: Option<Arc<str>>,
    /// Token id.
    pub token_id: Option<Arc<str>>,
    /// Source file.
    pub file: Arc<str>,
    /// Locator.
    pub locator: Locator,
}

/// Texts read back from disk, each kept once for the representatives read
/// with them: the matches of a correlation group mostly repeat a few
/// users, addresses and files, and a copy of each for every match read
/// back was about 130 bytes of it. Past [`SHARED_TEXTS_MAX`] texts, new
/// ones are copied, not kept.
#[derive(Debug, Default)]
pub struct SharedTexts(std::collections::HashSet<Arc<str>, foldhash::fast::RandomState>);

/// Texts a [`SharedTexts`] keeps at most.
pub const SHARED_TEXTS_MAX: usize = 1 << 16;

impl SharedTexts {
    /// `text`, shared with an equal one read before if kept.
    pub fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(kept) = self.0.get(text) {
            return kept.clone();
        }
        let new: Arc<str> = Arc::from(text);
        if self.0.len() < SHARED_TEXTS_MAX {
            self.0.insert(new.clone());
        }
        new
    }
}

impl Rep {
    /// Keeps the reporting fields of an event. The texts are shared with
    /// the event, not copied: stateful detections keep a representative
    /// for most records they see (each new mailbox session of a day, each
    /// Sigma hit), and five copies each were 3 % of a hunt over mailbox
    /// records.
    pub fn of(ev: &Event) -> Rep {
        let [user, client_ip, app_id, session_id, token_id] = ev.reported();
        Rep {
            time: ev.time,
            user,
            client_ip,
            app_id,
            session_id,
            token_id,
            file: ev.source_file.clone(),
            locator: ev.locator,
        }
    }

    /// Appends this representative to a record of a temporary file
    /// ([`crate::codec`]), to read back with [`Rep::read`].
    pub fn write(&self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        codec::put_opt_time(buf, self.time);
        for t in [
            &self.user,
            &self.client_ip,
            &self.app_id,
            &self.session_id,
            &self.token_id,
        ] {
            codec::put_opt_text(buf, t.as_deref())?;
        }
        codec::put_text(buf, &self.file)?;
        codec::put_u64(buf, self.locator.line);
        codec::put_u64(buf, self.locator.record);
        Ok(())
    }

    /// Reads back a representative [`Rep::write`] wrote.
    pub fn read(c: &mut codec::Cursor<'_>) -> Result<Rep, String> {
        Rep::read_sharing(c, &mut SharedTexts::default())
    }

    /// Passes over a representative [`Rep::write`] wrote, reading none of
    /// its texts.
    pub fn skip(c: &mut codec::Cursor<'_>) -> Result<(), String> {
        c.opt_time()?;
        for _ in 0..5 {
            c.opt_bytes()?;
        }
        c.opt_bytes()?.ok_or("text missing")?;
        c.u64()?;
        c.u64()?;
        Ok(())
    }

    /// Reads back a representative [`Rep::write`] wrote, its texts shared
    /// with those read before through `shared`.
    pub fn read_sharing(
        c: &mut codec::Cursor<'_>,
        shared: &mut SharedTexts,
    ) -> Result<Rep, String> {
        let time = c.opt_time()?;
        let mut text = || c.opt_text().map(|t| t.map(|t| shared.get(t)));
        let (user, client_ip, app_id, session_id, token_id) =
            (text()?, text()?, text()?, text()?, text()?);
        Ok(Rep {
            time,
            user,
            client_ip,
            app_id,
            session_id,
            token_id,
            file: shared.get(c.text()?),
            locator: Locator {
                line: c.u64()?,
                record: c.u64()?,
            },
        })
    }

    /// Whether an event would be an earlier representative than `o`
    /// ([`Rep::earlier_than`] without building the representative).
    pub fn event_earlier(ev: &Event, o: &Rep) -> bool {
        (ev.time, &*ev.source_file, ev.locator) < (o.time, &*o.file, o.locator)
    }

    /// Whether this representative is earlier than another (by time, then position).
    pub fn earlier_than(&self, o: &Rep) -> bool {
        (self.time, &*self.file, self.locator) < (o.time, &*o.file, o.locator)
    }

    /// [`Rep::finding`], then lets go of this representative's texts
    /// (user, address, ids), keeping its time, file and place: for a
    /// representative no one reads again, whose texts need not outlive
    /// the event they are shared with.
    pub fn take_finding(
        &mut self,
        rule_id: Cow<'static, str>,
        rule_title: Cow<'static, str>,
        severity: Severity,
        evidence: impl Into<Evidence>,
    ) -> Finding {
        let f = self.finding(rule_id, rule_title, severity, evidence);
        for text in [
            &mut self.user,
            &mut self.client_ip,
            &mut self.app_id,
            &mut self.session_id,
            &mut self.token_id,
        ] {
            *text = None;
        }
        f
    }

    /// Turns the representative into a finding (its texts copied: a
    /// finding owns its own).
    pub fn finding(
        &self,
        rule_id: Cow<'static, str>,
        rule_title: Cow<'static, str>,
        severity: Severity,
        evidence: impl Into<Evidence>,
    ) -> Finding {
        let owned = |t: &Option<Arc<str>>| t.as_deref().map(str::to_owned);
        Finding {
            rule_id,
            rule_title,
            severity,
            time: self.time,
            user: owned(&self.user),
            client_ip: owned(&self.client_ip),
            app_id: owned(&self.app_id),
            session_id: owned(&self.session_id),
            token_id: owned(&self.token_id),
            source_file: self.file.clone(),
            source_locator: self.locator.to_string(),
            evidence: evidence.into(),
        }
    }
}

/// Whether a detection could see what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It judged the input.
    Ok,
    /// The input lacked the events or fields it needs: silence means nothing.
    Blind,
}

/// What a detection (or a Sigma rule) reports about itself at the end of a
/// hunt.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    /// Detection id.
    pub id: Cow<'static, str>,
    /// Title.
    pub title: Cow<'static, str>,
    /// Findings reported.
    pub hits: usize,
    /// `ok`, or `blind` when the input lacked what the detection needs.
    pub status: Status,
    /// What was missing (blind) or a caveat (ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn text(rng: &mut fastrand::Rng) -> String {
        const PIECES: [&str; 12] = [
            "a",
            "Z9",
            " ",
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "😀",
            "0123456789abcdef",
        ];
        (0..rng.usize(0..24))
            .map(|_| PIECES[rng.usize(..PIECES.len())])
            .collect()
    }

    /// Written to a temporary file and read back, a representative is the
    /// same, texts present, empty or absent, with or without a time.
    #[test]
    fn a_representative_reads_back_as_written() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let mut opt = || (rng.u8(..3) > 0).then(|| Arc::from(text(&mut rng)));
            let (user, client_ip, app_id, session_id, token_id) =
                (opt(), opt(), opt(), opt(), opt());
            let rep = Rep {
                time: (rng.bool()).then(|| {
                    OffsetDateTime::from_unix_timestamp_nanos(rng.i128(-(1 << 60)..1 << 60))
                        .unwrap()
                }),
                user,
                client_ip,
                app_id,
                session_id,
                token_id,
                file: Arc::from(text(&mut rng)),
                locator: Locator {
                    line: rng.u64(..),
                    record: rng.u64(..),
                },
            };
            let mut buf = vec![9];
            rep.write(&mut buf).unwrap();
            let mut c = codec::Cursor::new(&buf[1..]);
            assert_eq!(Rep::read(&mut c).unwrap(), rep);
            assert_eq!(c.left(), 0);
            // Cut anywhere, it is an error, never another representative.
            let cut = rng.usize(1..buf.len());
            assert!(Rep::read(&mut codec::Cursor::new(&buf[1..cut])).is_err());
        }
    }

    /// Representatives read back through one [`SharedTexts`] hold one
    /// copy of each text they share (file, user, address), equal to what
    /// was written; past [`SHARED_TEXTS_MAX`] texts, new ones are copies.
    #[test]
    fn representatives_read_back_share_their_texts() {
        let rep = |user: &str| Rep {
            time: None,
            user: Some(Arc::from(user)),
            client_ip: Some(Arc::from("198.51.100.7")),
            app_id: None,
            session_id: None,
            token_id: None,
            file: Arc::from("logs/ual.jsonl"),
            locator: Locator { line: 3, record: 3 },
        };
        let mut buf = Vec::new();
        for user in ["a@x", "b@x", "a@x"] {
            rep(user).write(&mut buf).unwrap();
        }
        let mut c = codec::Cursor::new(&buf);
        let mut shared = SharedTexts::default();
        let read: Vec<Rep> = (0..3)
            .map(|_| Rep::read_sharing(&mut c, &mut shared).unwrap())
            .collect();
        assert_eq!(read, [rep("a@x"), rep("b@x"), rep("a@x")]);
        assert!(Arc::ptr_eq(&read[0].file, &read[2].file));
        assert!(Arc::ptr_eq(&read[0].file, &read[1].file));
        let user = |i: usize| read[i].user.clone().unwrap();
        assert!(Arc::ptr_eq(&user(0), &user(2)));
        assert!(!Arc::ptr_eq(&user(0), &user(1)));

        let mut full = SharedTexts::default();
        for i in 0..SHARED_TEXTS_MAX {
            full.get(&i.to_string());
        }
        assert!(Arc::ptr_eq(&full.get("7"), &full.get("7")));
        let late = full.get("not kept");
        assert_eq!(&*late, "not kept");
        assert!(!Arc::ptr_eq(&late, &full.get("not kept")));
    }

    /// A representative holds the event's own texts, not copies, and a
    /// finding made from it says what the event says.
    #[test]
    fn a_representative_shares_the_events_texts() {
        let ev = Event::from_record(
            json!({"CreationTime": "2023-06-01T10:00:00", "UserId": "Alice@X",
                   "ClientIP": "198.51.100.7", "AppId": "app", "SessionId": "s1",
                   "AppAccessContext": {"UniqueTokenId": "t1"}}),
            None,
            Arc::from("f"),
            Locator { line: 3, record: 3 },
        );
        let rep = Rep::of(&ev);
        let pairs = [
            (&rep.user, ev.user()),
            (&rep.client_ip, ev.client_ip()),
            (&rep.app_id, ev.app_id()),
            (&rep.session_id, ev.session_id()),
            (&rep.token_id, ev.token_id()),
        ];
        for (kept, found) in pairs {
            let (kept, found) = (kept.as_deref().unwrap(), found.unwrap());
            assert!(std::ptr::eq(kept, found), "{kept} is the event's own text");
        }
        let f = rep.finding(
            Cow::Borrowed("r"),
            Cow::Borrowed("R"),
            Severity::Low,
            Map::new(),
        );
        assert_eq!(
            [f.user, f.client_ip, f.app_id, f.session_id, f.token_id].map(Option::unwrap),
            ["alice@x", "198.51.100.7", "app", "s1", "t1"].map(str::to_owned)
        );
        assert_eq!(&*f.source_file, "f");
        assert_eq!(f.source_locator, Locator { line: 3, record: 3 }.to_string());
    }

    /// Findings written by hand read as serde_json writes them: every
    /// field present or not, texts with quotes, backslashes, control
    /// characters and non-ASCII, times with and without fractions and in
    /// years `Rfc3339` does not hold, evidence own, shared and both (an
    /// own entry hiding a shared one), and parts rendered once for many
    /// findings.
    #[test]
    fn findings_written_by_hand_are_serde_json_bytes() {
        let mut rng = fastrand::Rng::with_seed(7);
        let part = |v: Value| Arc::new(v.as_object().cloned().unwrap());
        let parts = [
            part(
                json!({"attack": ["T1078.004"], "sigma_author": "A \"q\" \\ b", "sigma_id": "x", "z": {"n": 1.5}}),
            ),
            part(json!({"note": "shared", "sigma_title": "é\n"})),
        ];
        let times = [
            None,
            Some(time::macros::datetime!(2024-03-01 00:14:12.661483 UTC)),
            Some(time::macros::datetime!(2024-03-01 00:14:12 UTC)),
            Some(time::macros::datetime!(-0001-12-31 23:00 UTC)),
        ];
        let mut rendered = RenderedParts::default();
        for i in 0..400 {
            let mut own = Map::new();
            for _ in 0..rng.usize(0..4) {
                let v = match rng.usize(0..5) {
                    0 => Value::String(text(&mut rng)),
                    1 => json!(rng.i64(..)),
                    2 => json!({ text(&mut rng): [null, true, 2.25, text(&mut rng)] }),
                    3 => json!(u64::MAX),
                    _ => Value::Null,
                };
                let key = ["fields", "note", "why", "sigma_id"][rng.usize(..4)].to_owned();
                own.insert(key, v);
            }
            let evidence = match i % 3 {
                0 => Evidence::from(own),
                n => Evidence::with_shared(parts[n - 1].clone(), own),
            };
            let opt = |rng: &mut fastrand::Rng| rng.bool().then(|| text(rng));
            let f = Finding {
                rule_id: Cow::Owned(text(&mut rng)),
                rule_title: Cow::Borrowed("title"),
                severity: [Severity::Low, Severity::Medium, Severity::High][i % 3],
                time: times[i % times.len()],
                user: opt(&mut rng),
                client_ip: opt(&mut rng),
                app_id: opt(&mut rng),
                session_id: opt(&mut rng),
                token_id: opt(&mut rng),
                source_file: Arc::from(text(&mut rng)),
                source_locator: text(&mut rng),
                evidence,
            };
            let mut by_hand = Vec::new();
            f.write_json(&mut by_hand, &mut rendered);
            assert_eq!(
                String::from_utf8(by_hand).unwrap(),
                serde_json::to_string(&f).unwrap(),
                "finding {i}"
            );
            let mut evidence = Vec::new();
            f.evidence.write_json(&mut evidence, &mut rendered);
            assert_eq!(
                String::from_utf8(evidence).unwrap(),
                serde_json::to_string(&f.evidence).unwrap(),
                "evidence of finding {i}"
            );
        }
        assert_eq!(rendered.len(), 2, "each part rendered once");
    }
}
