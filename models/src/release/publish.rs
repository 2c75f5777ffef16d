//! Signing a release repository: `init` (keys and root version 1), `publish` (targets,
//! snapshot and timestamp, each with its expiry; or the timestamp alone, which is what a
//! host with only the timestamp key online re-signs on a schedule), `rotate-key` (a new
//! root version that replaces a role's keys, signed by the old and the new root keys),
//! and `check` (loads the published tree exactly as an agent does).
//!
//! Publishing writes the new files into a staging directory, then moves them into
//! `metadata/` in dependency order, `timestamp.json` last and by atomic rename: a host
//! serving the tree mid-publish serves either the old release or the new one.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Signed, Timestamp};
use tough::{ExpirationEnforcement, FilesystemTransport, Repository, RepositoryLoader};

use super::ReleaseError;
use super::keys::{self, KeyFile};
use super::repo::{Repo, write_atomic};

const SPEC_VERSION: &str = "1.0.0";

/// How long each role's metadata stays valid from the moment it is signed.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    pub root: Duration,
    pub targets: Duration,
    pub snapshot: Duration,
    pub timestamp: Duration,
}

impl Default for Expiries {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Expiries {
            root: Duration::from_secs(365 * DAY),
            targets: Duration::from_secs(90 * DAY),
            snapshot: Duration::from_secs(30 * DAY),
            timestamp: Duration::from_secs(DAY),
        }
    }
}

/// What a publish wrote.
#[derive(Debug, Clone)]
pub struct Published {
    pub root_version: u64,
    pub targets_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    /// The earliest expiry among the published roles: the repository must be published
    /// again (or its timestamp re-signed) before then.
    pub expires: jiff::Timestamp,
    pub releases: usize,
}

fn nz(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)
}

fn expiry(from_now: Duration) -> Result<jiff::Timestamp, ReleaseError> {
    let span = jiff::SignedDuration::try_from(from_now)
        .map_err(|e| ReleaseError::Usage(format!("expiry {from_now:?}: {e}")))?;
    jiff::Timestamp::now()
        .checked_add(span)
        .map_err(|e| ReleaseError::Usage(format!("expiry {from_now:?}: {e}")))
}

fn rng() -> aws_lc_rs::rand::SystemRandom {
    aws_lc_rs::rand::SystemRandom::new()
}

