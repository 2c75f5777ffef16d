//! Writing halts: staging the halt keys' authorization (published with the targets
//! key), and signing the halt list with the halt keys (`halt`, `lift`, `refresh`),
//! written atomically into the published tree after it was checked as an agent
//! checks it. Each change reads, signs and writes the list under an exclusive lock
//! (`REPO/.halts.lock`), so a `halt` by hand and a running `watch` never lose each
//! other's change.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tough::key_source::{KeySource as _, LocalKeySource};
use tough::schema::{Hashes, Signature, Target};

use super::{
    HaltKeys, HaltList, KEYS_CUSTOM, KEYS_TARGET, LIST_FILE, LIST_TYPE, SignedHaltList, authorized,
    canonical, verify,
};
use crate::ReleaseError;
use crate::keys::{self, HaltKey};
use crate::layout;
use crate::repo::{Repo, releases, write_atomic};

/// Stages the authorization of every halt key in `halt_keys` (a new one made first when
/// `new`, or when there is none): the next `publish`, with the targets key, makes it
/// live and drops any halt key not in the directory.
pub fn authorize_keys(repo: &Repo, halt_keys: &Path, new: bool) -> Result<HaltKeys, ReleaseError> {
    let mut found = if halt_keys.exists() {
        keys::load_halt(halt_keys)?
    } else {
        Vec::new()
    };
    if new || found.is_empty() {
        found.push(keys::generate_halt(halt_keys)?);
    }
    let authorization = HaltKeys {
        keys: found.iter().map(|k| k.key.clone()).collect(),
        threshold: 1,
    };
    let bytes = serde_json::to_vec_pretty(&authorization)
        .map_err(|e| ReleaseError::Usage(e.to_string()))?;
    let sha = Sha256::digest(&bytes);
    let dest = repo
        .targets_dir()
        .join(layout::target_file(&hex::encode(sha), KEYS_TARGET));
    write_atomic(&dest, &bytes)?;
    let mut custom = HashMap::new();
    custom.insert(
        KEYS_CUSTOM.to_string(),
        serde_json::to_value(&authorization).map_err(|e| ReleaseError::Usage(e.to_string()))?,
    );
    let mut draft = repo.draft()?;
    draft.insert(
        KEYS_TARGET.to_string(),
        Target {
            length: bytes.len() as u64,
            hashes: Hashes {
                sha256: sha.to_vec().into(),
                _extra: Default::default(),
            },
            custom,
            _extra: Default::default(),
        },
    );
    repo.save_draft(draft)?;
    Ok(authorization)
}

/// Stages the end of halts: the halt keys' authorization goes with the next `publish`
/// (with the targets key); sites then need no halt list. Refused while a release
/// carries abort criteria (sites would never activate it).
pub fn deauthorize_keys(repo: &Repo) -> Result<(), ReleaseError> {
    let mut draft = repo.draft()?;
    if let Some(r) = releases(&draft).into_iter().find(|r| r.abort.is_some()) {
        return Err(ReleaseError::Usage(format!(
            "{}@{} has abort criteria, which need halt keys: clear them first (`coffer-release abort-when {} {} --clear`)",
            r.model, r.version, r.model, r.version
        )));
    }
    if draft.remove(KEYS_TARGET).is_none() {
        return Err(ReleaseError::Usage(
            "the repository authorizes no halt keys".into(),
        ));
    }
    repo.save_draft(draft)
}

/// The published halt list, as it is on disk (`None` before the first halt).
pub fn published_list(repo: &Repo) -> Result<Option<SignedHaltList>, ReleaseError> {
    let path = repo.public().join(LIST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ReleaseError::Metadata {
                path,
                what: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReleaseError::Io { path, source }),
    }
}

/// Holds the repository's halt lock until dropped.
struct HaltLock {
    _file: std::fs::File,
}

fn lock(repo: &Repo) -> Result<HaltLock, ReleaseError> {
    let path = repo.dir.join(".halts.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ReleaseError::Io {
            path: path.clone(),
            source,
        })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        ReleaseError::Io {
            path,
            source: e.into(),
        }
    })?;
    Ok(HaltLock { _file: file })
}

