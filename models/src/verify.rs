//! Loading a version directory: its manifest, and every file it lists checked for
//! size and sha256, so that a damaged or tampered file is refused with its name.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, ManifestError};

/// Why a version directory is unusable.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("{path}: size is {actual} bytes, the manifest says {expected}")]
    Size {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: sha256 is {actual}, the manifest says {expected}")]
    Hash {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// A version directory whose files all matched its manifest.
#[derive(Debug, Clone)]
pub struct VersionDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// The sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Reads and parses `dir/manifest.toml`: its text and the manifest.
pub fn read_manifest(dir: &Path) -> Result<(String, Manifest), VerifyError> {
    let manifest_path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| VerifyError::Read {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest = Manifest::parse(&text).map_err(|source| VerifyError::Manifest {
        path: manifest_path,
        source,
    })?;
    Ok((text, manifest))
}

impl VersionDir {
    /// Reads `dir/manifest.toml` and verifies every listed file.
    pub fn open(dir: &Path) -> Result<VersionDir, VerifyError> {
        let (_, manifest) = read_manifest(dir)?;
        for entry in &manifest.files {
            let path = dir.join(&entry.path);
            let read_err = |source| VerifyError::Read {
                path: path.clone(),
                source,
            };
            let actual_size = std::fs::metadata(&path).map_err(read_err)?.len();
            if actual_size != entry.size {
                return Err(VerifyError::Size {
                    path,
                    expected: entry.size,
                    actual: actual_size,
                });
            }
            let actual = sha256_file(&path).map_err(|source| VerifyError::Read {
                path: path.clone(),
                source,
            })?;
            if !actual.eq_ignore_ascii_case(&entry.sha256) {
                return Err(VerifyError::Hash {
                    path,
                    expected: entry.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(VersionDir {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Absolute path of a file of this version.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_version(
        dir: &Path,
        model: &[u8],
        listed_hash: Option<&str>,
        listed_size: Option<u64>,
    ) {
        std::fs::write(dir.join("model.onnx"), model).unwrap();
        let hash = listed_hash
            .map(str::to_string)
            .unwrap_or_else(|| sha256_file(&dir.join("model.onnx")).unwrap());
        let size = listed_size.unwrap_or(model.len() as u64);
        let text = format!(
            "name = \"m\"\nversion = \"1\"\nkind = \"chat\"\nformat = \"gguf\"\n\
             [[files]]\npath = \"model.onnx\"\nsha256 = \"{hash}\"\nsize = {size}\nrole = \"model\"\n"
        );
        std::fs::write(dir.join("manifest.toml"), text).unwrap();
    }

    #[test]
    fn accepts_matching_files_and_names_the_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        write_version(tmp.path(), b"abc", None, None);
        assert_eq!(VersionDir::open(tmp.path()).unwrap().manifest.name, "m");

        write_version(tmp.path(), b"abc", None, Some(4));
        assert!(matches!(
            VersionDir::open(tmp.path()),
            Err(VerifyError::Size {
                expected: 4,
                actual: 3,
                ..
            })
        ));

        write_version(tmp.path(), b"abc", Some(&"0".repeat(64)), None);
        let err = VersionDir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, VerifyError::Hash { .. }));
        assert!(err.to_string().contains("model.onnx"));
    }
}
