//! Deciding whether the target accepted a request.
//!
//! A status code alone lies: error pages come back as 200 (jwt_tool #87),
//! and some services answer 200 with an empty result when the token is bad.
//! So every answer is compared with both kinds of baseline: the legitimate
//! token (sent twice, so parts that change on every request, such as
//! timestamps and request ids, are ignored) and the refused requests (no
//! token, broken signature). The order is status, then the canary if the
//! user gave one, then body similarity.

use std::collections::HashSet;

use serde::Serialize;

/// What the target answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, cut at the client's limit.
    pub body: Vec<u8>,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The answer looks like the legitimate token's.
    Accepted,
    /// The answer looks like a refusal.
    Refused,
    /// Neither: the answer matches no baseline well enough to say.
    Inconclusive,
}

/// A verdict with the reason, in words a user can check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// Why the baseline cannot be used to judge anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BaselineError(pub String);

/// Bodies at least this similar (Jaccard over their stable words) count as
/// the same page when no status tells them apart.
const SAME_PAGE: f64 = 0.8;

/// Statuses that mean "not authenticated or not allowed" whatever the body.
fn is_auth_refusal(status: u16) -> bool {
    matches!(status, 401 | 403 | 407)
}

/// The words of a body: runs of ASCII alphanumerics or non-ASCII bytes,
/// lower-cased. Punctuation and layout are ignored so that a reordered JSON
/// object still compares equal.
fn words(body: &[u8]) -> HashSet<Vec<u8>> {
    const MAX_WORDS: usize = 20_000;
    let mut out = HashSet::new();
    for word in body.split(|b| b.is_ascii() && !b.is_ascii_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        out.insert(word.to_ascii_lowercase());
        if out.len() >= MAX_WORDS {
            break;
        }
    }
    out
}

fn jaccard(a: &HashSet<Vec<u8>>, b: &HashSet<Vec<u8>>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let common = a.intersection(b).count();
    common as f64 / (a.len() + b.len() - common) as f64
}

struct Reference {
    status: u16,
    words: HashSet<Vec<u8>>,
}

/// Judges answers against the baseline.
pub struct Judge {
    accepted: Reference,
    /// Words that differed between the two legitimate answers.
    dynamic: HashSet<Vec<u8>>,
    refused: Vec<Reference>,
    canary: Option<Vec<u8>>,
}

