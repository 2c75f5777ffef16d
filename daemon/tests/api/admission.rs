//! Admission: per-key rate (429), body size (413), the global in-flight bound (503).

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::common::{RawConn, Setup};

#[tokio::test]
async fn rate_limited_key_gets_429_with_retry_after() {
    let s = Setup::new();
    let d = s.start().await;
    let key = s.create_key("limited", "chat", Some(("1/s", 2)));
    let other = s.create_key("free", "chat", None);
    let c = s.client(d.addr);
    let mut conn = c.connect().await.unwrap();
    assert_eq!(
        conn.get("/v1/models", Some(&key)).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(
        conn.get("/v1/models", Some(&key)).await.unwrap().status,
        StatusCode::OK
    );
    let r = conn.get("/v1/models", Some(&key)).await.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    // Another key is not affected, and the limited key recovers after the wait.
    assert_eq!(
        conn.get("/v1/models", Some(&other)).await.unwrap().status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        conn.get("/v1/models", Some(&key)).await.unwrap().status,
        StatusCode::OK
    );
    d.stop();
}

#[tokio::test]
async fn oversized_bodies_get_413_and_bad_json_400() {
    let mut s = Setup::new();
    s.server_extra = "max_body_bytes = 64".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let big = vec![b' '; 100];
    let r = c
        .request(Method::POST, "/v2/repository/index", Some(&key), &big)
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["code"], "request_too_large");

    let r = c
        .request(
            Method::POST,
            "/v2/repository/index",
            Some(&key),
            b"{\"ready\": true}",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().is_array());
    let r = c
        .request(
            Method::POST,
            "/v2/repository/index",
            Some(&key),
            b"{not json",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "invalid_json");
    d.stop();
}

#[tokio::test]
async fn full_server_answers_503_with_retry_after_and_recovers() {
    let mut s = Setup::new();
    s.admission_extra = "max_in_flight = 1\nmax_queue = 0\nretry_after = \"3s\"".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score,metrics", None);
    let holder = s.create_key("holder", "score", None);
    let c = s.client(d.addr);

    // Hold the only slot: a request whose body has not arrived yet (another key's, so
    // that this is the global bound, not a key's share).
    let mut held = RawConn::open(&c).await;
    held.post_head("/v2/repository/index", &holder, 2).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = c.get("/v2", Some(&key)).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "3");
    assert_eq!(refused.json()["code"], "server_overloaded");

    held.send(b"{}").await;
    assert_eq!(held.read_status().await, 200);
    assert_eq!(c.get("/v2", Some(&key)).await.status, StatusCode::OK);
    let metrics = c.get("/metrics", Some(&key)).await;
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains("coffer_http_rejections_total{reason=\"overloaded\"}")
    );
    d.stop();
}

#[tokio::test]
async fn queued_request_waits_for_a_slot_instead_of_failing() {
    let mut s = Setup::new();
    s.admission_extra = "max_in_flight = 1\nmax_queue = 1\nqueue_timeout = \"10s\"".into();
    let d = s.start().await;
    // Three keys: each request here is within its key's share; the global bounds decide.
    let key = s.create_key("scorer", "score", None);
    let holder = s.create_key("holder", "score", None);
    let waiter = s.create_key("waiter", "score", None);
    let c = s.client(d.addr);
    let mut held = RawConn::open(&c).await;
    held.post_head("/v2/repository/index", &holder, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let c2 = c.clone();
    let k2 = waiter.clone();
    let queued = tokio::spawn(async move { c2.get("/v2", Some(&k2)).await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The queue (one place) is taken now: a third request is refused at once.
    assert_eq!(
        c.get("/v2", Some(&key)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    held.send(b"{}").await;
    assert_eq!(held.read_status().await, 200);
    assert_eq!(queued.await.unwrap(), StatusCode::OK);
    d.stop();
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504() {
    let mut s = Setup::new();
    s.server_extra = "request_timeout = \"300ms\"".into();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let mut slow = RawConn::open(&c).await;
    slow.post_head("/v2/repository/index", &key, 2).await;
    let started = Instant::now();
    assert_eq!(slow.read_status().await, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        c.get("/v2", Some(&key)).await.status,
        StatusCode::OK,
        "the slot was not freed"
    );
    d.stop();
}
