//! `tokenward probe` against real verifiers it did not write: small PyJWT
//! services on loopback (`tests/probe/services.py`), one configured
//! correctly and the others each with one well-known mistake. The probe
//! must name exactly the mistake's classes and nothing else.
//!
//! The services need Python with PyJWT and cryptography: `.ci/run`
//! installs them into `.ci/venv` (`tests/requirements.txt`);
//! `TOKENWARD_PYTHON` names another interpreter.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use tokenward_jose::{encode_b64url, Algorithm, SigningKey};

use tokenward_testkit::{unix_now as now, CONSUMER, TEMPLATE, TENANT_A as TENANT};
const AUDIENCE: &str = "api://contoso-mail";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TOKENWARD_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".ci/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run .ci/run (it installs PyJWT for these tests) or set TOKENWARD_PYTHON",
        venv.display()
    );
    venv
}

fn pem_file(path: &Path, tag: &str, der: Vec<u8>) {
    std::fs::write(path, pem::encode(&pem::Pem::new(tag, der))).unwrap();
}

/// Keys and tokens shaped like Entra ID's: one `common`-style key set with
/// an enterprise key (`{tenantid}` issuer) and a consumer key side by side.
struct World {
    dir: tempfile::TempDir,
    enterprise: SigningKey,
    hmac_secret: Vec<u8>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let enterprise = SigningKey::generate(Algorithm::RS256).unwrap();
        let consumer = SigningKey::generate(Algorithm::RS256).unwrap();
        let keyed = |key: &SigningKey, kid: &str, issuer: &str| {
            let mut jwk = key.public_jwk(kid);
            jwk["alg"] = json!("RS256");
            jwk["issuer"] = json!(issuer);
            jwk
        };
        let set = json!({"keys": [
            keyed(&enterprise, "ent-1", TEMPLATE),
            keyed(&consumer, "msa-1", &TEMPLATE.replace("{tenantid}", CONSUMER)),
        ]});
        let w = World {
            dir,
            enterprise,
            hmac_secret: b"a-shared-secret-of-32-bytes-len!".to_vec(),
        };
        std::fs::write(w.path("jwks.json"), set.to_string()).unwrap();
        pem_file(
            &w.path("ent.pem"),
            "PRIVATE KEY",
            w.enterprise.to_pkcs8().unwrap(),
        );
        pem_file(
            &w.path("msa.pem"),
            "PRIVATE KEY",
            consumer.to_pkcs8().unwrap(),
        );
        pem_file(
            &w.path("ent-public.pem"),
            "PUBLIC KEY",
            w.enterprise.public_spki_der().unwrap(),
        );
        std::fs::create_dir(w.path("hs")).unwrap();
        std::fs::write(w.path("hs/k1"), &w.hmac_secret).unwrap();
        std::fs::write(
            w.path("hs.jwk"),
            json!({"kty": "oct", "kid": "k1", "k": encode_b64url(&w.hmac_secret)}).to_string(),
        )
        .unwrap();
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn claims(&self) -> Value {
        let n = now();
        json!({"iss": TEMPLATE.replace("{tenantid}", TENANT), "tid": TENANT, "aud": AUDIENCE,
               "sub": "alice", "iat": n - 60, "nbf": n - 60, "exp": n + 3600})
    }

    fn rs_token(&self) -> String {
        self.enterprise
            .sign_token(
                &json!({"alg": "RS256", "kid": "ent-1", "typ": "JWT"}),
                &self.claims(),
            )
            .unwrap()
    }

    fn hs_token(&self) -> String {
        SigningKey::from_pkcs8(Algorithm::HS256, &self.hmac_secret)
            .unwrap()
            .sign_token(
                &json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}),
                &self.claims(),
            )
            .unwrap()
    }
}

struct Service(Child, u16);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(world: &World, mode: &str) -> Service {
    start_with(world, mode, &[])
}

