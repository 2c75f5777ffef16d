//! `init`: a new repository, all or nothing. The keys are made in the key directory;
//! root version 1 and the first (empty) release are built in a temporary directory
//! inside REPO (`.init-*`) and published there, checked as an agent would check them;
//! only then is its `public/` renamed to `REPO/public/`, the one step that makes REPO a
//! repository. On any failure before it, the temporary directory, the key files made
//! and the directories created for them are removed again, so `init` can simply be run
//! again.

use std::path::{Path, PathBuf};

use tough::schema::RoleType;

use crate::ReleaseError;
use crate::common::{Expiries, Published, expiry};
use crate::keys::{self, KeyFile};
use crate::publish::publish;
use crate::repo::{Repo, write_atomic};
use crate::root::{build_root, sign_first};

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    pub root: PathBuf,
    pub keys: Vec<PathBuf>,
    pub published: Published,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `init` created, to remove again if it fails.
#[derive(Debug, Default)]
struct Made {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Made {
    /// Notes the directories that creating `dir` (with its parents) will create.
    fn dirs_for(&mut self, dir: &Path) {
        for d in dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            self.dirs.push(d.to_path_buf());
        }
    }

    fn undo(mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        // Deepest first; a directory that is not empty (not only ours) stays.
        self.dirs
            .sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Creates a repository: `root_keys` root keys (of which `root_threshold` must sign each
/// root), one key for each other role, root version 1 and an empty first release. `Err`
/// leaves neither the repository nor the keys it made.
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
    let public = repo.public();
    if public.exists()
        && std::fs::read_dir(&public)
            .map_err(io(&public))?
            .next()
            .is_some()
    {
        return Err(ReleaseError::Usage(format!(
            "{} is not empty: init makes it",
            public.display()
        )));
    }
    if root_keys == 0 {
        return Err(ReleaseError::Usage(
            "at least one root key is needed".into(),
        ));
    }
    if root_threshold == 0 || root_threshold > root_keys as u64 {
        return Err(ReleaseError::Usage(format!(
            "a root threshold of {root_threshold} needs between 1 and {root_keys} root keys"
        )));
    }
    let mut made = Made::default();
    let result = build(repo, keys_dir, root_keys, root_threshold, exp, &mut made).await;
    if result.is_err() {
        made.undo();
    }
    result
}

async fn build(
    repo: &Repo,
    keys_dir: &Path,
    root_keys: usize,
    root_threshold: u64,
    exp: &Expiries,
    made: &mut Made,
) -> Result<Initialized, ReleaseError> {
    made.dirs_for(&repo.dir);
    std::fs::create_dir_all(&repo.dir).map_err(io(&repo.dir))?;
    made.dirs_for(keys_dir);
    let tmp = tempfile::Builder::new()
        .prefix(".init-")
        .tempdir_in(&repo.dir)
        .map_err(io(&repo.dir))?;
    let staged = Repo::new(tmp.path());
    let roles = std::iter::repeat_n(RoleType::Root, root_keys).chain(keys::ROLES[1..].to_vec());
    let mut keys: Vec<KeyFile> = Vec::new();
    for role in roles {
        let key = keys::generate(keys_dir, role)?;
        made.files.push(key.path.clone());
        keys.push(key);
    }
    let refs: Vec<&KeyFile> = keys.iter().collect();
    let root = build_root(1, expiry(exp.root)?, &refs, root_threshold)?;
    let signed = sign_first(root, &refs).await?;
    write_atomic(&staged.metadata().join("1.root.json"), &signed)?;
    std::fs::create_dir_all(staged.targets_dir()).map_err(io(&staged.targets_dir()))?;
    let published = publish(&staged, keys_dir, exp).await?;
    if !published.unfinished.is_empty() {
        return Err(ReleaseError::Metadata {
            path: staged.public(),
            what: published.unfinished.join("; "),
        });
    }
    let public = repo.public();
    std::fs::rename(staged.public(), &public).map_err(io(&public))?;
    let _ = std::fs::File::open(&repo.dir).and_then(|d| d.sync_all());
    Ok(Initialized {
        root: repo.metadata().join("1.root.json"),
        keys: keys.into_iter().map(|k| k.path).collect(),
        published,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use crate::testutil::names;

    #[tokio::test]
    async fn a_failed_init_leaves_nothing_and_can_be_run_again() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path().join("repo"));
        let keys_dir = tmp.path().join("keys");
        // A timestamp that has expired when the first release is checked: init fails
        // after the keys, the root and the release were made.
        let expired = Expiries {
            timestamp: Duration::ZERO,
            ..Expiries::default()
        };
        let e = init(&repo, &keys_dir, 3, 2, &expired).await.unwrap_err();
        assert!(matches!(e, ReleaseError::Tuf { .. }), "{e}");
        assert!(
            !repo.dir.exists(),
            "the repository directory it made is gone"
        );
        assert!(!keys_dir.exists(), "the key directory it made is gone");

        // Directories that were there stay, with what they held.
        std::fs::create_dir_all(&keys_dir).unwrap();
        std::fs::write(keys_dir.join("README"), "root keys go offline").unwrap();
        std::fs::create_dir_all(repo.public()).unwrap();
        init(&repo, &keys_dir, 3, 2, &expired).await.unwrap_err();
        assert_eq!(names(&keys_dir), ["README"]);
        assert!(names(&repo.dir) == ["public"] && names(&repo.public()).is_empty());

        let done = init(&repo, &keys_dir, 3, 2, &Expiries::default())
            .await
            .unwrap();
        assert!(done.published.is_complete());
        assert_eq!(done.keys.len(), 6);
        assert_eq!(names(&repo.dir), ["public"], "no temporary directory left");
        crate::publish::check(&repo, tough::ExpirationEnforcement::Safe)
            .await
            .unwrap();
        assert!(
            init(&repo, &keys_dir, 1, 1, &Expiries::default())
                .await
                .is_err()
        );
    }
}
