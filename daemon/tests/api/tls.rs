//! TLS: ALPN h2 and http/1.1, TLS 1.2 accepted, mTLS modes, certificate reload on SIGHUP.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustix::process::Signal;

use crate::common::{Client, Pki, Setup};

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_tls12_still_works() {
    let s = Setup::new();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);

    let tls = s.client(d.addr).with_alpn(&[b"h2"]).tls().await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/v2")
        .header("authorization", format!("Bearer {key}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("cofferd"));

    let tls12 = s.client(d.addr).tls12_only().tls().await.unwrap();
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    d.stop();
}

#[tokio::test]
async fn required_mtls_rejects_clients_without_a_ca_signed_certificate() {
    let mut s = Setup::new();
    let clients = Pki::new(&s.dir().join("clients"), "client");
    clients.issue("app", "branch-app", &[]);
    let strangers = Pki::new(&s.dir().join("strangers"), "stranger");
    strangers.issue("intruder", "intruder", &[]);
    s.tls_extra = format!(
        "client_auth = \"required\"\nclient_ca = \"{}\"",
        clients.ca_path("client").display()
    );
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let ca = s.pki.ca_path("server");

    // No certificate: the handshake or the first request fails.
    let anonymous = Client::new(d.addr, &ca, None);
    let failed = match anonymous.connect().await {
        Err(_) => true,
        Ok(mut conn) => conn.get("/v2", Some(&key)).await.is_err(),
    };
    assert!(failed, "a client without a certificate was served");

    let intruder = Client::new(
        d.addr,
        &ca,
        Some((&strangers.path("intruder"), &strangers.path("intruder-key"))),
    );
    let failed = match intruder.connect().await {
        Err(_) => true,
        Ok(mut conn) => conn.get("/v2", Some(&key)).await.is_err(),
    };
    assert!(failed, "a certificate from another CA was accepted");

    let app = Client::new(
        d.addr,
        &ca,
        Some((&clients.path("app"), &clients.path("app-key"))),
    );
    assert_eq!(app.get("/v2", Some(&key)).await.status, StatusCode::OK);
    d.stop();
}

#[tokio::test]
async fn optional_mtls_serves_clients_without_certificates() {
    let mut s = Setup::new();
    let clients = Pki::new(&s.dir().join("clients"), "client");
    s.tls_extra = format!(
        "client_auth = \"optional\"\nclient_ca = \"{}\"",
        clients.ca_path("client").display()
    );
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    assert_eq!(
        s.client(d.addr).get("/v2", Some(&key)).await.status,
        StatusCode::OK
    );
    d.stop();
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_live_connections() {
    let s = Setup::new();
    let d = s.start().await;
    let key = s.create_key("ops", "metrics", None);
    let c = s.client(d.addr);
    let mut old = c.connect().await.unwrap();
    let first = old.peer_cert.clone();
    assert_eq!(
        old.get("/healthz", None).await.unwrap().status,
        StatusCode::OK
    );

    // A broken file is refused and the old certificate stays.
    std::fs::write(s.pki.path("server"), "not a certificate").unwrap();
    d.signal(Signal::HUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.connect().await.unwrap().peer_cert, first);

    let renewed = s
        .pki
        .issue("server", "localhost-renewed", &["localhost", "127.0.0.1"]);
    assert_ne!(renewed, first);
    d.signal(Signal::HUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.connect().await.unwrap().peer_cert != renewed {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        old.get("/healthz", None).await.unwrap().status,
        StatusCode::OK,
        "live connection dropped"
    );
    let metrics = c.get("/metrics", Some(&key)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("coffer_tls_reloads_total{result=\"error\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("coffer_tls_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    d.stop();
}
