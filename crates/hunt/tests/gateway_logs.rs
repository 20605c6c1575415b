//! The `tokenward gateway` access log as a hunt input: the real sample of a
//! gateway run (tests/fixtures/gateway/access.jsonl) reads as the named
//! format with its fields normalised, `tw-ioc-key` fires on its Storm-0558
//! kid, and `tw-gateway-rejected-burst` fires on a burst of refused tokens
//! from one client and stays quiet on scattered ones.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde_json::{json, Value};
use tokenward_hunt::timefmt::{parse_timestamp, rfc3339};
use tokenward_hunt::{
    read_events, run, EventKind, Finding, Format, HuntConfig, Options, Report, Status,
};

const BURST: &str = "tw-gateway-rejected-burst";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/gateway/access.jsonl")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tw-gateway-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn hunt(inputs: Vec<PathBuf>, options: Options) -> Report {
    let cfg = HuntConfig {
        inputs,
        options,
        ..Default::default()
    };
    run(&cfg, Arc::new(AtomicU64::new(0))).expect("hunt runs")
}

fn hits<'a>(r: &'a Report, id: &str) -> Vec<&'a Finding> {
    r.findings
        .as_slice()
        .unwrap()
        .iter()
        .filter(|f| f.rule_id == id)
        .collect()
}

fn status<'a>(r: &'a Report, id: &str) -> &'a tokenward_hunt::Coverage {
    r.detections.iter().find(|d| d.id == id).unwrap()
}

/// One access-log line with every field of the contract (docs/gateway.md).
fn line(time: &str, ip: &str, verdict: &str, reasons: &[&str], kid: &str, token: &str) -> String {
    let status = if verdict == "accepted" { 200 } else { 401 };
    json!({
        "time": time, "client_ip": ip, "peer_ip": "127.0.0.1", "x_forwarded_for": null,
        "method": "GET", "path": "/orders", "status": status,
        "upstream_status": if verdict == "accepted" { json!(200) } else { Value::Null },
        "latency_ms": 0.2, "verdict": verdict, "reasons": reasons, "cached": false,
        "error": null, "kid": kid, "x5t": null, "alg": "RS256",
        "iss": "https://login.microsoftonline.com/3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91/v2.0",
        "tid": "3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91", "aud": ["api://contoso-orders"],
        "sub": "victim", "oid": null, "appid": null, "azp": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        "client_id": null, "uti": null, "jti": "j", "sid": null,
        "iat": 1795904177, "nbf": 1795904177, "exp": 1795907777,
        "token_sha256_prefix": token,
    })
    .to_string()
}

