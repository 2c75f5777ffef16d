//! Authentication, scopes, key lifecycle through cofferctl, and error shapes.

use http::{Method, StatusCode};

use crate::common::Setup;

#[tokio::test]
async fn keys_and_scopes_decide_401_403_200() {
    let s = Setup::new();
    let d = s.start().await;
    let c = s.client(d.addr);

    let live = c.get("/healthz", None).await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(live.headers.contains_key("x-request-id"));

    let r = c.get("/v2", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "invalid_api_key", "OIP shape on /v2");
    assert!(r.json()["error"].is_string());

    let r = c.get("/v1/models", Some("coffer_not-a-key")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json()["error"]["code"],
        "invalid_api_key",
        "OpenAI shape on /v1"
    );

    let metrics_key = s.create_key("metrics-only", "metrics", None);
    let r = c.get("/v2", Some(&metrics_key)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["code"], "insufficient_scope");
    let r = c.get("/metrics", Some(&metrics_key)).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("coffer_http_requests_total{route=\"/v2\",status=\"403\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("coffer_http_rejections_total{reason=\"forbidden\"} 1"),
        "{text}"
    );
    assert!(text.contains("coffer_build_info"), "{text}");

    let score_key = s.create_key("scorer", "score", None);
    let r = c.get("/v2", Some(&score_key)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["name"], "cofferd");
    let r = c.get("/readyz", Some(&score_key)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["ready"], true);
    assert_eq!(r.json()["components"]["listener"]["ready"], true);

    let r = c.get("/v2/nowhere", Some(&score_key)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "not_found");
    let r = c
        .request(Method::DELETE, "/v2", Some(&score_key), b"")
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    let log = d.log();
    assert!(
        !log.contains(&score_key) && !log.contains(&metrics_key),
        "a key leaked into the log"
    );
    d.stop();
}

#[tokio::test]
async fn revoked_key_fails_on_the_next_request_of_the_same_connection() {
    let s = Setup::new();
    let d = s.start().await;
    let key = s.create_key("soon-gone", "score", None);
    let mut conn = s.client(d.addr).connect().await.unwrap();
    assert_eq!(
        conn.get("/v2", Some(&key)).await.unwrap().status,
        StatusCode::OK
    );

    let out = s.ctl(&["keys", "revoke", "soon-gone"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        conn.get("/v2", Some(&key)).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );

    let out = s.ctl(&["keys", "revoke", "soon-gone"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already revoked"));
    let list = s.ctl(&["--json", "keys", "list"]);
    let keys: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(keys[0]["revoked_at"].is_u64());
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&key),
        "list must not show tokens"
    );
    d.stop();
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let s = Setup::new();
    let d = s.start().await;
    let key = s.create_key("durable", "score,metrics", None);
    d.stop();
    let d = s.start().await;
    let r = s.client(d.addr).get("/v2", Some(&key)).await;
    assert_eq!(r.status, StatusCode::OK);
    let human = s.ctl(&["keys", "list"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("durable") && text.contains("score,metrics"),
        "{text}"
    );
    d.stop();
}

#[tokio::test]
async fn cofferctl_refuses_bad_scopes_and_rates_clearly() {
    let s = Setup::new();
    let d = s.start().await;
    let out = s.ctl(&["keys", "create", "--name", "x", "--scopes", "chat,root"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scope \"root\""));
    let out = s.ctl(&[
        "keys", "create", "--name", "x", "--scopes", "chat", "--rate", "fast",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a rate"));
    d.stop();
}
