//! `tokenward events`: every record hunt reads, normalised, one JSON line
//! each, for loading into ClickHouse, Spark or any warehouse.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Args;
use tokenward_hunt::{output, Format, HuntConfig};

use crate::hunt_cmd::{parse_format, with_progress};
use crate::EXIT_USAGE;

#[derive(Args)]
#[command(
    after_help = "Columns: time, log_kind, user, client_ip, app_id, session_id, token_id, \
operation, workload, result, user_agent, raw (the record as hunt read it, UAL AuditData merged, \
as a JSON string), source_file, source_locator (the values hunt's findings carry).\n\n\
Exit status: 0 written, 2 usage error, an input that could not be read at all, or a write error."
)]
pub struct EventsArgs {
    /// Log files or directories (read recursively; .gz is decompressed).
    #[arg(required = true, value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// Where to write the events (JSON lines); `-` for standard output.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Force the input format instead of detecting it per file (as for hunt).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    input_format: Option<Format>,
    /// Write the run summary (files, records read, evaluated, rejected) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// No progress bar and no summary on standard error.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `tokenward events`.
pub fn run(args: EventsArgs) -> u8 {
    let out: Box<dyn Write + Send> = if args.output.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        match File::create(&args.output) {
            Ok(f) => Box::new(BufWriter::with_capacity(1 << 20, f)),
            Err(e) => {
                eprintln!("tokenward events: {}: {e}", args.output.display());
                return EXIT_USAGE;
            }
        }
    };
    let cfg = HuntConfig {
        inputs: args.inputs.clone(),
        input_format: args.input_format,
        ..HuntConfig::default()
    };
    let result = with_progress(&args.inputs, args.quiet, |progress| {
        tokenward_hunt::export::export_events(&cfg, out, progress)
    });
    let (report, written) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokenward events: {e}");
            return EXIT_USAGE;
        }
    };
    if let Some(p) = &args.summary_json {
        let doc = output::summary_json(&report);
        let res = File::create(p).and_then(|f| {
            let mut w = BufWriter::new(f);
            serde_json::to_writer_pretty(&mut w, &doc)?;
            w.write_all(b"\n")?;
            w.flush()
        });
        if let Err(e) = res {
            eprintln!(
                "tokenward events: cannot write summary {}: {e}",
                p.display()
            );
            return EXIT_USAGE;
        }
    }
    let (read, evaluated, rejected) = report.totals();
    if !args.quiet {
        eprintln!(
            "tokenward events: {read} records in {} file(s): {evaluated} events written, {rejected} rejected",
            report.files.len()
        );
        for f in &report.files {
            if let Some(e) = &f.error {
                eprintln!("  error: {}: {e}", f.path);
            }
            for n in &f.first_rejects {
                eprintln!("  {}: {}: {}", f.path, n.locator, n.reason);
            }
        }
    }
    match written {
        Err(e) => {
            eprintln!(
                "tokenward events: cannot write {}: {e}",
                args.output.display()
            );
            EXIT_USAGE
        }
        Ok(_) if report.has_unreadable_input() => EXIT_USAGE,
        Ok(_) => 0,
    }
}
