//! Lifecycle metrics: which version and variant of each model serves
//! (`coffer_model_active_info`, 1 for the serving one) and activations by kind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActiveLabels {
    model: String,
    version: String,
    variant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    model: String,
    action: String,
}

/// The lifecycle's metric families.
#[derive(Debug, Clone)]
pub struct LifecycleMetrics {
    active: Family<ActiveLabels, Gauge>,
    activations: Family<ActionLabels, Counter>,
    /// The series currently at 1, per model name, so that a switch can drop it.
    current: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, ActiveLabels>>>,
}

impl LifecycleMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            active: Family::default(),
            activations: Family::default(),
            current: Default::default(),
        };
        registry.register(
            "model_active_info",
            "1 for the model version and variant that serves each model name",
            m.active.clone(),
        );
        registry.register(
            "model_activations",
            "Activations and rollbacks that switched the served version",
            m.activations.clone(),
        );
        m
    }

    /// Marks a version serving; the series of the version it replaces goes away.
    pub fn serving(&self, model: &str, version: &str, variant: Option<&str>) {
        let labels = ActiveLabels {
            model: model.into(),
            version: version.into(),
            variant: variant.unwrap_or("default").into(),
        };
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = current.insert(model.to_string(), labels.clone()) {
            if old != labels {
                self.active.remove(&old);
            }
        }
        self.active.get_or_create(&labels).set(1);
    }

    /// Records a switch by `action` (`activate`, `rollback`).
    pub fn switched(&self, model: &str, version: &str, variant: Option<&str>, action: &str) {
        self.serving(model, version, variant);
        self.activations
            .get_or_create(&ActionLabels {
                model: model.into(),
                action: action.into(),
            })
            .inc();
    }
}
