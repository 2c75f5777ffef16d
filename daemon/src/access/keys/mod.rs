//! API keys: scopes, rate limits, and the sled-backed key store that authenticates
//! bearer tokens. Tokens are random 256-bit values shown once at creation; only their
//! SHA-256 is stored, and a presented token is compared in constant time.

mod limiter;
mod rate;
mod scope;
mod store;
mod token;

/// A key's own rate ([`KeyRecord::rate`]) is written in the shared rate notation.
pub use crate::rate_spec::RateSpec;
pub use limiter::RateLimiter;
pub use rate::TokenBucket;
pub use scope::{Scope, UnknownScope, parse_scopes};
pub use store::{KeyError, KeyRecord, KeyStore, NewKey};
pub use token::Token;
