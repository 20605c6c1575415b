//! A key set kept fresh from its source, for the verifier and the gateway.
//!
//! Rules (jose.md §5 lists the failures they prevent):
//! - the server's `Cache-Control: max-age` decides when to revalidate,
//!   clamped to `[min_ttl, max_ttl]`; revalidation sends `If-None-Match`;
//! - a token with an unknown `kid` may trigger a refetch, but at most once
//!   per `unknown_kid_interval` whatever the traffic (no fetch
//!   amplification: PyJWT's client refetched on every unknown `kid`);
//! - a failed refresh never replaces the last good keys (one bad response
//!   during an issuer blip must not poison the cache), and failed attempts
//!   are retried at most once per `retry_interval`;
//! - once the last good keys are older than `max_staleness` (time since the
//!   source last confirmed them), [`LiveKeySet::keys`] fails closed: a
//!   revoked key must not stay trusted because its issuer became
//!   unreachable.
//!
//! Time is passed in by the caller (`now`, seconds since the epoch) so that
//! behaviour is reproducible and testable; network calls happen on the
//! calling thread, outside the state lock.

use std::sync::{Arc, Mutex, MutexGuard};

use tokenward_jose::{Jwk, Jwks};

use crate::fetch::Fetcher;
use crate::source::{DiscoveryDoc, IssuerMatch, KeySource, SourceError};

/// Refresh and staleness settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveConfig {
    /// Cache lifetime when the server sends no `max-age`, seconds.
    pub default_ttl: i64,
    /// Shortest cache lifetime (also used for `no-cache`), seconds.
    pub min_ttl: i64,
    /// Longest cache lifetime, whatever the server says, seconds: bounds
    /// how long a key removed at the source stays trusted.
    pub max_ttl: i64,
    /// Minimum time between two refetches caused by unknown `kid`s.
    pub unknown_kid_interval: i64,
    /// Minimum time between two attempts after a failed refresh.
    pub retry_interval: i64,
    /// Age (since the source last confirmed them) after which the keys are
    /// refused.
    pub max_staleness: i64,
    /// Refuse a discovery document whose `issuer` is not the one its URL
    /// implies (OIDC Discovery 1.0 §4.3). Microsoft's `{tenantid}`
    /// templates are accepted; see [`IssuerMatch::Template`].
    pub require_issuer_match: bool,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            default_ttl: 3600,
            min_ttl: 300,
            max_ttl: 24 * 3600,
            unknown_kid_interval: 300,
            retry_interval: 30,
            max_staleness: 48 * 3600,
            require_issuer_match: true,
        }
    }
}

/// One good copy of a key set.
#[derive(Debug, Clone)]
pub struct KeySnapshot {
    /// The JWKS bytes as served.
    pub bytes: Arc<[u8]>,
    /// The parsed set.
    pub jwks: Arc<Jwks>,
    /// JWKS URL or file path the bytes came from.
    pub origin: String,
    /// The discovery document used, if any.
    pub discovery: Option<Arc<DiscoveryDoc>>,
    /// When these bytes were first received.
    pub fetched_at: i64,
    /// When the source last confirmed them (a `200` with the same bytes, or
    /// a `304`). Staleness counts from here.
    pub validated_at: i64,
}

impl KeySnapshot {
    /// Seconds since the source last confirmed these keys.
    pub fn age(&self, now: i64) -> i64 {
        now.saturating_sub(self.validated_at)
    }

    /// The readable keys with this `kid`.
    pub fn find<'a>(&'a self, kid: &'a str) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.jwks
            .keys
            .iter()
            .filter_map(|k| k.as_ref().ok())
            .filter(move |k| k.kid.as_deref() == Some(kid))
    }

    /// Whether a readable key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.find(kid).next().is_some()
    }
}

/// The outcome of [`LiveKeySet::refresh_for_unknown_kid`].
#[derive(Debug, Clone)]
pub enum UnknownKid {
    /// The current keys already have the `kid` (another caller refreshed);
    /// nothing was fetched.
    AlreadyPresent(KeySnapshot),
    /// A refetch was made; `found` says whether the `kid` is now present.
    Refetched {
        /// The keys after the refetch.
        snapshot: KeySnapshot,
        /// Whether the `kid` is in them.
        found: bool,
    },
    /// An unknown-`kid` refetch happened too recently; the token's `kid` is
    /// unknown and must be rejected. Nothing was fetched.
    RateLimited {
        /// When the next unknown-`kid` refetch is allowed.
        next_allowed_at: i64,
    },
}

/// Health of a live key set, for logs and health endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStatus {
    /// When the current keys were received, if any.
    pub fetched_at: Option<i64>,
    /// When the source last confirmed them.
    pub validated_at: Option<i64>,
    /// When they are due for revalidation.
    pub expires_at: Option<i64>,
    /// Failed refreshes since the last success.
    pub consecutive_failures: u32,
    /// The last refresh error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Network (or file) fetches made so far.
    pub fetches: u64,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<KeySnapshot>,
    etag: Option<String>,
    expires_at: i64,
    last_attempt: Option<i64>,
    last_unknown_kid_refetch: Option<i64>,
    consecutive_failures: u32,
    last_error: Option<String>,
    fetches: u64,
    /// Bumped on every completed refresh attempt, so callers queued behind
    /// a refresh can tell one happened while they waited.
    generation: u64,
}

