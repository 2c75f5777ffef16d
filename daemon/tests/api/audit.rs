//! The audit log of a real daemon: admin actions and per-request metadata are chained
//! and signed, `cofferctl audit verify` passes on what cofferd wrote and names the
//! record an edit broke; no token and no request content is in it.

use std::process::Command;

use http::Method;

use crate::common::{COFFERCTL, Setup, fixture};

fn verify(dir: &std::path::Path) -> std::process::Output {
    Command::new(COFFERCTL)
        .args(["audit", "verify", "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[tokio::test]
async fn cofferd_writes_a_verifiable_chain_and_an_edit_is_named() {
    let mut setup = Setup::new();
    setup.scoring_models = vec![fixture("credit-lr")];
    let daemon = setup.start().await;
    let token = setup.create_key("scorer", "score", None);
    let out = setup.ctl(&["keys", "create", "--name", "spare", "--scopes", "chat"]);
    assert!(out.status.success());
    assert!(setup.ctl(&["keys", "revoke", "spare"]).status.success());
    let client = setup.client(daemon.addr);
    let row = vec![0.2f32; 61];
    let body = serde_json::json!({"id": "4111111111111111", "inputs": [{"name": "features", "shape": [1, 61], "datatype": "FP32", "data": row}]});
    for _ in 0..3 {
        let r = client
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(&token),
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let r = client.get("/v2/models/credit-lr", None).await;
    assert_eq!(r.status, 401);
    daemon.stop();

    let dir = setup.dir().join("state").join("audit");
    let out = verify(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit log OK"), "{stdout}");

    let path = dir.join("audit-000001.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let kinds = |k: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("\"kind\":\"{k}\"")))
            .count()
    };
    assert_eq!(kinds("started"), 1);
    assert_eq!(kinds("stopping"), 1);
    assert_eq!(kinds("model_loaded"), 1);
    assert_eq!(kinds("admin"), 3, "two creates and a revoke: {text}");
    assert!(text.contains("\"action\":\"keys.revoke\""), "{text}");
    let infers: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("\"kind\":\"request\"") && l.contains("\"model\":\"credit-lr@1.0.0\"")
        })
        .collect();
    assert_eq!(infers.len(), 3, "{text}");
    assert!(
        infers
            .iter()
            .all(|l| l.contains("\"status\":200") && l.contains("\"key_id\":\"k_"))
    );
    assert!(
        text.contains("\"status\":401"),
        "refused requests are recorded too"
    );
    assert!(kinds("checkpoint") >= 1, "a checkpoint at shutdown");
    assert!(!text.contains(&token), "no token in the audit log");
    assert!(
        !text.contains("4111111111111111"),
        "no request content in the audit log"
    );

    // An auditor edits one record: verify fails and names it.
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("\"status\":401"))
        .unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[i] = edited[i].replace("\"status\":401", "\"status\":200");
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let out = verify(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("audit-000001.log:{}", i + 1)) && stderr.contains("modified"),
        "{stderr}"
    );
}
