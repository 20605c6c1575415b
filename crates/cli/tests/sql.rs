//! `tokenward sql`: the compiled detections give the findings hunt gives,
//! on real engines installed by `.ci/run` (chDB, the embedded ClickHouse;
//! Apache Spark in local mode on Java 17), over the example intrusion, the
//! real public samples and a generated tenant whose answer is known.

mod common;
use common::{repo, tokenward};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// A finding as compared: rule, where, when, and what it says about the
/// event.
type Key = (String, String, String, String, String, Option<String>);

/// A time as digits, to the millisecond (the events table keeps
/// milliseconds), whatever the writer's format: hunt's RFC 3339 with `Z`,
/// ClickHouse's `2023-06-05 08:07:28.431`, Python's ISO format.
fn time_digits(t: &str) -> String {
    let end = t
        .char_indices()
        .skip(19)
        .find(|(_, c)| matches!(c, 'Z' | '+' | '-'))
        .map_or(t.len(), |(i, _)| i);
    let digits: String = t[..end].chars().filter(char::is_ascii_digit).collect();
    let (whole, frac) = digits.split_at(digits.len().min(14));
    let frac = &frac[..frac.len().min(3)];
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

fn key(f: &Value) -> Key {
    let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
    (
        s("rule_id"),
        s("source_file"),
        s("source_locator"),
        time_digits(&s("time")),
        s("severity"),
        f["user"].as_str().map(str::to_owned),
    )
}

fn python() -> PathBuf {
    let p = std::env::var_os("TOKENWARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".ci/venv/bin/python"));
    assert!(
        p.exists(),
        "{}: run .ci/run (it installs chdb and pyspark)",
        p.display()
    );
    p
}

fn lines(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Rules that mean their values literally: every quote, backslash, `%`,
/// `_`, escaped wildcard and non-ASCII letter below matches only what the
/// embedded engine matches, and the tenant has events each would match
/// wrongly if it were not escaped.
const HOSTILE_RULES: &str = r#"title: Hostile exact value
id: hostile-exact
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment: "it's 100%_done"
    condition: selection
level: low
---
title: Hostile backslash path
id: hostile-backslash
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment|contains: 'C:\temp\'
    condition: selection
level: low
---
title: Hostile escaped star
id: hostile-escaped-star
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment|startswith: 'a\*b'
    condition: selection
level: low
---
title: Hostile one-character wildcard
id: hostile-question
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment: 'ab?d'
    condition: selection
level: low
---
title: Hostile Unicode prefix
id: hostile-unicode
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment: 'ÄBC*'
    condition: selection
level: medium
---
title: Hostile regex punctuation
id: hostile-punctuation
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment|contains: 'x.y(['
    condition: selection
level: low
---
title: Hostile quotes and newline
id: hostile-quotes
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment:
            - "say \"hi\"\nthen \\' leave"
            - '*% off'
    condition: selection
level: high
---
title: Hostile cased
id: hostile-cased
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Comment|cased: 'CaSe'
    condition: selection
level: low
---
title: Numbers, nulls, absence and field references
id: hostile-typed
status: test
logsource: {product: m365, service: audit}
detection:
    many:
        ItemCount|gte: 5
    null_reason:
        Reason: null
    reason_known:
        Reason|exists: true
    self_target:
        UserId|fieldref: TargetUser
    not_operation:
        Operation|neq: MailItemsAccessed
    typed:
        Operation: HostileTyped
    condition: typed and ((many and null_reason) or (self_target and not_operation) or (reason_known and not many))
level: low
---
title: Mail access
name: mail_access
id: mail-access
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Operation: MailItemsAccessed
    condition: selection
level: informational
---
title: Hostile comment
name: hostile_comment
id: hostile-comment-base
status: test
logsource: {product: m365, service: audit}
detection:
    selection:
        Operation: HostileComment
    condition: selection
level: informational
---
title: Mail burst
id: corr-event-count
status: test
correlation:
    type: event_count
    rules: [mail_access]
    group-by: [UserId]
    timespan: 1h
    condition: {gte: 4}
level: medium
---
title: Mail from many addresses
id: corr-value-count
status: test
correlation:
    type: value_count
    rules: [mail_access]
    group-by: [UserId]
    timespan: 1h
    condition: {field: ClientIPAddress, gte: 3}
level: high
---
title: Comment then typed records
id: corr-temporal
status: test
correlation:
    type: temporal
    rules: [hostile_comment, hostile-typed]
    timespan: 2d
    generate: true
level: medium
---
title: Comment, then typed records
id: corr-temporal-ordered
status: test
correlation:
    type: temporal_ordered
    rules: [hostile_comment, hostile-typed]
    timespan: 2d
    generate: true
level: medium
---
title: Typed records, then a comment
id: corr-temporal-ordered-reversed
status: test
correlation:
    type: temporal_ordered
    rules: [hostile-typed, hostile_comment]
    timespan: 2d
    generate: true
level: medium
---
title: Many items in a day
id: corr-value-sum
status: test
correlation:
    type: value_sum
    rules: [mail_access]
    group-by: [UserId]
    timespan: 1d
    condition: {field: ItemCount, gte: 30}
level: low
---
title: Many items on average
id: corr-value-avg
status: test
correlation:
    type: value_avg
    rules: [mail_access]
    group-by: [UserId]
    timespan: 1h
    condition: {field: ItemCount, gte: 9.5}
level: low
---
title: Many items at the median
id: corr-value-median
status: test
correlation:
    type: value_median
    rules: [mail_access]
    group-by: [UserId]
    timespan: 1h
    condition: {field: ItemCount, gte: 10}
level: low
---
title: Many items at the 90th percentile
id: corr-value-percentile
status: test
correlation:
    type: value_percentile
    rules: [mail_access]
    group-by: [UserId]
    timespan: 1h
    condition: {field: ItemCount, percentile: 90, gte: 12}
level: low
"#;

/// Writes a two-tenant export with planted events; returns the number of
/// findings each rule must have.
fn write_tenant(dir: &Path) -> (PathBuf, BTreeMap<&'static str, usize>) {
    let mut out = String::new();
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let tenants = [
        "7c3a1c5e-0f2b-4c7e-9f1a-2b6d3e4f5a60",
        "2e4b8d10-55aa-4c3e-8f7e-0a1b2c3d4e5f",
    ];
    let mut push = |v: Value| {
        out.push_str(&v.to_string());
        out.push('\n');
    };
    let mut expect = BTreeMap::new();
    // Background mail access from both tenants, a few through REST.
    let mut rest = 0;
    // The REST client is an indicator too (a common one): one finding per
    // user and day.
    let mut rest_user_days = BTreeSet::new();
    for i in 0..400 {
        let t = tenants[i % 2];
        let is_rest = next() % 57 == 0;
        let client = if is_rest {
            rest += 1;
            "Client=REST;Client=RESTSystem;;"
        } else {
            "Client=Microsoft.Exchange.Autodiscover"
        };
        // Each user reads mail from one address.
        let u = next() % 40;
        if is_rest {
            rest_user_days.insert((u, i % 2, 1 + i % 28));
        }
        push(json!({
            "CreationTime": format!("2023-06-{:02}T{:02}:{:02}:00", 1 + i % 28, i % 24, i % 60),
            "Id": format!("00000000-0000-0000-0000-{i:012}"),
            "Operation": "MailItemsAccessed", "OrganizationId": t, "RecordType": 50,
            "UserId": format!("user{u}@tenant{}.example", i % 2),
            "Workload": "Exchange", "ClientIPAddress": format!("198.51.100.{u}"),
            "ClientInfoString": client, "ResultStatus": "Succeeded",
            "ItemCount": next() % 9,
            "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}, {"Name": "IsThrottled", "Value": if i == 13 { "True" } else { "False" }}]
        }));
    }
    expect.insert("9b4e2d17-6c3a-4f8e-b1d5-3e7a0c9f2b61", rest);
    // Two bursts of one user's mail access: five accesses from five
    // addresses, then four from two; and three more later, too few.
    let bursts: [(&str, &[(u32, u64)]); 3] = [
        (
            "2023-06-20T05",
            &[(0, 10), (1, 10), (2, 12), (3, 1), (4, 10)],
        ),
        ("2023-06-20T07", &[(0, 10), (1, 10), (2, 10), (3, 10)]),
        ("2023-06-20T09", &[(0, 10), (1, 10), (2, 10)]),
    ];
    for (b, (hour, items)) in bursts.iter().enumerate() {
        for (k, (minute, count)) in items.iter().enumerate() {
            let ip = if b == 0 { k } else { k % 2 };
            push(json!({
                "CreationTime": format!("{hour}:{minute:02}:30"), "Id": format!("burst-{b}-{k}"),
                "Operation": "MailItemsAccessed", "OrganizationId": tenants[0], "RecordType": 50,
                "UserId": "burst@tenant0.example", "Workload": "Exchange",
                "ClientIPAddress": format!("203.0.113.{}", 10 + ip), "ItemCount": count,
                "ClientInfoString": "Client=Microsoft.Exchange.Autodiscover"
            }));
        }
    }
    expect.insert("corr-event-count", 2);
    expect.insert("corr-value-count", 1);
    // One day holds all three bursts: 43 + 40 + 30 items.
    expect.insert("corr-value-sum", 1);
    // The first burst averages 43/5, below 9.5, and so does every window
    // it opens until its last access alone (10); then the second and the
    // third burst.
    expect.insert("corr-value-avg", 3);
    expect.insert("corr-value-median", 3);
    // Nearest rank: the 5th of five (12), the 4th of four (10).
    expect.insert("corr-value-percentile", 1);
    expect.insert("corr-temporal", 1);
    // The comments come a day before the typed records: in that order
    // once, never the other way round.
    expect.insert("corr-temporal-ordered", 1);
    expect.insert("corr-temporal-ordered-reversed", 0);
    // Throttling: the background's one record, then one mailbox throttled
    // twice on one day (the flag at the root) and once the next day (in
    // OperationProperties): three mailbox-days for the built-in, two
    // records for the Sigma rule, which reads OperationProperties only.
    let throttled = [
        ("2023-06-22T11:00:00", json!({"IsThrottled": "True"})),
        ("2023-06-22T10:00:00", json!({"IsThrottled": " true"})),
        (
            "2023-06-23T09:00:00",
            json!({"OperationProperties": [{"Name": "IsThrottled", "Value": "true"}]}),
        ),
        ("2023-06-23T09:30:00", json!({"IsThrottled": "False"})),
    ];
    for (i, (t, extra)) in throttled.iter().enumerate() {
        let mut v = json!({
            "CreationTime": t, "Id": format!("throttled-{i}"), "Operation": "MailItemsAccessed",
            "OrganizationId": tenants[1], "RecordType": 50, "UserId": "reader@tenant1.example",
            "MailboxOwnerUPN": "Victim@Tenant1.example", "Workload": "Exchange"
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        push(v);
    }
    expect.insert("4d7f1b83-2a6e-4c9d-8e35-5f0b2a7c1d96", 2);
    expect.insert("tw-mail-throttled", 3);
    // Sync by clients other than desktop Outlook: two records of one
    // session (one finding), another session, a client known only by its
    // user agent; desktop Outlook and Bind access beside them.
    let syncs = [
        (
            "2023-06-24T10:05:00",
            "s1",
            json!({"ClientInfoString": "Client=OWA;Action=ViaProxy"}),
            "Sync",
        ),
        (
            "2023-06-24T10:00:00",
            "s1",
            json!({"ClientInfoString": "Client=OWA;Action=ViaProxy"}),
            "Sync",
        ),
        (
            "2023-06-24T13:00:00",
            "s2",
            json!({"ClientInfoString": "Client=OWA;Action=ViaProxy"}),
            "Sync",
        ),
        (
            "2023-06-24T16:00:00",
            "s3",
            json!({"ClientInfoString": "Client=MSExchangeRPC"}),
            "Sync",
        ),
        (
            "2023-06-24T19:00:00",
            "s4",
            json!({"ClientInfoString": "Client=OWA"}),
            "Bind",
        ),
        (
            "2023-06-24T22:00:00",
            "s5",
            json!({"UserAgent": "python-requests/2.31"}),
            " sync",
        ),
    ];
    for (i, (t, session, extra, access)) in syncs.iter().enumerate() {
        let mut v = json!({
            "CreationTime": t, "Id": format!("sync-{i}"), "Operation": "MailItemsAccessed",
            "OrganizationId": tenants[0], "RecordType": 50, "UserId": "syncer@tenant0.example",
            "MailboxOwnerUPN": "Boss@tenant0.example", "Workload": "Exchange", "SessionId": session,
            "OperationProperties": [{"Name": "MailAccessType", "Value": access}]
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        push(v);
    }
    expect.insert("tw-mail-sync-unusual-client", 3);
    // Bind: one mailbox with six ordinary days (10 items each, counted by
    // OperationCount), a day counted by its folder items, and a spike of
    // 150; another mailbox with a spike but only three days (not judged).
    let mut binds: Vec<(String, &str, Value)> = Vec::new();
    for day in 1..=6 {
        binds.push((
            format!("2023-07-0{day}T09:00:00"),
            "spiky@tenant1.example",
            json!({"OperationCount": "10"}),
        ));
    }
    binds.push((
        "2023-07-07T09:00:00".into(),
        "spiky@tenant1.example",
        json!({"Folders": [{"FolderItems": [{"Id": "a"}, {"Id": "b"}, {"Id": "c"}]}]}),
    ));
    binds.push((
        "2023-07-08T09:00:00".into(),
        "spiky@tenant1.example",
        json!({"OperationCount": 150}),
    ));
    for (day, n) in [(1, 10), (2, 10), (3, 500)] {
        binds.push((
            format!("2023-07-0{day}T12:00:00"),
            "young@tenant1.example",
            json!({"OperationCount": n}),
        ));
    }
    for (i, (t, owner, extra)) in binds.iter().enumerate() {
        let mut v = json!({
            "CreationTime": t, "Id": format!("bind-{i}"), "Operation": "MailItemsAccessed",
            "OrganizationId": tenants[1], "RecordType": 50, "UserId": owner,
            "MailboxOwnerUPN": owner, "Workload": "Exchange", "SessionId": format!("bs-{owner}"),
            "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        push(v);
    }
    expect.insert("tw-mail-bind-spike", 1);
    // Indicator user agents: a long one inside a longer string (twice in
    // one day: one finding), a near miss, and one with quotes, exactly.
    let chrome92 = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.159 Safari/537.36";
    let agents = [
        format!("Wrapper/1.0 {chrome92} extra"),
        format!("wrapper/2.0 {}", chrome92.to_uppercase()),
        chrome92.replace("Chrome/92", "Chrome/93"),
        "\"Microsoft Edge\";v=\"113\", \"Chromium\";v=\"113\", \"Not-A.Brand\";v=\"24\""
            .to_string(),
    ];
    for (i, ua) in agents.iter().enumerate() {
        push(json!({
            "CreationTime": format!("2023-06-25T0{i}:00:00"), "Id": format!("ua-{i}"),
            "Operation": "FileAccessed", "OrganizationId": tenants[0], "RecordType": 6,
            "UserId": "browser@tenant0.example", "Workload": "SharePoint", "UserAgent": ua
        }));
    }
    expect.insert("tw-ioc-useragent", rest_user_days.len() + 2);
    // Five mailboxes with auditing switched off: the Sigma rule and the
    // built-in detection.
    expect.insert("7c1e9a46-3f2b-4d8e-a5c7-0b6d4e2f9a38", 5);
    expect.insert("tw-audit-tampering", 5);
    // Audit switched off for five mailboxes among routine changes.
    for i in 0..20 {
        let off = i % 4 == 0;
        push(json!({
            "CreationTime": format!("2023-06-10T08:{i:02}:00"), "Id": format!("set-{i}"),
            "Operation": "Set-Mailbox", "OrganizationId": tenants[i % 2], "RecordType": 1,
            "UserId": "admin@tenant0.example", "Workload": "Exchange", "ClientIP": "203.0.113.5",
            "Parameters": [{"Name": "Identity", "Value": format!("user{i}")},
                           {"Name": if off { "AuditEnabled" } else { "RetainDeletedItemsFor" }, "Value": if off { "False" } else { "30" }}]
        }));
    }
    // A mailbox exported to a PST, a compliance search exported, one not
    // exported ($false) and one without the parameter.
    let exports = [
        (
            "New-MailboxExportRequest",
            json!([{"Name": "Mailbox", "Value": "ceo"}]),
        ),
        (
            "New-ComplianceSearchAction",
            json!([{"Name": "Export", "Value": " True "}]),
        ),
        (
            "New-ComplianceSearchAction",
            json!([{"Name": "Export", "Value": "$false"}]),
        ),
        (
            "New-ComplianceSearchAction",
            json!([{"Name": "Purge", "Value": "True"}]),
        ),
    ];
    for (i, (op, params)) in exports.iter().enumerate() {
        push(json!({
            "CreationTime": format!("2023-06-13T08:{i:02}:00"), "Id": format!("export-{i}"),
            "Operation": op, "OrganizationId": tenants[1], "RecordType": 1,
            "UserId": "admin@tenant1.example", "Workload": "Exchange", "Parameters": params
        }));
    }
    expect.insert("tw-mailbox-export", 2);
    // The hostile values, each with the near miss a wrong escape would hit.
    let comments: &[(&str, Option<&'static str>)] = &[
        ("IT'S 100%_DONE", Some("hostile-exact")),
        ("it's 100Xydone", None),
        ("it's 100%Xdone", None),
        ("copy to C:\\temp\\x.txt", Some("hostile-backslash")),
        ("copy to C:tempx.txt", None),
        ("a*bcd", Some("hostile-escaped-star")),
        ("aXbcd", None),
        ("abcd", Some("hostile-question")),
        ("abd", None),
        ("abccd", None),
        ("äbcdef", Some("hostile-unicode")),
        ("zzx.y([zz", Some("hostile-punctuation")),
        ("xzy([", None),
        ("x.y(", None),
        ("say \"hi\"\nthen \\' leave", Some("hostile-quotes")),
        ("50% off", Some("hostile-quotes")),
        ("50 - off", None),
        ("CaSe", Some("hostile-cased")),
        ("case", None),
    ];
    for (i, (c, rule)) in comments.iter().enumerate() {
        push(json!({
            "CreationTime": format!("2023-06-11T09:{i:02}:00"), "Id": format!("c-{i}"),
            "Operation": "HostileComment", "OrganizationId": tenants[0], "RecordType": 1,
            "UserId": "writer@tenant0.example", "Workload": "Exchange", "Comment": c
        }));
        if let Some(r) = rule {
            *expect.entry(r).or_insert(0) += 1;
        }
    }
    for r in [
        "hostile-exact",
        "hostile-backslash",
        "hostile-escaped-star",
        "hostile-question",
        "hostile-unicode",
        "hostile-punctuation",
        "hostile-cased",
    ] {
        expect.entry(r).or_insert(0);
    }
    // Typed tests: number strings and numbers, null and absent fields,
    // field references.
    let typed = [
        json!({"ItemCount": 7, "Reason": null}),    // many and null
        json!({"ItemCount": " 12 "}),               // many, reason absent
        json!({"ItemCount": "4", "Reason": null}),  // not many
        json!({"ItemCount": "1e1", "Reason": "x"}), // many, reason known
        json!({"UserId": "same@x", "TargetUser": "SAME@x"}), // self target
        json!({"Reason": "r", "ItemCount": 2}),     // reason known, not many
        json!({"ItemCount": "five", "Reason": null}), // not a number
    ];
    for (i, t) in typed.iter().enumerate() {
        let mut v = json!({
            "CreationTime": format!("2023-06-12T10:{i:02}:00"), "Id": format!("t-{i}"),
            "Operation": "HostileTyped", "OrganizationId": tenants[1], "RecordType": 1,
            "UserId": "typed@tenant1.example", "Workload": "Exchange"
        });
        for (k, x) in t.as_object().unwrap() {
            v[k] = x.clone();
        }
        push(v);
    }
    // Many and null: 0, and 1 (absent counts as null); self target: 4;
    // a known reason (null is a value that exists) and not many: 2, 5, 6.
    expect.insert("hostile-typed", 6);
    // Sign-ins in Graph shape, a few from an IOC address in the forms a
    // client address takes, and near misses.
    let mut ioc = 0;
    // The built-in detection reports each address once per user and day;
    // the three spellings are one address.
    let mut ioc_user_days = BTreeSet::new();
    for i in 0..150 {
        let ip = match i % 30 {
            3 => "195.26.87.219".to_string(),
            7 => "195.26.87.219:50443".to_string(),
            11 => "::ffff:195.26.87.219".to_string(),
            15 => "195.26.87.21".to_string(),
            19 => "195.26.87.2190".to_string(),
            23 => "195.026.87.219".to_string(),
            _ => format!("192.0.2.{}", next() % 250),
        };
        if matches!(i % 30, 3 | 7 | 11) {
            ioc += 1;
            ioc_user_days.insert((i % 40, i % 2, 1 + i % 28));
        }
        push(json!({
            "id": format!("s-{i}"), "createdDateTime": format!("2023-06-{:02}T11:00:00Z", 1 + i % 28),
            "userPrincipalName": format!("user{}@tenant{}.example", i % 40, i % 2),
            "appId": "00000002-0000-0ff1-ce00-000000000000", "ipAddress": ip,
            "tenantId": tenants[i % 2], "uniqueTokenIdentifier": format!("tok{i}"),
            "status": {"errorCode": if i % 9 == 0 { 50126 } else { 0 }},
            "clientAppUsed": "Browser", "location": {"countryOrRegion": if i % 10 == 0 { "XX" } else { "DE" }}
        }));
    }
    expect.insert("2f0c7a44-8d1b-4c55-a0e6-6b93f1d2c7e8", ioc);
    // An indicator address two years after its published window (medium),
    // and one record with two indicator addresses (two findings).
    push(json!({
        "CreationTime": "2025-06-01T10:00:00", "Id": "ioc-late", "Operation": "UserLoggedIn",
        "OrganizationId": tenants[0], "RecordType": 15, "UserId": "late@tenant0.example",
        "Workload": "AzureActiveDirectory", "ClientIP": "195.26.87.219"
    }));
    push(json!({
        "CreationTime": "2023-06-26T10:00:00", "Id": "ioc-two", "Operation": "UserLoggedIn",
        "OrganizationId": tenants[0], "RecordType": 15, "UserId": "two@tenant0.example",
        "Workload": "AzureActiveDirectory", "ClientIP": "195.26.87.219",
        "ActorIpAddress": "185.236.228.183"
    }));
    expect.insert("tw-ioc-ip", ioc_user_days.len() + 3);
    let path = dir.join("tenant.jsonl");
    std::fs::write(&path, out).unwrap();
    (path, expect)
}

/// Writes a third tenant's sign-ins and, in another file (as exports
/// come), its Exchange records with tokens and OWA token issuances;
/// returns both files and the findings the sign-in join must give. The
/// sign-ins cover 2024-07-10, 11 and 14 only; issuance times come in
/// every form hunt reads, with near misses a lax reading would judge on
/// another day.
fn write_storm(dir: &Path) -> (Vec<PathBuf>, BTreeMap<&'static str, usize>) {
    const TENANT: &str = "c0ffee00-1111-4222-8333-944445555666";
    const NO_SIGNINS: &str = "d00dfeed-1111-4222-8333-944445555666";
    let mut signins = String::new();
    for (i, (day, tenant)) in [
        ("2024-07-10", TENANT),
        ("2024-07-11", &TENANT.to_uppercase()),
        ("2024-07-14", TENANT),
    ]
    .iter()
    .enumerate()
    {
        signins.push_str(
            &json!({
                "id": format!("storm-signin-{i}"), "createdDateTime": format!("{day}T09:00:00Z"),
                "userPrincipalName": "victim@tenant2.example", "appId": "owa",
                "ipAddress": format!("198.18.0.{}", i + 1), "tenantId": tenant,
                "uniqueTokenIdentifier": format!("good-tok-{i}"),
                "sessionId": format!("Good-Session-{i}"), "status": {"errorCode": 0}
            })
            .to_string(),
        );
        signins.push('\n');
    }
    let mut audit = String::new();
    let mut n = 0;
    let mut push = |v: Value| {
        n += 1;
        let mut v = v;
        v["Id"] = json!(format!("storm-{n}"));
        audit.push_str(&v.to_string());
        audit.push('\n');
    };
    let mailbox = |time: &str, token: &str, aad: &str, issued: Option<&str>| {
        let mut ctx = json!({"UniqueTokenId": token, "AADSessionId": aad});
        if let Some(t) = issued {
            ctx["IssuedAtTime"] = json!(t);
        }
        json!({"CreationTime": time, "Operation": "MailItemsAccessed", "RecordType": 50,
               "Workload": "Exchange", "UserId": "victim@tenant2.example",
               "OrganizationId": TENANT, "ClientIPAddress": "203.0.113.60",
               "AppAccessContext": ctx})
    };
    // A forged session with a consumer-tenant token: three records, one
    // finding.
    for (k, minute) in [30, 10, 20].iter().enumerate() {
        let mut v = mailbox(
            &format!("2024-07-10T12:{minute}:00"),
            &format!("fa{k}"),
            "F-A",
            Some("2024-07-10T11:50:00Z"),
        );
        v["TokenTenantId"] = json!("9188040d-6c67-4c5b-b112-36a304b66dad");
        push(v);
    }
    // Explained: by token, by Entra session in another case, by Exchange
    // session; app-only tokens; another workload.
    push(mailbox(
        "2024-07-10T12:00:00",
        "good-tok-0",
        "unrelated-1",
        None,
    ));
    push(mailbox("2024-07-10T12:00:00", "x1", "GOOD-SESSION-1", None));
    let mut v = mailbox("2024-07-10T12:00:00", "x2", "unrelated-2", None);
    v["SessionId"] = json!("good-session-2");
    push(v);
    let mut v = mailbox("2024-07-10T12:00:00", "x3", "app-1", None);
    v["UserType"] = json!(5);
    push(v);
    let mut v = mailbox("2024-07-10T12:00:00", "x4", "app-2", None);
    v["UserId"] = json!("APP@SharePoint");
    v["Workload"] = json!("SharePoint");
    push(v);
    let mut v = mailbox("2024-07-10T12:00:00", "x5", "other-workload", None);
    v["Workload"] = json!("AzureActiveDirectory");
    push(v);
    // Not judged: a day the sign-ins do not cover, a tenant without
    // sign-ins, a record that names no tenant (sign-ins of several
    // tenants are given).
    push(mailbox(
        "2024-07-12T12:00:00",
        "x6",
        "hole",
        Some("2024-07-12T11:00:00Z"),
    ));
    let mut v = mailbox("2024-07-10T12:00:00", "x7", "tenant-d", None);
    v["OrganizationId"] = json!(NO_SIGNINS);
    push(v);
    let mut v = mailbox("2024-07-10T12:00:00", "x8", "no-tenant", None);
    v.as_object_mut().unwrap().remove("OrganizationId");
    push(v);
    // Issuance times: (text, whether the day hunt reads is covered).
    let issued = [
        ("2024-07-11T23:30:00-02:00", false), // 12 July in UTC
        ("2024-07-12T01:30:00+03:00", true),  // 11 July in UTC
        ("7/11/2024 11:30:00 PM", true),
        ("7/12/2024 12:30 AM", false),
        ("2024-06-31T10:00:00Z", true), // no such day: the day of use
        ("2024-07-12T24:00:00Z", true), // no such hour
        ("2024-07-13T10:00:00+26:00", true), // no such offset
        ("2024-07-12", false),
        ("2024-07-14t05:00:00.1234567890z", true),
        ("7/14/2024, 5:00", true),
        ("garbage", true),
        ("2024-07-12T05:00:00.Z", true), // a point without digits
        ("7/12/2024 5:00 XM", true),
        ("12/7/2024", false),
    ];
    let mut tokens = 0;
    for (i, (text, fires)) in issued.iter().enumerate() {
        push(mailbox(
            "2024-07-10T12:00:00",
            &format!("t-issued-{i}"),
            &format!("issued-{i}"),
            Some(text),
        ));
        tokens += usize::from(*fires);
    }
    // Without an issuance time: the day of use and two hours before.
    push(mailbox("2024-07-11T01:00:00", "t-early", "early", None));
    push(mailbox(
        "2024-07-14T01:00:00",
        "t-early-hole",
        "early-hole",
        None,
    ));
    tokens += 1;
    // The earliest record speaks for its session: the later one, written
    // first, names an uncovered issuance day.
    push(mailbox(
        "2024-07-10T15:00:00",
        "o2",
        "F-ORDER",
        Some("2024-07-12T10:00:00Z"),
    ));
    push(mailbox(
        "2024-07-10T14:00:00",
        "o1",
        "F-ORDER",
        Some("2024-07-10T10:00:00Z"),
    ));
    tokens += 1;

    // OWA token issuances.
    let owa = |time: &str, session: Option<&str>, ip: &str| {
        let mut v = json!({"CreationTime": time, "Operation": "GetAccessTokenForResource",
                           "RecordType": 275, "Workload": "Exchange",
                           "UserId": "victim@tenant2.example", "OrganizationId": TENANT,
                           "ClientIP": ip, "ResourceURL": "https://outlook.office.com"});
        if let Some(s) = session {
            v["SessionId"] = json!(s);
        }
        v
    };
    // A renewal chain of a session that never signed in: one finding.
    for minute in [5, 1, 3] {
        push(owa(
            &format!("2024-07-10T13:0{minute}:00"),
            Some("owa-forged"),
            "203.0.113.50",
        ));
    }
    // A signed-in session from its own address, and from a new one.
    push(owa(
        "2024-07-10T13:00:00",
        Some("GOOD-SESSION-0"),
        "198.18.0.1",
    ));
    push(owa(
        "2024-07-10T13:00:00",
        Some("good-session-0"),
        "203.0.113.51",
    ));
    // No session: by address.
    push(owa("2024-07-10T13:00:00", None, "203.0.113.52"));
    // Issuances known by record type or operation name, and a near miss.
    let mut v = owa("2024-07-10T13:00:00", Some("owa-by-type"), "198.18.0.1");
    v["Operation"] = json!("TokenIssued");
    v["RecordType"] = json!("275");
    push(v);
    let mut v = owa("2024-07-10T13:00:00", Some("owa-by-name"), "198.18.0.1");
    v["Operation"] = json!("OWAAuth");
    v["RecordType"] = json!(50);
    push(v);
    // The name in another case passes the detection's test but not its
    // screen, which reads the bytes as exports write them.
    let mut v = owa(
        "2024-07-10T13:00:00",
        Some("owa-by-name-cased"),
        "198.18.0.1",
    );
    v["Operation"] = json!("owaauth");
    v["RecordType"] = json!(50);
    push(v);
    let mut v = owa("2024-07-10T13:00:00", Some("owa-near-miss"), "198.18.0.1");
    v["Operation"] = json!("MailItemsAccessed");
    v["RecordType"] = json!(2750);
    push(v);
    // Not judged: a hole, early on a day after a hole, another tenant.
    push(owa("2024-07-12T13:00:00", Some("owa-hole"), "203.0.113.50"));
    push(owa(
        "2024-07-14T01:00:00",
        Some("owa-early-hole"),
        "203.0.113.50",
    ));
    let mut v = owa("2024-07-10T13:00:00", Some("owa-tenant-d"), "203.0.113.50");
    v["OrganizationId"] = json!(NO_SIGNINS);
    push(v);
    // Early on a day whose day before is covered too.
    push(owa(
        "2024-07-11T01:00:00",
        Some("owa-early"),
        "203.0.113.50",
    ));
    let signin_file = dir.join("storm-signins.jsonl");
    let audit_file = dir.join("storm-audit.jsonl");
    std::fs::write(&signin_file, signins).unwrap();
    std::fs::write(&audit_file, audit).unwrap();
    let expect = BTreeMap::from([
        ("tw-token-without-signin", tokens + 1),
        ("tw-owa-token-for-resource", 6),
    ]);
    (vec![signin_file, audit_file], expect)
}

/// Writes a tokenward gateway access log with bursts of refused tokens;
/// returns it and the bursts the built-in must find.
fn write_gateway(dir: &Path) -> (PathBuf, BTreeMap<&'static str, usize>) {
    let mut out = String::new();
    let mut n = 0;
    // (client address, minute after 2024-08-01T10:00, second, verdict, how many)
    let mut line = |ip: Option<&str>, minute: u32, second: u32, verdict: &str, count: u32| {
        for k in 0..count {
            n += 1;
            let mut v = json!({
                "time": format!("2024-08-01T{:02}:{:02}:{second:02}.{k:03}Z", 10 + minute / 60, minute % 60),
                "method": "GET", "path": "/api/mail", "status": if verdict == "accepted" { 200 } else { 401 },
                "verdict": verdict, "reasons": if verdict == "rejected" { json!(["key-out-of-scope"]) } else { json!([]) },
                "kid": "1LTMzakihiRla_8z2BEJVXeWMqo", "sub": format!("user{k}@tenant0.example"),
                "token_sha256_prefix": format!("{n:016x}")
            });
            if let Some(ip) = ip {
                v["client_ip"] = json!(ip);
            }
            out.push_str(&v.to_string());
            out.push('\n');
        }
    };
    let a = Some("203.0.113.70");
    // Three minutes of eight in five minutes open a burst; the next
    // window (8 + 8 + 5) extends it; the last window alone and 19 at
    // minute 12 do not.
    line(a, 0, 10, "rejected", 8);
    line(a, 2, 10, "rejected", 8);
    line(a, 4, 10, "rejected", 8);
    line(a, 6, 10, "rejected", 5);
    line(a, 12, 10, "rejected", 19);
    // A burst whose minute had an accepted token before its first
    // refusal only: medium.
    line(a, 30, 5, "accepted", 1);
    line(a, 30, 10, "rejected", 20);
    // A burst followed by an accepted token an hour after its last
    // minute (high), and one a minute later that does not count.
    line(a, 100, 10, "rejected", 10);
    line(a, 104, 10, "rejected", 10);
    line(a, 164, 59, "accepted", 1);
    line(a, 165, 0, "accepted", 1);
    // Another address just under the threshold, and refusals without an
    // address (not placed).
    line(Some("203.0.113.71"), 0, 0, "rejected", 19);
    line(None, 0, 0, "rejected", 30);
    let path = dir.join("gateway.jsonl");
    std::fs::write(&path, out).unwrap();
    (path, BTreeMap::from([("tw-gateway-rejected-burst", 3)]))
}

#[test]
fn compiled_rules_find_what_hunt_finds_in_chdb_and_spark() {
    let dir = tempfile::tempdir().unwrap();
    let (tenant, expect) = write_tenant(dir.path());
    let (mut storm, mut storm_expect) = write_storm(dir.path());
    let (gateway, gateway_expect) = write_gateway(dir.path());
    storm.push(gateway);
    storm_expect.extend(gateway_expect);
    let generated: Vec<&str> = std::iter::once(tenant.to_str().unwrap())
        .chain(storm.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let hostile = dir.path().join("hostile.yml");
    std::fs::write(&hostile, HOSTILE_RULES).unwrap();
    let placeholders = dir.path().join("placeholders.yml");
    std::fs::write(
        &placeholders,
        "UnLegitCountries: [XX]\nUnApprovedIp: ['195.26.87.219']\nUnApprovedDevice: [none]\n\
         KNOWN_LOCATION: [DE]\nKnown_Location: [DE]\nImportant_AppIds: ['00000002-0000-0ff1-ce00-000000000000']\n\
         HomeTenantID: ['7c3a1c5e-0f2b-4c7e-9f1a-2b6d3e4f5a60']\nApprovedUsers: [admin]\nApprovedInviters: [admin]\n",
    )
    .unwrap();
    let mut inputs = vec!["examples/storm-0558/logs", "tests/fixtures/logs"];
    inputs.extend(&generated);
    let rule_args = [
        "--rules",
        "rules",
        "--rules",
        "tests/fixtures/sigma",
        "--rules",
        hostile.to_str().unwrap(),
        "--sigma-placeholders",
        placeholders.to_str().unwrap(),
    ];

    // hunt, the reference.
    let mut args = vec!["hunt", "-q", "--output-format", "jsonl"];
    args.extend(&inputs);
    args.extend(rule_args);
    let hunt = tokenward(&args);
    assert!(
        hunt.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&hunt.stderr)
    );
    let hunt_findings = lines(&hunt.stdout);

    // The known answer, first from hunt itself: per generated file set.
    for (files, expect) in [
        (vec![tenant.clone()], &expect),
        (storm.clone(), &storm_expect),
    ] {
        let mut per_rule: BTreeMap<String, usize> = BTreeMap::new();
        for f in &hunt_findings {
            if files
                .iter()
                .any(|p| f["source_file"].as_str() == p.to_str())
            {
                *per_rule
                    .entry(f["rule_id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        for (rule, n) in expect {
            assert_eq!(
                per_rule.get(*rule).copied().unwrap_or(0),
                *n,
                "hunt on the generated tenants, rule {rule}: {:#?}",
                hunt_findings
                    .iter()
                    .filter(|f| f["rule_id"] == *rule)
                    .collect::<Vec<_>>()
            );
        }
    }

    // Every built-in detection finds something here, so that its
    // equality below is not that of two empty sets.
    let help = String::from_utf8_lossy(&tokenward(&["hunt", "--help"]).stdout).to_string();
    let builtins: Vec<&str> = help
        .lines()
        .find_map(|l| l.strip_prefix("Detections: "))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|w| w.starts_with("tw-"))
        .collect();
    assert!(builtins.len() >= 13, "{help}");
    for id in &builtins {
        assert!(
            hunt_findings.iter().any(|f| f["rule_id"] == *id),
            "no finding of {id} to compare"
        );
    }

    let events = dir.path().join("events.jsonl");
    let mut args = vec!["events", "-q", "-o", events.to_str().unwrap()];
    args.extend(&inputs);
    assert!(tokenward(&args).status.success());

    for dialect in ["clickhouse", "spark"] {
        let mut args = vec!["sql", "--dialect", dialect, "-q"];
        args.extend(rule_args);
        let sql = tokenward(&args);
        let stderr = String::from_utf8_lossy(&sql.stderr).to_string();
        // Nothing refused: every rule, correlation and built-in detection
        // is compiled.
        let refused: Vec<&str> = stderr.lines().filter(|l| l.contains("refused")).collect();
        assert!(refused.is_empty(), "{dialect}: refusals:\n{stderr}");
        let compiled_ids: BTreeSet<String> = hunt_findings
            .iter()
            .map(|f| f["rule_id"].as_str().unwrap().to_owned())
            .filter(|id| !refused.iter().any(|l| l.contains(id.as_str())))
            .collect();
        let script = dir.path().join(format!("{dialect}.sql"));
        std::fs::write(&script, &sql.stdout).unwrap();
        let schema = tokenward(&["sql", "--dialect", dialect, "--schema"]);
        let schema_file = dir.path().join(format!("{dialect}.schema"));
        std::fs::write(&schema_file, &schema.stdout).unwrap();

        let mut cmd = std::process::Command::new(python());
        match dialect {
            "clickhouse" => cmd
                .arg(repo().join("tests/sql/findings_chdb.py"))
                .args([&schema_file, &events, &script])
                .arg(dir.path().join("chdb")),
            _ => cmd.arg(repo().join("tests/sql/findings_spark.py")).args([
                &schema_file,
                &events,
                &script,
            ]),
        };
        let out = cmd.current_dir(repo()).output().unwrap();
        assert!(
            out.status.success(),
            "{dialect}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Findings are counted, not only told apart: a gap of two
        // workloads at the same hour is two findings with one key.
        let count = |fs: &mut dyn Iterator<Item = &Value>| {
            let mut m: BTreeMap<Key, usize> = BTreeMap::new();
            for f in fs {
                *m.entry(key(f)).or_default() += 1;
            }
            m
        };
        let engine_lines = lines(&out.stdout);
        let engine = count(&mut engine_lines.iter());
        let want = count(
            &mut hunt_findings
                .iter()
                .filter(|f| compiled_ids.contains(f["rule_id"].as_str().unwrap())),
        );
        let differ = |a: &BTreeMap<Key, usize>, b: &BTreeMap<Key, usize>| -> Vec<(Key, usize)> {
            a.iter()
                .filter(|(k, n)| b.get(*k) != Some(n))
                .map(|(k, n)| (k.clone(), *n))
                .collect()
        };
        let missing = differ(&want, &engine);
        let extra = differ(&engine, &want);
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{dialect}: {} findings from hunt, {} from the engine\nmissing (with hunt's count): {missing:#?}\nextra (with the engine's count): {extra:#?}",
            want.values().sum::<usize>(),
            engine.values().sum::<usize>()
        );
        assert!(want.len() > 40, "{dialect}: only {} findings", want.len());
    }
}
