//! Start-up of the model lifecycle: clean the store's staging area, reconcile the
//! registry with the store (the files are the truth), import the version directories
//! the configuration lists (seeds), and load every active version.
//!
//! A seed that is new to the registry is activated, as `cofferctl models activate`
//! would (gate first, pins win); a seed already known keeps whatever state the admin
//! has given its name since. An active version that no longer loads is marked failed
//! and its name rolls back to the version before, so a restart never loops on it.

use std::path::PathBuf;
use std::sync::Arc;

use coffer_models::VersionDir;

use super::{LifecycleMetrics, LoadContext, ManageError, ModelManager};
use crate::audit::AuditLog;
use crate::lifecycle::registry::{Registry, State};
use crate::monitoring::gpu::GpuHealth;
use crate::monitoring::readiness::Readiness;
use crate::served::{Live, Served};
use crate::telemetry::Telemetry;

/// Everything the manager is built from.
#[derive(Debug)]
pub struct Parts {
    pub store_dir: PathBuf,
    pub db: sled::Db,
    pub load_context: LoadContext,
    pub gpu: Arc<GpuHealth>,
    pub audit: Option<Arc<AuditLog>>,
    pub telemetry: Arc<Telemetry>,
    pub readiness: Arc<Readiness>,
    pub metrics: LifecycleMetrics,
}

/// Why the model lifecycle could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{dir}: {source}")]
    Seed {
        dir: String,
        source: coffer_models::VerifyError,
    },
    #[error("{dir}: {source}")]
    SeedImport { dir: String, source: ManageError },
    #[error("the configuration lists {id}, which cannot serve: {reason}")]
    SeedFailed { id: String, reason: String },
    #[error(
        "the model store {store} holds no version but the registry lists {records}: is its file system mounted? (cofferd refuses to mark them all failed)"
    )]
    EmptyStore { store: String, records: usize },
    #[error(transparent)]
    Manage(#[from] ManageError),
}

const ACTOR: &str = "cofferd";

/// Builds the manager and loads what it must serve. Blocking: run it off the runtime.
pub fn start(parts: Parts, seeds: &[PathBuf]) -> Result<Arc<ModelManager>, StartupError> {
    // Variants are chosen on the GPUs' first readings, not on "unknown".
    parts
        .gpu
        .wait_first_sample(std::time::Duration::from_secs(5));
    let store = coffer_models::store::Store::open(&parts.store_dir).map_err(ManageError::from)?;
    let cleaned = store.clean_staging().map_err(ManageError::from)?;
    if cleaned > 0 {
        tracing::warn!(
            entries = cleaned,
            "removed unfinished imports from the model store's staging area"
        );
    }
    let registry = Registry::open(&parts.db).map_err(ManageError::from)?;
    let manager = Arc::new(ModelManager {
        store,
        registry,
        scoring: Arc::new(Live::new(Served::default())),
        chat: Arc::new(Live::new(Served::default())),
        embedding: Arc::new(Live::new(Served::default())),
        load_context: parts.load_context,
        gpu: parts.gpu,
        audit: parts.audit,
        telemetry: parts.telemetry,
        readiness: parts.readiness,
        metrics: parts.metrics,
        shadows: Arc::new(crate::lifecycle::shadow::ShadowSet::default()),
        ops: Arc::new(tokio::sync::Mutex::new(())),
        store_use: Arc::new(tokio::sync::RwLock::new(())),
        decided: std::sync::OnceLock::new(),
    });
    let records = manager
        .registry
        .list()
        .map_err(ManageError::from)?
        .iter()
        .filter(|r| r.state != State::Failed)
        .count();
    let installed = manager.store.list().map_err(ManageError::from)?;
    if records > 0 && installed.is_empty() {
        return Err(StartupError::EmptyStore {
            store: manager.store.root().display().to_string(),
            records,
        });
    }
    reconcile(&manager, &installed)?;
    let seeded = import_seeds(&manager, seeds)?;
    for (name, version, new) in &seeded {
        activate_seed(&manager, name, version, *new)?;
    }
    load_actives(&manager)?;
    manager.publish_readiness();
    Ok(manager)
}

fn reconcile(m: &ModelManager, installed: &[(String, String)]) -> Result<(), ManageError> {
    let found = m.registry.reconcile(installed)?;
    for id in &found.interrupted {
        tracing::warn!(model = %id, "an evaluation was interrupted by a restart; the version is staged again");
    }
    for id in &found.missing {
        tracing::error!(model = %id, "model version's files are missing from the store; marked failed");
    }
    for (name, version) in &found.orphans {
        // A version whose import finished in the store but not in the registry (a crash
        // between the two), or a store kept after the state database was lost.
        match m.store.open_version(name, version) {
            Ok(dir) => {
                let record = orphan_record(&dir);
                m.registry.add(
                    record,
                    ACTOR,
                    "found in the store at start; registered again".into(),
                )?;
                tracing::warn!(model = %dir.manifest.id(), "registered a model version found in the store");
            }
            Err(e) => {
                tracing::error!(model = %format!("{name}@{version}"), error = %e, "unusable version directory in the store; removing it");
                m.store.remove(name, version)?;
            }
        }
    }
    Ok(())
}

