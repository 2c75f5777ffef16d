//! Loading a version's engine (the chosen variant) and swapping it into the served
//! snapshot of its kind, and what is served now: the list for telemetry, the drift
//! trackers, the `models` readiness line.

use std::sync::Arc;

use coffer_models::{Kind, VersionDir};

use super::{EngineLoadError, ManageError, ModelManager, describe};
use crate::chat::LoadedChat;
use crate::embedding::LoadedEmbedding;
use crate::score::LoadedModel;

/// One loaded engine of any kind, before it is swapped in.
pub(super) enum Loaded {
    Score(LoadedModel),
    Chat(LoadedChat),
    Embedding(LoadedEmbedding),
}

impl ModelManager {
    pub(super) fn is_serving(&self, name: &str, version: &str) -> bool {
        self.scoring.load().resolve(name, Some(version)).is_some()
            || self.chat.load().resolve(name, Some(version)).is_some()
            || self.embedding.load().resolve(name, Some(version)).is_some()
    }

    /// Loads a version's engine (the chosen variant), off the async runtime.
    pub(super) fn load_blocking(
        &self,
        dir: VersionDir,
        variant: Option<&str>,
    ) -> Result<Loaded, ManageError> {
        let id = dir.manifest.id();
        let load_err = |source: EngineLoadError| ManageError::Load {
            id: id.clone(),
            source: Box::new(source),
        };
        match dir.manifest.kind {
            Kind::Score => crate::score::start_version(
                dir,
                variant,
                &self.load_context.score_metrics,
                self.load_context.score_queue_capacity,
                self.load_context.drift.as_ref(),
                &self.load_context.faults,
            )
            .map(Loaded::Score)
            .map_err(|e| load_err(e.into())),
            Kind::Chat => crate::chat::start_version(
                &dir,
                variant,
                &self.load_context.chat_settings,
                &self.load_context.chat_metrics,
                &self.load_context.faults,
                crate::chat::placement::GpuSite {
                    health: &self.gpu,
                    named: self
                        .load_context
                        .gpu_devices
                        .get(&dir.manifest.name)
                        .copied(),
                    simulated: self.load_context.gpu_simulated,
                    cpu_variant_of: self
                        .load_context
                        .cpu_variants
                        .get(&dir.manifest.name)
                        .map(String::as_str),
                },
            )
            .map(Loaded::Chat)
            .map_err(|e| load_err(e.into())),
            Kind::Embedding => crate::embedding::start_version(
                &dir,
                variant,
                &self.load_context.embedding_settings,
                &self.load_context.faults,
            )
            .map(Loaded::Embedding)
            .map_err(|e| load_err(e.into())),
        }
    }

    pub(super) fn swap_in(&self, loaded: Loaded) {
        match loaded {
            Loaded::Score(m) => {
                // Clients that pin the replaced version keep being answered by it
                // until the next switch (a scoring model is small).
                let previous = self.scoring.swap_in(Arc::new(m), true);
                // The old version's last counts are saved now, not lost with it.
                if let (Some(store), Some(tracker)) = (
                    &self.load_context.drift,
                    previous.as_ref().and_then(|p| p.drift.clone()),
                ) {
                    store.save_all(&[tracker]);
                }
            }
            Loaded::Chat(m) => {
                self.chat.swap_in(Arc::new(m), false);
            }
            Loaded::Embedding(m) => {
                self.embedding.swap_in(Arc::new(m), false);
            }
        }
        self.publish_readiness();
    }

    /// Every served (model, version, engine) now.
    pub fn served(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<(String, String, String)> = Vec::new();
        for (name, versions) in self.scoring.load().iter() {
            for (version, m) in &versions.versions {
                out.push((
                    name.clone(),
                    version.clone(),
                    m.engine.platform().to_string(),
                ));
            }
        }
        for (name, versions) in self.chat.load().iter() {
            for version in versions.versions.keys() {
                out.push((name.clone(), version.clone(), "llama.cpp".to_string()));
            }
        }
        for (name, versions) in self.embedding.load().iter() {
            for version in versions.versions.keys() {
                out.push((name.clone(), version.clone(), "llama.cpp".to_string()));
            }
        }
        out
    }

    /// The drift trackers of the served scoring versions.
    pub fn drift_trackers(&self) -> Vec<Arc<crate::monitoring::drift::DriftTracker>> {
        let mut out = Vec::new();
        for (_, versions) in self.scoring.load().iter() {
            out.extend(versions.versions.values().filter_map(|m| m.drift.clone()));
        }
        out
    }

    /// The `models` readiness line: every served version and its variant.
    pub fn publish_readiness(&self) {
        let mut served: Vec<String> = Vec::new();
        for (_, versions) in self.scoring.load().iter() {
            for m in versions.versions.values() {
                served.push(describe(&m.manifest, m.variant.as_deref()));
            }
        }
        for (_, versions) in self.chat.load().iter() {
            for m in versions.versions.values() {
                served.push(describe(&m.manifest, m.variant.as_deref()));
            }
        }
        for (_, versions) in self.embedding.load().iter() {
            for m in versions.versions.values() {
                served.push(describe(&m.manifest, m.variant.as_deref()));
            }
        }
        let detail = if served.is_empty() {
            "no model version active".to_string()
        } else {
            format!("serving {}", served.join(", "))
        };
        self.readiness.set("models", true, detail);
    }
}
