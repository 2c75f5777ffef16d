//! Telemetry end to end: cofferd spools allowlisted records, coffer-agent ships them to
//! a real Prometheus (the Debian package, remote-write receiver on 127.0.0.1) and to an
//! OTLP/HTTP receiver; an outage of Prometheus loses nothing and delivers once it is
//! back; no identifier sent in requests appears in anything written or sent.
//! Without a `prometheus` binary the test says so and passes locally, but fails under CI.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use coffer_agent::AgentConfig;
use coffer_agent::egress::deliver_once;
use http::Method;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::common::{PII, Setup, fixture, spellings};
use crate::prometheus::{Prometheus, free_port, prometheus_binary};

/// A minimal OTLP/HTTP logs receiver that keeps every body it accepts.
pub async fn otlp_receiver() -> (u16, Arc<Mutex<Vec<Bytes>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let keep = Arc::clone(&keep);
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let keep = Arc::clone(&keep);
                    async move {
                        let ok = req.uri().path() == "/v1/logs"
                            && req
                                .headers()
                                .get("content-type")
                                .is_some_and(|v| v == "application/json");
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status =
                            if ok && serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                                keep.lock().unwrap().push(body);
                                200
                            } else {
                                400
                            };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"{}")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, seen)
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(path);
            }
        }
    }
    hits
}

/// Identifiers in texts to embed, in one that is embedded, one too long, and as a
/// model name: none may reach a log, a state file or the telemetry.
async fn embedding_traffic(setup: &Setup, addr: std::net::SocketAddr, key: &str) {
    let client = setup.client(addr);
    let texts: Vec<String> = PII
        .iter()
        .map(|p| format!("customer {p} asked about the savings rate"))
        .collect();
    let embed = |body: serde_json::Value| {
        let client = client.clone();
        async move {
            client
                .request(
                    Method::POST,
                    "/v1/embeddings",
                    Some(key),
                    body.to_string().as_bytes(),
                )
                .await
                .status
        }
    };
    assert_eq!(
        embed(serde_json::json!({"model": "all-minilm-l6-v2", "input": texts})).await,
        200
    );
    let long = format!("{} {}", PII[0], "word ".repeat(300));
    assert_eq!(
        embed(serde_json::json!({"model": "all-minilm-l6-v2", "input": long})).await,
        400
    );
    assert_eq!(
        embed(serde_json::json!({"model": PII[3], "input": PII[1]})).await,
        404
    );
}

