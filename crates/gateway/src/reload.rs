//! The background task that keeps keys current:
//!
//! - when the policy file or one of its key set files changes, the policy
//!   is loaded again (and kept only if valid);
//! - otherwise the live key sets are revalidated as their cache lifetimes
//!   run out (`LivePolicy::refresh`: JWKS URLs, discovery documents), and a
//!   token with an unknown `kid` gets one rate-limited refetch;
//! - whenever the keys in force, or whether a source has gone stale,
//!   change, the verdict cache is invalidated.
//!
//! Files are polled (modification time and size) rather than watched with
//! inotify: it works the same on every filesystem, including the bind
//! mounts and ConfigMap symlink swaps of container deployments, and a
//! two-second poll of a handful of files costs nothing. All fetching and
//! file reading happens on the blocking pool, never on a request's path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokenward_keys::FetchConfig;
use tokenward_trust::LivePolicy;

use crate::proxy::{PolicyState, Shared};

/// What a file looked like: `None` when it could not be read.
type Stamp = (PathBuf, Option<(SystemTime, u64)>);

fn stamps(policy_path: &Path, key_files: &[PathBuf]) -> Vec<Stamp> {
    std::iter::once(policy_path)
        .chain(key_files.iter().map(PathBuf::as_path))
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let stamp = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.to_owned(), stamp)
        })
        .collect()
}

fn staleness(live: &LivePolicy, now: i64) -> Vec<bool> {
    live.key_sets().iter().map(|s| s.is_stale(now)).collect()
}

/// Installs a new policy (or the same one with new keys): bumps the
/// generation and empties the verdict cache, so a key just revoked or
/// removed stops working now, not at the `exp` of the tokens it signed.
fn install(shared: &Shared, live: Arc<LivePolicy>) {
    let policy = live.policy();
    let keys = policy.key_count();
    {
        let mut state = shared.policy.write().unwrap_or_else(|p| p.into_inner());
        *state = PolicyState {
            live,
            policy,
            generation: state.generation + 1,
        };
    }
    shared.cache.clear();
    shared.metrics.reloaded(true, keys);
}

pub(crate) async fn watch(
    shared: Arc<Shared>,
    policy_path: PathBuf,
    every: Duration,
    fetch: FetchConfig,
) {
    let clock = shared.clock.clone();
    let unix_now = || crate::unix_seconds(&clock);
    let mut last = stamps(&policy_path, shared.current_policy().0.key_files());
    let mut stale = staleness(&shared.current_live(), unix_now());
    let mut last_errors: Vec<String> = Vec::new();
    let mut last_rebuild_error: Option<String> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shared.nudge.notified() => {}
        }
        let files = shared.current_policy().0.key_files().to_vec();
        let now_stamps = stamps(&policy_path, &files);
        if now_stamps != last {
            // Remember what we saw before loading: a change made while
            // loading shows up as a difference on the next poll.
            last = now_stamps;
            let path = policy_path.clone();
            let fetch = fetch.clone();
            let started = unix_now();
            let loaded =
                tokio::task::spawn_blocking(move || LivePolicy::load_with(&path, fetch, started))
                    .await;
            match loaded {
                Ok(Ok(live)) => {
                    // The new policy may list other key files; stamp those.
                    last = stamps(&policy_path, live.policy().key_files());
                    for w in live.policy().warnings() {
                        eprintln!("tokenward gateway: warning: {w}");
                    }
                    stale = staleness(&live, unix_now());
                    let keys = live.policy().key_count();
                    install(&shared, Arc::new(live));
                    eprintln!("tokenward gateway: policy reloaded ({keys} keys)");
                }
                Ok(Err(e)) => {
                    shared.metrics.reloaded(false, 0);
                    eprintln!(
                        "tokenward gateway: policy reload refused, the previous policy stays in force: {e}"
                    );
                }
                Err(e) => {
                    shared.metrics.reloaded(false, 0);
                    eprintln!("tokenward gateway: policy reload failed: {e}");
                }
            }
            continue;
        }

        // Same files: keep the live sets fresh, and give a waiting unknown
        // kid its one refetch.
        let live = shared.current_live();
        let pending = shared
            .unknown_kid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let worker = live.clone();
        let now = unix_now();
        let refreshed = tokio::task::spawn_blocking(move || {
            let errors = worker.refresh(now);
            if let Some(token) = pending {
                // Rate-limited inside LivePolicy: at most one refetch per
                // source per interval, however many unknown kids arrive.
                let _ = worker.verify(&token, now);
            }
            errors
        })
        .await;
        let errors = refreshed.unwrap_or_else(|e| vec![e.to_string()]);
        if errors != last_errors {
            for e in &errors {
                eprintln!("tokenward gateway: key source failing (last good keys stay in force until stale): {e}");
            }
            if errors.is_empty() && !last_errors.is_empty() {
                eprintln!("tokenward gateway: key sources healthy again");
            }
            last_errors = errors;
        }
        let rebuild_error = live.last_rebuild_error();
        if rebuild_error.is_some() && rebuild_error != last_rebuild_error {
            shared.metrics.reloaded(false, 0);
            eprintln!(
                "tokenward gateway: new key set refused, the previous keys stay in force: {}",
                rebuild_error.as_deref().unwrap_or_default()
            );
        }
        last_rebuild_error = rebuild_error;
        let now_stale = staleness(&live, unix_now());
        let keys_changed = !Arc::ptr_eq(&live.policy(), &shared.current_policy().0);
        if keys_changed || now_stale != stale {
            stale = now_stale;
            install(&shared, live);
            eprintln!(
                "tokenward gateway: key sets changed ({} keys, {} stale source(s))",
                shared.current_policy().0.key_count(),
                stale.iter().filter(|s| **s).count()
            );
        }
    }
}
