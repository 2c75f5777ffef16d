//! Watches the state directory: every `state.check_interval` it writes, fsyncs and
//! removes a small probe file and reads the free space. A read-only or full directory
//! turns the `state` readiness component false with the reason (so `/readyz` answers
//! 503 and load balancers move traffic away) and is logged once; when the probe passes
//! again readiness comes back. The daemon keeps running either way.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::monitoring::readiness::Readiness;

/// Size of the probe write: enough to need a real block.
const PROBE_BYTES: usize = 4096;

/// One probe: `Ok(free bytes)` or the reason the directory cannot take writes.
pub fn probe(dir: &Path, min_free_bytes: u64) -> Result<u64, String> {
    let path = dir.join(".coffer-write-probe");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_all()?;
        Ok(())
    };
    let written = write();
    let _ = std::fs::remove_file(&path);
    if let Err(e) = written {
        return Err(match e.raw_os_error() {
            Some(28) => format!("{} is full (no space left on device)", dir.display()),
            Some(30) => format!("{} is read-only", dir.display()),
            _ => format!("{} cannot be written: {e}", dir.display()),
        });
    }
    let stat = rustix::fs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < min_free_bytes {
        return Err(format!(
            "{} has {} KiB free, below state.min_free_bytes ({} KiB)",
            dir.display(),
            free / 1024,
            min_free_bytes / 1024
        ));
    }
    Ok(free)
}

/// Starts the watcher thread.
pub fn spawn(
    dir: PathBuf,
    interval: Duration,
    min_free_bytes: u64,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("state-watch".into())
        .spawn(move || {
            let mut healthy = true;
            loop {
                match probe(&dir, min_free_bytes) {
                    Ok(free) => {
                        if !healthy {
                            tracing::info!(dir = %dir.display(), free_kib = free / 1024, "state directory writable again");
                        }
                        healthy = true;
                        readiness.set("state", true, format!("writable, {} MiB free", free >> 20));
                    }
                    Err(reason) => {
                        if healthy {
                            tracing::error!(%reason, "state directory cannot take writes; not ready");
                        }
                        healthy = false;
                        readiness.set("state", false, reason);
                    }
                }
                std::thread::sleep(interval);
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_passes_and_a_free_space_floor_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(dir.path(), 0).is_ok());
        let e = probe(dir.path(), u64::MAX).unwrap_err();
        assert!(e.contains("below state.min_free_bytes"), "{e}");
        let e = probe(&dir.path().join("missing"), 0).unwrap_err();
        assert!(e.contains("cannot be written"), "{e}");
        assert!(!dir.path().join(".coffer-write-probe").exists());
    }
}
