//! `tokenward hunt`.

/// Arguments of `tokenward hunt`.
#[derive(clap::Args)]
pub struct HuntArgs {}

/// Runs the hunt and returns the process exit status.
pub fn run(_args: HuntArgs) -> u8 {
    eprintln!("tokenward hunt: not built yet");
    crate::EXIT_USAGE
}
