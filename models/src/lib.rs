//! coffer-models: the model release contract shared by cofferd, coffer-agent and the
//! admin's `coffer-release` tool.
//!
//! Owns now: the manifest schema ([`manifest`]: name, version, kind, format, files with
//! sha256 and size, lineage, the I/O schema, serving limits, the evaluation gate), the
//! evaluation-set format ([`evalset`]), verification of a version directory against its
//! manifest ([`verify`]), and the content-addressed on-disk store of versions ([`store`]).
//! The format and the store's layout are described in `docs/model-format.md`.
//!
//! With the `tuf` feature, also the fleet release repository ([`release`]: TUF metadata
//! through `tough`, keys, the admin's operations, bundles) and the `coffer-release`
//! tool; that part brings an async runtime and aws-lc, so cofferd, which does not
//! publish or fetch releases, builds without it.

pub mod drift;
pub mod evalset;
pub mod import_body;
pub mod manifest;
#[cfg(feature = "tuf")]
pub mod release;
pub mod store;
pub mod verify;

pub use manifest::{
    ChatEvalGate, Datatype, DriftReference, FeatureReference, Format, Kind, Manifest,
    ManifestError, ScoreReference, TensorSpec, Variant,
};
pub use verify::{VerifyError, VersionDir};
