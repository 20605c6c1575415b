//! The gateway end to end on loopback: legitimate traffic, the log, route
//! rules, header hygiene, upstream failures, operations.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokenward_gateway::UnderscoreHeaders;

/// Every field of the documented log format.
const LOG_FIELDS: [&str; 32] = [
    "time",
    "client_ip",
    "peer_ip",
    "x_forwarded_for",
    "method",
    "path",
    "status",
    "upstream_status",
    "latency_ms",
    "verdict",
    "reasons",
    "cached",
    "error",
    "kid",
    "x5t",
    "alg",
    "iss",
    "tid",
    "aud",
    "sub",
    "oid",
    "appid",
    "azp",
    "client_id",
    "uti",
    "jti",
    "sid",
    "iat",
    "nbf",
    "exp",
    "token_sha256_prefix",
    "status",
];

fn assert_complete(line: &Value) {
    let obj = line.as_object().expect("log line is an object");
    for f in LOG_FIELDS {
        assert!(obj.contains_key(f), "{f} missing from {line}");
    }
    let time = line["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
        "{time}"
    );
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(line["reasons"].is_array());
}

#[tokio::test]
async fn legitimate_token_passes_with_verified_identity_and_a_complete_log() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let token = env.legit();

    let r = raw(
        gw.addr,
        &format!(
            "GET /orders/1?x=1 HTTP/1.1\nhost: api.example\nauthorization: Bearer {token}\nx-custom: kept"
        ),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert_eq!(up.count(), 1);
    let seen = up.last();
    assert_eq!(seen.uri, "/orders/1?x=1");
    let h = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("x-tokenward-sub").as_deref(), Some("user-1"));
    assert_eq!(h("x-tokenward-tid").as_deref(), Some(TENANT_A));
    assert_eq!(
        h("x-tokenward-iss").as_deref(),
        Some(issuer_for(TENANT_A).as_str())
    );
    assert_eq!(h("x-tokenward-kid").as_deref(), Some("ent-1"));
    // Original headers travel on, the token included.
    assert_eq!(h("x-custom").as_deref(), Some("kept"));
    assert_eq!(h("host").as_deref(), Some("api.example"));
    assert_eq!(h("authorization"), Some(format!("Bearer {token}")));
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("connection"), None, "hop-by-hop header forwarded");

    // A second use is served from the verdict cache.
    let r = get(gw.addr, "/orders/2", Some(&token)).await;
    assert_eq!(r.status, 200);
    // The RFC 9068 issuer's token passes too.
    let r = get(gw.addr, "/orders/3", Some(&env.as_token())).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 3);

    let lines = gw.log_lines(3).await;
    for l in &lines {
        assert_complete(l);
        assert_eq!(l["verdict"], "accepted");
        assert_eq!(l["status"], 200);
        assert_eq!(l["upstream_status"], 200);
        assert_eq!(l["reasons"], serde_json::json!([]));
    }
    let first = &lines[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/orders/1", "query strings are not logged");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(first["x_forwarded_for"].is_null());
    assert_eq!(first["kid"], "ent-1");
    assert_eq!(first["alg"], "RS256");
    assert_eq!(first["iss"], issuer_for(TENANT_A).as_str());
    assert_eq!(first["tid"], TENANT_A);
    assert_eq!(first["aud"], serde_json::json!([AUD]));
    assert_eq!(first["sub"], "user-1");
    assert_eq!(first["oid"], "0b7a");
    assert_eq!(first["azp"], "app-1");
    assert_eq!(first["uti"], "AAAA-token-1");
    assert_eq!(first["sid"], "sess-1");
    assert!(first["iat"].as_f64().unwrap() > 1.7e9);
    assert!(first["exp"].as_f64().unwrap() > first["iat"].as_f64().unwrap());
    assert_eq!(first["cached"], false);
    assert_eq!(lines[1]["cached"], true);
    assert_eq!(
        lines[1]["token_sha256_prefix"], first["token_sha256_prefix"],
        "one token, one prefix"
    );
    assert_eq!(first["token_sha256_prefix"].as_str().unwrap().len(), 16);
    assert_eq!(lines[2]["client_id"], "c-1");
    assert_eq!(lines[2]["jti"], "j-1");

    // The token itself is never written.
    let text = gw.log_text();
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "token signature in the log");
    gw.stop().await;
}

