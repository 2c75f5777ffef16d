//! The Open Inference Protocol (KServe v2) routes for scoring: health, model metadata and
//! readiness, infer (with the encoded input, or the raw attributes of a model with a
//! feature specification), and Triton's repository index. All need the `score` scope.

mod attributes;
mod data;
mod explanation_json;
mod json;
mod request;
mod response;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, ErrorKind, Family, read_limited};
use crate::decisions as decide;
use crate::score::LoadedModel;
use crate::serving::{self, RequestContext, Routed};
use request::bad;

/// The scoring routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/explain", post(explain))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(version_metadata),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(version_ready),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer_version),
        )
        .route(
            "/v2/models/{model}/versions/{version}/explain",
            post(explain_version),
        )
        .route("/v2/repository/index", post(repository_index))
}

/// Parses and validates an infer request body as the handler does (for fuzzing).
pub fn parse_and_validate(
    body: &bytes::Bytes,
    header_length: Option<usize>,
    specs: &[coffer_models::TensorSpec],
    max_batch: usize,
) -> Result<(Vec<crate::tensor::Tensor>, usize), ApiError> {
    let (request, binary) = request::parse(body, header_length)?;
    request::validate(&request, &binary, specs, max_batch)
}

/// Parses a request and reads it as raw attributes for `encoder` (for fuzzing).
pub fn parse_and_encode_attributes(
    body: &bytes::Bytes,
    header_length: Option<usize>,
    encoder: &coffer_score::AttributeEncoder,
    max_batch: usize,
) -> Result<(Vec<crate::tensor::Tensor>, usize), ApiError> {
    let (request, binary) = request::parse(body, header_length)?;
    let (tensors, rows, _) = attributes::encode(&request, &binary, encoder, max_batch, true)?;
    Ok((tensors, rows))
}

fn not_found(model: &str, version: Option<&str>) -> ApiError {
    let (code, message) = match version {
        Some(v) => (
            "version_not_found",
            format!("model '{model}' has no version '{v}'"),
        ),
        None => ("model_not_found", format!("no model named '{model}'")),
    };
    ApiError::new(ErrorKind::NotFound, message, Family::InferenceProtocol).with_code(code)
}

