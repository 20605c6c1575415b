//! Key sets served from a URL (a loopback JWKS server; plain HTTP is
//! allowed for loopback in tests only): a key rotated in at the source
//! starts working without a restart, and when the source fails for longer
//! than `max_staleness_seconds` its issuer's tokens are refused.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokenward_gateway::FetchConfig;
use tokenward_jose::{Algorithm, SigningKey};

/// A JWKS endpoint whose document can be swapped or made to fail.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<Value>>,
    failing: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(doc: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let doc = Arc::new(Mutex::new(doc));
        let failing = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f, n) = (doc.clone(), failing.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (d, f, n) = (d.clone(), f.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let (d, f, n) = (d.clone(), f.clone(), n.clone());
                        async move {
                            n.fetch_add(1, Ordering::SeqCst);
                            let mut r = if f.load(Ordering::SeqCst) {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                r
                            } else {
                                Response::new(Full::new(Bytes::from(d.lock().unwrap().to_string())))
                            };
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        JwksServer {
            url,
            doc,
            failing,
            fetches,
        }
    }
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    let mut j = key.public_jwk(kid);
    j["issuer"] = json!(TEMPLATE);
    j
}

fn policy(url: &str, extra: &str) -> String {
    format!(
        r#"{extra}
[[issuer]]
issuer = "{TEMPLATE}"
tenants = ["{TENANT_A}"]
audiences = ["{AUD}"]
algorithms = ["RS256"]
jwks = "{url}"
"#
    )
}

async fn start(env: &Env, up: &Upstream) -> Running {
    Running::start(env, &format!("http://{}", up.addr), |c| {
        c.key_fetch = FetchConfig {
            allow_plain_http_loopback: true,
            ..FetchConfig::default()
        };
    })
    .await
}

#[tokio::test]
async fn a_key_rotated_in_at_the_source_works_without_a_restart() {
    let old = SigningKey::generate(Algorithm::RS256).unwrap();
    let new = SigningKey::generate(Algorithm::RS256).unwrap();
    let jwks = JwksServer::start(json!({"keys": [jwk(&old, "ent-1")]})).await;
    let env = Env::with_policy(&policy(&jwks.url, "unknown_kid_refetch_seconds = 1"));
    let up = Upstream::start().await;
    let mut gw = start(&env, &up).await;

    assert_eq!(
        get(gw.addr, "/orders", Some(&sign(&old, "ent-1", &claims())))
            .await
            .status,
        200
    );
    let rotated = sign(&new, "ent-2", &claims());
    assert_eq!(get(gw.addr, "/orders", Some(&rotated)).await.status, 401);

    // The issuer publishes the new key; the next tokens that name it get
    // it fetched (rate-limited to one refetch a second here).
    *jwks.doc.lock().unwrap() = json!({"keys": [jwk(&old, "ent-1"), jwk(&new, "ent-2")]});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(gw.addr, "/orders", Some(&rotated)).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 401);
        assert!(Instant::now() < deadline, "rotated key never picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(jwks.fetches.load(Ordering::SeqCst) >= 2);
    // Every refusal on the way was kid-unknown and stayed away from the
    // upstream: two 200s before, one after.
    assert_eq!(up.count(), 2);
    let lines = gw.log_lines(3).await;
    assert_eq!(lines[1]["reasons"][0], "kid-unknown");
    gw.stop().await;
}

#[tokio::test]
async fn a_source_failing_past_max_staleness_refuses_its_tokens() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let jwks = JwksServer::start(json!({"keys": [jwk(&key, "ent-1")]})).await;
    let env = Env::with_policy(&policy(&jwks.url, "max_staleness_seconds = 2"));
    let up = Upstream::start().await;
    let mut gw = start(&env, &up).await;
    let token = sign(&key, "ent-1", &claims());
    assert_eq!(get(gw.addr, "/orders", Some(&token)).await.status, 200);

    jwks.failing.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(gw.addr, "/orders", Some(&token)).await;
        if r.status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "stale keys still accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The refusal is logged with its reason (the writer drains in batches,
    // so wait for the line).
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let found = gw
            .log_text()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|l| l["verdict"] == "rejected");
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "refusal not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused["reasons"], json!(["keys-stale"]), "{refused}");
    assert_eq!(refused["kid"], "ent-1");
    let r = raw(gw.admin, "GET /healthz HTTP/1.1\nhost: a", b"").await;
    assert!(
        String::from_utf8_lossy(&r.body).contains("stale_sources=1"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );

    // The source recovers: tokens pass again without a restart.
    jwks.failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(gw.addr, "/orders", Some(&token)).await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "recovered source never used");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.stop().await;
}
