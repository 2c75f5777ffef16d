//! Halts: a fleet admin (or `coffer-release watch`, when a release's abort criteria
//! trip) stops a release everywhere it has not been activated yet, with a key that can
//! do nothing else.
//!
//! ```text
//! targets metadata (offline targets key)   target `coffer/halt-keys.json`, custom
//!                                           `coffer_halt_keys`: the halt keys, threshold
//! REPO/public/halts.json (online halt key) {"signed": HaltList, "signatures": [...]}
//! ```
//!
//! The halt list is signed over its canonical JSON (as TUF signs its roles) by keys
//! that the targets role authorizes, so the key that signs halts lives on the machine
//! that runs `watch` while the targets key stays offline. What the halt key can do is
//! what the format lets it say: the list names releases (model and version) to stop and
//! nothing else (`deny_unknown_fields`), an agent reads releases only from the targets
//! role's own metadata, and it takes the halt keys only from there. A stolen halt key
//! can stop rollouts and lift halts (what the key exists to do), never publish, change
//! or un-withdraw a model. The list carries a version (an agent refuses one older than
//! it has seen, and one dated more than a day ahead of its clock, which would block
//! every later list) and an expiry: a host that serves an older list can delay a new
//! halt, for sites that have not seen it, by at most the older list's remaining
//! validity; one that hides the list stops every activation (see the agent's
//! `halt_list`).

mod write;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tough::schema::Signature;
use tough::schema::key::Key;

pub use write::{
    authorize_keys, deauthorize_keys, halt, lift, published_list, refresh, require_for_bundle,
};

pub use crate::layout::{
    HALT_KEYS_CUSTOM as KEYS_CUSTOM, HALT_KEYS_TARGET as KEYS_TARGET, HALT_LIST_FILE as LIST_FILE,
};
/// The largest halt list an agent reads.
pub const MAX_LIST_BYTES: usize = 1 << 20;
/// How far ahead of the reader's clock a list's version (its signing time in unix
/// milliseconds) may be.
pub const MAX_VERSION_AHEAD_MS: u64 = 86_400_000;

/// The keys the targets role lets sign the halt list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltKeys {
    pub keys: Vec<Key>,
    pub threshold: u32,
}

/// One stopped release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Halt {
    pub model: String,
    pub version: String,
    /// Why, for the fleet's people (no personal data: it is shown on every site).
    pub reason: String,
    /// RFC 3339.
    pub at: String,
}

/// What the halt list says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltList {
    #[serde(rename = "_type")]
    pub kind: String,
    pub version: u64,
    /// RFC 3339.
    pub expires: String,
    pub halts: Vec<Halt>,
    /// Halts an admin lifted by hand: `watch` does not halt these again when their
    /// criteria still trip (agents do not read it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifted: Vec<Halt>,
}

/// The halt list with its signatures, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHaltList {
    pub signed: HaltList,
    pub signatures: Vec<Signature>,
}

/// The `_type` of a halt list.
pub const LIST_TYPE: &str = "coffer-halts";

/// Why a halt list is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaltError {
    #[error("the halt list cannot be read: {0}")]
    Malformed(String),
    #[error("the halt list has {valid} valid signature(s) from halt keys, {threshold} needed")]
    Threshold { valid: usize, threshold: u32 },
    #[error("the halt list expired at {0}")]
    Expired(String),
    #[error("the halt list is version {got}, older than version {seen} seen before")]
    Rollback { got: u64, seen: u64 },
    #[error("the repository authorizes no halt keys")]
    NoKeys,
    #[error(
        "the halt list's version {got} is more than a day ahead of this clock: refused (it would block every later list)"
    )]
    FromTheFuture { got: u64 },
}

impl HaltList {
    /// The releases it stops.
    pub fn halted(&self) -> BTreeSet<(String, String)> {
        self.halts
            .iter()
            .map(|h| (h.model.clone(), h.version.clone()))
            .collect()
    }

    pub fn find(&self, model: &str, version: &str) -> Option<&Halt> {
        self.halts
            .iter()
            .find(|h| h.model == model && h.version == version)
    }
}

/// The canonical JSON of the signed part: what the signatures cover.
pub fn canonical(list: &HaltList) -> Result<Vec<u8>, HaltError> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    list.serialize(&mut ser)
        .map_err(|e| HaltError::Malformed(e.to_string()))?;
    Ok(out)
}

