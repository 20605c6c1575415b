//! Live key sources and the audit of published key sets.
//!
//! - [`KeySource`]: a JWKS file, a JWKS URL, an OIDC discovery document or
//!   an issuer URL, parsed from one string ([`KeySource::parse`]).
//! - [`Fetcher`]: the one HTTPS client every key fetch goes through, with a
//!   deadline, a size limit, checked redirects and `https://` only.
//! - [`LiveKeySet`]: a key set kept fresh for verification: cache honouring
//!   `Cache-Control`/`ETag`, rate-limited refetch on unknown `kid`,
//!   last-known-good on failure, fail closed after a maximum staleness.
//! - [`audit_key_set`]: findings with stable codes ([`FindingCode`]) and
//!   severities on one key set, and [`snapshot::compare`] against a saved
//!   baseline.
//!
//! This crate does not depend on `tokenward-trust` (the policy builds on
//! it); denylists are passed in through [`AuditConfig`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod capped;
mod fetch;
mod live;
pub mod snapshot;
mod source;
mod spki;
mod timefmt;
mod url;

pub use audit::{
    audit_key_set, worst, AuditConfig, Finding, FindingCode, Severity, MSA_CONSUMER_TENANT,
};
pub use capped::{read_capped, MAX_FILE_BYTES};
pub use fetch::{CacheDirectives, FetchConfig, FetchError, Fetched, Fetcher};
pub use live::{KeySnapshot, LiveConfig, LiveKeySet, LiveStatus, UnknownKid};
pub use snapshot::{KeyRecord, Snapshot};
pub use source::{
    DiscoveryDoc, IssuerMatch, KeySource, Resolved, SourceError, OAUTH_WELL_KNOWN, OIDC_WELL_KNOWN,
    TENANT_TEMPLATE,
};
pub use spki::spki_matches;
pub use timefmt::{format_rfc3339, parse_rfc3339};
pub use url::{Url, UrlError};
