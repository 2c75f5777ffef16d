//! coffer-models: the model release contract shared by cofferd, coffer-agent and the
//! admin's `coffer-release` tool.
//!
//! It will own the manifest schema (kind, format, files with sha256 and size, variants,
//! lineage such as quantization and `distilled_from`, the I/O schema, evaluation gates),
//! the content-addressed on-disk store layout and verification of every file. It stays a
//! pure library: no async runtime, no native bindings.
//!
//! Nothing is implemented yet; this crate holds the place in the workspace.
