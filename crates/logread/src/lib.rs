//! Reading audit-log exports: finding files, undoing gzip and UTF-16,
//! recognising the export format, and splitting the stream into records
//! with locators, in batches for parallel workers. Knows nothing of what
//! the records mean.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

pub mod format;
pub mod input;
pub mod records;
pub mod split;
pub mod words;

pub use format::{Container, Format};
pub use input::{discover, open, sniff, sniff_known, Encoding, Opened, SniffError, Sniffed};
pub use records::{read_batches, Batch, BufferPool, Item};
pub use split::{is_envelope_metadata, Cells, CsvRow};

/// Where a record sits in its file: 1-based line of its first byte when the
/// carrier has lines, and its 1-based record index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locator {
    /// 1-based line number of the record's first byte (0 when unknown).
    pub line: u64,
    /// 1-based index of the record within the file.
    pub record: u64,
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.record) {
            (0, r) => write!(f, "record {r}"),
            (l, r) if l == r => write!(f, "line {l}"),
            (l, r) => write!(f, "record {r} (line {l})"),
        }
    }
}