/// `2026-11-28T22:MM:SSZ` for a second offset from 22:00:00.
fn at(secs: u32) -> String {
    format!(
        "2026-11-28T{:02}:{:02}:{:02}Z",
        22 + secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[test]
fn real_sample_reads_as_the_gateway_format() {
    let (rep, evs) = read_events(&fixture(), None);
    assert!(rep.error.is_none(), "{:?}", rep.error);
    assert_eq!(rep.format, Some("tokenward-gateway"));
    assert_eq!(rep.records_rejected, 0, "{:?}", rep.first_rejects);
    let raw: Vec<Value> = std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rep.records_read, raw.len() as u64);
    assert_eq!(rep.records_evaluated, raw.len() as u64);
    assert_eq!(evs.len(), raw.len());
    assert_eq!(
        rep.parsed_by_kind.get("gateway").copied(),
        Some(raw.len() as u64)
    );
    let s = |v: &Value, k: &str| v[k].as_str().map(str::to_string);
    for (ev, r) in evs.iter().zip(&raw) {
        let at = ev.locator;
        assert_eq!(ev.kind, EventKind::Gateway, "{at}");
        assert_eq!(
            ev.time.map(rfc3339),
            parse_timestamp(r["time"].as_str().unwrap()).map(rfc3339),
            "{at}"
        );
        assert_eq!(ev.client_ip(), s(r, "client_ip").as_deref(), "{at}");
        assert_eq!(
            ev.user(),
            s(r, "sub")
                .or(s(r, "oid"))
                .map(|u| u.to_lowercase())
                .as_deref(),
            "{at}"
        );
        assert_eq!(
            ev.app_id(),
            s(r, "azp")
                .or(s(r, "appid"))
                .or(s(r, "client_id"))
                .as_deref(),
            "{at}"
        );
        assert_eq!(ev.session_id(), s(r, "sid").as_deref(), "{at}");
        assert_eq!(
            ev.token_id(),
            s(r, "uti").or(s(r, "jti")).as_deref(),
            "{at}"
        );
        assert_eq!(
            ev.operation(),
            Some(format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            ))
            .as_deref(),
            "{at}"
        );
        assert_eq!(ev.result(), s(r, "verdict").as_deref(), "{at}");
    }
    // Spot checks written out, so the loop above cannot agree with itself.
    let forged = &evs[5];
    assert_eq!(forged.locator.line, 6);
    assert_eq!(forged.client_ip(), Some("203.0.113.50"));
    assert_eq!(forged.user(), Some("victim-0"));
    assert_eq!(forged.session_id(), Some("sid-victim-0"));
    assert_eq!(forged.token_id(), Some("uti-victim-0"));
    assert_eq!(forged.result(), Some("rejected"));
    assert_eq!(forged.operation(), Some("GET /api/v2.0/me/messages"));
    assert_eq!(
        forged.time.map(rfc3339).as_deref(),
        Some("2026-11-28T22:21:17.479Z")
    );
    // The exchange-refused line: no azp, no uti, no oid.
    let owa = &evs[13];
    assert_eq!(owa.app_id(), Some("00000002-0000-0ff1-ce00-000000000000"));
    assert_eq!(owa.token_id(), Some("owa-jti-1"));
    assert_eq!(owa.user(), Some("alice"));
    assert_eq!(owa.session_id(), None);
    // A line without a token has no identity at all.
    assert_eq!(evs[3].result(), Some("not-required"));
    assert_eq!(evs[3].user(), None);
    assert_eq!(evs[3].token_id(), None);
}

#[test]
fn forced_format_and_name_round_trip() {
    assert_eq!(
        Format::from_name("tokenward-gateway"),
        Some(Format::GatewayJsonLines)
    );
    assert_eq!(Format::GatewayJsonLines.name(), "tokenward-gateway");
    let (rep, evs) = read_events(&fixture(), Some(Format::GatewayJsonLines));
    assert_eq!(rep.format, Some("tokenward-gateway"));
    assert_eq!((rep.records_rejected, evs.len()), (0, 15));
    // Forced as generic JSON lines, records still classify by their keys.
    let (rep, evs) = read_events(&fixture(), Some(Format::JsonLines));
    assert_eq!(rep.format, Some("jsonl"));
    assert!(evs.iter().all(|e| e.kind == EventKind::Gateway));
}

#[test]
fn ioc_key_fires_on_the_storm_0558_kid_in_the_real_sample() {
    let r = hunt(vec![fixture()], Options::default());
    let k = hits(&r, "tw-ioc-key");
    assert_eq!(k.len(), 1, "{k:#?}");
    let f = k[0];
    assert_eq!(f.source_locator, "line 12");
    assert_eq!(f.client_ip.as_deref(), Some("203.0.113.51"));
    assert_eq!(f.evidence["value"], json!("1LTMzakihiRla_8z2BEJVXeWMqo"));
    assert_eq!(f.evidence["verdict"], json!("rejected"));
    assert_eq!(f.evidence["reasons"], json!(["key-denied", "kid-unknown"]));
    // Six refused forgeries in one millisecond are below the default bar...
    let s = status(&r, BURST);
    assert_eq!((s.status, s.hits), (Status::Ok, 0), "{:?}", s.note);
    assert_eq!(
        s.note.as_deref(),
        Some("15 gateway requests, 10 rejected, from 5 client IP(s)")
    );
    // ...and one burst at a bar of five.
    let r = hunt(
        vec![fixture()],
        Options {
            gateway_burst_min: 5,
            ..Options::default()
        },
    );
    let b = hits(&r, BURST);
    assert_eq!(b.len(), 1, "{b:#?}");
    assert_eq!(b[0].client_ip.as_deref(), Some("203.0.113.50"));
    assert_eq!(b[0].source_locator, "line 6");
    assert_eq!(b[0].evidence["rejected"], json!(6));
    assert_eq!(b[0].evidence["distinct_tokens"], json!(6));
    assert_eq!(b[0].evidence["reasons"], json!({"key-out-of-scope": 6}));
    assert_eq!(b[0].evidence["kids"], json!(["msa-2016-rs256"]));
    assert_eq!(
        b[0].evidence["window_start"],
        json!("2026-11-28T22:21:17.479Z")
    );
}

