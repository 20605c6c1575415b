//! Semantics tests: each modifier, condition form, null/absent-field case
//! and correlation type, with events that must match and events that must
//! not.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use tokenward_event::{Event, Locator, Words};
use tokenward_spill::spilling::{StateDisk, DEFAULT_STATE_MEMORY};

/// A rule over m365/audit with the given detection (YAML, indented by 4).
fn rule(detection: &str) -> String {
    format!(
        "title: t\nid: r1\nauthor: someone\nlevel: high\nlogsource:\n    product: m365\n    service: audit\ndetection:\n{detection}\n"
    )
}

fn set_of(text: &str) -> RuleSet {
    set_with(text, &Placeholders::new())
}

fn set_with(text: &str, ph: &Placeholders) -> RuleSet {
    let s = RuleSet::from_texts([("t.yml", false, text)], mapping::builtin(), ph);
    let errs: Vec<String> = s.errors().map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    s
}

fn audit(v: Value) -> Event {
    let mut v = v;
    let m = v.as_object_mut().expect("object");
    m.entry("CreationTime")
        .or_insert(json!("2023-06-15T10:00:00"));
    m.entry("Operation").or_insert(json!("Op"));
    Event::from_record(v, None, Arc::from("f"), Locator { line: 1, record: 1 })
}

fn hits(s: &RuleSet, ev: &Event) -> usize {
    let mut out = Vec::new();
    s.eval(ev, &mut out);
    out.len()
}

/// Asserts which of the events a detection matches.
fn check(detection: &str, yes: &[Value], no: &[Value]) {
    let s = set_of(&rule(detection));
    assert_eq!(s.rules.len(), 1, "rule did not load: {:?}", s.issues);
    for v in yes {
        assert_eq!(
            hits(&s, &audit(v.clone())),
            1,
            "should match: {v}\n{detection}"
        );
    }
    for v in no {
        assert_eq!(
            hits(&s, &audit(v.clone())),
            0,
            "should not match: {v}\n{detection}"
        );
    }
}

#[test]
fn plain_values_are_case_insensitive_and_lists_are_or() {
    check(
        "    sel:\n        A: Foo\n        B:\n            - x\n            - 'y'\n    condition: sel",
        &[json!({"A": "FOO", "B": "y"}), json!({"A": "foo", "B": "X"})],
        &[json!({"A": "foo", "B": "z"}), json!({"A": "foox", "B": "x"}), json!({"B": "x"})],
    );
}

#[test]
fn cased() {
    check(
        "    sel:\n        A|cased: Foo\n    condition: sel",
        &[json!({"A": "Foo"})],
        &[json!({"A": "foo"})],
    );
}

#[test]
fn contains_startswith_endswith_all() {
    check(
        "    sel:\n        A|contains: mid\n        B|startswith: pre\n        C|endswith: post\n    condition: sel",
        &[json!({"A": "aMIDb", "B": "PREfix", "C": "a-post"})],
        &[
            json!({"A": "aMIb", "B": "prefix", "C": "a-post"}),
            json!({"A": "mid", "B": "xpre", "C": "post"}),
            json!({"A": "mid", "B": "pre", "C": "postx"}),
        ],
    );
    check(
        "    sel:\n        A|contains|all:\n            - one\n            - two\n    condition: sel",
        &[json!({"A": "two and one"})],
        &[json!({"A": "one only"})],
    );
}

#[test]
fn wildcards_and_escapes_in_values() {
    check(
        "    sel:\n        A: 'a*c?e'\n        B: 'lit\\*'\n    condition: sel",
        &[json!({"A": "abbbcde", "B": "lit*"})],
        &[
            json!({"A": "abbbce", "B": "lit*"}),
            json!({"A": "abcde", "B": "litx"}),
        ],
    );
}

#[test]
fn regex_with_flags() {
    check(
        "    sel:\n        A|re: '^ab[0-9]+$'\n    condition: sel",
        &[json!({"A": "ab12"})],
        &[json!({"A": "AB12"}), json!({"A": "xab12"})],
    );
    check(
        "    sel:\n        A|re|i: '^ab[0-9]+$'\n    condition: sel",
        &[json!({"A": "AB12"})],
        &[json!({"A": "AB"})],
    );
    check(
        "    sel:\n        A|re|m: '^two$'\n    condition: sel",
        &[json!({"A": "one\ntwo"})],
        &[json!({"A": "one two"})],
    );
    check(
        "    sel:\n        A|re|s: 'one.two'\n    condition: sel",
        &[json!({"A": "one\ntwo"})],
        &[json!({"A": "one\n\ntwo"})],
    );
}

#[test]
fn cidr() {
    check(
        "    sel:\n        ClientIP|cidr:\n            - 10.0.0.0/8\n            - 2001:db8::/32\n    condition: sel",
        &[json!({"ClientIP": "10.2.3.4"}), json!({"ClientIP": "[2001:db8::1]:443"}), json!({"ClientIPAddress": "10.9.9.9"})],
        &[json!({"ClientIP": "11.2.3.4"}), json!({"ClientIP": "garbage"})],
    );
}

#[test]
fn base64_and_offsets_and_utf16() {
    check(
        "    sel:\n        A|base64: cmd\n    condition: sel",
        &[json!({"A": "Y21k"})],
        &[json!({"A": "cmd"})],
    );
    check(
        "    sel:\n        A|base64offset|contains: 'http://'\n    condition: sel",
        &[
            json!({"A": "aHR0cDovL2V4YW1wbGU="}),
            json!({"A": "eGh0dHA6Ly9leGFtcGxl"}),
            json!({"A": "eHlodHRwOi8vZXhhbXBsZQ=="}),
        ],
        &[json!({"A": "aHR0cHM6Ly9leGFtcGxl"})],
    );
    for m in ["utf16le", "wide"] {
        check(
            &format!("    sel:\n        A|{m}|base64offset|contains: 'cmd'\n    condition: sel"),
            &[json!({"A": "YwBtAGQA"})],
            &[json!({"A": "Y21k"})],
        );
    }
    check(
        "    sel:\n        A|utf16be|base64: 'cmd'\n    condition: sel",
        &[json!({"A": "AGMAbQBk"})],
        &[json!({"A": "YwBtAGQA"})],
    );
    check(
        "    sel:\n        A|utf16|base64: 'cmd'\n    condition: sel",
        &[json!({"A": "//5jAG0AZAA="})],
        &[json!({"A": "YwBtAGQA"})],
    );
}

#[test]
fn windash() {
    check(
        "    sel:\n        A|windash|contains: ' -exec '\n    condition: sel",
        &[
            json!({"A": "x /exec y"}),
            json!({"A": "x \u{2014}exec y"}),
            json!({"A": "x -exec y"}),
        ],
        &[json!({"A": "x exec y"})],
    );
}

#[test]
fn exists() {
    check(
        "    sel:\n        A|exists: true\n    condition: sel",
        &[json!({"A": ""}), json!({"A": null})],
        &[json!({"B": 1})],
    );
    check(
        "    sel:\n        A|exists: false\n    condition: sel",
        &[json!({"B": 1})],
        &[json!({"A": "x"})],
    );
}

#[test]
fn fieldref() {
    check(
        "    sel:\n        A|fieldref: B\n    condition: sel",
        &[json!({"A": "Same", "B": "same"})],
        &[json!({"A": "x", "B": "y"}), json!({"A": "x"})],
    );
    check(
        "    sel:\n        A|fieldref|neq: B\n    condition: sel",
        &[json!({"A": "x", "B": "y"})],
        &[json!({"A": "x", "B": "x"})],
    );
    check(
        "    sel:\n        A|fieldref|startswith: B\n    condition: sel",
        &[json!({"A": "prefix-rest", "B": "prefix"})],
        &[json!({"A": "rest", "B": "prefix"})],
    );
}

#[test]
fn numeric_comparisons() {
    check(
        "    sel:\n        N|gt: 10\n        M|lte: 5\n    condition: sel",
        &[json!({"N": 11, "M": 5}), json!({"N": "10.5", "M": "-1"})],
        &[
            json!({"N": 10, "M": 5}),
            json!({"N": 11, "M": 6}),
            json!({"N": "abc", "M": 1}),
        ],
    );
    check(
        "    sel:\n        N|gte: 10\n        M|lt: 5\n    condition: sel",
        &[json!({"N": 10, "M": 4})],
        &[json!({"N": 9, "M": 4}), json!({"N": 10, "M": 5})],
    );
}

#[test]
fn neq() {
    check(
        "    sel:\n        A|neq:\n            - x\n            - y\n    condition: sel",
        &[json!({"A": "z"})],
        &[json!({"A": "X"}), json!({"A": "y"}), json!({"B": "z"})],
    );
    check(
        "    sel:\n        N|neq: 5\n    condition: sel",
        &[json!({"N": 6})],
        &[json!({"N": 5})],
    );
}

#[test]
fn expand_placeholders() {
    let mut ph = Placeholders::new();
    ph.insert("Admins".into(), vec!["alice@*".into(), "bob@x".into()]);
    let s = set_with(
        &rule("    sel:\n        UserId|expand: '%Admins%'\n    condition: sel"),
        &ph,
    );
    assert_eq!(hits(&s, &audit(json!({"UserId": "alice@contoso"}))), 1);
    assert_eq!(hits(&s, &audit(json!({"UserId": "BOB@x"}))), 1);
    assert_eq!(hits(&s, &audit(json!({"UserId": "carol@x"}))), 0);
    // Without values the rule loads but cannot run, and says why.
    let s = RuleSet::from_texts(
        [(
            "t.yml",
            false,
            rule("    sel:\n        UserId|expand: '%Admins%'\n    condition: sel").as_str(),
        )],
        mapping::builtin(),
        &Placeholders::new(),
    );
    assert!(s.rules.is_empty());
    assert_eq!(s.issues.len(), 1);
    assert_eq!(s.issues[0].kind, "needs-placeholders");
    assert!(s.issues[0].reason.contains("%Admins%"));
    // Without `expand`, %name% is literal.
    check(
        "    sel:\n        A: '%Admins%'\n    condition: sel",
        &[json!({"A": "%admins%"})],
        &[json!({"A": "alice@x"})],
    );
}

#[test]
fn time_parts() {
    check(
        "    sel:\n        CreationTime|hour|gte: 22\n    condition: sel",
        &[json!({"CreationTime": "2023-06-15T23:10:00"})],
        &[json!({"CreationTime": "2023-06-15T10:00:00"})],
    );
    for (m, v) in [
        ("minute", 7),
        ("day", 15),
        ("week", 24),
        ("month", 6),
        ("year", 2023),
    ] {
        check(
            &format!("    sel:\n        CreationTime|{m}: {v}\n    condition: sel"),
            &[json!({"CreationTime": "2023-06-15T22:07:09Z"})],
            &[json!({"CreationTime": "2022-07-16T21:08:09Z"})],
        );
    }
}

