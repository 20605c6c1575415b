//! `tokenward sql`: the detections as one SQL script for ClickHouse or
//! Spark, and the events table they read (docs/scale.md).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::EXIT_USAGE;

/// SQL engines tokenward writes for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Dialect {
    /// ClickHouse (and chDB).
    Clickhouse,
    /// Apache Spark SQL (and Databricks).
    Spark,
}

#[derive(Args)]
#[command(after_help = "Load events written by `tokenward events`:\n  \
ClickHouse: INSERT INTO tokenward_events FORMAT JSONEachRow with date_time_input_format = 'best_effort'\n  \
Spark: spark.read.schema(\"<--schema output>\").json(\"events.jsonl\").createOrReplaceTempView(\"tokenward_events\")\n\n\
The script's last statement is a SELECT whose rows are findings, with the columns of hunt's JSONL\n\
findings. Rules and detections that cannot be expressed with hunt's exact semantics are listed on\n\
standard error with the reason and left out.\n\n\
Exit status: 0 printed, everything compiled; 1 printed, something refused; 2 usage error.")]
pub struct SqlArgs {
    /// The engine.
    #[arg(long, value_enum)]
    dialect: Dialect,
    /// Print the events table instead: CREATE TABLE for ClickHouse, the
    /// schema string DataFrameReader.schema() takes for Spark.
    #[arg(long)]
    schema: bool,
    /// The events table.
    #[arg(long, default_value = "tokenward_events", value_name = "NAME")]
    table: String,
    /// Sigma rules to compile: files or directories of YAML rules. Repeatable.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    #[command(flatten)]
    sigma: crate::sigma_args::SigmaLoadArgs,
    /// Leave out the built-in detections.
    #[arg(long)]
    no_builtin: bool,
    /// Say nothing on standard error but errors and refusals.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `tokenward sql`.
pub fn run(args: SqlArgs) -> u8 {
    let valid = !args.table.is_empty()
        && args
            .table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if !valid {
        eprintln!(
            "tokenward sql: --table {:?}: letters, digits, _ and . only",
            args.table
        );
        return EXIT_USAGE;
    }
    if args.schema {
        match args.dialect {
            Dialect::Clickhouse => {
                print!("{}", tokenward_hunt::export::clickhouse_schema(&args.table))
            }
            Dialect::Spark => print!("{}", tokenward_hunt::export::spark_schema()),
        }
        return 0;
    }
    let opts = args.sigma.load_options();
    let set = match tokenward_hunt::sigma::RuleSet::load(&args.rules, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tokenward sql: --rules: {e}");
            return EXIT_USAGE;
        }
    };
    for i in set.errors() {
        eprintln!("tokenward sql: Sigma {i}");
    }
    let dialect = match args.dialect {
        Dialect::Clickhouse => tokenward_sql::Dialect::ClickHouse,
        Dialect::Spark => tokenward_sql::Dialect::Spark,
    };
    let script = tokenward_sql::compile(
        &set,
        &tokenward_sql::Options {
            dialect,
            table: args.table.clone(),
            builtin: !args.no_builtin,
        },
    );
    print!("{}", script.sql);
    for r in &script.refused {
        eprintln!("tokenward sql: refused for {}: {r}", dialect.name());
    }
    if !args.quiet {
        eprintln!(
            "tokenward sql: {} detections compiled for {}, {} refused",
            script.compiled.len(),
            dialect.name(),
            script.refused.len()
        );
    }
    if script.refused.is_empty() {
        0
    } else {
        1
    }
}
