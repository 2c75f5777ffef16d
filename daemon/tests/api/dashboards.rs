//! Every query of the Grafana dashboards in `dashboards/` runs against a real
//! Prometheus holding real data, and returns data without error: cofferd (scoring and,
//! where the dev chat model is installed, chat) scraped over TLS with a metrics key, its
//! telemetry and site report remote-written by coffer-agent, and 20 more sites
//! reporting each rollout state the fleet dashboard shows. cofferd's GPU watch runs on
//! its scripted probe (a GPU that fails). Only the dcgm-exporter panels (no GPU here)
//! may come back empty, and they must still run.
//! Without a `prometheus` binary the test says so and passes locally, but fails under CI.

use std::time::Duration;

use coffer_agent::AgentConfig;
use coffer_agent::egress::deliver_once;
use coffer_agent::site_report::Reporter;
use coffer_agent::sync::state::{OutcomeKind, SyncState};
use http::Method;
use serde_json::Value;

use crate::common::{Setup, fixture};
use crate::fleet_status::site;
use crate::prometheus::{Prometheus, installed};
use crate::telemetry::otlp_receiver;

/// Every query target of a dashboard: (panel title, in the dcgm row, expr).
fn targets(dashboard: &Value) -> Vec<(String, bool, String)> {
    fn walk(panels: &[Value], dcgm: bool, out: &mut Vec<(String, bool, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("").to_string();
            let in_dcgm = dcgm || title == "GPU (dcgm-exporter)";
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, in_dcgm, out);
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((title.clone(), in_dcgm, expr.to_string()));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().unwrap(), false, &mut out);
    out
}

