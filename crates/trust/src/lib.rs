//! Which key may sign for whom, and the verdict on a token.
//!
//! A [`Policy`] is loaded from a TOML file (format in the README). Every key
//! it trusts carries an explicit scope: the one issuer entry it may sign
//! for, that entry's tenants and audiences, exactly one algorithm, a
//! validity window and a status. Anything that leaves a key's scope
//! undetermined is a [`ConfigError`] at load time, never "any".
//! [`Policy::verify`] then checks a token against that scope and returns a
//! [`Verdict`] listing every check that failed, each with a stable
//! [`ReasonCode`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod denylist;
mod live;
mod policy;
mod reason;
mod verdict;
mod verify;

pub use denylist::{BUILTIN_DENIED_KIDS, BUILTIN_DENIED_THUMBPRINTS};
pub use live::LivePolicy;
pub use policy::{
    ConfigError, IssuerEntry, KeyRecord, KeySourceRef, KeyStatus, Policy, Route, RouteAuth,
    TenantRule,
};
pub use reason::{Reason, ReasonCode};
/// RFC 3339 at the edges, shared with the key fetcher.
pub use tokenward_keys::{format_rfc3339, parse_rfc3339};
pub use verdict::Verdict;

/// The Microsoft consumer (MSA) tenant. Tokens from it must never pass for
/// an issuer entry that serves enterprise tenants: that mix is what let
/// Storm-0558's consumer key open enterprise mailboxes.
pub const CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The placeholder in Entra multi-tenant issuer templates.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";
