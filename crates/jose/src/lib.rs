//! tokenward jose
