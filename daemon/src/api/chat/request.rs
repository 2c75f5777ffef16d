//! OpenAI's chat completions request: parsed with the path of any bad field named,
//! checked (every refusal a 400 in OpenAI's error shape with `param`), and turned into
//! engine terms. Fields OpenAI clients send that change nothing here (`user`,
//! `metadata`, `store`, …) are accepted; fields this server cannot honour (`tools`,
//! `logprobs`, `n` other than 1) are refused by name rather than ignored.

use serde::Deserialize;
use serde_json::Value;

use crate::api::{ApiError, ErrorKind, Family};
use crate::chat::job::{GenParams, Message, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    model: String,
    messages: Vec<RawMessage>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<Stop>,
    #[serde(default)]
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    response_format: Option<ResponseFormat>,
    n: Option<u32>,
    logprobs: Option<bool>,
    // Accepted and without effect here.
    #[allow(dead_code)]
    user: Option<String>,
    #[allow(dead_code)]
    metadata: Option<Value>,
    #[allow(dead_code)]
    store: Option<bool>,
    #[allow(dead_code)]
    service_tier: Option<String>,
    #[allow(dead_code)]
    parallel_tool_calls: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    role: String,
    content: Content,
    #[allow(dead_code)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchema },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSchema {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    description: Option<String>,
    schema: Option<Value>,
    #[allow(dead_code)]
    strict: Option<bool>,
}

/// A checked request.
#[derive(Debug)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub params: GenParams,
    pub stream: bool,
    pub include_usage: bool,
    /// `response_format`'s schema, checked and rebuilt (`chat::grammar::check`); the
    /// handler turns it into `params.grammar` off the async workers.
    pub response_schema: Option<Value>,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message, Family::OpenAi).with_param(param)
}

fn range(value: Option<f32>, param: &str, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) || !v.is_finite() => Err(bad(
            format!("{param} must be between {lo} and {hi}; got {v}"),
            param,
        )),
        other => Ok(other),
    }
}

/// Parses and checks a request body.
pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let raw: RawRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = if path == "." { "body" } else { path.as_str() };
        if inner.is_syntax() || inner.is_eof() {
            bad(format!("the body is not valid JSON: {inner}"), "body")
        } else {
            bad(format!("{param}: {inner}"), param)
        }
    })?;
    if let Some(n) = raw.n.filter(|n| *n != 1) {
        return Err(bad(
            format!("n = {n} is not supported; only 1 choice per request"),
            "n",
        )
        .with_code("unsupported_parameter"));
    }
    if raw.logprobs == Some(true) {
        return Err(
            bad("logprobs are not supported", "logprobs").with_code("unsupported_parameter")
        );
    }
    if raw.model.trim().is_empty() {
        return Err(bad("model is empty", "model"));
    }
    if raw.messages.is_empty() {
        return Err(bad("messages is empty", "messages"));
    }
    let mut messages = Vec::with_capacity(raw.messages.len());
    for (i, m) in raw.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(bad(
                    format!(
                        "messages[{i}].role {other:?} is not supported; use system, user or assistant"
                    ),
                    &format!("messages[{i}].role"),
                ));
            }
        };
        let content = match m.content {
            Content::Text(t) => t,
            Content::Parts(parts) => {
                let mut text = String::new();
                for (j, p) in parts.into_iter().enumerate() {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(bad(
                                format!(
                                    "messages[{i}].content[{j}] of type {kind:?} is not supported; only text"
                                ),
                                &format!("messages[{i}].content[{j}]"),
                            ));
                        }
                    }
                }
                text
            }
        };
        if content.contains('\0') {
            return Err(bad(
                format!("messages[{i}].content contains a NUL character"),
                &format!("messages[{i}].content"),
            ));
        }
        messages.push(Message { role, content });
    }
    let max_tokens = raw.max_completion_tokens.or(raw.max_tokens);
    if max_tokens == Some(0) {
        return Err(bad("max_tokens must be at least 1", "max_tokens"));
    }
    let temperature = range(raw.temperature, "temperature", 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = range(raw.top_p, "top_p", 0.0, 1.0)?.unwrap_or(1.0);
    if top_p <= 0.0 {
        return Err(bad("top_p must be greater than 0", "top_p"));
    }
    let presence_penalty =
        range(raw.presence_penalty, "presence_penalty", -2.0, 2.0)?.unwrap_or(0.0);
    let frequency_penalty =
        range(raw.frequency_penalty, "frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0);
    let stop = match raw.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stop.len() > 4 {
        return Err(bad("stop takes at most 4 sequences", "stop"));
    }
    let response_schema = match raw.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(checked_schema(
            &serde_json::json!({"type": "object"}),
            "response_format",
        )?),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema
                .schema
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            Some(checked_schema(&schema, "response_format.json_schema")?)
        }
    };
    // OpenAI seeds are 64-bit; llama.cpp's are 32-bit: fold, so different seeds stay
    // (almost always) different and the same seed the same.
    let seed = raw.seed.map_or(0xC0FF_EE00, |s| {
        let s = s as u64;
        ((s >> 32) ^ (s & 0xFFFF_FFFF)) as u32
    });
    Ok(ChatRequest {
        model: raw.model,
        messages,
        params: GenParams {
            max_tokens,
            temperature,
            top_p,
            seed,
            stop,
            presence_penalty,
            frequency_penalty,
            grammar: None,
        },
        stream: raw.stream.unwrap_or(false),
        include_usage: raw.stream_options.is_some_and(|o| o.include_usage),
        response_schema,
    })
}

/// The schema checked against the subset and bounds Coffer enforces
/// (`chat::grammar`), before any C++ reads it.
fn checked_schema(schema: &Value, param: &str) -> Result<Value, ApiError> {
    crate::chat::grammar::check(schema)
        .map_err(|e| bad(format!("{param}.schema cannot be enforced: {e}"), param))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_full_request_maps_to_engine_terms() {
        let r = parse(
            br#"{"model":"m@1.0.0","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],
                "max_completion_tokens":7,"temperature":0,"seed":42,"stop":"END","stream":true,
                "stream_options":{"include_usage":true},"user":"u-1","n":1}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m@1.0.0");
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1].content, "hi");
        assert_eq!(r.params.max_tokens, Some(7));
        assert_eq!(r.params.temperature, 0.0);
        assert_eq!(r.params.stop, vec!["END".to_string()]);
        assert!(r.stream && r.include_usage && r.params.grammar.is_none());
    }

    #[test]
    fn each_refusal_names_its_parameter() {
        for (body, param) in [
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
                "n",
            ),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                "top_p",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[]}"#,
                "tools",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                "messages[0].content[0]",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}"#,
                "body",
            ),
        ] {
            let e = err(body);
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[]}"#)
                .message
                .contains("tools")
        );
    }

    #[test]
    fn json_schema_is_checked_and_kept_for_the_handler() {
        let r = parse(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],
                "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"age":{"type":"integer"}},"required":["age"]}}}}"#,
        )
        .unwrap();
        let s = r.response_schema.unwrap();
        assert_eq!(s["required"][0], "age");
        assert!(r.params.grammar.is_none());
    }

    #[test]
    fn a_hostile_schema_is_a_400_naming_response_format() {
        let e = err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],
                "response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"string","pattern":"^a{2,1}$"}}}}"#);
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema"));
        assert!(e.message.contains("pattern"), "{}", e.message);
    }
}
