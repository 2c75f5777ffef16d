//! The model lifecycle on a running daemon: import into the content-addressed store
//! (`coffer_models::store`), the evaluation gate, activation by an atomic swap of the
//! served snapshot, rollback, pins, removal and garbage collection, with the registry
//! (`crate::lifecycle::registry`) recording every state and change. The admin socket
//! (`admin::models`) and start-up ([`startup`]) drive it. `docs/models.md` describes it.

mod explain_gate;
pub mod gate;
pub mod gpu_return;
mod loading;
mod metrics;
pub mod registry;
pub mod schema;
pub mod shadow;
mod shadowing;
pub mod startup;
pub mod variant;

use std::io::Read;
use std::sync::Arc;

use coffer_models::store::{GcReport, Progress, Store, StoreError, StoredVersion};
use coffer_models::{Kind, Manifest};
use coffer_privacy::telemetry::EventKind;

use crate::audit::{AuditEvent, AuditLog};
use crate::chat::{ChatMetrics, LoadedChat};
use crate::config::ChatSettings;
use crate::lifecycle::registry::{
    HistoryEntry, Registry, RegistryError, State, VersionRecord, now_ms,
};
use crate::monitoring::gpu::GpuHealth;
use crate::monitoring::readiness::Readiness;
use crate::score::{LoadedModel, ScoreMetrics};
use crate::served::Live;
use crate::telemetry::Telemetry;

pub use metrics::LifecycleMetrics;
pub use variant::Hardware;

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{id} failed its evaluation gate: {reason}")]
    GateFailed { id: String, reason: String },
    #[error(
        "{id} would break existing clients of {active}: {changes}; pass --allow-schema-change to accept"
    )]
    SchemaChange {
        id: String,
        active: String,
        changes: String,
    },
    #[error("{0}")]
    NoVariant(String),
    #[error("{id} does not load: {source}")]
    Load {
        id: String,
        #[source]
        source: Box<EngineLoadError>,
    },
    #[error("the operation's worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Shadow(String),
    #[error("{0} has no version in shadow")]
    NoShadow(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "{0} decided scoring requests whose records have not expired: it is kept so that `cofferctl decisions replay` can re-score them (docs/decisions.md)"
    )]
    Decided(String),
}

