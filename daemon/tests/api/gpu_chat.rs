//! Chat on a (scripted) GPU, end to end with the real SmolLM2 GGUF: `n_gpu_layers =
//! "auto"` places the model on the GPU it names with every layer (the sizes from the
//! GGUF's header, the KV cache of `slots × context`), its `cpu_variant` stays on the
//! CPU, the decision is logged and exported; then one GPU's failure leaves the model
//! alone while the other's sends its requests to the CPU variant, never silently, and
//! its recovery brings them back; a model whose GPU was failed at start is loaded onto
//! it when it recovers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chat::{model_dir, post};
use crate::common::{Client, Setup, metric};

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A copy of the SmolLM2 version under another model name (the GGUF hard-linked).
fn renamed(dir: &Path, to: &Path, name: &str) -> PathBuf {
    let version = to.join(name).join("1.0.0");
    std::fs::create_dir_all(version.join("eval")).unwrap();
    for entry in ["eval/perplexity.txt", "eval/golden.json"] {
        std::fs::copy(dir.join(entry), version.join(entry)).unwrap();
    }
    if std::fs::hard_link(dir.join(GGUF), version.join(GGUF)).is_err() {
        std::fs::copy(dir.join(GGUF), version.join(GGUF)).unwrap();
    }
    let manifest = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
    std::fs::write(
        version.join("manifest.toml"),
        manifest.replacen("name = \"smollm2-135m\"", &format!("name = \"{name}\""), 1),
    )
    .unwrap();
    version
}

fn ask() -> Vec<u8> {
    json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": "Say hello." }],
        "temperature": 0,
        "max_tokens": 3,
    })
    .to_string()
    .into_bytes()
}

fn gpu_line(readyz: &Value, gpu: u32) -> String {
    let detail = readyz["components"]["gpu"]["detail"].as_str().unwrap_or("");
    detail
        .split("; ")
        .find(|l| l.starts_with(&format!("GPU {gpu} ")))
        .unwrap_or("")
        .to_string()
}

