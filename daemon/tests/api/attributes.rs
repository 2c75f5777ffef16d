//! Raw attributes over the Open Inference Protocol: every fixture model scores its whole
//! holdout set sent as raw attributes exactly as it scores the encoded rows (and within
//! 1e-6 of onnxruntime), in JSON and in Triton's binary extension, and every bad
//! attribute gets a 400 that names it.

use coffer_models::manifest::attributes::RawDefault;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Client, Setup, eval_set, fixture};

const MODELS: [&str; 4] = ["credit-lr", "credit-mlp", "credit-gbdt", "aml-risk"];

/// The eval set's raw attributes, rows `start..end`, as OIP inputs: categories BYTES,
/// whole numbers INT64, others FP64.
fn raw_inputs(name: &str, start: usize, end: usize) -> Vec<Value> {
    let set = eval_set(name);
    let columns = set.attributes.expect("fixture has raw attributes");
    columns
        .iter()
        .map(|(attr, values)| {
            let values = &values[start..end];
            let (datatype, data): (&str, Vec<Value>) = match &values[0] {
                Some(RawDefault::Text(_)) => ("BYTES", values.iter().map(|v| json!(v)).collect()),
                _ if values
                    .iter()
                    .all(|v| matches!(v, Some(RawDefault::Number(x)) if x.fract() == 0.0)) =>
                {
                    let ints = values.iter().map(|v| match v {
                        Some(RawDefault::Number(x)) => json!(*x as i64),
                        _ => Value::Null,
                    });
                    ("INT64", ints.collect())
                }
                _ => ("FP64", values.iter().map(|v| json!(v)).collect()),
            };
            json!({ "name": attr, "shape": [end - start], "datatype": datatype, "data": data })
        })
        .collect()
}

async fn infer(c: &Client, key: &str, model: &str, body: &Value) -> crate::common::Resp {
    c.request(
        Method::POST,
        &format!("/v2/models/{model}/infer"),
        Some(key),
        body.to_string().as_bytes(),
    )
    .await
}

