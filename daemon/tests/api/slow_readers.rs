//! Clients that never read their answers, over a real HTTP/2 connection that advertises a
//! zero flow-control window and never sends WINDOW_UPDATE: twice `max_in_flight` such
//! infer requests leave other clients' requests answered (a complete response gives its
//! admission slot back when it is handed over); chat streams that cannot be sent end
//! after `stream_stall_timeout`, give their slots back and cancel their generation; one
//! key runs at most `max_in_flight_per_key` requests, its next one waits while other
//! keys are served.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::client::TlsStream;

use crate::common::{Client, Setup, fixture, h2_request_frames, metric};

const INFER: &[u8] = br#"{"inputs":[{"name":"features","shape":[1,61],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#;

/// Sends one request on a fresh HTTP/2 connection whose window is zero; returns the
/// connection (kept open, never read past the response headers) and the response status.
async fn zero_window(
    c: &Client,
    path: &str,
    key: &str,
    body: &[u8],
) -> (TlsStream<tokio::net::TcpStream>, u16) {
    let mut tls = c.clone().with_alpn(&[b"h2"]).tls().await.unwrap();
    let auth = format!("Bearer {key}");
    let len = body.len().to_string();
    let frames = h2_request_frames(
        "POST",
        path,
        "localhost",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("content-length", &len),
        ],
        body,
        Some(0),
    );
    tls.write_all(&frames).await.unwrap();
    // Read frames until the HEADERS of stream 1 (its DATA cannot come: window 0).
    let mut buf = Vec::new();
    let status = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
            .await
            .expect("response headers")
            .unwrap();
        assert!(n > 0, "connection closed before the response headers");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(status) = headers_status(&buf) {
            break status;
        }
    };
    (tls, status)
}

/// The status of stream 1's HEADERS frame in `buf`, if it has arrived: hyper encodes
/// `:status` as an indexed field (0x88 = 200, 0x8d = 404, …) or a literal.
fn headers_status(buf: &[u8]) -> Option<u16> {
    let mut at = 0;
    while at + 9 <= buf.len() {
        let len =
            usize::from(buf[at]) << 16 | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]);
        let (kind, stream) = (
            buf[at + 3],
            u32::from_be_bytes(buf[at + 5..at + 9].try_into().unwrap()),
        );
        if at + 9 + len > buf.len() {
            return None;
        }
        if kind == 0x01 && stream == 1 {
            let first = buf[at + 9];
            return Some(match first {
                0x88 => 200,
                0x89 => 204,
                0x8a => 206,
                0x8b => 304,
                0x8c => 400,
                0x8d => 404,
                0x8e => 500,
                // A literal :status (index 8 as its name): three ASCII digits follow.
                _ => {
                    let p = &buf[at + 9..at + 9 + len];
                    let digits = p.windows(3).find(|w| w.iter().all(u8::is_ascii_digit))?;
                    std::str::from_utf8(digits).ok()?.parse().ok()?
                }
            });
        }
        at += 9 + len;
    }
    None
}

#[tokio::test]
async fn answers_nobody_reads_do_not_hold_admission_slots() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    s.admission_extra = "max_in_flight = 4\nmax_queue = 0\n".into();
    let d = s.start().await;
    let keys: Vec<String> = (0..4)
        .map(|i| s.create_key(&format!("reader{i}"), "score", None))
        .collect();
    let c = s.client(d.addr);
    let mut held = Vec::new();
    for i in 0..8 {
        let (conn, status) =
            zero_window(&c, "/v2/models/credit-lr/infer", &keys[i % 4], INFER).await;
        assert_eq!(status, 200);
        held.push(conn);
    }
    let fresh = s.create_key("fresh", "score", None);
    let r = c
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(&fresh),
            INFER,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    drop(held);
    d.stop();
}

#[tokio::test]
async fn a_chat_stream_nobody_reads_ends_and_one_key_cannot_take_the_pool() {
    let Some(dir) = crate::chat::model_dir() else {
        return;
    };
    let mut s = Setup::new();
    s.server_extra = "stream_stall_timeout = \"2s\"\n".into();
    s.admission_extra = "max_in_flight = 4\nmax_in_flight_per_key = 2\n".into();
    s.chat_extra = format!(
        "models = [\"{}\"]\nthreads = 1\ncontext = 512\nslots = 4\n",
        dir.display()
    );
    let d = s.start().await;
    let key = s.create_key("greedy", "chat,metrics", None);
    let c = s.client(d.addr);
    let stream = json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": "Count from one to one hundred." }],
        "max_tokens": 200,
        "stream": true
    })
    .to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        let (conn, status) = zero_window(&c, "/v1/chat/completions", &key, stream.as_bytes()).await;
        assert_eq!(status, 200);
        held.push(conn);
    }
    // The key has its share running: its third request waits for one of its own slots,
    // while another key is served at once.
    let short = json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": "Hi" }],
        "max_tokens": 4
    })
    .to_string();
    let started = Instant::now();
    let (c2, k2, body) = (c.clone(), key.clone(), short.clone());
    let third = tokio::spawn(async move {
        let r = c2
            .request(
                Method::POST,
                "/v1/chat/completions",
                Some(&k2),
                body.as_bytes(),
            )
            .await;
        (r.status, started.elapsed())
    });
    let other = s.create_key("other", "chat", None);
    let r = c
        .request(
            Method::POST,
            "/v1/chat/completions",
            Some(&other),
            short.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let other_after = started.elapsed();
    // The stalled streams end after the stall timeout (and a watchdog tick), give their
    // slots back, and the waiting request runs.
    let (status, third_after) = third.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    eprintln!(
        "another key served after {other_after:?}; the key's third request after {third_after:?}"
    );
    assert!(
        third_after >= Duration::from_millis(1500) && third_after > other_after,
        "{third_after:?} {other_after:?}"
    );
    // The waiting request ran once one stalled stream gave its slot back; the other
    // ends on its own stall timer, at most a watchdog tick later.
    let mut text = String::new();
    for _ in 0..100 {
        text = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
        if metric(&text, "coffer_http_streams_stalled_total") == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&text, "coffer_http_streams_stalled_total"),
        Some(2.0),
        "{text}"
    );
    let cancelled = metric(
        &text,
        "coffer_chat_cancelled_total{model=\"smollm2-135m\",version=\"1.0.0\"}",
    );
    assert!(cancelled.is_some_and(|n| n >= 1.0), "{text}");
    drop(held);
    d.stop();
}
