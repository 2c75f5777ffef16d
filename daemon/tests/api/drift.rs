//! Model monitoring on the real daemon: drift of live inputs against the release's
//! reference distributions (one shifted feature raises its own CSI above "act" and no
//! other's; alerts are audited; the counts survive a restart), and shadow evaluation of
//! candidates (answers unchanged; 100% agreement for an identical candidate, less for
//! another model; activation can require a shadow pass).

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Client, Daemon, Setup, eval_set, fixture};
use crate::models::{ctl_json, derived_version};

async fn post_rows(c: &Client, key: &str, rows: &[Vec<f64>]) -> Vec<f64> {
    let body = json!({
        "inputs": [{ "name": "features", "shape": [rows.len(), rows[0].len()], "datatype": "FP32", "data": rows }],
    });
    let r = c
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(key),
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.json()["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn window<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["versions"][0]["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["window"] == name)
}

fn hour(report: &Value) -> &Value {
    window(report, "hour").unwrap()
}

/// Rows of this hour and, if the test ran across the top of the hour, the one before.
fn recent_rows(report: &Value) -> u64 {
    hour(report)["rows"].as_u64().unwrap()
        + window(report, "previous hour").map_or(0, |w| w["rows"].as_u64().unwrap())
}

#[tokio::test]
async fn a_shifted_feature_drifts_alone_is_alerted_and_survives_a_restart() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    s.scoring_extra = "drift_min_rows = 100\ndrift_interval = \"100ms\"\n".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score,metrics", None);
    let c = s.client(d.addr);

    let manifest = coffer_models::Manifest::parse(
        &std::fs::read_to_string(fixture("credit-lr").join("manifest.toml")).unwrap(),
    )
    .unwrap();
    let reference = manifest
        .drift
        .as_ref()
        .expect("the fixture carries [drift]");
    // The first feature with more than two bins: a numeric one.
    let shifted = reference
        .features
        .iter()
        .find(|f| f.proportions.len() > 2)
        .unwrap();
    let top = *shifted.edges.last().unwrap();
    let set = eval_set("credit-lr");
    let mut rows = set.rows.clone();
    for r in &mut rows {
        r[shifted.column] = top + 1.0 + r[shifted.column].abs();
    }
    for chunk in rows.chunks(20) {
        post_rows(&c, &key, chunk).await;
    }

    let (code, report) = ctl_json(&s, &["models", "drift", "credit-lr"]);
    assert_eq!(code, 0, "{report}");
    let w = hour(&report);
    if recent_rows(&report) != w["rows"].as_u64().unwrap() {
        eprintln!("skipped: the test ran across the top of the hour");
        return;
    }
    assert_eq!(w["rows"], rows.len());
    let features = w["features"].as_array().unwrap();
    assert_eq!(
        features[0]["name"],
        shifted.name.as_str(),
        "the shifted feature leads: {w}"
    );
    assert!(features[0]["psi"].as_f64().unwrap() > 0.25, "{w}");
    assert_eq!(features[0]["reading"], "act");
    for f in &features[1..] {
        assert!(
            f["psi"].as_f64().unwrap() < 0.25,
            "only the shifted feature drifts, not {}: {}",
            f["name"],
            f["psi"]
        );
    }

    // The monitor publishes the gauge and audits the alert.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gauge = format!(
        "coffer_drift_psi{{model=\"credit-lr\",version=\"1.0.0\",window=\"hour\",distribution=\"{}\"}}",
        shifted.name
    );
    // A publication from before every row had arrived reads NaN (below min_rows): the
    // next one must carry the drift.
    let mut seen = String::new();
    loop {
        let metrics =
            String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
        if let Some(line) = metrics.lines().find(|l| l.starts_with(&gauge)) {
            let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            if v > 0.25 {
                break;
            }
            seen = line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no drift gauge above 0.25 for {} (last seen: {seen:?})",
            shifted.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.stop();
    let audit = std::fs::read_to_string(s.dir().join("state/audit/audit-000001.log")).unwrap();
    let alert = audit
        .lines()
        .find(|l| l.contains("\"kind\":\"drift_alert\"") && l.contains(&shifted.name))
        .expect("an audited drift alert for the shifted feature");
    assert!(alert.contains("\"reading\":\"act\""), "{alert}");

    // Restarted: the same counts.
    let d = Daemon::start(s.write_config(), s.dir()).await;
    let (code, again) = ctl_json(&s, &["models", "drift", "credit-lr"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        hour(&again)["rows"],
        rows.len(),
        "drift counts survive a restart"
    );
    assert_eq!(hour(&again)["features"][0]["name"], shifted.name.as_str());
    drop(d);
}

/// Polls the shadow report until `rows` rows were compared.
async fn shadow_rows(s: &Setup, rows: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, report) = ctl_json(s, &["models", "shadow-report", "credit-lr"]);
        assert_eq!(code, 0, "{report}");
        if report["rows"].as_u64() == Some(rows) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "shadow compared {} of {rows} rows",
            report["rows"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shadow_candidates_never_change_answers_and_report_their_agreement() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    s.scoring_extra = "shadow_min_rows = 100\nshadow_min_agreement = 0.99\n".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let set = eval_set("credit-lr");
    let batches: Vec<&[Vec<f64>]> = set.rows.chunks(5).take(40).collect();
    let mut direct = Vec::new();
    for b in &batches {
        direct.push(post_rows(&c, &key, b).await);
    }

    // An identical candidate on every request: same answers, 100% agreement.
    let releases = s.dir().join("releases");
    let same = derived_version(&releases, "credit-lr", "credit-lr", "1.0.1");
    assert_eq!(
        ctl_json(&s, &["models", "import", same.to_str().unwrap()]).0,
        0
    );
    let (code, started) = ctl_json(
        &s,
        &["models", "shadow", "credit-lr", "1.0.1", "--fraction", "1"],
    );
    assert_eq!(code, 0, "{started}");
    for (b, before) in batches.iter().zip(&direct) {
        assert_eq!(
            &post_rows(&c, &key, b).await,
            before,
            "the shadow never changes an answer"
        );
    }
    let report = shadow_rows(&s, 200).await;
    assert_eq!(report["agreement"], 1.0, "{report}");
    // The candidate scores the rows in batches of its own (its batcher coalesces what
    // arrives together, which depends on timing), and tract's matrix kernels round by
    // batch shape: the same model may differ in the last bit of a float score.
    assert!(
        report["max_abs_diff"].as_f64().unwrap() <= 2.0 * f64::from(f32::EPSILON),
        "{report}"
    );
    // It passed: activation with the requirement goes through and ends the shadow.
    let (code, act) = ctl_json(
        &s,
        &[
            "models",
            "activate",
            "credit-lr",
            "1.0.1",
            "--require-shadow",
        ],
    );
    assert_eq!(
        (code, act["previous"].as_str()),
        (0, Some("1.0.0")),
        "{act}"
    );
    assert!(
        !s.ctl(&["models", "shadow-report", "credit-lr"])
            .status
            .success()
    );

    // The distilled student as 2.0.0 on half the requests: it disagrees sometimes.
    let other = derived_version(&releases, "credit-mlp", "credit-lr", "2.0.0");
    assert_eq!(
        ctl_json(&s, &["models", "import", other.to_str().unwrap()]).0,
        0
    );
    let (code, _) = ctl_json(
        &s,
        &[
            "models",
            "shadow",
            "credit-lr",
            "2.0.0",
            "--fraction",
            "0.5",
        ],
    );
    assert_eq!(code, 0);
    let all: Vec<&[Vec<f64>]> = set.rows.chunks(5).collect();
    for (i, b) in all.iter().enumerate() {
        let answer = post_rows(&c, &key, b).await;
        if i < direct.len() {
            assert_eq!(&answer, &direct[i], "still the active version's answer");
        }
    }
    let expected = (all.len() / 2) as u64 * 5;
    let report = shadow_rows(&s, expected).await;
    let agreement = report["agreement"].as_f64().unwrap();
    assert!(agreement < 1.0 && agreement > 0.5, "{report}");
    assert!(report["mean_abs_diff"].as_f64().unwrap() > 0.0);
    assert!(report["score_psi"].as_f64().is_some());

    // A shadow pass is required: 2.0.0's agreement is under 0.99.
    let out = s.ctl(&[
        "models",
        "activate",
        "credit-lr",
        "2.0.0",
        "--require-shadow",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has not passed shadow evaluation") && err.contains("agreement"),
        "{err}"
    );
    // Removing the candidate ends its shadow; a stop then finds nothing (404).
    let (code, removed) = ctl_json(&s, &["models", "remove", "credit-lr", "2.0.0"]);
    assert_eq!(code, 0, "{removed}");
    let out = s.ctl(&["models", "shadow-report", "credit-lr"]);
    assert!(
        !out.status.success(),
        "no shadow after the candidate's removal"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no version in shadow"), "{err}");
    // Shadow again with an identical candidate, then stop it: the final report.
    let (code, _) = ctl_json(
        &s,
        &["models", "shadow", "credit-lr", "1.0.0", "--fraction", "1"],
    );
    assert_eq!(code, 0);
    post_rows(&c, &key, batches[0]).await;
    shadow_rows(&s, 5).await;
    let (code, last) = ctl_json(&s, &["models", "shadow-stop", "credit-lr"]);
    assert_eq!(
        (code, last["candidate"].as_str()),
        (0, Some("1.0.0")),
        "{last}"
    );
    drop(d);
}
