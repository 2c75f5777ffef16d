//! The partial file of a resumable download: opened (or created) and hashed up to what it
//! already holds, or started over. Both the request for the rest and the download that
//! drives it read it.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{CHUNK, DownloadError, blocking};

/// The partial file, positioned at its end, and the digest of what it holds.
pub struct Partial {
    pub file: File,
    pub hasher: Sha256,
    pub from: u64,
}

impl Partial {
    pub async fn start_over(self, path: &Path) -> Result<Partial, DownloadError> {
        let file = self.file;
        Ok(Partial {
            file: blocking(path, move || truncate(file)).await?,
            hasher: Sha256::new(),
            from: 0,
        })
    }
}

/// Opens (or creates) the partial file and hashes what it holds. A file longer than `len` cannot be a prefix of the
/// expected one and is truncated.
pub fn open_partial(path: &Path, len: u64) -> std::io::Result<Partial> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let have = file.metadata()?.len();
    if have > len {
        return Ok(Partial {
            file: truncate(file)?,
            hasher: Sha256::new(),
            from: 0,
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut hashed = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        hashed += n as u64;
    }
    file.seek(SeekFrom::End(0))?;
    Ok(Partial {
        file,
        hasher,
        from: hashed,
    })
}

fn truncate(mut file: File) -> std::io::Result<File> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}
