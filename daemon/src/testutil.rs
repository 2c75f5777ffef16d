//! Helpers for this crate's unit tests.

use std::path::Path;
use std::time::{Duration, Instant};

/// Opens a sled database that this process just closed. sled's background flusher can
/// hold the directory's file lock for a moment after the last handle is dropped, so a
/// lock refusal is retried for a few seconds (any other error fails at once).
pub fn reopen_sled(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot reopen {}: {e}", path.display()),
        }
    }
}
