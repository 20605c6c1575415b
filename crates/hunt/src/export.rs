//! `tokenward events`: every record hunt reads, as one normalised event per
//! line, for engines that run the detections elsewhere (ClickHouse, Spark:
//! docs/scale.md). It is a detection like any other to the engine, one that
//! needs every record whole and keeps nothing: each worker writes the lines
//! of its batch into a buffer that is flushed to the output when the batch
//! is merged ([`Detection::merges_each_batch`]), so memory stays bounded by
//! the batch size.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokenward_detect::{
    shard_of, Anchors, Context, Detection, Info, Kinds, Needs, Outcome, Verdict, Weight,
    WholeRecord,
};
use tokenward_event::timefmt::rfc3339;
use tokenward_event::{Event, PathValues};

use crate::engine::{run_detections, HuntConfig, HuntError, Report};

const INFO: Info = Info {
    id: "tw-events-export",
    title: "Normalised event export",
    requires: "any records",
    attack: &[],
    weight: Weight::Weak,
};

/// The output shared by every shard, and the first write error.
struct Sink {
    out: Box<dyn Write + Send>,
    error: Option<std::io::Error>,
    events: u64,
}

/// Writes each event it observes as one JSON line.
pub struct EventsExport {
    sink: Arc<Mutex<Sink>>,
    buf: Vec<u8>,
    events: u64,
}

/// One column of the exported events: its name and its type in the
/// engines the events are loaded into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Name, as written in each JSON line.
    pub name: &'static str,
    /// ClickHouse type.
    pub clickhouse: &'static str,
    /// Spark SQL type.
    pub spark: &'static str,
}

const fn text(name: &'static str) -> Column {
    Column {
        name,
        clickhouse: "Nullable(String)",
        spark: "STRING",
    }
}

const fn required(name: &'static str) -> Column {
    Column {
        name,
        clickhouse: "String",
        spark: "STRING",
    }
}

/// The columns of an exported event, in order: the contract that
/// `tokenward sql --schema` and docs/hunt.md state.
pub const COLUMNS: [Column; 19] = [
    Column {
        name: "time",
        clickhouse: "Nullable(DateTime64(3, 'UTC'))",
        spark: "TIMESTAMP",
    },
    Column {
        name: "log_kind",
        clickhouse: "LowCardinality(String)",
        spark: "STRING",
    },
    text("user"),
    text("client_ip"),
    text("app_id"),
    text("session_id"),
    text("token_id"),
    text("operation"),
    text("workload"),
    text("result"),
    text("user_agent"),
    required("raw"),
    required("source_file"),
    required("source_locator"),
    // The locator's parts as numbers, so engines order records within a
    // file as hunt does (the text sorts "line 100" before "line 99").
    Column {
        name: "source_line",
        clickhouse: "UInt64",
        spark: "BIGINT",
    },
    Column {
        name: "source_record",
        clickhouse: "UInt64",
        spark: "BIGINT",
    },
    required("inner"),
    Column {
        name: "fields",
        clickhouse: "Map(String, Array(Nullable(String)))",
        spark: "MAP<STRING, ARRAY<STRING>>",
    },
    Column {
        name: "objects",
        clickhouse: "Map(String, Array(String))",
        spark: "MAP<STRING, ARRAY<STRING>>",
    },
];

/// `CREATE TABLE` for the events in ClickHouse. Load with
/// `INSERT INTO t FORMAT JSONEachRow` and the setting
/// `date_time_input_format = 'best_effort'` (times are RFC 3339).
pub fn clickhouse_schema(table: &str) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("    `{}` {}", c.name, c.clickhouse))
        .collect();
    format!(
        "CREATE TABLE {table}\n(\n{}\n)\nENGINE = MergeTree\nORDER BY (log_kind, source_file, source_locator);\n",
        cols.join(",\n")
    )
}

/// The schema string Spark's `DataFrameReader.schema()` accepts.
pub fn spark_schema() -> String {
    COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.name, c.spark))
        .collect::<Vec<_>>()
        .join(", ")
        + "\n"
}

/// One event as the JSON object written for it.
pub fn event_json(ev: &Event) -> Value {
    let paths = PathValues::of(&ev.record);
    json!({
        "time": ev.time.map(rfc3339),
        "log_kind": ev.kind.as_str(),
        "user": ev.user(),
        "client_ip": ev.client_ip(),
        "app_id": ev.app_id(),
        "session_id": ev.session_id(),
        "token_id": ev.token_id(),
        "operation": ev.operation(),
        "workload": ev.workload(),
        "result": ev.result(),
        "user_agent": ev.user_agent(),
        // The record as hunt read it (UAL AuditData merged), as a string,
        // so engines that take a fixed schema can still reach every field.
        "raw": ev.record.to_string(),
        "source_file": &*ev.source_file,
        "source_locator": ev.locator.to_string(),
        "source_line": ev.locator.line,
        "source_record": ev.locator.record,
        // What the compiled detections read (tokenward sql): the record's
        // paths with the values hunt's lookups find there, and the wrapper
        // key hunt looks in first ("" when none), lower-cased like the paths.
        "inner": ev.inner.unwrap_or("").to_ascii_lowercase(),
        "fields": paths.scalars,
        "objects": paths.objects,
    })
}

