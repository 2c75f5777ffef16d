//! The decision store's encryption keys: 256-bit keys in files of their own (`<id>.key`,
//! mode 0600, in a directory of mode 0700 the operator controls), the newest of which
//! seals new records. Rotation adds a key; the older ones stay to open the records they
//! sealed until those expire. Sealing is AES-256-GCM (ring, already the TLS stack's
//! crypto): a random 96-bit nonce per record, and the record's id bound in as associated
//! data so that a sealed payload cannot be moved onto another record.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Why the keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("decision keys in {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("decision key {0}: not 32 bytes, or readable by others than its owner (must be 0600)")]
    BadKey(PathBuf),
    #[error("no decision key {0}: the record cannot be opened")]
    Unknown(String),
    #[error("a decision record does not open with its key: altered, or not this store's")]
    Open,
    #[error("the system random source failed")]
    Random,
}

/// The keys, by id (`k` and a zero-padded number: ids sort by age).
pub struct Keyring {
    dir: PathBuf,
    keys: BTreeMap<String, LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("dir", &self.dir)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn io(dir: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        dir: dir.to_path_buf(),
        source,
    }
}

impl Keyring {
    /// Opens the key directory, creating it and a first key when there is none.
    pub fn open_or_create(dir: &Path) -> Result<Keyring, KeyError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let mut ring = Keyring {
            dir: dir.to_path_buf(),
            keys: BTreeMap::new(),
            random: SystemRandom::new(),
        };
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
                .filter(|id| id.starts_with('k'))
                .map(str::to_string)
            else {
                continue;
            };
            let meta = std::fs::metadata(&path).map_err(io(dir))?;
            let bytes = std::fs::read(&path).map_err(io(dir))?;
            if bytes.len() != 32 || meta.permissions().mode() & 0o077 != 0 {
                return Err(KeyError::BadKey(path));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::BadKey(path))?;
            ring.keys.insert(id, LessSafeKey::new(key));
        }
        if ring.keys.is_empty() {
            ring.rotate()?;
        }
        Ok(ring)
    }

    /// Adds a new key, which seals every record from now on; returns its id.
    pub fn rotate(&mut self) -> Result<String, KeyError> {
        let next = self
            .keys
            .keys()
            .last()
            .and_then(|id| id[1..].parse::<u32>().ok())
            .map_or(1, |n| n + 1);
        let id = format!("k{next:06}");
        let mut bytes = [0u8; 32];
        self.random.fill(&mut bytes).map_err(|_| KeyError::Random)?;
        let path = self.dir.join(format!("{id}.key"));
        coffer_hostcert::atomic_write::write_atomically(&path, &bytes, 0o600)
            .map_err(io(&self.dir))?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::Random)?;
        self.keys.insert(id.clone(), LessSafeKey::new(key));
        Ok(id)
    }

    /// The id of the key that seals new records.
    pub fn current(&self) -> &str {
        self.keys.keys().last().map_or("", String::as_str)
    }

    /// The ids of every key.
    pub fn ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Seals `plaintext` for record `aad` with the current key: (key id, nonce,
    /// ciphertext with its tag).
    pub fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(String, [u8; NONCE_LEN], Vec<u8>), KeyError> {
        let id = self.current().to_string();
        let key = self
            .keys
            .get(&id)
            .ok_or_else(|| KeyError::Unknown(id.clone()))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| KeyError::Random)?;
        Ok((id, nonce, sealed))
    }

    /// Opens what [`Keyring::seal`] sealed.
    pub fn open(
        &self,
        id: &str,
        aad: &[u8],
        nonce: [u8; NONCE_LEN],
        sealed: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| KeyError::Unknown(id.to_string()))?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| KeyError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_rotates_and_refuses_what_was_altered() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let mut ring = Keyring::open_or_create(&dir).unwrap();
        assert_eq!(ring.current(), "k000001");
        let mode = std::fs::metadata(dir.join("k000001.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (id, nonce, sealed) = ring.seal(b"req-1", b"applicant A11").unwrap();
        assert!(!sealed.windows(3).any(|w| w == b"A11"));
        assert_eq!(
            ring.open(&id, b"req-1", nonce, &sealed).unwrap(),
            b"applicant A11"
        );
        // Bound to its record, and tamper-evident.
        assert!(matches!(
            ring.open(&id, b"req-2", nonce, &sealed),
            Err(KeyError::Open)
        ));
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert!(matches!(
            ring.open(&id, b"req-1", nonce, &altered),
            Err(KeyError::Open)
        ));
        // Rotation: new records use the new key, old ones still open, also after reopening.
        assert_eq!(ring.rotate().unwrap(), "k000002");
        let (id2, _, _) = ring.seal(b"req-3", b"x").unwrap();
        assert_eq!(id2, "k000002");
        let reopened = Keyring::open_or_create(&dir).unwrap();
        assert_eq!(reopened.ids(), vec!["k000001", "k000002"]);
        assert_eq!(
            reopened.open(&id, b"req-1", nonce, &sealed).unwrap(),
            b"applicant A11"
        );
        // A key others can read is refused.
        std::fs::set_permissions(
            dir.join("k000001.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            Keyring::open_or_create(&dir),
            Err(KeyError::BadKey(_))
        ));
    }
}
