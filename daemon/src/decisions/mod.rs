//! Decisions kept on the box (`docs/decisions.md`): every scoring request of a model with
//! `[decisions] models` naming it is recorded (inputs as sent and as the model saw them,
//! outputs, explanation, version, request id), sealed with a key the operator controls,
//! hashed into the audit log, kept for the retention and then pruned with a signed audit
//! record, and read back, replayed and exported through the admin socket.

pub mod appender;
pub mod health;
pub mod key_rotation;
pub mod keyring;
mod migrate;
pub mod record;
pub mod recorder;
pub mod retention;
pub mod seal;
pub mod segment;
pub mod store;
pub mod wire;

pub use keyring::{KeyError, Keyring};
pub use record::{
    Decision, DecisionRecord, Header, PlainTensor, RecordedExplanation, RecordedTensor, explanation,
};
pub use recorder::Decisions;
pub use store::{DecisionStore, StoreError};
