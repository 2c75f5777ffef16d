//! `POST /v1/embeddings` on the real daemon with the dev embedding model
//! (all-MiniLM-L6-v2, `models/fetch-minilm`): OpenAI's input shapes and encodings,
//! vectors equal to the reference implementation's, cross-request batching that changes
//! nothing beyond rounding, and a clear 4xx for every bad request.

use std::path::PathBuf;

use base64::Engine as _;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Client, Setup};

pub fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("COFFER_EMBED_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../models/embedding/all-minilm-l6-v2/1.0.0")
        });
    if dir.join("manifest.toml").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must fetch the embedding model (models/fetch-minilm)"
    );
    eprintln!(
        "skipped: no embedding model at {} (run models/fetch-minilm)",
        dir.display()
    );
    None
}

/// A setup serving the dev embedding model.
pub fn setup(dir: &std::path::Path) -> Setup {
    let mut s = Setup::new();
    s.embedding_extra = format!("models = [\"{}\"]\nthreads = 1\n", dir.display());
    s
}

/// The first reference sentences and their sentence-transformers vectors.
fn reference(n: usize) -> Vec<(String, Vec<f32>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/embed/reference");
    let sentences = std::fs::read_to_string(dir.join("sentences.txt")).unwrap();
    let raw = std::fs::read(dir.join("vectors.f32")).unwrap();
    sentences
        .lines()
        .take(n)
        .enumerate()
        .map(|(i, s)| {
            let row = &raw[i * 384 * 4..(i + 1) * 384 * 4];
            let v = row
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (s.to_string(), v)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn floats(item: &Value) -> Vec<f32> {
    item["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The request succeeded and `version` answered it.
fn assert_answered_by(r: &crate::common::Resp, version: &str) {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers.get("x-coffer-served-by").unwrap(), version);
}

async fn embed(c: &Client, key: &str, body: Value) -> crate::common::Resp {
    c.request(
        Method::POST,
        "/v1/embeddings",
        Some(key),
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_answer_in_openai_shape_with_the_reference_vectors() {
    let Some(dir) = model_dir() else { return };
    let s = setup(&dir);
    let d = s.start().await;
    let key = s.create_key("retrieval", "embed", None);
    let c = s.client(d.addr);
    let refs = reference(4);

    // One string.
    let r = embed(
        &c,
        &key,
        json!({"model": "all-minilm-l6-v2", "input": refs[0].0}),
    )
    .await;
    assert_answered_by(&r, "all-minilm-l6-v2@1.0.0");
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "all-minilm-l6-v2");
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);
    let one = floats(&v["data"][0]);
    assert_eq!(one.len(), 384);
    assert!(
        cosine(&one, &refs[0].1) >= 0.999,
        "{}",
        cosine(&one, &refs[0].1)
    );
    let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 2);
    assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(tokens));

    // A list, in order; base64 carries the same floats; name@version works.
    let texts: Vec<&str> = refs.iter().map(|(s, _)| s.as_str()).collect();
    let r = embed(&c, &key, json!({"model": "all-minilm-l6-v2@1.0.0", "input": texts, "encoding_format": "base64", "dimensions": 384})).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    for (i, (item, (_, reference))) in data.iter().zip(&refs).enumerate() {
        assert_eq!(item["index"], i);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(item["embedding"].as_str().unwrap())
            .unwrap();
        let got: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert!(cosine(&got, reference) >= 0.999);
        if i == 0 {
            // Batched with three others, the first input's vector is the single one.
            let diff = got
                .iter()
                .zip(&one)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff <= 5e-4, "{diff}");
        }
    }

    // Token ids, taken as given ([CLS] hello [SEP] in this vocabulary).
    let r = embed(
        &c,
        &key,
        json!({"model": "all-minilm-l6-v2", "input": [[101, 7592, 102]]}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let by_tokens = floats(&r.json()["data"][0]);
    let r = embed(
        &c,
        &key,
        json!({"model": "all-minilm-l6-v2", "input": "hello"}),
    )
    .await;
    let by_text = floats(&r.json()["data"][0]);
    assert!(cosine(&by_tokens, &by_text) > 0.999_99);

    // Concurrent clients are batched together and each gets its own vectors.
    let mut tasks = Vec::new();
    for (text, reference) in reference(16) {
        let (c, key) = (c.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let r = embed(
                &c,
                &key,
                json!({"model": "all-minilm-l6-v2", "input": text}),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK);
            cosine(&floats(&r.json()["data"][0]), &reference)
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap() >= 0.999);
    }

    // The model is listed beside the chat models.
    let listing = s.create_key("lister", "chat", None);
    let models = c.get("/v1/models", Some(&listing)).await.json();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "all-minilm-l6-v2"),
        "{models}"
    );
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_embedding_requests_get_a_clear_error() {
    let Some(dir) = model_dir() else { return };
    let s = setup(&dir);
    let d = s.start().await;
    let key = s.create_key("retrieval", "embed", None);
    let chat_only = s.create_key("chatter", "chat", None);
    let c = s.client(d.addr);
    let expect = |r: crate::common::Resp, status: StatusCode, code: &str, param: Option<&str>| {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{v}");
        }
    };
    let m = "all-minilm-l6-v2";
    expect(
        embed(&c, &key, json!({"model": m, "input": []})).await,
        StatusCode::BAD_REQUEST,
        "empty_input",
        Some("input"),
    );
    expect(
        embed(&c, &key, json!({"model": m, "input": ["ok", ""]})).await,
        StatusCode::BAD_REQUEST,
        "empty_input",
        Some("input"),
    );
    let long = "account ".repeat(300);
    let r = embed(&c, &key, json!({"model": m, "input": ["short", long]})).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains("input 1 has") && text.contains("at most 256"),
        "{text}"
    );
    expect(r, StatusCode::BAD_REQUEST, "input_too_long", Some("input"));
    expect(
        embed(&c, &key, json!({"model": m, "input": [[101, 40000]]})).await,
        StatusCode::BAD_REQUEST,
        "invalid_token",
        Some("input"),
    );
    expect(
        embed(
            &c,
            &key,
            json!({"model": m, "input": "x", "dimensions": 128}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unsupported_dimensions",
        Some("dimensions"),
    );
    expect(
        embed(
            &c,
            &key,
            json!({"model": m, "input": "x", "encoding_format": "f16"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("encoding_format"),
    );
    expect(
        embed(&c, &key, json!({"model": "nope", "input": "x"})).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
        Some("model"),
    );
    expect(
        embed(&c, &key, json!({"model": m, "input": {"text": "x"}})).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        None,
    );
    // Scope and key.
    assert_eq!(
        embed(&c, &chat_only, json!({"model": m, "input": "x"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = c
        .request(
            Method::POST,
            "/v1/embeddings",
            None,
            br#"{"model":"all-minilm-l6-v2","input":"x"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The engine is still serving after all that.
    assert_eq!(
        embed(&c, &key, json!({"model": m, "input": "still here"}))
            .await
            .status,
        StatusCode::OK
    );
    d.stop();
}

/// Copies the dev version to `root/NAME/VERSION` under a new version number, its
/// reference vectors rotated by `rotate` rows (0: an honest copy).
fn derived(dir: &std::path::Path, root: &std::path::Path, version: &str, rotate: usize) -> PathBuf {
    let to = root.join("all-minilm-l6-v2").join(version);
    std::fs::create_dir_all(to.join("eval")).unwrap();
    let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
    let mut manifest = coffer_models::Manifest::parse(&text).unwrap();
    manifest.version = version.to_string();
    for f in &manifest.files {
        if f.path.ends_with(".gguf") {
            // A hard link: the same 45 MB without a copy.
            std::fs::hard_link(dir.join(&f.path), to.join(&f.path))
                .or_else(|_| std::fs::copy(dir.join(&f.path), to.join(&f.path)).map(drop))
                .unwrap();
        } else {
            std::fs::copy(dir.join(&f.path), to.join(&f.path)).unwrap();
        }
    }
    let mut vectors = std::fs::read(to.join("eval/vectors.f32")).unwrap();
    vectors.rotate_left(rotate * 384 * 4);
    std::fs::write(to.join("eval/vectors.f32"), vectors).unwrap();
    crate::models::write_manifest(&to, &manifest);
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_release_is_gated_activated_and_rolled_back_like_any_model() {
    let Some(dir) = model_dir() else { return };
    let mut s = Setup::new();
    s.embedding_extra = "threads = 1\n".into();
    let d = s.start().await;
    let key = s.create_key("retrieval", "embed", None);
    let c = s.client(d.addr);
    let ask = |c: Client, key: String| async move {
        let r = embed(
            &c,
            &key,
            json!({"model": "all-minilm-l6-v2", "input": "opening hours"}),
        )
        .await;
        let by = r
            .headers
            .get("x-coffer-served-by")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status, by)
    };
    assert_eq!(ask(c.clone(), key.clone()).await.0, StatusCode::NOT_FOUND);

    let work = s.dir().join("releases");
    let v1 = derived(&dir, &work, "1.0.0", 0);
    let (code, rec) = crate::models::ctl_json(&s, &["models", "import", v1.to_str().unwrap()]);
    assert_eq!(code, 0, "{rec}");
    assert_eq!(rec["state"], "ready", "{rec}");
    assert!(
        rec["reason"].as_str().unwrap().contains("recall@3"),
        "{rec}"
    );
    let (code, act) =
        crate::models::ctl_json(&s, &["models", "activate", "all-minilm-l6-v2", "1.0.0"]);
    assert_eq!(code, 0, "{act}");
    assert_eq!(
        ask(c.clone(), key.clone()).await,
        (StatusCode::OK, Some("all-minilm-l6-v2@1.0.0".into()))
    );

    // 2.0.0 does not reproduce its own reference vectors: the gate fails it.
    let bad = derived(&dir, &work, "2.0.0", 1);
    let out = s.ctl(&["--json", "models", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a failed gate exits 2");
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["state"], "failed", "{rec}");
    assert!(rec["reason"].as_str().unwrap().contains("cosine"), "{rec}");
    let out = s.ctl(&["models", "activate", "all-minilm-l6-v2", "2.0.0"]);
    assert!(!out.status.success());

    // 3.0.0 passes and is swapped in; a rollback brings 1.0.0 back.
    let v3 = derived(&dir, &work, "3.0.0", 0);
    assert_eq!(
        crate::models::ctl_json(&s, &["models", "import", v3.to_str().unwrap()]).0,
        0
    );
    assert_eq!(
        crate::models::ctl_json(&s, &["models", "activate", "all-minilm-l6-v2", "3.0.0"]).0,
        0
    );
    assert_eq!(
        ask(c.clone(), key.clone()).await,
        (StatusCode::OK, Some("all-minilm-l6-v2@3.0.0".into()))
    );
    let (code, back) = crate::models::ctl_json(&s, &["models", "rollback", "all-minilm-l6-v2"]);
    assert_eq!(code, 0, "{back}");
    assert_eq!(
        ask(c.clone(), key.clone()).await,
        (StatusCode::OK, Some("all-minilm-l6-v2@1.0.0".into()))
    );
    let ready = c
        .get("/readyz", Some(&s.create_key("ops", "metrics", None)))
        .await
        .json();
    assert!(
        ready.to_string().contains("all-minilm-l6-v2@1.0.0"),
        "{ready}"
    );
    d.stop();
}

/// An embedding model travels the fleet channel like any other: published with
/// coffer-release, fetched through nginx by the agent, gated and activated by cofferd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_release_reaches_cofferd_through_the_fleet_channel() {
    let Some(dir) = model_dir() else { return };
    let Some(f) = crate::fleet::Fleet::start(None, "").await else {
        return;
    };
    let key = f.s.create_key("retrieval", "embed", None);
    let c = f.s.client(f.d.addr);
    let release = derived(&dir, &f.s.dir().join("embedding-releases"), "1.0.0", 0);
    f.add(&release, coffer_release::layout::Ring::Broad);
    f.publish().await;
    let steps = f.sync(&f.agent("broad", "")).await.unwrap();
    let step = steps
        .iter()
        .find(|s| s.model == "all-minilm-l6-v2")
        .unwrap_or_else(|| panic!("{steps:?}"));
    assert_eq!(
        (step.version.as_str(), step.kind),
        ("1.0.0", coffer_agent::sync::state::OutcomeKind::Active),
        "{step:?}"
    );
    let r = embed(
        &c,
        &key,
        json!({"model": "all-minilm-l6-v2", "input": "opening hours"}),
    )
    .await;
    assert_answered_by(&r, "all-minilm-l6-v2@1.0.0");
}
