//! `tokenward gateway` as a process: start-up, traffic, the access log,
//! SIGTERM with a request in flight, and configuration errors.
//!
//! `TOKENWARD_WRITE_GATEWAY_FIXTURE=1 cargo test -p tokenward --test gateway`
//! rewrites `tests/fixtures/gateway/access.jsonl` from a real run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokenward_jose::{Algorithm, SigningKey};

const TENANT: &str = "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91";
const OTHER_TENANT: &str = "7d2e9b14-0c3a-4f5e-8b61-9a0d2c4e6f83";
const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const STORM_KID: &str = "1LTMzakihiRla_8z2BEJVXeWMqo";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn iss(tenant: &str) -> String {
    TEMPLATE.replace("{tenantid}", tenant)
}

struct Setup {
    dir: tempfile::TempDir,
    enterprise: SigningKey,
    consumer: SigningKey,
    exchange: SigningKey,
    attacker: SigningKey,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let rs = || SigningKey::generate(Algorithm::RS256).unwrap();
        let s = Setup {
            dir,
            enterprise: rs(),
            consumer: rs(),
            exchange: rs(),
            attacker: rs(),
        };
        let with_issuer = |mut jwk: Value, iss: &str| {
            jwk["issuer"] = json!(iss);
            jwk
        };
        let common = json!({"keys": [
            with_issuer(s.enterprise.public_jwk("ent-2024-1"), TEMPLATE),
            with_issuer(s.consumer.public_jwk("msa-2016-rs256"), &iss(CONSUMER)),
        ]});
        std::fs::write(s.path("common.json"), common.to_string()).unwrap();
        let owa = json!({"keys": [s.exchange.public_jwk("owa-1")]});
        std::fs::write(s.path("owa.json"), owa.to_string()).unwrap();
        std::fs::write(
            s.path("policy.toml"),
            format!(
                r#"
[[issuer]]
issuer = "{TEMPLATE}"
tenants = ["{TENANT}"]
audiences = ["api://contoso-orders"]
algorithms = ["RS256"]
jwks = "common.json"

[[issuer]]
issuer = "https://owa.contoso.example"
audiences = ["api://contoso-orders"]
algorithms = ["RS256"]
jwks = "owa.json"

[[route]]
path = "/healthz"
auth = "none"

[[route]]
path = "/owa/service.svc/GetAccessTokenForResource"
token_exchange = true
refuse_subject_issuers = ["https://owa.contoso.example"]
"#
            ),
        )
        .unwrap();
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn token(&self, key: &SigningKey, kid: &str, claims: Value) -> String {
        key.sign_token(&json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), &claims)
            .unwrap()
    }

    fn claims(&self, tenant: &str, sub: &str) -> Value {
        let n = now();
        json!({"iss": iss(tenant), "tid": tenant, "aud": "api://contoso-orders",
               "sub": sub, "oid": format!("oid-{sub}"), "azp": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
               "uti": format!("uti-{sub}"), "sid": format!("sid-{sub}"),
               "iat": n - 300, "nbf": n - 300, "exp": n + 3300})
    }
}

/// A minimal HTTP/1.1 upstream on a thread: counts requests, answers 200
/// (after 500 ms for `/slow`), closes each connection.
struct Upstream {
    addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut b).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                    if head.starts_with(b"GET /slow ") {
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n",
                    );
                });
            }
        });
        Upstream { addr, count }
    }
}