#[test]
fn burst_of_rejections_fires_once_with_its_evidence() {
    let d = tmpdir("burst");
    let mut lines = Vec::new();
    // 25 forgeries from one client in under three minutes, three keys tried.
    for i in 0..25u32 {
        let (reasons, kid): (&[&str], _) = match i % 3 {
            0 => (&["key-out-of-scope"], "msa-2016-rs256"),
            1 => (
                &["key-denied", "kid-unknown"],
                "1LTMzakihiRla_8z2BEJVXeWMqo",
            ),
            _ => (&["signature-invalid"], "ent-2024-1"),
        };
        lines.push(line(
            &at(60 + i * 7),
            "203.0.113.77",
            "rejected",
            reasons,
            kid,
            &format!("{:016x}", 0xf00 + u64::from(i % 20)),
        ));
    }
    // Then one of its tokens gets through.
    lines.push(line(
        &at(900),
        "203.0.113.77",
        "accepted",
        &[],
        "ent-2024-1",
        "00000000000000aa",
    ));
    // Another client: 19 rejections in four minutes, one short of the bar.
    for i in 0..19u32 {
        lines.push(line(
            &at(i * 12),
            "198.51.100.9",
            "rejected",
            &["token-expired"],
            "ent-2024-1",
            "00000000000000bb",
        ));
    }
    // Accepted traffic from many clients is no burst.
    for i in 0..40u32 {
        lines.push(line(
            &at(i * 5),
            &format!("198.51.100.{}", 100 + i % 4),
            "accepted",
            &[],
            "ent-2024-1",
            "00000000000000cc",
        ));
    }
    let f = d.join("access.jsonl");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    let r = hunt(vec![f], Options::default());
    assert_eq!(r.totals(), (85, 85, 0));
    assert_eq!(r.files[0].format, Some("tokenward-gateway"));
    let b = hits(&r, BURST);
    assert_eq!(b.len(), 1, "{b:#?}");
    let f = b[0];
    assert_eq!(f.client_ip.as_deref(), Some("203.0.113.77"));
    assert_eq!(f.source_locator, "line 1");
    assert_eq!(f.severity, tokenward_hunt::Severity::High);
    let e = &f.evidence;
    assert_eq!(e["rejected"], json!(25));
    assert_eq!(e["window_start"], json!("2026-11-28T22:01:00Z"));
    assert_eq!(e["window_end"], json!(at(60 + 24 * 7)));
    assert_eq!(e["distinct_tokens"], json!(20));
    assert_eq!(e["token_sha256_prefixes"][0], json!("0000000000000f00"));
    assert_eq!(
        e["reasons"],
        json!({"key-out-of-scope": 9, "key-denied": 8, "kid-unknown": 8, "signature-invalid": 8})
    );
    assert_eq!(
        e["kids"],
        json!([
            "1LTMzakihiRla_8z2BEJVXeWMqo",
            "ent-2024-1",
            "msa-2016-rs256"
        ])
    );
    assert_eq!(e["accepted_after"]["requests"], json!(1));
    assert_eq!(e["accepted_after"]["first"], json!("2026-11-28T22:15:00Z"));
    assert_eq!(e["accepted_after"]["first_user"], json!("victim"));
    // The Storm-0558 kid among the forgeries is reported on its own too.
    assert_eq!(hits(&r, "tw-ioc-key").len(), 8);
}

