//! Why the serving layer did not serve a request: one message per case, whichever API
//! asked. `api::error` maps each case to that API's status and error shape.

/// Why a request was not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// Policy `shed`, and its lower concurrency is taken.
    #[error(
        "model '{model}' runs on the CPU at reduced concurrency while its GPU is unavailable ({reason}); retry after the time in Retry-After"
    )]
    GpuShedding { model: String, reason: String },
    /// Policy `fail`.
    #[error("model '{model}' needs a GPU and none is healthy ({reason})")]
    GpuUnavailable { model: String, reason: String },
    /// Policy `cpu-variant`, and the variant is not served (start-up checks make this
    /// an internal error: the variant was removed under a running policy).
    #[error("model '{model}' falls back to '{variant}', which is not served")]
    VariantMissing { model: String, variant: String },
    /// The version's queue is full.
    #[error("model '{model}' is at capacity; retry after the time in Retry-After")]
    AtCapacity { model: String },
    /// The engine ended the work without an answer (logged; the client sees an internal
    /// error).
    #[error("the engine ended the request without an answer")]
    EngineGone,
}
