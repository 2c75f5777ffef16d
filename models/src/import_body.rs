//! The body of cofferd's import request (`POST /admin/models`), as `cofferctl models
//! import` and coffer-agent send it: the manifest's length (`u64` big-endian), the
//! manifest text, then every file the manifest lists, in manifest order. This module
//! prepares the head and the file list; the senders stream the files themselves.

use std::path::{Path, PathBuf};

use crate::Manifest;
use crate::verify::VerifyError;

/// An import body ready to send.
#[derive(Debug, Clone)]
pub struct ImportBody {
    /// Length prefix and manifest text.
    pub head: Vec<u8>,
    /// The files to stream after the head, in manifest order.
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub total: u64,
    pub manifest: Manifest,
}

/// Reads `dir/manifest.toml` and checks that each file it lists is there (the receiver
/// checks sizes and hashes and names what differs; nothing here is trusted).
pub fn prepare(dir: &Path) -> Result<ImportBody, VerifyError> {
    let (text, manifest) = crate::verify::read_manifest(dir)?;
    let mut files = Vec::with_capacity(manifest.files.len());
    for entry in &manifest.files {
        let path = dir.join(&entry.path);
        std::fs::metadata(&path).map_err(|source| VerifyError::Read {
            path: path.clone(),
            source,
        })?;
        files.push(path);
    }
    let mut head = (text.len() as u64).to_be_bytes().to_vec();
    head.extend_from_slice(text.as_bytes());
    Ok(ImportBody {
        head,
        files,
        total: manifest.files.iter().map(|f| f.size).sum(),
        manifest,
    })
}
