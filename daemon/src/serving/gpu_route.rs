//! Which loaded version answers a request for a GPU model while a GPU is failed: its
//! fallback policy decides (docs/gpu.md). `cpu-variant` answers with the named CPU
//! variant, `shed` with the same version on the CPU under a lower concurrency (the
//! permit is held as long as the answer), `fail` refuses. Scoring and chat both route
//! through [`route`], and its refusals read the same on both APIs.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::ServeError;
use crate::serving::gpu_fallback::{GpuFallback, Route};

/// The response header that names the fallback policy in force, when one applied.
pub const FALLBACK_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-coffer-gpu-fallback");

/// The version that answers, and what the fallback policy did.
#[derive(Debug)]
pub struct Routed<T> {
    pub loaded: Arc<T>,
    /// `cpu-variant` or `shed` when a fallback policy applied.
    pub fallback: Option<&'static str>,
    /// Held while the answer is produced (policy `shed`).
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Routes a request for `model` (whose served version is `loaded`): `variant` resolves
/// the CPU variant a `cpu-variant` policy names.
pub fn route<T>(
    gpu: &GpuFallback,
    model: &str,
    loaded: Arc<T>,
    variant: impl FnOnce(&str) -> Option<Arc<T>>,
) -> Result<Routed<T>, ServeError> {
    match gpu.route(model) {
        Route::Normal => Ok(Routed {
            loaded,
            fallback: None,
            permit: None,
        }),
        Route::Variant(name) => match variant(&name) {
            Some(loaded) => Ok(Routed {
                loaded,
                fallback: Some("cpu-variant"),
                permit: None,
            }),
            None => Err(ServeError::VariantMissing {
                model: model.to_string(),
                variant: name,
            }),
        },
        Route::Shed(permit) => Ok(Routed {
            loaded,
            fallback: Some("shed"),
            permit: Some(permit),
        }),
        Route::Refuse {
            reason,
            shedding: true,
        } => Err(ServeError::GpuShedding {
            model: model.to_string(),
            reason,
        }),
        Route::Refuse {
            reason,
            shedding: false,
        } => Err(ServeError::GpuUnavailable {
            model: model.to_string(),
            reason,
        }),
    }
}
