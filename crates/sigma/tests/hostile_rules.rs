//! Rules shaped to exhaust the loader. The per-rule memory estimate
//! (`Rule::heap_bytes`) is checked against what the compiled rule really
//! holds, counted by the allocator (the budget at load time is only as good
//! as the estimate); a rule past the budget is refused; a long chain of
//! correlations loads and runs without deep recursion or quadratic work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tokenward_sigma::section::Placeholders;
use tokenward_sigma::{mapping, RuleSet};

struct Counting;

thread_local! {
    // Per thread: the other tests of this file allocate on their own
    // threads meanwhile, and one global count made the measurement flaky.
    // A constant `Cell` needs no allocation and no destructor, so the
    // allocator may use it at any time.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(bytes: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + bytes));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: every call is passed on to the system allocator unchanged; only
// a counter of this thread's is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rule(values: &str) -> String {
    format!("title: t\nid: big\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n{values}\n    condition: sel\nlevel: high\n")
}

/// (estimate, bytes freed when the compiled rules are dropped).
fn measure(text: &str) -> (usize, usize) {
    let mut set = RuleSet::from_texts(
        [("t.yml", false, text)],
        mapping::builtin(),
        &Placeholders::new(),
    );
    let errors: Vec<String> = set.errors().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let rules = std::mem::take(&mut set.rules);
    let estimate: usize = rules.iter().map(|r| r.heap_bytes()).sum();
    let before = live();
    drop(rules);
    let freed = (before - live()) as usize;
    (estimate, freed)
}

fn list(n: usize, f: &dyn Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| format!("            - '{}'\n", f(i)))
        .collect()
}

#[test]
fn the_estimate_is_within_a_factor_of_two_of_what_rules_hold() {
    let shapes: Vec<(&str, String)> = vec![
        (
            "few plain",
            rule(&format!(
                "        UserId:\n{}",
                list(8, &|i| format!("user{i}@contoso.example"))
            )),
        ),
        (
            "many plain",
            rule(&format!(
                "        UserId:\n{}",
                list(20_000, &|i| format!("user{i}@contoso.example"))
            )),
        ),
        (
            "many contains",
            rule(&format!(
                "        UserAgent|contains:\n{}",
                list(20_000, &|i| format!("agent-{i}-x"))
            )),
        ),
        (
            "many wildcards",
            rule(&format!(
                "        UserId:\n{}",
                list(1_000, &|i| format!("user{i}?*@contoso.example"))
            )),
        ),
        (
            "regexes",
            rule(&format!(
                "        UserId|re:\n{}",
                list(250, &|i| format!("^user{i}[0-9]+@.*\\.example$"))
            )),
        ),
        (
            "cidrs",
            rule(&format!(
                "        ClientIP|cidr:\n{}",
                list(5_000, &|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            )),
        ),
    ];
    let measured: Vec<(&str, usize, usize)> = shapes
        .iter()
        .map(|(name, text)| {
            let (estimate, held) = measure(text);
            (*name, estimate, held)
        })
        .collect();
    for (name, estimate, held) in &measured {
        assert!(
            estimate * 2 >= *held && *estimate <= held * 2,
            "{name}: estimated {estimate} bytes, the rule held {held}; all: {measured:?}"
        );
    }
}

#[test]
fn a_rule_over_the_budget_is_refused_by_name_and_the_others_run() {
    let big = rule(&format!(
        "        UserId:\n{}",
        list(20_000, &|i| format!("user{i}@contoso.example"))
    ));
    let small = "title: s\nid: small\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: Send\n    condition: sel\nlevel: low\n";
    let text = format!("{big}---\n{small}");
    let set = RuleSet::from_texts_within(
        [("big.yml", false, text.as_str())],
        mapping::builtin(),
        &Placeholders::new(),
        1 << 20,
    );
    let errors: Vec<String> = set.errors().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("big.yml:1")
            && errors[0].contains("rule big")
            && errors[0].contains("over the per-rule memory budget of 1 MiB"),
        "{errors:?}"
    );
    let ids: Vec<&str> = set.rules.iter().map(|r| r.meta.id.as_str()).collect();
    assert_eq!(ids, ["small"]);
    // Within the default budget, the same rule loads.
    let set = RuleSet::from_texts(
        [("big.yml", false, text.as_str())],
        mapping::builtin(),
        &Placeholders::new(),
    );
    assert_eq!(set.errors().count(), 0);
    assert_eq!(set.rules.len(), 2);
}

/// A chain of correlations, each counting the one before it, plus a cycle
/// of two and a correlation that refers to the cycle.
fn chained(n: usize) -> String {
    let mut t = String::from("title: base\nid: base\nname: c0\nlogsource:\n    product: m365\n    service: audit\ndetection:\n    sel:\n        Operation: Send\n    condition: sel\nlevel: low\n");
    // Outermost first, so that ordering them inner-first must go deep.
    for i in (1..=n).rev() {
        t.push_str(&format!(
            "---\ntitle: c{i}\nid: c{i}\nname: c{i}\ncorrelation:\n    type: event_count\n    rules: [c{}]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        gte: 1\n",
            i - 1
        ));
    }
    for (me, other) in [("x", "y"), ("y", "x"), ("z", "x")] {
        t.push_str(&format!(
            "---\ntitle: {me}\nid: {me}\nname: {me}\ncorrelation:\n    type: event_count\n    rules: [{other}]\n    group-by: [UserId]\n    timespan: 1h\n    condition:\n        gte: 1\n"
        ));
    }
    t
}

#[test]
fn a_long_chain_of_correlations_loads_without_deep_recursion_and_cycles_are_refused() {
    // 20,000 links: ordering them recursively took 20,000 nested calls,
    // and the cycle check walked the chain again from every link.
    let n = 20_000;
    let text = chained(n);
    let set = std::thread::Builder::new()
        // Less stack than a test thread has: loading must not need depth.
        .stack_size(256 * 1024)
        .spawn(move || {
            let set = std::sync::Arc::new(RuleSet::from_texts(
                [("chain.yml", false, text.as_str())],
                mapping::builtin(),
                &Placeholders::new(),
            ));
            // Finishing decides the correlations inner first.
            let _ = tokenward_sigma::Sigma::new(
                set.clone(),
                tokenward_spill::spilling::StateDisk::new(0),
            )
            .finish();
            set
        })
        .unwrap()
        .join()
        .expect("loading a long chain overflowed the stack");
    let errors: Vec<String> = set.errors().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.contains("refers to itself")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("rule x")) && errors.iter().any(|e| e.contains("rule y"))
    );
    assert_eq!(set.correlations.len(), n + 3);
}
