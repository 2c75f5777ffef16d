//! Copies from an air-gapped bundle ([`copy_verified`]): through a temporary file beside
//! the destination, checked for length and sha256 before the rename.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{CHUNK, DownloadError, Expected, io_error, rename_durably, too_long};

/// Copies a local file (an air-gapped bundle's) to `dest` through a temporary file
/// beside it (`.NAME.copying`), hashing as it goes; only a copy with the expected
/// length and digest is renamed to `dest`. Blocking: call it from a blocking thread.
/// Returns the bytes copied.
pub fn copy_verified(src: &Path, dest: &Path, expect: &Expected) -> Result<u64, DownloadError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dest.with_file_name(format!(".{name}.copying"));
    let result = copy_into(src, &temp, expect).and_then(|copied| {
        rename_durably(&temp, dest)
            .map(|()| copied)
            .map_err(io_error(dest))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn copy_into(src: &Path, temp: &Path, expect: &Expected) -> Result<u64, DownloadError> {
    let from = src.display().to_string();
    // A bundle's file: a FIFO or device in its place must not block or feed the copy.
    let mut input = crate::sync::regular::open(src).map_err(io_error(src))?;
    let mut output = File::create(temp).map_err(io_error(temp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_error(src))?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > expect.len {
            return Err(too_long(&from, expect));
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io_error(temp))?;
    }
    if copied < expect.len {
        return Err(DownloadError::Short {
            from,
            got: copied,
            expected: expect.len,
        });
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != expect.sha256 {
        return Err(DownloadError::HashMismatch {
            from,
            expected: hex::encode(expect.sha256),
            actual: hex::encode(actual),
        });
    }
    output.sync_all().map_err(io_error(temp))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{MIB, blob, expected};
    use super::*;

    #[test]
    fn copies_are_verified() {
        let data = blob(3 * MIB + 17);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let dest = dir.path().join("dest.bin");
        std::fs::write(&src, &*data).unwrap();
        assert_eq!(
            copy_verified(&src, &dest, &expected(&data)).unwrap(),
            data.len() as u64
        );
        assert_eq!(std::fs::read(&dest).unwrap(), *data);
        std::fs::remove_file(&dest).unwrap();

        let mut tampered = data.to_vec();
        tampered[MIB] ^= 0x40;
        std::fs::write(&src, &tampered).unwrap();
        let err = copy_verified(&src, &dest, &expected(&data)).unwrap_err();
        assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
        tampered.push(0);
        std::fs::write(&src, &tampered).unwrap();
        let err = copy_verified(&src, &dest, &expected(&data)).unwrap_err();
        assert!(matches!(err, DownloadError::TooLong { .. }), "{err}");
        std::fs::write(&src, &data[..100]).unwrap();
        let err = copy_verified(&src, &dest, &expected(&data)).unwrap_err();
        assert!(
            matches!(err, DownloadError::Short { got: 100, .. }),
            "{err}"
        );
        assert!(!dest.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the source is left");
    }
}
