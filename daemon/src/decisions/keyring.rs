//! The decision store's encryption keys: 256-bit keys in files of their own (`<id>.key`,
//! mode 0600, in a directory of mode 0700 the operator controls), the newest of which
//! seals new records. Rotation adds a key; the older ones stay to open the records they
//! sealed until those expire. Sealing is AES-256-GCM (ring, already the TLS stack's
//! crypto): a 96-bit nonce per record, and the record's id bound in as associated data so
//! that a sealed payload cannot be moved onto another record. Nonces are a random 96-bit
//! start, drawn again every 4,096 records, XORed with a counter: none repeated by one
//! process, another run's met only by chance (as random nonces are), and one system call
//! per 4,096 records instead of one per record (`getrandom` per record was measurable).

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
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
    nonces: Nonces,
    /// Records sealed under the current key: by this process, plus what the store
    /// counted at startup ([`Keyring::set_sealed`]).
    sealed: AtomicU64,
}

/// This process's nonces: a random start XORed with a counter that never goes back. The
/// start is drawn again every [`REDRAW_EVERY`] nonces, so a copy of the process (a VM
/// snapshot restored, a cloned VM) can repeat at most that many of the original's.
struct Nonces {
    state: Mutex<NonceState>,
}

struct NonceState {
    start: [u8; NONCE_LEN],
    counter: u64,
    /// Nonces left before the start is drawn again.
    left: u32,
}

/// How many nonces one random start serves.
const REDRAW_EVERY: u32 = 4096;

impl Nonces {
    fn new() -> Nonces {
        Nonces {
            state: Mutex::new(NonceState {
                start: [0; NONCE_LEN],
                counter: 0,
                left: 0,
            }),
        }
    }

    fn take(&self, random: &SystemRandom) -> Result<[u8; NONCE_LEN], KeyError> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.left == 0 {
            random.fill(&mut s.start).map_err(|_| KeyError::Random)?;
            s.left = REDRAW_EVERY;
        }
        s.left -= 1;
        s.counter += 1;
        let mut nonce = s.start;
        for (b, c) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(s.counter.to_be_bytes())
        {
            *b ^= c;
        }
        Ok(nonce)
    }
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
            nonces: Nonces::new(),
            sealed: AtomicU64::new(0),
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
        self.sealed.store(0, Ordering::Relaxed);
        Ok(id)
    }

    /// Records sealed under the current key.
    pub fn sealed_under_current(&self) -> u64 {
        self.sealed.load(Ordering::Relaxed)
    }

    /// Counts the current key's records as `n`: at startup, the records the store holds
    /// (which key sealed them is not counted: an upper bound); after a failed rotation,
    /// fewer than the limit, so it is tried again later.
    pub fn set_sealed(&self, n: u64) {
        self.sealed.store(n, Ordering::Relaxed);
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
    /// ciphertext with its tag). Records are sealed in place (`seal.rs`).
    #[cfg(test)]
    pub fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(String, [u8; NONCE_LEN], Vec<u8>), KeyError> {
        let id = self.current().to_string();
        let mut sealed = plaintext.to_vec();
        let (nonce, tag) = self.seal_in_place(&id, aad, &mut sealed)?;
        sealed.extend_from_slice(tag.as_ref());
        Ok((id, nonce, sealed))
    }

    /// Seals `in_out` in place for record `aad` with key `id`: the nonce it took and the
    /// tag that follows the ciphertext.
    pub fn seal_in_place(
        &self,
        id: &str,
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<([u8; NONCE_LEN], Tag), KeyError> {
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| KeyError::Unknown(id.to_string()))?;
        let nonce = self.nonces.take(&self.random)?;
        self.sealed.fetch_add(1, Ordering::Relaxed);
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| KeyError::Random)?;
        Ok((nonce, tag))
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
        // Nonces: none repeats within a run, and another run starts elsewhere.
        let taken: std::collections::BTreeSet<_> = (0..3 * REDRAW_EVERY as usize)
            .map(|_| ring.seal(b"r", b"x").unwrap().1)
            .collect();
        assert_eq!(taken.len(), 3 * REDRAW_EVERY as usize);
        let (_, other_run, _) = reopened.seal(b"r", b"x").unwrap();
        assert!(!taken.contains(&other_run));
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
