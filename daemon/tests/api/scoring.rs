//! Scoring over the Open Inference Protocol with the real fixture models: engine outputs
//! against onnxruntime's reference on the whole holdout set, metadata, validation, two
//! models side by side, and no cross-talk through the batcher.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Setup, eval_set, fixture};

const MODELS: [&str; 4] = ["credit-lr", "credit-mlp", "credit-gbdt", "aml-risk"];

fn input_name(model: &str) -> &'static str {
    if model == "aml-risk" {
        "transaction"
    } else {
        "features"
    }
}

#[test]
fn engine_outputs_equal_the_reference_on_the_whole_holdout_set() {
    let metrics = cofferd::metrics::Metrics::new();
    let score_metrics = metrics.with_registry(cofferd::score::ScoreMetrics::register);
    for name in MODELS {
        let model = cofferd::score::load_version(&fixture(name), &score_metrics, 4).unwrap();
        let set = eval_set(name);
        let width = set.rows[0].len();
        let input = cofferd::tensor::Tensor {
            name: set.input.clone(),
            shape: vec![set.rows.len(), width],
            data: cofferd::tensor::TensorData::F32(
                set.rows.iter().flatten().map(|&x| x as f32).collect(),
            ),
        };
        let outputs = model.engine.run(vec![input], set.rows.len()).unwrap();
        for out in &outputs {
            let Some(reference) = set.reference_flat(&out.name) else {
                continue;
            };
            let ours = out.data.to_f64();
            assert_eq!(ours.len(), reference.len(), "{name}/{}", out.name);
            let worst = ours
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst <= 1e-5, "{name}/{}: max abs diff {worst}", out.name);
        }
        let gate = model.manifest.eval.as_ref().unwrap();
        let scores_out = outputs
            .iter()
            .find(|o| o.name == gate.score_output)
            .unwrap();
        let cols = scores_out.row_len();
        let scores: Vec<f64> = scores_out
            .data
            .to_f64()
            .chunks(cols)
            .map(|r| r[gate.score_column])
            .collect();
        let auc = coffer_models::evalset::auc(&scores, &set.labels).unwrap();
        assert!(
            (auc - set.auc).abs() < 1e-4,
            "{name}: AUC {auc} vs the training script's {}",
            set.auc
        );
        assert!(
            auc >= gate.auc_min,
            "{name}: AUC {auc} under its floor {}",
            gate.auc_min
        );
    }
}

fn infer_body(input: &str, rows: &[Vec<f64>], id: &str) -> Value {
    json!({
        "id": id,
        "inputs": [{ "name": input, "shape": [rows.len(), rows[0].len()], "datatype": "FP32", "data": rows }],
    })
}

async fn post(
    c: &crate::common::Client,
    path: &str,
    key: &str,
    body: &Value,
) -> crate::common::Resp {
    c.request(Method::POST, path, Some(key), body.to_string().as_bytes())
        .await
}