/// Grafana's variables as a viewer would set them.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in [
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("$__range", "1h"),
        ("${site}", "branch-7"),
        ("$site", "branch-7"),
        ("${model}", "credit-lr"),
        ("$model", "credit-lr"),
        ("${ring}", "canary"),
        ("$ring", "canary"),
    ] {
        out = out.replace(var, value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    let Some(binary) = installed("the dashboards test") else {
        return;
    };
    let chat = crate::chat::model_dir();
    let mut setup = Setup::new();
    setup.scoring_models = vec![fixture("credit-lr")];
    setup.telemetry_extra = "interval = \"200ms\"\ndecisions_epsilon = 0.5\n".into();
    if let Some(dir) = &chat {
        setup.chat_extra = format!(
            "models = [\"{}\"]\nthreads = 1\ncontext = 512\n",
            dir.display()
        );
    }
    // cofferd's GPU watch on its scripted probe (no GPU here): one GPU that fails with an
    // uncorrectable ECC error after its first sample, credit-lr shed to the CPU meanwhile
    // (GPU state, transitions and fallback panels).
    let timeline = setup.dir().join("timeline.toml");
    std::fs::write(
        &timeline,
        "[[gpus]]\nname = \"NVIDIA L4\"\n[[steps]]\n[[steps]]\necc_dbe = 2\n",
    )
    .unwrap();
    setup.gpu_extra = format!(
        "interval = \"100ms\"\nsimulate = \"{}\"\n\
         [gpu.models.credit-lr]\npolicy = \"shed\"\nshed_max_in_flight = 8\n",
        timeline.display()
    );
    let daemon = setup.start().await;
    let scorer = setup.create_key("scorer", "score,chat", None);
    let metrics_key = setup.create_key("prometheus", "metrics", None);

    let scrape = format!(
        "scrape_configs:\n  - job_name: cofferd\n    scrape_interval: 1s\n    scheme: https\n    \
         tls_config:\n      ca_file: {ca}\n      server_name: localhost\n    \
         authorization:\n      credentials: {metrics_key}\n    \
         static_configs:\n      - targets: ['127.0.0.1:{cofferd}']\n",
        ca = setup.pki.ca_path("server").display(),
        cofferd = daemon.addr.port(),
    );
    let prometheus = Prometheus::under(&binary, setup.dir(), &scrape).await;
    let port = prometheus.port;

    // Traffic: scoring, and chat (streamed, for time to first token) when installed.
    let client = setup.client(daemon.addr);
    for i in 0..30 {
        let row = vec![0.01 * i as f32; 61];
        let body = serde_json::json!({"inputs": [{"name": "features", "shape": [1, 61], "datatype": "FP32", "data": row}]})
            .to_string();
        let r = client
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(&scorer),
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    // And some that fail (the errors and rejections panels).
    let r = client
        .request(Method::POST, "/v2/models/credit-lr/infer", None, b"{}")
        .await;
    assert_eq!(r.status, 401);
    let r = client
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(&scorer),
            b"{}",
        )
        .await;
    assert_eq!(r.status, 400);
    if chat.is_some() {
        for stream in [false, true] {
            let body = serde_json::json!({
                "model": "smollm2-135m",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
                "stream": stream,
            })
            .to_string();
            let r = client
                .request(
                    Method::POST,
                    "/v1/chat/completions",
                    Some(&scorer),
                    body.as_bytes(),
                )
                .await;
            assert_eq!(r.status, 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The branch's agent ships its telemetry and its report: its sync tried a release,
    // is fetching the next, and trusts metadata.
    let (otlp_port, _) = otlp_receiver().await;
    let agent = AgentConfig::parse(&format!(
        "site_id = \"branch-7\"\nallow_insecure_http = true\nstate_dir = \"{}\"\n\
         [daemon]\nadmin_socket = \"{}\"\n[telemetry]\n\
         remote_write_url = \"http://127.0.0.1:{port}/api/v1/write\"\nbatch_size = 200\n",
        setup.dir().join("agent").display(),
        setup.socket().display()
    ))
    .unwrap();
    let sync = agent.state_dir.join("sync");
    let mut state = SyncState::default();
    state.record("credit-lr", "1.0.0", 1, OutcomeKind::Active, "test".into());
    state.save(&sync).unwrap();
    std::fs::create_dir_all(sync.join("downloads/fraud/2.0.0")).unwrap();
    std::fs::write(
        sync.join("downloads/fraud/2.0.0/model.onnx.partial"),
        [0u8; 500],
    )
    .unwrap();
    std::fs::create_dir_all(sync.join("trusted")).unwrap();
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 20);
    let snapshot = serde_json::json!({"signed": {"expires": expires.to_string()}});
    std::fs::write(sync.join("trusted/snapshot.json"), snapshot.to_string()).unwrap();
    loop {
        let d = deliver_once(&agent, None).await.unwrap();
        if d.records == 0 || d.pending == 0 {
            break;
        }
    }
    Reporter::new(&agent, None).report_once().await.unwrap();
    // Drift reaches the fleet once an hour closes (cofferd spools each closed window):
    // the record of one, as cofferd spools it, through the agent's own encoding.
    let closed = coffer_privacy::telemetry::Record {
        seq: 1,
        at_ms: jiff::Timestamp::now().as_millisecond() as u64,
        body: coffer_privacy::telemetry::RecordBody::Drift {
            model: "credit-lr".into(),
            version: "1.0.0".into(),
            window: "hour".into(),
            rows: None,
            psi: vec![("score".into(), 0.02), ("income".into(), 0.31)],
        },
    };
    let mut day = closed.clone();
    if let coffer_privacy::telemetry::RecordBody::Drift { window, .. } = &mut day.body {
        *window = "day".into();
    }
    let body = coffer_agent::remote_write::encode(&coffer_agent::remote_write::build(
        &[closed, day],
        "branch-7",
    ))
    .unwrap();
    let url: http::Uri = format!("http://127.0.0.1:{port}/api/v1/write")
        .parse()
        .unwrap();
    let reply = coffer_agent::transport::post(
        &url,
        None,
        &coffer_agent::remote_write::HEADERS,
        body.into(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(reply.status.is_success(), "{reply:?}");
    // Twenty more sites in every rollout state the fleet dashboard shows.
    let root = setup.dir().join("sites");
    for i in 0..20 {
        let cfg = site(&root, i, &setup.socket(), port, otlp_port);
        let sync = cfg.state_dir.join("sync");
        let special = match i {
            10 => Some(OutcomeKind::Halted),
            11 => Some(OutcomeKind::RolledBack),
            12 => Some(OutcomeKind::Pinned),
            _ => None,
        };
        let mut cfg = cfg;
        if i == 14 {
            let mut state = SyncState::load(&sync);
            state.last_poll = Some(coffer_agent::sync::state::PollHealth {
                state: coffer_fleet::site::SyncState::Failing,
                reason: "host".into(),
            });
            state.consecutive_failures = 3;
            state.save(&sync).unwrap();
        }
        if i == 15 {
            // Its cofferd does not answer: not ready, GPU unknown.
            cfg.admin_socket = setup.dir().join("nowhere.sock");
        }
        if let Some(kind) = special {
            let mut state = SyncState::load(&sync);
            state.record("credit-lr", "2.0.0", 2, kind, "test".into());
            state.save(&sync).unwrap();
        }
        if i == 13 {
            let partial = sync.join("downloads/credit-lr/3.0.0");
            std::fs::create_dir_all(&partial).unwrap();
            std::fs::write(partial.join("model.onnx.partial"), [0u8; 1000]).unwrap();
        }
        let mut reporter = Reporter::new(&cfg, None);
        if i == 16 {
            // Silent: its last report is 20 minutes old (poll interval 1m).
            let mut old = coffer_agent::site_report::collect(&cfg).await;
            old.at_ms -= 20 * 60 * 1000;
            reporter.send(&old).await.unwrap();
        } else {
            reporter.report_once().await.unwrap();
        }
    }

    let prom = prometheus.client();
    // Two scrapes of cofferd at least, so that rates have two samples (Prometheus
    // starts scraping a few seconds after it starts).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scrapes = prom
            .query("count_over_time(up{job=\"cofferd\"}[5m]) and on() up{job=\"cofferd\"} == 1")
            .await
            .unwrap();
        if scrapes.first().is_some_and(|s| s.value >= 2.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus did not scrape cofferd: {:?}",
            prometheus.get("/api/v1/targets").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut failures = Vec::new();
    let mut answered = 0;
    for file in ["fleet-rollout.json", "branch-appliance.json"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dashboards")
            .join(file);
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (title, dcgm, expr) in targets(&dashboard) {
            let query = substitute(&expr);
            let chat_panel = expr.contains("coffer_chat_");
            match prom.query(&query).await {
                Err(e) => failures.push(format!("{file} / {title}: {query}: {e}")),
                Ok(v) if v.is_empty() && !dcgm && !(chat_panel && chat.is_none()) => {
                    failures.push(format!("{file} / {title}: {query}: no data"))
                }
                Ok(_) => answered += 1,
            }
        }
    }
    eprintln!("{answered} dashboard queries answered with data (or may be empty)");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    prometheus.kill();
    daemon.stop();
}
