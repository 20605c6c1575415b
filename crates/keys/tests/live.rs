//! Live key sources against a real HTTP server on loopback.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokenward_keys::{
    FetchConfig, FetchError, Fetcher, KeySource, LiveConfig, LiveKeySet, SourceError, UnknownKid,
    Url,
};

const NOW: i64 = 1_700_000_000;

fn fetcher() -> Fetcher {
    Fetcher::new(FetchConfig {
        allow_plain_http_loopback: true,
        timeout: Duration::from_secs(5),
        ..FetchConfig::default()
    })
    .unwrap()
}

fn config() -> LiveConfig {
    LiveConfig {
        default_ttl: 600,
        min_ttl: 10,
        max_ttl: 3600,
        unknown_kid_interval: 300,
        retry_interval: 30,
        max_staleness: 7200,
        require_issuer_match: true,
    }
}

fn live(server: &Server, source: &str) -> LiveKeySet {
    LiveKeySet::new(
        KeySource::parse(&server.url(source)).unwrap(),
        fetcher(),
        config(),
    )
}

fn fetch_error(e: SourceError) -> FetchError {
    match e {
        SourceError::Fetch { error, .. } => error,
        other => panic!("expected a fetch error, got {other:?}"),
    }
}

/// Serves an issuer at /tenant with its discovery document and key set.
fn issuer_server() -> (Server, tokenward_jose::SigningKey) {
    let server = Server::start();
    let key = rsa();
    server.reply(
        "/tenant/.well-known/openid-configuration",
        Reply::json(&json!({
            "issuer": server.url("/tenant"),
            "jwks_uri": server.url("/tenant/keys"),
        })),
    );
    server.jwks(
        "/tenant/keys",
        &key_set(vec![plain_key(&key, "k1")]),
        "max-age=60",
    );
    (server, key)
}

#[test]
fn issuer_url_reads_discovery_then_keys() {
    let (server, _) = issuer_server();
    let keys = live(&server, "/tenant");
    let snap = keys.keys(NOW).unwrap();
    assert!(snap.has_kid("k1"));
    assert_eq!(snap.origin, server.url("/tenant/keys"));
    let doc = snap.discovery.as_ref().unwrap();
    assert_eq!(doc.issuer.as_deref(), Some(server.url("/tenant").as_str()));
    assert_eq!(server.hits("/tenant/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/tenant/keys"), 1);
    // Within max-age nothing is fetched again.
    keys.keys(NOW + 59).unwrap();
    assert_eq!(server.hits("/tenant/keys"), 1);
}

#[test]
fn rotation_is_picked_up_when_the_cache_expires() {
    let server = Server::start();
    let (old, new) = (rsa(), rsa());
    server.jwks(
        "/keys",
        &key_set(vec![plain_key(&old, "old")]),
        "max-age=60",
    );
    let keys = live(&server, "/keys");
    assert!(keys.keys(NOW).unwrap().has_kid("old"));

    server.jwks(
        "/keys",
        &key_set(vec![plain_key(&new, "new")]),
        "max-age=60",
    );
    // Still cached: the old set is served without a request.
    assert!(keys.keys(NOW + 30).unwrap().has_kid("old"));
    assert_eq!(server.hits("/keys"), 1);
    // After max-age the rotation is seen.
    let snap = keys.keys(NOW + 61).unwrap();
    assert!(snap.has_kid("new") && !snap.has_kid("old"));
    assert_eq!(snap.fetched_at, NOW + 61);
    assert_eq!(server.hits("/keys"), 2);
}