impl Detection for EventsExport {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        INFO.ids()
    }

    fn needs(&self) -> Needs {
        Needs {
            kinds: Kinds::ALL,
            anchors: Anchors::Every,
            fields: Vec::new(),
            whole_record: WholeRecord::Always,
            unparsed_time_and_workload: false,
            signin_index: false,
            blind_without_signins: false,
        }
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(EventsExport {
            sink: self.sink.clone(),
            buf: Vec::new(),
            events: 0,
        })
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        // Serialising a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, &event_json(ev));
        self.buf.push(b'\n');
        self.events += 1;
    }

    /// A shard holds its batch's lines until merged: kept across batches,
    /// it would hold the whole output.
    fn merges_each_batch(&self) -> bool {
        true
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let o = shard_of::<EventsExport>(shard);
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if sink.error.is_none() {
            if let Err(e) = sink.out.write_all(&o.buf) {
                sink.error = Some(e);
            }
        }
        sink.events += o.events;
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        // Only forks observe; their lines were written when they merged.
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if sink.error.is_none() {
            if let Err(e) = sink.out.flush() {
                sink.error = Some(e);
            }
        }
        let note = format!("{} events written", sink.events);
        Outcome::of(&INFO, Vec::new(), Verdict::Ok(Some(note)))
    }
}

/// Reads the inputs of `cfg` and writes every event to `out`; returns the
/// run's report (files, records read, evaluated and rejected) and the
/// events written, or the write error.
pub fn export_events(
    cfg: &HuntConfig,
    out: Box<dyn Write + Send>,
    progress: Arc<AtomicU64>,
) -> Result<(Report, Result<u64, std::io::Error>), HuntError> {
    let sink = Arc::new(Mutex::new(Sink {
        out,
        error: None,
        events: 0,
    }));
    let export = EventsExport {
        sink: sink.clone(),
        buf: Vec::new(),
        events: 0,
    };
    let report = run_detections(cfg, vec![Box::new(export)], progress)?;
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    let written = match sink.error.take() {
        Some(e) => Err(e),
        None => Ok(sink.events),
    };
    Ok((report, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines go out batch by batch as the hunt reads, not at its end:
    /// memory stays bounded by the batches, and a pipe into an engine is
    /// fed as it goes.
    #[test]
    fn events_are_written_batch_by_batch() {
        struct Writes(Arc<Mutex<Vec<usize>>>);
        impl Write for Writes {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().push(b.len());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let rec = r#"{"CreationTime":"2024-01-01T00:00:00","Operation":"Send","Workload":"Exchange","UserId":"a@x"}"#;
        let mut text = String::new();
        let mut records = 0u64;
        while text.len() < 4 * tokenward_logread::records::LINES_BATCH {
            text.push_str(rec);
            text.push('\n');
            records += 1;
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ual.jsonl"), &text).unwrap();
        let writes = Arc::new(Mutex::new(Vec::new()));
        let cfg = HuntConfig {
            inputs: vec![d.path().to_path_buf()],
            ..Default::default()
        };
        let (report, written) =
            export_events(&cfg, Box::new(Writes(writes.clone())), Arc::default()).unwrap();
        assert_eq!(written.unwrap(), records);
        assert_eq!(report.totals(), (records, records, 0));
        let writes = writes.lock().unwrap();
        // One write a batch (at least four), none holding the whole output.
        let total: usize = writes.iter().sum();
        assert!(writes.len() >= 4, "{} writes", writes.len());
        assert!(writes.iter().all(|&w| w < total / 2), "{writes:?}");
    }

    /// The written object has exactly the documented columns.
    #[test]
    fn an_event_has_exactly_the_columns() {
        let ev = Event::from_record(
            json!({"CreationTime": "2024-01-01T00:00:00", "Operation": "Send", "UserId": "a@x"}),
            None,
            Arc::from("f.jsonl"),
            tokenward_event::Locator { line: 3, record: 3 },
        );
        let v = event_json(&ev);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["source_locator"], "line 3");
        assert_eq!(v["operation"], "Send");
    }
}
