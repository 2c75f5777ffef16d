//! Root metadata: root version 1 (`init`) and the root rotations behind `rotate-key`.
//!
//! An agent takes root N+1 only if it is signed by a threshold of root N's root keys
//! *and* a threshold of its own (TUF 5.3.4). A rotation builds root N+1 from root N
//! (every other key, role and threshold as they are), replacing either every key of a
//! role ([`rotate_key`]) or one ([`replace_key`]: say a lost root key among several,
//! which no longer needs to be at hand), signs it with the key files at hand that either
//! root lists, checks it as an agent would (tough's own check) and publishes it with a
//! release signed under it ([`crate::publish`]). Before the new root is live, a failure
//! removes the new key files again; after it, the replaced key files that are at hand
//! move to `retired/`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tough::editor::signed::SignedRole;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root};

use crate::ReleaseError;
use crate::common::{Expiries, Published, SPEC_VERSION, expiry, nz, read_root, rng};
use crate::keys::{self, KeyFile};
use crate::publish::release;
use crate::repo::Repo;

fn id_hex(id: &Decoded<Hex>) -> String {
    hex::encode(id.as_ref() as &[u8])
}

fn key_id(k: &KeyFile) -> Result<Decoded<Hex>, ReleaseError> {
    k.key
        .key_id()
        .map_err(|e| ReleaseError::Key(format!("key id: {e}")))
}

/// Builds a root listing `keys` for their roles, `threshold` for root and 1 otherwise.
pub(crate) fn build_root(
    version: u64,
    expires: jiff::Timestamp,
    keys: &[&KeyFile],
    root_threshold: u64,
) -> Result<Root, ReleaseError> {
    let mut root = Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: nz(version),
        expires,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for role in keys::ROLES {
        let ids: Vec<_> = keys
            .iter()
            .filter(|k| k.role == role)
            .map(|k| key_id(k))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Err(ReleaseError::Key(format!(
                "no {} key: every role needs one",
                keys::role_name(role)
            )));
        }
        let threshold = if role == RoleType::Root {
            root_threshold
        } else {
            1
        };
        if threshold == 0 || threshold > ids.len() as u64 {
            return Err(ReleaseError::Usage(format!(
                "a threshold of {threshold} needs between 1 and {} {} keys",
                ids.len(),
                keys::role_name(role)
            )));
        }
        for k in keys.iter().filter(|k| k.role == role) {
            root.keys.insert(key_id(k)?, k.key.clone());
        }
        root.roles.insert(
            role,
            RoleKeys {
                keyids: ids,
                threshold: nz(threshold),
                _extra: HashMap::new(),
            },
        );
    }
    Ok(root)
}

/// Signs root version 1 with its own root keys.
pub(crate) async fn sign_first(root: Root, keys: &[&KeyFile]) -> Result<Vec<u8>, ReleaseError> {
    let signers = signers(&root, keys)?;
    let signed = SignedRole::new(
        root.clone(),
        &KeyHolder::Root(root),
        &keys::sources(signers),
        &rng(),
    )
    .await
    .map_err(ReleaseError::tuf("signing root"))?;
    Ok(signed.buffer().clone())
}

/// Root `version` from `current`: `role` without the keys in `replaced` and with `add`.
fn next_root(
    current: &Root,
    version: u64,
    expires: jiff::Timestamp,
    role: RoleType,
    replaced: &[Decoded<Hex>],
    add: &[KeyFile],
) -> Result<Root, ReleaseError> {
    let mut next = current.clone();
    next.version = nz(version);
    next.expires = expires;
    let listed = next.roles.get_mut(&role).ok_or_else(|| {
        ReleaseError::Key(format!("root lists no {} role", keys::role_name(role)))
    })?;
    listed.keyids.retain(|id| !replaced.contains(id));
    for k in add {
        let id = key_id(k)?;
        listed.keyids.push(id.clone());
        next.keys.insert(id, k.key.clone());
    }
    // A key that no role lists any more leaves the root.
    let used: HashSet<Decoded<Hex>> = next
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    next.keys.retain(|id, _| used.contains(id));
    Ok(next)
}

