//! A crafted input that panics the engine (tract 0.23 panics on a Gather index far out
//! of range): the request in hand fails with a 500, the version keeps serving, the panic
//! is counted and audited, and a version that keeps panicking reports itself not ready
//! (`/readyz` component `engines`, the model's own ready route).

use std::path::PathBuf;

use http::{Method, StatusCode};

use crate::common::{Setup, metric};

fn gather_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gather-panic/1.0.0")
}

fn infer(idx: i64) -> Vec<u8> {
    format!(r#"{{"inputs":[{{"name":"idx","shape":[1,1],"datatype":"INT64","data":[{idx}]}}]}}"#)
        .into_bytes()
}

#[tokio::test]
async fn a_panicking_input_fails_alone_and_repeated_panics_make_the_version_unready() {
    let mut s = Setup::new();
    s.scoring_models = vec![gather_fixture()];
    let d = s.start().await;
    let key = s.create_key("scorer", "score,metrics", None);
    let c = s.client(d.addr);
    let path = "/v2/models/gather-panic/infer";

    let r = c.request(Method::POST, path, Some(&key), &infer(2)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!((r.json()["outputs"][0]["data"][0].as_f64().unwrap() - 0.3).abs() < 1e-6);

    let r = c
        .request(Method::POST, path, Some(&key), &infer(1 << 40))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    // The version serves the next request.
    let r = c.request(Method::POST, path, Some(&key), &infer(1)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        c.get("/v2/models/gather-panic/ready", Some(&key))
            .await
            .status,
        StatusCode::OK
    );

    // Two more within the window: failing, not ready, until the window passes.
    for _ in 0..2 {
        let r = c
            .request(Method::POST, path, Some(&key), &infer(1 << 40))
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let r = c.get("/readyz", Some(&key)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(body["components"]["engines"]["ready"], false, "{body}");
    assert!(
        body["components"]["engines"]["detail"]
            .as_str()
            .unwrap()
            .contains("gather-panic@1.0.0"),
        "{body}"
    );
    assert_eq!(
        c.get("/v2/models/gather-panic/ready", Some(&key))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // Still answering what it can.
    let r = c.request(Method::POST, path, Some(&key), &infer(0)).await;
    assert_eq!(r.status, StatusCode::OK);

    let text = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    assert_eq!(
        metric(
            &text,
            "coffer_engine_restarts_total{model=\"gather-panic\",version=\"1.0.0\"}"
        ),
        Some(3.0),
        "{text}"
    );
    d.stop();
    // Each contained panic is in the audit log, and the daemon log has the panic's place.
    let audit = std::fs::read_dir(s.dir().join("state/audit"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert_eq!(audit.matches("\"engine_fault\"").count(), 3, "{audit}");
}
