//! Background reload of the policy and its key sets when a file changes.
//!
//! Files are polled (modification time and size) rather than watched with
//! inotify: it works the same on every filesystem, including the bind
//! mounts and ConfigMap symlink swaps of container deployments, and a
//! two-second poll of a handful of files costs nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokenward_trust::Policy;

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

pub(crate) async fn watch(shared: Arc<Shared>, policy_path: PathBuf, every: Duration) {
    let mut last = stamps(&policy_path, shared.current_policy().0.key_files());
    loop {
        tokio::time::sleep(every).await;
        let files = shared.current_policy().0.key_files().to_vec();
        let now = stamps(&policy_path, &files);
        if now == last {
            continue;
        }
        // Remember what we saw before loading: a change made while loading
        // shows up as a difference on the next poll.
        last = now;
        let path = policy_path.clone();
        let loaded = tokio::task::spawn_blocking(move || Policy::load(&path)).await;
        match loaded {
            Ok(Ok(policy)) => {
                let keys = policy.key_count();
                // The new policy may list other key files; stamp those.
                last = stamps(&policy_path, policy.key_files());
                for w in policy.warnings() {
                    eprintln!("tokenward gateway: warning: {w}");
                }
                {
                    let mut state = shared.policy.write().unwrap_or_else(|p| p.into_inner());
                    *state = PolicyState {
                        policy: Arc::new(policy),
                        generation: state.generation + 1,
                    };
                }
                // Verdicts reached under the old keys must not outlive them
                // (a key just revoked must stop working now, not at `exp`).
                shared.cache.clear();
                shared.metrics.reloaded(true, keys);
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
    }
}
