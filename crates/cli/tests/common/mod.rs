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

/// Asserts that a run of the binary succeeded, showing its stderr if not.
#[track_caller]
pub fn assert_succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for `child` to exit, polling its peak resident memory (`VmHWM`
/// in /proc) meanwhile, and returns that peak in KiB (0 if never read).
pub fn peak_rss_kib_until_exit(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(v) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                let kib = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    peak_kib
}
