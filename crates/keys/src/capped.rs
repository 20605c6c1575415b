//! Reading a local file with a size cap.

use std::io::Read;
use std::path::Path;

/// Largest key-set, discovery or policy file read from disk: the same
/// limit as a fetched key set. Real key sets are a few KiB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a whole file of at most `max` bytes. A regular file's length is
/// checked before reading; a pipe or device (`/dev/urandom`) is read only
/// up to the cap, then refused.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let over = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than the {max}-byte limit for this file"),
        )
    };
    if file.metadata().is_ok_and(|m| m.is_file() && m.len() > max) {
        return Err(over());
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(over());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_read_large_and_endless_ones_refused() {
        let d = std::env::temp_dir().join(format!("tw-capped-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let small = d.join("small.json");
        std::fs::write(&small, b"{\"keys\":[]}").unwrap();
        assert_eq!(read_capped(&small, 100).unwrap(), b"{\"keys\":[]}");
        let big = d.join("big.json");
        std::fs::write(&big, vec![b' '; 101]).unwrap();
        let e = read_capped(&big, 100).unwrap_err();
        assert!(e.to_string().contains("100-byte limit"), "{e}");
        // A device has no length: the read stops at the cap.
        let e = read_capped(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&d).ok();
    }
}
