//! Keyed state that grows with the input and must not grow memory with
//! it: maps looked up by borrowed keys ([`keyed`]), and maps that write
//! their entries to disk past a budget shared by a whole hunt and read
//! them back merged by key ([`spilling`]). The built-in detections, the
//! Sigma correlations and the report's pivots keep their per-key state so.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod keyed;
pub mod spilling;

/// Hashing for the maps kept per record (sign-in index, buckets, pairs,
/// candidates, correlation groups): SipHash was their largest single
/// cost. foldhash is seeded at random per process, so a log written in
/// advance cannot aim collisions at it; its own caveat, an attacker who
/// watches the hashes, does not apply to a file.
pub type KeyHasher = foldhash::fast::RandomState;
