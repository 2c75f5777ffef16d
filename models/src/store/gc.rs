//! Taking things out of the store: removing a version (renamed into `staging/`, then
//! deleted), emptying `staging/`, and gc of blobs no version links to any more.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;

use super::fsio::{remove_entry, sync_dir};
use super::{GcReport, Store, StoreError, io_err};

impl Store {
    /// Removes everything in `staging/` (the leftovers of interrupted imports and
    /// removals); returns the number of entries removed. Call at daemon start.
    pub fn clean_staging(&self) -> Result<usize, StoreError> {
        let staging = self.staging();
        let mut removed = 0;
        for entry in fs::read_dir(&staging).map_err(io_err(&staging))? {
            remove_entry(&entry.map_err(io_err(&staging))?.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes a version directory atomically (rename into staging, then delete).
    /// Blobs stay until gc.
    pub fn remove(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let dir = self.version_dir(name, version)?;
        let not_installed = || StoreError::NotInstalled {
            id: format!("{name}@{version}"),
        };
        if !self.contains(name, version) {
            return Err(not_installed());
        }
        let trash = self.new_staging()?;
        let result = fs::rename(&dir, trash.join("removed"))
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => not_installed(),
                _ => io_err(&dir)(e),
            })
            .and_then(|()| sync_dir(&self.versions().join(name)));
        // Once renamed the version is gone; what deletion leaves is collected later.
        let _ = fs::remove_dir_all(&trash);
        result
    }

    /// Removes blobs no version links to (nlink == 1) and everything in staging.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            staging_removed: self.clean_staging()?,
            ..GcReport::default()
        };
        let blobs = self.blob_dir();
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let path = entry.map_err(io_err(&blobs))?.path();
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if meta.is_file() && meta.nlink() == 1 {
                fs::remove_file(&path).map_err(io_err(&path))?;
                report.blobs_removed += 1;
                report.bytes_freed += meta.len();
            }
        }
        // Name directories left empty by `remove`; a non-empty one stays.
        let versions = self.versions();
        for entry in fs::read_dir(&versions).map_err(io_err(&versions))? {
            let _ = fs::remove_dir(entry.map_err(io_err(&versions))?.path());
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::test_support::{FILES, entries, new_store, no_progress, write_version};
    use super::super::{GcReport, StoreError};

    #[test]
    fn remove_then_gc_frees_the_blobs() {
        let (tmp, store) = new_store();
        write_version(tmp.path(), "m", "1", FILES);
        store.import_dir(tmp.path(), &mut no_progress()).unwrap();
        assert_eq!(store.gc().unwrap(), GcReport::default());
        store.remove("m", "1").unwrap();
        assert!(!store.contains("m", "1"));
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(
            store.remove("m", "1"),
            Err(StoreError::NotInstalled { id }) if id == "m@1"
        ));
        assert!(matches!(
            store.verify("m", "1", &mut no_progress()),
            Err(StoreError::NotInstalled { .. })
        ));
        assert_eq!(
            store.gc().unwrap(),
            GcReport {
                blobs_removed: 2,
                bytes_freed: 12,
                staging_removed: 0
            }
        );
        assert_eq!(entries(&store.root().join("blobs/sha256")), 0);
        assert_eq!(entries(&store.root().join("versions")), 0);
    }

    #[test]
    fn clean_staging_removes_leftovers() {
        let (_tmp, store) = new_store();
        let staging = store.root().join("staging");
        fs::create_dir_all(staging.join("123-456-0/version/eval")).unwrap();
        fs::write(staging.join("123-456-0/blob-0"), b"half").unwrap();
        fs::write(staging.join("stray"), b"x").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.clean_staging().unwrap(), 2);
        assert_eq!(entries(&staging), 0);
        fs::create_dir(staging.join("again")).unwrap();
        assert_eq!(store.gc().unwrap().staging_removed, 1);
    }
}
