//! `coffer-engine` owns what Coffer's inference engines share, whatever they run:
//! [`cores`], how chat and scoring share the CPU ([`CoreShare`]), and [`faults`], the
//! containment of a panic on an engine's own thread (the scoring batcher's, the chat
//! decode loop's) with its `coffer_engine_restarts_total` counter
//! family ([`ModelVersionLabels`]) and the [`FaultSink`] that hears of each one.
//!
//! It owns no engine (`coffer-score` and `coffer-chat` do) and no daemon concern: the
//! daemon decides where faults are reported (its audit log, through a `FaultSink`),
//! registers the counter family, and reads [`EngineFaults::failing`] into readiness.

pub mod cores;
pub mod faults;

pub use cores::CoreShare;
pub use faults::{EngineFaults, FaultSink, FaultWatch, ModelVersionLabels, Panicked};
