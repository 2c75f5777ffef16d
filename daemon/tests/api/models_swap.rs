//! Hot swap under load: 20 activations and rollbacks, of a scoring model and of a chat
//! model, while 16 clients score and chat without pause. Not one request may fail, and
//! both versions of each model must have answered. A chat version that misses its own
//! perplexity bound is refused by its gate.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Mutex;

use crate::common::{Setup, eval_set, fixture};
use crate::models::{ctl_json, derived_version, write_manifest};

/// A second chat version: the same GGUF under version 1.0.1.
fn chat_version(
    root: &std::path::Path,
    from: &std::path::Path,
    version: &str,
    perplexity_max: Option<f64>,
) -> std::path::PathBuf {
    let dst = root.join("smollm2-135m").join(version);
    let mut manifest = coffer_models::Manifest::parse(
        &std::fs::read_to_string(from.join("manifest.toml")).unwrap(),
    )
    .unwrap();
    for f in &manifest.files {
        let target = dst.join(&f.path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        if std::fs::hard_link(from.join(&f.path), &target).is_err() {
            std::fs::copy(from.join(&f.path), &target).unwrap();
        }
    }
    manifest.version = version.into();
    if let (Some(max), Some(gate)) = (
        perplexity_max,
        manifest.chat.as_mut().and_then(|c| c.eval.as_mut()),
    ) {
        gate.perplexity_max = max;
    }
    write_manifest(&dst, &manifest);
    dst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_switches_under_sixteen_busy_clients_fail_no_request() {
    let chat_model = crate::chat::model_dir();
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    if let Some(dir) = &chat_model {
        s.chat_extra = format!(
            "models = [\"{}\"]\nslots = 2\ncontext = 512\n",
            dir.display()
        );
    }
    s.admission_extra = "max_in_flight = 64\nmax_queue = 256\n".into();
    let d = s.start().await;
    let key = s.create_key("busy", "score,chat", None);
    let c = s.client(d.addr);

    let releases = s.dir().join("releases");
    let v2 = derived_version(&releases, "credit-mlp", "credit-lr", "2.0.0");
    assert_eq!(
        ctl_json(&s, &["models", "import", v2.to_str().unwrap()]).0,
        0
    );
    if let Some(dir) = &chat_model {
        let chat2 = chat_version(&releases, dir, "1.0.1", None);
        let (code, rec) = ctl_json(&s, &["models", "import", chat2.to_str().unwrap()]);
        assert_eq!((code, rec["state"].as_str()), (0, Some("ready")), "{rec}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let set = eval_set("credit-lr");
    let rows: Vec<Vec<f64>> = set.rows[..3].to_vec();
    let chat_clients = if chat_model.is_some() { 2 } else { 0 };
    let mut clients = Vec::new();
    for i in 0..16 {
        let (c, key, stop, failures, done, seen) = (
            c.clone(),
            key.clone(),
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&done),
            Arc::clone(&seen),
        );
        let rows = rows.clone();
        let is_chat = i < chat_clients;
        clients.push(tokio::spawn(async move {
            let mut conn = c.connect().await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let (path, body) = if is_chat {
                    (
                        "/v1/chat/completions",
                        json!({ "model": "smollm2-135m", "max_tokens": 4, "temperature": 0,
                                "messages": [{ "role": "user", "content": "Say hello." }] }),
                    )
                } else {
                    (
                        "/v2/models/credit-lr/infer",
                        json!({ "inputs": [{ "name": "features", "shape": [3, rows[0].len()], "datatype": "FP32", "data": rows }] }),
                    )
                };
                let r = match conn
                    .request(Method::POST, path, Some(&key), body.to_string().as_bytes())
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        failures.lock().await.push(format!("{path}: connection: {e}"));
                        conn = c.connect().await.unwrap();
                        continue;
                    }
                };
                if r.status != StatusCode::OK {
                    failures
                        .lock()
                        .await
                        .push(format!("{path}: {} {}", r.status, String::from_utf8_lossy(&r.body)));
                    continue;
                }
                if let Some(served) = r.headers.get("x-coffer-served-by") {
                    seen.lock().await.insert(served.to_str().unwrap_or("").to_string());
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // 20 switches: scoring activate/rollback, and chat too when the model is here.
    let mut switches = 0;
    let mut round = 0;
    while switches < 20 {
        let plan: Vec<Vec<&str>> = if round % 2 == 0 {
            vec![
                vec!["models", "activate", "credit-lr", "2.0.0"],
                vec!["models", "activate", "smollm2-135m", "1.0.1"],
            ]
        } else {
            vec![
                vec!["models", "rollback", "credit-lr"],
                vec!["models", "rollback", "smollm2-135m"],
            ]
        };
        for args in plan {
            if args[2] == "smollm2-135m" && chat_model.is_none() {
                continue;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            let (code, out) = ctl_json(&s, &args);
            assert_eq!(code, 0, "{args:?}: {out}");
            assert_eq!(out["changed"], true, "{args:?}: {out}");
            switches += 1;
        }
        round += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let failures = failures.lock().await;
    let seen = seen.lock().await;
    let done = done.load(Ordering::Relaxed);
    eprintln!("{switches} switches, {done} requests answered, served by {seen:?}");
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(done > 200, "clients kept busy: {done}");
    for id in ["credit-lr@1.0.0", "credit-lr@2.0.0"] {
        assert!(seen.contains(id), "{id} answered: {seen:?}");
    }
    if let Some(dir) = &chat_model {
        for id in ["smollm2-135m@1.0.0", "smollm2-135m@1.0.1"] {
            assert!(seen.contains(id), "{id} answered: {seen:?}");
        }
        // The chat gate refuses a version whose bound its own text does not meet.
        let strict = chat_version(&releases, dir, "1.0.2", Some(2.0));
        let out = s.ctl(&["--json", "models", "import", strict.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let reason = rec["reason"].as_str().unwrap_or("");
        assert!(reason.contains("exceeds perplexity_max 2"), "{rec}");
    }
    drop(d);
}
