//! The sign-in index: which tokens, sessions and client addresses Entra
//! sign-ins issued or used, and over what time. Detections that declare
//! [`Needs::signin_index`](super::Needs::signin_index) read it; the engine
//! builds it in parallel shards from sign-in events, reading sign-in files
//! before the others so that audit records already explained by a sign-in
//! are settled as they stream by.

use std::collections::HashSet;

use time::OffsetDateTime;

use super::{widen, Kinds, Needs};
use tokenward_event::{Event, EventKind};

/// Tokens, sessions and addresses of the sign-ins read.
#[derive(Clone, Debug, Default)]
pub struct SigninIndex {
    /// Sign-in events indexed.
    pub signins: u64,
    /// `uniqueTokenIdentifier` values.
    pub tokens: HashSet<String>,
    /// Session ids, lower-cased (audit records spell them in either case).
    pub sessions: HashSet<String>,
    /// Client addresses.
    pub ips: HashSet<String>,
    /// First and last sign-in time.
    pub range: Option<(OffsetDateTime, OffsetDateTime)>,
}

impl SigninIndex {
    /// What the index reads: sign-in records, recognised by the names of
    /// their time column or table in every export shape.
    pub fn needs() -> Needs {
        Needs::anchored(
            Kinds::of(&[EventKind::SignIn]),
            &[
                "createdDateTime",
                "CreatedDateTime",
                "SignInLogs",
                "SigninLogs",
            ],
            &[],
        )
    }

    /// Indexes one sign-in event.
    pub fn observe(&mut self, ev: &Event) {
        self.signins += 1;
        if let Some(t) = &ev.token_id {
            self.tokens.insert(t.clone());
        }
        if let Some(s) = &ev.session_id {
            self.sessions.insert(s.to_ascii_lowercase());
        }
        if let Some(ip) = &ev.client_ip {
            self.ips.insert(ip.clone());
        }
        if let Some(t) = ev.time {
            widen(&mut self.range, t);
        }
    }

    /// Folds a shard into this index.
    pub fn merge(&mut self, o: SigninIndex) {
        self.signins += o.signins;
        self.tokens.extend(o.tokens);
        self.sessions.extend(o.sessions);
        self.ips.extend(o.ips);
        self.range = super::union(self.range, o.range);
    }

    /// Whether a sign-in issued this token, or signed in this Entra or
    /// Exchange session.
    pub fn issued(&self, token: Option<&str>, aad: Option<&str>, exch: Option<&str>) -> bool {
        token.is_some_and(|t| self.tokens.contains(t))
            || [aad, exch]
                .into_iter()
                .flatten()
                .any(|s| self.has_session(s))
    }

    /// Whether a session id (any case) signed in. Ids are kept lower-cased
    /// and most arrive that way: the copy is made only when needed (this
    /// runs for every token-bearing audit record).
    pub fn has_session(&self, s: &str) -> bool {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            self.sessions.contains(&s.to_ascii_lowercase())
        } else {
            self.sessions.contains(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;
    use serde_json::json;

    #[test]
    fn indexes_tokens_sessions_and_addresses_and_merges_shards() {
        let mut a = SigninIndex::default();
        a.observe(&event(json!({"createdDateTime": "2023-06-01T10:00:00Z", "userPrincipalName": "a@x", "ipAddress": "198.51.100.1", "uniqueTokenIdentifier": "T1", "sessionId": "S-ONE"})));
        let mut b = SigninIndex::default();
        b.observe(&event(json!({"createdDateTime": "2023-06-03T10:00:00Z", "userPrincipalName": "b@x", "ipAddress": "198.51.100.2", "uniqueTokenIdentifier": "T2"})));
        a.merge(b);
        assert_eq!(a.signins, 2);
        assert!(a.issued(Some("T2"), None, None));
        assert!(
            a.issued(None, Some("s-one"), None),
            "sessions match in any case"
        );
        assert!(a.issued(None, None, Some("S-One")));
        assert!(!a.issued(Some("T3"), Some("s-two"), None));
        assert!(a.ips.contains("198.51.100.2"));
        let (first, last) = a.range.unwrap();
        assert_eq!((first.day(), last.day()), (1, 3));
    }
}
