//! The client against a one-connection fake cofferd on a real Unix socket.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;

use super::*;
use crate::models::VersionState;

/// Answers one request with `status` and `body`; yields the request line and body.
async fn fake_cofferd(
    socket: &Path,
    status: StatusCode,
    body: &'static str,
) -> tokio::task::JoinHandle<(String, Bytes)> {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let tx = tx.lock().unwrap().take();
                async move {
                    let target = format!("{} {}", req.method(), req.uri());
                    let got = req.into_body().collect().await?.to_bytes();
                    if let Some(tx) = tx {
                        let _ = tx.send((target, got));
                    }
                    let mut response =
                        http::Response::new(http_body_util::Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    Ok::<_, hyper::Error>(response)
                }
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
        rx.await.unwrap()
    })
}

const RECORD: &str = r#"{"name":"c","version":"1","kind":"chat","format":"gguf","state":"ready",
    "reason":"no evaluation gate in the manifest","variant":null,"manifest_sha256":"ab",
    "bytes":600005,"installed_at":1,"updated_at":2,"allow_schema_change":false}"#;

const MANIFEST: &str = "name = \"c\"\nversion = \"1\"\nkind = \"chat\"\nformat = \"gguf\"\n\
    [[files]]\npath = \"m.gguf\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 600000\nrole = \"model\"\n\
    [[files]]\npath = \"a.gguf\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 5\nrole = \"model\"\n";

/// A version directory whose files are listed in another order than their names.
fn version_dir() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("manifest.toml"), MANIFEST).unwrap();
    std::fs::write(dir.path().join("m.gguf"), &big).unwrap();
    std::fs::write(dir.path().join("a.gguf"), b"tail!").unwrap();
    let mut want = (MANIFEST.len() as u64).to_be_bytes().to_vec();
    want.extend_from_slice(MANIFEST.as_bytes());
    want.extend_from_slice(&big);
    want.extend_from_slice(b"tail!");
    (dir, want)
}

#[tokio::test]
async fn import_streams_the_manifest_then_the_files_in_manifest_order() {
    let (dir, want) = version_dir();
    let socket = dir.path().join("admin.sock");
    let server = fake_cofferd(&socket, StatusCode::CREATED, RECORD).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = {
        let seen = std::sync::Arc::clone(&seen);
        Box::new(move |sent, total| seen.lock().unwrap().push((sent, total)))
    };
    let record = AdminClient::new(&socket)
        .with_timeout(Duration::from_secs(10))
        .import(dir.path(), true, Some(progress))
        .await
        .unwrap();
    assert_eq!(record.state, VersionState::Ready);
    let (target, body) = server.await.unwrap();
    assert_eq!(target, "POST /admin/models?allow_schema_change=true");
    assert_eq!(body.len(), want.len());
    assert!(
        body == want,
        "the body differs from the expected import body"
    );
    assert_eq!(seen.lock().unwrap().last(), Some(&(600_005, 600_005)));
}

#[tokio::test]
async fn a_refusal_keeps_its_status_and_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let server = fake_cofferd(
        &socket,
        StatusCode::CONFLICT,
        r#"{"error":{"code":"model_pinned","message":"m is pinned to 1"}}"#,
    )
    .await;
    let e = AdminClient::new(&socket)
        .activate("m", "2", ActivateOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Refused { status, code, message }
            if *status == StatusCode::CONFLICT && code == "model_pinned" && message == "m is pinned to 1"),
        "{e:?}"
    );
    assert_eq!(e.code(), Some("model_pinned"));
    let (target, body) = server.await.unwrap();
    assert_eq!(target, "POST /admin/models/m/versions/2/activate");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"allow_schema_change": false, "require_shadow": false})
    );
}

#[tokio::test]
async fn an_answer_that_is_not_the_contract_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let _server = fake_cofferd(&socket, StatusCode::OK, r#"{"models": [{"name": 3}]}"#).await;
    let e = AdminClient::new(&socket).models().await.unwrap_err();
    assert!(matches!(e, ClientError::Answer { .. }), "{e:?}");
}

#[tokio::test]
async fn a_refusal_without_an_error_body_keeps_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let _server = fake_cofferd(&socket, StatusCode::BAD_GATEWAY, "upstream gone").await;
    let e = AdminClient::new(&socket).keys().await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Refused { code, message, .. } if code.is_empty() && message == "upstream gone"),
        "{e:?}"
    );
}

#[tokio::test]
async fn verification_progress_lines_arrive_and_the_result_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let body: &'static str = Box::leak(
        format!(
            "{}\n{}\n{{\"result\":{{\"ok\":true,\"record\":{}}}}}\n",
            r#"{"progress":{"file":"m.gguf","done":10,"total":20}}"#,
            r#"{"progress":{"file":"m.gguf","done":20,"total":20}}"#,
            RECORD.replace('\n', "")
        )
        .into_boxed_str(),
    );
    let _server = fake_cofferd(&socket, StatusCode::OK, body).await;
    let mut seen = Vec::new();
    let verified = AdminClient::new(&socket)
        .verify_with_progress("c", "1", |p| seen.push(p.done))
        .await
        .unwrap();
    assert!(verified.ok);
    assert_eq!(verified.record.version, "1");
    assert_eq!(seen, vec![10, 20]);
}

#[tokio::test]
async fn an_error_line_ends_a_verification_as_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let _server = fake_cofferd(
        &socket,
        StatusCode::OK,
        "{\"progress\":{\"file\":\"m\",\"done\":1,\"total\":2}}\n{\"error\":{\"code\":\"verification_failed\",\"message\":\"m.gguf: sha256 differs\"}}\n",
    )
    .await;
    let e = AdminClient::new(&socket)
        .verify_with_progress("c", "1", |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("verification_failed"));
}

#[tokio::test]
async fn a_silent_daemon_runs_into_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let _hold = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let e = AdminClient::new(&socket)
        .with_timeout(Duration::from_millis(200))
        .health()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e:?}");
}

#[tokio::test]
async fn no_socket_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let e = AdminClient::new(dir.path().join("none.sock"))
        .health()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("is cofferd running"));
}
