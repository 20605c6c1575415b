//! Test harness for detections: records go through what the engine does
//! with them (screened by the detection's anchors, projected to the fields
//! it declared, routed by kind, observed in two shards that are merged), so
//! a unit test also proves the declarations complete.

use std::sync::Arc;

use serde_json::Value;

use super::{
    Anchors, Builtin, Context, Detection, Options, Outcome, RecordStats, Setup, SigninIndex,
    WholeRecord,
};
use crate::ioc::IocSet;
use crate::spilling::{StateDisk, DEFAULT_STATE_MEMORY};
use tokenward_event::projection::plain_audit;
use tokenward_event::{
    normalising_projection, time_and_workload_paths, Event, Locator, Projected, Projection, Words,
};

/// A fully parsed event of a JSON record.
pub fn event(v: Value) -> Event {
    Event::from_record(v, None, Arc::from("test.jsonl"), Locator::default())
}

/// A sign-in index of the given sign-in records.
pub fn signins(records: &[Value]) -> SigninIndex {
    let mut idx = SigninIndex::default();
    for r in records {
        idx.observe(&event(r.clone()));
    }
    idx
}

/// Runs `det` over `records` (with no sign-ins).
pub fn run(det: Box<dyn Detection>, records: &[Value]) -> Outcome {
    run_with(det, &SigninIndex::default(), records)
}

/// Runs `det` over `records`, with `index` as the sign-ins read before.
pub fn run_with(mut det: Box<dyn Detection>, index: &SigninIndex, records: &[Value]) -> Outcome {
    let needs = det.needs();
    // As the engine projects for a reader of time and workload alone.
    let mut projection = if needs.reads_time_and_workload_only() {
        Projection::new(time_and_workload_paths())
    } else {
        normalising_projection()
    };
    for f in &needs.fields {
        projection.add(f.as_ref());
    }
    let projection = Arc::new(projection);
    let whole = |r: &Value, i: usize| {
        let loc = Locator {
            line: i as u64 + 1,
            record: i as u64 + 1,
        };
        Event::from_record(r.clone(), None, Arc::from("test.jsonl"), loc)
    };
    let mut stats = RecordStats::default();
    for (i, r) in records.iter().enumerate() {
        stats.add(whole(r, i).workload());
    }
    let cx = Context {
        signins: index,
        records: &stats,
    };
    let half = records.len() / 2;
    for (base, part) in [(0, &records[..half]), (half, &records[half..])] {
        let mut shard = det.fork();
        for (i, r) in part.iter().enumerate() {
            let bytes = serde_json::to_vec(r).expect("JSON");
            let anchored = match &needs.anchors {
                Anchors::Every => true,
                Anchors::AnyOf(lits) => lits
                    .iter()
                    .any(|l| memchr::memmem::find(&bytes, l.as_bytes()).is_some()),
                Anchors::AnyOfIgnoringCase(lits) => lits.iter().any(|l| {
                    bytes
                        .windows(l.len().max(1))
                        .any(|w| w.eq_ignore_ascii_case(l.as_bytes()))
                }),
                // Told the record's kind, as the engine tells it once the
                // record is parsed.
                Anchors::Screen(f) => f(Some(whole(r, base + i).kind), &bytes),
            };
            if !anchored {
                continue;
            }
            // As the engine does for a reader of time and workload alone,
            // in a file of audit records: off the bytes where they say them
            // plainly, else parsed and observed below.
            if needs.reads_time_and_workload_only() {
                if let Some(p) = plain_audit(std::str::from_utf8(&bytes).expect("UTF-8")) {
                    shard.observe_unparsed(Some(p.time), Some(p.workload));
                    continue;
                }
            }
            let loc = Locator {
                line: (base + i) as u64 + 1,
                record: (base + i) as u64 + 1,
            };
            let screened = |kinds: &super::Kinds, f: &super::ScreenFn| {
                f(&bytes)
                    && kinds.contains(
                        Event::from_record(r.clone(), None, Arc::from("test.jsonl"), loc).kind,
                    )
            };
            let text = std::str::from_utf8(&bytes).expect("UTF-8");
            let words = match &needs.whole_record {
                WholeRecord::WordsWhen(kinds, f) if screened(kinds, f) => {
                    Some(Words::of_json(text))
                }
                _ => None,
            };
            let whole = match &needs.whole_record {
                WholeRecord::Never => false,
                WholeRecord::Always => true,
                WholeRecord::When(kinds, f) => screened(kinds, f),
                // Where the words cannot be read off the text.
                WholeRecord::WordsWhen(..) => matches!(words, Some(None)),
                WholeRecord::WhenAnyOf(texts) => texts
                    .iter()
                    .any(|t| memchr::memmem::find(&bytes, t.as_bytes()).is_some()),
            };
            let ev = if whole {
                Event::from_record(r.clone(), None, Arc::from("test.jsonl"), loc)
            } else {
                match projection.parse(text).expect("valid JSON") {
                    Projected::Object(v) => {
                        let mut ev = Event::from_projected(
                            v,
                            projection.clone(),
                            None,
                            Arc::from("test.jsonl"),
                            loc,
                        );
                        ev.words = words.flatten().map(Box::new);
                        ev
                    }
                    Projected::Full => {
                        Event::from_record(r.clone(), None, Arc::from("test.jsonl"), loc)
                    }
                }
            };
            if needs.kinds.contains(ev.kind) {
                shard.observe(&ev, &cx);
            }
        }
        det.merge(shard);
    }
    // As the engine takes them: handed over as they are made.
    let mut findings = Vec::new();
    let coverage = det.finish_into(&cx, &mut |f| findings.push(f));
    Outcome { findings, coverage }
}