/// Reads and checks a published halt list against the authorized keys, the time now
/// (a list expired less than `grace` ago still counts: bundles for air-gapped sites),
/// and the newest version this reader accepted before (`seen`).
pub fn verify(
    bytes: &[u8],
    keys: &HaltKeys,
    now: jiff::Timestamp,
    seen: u64,
    grace: std::time::Duration,
) -> Result<HaltList, HaltError> {
    if bytes.len() > MAX_LIST_BYTES {
        return Err(HaltError::Malformed(format!(
            "larger than {MAX_LIST_BYTES} bytes"
        )));
    }
    let signed: SignedHaltList =
        serde_json::from_slice(bytes).map_err(|e| HaltError::Malformed(e.to_string()))?;
    if signed.signed.kind != LIST_TYPE {
        return Err(HaltError::Malformed(format!(
            "_type is {:?}, not {LIST_TYPE:?}",
            signed.signed.kind
        )));
    }
    if keys.keys.is_empty() || keys.threshold == 0 {
        return Err(HaltError::NoKeys);
    }
    let msg = canonical(&signed.signed)?;
    let mut valid = BTreeSet::new();
    for sig in &signed.signatures {
        let by = keys.keys.iter().find(|k| {
            k.key_id()
                .is_ok_and(|id| id.as_ref() as &[u8] == sig.keyid.as_ref() as &[u8])
        });
        if let Some(key) = by
            && ed25519_verifies(key, &msg, &sig.sig)
        {
            valid.insert(sig.keyid.to_vec());
        }
    }
    if valid.len() < keys.threshold as usize {
        return Err(HaltError::Threshold {
            valid: valid.len(),
            threshold: keys.threshold,
        });
    }
    let expires: jiff::Timestamp = signed
        .signed
        .expires
        .parse()
        .map_err(|e| HaltError::Malformed(format!("expires: {e}")))?;
    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
    if expires.checked_add(grace).unwrap_or(jiff::Timestamp::MAX) <= now {
        return Err(HaltError::Expired(signed.signed.expires.clone()));
    }
    let now_ms = now.as_millisecond().max(0) as u64;
    if signed.signed.version > now_ms.saturating_add(MAX_VERSION_AHEAD_MS) {
        return Err(HaltError::FromTheFuture {
            got: signed.signed.version,
        });
    }
    if signed.signed.version < seen {
        return Err(HaltError::Rollback {
            got: signed.signed.version,
            seen,
        });
    }
    Ok(signed.signed)
}

/// Whether `sig` is `key`'s signature of `msg` (halt keys are ed25519, as
/// `coffer-release` makes them; any other kind never verifies).
fn ed25519_verifies(key: &Key, msg: &[u8], sig: &[u8]) -> bool {
    match key {
        Key::Ed25519 { keyval, .. } => ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            keyval.public.as_ref() as &[u8],
        )
        .verify(msg, sig)
        .is_ok(),
        _ => false,
    }
}

/// The halt keys a targets metadata authorizes, from its top-level targets only:
/// `Ok(None)` when it authorizes none, `Err` when its authorization cannot be read (a
/// reader must then treat halts as in force and unknown, not as unused).
pub fn authorized(targets: &tough::schema::Targets) -> Result<Option<HaltKeys>, String> {
    let Some((_, target)) = targets
        .targets
        .iter()
        .find(|(name, _)| name.raw() == KEYS_TARGET)
    else {
        return Ok(None);
    };
    let custom = target
        .custom
        .get(KEYS_CUSTOM)
        .ok_or_else(|| format!("{KEYS_TARGET} carries no {KEYS_CUSTOM}"))?;
    serde_json::from_value(custom.clone())
        .map(Some)
        .map_err(|e| format!("the halt keys in {KEYS_TARGET}: {e}"))
}

/// A short name of an authorized key set (sha256 of its sorted key ids): a reader keeps
/// the newest list version per key set, so a rotation of the halt keys starts afresh.
pub fn keys_id(keys: &HaltKeys) -> String {
    use sha2::Digest as _;
    let mut ids: Vec<String> = keys
        .keys
        .iter()
        .filter_map(|k| k.key_id().ok().map(|id| hex::encode(id.as_ref() as &[u8])))
        .collect();
    ids.sort();
    hex::encode(&sha2::Sha256::digest(ids.join(",").as_bytes())[..8])
}

#[cfg(test)]
mod tests;
