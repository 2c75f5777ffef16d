//! Signing and publishing a release repository: `publish` (targets, snapshot and
//! timestamp, each with its expiry; or the timestamp alone, which is what a host with
//! only the timestamp key online re-signs on a schedule) and `check` (loads the published
//! tree exactly as an agent does). `init` ([`crate::init`]) and `rotate-key`
//! ([`crate::root`]) publish through here.
//!
//! A publish signs into a staging directory and loads the staged tree as an agent would
//! before anything is published (`stage`); then it moves the new files into
//! `metadata/`, `timestamp.json` last and by atomic rename: a host serving the tree
//! mid-publish serves either the old release or the new one. So `Err` means nothing was
//! published, and `Ok` that the release is live: [`Published::unfinished`] then names
//! each later step that did not complete (the draft not cleared, the final check).

use std::path::Path;
use std::time::Duration;

use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, Timestamp};
use tough::{ExpirationEnforcement, Repository};

pub use crate::common::{Expiries, Published};

use crate::ReleaseError;
use crate::common::{SPEC_VERSION, expiry, load_from, nz, read_root, rng};
use crate::keys;
use crate::layout::{METADATA_DIR, TARGETS_DIR};
use crate::repo::{Current, Repo, draft_of, releases};
use crate::stage::Stage;

/// Signs the draft (or the published targets again) as new targets, snapshot and
/// timestamp versions and publishes them (see the module header).
pub async fn publish(
    repo: &Repo,
    keys_dir: &Path,
    exp: &Expiries,
) -> Result<Published, ReleaseError> {
    release(repo, keys_dir, exp, None).await
}

/// [`publish`], with a new root version (signed, from a rotation) published first.
pub(crate) async fn release(
    repo: &Repo,
    keys_dir: &Path,
    exp: &Expiries,
    new_root: Option<&[u8]>,
) -> Result<Published, ReleaseError> {
    let (live_root, _) = repo.latest_root()?;
    let keys = keys::load(keys_dir)?;
    let draft = repo.draft()?;
    let count = releases(&draft).len();
    let previous = repo.published()?;
    let (tv, sv, tsv) = match &previous {
        Some(c) => (
            c.targets.signed.version.get() + 1,
            c.snapshot.signed.version.get() + 1,
            c.timestamp.signed.version.get() + 1,
        ),
        None => (1, 1, 1),
    };
    let stage = Stage::new(repo, live_root)?;
    // Landed in this order: files nothing refers to yet, then the new root (agents take
    // it as soon as it is there), then `timestamp.json`.
    let mut order = vec![format!("{tv}.targets.json"), format!("{sv}.snapshot.json")];
    let root_version = match new_root {
        Some(bytes) => {
            let name = format!("{}.root.json", live_root + 1);
            stage.put(&name, bytes)?;
            order.push(name);
            live_root + 1
        }
        None => live_root,
    };
    let root_path = stage.metadata().join(format!("{root_version}.root.json"));
    let mut editor = RepositoryEditor::new(&root_path)
        .await
        .map_err(ReleaseError::tuf("reading the root"))?;
    for (name, target) in draft {
        editor
            .add_target(name.as_str(), target)
            .map_err(ReleaseError::tuf(format!("target {name}")))?;
    }
    editor
        .targets_version(nz(tv))
        .map_err(ReleaseError::tuf("targets version"))?;
    editor
        .targets_expires(expiry(exp.targets)?)
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
    signed
        .write(stage.metadata())
        .await
        .map_err(ReleaseError::tuf("writing metadata"))?;
    // What an agent would refuse is not published.
    let loaded = stage.verify().await?;
    let mut published = Published {
        root_version,
        targets_version: tv,
        snapshot_version: sv,
        timestamp_version: tsv,
        expires: earliest_expiry(&loaded),
        releases: count,
        unfinished: Vec::new(),
    };
    for (i, name) in order.iter().enumerate() {
        if let Err(e) = stage.land(name) {
            stage.unland(&order[..i]);
            return Err(e);
        }
    }
    if let Err(e) = stage.land("timestamp.json") {
        stage.unland(&order[..2]);
        if new_root.is_none() {
            return Err(e);
        }
        return Ok(root_only(&stage, previous, published, e));
    }
    published.unfinished = finish(repo, stage, true).await;
    Ok(published)
}