/// Runs the detection `make` makes twice over the same records: with
/// its keyed state held in memory, and written to disk at every change
/// (a budget of 0) and merged back. Asserts that state was
/// written, that both runs found the same (findings and coverage, as
/// JSON, in report order), and returns the findings.
pub fn same_when_spilled(
    make: impl Fn(Arc<StateDisk>) -> Box<dyn Detection>,
    index: &SigninIndex,
    records: &[Value],
) -> Outcome {
    let run = |state: Arc<StateDisk>| {
        let mut out = run_with(make(state.clone()), index, records);
        assert_eq!(state.error(), None);
        out.findings.sort_by(|a, b| a.report_order(b));
        let json = serde_json::to_string(&(&out.findings, &out.coverage)).expect("JSON");
        (out, json, state.runs_written())
    };
    let (held, held_json, held_runs) = run(StateDisk::new(DEFAULT_STATE_MEMORY));
    let (_, spilled_json, spilled_runs) = run(StateDisk::new(0));
    assert_eq!(held_runs, 0, "state spilled within the default budget");
    assert!(
        spilled_runs > 1,
        "{spilled_runs} runs written with no memory"
    );
    assert_eq!(spilled_json, held_json);
    held
}

/// An Exchange admin audit record of `op` with its `Parameters` list.
pub fn cmdlet(op: &str, params: Value) -> Value {
    serde_json::json!({"CreationTime": "2023-06-10T10:00:00", "Operation": op, "RecordType": 1,
           "Workload": "Exchange", "UserId": "admin@x", "Parameters": params})
}

/// A built-in made with `iocs` and the default options.
pub fn make_with(b: &Builtin, iocs: IocSet) -> Box<dyn Detection> {
    (b.make)(&Setup {
        iocs: Arc::new(iocs),
        options: Options::default(),
        state: StateDisk::new(DEFAULT_STATE_MEMORY),
    })
}

/// A built-in made with the built-in indicators and the default options.
pub fn make(b: &Builtin) -> Box<dyn Detection> {
    make_with(b, IocSet::builtin())
}
