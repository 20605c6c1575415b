//! tokenward hunt
