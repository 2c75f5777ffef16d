//! What a request for a GPU model gets while a GPU is failed, per the model's policy
//! (`gpu.models.NAME.policy`): `fail` refuses with 503 `gpu_unavailable` and the reason,
//! `cpu-variant` serves another loaded model with the same inputs and outputs (a CPU
//! variant or distilled student), `shed` serves the same model on the CPU at a lower
//! concurrency and refuses beyond it with 503 `gpu_shedding`. Never silent: responses
//! name the version that answered and the policy in force (headers), the
//! `coffer_gpu_fallback_requests_total` counter counts each outcome, and `/readyz` says
//! what GPU models get meanwhile. Models not listed, and hosts without a GPU, are
//! served as usual.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::FallbackPolicy;
use crate::monitoring::gpu::GpuHealth;
use crate::monitoring::gpu::metrics::{FallbackLabels, GpuMetrics};
use crate::score::ScoringModels;

/// How to serve one request.
#[derive(Debug)]
pub enum Route {
    /// No fallback applies.
    Normal,
    /// Serve this model instead (policy `cpu-variant`).
    Variant(String),
    /// Serve the same model on the CPU while holding this permit (policy `shed`).
    Shed(OwnedSemaphorePermit),
    /// Refuse: 503 with this reason (`shedding`: the shed limit, otherwise `fail`).
    Refuse { reason: String, shedding: bool },
}

#[derive(Debug)]
struct Placement {
    policy: FallbackPolicy,
    shed: Option<Arc<Semaphore>>,
}

/// The per-model fallback decisions.
#[derive(Debug)]
pub struct GpuFallback {
    health: Arc<GpuHealth>,
    models: BTreeMap<String, Placement>,
    metrics: GpuMetrics,
}

/// Why the configured policies do not fit the loaded models.
#[derive(Debug, thiserror::Error)]
#[error("gpu.models.{model}: {detail}")]
pub struct PolicyError {
    pub model: String,
    pub detail: String,
}

/// Checks every GPU model and CPU variant against what is loaded.
pub fn check(
    policies: &BTreeMap<String, FallbackPolicy>,
    scoring: &ScoringModels,
    chat: &crate::chat::ChatModels,
) -> Result<(), PolicyError> {
    for (name, policy) in policies {
        let err = |detail: String| PolicyError {
            model: name.clone(),
            detail,
        };
        if chat.resolve_model(name).is_some() {
            match policy {
                FallbackPolicy::CpuVariant(variant) if chat.resolve_model(variant).is_none() => {
                    return Err(err(format!(
                        "cpu_variant {variant:?} is not a loaded chat model"
                    )));
                }
                _ => continue,
            }
        }
        let Some(model) = scoring.resolve(name, None) else {
            return Err(err("no such model is loaded".into()));
        };
        let FallbackPolicy::CpuVariant(variant) = policy else {
            continue;
        };
        if variant == name {
            return Err(err("cpu_variant names the model itself".into()));
        }
        let Some(other) = scoring.resolve(variant, None) else {
            return Err(err(format!(
                "cpu_variant {variant:?} is not a loaded model"
            )));
        };
        let same = |a: &[coffer_models::TensorSpec], b: &[coffer_models::TensorSpec]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.name == y.name && x.datatype == y.datatype && x.shape == y.shape
                })
        };
        if !same(model.engine.inputs(), other.engine.inputs()) {
            return Err(err(format!(
                "cpu_variant {variant:?} takes other inputs than {name:?}; clients would break"
            )));
        }
        if !same(model.engine.outputs(), other.engine.outputs()) {
            return Err(err(format!(
                "cpu_variant {variant:?} gives other outputs than {name:?}; clients would break"
            )));
        }
    }
    Ok(())
}

impl GpuFallback {
    pub fn new(
        health: Arc<GpuHealth>,
        policies: &BTreeMap<String, FallbackPolicy>,
        metrics: GpuMetrics,
    ) -> Self {
        let models = policies
            .iter()
            .map(|(name, policy)| {
                let shed = match policy {
                    FallbackPolicy::Shed { max_in_flight } => {
                        Some(Arc::new(Semaphore::new(*max_in_flight)))
                    }
                    _ => None,
                };
                (
                    name.clone(),
                    Placement {
                        policy: policy.clone(),
                        shed,
                    },
                )
            })
            .collect();
        Self {
            health,
            models,
            metrics,
        }
    }

