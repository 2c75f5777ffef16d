//! Helpers shared by the registry's unit tests: a record to add and a registry in a
//! temporary directory.

use coffer_models::{Format, Kind};

use super::{Registry, State, VersionRecord, now_ms};

pub(super) fn record(name: &str, version: &str) -> VersionRecord {
    VersionRecord {
        name: name.into(),
        version: version.into(),
        kind: Kind::Score,
        format: Format::Onnx,
        state: State::Staged,
        reason: None,
        variant: None,
        manifest_sha256: "0".repeat(64),
        bytes: 1,
        installed_at: now_ms(),
        updated_at: now_ms(),
        allow_schema_change: false,
    }
}

pub(super) fn open() -> (tempfile::TempDir, Registry) {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(tmp.path().join("db"))
        .open()
        .unwrap();
    (tmp, Registry::open(&db).unwrap())
}
