//! The appliance's ed25519 key for audit checkpoints: generated at first start into the
//! audit directory (`signing.pk8`, mode 0600), its public half beside it
//! (`signing.pub`, hex) for verifiers and the agent.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use coffer_privacy::checkpoint::Statement;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// Signing key errors.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("audit signing key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("audit signing key {0} is not a valid ed25519 PKCS#8 key")]
    Invalid(String),
}

/// The loaded key.
#[derive(Debug)]
pub struct Signer {
    key: Ed25519KeyPair,
}

impl Signer {
    /// Loads `dir/signing.pk8`, creating it (and `signing.pub`) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Signer, SigningError> {
        let path = dir.join("signing.pk8");
        let io = |source| SigningError::Io {
            path: path.display().to_string(),
            source,
        };
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| SigningError::Invalid(path.display().to_string()))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(doc.as_ref()).map_err(io)?;
                f.sync_all().map_err(io)?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| SigningError::Invalid(path.display().to_string()))?;
        let signer = Signer { key };
        std::fs::write(dir.join("signing.pub"), signer.public_key_hex()).map_err(io)?;
        Ok(signer)
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.public_key().as_ref())
    }

    /// Signs the statement that the chain up to `seq` ends in `hash`.
    pub fn sign(&self, seq: u64, hash: &str) -> String {
        self.sign_statement(Statement::Checkpoint, seq, hash)
    }

    /// Signs the statement that retention removed every record before `first_seq`, and
    /// that the record `first_seq` links to `prev`.
    pub fn sign_pruned(&self, first_seq: u64, prev: &str) -> String {
        self.sign_statement(Statement::Pruned, first_seq, prev)
    }

    fn sign_statement(&self, statement: Statement, seq: u64, hash: &str) -> String {
        let text = statement.text(seq, hash);
        hex::encode(self.key.sign(text.as_bytes()).as_ref())
    }
}

/// Checks a checkpoint signature against a hex public key.
pub fn verify(public_key_hex: &str, seq: u64, hash: &str, signature_hex: &str) -> bool {
    Statement::Checkpoint.verify(public_key_hex, seq, hash, signature_hex)
}

/// Checks a retention cut's signature against a hex public key.
pub fn verify_pruned(
    public_key_hex: &str,
    first_seq: u64,
    prev: &str,
    signature_hex: &str,
) -> bool {
    Statement::Pruned.verify(public_key_hex, first_seq, prev, signature_hex)
}
