//! Readiness: each component (listener, state, TLS, models, later GPU) reports whether it
//! is ready and why not. `/readyz` shows the whole map and is 503 unless all are ready.

use std::collections::BTreeMap;
use std::sync::RwLock;

/// One component's state as `/readyz` (and the admin health report) shows it. Never
/// carries secrets.
pub use coffer_admin_api::health::ComponentState;

/// The readiness map shared by the server, the lifecycle and the engines.
#[derive(Debug, Default)]
pub struct Readiness {
    components: RwLock<BTreeMap<&'static str, ComponentState>>,
}

impl Readiness {
    pub fn set(&self, component: &'static str, ready: bool, detail: impl Into<String>) {
        self.components
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                component,
                ComponentState {
                    ready,
                    detail: detail.into(),
                },
            );
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, ComponentState> {
        self.components
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ready only when at least one component reported and all are ready.
    pub fn is_ready(&self) -> bool {
        let map = self.components.read().unwrap_or_else(|e| e.into_inner());
        !map.is_empty() && map.values().all(|c| c.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_component_is() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.set("listener", true, "bound");
        r.set("state", false, "opening");
        assert!(!r.is_ready());
        r.set("state", true, "open");
        assert!(r.is_ready());
    }
}