#[tokio::test]
async fn missing_or_non_bearer_credentials_get_a_bare_challenge() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| {
        c.realm = "orders".into();
    })
    .await;
    for auth in [
        "",
        "authorization: Basic dXNlcjpwYXNz\n",
        "authorization: Bearer\n",
    ] {
        let r = raw(
            gw.addr,
            &format!("GET /orders HTTP/1.1\nhost: a\n{auth}"),
            b"",
        )
        .await;
        assert_eq!(r.status, 401, "{auth}");
        // RFC 6750 §3.1: no error code when no credentials were sent.
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="orders""#)
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    assert_eq!(up.count(), 0);
    let lines = gw.log_lines(3).await;
    for l in &lines {
        assert_complete(l);
        assert_eq!(l["verdict"], "no-token");
        assert_eq!(l["reasons"], serde_json::json!(["token-missing"]));
        assert!(l["token_sha256_prefix"].is_null());
    }
    gw.stop().await;
}

#[tokio::test]
async fn ambiguous_credentials_and_paths_are_bad_requests() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let t = env.legit();
    // Two Authorization headers: which one would the upstream read?
    let r = raw(
        gw.addr,
        &format!(
            "GET /orders HTTP/1.1\nhost: a\nauthorization: Bearer {t}\nauthorization: Bearer forged"
        ),
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="tokenward", error="invalid_request""#)
    );
    // A token in the query string beside a valid header token.
    let r = get(gw.addr, "/orders?access_token=forged", Some(&t)).await;
    assert_eq!(r.status, 400);
    // Paths the upstream might resolve elsewhere, even onto a public prefix.
    for p in [
        "/public/../orders",
        "/public/%2e%2e/orders",
        "/public%2forders",
        "//orders",
    ] {
        let r = get(gw.addr, p, Some(&t)).await;
        assert_eq!(r.status, 400, "{p}");
    }
    assert_eq!(up.count(), 0);
    let lines = gw.log_lines(6).await;
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reasons"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "authorization-repeated",
            "token-in-query",
            "path-not-normalized",
            "path-not-normalized",
            "path-not-normalized",
            "path-not-normalized"
        ]
    );
    assert!(lines.iter().all(|l| l["verdict"] == "bad-request"));
    gw.stop().await;
}

/// A request the HTTP layer refuses before the gateway sees it (request
/// smuggling: Content-Length beside Transfer-Encoding) still leaves an
/// access-log line, and nothing reaches the upstream.
#[tokio::test]
async fn requests_refused_by_the_http_parser_are_logged() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let t = env.legit();
    let r = raw(
        gw.addr,
        &format!(
            "POST /orders HTTP/1.1\nhost: a\nauthorization: Bearer {t}\ncontent-length: 5\ntransfer-encoding: chunked\ntransfer-encoding: identity"
        ),
        b"0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(up.count(), 0);
    let lines = gw.log_lines(1).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["verdict"], "bad-request");
    assert_eq!(lines[0]["reasons"][0], "malformed-request");
    assert_eq!(lines[0]["status"], 400);
    assert_eq!(lines[0]["peer_ip"], "127.0.0.1");
    gw.stop().await;
}

