//! `tokenward probe`: sends forged variants of a legitimate token at the
//! user's own endpoint and reports, per attack class, whether any was
//! accepted.
//!
//! The flow is: baseline (the legitimate token twice, no token, a broken
//! signature) → [`judge::Judge`] → the battery from [`forge::battery`] →
//! one verdict per request → one verdict per class → [`Report`]. Requests
//! go only to the target URL; the target may in turn call the probe's
//! [`listener::Listener`] for `jku`/`x5u` documents.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod class;
pub mod client;
pub mod forge;
pub mod judge;
pub mod keyfile;
pub mod listener;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokenward_jose::{encode_b64url, SigningKey};

pub use class::Class;
pub use client::{Outcome, Sender, Target};
pub use forge::{ForeignKey, LegitToken, PublicKeyBytes, Skipped};
pub use judge::{Answer, Judge, Judgement, Verdict};

/// Why the probe could not run or could not judge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Bad options or input files.
    #[error("{0}")]
    Usage(String),
    /// The baseline cannot tell acceptance from refusal.
    #[error("unusable baseline: {0}")]
    Baseline(String),
    /// Something that should not fail did.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything a probe run needs.
pub struct ProbeConfig {
    /// Where to send.
    pub target: Target,
    /// The legitimate token.
    pub token: String,
    /// Text only an accepted answer contains.
    pub canary: Option<String>,
    /// The target's public keys, for `hs-public-key`.
    pub public_keys: Vec<PublicKeyBytes>,
    /// The key that signed the token, for the claim classes.
    pub key: Option<SigningKey>,
    /// Keys of other issuers in the target's key set.
    pub foreign_keys: Vec<ForeignKey>,
    /// Address the callback listener binds.
    pub callback_listen: SocketAddr,
    /// Base URL the target reaches the listener at (default: the bound
    /// address over plain HTTP).
    pub callback_url: Option<String>,
    /// Request budget, baseline included.
    pub max_requests: u32,
    /// Requests per second at most.
    pub rate: f64,
    /// Deadline per request.
    pub timeout: Duration,
    /// Seconds since the epoch.
    pub now: i64,
    /// Only these classes (all when empty).
    pub only: Vec<Class>,
}

/// One request of the battery and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The class it tests.
    pub class: Class,
    /// The variant's name.
    pub name: String,
    /// What was changed.
    pub sent: String,
    /// Whether the target accepted it.
    pub accepted: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// HTTP status, when the target answered.
    pub status: Option<u16>,
    /// Why the verdict.
    pub reason: String,
}

/// The verdict on one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassResult {
    /// The class.
    pub class: Class,
    /// `accepted`, `refused`, `inconclusive` or `skipped`.
    pub verdict: &'static str,
    /// Requests sent for it.
    pub attempts: usize,
    /// What to fix, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<&'static str>,
}

/// One baseline request.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineAnswer {
    /// HTTP status, when the target answered.
    pub status: Option<u16>,
    /// Body length read (capped).
    pub bytes: usize,
    /// The verdict, for the requests that are judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The baseline requests.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// The legitimate token, twice.
    pub legitimate: Vec<BaselineAnswer>,
    /// No token.
    pub no_token: BaselineAnswer,
    /// The legitimate token with one signature bit flipped.
    pub broken_signature: BaselineAnswer,
    /// The legitimate claims re-signed with `--key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resigned_with_key: Option<BaselineAnswer>,
    /// The legitimate token once more, after the battery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legitimate_after: Option<BaselineAnswer>,
}

/// What the token was, without the token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenSummary {
    /// `alg`.
    pub alg: String,
    /// `kid`.
    pub kid: Option<String>,
    /// `iss`.
    pub iss: Option<String>,
    /// `tid`.
    pub tid: Option<String>,
    /// First 12 characters of the base64url SHA-256 of the token, to tell
    /// runs apart without revealing it.
    pub fingerprint: String,
}

/// The target as probed.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    /// URL.
    pub url: String,
    /// Method.
    pub method: String,
    /// Header carrying the token.
    pub token_header: String,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target.
    pub target: TargetSummary,
    /// The token, summarised.
    pub token: TokenSummary,
    /// The baseline.
    pub baseline: Baseline,
    /// Every forged request.
    pub attempts: Vec<Attempt>,
    /// One verdict per class.
    pub classes: Vec<ClassResult>,
    /// The accepted classes' ids.
    pub accepted: Vec<Class>,
    /// Classes that did not run, and what they need.
    pub skipped: Vec<Skipped>,
    /// Requests sent in all.
    pub requests: u32,
    /// Things that weaken the verdicts.
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether the verdicts can be trusted: the legitimate token still
    /// worked at the end.
    pub fn reliable(&self) -> bool {
        self.baseline
            .legitimate_after
            .as_ref()
            .is_none_or(|a| a.verdict == Some(Verdict::Accepted))
    }
}

fn fingerprint(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    encode_b64url(digest.as_ref())[..12].to_owned()
}