#[test]
fn null_and_empty_and_absent() {
    // null: absent or JSON null; '' only the empty string.
    check(
        "    sel:\n        A: null\n    condition: sel",
        &[json!({"A": null}), json!({"B": "x"})],
        &[json!({"A": ""}), json!({"A": "x"})],
    );
    check(
        "    sel:\n        A: ''\n    condition: sel",
        &[json!({"A": ""})],
        &[json!({"A": null}), json!({"B": 1}), json!({"A": "x"})],
    );
    // An absent field never breaks an `or`: the other branch still matches.
    check(
        "    a:\n        Missing: x\n    b:\n        B: y\n    condition: a or b",
        &[json!({"B": "y"})],
        &[json!({"B": "z"})],
    );
    // ...and `not` over an absent field is true.
    check(
        "    sel:\n        B: y\n    f:\n        Missing: x\n    condition: sel and not f",
        &[json!({"B": "y"})],
        &[json!({"B": "y", "Missing": "X"})],
    );
    // Lists of maps: alternatives, one with an absent field.
    check(
        "    sel:\n        - Missing: x\n        - B|startswith: y\n    condition: sel",
        &[json!({"B": "yes"})],
        &[json!({"B": "no"})],
    );
}

#[test]
fn condition_forms() {
    let d = "    selection_a:\n        A: 1\n    selection_b:\n        B: 1\n    filter_x:\n        F: 1\n    _private:\n        P: 1\n";
    check(
        &format!("{d}    condition: 1 of selection_* and not 1 of filter_*"),
        &[json!({"A": 1}), json!({"B": "1"})],
        &[json!({"A": 1, "F": 1}), json!({"C": 1})],
    );
    check(
        &format!("{d}    condition: all of selection_*"),
        &[json!({"A": 1, "B": 1})],
        &[json!({"A": 1})],
    );
    check(
        &format!("{d}    condition: all of them"),
        &[json!({"A": 1, "B": 1, "F": 1})],
        &[json!({"A": 1, "B": 1})],
    );
    check(
        &format!("{d}    condition: 1 of them"),
        &[json!({"F": 1})],
        &[json!({"P": 1})],
    );
    check(
        &format!("{d}    condition: (selection_a or selection_b) and not (filter_x or _private)"),
        &[json!({"B": 1})],
        &[json!({"B": 1, "P": 1})],
    );
    check(
        &format!("{d}    condition:\n        - selection_a and filter_x\n        - _private"),
        &[json!({"A": 1, "F": 1}), json!({"P": 1})],
        &[json!({"A": 1})],
    );
}

#[test]
fn keywords() {
    check(
        "    keywords:\n        - 'listKeys/action'\n        - 'snapshots/write'\n    condition: keywords",
        &[json!({"Nested": {"Deep": ["Microsoft.Storage/storageAccounts/LISTKEYS/action"]}})],
        &[json!({"X": "listKeys"})],
    );
    check(
        "    keywords:\n        '|all':\n            - 'alpha'\n            - 'beta'\n    condition: keywords",
        &[json!({"X": "alpha", "Y": "xBETAx"})],
        &[json!({"X": "alpha"})],
    );
}

/// A keyword (`contains`, cased or not) is searched for in all of a
/// record's words at once: it matches exactly where some word holds it, as
/// searching each word does, across words of any case, non-ASCII words
/// whose lower case differs in length, numbers and booleans, and never
/// where it only spans two words.
#[test]
fn keywords_match_where_a_word_holds_them() {
    let mut rng = fastrand::Rng::with_seed(40);
    let pieces = [
        "Write",
        "write",
        "Microsoft.Compute/",
        "virtualMachines",
        "ÉCOLE",
        "école",
        "ǅ",
        "\u{212a}elvin",
        "İstanbul",
        "ab",
        "cd",
        "ß",
        "x",
    ];
    let needles = [
        "compute/virtualmachines",
        "Compute/virtualMachines",
        "école",
        "kelvin",
        "i\u{307}stanbul",
        "bc",
        "abcd",
        "ss",
        "true",
        "12.5",
        "ǆ",
    ];
    let word = |rng: &mut fastrand::Rng| -> String {
        (0..rng.usize(1..4))
            .map(|_| pieces[rng.usize(..pieces.len())])
            .collect()
    };
    let sets: Vec<(&str, bool, RuleSet)> = needles
        .iter()
        .flat_map(|&needle| {
            [false, true].map(|cased| {
                let detection = if cased {
                    format!("    keywords:\n        '|cased':\n            - '{needle}'\n    condition: keywords")
                } else {
                    format!("    keywords:\n        - '{needle}'\n    condition: keywords")
                };
                (needle, cased, set_of(&rule(&detection)))
            })
        })
        .collect();
    let mut matched = [0usize; 2];
    for _ in 0..400 {
        let mut record = serde_json::Map::new();
        for k in 0..rng.usize(1..6) {
            let v = match rng.u8(..6) {
                0 => json!(rng.bool()),
                1 => json!(12.5),
                2 => json!([word(&mut rng), word(&mut rng)]),
                3 => json!({"Inner": word(&mut rng)}),
                _ => json!(word(&mut rng)),
            };
            record.insert(format!("F{k}"), v);
        }
        record.insert("CreationTime".into(), json!("2023-06-15T10:00:00"));
        record.insert("Operation".into(), json!("Op"));
        let record = Value::Object(record);
        let mut words = Vec::new();
        fn scalars(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => m.values().for_each(|x| scalars(x, out)),
                Value::Array(a) => a.iter().for_each(|x| scalars(x, out)),
                Value::String(s) => out.push(s.clone()),
                Value::Null => {}
                other => out.push(other.to_string()),
            }
        }
        scalars(&record, &mut words);
        let ev = audit(record);
        for (needle, cased, s) in &sets {
            let want = if *cased {
                words.iter().any(|w| w.contains(needle))
            } else {
                let needle = needle.to_lowercase();
                words.iter().any(|w| w.to_lowercase().contains(&needle))
            };
            assert_eq!(
                hits(s, &ev) == 1,
                want,
                "{needle} cased={cased} in {words:?}"
            );
            matched[usize::from(want)] += 1;
        }
    }
    assert!(matched[0] > 1000 && matched[1] > 1000, "{matched:?}");
}

