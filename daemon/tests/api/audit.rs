//! The audit log of a real daemon: admin actions and per-request metadata are chained
//! and signed, `cofferctl audit verify` passes on what cofferd wrote and names the
//! record an edit broke; no token and no request content is in it.

use std::process::Command;

use http::Method;

use crate::common::{Client, Setup, cofferctl, fixture};

fn verify(dir: &std::path::Path) -> std::process::Output {
    Command::new(cofferctl())
        .args(["audit", "verify", "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// `cofferctl audit verify` on `dir` must pass; its standard output.
fn verify_ok(dir: &std::path::Path) -> String {
    let out = verify(dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `n` single-row credit-lr infers, each answered 200; the request's id looks like a
/// card number, which must never reach the audit log.
async fn infer(client: &Client, token: &str, n: usize) {
    let body = serde_json::json!({"id": "4111111111111111", "inputs": [{"name": "features", "shape": [1, 61], "datatype": "FP32", "data": vec![0.2f32; 61]}]});
    for _ in 0..n {
        let r = client
            .request(
                Method::POST,
                "/v2/models/credit-lr/infer",
                Some(token),
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
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
    infer(&client, &token, 3).await;
    let r = client.get("/v2/models/credit-lr", None).await;
    assert_eq!(r.status, 401);
    daemon.stop();

    let dir = setup.dir().join("state").join("audit");
    let stdout = verify_ok(&dir);
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
    // A refused request without a valid key is counted, not recorded one by one.
    assert!(
        !text.contains("\"status\":401"),
        "an unauthenticated request was recorded one by one"
    );
    assert!(
        text.contains("\"kind\":\"unauthenticated\""),
        "the 401 is counted"
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
        .position(|l| l.contains("\"kind\":\"request\"") && l.contains("\"status\":200"))
        .unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[i] = edited[i].replace("\"status\":200", "\"status\":500");
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let out = verify(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("audit-000001.log:{}", i + 1)) && stderr.contains("modified"),
        "{stderr}"
    );
}

/// credit-lr, and an audit log of 8 KiB segments kept to 32 KiB: a few hundred requests
/// make retention remove segments.
fn small_log() -> Setup {
    let mut setup = Setup::new();
    setup.scoring_models = vec![fixture("credit-lr")];
    setup.audit_extra = "max_segment_bytes = 8192\nmax_total_bytes = 32768\n".into();
    setup
}

#[tokio::test]
async fn retention_keeps_a_busy_log_within_its_limit_and_what_remains_verifies() {
    let setup = small_log();
    let daemon = setup.start().await;
    let token = setup.create_key("scorer", "score", None);
    let client = setup.client(daemon.addr);
    // ~400 bytes a request record: about 15 segments' worth.
    infer(&client, &token, 300).await;
    let log = daemon.log();
    daemon.stop();

    let dir = setup.dir().join("state").join("audit");
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("audit-"))
        .collect();
    let total: u64 = segments.iter().map(|e| e.metadata().unwrap().len()).sum();
    // The limit, plus the segment that was filling when it was last applied.
    assert!(
        total <= 32768 + 8192 + 1024,
        "{total} bytes in {} segments",
        segments.len()
    );
    assert!(
        !dir.join("audit-000001.log").exists(),
        "the oldest segment was removed"
    );
    assert!(dir.join("PRUNED").exists());
    let stdout = verify_ok(&dir);
    assert!(stdout.contains("removed by retention"), "{stdout}");
    // The log itself says what retention removed.
    let text: String = segments
        .iter()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(text.contains("\"kind\":\"pruned\""), "no pruned record");
    assert!(
        log.contains("audit retention removed the oldest segments"),
        "cofferd logs that retention removed segments: {log}"
    );
}

#[tokio::test]
async fn anonymous_floods_are_counted_and_admin_records_outlive_retention() {
    let setup = small_log();
    let daemon = setup.start().await;
    // An admin record, first in the log after the start-up records.
    let token = setup.create_key("scorer", "score", None);
    let client = setup.client(daemon.addr);
    // 2,000 requests without a valid key: liveness probes and 401s.
    let mut conn = client.connect().await.unwrap();
    for i in 0..2000 {
        let key = (i % 2 == 1).then_some("cof_not_a_key");
        let r = conn
            .get(if i % 2 == 0 { "/healthz" } else { "/v2" }, key)
            .await
            .unwrap();
        assert!(r.status == 200 || r.status == 401, "{}", r.status);
    }
    // Authenticated traffic: ~15 segments' worth, so retention removes the oldest,
    // the one with the admin record included.
    infer(&client, &token, 300).await;
    daemon.stop();

    let dir = setup.dir().join("state").join("audit");
    assert!(
        !dir.join("audit-000001.log").exists(),
        "retention removed the oldest segment"
    );
    let text = crate::common::audit_text(&dir);
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // No request without a key is a record of its own; they are counted.
    assert!(
        !records
            .iter()
            .any(|r| r["event"]["kind"] == "request" && r["event"]["key_id"].is_null()),
        "an unauthenticated request was recorded one by one"
    );
    let counted: u64 = records
        .iter()
        .filter(|r| r["event"]["kind"] == "unauthenticated")
        .map(|r| r["event"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 2000);
    // The key's creation outlived its segment: carried forward, with its original seq.
    let carried_admin: Vec<_> = records
        .iter()
        .filter(|r| r["event"]["kind"] == "carried" && r["event"]["event"]["kind"] == "admin")
        .collect();
    assert!(
        carried_admin.iter().any(|r| r["event"]["event"]["action"]
            .as_str()
            .unwrap_or("")
            .contains("keys")),
        "the key creation record is gone: {carried_admin:?}"
    );
    assert!(
        carried_admin
            .iter()
            .all(|r| r["event"]["seq"].as_u64().unwrap() < 20)
    );
    verify_ok(&dir);
}
