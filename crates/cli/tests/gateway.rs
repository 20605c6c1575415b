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
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokenward_jose::{Algorithm, SigningKey};

use tokenward_testkit::{
    issuer_for as iss, unix_now as now, CONSUMER, STORM_KID, TEMPLATE, TENANT_A as TENANT,
    TENANT_B as OTHER_TENANT,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    /// Request heads received, lower-cased.
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Upstream {
    fn start() -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = count.clone();
        let h = heads.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let c = c.clone();
                let h = h.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut b).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    h.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).to_ascii_lowercase());
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
        Upstream { addr, count, heads }
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
        let mode = ["--upstream".to_owned(), format!("http://{upstream}")];
        Gateway::start_mode(setup, &mode, extra)
    }

    /// In authz mode for `proxy` (nginx, caddy, envoy).
    fn start_authz(setup: &Setup, proxy: &str) -> Gateway {
        Gateway::start_mode(setup, &["--authz".to_owned(), proxy.to_owned()], &[])
    }

    fn start_mode(setup: &Setup, mode: &[String], extra: &[&str]) -> Gateway {
        let child = Command::new(env!("CARGO_BIN_EXE_tokenward"))
            .arg("gateway")
            .arg("--policy")
            .arg(setup.path("policy.toml"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(mode)
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
        "ftp://api.example",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not supported"), "{err}");
    let (code, err) = run(&[
        &["--policy", policy, "--upstream-ca", "/nonexistent-ca.pem"][..],
        &base,
    ]
    .concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--upstream-ca"), "{err}");
    // One mode at a time: proxying and answering sub-requests exclude each other.
    let (code, err) = run(&[&["--policy", policy, "--authz", "nginx"][..], &base].concat());
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

/// A reverse proxy people already run (nginx, Caddy) as a child process,
/// killed on drop.
struct FrontProxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl FrontProxy {
    fn wait_ready(mut self) -> FrontProxy {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("front proxy exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "front proxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }

    /// nginx with `auth_request` to the gateway, configured as
    /// docs/gateway.md shows.
    fn nginx(dir: &Path, gateway: SocketAddr, upstream: SocketAddr) -> FrontProxy {
        let addr = free_port();
        let d = dir.display();
        let snippet =
            std::fs::read_to_string(repo().join("docs/examples/nginx-authz.conf")).unwrap();
        let snippet = snippet
            .replace("127.0.0.1:8080", &addr.to_string())
            .replace("127.0.0.1:9000", &gateway.to_string())
            .replace("127.0.0.1:3000", &upstream.to_string());
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/nginx-error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\nhttp {{\n access_log off;\n client_body_temp_path {d}/nb;\n proxy_temp_path {d}/np;\n\
             fastcgi_temp_path {d}/nf;\n uwsgi_temp_path {d}/nu;\n scgi_temp_path {d}/ns;\n{snippet}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (Debian package nginx; .ci/run installs it)");
        FrontProxy { child, addr }.wait_ready()
    }

    /// Caddy with `forward_auth` to the gateway, configured as
    /// docs/gateway.md shows.
    fn caddy(dir: &Path, gateway: SocketAddr, upstream: SocketAddr) -> FrontProxy {
        let addr = free_port();
        let snippet =
            std::fs::read_to_string(repo().join("docs/examples/Caddyfile-authz")).unwrap();
        let conf = format!(
            "{{\n admin off\n auto_https off\n}}\n{}",
            snippet
                .replace(":8080", &format!(":{}", addr.port()))
                .replace("127.0.0.1:9000", &gateway.to_string())
                .replace("127.0.0.1:3000", &upstream.to_string())
        );
        std::fs::write(dir.join("Caddyfile"), conf).unwrap();
        let child = Command::new("/usr/bin/caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.join("Caddyfile"))
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy (Debian package caddy; .ci/run installs it)");
        FrontProxy { child, addr }.wait_ready()
    }
}

/// What a front proxy in authz mode must show: a legitimate token arrives
/// with its identity and without the client's spoofed one; forged, missing
/// and query tokens never reach the upstream; public routes carry no
/// identity at all; every decision is in the gateway's access log.
fn authz_through(front: &str) {
    let setup = Setup::new();
    let upstream = Upstream::start();
    let gateway = Gateway::start_authz(&setup, front);
    let dir = tempfile::tempdir().unwrap();
    let proxy = match front {
        "nginx" => FrontProxy::nginx(dir.path(), gateway.addr, upstream.addr),
        _ => FrontProxy::caddy(dir.path(), gateway.addr, upstream.addr),
    };
    let legit = setup.token(
        &setup.enterprise,
        "ent-2024-1",
        setup.claims(TENANT, "alice"),
    );
    // Storm-0558: the consumer key, claiming Contoso.
    let forged = setup.token(
        &setup.consumer,
        "msa-2016-rs256",
        setup.claims(TENANT, "mallory"),
    );
    let heads = || upstream.heads.lock().unwrap().clone();

    // WSGI and CGI read X_Tokenward_Sub as X-Tokenward-Sub. nginx drops
    // underscore headers itself; Caddy forwards them, and the gateway
    // refuses the sub-request. Either way the upstream never sees "admin".
    let (status, _) = request(
        proxy.addr,
        "/orders/1",
        &[
            ("authorization", &bearer(&legit)),
            ("X_Tokenward_Sub", "admin"),
        ],
    );
    let seen = heads();
    assert!(
        seen.iter().all(|h| !h.contains("admin")),
        "{front}: an underscore identity header reached the upstream ({status}): {seen:?}"
    );
    match front {
        "nginx" => assert_eq!(status, 200, "{front}: nginx drops the header"),
        _ => assert_eq!(status, 403, "{front}: the gateway refuses it"),
    }
    upstream.heads.lock().unwrap().clear();

    let (status, body) = request(
        proxy.addr,
        "/orders/1?x=1",
        &[
            ("authorization", &bearer(&legit)),
            ("x-tokenward-sub", "admin"),
        ],
    );
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "{front}: legitimate token; upstream saw {:?}",
        heads()
    );
    let seen = heads();
    assert_eq!(seen.len(), 1, "{front}");
    assert!(
        seen[0].starts_with("get /orders/1?x=1 "),
        "{front}: {}",
        seen[0]
    );
    assert!(
        seen[0].contains("x-tokenward-sub: alice\r\n"),
        "{front}: {}",
        seen[0]
    );
    assert!(
        seen[0].contains("x-tokenward-tid: "),
        "{front}: {}",
        seen[0]
    );
    assert!(
        !seen[0].contains("admin"),
        "{front}: the client's spoofed identity reached the upstream: {}",
        seen[0]
    );

    for (what, headers, path) in [
        (
            "forged token",
            vec![("authorization", bearer(&forged))],
            "/orders/1",
        ),
        ("no token", vec![], "/orders/1"),
        ("token in the query", vec![], "/orders/1?%61ccess_token=abc"),
        (
            "spoofed identity alone",
            vec![("x-tokenward-sub".to_owned(), "admin".to_owned())]
                .into_iter()
                .map(|(a, b)| (a.leak() as &str, b))
                .collect(),
            "/orders/1",
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, _) = request(proxy.addr, path, &headers);
        assert!(status == 401 || status == 403, "{front}: {what}: {status}");
        assert_eq!(heads().len(), 1, "{front}: {what} reached the upstream");
    }

    // The refusal carries the RFC 6750 challenge through the proxy.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /orders/1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let answer = answer.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{front}: {answer}");
    assert!(
        answer.contains("www-authenticate: bearer realm=\"tokenward\""),
        "{front}: {answer}"
    );

    // A public route: passes, without any identity, spoofed or not.
    let (status, _) = request(proxy.addr, "/healthz", &[("x-tokenward-sub", "admin")]);
    assert_eq!(status, 200, "{front}: public route");
    let seen = heads();
    assert_eq!(seen.len(), 2);
    // No identity: absent (nginx) or empty (Caddy copies every header of
    // the answer; the gateway sends them empty rather than let Caddy 2.6
    // send its placeholder text).
    for line in seen[1].lines().filter(|l| l.starts_with("x-tokenward-")) {
        assert!(
            line.ends_with(':') || line.ends_with(": "),
            "{front}: {line:?}"
        );
    }
    assert!(!seen[1].contains("admin"), "{front}: {}", seen[1]);

    // The gateway logged every decision with the original path. Lines are
    // written as requests finish, so wait for the last request's (the
    // public route), not for a count: under load a count was reached
    // before that line was written.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines = log_lines(&setup.path("access.jsonl"));
        let last_written = lines
            .iter()
            .any(|l| l["path"] == "/healthz" && l["verdict"] == "not-required");
        if last_written || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let verdicts: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["path"].as_str().unwrap(), l["verdict"].as_str().unwrap()))
        .collect();
    assert!(
        verdicts.contains(&("/orders/1", "accepted")),
        "{front}: {verdicts:?}"
    );
    assert!(
        verdicts.contains(&("/orders/1", "rejected")),
        "{front}: {verdicts:?}"
    );
    assert!(
        verdicts.contains(&("/healthz", "not-required")),
        "{front}: {verdicts:?}"
    );
    let rejected = lines.iter().find(|l| l["verdict"] == "rejected").unwrap();
    assert_eq!(
        rejected["kid"], "msa-2016-rs256",
        "{front}: the forged key is named in the log"
    );
    drop(proxy);
}

#[test]
fn authz_mode_behind_real_nginx_auth_request() {
    authz_through("nginx");
}

#[test]
fn authz_mode_behind_real_caddy_forward_auth() {
    authz_through("caddy");
}

/// Envoy is not packaged in Debian, so this is a request-shape test, not an
/// Envoy run: requests shaped as Envoy's `ext_authz` HTTP service sends
/// them (the original method and path, the allowed headers, `x-envoy-*`),
/// per its documentation. Headers another proxy would set carry no weight.
#[test]
fn authz_mode_for_envoy_request_shape() {
    let setup = Setup::new();
    let gateway = Gateway::start_authz(&setup, "envoy");
    let legit = setup.token(
        &setup.enterprise,
        "ent-2024-1",
        setup.claims(TENANT, "alice"),
    );
    let raw = |head: String| -> String {
        let mut s = TcpStream::connect(gateway.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf.to_ascii_lowercase()
    };
    let ok = raw(format!(
        "GET /orders/1 HTTP/1.1\r\nhost: orders.contoso.example\r\nauthorization: Bearer {legit}\r\nx-envoy-expected-rq-timeout-ms: 200\r\nx-forwarded-proto: https\r\nx-tokenward-sub: admin\r\nconnection: close\r\n\r\n"
    ));
    assert!(ok.starts_with("http/1.1 200"), "{ok}");
    assert!(
        ok.contains("x-tokenward-sub: alice\r\n") && !ok.contains("admin"),
        "{ok}"
    );
    // Without a token, 401 with the RFC 6750 challenge, which Envoy relays.
    let denied = raw("GET /orders/1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into());
    assert!(denied.starts_with("http/1.1 401"), "{denied}");
    assert!(
        denied.contains("www-authenticate: bearer realm="),
        "{denied}"
    );
    // A client's X-Original-URI pointing at a public route is not believed.
    let spoofed = raw("GET /orders/1 HTTP/1.1\r\nhost: x\r\nx-original-uri: /healthz\r\nx-original-method: GET\r\nconnection: close\r\n\r\n".into());
    assert!(spoofed.starts_with("http/1.1 401"), "{spoofed}");
    let public = raw("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into());
    assert!(public.starts_with("http/1.1 200"), "{public}");
    // Envoy forwards the client's request whatever the answer's headers
    // say: an identity look-alike with underscores refuses it, valid token
    // or not.
    let underscored = raw(format!(
        "GET /orders/1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {legit}\r\nx_tokenward_sub: admin\r\nconnection: close\r\n\r\n"
    ));
    assert!(underscored.starts_with("http/1.1 403"), "{underscored}");
}

/// nginx's auth sub-request without the X-Original-* headers (a
/// misconfigured location) is refused with 403, never judged as the
/// auth location's own path.
#[test]
fn authz_mode_refuses_sub_requests_without_the_original_request() {
    let setup = Setup::new();
    let gateway = Gateway::start_authz(&setup, "nginx");
    let (status, _) = request(gateway.addr, "/healthz", &[]);
    assert_eq!(status, 403);
    let (status, _) = request(
        gateway.addr,
        "/_tokenward",
        &[
            ("x-original-uri", "http://evil.example/healthz"),
            ("x-original-method", "GET"),
        ],
    );
    assert_eq!(status, 403, "an absolute URI is not a path");
    let (status, _) = request(
        gateway.addr,
        "/_tokenward",
        &[("x-original-uri", "/healthz"), ("x-original-method", "GET")],
    );
    assert_eq!(status, 200);
}