/// Changes the published list under the lock: `change` gets the current halts and
/// lifted halts (none before the first list) and edits them.
async fn change_list(
    repo: &Repo,
    halt_keys: &Path,
    valid_for: Duration,
    change: impl FnOnce(&mut Vec<super::Halt>, &mut Vec<super::Halt>),
) -> Result<SignedHaltList, ReleaseError> {
    let _lock = lock(repo)?;
    let (mut halts, mut lifted) =
        published_list(repo)?.map_or_else(Default::default, |l| (l.signed.halts, l.signed.lifted));
    change(&mut halts, &mut lifted);
    let list = HaltList {
        kind: LIST_TYPE.into(),
        version: 0,
        expires: String::new(),
        halts,
        lifted,
    };
    sign_and_publish(repo, halt_keys, list, valid_for).await
}

/// Signs `list` (its version above the published one, valid for `valid_for`) with
/// the halt keys in `halt_keys` that the published targets authorize, checks it as an
/// agent would, and publishes it. The caller holds the lock.
async fn sign_and_publish(
    repo: &Repo,
    halt_keys: &Path,
    mut list: HaltList,
    valid_for: Duration,
) -> Result<SignedHaltList, ReleaseError> {
    let current = repo
        .published()?
        .ok_or_else(|| ReleaseError::Usage("nothing is published yet".into()))?;
    let authorization = authorized(&current.targets.signed)
        .map_err(ReleaseError::Usage)?
        .ok_or_else(|| {
            ReleaseError::Usage(
                "the published targets authorize no halt keys: run `coffer-release halt-keys`, then `publish` with the targets key".into(),
            )
        })?;
    let usable: Vec<HaltKey> = keys::load_halt(halt_keys)?
        .into_iter()
        .filter(|k| authorization.keys.contains(&k.key))
        .collect();
    if usable.is_empty() {
        return Err(ReleaseError::Key(format!(
            "no halt key in {} is authorized by the published targets",
            halt_keys.display()
        )));
    }
    let now = jiff::Timestamp::now();
    list.kind = LIST_TYPE.into();
    // Above the last one, and never below the clock's milliseconds: a list file lost
    // or restored from a backup cannot make the next version one that sites refuse.
    let last = published_list(repo)?.map_or(0, |l| l.signed.version);
    let next = last.checked_add(1).ok_or_else(|| {
        ReleaseError::Usage(format!(
            "the published halt list's version {last} cannot be raised: remove {} and sign again",
            repo.public().join(LIST_FILE).display()
        ))
    })?;
    list.version = next.max(now.as_millisecond().max(0) as u64);
    list.expires = crate::common::expiry(valid_for)?.to_string();
    let msg = canonical(&list).map_err(|e| ReleaseError::Usage(e.to_string()))?;
    let rng = crate::common::rng();
    let mut signatures = Vec::new();
    for k in &usable {
        let source = LocalKeySource {
            path: k.path.clone(),
        };
        let signer = source
            .as_sign()
            .await
            .map_err(|e| ReleaseError::Key(format!("{}: {e}", k.path.display())))?;
        let sig = signer
            .sign(&msg, &rng)
            .await
            .map_err(|e| ReleaseError::Key(format!("signing with {}: {e}", k.path.display())))?;
        let keyid = k
            .key
            .key_id()
            .map_err(|e| ReleaseError::Key(format!("key id: {e}")))?;
        signatures.push(Signature {
            keyid,
            sig: sig.into(),
        });
    }
    let signed = SignedHaltList {
        signed: list,
        signatures,
    };
    let bytes =
        serde_json::to_vec_pretty(&signed).map_err(|e| ReleaseError::Usage(e.to_string()))?;
    verify(&bytes, &authorization, now, 0, Duration::ZERO).map_err(|e| {
        ReleaseError::Usage(format!("the halt list just signed does not verify: {e}"))
    })?;
    write_atomic(&repo.public().join(LIST_FILE), &bytes)?;
    Ok(signed)
}

