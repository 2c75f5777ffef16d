//! Moving decisions from the store's first layout (one sled key per decision, trees
//! `decisions`, `decisions_by_id`, `decisions_versions`) into segment 0 of the segment
//! store, once, at start. The sealed values are copied as they are (they were sealed
//! with the same associated data: time and request id). Segment 0 is written to a
//! temporary file and renamed, and the old trees are dropped only after that, so a stop
//! at any point leaves either the old trees or the whole segment.

use std::io::Write as _;
use std::path::Path;

use super::segment::{self, MAGIC};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("moving decisions out of sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("moving decisions out of sled, {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

const OLD_TREES: [&str; 3] = ["decisions", "decisions_by_id", "decisions_versions"];

pub fn from_sled_trees(db: &sled::Db, dir: &Path) -> Result<u64, MigrateError> {
    let names = db.tree_names();
    if !names.iter().any(|n| n.as_ref() == OLD_TREES[0].as_bytes()) {
        return Ok(0);
    }
    let target = segment::path(dir, 0);
    let mut moved = 0;
    if !target.exists() {
        let old = db.open_tree(OLD_TREES[0])?;
        let tmp = dir.join("0000000000.seg.tmp");
        let io = |source| MigrateError::Io {
            path: tmp.display().to_string(),
            source,
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        out.write_all(MAGIC).map_err(io)?;
        for item in old.iter() {
            let (_, value) = item?;
            out.write_all(&segment::frame(&value)).map_err(io)?;
            moved += 1;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        if moved > 0 {
            std::fs::rename(&tmp, &target).map_err(io)?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        } else {
            std::fs::remove_file(&tmp).map_err(io)?;
        }
    }
    for name in OLD_TREES {
        db.drop_tree(name)?;
    }
    db.flush()?;
    if moved > 0 {
        tracing::info!(
            moved,
            "decisions moved from the sled trees into the segment store"
        );
    }
    Ok(moved)
}
