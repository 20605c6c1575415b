//! A policy whose key sets stay fresh: URL sources are revalidated as
//! their cache lifetimes run out, an unknown `kid` triggers at most one
//! refetch per interval, and tokens of an issuer whose keys have gone
//! stale are refused (`keys-stale`) rather than checked against keys that
//! may have been withdrawn.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokenward_keys::{FetchConfig, Fetcher, LiveKeySet, UnknownKid};

use crate::policy::{read_policy_text, ConfigError, Policy};
use crate::reason::ReasonCode;
use crate::verdict::Verdict;

/// Seconds since the epoch, now.
pub(crate) fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A verification policy with live key sets. Cheap to share between
/// threads (`&self` everywhere); the registry is rebuilt only when a key
/// set's bytes change.
pub struct LivePolicy {
    path: PathBuf,
    text: String,
    sets: Vec<Arc<LiveKeySet>>,
    state: RwLock<Built>,
}

struct Built {
    policy: Arc<Policy>,
    /// The bytes each set had when `policy` was built (or last tried).
    bytes: Vec<Arc<[u8]>>,
    /// Why the last rebuild was refused, if it was.
    last_error: Option<String>,
}

impl LivePolicy {
    /// Loads a policy file and fetches every key set once, with the default
    /// fetch rules (HTTPS only, 10 s, 1 MiB, 3 redirects).
    pub fn load(path: &Path, now: i64) -> Result<LivePolicy, ConfigError> {
        LivePolicy::load_with(path, FetchConfig::default(), now)
    }

    /// Like [`LivePolicy::load`] with explicit fetch rules (tests use plain
    /// HTTP on loopback; deployments may pin a private CA).
    pub fn load_with(path: &Path, fetch: FetchConfig, now: i64) -> Result<LivePolicy, ConfigError> {
        let text = read_policy_text(path)?;
        let mut policy = Policy::configure(&text, path)?;
        let (sets, bytes) = fetch_key_sets(&policy, path, fetch, now)?;
        policy.install_keys(&bytes)?;
        Ok(LivePolicy {
            path: path.to_owned(),
            text,
            sets,
            state: RwLock::new(Built {
                policy: Arc::new(policy),
                bytes,
                last_error: None,
            }),
        })
    }

    /// The policy as currently built.
    pub fn policy(&self) -> Arc<Policy> {
        self.read().policy.clone()
    }

    /// The live key sets, in the order of [`Policy::key_sources`], for
    /// health checks and metrics.
    pub fn key_sets(&self) -> &[Arc<LiveKeySet>] {
        &self.sets
    }

    /// Why the newest key set bytes were not installed, if they were not
    /// (e.g. the source started publishing duplicate `kid`s); the previous
    /// registry stays in force.
    pub fn last_rebuild_error(&self) -> Option<String> {
        self.read().last_error.clone()
    }

    /// Verifies a token at `now`, keeping key sets fresh on the way.
    pub fn verify(&self, token: &str, now: i64) -> Verdict {
        self.verify_at(token, now, now)
    }

    /// Verifies a token as of `token_time` (its `exp`, `nbf`, key validity
    /// windows) while judging key freshness by `key_clock`, the real time:
    /// replaying an old token must neither make fresh keys look stale nor
    /// move the refetch rate limit.
    pub fn verify_at(&self, token: &str, token_time: i64, key_clock: i64) -> Verdict {
        let now = key_clock;
        let mut stale: Vec<(usize, String)> = Vec::new();
        let mut current: Vec<Option<Arc<[u8]>>> = Vec::with_capacity(self.sets.len());
        for (i, set) in self.sets.iter().enumerate() {
            match set.keys(now) {
                Ok(snap) => current.push(Some(snap.bytes)),
                Err(e) => {
                    stale.push((i, e.to_string()));
                    current.push(set.current().map(|s| s.bytes));
                }
            }
        }
        self.rebuild_if_changed(&current);
        let mut verdict = self.policy().verify(token, token_time);

        if verdict.has(ReasonCode::KidUnknown) {
            if let (Some(kid), Some(issuer)) = (verdict.kid.clone(), verdict.issuer_index) {
                if self.refetch_for_kid(&kid, issuer, now) {
                    verdict = self.policy().verify(token, token_time);
                }
            }
        }
        if let Some(issuer) = verdict.issuer_index {
            let policy = self.policy();
            for (i, why) in &stale {
                if policy.key_sources()[*i].entries.contains(&issuer) {
                    verdict.fail(ReasonCode::KeysStale, why.clone());
                }
            }
        }
        verdict
    }

