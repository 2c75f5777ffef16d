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
use crate::embedding::{EmbedJob, LoadedEmbedding};
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
    pub embedding: Arc<Live<LoadedEmbedding>>,
    /// Candidate scoring versions in shadow, by model name.
    pub shadows: Arc<ShadowSet>,
    /// Fallback decisions for GPU models while a GPU is failed.
    pub gpu: Arc<GpuFallback>,
    pub telemetry: Arc<Telemetry>,
    pub metrics: Arc<Metrics>,
    /// Marked by every scoring and embedding request: chat decodes on fewer threads
    /// meanwhile.
    pub cores: Arc<coffer_engine::CoreShare>,
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
            self.chat.load().resolve_model(variant)
        })
    }

    /// Which version answers an embeddings request for `requested`.
    pub fn route_embedding(
        &self,
        ctx: &RequestContext,
        requested: Arc<LoadedEmbedding>,
    ) -> Result<Routed<LoadedEmbedding>, ServeError> {
        self.route(ctx, requested, |variant| {
            self.embedding.load().resolve_model(variant)
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
        ctx.set_answered_by(routed.loaded.manifest().id());
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
        loaded.engine.submit(job).map_err(|e| refused(e, model))
    }

    /// Queues an embedding job on the version that answers, as [`Self::submit_chat`].
    pub fn submit_embedding(
        &self,
        loaded: &LoadedEmbedding,
        model: &str,
        job: EmbedJob,
    ) -> Result<(), ServeError> {
        // The encoder's threads and chat's would oversubscribe the cores.
        self.cores.scoring();
        loaded.engine.submit(job).map_err(|e| refused(e, model))
    }
}

/// A queue's refusal, in the serving layer's terms.
fn refused(e: SubmitError, model: &str) -> ServeError {
    match e {
        SubmitError::QueueFull => ServeError::AtCapacity {
            model: model.to_string(),
        },
        SubmitError::Stopped => ServeError::EngineGone,
    }
}

/// Marks an answer with the version that gave it (`x-coffer-served-by`) and the GPU
/// fallback policy in force, if one applied.
pub fn mark_answer(
    headers: &mut http::HeaderMap,
    ctx: &RequestContext,
    fallback: Option<&'static str>,
) {
    if let Some(v) = ctx
        .answered_by()
        .and_then(|id| http::HeaderValue::from_str(id).ok())
    {
        headers.insert(SERVED_BY, v);
    }
    if let Some(policy) = fallback {
        headers.insert(FALLBACK_HEADER, http::HeaderValue::from_static(policy));
    }
}

/// The response header that names the model version that answered (`name@version`).
pub const SERVED_BY: http::HeaderName = http::HeaderName::from_static("x-coffer-served-by");
