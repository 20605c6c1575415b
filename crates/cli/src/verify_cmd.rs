//! `tokenward verify`.

/// Arguments of `tokenward verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {}

/// Verifies the given tokens and returns the process exit status.
pub fn run(_args: VerifyArgs) -> u8 {
    crate::EXIT_USAGE
}
