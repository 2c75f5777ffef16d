//! The decision store in `/readyz`: while decisions are recorded, a `decisions`
//! component is not ready whenever the store cannot write (the recorded models'
//! requests are refused meanwhile), so the operator and a load balancer see it, and
//! ready again once a retry has written what waited.

use std::sync::Arc;
use std::time::Duration;

use super::store::DecisionStore;
use crate::monitoring::readiness::Readiness;

/// How often the store's state is looked at.
const EVERY: Duration = Duration::from_secs(1);

fn report(store: &DecisionStore, readiness: &Readiness) {
    match store.failure() {
        None => readiness.set("decisions", true, "recording"),
        Some(reason) => readiness.set(
            "decisions",
            false,
            format!(
                "decisions cannot be written, so recorded models' requests are refused: {reason}"
            ),
        ),
    }
}

pub fn watch(store: Arc<DecisionStore>, readiness: Arc<Readiness>) -> tokio::task::JoinHandle<()> {
    report(&store, &readiness);
    crate::periodic::every(EVERY, move || {
        let (store, readiness) = (Arc::clone(&store), Arc::clone(&readiness));
        Box::new(move || report(&store, &readiness))
    })
}