async fn traffic(setup: &Setup, addr: std::net::SocketAddr, key: &str) {
    let client = setup.client(addr);
    let row = vec![0.1f32; 61];
    let ok = serde_json::json!({"inputs": [{"name": "features", "shape": [1, 61], "datatype": "FP32", "data": row}]});
    for _ in 0..5 {
        let r = client
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(key),
                ok.to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    // Identifiers in model names, input names, ids and bodies that fail.
    let r = client
        .request(
            Method::POST,
            &format!("/v2/models/{}/infer", PII[0]),
            Some(key),
            b"{}",
        )
        .await;
    assert_eq!(r.status, 404);
    let bad = serde_json::json!({"id": PII[1], "inputs": [{"name": PII[2], "shape": [1, 1], "datatype": "FP32", "data": [1]}]});
    let r = client
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(key),
            bad.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = client
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(key),
            PII[3].as_bytes(),
        )
        .await;
    assert_eq!(r.status, 400);
    // A card number and a phone number as feature values (scored, never stored).
    let mut row = vec![0.1f64; 61];
    row[0] = 4111111111111111.0;
    row[1] = 13812345678.0;
    let features = serde_json::json!({"inputs": [{"name": "features", "shape": [1, 61], "datatype": "FP64", "data": row}]});
    let r = client
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(key),
            features.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 400, "FP64 is the wrong datatype for this model");
    let features = features.to_string().replace("FP64", "FP32");
    let r = client
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(key),
            features.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_reaches_prometheus_and_otlp_survives_an_outage_and_leaks_nothing() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install prometheus (see .ci/run)"
        );
        eprintln!("prometheus not installed; skipping the remote-write test");
        return;
    };
    let mut setup = Setup::new();
    setup.scoring_models = vec![fixture("credit-lr")];
    setup.telemetry_extra = "interval = \"200ms\"\ndecisions_epsilon = 0.5\n".into();
    let embedding = crate::embeddings::model_dir();
    if let Some(dir) = &embedding {
        setup.embedding_extra = format!("models = [\"{}\"]\nthreads = 1\n", dir.display());
    }
    let daemon = setup.start().await;
    let key = setup.create_key("scorer", "score", None);
    traffic(&setup, daemon.addr, &key).await;
    if embedding.is_some() {
        let embedder = setup.create_key("embedder", "embed", None);
        embedding_traffic(&setup, daemon.addr, &embedder).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;

    let prom_dir = setup.dir().join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let port = free_port();
    let prometheus = Prometheus::start(&binary, &prom_dir, port).await;
    let (otlp_port, otlp_seen) = otlp_receiver().await;
    let agent = AgentConfig::parse(&format!(
        "site_id = \"branch-7\"\nallow_insecure_http = true\n[daemon]\nadmin_socket = \"{}\"\n[telemetry]\n\
         remote_write_url = \"http://127.0.0.1:{port}/api/v1/write\"\n\
         otlp_logs_url = \"http://127.0.0.1:{otlp_port}/v1/logs\"\nbatch_size = 50\ntimeout = \"5s\"\n",
        setup.socket().display()
    ))
    .unwrap();

    let mut sent = 0;
    loop {
        let d = deliver_once(&agent, None).await.expect("delivery succeeds");
        sent += d.records;
        assert_eq!(d.refused, 0);
        if d.records == 0 {
            break;
        }
    }
    assert!(sent > 5, "only {sent} records");
    let requests = prometheus.query("coffer_requests_total{route=\"/v2/models/{model}/infer\",status=\"200\",site=\"branch-7\"}").await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["value"][1], "6");
    assert!(
        !prometheus
            .query("coffer_model_active{model=\"credit-lr\",version=\"1.0.0\"}")
            .await
            .is_empty()
    );
    assert!(
        !prometheus
            .query("coffer_request_duration_seconds_bucket{le=\"+Inf\"}")
            .await
            .is_empty()
    );
    let decisions = prometheus
        .query("coffer_scoring_decisions_noisy{model=\"credit-lr\"}")
        .await;
    assert!(!decisions.is_empty(), "noisy decision counts arrive");
    let rows = prometheus
        .query("coffer_scoring_rows_total{model=\"credit-lr\"}")
        .await;
    assert_eq!(rows[0]["value"][1], "6");
    {
        let events = otlp_seen.lock().unwrap();
        let all = events
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<String>();
        assert!(
            all.contains("\"model_loaded\"") && all.contains("\"started\""),
            "{all}"
        );
    }

    // Outage: Prometheus goes away, traffic goes on, delivery fails and keeps the batch.
    prometheus.kill();
    traffic(&setup, daemon.addr, &key).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let err = deliver_once(&agent, None)
        .await
        .expect_err("the sink is down");
    assert!(err.to_string().contains("remote-write"), "{err}");
    let pending = crate::common::admin_raw(
        &setup.socket(),
        Method::GET,
        "/admin/telemetry?max=1",
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let pending: serde_json::Value = serde_json::from_slice(&pending.body).unwrap();
    assert!(pending["pending"].as_u64().unwrap() > 0, "{pending}");

    // Back: everything spooled meanwhile arrives.
    let prometheus = Prometheus::start(&binary, &prom_dir, port).await;
    loop {
        let d = deliver_once(&agent, None)
            .await
            .expect("delivery succeeds after the outage");
        if d.records == 0 {
            break;
        }
    }
    let requests = prometheus
        .query("coffer_requests_total{route=\"/v2/models/{model}/infer\",status=\"200\"}")
        .await;
    assert_eq!(requests[0]["value"][1], "12", "{requests:?}");

    // Nothing anywhere carries an identifier: the daemon's log, its state files, what
    // the OTLP receiver got, and every label value Prometheus stored.
    let log = daemon.log();
    let otlp = otlp_seen
        .lock()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<String>();
    let (_, labels) = prometheus
        .get("/api/v1/series?match[]=%7B__name__%3D~%22coffer_.%2B%22%7D")
        .await
        .unwrap();
    for pii in PII.iter().flat_map(|p| spellings(p)) {
        let pii = pii.as_str();
        assert!(!log.contains(pii), "daemon log has {pii}");
        assert!(!otlp.contains(pii), "OTLP has {pii}");
        assert!(!labels.contains(pii), "Prometheus has {pii}");
        let hits = files_contain(&setup.dir().join("state"), pii.as_bytes());
        assert!(hits.is_empty(), "{pii} in {hits:?}");
        let hits = files_contain(&prom_dir, pii.as_bytes());
        assert!(hits.is_empty(), "{pii} in Prometheus's files {hits:?}");
    }
    assert!(
        labels.contains("credit-lr"),
        "the series query works: {labels}"
    );
    prometheus.kill();
    daemon.stop();
}

