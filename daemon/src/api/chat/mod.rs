//! `POST /v1/chat/completions` and `GET /v1/models` (scope `chat`): the request is
//! checked, queued on the model's engine, and answered as one `chat.completion` or as a
//! server-sent event stream of chunks ending in `data: [DONE]`, with comment lines as
//! keep-alives while the prompt waits or is processed. A refusal the engine reports
//! before the first token (context too long, bad grammar) is still a plain 400. A
//! client that goes away drops the stream, which cancels the job in the engine.
//! A stream counts its model version's outcome itself when it ends: `ok` when the
//! completion finished, `server_error` when it ended with an error event.

mod request;
mod response;

pub use request::parse as parse_request;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, StreamExt as _};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::{ApiError, AppState, ErrorKind, Family, read_limited};
use crate::chat::grammar::GrammarError;
use crate::chat::job::{ChatEvent, ChatFailure, ChatJob};
use crate::metrics::{Outcome, VersionRequests};
use crate::serving::{self, RequestContext, Routed};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", get(list_models))
}

/// OpenAI's model list: the chat and embedding models served now.
async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let model = |id: String, created: u64| json!({ "id": id, "object": "model", "created": created, "owned_by": "coffer" });
    let mut data: Vec<_> = state
        .serving
        .chat
        .load()
        .list_models()
        .into_iter()
        .map(|(id, loaded)| model(id, loaded.created))
        .collect();
    data.extend(
        state
            .serving
            .embedding
            .load()
            .list_models()
            .into_iter()
            .map(|(id, loaded)| model(id, loaded.created)),
    );
    Json(json!({ "object": "list", "data": data })).into_response()
}

fn failure(f: ChatFailure) -> ApiError {
    match f {
        ChatFailure::ContextLengthExceeded { .. } => {
            ApiError::new(ErrorKind::BadRequest, f.to_string(), Family::OpenAi)
                .with_code("context_length_exceeded")
                .with_param("messages")
        }
        ChatFailure::Template(_) => {
            ApiError::new(ErrorKind::BadRequest, f.to_string(), Family::OpenAi)
                .with_param("messages")
        }
        ChatFailure::Grammar(_) => {
            ApiError::new(ErrorKind::BadRequest, f.to_string(), Family::OpenAi)
                .with_param("response_format")
        }
        ChatFailure::Engine(e) => {
            tracing::error!(error = %e, "chat engine failed");
            ApiError::new(ErrorKind::Internal, "", Family::OpenAi)
        }
    }
}

/// A schema that passed the request checks but not the conversion: a 400 naming
/// `response_format.json_schema`, or a 503 while the conversion slots are all taken.
fn grammar_error(e: &GrammarError, retry_after: std::time::Duration) -> ApiError {
    match e {
        GrammarError::Busy => ApiError::new(
            ErrorKind::Overloaded { retry_after },
            format!("{e}; retry after the time in Retry-After"),
            Family::OpenAi,
        ),
        GrammarError::Thread => {
            tracing::error!(error = %e, "response_format conversion failed");
            ApiError::new(ErrorKind::Internal, "", Family::OpenAi)
        }
        _ => ApiError::new(
            ErrorKind::BadRequest,
            format!("response_format.json_schema.schema cannot be enforced: {e}"),
            Family::OpenAi,
        )
        .with_param("response_format.json_schema"),
    }
}

fn gone() -> ApiError {
    tracing::error!("chat engine ended a job without an answer");
    ApiError::new(ErrorKind::Internal, "", Family::OpenAi)
}