/// A key set kept fresh from a [`KeySource`]. Share it with `Arc`.
#[derive(Debug)]
pub struct LiveKeySet {
    source: KeySource,
    fetcher: Fetcher,
    config: LiveConfig,
    state: Mutex<State>,
    /// Held for the duration of a network refresh, so concurrent callers
    /// wait for one fetch instead of each making their own.
    refreshing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveKeySet {
    /// A live set; nothing is fetched until first asked.
    pub fn new(source: KeySource, fetcher: Fetcher, config: LiveConfig) -> LiveKeySet {
        LiveKeySet {
            source,
            fetcher,
            config,
            state: Mutex::new(State::default()),
            refreshing: Mutex::new(()),
        }
    }

    /// The source.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The settings.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// The last good keys, without any I/O and whatever their age.
    pub fn current(&self) -> Option<KeySnapshot> {
        lock(&self.state).snapshot.clone()
    }

    /// True when there are no good keys or they are older than
    /// `max_staleness`.
    pub fn is_stale(&self, now: i64) -> bool {
        lock(&self.state)
            .snapshot
            .as_ref()
            .is_none_or(|s| s.age(now) > self.config.max_staleness)
    }

    /// Health information.
    pub fn status(&self) -> LiveStatus {
        let st = lock(&self.state);
        LiveStatus {
            fetched_at: st.snapshot.as_ref().map(|s| s.fetched_at),
            validated_at: st.snapshot.as_ref().map(|s| s.validated_at),
            expires_at: st.snapshot.as_ref().map(|_| st.expires_at),
            consecutive_failures: st.consecutive_failures,
            last_error: st.last_error.clone(),
            fetches: st.fetches,
        }
    }

    /// The keys to verify with at `now`. Revalidates when the cache
    /// lifetime is over (at most once per `retry_interval` while the source
    /// fails); serves the last good keys while a refresh fails; fails
    /// closed with [`SourceError::Stale`] once they are older than
    /// `max_staleness`.
    pub fn keys(&self, now: i64) -> Result<KeySnapshot, SourceError> {
        let due = {
            let st = lock(&self.state);
            // Keys past max_staleness are due whatever their cache lifetime
            // says (a max_ttl above max_staleness must not fail closed
            // without even asking the source).
            let expired = st
                .snapshot
                .as_ref()
                .is_none_or(|s| s.age(now) > self.config.max_staleness)
                || now >= st.expires_at;
            let may_retry = st.consecutive_failures == 0
                || st
                    .last_attempt
                    .is_none_or(|t| now.saturating_sub(t) >= self.config.retry_interval);
            expired && may_retry
        };
        if due {
            if let Err(e) = self.refresh(now) {
                return self.fall_back(now, e);
            }
        }
        let st = lock(&self.state);
        match &st.snapshot {
            Some(s) if s.age(now) <= self.config.max_staleness => Ok(s.clone()),
            Some(s) => Err(self.stale_error(s, now, &st)),
            None => Err(SourceError::Fetch {
                url: self.source.to_string(),
                error: crate::fetch::FetchError::Network(
                    st.last_error
                        .clone()
                        .unwrap_or_else(|| "no keys fetched yet".into()),
                ),
            }),
        }
    }

    fn fall_back(&self, now: i64, error: SourceError) -> Result<KeySnapshot, SourceError> {
        let st = lock(&self.state);
        match &st.snapshot {
            Some(s) if s.age(now) <= self.config.max_staleness => Ok(s.clone()),
            Some(s) => Err(self.stale_error(s, now, &st)),
            None => Err(error),
        }
    }

    fn stale_error(&self, s: &KeySnapshot, now: i64, st: &State) -> SourceError {
        SourceError::Stale {
            origin: s.origin.clone(),
            age_secs: s.age(now),
            max_secs: self.config.max_staleness,
            last_error: st.last_error.clone().unwrap_or_else(|| "none".into()),
        }
    }

    /// Called when a token names a `kid` the current keys lack. Refetches
    /// at most once per `unknown_kid_interval`; otherwise answers
    /// [`UnknownKid::RateLimited`] without any I/O. A failed refetch keeps
    /// the last good keys and returns the error.
    pub fn refresh_for_unknown_kid(&self, kid: &str, now: i64) -> Result<UnknownKid, SourceError> {
        {
            let mut st = lock(&self.state);
            if let Some(s) = st.snapshot.as_ref().filter(|s| s.has_kid(kid)) {
                return Ok(UnknownKid::AlreadyPresent(s.clone()));
            }
            if let Some(last) = st.last_unknown_kid_refetch {
                let next = last.saturating_add(self.config.unknown_kid_interval);
                if now < next {
                    return Ok(UnknownKid::RateLimited {
                        next_allowed_at: next,
                    });
                }
            }
            // Claimed before fetching, so concurrent callers are limited too.
            st.last_unknown_kid_refetch = Some(now);
        }
        let snapshot = self.refresh(now)?;
        let found = snapshot.has_kid(kid);
        Ok(UnknownKid::Refetched { snapshot, found })
    }

    /// Fetches (or revalidates) now, whatever the cache says. On success
    /// the new keys replace the old; on failure the old are kept and the
    /// error returned.
    pub fn refresh(&self, now: i64) -> Result<KeySnapshot, SourceError> {
        let generation = lock(&self.state).generation;
        let _guard = lock(&self.refreshing);
        {
            // Someone refreshed while we waited: use their result.
            let st = lock(&self.state);
            if st.generation != generation {
                if let (Some(s), None) = (&st.snapshot, &st.last_error) {
                    return Ok(s.clone());
                }
            }
        }
        let previous = {
            let st = lock(&self.state);
            st.snapshot
                .as_ref()
                .zip(st.etag.as_ref())
                .map(|(s, e)| (s.origin.clone(), e.clone()))
        };
        let result = self
            .source
            .fetch(
                &self.fetcher,
                previous.as_ref().map(|(o, e)| (o.as_str(), e.as_str())),
            )
            .and_then(|r| self.accept(r, now));
        let mut st = lock(&self.state);
        st.fetches += 1;
        st.generation += 1;
        st.last_attempt = Some(now);
        match result {
            Ok(update) => {
                let old = st.snapshot.take();
                let snapshot = match (update.body, old) {
                    // Same bytes (a server without ETag support) or a 304:
                    // the keys are confirmed, not new.
                    (Some((bytes, _)), Some(old)) if *old.bytes == *bytes => KeySnapshot {
                        validated_at: now,
                        discovery: update.discovery.or(old.discovery),
                        ..old
                    },
                    (None, Some(old)) => KeySnapshot {
                        validated_at: now,
                        discovery: update.discovery.or(old.discovery),
                        ..old
                    },
                    (Some((bytes, jwks)), _) => KeySnapshot {
                        bytes: bytes.into(),
                        jwks: Arc::new(jwks),
                        origin: update.origin,
                        discovery: update.discovery,
                        fetched_at: now,
                        validated_at: now,
                    },
                    (None, None) => {
                        // accept() refuses a 304 without a cached copy and
                        // only refresh() (serialised) changes the snapshot.
                        let e = SourceError::KeySet {
                            origin: update.origin,
                            reason: "304 Not Modified without a cached copy".into(),
                        };
                        st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                        st.last_error = Some(e.to_string());
                        return Err(e);
                    }
                };
                st.etag = update.etag;
                st.expires_at = now.saturating_add(self.ttl(update.max_age, update.no_cache));
                st.consecutive_failures = 0;
                st.last_error = None;
                st.snapshot = Some(snapshot.clone());
                Ok(snapshot)
            }
            Err(e) => {
                st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                st.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn ttl(&self, max_age: Option<u64>, no_cache: bool) -> i64 {
        let wanted = if no_cache {
            0
        } else {
            max_age.map_or(self.config.default_ttl, |m| {
                i64::try_from(m).unwrap_or(i64::MAX)
            })
        };
        wanted.clamp(
            self.config.min_ttl,
            self.config.max_ttl.max(self.config.min_ttl),
        )
    }

    /// Checks a fetch result before it may replace the good keys.
    fn accept(&self, r: crate::source::Resolved, _now: i64) -> Result<Update, SourceError> {
        if let Some(doc) = &r.discovery {
            if self.config.require_issuer_match && doc.issuer_match() == IssuerMatch::Mismatch {
                return Err(SourceError::IssuerMismatch {
                    url: doc.url.to_string(),
                    expected: doc.expected_issuer.clone().unwrap_or_default(),
                    found: doc.issuer.clone().unwrap_or_default(),
                });
            }
        }
        let body = match r.body {
            None => {
                if lock(&self.state).snapshot.is_none() {
                    return Err(SourceError::KeySet {
                        origin: r.origin,
                        reason: "304 Not Modified without a cached copy".into(),
                    });
                }
                None
            }
            Some(bytes) => {
                let bad = |reason: String| SourceError::KeySet {
                    origin: r.origin.clone(),
                    reason,
                };
                let jwks = Jwks::parse(&bytes).map_err(|e| bad(e.0))?;
                // A set with no usable key would make every token fail; far
                // more likely a broken response than a real rotation, so the
                // last good keys stay.
                if !jwks.keys.iter().any(Result::is_ok) {
                    return Err(bad("no readable key in the set".into()));
                }
                Some((bytes, jwks))
            }
        };
        Ok(Update {
            body,
            origin: r.origin,
            discovery: r.discovery.map(Arc::new),
            etag: r.etag,
            max_age: r.cache.max_age,
            no_cache: r.cache.no_cache,
        })
    }
}

struct Update {
    body: Option<(Vec<u8>, Jwks)>,
    origin: String,
    discovery: Option<Arc<DiscoveryDoc>>,
    etag: Option<String>,
    max_age: Option<u64>,
    no_cache: bool,
}
