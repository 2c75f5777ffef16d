//! A release repository directory on the admin's machine and the changes an admin
//! stages in it before signing: `add` (a verified model version: every file becomes a
//! target, the manifest target carries the [`ReleaseInfo`]), `promote` (change the ring
//! a version is released to) and `withdraw` (remove a version's targets).
//!
//! ```text
//! REPO/public/…        what the host serves (layout in [`crate::layout`])
//! REPO/draft.json      the targets the next `publish` signs: the published ones plus
//!                      the staged changes (absent: nothing staged)
//! ```
//!
//! Target files are copied into `public/targets/` under their content-addressed names
//! when added (write to a temporary name, fsync, rename), so a host serving a half
//! published repository never serves a file that metadata points at but does not hold.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tough::schema::{Hashes, Signed, Snapshot, Target, Targets, Timestamp};

use coffer_models::verify::VersionDir;

use crate::ReleaseError;
use crate::layout::{self, CUSTOM_KEY, ReleaseInfo, ReleasedVariant, Ring};

/// A release repository directory.
#[derive(Debug, Clone)]
pub struct Repo {
    pub dir: PathBuf,
}

/// The published top-level metadata (root aside).
#[derive(Debug, Clone)]
pub struct Current {
    pub timestamp: Signed<Timestamp>,
    pub snapshot: Signed<Snapshot>,
    pub targets: Signed<Targets>,
}

/// The targets the next publish signs, by name.
pub type Draft = BTreeMap<String, Target>;

#[derive(Serialize, Deserialize)]
struct DraftFile {
    targets: Draft,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ReleaseError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| ReleaseError::Metadata {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync the dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReleaseError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Copies `src` to `dest` through a temporary file, hashing and calling `progress`
/// with the bytes copied so far; returns the sha256.
pub(crate) fn copy_file(
    src: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<[u8; 32], ReleaseError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut input = std::fs::File::open(src).map_err(io(src))?;
    let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io(src))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io(&tmp))?;
        done += n as u64;
        progress(done);
    }
    out.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, dest).map_err(io(dest))?;
    Ok(hasher.finalize().into())
}

impl Repo {
    pub fn new(dir: impl Into<PathBuf>) -> Repo {
        Repo { dir: dir.into() }
    }

    pub fn public(&self) -> PathBuf {
        self.dir.join(layout::PUBLIC_DIR)
    }

    pub fn metadata(&self) -> PathBuf {
        self.public().join(layout::METADATA_DIR)
    }

    pub fn targets_dir(&self) -> PathBuf {
        self.public().join(layout::TARGETS_DIR)
    }

    fn draft_path(&self) -> PathBuf {
        self.dir.join("draft.json")
    }

