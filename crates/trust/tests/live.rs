//! Key sets served over HTTP on loopback: rotation picked up through the
//! unknown-kid refetch, refetches rate-limited, last-known-good while the
//! server is down, fail closed once the keys are too old.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};
use tokenward_jose::{Algorithm, SigningKey};
use tokenward_keys::FetchConfig;
use tokenward_trust::{LivePolicy, Policy};

/// A JWKS server: serves `body`, counts requests, or drops connections
/// while `down` is set.
struct KeyServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    max_age: Arc<AtomicUsize>,
}

impl KeyServer {
    fn start(initial: &Value) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(initial.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let max_age = Arc::new(AtomicUsize::new(300));
        let (b, h, d, m) = (body.clone(), hits.clone(), down.clone(), max_age.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees a closed connection
                }
                h.fetch_add(1, Ordering::SeqCst);
                let text = b.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age={}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    m.load(Ordering::SeqCst),
                    text.len(),
                    text
                );
            }
        });
        KeyServer {
            url,
            body,
            hits,
            down,
            max_age,
        }
    }

    fn serve(&self, v: &Value) {
        *self.body.lock().unwrap() = v.to_string();
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn loopback() -> FetchConfig {
    FetchConfig {
        allow_plain_http_loopback: true,
        ..FetchConfig::default()
    }
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    let mut j = key.public_jwk(kid);
    j["issuer"] = json!(TEMPLATE);
    j
}

fn policy_text(url: &str) -> String {
    format!(
        "max_staleness_seconds = 600\nunknown_kid_refetch_seconds = 60\n\n[[issuer]]\n\
         issuer = \"{TEMPLATE}\"\ntenants = [\"{TENANT_A}\"]\naudiences = [\"{AUD}\"]\n\
         algorithms = [\"RS256\"]\njwks = \"{url}\"\n"
    )
}

fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    KeyServer,
    SigningKey,
    SigningKey,
) {
    let old = SigningKey::generate(Algorithm::RS256).unwrap();
    let new = SigningKey::generate(Algorithm::RS256).unwrap();
    let server = KeyServer::start(&json!({"keys": [jwk(&old, "k-old")]}));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy_text(&server.url)).unwrap();
    (dir, path, server, old, new)
}

#[test]
fn rotation_is_picked_up_through_the_unknown_kid_refetch() {
    let (_dir, path, server, old, new) = setup();
    let live = LivePolicy::load_with(&path, loopback(), NOW).unwrap();
    assert_eq!(server.hits(), 1);
    assert_accepted(&live.verify(&sign(&old, "k-old", &claims()), NOW));
    // Before the source publishes the new key: unknown.
    assert_rejected_with(
        &live.verify(&sign(&new, "k-new", &claims()), NOW),
        "kid-unknown",
    );
    assert_eq!(server.hits(), 2, "one refetch for the unknown kid");
    // The source rotates; the next unknown-kid refetch is allowed after the
    // interval and picks it up.
    server.serve(&json!({"keys": [jwk(&old, "k-old"), jwk(&new, "k-new")]}));
    assert_rejected_with(
        &live.verify(&sign(&new, "k-new", &claims()), NOW + 10),
        "kid-unknown",
    );
    assert_eq!(server.hits(), 2, "still inside the refetch interval");
    assert_accepted(&live.verify(&sign(&new, "k-new", &claims()), NOW + 61));
    assert_eq!(server.hits(), 3);
    // Once known, no more fetches.
    assert_accepted(&live.verify(&sign(&new, "k-new", &claims()), NOW + 62));
    assert_eq!(server.hits(), 3);
}

#[test]
fn a_burst_of_unknown_kids_costs_at_most_one_fetch_per_interval() {
    let (_dir, path, server, _old, new) = setup();
    let live = LivePolicy::load_with(&path, loopback(), NOW).unwrap();
    for i in 0..50 {
        let v = live.verify(&sign(&new, &format!("forged-{i}"), &claims()), NOW + i);
        assert_rejected_with(&v, "kid-unknown");
    }
    assert_eq!(
        server.hits(),
        2,
        "load + one refetch for 50 unknown kids in 50 s"
    );
}

#[test]
fn server_down_last_known_good_then_fail_closed() {
    let (_dir, path, server, old, _new) = setup();
    let live = LivePolicy::load_with(&path, loopback(), NOW).unwrap();
    server.down.store(true, Ordering::SeqCst);
    let token = |t: i64| {
        let mut c = claims();
        c["iat"] = json!(t - 60);
        c["nbf"] = json!(t - 60);
        c["exp"] = json!(t + 3600);
        sign(&old, "k-old", &c)
    };
    // Past the cache lifetime, the refresh fails: last-known-good serves.
    assert_accepted(&live.verify(&token(NOW + 400), NOW + 400));
    // Past max_staleness (600 s): refuse, whatever the signature.
    let v = live.verify(&token(NOW + 700), NOW + 700);
    assert_rejected_with(&v, "keys-stale");
    assert!(!codes(&v).contains(&"signature-invalid"));
    // The source comes back: accepted again.
    server.down.store(false, Ordering::SeqCst);
    let before = server.hits();
    assert_accepted(&live.verify(&token(NOW + 800), NOW + 800));
    assert_eq!(server.hits(), before + 1);
}

#[test]
fn keys_near_max_staleness_are_revalidated_inside_a_long_cache_lifetime() {
    let (_dir, path, server, old, _new) = setup();
    server.max_age.store(86_400, Ordering::SeqCst);
    let live = LivePolicy::load_with(&path, loopback(), NOW).unwrap();
    let mut c = claims();
    c["exp"] = json!(NOW + 7200);
    assert_accepted(&live.verify(&sign(&old, "k-old", &c), NOW + 700));
    assert_eq!(server.hits(), 2, "revalidated instead of failing closed");
}

#[test]
fn plain_http_key_sets_are_refused_by_default() {
    let (_dir, path, _server, _old, _new) = setup();
    let err = Policy::load(&path).unwrap_err();
    assert!(err.to_string().contains("http"), "{err}");
    let err = LivePolicy::load(&path, NOW).err().unwrap();
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[test]
fn secrets_are_never_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[[issuer]]\nissuer = \"https://hs.example\"\naudiences = [\"a\"]\nalgorithms = [\"HS256\"]\n\
         secrets = \"https://keys.example/secrets.json\"\n",
    )
    .unwrap();
    let err = Policy::load(&path).unwrap_err();
    assert!(err.to_string().contains("never fetched"), "{err}");
}