/// The key files at hand that `root` lists as root keys, if they reach its threshold.
fn signers<'a>(root: &Root, at_hand: &[&'a KeyFile]) -> Result<Vec<&'a KeyFile>, ReleaseError> {
    let role = root
        .roles
        .get(&RoleType::Root)
        .ok_or_else(|| ReleaseError::Key("root lists no root role".into()))?;
    let listed: HashSet<String> = role.keyids.iter().map(id_hex).collect();
    let mut seen = HashSet::new();
    let found: Vec<&KeyFile> = at_hand
        .iter()
        .copied()
        .filter(|k| listed.contains(&k.id_hex) && seen.insert(k.id_hex.clone()))
        .collect();
    if (found.len() as u64) < role.threshold.get() {
        return Err(ReleaseError::Key(format!(
            "root v{} needs {} of its {} root keys to sign; the key directory holds {}",
            root.version,
            role.threshold,
            role.keyids.len(),
            found.len()
        )));
    }
    Ok(found)
}

/// Signs `next` with the keys at hand of both `current` and `next`, and checks it as an
/// agent that trusts `current` would.
async fn sign_next(
    current: &Root,
    next: Root,
    at_hand: &[&KeyFile],
) -> Result<Vec<u8>, ReleaseError> {
    let old = signers(current, at_hand)?;
    let new = signers(&next, at_hand)?;
    let rng = rng();
    let by_new = SignedRole::new(
        next.clone(),
        &KeyHolder::Root(next.clone()),
        &keys::sources(new),
        &rng,
    )
    .await
    .map_err(ReleaseError::tuf("signing the new root with its keys"))?;
    let by_old = SignedRole::new(
        next.clone(),
        &KeyHolder::Root(current.clone()),
        &keys::sources(old),
        &rng,
    )
    .await
    .map_err(ReleaseError::tuf(
        "signing the new root with the current root keys",
    ))?;
    let signed = by_new
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(ReleaseError::tuf("combining root signatures"))?;
    for (which, root) in [("current", current), ("new", &next)] {
        root.verify_role(signed.signed()).map_err(|e| {
            ReleaseError::Key(format!(
                "root v{} would be refused: the {which} root's keys: {e}",
                next.version
            ))
        })?;
    }
    Ok(signed.buffer().clone())
}

/// What a key rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub role: RoleType,
    pub root_version: u64,
    pub new_keys: Vec<PathBuf>,
    /// Where the replaced key files that were at hand went.
    pub retired: Vec<PathBuf>,
    /// The release published with the new root; its `unfinished` also lists a replaced
    /// key file that could not be moved to `retired/`.
    pub published: Published,
}

/// Replaces every key of `role` by a new one (as many as root lists, so that its
/// threshold still holds) and publishes. Needs a threshold of the current root keys.
pub async fn rotate_key(
    repo: &Repo,
    keys_dir: &Path,
    role: RoleType,
    exp: &Expiries,
) -> Result<Rotated, ReleaseError> {
    rotate(repo, keys_dir, role, None, exp).await
}

/// Replaces the one key of `role` whose id starts with `key_id` (hex, as in the key's
/// file name) by a new one and publishes; its file need not be at hand. For the root
/// role, a threshold of the current root keys and of the new root's must be at hand.
pub async fn replace_key(
    repo: &Repo,
    keys_dir: &Path,
    role: RoleType,
    key_id: &str,
    exp: &Expiries,
) -> Result<Rotated, ReleaseError> {
    rotate(repo, keys_dir, role, Some(key_id), exp).await
}

/// The id of the one key of `role` in `root` that `prefix` names.
fn pick(
    root: &Root,
    role: RoleType,
    prefix: &str,
    at_hand: &[KeyFile],
) -> Result<Decoded<Hex>, ReleaseError> {
    let prefix = prefix.to_ascii_lowercase();
    let ids = root.roles.get(&role).map(|r| &r.keyids[..]).unwrap_or(&[]);
    let found: Vec<&Decoded<Hex>> = ids
        .iter()
        .filter(|id| !prefix.is_empty() && id_hex(id).starts_with(&prefix))
        .collect();
    if let [one] = found[..] {
        return Ok(one.clone());
    }
    let listed: Vec<String> = ids
        .iter()
        .map(|id| {
            let hex = id_hex(id);
            let here = at_hand.iter().any(|k| k.id_hex == hex);
            format!(
                "{} ({})",
                &hex[..8.min(hex.len())],
                if here {
                    "in the key directory"
                } else {
                    "not in the key directory"
                }
            )
        })
        .collect();
    Err(ReleaseError::Usage(format!(
        "{prefix:?} names {} of the {} keys of root v{} (it must name one): {}",
        found.len(),
        keys::role_name(role),
        root.version,
        listed.join(", ")
    )))
}

/// Key files made for a rotation: removed again unless the new root went live.
#[derive(Debug, Default)]
struct NewKeys(Vec<KeyFile>);

impl NewKeys {
    fn keep(mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|k| k.path)
            .collect()
    }
}

