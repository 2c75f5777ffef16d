//! Decisions kept on the box: every scoring request of a recorded model is sealed in the
//! decision store with its explanation, its hash in the request's audit record; `cofferctl
//! decisions` shows, lists, replays (bit for bit) and exports (redacted) them, each read
//! audited; nothing personal is in the clear anywhere in the state directory; and a
//! version that decided is kept from removal.

use std::path::Path;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Setup, audit_text, eval_set, fixture};
use crate::models::{ctl_json, derived_version};

/// A raw-attribute request for holdout row `row` of credit-lr with a distinctive amount.
fn applicant(row: usize, amount: i64) -> Value {
    let set = eval_set("credit-lr");
    let inputs: Vec<Value> = set
        .attributes
        .unwrap()
        .iter()
        .map(|(name, values)| match (name.as_str(), &values[row]) {
            ("credit_amount", _) => {
                json!({"name": name, "shape": [1], "datatype": "INT64", "data": [amount]})
            }
            (_, Some(coffer_models::manifest::attributes::RawDefault::Text(t))) => {
                json!({"name": name, "shape": [1], "datatype": "BYTES", "data": [t]})
            }
            (_, Some(coffer_models::manifest::attributes::RawDefault::Number(x))) => {
                json!({"name": name, "shape": [1], "datatype": "INT64", "data": [*x as i64]})
            }
            _ => unreachable!(),
        })
        .collect();
    json!({"parameters": {"explain": true}, "inputs": inputs})
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test]
async fn decisions_are_sealed_audited_replayed_exported_and_keep_their_version() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr"), fixture("credit-mlp")];
    s.decisions_extra = "models = [\"credit-lr\"]\n".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);

    // Three decisions on credit-lr (amounts no file of the box holds otherwise); one
    // request to credit-mlp, which is not recorded.
    let amounts = [987_654_321, 987_654_322, 987_654_323];
    let mut ids = Vec::new();
    let mut scores = Vec::new();
    for (i, amount) in amounts.iter().enumerate() {
        let r = c
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(&key),
                applicant(i, *amount).to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_string());
        scores.push(r.json()["outputs"][0]["data"][0].as_f64().unwrap());
    }
    let r = c
        .request(
            Method::POST,
            "/v2/models/credit-mlp/infer",
            Some(&key),
            applicant(0, 5).to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let unrecorded = r.headers["x-request-id"].to_str().unwrap().to_string();

    // show: the record as decided.
    let (code, shown) = ctl_json(&s, &["decisions", "show", &ids[1]]);
    assert_eq!(code, 0, "{shown}");
    let one = &shown["decisions"][0];
    assert_eq!(one["model"], "credit-lr");
    assert_eq!(one["version"], "1.0.0");
    let record = &one["record"];
    assert_eq!(
        record["attributes"]["credit_amount"],
        json!([987_654_322.0])
    );
    assert_eq!(record["inputs"][0]["name"], "features");
    assert_eq!(record["outputs"][0]["name"], "probability");
    let p = f32::from_le_bytes(
        hex_bytes(record["outputs"][0]["data"].as_str().unwrap())[..4]
            .try_into()
            .unwrap(),
    );
    assert_eq!(p, scores[1] as f32);
    assert_eq!(record["explanation"]["method"], "linear");
    assert_eq!(
        record["explanation"]["attributes"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    let sha = one["sha256"].as_str().unwrap().to_string();
    let (code, missing) = ctl_json(&s, &["decisions", "show", &unrecorded]);
    assert_ne!(code, 0);
    assert_eq!(missing["error"]["code"], "decision_not_found", "{missing}");

    // list, replay, export.
    let (_, list) = ctl_json(&s, &["decisions", "list", "--model", "credit-lr"]);
    let listed: Vec<&str> = list["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, replay) = ctl_json(&s, &["decisions", "replay"]);
    assert_eq!(code, 0, "{replay}");
    assert_eq!(
        (replay["replayed"].as_u64(), replay["identical"].as_u64()),
        (Some(3), Some(3))
    );
    let (code, export) = ctl_json(&s, &["decisions", "export", "--redacted"]);
    assert_eq!(code, 0);
    let text = export.to_string();
    assert!(
        !text.contains("987654321") && !text.contains("987654321.0"),
        "{text}"
    );
    assert_eq!(
        export["decisions"][0]["record"]["attributes"]["credit_amount"],
        "[REDACTED]"
    );
    assert!(export["decisions"][0]["record"]["explanation"]["reason_codes"].is_array());

    // A version that decided is not removed; replay still finds it once replaced.
    let work = s.dir().join("releases");
    let v2 = derived_version(&work, "credit-lr", "credit-lr", "2.0.0");
    assert_eq!(
        ctl_json(&s, &["models", "import", v2.to_str().unwrap()]).0,
        0
    );
    assert_eq!(
        ctl_json(&s, &["models", "activate", "credit-lr", "2.0.0"]).0,
        0
    );
    let (code, refused) = ctl_json(&s, &["models", "remove", "credit-lr", "1.0.0"]);
    assert_ne!(code, 0);
    assert_eq!(
        refused["error"]["code"], "version_has_decisions",
        "{refused}"
    );
    let (_, replay) = ctl_json(&s, &["decisions", "replay", "--model", "credit-lr"]);
    assert_eq!(replay["identical"], 3, "{replay}");

    // Key rotation: new decisions use the new key, old ones still open.
    let (code, rotated) = ctl_json(&s, &["decisions", "rotate-key"]);
    assert_eq!(code, 0);
    assert_eq!(rotated["key_id"], "k000002");
    let r = c
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(&key),
            applicant(3, 987_654_324).to_string().as_bytes(),
        )
        .await;
    let newest = r.headers["x-request-id"].to_str().unwrap().to_string();
    let (_, shown) = ctl_json(&s, &["decisions", "show", &newest]);
    assert_eq!(shown["decisions"][0]["key_id"], "k000002");
    assert_eq!(shown["decisions"][0]["version"], "2.0.0");
    assert_eq!(ctl_json(&s, &["decisions", "show", &ids[0]]).0, 0);
    d.stop();

    // The audit chain holds each decision's hash, and every read of the store.
    let audit = audit_text(&s.dir().join("state").join("audit"));
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let request = records
        .iter()
        .find(|r| r["event"]["kind"] == "request" && r["event"]["request_id"] == ids[1].as_str())
        .expect("the decision's request record");
    assert_eq!(request["event"]["decision_sha256"], sha.as_str());
    let unrecorded_request = records
        .iter()
        .find(|r| r["event"]["request_id"] == unrecorded.as_str())
        .expect("the unrecorded request's record");
    assert!(unrecorded_request["event"].get("decision_sha256").is_none());
    let actions: Vec<&str> = records
        .iter()
        .filter(|r| r["event"]["kind"] == "admin")
        .map(|r| r["event"]["action"].as_str().unwrap())
        .collect();
    let rotation = records
        .iter()
        .find(|r| r["event"]["kind"] == "decision_key_rotated")
        .expect("the key rotation's record");
    assert_eq!(rotation["event"]["previous"], "k000001");
    assert_eq!(rotation["event"]["key_id"], "k000002");
    assert_eq!(rotation["event"]["reason"], "admin");
    for action in [
        "decisions.show",
        "decisions.list",
        "decisions.replay",
        "decisions.export",
        "decisions.rotate_key",
    ] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }

    // Nothing personal in the clear anywhere in the state directory.
    for amount in amounts {
        let hits = files_containing(&s.dir().join("state"), amount.to_string().as_bytes());
        assert!(hits.is_empty(), "{amount} in the clear in {hits:?}");
    }
    let keys = s.dir().join("state").join("decision-keys");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(keys.join("k000001.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn recording_needs_the_audit_log() {
    let mut s = Setup::new();
    s.decisions_extra = "models = [\"credit-lr\"]\n".into();
    s.audit_extra = "requests = false\n".into();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cofferd"))
        .args(["check-config", "--config"])
        .arg(s.write_config())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("decisions.models"), "{text}");
}

#[tokio::test]
async fn a_decision_that_cannot_be_stored_is_not_answered_and_none_answered_is_lost() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    s.decisions_extra = "models = [\"credit-lr\"]\n".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);

    // The store's directory replaced by a file before the first decision: its first
    // segment cannot be made.
    let dir = s.dir().join("state").join("decisions");
    let aside = s.dir().join("decisions-aside");
    std::fs::rename(&dir, &aside).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let mut answered = Vec::new();
    let mut refused = None;
    for i in 0..50 {
        let r = c
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(&key),
                applicant(i % 10, 555_000_000 + i as i64)
                    .to_string()
                    .as_bytes(),
            )
            .await;
        if r.status == StatusCode::OK {
            answered.push(r.headers["x-request-id"].to_str().unwrap().to_string());
        } else {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refused = refused.expect("no decision was refused while the store could not write");
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = refused.json();
    assert_eq!(body["code"], "decision_not_recorded", "{body}");
    // No detail of the store's failure reaches the client (the log has it).
    assert!(!body.to_string().contains("directory"), "{body}");
    // /readyz says so, within the watcher's second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = c.get("/readyz", Some(&key)).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            let decisions = &r.json()["components"]["decisions"];
            assert_eq!(decisions["ready"], false, "{decisions}");
            assert!(
                decisions["detail"]
                    .as_str()
                    .unwrap()
                    .contains("cannot be written")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never not ready: {:?}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The directory back: what was answered meanwhile is written, and kept over a
    // restart.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = c
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(&key),
                applicant(0, 1).to_string().as_bytes(),
            )
            .await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = c.get("/readyz", Some(&key)).await;
        if r.status == StatusCode::OK {
            assert_eq!(r.json()["components"]["decisions"]["detail"], "recording");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready again: {:?}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    d.stop();
    let d = s.start().await;
    for id in &answered {
        let (code, shown) = ctl_json(&s, &["decisions", "show", id]);
        assert_eq!(code, 0, "{id} was answered but not kept: {shown}");
    }
    d.stop();
}
