//! Strict JOSE primitives for tokenward.
//!
//! This crate parses compact JWS tokens, JWT claim sets and JWK / JWK Sets,
//! and checks signatures with aws-lc-rs. It is deliberately narrow: compact
//! serialization only, no `none`, no unencoded payloads, no key taken from a
//! token header. Deciding *which* key may verify *which* token is the job of
//! the `tokenward-trust` crate; this crate only answers "is this well formed"
//! and "does this key verify this signature".

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alg;
mod b64;
mod cert;
mod claims;
mod compact;
mod error;
mod header;
mod json;
mod jwk;
mod key;
mod roca;
mod sign;

pub use alg::{Algorithm, KeyFamily};
pub use b64::{decode_b64url, encode_b64url, B64Error};
pub use cert::{to_hex, CertInfo};
pub use claims::{Audience, Claims, NotClaims, NumericDate, MAX_NOTED_CLAIMS};
pub use compact::{Jws, Limits};
pub use error::{Error, ErrorKind};
pub use header::Header;
pub use json::{parse_strict_value, JsonError};
pub use jwk::{Jwk, JwkError, Jwks, KeyMaterial, KeyUse};
pub use key::{KeyError, VerifyingKey};
pub use roca::has_roca_fingerprint;
pub use sign::{SignError, SigningKey};
