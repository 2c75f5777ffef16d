//! Chat completions with the real SmolLM2-135M-Instruct (Q4_1) through llama.cpp:
//! greedy answers equal llama.cpp's own greedy output (a reference decoded in this
//! process with llama-cpp-2 directly), streamed and non-streamed answers are the same
//! text, four concurrent streams equal their solo runs (batching changes no result), as
//! does a long prompt decoded in chunks beside a generating stream, a
//! client that disconnects frees its slot, context overflow is a 400, `json_schema`
//! output parses, bad requests get OpenAI-shaped errors, and the quality metrics count
//! `length` finishes, invalid JSON-mode answers, empty answers (a stop string at the
//! start, which is not sent) and tokens per completion.
//!
//! The model comes from `models/fetch-smollm2` (which `.ci/run` runs); without it these
//! tests say so and pass locally, and fail under CI.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use crate::common::{Client, RawConn, Setup};

pub fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("COFFER_CHAT_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/chat/smollm2-135m/1.0.0")
        });
    if dir.join("manifest.toml").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must fetch the chat model (models/fetch-smollm2 in .ci/run)"
    );
    eprintln!(
        "skipped: no chat model at {} (run models/fetch-smollm2)",
        dir.display()
    );
    None
}

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// llama.cpp's own greedy answer, decoded here with llama-cpp-2 and no server.
fn reference(dir: &std::path::Path, user: &str, max_tokens: usize) -> String {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
    use llama_cpp_2::sampling::LlamaSampler;

    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    let backend = BACKEND.get_or_init(|| {
        let mut b = LlamaBackend::init().unwrap();
        b.void_logs();
        b
    });
    let model =
        LlamaModel::load_from_file(backend, dir.join(GGUF), &LlamaModelParams::default()).unwrap();
    let template = model.chat_template(None).unwrap();
    let prompt = model
        .apply_chat_template(
            &template,
            &[LlamaChatMessage::new("user".into(), user.into()).unwrap()],
            true,
        )
        .unwrap();
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_batch(512)
        .with_n_threads(1)
        .with_n_threads_batch(1);
    let mut ctx = model.new_context(backend, params).unwrap();
    let mut batch = LlamaBatch::new(512, 1);
    for (i, t) in tokens.iter().enumerate() {
        batch
            .add(*t, i as i32, &[0], i + 1 == tokens.len())
            .unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let mut sampler = LlamaSampler::greedy();
    let mut bytes = Vec::new();
    let start = tokens.len() as i32;
    for pos in start..start + max_tokens as i32 {
        let token = sampler.sample(&ctx, batch.n_tokens() - 1);
        if model.vocab().is_eog(token) {
            break;
        }
        bytes.extend(model.vocab().token_to_piece(token, false, None));
        batch.clear();
        batch.add(token, pos, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn setup(dir: &std::path::Path, extra: &str) -> Setup {
    let mut s = Setup::new();
    s.chat_extra = format!(
        "models = [\"{}\"]\nthreads = 1\ncontext = 512\nkeep_alive = \"200ms\"\n{extra}",
        dir.display()
    );
    s
}

fn ask(user: &str, max_tokens: u32, stream: bool) -> Vec<u8> {
    json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": user }],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": if stream { json!({ "include_usage": true }) } else { Value::Null },
    })
    .to_string()
    .into_bytes()
}

/// Starts the daemon with the chat model and `extra` chat settings; returns it with a
/// key of `scopes` and a client.
pub(crate) async fn start(
    dir: &std::path::Path,
    extra: &str,
    scopes: &str,
) -> (Setup, crate::common::Daemon, String, Client) {
    let s = setup(dir, extra);
    let d = s.start().await;
    let key = s.create_key("app", scopes, None);
    let c = s.client(d.addr);
    (s, d, key, c)
}

pub(crate) async fn post(c: &Client, key: &str, body: &[u8]) -> crate::common::Resp {
    c.request(Method::POST, "/v1/chat/completions", Some(key), body)
        .await
}

/// The `data:` payloads of an SSE body, and whether it had keep-alive comments.
pub(crate) fn sse(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// The text of a streamed completion, after checking the chunks' shape.
pub(crate) fn streamed_text(body: &[u8]) -> (String, Value) {
    let events = sse(body);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().unwrap().clone();
    assert_eq!(usage["choices"], json!([]), "the usage chunk comes last");
    let finish = &chunks[chunks.len() - 2];
    assert!(
        finish["choices"][0]["finish_reason"].is_string(),
        "{finish}"
    );
    let text = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect::<String>();
    (text, usage["usage"].clone())
}

#[tokio::test]
async fn greedy_answers_equal_llama_cpp_and_streaming_changes_nothing() {
    let Some(dir) = model_dir() else { return };
    let (_s, d, key, c) = start(&dir, "slots = 2\n", "chat").await;
    let question = "What is the capital of France? Answer in one sentence.";

    let r = post(&c, &key, &ask(question, 24, false)).await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let b = r.json();
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["model"], "smollm2-135m");
    assert_eq!(b["choices"][0]["message"]["role"], "assistant");
    let answer = b["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!answer.is_empty());
    let usage = &b["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(r.headers["x-coffer-served-by"], "smollm2-135m@1.0.0");

    let expected = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || reference(&dir, question, 24)
    })
    .await
    .unwrap();
    assert_eq!(answer, expected, "cofferd's greedy answer is llama.cpp's");

    let r = post(&c, &key, &ask(question, 24, true)).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (streamed, stream_usage) = streamed_text(&r.body);
    assert_eq!(
        streamed, answer,
        "streamed and non-streamed answers are the same"
    );
    for count in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(stream_usage[count], usage[count], "{count}");
    }
    // The same prompt again: its leading chunks come from the prefix cache.
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert!(stream_usage["prompt_tokens_details"]["cached_tokens"].as_u64() > Some(0));

    let m = c.get("/v1/models", Some(&key)).await.json();
    assert_eq!(m["data"][0]["id"], "smollm2-135m");
    assert_eq!(m["data"][0]["object"], "model");
    d.stop();
}

#[tokio::test]
async fn four_concurrent_streams_equal_their_solo_answers() {
    let Some(dir) = model_dir() else { return };
    let (s, d, key, c) = start(&dir, "slots = 4\n", "chat").await;
    let questions = [
        "Name three colours.",
        "What is 2 + 2?",
        "Write a haiku about the sea.",
        "Who wrote Hamlet?",
    ];
    let mut solo = Vec::new();
    for q in questions {
        let r = post(&c, &key, &ask(q, 20, true)).await;
        solo.push(streamed_text(&r.body).0);
    }
    let tasks: Vec<_> = questions
        .iter()
        .map(|q| {
            let (c, key, body) = (c.clone(), key.clone(), ask(q, 20, true));
            tokio::spawn(async move { post(&c, &key, &body).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(
            streamed_text(&r.body).0,
            solo[i],
            "stream {i} under batching"
        );
    }
    let text = String::from_utf8_lossy(
        &c.get("/metrics", Some(&s.create_key("ops", "metrics", None)))
            .await
            .body,
    )
    .to_string();
    assert!(
        text.contains(
            "coffer_chat_completion_tokens_total{model=\"smollm2-135m\",version=\"1.0.0\"}"
        ),
        "{text}"
    );
    d.stop();
}

/// A long prompt decoded in chunks while another stream generates gets the answer it
/// gets alone: its chunks are the same pieces (counted from its first token) and are
/// decoded apart from the other stream's tokens. `n_batch = 64` matters: llama.cpp's CPU
/// attention takes another kernel from 64 rows of one sequence up, so a chunk cut one
/// token short (as when the other stream's token took a place in the step) computes
/// differently; before chunks were fixed, this answer changed.
#[tokio::test]
async fn a_long_prompt_chunked_beside_a_generating_stream_gets_its_solo_answer() {
    let Some(dir) = model_dir() else { return };
    let (_s, d, key, c) = start(&dir, "slots = 2\nn_batch = 64\n", "chat,metrics").await;
    let story = ask(
        "Tell me a very long story about a lighthouse keeper.",
        120,
        true,
    );
    let long = ask(
        "Read this note and answer in one sentence. The old lighthouse on the northern \
         cape was built in 1868 from granite brought by boat from the quarry across the \
         bay. Its first keeper, a former sailor, kept a log of every ship that passed, the \
         weather at dawn and dusk, and the oil he burned each night. In the winter of 1903 \
         a storm broke the lantern glass and the keeper and his daughter kept the light \
         burning with a hand lamp for three nights until the supply boat came. Question: \
         who kept the light burning during the storm of 1903?",
        24,
        true,
    );
    let solo_story = streamed_text(&post(&c, &key, &story).await.body).0;
    let solo_long = streamed_text(&post(&c, &key, &long).await.body).0;
    let tokens = |text: &str| {
        crate::common::metric(
            text,
            "coffer_chat_completion_tokens_total{model=\"smollm2-135m\",version=\"1.0.0\"}",
        )
        .unwrap_or(0.0)
    };
    let before = tokens(&String::from_utf8_lossy(
        &c.get("/metrics", Some(&key)).await.body,
    ));

    let story_task = {
        let (c, key) = (c.clone(), key.clone());
        tokio::spawn(async move { post(&c, &key, &story).await })
    };
    // The long prompt comes once the story is generating, so its chunks share steps.
    let t0 = Instant::now();
    while tokens(&String::from_utf8_lossy(
        &c.get("/metrics", Some(&key)).await.body,
    )) < before + 2.0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the story never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = post(&c, &key, &long).await;
    let story_answer = streamed_text(&story_task.await.unwrap().body).0;
    assert_eq!(
        streamed_text(&r.body).0,
        solo_long,
        "the long prompt's answer beside a generating stream"
    );
    assert_eq!(story_answer, solo_story, "the story beside a long prompt");
    d.stop();
}

#[tokio::test]
async fn a_disconnected_client_frees_its_slot_and_overflow_is_a_400() {
    let Some(dir) = model_dir() else { return };
    let (_s, d, key, c) = start(&dir, "slots = 1\n", "chat,metrics").await;

    // One slot: a long stream holds it, its client leaves after the headers.
    let body = ask(
        "Tell me a very long story about a lighthouse keeper.",
        400,
        true,
    );
    let mut raw = RawConn::open(&c).await;
    raw.post_head("/v1/chat/completions", &key, body.len())
        .await;
    raw.send(&body).await;
    assert_eq!(raw.read_status().await, 200);
    drop(raw);
    // The next request gets the slot within a few decode steps, not after 400 tokens.
    let t0 = Instant::now();
    let r = post(&c, &key, &ask("Say hi.", 4, false)).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "slot freed late: {:?}",
        t0.elapsed()
    );
    let metrics = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    assert!(
        metrics.contains("coffer_chat_cancelled_total{model=\"smollm2-135m\",version=\"1.0.0\"} 1"),
        "{metrics}"
    );

    // A prompt longer than the context (512 tokens).
    let long = "lighthouse ".repeat(700);
    let r = post(&c, &key, &ask(&long, 8, true)).await;
    assert_eq!(r.status.as_u16(), 400);
    let e = r.json();
    assert_eq!(e["error"]["code"], "context_length_exceeded", "{e}");
    assert_eq!(e["error"]["param"], "messages");
    // max_tokens past the context is clamped: the answer ends with "length" or "stop".
    let r = post(&c, &key, &ask("Count to five.", 100_000, false)).await;
    assert_eq!(r.status.as_u16(), 200);
    d.stop();
}

/// A stream is held to the request deadline as a whole, not only until its headers: past
/// it the stream ends with a `deadline_exceeded` error object and no `[DONE]`, and the
/// slot is free for the next request.
#[tokio::test]
async fn a_stream_past_the_request_deadline_ends_and_frees_its_slot() {
    let Some(dir) = model_dir() else { return };
    let mut s = setup(&dir, "slots = 1\n");
    s.server_extra = "request_timeout = \"1500ms\"".into();
    let d = s.start().await;
    let key = s.create_key("app", "chat,metrics", None);
    let c = s.client(d.addr);

    let t0 = Instant::now();
    let r = post(
        &c,
        &key,
        &ask(
            "Tell me a very long story about a lighthouse keeper.",
            450,
            true,
        ),
    )
    .await;
    let took = t0.elapsed();
    assert_eq!(r.status.as_u16(), 200);
    let events = sse(&r.body);
    let last = events.last().expect("events");
    let e: Value = serde_json::from_str(last).unwrap();
    assert_eq!(e["error"]["code"], "deadline_exceeded", "{last}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    assert!(
        events.len() > 3,
        "tokens were streamed before the deadline: {events:?}"
    );
    assert!(took < Duration::from_secs(5), "ended late: {took:?}");

    // The one slot is free again: a short request is answered.
    let r = post(&c, &key, &ask("Say hi.", 4, false)).await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let metrics = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    assert!(
        metrics.contains("coffer_chat_cancelled_total{model=\"smollm2-135m\",version=\"1.0.0\"} 1"),
        "{metrics}"
    );
    d.stop();
}

#[tokio::test]
async fn json_schema_output_parses_and_bad_requests_get_openai_errors() {
    let Some(dir) = model_dir() else { return };
    let (_s, d, key, c) = start(&dir, "slots = 1\n", "chat").await;
    let body = json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": "Give the name and age of a fictional person." }],
        "temperature": 0,
        "max_tokens": 60,
        "response_format": { "type": "json_schema", "json_schema": { "name": "person", "schema": {
            "type": "object",
            "properties": { "name": { "type": "string" }, "age": { "type": "integer" } },
            "required": ["name", "age"]
        }}}
    });
    let r = post(&c, &key, body.to_string().as_bytes()).await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let b = r.json();
    let content = b["choices"][0]["message"]["content"].as_str().unwrap();
    if b["choices"][0]["finish_reason"] == "stop" {
        let v: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
        assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
    } else {
        assert!(content.trim_start().starts_with('{'), "{content}");
    }

    let cases = [
        (
            json!({"model":"smollm2-135m","messages":[{"role":"user","content":"x"}],"n":2}),
            400,
            "unsupported_parameter",
        ),
        (
            json!({"model":"nope","messages":[{"role":"user","content":"x"}]}),
            404,
            "model_not_found",
        ),
        (
            json!({"model":"smollm2-135m","messages":[]}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = post(&c, &key, body.to_string().as_bytes()).await;
        assert_eq!(r.status.as_u16(), status, "{body}");
        assert_eq!(r.json()["error"]["code"], code, "{body}");
    }
    let r = post(&c, "cof_wrong", &ask("hi", 2, false)).await;
    assert_eq!(r.status.as_u16(), 401);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    d.stop();
}

/// The quality signals of `smollm2-135m@1.0.0` in a `/metrics` text.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quality {
    stop: f64,
    length: f64,
    json_checked: f64,
    json_invalid: f64,
    empty: f64,
    tokens_count: f64,
    tokens_sum: f64,
}

impl Quality {
    async fn read(c: &Client, key: &str) -> Quality {
        let r = c.get("/metrics", Some(key)).await;
        assert_eq!(r.status.as_u16(), 200);
        let text = String::from_utf8_lossy(&r.body).to_string();
        const MV: &str = "model=\"smollm2-135m\",version=\"1.0.0\"";
        // Every series exists (at 0) as soon as the version is loaded.
        let series = |name: &str, labels: &str| -> f64 {
            let prefix = format!("{name}{{{labels}}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .trim()
                .parse()
                .unwrap()
        };
        Quality {
            stop: series(
                "coffer_chat_finished_total",
                &format!("{MV},reason=\"stop\""),
            ),
            length: series(
                "coffer_chat_finished_total",
                &format!("{MV},reason=\"length\""),
            ),
            json_checked: series("coffer_chat_json_checked_total", MV),
            json_invalid: series("coffer_chat_json_invalid_total", MV),
            empty: series("coffer_chat_empty_answers_total", MV),
            tokens_count: series("coffer_chat_completion_tokens_per_request_count", MV),
            tokens_sum: series("coffer_chat_completion_tokens_per_request_sum", MV),
        }
    }

    /// One more completion of `tokens` tokens.
    fn plus(mut self, finish: &str, tokens: u64) -> Quality {
        match finish {
            "stop" => self.stop += 1.0,
            "length" => self.length += 1.0,
            other => panic!("finish_reason {other}"),
        }
        self.tokens_count += 1.0;
        self.tokens_sum += tokens as f64;
        self
    }
}

/// The text and `usage` of a 200 answer, streamed or not.
pub(crate) fn text_and_usage(r: &crate::common::Resp, stream: bool) -> (String, Value) {
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    if stream {
        streamed_text(&r.body)
    } else {
        let b = r.json();
        (
            b["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
            b["usage"].clone(),
        )
    }
}

/// Content, finish reason and completion tokens of a (streamed or not) answer.
fn answer(r: &crate::common::Resp, stream: bool) -> (String, String, u64) {
    let (text, usage) = text_and_usage(r, stream);
    let tokens = usage["completion_tokens"].as_u64().unwrap();
    if stream {
        let events = sse(&r.body);
        let finish: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
        let reason = finish["choices"][0]["finish_reason"].as_str().unwrap();
        (text, reason.to_string(), tokens)
    } else {
        let reason = r.json()["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_string();
        (text, reason, tokens)
    }
}

#[tokio::test]
async fn quality_signals_count_length_finishes_invalid_json_empty_answers_and_tokens() {
    let Some(dir) = model_dir() else { return };
    let (_s, d, key, c) = start(&dir, "slots = 1\n", "chat,metrics").await;
    let mut want = Quality::read(&c, &key).await;
    assert_eq!(
        want,
        Quality {
            stop: 0.0,
            length: 0.0,
            json_checked: 0.0,
            json_invalid: 0.0,
            empty: 0.0,
            tokens_count: 0.0,
            tokens_sum: 0.0,
        }
    );

    // max_tokens = 1 ends with `length`, streamed or not; plain text is no JSON check.
    for stream in [false, true] {
        let r = post(&c, &key, &ask("Say hi.", 1, stream)).await;
        let (text, finish, tokens) = answer(&r, stream);
        assert_eq!((finish.as_str(), tokens), ("length", 1), "{text:?}");
        assert!(!text.trim().is_empty(), "{text:?}");
        want = want.plus("length", 1);
        assert_eq!(Quality::read(&c, &key).await, want, "stream: {stream}");
    }

    // json_object cut by max_tokens = 3: the greedy `{\n  "` does not parse.
    let person = "Give the name and age of a fictional person.";
    let body = json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": person }],
        "temperature": 0,
        "max_tokens": 3,
        "response_format": { "type": "json_object" },
    });
    let r = post(&c, &key, body.to_string().as_bytes()).await;
    let (text, finish, tokens) = answer(&r, false);
    assert_eq!((finish.as_str(), tokens), ("length", 3), "{text:?}");
    assert!(text.trim_start().starts_with('{'), "{text:?}");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text:?}");
    want = want.plus("length", 3);
    want.json_checked += 1.0;
    want.json_invalid += 1.0;
    assert_eq!(Quality::read(&c, &key).await, want);

    // json_schema with room to finish, streamed and not: the grammar-constrained
    // answer parses, is checked and is not invalid.
    for stream in [false, true] {
        let body = json!({
            "model": "smollm2-135m",
            "messages": [{ "role": "user", "content": person }],
            "temperature": 0,
            "max_tokens": 60,
            "stream": stream,
            "stream_options": if stream { json!({ "include_usage": true }) } else { Value::Null },
            "response_format": { "type": "json_schema", "json_schema": { "name": "person", "schema": {
                "type": "object",
                "properties": { "name": { "type": "string" }, "age": { "type": "integer" } },
                "required": ["name", "age"]
            }}}
        });
        let r = post(&c, &key, body.to_string().as_bytes()).await;
        let (text, finish, tokens) = answer(&r, stream);
        assert_eq!(finish, "stop", "{text:?}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
        want = want.plus("stop", tokens);
        want.json_checked += 1.0;
        assert_eq!(Quality::read(&c, &key).await, want, "stream: {stream}");
    }

    // An empty answer: the greedy answer's first word as a stop string.
    let question = "What is 2 + 2?";
    let r = post(&c, &key, &ask(question, 4, false)).await;
    let (text, finish, tokens) = answer(&r, false);
    let first = text.split_whitespace().next().unwrap().to_string();
    assert!(text.starts_with(&first), "{text:?}");
    want = want.plus(&finish, tokens);
    assert_eq!(Quality::read(&c, &key).await, want, "{text:?} is not empty");
    for stream in [false, true] {
        let mut body: Value = serde_json::from_slice(&ask(question, 4, stream)).unwrap();
        body["stop"] = json!([first]);
        let r = post(&c, &key, body.to_string().as_bytes()).await;
        let (text, finish, tokens) = answer(&r, stream);
        assert_eq!(
            (text.as_str(), finish.as_str()),
            ("", "stop"),
            "stop {first:?}, stream: {stream}"
        );
        assert!(tokens >= 1);
        want = want.plus("stop", tokens);
        want.empty += 1.0;
        assert_eq!(Quality::read(&c, &key).await, want, "stream: {stream}");
    }
    assert!(want.tokens_count > 0.0 && want.tokens_sum > want.tokens_count);
    d.stop();
}