#[tokio::test]
async fn token_exchange_refuses_its_own_issuers_subject_tokens() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let own = env.as_token();

    // The exchange's own output is valid elsewhere...
    assert_eq!(get(gw.addr, "/orders", Some(&own)).await.status, 200);
    assert_eq!(up.count(), 1);
    // ...but never as a subject token, under any spelling of the endpoint.
    for p in [
        EXCHANGE_PATH,
        "/OWA/Service/getaccesstokenforresource",
        "/owa/service/GetAccessTokenForResource/",
        "/owa/service/GetAccessTokenForResource;x=1",
        "/owa/service/GetAccessTokenForResource?renew=1",
    ] {
        let r = get(gw.addr, p, Some(&own)).await;
        assert_eq!(r.status, 401, "{p}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="tokenward", error="invalid_token""#)
        );
    }
    assert_eq!(up.count(), 1);
    // A token from the identity provider is a fine subject token.
    assert_eq!(
        get(gw.addr, EXCHANGE_PATH, Some(&env.legit())).await.status,
        200
    );
    assert_eq!(up.count(), 2);
    // And the exchange still needs a token at all.
    assert_eq!(get(gw.addr, EXCHANGE_PATH, None).await.status, 401);

    let lines = gw.log_lines(8).await;
    for l in &lines[1..6] {
        assert_complete(l);
        assert_eq!(l["verdict"], "rejected");
        assert_eq!(
            l["reasons"],
            serde_json::json!(["exchange-subject-refused"])
        );
        assert_eq!(l["iss"], AS_ISSUER);
    }
    assert_eq!(lines[6]["verdict"], "accepted");
    gw.stop().await;
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let spoof = "x-tokenward-sub: admin\nX-Tokenward-Tid: 00000000-0000-0000-0000-000000000000\nx-tokenward-roles: Global.Admin";

    // With a valid token: the verified values replace the spoofed ones, and
    // Connection cannot be used to strip the gateway's own headers.
    let r = raw(
        gw.addr,
        &format!(
            "GET /orders HTTP/1.1\nhost: a\nauthorization: Bearer {}\n{spoof}\nconnection: x-tokenward-sub, x-tokenward-kid",
            env.legit()
        ),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    let all = |n: &str| -> Vec<String> {
        seen.headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(all("x-tokenward-sub"), ["user-1"]);
    assert_eq!(all("x-tokenward-tid"), [TENANT_A]);
    assert_eq!(all("x-tokenward-kid"), ["ent-1"]);
    assert!(all("x-tokenward-roles").is_empty());

    // On a public route: spoofed headers and the unverified token both go.
    let r = raw(
        gw.addr,
        &format!("GET /public/doc HTTP/1.1\nhost: a\nauthorization: Bearer forged\n{spoof}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert!(
        seen.headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-tokenward-")),
        "{:?}",
        seen.headers
    );
    assert!(seen.headers.get("authorization").is_none());
    // A client-supplied X-Forwarded-For is replaced, not believed.
    let r = raw(
        gw.addr,
        "GET /public/doc HTTP/1.1\nhost: a\nx-forwarded-for: 203.0.113.66",
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().headers["x-forwarded-for"], "127.0.0.1");
    let lines = gw.log_lines(3).await;
    assert_eq!(lines[1]["verdict"], "not-required");
    assert!(
        lines[1]["kid"].is_null(),
        "a public route's token is not read"
    );
    assert_eq!(lines[2]["client_ip"], "127.0.0.1");
    assert!(lines[2]["x_forwarded_for"].is_null());
    gw.stop().await;
}

/// `X_Tokenward_Sub` reads as `X-Tokenward-Sub` to WSGI, CGI and many
/// frameworks. By default any underscore header name refuses the request;
/// `drop` removes such headers as nginx does; `forward` keeps all but the
/// identity look-alikes.
#[tokio::test]
async fn underscore_header_names_are_refused_by_default_and_never_pose_as_identity() {
    let env = Env::new();
    let up = Upstream::start().await;
    let request = |token: &str| {
        format!(
            "GET /orders HTTP/1.1\nhost: a\nauthorization: Bearer {token}\nX_Tokenward_Sub: admin\nx_request_id: r-1"
        )
    };
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let r = raw(gw.addr, &request(&env.legit()), b"").await;
    assert_eq!(r.status, 400);
    // The legitimate request without them still passes.
    let r = get(gw.addr, "/orders", Some(&env.legit())).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1, "the refused request reached the upstream");
    let lines = gw.log_lines(2).await;
    assert_complete(&lines[0]);
    assert_eq!(lines[0]["verdict"], "bad-request");
    assert_eq!(
        lines[0]["reasons"],
        serde_json::json!(["header-name-underscore"])
    );
    gw.stop().await;

    for (mode, request_id_kept) in [
        (UnderscoreHeaders::Drop, false),
        (UnderscoreHeaders::Forward, true),
    ] {
        let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| {
            c.underscore_headers = mode;
        })
        .await;
        let r = raw(gw.addr, &request(&env.legit()), b"").await;
        assert_eq!(r.status, 200, "{mode:?}");
        let seen = up.last();
        let names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
        assert!(!names.contains(&"x_tokenward_sub"), "{mode:?}: {names:?}");
        assert_eq!(seen.headers["x-tokenward-sub"], "user-1", "{mode:?}");
        assert_eq!(names.contains(&"x_request_id"), request_id_kept, "{mode:?}");
        // Forged tokens stay refused whatever the mode.
        let r = raw(gw.addr, &request("forged"), b"").await;
        assert_eq!(r.status, 401, "{mode:?}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn forwarded_for_chain_is_believed_only_from_a_trusted_proxy() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let r = raw(
        gw.addr,
        "GET /orders HTTP/1.1\nhost: a\nx-forwarded-for: 198.51.100.23, 203.0.113.7",
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = get(gw.addr, "/public/x", None).await;
    assert_eq!(r.status, 200);
    let lines = gw.log_lines(2).await;
    assert_eq!(lines[0]["client_ip"], "203.0.113.7");
    assert_eq!(lines[0]["peer_ip"], "127.0.0.1");
    assert_eq!(
        lines[0]["x_forwarded_for"],
        serde_json::json!(["198.51.100.23", "203.0.113.7"])
    );
    assert_eq!(lines[1]["x_forwarded_for"], serde_json::json!([]));
    gw.stop().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_never_an_unverified_pass_through() {
    let env = Env::new();
    // A port that was just free: nothing listens there. On 127.0.0.2,
    // where no gateway or upstream of these tests listens: a port freed on
    // 127.0.0.1 was once taken by the gateway itself, which then proxied
    // to itself until it ran out of files.
    let dead = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let mut gw = Running::start(&env, &format!("http://{addr}"), |_| {}).await;
    let r = get(gw.addr, "/orders", Some(&env.legit())).await;
    assert_eq!(r.status, 502);
    // Refusals are unchanged while the upstream is down.
    let r = get(
        gw.addr,
        "/orders",
        Some(&sign(&env.attacker, STORM_KID, &claims())),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = get(gw.addr, "/orders", None).await;
    assert_eq!(r.status, 401);
    let lines = gw.log_lines(3).await;
    assert_complete(&lines[0]);
    assert_eq!(lines[0]["verdict"], "accepted");
    assert_eq!(lines[0]["status"], 502);
    assert!(lines[0]["upstream_status"].is_null());
    assert_eq!(lines[0]["error"], "upstream-unavailable");
    assert_eq!(lines[1]["verdict"], "rejected");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| {
        c.upstream_timeout = Duration::from_millis(300);
    })
    .await;
    let r = get(gw.addr, "/hang", Some(&env.legit())).await;
    assert_eq!(r.status, 504);
    let lines = gw.log_lines(1).await;
    assert_eq!(lines[0]["error"], "upstream-timeout");
    assert!(lines[0]["latency_ms"].as_f64().unwrap() >= 300.0);
    gw.stop().await;
}

#[tokio::test]
async fn oversized_request_heads_get_431_before_anything_else() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| {
        c.max_header_bytes = 16 * 1024;
    })
    .await;
    let big = "a".repeat(20 * 1024);
    let r = raw(
        gw.addr,
        &format!("GET /public/x HTTP/1.1\nhost: a\nx-big: {big}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 431);
    let many: String = (0..150).map(|i| format!("x-h{i}: 1\n")).collect();
    let r = raw(
        gw.addr,
        &format!("GET /public/x HTTP/1.1\nhost: a\n{many}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 431);
    assert_eq!(up.count(), 0);
    gw.stop().await;
    // Refused by the HTTP layer, before any path or token was read: still
    // one log line each.
    let log = gw.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("\"status\":431") && l.contains("malformed-request")),
        "{log}"
    );
}

#[tokio::test]
async fn request_bodies_stream_through_without_buffering() {
    use tokio::io::AsyncWriteExt;
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        env.legit()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let frame = |data: &[u8]| {
        let mut f = format!("{:x}\r\n", data.len()).into_bytes();
        f.extend_from_slice(data);
        f.extend_from_slice(b"\r\n");
        f
    };
    // The first chunk must reach the upstream while the client is still
    // sending: a buffering proxy would hold it until the body ended.
    s.write_all(&frame(&chunk)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), up.chunk.notified())
        .await
        .expect("first chunk forwarded before the body ended");
    for _ in 0..63 {
        s.write_all(&frame(&chunk)).await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
        .await
        .unwrap();
    let r = parse_reply(&buf);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body_len, 64 * 64 * 1024);
    assert!(String::from_utf8_lossy(&r.body).contains("4194304 bytes received"));
    gw.stop().await;
}

#[tokio::test]
async fn a_key_revoked_on_disk_stops_working_without_a_restart() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let token = env.legit();
    assert_eq!(get(gw.addr, "/orders", Some(&token)).await.status, 200);
    // Cached now.
    assert_eq!(get(gw.addr, "/orders", Some(&token)).await.status, 200);

    // A broken edit is refused and the policy in force stays.
    replace(&env.policy_path, "this is not toml [");
    wait_for_metric(gw.admin, "tokenward_gateway_policy_reload_failures_total 1").await;
    assert_eq!(get(gw.addr, "/orders", Some(&token)).await.status, 200);

    // Revoke ent-1: the cached verdict must not survive the reload.
    let revoked = format!("{POLICY}\n[[key]]\nkid = \"ent-1\"\nstatus = \"revoked\"\n");
    replace(&env.policy_path, &revoked);
    wait_for_metric(gw.admin, "tokenward_gateway_policy_reloads_total 1").await;
    let r = get(gw.addr, "/orders", Some(&token)).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 3);

    // A new key published in the key set is picked up too.
    let newkey = tokenward_jose::SigningKey::generate(tokenward_jose::Algorithm::RS256).unwrap();
    let mut set: Value =
        serde_json::from_slice(&std::fs::read(env.dir.path().join("common.json")).unwrap())
            .unwrap();
    let mut jwk = newkey.public_jwk("ent-2");
    jwk["issuer"] = TEMPLATE.into();
    set["keys"].as_array_mut().unwrap().push(jwk);
    let new_token = sign(&newkey, "ent-2", &claims());
    assert_eq!(get(gw.addr, "/orders", Some(&new_token)).await.status, 401);
    replace(
        &env.dir.path().join("common.json"),
        &serde_json::to_string(&set).unwrap(),
    );
    wait_for_metric(gw.admin, "tokenward_gateway_policy_reloads_total 2").await;
    assert_eq!(get(gw.addr, "/orders", Some(&new_token)).await.status, 200);

    let lines = gw.log_lines(6).await;
    assert_eq!(lines[1]["cached"], true);
    assert_eq!(lines[3]["reasons"], serde_json::json!(["key-revoked"]));
    gw.stop().await;
}