/// Why a version's engine did not load, from the engine that said so.
#[derive(Debug, thiserror::Error)]
pub enum EngineLoadError {
    #[error(transparent)]
    Score(#[from] crate::score::LoadError),
    /// The llama.cpp engines: chat and embeddings.
    #[error(transparent)]
    Llama(#[from] crate::chat::LoadError),
}

/// What loading a version needs from the rest of the daemon: engine settings, the
/// metric families, the drift store and the fault watch.
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub score_metrics: ScoreMetrics,
    pub chat_metrics: ChatMetrics,
    pub chat_settings: ChatSettings,
    pub embedding_settings: crate::embedding::EmbedSettings,
    pub score_queue_capacity: usize,
    /// Drift counts of scoring versions (sled tree `drift`).
    pub drift: Option<crate::monitoring::drift::monitor::DriftStore>,
    /// A shadow pass: at least this many compared rows with at least this agreement.
    pub shadow_pass: (u64, f64),
    /// Contained engine panics, per loaded version.
    pub faults: crate::engine_faults::FaultWatch,
    /// The GPU each model names (`gpu.models.NAME.gpu`).
    pub gpu_devices: std::collections::BTreeMap<String, u32>,
    /// GPU readings come from a scripted timeline (`gpu.simulate`).
    pub gpu_simulated: bool,
    /// Each `cpu_variant` model, with the GPU model it stands in for.
    pub cpu_variants: std::collections::BTreeMap<String, String>,
}

pub use coffer_admin_api::models::Activation;

/// Owns the store, the registry and the served snapshots.
#[derive(Debug)]
pub struct ModelManager {
    store: Store,
    registry: Registry,
    pub scoring: Arc<Live<LoadedModel>>,
    pub chat: Arc<Live<LoadedChat>>,
    pub embedding: Arc<Live<crate::embedding::LoadedEmbedding>>,
    load_context: LoadContext,
    gpu: Arc<GpuHealth>,
    audit: Option<Arc<AuditLog>>,
    telemetry: Arc<Telemetry>,
    readiness: Arc<Readiness>,
    metrics: LifecycleMetrics,
    /// Candidates in shadow (shared with the request path).
    pub shadows: Arc<crate::lifecycle::shadow::ShadowSet>,
    /// One activation, rollback, pin, removal at a time.
    ops: Arc<tokio::sync::Mutex<()>>,
    /// Imports share the store; gc (which empties staging) excludes them.
    store_use: Arc<tokio::sync::RwLock<()>>,
    /// The decision store: a version its unexpired decisions name is not removed.
    decided: std::sync::OnceLock<Arc<crate::decisions::DecisionStore>>,
}

pub(crate) fn worker(e: tokio::task::JoinError) -> ManageError {
    ManageError::Worker(e)
}

impl ModelManager {
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Keeps every version that unexpired decisions of `store` name from removal.
    pub fn keep_decided_versions(&self, store: Arc<crate::decisions::DecisionStore>) {
        let _ = self.decided.set(store);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn hardware(&self) -> Hardware {
        Hardware::from_presence(&self.gpu.snapshot())
    }

    /// Imports a version from a stream (`manifest` text, then the files in manifest
    /// order), registers it and runs its evaluation gate. A version whose inputs would
    /// break the active version's clients is refused before any byte is stored, unless
    /// `allow_schema_change`. The returned record says `ready` or `failed` (and why).
    pub async fn import(
        self: &Arc<Self>,
        manifest_text: String,
        reader: Box<dyn Read + Send>,
        progress: Box<dyn FnMut(Progress<'_>) + Send>,
        actor: &str,
        allow_schema_change: bool,
    ) -> Result<VersionRecord, ManageError> {
        let manifest = Manifest::parse(&manifest_text)
            .map_err(|e| ManageError::Store(StoreError::Manifest(e)))?;
        if self
            .registry
            .get(&manifest.name, &manifest.version)?
            .is_some()
        {
            return Err(RegistryError::Exists(manifest.id()).into());
        }
        self.check_kind(&manifest)?;
        if !allow_schema_change {
            self.check_schema(&manifest)?;
        }
        // Owned guards move into the blocking work: a caller that goes away (the handler
        // future dropped) cannot release them while that work still runs.
        let shared = Arc::clone(&self.store_use).read_owned().await;
        let me = Arc::clone(self);
        let stored = tokio::task::spawn_blocking(move || {
            let _shared = shared;
            let mut reader = reader;
            let mut progress = progress;
            me.store
                .import_stream(&manifest_text, &mut reader, &mut *progress)
        })
        .await
        .map_err(worker)??;
        self.register_and_gate(stored, actor, allow_schema_change)
            .await
    }

    /// Imports a version directory on this host (start-up seeds from the config).
    pub fn import_dir_blocking(
        &self,
        dir: &std::path::Path,
        actor: &str,
    ) -> Result<StoredVersion, ManageError> {
        Ok(self.store.import_dir(dir, &mut |_| {})?)
        .inspect(|s: &StoredVersion| {
            tracing::info!(model = %s.manifest.id(), from = %dir.display(), actor, "model version imported");
        })
    }

    fn record_for(stored: &StoredVersion, allow_schema_change: bool) -> VersionRecord {
        VersionRecord {
            name: stored.name.clone(),
            version: stored.version.clone(),
            kind: stored.manifest.kind,
            format: stored.manifest.format,
            state: State::Staged,
            reason: None,
            variant: None,
            manifest_sha256: stored.manifest_sha256.clone(),
            bytes: stored.bytes,
            installed_at: now_ms(),
            updated_at: now_ms(),
            allow_schema_change,
        }
    }

    async fn register_and_gate(
        self: &Arc<Self>,
        stored: StoredVersion,
        actor: &str,
        allow_schema_change: bool,
    ) -> Result<VersionRecord, ManageError> {
        let record = Self::record_for(&stored, allow_schema_change);
        let detail = format!(
            "{} bytes, manifest sha256 {}",
            stored.bytes, stored.manifest_sha256
        );
        if let Err(e) = self.registry.add(record, actor, detail) {
            // Not registered: the directory must not stay visible either.
            let _ = self.store.remove(&stored.name, &stored.version);
            return Err(e.into());
        }
        let me = Arc::clone(self);
        let actor = actor.to_string();
        tokio::task::spawn_blocking(move || me.gate_blocking(&stored.name, &stored.version, &actor))
            .await
            .map_err(worker)?
    }

    /// Runs the gate of a staged version: `evaluating`, then `ready` or `failed`.
    pub fn gate_blocking(
        &self,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<VersionRecord, ManageError> {
        self.registry
            .set_state(name, version, State::Evaluating, None, actor, "gate")?;
        let result = self.run_gate(name, version);
        let (Ok((variant, _)) | Err((variant, _))) = &result;
        self.registry.set_variant(name, version, variant.clone())?;
        let result = result.map(|(_, s)| s).map_err(|(_, s)| s);
        let (state, reason) = match &result {
            Ok(summary) => (State::Ready, summary.clone()),
            Err(reason) => (State::Failed, reason.clone()),
        };
        let record =
            self.registry
                .set_state(name, version, state, Some(reason.clone()), actor, "gate")?;
        if state == State::Failed {
            tracing::warn!(model = %format!("{name}@{version}"), %reason, "model version failed its evaluation gate");
            self.telemetry
                .event(EventKind::GateFailure, Some(name), Some(version));
        } else {
            tracing::info!(model = %format!("{name}@{version}"), %reason, "model version passed its evaluation gate");
        }
        Ok(record)
    }

    /// Runs the gate on the variant this host would serve; returns that variant with
    /// the summary (`Err`: the gate failed).
    #[allow(clippy::type_complexity)]
    fn run_gate(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(Option<String>, String), (Option<String>, String)> {
        let dir = self
            .store
            .open_version(name, version)
            .map_err(|e| (None, e.to_string()))?;
        let variant = variant::choose(&dir.manifest, self.hardware()).map_err(|e| (None, e))?;
        let Some(file) = dir
            .manifest
            .variant_file(variant.as_deref())
            .map(|f| dir.path(&f.path))
        else {
            return Err((variant, "the manifest names no model file".to_string()));
        };
        let report = gate::run(
            &dir.dir,
            &dir.manifest,
            &file,
            self.load_context.chat_settings.threads,
        );
        if report.passed {
            Ok((variant, report.summary))
        } else {
            Err((variant, report.summary))
        }
    }

    /// A version may not change its name's kind (a chat version cannot take over a
    /// scoring name): refused whatever the schema flag says.
    pub(crate) fn check_kind(&self, candidate: &Manifest) -> Result<(), ManageError> {
        let other = self
            .registry
            .list()?
            .into_iter()
            .find(|r| r.name == candidate.name && r.kind != candidate.kind);
        match other {
            Some(r) => Err(ManageError::SchemaChange {
                id: candidate.id(),
                active: r.id(),
                changes: format!(
                    "the name is a {} model; a {} version cannot take it over",
                    kind_str(r.kind),
                    kind_str(candidate.kind)
                ),
            }),
            None => Ok(()),
        }
    }

    fn check_schema(&self, candidate: &Manifest) -> Result<(), ManageError> {
        if candidate.kind != Kind::Score {
            return Ok(());
        }
        let Some(active) = self.registry.active(&candidate.name)? else {
            return Ok(());
        };
        if active == candidate.version {
            return Ok(());
        }
        let current = self.store.open_version(&candidate.name, &active)?;
        let changes = schema::breaking_changes(&current.manifest, candidate);
        if changes.is_empty() {
            Ok(())
        } else {
            Err(ManageError::SchemaChange {
                id: candidate.id(),
                active: current.manifest.id(),
                changes: changes.join("; "),
            })
        }
    }

    /// Activates a version: runs its gate first if it has not passed one, loads it
    /// beside the serving version, commits the registry, then swaps the served pointer.
    /// Requests in flight finish on the old version, which unloads after them.
    pub async fn activate(
        self: &Arc<Self>,
        name: &str,
        version: &str,
        actor: &str,
        allow_schema_change: bool,
        require_shadow: bool,
    ) -> Result<Activation, ManageError> {
        let op = Arc::clone(&self.ops).lock_owned().await;
        if require_shadow {
            self.check_shadow_pass(name, version)?;
        }
        let me = Arc::clone(self);
        let (n, v, a) = (name.to_string(), version.to_string(), actor.to_string());
        tokio::task::spawn_blocking(move || {
            let _op = op;
            me.activate_blocking(&n, &v, &a, "activate", allow_schema_change)
        })
        .await
        .map_err(worker)?
    }

    /// Switches back to the version that was active before.
    pub async fn rollback(
        self: &Arc<Self>,
        name: &str,
        actor: &str,
    ) -> Result<Activation, ManageError> {
        let op = Arc::clone(&self.ops).lock_owned().await;
        if let Some(pinned) = self.registry.pinned(name)? {
            return Err(RegistryError::Pinned {
                name: name.to_string(),
                version: pinned,
            }
            .into());
        }
        let target = self.registry.rollback_target(name)?;
        let me = Arc::clone(self);
        let (n, a) = (name.to_string(), actor.to_string());
        tokio::task::spawn_blocking(move || {
            let _op = op;
            me.activate_blocking(&n, &target, &a, "rollback", true)
        })
        .await
        .map_err(worker)?
    }

    /// The activation itself, on a blocking thread; callers serialize through `ops`
    /// (start-up runs before anything else can).
    pub fn activate_blocking(
        &self,
        name: &str,
        version: &str,
        actor: &str,
        action: &str,
        allow_schema_change: bool,
    ) -> Result<Activation, ManageError> {
        let id = format!("{name}@{version}");
        let record = self
            .registry
            .get(name, version)?
            .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
        if let Some(pinned) = self.registry.pinned(name)? {
            if pinned != version {
                return Err(RegistryError::Pinned {
                    name: name.to_string(),
                    version: pinned,
                }
                .into());
            }
        }
        let already_serving = self.is_serving(name, version);
        if record.state == State::Active && already_serving {
            return Ok(Activation {
                name: name.into(),
                version: version.into(),
                previous: None,
                variant: record.variant,
                changed: false,
            });
        }
        if record.state == State::Failed {
            return Err(ManageError::GateFailed {
                id,
                reason: record.reason.unwrap_or_default(),
            });
        }
        let dir = self.store.open_version(name, version)?;
        if !(allow_schema_change || record.allow_schema_change) {
            self.check_schema(&dir.manifest)?;
        }
        let variant =
            variant::choose(&dir.manifest, self.hardware()).map_err(ManageError::NoVariant)?;
        // A version that has not passed its gate, or passed it on another variant than
        // the one this host would serve now, runs it on this one first.
        if matches!(record.state, State::Staged | State::Evaluating) || record.variant != variant {
            let gated = self.gate_blocking(name, version, actor)?;
            if gated.state != State::Ready {
                return Err(ManageError::GateFailed {
                    id,
                    reason: gated.reason.unwrap_or_default(),
                });
            }
        }
        let loaded = self.load_blocking(dir, variant.as_deref())?;
        let previous = self
            .registry
            .activate(name, version, variant.clone(), actor, action)?;
        self.swap_in(loaded);
        self.end_shadow_after_switch(name, actor);
        self.announce(
            name,
            version,
            variant.as_deref(),
            previous.as_deref(),
            action,
            actor,
        );
        Ok(Activation {
            name: name.into(),
            version: version.into(),
            previous,
            variant,
            changed: true,
        })
    }

    fn announce(
        &self,
        name: &str,
        version: &str,
        variant: Option<&str>,
        previous: Option<&str>,
        action: &str,
        actor: &str,
    ) {
        tracing::info!(
            model = name,
            version,
            variant = variant.unwrap_or("default"),
            previous = previous.unwrap_or("none"),
            action,
            actor,
            "model version activated"
        );
        self.metrics.switched(name, version, variant, action);
        let kind = if action == "rollback" {
            EventKind::Rollback
        } else {
            EventKind::Activation
        };
        self.telemetry.event(kind, Some(name), Some(version));
        if let Some(audit) = &self.audit {
            audit.record_blocking(AuditEvent::ModelActivated {
                model: name.into(),
                version: version.into(),
                variant: variant.map(str::to_string),
                previous: previous.map(str::to_string),
                action: action.into(),
                actor: actor.into(),
            });
        }
    }

    pub async fn pin(
        self: &Arc<Self>,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<(), ManageError> {
        let op = Arc::clone(&self.ops).lock_owned().await;
        let me = Arc::clone(self);
        let (n, v, a) = (name.to_string(), version.to_string(), actor.to_string());
        // The registry flushes to disk: off the async workers.
        tokio::task::spawn_blocking(move || {
            let _op = op;
            Ok(me.registry.pin(&n, &v, &a)?)
        })
        .await
        .map_err(worker)?
    }

    pub async fn unpin(
        self: &Arc<Self>,
        name: &str,
        actor: &str,
    ) -> Result<Option<String>, ManageError> {
        let op = Arc::clone(&self.ops).lock_owned().await;
        let me = Arc::clone(self);
        let (n, a) = (name.to_string(), actor.to_string());
        tokio::task::spawn_blocking(move || {
            let _op = op;
            Ok(me.registry.unpin(&n, &a)?)
        })
        .await
        .map_err(worker)?
    }

    /// Removes an installed version that is neither active nor pinned.
    pub async fn remove(
        self: &Arc<Self>,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<VersionRecord, ManageError> {
        let op = Arc::clone(&self.ops).lock_owned().await;
        let shared = Arc::clone(&self.store_use).read_owned().await;
        let me = Arc::clone(self);
        let (n, v, a) = (name.to_string(), version.to_string(), actor.to_string());
        tokio::task::spawn_blocking(move || {
            let (_op, _shared) = (op, shared);
            if let Some(decided) = me.decided.get() {
                if decided.references(&n, &v).unwrap_or(true) {
                    return Err(ManageError::Decided(format!("{n}@{v}")));
                }
            }
            let record = me.registry.remove(&n, &v, &a)?;
            me.end_shadow_of(&n, &v, &a);
            me.scoring.drop_version(&n, &v);
            if let Some(drift) = &me.load_context.drift {
                drift.forget(&n, &v);
            }
            me.forget_prefixes(&n, &v);
            // Registry first: a crash before the directory goes leaves an orphan that
            // the next start registers again, never a record without files.
            if me.store.contains(&n, &v) {
                me.store.remove(&n, &v)?;
            }
            Ok(record)
        })
        .await
        .map_err(worker)?
    }

    /// Removes a chat version's saved prompt prefixes (the application's system
    /// prompts' KV state), so they do not outlive it; a failure is logged, and least
    /// recently used eviction removes them later.
    fn forget_prefixes(&self, name: &str, version: &str) {
        let Ok(dir) = self.store.open_version(name, version) else {
            return;
        };
        if dir.manifest.kind != coffer_models::Kind::Chat {
            return;
        }
        let prefix_dir = &self.load_context.chat_settings.prefix_dir;
        match crate::chat::forget_prefixes(prefix_dir, &dir.manifest) {
            Ok(0) => {}
            Ok(bytes) => tracing::info!(
                model = name,
                version,
                bytes,
                "saved prompt prefixes removed"
            ),
            Err(e) => {
                tracing::warn!(model = name, version, error = %e, "saved prompt prefixes not removed")
            }
        }
    }

    /// Re-hashes every file of a version. A version that no longer matches is marked
    /// `failed` unless it is the one serving (its engine holds the model already; the
    /// report and the log say so).
    pub async fn verify(
        self: &Arc<Self>,
        name: &str,
        version: &str,
        progress: Box<dyn FnMut(Progress<'_>) + Send>,
        actor: &str,
    ) -> Result<VersionRecord, ManageError> {
        let record = self
            .registry
            .get(name, version)?
            .ok_or_else(|| RegistryError::NotFound(format!("{name}@{version}")))?;
        let me = Arc::clone(self);
        let (n, v) = (name.to_string(), version.to_string());
        let result = tokio::task::spawn_blocking(move || {
            let mut progress = progress;
            me.store.verify(&n, &v, &mut *progress)
        })
        .await
        .map_err(worker)?;
        match result {
            Ok(_) => {
                self.registry.note_action(
                    actor,
                    "verify",
                    name,
                    Some(version),
                    "every file matches".into(),
                )?;
                Ok(record)
            }
            Err(e) => {
                let reason = format!("verification failed: {e}");
                self.registry
                    .note_action(actor, "verify", name, Some(version), reason.clone())?;
                // The registry refuses to fail the active version (checked inside its
                // transaction, so an activation meanwhile is seen).
                match self.registry.set_state(
                    name,
                    version,
                    State::Failed,
                    Some(reason),
                    actor,
                    "verify",
                ) {
                    Ok(_) => {}
                    Err(RegistryError::WrongState { .. }) => {
                        tracing::error!(model = %record.id(), error = %e, "the serving model version's files no longer match its manifest");
                    }
                    Err(other) => return Err(other.into()),
                }
                Err(e.into())
            }
        }
    }

    /// Removes unreferenced blobs and staging leftovers.
    pub async fn gc(self: &Arc<Self>, actor: &str) -> Result<GcReport, ManageError> {
        let exclusive = Arc::clone(&self.store_use).write_owned().await;
        let me = Arc::clone(self);
        let report = tokio::task::spawn_blocking(move || {
            let _exclusive = exclusive;
            me.store.gc()
        })
        .await
        .map_err(worker)??;
        self.registry.note_action(
            actor,
            "gc",
            "*",
            None,
            format!(
                "{} blobs ({} bytes) and {} staging entries removed",
                report.blobs_removed, report.bytes_freed, report.staging_removed
            ),
        )?;
        Ok(report)
    }

    pub fn list(&self) -> Result<Vec<VersionRecord>, ManageError> {
        Ok(self.registry.list()?)
    }

    pub fn history(
        &self,
        name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ManageError> {
        Ok(self.registry.history(name, limit)?)
    }

    /// A version's manifest as installed.
    pub fn manifest(&self, name: &str, version: &str) -> Result<Manifest, ManageError> {
        Ok(self.store.open_version(name, version)?.manifest)
    }
}

fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Score => "scoring",
        Kind::Chat => "chat",
        Kind::Embedding => "embedding",
    }
}

fn describe(manifest: &Manifest, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{} (variant {v})", manifest.id()),
        None => manifest.id(),
    }
}