/// Stops `model@version` on every site that has not activated it. `Ok(false)`: it was
/// halted already (the list is re-signed all the same, fresh).
pub async fn halt(
    repo: &Repo,
    halt_keys: &Path,
    model: &str,
    version: &str,
    reason: &str,
    valid_for: Duration,
) -> Result<(SignedHaltList, bool), ReleaseError> {
    let published = repo
        .published()?
        .ok_or_else(|| ReleaseError::Usage("nothing is published yet".into()))?;
    let draft = crate::repo::draft_of(published.targets.signed);
    if !releases(&draft)
        .iter()
        .any(|r| r.model == model && r.version == version)
    {
        return Err(ReleaseError::Usage(format!(
            "{model}@{version} is not a published release"
        )));
    }
    if reason.chars().count() > 300 || reason.chars().any(char::is_control) {
        return Err(ReleaseError::Usage(
            "a halt's reason is one line of at most 300 characters".into(),
        ));
    }
    let mut new = false;
    let list = change_list(repo, halt_keys, valid_for, |halts, lifted| {
        lifted.retain(|h| !(h.model == model && h.version == version));
        if !halts
            .iter()
            .any(|h| h.model == model && h.version == version)
        {
            new = true;
            halts.push(super::Halt {
                model: model.into(),
                version: version.into(),
                reason: reason.into(),
                at: jiff::Timestamp::now().to_string(),
            });
        }
    })
    .await?;
    Ok((list, new))
}

/// Lets `model@version` roll out again. `Ok(false)`: it was not halted.
pub async fn lift(
    repo: &Repo,
    halt_keys: &Path,
    model: &str,
    version: &str,
    valid_for: Duration,
) -> Result<(SignedHaltList, bool), ReleaseError> {
    let mut lifted_now = false;
    let list = change_list(repo, halt_keys, valid_for, |halts, lifted| {
        let before = halts.len();
        halts.retain(|h| !(h.model == model && h.version == version));
        lifted_now = halts.len() < before;
        // Remembered, so that `watch` does not halt it again by its criteria.
        lifted.retain(|h| !(h.model == model && h.version == version));
        lifted.push(super::Halt {
            model: model.into(),
            version: version.into(),
            reason: "lifted by hand".into(),
            at: jiff::Timestamp::now().to_string(),
        });
    })
    .await?;
    Ok((list, lifted_now))
}

/// Re-signs the published halt list unchanged but for its version and expiry (what
/// `watch` does while it runs, so the list never lapses).
pub async fn refresh(
    repo: &Repo,
    halt_keys: &Path,
    valid_for: Duration,
) -> Result<SignedHaltList, ReleaseError> {
    change_list(repo, halt_keys, valid_for, |_, _| {}).await
}

/// What `export-bundle` requires: where the published targets authorize halt keys, a
/// halt list valid at least until `until` (the bundle's own expiry), or the site that
/// imports the bundle would activate nothing once the list lapsed.
pub fn require_for_bundle(repo: &Repo, until: jiff::Timestamp) -> Result<(), ReleaseError> {
    let Some(current) = repo.published()? else {
        return Ok(());
    };
    if authorized(&current.targets.signed)
        .map_err(ReleaseError::Usage)?
        .is_none()
    {
        return Ok(());
    }
    let fix = "re-sign it for as long as the bundle: `coffer-release refresh-halts --halt-keys DIR --valid-for DURATION`";
    let Some(list) = published_list(repo)? else {
        return Err(ReleaseError::Usage(format!(
            "the repository authorizes halt keys but publishes no halt list: sites would activate nothing from this bundle; {fix}"
        )));
    };
    let expires: jiff::Timestamp = list
        .signed
        .expires
        .parse()
        .map_err(|e| ReleaseError::Usage(format!("the published halt list's expiry: {e}")))?;
    if expires < until {
        return Err(ReleaseError::Usage(format!(
            "the halt list expires at {expires}, before the bundle's metadata ({until}): sites would activate nothing from the bundle after that; {fix}"
        )));
    }
    Ok(())
}