fn orphan_record(dir: &VersionDir) -> crate::lifecycle::registry::VersionRecord {
    let text = std::fs::read(dir.dir.join("manifest.toml")).unwrap_or_default();
    let bytes = dir.manifest.files.iter().map(|f| f.size).sum();
    crate::lifecycle::registry::VersionRecord {
        name: dir.manifest.name.clone(),
        version: dir.manifest.version.clone(),
        kind: dir.manifest.kind,
        format: dir.manifest.format,
        state: State::Staged,
        reason: None,
        variant: None,
        manifest_sha256: sha256_hex(&text),
        bytes,
        installed_at: crate::lifecycle::registry::now_ms(),
        updated_at: crate::lifecycle::registry::now_ms(),
        allow_schema_change: false,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Imports the configured directories the registry does not know yet; returns every
/// seed as (name, version, newly imported).
fn import_seeds(
    m: &Arc<ModelManager>,
    seeds: &[PathBuf],
) -> Result<Vec<(String, String, bool)>, StartupError> {
    let mut out: Vec<(String, String, bool)> = Vec::new();
    for dir in seeds {
        let shown = dir.display().to_string();
        let version = VersionDir::open(dir).map_err(|source| StartupError::Seed {
            dir: shown.clone(),
            source,
        })?;
        let (name, ver) = (
            version.manifest.name.clone(),
            version.manifest.version.clone(),
        );
        if out.iter().any(|(n, v, _)| *n == name && *v == ver) {
            return Err(StartupError::SeedFailed {
                id: version.manifest.id(),
                reason: "it is listed twice".into(),
            });
        }
        let known = m
            .registry
            .get(&name, &ver)
            .map_err(ManageError::from)?
            .is_some();
        if !known {
            if !m.store.contains(&name, &ver) {
                m.import_dir_blocking(dir, "config").map_err(|source| {
                    StartupError::SeedImport {
                        dir: shown.clone(),
                        source,
                    }
                })?;
            }
            let stored = m
                .store
                .open_version(&name, &ver)
                .map_err(ManageError::from)?;
            m.check_kind(&stored.manifest)
                .map_err(|source| StartupError::SeedImport {
                    dir: shown.clone(),
                    source,
                })?;
            let mut record = orphan_record(&stored);
            record.allow_schema_change = true;
            m.registry
                .add(
                    record,
                    "config",
                    format!("listed in the configuration ({shown})"),
                )
                .map_err(ManageError::from)?;
        }
        out.push((name, ver, !known));
    }
    Ok(out)
}

fn activate_seed(
    m: &ModelManager,
    name: &str,
    version: &str,
    new: bool,
) -> Result<(), StartupError> {
    let id = format!("{name}@{version}");
    let Some(record) = m.registry.get(name, version).map_err(ManageError::from)? else {
        return Ok(());
    };
    let active = m.registry.active(name).map_err(ManageError::from)?;
    if !new && active.is_some() {
        // Known seed, and the name serves: what the admin decided since stays.
        return Ok(());
    }
    if record.state == State::Failed {
        return Err(StartupError::SeedFailed {
            id,
            reason: record.reason.unwrap_or_default(),
        });
    }
    if let Some(pinned) = m.registry.pinned(name).map_err(ManageError::from)? {
        if pinned != version {
            tracing::warn!(model = %id, pinned = %pinned, "configured version not activated: the model is pinned");
            return Ok(());
        }
    }
    match m.activate_blocking(name, version, "config", "start", true) {
        Ok(_) => Ok(()),
        Err(ManageError::GateFailed { reason, .. }) => Err(StartupError::SeedFailed { id, reason }),
        Err(e) => Err(StartupError::SeedImport { dir: id, source: e }),
    }
}

/// Loads every active version not loaded yet (those activated by earlier runs).
fn load_actives(m: &ModelManager) -> Result<(), ManageError> {
    for (name, version) in m.registry.actives()? {
        if m.is_serving(&name, &version) {
            continue;
        }
        let result = m
            .store
            .open_version(&name, &version)
            .map_err(ManageError::from)
            .and_then(|dir| {
                let variant = super::variant::choose(&dir.manifest, m.hardware())
                    .map_err(ManageError::NoVariant)?;
                let loaded = m.load_blocking(dir, variant.as_deref())?;
                Ok((loaded, variant))
            });
        match result {
            Ok((loaded, variant)) => {
                m.swap_in(loaded);
                m.metrics.serving(&name, &version, variant.as_deref());
                tracing::info!(model = %name, %version, variant = variant.as_deref().unwrap_or("default"), "model version loaded");
            }
            Err(e) => {
                // Not failed for good: a GPU that is late or busy is not the version's
                // fault. It goes back to ready with the reason; the name rolls back.
                tracing::error!(model = %name, %version, error = %e, "the active version does not load; rolling back");
                m.registry.demote(&name, &version, e.to_string(), ACTOR)?;
                match m.registry.rollback_target(&name) {
                    Ok(previous) => {
                        if let Err(e2) =
                            m.activate_blocking(&name, &previous, ACTOR, "rollback", true)
                        {
                            tracing::error!(model = %name, version = %previous, error = %e2, "rollback at start failed too; the model is not served");
                        }
                    }
                    Err(_) => {
                        tracing::error!(model = %name, "no earlier version to roll back to; the model is not served");
                    }
                }
            }
        }
    }
    Ok(())
}
