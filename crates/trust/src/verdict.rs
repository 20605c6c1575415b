//! The outcome of verifying one token.

use serde_json::Value;
use tokenward_jose::{parse_strict_value, Algorithm, Claims};

use crate::reason::{Reason, ReasonCode};

/// Everything a caller (CLI, gateway log) reports about one token. Claims
/// are those the token carried: they are only trustworthy when
/// [`Verdict::accepted`] is true.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Every failed check; empty means accepted.
    pub reasons: Vec<Reason>,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Header `alg`.
    pub alg: Option<Algorithm>,
    /// Certificate thumbprint: the header `x5t`, else the matched key's.
    pub x5t: Option<String>,
    /// Parsed claims, when the payload was a JSON object.
    pub claims: Option<Claims>,
    /// The payload when it was not a claim set (otherwise the claims hold
    /// it), kept so the whole payload is parsed only on demand.
    pub(crate) payload: Vec<u8>,
    /// The issuer entry `iss` matched, if any.
    pub(crate) issuer_index: Option<usize>,
}

impl Verdict {
    /// True when no check failed.
    pub fn accepted(&self) -> bool {
        self.reasons.is_empty()
    }

    /// Whether a given reason is among the failures.
    pub fn has(&self, code: ReasonCode) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }

    /// The distinct reason codes, in check order.
    pub fn codes(&self) -> Vec<ReasonCode> {
        let mut out: Vec<ReasonCode> = Vec::new();
        for r in &self.reasons {
            if !out.contains(&r.code) {
                out.push(r.code);
            }
        }
        out
    }

    /// The whole claim set as JSON, parsed now (the hot path never needs it).
    pub fn claims_json(&self) -> Option<Value> {
        let payload = match &self.claims {
            Some(c) if self.payload.is_empty() => c.payload().as_bytes(),
            _ => &self.payload,
        };
        parse_strict_value(payload).ok()
    }

    pub(crate) fn fail(&mut self, code: ReasonCode, message: impl Into<String>) {
        self.reasons.push(Reason {
            code,
            message: message.into(),
        });
    }
}
