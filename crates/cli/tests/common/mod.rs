//! Helpers shared by the command-line tests: where the repository is, and
//! running the `tokenward` binary from it.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root (examples and fixtures are named from it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tokenward ARGS...` from the repository root.
pub fn tokenward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}