fn baseline_answer(outcome: &Outcome, judgement: Option<&Judgement>) -> BaselineAnswer {
    match outcome {
        Outcome::Answered(a) => answer_summary(a, judgement),
        Outcome::Failed(e) => BaselineAnswer {
            status: None,
            bytes: 0,
            verdict: judgement.map(|j| j.verdict),
            reason: Some(e.clone()),
        },
    }
}

fn answer_summary(a: &Answer, judgement: Option<&Judgement>) -> BaselineAnswer {
    BaselineAnswer {
        status: Some(a.status),
        bytes: a.body.len(),
        verdict: judgement.map(|j| j.verdict),
        reason: judgement.map(|j| j.reason.clone()),
    }
}

fn answered(outcome: Option<Outcome>, what: &str) -> Result<Answer, ProbeError> {
    match outcome {
        Some(Outcome::Answered(a)) => Ok(a),
        Some(Outcome::Failed(e)) => Err(ProbeError::Baseline(format!("{what}: no answer: {e}"))),
        None => Err(ProbeError::Baseline(
            "--max-requests is too small for the baseline (5 requests)".into(),
        )),
    }
}

/// Runs the probe. `progress` is told (done, total) after each request.
pub fn probe(
    config: ProbeConfig,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Report, ProbeError> {
    let token = LegitToken::parse(&config.token)?;
    let listener = listener::Listener::start(config.callback_listen)?;
    let callback_base = config
        .callback_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", listener.addr()))
        .trim_end_matches('/')
        .to_owned();
    let mut battery = forge::battery(&forge::ForgeInputs {
        token: &token,
        public_keys: &config.public_keys,
        key: config.key.as_ref(),
        foreign_keys: &config.foreign_keys,
        callback_base: &callback_base,
        now: config.now,
    })?;
    if !config.only.is_empty() {
        battery.forged.retain(|f| config.only.contains(&f.class));
        battery.skipped.retain(|s| config.only.contains(&s.class));
    }
    for document in &battery.documents {
        listener.serve(document);
    }
    let mut sender = Sender::new(
        config.target.clone(),
        config.max_requests,
        config.rate,
        config.timeout,
    )?;
    let resign = match &config.key {
        Some(key) => Some(forge::resigned_control(&token, key)?),
        None => None,
    };
    let total = 5 + u32::from(resign.is_some()) + battery.forged.len() as u32;
    let mut step = |sender: &mut Sender, token: Option<&str>| {
        let outcome = sender.send(token);
        progress(sender.sent(), total);
        outcome
    };

    let legit = [
        answered(step(&mut sender, Some(&config.token)), "legitimate token")?,
        answered(
            step(&mut sender, Some(&config.token)),
            "legitimate token (again)",
        )?,
    ];
    let no_token = answered(step(&mut sender, None), "request without a token")?;
    let broken = forge::broken_signature(&token);
    let broken_answer = answered(step(&mut sender, Some(&broken)), "broken signature")?;
    let (judge, base) = Judge::new(
        [&legit[0], &legit[1]],
        &no_token,
        &broken_answer,
        config.canary.as_deref(),
    )
    .map_err(|e| ProbeError::Baseline(e.0))?;
    let mut baseline = Baseline {
        legitimate: legit.iter().map(|a| answer_summary(a, None)).collect(),
        no_token: answer_summary(&no_token, Some(&base.no_token)),
        broken_signature: answer_summary(&broken_answer, Some(&base.broken_signature)),
        resigned_with_key: None,
        legitimate_after: None,
    };
    let mut warnings = Vec::new();
    let mut attempts = Vec::new();
    let mut skipped = battery.skipped.clone();
    let mut accepted_baseline = Vec::new();
    if base.no_token.verdict == Verdict::Accepted {
        accepted_baseline.push(Class::NoToken);
    }
    if base.broken_signature.verdict == Verdict::Accepted {
        attempts.push(Attempt {
            class: Class::SignatureInvalid,
            name: "baseline-flipped-bit".into(),
            sent: "one bit of the signature flipped (the baseline request)".into(),
            accepted: true,
            verdict: Verdict::Accepted,
            status: Some(broken_answer.status),
            reason: base.broken_signature.reason.clone(),
        });
    }

    let mut forged = battery.forged;
    if !judge.has_refusal() {
        // Nothing was refused: forged tokens cannot show anything the
        // missing token did not.
        warnings
            .push("the target accepted a request without a token; the battery was not sent".into());
        for class in Class::ALL {
            if class != Class::NoToken && !skipped.iter().any(|s| s.class == class) {
                skipped.push(Skipped {
                    class,
                    needs: "an endpoint that refuses requests without a token".into(),
                });
            }
        }
        forged.clear();
    }

    if let (Some(resigned), false) = (&resign, forged.is_empty()) {
        let outcome = step(&mut sender, Some(resigned));
        let judgement = outcome.as_ref().map(|o| judge.judge_outcome(o));
        if let Some(outcome) = &outcome {
            baseline.resigned_with_key = Some(baseline_answer(outcome, judgement.as_ref()));
        }
        if judgement.as_ref().map(|j| j.verdict) != Some(Verdict::Accepted) {
            let reason = judgement.map_or("the request budget ran out".into(), |j| j.reason);
            forged.retain(|f| !Class::NEEDS_KEY.contains(&f.class));
            for class in Class::NEEDS_KEY {
                if !skipped.iter().any(|s| s.class == class)
                    && (config.only.is_empty() || config.only.contains(&class))
                {
                    skipped.push(Skipped {
                        class,
                        needs: format!(
                            "--key that signed --token: the legitimate claims re-signed with it were not accepted ({reason})"
                        ),
                    });
                }
            }
        }
    }

    let mut out_of_budget = Vec::new();
    for f in &forged {
        let Some(outcome) = step(&mut sender, Some(&f.token)) else {
            out_of_budget.push(f.class);
            continue;
        };
        let mut judgement = judge.judge_outcome(&outcome);
        if let Some(path) = &f.callback {
            if listener.was_hit(path) {
                if f.class == Class::KidInjection {
                    judgement = Judgement {
                        verdict: Verdict::Accepted,
                        reason: format!("the target ran the command in kid: {callback_base}{path} was requested"),
                    };
                } else {
                    judgement
                        .reason
                        .push_str(&format!("; the target fetched {callback_base}{path}"));
                }
            }
        }
        attempts.push(Attempt {
            class: f.class,
            name: f.name.clone(),
            sent: f.sent.clone(),
            accepted: judgement.verdict == Verdict::Accepted,
            verdict: judgement.verdict,
            status: outcome.status(),
            reason: judgement.reason,
        });
    }
    // A command started in the background may call back after its answer.
    let late = forged
        .iter()
        .any(|f| f.class == Class::KidInjection && f.callback.is_some());
    if late {
        std::thread::sleep(Duration::from_millis(500));
        for attempt in attempts
            .iter_mut()
            .filter(|a| a.class == Class::KidInjection && !a.accepted)
        {
            let path = forged
                .iter()
                .find(|f| f.class == attempt.class && f.name == attempt.name)
                .and_then(|f| f.callback.as_deref());
            if let Some(path) = path.filter(|p| listener.was_hit(p)) {
                attempt.accepted = true;
                attempt.verdict = Verdict::Accepted;
                attempt.reason = format!("the target ran the command in kid: {callback_base}{path} was requested after it answered");
            }
        }
    }
    out_of_budget.dedup();
    for class in out_of_budget {
        if !attempts.iter().any(|a| a.class == class) {
            skipped.push(Skipped {
                class,
                needs: "a larger --max-requests".into(),
            });
        } else {
            warnings.push(format!(
                "{class}: only some variants were sent before --max-requests ran out"
            ));
        }
    }

    if !forged.is_empty() {
        match step(&mut sender, Some(&config.token)) {
            Some(outcome) => {
                let judgement = judge.judge_outcome(&outcome);
                if judgement.verdict != Verdict::Accepted {
                    warnings.push(format!(
                        "the legitimate token was no longer accepted after the battery ({}): the target may have blocked the probe, so refusals prove less",
                        judgement.reason
                    ));
                }
                baseline.legitimate_after = Some(baseline_answer(&outcome, Some(&judgement)));
            }
            None => {
                warnings.push("no request left to re-check the legitimate token at the end".into())
            }
        }
    }

    let mut classes = Vec::new();
    let mut accepted = accepted_baseline.clone();
    for class in Class::ALL {
        if class == Class::NoToken {
            classes.push(ClassResult {
                class,
                verdict: if accepted_baseline.contains(&class) {
                    "accepted"
                } else {
                    "refused"
                },
                attempts: 1,
                fix: accepted_baseline.contains(&class).then(|| class.fix()),
            });
            continue;
        }
        let mine: Vec<&Attempt> = attempts.iter().filter(|a| a.class == class).collect();
        if mine.is_empty() {
            if skipped.iter().any(|s| s.class == class) {
                classes.push(ClassResult {
                    class,
                    verdict: "skipped",
                    attempts: 0,
                    fix: None,
                });
            }
            continue;
        }
        let verdict = if mine.iter().any(|a| a.accepted) {
            accepted.push(class);
            "accepted"
        } else if mine.iter().any(|a| a.verdict == Verdict::Inconclusive) {
            "inconclusive"
        } else {
            "refused"
        };
        classes.push(ClassResult {
            class,
            verdict,
            attempts: mine.len(),
            fix: (verdict == "accepted").then(|| class.fix()),
        });
    }
    skipped.sort_by_key(|s| s.class);
    Ok(Report {
        target: TargetSummary {
            url: config.target.url.clone(),
            method: config.target.method.clone(),
            token_header: config.target.token_header.clone(),
        },
        token: TokenSummary {
            alg: token.alg_name.clone(),
            kid: token.kid().map(str::to_owned),
            iss: token.claim("iss").map(str::to_owned),
            tid: token.claim("tid").map(str::to_owned),
            fingerprint: fingerprint(&config.token),
        },
        baseline,
        attempts,
        classes,
        accepted,
        skipped,
        requests: sender.sent(),
        warnings,
    })
}
