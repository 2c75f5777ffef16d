//! `POST /v1/embeddings` (scope `embed`), as OpenAI defines it: the request is checked
//! ([`request`]), tokenized off the async workers, queued on the model's engine (which
//! batches it with other requests' inputs) and answered with one vector per input, in
//! input order, as floats or as base64 of little-endian float32, with `usage`. Inputs
//! never appear in a log line, the audit record or telemetry.

mod request;

pub use request::parse as parse_request;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;

use super::{ApiError, AppState, ErrorKind, Family, read_limited};
use crate::embedding::{EmbedFailure, EmbedJob};
use crate::serving::{self, RequestContext, Routed};
use request::{Inputs, bad};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/embeddings", post(embeddings))
}

async fn embeddings(State(state): State<Arc<AppState>>, req: Request) -> Response {
    run(state, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// One vector of the answer, serialized straight from the engine's floats (shortest
/// f32 text), not through a JSON value per number.
#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

fn internal() -> ApiError {
    tracing::error!("embedding engine ended a job without an answer");
    ApiError::new(ErrorKind::Internal, "", Family::OpenAi)
}

fn failure(f: EmbedFailure) -> ApiError {
    match f {
        EmbedFailure::Empty { .. } => bad("input", f.to_string()).with_code("empty_input"),
        EmbedFailure::TooLong { .. } => bad("input", f.to_string()).with_code("input_too_long"),
        EmbedFailure::UnknownToken { .. } => bad("input", f.to_string()).with_code("invalid_token"),
        EmbedFailure::Engine(e) => {
            tracing::error!(error = %e, "embedding engine failed");
            ApiError::new(ErrorKind::Internal, "", Family::OpenAi)
        }
    }
}

async fn run(state: Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let ctx = RequestContext::of(&req);
    let body = read_limited(req.into_body(), state.limits.max_body_bytes, Family::OpenAi).await?;
    let request = request::parse(&body)?;
    let requested = state
        .serving
        .embedding
        .load()
        .resolve_model(&request.model)
        .ok_or_else(|| ApiError::model_not_found("embedding model", &request.model))?;
    let serve_error = |e| ApiError::serving(e, state.limits.retry_after, Family::OpenAi);
    let Routed {
        loaded,
        fallback,
        permit: _shed_permit,
    } = state
        .serving
        .route_embedding(&ctx, requested)
        .map_err(serve_error)?;
    let width = loaded.engine.dimensions();
    if let Some(d) = request.dimensions {
        if d != width as u64 {
            return Err(bad(
                "dimensions",
                format!(
                    "model '{}' gives vectors of {width} dimensions only",
                    request.model
                ),
            )
            .with_code("unsupported_dimensions"));
        }
    }
    // Tokenizing a large request takes a while: on a blocking thread.
    let for_tokens = Arc::clone(&loaded);
    let tokens = tokio::task::spawn_blocking(move || match request.inputs {
        Inputs::Texts(texts) => for_tokens.engine.tokenize(&texts),
        Inputs::Tokens(ids) => for_tokens.engine.check_tokens(ids),
    })
    .await
    .map_err(|_| internal())?
    .map_err(failure)?;
    let prompt_tokens: usize = tokens.iter().map(Vec::len).sum();
    let (reply, answer) = tokio::sync::oneshot::channel();
    state
        .serving
        .submit_embedding(
            &loaded,
            &request.model,
            EmbedJob {
                inputs: tokens,
                reply,
            },
        )
        .map_err(serve_error)?;
    let vectors = answer.await.map_err(|_| internal())?.map_err(failure)?;
    let data: Vec<Item<'_>> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: if request.base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Floats(v)
            },
        })
        .collect();
    let mut response = Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    }))
    .into_response();
    serving::mark_answer(response.headers_mut(), &ctx, fallback);
    Ok(response)
}