#[test]
fn max_age_is_clamped_to_the_configured_bounds() {
    let server = Server::start();
    let key = rsa();
    // A server asking for a year of caching is capped at max_ttl (1 h here),
    // so a key removed at the source stops being trusted within an hour.
    server.jwks(
        "/keys",
        &key_set(vec![plain_key(&key, "k")]),
        "max-age=31536000",
    );
    let keys = live(&server, "/keys");
    keys.keys(NOW).unwrap();
    keys.keys(NOW + 3599).unwrap();
    assert_eq!(server.hits("/keys"), 1);
    keys.keys(NOW + 3600).unwrap();
    assert_eq!(server.hits("/keys"), 2);
    // no-cache is floored at min_ttl (10 s): no refetch per token.
    server.jwks("/nc/keys", &key_set(vec![plain_key(&key, "k")]), "no-cache");
    let nc = live(&server, "/nc/keys");
    nc.keys(NOW).unwrap();
    nc.keys(NOW + 9).unwrap();
    assert_eq!(server.hits("/nc/keys"), 1);
    nc.keys(NOW + 10).unwrap();
    assert_eq!(server.hits("/nc/keys"), 2);
}

#[test]
fn etag_revalidation_gets_304_and_keeps_the_keys() {
    let server = Server::start();
    let key = rsa();
    server.jwks("/keys", &key_set(vec![plain_key(&key, "k")]), "max-age=60");
    let keys = live(&server, "/keys");
    let first = keys.keys(NOW).unwrap();
    let second = keys.keys(NOW + 100).unwrap();
    assert_eq!(server.hits("/keys"), 2);
    assert_eq!(server.not_modified(), 1, "the revalidation must be a 304");
    assert!(Arc::ptr_eq(&first.jwks, &second.jwks));
    assert_eq!(second.fetched_at, NOW);
    assert_eq!(second.validated_at, NOW + 100);
}

#[test]
fn unknown_kid_refetch_is_rate_limited() {
    let server = Server::start();
    let (k1, k2) = (rsa(), rsa());
    server.jwks(
        "/keys",
        &key_set(vec![plain_key(&k1, "k1")]),
        "max-age=3600",
    );
    let keys = live(&server, "/keys");
    keys.keys(NOW).unwrap();

    // A flood of tokens with an unknown kid: one refetch, then none.
    let first = keys.refresh_for_unknown_kid("forged", NOW + 1).unwrap();
    assert!(matches!(first, UnknownKid::Refetched { found: false, .. }));
    for i in 0..200 {
        let r = keys.refresh_for_unknown_kid("forged", NOW + 2 + i).unwrap();
        assert!(
            matches!(r, UnknownKid::RateLimited { next_allowed_at } if next_allowed_at == NOW + 301)
        );
    }
    assert_eq!(server.hits("/keys"), 2);

    // A real rotation after the interval is found by the next unknown kid.
    server.jwks(
        "/keys",
        &key_set(vec![plain_key(&k1, "k1"), plain_key(&k2, "k2")]),
        "max-age=3600",
    );
    match keys.refresh_for_unknown_kid("k2", NOW + 301).unwrap() {
        UnknownKid::Refetched { snapshot, found } => {
            assert!(found);
            assert!(snapshot.has_kid("k2"));
        }
        other => panic!("expected a refetch, got {other:?}"),
    }
    assert_eq!(server.hits("/keys"), 3);
    // Known now: no fetch at all.
    assert!(matches!(
        keys.refresh_for_unknown_kid("k2", NOW + 302).unwrap(),
        UnknownKid::AlreadyPresent(_)
    ));
    assert_eq!(server.hits("/keys"), 3);
}

#[test]
fn concurrent_unknown_kids_make_one_fetch() {
    let server = Server::start();
    let key = rsa();
    server.jwks(
        "/keys",
        &key_set(vec![plain_key(&key, "k")]),
        "max-age=3600",
    );
    let keys = Arc::new(live(&server, "/keys"));
    keys.keys(NOW).unwrap();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let keys = keys.clone();
            std::thread::spawn(move || {
                keys.refresh_for_unknown_kid(&format!("forged-{i}"), NOW + 5)
                    .unwrap()
            })
        })
        .collect();
    let refetched = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|r| matches!(r, UnknownKid::Refetched { .. }))
        .count();
    assert_eq!(refetched, 1);
    assert_eq!(server.hits("/keys"), 2);
}

