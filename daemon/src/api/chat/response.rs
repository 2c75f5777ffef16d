//! OpenAI's response shapes: `chat.completion` and the `chat.completion.chunk`s of a
//! stream (role first, content deltas, the finish reason, an optional usage chunk).

use serde_json::{Value, json};

use crate::chat::job::Finish;

/// What every object of one completion shares.
#[derive(Debug, Clone)]
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
}

fn fingerprint() -> String {
    format!("coffer-{}", env!("CARGO_PKG_VERSION"))
}

/// Token counts of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: usize,
    /// Prompt tokens taken from the prefix cache.
    pub cached: usize,
    pub completion: usize,
}

pub fn usage(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.prompt + u.completion,
        "prompt_tokens_details": { "cached_tokens": u.cached },
    })
}

pub fn completion(h: &Header, content: &str, finish: Finish, u: Usage) -> Value {
    json!({
        "id": h.id,
        "object": "chat.completion",
        "created": h.created,
        "model": h.model,
        "system_fingerprint": fingerprint(),
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": finish.as_str(),
        }],
        "usage": usage(u),
    })
}

fn chunk(h: &Header, delta: Value, finish: Option<Finish>, with_usage_field: bool) -> Value {
    let mut c = json!({
        "id": h.id,
        "object": "chat.completion.chunk",
        "created": h.created,
        "model": h.model,
        "system_fingerprint": fingerprint(),
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish.map(Finish::as_str),
        }],
    });
    if with_usage_field {
        c["usage"] = Value::Null;
    }
    c
}

/// The first chunk: the assistant role, empty content.
pub fn role_chunk(h: &Header, include_usage: bool) -> Value {
    chunk(
        h,
        json!({ "role": "assistant", "content": "" }),
        None,
        include_usage,
    )
}

pub fn content_chunk(h: &Header, text: &str, include_usage: bool) -> Value {
    chunk(h, json!({ "content": text }), None, include_usage)
}

pub fn finish_chunk(h: &Header, finish: Finish, include_usage: bool) -> Value {
    chunk(h, json!({}), Some(finish), include_usage)
}

/// With `stream_options.include_usage`: the last chunk, no choices, the usage.
pub fn usage_chunk(h: &Header, u: Usage) -> Value {
    json!({
        "id": h.id,
        "object": "chat.completion.chunk",
        "created": h.created,
        "model": h.model,
        "system_fingerprint": fingerprint(),
        "choices": [],
        "usage": usage(u),
    })
}
