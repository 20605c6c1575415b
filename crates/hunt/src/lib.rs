//! `tokenward hunt`: reads Microsoft 365, Entra ID and Azure audit-log
//! exports as users actually have them, and hunts them for forged-token use
//! and Storm-0558 tradecraft.
//!
//! Data flows one way, one crate per step: bytes ([`tokenward_logread`]:
//! formats, decompression, splitting, locators) -> events
//! ([`tokenward_event`]: the event model and projection) -> detections
//! ([`tokenward_detect`]: the interface and the built-ins;
//! [`tokenward_sigma`]: the Sigma engine) -> findings -> outputs
//! ([`output`]). [`engine::run`] drives it, deriving what it reads from each
//! detection's [`Needs`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod export;
pub mod findings;
pub mod output;
mod sigma_detection;
mod spill;

pub use engine::{
    read_events, run, run_detections, FileReport, HuntConfig, HuntError, Report, SigninIndexSummary,
};
pub use findings::{Findings, SpillError};
pub use sigma_detection::SigmaDetection;
pub use tokenward_detect::signin_index::DEFAULT_INDEX_MEMORY;
pub use tokenward_detect::{ioc, Detection, Needs, Options, BUILTINS};
pub use tokenward_event::{
    lookup, lookup_all, timefmt, Coverage, Event, EventKind, Finding, Locator, Severity, Status,
};
pub use tokenward_logread::Format;
/// The Sigma engine.
pub use tokenward_sigma as sigma;
pub use tokenward_spill::spilling::DEFAULT_STATE_MEMORY;