/// A rotation whose new root landed but whose release did not: the new root is live
/// with the previous release.
fn root_only(
    stage: &Stage,
    previous: Option<Current>,
    new: Published,
    e: ReleaseError,
) -> Published {
    let mut unfinished = vec![format!(
        "publishing the release signed under root v{} ({e}): agents take the new root with the previous release, which they refuse if a replaced key signed it; run `coffer-release publish`",
        new.root_version
    )];
    if let Err(e) = stage.sync() {
        unfinished.push(format!("flushing the new root to disk: {e}"));
    }
    let Some(c) = previous else {
        return Published { unfinished, ..new };
    };
    Published {
        targets_version: c.targets.signed.version.get(),
        snapshot_version: c.snapshot.signed.version.get(),
        timestamp_version: c.timestamp.signed.version.get(),
        expires: [
            new.expires,
            c.targets.signed.expires,
            c.snapshot.signed.expires,
            c.timestamp.signed.expires,
        ]
        .into_iter()
        .min()
        .unwrap_or(new.expires),
        releases: releases(&draft_of(c.targets.signed)).len(),
        unfinished,
        ..new
    }
}

/// The steps after a release went live: what fails is reported, not returned.
async fn finish(repo: &Repo, stage: Stage, clear_draft: bool) -> Vec<String> {
    let mut unfinished = Vec::new();
    if let Err(e) = stage.sync() {
        unfinished.push(format!("flushing the new metadata to disk: {e}"));
    }
    drop(stage);
    if clear_draft && let Err(e) = repo.clear_draft() {
        unfinished.push(format!(
            "removing the draft that was just published ({e}): `list` shows the releases as staged until it is removed; remove it by hand"
        ));
    }
    if let Err(e) = check(repo, ExpirationEnforcement::Safe).await {
        unfinished.push(format!(
            "checking the published tree as an agent would: {e}"
        ));
    }
    unfinished
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
/// the timestamp key online. Staged and checked first, as [`publish`] is.
pub async fn refresh_timestamp(
    repo: &Repo,
    keys_dir: &Path,
    valid_for: Duration,
) -> Result<Published, ReleaseError> {
    let (root_version, root_path) = repo.latest_root()?;
    let root = read_root(&root_path)?;
    let Some(Current {
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
    let (tv, sv) = (targets.signed.version.get(), snap.signed.version.get());
    let stage = Stage::new(repo, root_version)?;
    stage.copy_in(&format!("{tv}.targets.json"))?;
    stage.copy_in(&format!("{sv}.snapshot.json"))?;
    stage.put("timestamp.json", signed.buffer())?;
    let loaded = stage.verify().await?;
    stage.land("timestamp.json")?;
    Ok(Published {
        root_version,
        targets_version: tv,
        snapshot_version: sv,
        timestamp_version: ts.signed.version.get() + 1,
        expires: earliest_expiry(&loaded),
        releases: releases(&draft_of(targets.signed)).len(),
        unfinished: finish(repo, stage, false).await,
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
    load_from(
        &public.join(METADATA_DIR),
        &public.join(TARGETS_DIR),
        expiry,
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tough::schema::RoleType;

    use super::*;
    use crate::init::init;
    use crate::layout::Ring;
    use crate::root::rotate_key;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/fixtures")
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
            coffer_models::Manifest::parse(&text).unwrap().files.len() + 1
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
        let e = crate::bundle::export(&repo, &out, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(e.releases, 1);
        assert!(load_dir(&out, ExpirationEnforcement::Safe).await.is_ok());
        assert!(
            crate::bundle::export(&repo, &out, &mut |_, _| {})
                .await
                .is_err(),
            "a bundle goes into an empty directory"
        );
    }

    /// Every file under `metadata/` with its bytes.
    fn published_files(repo: &Repo) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<_> = std::fs::read_dir(repo.metadata())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        all.sort();
        all
    }

    #[tokio::test]
    async fn a_release_an_agent_would_refuse_is_not_published() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path().join("repo"));
        let keys_dir = tmp.path().join("keys");
        init(&repo, &keys_dir, 1, 1, &Expiries::default())
            .await
            .unwrap();
        repo.add(&fixture("credit-lr"), Ring::Broad, &mut |_, _| {})
            .unwrap();
        let before = published_files(&repo);
        // Signed with a timestamp that has expired by the time an agent loads it.
        let expired = Expiries {
            timestamp: Duration::ZERO,
            ..Expiries::default()
        };
        let e = publish(&repo, &keys_dir, &expired).await.unwrap_err();
        assert!(matches!(e, ReleaseError::Tuf { .. }), "{e}");
        assert!(published_files(&repo) == before, "nothing was published");
        assert!(repo.has_staged_changes(), "the draft is kept");
        assert!(!repo.dir.join(".publish").exists());
        refresh_timestamp(&repo, &keys_dir, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(published_files(&repo) == before, "nothing was published");
        assert_eq!(
            check(&repo, ExpirationEnforcement::Safe)
                .await
                .unwrap()
                .all_targets()
                .count(),
            0
        );

        let p = publish(&repo, &keys_dir, &Expiries::default())
            .await
            .unwrap();
        assert!(p.is_complete(), "{:?}", p.unfinished);
        assert_eq!((p.targets_version, p.releases), (2, 1));
        assert!(!repo.has_staged_changes());
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
