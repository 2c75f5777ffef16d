//! The model versions being served, by name, for every engine kind: the last version
//! added under a name answers requests that name no version, and a version can be
//! asked for explicitly. Scoring (`score::ScoringModels`) and chat (`chat::ChatModels`)
//! are this registry over their loaded types.
//!
//! [`Live`] holds the current snapshot for the request path. A hot swap builds a new
//! snapshot and replaces the pointer in one atomic store: a request that already holds
//! a version's `Arc` finishes on it, and the old version unloads when the last such
//! request drops it (its engine thread then drains and exits). Scoring keeps the
//! replaced version reachable by explicit version until the next switch.
//!
//! Each loaded version keeps its request outcome counters
//! ([`Versioned::request_counters`]) so the request path counts without a lookup.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_models::Manifest;

use crate::metrics::{ModelRequests, VersionRequests, VersionRequestsCell};

/// A loaded model version: anything with a manifest and a place for its counters.
pub trait Versioned {
    fn manifest(&self) -> &Manifest;

    /// Where this version keeps its outcome counters once looked up.
    fn requests_cell(&self) -> &VersionRequestsCell;

    /// Panics contained on its engine thread (`engine_faults`).
    fn faults(&self) -> &crate::engine_faults::EngineFaults;

    /// This version's `coffer_model_requests_total` counters (looked up on first use).
    fn request_counters(&self, requests: &ModelRequests) -> &VersionRequests {
        let m = self.manifest();
        self.requests_cell().get(requests, &m.name, &m.version)
    }
}

/// The versions of one model name, and which one answers unversioned requests.
#[derive(Debug)]
pub struct ModelVersions<T> {
    pub versions: BTreeMap<String, Arc<T>>,
    pub default: String,
}

impl<T> Default for ModelVersions<T> {
    fn default() -> Self {
        Self {
            versions: BTreeMap::new(),
            default: String::new(),
        }
    }
}

/// Every served version of one engine kind.
#[derive(Debug)]
pub struct Served<T> {
    models: BTreeMap<String, ModelVersions<T>>,
}

impl<T> Default for Served<T> {
    fn default() -> Self {
        Self {
            models: BTreeMap::new(),
        }
    }
}

impl<T> Clone for Served<T> {
    fn clone(&self) -> Self {
        Self {
            models: self
                .models
                .iter()
                .map(|(name, m)| {
                    (
                        name.clone(),
                        ModelVersions {
                            versions: m.versions.clone(),
                            default: m.default.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl<T: Versioned> Served<T> {
    /// A copy of this snapshot in which `model` is its name's default version and, with
    /// `keep_previous`, the version it replaces stays reachable by explicit version
    /// (one generation; older ones go).
    pub fn with_default(&self, model: Arc<T>, keep_previous: bool) -> Served<T> {
        let mut next = self.clone();
        let m = model.manifest();
        let (name, version) = (m.name.clone(), m.version.clone());
        let mut versions = BTreeMap::new();
        if keep_previous {
            if let Some(prev) = self.resolve(&name, None) {
                if prev.manifest().version != version {
                    versions.insert(prev.manifest().version.clone(), prev);
                }
            }
        }
        versions.insert(version.clone(), model);
        next.models.insert(
            name,
            ModelVersions {
                versions,
                default: version,
            },
        );
        next
    }

    /// A copy without one non-default version (removed from the store).
    pub fn without_version(&self, name: &str, version: &str) -> Served<T> {
        let mut next = self.clone();
        if let Some(entry) = next.models.get_mut(name) {
            if entry.default != version {
                entry.versions.remove(version);
            }
        }
        next
    }

    /// Adds a loaded version, which becomes its name's default. A version already
    /// present is refused with its `name@version`.
    pub fn insert(&mut self, model: T) -> Result<(), String> {
        let m = model.manifest();
        let (name, version) = (m.name.clone(), m.version.clone());
        let entry = self.models.entry(name).or_default();
        if entry.versions.contains_key(&version) {
            return Err(model.manifest().id());
        }
        entry.default = version.clone();
        entry.versions.insert(version, Arc::new(model));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&ModelVersions<T>> {
        self.models.get(name)
    }

    /// The version asked for, or the default one.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Option<Arc<T>> {
        let entry = self.models.get(name)?;
        entry
            .versions
            .get(version.unwrap_or(&entry.default))
            .cloned()
    }

    /// A request's `model` as the OpenAI APIs name it: `name` (its default version) or
    /// `name@version`.
    pub fn resolve_model(&self, model: &str) -> Option<Arc<T>> {
        match model.split_once('@') {
            Some((name, version)) => self.resolve(name, Some(version)),
            None => self.resolve(model, None),
        }
    }

    /// Every served version, default versions as `name`, the others as `name@version`.
    pub fn list_models(&self) -> Vec<(String, Arc<T>)> {
        let mut out = Vec::new();
        for (name, entry) in self.iter() {
            for (version, loaded) in &entry.versions {
                let id = if *version == entry.default {
                    name.clone()
                } else {
                    format!("{name}@{version}")
                };
                out.push((id, Arc::clone(loaded)));
            }
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &ModelVersions<T>)> {
        self.models.iter()
    }

    pub fn len(&self) -> usize {
        self.models.values().map(|m| m.versions.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// The served snapshot of one engine kind, swapped atomically on activation.
#[derive(Debug)]
pub struct Live<T> {
    current: arc_swap::ArcSwap<Served<T>>,
    /// Serializes writers (activations); readers never wait.
    writer: std::sync::Mutex<()>,
}

impl<T: Versioned> Live<T> {
    pub fn new(served: Served<T>) -> Self {
        Self {
            current: arc_swap::ArcSwap::from_pointee(served),
            writer: std::sync::Mutex::new(()),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Served<T>> {
        self.current.load_full()
    }

    /// Makes `model` the default version of its name; returns the version it replaced.
    /// With `keep_previous` that version still answers requests that name it, until
    /// the next switch (cheap for scoring models; chat models do not keep theirs).
    pub fn swap_in(&self, model: Arc<T>, keep_previous: bool) -> Option<Arc<T>> {
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let name = model.manifest().name.clone();
        let previous = current.resolve(&name, None);
        self.current
            .store(Arc::new(current.with_default(model, keep_previous)));
        previous
    }

    /// Stops serving a non-default version (it was removed).
    pub fn drop_version(&self, name: &str, version: &str) {
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        self.current
            .store(Arc::new(current.without_version(name, version)));
    }
}
