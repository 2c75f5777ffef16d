//! The decision store's files: append-only segments (`<dir>/0000000001.seg`, ...), each
//! an 8-byte magic and then frames `[u32 body length][u32 CRC-32 of the body][body]`,
//! little-endian, whose body is one sealed record (`wire.rs`). A segment's
//! summary ([`SegmentMeta`]: time span, count, the model versions it names) is kept
//! beside it so that lookups and retention need not read it. Reading stops cleanly at a
//! torn last frame (a crash mid-append); a bad frame anywhere else is corruption.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::record::Header;
use super::wire::decode_sealed;

pub const MAGIC: &[u8; 8] = b"CFDSEG1\n";
/// Frame overhead before the body.
pub const FRAME_HEAD: usize = 8;
/// The largest body a frame may declare (a decision of a 64 MiB request at most).
pub const MAX_BODY: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("decision segment {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("decision segment {path} is corrupt at byte {offset}")]
    Corrupt { path: String, offset: u64 },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a segment holds, without reading it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub seq: u64,
    /// When the segment was begun (ms since the epoch).
    pub created_ms: u64,
    /// The oldest and newest decision in it.
    pub min_ms: u64,
    pub max_ms: u64,
    pub count: u64,
    /// Its length in bytes, magic included: the end of its last whole frame.
    pub bytes: u64,
    /// `model@version` of its decisions, each with the newest decision's time.
    pub versions: BTreeMap<String, u64>,
}

impl SegmentMeta {
    pub fn new(seq: u64, created_ms: u64) -> SegmentMeta {
        SegmentMeta {
            seq,
            created_ms,
            min_ms: u64::MAX,
            max_ms: 0,
            count: 0,
            bytes: MAGIC.len() as u64,
            versions: BTreeMap::new(),
        }
    }

    /// Counts one more decision of `version_key` at `at_ms`, `frame_len` bytes long.
    pub fn add(&mut self, at_ms: u64, version_key: &str, frame_len: usize) {
        self.min_ms = self.min_ms.min(at_ms);
        self.max_ms = self.max_ms.max(at_ms);
        self.count += 1;
        self.bytes += frame_len as u64;
        match self.versions.get_mut(version_key) {
            Some(newest) => *newest = (*newest).max(at_ms),
            None => {
                self.versions.insert(version_key.to_string(), at_ms);
            }
        }
    }
}

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:010}.seg"))
}

/// The segment number a file name stands for.
pub fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

pub fn version_key(model: &str, version: &str) -> String {
    format!("{model}@{version}")
}

/// A frame around an already sealed body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEAD + body.len());
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(crc32fast::hash(body).to_le_bytes());
    out.extend(body);
    out
}

/// The frame around a sealed body's parts (`seal.rs` builds the same in one buffer).
#[cfg(test)]
pub fn sealed_frame(header: &Header, nonce: &[u8; 12], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEAD + 320 + sealed.len());
    out.extend([0u8; FRAME_HEAD]);
    super::wire::encode_sealed_into(&mut out, header, nonce, sealed);
    close_frame(&mut out);
    out
}

/// Writes the length and CRC of a frame whose body follows its (placeholder) head.
pub fn close_frame(frame: &mut [u8]) {
    let len = ((frame.len() - FRAME_HEAD) as u32).to_le_bytes();
    let crc = crc32fast::hash(&frame[FRAME_HEAD..]).to_le_bytes();
    frame[..4].copy_from_slice(&len);
    frame[4..FRAME_HEAD].copy_from_slice(&crc);
}

/// How a read of a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// At `limit`, or at the end of the file on a whole frame.
    Clean,
    /// At a frame cut short or not matching its CRC, at this offset (a torn append).
    Torn(u64),
}

/// Calls `each(offset, body)` for the frames of the segment at `path` up to `limit`
/// bytes (`None`: the whole file); `each` returns false to stop. A bad frame is
/// reported as [`End::Torn`] when `tolerate_torn`, else as corruption.
pub fn read(
    path: &Path,
    limit: Option<u64>,
    tolerate_torn: bool,
    each: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<End, SegmentError> {
    let file = File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    let limit = limit.unwrap_or(len).min(len);
    let mut r = BufReader::with_capacity(1 << 16, file).take(limit);
    let corrupt = |offset: u64| SegmentError::Corrupt {
        path: path.display().to_string(),
        offset,
    };
    // What an interrupted append leaves: a frame cut short by the end of the file, or
    // zeros where the file system had not yet written. Anything else is corruption.
    let torn = |offset: u64| {
        if tolerate_torn {
            Ok(End::Torn(offset))
        } else {
            Err(corrupt(offset))
        }
    };
    let mut magic = [0u8; 8];
    if limit < MAGIC.len() as u64 {
        let mut start = Vec::new();
        r.read_to_end(&mut start).map_err(io(path))?;
        return if MAGIC.starts_with(&start) || start.iter().all(|&b| b == 0) {
            torn(0)
        } else {
            Err(corrupt(0))
        };
    }
    r.read_exact(&mut magic).map_err(io(path))?;
    if &magic != MAGIC {
        return if magic == [0; 8] && rest_is_zero(&mut r).map_err(io(path))? {
            torn(0)
        } else {
            Err(corrupt(0))
        };
    }
    let mut offset = MAGIC.len() as u64;
    let mut body = Vec::new();
    while offset < limit {
        if limit - offset < FRAME_HEAD as u64 {
            return torn(offset);
        }
        let mut head = [0u8; FRAME_HEAD];
        r.read_exact(&mut head).map_err(io(path))?;
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if n == 0 || n > MAX_BODY {
            return if head == [0; FRAME_HEAD] && rest_is_zero(&mut r).map_err(io(path))? {
                torn(offset)
            } else {
                Err(corrupt(offset))
            };
        }
        let end = offset + (FRAME_HEAD + n) as u64;
        if end > limit {
            return torn(offset);
        }
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io(path))?;
        if crc32fast::hash(&body) != crc {
            // Only the last frame may be half written.
            return if end == limit {
                torn(offset)
            } else {
                Err(corrupt(offset))
            };
        }
        if !each(offset, &body) {
            return Ok(End::Clean);
        }
        offset = end;
    }
    Ok(End::Clean)
}