    /// Revalidates every key set whose cache has run out (for a background
    /// task); returns the errors met, one line per failing source.
    pub fn refresh(&self, now: i64) -> Vec<String> {
        let mut errors = Vec::new();
        let mut current = Vec::with_capacity(self.sets.len());
        for set in &self.sets {
            match set.keys(now) {
                Ok(snap) => current.push(Some(snap.bytes)),
                Err(e) => {
                    errors.push(format!("{}: {e}", set.source()));
                    current.push(set.current().map(|s| s.bytes));
                }
            }
        }
        self.rebuild_if_changed(&current);
        errors
    }

    /// One rate-limited refetch of each source serving `issuer`; true when
    /// the registry changed.
    fn refetch_for_kid(&self, kid: &str, issuer: usize, now: i64) -> bool {
        let policy = self.policy();
        let mut current: Vec<Option<Arc<[u8]>>> = self
            .sets
            .iter()
            .map(|s| s.current().map(|c| c.bytes))
            .collect();
        let mut refetched = false;
        for (i, src) in policy.key_sources().iter().enumerate() {
            if !src.entries.contains(&issuer) {
                continue;
            }
            if let Ok(UnknownKid::Refetched {
                snapshot,
                found: true,
            }) = self.sets[i].refresh_for_unknown_kid(kid, now)
            {
                current[i] = Some(snapshot.bytes);
                refetched = true;
            }
        }
        refetched && self.rebuild_if_changed(&current)
    }

    /// Rebuilds the registry when any set's bytes differ from those it was
    /// built from; true when a new registry was installed.
    fn rebuild_if_changed(&self, current: &[Option<Arc<[u8]>>]) -> bool {
        let changed = |built: &Built| {
            current.iter().zip(&built.bytes).any(|(now, then)| {
                now.as_ref()
                    .is_some_and(|b| !Arc::ptr_eq(b, then) && b[..] != then[..])
            })
        };
        if !changed(&self.read()) {
            return false;
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if !changed(&state) {
            return false;
        }
        let bytes: Vec<Arc<[u8]>> = current
            .iter()
            .zip(&state.bytes)
            .map(|(now, then)| now.clone().unwrap_or_else(|| then.clone()))
            .collect();
        let result = build(&self.text, &self.path, &bytes);
        // Remember these bytes either way, so a bad set is not rebuilt on
        // every token.
        state.bytes = bytes;
        match result {
            Ok(policy) => {
                state.policy = Arc::new(policy);
                state.last_error = None;
                true
            }
            Err(e) => {
                state.last_error = Some(e.to_string());
                false
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Built> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The bytes of one key set, shared with its live set's snapshot.
type KeyBytes = Arc<[u8]>;

/// Makes one live set per key source of `policy` and fetches each once; a
/// source that cannot be read fails the load, naming the source.
pub(crate) fn fetch_key_sets(
    policy: &Policy,
    path: &Path,
    fetch: FetchConfig,
    now: i64,
) -> Result<(Vec<Arc<LiveKeySet>>, Vec<KeyBytes>), ConfigError> {
    let fetcher = Fetcher::new(fetch).map_err(|e| ConfigError {
        file: path.to_owned(),
        message: format!("cannot set up the key fetcher: {e}"),
    })?;
    let mut sets = Vec::new();
    let mut bytes = Vec::new();
    for src in policy.key_sources() {
        let set = Arc::new(LiveKeySet::new(
            src.source.clone(),
            fetcher.clone(),
            *policy.live_config(),
        ));
        let snap = set.refresh(now).map_err(|e| ConfigError {
            file: src.label(),
            message: format!("cannot read key set: {e}"),
        })?;
        bytes.push(snap.bytes.clone());
        sets.push(set);
    }
    Ok((sets, bytes))
}

fn build(text: &str, path: &Path, bytes: &[Arc<[u8]>]) -> Result<Policy, ConfigError> {
    let mut policy = Policy::configure(text, path)?;
    policy.install_keys(bytes)?;
    Ok(policy)
}