/// Replaces a file atomically, as a deployment tool would.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn metrics(admin: std::net::SocketAddr) -> String {
    let r = raw(admin, "GET /metrics HTTP/1.1\nhost: admin", b"").await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

/// Waits until the metric `name value` reaches at least `value`. (An
/// editor's save can be seen half-written, so a count may move by more
/// than one.)
async fn wait_for_metric(admin: std::net::SocketAddr, line: &str) {
    let (name, want) = line.rsplit_once(' ').unwrap();
    let want: f64 = want.parse().unwrap();
    for _ in 0..100 {
        let m = metrics(admin).await;
        let value = m
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok());
        if value.is_some_and(|v| v >= want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "metric line {line:?} never appeared:\n{}",
        metrics(admin).await
    );
}

#[tokio::test]
async fn admin_listener_serves_health_and_metrics() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let r = raw(gw.admin, "GET /healthz HTTP/1.1\nhost: admin", b"").await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).starts_with("ok keys=6"));
    // One token twice, the second served from the cache: minted twice,
    // two calls a second apart gave two tokens and no cache hit.
    let legit = env.legit();
    assert_eq!(get(gw.addr, "/orders", Some(&legit)).await.status, 200);
    assert_eq!(get(gw.addr, "/orders", Some(&legit)).await.status, 200);
    let storm = sign(&env.attacker, STORM_KID, &claims());
    assert_eq!(get(gw.addr, "/orders", Some(&storm)).await.status, 401);
    assert_eq!(get(gw.addr, "/orders", None).await.status, 401);
    // The public listener does not expose the admin endpoints.
    assert_eq!(get(gw.addr, "/metrics", None).await.status, 401);
    gw.log_lines(5).await;
    let m = metrics(gw.admin).await;
    for want in [
        "tokenward_gateway_requests_total{verdict=\"accepted\"} 2",
        "tokenward_gateway_requests_total{verdict=\"rejected\"} 1",
        "tokenward_gateway_requests_total{verdict=\"no-token\"} 2",
        "tokenward_gateway_rejections_total{reason=\"key-denied\"} 1",
        "tokenward_gateway_verdict_cache_hits_total 1",
        "tokenward_gateway_verdict_cache_entries 1",
        "tokenward_gateway_policy_keys 6",
        "tokenward_gateway_request_duration_seconds_count 5",
    ] {
        assert!(m.lines().any(|l| l == want), "{want} not in\n{m}");
    }
    assert_eq!(
        raw(gw.admin, "GET /nope HTTP/1.1\nhost: admin", b"")
            .await
            .status,
        404
    );
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_accepting() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let addr = gw.addr;
    let token = env.legit();
    let slow = tokio::spawn(async move { get(addr, "/slow", Some(&token)).await });
    // Let the request reach the upstream, then ask the gateway to stop.
    for _ in 0..100 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.count(), 1);
    let done = gw.begin_stop();
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request completed");
    done.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    // The log was flushed before run() returned.
    let text = gw.log_text();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("\"path\":\"/slow\""));
}