/// What the baseline itself showed about the two refusal probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaselineVerdicts {
    /// The request without a token.
    pub no_token: Judgement,
    /// The legitimate token with a broken signature.
    pub broken_signature: Judgement,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl Judge {
    /// Builds the judge from the baseline answers, or says why they cannot
    /// tell acceptance from refusal.
    pub fn new(
        legitimate: [&Answer; 2],
        no_token: &Answer,
        broken_signature: &Answer,
        canary: Option<&str>,
    ) -> Result<(Judge, BaselineVerdicts), BaselineError> {
        let [first, second] = legitimate;
        for answer in [first, second] {
            if is_auth_refusal(answer.status) {
                return Err(BaselineError(format!(
                    "the legitimate token was refused (HTTP {}): give a token the target accepts",
                    answer.status
                )));
            }
            if answer.status >= 500 {
                return Err(BaselineError(format!(
                    "the target failed on the legitimate token (HTTP {})",
                    answer.status
                )));
            }
        }
        if first.status != second.status {
            return Err(BaselineError(format!(
                "the legitimate token got two different statuses ({} then {}): the target is not stable enough to judge",
                first.status, second.status
            )));
        }
        let canary = canary.map(|c| c.as_bytes().to_vec());
        if let Some(canary) = &canary {
            if !contains(&first.body, canary) || !contains(&second.body, canary) {
                return Err(BaselineError(
                    "the canary is not in the legitimate token's answer".into(),
                ));
            }
        }
        let (a, b) = (words(&first.body), words(&second.body));
        let dynamic: HashSet<Vec<u8>> = a.symmetric_difference(&b).cloned().collect();
        let stable: HashSet<Vec<u8>> = a.intersection(&b).cloned().collect();
        let mut judge = Judge {
            accepted: Reference {
                status: first.status,
                words: stable,
            },
            dynamic,
            refused: Vec::new(),
            canary,
        };
        // A refusal probe is refused unless it looks like the legitimate
        // answer: what the target says without a valid token is, by
        // definition, what a refusal looks like.
        let as_probe = |j: Judgement| match j.verdict {
            Verdict::Inconclusive => Judgement {
                verdict: Verdict::Refused,
                reason: format!("{} (taken as this target's refusal)", j.reason),
            },
            _ => j,
        };
        let verdicts = BaselineVerdicts {
            no_token: as_probe(judge.judge(no_token)),
            broken_signature: as_probe(judge.judge(broken_signature)),
        };
        for (answer, judgement) in [
            (no_token, &verdicts.no_token),
            (broken_signature, &verdicts.broken_signature),
        ] {
            if judgement.verdict == Verdict::Refused {
                judge.refused.push(Reference {
                    status: answer.status,
                    words: judge.stable_words(&answer.body),
                });
            }
        }
        Ok((judge, verdicts))
    }

    /// Whether any baseline request was refused, i.e. whether "refused" has
    /// an example to compare with.
    pub fn has_refusal(&self) -> bool {
        !self.refused.is_empty()
    }

    fn stable_words(&self, body: &[u8]) -> HashSet<Vec<u8>> {
        let mut w = words(body);
        w.retain(|x| !self.dynamic.contains(x));
        w
    }

    /// The verdict on one request: its answer judged, or inconclusive when
    /// there was none.
    pub fn judge_outcome(&self, outcome: &crate::client::Outcome) -> Judgement {
        match outcome {
            crate::client::Outcome::Answered(a) => self.judge(a),
            crate::client::Outcome::Failed(e) => Judgement {
                verdict: Verdict::Inconclusive,
                reason: format!("no answer: {e}"),
            },
        }
    }

    /// The verdict on one answer.
    pub fn judge(&self, answer: &Answer) -> Judgement {
        let legit = self.accepted.status;
        let verdict = |verdict, reason: String| Judgement { verdict, reason };
        if answer.status != legit {
            if is_auth_refusal(answer.status) {
                return verdict(Verdict::Refused, format!("HTTP {}", answer.status));
            }
            if answer.status >= 300 {
                return verdict(
                    Verdict::Refused,
                    format!(
                        "HTTP {} where the legitimate token gets {legit}",
                        answer.status
                    ),
                );
            }
            return verdict(
                Verdict::Inconclusive,
                format!(
                    "HTTP {}: a success, but not the legitimate token's {legit}",
                    answer.status
                ),
            );
        }
        if let Some(canary) = &self.canary {
            return if contains(&answer.body, canary) {
                verdict(Verdict::Accepted, format!("HTTP {legit} with the canary"))
            } else {
                verdict(Verdict::Refused, format!("HTTP {legit} without the canary"))
            };
        }
        let words = self.stable_words(&answer.body);
        let like_legit = jaccard(&words, &self.accepted.words);
        let like_refused = self
            .refused
            .iter()
            .filter(|r| r.status == legit)
            .map(|r| jaccard(&words, &r.words))
            .fold(None, |best: Option<f64>, s| {
                Some(best.map_or(s, |b| b.max(s)))
            });
        match like_refused {
            Some(refused) if like_legit > refused => verdict(
                Verdict::Accepted,
                format!(
                    "HTTP {legit}, body closer to the legitimate answer ({like_legit:.2}) than to the refused one ({refused:.2})"
                ),
            ),
            Some(refused) => verdict(
                Verdict::Refused,
                format!(
                    "HTTP {legit}, but the body matches the refused answer ({refused:.2}) at least as well as the legitimate one ({like_legit:.2})"
                ),
            ),
            None if like_legit >= SAME_PAGE => verdict(
                Verdict::Accepted,
                format!("HTTP {legit} and the legitimate token's body ({like_legit:.2})"),
            ),
            None => verdict(
                Verdict::Inconclusive,
                format!(
                    "HTTP {legit}, but the body differs from the legitimate answer ({like_legit:.2}); give --canary to decide"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn status_decides_when_it_differs() {
        let ok1 = answer(200, r#"{"mail":["a","b"],"request":"r1"}"#);
        let ok2 = answer(200, r#"{"mail":["a","b"],"request":"r2"}"#);
        let denied = answer(401, "unauthorized");
        let (judge, base) = Judge::new([&ok1, &ok2], &denied, &denied, None).unwrap();
        assert_eq!(base.no_token.verdict, Verdict::Refused);
        assert!(judge.has_refusal());
        let forged = answer(200, r#"{"request":"r9","mail":["a","b"]}"#);
        assert_eq!(judge.judge(&forged).verdict, Verdict::Accepted);
        assert_eq!(judge.judge(&denied).verdict, Verdict::Refused);
        assert_eq!(judge.judge(&answer(500, "boom")).verdict, Verdict::Refused);
        assert_eq!(judge.judge(&answer(204, "")).verdict, Verdict::Inconclusive);
    }

    /// jwt_tool #87: an error page with status 200 is not a success.
    #[test]
    fn a_200_error_page_is_refused_by_its_body() {
        let ok1 = answer(200, "<h1>Inbox</h1> alice 3 unread messages at 10:01");
        let ok2 = answer(200, "<h1>Inbox</h1> alice 3 unread messages at 10:02");
        let error_page = answer(200, "<h1>Error</h1> your session is invalid please sign in");
        let (judge, base) = Judge::new([&ok1, &ok2], &error_page, &error_page, None).unwrap();
        assert_eq!(base.no_token.verdict, Verdict::Refused);
        let forged_refused = answer(200, "<h1>Error</h1> your session is invalid please sign in");
        assert_eq!(judge.judge(&forged_refused).verdict, Verdict::Refused);
        let forged_ok = answer(200, "<h1>Inbox</h1> alice 3 unread messages at 10:07");
        assert_eq!(judge.judge(&forged_ok).verdict, Verdict::Accepted);
    }

    #[test]
    fn the_canary_decides_between_equal_statuses() {
        let ok = answer(200, "welcome alice CANARY-7");
        let no = answer(200, "welcome guest");
        let (judge, _) = Judge::new([&ok, &ok], &no, &no, Some("CANARY-7")).unwrap();
        assert_eq!(
            judge.judge(&answer(200, "hello CANARY-7")).verdict,
            Verdict::Accepted
        );
        assert_eq!(
            judge.judge(&answer(200, "welcome alice")).verdict,
            Verdict::Refused
        );
        let err = Judge::new([&ok, &ok], &no, &no, Some("missing"))
            .err()
            .unwrap();
        assert!(err.0.contains("canary"), "{err}");
    }

    #[test]
    fn an_unusable_baseline_is_an_error_not_a_guess() {
        let denied = answer(401, "no");
        let err = Judge::new([&denied, &denied], &denied, &denied, None)
            .err()
            .unwrap();
        assert!(err.0.contains("legitimate token was refused"), "{err}");
        let ok = answer(200, "x");
        let flaky = answer(404, "x");
        assert!(Judge::new([&ok, &flaky], &denied, &denied, None).is_err());
    }

    /// An unprotected endpoint: the token-less request looks like the
    /// legitimate one, so it is reported, and nothing is left to compare
    /// refusals with.
    #[test]
    fn a_tokenless_answer_like_the_legitimate_one_is_accepted() {
        let ok = answer(200, "public data 1 2 3");
        let (judge, base) = Judge::new([&ok, &ok], &ok, &ok, None).unwrap();
        assert_eq!(base.no_token.verdict, Verdict::Accepted);
        assert_eq!(base.broken_signature.verdict, Verdict::Accepted);
        assert!(!judge.has_refusal());
    }

    #[test]
    fn a_different_body_with_the_same_status_and_no_refusal_example_is_inconclusive() {
        let ok = answer(200, "alpha beta gamma delta");
        let denied = answer(401, "no");
        let (judge, _) = Judge::new([&ok, &ok], &denied, &denied, None).unwrap();
        assert_eq!(
            judge
                .judge(&answer(200, "totally other words here"))
                .verdict,
            Verdict::Inconclusive
        );
    }
}
