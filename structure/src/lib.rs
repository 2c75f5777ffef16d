//! coffer-structure: checks on the shape of the workspace's Rust sources, run by
//! `cargo test` (see `tests/workspace.rs`):
//!
//! - [`module_cycles`]: sibling modules of a crate that depend on each other (through
//!   `crate::…`, `$crate::…` and `super::…` paths in non-test code);
//! - [`long_files`]: source files over a line limit;
//! - [`long_mains`]: `main.rs` and `src/bin/*.rs` files over a line limit.
//!
//! The sources are read with a small tokenizer (comments, strings and `#[cfg(test)]`
//! items dropped), not compiled: a path brought in through a glob import or a re-export
//! counts for the module that names it, which is what a layering rule needs.

mod cycles;
mod lex;
mod modtree;
mod parse;
mod workspace;

pub use cycles::{Cycle, Edge};
pub use workspace::{
    CrateRoot, LongFile, crate_roots, find_root, long_files, long_mains, members, module_cycles,
};