    /// "credit-mlp: cpu-variant credit-lr, …" for `/readyz`.
    pub fn summary(policies: &BTreeMap<String, FallbackPolicy>) -> String {
        policies
            .iter()
            .map(|(name, p)| match p {
                FallbackPolicy::Fail => format!("{name}: refused (fail)"),
                FallbackPolicy::CpuVariant(v) => format!("{name}: served by {v} (cpu-variant)"),
                FallbackPolicy::Shed { max_in_flight } => {
                    format!("{name}: on CPU, at most {max_in_flight} at once (shed)")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn count(&self, model: &str, policy: &FallbackPolicy, outcome: &'static str, served_by: &str) {
        self.metrics
            .fallbacks
            .get_or_create(&FallbackLabels {
                model: model.to_string(),
                policy: policy.as_str(),
                outcome,
                served_by: served_by.to_string(),
            })
            .inc();
    }

    /// Decides one request for `model`.
    pub fn route(&self, model: &str) -> Route {
        let Some(placement) = self.models.get(model) else {
            return Route::Normal;
        };
        let Some(reason) = self.health.failure_for(model) else {
            return Route::Normal;
        };
        match &placement.policy {
            FallbackPolicy::Fail => {
                self.count(model, &placement.policy, "refused", "none");
                Route::Refuse {
                    reason,
                    shedding: false,
                }
            }
            FallbackPolicy::CpuVariant(variant) => {
                self.count(model, &placement.policy, "served", variant);
                Route::Variant(variant.clone())
            }
            FallbackPolicy::Shed { .. } => {
                let permit = placement
                    .shed
                    .as_ref()
                    .and_then(|s| Arc::clone(s).try_acquire_owned().ok());
                match permit {
                    Some(p) => {
                        self.count(model, &placement.policy, "served", model);
                        Route::Shed(p)
                    }
                    None => {
                        self.count(model, &placement.policy, "shed", "none");
                        Route::Refuse {
                            reason,
                            shedding: true,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::gpu::health::Level;
    use crate::monitoring::gpu::probe::DeviceInfo;
    use crate::monitoring::gpu::{GpuStatus, Presence};

    fn health(level: Level) -> Arc<GpuHealth> {
        GpuHealth::new(Presence::Present(vec![GpuStatus {
            device: DeviceInfo {
                index: 0,
                uuid: "GPU-x".into(),
                name: "H200".into(),
            },
            level,
            reason: "critical XID 79".into(),
            memory_free_bytes: None,
            sampled: true,
            samples: 1,
        }]))
    }

    fn policies() -> BTreeMap<String, FallbackPolicy> {
        BTreeMap::from([
            ("a".to_string(), FallbackPolicy::Fail),
            ("b".to_string(), FallbackPolicy::CpuVariant("b-cpu".into())),
            ("c".to_string(), FallbackPolicy::Shed { max_in_flight: 2 }),
        ])
    }

    #[test]
    fn healthy_degraded_and_absent_gpus_change_nothing() {
        for h in [
            health(Level::Healthy),
            health(Level::Degraded),
            GpuHealth::new(Presence::Absent("no driver".into())),
        ] {
            let gate = GpuFallback::new(h, &policies(), GpuMetrics::default());
            for m in ["a", "b", "c", "other"] {
                assert!(matches!(gate.route(m), Route::Normal), "{m}");
            }
        }
    }

    #[test]
    fn a_failed_gpu_applies_each_policy() {
        let gate = GpuFallback::new(health(Level::Failed), &policies(), GpuMetrics::default());
        match gate.route("a") {
            Route::Refuse { reason, shedding } => {
                assert!(reason.contains("XID 79"), "{reason}");
                assert!(!shedding);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(gate.route("b"), Route::Variant(v) if v == "b-cpu"));
        let first = gate.route("c");
        let second = gate.route("c");
        assert!(matches!(first, Route::Shed(_)));
        assert!(matches!(second, Route::Shed(_)));
        assert!(matches!(
            gate.route("c"),
            Route::Refuse { shedding: true, .. }
        ));
        drop(first);
        assert!(matches!(gate.route("c"), Route::Shed(_)));
        assert!(matches!(gate.route("other"), Route::Normal));
    }

    #[test]
    fn one_gpus_failure_sends_only_the_models_on_it_to_their_policy() {
        let gpu = |index, level| GpuStatus {
            device: DeviceInfo {
                index,
                uuid: format!("GPU-{index}"),
                name: "L4".into(),
            },
            level,
            reason: "fallen off the bus".into(),
            memory_free_bytes: Some(1 << 30),
            sampled: true,
            samples: 3,
        };
        let h = GpuHealth::new(Presence::Present(vec![
            gpu(0, Level::Healthy),
            gpu(1, Level::Failed),
        ]));
        use crate::monitoring::gpu::placement::Device;
        h.place("a", Device::Gpu(0));
        h.place("b", Device::Gpu(1));
        h.place("c", Device::Cpu);
        let gate = GpuFallback::new(Arc::clone(&h), &policies(), GpuMetrics::default());
        assert!(matches!(gate.route("a"), Route::Normal));
        assert!(matches!(gate.route("b"), Route::Variant(v) if v == "b-cpu"));
        assert!(matches!(gate.route("c"), Route::Normal), "on the CPU");
        // The failed GPU is not offered for placement; the healthy one is.
        assert_eq!(h.usable(), vec![(0, 1 << 30)]);
        h.reserve(0, 1 << 20);
        assert_eq!(h.usable(), vec![(0, (1 << 30) - (1 << 20))]);
        // Unplaced models follow any GPU's failure, as before placements existed.
        let unplaced = GpuFallback::new(
            GpuHealth::new(Presence::Present(vec![
                gpu(0, Level::Healthy),
                gpu(1, Level::Failed),
            ])),
            &policies(),
            GpuMetrics::default(),
        );
        assert!(matches!(unplaced.route("a"), Route::Refuse { .. }));
    }
}