/// The gateway process.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Gateway {
    fn start(setup: &Setup, upstream: SocketAddr, extra: &[&str]) -> Gateway {
        let child = Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .arg("gateway")
            .arg("--policy")
            .arg(setup.path("policy.toml"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--upstream")
            .arg(format!("http://{upstream}"))
            .arg("--access-log")
            .arg(setup.path("access.jsonl"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Owned by a guard at once: a panic while reading the start-up
        // line must not leave the process running.
        let mut child = KillOnDrop(Some(child));
        let (tx, rx) = mpsc::channel();
        let err = child.0.as_mut().unwrap().stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Policy warnings come first; the start-up line names the ports.
        let line = loop {
            let l = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("start-up line on stderr");
            if l.contains("listening on") {
                break l;
            }
        };
        let between = |from: &str, to: char| -> SocketAddr {
            let rest = &line[line.find(from).unwrap_or_else(|| panic!("{line}")) + from.len()..];
            rest[..rest.find(to).unwrap_or(rest.len())].parse().unwrap()
        };
        let addr = between("listening on http://", ',');
        let admin = between("admin on http://", ' ');
        Gateway {
            child: child.0.take().unwrap(),
            addr,
            admin,
            stderr: rx,
        }
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().expect("exited, not killed");
            }
            assert!(Instant::now() < deadline, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection; returns (status, body).
fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: orders.contoso.example\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn serves_logs_and_stops_cleanly_on_sigterm_with_a_request_in_flight() {
    let setup = Setup::new();
    let up = Upstream::start();
    let mut gw = Gateway::start(&setup, up.addr, &[]);

    let legit = setup.token(
        &setup.enterprise,
        "ent-2024-1",
        setup.claims(TENANT, "alice"),
    );
    assert_eq!(
        request(gw.addr, "/orders", &[("authorization", &bearer(&legit))]).0,
        200
    );
    let forged = setup.token(
        &setup.consumer,
        "msa-2016-rs256",
        setup.claims(TENANT, "alice"),
    );
    assert_eq!(
        request(gw.addr, "/orders", &[("authorization", &bearer(&forged))]).0,
        401
    );
    assert_eq!(up.count.load(Ordering::SeqCst), 1);
    let (status, body) = request(gw.admin, "/healthz", &[]);
    assert_eq!(status, 200);
    assert!(body.starts_with("ok"), "{body}");
    let (status, body) = request(gw.admin, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(
        body.contains("tokenward_gateway_rejections_total{reason=\"key-out-of-scope\"} 1"),
        "{body}"
    );

    // A slow request is in flight when SIGTERM arrives: it completes.
    let addr = gw.addr;
    let slow =
        std::thread::spawn(move || request(addr, "/slow", &[("authorization", &bearer(&legit))]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.count.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "slow request never reached upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.sigterm();
    assert_eq!(slow.join().unwrap().0, 200);
    assert_eq!(gw.wait(), 0);
    let said: Vec<String> = gw.stderr.try_iter().collect();
    assert!(said.iter().any(|l| l.contains("stopped")), "{said:?}");

    let lines = log_lines(&setup.path("access.jsonl"));
    assert_eq!(lines.len(), 3, "every request logged and flushed at exit");
    assert_eq!(lines[1]["verdict"], "rejected");
    assert_eq!(lines[1]["kid"], "msa-2016-rs256");
    assert_eq!(lines[1]["reasons"], json!(["key-out-of-scope"]));
    assert_eq!(lines[2]["path"], "/slow");
    assert_eq!(lines[2]["upstream_status"], 200);
}

#[test]
fn configuration_errors_exit_2_before_listening() {
    let setup = Setup::new();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .arg("gateway")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let policy = setup.path("policy.toml");
    let policy = policy.to_str().unwrap();
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
    ];
    let (code, err) = run(&[&["--policy", "/nonexistent.toml"][..], &base].concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    let (code, err) = run(&[
        &["--policy", policy, "--trusted-proxy", "10.0.0.0/99"][..],
        &base,
    ]
    .concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--trusted-proxy"), "{err}");
    let (code, err) = run(&[&["--policy", policy, "--tls-cert", policy][..], &base].concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-key"), "{err}");
    let (code, err) = run(&[
        "--policy",
        policy,
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "https://api.example",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&[&["--policy", policy, "--upstream-timeout", "0"][..], &base].concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--upstream-timeout"), "{err}");
}

/// The committed sample log (`tests/fixtures/gateway/access.jsonl`) comes
/// from a run like this one, and must keep the format of a fresh run.
#[test]
fn sample_access_log_matches_a_real_run() {
    let setup = Setup::new();
    let up = Upstream::start();
    let gw = Gateway::start(&setup, up.addr, &["--trusted-proxy", "127.0.0.0/8"]);
    let from = |ip: &'static str| ("x-forwarded-for", ip);
    let alice = setup.token(
        &setup.enterprise,
        "ent-2024-1",
        setup.claims(TENANT, "alice"),
    );
    let bob = setup.token(&setup.enterprise, "ent-2024-1", setup.claims(TENANT, "bob"));
    let auth_alice = bearer(&alice);
    let auth_bob = bearer(&bob);
    // Legitimate use, the second one from the verdict cache.
    let mut sent = vec![
        request(
            gw.addr,
            "/orders",
            &[("authorization", &auth_alice), from("198.51.100.10")],
        ),
        request(
            gw.addr,
            "/orders/42",
            &[("authorization", &auth_alice), from("198.51.100.10")],
        ),
        request(
            gw.addr,
            "/orders",
            &[("authorization", &auth_bob), from("198.51.100.11")],
        ),
        // Public route, no token.
        request(gw.addr, "/healthz", &[from("198.51.100.12")]),
        // No token on a protected route.
        request(gw.addr, "/orders", &[from("198.51.100.12")]),
    ];
    // Storm-0558: consumer key signing for the enterprise tenant, from one
    // client, many times (what tw-gateway-rejected-burst looks for).
    for i in 0..6 {
        let t = setup.token(
            &setup.consumer,
            "msa-2016-rs256",
            setup.claims(TENANT, &format!("victim-{i}")),
        );
        sent.push(request(
            gw.addr,
            "/api/v2.0/me/messages",
            &[("authorization", &bearer(&t)), from("203.0.113.50")],
        ));
    }
    // The Storm-0558 kid itself, and a tenant that is not allowed.
    let storm = setup.token(&setup.attacker, STORM_KID, setup.claims(TENANT, "alice"));
    sent.push(request(
        gw.addr,
        "/orders",
        &[("authorization", &bearer(&storm)), from("203.0.113.51")],
    ));
    let other = setup.token(
        &setup.enterprise,
        "ent-2024-1",
        setup.claims(OTHER_TENANT, "mallory"),
    );
    sent.push(request(
        gw.addr,
        "/orders",
        &[("authorization", &bearer(&other)), from("203.0.113.52")],
    ));
    // The exchange refusing its own output as a subject token.
    let n = now();
    let owa = setup.token(
        &setup.exchange,
        "owa-1",
        json!({"iss": "https://owa.contoso.example", "aud": "api://contoso-orders", "sub": "alice",
               "appid": "00000002-0000-0ff1-ce00-000000000000", "jti": "owa-jti-1", "iat": n, "exp": n + 600}),
    );
    sent.push(request(
        gw.addr,
        "/owa/service.svc/GetAccessTokenForResource",
        &[("authorization", &bearer(&owa)), from("203.0.113.53")],
    ));
    // Garbage.
    sent.push(request(
        gw.addr,
        "/orders",
        &[
            ("authorization", "Bearer eyJhbGciOiJub25lIn0.e30."),
            from("203.0.113.54"),
        ],
    ));
    let statuses: Vec<u16> = sent.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]
    );
    assert_eq!(
        up.count.load(Ordering::SeqCst),
        4,
        "only legitimate and public requests arrive"
    );

    let log = setup.path("access.jsonl");
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_lines(&log).len() < statuses.len() {
        assert!(Instant::now() < deadline, "log lines missing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let fresh = log_lines(&log);
    let fixture = repo().join("tests/fixtures/gateway/access.jsonl");
    if std::env::var_os("TOKENWARD_WRITE_GATEWAY_FIXTURE").is_some() {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        std::fs::copy(&log, &fixture).unwrap();
    }
    assert_eq!(fresh[0]["client_ip"], "198.51.100.10");
    assert_eq!(fresh[1]["cached"], true);
    assert_eq!(fresh[5]["reasons"], json!(["key-out-of-scope"]));
    assert_eq!(fresh[11]["reasons"][0], "key-denied");
    assert_eq!(fresh[13]["reasons"], json!(["exchange-subject-refused"]));

    let committed = log_lines(&fixture);
    assert_eq!(
        committed.len(),
        fresh.len(),
        "fixture out of date: regenerate it"
    );
    for (c, f) in committed.iter().zip(&fresh) {
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(c), keys(f), "fixture format differs from a real run");
        for field in [
            "verdict",
            "reasons",
            "kid",
            "status",
            "path",
            "client_ip",
            "iss",
            "tid",
        ] {
            assert_eq!(c[field], f[field], "{field}");
        }
    }
}

/// `tokenward probe` against the gateway with every option that enables a
/// class, including the consumer key of the same `common` set: nothing
/// forged gets through, and the probe shows it reached every class.
#[test]
fn probe_finds_no_forged_token_the_gateway_accepts() {
    let setup = Setup::new();
    let upstream = Upstream::start();
    let gateway = Gateway::start(&setup, upstream.addr, &[]);
    let pem = |name: &str, key: &SigningKey| {
        std::fs::write(
            setup.path(name),
            pem::encode(&pem::Pem::new("PRIVATE KEY", key.to_pkcs8().unwrap())),
        )
        .unwrap();
    };
    pem("ent.pem", &setup.enterprise);
    pem("msa.pem", &setup.consumer);
    let token = setup.token(
        &setup.enterprise,
        "ent-2024-1",
        setup.claims(TENANT, "alice"),
    );
    std::fs::write(setup.path("token.jwt"), token).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .arg("probe")
        .arg(format!("http://{}/orders/1", gateway.addr))
        .arg("--token-file")
        .arg(setup.path("token.jwt"))
        .arg("--jwks")
        .arg(setup.path("common.json"))
        .arg("--key")
        .arg(setup.path("ent.pem"))
        .arg("--foreign-key")
        .arg(setup.path("msa.pem"))
        .args(["--json", "--quiet", "--rate", "500"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["accepted"], json!([]));
    assert_eq!(report["skipped"], json!([]), "{report:#}");
    for class in report["classes"].as_array().unwrap() {
        assert_eq!(class["verdict"], "refused", "{class}");
    }
    assert_eq!(
        report["baseline"]["resigned_with_key"]["verdict"],
        "accepted"
    );
    // Only the baseline's legitimate requests (and the re-signed control)
    // reached the upstream.
    assert_eq!(upstream.count.load(Ordering::SeqCst), 4, "{report:#}");
}