/// A gateway with TLS on its listener, under a self-signed certificate for
/// `localhost` (returned, with its PEM file, for clients to trust).
async fn start_tls(
    env: &Env,
    up: &Upstream,
) -> (
    rcgen::CertifiedKey<rcgen::KeyPair>,
    std::path::PathBuf,
    Running,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = env.dir.path().join("cert.pem");
    let key_path = env.dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let files = tokenward_gateway::TlsFiles {
        cert: cert_path.clone(),
        key: key_path,
    };
    let gw = Running::start(env, &format!("http://{}", up.addr), |c| c.tls = Some(files)).await;
    (cert, cert_path, gw)
}

#[tokio::test]
async fn tls_listener_with_rustls() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let env = Env::new();
    let up = Upstream::start().await;
    let (cert, _, mut gw) = start_tls(&env, &up).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let req = format!(
        "GET /orders HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        env.legit()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    // rustls reports a missing close_notify as an error after the data.
    let _ = tls.read_to_end(&mut buf).await;
    let r = parse_reply(&buf);
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    // Plain HTTP on the TLS port gets nothing through.
    let _ = tokio::time::timeout(Duration::from_secs(2), raw_plain_probe(gw.addr)).await;
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

/// HTTP/2 over TLS (ALPN `h2`), with curl (Debian's, built with nghttp2)
/// as the client and a test CA made here: the same verdicts as HTTP/1.1,
/// the upstream still reached over HTTP/1.1, with the client's host.
#[tokio::test]
async fn http2_over_tls_with_alpn() {
    let env = Env::new();
    let up = Upstream::start().await;
    let (_, cert_path, mut gw) = start_tls(&env, &up).await;
    let port = gw.addr.port();
    let curl = |token: String| {
        let args = vec![
            "--http2".into(),
            "--cacert".into(),
            cert_path.display().to_string(),
            "--resolve".into(),
            format!("localhost:{port}:127.0.0.1"),
        ];
        curl_orders(
            args,
            token,
            format!("https://localhost:{port}/orders"),
            true,
        )
    };
    assert_eq!(curl(env.legit()).await, "2 200");
    assert_eq!(up.count(), 1);
    assert_eq!(curl("not.a.token".into()).await, "2 401");
    assert_eq!(
        up.count(),
        1,
        "a refused HTTP/2 request reached the upstream"
    );
    gw.stop().await;
    let log = gw.log_text();
    assert_eq!(log.lines().count(), 2);
    assert!(log.contains("\"verdict\":\"accepted\"") && log.contains("\"verdict\":\"rejected\""));
}

/// curl's answer (`http_version http_code`) for GET `url` with the bearer
/// `token` and the extra `args`; when `must_succeed`, curl itself must.
async fn curl_orders(args: Vec<String>, token: String, url: String, must_succeed: bool) -> String {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
            .args(["-w", "%{http_version} %{http_code}"])
            .args(args)
            .arg("-H")
            .arg(format!("authorization: Bearer {token}"))
            .arg(url)
            .output()
            .expect("curl (Debian package)");
        assert!(
            !must_succeed || out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// curl's answer for GET /orders on a plain listener, with HTTP/2 prior
/// knowledge or HTTP/1.1.
async fn curl_plain(port: u16, token: String, h2: bool) -> String {
    let version = if h2 {
        "--http2-prior-knowledge"
    } else {
        "--http1.1"
    };
    let url = format!("http://127.0.0.1:{port}/orders");
    curl_orders(vec![version.into()], token, url, false).await
}

/// h2c with prior knowledge on a plain listener (`--h2c`): the same
/// verdicts as HTTP/1.1, which the same listener still serves; without the
/// option, an HTTP/2 preface gets nothing through.
#[tokio::test]
async fn h2c_prior_knowledge_on_a_plain_listener() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| c.h2c = true).await;
    let port = gw.addr.port();
    assert_eq!(curl_plain(port, env.legit(), true).await, "2 200");
    assert_eq!(up.count(), 1);
    assert_eq!(curl_plain(port, "not.a.token".into(), true).await, "2 401");
    let forged = sign(&env.attacker, "ent-1", &claims());
    assert_eq!(curl_plain(port, forged, true).await, "2 401");
    assert_eq!(up.count(), 1, "a refused h2c request reached the upstream");
    assert_eq!(curl_plain(port, env.legit(), false).await, "1.1 200");
    assert_eq!(up.count(), 2);
    gw.stop().await;
    assert_eq!(gw.log_text().lines().count(), 4);

    let mut plain = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let answer = curl_plain(plain.addr.port(), env.legit(), true).await;
    assert!(!answer.ends_with("200"), "{answer}");
    assert_eq!(up.count(), 2);
    plain.stop().await;
}

async fn raw_plain_probe(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s
        .write_all(b"GET /public/x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
}

#[tokio::test]
async fn bad_configuration_is_reported_before_listening() {
    let env = Env::new();
    let bind = |f: Box<dyn FnOnce(&mut tokenward_gateway::Config)>| {
        let mut c = tokenward_gateway::Config::new(
            env.policy_path.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:9".into(),
        );
        f(&mut c);
        tokenward_gateway::Gateway::bind(c)
    };
    let err = |r: Result<tokenward_gateway::Gateway, tokenward_gateway::Error>| {
        r.err().expect("should fail").to_string()
    };
    let e = err(bind(Box::new(|c| c.upstream = "ftp://up.example".into())).await);
    assert!(e.contains("not supported"), "{e}");
    let e = err(bind(Box::new(|c| {
        c.upstream_ca = vec!["/nonexistent-ca.pem".into()]
    }))
    .await);
    assert!(e.contains("--upstream-ca"), "{e}");
    let e = err(bind(Box::new(|c| c.realm = "a\"b".into())).await);
    assert!(e.contains("--realm"), "{e}");
    // A header map of that many would panic in the `http` crate.
    let e = err(bind(Box::new(|c| c.max_headers = 30_000)).await);
    assert!(e.contains("--max-headers"), "{e}");
    assert!(bind(Box::new(|c| c.max_headers = 1024)).await.is_ok());
    let e = err(bind(Box::new(|c| c.policy = "/nonexistent/policy.toml".into())).await);
    assert!(e.contains("cannot read"), "{e}");
    let e = err(bind(Box::new(|c| {
        c.tls = Some(tokenward_gateway::TlsFiles {
            cert: "/nonexistent.pem".into(),
            key: "/nonexistent.key".into(),
        })
    }))
    .await);
    assert!(e.contains("--tls-cert"), "{e}");
}

/// An HTTPS upstream whose certificate a test CA made here signed for
/// `localhost`: reached with the CA given, refused (502, nothing sent)
/// without it or under another host name. Verification cannot be skipped.
#[tokio::test]
async fn tls_upstream_is_verified_against_the_given_ca() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let env = Env::new();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let ca_path = env.dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.as_ref().pem()).unwrap();

    // The upstream: TLS with the leaf certificate, counting requests.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if head.starts_with(b"POST") {
                    // Refused from the head; the body is never read and
                    // the connection held open.
                    let _ = tls
                        .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    let _ = tls.flush().await;
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    return;
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ntls\n",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let count = || served.load(std::sync::atomic::Ordering::SeqCst);
    let get = |addr| {
        let head = format!(
            "GET /orders HTTP/1.1\nhost: api\nauthorization: Bearer {}",
            env.legit()
        );
        async move { raw(addr, &head, b"").await }
    };

    let ca = ca_path.clone();
    let mut gw = Running::start(&env, &format!("https://localhost:{up_port}"), |c| {
        c.upstream_ca = vec![ca];
    })
    .await;
    let r = get(gw.addr).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"tls\n"[..]));
    assert_eq!(count(), 1);
    // An upstream refusing a large body from its head is heard at once
    // over TLS too, not after the upstream timeout (30 s).
    let size = 32 * 1024 * 1024;
    let post = format!(
        "POST /orders HTTP/1.1\r\nhost: api\r\nauthorization: Bearer {}\r\ncontent-length: {size}\r\n\r\n",
        env.legit()
    );
    let (mut reader, mut writer) = tokio::net::TcpStream::connect(gw.addr)
        .await
        .unwrap()
        .into_split();
    let upload = tokio::spawn(async move {
        writer.write_all(post.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answer))
        .await
        .expect("the refusal arrives within 10 s")
        .unwrap();
    assert_eq!(parse_reply(&answer).status, 413);
    upload.abort();
    assert_eq!(count(), 2);
    gw.stop().await;

    // Without the CA: the certificate is unknown, nothing is sent.
    let mut gw = Running::start(&env, &format!("https://localhost:{up_port}"), |_| {}).await;
    assert_eq!(get(gw.addr).await.status, 502);
    assert_eq!(count(), 2);
    gw.stop().await;

    // The right CA, the wrong name: 127.0.0.1 is not in the certificate.
    let ca = ca_path.clone();
    let mut gw = Running::start(&env, &format!("https://127.0.0.1:{up_port}"), |c| {
        c.upstream_ca = vec![ca];
    })
    .await;
    assert_eq!(get(gw.addr).await.status, 502);
    assert_eq!(count(), 2);
    gw.stop().await;
}