#[test]
fn server_down_serves_last_known_good_then_fails_closed() {
    let mut server = Server::start();
    let key = rsa();
    server.jwks("/keys", &key_set(vec![plain_key(&key, "k")]), "max-age=60");
    let keys = live(&server, "/keys");
    keys.keys(NOW).unwrap();
    server.stop();

    // Cache expired, source down: the last good keys are still served.
    let snap = keys.keys(NOW + 100).unwrap();
    assert!(snap.has_kid("k"));
    let status = keys.status();
    assert_eq!(status.consecutive_failures, 1);
    assert!(status.last_error.is_some());
    assert!(!keys.is_stale(NOW + 100));

    // While failing, attempts are spaced by retry_interval (30 s).
    keys.keys(NOW + 110).unwrap();
    assert_eq!(keys.status().fetches, 2);
    keys.keys(NOW + 131).unwrap();
    assert_eq!(keys.status().fetches, 3);

    // Past max_staleness (2 h since the last confirmation): fail closed.
    let err = keys.keys(NOW + 7201).unwrap_err();
    match err {
        SourceError::Stale {
            age_secs, max_secs, ..
        } => {
            assert_eq!(age_secs, 7201);
            assert_eq!(max_secs, 7200);
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    assert!(keys.is_stale(NOW + 7201));
    // The keys are still there for inspection, just not for verification.
    assert!(keys.current().unwrap().has_kid("k"));
}

#[test]
fn a_bad_response_never_replaces_good_keys() {
    let server = Server::start();
    let key = rsa();
    server.jwks("/keys", &key_set(vec![plain_key(&key, "k")]), "max-age=60");
    let keys = live(&server, "/keys");
    keys.keys(NOW).unwrap();
    for bad in [
        Reply::status(500),
        Reply::bytes(b"<html>maintenance</html>".to_vec()),
        Reply::json(&json!({"keys": []})),
        Reply::json(&json!({"keys": [{"kty": "RSA"}]})),
    ] {
        server.reply("/keys", bad);
        assert!(keys.refresh(NOW + 100).is_err());
        assert!(keys.keys(NOW + 100).unwrap().has_kid("k"));
    }
}

#[test]
fn first_fetch_failure_is_an_error() {
    let server = Server::start();
    let keys = live(&server, "/missing/keys");
    let err = keys.keys(NOW).unwrap_err();
    assert_eq!(fetch_error(err), FetchError::Status(404));
    assert!(keys.is_stale(NOW));
}

#[test]
fn oversized_responses_are_cut_off() {
    let server = Server::start();
    let big = vec![b' '; 256 * 1024];
    server.reply("/announced", Reply::bytes(big.clone()));
    server.reply(
        "/unannounced",
        Reply {
            no_length: true,
            ..Reply::bytes(big)
        },
    );
    let small = Fetcher::new(FetchConfig {
        allow_plain_http_loopback: true,
        max_bytes: 64 * 1024,
        ..FetchConfig::default()
    })
    .unwrap();
    for path in ["/announced", "/unannounced"] {
        let url = Url::parse(&server.url(path)).unwrap();
        assert!(
            matches!(small.get(&url, None), Err(FetchError::TooLarge(_))),
            "{path}"
        );
    }
}

#[test]
fn slow_responses_are_cut_off() {
    let server = Server::start();
    // 4 KiB at one byte per 5 ms is ~20 s; the fetch deadline is 500 ms.
    server.reply(
        "/trickle",
        Reply {
            trickle: Some(Duration::from_millis(5)),
            ..Reply::bytes(vec![b' '; 4096])
        },
    );
    server.reply(
        "/stall",
        Reply {
            delay: Duration::from_secs(3),
            ..Reply::bytes(b"{}".to_vec())
        },
    );
    let quick = Fetcher::new(FetchConfig {
        allow_plain_http_loopback: true,
        timeout: Duration::from_millis(500),
        ..FetchConfig::default()
    })
    .unwrap();
    for path in ["/trickle", "/stall"] {
        let url = Url::parse(&server.url(path)).unwrap();
        let started = Instant::now();
        let r = quick.get(&url, None);
        assert!(matches!(r, Err(FetchError::Timeout(_))), "{path}: {r:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{path}");
    }
}

#[test]
fn redirects_to_plain_http_are_refused() {
    let server = Server::start();
    server.reply("/keys", Reply::redirect("http://idp.example/keys"));
    let keys = live(&server, "/keys");
    match fetch_error(keys.keys(NOW).unwrap_err()) {
        FetchError::Refused(m) => assert!(m.contains("plain http"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn redirects_are_followed_a_few_times_only() {
    let server = Server::start();
    let key = rsa();
    server.jwks("/real", &key_set(vec![plain_key(&key, "k")]), "max-age=60");
    server.reply("/moved/keys", Reply::redirect("/real"));
    assert!(live(&server, "/moved/keys").keys(NOW).unwrap().has_kid("k"));
    assert_eq!(server.hits("/real"), 1);

    server.reply("/loop/keys", Reply::redirect("/loop/keys"));
    let err = fetch_error(live(&server, "/loop/keys").keys(NOW).unwrap_err());
    assert_eq!(err, FetchError::TooManyRedirects(3));
    assert_eq!(server.hits("/loop/keys"), 4);
}

#[test]
fn plain_http_needs_opt_in_even_on_loopback() {
    let server = Server::start();
    let strict = Fetcher::new(FetchConfig::default()).unwrap();
    let url = Url::parse(&server.url("/keys")).unwrap();
    assert!(matches!(
        strict.get(&url, None),
        Err(FetchError::Refused(_))
    ));
    assert_eq!(server.hits("/keys"), 0);
}

#[test]
fn discovery_naming_another_issuer_is_refused() {
    let server = Server::start();
    let key = rsa();
    server.reply(
        "/t/.well-known/openid-configuration",
        Reply::json(&json!({
            "issuer": "https://attacker.example/t",
            "jwks_uri": server.url("/t/keys"),
        })),
    );
    server.jwks(
        "/t/keys",
        &key_set(vec![plain_key(&key, "k")]),
        "max-age=60",
    );
    let keys = live(&server, "/t/.well-known/openid-configuration");
    assert!(matches!(
        keys.keys(NOW).unwrap_err(),
        SourceError::IssuerMismatch { .. }
    ));
}

#[test]
fn discovery_pointing_jwks_at_plain_http_is_refused() {
    let server = Server::start();
    server.reply(
        "/t/.well-known/openid-configuration",
        Reply::json(&json!({
            "issuer": server.url("/t"),
            "jwks_uri": "http://keys.example/t/keys",
        })),
    );
    let keys = live(&server, "/t");
    assert!(matches!(
        fetch_error(keys.keys(NOW).unwrap_err()),
        FetchError::Refused(_)
    ));
}

#[test]
fn file_sources_reload_and_keep_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let (a, b) = (rsa(), rsa());
    std::fs::write(&path, key_set(vec![plain_key(&a, "a")]).to_string()).unwrap();
    let keys = LiveKeySet::new(KeySource::File(path.clone()), fetcher(), config());
    assert!(keys.keys(NOW).unwrap().has_kid("a"));
    std::fs::write(&path, key_set(vec![plain_key(&b, "b")]).to_string()).unwrap();
    // default_ttl (600 s) decides when a file is read again.
    assert!(keys.keys(NOW + 599).unwrap().has_kid("a"));
    assert!(keys.keys(NOW + 600).unwrap().has_kid("b"));
    std::fs::write(&path, "not json").unwrap();
    assert!(keys.keys(NOW + 1200).unwrap().has_kid("b"));
}
