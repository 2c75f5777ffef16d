//! Signed audit statements as they leave the appliance: the wire form of a checkpoint
//! that cofferd lists on its admin socket and coffer-agent ships, and the ed25519
//! statements both ends (and `cofferctl audit verify`) check. Only sequence numbers,
//! hashes and signatures: nothing of the audited requests.

use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// One signed checkpoint: the record's own `seq` and `at_ms`, and the signed statement
/// that the chain up to `upto_seq` ends in `upto_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub at_ms: u64,
    pub upto_seq: u64,
    pub upto_hash: String,
    pub signature: String,
}

/// What a signature states. The kinds differ in their prefix, so that one kind's
/// signature never passes for another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// The chain up to `seq` ends in `hash` (checkpoints and `HEAD`).
    Checkpoint,
    /// Retention removed every record before `seq`, and record `seq` links to `hash`.
    Pruned,
}

impl Statement {
    /// The signed bytes.
    pub fn text(self, seq: u64, hash: &str) -> String {
        let kind = match self {
            Statement::Checkpoint => "coffer-audit-checkpoint",
            Statement::Pruned => "coffer-audit-pruned",
        };
        format!("{kind}:{seq}:{hash}")
    }

    /// Whether `signature_hex` is the key `public_key_hex`'s ed25519 signature of this
    /// statement about `seq` and `hash`.
    pub fn verify(self, public_key_hex: &str, seq: u64, hash: &str, signature_hex: &str) -> bool {
        let (Ok(pk), Ok(sig)) = (hex::decode(public_key_hex), hex::decode(signature_hex)) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, pk)
            .verify(self.text(seq, hash).as_bytes(), &sig)
            .is_ok()
    }
}