fn start_with(world: &World, mode: &str, extra: &[&str]) -> Service {
    let mut child = Command::new(python())
        .arg(repo().join("tests/probe/services.py"))
        .arg(mode)
        .arg("--jwks")
        .arg(world.path("jwks.json"))
        .args(["--audience", AUDIENCE, "--tenant", TENANT])
        .arg("--public-pem")
        .arg(world.path("ent-public.pem"))
        .arg("--hs-dir")
        .arg(world.path("hs"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("{mode}: service did not start: {line:?}"))
        .parse()
        .unwrap();
    Service(child, port)
}

/// Runs the probe; returns (exit code, JSON report).
fn probe(world: &World, service: &Service, token: &str, extra: &[&str]) -> (i32, Value) {
    std::fs::write(world.path("token.jwt"), token).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .arg("probe")
        .arg(format!("http://127.0.0.1:{}/api/mail", service.1))
        .arg("--token-file")
        .arg(world.path("token.jwt"))
        .args(["--json", "--quiet", "--rate", "500", "--timeout", "10"])
        .args(extra)
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); exit {code}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn accepted(report: &Value) -> BTreeSet<String> {
    report["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Every class that ran got a clear verdict.
fn assert_decisive(mode: &str, report: &Value) {
    for class in report["classes"].as_array().unwrap() {
        assert_ne!(
            class["verdict"], "inconclusive",
            "{mode}: {class}\n{report:#}"
        );
    }
}

fn rs_options(world: &World) -> Vec<String> {
    [
        ("--jwks", "jwks.json"),
        ("--public-key", "ent-public.pem"),
        ("--key", "ent.pem"),
        ("--foreign-key", "msa.pem"),
    ]
    .iter()
    .flat_map(|(flag, file)| [flag.to_string(), world.path(file).display().to_string()])
    .collect()
}

fn check(world: &World, mode: &str, hmac: bool, expected: &[&str]) -> Value {
    let service = start(world, mode);
    let (token, options) = if hmac {
        let key = world.path("hs.jwk").display().to_string();
        (world.hs_token(), vec!["--key".to_owned(), key])
    } else {
        (world.rs_token(), rs_options(world))
    };
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let (code, report) = probe(world, &service, &token, &options);
    assert_eq!(accepted(&report), set(expected), "{mode}\n{report:#}");
    assert_eq!(code, if expected.is_empty() { 0 } else { 1 }, "{mode}");
    assert_decisive(mode, &report);
    report
}

const EVERY_FORGED_CLASS: [&str; 18] = [
    "alg-none",
    "signature-stripped",
    "signature-invalid",
    "claims-tampered",
    "hs-public-key",
    "empty-hmac-key",
    "header-jwk",
    "header-jku",
    "header-x5u",
    "kid-traversal",
    "kid-injection",
    "psychic-signature",
    "expired",
    "not-yet-valid",
    "wrong-audience",
    "wrong-issuer",
    "wrong-tenant",
    "cross-issuer-key",
];

#[test]
fn a_correct_pyjwt_service_accepts_no_forged_token() {
    let world = World::new();
    let report = check(&world, "strict", false, &[]);
    // Every class ran: the options cover them all.
    assert_eq!(report["skipped"], json!([]), "{report:#}");
    assert_eq!(
        report["baseline"]["resigned_with_key"]["verdict"],
        "accepted"
    );
    assert_eq!(
        report["baseline"]["legitimate_after"]["verdict"],
        "accepted"
    );
    // The secret material never reaches the report.
    let text = report.to_string();
    assert!(!text.contains(&world.rs_token()));
    assert!(!text.contains(world.rs_token().split('.').nth(2).unwrap()));
}

#[test]
fn each_misconfigured_service_is_named_by_its_class_alone() {
    let world = World::new();
    check(&world, "none-any-case", false, &["alg-none"]);
    check(&world, "alg-confusion", false, &["hs-public-key"]);
    check(&world, "no-exp", false, &["expired"]);
    check(&world, "no-aud", false, &["wrong-audience"]);
    check(&world, "header-jwk", false, &["header-jwk"]);
    check(&world, "jku", false, &["header-jku"]);
    check(&world, "kid-path", true, &["kid-traversal"]);
    check(&world, "kid-sql", true, &["kid-injection"]);
    check(
        &world,
        "kid-shell",
        true,
        &["kid-injection", "kid-traversal"],
    );
}

/// Storm-0558: any key of the shared set verifies, only the `iss` string is
/// compared, so a consumer key signs for the enterprise tenant.
#[test]
fn the_storm_0558_service_accepts_only_the_cross_issuer_key() {
    let world = World::new();
    let report = check(&world, "storm-0558", false, &["cross-issuer-key"]);
    let attempt = report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["class"] == "cross-issuer-key")
        .unwrap();
    assert_eq!(attempt["name"], "msa-1", "{attempt}");
    // Without the foreign key the class is skipped, by name of the option.
    let service = start(&world, "storm-0558");
    let (code, report) = probe(&world, &service, &world.rs_token(), &[]);
    assert_eq!(code, 0, "{report:#}");
    let skipped = report["skipped"].as_array().unwrap();
    assert!(skipped.iter().any(|s| s["class"] == "cross-issuer-key"
        && s["needs"].as_str().unwrap().contains("--foreign-key")));
}

/// A decode-only service accepts everything; the broken-signature baseline
/// itself shows `signature-invalid`.
#[test]
fn a_decode_only_service_accepts_every_forged_class() {
    let world = World::new();
    let report = check(&world, "no-verify", false, &EVERY_FORGED_CLASS);
    assert_eq!(
        report["baseline"]["broken_signature"]["verdict"],
        "accepted"
    );
    assert_eq!(report["baseline"]["no_token"]["verdict"], "refused");
}

#[test]
fn a_refused_legitimate_token_stops_the_probe_with_exit_2() {
    let world = World::new();
    let service = start(&world, "strict");
    let mut claims = world.claims();
    claims["aud"] = json!("api://someone-else");
    let token = world
        .enterprise
        .sign_token(&json!({"alg": "RS256", "kid": "ent-1"}), &claims)
        .unwrap();
    let (code, stderr) = probe_raw(&world, &service, &token, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("legitimate token was refused"), "{stderr}");
}

/// The request budget bounds what is sent; classes left out say so.
#[test]
fn the_request_budget_is_never_exceeded() {
    let world = World::new();
    let service = start(&world, "strict");
    let (code, report) = probe(
        &world,
        &service,
        &world.rs_token(),
        &["--max-requests", "12"],
    );
    assert_eq!(report["requests"], 12, "{report:#}");
    assert_eq!(code, 0);
    let skipped = report["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["needs"] == "a larger --max-requests"),
        "{report:#}"
    );
}

/// jwt_tool #87: a site that refuses with "200 OK" and an error page. The
/// status says nothing; the body decides, and the canary agrees.
#[test]
fn refusals_served_as_200_are_judged_by_the_body() {
    let world = World::new();
    let service = start_with(&world, "none-any-case", &["--refuse-with-200"]);
    let options = rs_options(&world);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let (code, report) = probe(&world, &service, &world.rs_token(), &options);
    assert_eq!(accepted(&report), set(&["alg-none"]), "{report:#}");
    assert_eq!(code, 1);
    assert_eq!(report["baseline"]["no_token"]["status"], 200);
    assert_eq!(report["baseline"]["no_token"]["verdict"], "refused");
    assert_decisive("refuse-with-200", &report);
    let mut with_canary = options.clone();
    with_canary.extend(["--canary", "Sent Items"]);
    let (_, report) = probe(&world, &service, &world.rs_token(), &with_canary);
    assert_eq!(accepted(&report), set(&["alg-none"]), "{report:#}");
    // A canary the legitimate answer lacks is a usage problem, not a guess.
    let (code, _) = probe_raw(
        &world,
        &service,
        &world.rs_token(),
        &["--canary", "not on the page"],
    );
    assert_eq!(code, 2);
}

/// The token can travel in a cookie; the no-token request then sends no
/// cookie at all.
#[test]
fn the_token_can_be_placed_in_a_cookie() {
    let world = World::new();
    let service = start(&world, "header-jwk");
    let (code, report) = probe(
        &world,
        &service,
        &world.rs_token(),
        &["--header", "Cookie: session=", "-H", "Cookie: theme=dark"],
    );
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["target"]["token_header"], "Cookie");
    assert_eq!(report["baseline"]["legitimate"][0]["status"], 200);
    assert_eq!(report["baseline"]["no_token"]["status"], 401);
    assert_eq!(accepted(&report), set(&["header-jwk"]));
}

fn probe_raw(world: &World, service: &Service, token: &str, extra: &[&str]) -> (i32, String) {
    std::fs::write(world.path("token.jwt"), token).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .arg("probe")
        .arg(format!("http://127.0.0.1:{}/api/mail", service.1))
        .arg("--token-file")
        .arg(world.path("token.jwt"))
        .args(["--quiet", "--rate", "500"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
