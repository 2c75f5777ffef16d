//! `coffer-release export-bundle DIR`: the published repository as a directory to carry
//! to an air-gapped site (USB stick): every root version, the current targets, snapshot
//! and timestamp, and the target files the current targets list, each re-hashed on the
//! way against the signed metadata. The bundle is then loaded as an agent would load it;
//! it stays importable until the earliest expiry it reports (`docs/fleet.md`).

use std::path::Path;

use tough::ExpirationEnforcement;

use crate::ReleaseError;
use crate::layout::{METADATA_DIR, TARGETS_DIR, target_file};
use crate::publish::{earliest_expiry, load_dir};
use crate::repo::{Repo, copy_file};

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub files: usize,
    pub bytes: u64,
    pub releases: usize,
    /// After this the bundle's metadata is expired (see `sync.bundle_expiry_grace`).
    pub expires: jiff::Timestamp,
}

/// Copies the current release of `repo` into `out` (which must not exist or be empty).
/// `progress(done, total)` follows the target bytes copied.
pub async fn export(
    repo: &Repo,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Exported, ReleaseError> {
    let io = |path: &Path, source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    };
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| io(out, e))?
            .next()
            .is_some()
    {
        return Err(ReleaseError::Usage(format!(
            "{} is not empty: export into a new directory",
            out.display()
        )));
    }
    // What the agents would trust now; refuses an expired or broken repository.
    let loaded = crate::publish::check(repo, ExpirationEnforcement::Safe).await?;
    // Where halts are in force, the bundle needs a halt list that lasts as long as it.
    crate::halts::require_for_bundle(repo, earliest_expiry(&loaded))?;
    let Some(crate::repo::Current {
        snapshot: snap,
        targets,
        ..
    }) = repo.published()?
    else {
        return Err(ReleaseError::Usage("nothing is published yet".into()));
    };
    let meta_out = out.join(METADATA_DIR);
    std::fs::create_dir_all(&meta_out).map_err(|e| io(&meta_out, e))?;
    let mut files = 0;
    let meta_in = repo.metadata();
    let (root_version, _) = repo.latest_root()?;
    let mut meta_files: Vec<String> = (1..=root_version)
        .map(|v| format!("{v}.root.json"))
        .collect();
    meta_files.push(format!("{}.targets.json", targets.signed.version));
    meta_files.push(format!("{}.snapshot.json", snap.signed.version));
    meta_files.push("timestamp.json".into());
    for name in &meta_files {
        copy_file(&meta_in.join(name), &meta_out.join(name), &mut |_| {})?;
        files += 1;
    }
    let all: Vec<_> = loaded.all_targets().collect();
    let total: u64 = all.iter().map(|(_, t)| t.length).sum();
    let mut done = 0u64;
    for (name, target) in all {
        let sha = hex::encode(target.hashes.sha256.as_ref() as &[u8]);
        let rel = target_file(&sha, name.resolved());
        let src = repo.targets_dir().join(&rel);
        let dest = out.join(TARGETS_DIR).join(&rel);
        let before = done;
        let got = copy_file(&src, &dest, &mut |n| progress(before + n, total))?;
        if hex::encode(got) != sha {
            return Err(ReleaseError::Usage(format!(
                "{} does not match its signed sha256: the published tree is damaged",
                src.display()
            )));
        }
        done += target.length;
        files += 1;
    }
    progress(done, total);
    // The halt list goes along as it is (sites check its signature and expiry).
    let halts = repo.public().join(crate::halts::LIST_FILE);
    if halts.exists() {
        copy_file(&halts, &out.join(crate::halts::LIST_FILE), &mut |_| {})?;
        files += 1;
    }
    let bundle = load_dir(out, ExpirationEnforcement::Safe).await?;
    Ok(Exported {
        files,
        bytes: done,
        releases: crate::repo::releases(&crate::repo::draft_of(targets.signed)).len(),
        expires: earliest_expiry(&bundle),
    })
}