/// RFC 8693 puts the token to exchange in a form field: the guard reads it
/// there too (bounded), and an allowed exchange reaches the upstream with
/// its body intact.
#[tokio::test]
async fn token_exchange_inspects_subject_tokens_in_form_bodies() {
    let env = Env::new();
    let up = Upstream::start().await;
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    let send = |subject: String| {
        let addr = gw.addr;
        let legit = env.legit();
        async move {
            let body = format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={subject}"
            );
            let head = format!(
                "POST {EXCHANGE_PATH} HTTP/1.1\nhost: api\nauthorization: Bearer {legit}\ncontent-type: application/x-www-form-urlencoded\ncontent-length: {}",
                body.len()
            );
            (raw(addr, &head, body.as_bytes()).await, body.len())
        }
    };
    // The bearer is fine; the subject token is the exchange's own output.
    let (r, _) = send(env.as_token()).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 0, "a refused exchange reached the upstream");
    // An allowed subject token: forwarded, every byte of the body with it.
    let (r, len) = send(env.legit()).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().body_len, len);
    // A body past the bound is refused, not forwarded unread.
    let (r, _) = send("x".repeat(70 * 1024)).await;
    assert_eq!(r.status, 413);
    assert_eq!(up.count(), 1);

    let lines = gw.log_lines(3).await;
    assert_eq!(
        lines[0]["reasons"],
        serde_json::json!(["exchange-subject-refused"])
    );
    assert_eq!(lines[1]["verdict"], "accepted");
    assert_eq!(
        lines[2]["reasons"],
        serde_json::json!(["exchange-body-unreadable"])
    );
    gw.stop().await;
}

