//! `tokenward hunt`: reads Microsoft 365, Entra ID and Azure audit-log
//! exports as users actually have them, and hunts them for forged-token use
//! and Storm-0558 tradecraft.
//!
//! Data flows one way: bytes ([`input`], [`split`]) -> records -> events
//! ([`event`], [`projection`]) -> detections ([`detect`], [`sigma`]) ->
//! findings ([`finding`]) -> outputs ([`output`]). [`engine::run`] drives
//! it, deriving what it reads from each detection's [`detect::Needs`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod detect;
pub mod engine;
pub mod event;
pub mod finding;
pub mod format;
pub mod input;
pub mod ioc;
pub mod ip;
pub mod output;
pub mod projection;
pub mod sigma;
mod sigma_detection;
pub mod split;
pub mod timefmt;

pub use detect::{Coverage, Detection, Needs, Options, Status, BUILTINS};
pub use engine::{read_events, run, FileReport, HuntConfig, HuntError, Report};
pub use event::{lookup, lookup_all, Event, EventKind, Locator};
pub use finding::{Finding, Severity};
pub use format::Format;
pub use sigma_detection::SigmaDetection;
