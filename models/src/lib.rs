//! coffer-models: the model release contract shared by cofferd, coffer-agent and the
//! admin's `coffer-release` tool.
//!
//! Owns now: the manifest schema ([`manifest`]: name, version, kind, format, files with
//! sha256 and size, lineage, the I/O schema, serving limits, the evaluation gate), the
//! evaluation-set format ([`evalset`]), verification of a version directory against its
//! manifest ([`verify`]), and the content-addressed on-disk store of versions ([`store`]).
//! The format and the store's layout are described in `docs/model-format.md`.
//!
//! The fleet release repository (TUF) and the `coffer-release` tool built on this
//! contract are the `coffer-release` crate (`release/`); this crate brings no async
//! runtime and no TUF, so cofferd and coffer-agent build it with the same features.

pub mod drift;
pub mod evalset;
pub mod import_body;
pub mod manifest;
pub use manifest::embedding;
pub mod store;
pub mod verify;

pub use manifest::{
    ChatEvalGate, Datatype, DriftReference, FeatureReference, Format, Kind, Manifest,
    ManifestError, ScoreReference, TensorSpec, Variant,
};
pub use verify::{VerifyError, VersionDir};