fn find(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<Arc<LoadedModel>, ApiError> {
    let served = state.serving.scoring.load();
    let versions = served.get(model).ok_or_else(|| not_found(model, None))?;
    versions
        .versions
        .get(version.unwrap_or(&versions.default))
        .cloned()
        .ok_or_else(|| not_found(model, version))
}

async fn live() -> Response {
    Json(json!({ "live": true })).into_response()
}

/// The protocol answers readiness with the status code: 200 ready, 4xx not.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let (ready, _) = super::routes::readiness(&state);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

async fn model_metadata(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    match find(&state, &model, None) {
        Ok(loaded) => {
            let versions = state
                .serving
                .scoring
                .load()
                .get(&model)
                .map(|m| m.versions.keys().cloned().collect())
                .unwrap_or_default();
            Json(response::metadata(&loaded, versions)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn version_metadata(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match find(&state, &model, Some(&version)) {
        Ok(loaded) => Json(response::metadata(&loaded, vec![version])).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A served version is ready unless its engine keeps panicking (then 400, as the
/// protocol answers "not ready" with a 4xx).
fn ready_answer(ready: bool, body: serde_json::Value) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, Json(body)).into_response()
}

async fn model_ready(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    match find(&state, &model, None) {
        Ok(loaded) => {
            let ready = !loaded.faults.failing();
            ready_answer(ready, json!({ "name": model, "ready": ready }))
        }
        Err(e) => e.into_response(),
    }
}

async fn version_ready(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match find(&state, &model, Some(&version)) {
        Ok(loaded) => {
            let ready = !loaded.faults.failing();
            ready_answer(
                ready,
                json!({ "name": model, "version": version, "ready": ready }),
            )
        }
        Err(e) => e.into_response(),
    }
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    req: Request<Body>,
) -> Response {
    run_infer(state, model, None, req, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    run_infer(state, model, Some(version), req, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// KServe's explain verb: an infer request whose answer always carries the explanation.
async fn explain(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    req: Request<Body>,
) -> Response {
    run_infer(state, model, None, req, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn explain_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    run_infer(state, model, Some(version), req, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Whether the request asks for an explanation (`parameters: {"explain": true}`).
fn asks_explanation(request: &request::InferRequest) -> Result<bool, ApiError> {
    match request.parameters.as_ref().and_then(|p| p.get("explain")) {
        None => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(
            "invalid_request",
            "parameters.explain must be true or false",
        )),
    }
}

async fn run_infer(
    state: Arc<AppState>,
    model: String,
    version: Option<String>,
    req: Request<Body>,
    force_explain: bool,
) -> Result<Response, ApiError> {
    let ctx = RequestContext::of(&req);
    let requested = find(&state, &model, version.as_deref())?;
    let Routed {
        loaded,
        fallback,
        permit: _shed_permit,
    } = state
        .serving
        .route_scoring(&ctx, requested)
        .map_err(|e| serve_error(&state, e))?;
    let header_length = match req.headers().get("inference-header-content-length") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    bad(
                        "invalid_json",
                        "Inference-Header-Content-Length is not a number",
                    )
                })?,
        ),
        None => None,
    };
    let body = read_limited(
        req.into_body(),
        state.limits.max_body_bytes,
        Family::InferenceProtocol,
    )
    .await?;
    let (request, binary) = request::parse(&body, header_length)?;
    let max_batch = loaded.manifest.serving.max_batch;
    let decisions = state
        .decisions
        .clone()
        .filter(|d| d.records(&loaded.manifest.name));
    let (inputs, rows, raw) = match &loaded.attributes {
        Some(encoder) if attributes::requested(&request, loaded.engine.inputs()) => {
            attributes::encode(&request, &binary, encoder, max_batch, decisions.is_some())?
        }
        _ => {
            let (inputs, rows) =
                request::validate(&request, &binary, loaded.engine.inputs(), max_batch)?;
            (inputs, rows, None)
        }
    };
    let explainer = if force_explain || asks_explanation(&request)? {
        Some(loaded.explainer.clone().ok_or_else(|| {
            bad(
                "explain_unsupported",
                format!(
                    "{} has no explanation method ([explain] in its manifest)",
                    loaded.id
                ),
            )
        })?)
    } else {
        None
    };
    if let Some(max) = explainer.as_ref().and_then(|e| e.max_rows()) {
        if rows > max {
            return Err(bad(
                "explain_batch_too_large",
                format!(
                    "{} explains at most {max} rows per request ({} method); this one has {rows}",
                    loaded.id,
                    explainer.as_ref().map_or("", |e| e.method())
                ),
            ));
        }
    }
    let explain_input = explainer.as_ref().and_then(|_| inputs.first().cloned());
    // What the model saw, kept for the record (the batcher takes the inputs).
    let recorded_inputs: Option<Vec<crate::tensor::Tensor>> =
        decisions.as_ref().map(|_| inputs.clone());
    let wanted: Option<Vec<&str>> = request
        .outputs
        .as_ref()
        .map(|o| o.iter().map(|o| o.name.as_str()).collect());
    if let Some(names) = &wanted {
        if let Some(unknown) = names
            .iter()
            .find(|n| !loaded.engine.outputs().iter().any(|o| o.name == **n))
        {
            return Err(bad(
                "unknown_output",
                format!("output '{unknown}' is not an output of this model"),
            ));
        }
    }
    let outputs = state
        .serving
        .score(&loaded, &model, inputs, rows)
        .await
        .map_err(|e| serve_error(&state, e))?;
    let explained = match (explainer, explain_input) {
        (Some(explainer), Some(input)) => {
            // The exact methods take microseconds a row: a few rows are explained here;
            // anything longer goes to a blocking thread.
            let inline = explainer.max_rows().is_none() && rows <= INLINE_EXPLAINED_ROWS;
            let result = if inline {
                explainer.explain(&input)
            } else {
                // Fair (FIFO) and never closed: waiting is the only outcome.
                let _slot = state
                    .explain_slots
                    .acquire()
                    .await
                    .map_err(|_| internal())?;
                let e = Arc::clone(&explainer);
                tokio::task::spawn_blocking(move || e.explain(&input))
                    .await
                    .map_err(|_| internal())?
            };
            let rows = result.map_err(|e| {
                tracing::error!(error = %e, "explanation failed");
                internal()
            })?;
            Some((explainer, rows))
        }
        _ => None,
    };
    if let (Some(d), Some(inputs)) = (&decisions, &recorded_inputs) {
        let explanation = explained
            .as_ref()
            .map(|(e, rows)| decide::explanation(e, rows));
        let record = decide::Decision {
            request_id: ctx.id(),
            at_ms: crate::decisions::retention::now_ms(),
            model: &loaded.manifest.name,
            version: &loaded.manifest.version,
            attributes: raw.as_ref(),
            inputs,
            outputs: &outputs,
            explanation: explanation.as_ref(),
        };
        let sha256 = d.record(&record).map_err(|e| {
            tracing::error!(error = %e, model = %loaded.id, "a decision was not recorded; the request is refused");
            ApiError::new(
                ErrorKind::Internal,
                "the decision could not be recorded, so it is not answered; try again",
                Family::InferenceProtocol,
            )
            .with_code("decision_not_recorded")
        })?;
        ctx.set_decision(sha256);
    }
    let selected: Vec<_> = match &wanted {
        Some(names) => outputs
            .into_iter()
            .filter(|o| names.contains(&o.name.as_str()))
            .collect(),
        None => outputs,
    };
    let mut response = response::infer(
        &loaded,
        &request,
        &selected,
        explained
            .as_ref()
            .map(|(e, rows)| (e.as_ref(), rows.as_slice())),
    );
    if let Some(v) = &loaded.served_by {
        response.headers_mut().insert(serving::SERVED_BY, v.clone());
    }
    if let Some(policy) = fallback {
        response
            .headers_mut()
            .insert(serving::FALLBACK_HEADER, HeaderValue::from_static(policy));
    }
    Ok(response)
}

/// Rows of an exact explanation computed on the request's own task.
const INLINE_EXPLAINED_ROWS: usize = 8;

fn internal() -> ApiError {
    ApiError::new(ErrorKind::Internal, "", Family::InferenceProtocol)
}

fn serve_error(state: &AppState, e: serving::ServeError) -> ApiError {
    ApiError::serving(e, state.limits.retry_after, Family::InferenceProtocol)
}

#[derive(Debug, Default, Deserialize)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// Triton's repository extension: every served model version and its state. Every
/// loaded version is ready, so `{"ready": true}` lists the same.
async fn repository_index(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let family = Family::InferenceProtocol;
    let bytes = match read_limited(req.into_body(), state.limits.max_body_bytes, family).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let request = if bytes.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        match serde_json::from_slice::<IndexRequest>(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return bad(
                    "invalid_json",
                    format!("the body is not a repository index request: {e}"),
                )
                .into_response();
            }
        }
    };
    let served = state.serving.scoring.load();
    let index: Vec<_> = served
        .iter()
        .flat_map(|(name, versions)| versions.versions.keys().map(move |v| (name, v, "READY")))
        .filter(|(_, _, model_state)| !request.ready || *model_state == "READY")
        .map(|(name, version, model_state)| json!({ "name": name, "version": version, "state": model_state, "reason": "" }))
        .collect();
    Json(index).into_response()
}