    /// The highest root version in `metadata/` and its path.
    pub fn latest_root(&self) -> Result<(u64, PathBuf), ReleaseError> {
        let meta = self.metadata();
        let mut best = None;
        for entry in std::fs::read_dir(&meta).map_err(io(&meta))? {
            let name = entry.map_err(io(&meta))?.file_name();
            let Some(v) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".root.json"))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            if best.is_none_or(|b| v > b) {
                best = Some(v);
            }
        }
        let v = best.ok_or_else(|| {
            ReleaseError::Usage(format!(
                "{} holds no N.root.json: run `coffer-release init` first",
                meta.display()
            ))
        })?;
        Ok((v, meta.join(format!("{v}.root.json"))))
    }

    /// The published timestamp, snapshot and targets (read, not verified: this is the
    /// admin's own tree; `publish` verifies the result as a client would). `None` before
    /// the first publish.
    pub fn published(&self) -> Result<Option<Current>, ReleaseError> {
        let meta = self.metadata();
        let ts_path = meta.join("timestamp.json");
        if !ts_path.exists() {
            return Ok(None);
        }
        let ts: Signed<Timestamp> = read_json(&ts_path)?;
        let snap_version = ts
            .signed
            .meta
            .get("snapshot.json")
            .ok_or_else(|| ReleaseError::Metadata {
                path: ts_path.clone(),
                what: "lists no snapshot.json".into(),
            })?
            .version;
        let snap_path = meta.join(format!("{snap_version}.snapshot.json"));
        let snap: Signed<Snapshot> = read_json(&snap_path)?;
        let targets_version = snap
            .signed
            .meta
            .get("targets.json")
            .ok_or_else(|| ReleaseError::Metadata {
                path: snap_path.clone(),
                what: "lists no targets.json".into(),
            })?
            .version;
        let targets: Signed<Targets> =
            read_json(&meta.join(format!("{targets_version}.targets.json")))?;
        Ok(Some(Current {
            timestamp: ts,
            snapshot: snap,
            targets,
        }))
    }

    /// The draft: staged changes over the published targets.
    pub fn draft(&self) -> Result<Draft, ReleaseError> {
        let path = self.draft_path();
        if path.exists() {
            return Ok(read_json::<DraftFile>(&path)?.targets);
        }
        Ok(match self.published()? {
            Some(c) => draft_of(c.targets.signed),
            None => Draft::new(),
        })
    }

    pub fn has_staged_changes(&self) -> bool {
        self.draft_path().exists()
    }

    pub(crate) fn save_draft(&self, targets: Draft) -> Result<(), ReleaseError> {
        let bytes = serde_json::to_vec_pretty(&DraftFile { targets }).map_err(|e| {
            ReleaseError::Metadata {
                path: self.draft_path(),
                what: e.to_string(),
            }
        })?;
        write_atomic(&self.draft_path(), &bytes)
    }

    pub(crate) fn clear_draft(&self) -> Result<(), ReleaseError> {
        match std::fs::remove_file(self.draft_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.draft_path())(e)),
        }
    }

    /// Stages a model version directory (verified against its manifest first) released
    /// to `ring`; copies its files into the published targets directory.
    /// `progress(done, total)` follows the bytes copied.
    pub fn add(
        &self,
        version_dir: &Path,
        ring: Ring,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ReleaseInfo, ReleaseError> {
        let version = VersionDir::open(version_dir).map_err(|source| ReleaseError::Version {
            dir: version_dir.to_path_buf(),
            source,
        })?;
        let m = &version.manifest;
        let mut draft = self.draft()?;
        let releases = releases(&draft);
        if releases
            .iter()
            .any(|r| r.model == m.name && r.version == m.version)
        {
            return Err(ReleaseError::Usage(format!(
                "{}@{} is already in the repository: a released version never changes; release a new version",
                m.name, m.version
            )));
        }
        let seq = releases.iter().map(|r| r.seq).max().unwrap_or(0) + 1;
        let mut files = vec!["manifest.toml".to_string()];
        files.extend(m.files.iter().map(|f| f.path.clone()));
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(version_dir.join(f)).map(|md| md.len()))
            .sum::<Result<u64, _>>()
            .map_err(io(version_dir))?;
        let info = ReleaseInfo {
            model: m.name.clone(),
            version: m.version.clone(),
            kind: match m.kind {
                coffer_models::Kind::Score => "score",
                coffer_models::Kind::Chat => "chat",
                coffer_models::Kind::Embedding => "embedding",
            }
            .to_string(),
            ring,
            seq,
            files: files.clone(),
            variants: m
                .variants
                .iter()
                .map(|v| ReleasedVariant {
                    name: v.name.clone(),
                    file: v.file.clone(),
                    quantization: v.quantization.clone(),
                    gpu_memory_mib: v.gpu_memory_mib,
                })
                .collect(),
            not_before: None,
            pace: None,
            abort: None,
        };
        let mut copied_before = 0u64;
        for file in &files {
            let src = version_dir.join(file);
            let name = layout::target_name(&m.name, &m.version, file);
            // The destination is content-addressed: the listed files' hashes were just
            // verified against the manifest; only the manifest itself is hashed here.
            let sha = match m.files.iter().find(|f| &f.path == file) {
                Some(entry) => entry.sha256.to_ascii_lowercase(),
                None => coffer_models::verify::sha256_file(&src).map_err(io(&src))?,
            };
            let dest = self.targets_dir().join(layout::target_file(&sha, &name));
            let length = std::fs::metadata(&src).map_err(io(&src))?.len();
            if !dest.exists() {
                let got = copy_file(&src, &dest, &mut |n| progress(copied_before + n, total))?;
                if hex::encode(got) != sha {
                    let _ = std::fs::remove_file(&dest);
                    return Err(ReleaseError::Usage(format!(
                        "{} changed while it was being added",
                        src.display()
                    )));
                }
            }
            copied_before += length;
            progress(copied_before, total);
            let mut custom = std::collections::HashMap::new();
            if file == "manifest.toml" {
                custom.insert(
                    CUSTOM_KEY.to_string(),
                    serde_json::to_value(&info).map_err(|e| ReleaseError::Usage(e.to_string()))?,
                );
            }
            let sha_bytes = hex::decode(&sha).map_err(|e| ReleaseError::Usage(e.to_string()))?;
            draft.insert(
                name,
                Target {
                    length,
                    hashes: Hashes {
                        sha256: sha_bytes.into(),
                        _extra: Default::default(),
                    },
                    custom,
                    _extra: Default::default(),
                },
            );
        }
        self.save_draft(draft)?;
        Ok(info)
    }

    /// Stages a change of the ring `model@version` is released to.
    pub fn promote(
        &self,
        model: &str,
        version: &str,
        ring: Ring,
    ) -> Result<ReleaseInfo, ReleaseError> {
        self.change_info(model, version, |info| info.ring = ring)
    }

    /// Stages the earliest time sites may activate a released version (`None`: any
    /// time). They still download and import it before.
    pub fn schedule(
        &self,
        model: &str,
        version: &str,
        not_before: Option<jiff::Timestamp>,
    ) -> Result<ReleaseInfo, ReleaseError> {
        self.change_info(model, version, |info| {
            info.not_before = not_before.map(|t| t.to_string());
        })
    }

    /// Stages a paced rollout of a released version (`None`: every site at once).
    pub fn pace(
        &self,
        model: &str,
        version: &str,
        pace: Option<crate::layout::Pace>,
    ) -> Result<ReleaseInfo, ReleaseError> {
        if let Some(p) = &pace {
            let bad = !(1..=10_000).contains(&p.first_basis_points)
                || p.double_every_secs == 0
                || p.start.parse::<jiff::Timestamp>().is_err();
            if bad {
                return Err(ReleaseError::Usage(
                    "a pace starts at a time, with a first share of 0.01% to 100%, doubling every positive duration".into(),
                ));
            }
        }
        self.change_info(model, version, |info| info.pace = pace)
    }

    /// Stages abort criteria for a released version (`None`: none). The repository
    /// must authorize halt keys (`coffer-release halt-keys`) first: sites activate a
    /// release with criteria only while a current halt list signed by them is published.
    pub fn abort_when(
        &self,
        model: &str,
        version: &str,
        abort: Option<crate::layout::Abort>,
    ) -> Result<ReleaseInfo, ReleaseError> {
        if let Some(a) = &abort {
            if !(1..10_000).contains(&a.failed_above_basis_points) || a.min_tried == 0 {
                return Err(ReleaseError::Usage(
                    "abort criteria need a failure share above 0% and below 100%, after at least one site".into(),
                ));
            }
            if !self.draft()?.contains_key(crate::layout::HALT_KEYS_TARGET) {
                return Err(ReleaseError::Usage(
                    "the repository authorizes no halt keys: run `coffer-release halt-keys` first"
                        .into(),
                ));
            }
        }
        self.change_info(model, version, |info| info.abort = abort)
    }

    fn change_info(
        &self,
        model: &str,
        version: &str,
        change: impl FnOnce(&mut ReleaseInfo),
    ) -> Result<ReleaseInfo, ReleaseError> {
        let mut draft = self.draft()?;
        let name = layout::target_name(model, version, "manifest.toml");
        let target = draft.get_mut(&name).ok_or_else(|| {
            ReleaseError::Usage(format!("{model}@{version} is not in the repository"))
        })?;
        let mut info = release_info(target)
            .ok_or_else(|| ReleaseError::Usage(format!("{name} carries no release information")))?;
        change(&mut info);
        target.custom.insert(
            CUSTOM_KEY.to_string(),
            serde_json::to_value(&info).map_err(|e| ReleaseError::Usage(e.to_string()))?,
        );
        self.save_draft(draft)?;
        Ok(info)
    }

    /// Stages the removal of every target of `model@version`: sites fall back to the
    /// previous release of the model their ring receives.
    pub fn withdraw(&self, model: &str, version: &str) -> Result<usize, ReleaseError> {
        let mut draft = self.draft()?;
        let prefix = layout::target_name(model, version, "");
        let before = draft.len();
        draft.retain(|name, _| !name.starts_with(&prefix));
        let removed = before - draft.len();
        if removed == 0 {
            return Err(ReleaseError::Usage(format!(
                "{model}@{version} is not in the repository"
            )));
        }
        self.save_draft(draft)?;
        Ok(removed)
    }
}

/// The release information on a manifest target, if it carries one.
pub fn release_info(target: &Target) -> Option<ReleaseInfo> {
    target
        .custom
        .get(CUSTOM_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Signed targets as a draft (by name).
pub fn draft_of(targets: Targets) -> Draft {
    targets
        .targets
        .into_iter()
        .map(|(name, t)| (name.raw().to_string(), t))
        .collect()
}

/// Every release in a set of targets.
pub fn releases(targets: &Draft) -> Vec<ReleaseInfo> {
    let mut all: Vec<ReleaseInfo> = targets.values().filter_map(release_info).collect();
    all.sort_by_key(|r| r.seq);
    all
}
