//! GPU health end to end, with the scripted probe (`gpu.simulate`) standing in for the
//! GPU and NVML as the real one where this machine has none: a failing GPU turns
//! `/readyz` and `/v2/health/ready` false with the reason, is counted, exported under
//! dcgm-exporter's names and audited, and recovers only after `recover_after` healthy
//! samples; thermal throttling degrades without losing readiness; each fallback policy
//! does what it says under concurrent load; and a host without NVML serves on the CPU
//! after one log line.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use crate::common::{Client, Daemon, RawConn, Setup, fixture, metric};

fn body(input: &str, width: usize, rows: usize) -> Vec<u8> {
    let data: Vec<Vec<f64>> = (0..rows)
        .map(|r| {
            (0..width)
                .map(|c| ((r * 7 + c) % 5) as f64 * 0.25)
                .collect()
        })
        .collect();
    json!({
        "id": "gpu-test",
        "inputs": [{ "name": input, "shape": [rows, width], "datatype": "FP32", "data": data }],
    })
    .to_string()
    .into_bytes()
}

async fn infer(
    c: &Client,
    key: &str,
    model: &str,
    input: &str,
    width: usize,
    rows: usize,
) -> crate::common::Resp {
    let path = format!("/v2/models/{model}/infer");
    c.request(Method::POST, &path, Some(key), &body(input, width, rows))
        .await
}

