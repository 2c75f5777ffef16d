//! The bounds a client's `response_format` schema is held to (documented in
//! `docs/config.md`, "Structured output limits"). They keep what llama.cpp builds from a
//! schema small: the converter's output, the rules its grammar parser expands, and the
//! grammar a sampler walks for every token.

use std::time::Duration;

/// Schema objects nested inside one another (properties, items, anyOf, `$ref` hops).
pub const MAX_DEPTH: usize = 16;
/// Schema objects in all, after `$ref`s are inlined.
pub const MAX_NODES: usize = 512;
/// Properties of one object.
pub const MAX_PROPERTIES: usize = 64;
/// Values of one `enum`.
pub const MAX_ENUM: usize = 256;
/// Alternatives of one `anyOf` / `oneOf`, and branches of one pattern alternation.
pub const MAX_ALTERNATIVES: usize = 32;
/// Bytes of one property name, `enum` value or `const` (as JSON).
pub const MAX_LITERAL_BYTES: usize = 1024;
/// Characters of a property name when `additionalProperties` is not `false` (the
/// converter nests one group per character of such names).
pub const MAX_OPEN_NAME_CHARS: usize = 64;
/// Bytes of the whole schema after normalisation (what the converter reads).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// `minLength`, `maxLength`, `minItems`, `maxItems`, and any pattern repetition (nested
/// counted repetitions multiplied): llama.cpp expands each counted repetition into copies.
pub const MAX_REPEAT: u64 = 1000;
/// `minimum` / `maximum` magnitudes (integers beyond are not exact in JSON numbers).
pub const MAX_BOUND: f64 = 9_007_199_254_740_992.0;
/// Bytes of one `pattern` as sent.
pub const MAX_PATTERN_BYTES: usize = 512;
/// Bytes of one pattern once rewritten for the converter.
pub const MAX_PATTERN_OUT_BYTES: usize = 8 * 1024;
/// Groups nested inside one another in a pattern.
pub const MAX_PATTERN_NESTING: u32 = 32;
/// Repetitions nested inside one another in a pattern.
pub const MAX_PATTERN_REPEAT_DEPTH: usize = 4;
/// Ranges in one character class.
pub const MAX_CLASS_RANGES: usize = 64;
/// Bytes of the GBNF grammar the converter writes.
pub const MAX_GRAMMAR_BYTES: usize = 128 * 1024;
/// Repetition copies in the whole GBNF grammar (the sum of every `{m,n}`'s larger bound):
/// the rules llama.cpp's grammar parser creates for them.
pub const MAX_GRAMMAR_EXPANSION: u64 = 20_000;
/// Conversions running at once; each runs on a blocking thread, off the async workers.
pub const MAX_CONCURRENT_CONVERSIONS: usize = 2;
/// How long a request waits for a conversion slot and, separately, for its conversion.
pub const CONVERSION_BUDGET: Duration = Duration::from_secs(2);
