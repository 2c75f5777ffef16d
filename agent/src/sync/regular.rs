//! Opening files that came from outside (a copied release bundle): only regular files,
//! never through a symbolic link, and never blocking on a FIFO, socket or device that
//! someone put in their place (such an open would wait forever for a writer, or read
//! without end).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use rustix::fs::OFlags;

/// What a path is when it is not a regular file.
fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file. The open itself cannot block
/// (`O_NONBLOCK`, which regular files ignore) nor follow a link (`O_NOFOLLOW`), and the
/// type is checked again on the open file, so a swap between the check and the open
/// changes nothing. A path that is something else is an `InvalidData` error naming
/// what it is; a missing one stays `NotFound`.
pub fn open(path: &Path) -> io::Result<File> {
    let before = std::fs::symlink_metadata(path)?;
    if !before.file_type().is_file() {
        return Err(not_regular(path, before.file_type()));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOFOLLOW).bits() as i32)
        .open(path)?;
    let opened = file.metadata()?;
    if !opened.file_type().is_file() {
        return Err(not_regular(path, opened.file_type()));
    }
    Ok(file)
}

fn not_regular(path: &Path, file_type: std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is {}, not a regular file: refused",
            path.display(),
            kind(file_type)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_open_and_a_fifo_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("timestamp.json");
        std::fs::write(&file, b"{}").unwrap();
        assert!(open(&file).is_ok());

        let fifo = dir.path().join("fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = open(&fifo).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("a FIFO"), "{e}");

        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(
            open(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        assert!(
            open(dir.path())
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
        assert_eq!(
            open(&dir.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
