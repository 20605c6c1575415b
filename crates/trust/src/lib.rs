//! tokenward trust