impl Drop for NewKeys {
    fn drop(&mut self) {
        for k in &self.0 {
            let _ = std::fs::remove_file(&k.path);
        }
    }
}

async fn rotate(
    repo: &Repo,
    keys_dir: &Path,
    role: RoleType,
    only: Option<&str>,
    exp: &Expiries,
) -> Result<Rotated, ReleaseError> {
    let (version, path) = repo.latest_root()?;
    let current = read_root(&path)?.signed;
    let at_hand = keys::load(keys_dir)?;
    let replaced = match only {
        Some(prefix) => vec![pick(&current, role, prefix, &at_hand)?],
        None => current
            .roles
            .get(&role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default(),
    };
    // Nothing is made unless the current root keys at hand can sign.
    signers(&current, &at_hand.iter().collect::<Vec<_>>())?;
    let mut made = NewKeys::default();
    for _ in 0..replaced.len().max(1) {
        made.0.push(keys::generate(keys_dir, role)?);
    }
    let next = next_root(
        &current,
        version + 1,
        expiry(exp.root)?,
        role,
        &replaced,
        &made.0,
    )?;
    let signing: Vec<&KeyFile> = at_hand.iter().chain(&made.0).collect();
    let signed = sign_next(&current, next, &signing).await?;
    let mut published = release(repo, keys_dir, exp, Some(&signed)).await?;
    let new_keys = made.keep();
    let mut retired = Vec::new();
    let replaced: HashSet<String> = replaced.iter().map(id_hex).collect();
    for k in at_hand.iter().filter(|k| replaced.contains(&k.id_hex)) {
        match keys::retire(k) {
            Ok(to) => retired.push(to),
            Err(e) => published.unfinished.push(format!(
                "moving the replaced key {} to retired/ ({e}): root v{} no longer trusts it; move it out of the key directory by hand",
                k.path.display(),
                version + 1
            )),
        }
    }
    Ok(Rotated {
        role,
        root_version: version + 1,
        new_keys,
        retired,
        published,
    })
}

#[cfg(test)]
mod tests {
    use tough::{ExpirationEnforcement, FilesystemTransport, Repository, RepositoryLoader};

    use super::*;
    use crate::init::init;
    use crate::layout::Ring;
    use crate::publish::{check, publish};
    use crate::testutil::names;

    /// A repository made by `init` with `root_keys` root keys (threshold `threshold`).
    async fn initialised(
        tmp: &tempfile::TempDir,
        root_keys: usize,
        threshold: u64,
    ) -> (Repo, std::path::PathBuf, Expiries) {
        let repo = Repo::new(tmp.path().join("repo"));
        let keys_dir = tmp.path().join("keys");
        let exp = Expiries::default();
        init(&repo, &keys_dir, root_keys, threshold, &exp)
            .await
            .unwrap();
        (repo, keys_dir, exp)
    }

    /// Loads `repo` as coffer-agent does: from the `1.root.json` a site was installed
    /// with, through the root chain, keeping what it verified in `datastore`.
    async fn agent_load(repo: &Repo, trusted_root: &[u8], datastore: &Path) -> Repository {
        std::fs::create_dir_all(datastore).unwrap();
        let url = |dir: PathBuf| url::Url::from_directory_path(dir).unwrap();
        RepositoryLoader::new(&trusted_root, url(repo.metadata()), url(repo.targets_dir()))
            .transport(FilesystemTransport)
            .datastore(datastore)
            .expiration_enforcement(ExpirationEnforcement::Safe)
            .load()
            .await
            .unwrap()
    }

    fn key_ids(root: &Root, role: RoleType) -> Vec<String> {
        let mut ids: Vec<String> = root.roles[&role].keyids.iter().map(id_hex).collect();
        ids.sort();
        ids
    }

    fn first_root_key(keys_dir: &Path) -> KeyFile {
        keys::load(keys_dir)
            .unwrap()
            .into_iter()
            .find(|k| k.role == RoleType::Root)
            .unwrap()
    }

    #[tokio::test]
    async fn one_lost_root_key_is_replaced_and_agents_follow_the_new_root() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, keys_dir, exp) = initialised(&tmp, 3, 2).await;
        let trusted = std::fs::read(repo.metadata().join("1.root.json")).unwrap();
        let site = tmp.path().join("site");
        let v1 = agent_load(&repo, &trusted, &site).await;
        assert_eq!(v1.root().signed.version.get(), 1);

        let lost = first_root_key(&keys_dir);
        std::fs::remove_file(&lost.path).unwrap();
        let r = replace_key(&repo, &keys_dir, RoleType::Root, &lost.id_hex[..8], &exp)
            .await
            .unwrap();
        assert!(r.published.is_complete(), "{:?}", r.published.unfinished);
        assert_eq!(
            (r.root_version, r.new_keys.len(), r.retired.len()),
            (2, 1, 0)
        );
        let new = keys::load(&keys_dir)
            .unwrap()
            .into_iter()
            .find(|k| k.path == r.new_keys[0])
            .unwrap();

        repo.add(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/credit-lr/1.0.0"),
            Ring::Broad,
            &mut |_, _| {},
        )
        .unwrap();
        assert!(publish(&repo, &keys_dir, &exp).await.unwrap().is_complete());

        // A site that trusted root v1 all along, and one installed with it today.
        for datastore in [site, tmp.path().join("new-site")] {
            let loaded = agent_load(&repo, &trusted, &datastore).await;
            let root = &loaded.root().signed;
            assert_eq!(root.version.get(), 2);
            let ids = key_ids(root, RoleType::Root);
            assert_eq!(ids.len(), 3);
            assert_eq!(root.roles[&RoleType::Root].threshold.get(), 2);
            assert!(!ids.contains(&lost.id_hex), "the lost key is out");
            assert!(!root.keys.keys().any(|id| id_hex(id) == lost.id_hex));
            assert!(ids.contains(&new.id_hex));
            assert!(
                loaded
                    .all_targets()
                    .any(|(name, _)| name.raw() == "credit-lr/1.0.0/manifest.toml")
            );
        }
    }

    #[tokio::test]
    async fn a_rotation_keeps_the_root_keys_that_are_not_at_hand() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, keys_dir, exp) = initialised(&tmp, 3, 2).await;
        let trusted = std::fs::read(repo.metadata().join("1.root.json")).unwrap();
        let before = read_root(&repo.metadata().join("1.root.json"))
            .unwrap()
            .signed;
        // One root key is kept offline, elsewhere.
        let away = first_root_key(&keys_dir);
        let offline = tmp.path().join("offline");
        std::fs::create_dir_all(&offline).unwrap();
        std::fs::rename(&away.path, offline.join("root.pk8")).unwrap();

        let r = rotate_key(&repo, &keys_dir, RoleType::Targets, &exp)
            .await
            .unwrap();
        assert!(r.published.is_complete(), "{:?}", r.published.unfinished);
        let after = read_root(&repo.latest_root().unwrap().1).unwrap().signed;
        assert_eq!(
            key_ids(&after, RoleType::Root),
            key_ids(&before, RoleType::Root)
        );
        assert_ne!(
            key_ids(&after, RoleType::Targets),
            key_ids(&before, RoleType::Targets)
        );
        let loaded = agent_load(&repo, &trusted, &tmp.path().join("site")).await;
        assert_eq!(loaded.root().signed.version.get(), 2);
    }

    #[tokio::test]
    async fn without_a_threshold_of_root_keys_a_rotation_makes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, keys_dir, exp) = initialised(&tmp, 3, 2).await;
        for _ in 0..2 {
            std::fs::remove_file(first_root_key(&keys_dir).path).unwrap();
        }
        let (keys_before, meta_before) = (names(&keys_dir), names(&repo.metadata()));
        for role in keys::ROLES {
            let e = rotate_key(&repo, &keys_dir, role, &exp).await.unwrap_err();
            assert!(e.to_string().contains("needs 2 of its 3 root keys"), "{e}");
        }
        let id = &first_root_key(&keys_dir).id_hex;
        replace_key(&repo, &keys_dir, RoleType::Root, id, &exp)
            .await
            .unwrap_err();
        assert_eq!(names(&keys_dir), keys_before);
        assert_eq!(names(&repo.metadata()), meta_before);
    }

    #[tokio::test]
    async fn a_rotation_that_cannot_retire_the_old_key_is_live_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, keys_dir, exp) = initialised(&tmp, 1, 1).await;
        // `retired` is a file: the old key cannot move there.
        std::fs::write(keys_dir.join("retired"), "").unwrap();
        let r = rotate_key(&repo, &keys_dir, RoleType::Targets, &exp)
            .await
            .unwrap();
        assert_eq!(r.root_version, 2);
        assert!(r.retired.is_empty());
        assert_eq!(r.published.unfinished.len(), 1);
        assert!(
            r.published.unfinished[0].contains("no longer trusts it"),
            "{:?}",
            r.published.unfinished
        );
        let live = check(&repo, ExpirationEnforcement::Safe).await.unwrap();
        assert_eq!(
            (
                live.root().signed.version.get(),
                live.targets().signed.version.get()
            ),
            (2, 2)
        );
    }
}
