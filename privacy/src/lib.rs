//! coffer-privacy: what keeps customer data on the branch.
//!
//! It will own the PII recognizers (card numbers with Luhn, IBAN, Chinese resident IDs,
//! phone numbers, e-mail and IP addresses, account-number-like digit runs) with typed
//! redaction tags, and the differential-privacy noise applied to telemetry counters.
//! Used by cofferd (`cofferctl redact`, telemetry records) and by coffer-agent (the last
//! filter before anything leaves the box).
//!
//! Nothing is implemented yet; this crate holds the place in the workspace.