#[tokio::test]
async fn two_models_with_different_schemas_are_served_side_by_side() {
    let mut s = Setup::new();
    s.scoring_models = vec![
        fixture("credit-lr"),
        fixture("aml-risk"),
        fixture("credit-gbdt"),
    ];
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);

    for name in ["credit-lr", "aml-risk"] {
        let set = eval_set(name);
        let rows = &set.rows[..5];
        let r = post(
            &c,
            &format!("/v2/models/{name}/infer"),
            &key,
            &infer_body(input_name(name), rows, "req-7"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {:?}", r.body);
        let v = r.json();
        assert_eq!(v["id"], "req-7");
        assert_eq!(v["model_name"], name);
        assert_eq!(v["model_version"], "1.0.0");
        let out = &v["outputs"][0];
        let reference = set.reference_flat(out["name"].as_str().unwrap()).unwrap();
        for (i, x) in out["data"].as_array().unwrap().iter().enumerate() {
            assert!(
                (x.as_f64().unwrap() - reference[i]).abs() <= 1e-5,
                "{name} row {i}"
            );
        }

        let meta = c
            .get(&format!("/v2/models/{name}"), Some(&key))
            .await
            .json();
        assert_eq!(meta["versions"], json!(["1.0.0"]));
        assert_eq!(meta["inputs"][0]["name"], input_name(name));
        assert_eq!(meta["inputs"][0]["shape"][0], -1);
        let ready = c
            .get(
                &format!("/v2/models/{name}/versions/1.0.0/ready"),
                Some(&key),
            )
            .await;
        assert_eq!(ready.status, StatusCode::OK);
    }

    // Output selection and the versioned route on the tree model.
    let set = eval_set("credit-gbdt");
    let mut body = infer_body("features", &set.rows[..3], "sel");
    body["outputs"] = json!([{ "name": "probabilities" }]);
    let r = post(
        &c,
        "/v2/models/credit-gbdt/versions/1.0.0/infer",
        &key,
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let outputs = r.json()["outputs"].as_array().unwrap().clone();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["shape"], json!([3, 2]));

    let meta = c.get("/v2/models/credit-gbdt", Some(&key)).await.json();
    assert_eq!(
        meta["platform"], "onnx-trees",
        "the GBDT must run on the native tree evaluator"
    );
    let meta = c.get("/v2/models/credit-lr", Some(&key)).await.json();
    assert_eq!(meta["platform"], "onnx-tract");
    let index = c
        .request(Method::POST, "/v2/repository/index", Some(&key), b"{}")
        .await
        .json();
    let names: Vec<&str> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["aml-risk", "credit-gbdt", "credit-lr"]);
    assert_eq!(index[0]["state"], "READY");
    assert_eq!(
        c.get("/v2/health/live", Some(&key)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.get("/v2/health/ready", Some(&key)).await.status,
        StatusCode::OK
    );
    d.stop();
}

#[tokio::test]
async fn every_bad_request_gets_a_clear_error_naming_the_problem() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let row = eval_set("credit-lr").rows[0].clone();
    let width = row.len();
    let good = |data: Value, shape: Value, datatype: &str, name: &str| json!({ "inputs": [{ "name": name, "shape": shape, "datatype": datatype, "data": data }] });
    let cases: Vec<(Vec<u8>, StatusCode, &str, &str)> = vec![
        (
            good(json!(row), json!([1, width]), "FP32", "feature")
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "unknown_input",
            "'feature'",
        ),
        (
            json!({ "inputs": [] }).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
            "missing_input",
            "'features'",
        ),
        (
            good(json!(row), json!([2, width]), "FP32", "features")
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "shape_mismatch",
            "'features'",
        ),
        (
            good(json!(row), json!([1, width + 1]), "FP32", "features")
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "shape_mismatch",
            "'features'",
        ),
        (
            good(json!(row), json!([1, width]), "INT64", "features")
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "datatype_mismatch",
            "'features'",
        ),
        (
            good(json!(row), json!([1, width]), "FP32", "features")
                .to_string()
                .replacen(&format!("{}", row[0]), "NaN", 1)
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "non_finite_value",
            "'features' element 0",
        ),
        (
            good(
                json!(vec![row.clone(); 1025]),
                json!([1025, width]),
                "FP32",
                "features",
            )
            .to_string()
            .into_bytes(),
            StatusCode::BAD_REQUEST,
            "batch_too_large",
            "at most 1024",
        ),
        (
            b"{\"inputs\": [".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not an infer request",
        ),
        (
            good(
                json!(vec!["a"; width]),
                json!([1, width]),
                "FP32",
                "features",
            )
            .to_string()
            .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_data",
            "'features' element 0",
        ),
    ];
    let mut body_limit_hit = false;
    for (body, status, code, needle) in cases {
        let r = c
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(&key),
                &body,
            )
            .await;
        if r.status == StatusCode::PAYLOAD_TOO_LARGE {
            body_limit_hit = true;
            continue;
        }
        assert_eq!(r.status, status, "{code}: {:?}", r.body);
        let v = r.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{code}: {v}");
    }
    assert!(
        !body_limit_hit,
        "the batch_too_large case must fit the default body limit"
    );
    let r = post(&c, "/v2/models/nope/infer", &key, &json!({"inputs": []})).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (StatusCode::NOT_FOUND, json!("model_not_found"))
    );
    let r = post(
        &c,
        "/v2/models/credit-lr/versions/9.9.9/infer",
        &key,
        &json!({"inputs": []}),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (StatusCode::NOT_FOUND, json!("version_not_found"))
    );
    let r = c.get("/v2/models/nope/ready", Some(&key)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The server is still fine.
    let r = post(
        &c,
        "/v2/models/credit-lr/infer",
        &key,
        &infer_body("features", &[row], "ok"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    d.stop();
}

#[tokio::test]
async fn concurrent_single_row_clients_get_exactly_their_own_results() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-mlp")];
    s.server_extra = "max_body_bytes = 65536".into();
    let d = s.start().await;
    let key = Arc::new(s.create_key("scorer", "score,metrics", None));
    let c = s.client(d.addr);
    let set = Arc::new(eval_set("credit-mlp"));
    let reference = Arc::new(set.reference_flat("probability").unwrap());

    let mut tasks = Vec::new();
    for client_id in 0..64usize {
        let (c, key, set, reference) = (
            c.clone(),
            Arc::clone(&key),
            Arc::clone(&set),
            Arc::clone(&reference),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await.unwrap();
            for round in 0..8usize {
                let row = (client_id * 8 + round) % set.rows.len();
                let body = infer_body(
                    "features",
                    &set.rows[row..=row],
                    &format!("{client_id}-{round}"),
                );
                let r = conn
                    .request(
                        Method::POST,
                        "/v2/models/credit-mlp/infer",
                        Some(&key),
                        body.to_string().as_bytes(),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status, StatusCode::OK);
                let v = r.json();
                assert_eq!(v["id"], format!("{client_id}-{round}"));
                let got = v["outputs"][0]["data"][0].as_f64().unwrap();
                assert!(
                    (got - reference[row]).abs() <= 1e-5,
                    "client {client_id} row {row}: {got} vs {}",
                    reference[row]
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let metrics = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    let value = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{prefix} missing:\n{metrics}"))
    };
    let rows = value("coffer_score_rows_total{model=\"credit-mlp\",version=\"1.0.0\"}");
    let batches = value("coffer_score_batch_rows_count{model=\"credit-mlp\",version=\"1.0.0\"}");
    assert_eq!(rows, 512.0);
    assert!(
        batches < rows,
        "no request was batched with another ({batches} batches for {rows} rows)"
    );
    d.stop();
}

#[tokio::test]
async fn binary_tensor_data_round_trips() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let set = eval_set("credit-lr");
    let rows = &set.rows[..2];
    let width = rows[0].len();
    let raw: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|&x| (x as f32).to_le_bytes())
        .collect();
    let header = json!({
        "inputs": [{ "name": "features", "shape": [2, width], "datatype": "FP32", "parameters": { "binary_data_size": raw.len() } }],
        "outputs": [{ "name": "probability", "parameters": { "binary_data": true } }],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let mut conn = c.connect().await.unwrap();
    let r = conn
        .request_with_headers(
            Method::POST,
            "/v2/models/credit-lr/infer",
            &key,
            &[("inference-header-content-length", header.len().to_string())],
            &body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let json_len: usize = r.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body[..json_len]).unwrap();
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
    let reference = set.reference_flat("probability").unwrap();
    for (i, chunk) in r.body[json_len..].chunks(4).enumerate() {
        let got = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        assert!((f64::from(got) - reference[i]).abs() <= 1e-5);
    }
    d.stop();
}