/// Records a keyword rule cannot match are screened out by
/// `wants_whole`, so hunt projects them; every rule then answers on the
/// projected event as on the full one.
#[test]
fn keyword_rules_need_whole_records_only_where_their_anchors_are() {
    let keyword = rule("    keywords:\n        - 'listKeys/action'\n    condition: keywords");
    let negated = rule(
        "    selection:\n        Operation: 'Set-Mailbox'\n    keywords:\n        - 'trusted-change'\n    condition: selection and not keywords",
    )
    .replace("id: r1", "id: r2");
    let field = rule("    selection:\n        Operation: 'FileDeleted'\n    condition: selection")
        .replace("id: r1", "id: r3");
    let s = set_of(&format!("{keyword}---\n{negated}---\n{field}"));
    assert_eq!(s.rules.len(), 3, "{:?}", s.issues);
    assert!(s.reads_whole_records());
    let mut projection = tokenward_event::normalising_projection();
    for p in s.paths() {
        projection.add(&p);
    }
    let projection = Arc::new(projection);
    let ids = |ev: &Event| {
        let mut out = Vec::new();
        s.eval(ev, &mut out);
        let mut ids: Vec<String> = out
            .iter()
            .map(|h| s.rules[h.rule].meta.id.to_string())
            .collect();
        ids.sort();
        ids
    };
    let records = [
        (json!({"Operation": "FileDeleted"}), false, vec!["r3"]),
        (
            json!({"Operation": "FileDeleted", "Target": "x/LISTKEYS/ACTION"}),
            true,
            vec!["r1", "r3"],
        ),
        (
            json!({"Operation": "Set-Mailbox", "Note": "ordinary"}),
            true,
            vec!["r2"],
        ),
        (
            json!({"Operation": "Set-Mailbox", "Note": "trusted-change"}),
            true,
            vec![],
        ),
        (
            json!({"Operation": "Other", "Note": "trusted-change"}),
            false,
            vec![],
        ),
    ];
    for (v, whole, want) in records {
        let mut v = v;
        v["CreationTime"] = json!("2023-06-15T10:00:00");
        let text = v.to_string();
        assert_eq!(s.wants_whole(text.as_bytes()), whole, "{text}");
        let full = audit(v.clone());
        assert_eq!(ids(&full), want, "full {text}");
        if !whole {
            let tokenward_event::Projected::Object(p) = projection.parse(&text).unwrap() else {
                panic!("an object projects")
            };
            let ev =
                Event::from_projected(p, projection.clone(), None, Arc::from("f"), full.locator);
            assert_eq!(ids(&ev), want, "projected {text}");
        } else {
            // Projected, carrying its words, as hunt hands it.
            assert!(s.reads_words_alone());
            let tokenward_event::Projected::Object(p) = projection.parse(&text).unwrap() else {
                panic!("an object projects")
            };
            let mut ev =
                Event::from_projected(p, projection.clone(), None, Arc::from("f"), full.locator);
            ev.words = Words::of_json(&text).map(Box::new);
            assert!(ev.words.is_some());
            assert_eq!(ids(&ev), want, "projected with words {text}");
        }
    }
    // A set without keyword rules never needs whole records.
    let fields_only = set_of(&rule(
        "    selection:\n        Operation: 'FileDeleted'\n    condition: selection",
    ));
    assert!(!fields_only.reads_whole_records());
    assert!(!fields_only.wants_whole(br#"{"Operation":"FileDeleted","X":"listKeys/action"}"#));
    // A keyword without an anchor text (too short to screen for) makes
    // every record whole.
    let unanchored = set_of(&rule(
        "    keywords:\n        - 'ab'\n    condition: keywords",
    ));
    assert!(unanchored.wants_whole(br#"{"Operation":"FileDeleted"}"#));
}

/// Keyword rules are matched on a record's words alone only where every
/// keyword is a text some value contains: a pattern, or one of a long list
/// (matched value by value through sets), reads the record built whole.
#[test]
fn only_contained_keywords_are_read_in_words_alone() {
    let contained = set_of(&rule(
        "    keywords:\n        - 'listKeys/action'\n        - 'snapshots/write'\n    condition: keywords",
    ));
    assert!(contained.reads_words_alone());
    let long: String = (0..16)
        .map(|i| format!("        - 'keyword-number-{i}'\n"))
        .collect();
    for detection in [
        "    keywords:\n        - 'listKeys*action'\n    condition: keywords".to_string(),
        "    keywords:\n        '|re': 'list[K]eys/action'\n    condition: keywords".to_string(),
        format!("    keywords:\n{long}    condition: keywords"),
    ] {
        let s = set_of(&rule(&detection));
        assert_eq!(s.rules.len(), 1, "{detection}");
        assert!(s.reads_whole_records(), "{detection}");
        assert!(!s.reads_words_alone(), "{detection}");
    }
}

#[test]
fn nested_paths_and_selectors() {
    check(
        "    sel:\n        AppAccessContext.ClientAppId: abc\n        Parameters|contains: 'ForwardTo'\n    condition: sel",
        &[json!({"AppAccessContext": {"ClientAppId": "ABC"}, "Parameters": [{"Name": "ForwardTo", "Value": "x@y"}]})],
        &[json!({"AppAccessContext": {"ClientAppId": "abd"}, "Parameters": [{"Name": "ForwardTo"}]})],
    );
}

#[test]
fn logsource_scopes_rules() {
    let s = set_of(&rule("    sel:\n        Operation: Op\n    condition: sel"));
    assert_eq!(hits(&s, &audit(json!({}))), 1);
    // A sign-in with the same field is not an m365/audit record.
    let signin = Event::from_record(
        json!({"createdDateTime": "2023-06-15T10:00:00Z", "userPrincipalName": "a@b", "status": {"errorCode": 0}, "Operation": "Op"}),
        None,
        Arc::from("f"),
        Locator::default(),
    );
    assert_eq!(signin.kind, EventKind::SignIn);
    assert_eq!(hits(&s, &signin), 0);
}

/// Told a record's kind, the screen searches only for the texts of the
/// rules written for that kind; told nothing, for every rule's.
#[test]
fn screens_told_a_kind_search_that_kinds_rules_only() {
    let s = RuleSet::from_texts(
        [
            (
                "audit.yml",
                false,
                "title: a\nid: a1\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: New-InboxRule\n    condition: sel\n",
            ),
            (
                "signin.yml",
                false,
                "title: s\nid: s1\nlogsource:\n    product: azure\n    service: signinlogs\ndetection:\n    sel:\n        ResultType: 50126\n    condition: sel\n",
            ),
        ],
        mapping::builtin(),
        &Placeholders::new(),
    );
    let ual = br#"{"CreationTime":"2023-06-15T10:00:00","Operation":"New-InboxRule"}"#;
    let signin = br#"{"createdDateTime":"2023-06-15T10:00:00Z","status":{"errorCode":50126},"ResultType":"50126"}"#;
    assert!(s.wants(ual) && s.wants(signin));
    assert!(s.wants_kind(EventKind::Audit, ual));
    assert!(!s.wants_kind(EventKind::SignIn, ual));
    assert!(s.wants_kind(EventKind::SignIn, signin));
    assert!(!s.wants_kind(EventKind::Audit, signin));
    // No rule is written for Azure Activity records.
    assert!(!s.wants_kind(EventKind::AzureActivity, ual));
    // A rule without texts of its own is screened with its log source's
    // texts, for records of its kind only.
    let s = set_of(&rule("    sel:\n        N|gt: 5\n    condition: sel"));
    assert!(s.wants_kind(EventKind::Audit, br#"{"operation": "x"}"#));
    assert!(!s.wants_kind(EventKind::SignIn, br#"{"operation": "x"}"#));
}

#[test]
fn signin_fields_resolve_across_formats() {
    let s = RuleSet::from_texts(
        [(
            "t.yml",
            false,
            "title: t\nid: s1\nlogsource:\n    product: azure\n    service: signinlogs\ndetection:\n    sel:\n        ResultType: 50126\n    condition: sel\n",
        )],
        mapping::builtin(),
        &Placeholders::new(),
    );
    let graph = json!({"createdDateTime": "2023-06-15T10:00:00Z", "userPrincipalName": "a@b", "status": {"errorCode": 50126}});
    let monitor = json!({"time": "2023-06-15T10:00:00Z", "category": "SignInLogs", "resultType": "50126", "properties": {"createdDateTime": "2023-06-15T10:00:00Z", "status": {"errorCode": 50126}}});
    let la = json!({"TimeGenerated": "2023-06-15T10:00:00Z", "Type": "SigninLogs", "ResultType": "50126"});
    for v in [graph, monitor, la] {
        let ev = Event::from_record(v.clone(), None, Arc::from("f"), Locator::default());
        assert_eq!(hits(&s, &ev), 1, "{v}");
    }
    let ok = json!({"createdDateTime": "2023-06-15T10:00:00Z", "userPrincipalName": "a@b", "status": {"errorCode": 0}});
    let ev = Event::from_record(ok, None, Arc::from("f"), Locator::default());
    assert_eq!(hits(&s, &ev), 0);
}

#[test]
fn load_errors_name_file_rule_and_reason() {
    let text = format!(
        "{}---\ntitle: bad\nid: bad-1\nlogsource: {{product: m365, service: audit}}\ndetection:\n    sel:\n        A|nosuch: x\n    condition: sel\n---\ntitle: bad2\nid: bad-2\nlogsource: {{product: m365, service: audit}}\ndetection:\n    sel:\n        A: x\n    condition: sel and nothere\n---\ntitle: win\nid: w-1\nlogsource: {{product: windows, category: process_creation}}\ndetection:\n    sel:\n        Image|endswith: '\\\\cmd.exe'\n    condition: sel\n---\nid: y-1\ntitle: [broken\n",
        rule("    sel:\n        A: x\n    condition: sel")
    );
    let s = RuleSet::from_texts(
        [("rules.yml", false, text.as_str())],
        mapping::builtin(),
        &Placeholders::new(),
    );
    assert_eq!(s.rules.len(), 1, "the good rule still runs");
    let by_rule = |id: &str| {
        s.issues
            .iter()
            .find(|i| i.rule.as_deref() == Some(id))
            .unwrap()
    };
    assert!(by_rule("bad-1")
        .reason
        .contains("unknown modifier `nosuch`"));
    assert_eq!(by_rule("bad-1").kind, "error");
    assert_eq!(by_rule("bad-1").file, "rules.yml");
    assert!(by_rule("bad-2")
        .reason
        .contains("unknown search identifier `nothere`"));
    assert_eq!(by_rule("w-1").kind, "inapplicable");
    assert!(by_rule("w-1").reason.contains("product: windows"));
    assert_eq!(by_rule("y-1").kind, "error");
    assert!(by_rule("y-1").reason.contains("YAML error"));
    assert_eq!(s.errors().count(), 3);
}

#[test]
fn prefilter_literals() {
    let s = set_of(&rule(
        "    sel:\n        Operation: 'Set-Mailbox'\n        Parameters|contains: 'DeliverToMailboxAndForward'\n    condition: sel",
    ));
    // The most selective item: its value and its key must both be there.
    let v = |x: &[&[&str]]| -> Vec<Vec<String>> {
        x.iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    assert_eq!(
        s.rules[0].literals,
        Some(vec![v(&[&["delivertomailboxandforward"], &["Parameters"]])])
    );
    assert!(s.wants(br#"{"Operation":"Set-Mailbox","Parameters":"[{\"Name\":\"DeliverToMailboxAndForward\"}]"}"#));
    assert!(!s.wants(br#"{"Operation":"Set-Mailbox"}"#));
    assert!(!s.wants(br#"{"Operation":"DeliverToMailboxAndForward"}"#));
    // A rule with no literal of its own falls back to its log source's.
    let s = set_of(&rule("    sel:\n        N|gt: 5\n    condition: sel"));
    assert_eq!(s.rules[0].literals, Some(vec![v(&[&["Operation"]])]));
    assert!(s.wants(br#"{"operation": "x"}"#));
    assert!(!s.wants(br#"{"category": "x"}"#));
    // Every fragment of a value is required; fragments skip characters
    // exports escape.
    let s = set_of(&rule("    sel:\n        Action: 'Microsoft.Storage/storageAccounts/listKeys/action'\n    condition: sel"));
    assert_eq!(
        s.rules[0].literals,
        Some(vec![v(&[
            &["microsoft.storage"],
            &["storageaccounts"],
            &["listkeys"],
            &["action"],
            &["Action"]
        ])])
    );
    assert!(s.wants(br#"{"Action":"Microsoft.Storage\/storageAccounts\/listKeys\/action"}"#));
    assert!(!s.wants(br#"{"Action":"Microsoft.Storage/storageAccounts/write"}"#));
    // The SIMD screen finds what the automaton finds: any case, anchors
    // overlapping each other or sharing cover texts, short anchors.
    let s = set_of(&rule(
        "    sel:\n        Operation:\n            - 'Add-MailboxPermission'\n            - 'Add-Mailbox'\n            - 'ROPC'\n            - 'BAV2ROPC'\n            - 'box'\n            - 'New-InboxRule'\n    sel2:\n        ClientIP|cidr: 185.236.228.0/24\n    condition: sel or sel2",
    ));
    let RulesScreen::Anchored(p) = &s.screen else {
        panic!("no screen: {:?}", s.screen);
    };
    for r in [
        r#"{"Operation":"ADD-MAILBOXPERMISSION"}"#,
        r#"{"Operation":"add-mailbox"}"#,
        r#"{"Operation":"bav2ropc"}"#,
        r#"{"Operation":"BaV2RoPc"}"#,
        r#"{"Operation":"xRoPcx"}"#,
        r#"{"Operation":"inBOX"}"#,
        r#"{"Operation":"New-InboxRul"}"#,
        r#"{"Operation":"Add-Mailbo"}"#,
        r#"{"Operation":"Ad"}"#,
        r#"{"Operation":"x","ClientIP":"185.236.228.9"}"#,
        r#"{"Operation":"x","ClientIP":"185.236.229.9"}"#,
        r#"{"ClientIP":"185.236.228.9"}"#,
        r#"{"operation":"rop"}"#,
        r#"{"Operation":"New-InboxRule","N":"185.236.228.1"}"#,
    ] {
        let lower = r.to_ascii_lowercase();
        assert_eq!(
            s.wants(r.as_bytes()),
            p.wants_ac(lower.as_bytes(), &mut Vec::new()),
            "{r}"
        );
    }
    assert!(s.wants(br#"{"Operation":"BaV2RoPc"}"#));
    assert!(!s.wants(br#"{"Operation":"Add-Mailbo"}"#));
    // An anchor's alternatives are checked once in a record however often
    // it occurs, and afresh in the next record, on both paths.
    let s = set_of(&rule(
        "    sel:\n        Operation: 'New-InboxRule'\n        Target|contains: 'forwarding-rule'\n    condition: sel",
    ));
    let RulesScreen::Anchored(p) = &s.screen else {
        panic!("no screen: {:?}", s.screen);
    };
    let failing = r#"{"Operation":"Set-Mailbox","Note":"forwarding-rule, forwarding-rule"}"#;
    let holding = r#"{"Operation":"New-InboxRule","Target":"a forwarding-rule"}"#;
    assert!(!s.wants(failing.as_bytes()));
    assert!(s.wants(holding.as_bytes()));
    let mut checked = Vec::new();
    assert!(!p.wants_ac(failing.to_ascii_lowercase().as_bytes(), &mut checked));
    assert!(p.wants_ac(holding.to_ascii_lowercase().as_bytes(), &mut checked));
    // Values of characters longer than a byte (`——` is the `windash`
    // spelling of `--`) are no anchors (exports may escape them): the
    // field's key anchors the rule, so its records are screened in.
    let s = set_of(&rule(
        "    sel:\n        Operation:\n            - '微信'\n            - '——'\n            - 'é€'\n    condition: sel",
    ));
    for (r, wanted) in [
        (r#"{"Operation":"微信"}"#, true),
        (r#"{"Operation":"——"}"#, true),
        (r#"{"Operation":"\u00e9\u20ac"}"#, true),
        (r#"{"Other":"微信"}"#, false),
    ] {
        assert_eq!(s.wants(r.as_bytes()), wanted, "{r}");
    }
    // IPv4 networks give their whole octets; a negation gives nothing.
    let s = set_of(&rule(
        "    sel:\n        ClientIP|cidr: 10.1.0.0/16\n    condition: sel",
    ));
    assert_eq!(
        s.rules[0].literals,
        Some(vec![v(&[
            &["10.1."],
            &[
                "ClientIP",
                "ClientIPAddress",
                "Client_IPAddress",
                "ActorIpAddress"
            ]
        ])])
    );
}

fn corr_set(base: &str, corr: &str) -> RuleSet {
    let text = format!("{base}---\n{corr}");
    let s = RuleSet::from_texts(
        [("c.yml", false, text.as_str())],
        mapping::builtin(),
        &Placeholders::new(),
    );
    let errs: Vec<String> = s.errors().map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    s
}

const FAIL: &str = "title: failed\nid: fail-1\nname: failed_login\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: UserLoginFailed\n    condition: sel\n";
const OK: &str = "title: ok\nid: ok-1\nname: good_login\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: UserLoggedIn\n    condition: sel\n";

fn login(op: &str, user: &str, ip: &str, min: u32, extra: Value) -> Event {
    let mut v = json!({"CreationTime": format!("2023-06-15T10:{min:02}:00"), "Operation": op, "UserId": user, "ClientIP": ip});
    if let (Some(m), Some(x)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in x {
            m.insert(k.clone(), val.clone());
        }
    }
    Event::from_record(
        v,
        None,
        Arc::from("f"),
        Locator {
            line: min as u64 + 1,
            record: min as u64 + 1,
        },
    )
}

fn run_corr(s: RuleSet, evs: &[Event]) -> (Vec<Finding>, Vec<tokenward_event::Coverage>) {
    let s = Arc::new(s);
    let mut sig = Sigma::new(s.clone(), held_in_memory());
    for ev in evs {
        let mut hits = Vec::new();
        s.eval(ev, &mut hits);
        sig.absorb(hits);
    }
    let (f, st, _) = sig.finish();
    (f, st)
}

/// [`run_corr`] with windows decided early from the first match held
/// ([`Sigma::set_decide_early_from`]), as a hunt holding many matches does.
fn run_corr_deciding_early(s: RuleSet, evs: &[Event]) -> Vec<Finding> {
    let s = Arc::new(s);
    let mut sig = Sigma::new(s.clone(), held_in_memory());
    sig.set_decide_early_from(0);
    for ev in evs {
        let mut hits = Vec::new();
        s.eval(ev, &mut hits);
        sig.absorb(hits);
    }
    sig.finish().0
}

/// While few matches are held, every window is decided over all of its
/// matches when the hunt ends, whatever order they came in: a month's
/// second half read before its first (two files read side by side) loses
/// no burst. Decided early, as past [`correlate::DECIDE_EARLY_FROM`] matches, the
/// first half's bursts come after windows a day newer were decided.
#[test]
fn few_matches_are_decided_over_all_of_them_in_any_order() {
    let c = "title: c\nid: c-burst\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        gte: 3\n";
    let day = |d: i64| {
        (0..3).map(move |m| {
            let t = time::macros::datetime!(2023-06-01 10:00 UTC)
                + time::Duration::days(d)
                + time::Duration::minutes(m);
            Event::from_record(
                json!({"CreationTime": tokenward_event::timefmt::rfc3339(t),
                       "Operation": "UserLoginFailed", "UserId": "a"}),
                None,
                Arc::from("f"),
                Locator::default(),
            )
        })
    };
    // Days 30-59, then days 0-29.
    let evs: Vec<Event> = (30..60).chain(0..30).flat_map(day).collect();
    let (f, _) = run_corr(corr_set(FAIL, c), &evs);
    assert_eq!(f.len(), 60);
    let early = run_corr_deciding_early(corr_set(FAIL, c), &evs);
    assert!(early.len() < 60, "{} found deciding early", early.len());
}

#[test]
fn a_dense_group_over_many_days_costs_linear_work() {
    // One group, a match a minute for 20 days, a condition never met:
    // windows are decided while the hunt goes. Each match must enter and
    // leave a window's tally a bounded number of times, whatever the
    // number of matches in a timespan (deciding at every new match re-read
    // the whole kept day: 1,440 matches, each time).
    let c = "title: c\nid: c-lin\ncorrelation:\n    type: value_count\n    rules: [failed_login]\n    group-by: [Workload]\n    timespan: 1d\n    condition:\n        field: UserId\n        gte: 100000\n";
    let s = Arc::new(corr_set(FAIL, c));
    let n = 20 * 1440;
    let mut sig = Sigma::new(s.clone(), held_in_memory());
    sig.set_decide_early_from(0);
    super::correlate::TALLY_STEPS.with(|c| c.set(0));
    let start = time::macros::datetime!(2023-06-01 00:00 UTC);
    for i in 0..n {
        let t = start + time::Duration::minutes(i);
        let ev = Event::from_record(
            json!({"CreationTime": tokenward_event::timefmt::rfc3339(t), "Operation": "UserLoginFailed",
                   "Workload": "AzureActiveDirectory", "UserId": format!("u{}", i % 500)}),
            None,
            Arc::from("f"),
            Locator {
                line: i as u64 + 1,
                record: i as u64 + 1,
            },
        );
        let mut hits = Vec::new();
        s.eval(&ev, &mut hits);
        sig.absorb(hits);
    }
    let (f, _, stats) = sig.finish();
    assert!(f.is_empty());
    assert_eq!(stats[0].fed, n as u64);
    let steps = super::correlate::TALLY_STEPS.with(|c| c.get());
    assert!(steps <= 8 * n as u64, "{steps} tally steps for {n} matches");
}

#[test]
fn event_count_per_group_within_timespan() {
    let s = corr_set(
        FAIL,
        "title: many failures\nid: c-1\nlevel: high\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 10m\n    condition:\n        gte: 3\n",
    );
    let mut evs = Vec::new();
    // alice: 3 failures in 4 minutes -> one finding; bob: 3 spread over 30
    // minutes -> none; carol: 2 -> none.
    for m in [0, 2, 4] {
        evs.push(login("UserLoginFailed", "alice", "1.1.1.1", m, json!({})));
    }
    for m in [0, 15, 30] {
        evs.push(login("UserLoginFailed", "bob", "1.1.1.1", m, json!({})));
    }
    for m in [1, 2] {
        evs.push(login("UserLoginFailed", "carol", "1.1.1.1", m, json!({})));
    }
    let (f, st) = run_corr(s, &evs);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule_id, "c-1");
    assert_eq!(f[0].evidence["group"]["UserId"], "alice");
    assert_eq!(f[0].evidence["event_count"], 3.0);
    // The base rule does not report alone (generate defaults to false).
    let base = st.iter().find(|s| s.id == "fail-1").unwrap();
    assert_eq!(base.hits, 0);
    assert!(base.note.as_deref().unwrap().contains("8 matches"));
}

#[test]
fn event_count_generate_true_reports_base_matches() {
    let s = corr_set(
        FAIL,
        "title: c\nid: c-1\ncorrelation:\n    type: event_count\n    rules: [fail-1]\n    generate: true\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        gte: 2\n",
    );
    let evs: Vec<Event> = [0, 1]
        .iter()
        .map(|&m| login("UserLoginFailed", "a", "1.1.1.1", m, json!({})))
        .collect();
    let (f, _) = run_corr(s, &evs);
    assert_eq!(f.iter().filter(|x| x.rule_id == "fail-1").count(), 2);
    assert_eq!(f.iter().filter(|x| x.rule_id == "c-1").count(), 1);
}

/// A match's finding takes its texts from the match when nothing else
/// reads them, and copies them when the match also feeds a correlation,
/// whose finding names the same user and address.
#[test]
fn findings_of_matches_with_and_without_correlations_name_their_event() {
    let generate = "title: c\nid: c-1\ncorrelation:\n    type: event_count\n    rules: [fail-1]\n    generate: true\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        gte: 2\n";
    let evs: Vec<Event> = [0, 1]
        .iter()
        .map(|&m| login("UserLoginFailed", "a@x", "1.1.1.1", m, json!({})))
        .collect();
    let (f, _) = run_corr(corr_set(FAIL, generate), &evs);
    assert_eq!(f.len(), 3, "two matches and the correlation");
    for x in &f {
        assert_eq!(x.user.as_deref(), Some("a@x"), "{}", x.rule_id);
        assert_eq!(x.client_ip.as_deref(), Some("1.1.1.1"), "{}", x.rule_id);
    }
    // Without a correlation: the finding is the one `finding` builds from
    // the match, and the match gave its texts away.
    let s = set_of(FAIL);
    let mut hits = Vec::new();
    s.eval(&evs[0], &mut hits);
    let copy = s.finding(&hits[0]);
    let moved: Vec<Finding> = s.findings_of(&mut hits).collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        serde_json::to_string(&moved[0]).unwrap(),
        serde_json::to_string(&copy).unwrap()
    );
    assert_eq!(moved[0].user.as_deref(), Some("a@x"));
    assert!(hits[0].rep.user.is_none() && hits[0].fields.is_empty());
}

#[test]
fn value_count_distinct_values() {
    let s = corr_set(
        FAIL,
        "title: spray\nid: c-2\ncorrelation:\n    type: value_count\n    rules: [failed_login]\n    group-by: [ClientIP]\n    timespan: 1h\n    condition:\n        field: UserId\n        gt: 2\n",
    );
    let mut evs = Vec::new();
    for (i, u) in ["a", "b", "c", "A"].iter().enumerate() {
        evs.push(login("UserLoginFailed", u, "9.9.9.9", i as u32, json!({})));
    }
    // Same user four times from another IP: one distinct value.
    for i in 0..4 {
        evs.push(login("UserLoginFailed", "a", "8.8.8.8", i, json!({})));
    }
    let (f, _) = run_corr(s, &evs);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].evidence["group"]["ClientIP"], "9.9.9.9");
    assert_eq!(f[0].evidence["value_count"], 3.0);
}

#[test]
fn temporal_any_order_and_ordered() {
    let corr = |t: &str| {
        format!("title: fail then ok\nid: c-3\ncorrelation:\n    type: {t}\n    rules: [failed_login, good_login]\n    group-by: [UserId]\n    timespan: 5m\n")
    };
    let evs = vec![
        // alice: success then failure (any order only)
        login("UserLoggedIn", "alice", "1.1.1.1", 0, json!({})),
        login("UserLoginFailed", "alice", "1.1.1.1", 1, json!({})),
        // bob: failure then success (both)
        login("UserLoginFailed", "bob", "1.1.1.1", 0, json!({})),
        login("UserLoggedIn", "bob", "1.1.1.1", 2, json!({})),
        // carol: failure, success 20 minutes later (neither)
        login("UserLoginFailed", "carol", "1.1.1.1", 0, json!({})),
        login("UserLoggedIn", "carol", "1.1.1.1", 20, json!({})),
    ];
    let (f, _) = run_corr(
        corr_set(&format!("{FAIL}---\n{OK}"), &corr("temporal")),
        &evs,
    );
    let users: Vec<&Value> = f.iter().map(|x| &x.evidence["group"]["UserId"]).collect();
    assert_eq!(users, vec!["alice", "bob"]);
    let (f, _) = run_corr(
        corr_set(&format!("{FAIL}---\n{OK}"), &corr("temporal_ordered")),
        &evs,
    );
    let users: Vec<&Value> = f.iter().map(|x| &x.evidence["group"]["UserId"]).collect();
    assert_eq!(users, vec!["bob"]);
}

#[test]
fn temporal_aliases_join_different_fields() {
    // The failure names the user in UserId, the success in UserKey.
    let s = corr_set(
        &format!("{FAIL}---\n{OK}"),
        "title: c\nid: c-4\ncorrelation:\n    type: temporal\n    rules: [failed_login, good_login]\n    group-by: [who]\n    timespan: 5m\n    aliases:\n        who:\n            failed_login: UserId\n            good_login: UserKey\n",
    );
    let evs = vec![
        login("UserLoginFailed", "alice", "1.1.1.1", 0, json!({})),
        login(
            "UserLoggedIn",
            "someone-else",
            "1.1.1.1",
            1,
            json!({"UserKey": "alice"}),
        ),
        login("UserLoginFailed", "bob", "1.1.1.1", 0, json!({})),
        login(
            "UserLoggedIn",
            "bob",
            "1.1.1.1",
            1,
            json!({"UserKey": "not-bob"}),
        ),
    ];
    let (f, _) = run_corr(s, &evs);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].evidence["group"]["who"], "alice");
}

#[test]
fn value_sum_avg_median_percentile() {
    let base = "title: download\nid: d-1\nname: dl\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: FileDownloaded\n    condition: sel\n";
    let sizes = [10, 20, 30, 1000];
    let evs: Vec<Event> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            login(
                "FileDownloaded",
                "u",
                "1.1.1.1",
                i as u32,
                json!({"Size": s}),
            )
        })
        .collect();
    // Windows open at each event, so the one opened by the first event
    // holds all four values: sum 1060, mean 265, median (nearest rank) 20.
    let cases = [
        ("value_sum", "gte: 1060", 1060.0, "gt: 1060"),
        ("value_avg", "gte: 265", 265.0, "gt: 1000"),
        ("value_median", "lte: 20", 20.0, "lt: 10"),
    ];
    for (t, cond, val, cond_no) in cases {
        let c = |cond: &str| {
            format!("title: c\nid: c-5\ncorrelation:\n    type: {t}\n    rules: [dl]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        field: Size\n        {cond}\n")
        };
        let (f, _) = run_corr(corr_set(base, &c(cond)), &evs);
        assert_eq!(f.len(), 1, "{t}");
        assert_eq!(f[0].evidence[t], val, "{t}");
        let (f, _) = run_corr(corr_set(base, &c(cond_no)), &evs);
        assert!(f.is_empty(), "{t} with {cond_no}");
    }
    let p = "title: c\nid: c-6\ncorrelation:\n    type: value_percentile\n    rules: [dl]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        field: Size\n        percentile: 75\n        gte: 30\n";
    let (f, _) = run_corr(corr_set(base, p), &evs);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].evidence["value_percentile"], 30.0);
    let (f, _) = run_corr(corr_set(base, &p.replace("gte: 30", "gt: 1000")), &evs);
    assert!(f.is_empty());
}

#[test]
fn chained_correlations_and_cross_file_references() {
    // The base rule sits in another file; the outer correlation counts
    // users that had a burst of failures.
    let inner = "title: burst\nid: c-in\nname: burst\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId, ClientIP]\n    timespan: 10m\n    condition:\n        gte: 2\n";
    let outer = "title: many users bursting from one IP\nid: c-out\ncorrelation:\n    type: value_count\n    rules: [burst]\n    group-by: [ClientIP]\n    timespan: 1h\n    condition:\n        field: UserId\n        gte: 2\n";
    // value_count's field must be in the inner group: UserId is.
    let s = RuleSet::from_texts(
        [
            ("base.yml", false, FAIL),
            ("corr.yml", false, &*format!("{inner}---\n{outer}")),
        ],
        mapping::builtin(),
        &Placeholders::new(),
    );
    assert!(s.errors().next().is_none(), "{:?}", s.issues);
    let mut evs = Vec::new();
    for u in ["a", "b"] {
        for m in [0, 1] {
            evs.push(login("UserLoginFailed", u, "7.7.7.7", m, json!({})));
        }
    }
    let (f, _) = run_corr(s, &evs);
    let ids: Vec<&str> = f.iter().map(|x| x.rule_id.as_ref()).collect();
    // The inner correlation does not report alone (outer has no generate).
    assert_eq!(ids, vec!["c-out"]);
    assert_eq!(f[0].evidence["value_count"], 2.0);
}

#[test]
fn correlation_errors() {
    let bad = [
        ("correlation:\n    type: event_count\n    rules: [nope]\n    group-by: [A]\n    timespan: 1h\n    condition:\n        gte: 2\n", "not loaded"),
        ("correlation:\n    type: event_count\n    rules: [fail-1]\n    timespan: 1x\n    condition:\n        gte: 2\n", "timespan"),
        ("correlation:\n    type: value_count\n    rules: [fail-1]\n    timespan: 1h\n    condition:\n        gte: 2\n", "field"),
        ("correlation:\n    type: bogus\n    rules: [fail-1]\n    timespan: 1h\n", "unknown correlation type"),
        ("correlation:\n    type: event_count\n    rules: [fail-1]\n    timespan: 1h\n", "without condition"),
    ];
    for (c, why) in bad {
        let text = format!("{FAIL}---\ntitle: c\nid: cx\n{c}");
        let s = RuleSet::from_texts(
            [("c.yml", false, text.as_str())],
            mapping::builtin(),
            &Placeholders::new(),
        );
        let e: Vec<&LoadIssue> = s.errors().collect();
        assert_eq!(e.len(), 1, "{c}");
        assert!(e[0].reason.contains(why), "{} vs {why}", e[0].reason);
        assert_eq!(e[0].rule.as_deref(), Some("cx"));
        assert!(s.correlations.is_empty());
        assert_eq!(s.rules.len(), 1);
    }
}

#[test]
fn correlation_state_is_flushed_as_windows_close() {
    let s = corr_set(
        FAIL,
        "title: c\nid: c-1\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 1m\n    condition:\n        gte: 2\n",
    );
    let s = Arc::new(s);
    let mut sig = Sigma::new(s.clone(), held_in_memory());
    sig.set_decide_early_from(0);
    // Two failures a minute apart each hour for ten days, in time order.
    for h in 0..240i64 {
        for m in [0, 1] {
            let t = time::OffsetDateTime::from_unix_timestamp(1_686_787_200 + h * 3600 + m * 30)
                .unwrap();
            let ev = Event::from_record(
                json!({"CreationTime": tokenward_event::timefmt::rfc3339(t), "Operation": "UserLoginFailed", "UserId": "a"}),
                None,
                Arc::from("f"),
                Locator::default(),
            );
            let mut hits = Vec::new();
            s.eval(&ev, &mut hits);
            sig.absorb(hits);
        }
    }
    // A day of lateness allowance plus the window is all that is held.
    assert!(sig.peak_entries < 120, "held {}", sig.peak_entries);
    let (f, _, stats) = sig.finish();
    assert_eq!(f.len(), 240);
    assert_eq!(stats[0].late, 0);
}

#[test]
fn findings_carry_author_and_licence_note() {
    let s = RuleSet::from_texts(
        [(
            "sigmahq/r.yml",
            true,
            rule("    sel:\n        Operation: Op\n    condition: sel").as_str(),
        )],
        mapping::builtin(),
        &Placeholders::new(),
    );
    let s = Arc::new(s);
    let mut sig = Sigma::new(s.clone(), held_in_memory());
    let mut h = Vec::new();
    s.eval(&audit(json!({})), &mut h);
    sig.absorb(h);
    let (f, st, _) = sig.finish();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule_id, "r1");
    assert_eq!(f[0].severity, Severity::High);
    assert_eq!(f[0].evidence["sigma_author"], "someone");
    assert_eq!(f[0].evidence["sigma_level"], "high");
    assert_eq!(f[0].evidence["sigma_license"], DRL_NOTE);
    assert_eq!(f[0].evidence["fields"]["Operation"], "Op");
    assert_eq!(st[0].hits, 1);
}

/// Long value lists are looked up in sets and automata: the same events
/// match as with a short list tried value by value (case folding, cased,
/// contains, wildcards that are neither, numbers, `neq`).
#[test]
fn long_value_lists_match_like_short_ones() {
    let many: String = (0..40)
        .map(|i| format!("            - 'user{i}@x'\n"))
        .collect();
    let contains: String = (0..40)
        .map(|i| format!("            - 'tok{i}'\n"))
        .collect();
    check(
        &format!(
            "    sel:\n        A:\n{many}            - 'b*d'\n            - 5\n    condition: sel"
        ),
        &[
            json!({"A": "USER7@X"}),
            json!({"A": "user39@x"}),
            json!({"A": "bxxd"}),
            json!({"A": 5}),
            json!({"A": ["none", "user3@x"]}),
        ],
        &[
            json!({"A": "user40@x"}),
            json!({"A": "xuser7@x"}),
            json!({"A": "bxx"}),
            json!({}),
        ],
    );
    check(
        &format!("    sel:\n        A|cased:\n{many}    condition: sel"),
        &[json!({"A": "user7@x"})],
        &[json!({"A": "USER7@X"})],
    );
    check(
        &format!("    sel:\n        A|contains:\n{contains}    condition: sel"),
        &[json!({"A": "a TOK12 b"}), json!({"A": "tok0"})],
        &[json!({"A": "to k1"}), json!({"A": "tok"})],
    );
    check(
        &format!("    sel:\n        A|neq:\n{many}    condition: sel"),
        &[json!({"A": "other"})],
        &[json!({"A": "user3@x"})],
    );
}

/// A disk for correlation groups that never spills in a test.
fn held_in_memory() -> Arc<StateDisk> {
    StateDisk::new(DEFAULT_STATE_MEMORY)
}

/// Every event through the rule set and its correlations with `disk`:
/// the findings, the rules' status lines and the correlations' counters,
/// each as JSON, to compare runs by.
fn correlate_all(
    s: &Arc<RuleSet>,
    evs: &[Event],
    disk: Arc<StateDisk>,
) -> (Vec<String>, String, String) {
    correlate_at_most(s, evs, disk, correlate::GROUP_MAX)
}

/// [`correlate_all`] with at most `group_max` matches of a group decided
/// at once at the end.
fn correlate_at_most(
    s: &Arc<RuleSet>,
    evs: &[Event],
    disk: Arc<StateDisk>,
    group_max: usize,
) -> (Vec<String>, String, String) {
    let mut sig = Sigma::new(s.clone(), disk);
    sig.set_group_max(group_max);
    for ev in evs {
        let mut hits = Vec::new();
        s.eval(ev, &mut hits);
        sig.absorb(hits);
    }
    let (f, st, stats) = sig.finish();
    let f = f
        .iter()
        .map(|x| serde_json::to_string(x).unwrap())
        .collect();
    (
        f,
        serde_json::to_string(&st).unwrap(),
        serde_json::to_string(&stats).unwrap(),
    )
}

/// Many small groups (sessions renewing tokens, a few matches each, so
/// never decided early) and a dense one, fed out of order: with their
/// groups written to disk at every match, a correlation finds what it
/// finds with them held, counts the same, and keeps every match. (A cap of
/// 400,000 held matches once dropped the rest: 131 of 450 sessions found
/// over 1.35 million matches.)
#[test]
fn correlation_groups_spilled_to_disk_are_judged_as_held_ones() {
    let c = "title: several addresses\nid: c-ips\nlevel: high\ncorrelation:\n    type: value_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        field: ClientIP\n        gte: 3\n";
    let s = Arc::new(corr_set(FAIL, c));
    let mut evs = Vec::new();
    for u in 0..400 {
        let user = format!("s{u}");
        for k in 0..3u32 {
            // One session in 40 from three addresses.
            let ip = if u % 40 == 0 {
                format!("203.0.113.{k}")
            } else {
                "198.51.100.7".to_string()
            };
            evs.push(login(
                "UserLoginFailed",
                &user,
                &ip,
                (u % 20) + 10 * k,
                json!({}),
            ));
        }
    }
    // A dense group: a match a minute from one address, then three.
    for m in 0..60 {
        let ip = if m >= 57 {
            format!("192.0.2.{m}")
        } else {
            "192.0.2.1".to_string()
        };
        evs.push(login("UserLoginFailed", "busy", &ip, m, json!({})));
    }
    fastrand::Rng::with_seed(3).shuffle(&mut evs);
    let held = correlate_all(&s, &evs, held_in_memory());
    let disk = StateDisk::new(0);
    let spilled = correlate_all(&s, &evs, disk.clone());
    assert!(disk.runs_written() > 0, "nothing was written to disk");
    assert_eq!(disk.error(), None);
    assert_eq!(
        held.0.len(),
        11,
        "10 sessions and the dense group: {:#?}",
        held.0
    );
    assert_eq!(spilled, held);
}

/// Two correlations over the same matches, their groups partly written
/// to disk while the hunt reads: when it ends, every correlation's groups
/// go to disk before any is decided (so one is decided beside none of
/// the others' groups), and each finds and counts what it does with its
/// groups held.
#[test]
fn several_correlations_written_out_at_the_end_find_what_they_find_held() {
    let by_user = "title: several addresses\nid: c-ips\nlevel: high\ncorrelation:\n    type: value_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        field: ClientIP\n        gte: 3\n";
    let by_ip = "title: many failures from an address\nid: c-burst\nlevel: high\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [ClientIP]\n    timespan: 10m\n    condition:\n        gte: 8\n";
    let s = Arc::new(corr_set(FAIL, &format!("{by_user}---\n{by_ip}")));
    let mut evs = Vec::new();
    for u in 0..300 {
        for k in 0..3u32 {
            // One user in 30 from three addresses; address 9 fails often.
            let ip = match (u % 30, u % 7) {
                (0, _) => format!("203.0.113.{k}"),
                (_, 0) => "198.51.100.9".to_string(),
                _ => format!("198.51.100.{}", 10 + u % 50),
            };
            evs.push(login(
                "UserLoginFailed",
                &format!("u{u}"),
                &ip,
                (u % 25) + 10 * k,
                json!({}),
            ));
        }
    }
    fastrand::Rng::with_seed(5).shuffle(&mut evs);
    let held = correlate_all(&s, &evs, held_in_memory());
    let rules: std::collections::BTreeSet<&str> = held
        .0
        .iter()
        .map(|f| {
            if f.contains("c-burst") {
                "c-burst"
            } else {
                "c-ips"
            }
        })
        .collect();
    assert_eq!(
        rules.len(),
        2,
        "both correlations find something: {:#?}",
        held.0
    );
    for budget in [0, 8 << 10] {
        let disk = StateDisk::new(budget);
        let spilled = correlate_all(&s, &evs, disk.clone());
        assert!(disk.runs_written() > 0, "budget {budget}: nothing written");
        assert_eq!(disk.error(), None);
        assert_eq!(spilled, held, "budget {budget}");
    }
}

/// A group decided while the hunt goes that then floods (quiet for two
/// days, then a failure every five seconds for two hours) is written out
/// once it holds more than its share of the budget, and decided when the
/// hunt ends instead: the same windows and counts as when it stayed in
/// memory, and memory bounded by the budget, not by the flood. The part
/// that follows (a failure every ten minutes for 30 hours, which would be
/// decided early on its own) waits for the end too: decided alone, it
/// made the written part's matches behind its windows late. (Staying,
/// such a group held 561 MiB over 1.5 million matches.)
#[test]
fn a_group_flooding_after_it_was_decided_early_leaves_memory_and_finds_the_same() {
    let c = "title: burst\nid: c-flood\nlevel: high\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 10m\n    condition:\n        gte: 3\n";
    let s = Arc::new(corr_set(FAIL, c));
    let start = time::macros::datetime!(2023-06-01 00:00 UTC);
    let at = |secs: i64, line: u64| {
        let t = start + time::Duration::seconds(secs);
        Event::from_record(
            json!({"CreationTime": tokenward_event::timefmt::rfc3339(t), "Operation": "UserLoginFailed", "UserId": "flood"}),
            None,
            Arc::from("f"),
            Locator { line, record: line },
        )
    };
    let quiet = (0..96).map(|k| k * 1800);
    let flood = (0..1440).map(|k| 2 * 86400 + k * 5);
    let after = (0..180).map(|k| 2 * 86400 + 7200 + 600 + k * 600);
    let evs: Vec<Event> = quiet
        .chain(flood)
        .chain(after)
        .enumerate()
        .map(|(i, secs)| at(secs, i as u64 + 1))
        .collect();
    let run = |disk: Arc<StateDisk>| {
        let mut sig = Sigma::new(s.clone(), disk.clone());
        sig.set_decide_early_from(0);
        let mut most_held = 0;
        for ev in &evs {
            let mut hits = Vec::new();
            s.eval(ev, &mut hits);
            sig.absorb(hits);
            most_held = most_held.max(disk.held());
        }
        let (f, _, stats) = sig.finish();
        let f: Vec<String> = f
            .iter()
            .map(|x| serde_json::to_string(x).unwrap())
            .collect();
        (f, serde_json::to_string(&stats).unwrap(), most_held)
    };
    let (held_f, held_stats, held_most) = run(held_in_memory());
    let budget = 128 << 10;
    let small = StateDisk::new(budget);
    let (spilled_f, spilled_stats, spilled_most) = run(small.clone());
    assert_eq!(small.error(), None);
    // Windows of 121 matches in the flood, the next 605 s later; none in
    // the quiet parts (two matches in ten minutes at most).
    assert_eq!(held_f.len(), 12, "{:?}", &held_f[..2]);
    assert_eq!(spilled_f, held_f);
    assert!(held_stats.contains("\"late\":0"), "{held_stats}");
    assert_eq!(spilled_stats, held_stats);
    assert!(held_most > 512 << 10, "in memory it held {held_most} bytes");
    assert!(
        spilled_most < 3 * budget + (64 << 10),
        "with 128 KiB it held {spilled_most} bytes"
    );
}

/// An event of user `user` from `ip`, `secs` after the start of a day.
fn failed_at(user: &str, ip: &str, secs: i64, line: u64) -> Event {
    let t = time::macros::datetime!(2023-06-01 00:00 UTC) + time::Duration::seconds(secs);
    Event::from_record(
        json!({"CreationTime": tokenward_event::timefmt::rfc3339(t), "Operation": "UserLoginFailed", "UserId": user, "ClientIP": ip}),
        None,
        Arc::from("f"),
        Locator { line, record: line },
    )
}

/// A group of more matches than are decided at once when the hunt ends
/// is decided a stretch of time at a time, from its parts in memory or
/// on disk: the same windows and counts as when decided whole. (Keeping
/// its earliest matches, as many as are decided at once, found the
/// bursts of its first hours and counted the rest as unplaced.)
#[test]
fn a_group_of_more_matches_than_decided_at_once_finds_what_it_finds_whole() {
    let s = burst_and_addresses();
    // A failure every 30 s for a day from one address, and at half past
    // each hour 15 in a minute from three.
    let mut evs = Vec::new();
    for k in 0..2880 {
        evs.push(failed_at("flood", "198.51.100.1", k * 30, k as u64 + 1));
    }
    for h in 0..24 {
        for k in 0..15 {
            let ip = format!("203.0.113.{}", k % 3);
            evs.push(failed_at(
                "flood",
                &ip,
                h * 3600 + 1800 + k * 4 + 1,
                10_000 + (h * 15 + k) as u64,
            ));
        }
    }
    fastrand::Rng::with_seed(9).shuffle(&mut evs);
    let whole = correlate_at_most(&s, &evs, held_in_memory(), usize::MAX);
    // Each correlation finds a window at each of the 24 bursts (at the
    // first hours alone when a group kept its earliest matches).
    for id in ["c-count", "c-ips"] {
        let hours: std::collections::BTreeSet<String> = whole
            .0
            .iter()
            .filter(|f| f.contains(id))
            .map(|f| {
                let v: Value = serde_json::from_str(f).unwrap();
                v["time"].as_str().unwrap()[..13].to_owned()
            })
            .collect();
        assert_eq!(hours.len(), 24, "{id}: {hours:?}");
    }
    assert!(whole.2.contains("\"over_budget\":0"), "{}", whole.2);
    decided_in_stretches_as_whole(&s, &evs, &whole, true);
}

/// An `event_count` (30 failures in 10 minutes) and a `value_count` (3
/// addresses in 10 minutes) correlation, per user.
fn burst_and_addresses() -> Arc<RuleSet> {
    let count = "title: burst\nid: c-count\nlevel: high\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 10m\n    condition:\n        gte: 30\n";
    let ips = "title: addresses\nid: c-ips\nlevel: high\ncorrelation:\n    type: value_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 10m\n    condition:\n        field: ClientIP\n        gte: 3\n";
    Arc::new(corr_set(FAIL, &format!("{count}---\n{ips}")))
}

/// Asserts that `evs` correlated with fewer matches decided at once
/// (held, or on disk in small parts or in one) give `whole`; with
/// `large_parts`, that parts on disk were read in stretches.
fn decided_in_stretches_as_whole(
    s: &Arc<RuleSet>,
    evs: &[Event],
    whole: &(Vec<String>, String, String),
    large_parts: bool,
) {
    for (budget, at_once) in [
        (None, 200),
        (Some(0), 200),
        (Some(512 << 10), 200),
        (Some(512 << 10), 1000),
        (Some(0), usize::MAX),
    ] {
        let disk = budget.map_or_else(held_in_memory, StateDisk::new);
        correlate::LARGE_PARTS_READ.with(|n| n.set(0));
        let got = correlate_at_most(s, evs, disk.clone(), at_once);
        assert_eq!(disk.error(), None);
        assert_eq!(&got, whole, "budget {budget:?}, {at_once} at once");
        if large_parts && budget == Some(512 << 10) {
            assert!(
                correlate::LARGE_PARTS_READ.with(|n| n.get()) > 0,
                "parts too large to read with their key were read in stretches"
            );
        }
    }
}

/// Where many matches share one time, a stretch ends among them: the
/// next reads on after the last match the one before kept, so each is
/// decided once, as when the group is decided whole.
#[test]
fn matches_of_one_time_where_a_stretch_ends_are_decided_once() {
    let s = burst_and_addresses();
    // For 12 hours, every 4 minutes a clump of 20 to 49 failures in one
    // second from one address (the next of five each clump): 10 minutes
    // hold two or three clumps, some of them fewer than 30 failures.
    let mut evs = Vec::new();
    for c in 0..180u64 {
        let ip = format!("203.0.113.{}", c % 5);
        for k in 0..20 + (c * 7) % 30 {
            evs.push(failed_at("clumps", &ip, c as i64 * 240, c * 100 + k + 1));
        }
    }
    // For 6 hours, every 6 minutes a clump of 71 in one second from
    // three addresses: a stretch of 200 ends inside a clump and holds the
    // clump before it, so more of the clump it ends in are held than the
    // next may read. Each three of a clump are alike in all (one record's
    // line, read three times), so a stretch also ends among matches that
    // only their number tells apart.
    for c in 0..60u64 {
        for k in 0..71 {
            let ip = format!("198.51.100.{}", (k / 3) % 3);
            evs.push(failed_at(
                "large clumps",
                &ip,
                c as i64 * 360,
                100_000 + c * 100 + k / 3,
            ));
        }
    }
    fastrand::Rng::with_seed(3).shuffle(&mut evs);
    let whole = correlate_at_most(&s, &evs, held_in_memory(), usize::MAX);
    assert!(whole.2.contains("\"over_budget\":0"), "{}", whole.2);
    for (user, id, least) in [
        ("clumps", "c-count", 40),
        ("clumps", "c-ips", 40),
        ("large clumps", "c-count", 30),
        ("large clumps", "c-ips", 30),
    ] {
        let found = whole
            .0
            .iter()
            .filter(|f| f.contains(id) && f.contains(&format!("\"{user}\"")))
            .count();
        assert!(found >= least, "{user}, {id}: {found} windows");
    }
    decided_in_stretches_as_whole(&s, &evs, &whole, false);
}

/// The events each correlation finding's window counted.
fn window_events(findings: &[String]) -> Vec<u64> {
    findings
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(f).unwrap();
            v["evidence"]["events"].as_u64().unwrap()
        })
        .collect()
}

/// Where more matches than are decided at once fall within one timespan,
/// the windows there are decided on those held, the matches of the
/// timespan after them are counted as unplaced and named in the note,
/// and windows after that are decided whole: the same whether the group
/// stayed in memory or went to disk.
#[test]
fn a_timespan_denser_than_decided_at_once_counts_what_it_leaves_out() {
    let count = "title: burst\nid: c-count\nlevel: high\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 10m\n    condition:\n        gte: 5\n";
    let s = Arc::new(corr_set(FAIL, count));
    // 300 failures a second apart, then ten a minute apart an hour later.
    let mut evs: Vec<Event> = (0..300)
        .map(|k| failed_at("dense", "198.51.100.1", k, k as u64 + 1))
        .collect();
    evs.extend((0..10).map(|k| failed_at("dense", "198.51.100.1", 3600 + k * 6, 1000 + k as u64)));
    let whole = correlate_at_most(&s, &evs, held_in_memory(), usize::MAX);
    assert_eq!(window_events(&whole.0), [300, 10]);
    let held = correlate_at_most(&s, &evs, held_in_memory(), 100);
    assert_eq!(window_events(&held.0), [100, 10]);
    assert!(held.2.contains("\"over_budget\":200"), "{}", held.2);
    assert!(
        held.1.contains("200 not placed in a window because more than 75 matches of their group fell within one timespan"),
        "{}",
        held.1
    );
    let disk = StateDisk::new(0);
    assert_eq!(correlate_at_most(&s, &evs, disk.clone(), 100), held);
    assert!(disk.runs_written() > 0);
    assert_eq!(disk.error(), None);
}

/// A stretch that reads on after held matches and finds a timespan
/// denser than it may hold counts as unplaced exactly the matches it
/// leaves out, held or on disk: the matches held before where it read
/// are placed, though the parts' places are past them.
#[test]
fn a_dense_timespan_met_after_held_matches_counts_only_what_it_leaves_out() {
    let count = "title: burst\nid: c-count\nlevel: high\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 10m\n    condition:\n        gte: 500\n";
    let s = Arc::new(corr_set(FAIL, count));
    // 300 failures a minute apart, then 1,050 at ten a second: a stretch
    // of 1,000 holds 700 of them for the next, which reads 300 more and
    // finds 1,000 within one timespan.
    let mut evs: Vec<Event> = (0..300)
        .map(|k| failed_at("dense", "198.51.100.1", k * 60, k as u64 + 1))
        .collect();
    evs.extend(
        (0..1050).map(|k| failed_at("dense", "198.51.100.1", 20_000 + k / 10, 1000 + k as u64)),
    );
    fastrand::Rng::with_seed(5).shuffle(&mut evs);
    let whole = correlate_at_most(&s, &evs, held_in_memory(), usize::MAX);
    assert_eq!(window_events(&whole.0), [1050]);
    let mut large_parts = 0;
    for budget in [
        None,
        Some(0),
        Some(64 << 10),
        Some(128 << 10),
        Some(256 << 10),
    ] {
        let disk = budget.map_or_else(held_in_memory, StateDisk::new);
        correlate::LARGE_PARTS_READ.with(|n| n.set(0));
        let got = correlate_at_most(&s, &evs, disk.clone(), 1000);
        large_parts += correlate::LARGE_PARTS_READ.with(|n| n.get());
        assert_eq!(disk.error(), None);
        assert_eq!(window_events(&got.0), [1000], "budget {budget:?}");
        assert!(
            got.2.contains("\"over_budget\":50"),
            "budget {budget:?}: {}",
            got.2
        );
        assert!(
            got.1
                .contains("50 not placed in a window because more than 750 matches"),
            "budget {budget:?}: {}",
            got.1
        );
    }
    assert!(large_parts > 0, "no part was read in stretches from disk");
}

#[test]
fn attack_tags_become_technique_ids() {
    let yaml = "title: t\nid: r-attack\nlevel: high\ntags:\n    - attack.collection\n    - attack.t1114.002\n    - attack.T1078\n    - attack.t12\n    - cve.2023-1234\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: X\n    condition: sel\n";
    let set = set_of(yaml);
    let meta = set.metas().next().unwrap();
    assert_eq!(meta.attack, ["T1114.002", "T1078"]);
    assert_eq!(
        meta.evidence()["attack"],
        serde_json::json!(["T1114.002", "T1078"])
    );
}

/// A group's windows are decided early only by that group's own newest
/// match: a file of later records for another user, read first, must not
/// decide an older user's windows before that user's matches arrive.
#[test]
fn lateness_is_per_group_so_file_order_does_not_change_windows() {
    let s = corr_set(
        FAIL,
        "title: many failures\nid: c-late\nlevel: high\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [UserId]\n    timespan: 10m\n    condition:\n        gte: 3\n",
    );
    let mut line = 0u64;
    let mut at = |user: &str, day: u32, hour: u32, min: u32| {
        line += 1;
        Event::from_record(
            json!({"CreationTime": format!("2023-06-{day:02}T{hour:02}:{min:02}:00"), "Operation": "UserLoginFailed", "UserId": user}),
            None,
            Arc::from("f"),
            Locator { line, record: line },
        )
    };
    let mut evs = Vec::new();
    // A later file first: another user, weeks later.
    for m in 0..70 {
        evs.push(at("later", 28, 10, m % 60));
    }
    // Alice: 62 failures twenty minutes apart (no burst), then a burst of
    // three in two minutes. Measured against the other user's newest
    // match, the 64th match decided alice's windows early: the burst's
    // first two were judged (and dropped) before the third arrived.
    for k in 0..62 {
        evs.push(at("alice", 5, k * 20 / 60, k * 20 % 60));
    }
    for m in [0, 1, 2] {
        evs.push(at("alice", 5, 21, m));
    }
    let f = run_corr_deciding_early(s, &evs);
    let alice: Vec<_> = f
        .iter()
        .filter(|x| {
            x.evidence
                .get("group")
                .expect("a correlation names its group")["UserId"]
                == "alice"
        })
        .collect();
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(alice[0].evidence["event_count"], 3.0);
}

/// Keyword rules read records whole only for their own log sources: a
/// sign-in is never parsed whole for an Azure activity keyword rule.
#[test]
fn whole_records_are_read_only_for_keyword_rules_log_sources() {
    let activity = "title: t\nid: r1\nlevel: high\nlogsource:\n    product: azure\n    service: activitylogs\ndetection:\n    keywords:\n        - Microsoft.Compute/virtualMachines/write\n    condition: keywords\n";
    let s = set_of(activity);
    assert!(s.reads_whole_records());
    assert_eq!(s.whole_kinds(), Some(vec![EventKind::AzureActivity]));
    let fields_only = set_of(&rule(
        "    sel:\n        Operation: Send\n    condition: sel",
    ));
    assert!(!fields_only.reads_whole_records());
    assert_eq!(fields_only.whole_kinds(), Some(vec![]));
}

/// Gates only skip rules that cannot match: over rules of every shape in
/// one set (so they share a log source's gates) and events with values
/// in every spelling, the set's matches are exactly the rules whose
/// detection matches when tried one by one, ungated.
#[test]
fn gated_rules_match_exactly_as_when_each_is_tried() {
    let detections = [
        "    sel:\n        A: Foo\n    condition: sel",
        "    sel:\n        A|cased: Foo\n    condition: sel",
        "    sel:\n        N: 50126\n    condition: sel",
        "    sel:\n        N:\n            - 0\n            - 53003\n    condition: sel",
        "    sel:\n        A: foo\n    filter:\n        B: x\n    condition: sel and not filter",
        "    sel_a:\n        A: bar\n    sel_b:\n        B: y\n    condition: 1 of sel_*",
        "    sel_a:\n        A: foo\n    sel_b:\n        B: x\n    condition: all of sel_*",
        "    sel:\n        A: foo\n    other:\n        B|contains: q\n    condition: sel or other",
        "    sel:\n        A|contains: oo\n    condition: sel",
        "    filter:\n        A: foo\n    condition: not filter",
        "    sel:\n        - A: foo\n        - B: y\n    condition: sel",
        "    sel:\n        A: ''\n    condition: sel",
        "    sel:\n        A|endswith: X\n        N: 7\n    condition: sel",
        // An object's text is its compact JSON: a value written so opens
        // the gate, and no other text does.
        "    sel:\n        O: '{\"k\":\"v\"}'\n    condition: sel",
        "    sel:\n        O: 'v'\n    condition: sel",
        "    sel:\n        O: '[1,2]'\n    condition: sel",
    ];
    let texts: Vec<String> = detections
        .iter()
        .enumerate()
        .map(|(i, d)| rule(d).replace("id: r1", &format!("id: r{i}")))
        .collect();
    let names: Vec<String> = (0..texts.len()).map(|i| format!("r{i}.yml")).collect();
    let s = RuleSet::from_texts(
        names
            .iter()
            .zip(&texts)
            .map(|(n, t)| (n.as_str(), false, t.as_str())),
        mapping::builtin(),
        &Placeholders::new(),
    );
    assert_eq!(s.rules.len(), detections.len(), "{:?}", s.issues);
    assert!(
        s.gates.iter().any(Option::is_some),
        "the audit source's rules are gated"
    );
    let events = [
        json!({"A": "Foo"}),
        json!({"A": "foo", "B": "x"}),
        json!({"A": "FOO", "B": "z"}),
        json!({"A": "bar"}),
        json!({"B": "y"}),
        json!({"A": ["x", "foo"]}),
        json!({"A": null}),
        json!({"A": ""}),
        json!({"N": 50126}),
        json!({"N": "50126"}),
        json!({"N": "50126.0"}),
        json!({"N": 0}),
        json!({"N": "-0"}),
        json!({"N": 53003.0}),
        json!({"N": 7, "A": "aX"}),
        json!({"N": "7", "A": "ax"}),
        json!({"B": "qq"}),
        json!({"O": {"k": "v"}}),
        json!({"O": {"K": "v"}}),
        json!({"O": "v"}),
        json!({"O": [1, 2]}),
        json!({"O": ["v"]}),
        json!({}),
    ];
    let mut matched_any = 0;
    for v in events {
        let ev = audit(v.clone());
        let mut out = Vec::new();
        s.eval(&ev, &mut out);
        let mut got: Vec<String> = out
            .iter()
            .map(|h| s.rules[h.rule].meta.id.clone())
            .collect();
        got.sort();
        let mut want: Vec<String> = s
            .rules
            .iter()
            .filter(|r| {
                r.compiled.iter().any(|(mi, d)| {
                    s.mappings[*mi].kinds.contains(&ev.kind)
                        && EvalCtx::new(&ev, &s.fields).matches(d)
                })
            })
            .map(|r| r.meta.id.clone())
            .collect();
        want.sort();
        assert_eq!(got, want, "{v}");
        matched_any += got.len();
    }
    assert!(matched_any > 10, "the events match some rules");
    // And the point of it: a rule whose gate an event leaves shut is not
    // tried; a rule without a gate always is.
    let (mi, gates) = s
        .gates
        .iter()
        .enumerate()
        .find_map(|(mi, g)| g.as_ref().map(|g| (mi, g)))
        .expect("gated");
    let place = |id: &str| {
        s.buckets[mi]
            .iter()
            .position(|&ri| s.rules[ri].meta.id == id)
            .expect("in the bucket")
    };
    let opened = |v: Value| {
        let ev = audit(v);
        gates.opened(&mut EvalCtx::new(&ev, &s.fields))
    };
    let shut = opened(json!({"N": 1}));
    assert!(!gate::is_open(&shut, place("r2")));
    assert!(gate::is_open(&shut, place("r8")), "`contains` has no gate");
    assert!(gate::is_open(&shut, place("r9")), "`not` has no gate");
    assert!(gate::is_open(&opened(json!({"N": "50126"})), place("r2")));
}

/// Contexts alive at once on one thread, or made one after another, each
/// answer with their own event's values: the table of resolved fields
/// they share tells their entries apart.
#[test]
fn contexts_keep_their_own_resolved_fields() {
    let s = set_of(&rule(
        "    selection:\n        Workload: x\n        ClientIP: y\n    condition: selection",
    ));
    let field = |name: &str| {
        (0..s.fields.names.len() as section::FieldId)
            .find(|&id| s.fields.names[id as usize] == name)
            .expect("a field of the rule")
    };
    let (workload, ip) = (field("Workload"), field("ClientIP"));
    let events: Vec<Event> = (0..4)
        .map(|i| audit(json!({"Workload": format!("w{i}"), "ClientIP": format!("10.0.0.{i}")})))
        .collect();
    let texts = |ctx: &mut EvalCtx<'_, '_>, id| -> Vec<String> {
        ctx.values(id)
            .iter()
            .map(|v| v.text().to_string())
            .collect()
    };
    let mut a = EvalCtx::new(&events[0], &s.fields);
    let mut b = EvalCtx::new(&events[1], &s.fields);
    assert_eq!(texts(&mut a, workload), ["w0"]);
    assert_eq!(texts(&mut b, workload), ["w1"]);
    assert_eq!(texts(&mut b, ip), ["10.0.0.1"]);
    assert_eq!(texts(&mut a, ip), ["10.0.0.0"]);
    assert_eq!(texts(&mut a, workload), ["w0"], "asked again");
    drop((a, b));
    for ev in &events[2..] {
        let mut c = EvalCtx::new(ev, &s.fields);
        let want = ev.get_str("Workload").expect("a workload");
        assert_eq!(texts(&mut c, workload), [want]);
    }
}

/// A value holding characters some writers escape (`+` and a backquote
/// by .NET's default encoder, `&` by Sentinel, `/` by PHP) passes the
/// raw-record screen however the record spells them, and matches once
/// parsed; a record without it does not pass.
#[test]
fn values_pass_the_screen_whatever_a_writer_escapes() {
    let s = set_of(&rule(
        "    selection:\n        UserAgent|contains: 'Tool+Evil`s & Co/2'\n    condition: selection",
    ));
    for raw in [
        r#"{"UserAgent":"x Tool+Evil`s & Co/2 y"}"#,
        r#"{"UserAgent":"x Tool\u002BEvil\u0060s \u0026 Co\/2 y"}"#,
        r#"{"UserAgent":"x Tool\u002bEvil\u0060s \u0026 Co\u002f2 y"}"#,
    ] {
        assert!(s.wants(raw.as_bytes()), "{raw}");
        let v: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(hits(&s, &audit(v)), 1, "{raw}");
    }
    assert!(!s.wants(br#"{"UserAgent":"x Tool-Evil y"}"#));
}

/// A rule carries the DRL note when a licence file saying so sits in its
/// directory or above; every directory walked keeps the answer for the
/// rest of the process, so a rule set's files do not each look again.
#[test]
fn the_licence_above_a_rule_is_looked_for_once_per_directory() {
    let base = std::env::temp_dir().join(format!("tokenward-drl-{}", std::process::id()));
    let deep = base.join("licensed/a/b");
    let plain = base.join("plain/a");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(&plain).unwrap();
    let licence = base.join("licensed/LICENSE");
    std::fs::write(&licence, "Detection Rule License (DRL) 1.1\n").unwrap();

    assert!(drl_near(&deep.join("r.yml")));
    assert!(!drl_near(&plain.join("r.yml")));
    // Answers now come from the walk above, not from the files.
    std::fs::remove_file(&licence).unwrap();
    std::fs::write(base.join("plain/LICENSE"), "Detection Rule License").unwrap();
    assert!(drl_near(&base.join("licensed/a/r2.yml")));
    assert!(!drl_near(&plain.join("r2.yml")));
    std::fs::remove_dir_all(&base).unwrap();
}