/// The `audit_checkpoint` log records among what the OTLP receiver accepted, as
/// attribute maps, in the order they arrived.
fn shipped_checkpoints(
    seen: &Mutex<Vec<Bytes>>,
) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut out = Vec::new();
    for body in seen.lock().unwrap().iter() {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        for rl in v["resourceLogs"].as_array().unwrap() {
            for sl in rl["scopeLogs"].as_array().unwrap() {
                for r in sl["logRecords"].as_array().unwrap() {
                    if r["eventName"] != "audit_checkpoint" {
                        continue;
                    }
                    out.push(
                        r["attributes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| {
                                (
                                    a["key"].as_str().unwrap().to_string(),
                                    a["value"]["stringValue"].as_str().unwrap().to_string(),
                                )
                            })
                            .collect(),
                    );
                }
            }
        }
    }
    out
}

/// The checkpoint records in an audit directory's files: (seq, upto_seq, upto_hash).
fn logged_checkpoints(dir: &Path) -> Vec<(u64, u64, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .filter(|r| r["event"]["kind"] == "checkpoint")
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["event"]["upto_seq"].as_u64().unwrap(),
                r["event"]["upto_hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_checkpoints_reach_otlp_once_each_verify_and_wait_out_an_outage() {
    use coffer_agent::checkpoints::{ShipState, ship, verify};

    let mut setup = Setup::new();
    setup.scoring_models = vec![fixture("credit-lr")];
    setup.audit_extra = "checkpoint_every = 5\n".into();
    let daemon = setup.start().await;
    let key = setup.create_key("scorer", "score", None);
    for name in ["spare-1", "spare-2"] {
        assert!(
            setup
                .ctl(&["keys", "create", "--name", name, "--scopes", "chat"])
                .status
                .success()
        );
        assert!(setup.ctl(&["keys", "revoke", name]).status.success());
    }
    traffic(&setup, daemon.addr, &key).await;

    let admin_socket = setup.socket();
    let list = |after: u64| {
        let socket = admin_socket.clone();
        async move {
            let r = crate::common::admin_raw(
                &socket,
                Method::GET,
                &format!("/admin/audit/checkpoints?after={after}"),
                None,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            (
                r.status,
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(),
            )
        }
    };
    // The writer appends off the request path: wait until the records are in the file.
    let mut listed = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, body) = list(0).await;
        assert_eq!(status, 200, "{body}");
        listed = body;
        if listed["checkpoints"].as_array().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit_dir = setup.dir().join("state").join("audit");
    let public_key = std::fs::read_to_string(audit_dir.join("signing.pub")).unwrap();
    assert_eq!(listed["public_key"], public_key.trim(), "{listed}");
    assert!(
        listed["checkpoints"].as_array().unwrap().len() >= 3,
        "{listed}"
    );
    let (status, _) = list(u64::MAX).await;
    assert_eq!(status, 200);
    // A malformed acknowledgement is a JSON error with a code, not a plain-text rejection.
    let r = crate::common::admin_raw(
        &admin_socket,
        Method::POST,
        "/admin/telemetry/ack",
        Some(serde_json::json!({ "batch": 3 })),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");

    let (otlp_port, otlp_seen) = otlp_receiver().await;
    let state_dir = setup.dir().join("agent-state");
    let agent_to = |port: u16| {
        AgentConfig::parse(&format!(
            "site_id = \"branch-7\"\nallow_insecure_http = true\nstate_dir = \"{}\"\n[daemon]\nadmin_socket = \"{}\"\n\
             [telemetry]\notlp_logs_url = \"http://127.0.0.1:{port}/v1/logs\"\ntimeout = \"5s\"\n",
            state_dir.display(),
            setup.socket().display()
        ))
        .unwrap()
    };
    let agent = agent_to(otlp_port);
    let first = ship(&agent, None).await.expect("checkpoints shipped");
    assert!(first.checkpoints >= 3, "{first:?}");
    assert!(!first.audit_off);
    assert_eq!(
        ShipState::load(&state_dir).unwrap().last_seq,
        first.last_seq
    );

    // The sink is down: more checkpoints are written, none is remembered as shipped.
    for i in 0..3 {
        let name = format!("during-outage-{i}");
        assert!(
            setup
                .ctl(&["keys", "create", "--name", &name, "--scopes", "chat"])
                .status
                .success()
        );
        assert!(setup.ctl(&["keys", "revoke", &name]).status.success());
    }
    let err = ship(&agent_to(free_port()), None)
        .await
        .expect_err("the OTLP sink is down");
    assert!(err.to_string().contains("otlp"), "{err}");
    assert_eq!(
        ShipState::load(&state_dir).unwrap().last_seq,
        first.last_seq
    );

    // A restart: cofferd checkpoints at shutdown; the agent's telemetry loop (its first
    // round, then it waits `interval`) ships what the outage held back and the
    // shutdown checkpoint, and nothing twice.
    daemon.stop();
    let daemon = setup.start().await;
    coffer_agent::egress::run(&agent, None, tokio::time::sleep(Duration::from_secs(2))).await;
    let second_last = ShipState::load(&state_dir).unwrap().last_seq;
    let second_count = shipped_checkpoints(&otlp_seen).len() - first.checkpoints;
    assert!(second_count >= 2, "{second_count}");
    assert!(second_last > first.last_seq);
    let again = ship(&agent, None).await.unwrap();
    assert_eq!(again.checkpoints, 0);
    assert_eq!(again.last_seq, second_last);
    daemon.stop();

    let shipped = shipped_checkpoints(&otlp_seen);
    let seqs: Vec<u64> = shipped
        .iter()
        .map(|a| a["coffer.audit.seq"].parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "no repeats, oldest first: {seqs:?}"
    );
    for a in &shipped {
        assert_eq!(a["coffer.site"], "branch-7");
        assert_eq!(a["coffer.audit.public_key"], public_key.trim());
        let upto_seq: u64 = a["coffer.audit.upto_seq"].parse().unwrap();
        assert!(
            verify(
                &a["coffer.audit.public_key"],
                upto_seq,
                &a["coffer.audit.upto_hash"],
                &a["coffer.audit.signature"]
            ),
            "{a:?}"
        );
        assert!(!verify(
            &a["coffer.audit.public_key"],
            upto_seq + 1,
            &a["coffer.audit.upto_hash"],
            &a["coffer.audit.signature"]
        ));
    }
    // What the fleet holds is exactly the log's checkpoints up to the last shipped
    // (the final shutdown's is not shipped yet); each names its place in the chain.
    let logged: Vec<(u64, u64, String)> = logged_checkpoints(&audit_dir)
        .into_iter()
        .filter(|(seq, _, _)| *seq <= second_last)
        .collect();
    let held: Vec<(u64, u64, String)> = shipped
        .iter()
        .map(|a| {
            (
                a["coffer.audit.seq"].parse().unwrap(),
                a["coffer.audit.upto_seq"].parse().unwrap(),
                a["coffer.audit.upto_hash"].clone(),
            )
        })
        .collect();
    assert_eq!(held, logged);

    // Without an audit log there is nothing to ship, and the agent says so.
    setup.audit_extra = "enabled = false\n".into();
    let daemon = setup.start().await;
    let (status, body) = list(0).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "audit_disabled", "{body}");
    let off = ship(&agent, None).await.unwrap();
    assert!(off.audit_off);
    assert_eq!(off.checkpoints, 0);
    daemon.stop();
}
