//! The event model: one [`Event`] per record whatever the export format,
//! projected to the fields its readers declared ([`projection`]), and the
//! [`Finding`]s and [`Coverage`] detections report about events.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod escapes;
pub mod event;
pub mod evidence;
pub mod finding;
pub mod flat;
pub mod projection;
pub mod shadow;
pub mod timefmt;
pub mod words;

pub use event::{
    classify, lookup, lookup_all, normalised_paths, normalising_projection,
    time_and_workload_paths, Event, EventKind, PathBits,
};
pub use evidence::Evidence;
pub use finding::{Coverage, Finding, Rep, Severity, SharedTexts, Status, SHARED_TEXTS_MAX};
pub use flat::PathValues;
pub use projection::{Projected, Projection, RootSlot};
pub use tokenward_logread::{Format, Locator};
pub use words::Words;

/// The kind of record a file format implies when a record does not say.
pub fn kind_hint(format: Format) -> Option<EventKind> {
    format.holds_audit_records().then_some(EventKind::Audit)
}