#[test]
fn two_bursts_an_hour_apart_are_two_findings() {
    let d = tmpdir("two");
    let mut lines = Vec::new();
    for start in [0u32, 3600] {
        for i in 0..20u32 {
            lines.push(line(
                &at(start + i),
                "203.0.113.8",
                "rejected",
                &["tenant-not-allowed"],
                "ent-2024-1",
                "0000000000000001",
            ));
        }
    }
    let f = d.join("a.jsonl");
    std::fs::write(&f, lines.join("\n")).unwrap();
    let r = hunt(vec![f], Options::default());
    let b = hits(&r, BURST);
    assert_eq!(b.len(), 2, "{b:#?}");
    assert!(b.iter().all(|f| f.evidence["rejected"] == json!(20)));
    assert!(b
        .iter()
        .all(|f| f.severity == tokenward_hunt::Severity::Medium
            && !f.evidence.contains_key("accepted_after")));
}

#[test]
fn scattered_rejections_do_not_fire() {
    let d = tmpdir("benign");
    // A client retrying an expired token every ten minutes for a day, and
    // a few other refusals: many rejections, never 20 in five minutes.
    let mut lines = Vec::new();
    for i in 0..120u32 {
        lines.push(line(
            &at(i * 600 % 7200 + i / 12),
            "198.51.100.20",
            "rejected",
            &["token-expired"],
            "ent-2024-1",
            "00000000000000dd",
        ));
    }
    for i in 0..5u32 {
        lines.push(line(
            &at(i * 90),
            "198.51.100.21",
            "rejected",
            &["audience-mismatch"],
            "ent-2024-1",
            "00000000000000ee",
        ));
    }
    let f = d.join("access.jsonl");
    std::fs::write(&f, lines.join("\n")).unwrap();
    let r = hunt(vec![f], Options::default());
    assert_eq!(r.totals(), (125, 125, 0));
    assert!(hits(&r, BURST).is_empty(), "{:#?}", hits(&r, BURST));
    let s = status(&r, BURST);
    assert_eq!(s.status, Status::Ok);
    assert_eq!(
        s.note.as_deref(),
        Some("125 gateway requests, 125 rejected, from 2 client IP(s)")
    );
}

#[test]
fn blind_without_gateway_logs() {
    let ual = repo().join(
        "tests/fixtures/logs/msdocs-office-365-management-api/management-activity-api-retrieve-content-sample.json",
    );
    let r = hunt(vec![ual], Options::default());
    assert!(r.totals().0 > 0);
    let s = status(&r, BURST);
    assert_eq!((s.status, s.hits), (Status::Blind, 0));
    assert!(
        s.note
            .as_deref()
            .unwrap()
            .contains("no tokenward gateway access log"),
        "{:?}",
        s.note
    );
}

#[test]
fn malformed_gateway_lines_are_rejected_not_fatal() {
    let d = tmpdir("bad");
    let good = line(
        &at(0),
        "203.0.113.9",
        "rejected",
        &["alg-not-allowed"],
        "k",
        "0000000000000009",
    );
    let odd = [
        // Wrong types everywhere a detection reads.
        r#"{"time":5,"client_ip":["x"],"verdict":"rejected","reasons":"key-denied","kid":{"a":1},"token_sha256_prefix":"not hex"}"#,
        // No time and no client IP: counted, not placed.
        r#"{"verdict":"rejected","token_sha256_prefix":null,"reasons":[1,null,"x"]}"#,
        r#"{"verdict":null,"token_sha256_prefix":"zz"}"#,
    ];
    let body = format!(
        "{good}\n{}\n{}\n{}\n{}\n[1]\n",
        &good[..40],
        odd[0],
        odd[1],
        odd[2]
    );
    let f = d.join("access.jsonl");
    std::fs::write(&f, body).unwrap();
    let r = hunt(vec![f], Options::default());
    assert_eq!(r.totals(), (6, 4, 2));
    assert_eq!(r.files[0].format, Some("tokenward-gateway"));
    let s = status(&r, BURST);
    assert_eq!(s.status, Status::Ok);
    assert_eq!(
        s.note.as_deref(),
        Some("4 gateway requests, 3 rejected, from 1 client IP(s); 2 rejected without a time or client IP not judged")
    );
}
