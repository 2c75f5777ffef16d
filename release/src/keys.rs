//! The release repository's signing keys: ed25519 keys in PKCS#8 (DER) files, one file
//! per key, named `<role>-<first 8 hex of the key id>.pk8`, mode 0600, in a key
//! directory the admin keeps apart from the published tree (root keys ideally offline).
//! A retired key moves to `retired/` beside them.

use std::path::{Path, PathBuf};

use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::RoleType;
use tough::schema::key::Key;
use tough::sign::Sign as _;

use crate::ReleaseError;

/// The four top-level TUF roles, in the order they are generated and listed.
pub const ROLES: [RoleType; 4] = [
    RoleType::Root,
    RoleType::Targets,
    RoleType::Snapshot,
    RoleType::Timestamp,
];

/// A key file with its public key and id.
#[derive(Debug)]
pub struct KeyFile {
    pub path: PathBuf,
    pub role: RoleType,
    pub key: Key,
    pub id_hex: String,
}

pub fn role_name(role: RoleType) -> &'static str {
    match role {
        RoleType::Root => "root",
        RoleType::Targets => "targets",
        RoleType::Snapshot => "snapshot",
        RoleType::Timestamp => "timestamp",
        RoleType::DelegatedTargets => "delegated",
    }
}

pub fn parse_role(s: &str) -> Result<RoleType, ReleaseError> {
    ROLES
        .into_iter()
        .find(|r| role_name(*r) == s)
        .ok_or_else(|| {
            ReleaseError::Usage(format!(
                "{s:?} is not a role (root, targets, snapshot, timestamp)"
            ))
        })
}

/// Makes a new key for `role` in `dir` (created 0700 if missing).
pub fn generate(dir: &Path, role: RoleType) -> Result<KeyFile, ReleaseError> {
    let (path, key, id_hex) = generate_named(dir, role_name(role))?;
    Ok(KeyFile {
        path,
        role,
        key,
        id_hex,
    })
}

/// The file-name prefix of halt keys (`halt-<id>.pk8`): they sign only the halt list
/// ([`crate::halts`]), never TUF metadata.
pub const HALT_PREFIX: &str = "halt";

/// A halt key file.
#[derive(Debug, Clone)]
pub struct HaltKey {
    pub path: PathBuf,
    pub key: Key,
    pub id_hex: String,
}

/// Makes a new halt key in `dir` (created 0700 if missing).
pub fn generate_halt(dir: &Path) -> Result<HaltKey, ReleaseError> {
    let (path, key, id_hex) = generate_named(dir, HALT_PREFIX)?;
    Ok(HaltKey { path, key, id_hex })
}

/// Every halt key file in `dir`.
pub fn load_halt(dir: &Path) -> Result<Vec<HaltKey>, ReleaseError> {
    let mut keys = Vec::new();
    for (path, prefix) in key_files(dir)? {
        if prefix != HALT_PREFIX {
            continue;
        }
        let (key, id_hex) = read_public(&path)?;
        keys.push(HaltKey { path, key, id_hex });
    }
    Ok(keys)
}

fn generate_named(dir: &Path, prefix: &str) -> Result<(PathBuf, Key, String), ReleaseError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let io = |path: &Path, source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, e))?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| ReleaseError::Key("the system's random source failed".into()))?;
    let key = public_key(pkcs8.as_ref())?;
    let id_hex = key_id_hex(&key)?;
    let path = dir.join(format!("{prefix}-{}.pk8", &id_hex[..8]));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    file.write_all(pkcs8.as_ref()).map_err(|e| io(&path, e))?;
    file.sync_all().map_err(|e| io(&path, e))?;
    Ok((path, key, id_hex))
}

fn public_key(pkcs8: &[u8]) -> Result<Key, ReleaseError> {
    let pair = tough::sign::parse_keypair(pkcs8)
        .map_err(|e| ReleaseError::Key(format!("not a key this tool can use: {e}")))?;
    Ok(pair.tuf_key())
}

pub fn key_id_hex(key: &Key) -> Result<String, ReleaseError> {
    let id = key
        .key_id()
        .map_err(|e| ReleaseError::Key(format!("key id: {e}")))?;
    Ok(hex::encode(id.as_ref() as &[u8]))
}

/// The `*.pk8` files in `dir` (not `retired/`) with their file-name prefix.
fn key_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, ReleaseError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReleaseError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| ReleaseError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".pk8") else {
            continue;
        };
        let Some((prefix, _)) = stem.split_once('-') else {
            continue;
        };
        let prefix = prefix.to_string();
        files.push((path, prefix));
    }
    files.sort();
    Ok(files)
}

fn read_public(path: &Path) -> Result<(Key, String), ReleaseError> {
    let bytes = std::fs::read(path).map_err(|source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let key =
        public_key(&bytes).map_err(|e| ReleaseError::Key(format!("{}: {e}", path.display())))?;
    let id_hex = key_id_hex(&key)?;
    Ok((key, id_hex))
}

/// Every TUF role key file in `dir` (not `retired/`; halt keys are left out).
pub fn load(dir: &Path) -> Result<Vec<KeyFile>, ReleaseError> {
    let mut keys = Vec::new();
    for (path, prefix) in key_files(dir)? {
        if prefix == HALT_PREFIX {
            continue;
        }
        let role = parse_role(&prefix)?;
        let (key, id_hex) = read_public(&path)?;
        keys.push(KeyFile {
            path,
            role,
            key,
            id_hex,
        });
    }
    Ok(keys)
}

/// Signing sources for tough from key files.
pub fn sources<'a>(keys: impl IntoIterator<Item = &'a KeyFile>) -> Vec<Box<dyn KeySource>> {
    keys.into_iter()
        .map(|k| {
            Box::new(LocalKeySource {
                path: k.path.clone(),
            }) as Box<dyn KeySource>
        })
        .collect()
}

/// Moves a key file to `retired/` in its directory.
pub fn retire(key: &KeyFile) -> Result<PathBuf, ReleaseError> {
    let dir = key.path.parent().unwrap_or(Path::new(".")).join("retired");
    std::fs::create_dir_all(&dir).map_err(|source| ReleaseError::Io {
        path: dir.clone(),
        source,
    })?;
    let to = dir.join(key.path.file_name().unwrap_or_default());
    std::fs::rename(&key.path, &to).map_err(|source| ReleaseError::Io {
        path: key.path.clone(),
        source,
    })?;
    Ok(to)
}
