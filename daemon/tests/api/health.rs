//! The health signal the fleet agent gates on: `GET /admin/health` on the admin socket
//! (readiness and each model version's requests by outcome) and
//! `coffer_model_requests_total`, counted with the real daemon: successful scores, a bad
//! request, 503s from a one-slot scoring queue under a flood (as many counted as the
//! clients saw), a request for an unknown model counted under none, and chat
//! completions, streamed and not, and a context overflow.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Client, Setup, eval_set, fixture};

async fn admin_health(s: &Setup) -> Value {
    let r = crate::common::admin_raw(
        &s.socket(),
        Method::GET,
        "/admin/health",
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    serde_json::from_slice(&r.body).unwrap()
}

/// The counts of one version in a health report.
fn counts(health: &Value, model: &str, version: &str) -> (u64, u64, u64) {
    let line = health["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == model && m["version"] == version)
        .unwrap_or_else(|| panic!("{model}@{version} not in {health}"));
    let n = |k: &str| line[k].as_u64().unwrap();
    (n("ok"), n("client_error"), n("server_error"))
}

fn infer_body(rows: usize) -> Vec<u8> {
    let rows: Vec<Vec<f64>> = eval_set("credit-lr").rows[..rows].to_vec();
    json!({
        "inputs": [{ "name": "features", "shape": [rows.len(), rows[0].len()], "datatype": "FP32", "data": rows }],
    })
    .to_string()
    .into_bytes()
}

/// `clients` connections, each sending `per_client` infer requests back to back; the
/// statuses seen, with the body of each 503.
async fn flood(c: &Client, key: &str, clients: usize, per_client: usize) -> Vec<(u16, Value)> {
    let body = infer_body(64);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, key, body) = (c.clone(), key.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await.unwrap();
            let mut seen = Vec::new();
            for _ in 0..per_client {
                let r = conn
                    .request(
                        Method::POST,
                        "/v2/models/credit-lr/infer",
                        Some(&key),
                        &body,
                    )
                    .await
                    .unwrap();
                let status = r.status.as_u16();
                let v = if status == 200 { Value::Null } else { r.json() };
                seen.push((status, v));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test]
async fn admin_health_counts_scoring_outcomes_as_the_clients_saw_them() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    // One queued request per model: a flood overflows the scoring queue, not admission.
    s.scoring_extra = "queue_capacity = 1\n".into();
    s.admission_extra = "max_in_flight = 512\nmax_queue = 512\n".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score,metrics", None);
    let c = s.client(d.addr);

    // Served and idle: listed at zero, and ready.
    let health = admin_health(&s).await;
    assert_eq!(health["ready"], true, "{health}");
    assert_eq!(health["components"]["models"]["ready"], true, "{health}");
    assert_eq!(counts(&health, "credit-lr", "1.0.0"), (0, 0, 0));

    for _ in 0..3 {
        let r = c
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(&key),
                &infer_body(2),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let r = c
        .request(
            Method::POST,
            "/v2/models/credit-lr/versions/1.0.0/infer",
            Some(&key),
            b"{\"inputs\": [",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // Unknown model and version: 404, counted under no model.
    let r = c
        .request(Method::POST, "/v2/models/nope/infer", Some(&key), b"{}")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = c
        .request(
            Method::POST,
            "/v2/models/credit-lr/versions/9.9.9/infer",
            Some(&key),
            b"{}",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let health = admin_health(&s).await;
    assert_eq!(counts(&health, "credit-lr", "1.0.0"), (3, 1, 0), "{health}");
    assert_eq!(health["models"].as_array().unwrap().len(), 1, "{health}");

    // Flood until the one-slot queue has refused some.
    let (mut ok, mut refused) = (3u64, 0u64);
    for _ in 0..30 {
        for (status, body) in flood(&c, &key, 48, 4).await {
            match status {
                200 => ok += 1,
                503 => {
                    assert_eq!(body["code"], "server_overloaded", "{body}");
                    assert!(
                        body["error"].as_str().unwrap().contains("at capacity"),
                        "a 503 from the model's queue, not admission: {body}"
                    );
                    refused += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no request was refused by the one-slot queue");

    let health = admin_health(&s).await;
    assert_eq!(
        counts(&health, "credit-lr", "1.0.0"),
        (ok, 1, refused),
        "{health}"
    );
    let metrics = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    for (outcome, n) in [("ok", ok), ("client_error", 1), ("server_error", refused)] {
        let line = format!(
            "coffer_model_requests_total{{model=\"credit-lr\",version=\"1.0.0\",outcome=\"{outcome}\"}} {n}\n"
        );
        assert!(metrics.contains(&line), "{line} not in {metrics}");
    }
    assert!(
        metrics.contains("# TYPE coffer_model_requests counter"),
        "{metrics}"
    );
    d.stop();
}

#[tokio::test]
async fn admin_health_counts_chat_completions_streamed_or_not() {
    let Some(dir) = crate::chat::model_dir() else {
        return;
    };
    let mut s = Setup::new();
    s.chat_extra = format!(
        "models = [\"{}\"]\nthreads = 1\ncontext = 512\nslots = 1\n",
        dir.display()
    );
    let d = s.start().await;
    let key = s.create_key("app", "chat", None);
    let c = s.client(d.addr);
    let ask = |content: &str, stream: bool| {
        json!({
            "model": "smollm2-135m",
            "messages": [{ "role": "user", "content": content }],
            "temperature": 0,
            "max_tokens": 4,
            "stream": stream,
        })
        .to_string()
        .into_bytes()
    };
    let post = |body: Vec<u8>| {
        let c = c.clone();
        let key = key.clone();
        async move {
            c.request(Method::POST, "/v1/chat/completions", Some(&key), &body)
                .await
        }
    };

    assert_eq!(post(ask("Say hi.", false)).await.status, 200);
    let r = post(ask("Say hi.", true)).await;
    assert_eq!(r.status, 200);
    assert!(
        String::from_utf8_lossy(&r.body).contains("data: [DONE]"),
        "{:?}",
        r.body
    );
    // A prompt past the context: 400 after the model is resolved.
    let r = post(ask(&"lighthouse ".repeat(700), true)).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // No such model, and a body that names none: counted under no model.
    let mut unknown: Value = serde_json::from_slice(&ask("Hi", false)).unwrap();
    unknown["model"] = json!("nope");
    assert_eq!(post(unknown.to_string().into_bytes()).await.status, 404);
    assert_eq!(post(b"{".to_vec()).await.status, 400);

    let health = admin_health(&s).await;
    assert_eq!(health["ready"], true, "{health}");
    assert_eq!(
        counts(&health, "smollm2-135m", "1.0.0"),
        (2, 1, 0),
        "{health}"
    );
    assert_eq!(health["models"].as_array().unwrap().len(), 1, "{health}");
    d.stop();
}
