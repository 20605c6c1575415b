//! The options every subcommand that loads Sigma rules takes.

use std::path::PathBuf;

use tokenward_hunt::sigma::{LoadOptions, RULE_MEMORY_MAX};

/// How Sigma rules are loaded: mappings, placeholders, the memory budget.
#[derive(clap::Args, Debug, Clone)]
pub struct SigmaLoadArgs {
    /// Extra Sigma log-source mapping files or directories. Repeatable.
    #[arg(long = "sigma-mapping", value_name = "PATH")]
    pub sigma_mappings: Vec<PathBuf>,
    /// Values for Sigma `expand` placeholders: a YAML map from each name to its list of values.
    #[arg(long = "sigma-placeholders", value_name = "FILE")]
    pub sigma_placeholders: Option<PathBuf>,
    /// Most memory one compiled Sigma rule may hold, in MiB; a rule past it
    /// is refused with its size and the others run (docs/limits.md).
    #[arg(long = "sigma-rule-memory", value_name = "MIB", default_value_t = (RULE_MEMORY_MAX >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub sigma_rule_memory: u64,
}

impl SigmaLoadArgs {
    /// The loader's options.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            mappings: self.sigma_mappings.clone(),
            placeholders: self.sigma_placeholders.clone(),
            rule_memory_max: Some((self.sigma_rule_memory as usize) << 20),
        }
    }
}