/// Whether everything left to read is zero bytes.
fn rest_is_zero(r: &mut impl std::io::Read) -> std::io::Result<bool> {
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// Rebuilds the summary of a segment written without one (the one being written when
/// the daemon stopped): reads it whole and cuts a torn last frame off the file.
pub fn recover(path: &Path, seq: u64, created_ms: u64) -> Result<SegmentMeta, SegmentError> {
    let mut meta = SegmentMeta::new(seq, created_ms);
    let mut bad = None;
    let end = read(path, None, true, &mut |offset, body| {
        match decode_sealed(body) {
            Some((h, _, _)) => meta.add(
                h.at_ms,
                &version_key(&h.model, &h.version),
                FRAME_HEAD + body.len(),
            ),
            None => bad = Some(offset),
        }
        bad.is_none()
    })?;
    if let Some(offset) = bad {
        return Err(SegmentError::Corrupt {
            path: path.display().to_string(),
            offset,
        });
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    if let End::Torn(at) = end {
        let cut = at.max(MAGIC.len() as u64);
        tracing::warn!(segment = %path.display(), at, "a torn last decision frame was cut off (the daemon stopped mid-append)");
        if at < MAGIC.len() as u64 {
            use std::io::Write as _;
            file.set_len(0).map_err(io(path))?;
            (&file).write_all(MAGIC).map_err(io(path))?;
        } else {
            file.set_len(cut).map_err(io(path))?;
        }
        meta.bytes = cut;
    }
    // On disk before its summary is kept, torn or not.
    file.sync_all().map_err(io(path))?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// The headers of a segment's frames, in file order, up to `limit` bytes.
    fn headers(path: &Path, limit: u64) -> Result<Vec<Header>, SegmentError> {
        let mut out = Vec::new();
        let mut bad = None;
        read(path, Some(limit), false, &mut |offset, body| {
            match decode_sealed(body) {
                Some((h, _, _)) => out.push(h),
                None => bad = Some(offset),
            }
            bad.is_none()
        })?;
        match bad {
            Some(offset) => Err(SegmentError::Corrupt {
                path: path.display().to_string(),
                offset,
            }),
            None => Ok(out),
        }
    }

    fn body(id: &str, at_ms: u64) -> Vec<u8> {
        let header = Header {
            request_id: id.into(),
            at_ms,
            model: "credit-lr".into(),
            version: "1.0.0".into(),
            key_id: "k000001".into(),
            sha256: "00".into(),
        };
        let mut out = Vec::new();
        super::super::wire::encode_sealed_into(&mut out, &header, &[7; 12], b"sealed bytes");
        out
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_a_bad_middle_frame_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), 1);
        let mut f = File::create(&p).unwrap();
        f.write_all(MAGIC).unwrap();
        let (a, b) = (frame(&body("a", 5)), frame(&body("b", 9)));
        let (h, nonce, sealed) = decode_sealed(&body("a", 5))
            .map(|(h, n, s)| (h, n, s.to_vec()))
            .unwrap();
        assert_eq!(sealed_frame(&h, &nonce, &sealed), a);
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        f.write_all(&frame(&body("c", 11))[..20]).unwrap();
        drop(f);
        let whole = (MAGIC.len() + a.len() + b.len()) as u64;
        let meta = recover(&p, 1, 3).unwrap();
        assert_eq!((meta.count, meta.min_ms, meta.max_ms), (2, 5, 9));
        assert_eq!(meta.bytes, whole);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole);
        assert_eq!(meta.versions["credit-lr@1.0.0"], 9);
        let ids: Vec<String> = headers(&p, whole)
            .unwrap()
            .into_iter()
            .map(|h| h.request_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);

        // Zeros after the last frame (a file system that had not written them yet):
        // torn, cut off; a bad frame followed by a whole one: corruption, not cut.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend([0u8; 100]);
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(recover(&p, 1, 3).unwrap().bytes, whole);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole);

        // A flipped byte inside the first frame: the CRC catches it.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[MAGIC.len() + FRAME_HEAD + 3] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert!(matches!(
            headers(&p, whole),
            Err(SegmentError::Corrupt { offset: 8, .. })
        ));
        assert!(matches!(
            recover(&p, 1, 3),
            Err(SegmentError::Corrupt { offset: 8, .. })
        ));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole, "nothing cut");
        assert_eq!(seq_of("0000000001.seg"), Some(1));
        assert_eq!(seq_of("1.seg"), None);
    }
}
