//! `tokenward sql`: the events table for engines that run the detections
//! beyond one machine. Only `--schema` exists so far: compiling the
//! detections themselves to SQL is issue #13's next step.

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
Spark: spark.read.schema(\"<this output>\").json(\"events.jsonl\")\n\n\
Exit status: 0 printed, 2 usage error.")]
pub struct SqlArgs {
    /// The engine.
    #[arg(long, value_enum)]
    dialect: Dialect,
    /// Print the events table: CREATE TABLE for ClickHouse, the schema
    /// string DataFrameReader.schema() takes for Spark.
    #[arg(long)]
    schema: bool,
    /// Table name (ClickHouse).
    #[arg(long, default_value = "tokenward_events", value_name = "NAME")]
    table: String,
}

/// Runs `tokenward sql`.
pub fn run(args: SqlArgs) -> u8 {
    if !args.schema {
        eprintln!(
            "tokenward sql: only --schema is available so far; compiling the detections to SQL is not built yet"
        );
        return EXIT_USAGE;
    }
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
    match args.dialect {
        Dialect::Clickhouse => print!("{}", tokenward_hunt::export::clickhouse_schema(&args.table)),
        Dialect::Spark => print!("{}", tokenward_hunt::export::spark_schema()),
    }
    0
}