fn outputs(v: &Value) -> Vec<(String, Vec<f64>)> {
    v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let data = o["data"].as_array().unwrap();
            (
                o["name"].as_str().unwrap().to_string(),
                data.iter().map(|x| x.as_f64().unwrap()).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn raw_attributes_score_exactly_as_the_encoded_rows_on_every_holdout_row() {
    let mut s = Setup::new();
    s.scoring_models = MODELS.iter().map(|m| fixture(m)).collect();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    for model in MODELS {
        let set = eval_set(model);
        let width = set.rows[0].len();
        let mut worst = 0.0f64;
        for start in (0..set.rows.len()).step_by(1000) {
            let end = (start + 1000).min(set.rows.len());
            let raw = infer(
                &c,
                &key,
                model,
                &json!({ "inputs": raw_inputs(model, start, end) }),
            )
            .await;
            assert_eq!(raw.status, StatusCode::OK, "{model}: {:?}", raw.body);
            let encoded = json!({ "inputs": [{
                "name": set.input, "shape": [end - start, width], "datatype": "FP32",
                "data": set.rows[start..end],
            }]});
            let enc = infer(&c, &key, model, &encoded).await;
            assert_eq!(enc.status, StatusCode::OK, "{model}: {:?}", enc.body);
            let (raw, enc) = (outputs(&raw.json()), outputs(&enc.json()));
            assert_eq!(raw, enc, "{model}: raw attributes and encoded rows differ");
            for (name, values) in &raw {
                let reference = set.reference_flat(name).unwrap();
                let per_row = values.len() / (end - start);
                for (i, x) in values.iter().enumerate() {
                    worst = worst.max((x - reference[start * per_row + i]).abs());
                }
            }
        }
        assert!(worst <= 1e-6, "{model}: {worst:e} from onnxruntime");
    }
    d.stop();
}

#[tokio::test]
async fn attributes_in_the_binary_extension_score_as_in_json() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-gbdt")];
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let json_inputs = raw_inputs("credit-gbdt", 0, 3);
    let expected = outputs(
        &infer(&c, &key, "credit-gbdt", &json!({ "inputs": json_inputs }))
            .await
            .json(),
    );

    let mut header_inputs = Vec::new();
    let mut binary = Vec::new();
    for input in &json_inputs {
        let before = binary.len();
        for v in input["data"].as_array().unwrap() {
            match v {
                Value::String(t) => {
                    binary.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    binary.extend_from_slice(t.as_bytes());
                }
                _ => binary.extend_from_slice(&v.as_i64().unwrap().to_le_bytes()),
            }
        }
        header_inputs.push(json!({
            "name": input["name"], "shape": [3, 1], "datatype": input["datatype"],
            "parameters": { "binary_data_size": binary.len() - before },
        }));
    }
    let header = json!({ "inputs": header_inputs }).to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&binary);
    let mut conn = c.connect().await.unwrap();
    let r = conn
        .request_with_headers(
            Method::POST,
            "/v2/models/credit-gbdt/infer",
            &key,
            &[("inference-header-content-length", header.len().to_string())],
            &body,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(outputs(&r.json()), expected);

    // A length prefix that runs past the declared size is refused, not read past.
    let header = json!({ "inputs": [{
        "name": "purpose", "shape": [1], "datatype": "BYTES",
        "parameters": { "binary_data_size": 6 },
    }]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&[200, 0, 0, 0, b'c', b'a']);
    let r = conn
        .request_with_headers(
            Method::POST,
            "/v2/models/credit-gbdt/infer",
            &key,
            &[("inference-header-content-length", header.len().to_string())],
            &body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "shape_mismatch", "{:?}", r.json());
    d.stop();
}

#[tokio::test]
async fn every_bad_attribute_gets_a_400_naming_it() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let meta = c.get("/v2/models/credit-lr", Some(&key)).await.json();
    let attrs = meta["attributes"].as_array().unwrap();
    assert_eq!(attrs.len(), 20);
    let personal = attrs
        .iter()
        .find(|a| a["name"] == "personal_status_and_sex")
        .unwrap();
    assert_eq!(personal["datatype"], "BYTES");
    // The category absent from training is valid (it encodes as all zeros).
    assert!(
        personal["categories"]
            .as_array()
            .unwrap()
            .contains(&json!("female : single"))
    );
    assert_eq!(attrs[0]["datatype"], "FP64");
    assert_eq!(attrs[0]["required"], true);

    let good = raw_inputs("credit-lr", 0, 2);
    let with = |edit: &dyn Fn(&mut Vec<Value>)| {
        let mut inputs = good.clone();
        edit(&mut inputs);
        json!({ "inputs": inputs })
    };
    let find = |inputs: &mut Vec<Value>, name: &str| -> usize {
        inputs.iter().position(|i| i["name"] == name).unwrap()
    };
    let cases: Vec<(&str, Value, &str, Vec<&str>)> = vec![
        (
            "unknown category",
            with(&|i| {
                let k = find(i, "purpose");
                i[k]["data"][1] = json!("yacht");
            }),
            "unknown_category",
            vec![
                "row 1",
                "purpose",
                "yacht",
                "\"car (new)\"",
                "\"retraining\"",
            ],
        ),
        (
            "missing attribute",
            with(&|i| {
                let k = find(i, "housing");
                i.remove(k);
            }),
            "missing_attribute",
            vec!["housing", "no default"],
        ),
        (
            "null value",
            with(&|i| {
                let k = find(i, "age_in_years");
                i[k]["data"][0] = Value::Null;
            }),
            "missing_attribute",
            vec!["row 0", "age_in_years"],
        ),
        (
            "category sent as a number",
            with(&|i| {
                let k = find(i, "housing");
                i[k]["datatype"] = json!("INT64");
                i[k]["data"] = json!([1, 2]);
            }),
            "attribute_type",
            vec!["housing", "BYTES"],
        ),
        (
            "number sent as a string",
            with(&|i| {
                let k = find(i, "duration_in_month");
                i[k]["datatype"] = json!("BYTES");
                i[k]["data"] = json!(["24", "12"]);
            }),
            "attribute_type",
            vec!["duration_in_month", "INT64"],
        ),
        (
            "string in a number attribute",
            with(&|i| {
                let k = find(i, "duration_in_month");
                i[k]["data"][0] = json!("24");
            }),
            "invalid_data",
            vec!["duration_in_month", "element 0"],
        ),
        (
            "unknown input",
            with(&|i| {
                i.push(json!({"name": "income", "shape": [2], "datatype": "FP64", "data": [1, 2]}))
            }),
            "unknown_input",
            vec!["income", "purpose"],
        ),
        (
            "rows differ",
            with(&|i| {
                let k = find(i, "credit_amount");
                i[k]["shape"] = json!([1]);
                i[k]["data"] = json!([1000]);
            }),
            "shape_mismatch",
            vec!["credit_amount"],
        ),
        (
            "a matrix for one attribute",
            with(&|i| {
                let k = find(i, "credit_amount");
                i[k]["shape"] = json!([1, 2]);
            }),
            "shape_mismatch",
            vec!["credit_amount", "[N]"],
        ),
        (
            "twice",
            with(&|i| {
                let k = find(i, "credit_amount");
                let dup = i[k].clone();
                i.push(dup);
            }),
            "duplicate_input",
            vec!["credit_amount"],
        ),
    ];
    for (what, body, code, words) in cases {
        let r = infer(&c, &key, "credit-lr", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {:?}", r.body);
        let v = r.json();
        assert_eq!(v["code"], code, "{what}: {v}");
        let message = v["error"].as_str().unwrap();
        for w in words {
            assert!(message.contains(w), "{what}: {message:?} lacks {w:?}");
        }
    }
    d.stop();
}
