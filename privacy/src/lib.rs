//! coffer-privacy: what keeps customer data on the branch.
//!
//! - [`recognize`]: PII recognizers with validation (payment cards with Luhn and
//!   UnionPay, IBAN with mod-97, Chinese resident IDs with the MOD 11-2 check and the
//!   15-digit form, Chinese mobile and international phone numbers, e-mail, IPv4/IPv6,
//!   long account-number-like digit runs), robust to full-width digits, separators inside
//!   numbers and Chinese text without word boundaries.
//! - [`redact()`]: typed tags (`[PAN]`, `[CN_ID]`, …) in place of whole identifiers.
//! - [`dp`]: the Laplace mechanism and per-period epsilon budget for telemetry counters.
//! - [`telemetry`], [`checkpoint`]: the only records that leave the box, and the signed
//!   audit statements (checkpoints) shipped beside them.
//!
//! Used by cofferd (`cofferctl redact`, telemetry records) and by coffer-agent (the last
//! filter before anything leaves the box). Pure library: no I/O.

pub mod checkpoint;
pub mod corpus;
pub mod dp;
mod normalize;
pub mod recognize;
mod redact;
pub mod telemetry;

pub use normalize::fold;
pub use recognize::{Finding, Kind, find};
pub use redact::{redact, replace};