fn read_root(path: &Path) -> Result<Signed<Root>, ReleaseError> {
    let bytes = std::fs::read(path).map_err(|source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ReleaseError::Metadata {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// Builds a root listing `keys` for their roles, `threshold` for root and 1 otherwise.
fn build_root(
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
            .map(|k| {
                k.key
                    .key_id()
                    .map_err(|e| ReleaseError::Key(format!("key id: {e}")))
            })
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
            let id = k
                .key
                .key_id()
                .map_err(|e| ReleaseError::Key(format!("key id: {e}")))?;
            root.keys.insert(id, k.key.clone());
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

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    pub root: PathBuf,
    pub keys: Vec<PathBuf>,
    pub published: Published,
}

/// Creates a repository: `root_keys` root keys (of which `root_threshold` must sign each
/// root), one key for each other role, root version 1 and an empty first release.
pub async fn init(
    repo: &Repo,
    keys_dir: &Path,
    root_keys: usize,
    root_threshold: u64,
    exp: &Expiries,
) -> Result<Initialized, ReleaseError> {
    if repo.latest_root().is_ok() {
        return Err(ReleaseError::Usage(format!(
            "{} already holds a repository",
            repo.dir.display()
        )));
    }
    if root_keys == 0 {
        return Err(ReleaseError::Usage(
            "at least one root key is needed".into(),
        ));
    }
    let mut made = Vec::new();
    for _ in 0..root_keys {
        made.push(keys::generate(keys_dir, RoleType::Root)?);
    }
    for role in &keys::ROLES[1..] {
        made.push(keys::generate(keys_dir, *role)?);
    }
    let refs: Vec<&KeyFile> = made.iter().collect();
    let root = build_root(1, expiry(exp.root)?, &refs, root_threshold)?;
    let signed = SignedRole::new(
        root.clone(),
        &KeyHolder::Root(root),
        &keys::sources(&made),
        &rng(),
    )
    .await
    .map_err(ReleaseError::tuf("signing root"))?;
    let root_path = repo.metadata().join("1.root.json");
    std::fs::create_dir_all(repo.targets_dir()).map_err(|source| ReleaseError::Io {
        path: repo.targets_dir(),
        source,
    })?;
    write_atomic(&root_path, signed.buffer())?;
    let published = publish(repo, keys_dir, exp).await?;
    Ok(Initialized {
        root: root_path,
        keys: made.into_iter().map(|k| k.path).collect(),
        published,
    })
}

/// Signs the draft (or the published targets again) as new targets, snapshot and
/// timestamp versions, writes them, and checks the result as a client would.
pub async fn publish(
    repo: &Repo,
    keys_dir: &Path,
    exp: &Expiries,
) -> Result<Published, ReleaseError> {
    let (root_version, root_path) = repo.latest_root()?;
    let keys = keys::load(keys_dir)?;
    let draft = repo.draft()?;
    let releases = super::repo::releases(&draft).len();
    let (tv, sv, tsv) = match repo.published()? {
        Some(c) => (
            c.targets.signed.version.get() + 1,
            c.snapshot.signed.version.get() + 1,
            c.timestamp.signed.version.get() + 1,
        ),
        None => (1, 1, 1),
    };
    let mut editor = RepositoryEditor::new(&root_path)
        .await
        .map_err(ReleaseError::tuf("reading the root"))?;
    for (name, target) in draft {
        editor
            .add_target(name.as_str(), target)
            .map_err(ReleaseError::tuf(format!("target {name}")))?;
    }
    let targets_expires = expiry(exp.targets)?;
    editor
        .targets_version(nz(tv))
        .map_err(ReleaseError::tuf("targets version"))?;
    editor
        .targets_expires(targets_expires)
        .map_err(ReleaseError::tuf("targets expiry"))?;
    editor
        .snapshot_version(nz(sv))
        .snapshot_expires(expiry(exp.snapshot)?)
        .timestamp_version(nz(tsv))
        .timestamp_expires(expiry(exp.timestamp)?);
    let signed = editor
        .sign(&keys::sources(&keys))
        .await
        .map_err(ReleaseError::tuf(
            "signing (are the targets, snapshot and timestamp keys in the key directory?)",
        ))?;
    let staging = repo.dir.join(".publish");
    let _ = std::fs::remove_dir_all(&staging);
    signed
        .write(&staging)
        .await
        .map_err(ReleaseError::tuf("writing metadata"))?;
    let meta = repo.metadata();
    for file in [format!("{tv}.targets.json"), format!("{sv}.snapshot.json")] {
        let bytes = std::fs::read(staging.join(&file)).map_err(|source| ReleaseError::Io {
            path: staging.join(&file),
            source,
        })?;
        write_atomic(&meta.join(&file), &bytes)?;
    }
    let ts = std::fs::read(staging.join("timestamp.json")).map_err(|source| ReleaseError::Io {
        path: staging.join("timestamp.json"),
        source,
    })?;
    write_atomic(&meta.join("timestamp.json"), &ts)?;
    let _ = std::fs::remove_dir_all(&staging);
    repo.clear_draft()?;
    let loaded = check(repo, ExpirationEnforcement::Safe).await?;
    Ok(Published {
        root_version,
        targets_version: tv,
        snapshot_version: sv,
        timestamp_version: tsv,
        expires: earliest_expiry(&loaded),
        releases,
    })
}

/// The earliest expiry of a loaded repository's top-level roles.
pub fn earliest_expiry(repo: &Repository) -> jiff::Timestamp {
    [
        repo.root().signed.expires,
        repo.targets().signed.expires,
        repo.snapshot().signed.expires,
        repo.timestamp().signed.expires,
    ]
    .into_iter()
    .min()
    .unwrap_or_default()
}

/// Re-signs only the timestamp (version + 1, new expiry), for a host that keeps only
/// the timestamp key online.
pub async fn refresh_timestamp(
    repo: &Repo,
    keys_dir: &Path,
    valid_for: Duration,
) -> Result<Published, ReleaseError> {
    let (root_version, root_path) = repo.latest_root()?;
    let root = read_root(&root_path)?;
    let Some(super::repo::Current {
        timestamp: ts,
        snapshot: snap,
        targets,
    }) = repo.published()?
    else {
        return Err(ReleaseError::Usage("nothing is published yet".into()));
    };
    let mut next = Timestamp::new(
        SPEC_VERSION.into(),
        nz(ts.signed.version.get() + 1),
        expiry(valid_for)?,
    );
    next.meta = ts.signed.meta.clone();
    let keys = keys::load(keys_dir)?;
    let signed = SignedRole::new(
        next,
        &KeyHolder::Root(root.signed),
        &keys::sources(&keys),
        &rng(),
    )
    .await
    .map_err(ReleaseError::tuf(
        "signing the timestamp (is the timestamp key in the key directory?)",
    ))?;
    write_atomic(&repo.metadata().join("timestamp.json"), signed.buffer())?;
    let loaded = check(repo, ExpirationEnforcement::Safe).await?;
    Ok(Published {
        root_version,
        targets_version: targets.signed.version.get(),
        snapshot_version: snap.signed.version.get(),
        timestamp_version: ts.signed.version.get() + 1,
        expires: earliest_expiry(&loaded),
        releases: super::repo::releases(&super::repo::draft_of(targets.signed)).len(),
    })
}

/// What a key rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub role: RoleType,
    pub root_version: u64,
    pub new_keys: Vec<PathBuf>,
    pub retired: Vec<PathBuf>,
    pub published: Published,
}

/// Replaces every key of `role` by a new one (as many as it had): a new root version listing them, signed by
/// the current root keys and (for a root rotation) the new ones, then a publish signed
/// with the new key. The old key files move to `retired/`.
pub async fn rotate_key(
    repo: &Repo,
    keys_dir: &Path,
    role: RoleType,
    exp: &Expiries,
) -> Result<Rotated, ReleaseError> {
    let (root_version, root_path) = repo.latest_root()?;
    let old_root = read_root(&root_path)?;
    let all = keys::load(keys_dir)?;
    let old_root_keys: Vec<&KeyFile> = all.iter().filter(|k| k.role == RoleType::Root).collect();
    // As many new keys as the role had, so that its threshold still holds.
    let count = all.iter().filter(|k| k.role == role).count().max(1);
    let new_keys = (0..count)
        .map(|_| keys::generate(keys_dir, role))
        .collect::<Result<Vec<_>, _>>()?;
    let mut listed: Vec<&KeyFile> = all.iter().filter(|k| k.role != role).collect();
    listed.extend(new_keys.iter());
    let root_threshold = old_root
        .signed
        .roles
        .get(&RoleType::Root)
        .map(|r| r.threshold.get())
        .unwrap_or(1);
    let next = build_root(root_version + 1, expiry(exp.root)?, &listed, root_threshold)?;
    let rng = rng();
    // Signed by the new root's keys…
    let by_new = SignedRole::new(
        next.clone(),
        &KeyHolder::Root(next.clone()),
        &keys::sources(listed.iter().copied()),
        &rng,
    )
    .await
    .map_err(ReleaseError::tuf("signing the new root with its keys"))?;
    // …and by the current root's keys, so that a client trusting the current root
    // accepts it.
    let by_old = SignedRole::new(
        next,
        &KeyHolder::Root(old_root.signed.clone()),
        &keys::sources(old_root_keys.iter().copied()),
        &rng,
    )
    .await
    .map_err(ReleaseError::tuf(
        "signing the new root with the current root keys",
    ))?;
    let signed = by_new
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(ReleaseError::tuf("combining root signatures"))?;
    let next_path = repo
        .metadata()
        .join(format!("{}.root.json", root_version + 1));
    write_atomic(&next_path, signed.buffer())?;
    let mut retired = Vec::new();
    for k in all.iter().filter(|k| k.role == role) {
        retired.push(keys::retire(k)?);
    }
    let published = publish(repo, keys_dir, exp).await?;
    Ok(Rotated {
        role,
        root_version: root_version + 1,
        new_keys: new_keys.into_iter().map(|k| k.path).collect(),
        retired,
        published,
    })
}

/// Loads the published tree as an agent does (from `1.root.json` through every root
/// version, every signature, hash and version, and expiry per `expiry`).
pub async fn check(repo: &Repo, expiry: ExpirationEnforcement) -> Result<Repository, ReleaseError> {
    load_dir(&repo.public(), expiry).await
}

/// Loads a repository tree (`metadata/`, `targets/`) from a directory, trusting its
/// `1.root.json`.
pub async fn load_dir(
    public: &Path,
    expiry: ExpirationEnforcement,
) -> Result<Repository, ReleaseError> {
    let root_path = public.join(super::layout::METADATA_DIR).join("1.root.json");
    let root = std::fs::read(&root_path).map_err(|source| ReleaseError::Io {
        path: root_path.clone(),
        source,
    })?;
    let url = |sub: &str| {
        url::Url::from_directory_path(public.join(sub)).map_err(|()| {
            ReleaseError::Usage(format!("{} is not an absolute path", public.display()))
        })
    };
    let datastore = tempfile::tempdir().map_err(|source| ReleaseError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    RepositoryLoader::new(
        &root,
        url(super::layout::METADATA_DIR)?,
        url(super::layout::TARGETS_DIR)?,
    )
    .transport(FilesystemTransport)
    .datastore(datastore.path())
    .expiration_enforcement(expiry)
    .load()
    .await
    .map_err(ReleaseError::tuf(format!("loading {}", public.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::layout::Ring;
    use crate::release::repo::releases;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
            .join("1.0.0")
    }

    #[tokio::test]
    async fn stage_publish_rotate_and_export_a_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path().join("repo"));
        let keys_dir = tmp.path().join("keys");
        let exp = Expiries::default();
        let first = init(&repo, &keys_dir, 2, 2, &exp).await.unwrap();
        assert_eq!(first.keys.len(), 5, "two root keys and one per other role");
        assert!(
            init(&repo, &keys_dir, 1, 1, &exp).await.is_err(),
            "init twice"
        );
        assert_eq!(first.published.releases, 0);

        let info = repo
            .add(&fixture("credit-lr"), Ring::Canary, &mut |_, _| {})
            .unwrap();
        assert_eq!((info.seq, info.ring), (1, Ring::Canary));
        assert_eq!(info.files[0], "manifest.toml");
        let again = repo.add(&fixture("credit-lr"), Ring::Broad, &mut |_, _| {});
        assert!(matches!(again, Err(ReleaseError::Usage(m)) if m.contains("already")));
        assert_eq!(
            repo.add(&fixture("aml-risk"), Ring::Broad, &mut |_, _| {})
                .unwrap()
                .seq,
            2
        );
        let p = publish(&repo, &keys_dir, &exp).await.unwrap();
        assert_eq!((p.releases, p.targets_version), (2, 2));
        assert!(!repo.has_staged_changes());

        // Staged changes are signed only at the next publish.
        repo.promote("credit-lr", "1.0.0", Ring::Broad).unwrap();
        let files = |name: &str| {
            let text = std::fs::read_to_string(fixture(name).join("manifest.toml")).unwrap();
            crate::Manifest::parse(&text).unwrap().files.len() + 1
        };
        assert_eq!(
            repo.withdraw("aml-risk", "1.0.0").unwrap(),
            files("aml-risk")
        );
        assert!(repo.withdraw("aml-risk", "1.0.0").is_err());
        let published = check(&repo, ExpirationEnforcement::Safe).await.unwrap();
        assert_eq!(
            published.all_targets().count(),
            files("credit-lr") + files("aml-risk")
        );
        publish(&repo, &keys_dir, &exp).await.unwrap();
        let now = releases(&repo.draft().unwrap());
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].ring, Ring::Broad);

        // The timestamp alone, with only its key at hand.
        let ts_only = tmp.path().join("ts-key");
        std::fs::create_dir_all(&ts_only).unwrap();
        for k in keys::load(&keys_dir).unwrap() {
            if k.role == RoleType::Timestamp {
                std::fs::copy(&k.path, ts_only.join(k.path.file_name().unwrap())).unwrap();
            }
        }
        let t = refresh_timestamp(&repo, &ts_only, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(t.timestamp_version, 4);
        assert!(
            publish(&repo, &ts_only, &exp).await.is_err(),
            "targets need their key"
        );

        // Rotating a root key: the new root is signed by both generations.
        let r = rotate_key(&repo, &keys_dir, RoleType::Root, &exp)
            .await
            .unwrap();
        assert_eq!(r.root_version, 2);
        assert_eq!((r.retired.len(), r.new_keys.len()), (2, 2));
        let root = read_root(&repo.latest_root().unwrap().1).unwrap();
        assert_eq!(root.signed.roles[&RoleType::Root].threshold.get(), 2);
        assert_eq!(
            root.signatures.len(),
            4,
            "two old and two new root signatures"
        );
        assert!(check(&repo, ExpirationEnforcement::Safe).await.is_ok());

        let out = tmp.path().join("bundle");
        let e = crate::release::bundle::export(&repo, &out, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(e.releases, 1);
        assert!(load_dir(&out, ExpirationEnforcement::Safe).await.is_ok());
        assert!(
            crate::release::bundle::export(&repo, &out, &mut |_, _| {})
                .await
                .is_err(),
            "a bundle goes into an empty directory"
        );
    }

    #[tokio::test]
    async fn a_directory_that_does_not_match_its_manifest_is_not_added() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path().join("repo"));
        init(&repo, &tmp.path().join("keys"), 1, 1, &Expiries::default())
            .await
            .unwrap();
        let dir = tmp.path().join("v");
        std::fs::create_dir_all(dir.join("eval")).unwrap();
        for f in ["manifest.toml", "model.onnx", "eval/holdout.json"] {
            std::fs::copy(fixture("credit-lr").join(f), dir.join(f)).unwrap();
        }
        let mut model = std::fs::read(dir.join("model.onnx")).unwrap();
        model[10] ^= 1;
        std::fs::write(dir.join("model.onnx"), model).unwrap();
        let e = repo.add(&dir, Ring::Broad, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, ReleaseError::Version { .. }), "{e}");
        assert!(!repo.has_staged_changes());
    }
}
