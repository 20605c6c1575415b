//! `tokenward rules check`: loads Sigma rules the way `hunt --rules` does
//! and reports every problem.

use std::path::PathBuf;

use tokenward_hunt::sigma::RuleSet;

/// Arguments of `tokenward rules`.
#[derive(clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(clap::Subcommand)]
enum RulesCommand {
    /// Load Sigma rules (files or directories) and report rules that cannot
    /// load (file, rule id, reason) and rules that cannot run here.
    /// Exit status: 0 no errors, 1 some rule has errors, 2 usage error.
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Sigma rule files or directories (*.yml, *.yaml, read recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    sigma: crate::sigma_args::SigmaLoadArgs,
    /// Print the issues as JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand and returns the exit status.
pub fn run(args: RulesArgs) -> u8 {
    let RulesCommand::Check(a) = args.command;
    let opts = a.sigma.load_options();
    let set = match RuleSet::load(&a.paths, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tokenward rules check: {e}");
            return crate::EXIT_USAGE;
        }
    };
    for i in &set.issues {
        if a.json {
            println!("{}", serde_json::to_string(i).unwrap_or_default());
        } else {
            println!("{i}");
        }
    }
    let errors = set.errors().count();
    if !a.json {
        println!("{}", set.summary_line());
    }
    if errors > 0 {
        1
    } else {
        0
    }
}
