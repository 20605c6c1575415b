//! `tokenward gateway`.

/// Arguments of `tokenward gateway`.
#[derive(clap::Args)]
pub struct GatewayArgs {}

/// Runs the gateway and returns the process exit status.
pub fn run(_args: GatewayArgs) -> u8 {
    eprintln!("tokenward gateway: not built yet");
    crate::EXIT_USAGE
}