async fn completions(State(state): State<Arc<AppState>>, req: Request) -> Response {
    run(state, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run(state: Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    // The request layer ends a request whose response has not begun by then; a stream's
    // body is held to the same deadline here, so streaming never outlives it.
    let deadline = tokio::time::Instant::now() + state.limits.request_timeout;
    let ctx = RequestContext::of(&req);
    let body = read_limited(req.into_body(), state.limits.max_body_bytes, Family::OpenAi).await?;
    let mut chat = request::parse(&body)?;
    let loaded = state
        .serving
        .chat
        .load()
        .resolve_model(&chat.model)
        .ok_or_else(|| ApiError::model_not_found("model", &chat.model))?;
    let serve_error = |e| ApiError::serving(e, state.limits.retry_after, Family::OpenAi);
    let Routed {
        loaded,
        fallback,
        permit,
    } = state
        .serving
        .route_chat(&ctx, loaded)
        .map_err(serve_error)?;
    if let Some(schema) = chat.response_schema.take() {
        let grammar = state
            .grammars
            .compile(schema)
            .await
            .map_err(|e| grammar_error(&e, state.limits.retry_after))?;
        chat.params.grammar = Some(grammar);
    }
    // Templating and tokenizing take a while for a large prompt: on a blocking thread,
    // never on the engine's (where it would stall every slot) or an async worker.
    let engine_for_prompt = Arc::clone(&loaded);
    let messages = std::mem::take(&mut chat.messages);
    let prompt = tokio::task::spawn_blocking(move || engine_for_prompt.engine.prompt(&messages))
        .await
        .map_err(|_| gone())?
        .map_err(failure)?;
    let (tx, mut rx) = unbounded_channel();
    state
        .serving
        .submit_chat(
            &loaded,
            &chat.model,
            ChatJob {
                prompt,
                params: chat.params,
                events: tx,
                enqueued: Instant::now(),
            },
        )
        .map_err(serve_error)?;
    // The engine answers Started or Failed before any token: refusals stay plain 4xx.
    let prompt_tokens = match rx.recv().await {
        Some(ChatEvent::Started { prompt_tokens, .. }) => prompt_tokens,
        Some(ChatEvent::Failed(f)) => return Err(failure(f)),
        _ => return Err(gone()),
    };
    let header = response::Header {
        id: format!("chatcmpl-{}", ctx.id()),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: chat.model.clone(),
    };
    let mut response = if chat.stream {
        let held = Held {
            _permit: permit,
            counters: ctx.version().cloned(),
            deadline,
            timeout: state.limits.request_timeout,
        };
        ctx.defer_outcome();
        stream_response(header, rx, chat.include_usage, state.chat_keep_alive, held)
    } else {
        let mut content = String::new();
        loop {
            match rx.recv().await {
                Some(ChatEvent::Delta(text)) => content.push_str(&text),
                Some(ChatEvent::Done {
                    finish,
                    cached_tokens,
                    completion_tokens,
                    ..
                }) => {
                    break Json(response::completion(
                        &header,
                        &content,
                        finish,
                        response::Usage {
                            prompt: prompt_tokens,
                            cached: cached_tokens,
                            completion: completion_tokens,
                        },
                    ))
                    .into_response();
                }
                Some(ChatEvent::Failed(f)) => return Err(failure(f)),
                Some(ChatEvent::Started { .. }) | None => return Err(gone()),
            }
        }
    };
    serving::mark_answer(response.headers_mut(), &ctx, fallback);
    Ok(response)
}

enum Phase {
    Role,
    Body,
    Usage(response::Usage),
    Done,
    End,
}

fn data(v: &serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

/// What a stream keeps until it ends: the shed permit (if any), the counters its
/// outcome goes to, and the request's deadline.
struct Held {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    counters: Option<VersionRequests>,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
}

impl Held {
    fn record(&self, outcome: Outcome) {
        if let Some(counters) = &self.counters {
            counters.record(outcome);
        }
    }
}

fn stream_response(
    header: response::Header,
    rx: UnboundedReceiver<ChatEvent>,
    include_usage: bool,
    keep_alive: std::time::Duration,
    held: Held,
) -> Response {
    // The shed permit (if any) lives as long as the stream.
    let events = stream::unfold(
        (Phase::Role, rx, (header, held)),
        move |(phase, mut rx, hp)| async move {
            let h = &hp.0;
            match phase {
                Phase::Role => Some((
                    data(&response::role_chunk(h, include_usage)),
                    (Phase::Body, rx, hp),
                )),
                Phase::Body => match tokio::time::timeout_at(hp.1.deadline, rx.recv()).await {
                    Ok(Some(ChatEvent::Delta(text))) => Some((
                        data(&response::content_chunk(h, &text, include_usage)),
                        (Phase::Body, rx, hp),
                    )),
                    Ok(Some(ChatEvent::Done {
                        finish,
                        prompt_tokens,
                        cached_tokens,
                        completion_tokens,
                    })) => {
                        hp.1.record(Outcome::Ok);
                        let next = if include_usage {
                            Phase::Usage(response::Usage {
                                prompt: prompt_tokens,
                                cached: cached_tokens,
                                completion: completion_tokens,
                            })
                        } else {
                            Phase::Done
                        };
                        Some((
                            data(&response::finish_chunk(h, finish, include_usage)),
                            (next, rx, hp),
                        ))
                    }
                    // Headers are sent: a failure mid-stream ends it with an error object,
                    // as OpenAI's streams do, and no [DONE].
                    Ok(Some(ChatEvent::Failed(f))) => {
                        tracing::warn!(error = %f, "chat stream failed");
                        hp.1.record(Outcome::ServerError);
                        let err = json!({ "error": { "message": "generation failed", "type": "server_error", "code": "internal_error" } });
                        Some((data(&err), (Phase::End, rx, hp)))
                    }
                    Ok(Some(ChatEvent::Started { .. }) | None) => {
                        hp.1.record(Outcome::ServerError);
                        let err = json!({ "error": { "message": "generation ended unexpectedly", "type": "server_error", "code": "internal_error" } });
                        Some((data(&err), (Phase::End, rx, hp)))
                    }
                    // Past the deadline the same way; dropping the receiver frees the
                    // slot before the next decode step.
                    Err(_elapsed) => {
                        hp.1.record(Outcome::ServerError);
                        let message = format!(
                            "the completion did not finish within the server's deadline of {}",
                            humantime::format_duration(hp.1.timeout)
                        );
                        let err = json!({ "error": { "message": message, "type": "server_error", "code": "deadline_exceeded" } });
                        Some((data(&err), (Phase::End, rx, hp)))
                    }
                },
                Phase::Usage(u) => {
                    Some((data(&response::usage_chunk(h, u)), (Phase::Done, rx, hp)))
                }
                Phase::Done => Some((Ok(Event::default().data("[DONE]")), (Phase::End, rx, hp))),
                Phase::End => None,
            }
        },
    );
    Sse::new(events.boxed())
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response()
}
