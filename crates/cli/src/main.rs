//! The `tokenward` command: a thin shell over the library crates.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod events_cmd;
mod gateway_cmd;
mod hunt_cmd;
mod keys_cmd;
mod probe_cmd;
mod report_cmd;
mod rules_cmd;
mod sigma_args;
mod sql_cmd;
mod verify_cmd;

/// Stops forged identity tokens and finds the ones that already got through.
#[derive(Parser)]
#[command(name = "tokenward", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify JWS/JWT tokens against a policy that binds every key to its scope.
    Verify(verify_cmd::VerifyArgs),
    /// Hunt audit-log exports for forged-token use and Storm-0558 tradecraft.
    Hunt(hunt_cmd::HuntArgs),
    /// Verifying reverse proxy: nothing reaches the upstream without a token
    /// that passes policy, and every token use is logged.
    Gateway(gateway_cmd::GatewayArgs),
    /// Audit published key sets (mixed trust domains, expired or stale
    /// certificates, weak, secret or denied keys) and snapshot them.
    Keys(keys_cmd::KeysArgs),
    /// Check Sigma rules for `hunt --rules`.
    Rules(rules_cmd::RulesArgs),
    /// Send forged variants of a legitimate token at your own endpoint and
    /// report which attack classes it accepted.
    Probe(probe_cmd::ProbeArgs),
    /// Rebuild the HTML incident report from a hunt's saved findings and summary.
    Report(report_cmd::ReportArgs),
    /// Write every record hunt reads as one normalised event per line, for
    /// ClickHouse, Spark or another warehouse.
    Events(events_cmd::EventsArgs),
    /// The events table for ClickHouse or Spark (`--schema`).
    Sql(sql_cmd::SqlArgs),
}

// `hunt` builds and frees millions of small JSON trees across threads:
// under glibc malloc, allocation, free and heap consolidation were about a
// third of its CPU time (docs/hunt.md, Performance); mimalloc's per-thread
// free lists cut that share. It is compiled from C by the `cc` crate.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for usage and configuration errors, shared by every subcommand.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let matches = Cli::command()
        .mut_subcommand("hunt", |c| c.after_help(hunt_cmd::after_help()))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::Verify(args) => verify_cmd::run(args),
        Command::Hunt(args) => hunt_cmd::run(args),
        Command::Gateway(args) => gateway_cmd::run(args),
        Command::Keys(args) => keys_cmd::run(args),
        Command::Rules(args) => rules_cmd::run(args),
        Command::Probe(args) => probe_cmd::run(args),
        Command::Report(args) => report_cmd::run(args),
        Command::Events(args) => events_cmd::run(args),
        Command::Sql(args) => sql_cmd::run(args),
    };
    ExitCode::from(code)
}