/// The gateway reads time from one injectable clock: a token valid ten days
/// ago is accepted by a gateway whose clock says it is then, refused by one
/// on the wall clock, and the access log is stamped with the clock's time.
#[tokio::test]
async fn one_injectable_clock_decides_token_times_and_log_stamps() {
    let env = Env::new();
    let up = Upstream::start().await;
    let then = now() - 10 * 86_400;
    let mut old = claims();
    old["iat"] = serde_json::json!(then - 60);
    old["nbf"] = serde_json::json!(then - 60);
    old["exp"] = serde_json::json!(then + 3600);
    let token = sign(&env.enterprise, "ent-1", &old);
    let head = format!("GET /orders HTTP/1.1\nhost: api\nauthorization: Bearer {token}");

    let at_then = std::time::UNIX_EPOCH + Duration::from_secs(then as u64);
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| {
        c.clock = tokenward_gateway::Clock::new(move || at_then);
    })
    .await;
    assert_eq!(raw(gw.addr, &head, b"").await.status, 200);
    let lines = gw.log_lines(1).await;
    let day = time::OffsetDateTime::from_unix_timestamp(then)
        .unwrap()
        .date()
        .to_string();
    assert!(
        lines[0]["time"].as_str().unwrap().starts_with(&day),
        "{}",
        lines[0]
    );
    gw.stop().await;

    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    assert_eq!(raw(gw.addr, &head, b"").await.status, 401);
    gw.stop().await;
    assert_eq!(up.count(), 1);
}
