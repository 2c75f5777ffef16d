//! The serving layer between the HTTP handlers and the engines: policy that every API
//! applies the same way lives here once, so the Open Inference Protocol and the OpenAI
//! handlers cannot drift apart. A handler parses and validates its API's request, then
//! asks [`Serving`] which loaded version answers ([`Serving::route_scoring`],
//! [`Serving::route_chat`]: the request's outcome counters, the GPU fallback policies
//! ([`gpu_fallback`], [`gpu_route`]), the version that answered) and hands the work to it
//! ([`Serving::score`]: shadow sampling, the batcher, telemetry; [`Serving::submit_chat`]).
//! Everything it learns about the request goes into the request's
//! [`RequestContext`]; every refusal is a [`ServeError`], which the API layer maps to
//! its statuses.

pub mod context;
mod error;
pub mod gpu_fallback;
pub mod gpu_route;
mod scoring;

use std::sync::Arc;

pub use context::RequestContext;
pub use error::ServeError;
pub use gpu_route::{FALLBACK_HEADER, Routed};

use crate::chat::job::ChatJob;
use crate::chat::{LoadedChat, SubmitError};
use crate::lifecycle::shadow::ShadowSet;
use crate::metrics::Metrics;
use crate::score::LoadedModel;
use crate::served::{Live, Versioned};
use crate::serving::gpu_fallback::GpuFallback;
use crate::telemetry::Telemetry;

/// What the serving layer routes over: the served versions of each engine kind, the
/// candidates in shadow, the GPU fallback decisions, and where outcomes are counted.
#[derive(Debug)]
pub struct Serving {
    /// The served scoring versions, swapped atomically on activation.
    pub scoring: Arc<Live<LoadedModel>>,
    pub chat: Arc<Live<LoadedChat>>,
    /// Candidate scoring versions in shadow, by model name.
    pub shadows: Arc<ShadowSet>,
    /// Fallback decisions for GPU models while a GPU is failed.
    pub gpu: Arc<GpuFallback>,
    pub telemetry: Arc<Telemetry>,
    pub metrics: Arc<Metrics>,
}

impl Serving {
    /// Which version answers a scoring request for `requested` (the version the request
    /// named, or its model's default). From here on the request counts under
    /// `requested`, whichever version answers.
    pub fn route_scoring(
        &self,
        ctx: &RequestContext,
        requested: Arc<LoadedModel>,
    ) -> Result<Routed<LoadedModel>, ServeError> {
        self.route(ctx, requested, |variant| {
            self.scoring.load().resolve(variant, None)
        })
    }

    /// Which version answers a chat request for `requested`, as [`Self::route_scoring`].
    pub fn route_chat(
        &self,
        ctx: &RequestContext,
        requested: Arc<LoadedChat>,
    ) -> Result<Routed<LoadedChat>, ServeError> {
        self.route(ctx, requested, |variant| {
            self.chat.load().resolve_chat(variant)
        })
    }

    fn route<T: Versioned>(
        &self,
        ctx: &RequestContext,
        requested: Arc<T>,
        variant: impl FnOnce(&str) -> Option<Arc<T>>,
    ) -> Result<Routed<T>, ServeError> {
        ctx.set_version(requested.request_counters(&self.metrics.model_requests));
        let name = requested.manifest().name.clone();
        let routed = gpu_route::route(&self.gpu, &name, requested, variant)?;
        ctx.set_answered_by(&routed.loaded.manifest().id());
        Ok(routed)
    }

    /// Queues a chat job on the version that answers. `model` is the name the request
    /// used, for the refusal.
    pub fn submit_chat(
        &self,
        loaded: &LoadedChat,
        model: &str,
        job: ChatJob,
    ) -> Result<(), ServeError> {
        loaded.engine.submit(job).map_err(|e| match e {
            SubmitError::QueueFull => ServeError::AtCapacity {
                model: model.to_string(),
            },
            SubmitError::Stopped => ServeError::EngineGone,
        })
    }
}