fn timeline(s: &Setup, text: &str) -> String {
    let path = s.dir().join("timeline.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn readyz(c: &Client, key: &str) -> (u16, Value) {
    let r = c.get("/readyz", Some(key)).await;
    (r.status.as_u16(), r.json())
}

/// Polls `/readyz` until `pred` holds; returns the body then.
async fn until(c: &Client, key: &str, what: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(c, key).await;
        if pred(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last /readyz {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a ready `/readyz` whose `gpu` detail contains `text`; returns that detail.
async fn until_gpu(c: &Client, key: &str, text: &str) -> String {
    let body = until(c, key, text, |st, b| {
        st == 200 && gpu_detail(b).contains(text)
    })
    .await;
    gpu_detail(&body)
}

fn gpu_detail(readyz: &Value) -> String {
    readyz["components"]["gpu"]["detail"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Starts the daemon of `s` and makes a key with score and metrics scopes.
async fn start(s: &Setup) -> (Daemon, String, Client) {
    let d = s.start().await;
    let key = s.create_key("ops", "score,metrics", None);
    let c = s.client(d.addr);
    (d, key, c)
}

#[tokio::test]
async fn a_failed_gpu_drives_readiness_metrics_and_audit_then_recovers_after_n_samples() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let script = timeline(
        &s,
        r#"
[[gpus]]
name = "NVIDIA H200"
uuid = "GPU-7f6e5d4c"
[[steps]]
repeat = 5
temperature_c = 41
slowdown_c = 90
power_w = 120
power_limit_w = 700
memory_used_mib = 1024
memory_total_mib = 143771
utilization_pct = 12
ecc_sbe = 0
ecc_dbe = 0
pcie_replays = 0
[[steps]]
repeat = 10
xid = [79]
lost = true
[[steps]]
lost = false
"#,
    );
    s.gpu_extra = format!("interval = \"100ms\"\nrecover_after = 3\nsimulate = \"{script}\"\n");
    let (d, key, c) = start(&s).await;

    let healthy = until_gpu(&c, &key, "healthy").await;
    assert!(healthy.contains("NVIDIA H200"), "{healthy}");

    let failed = until(&c, &key, "the XID to fail the GPU", |st, _| st == 503).await;
    let detail = failed["components"]["gpu"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("failed") && detail.contains("XID 79"),
        "{detail}"
    );
    assert_eq!(failed["components"]["gpu"]["ready"], false);
    let v2 = c.get("/v2/health/ready", Some(&key)).await;
    assert_eq!(
        v2.status.as_u16(),
        400,
        "the OIP readiness (4xx when not ready) follows the GPU"
    );

    let m = c.get("/metrics", Some(&key)).await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    let labels = r#"{gpu="0",UUID="GPU-7f6e5d4c",modelName="NVIDIA H200"}"#;
    for (name, want) in [
        ("DCGM_FI_DEV_XID_ERRORS", 79.0),
        ("DCGM_FI_DEV_GPU_TEMP", 41.0),
        ("DCGM_FI_DEV_POWER_USAGE", 120.0),
        ("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", 700.0),
        ("DCGM_FI_DEV_FB_USED", 1024.0),
        ("DCGM_FI_DEV_GPU_UTIL", 12.0),
        ("coffer_gpu_state", 2.0),
    ] {
        let got = metric(&text, &format!("{name}{labels}"));
        assert_eq!(got, Some(want), "{name} in\n{text}");
    }
    assert_eq!(
        metric(
            &text,
            r#"coffer_gpu_transitions_total{gpu="0",to="failed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(text.matches("# EOF").count(), 1, "one exposition");

    // Ten lost samples, then healthy ones: ready again only after three of them.
    let t_failed = Instant::now();
    let back = until(&c, &key, "recovery", |st, _| st == 200).await;
    let waited = t_failed.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "recovered after {waited:?}: sooner than 3 healthy samples"
    );
    let detail = back["components"]["gpu"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("healthy") && detail.contains("3 consecutive"),
        "{detail}"
    );
    let m = c.get("/metrics", Some(&key)).await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert_eq!(
        metric(
            &text,
            r#"coffer_gpu_transitions_total{gpu="0",to="healthy"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, &format!("coffer_gpu_state{labels}")),
        Some(0.0)
    );

    let log = d.log();
    assert!(log.contains("SIMULATED"), "a simulation says so");
    assert_eq!(log.matches("GPU health changed").count(), 2, "{log}");
    d.stop();
    let audit = std::fs::read_dir(s.dir().join("state/audit"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert_eq!(
        audit.matches(r#""kind":"gpu_state""#).count(),
        2,
        "both transitions audited"
    );
    assert!(audit.contains(r#""to":"failed""#) && audit.contains("XID 79"));
    let verify = s.ctl(&[
        "audit",
        "verify",
        "--dir",
        &s.dir().join("state/audit").display().to_string(),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test]
async fn thermal_throttling_degrades_with_the_metric_and_keeps_serving() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let script = timeline(
        &s,
        "[[gpus]]\nname = \"NVIDIA L4\"\n[[steps]]\ntemperature_c = 87\nslowdown_c = 90\nthrottle = [\"hw_thermal\", \"sw_power_cap\"]\n",
    );
    s.gpu_extra = format!("interval = \"100ms\"\nsimulate = \"{script}\"\n");
    let (d, key, c) = start(&s).await;
    let detail = until_gpu(&c, &key, "degraded").await;
    assert!(
        detail.contains("hw_thermal") && detail.contains("87 °C"),
        "{detail}"
    );
    let text = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    let labels = r#"{gpu="0",UUID="GPU-scripted-0",modelName="NVIDIA L4"}"#;
    assert_eq!(
        metric(
            &text,
            &format!("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{labels}")
        ),
        Some(68.0)
    );
    assert_eq!(
        metric(&text, &format!("coffer_gpu_state{labels}")),
        Some(1.0)
    );
    let r = infer(&c, &key, "credit-lr", "features", 61, 2).await;
    assert_eq!(r.status.as_u16(), 200, "a degraded GPU keeps serving");
    d.stop();
}

#[tokio::test]
async fn each_fallback_policy_does_what_it_says_under_load() {
    let mut s = Setup::new();
    s.scoring_models = vec![
        fixture("credit-lr"),
        fixture("credit-mlp"),
        fixture("credit-gbdt"),
        fixture("aml-risk"),
    ];
    // Failed from the first sample on: an uncorrectable ECC error.
    let script = timeline(
        &s,
        "[[gpus]]\nname = \"NVIDIA A100\"\n[[steps]]\necc_dbe = 2\n",
    );
    s.gpu_extra = format!(
        "interval = \"100ms\"\nsimulate = \"{script}\"\n\
         [gpu.models.credit-gbdt]\npolicy = \"fail\"\n\
         [gpu.models.credit-mlp]\npolicy = \"cpu-variant\"\ncpu_variant = \"credit-lr\"\n\
         [gpu.models.aml-risk]\npolicy = \"shed\"\nshed_max_in_flight = 2\n"
    );
    let (d, key, c) = start(&s).await;
    let failed = until(&c, &key, "the ECC failure", |st, _| st == 503).await;
    let detail = failed["components"]["gpu"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("credit-mlp: served by credit-lr (cpu-variant)")
            && detail.contains("double-bit"),
        "{detail}"
    );

    let burst = |path: &'static str, body: Vec<u8>, n: usize| {
        let c = c.clone();
        let key = key.clone();
        async move {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let c = c.clone();
                    let key = key.clone();
                    let body = body.clone();
                    tokio::spawn(
                        async move { c.request(Method::POST, path, Some(&key), &body).await },
                    )
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };

    // fail: every request refused with the reason, never queued.
    for r in burst("/v2/models/credit-gbdt/infer", body("features", 61, 3), 24).await {
        assert_eq!(r.status.as_u16(), 503);
        assert!(r.headers.contains_key("retry-after"));
        let b = r.json();
        assert_eq!(b["code"], "gpu_unavailable", "{b}");
        assert!(b["error"].as_str().unwrap().contains("double-bit"), "{b}");
    }

    // cpu-variant: every request answered by the variant, and said so.
    let direct = infer(&c, &key, "credit-lr", "features", 61, 3).await;
    assert_eq!(direct.status.as_u16(), 200);
    for r in burst("/v2/models/credit-mlp/infer", body("features", 61, 3), 24).await {
        assert_eq!(
            r.status.as_u16(),
            200,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.headers["x-coffer-served-by"], "credit-lr@1.0.0");
        assert_eq!(r.headers["x-coffer-gpu-fallback"], "cpu-variant");
        // The variant's answer (batched with others, so equal up to float rounding).
        let (got, want) = (r.json(), direct.json());
        let got = got["outputs"][0]["data"].as_array().unwrap();
        let want = want["outputs"][0]["data"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    // shed: two requests held in flight take both slots; the next is refused at once.
    let path = "/v2/models/aml-risk/infer";
    let held_body = body("transaction", 12, 1);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut raw = RawConn::open(&c).await;
        raw.post_head(path, &key, held_body.len()).await;
        held.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c.request(Method::POST, path, Some(&key), &held_body).await;
    assert_eq!(r.status.as_u16(), 503);
    assert_eq!(r.json()["code"], "gpu_shedding");
    for raw in &mut held {
        raw.send(&held_body).await;
        assert_eq!(raw.read_status().await, 200);
    }
    drop(held);
    // Under a burst only 200 and 503 gpu_shedding, every answer labelled.
    let results = burst(path, body("transaction", 12, 4), 48).await;
    let mut ok = 0;
    let mut shed = 0;
    for r in &results {
        match r.status.as_u16() {
            200 => {
                ok += 1;
                assert_eq!(r.headers["x-coffer-gpu-fallback"], "shed");
                assert_eq!(r.headers["x-coffer-served-by"], "aml-risk@1.0.0");
            }
            503 => {
                shed += 1;
                assert_eq!(r.json()["code"], "gpu_shedding");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 2, "served {ok}, shed {shed}");
    let text = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    let count = |model: &str, policy: &str, outcome: &str, by: &str| {
        metric(
            &text,
            &format!(r#"coffer_gpu_fallback_requests_total{{model="{model}",policy="{policy}",outcome="{outcome}",served_by="{by}"}}"#),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("credit-gbdt", "fail", "refused", "none"), 24.0);
    assert_eq!(
        count("credit-mlp", "cpu-variant", "served", "credit-lr"),
        24.0
    );
    assert_eq!(
        count("aml-risk", "shed", "served", "aml-risk"),
        f64::from(ok + 2)
    );
    assert_eq!(
        count("aml-risk", "shed", "shed", "none"),
        f64::from(shed + 1)
    );
    // A model without a policy is untouched by the GPU's state.
    let r = infer(&c, &key, "credit-lr", "features", 61, 1).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(!r.headers.contains_key("x-coffer-gpu-fallback"));
    d.stop();
}

#[tokio::test]
async fn a_cpu_variant_with_other_outputs_stops_the_start_with_the_reason() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr"), fixture("credit-gbdt")];
    s.gpu_extra =
        "[gpu.models.credit-gbdt]\npolicy = \"cpu-variant\"\ncpu_variant = \"credit-lr\"\n".into();
    let config = s.write_config();
    let out = std::process::Command::new(crate::common::COFFERD)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gpu.models.credit-gbdt") && err.contains("other outputs"),
        "{err}"
    );
}

#[tokio::test]
async fn without_nvml_the_daemon_serves_on_cpu_after_one_log_line() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        eprintln!("skipped: this host has an NVIDIA GPU (the hw-tests cover it)");
        return;
    }
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    s.gpu_extra = "interval = \"50ms\"\n".into();
    let (d, key, c) = start(&s).await;
    let (status, b) = readyz(&c, &key).await;
    assert_eq!(status, 200, "{b}");
    let detail = b["components"]["gpu"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("no NVIDIA GPU") && detail.contains("serving on CPU"),
        "{detail}"
    );
    let r = infer(&c, &key, "credit-lr", "features", 61, 2).await;
    assert_eq!(r.status.as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let text = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    assert_eq!(metric(&text, "coffer_gpu_present"), Some(0.0));
    let log = d.log();
    assert_eq!(log.matches("no NVIDIA GPU").count(), 1, "{log}");
    assert!(!log.contains("ERROR") && !log.contains("WARN"), "{log}");
    d.stop();
}