/// Polls `/readyz` until GPU 0 and GPU 1 are in the given states.
async fn until_gpus(c: &Client, key: &str, gpu0: &str, gpu1: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = c.get("/readyz", Some(key)).await.json();
        let (a, b) = (gpu_line(&body, 0), gpu_line(&body, 1));
        if a.contains(gpu0) && b.contains(gpu1) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for GPU 0 {gpu0}, GPU 1 {gpu1}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks once; returns who answered and the fallback header.
async fn served_by(c: &Client, key: &str) -> (String, Option<String>) {
    let r = post(c, key, &ask()).await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    (
        r.headers["x-coffer-served-by"]
            .to_str()
            .unwrap()
            .to_string(),
        r.headers
            .get("x-coffer-gpu-fallback")
            .map(|v| v.to_str().unwrap().to_string()),
    )
}

/// The daemon with SmolLM2 on the scripted GPUs of `timeline` (100 ms steps), named on
/// `gpu`, with a renamed copy as its cpu_variant; returns it with a chat key and a client.
async fn start_on(
    dir: &Path,
    timeline: &str,
    gpu: u32,
) -> (Setup, crate::common::Daemon, String, Client) {
    let mut s = Setup::new();
    let variant = renamed(dir, &s.dir().join("models"), "smollm2-cpu");
    let path = s.dir().join("timeline.toml");
    std::fs::write(&path, timeline).unwrap();
    s.chat_extra = format!(
        "models = [\"{}\", \"{}\"]\nthreads = 1\ncontext = 512\nslots = 4\nn_gpu_layers = \"auto\"\n",
        dir.display(),
        variant.display()
    );
    s.gpu_extra = format!(
        "interval = \"100ms\"\nrecover_after = 2\nsimulate = \"{}\"\n\
         [gpu.models.smollm2-135m]\npolicy = \"cpu-variant\"\ncpu_variant = \"smollm2-cpu\"\ngpu = {gpu}\n",
        path.display()
    );
    let d = s.start().await;
    let key = s.create_key("app", "chat,metrics", None);
    let c = s.client(d.addr);
    (s, d, key, c)
}

#[tokio::test]
async fn auto_places_every_layer_on_the_named_gpu_and_only_its_failure_falls_back() {
    let Some(dir) = model_dir() else { return };
    // Two roomy GPUs (the model names GPU 1). GPU 0 fails first (after the daemon has
    // started), then GPU 1, then both recover.
    let (_s, d, key, c) = start_on(
        &dir,
        "[[gpus]]\nname = \"NVIDIA H100\"\n[[gpus]]\nname = \"NVIDIA H100\"\n\
         [[steps]]\nmemory_total_mib = 81559\nmemory_used_mib = 1024\nrepeat = 250\n\
         [[steps]]\ngpu = 0\nlost = true\nrepeat = 60\n\
         [[steps]]\ngpu = 1\nxid = [79]\nlost = true\nrepeat = 60\n\
         [[steps]]\nlost = false\n",
        1,
    )
    .await;

    // The placement, as exported: all 30 blocks and the output layer on GPU 1.
    let text = String::from_utf8(c.get("/metrics", Some(&key)).await.body.to_vec()).unwrap();
    let gauge = |name: &str, model: &str| {
        metric(
            &text,
            &format!("coffer_chat_{name}{{model=\"{model}\",version=\"1.0.0\"}}"),
        )
        .unwrap_or_else(|| panic!("no coffer_chat_{name} for {model}"))
    };
    assert_eq!(gauge("gpu_layers", "smollm2-135m"), 31.0);
    // SmolLM2-135M: 3 KV heads of 64 (keys and values, f16) per cell, 4 × 512 cells.
    assert_eq!(
        gauge("gpu_kv_cache_bytes", "smollm2-135m"),
        (30 * 4 * 512 * 3 * (64 + 64) * 2) as f64
    );
    let file = std::fs::metadata(dir.join(GGUF)).unwrap().len() as f64;
    let weights = gauge("gpu_weights_bytes", "smollm2-135m");
    assert!(
        weights > 0.9 * file && weights < file,
        "{weights} bytes of weights from a {file}-byte GGUF"
    );
    assert_eq!(gauge("gpu_layers", "smollm2-cpu"), 0.0, "the CPU variant");
    assert_eq!(gauge("gpu_weights_bytes", "smollm2-cpu"), 0.0);
    let log = d.log();
    assert!(
        log.contains("chat model placed")
            && log.contains("31 of 31 layers fit in GPU 1")
            && log.contains("the cpu_variant of smollm2-135m"),
        "{log}"
    );

    // GPU 0 fails: the model is on GPU 1 and keeps its own answers.
    until_gpus(&c, &key, "failed", "healthy").await;
    assert_eq!(
        served_by(&c, &key).await,
        ("smollm2-135m@1.0.0".to_string(), None)
    );
    // GPU 1 fails: its requests go to the CPU variant, and say so.
    until_gpus(&c, &key, "", "failed").await;
    assert_eq!(
        served_by(&c, &key).await,
        (
            "smollm2-cpu@1.0.0".to_string(),
            Some("cpu-variant".to_string())
        )
    );
    // Both recover: the GPU version answers again.
    until_gpus(&c, &key, "healthy", "healthy").await;
    assert_eq!(
        served_by(&c, &key).await,
        ("smollm2-135m@1.0.0".to_string(), None)
    );
    let text = String::from_utf8(c.get("/metrics", Some(&key)).await.body.to_vec()).unwrap();
    assert_eq!(
        metric(
            &text,
            "coffer_gpu_fallback_requests_total{model=\"smollm2-135m\",policy=\"cpu-variant\",outcome=\"served\",served_by=\"smollm2-cpu\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_model_whose_gpu_was_failed_at_start_goes_onto_it_when_it_recovers() {
    let Some(dir) = model_dir() else { return };
    // The GPU is off the bus from the first sample for 25 s, then back.
    let (_s, d, key, c) = start_on(
        &dir,
        "[[gpus]]\nname = \"NVIDIA L4\"\n\
         [[steps]]\nmemory_total_mib = 23034\nmemory_used_mib = 500\nlost = true\nrepeat = 250\n\
         [[steps]]\nlost = false\n",
        0,
    )
    .await;
    let layers = || async {
        let text = String::from_utf8(c.get("/metrics", Some(&key)).await.body.to_vec()).unwrap();
        metric(
            &text,
            "coffer_chat_gpu_layers{model=\"smollm2-135m\",version=\"1.0.0\"}",
        )
    };
    // Placed on the CPU at start (its GPU failed), and answered by the variant meanwhile.
    assert_eq!(layers().await, Some(0.0));
    assert!(
        d.log().contains("GPU 0 (gpu.models.NAME.gpu) is failed"),
        "{}",
        d.log()
    );
    assert_eq!(
        served_by(&c, &key).await,
        (
            "smollm2-cpu@1.0.0".to_string(),
            Some("cpu-variant".to_string())
        )
    );
    // The GPU recovers: the model is loaded onto it and answers itself again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while layers().await != Some(31.0) {
        assert!(
            Instant::now() < deadline,
            "not reloaded onto the GPU: {}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        d.log()
            .contains("chat model reloaded after its GPU recovered"),
        "{}",
        d.log()
    );
    assert_eq!(
        served_by(&c, &key).await,
        ("smollm2-135m@1.0.0".to_string(), None)
    );
}
