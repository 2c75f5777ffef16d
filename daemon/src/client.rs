//! A small HTTP/1.1 client for the admin Unix socket, used by `cofferctl`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why an admin call failed before an HTTP answer came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the admin socket {path}: {source} (is cofferd running, and may this user use its socket?)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin socket protocol error: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
}

/// One answer from the admin API.
#[derive(Debug)]
pub struct AdminResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

impl AdminResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The error message of a failed call, from the `{"error": {...}}` body.
    pub fn error_message(&self) -> String {
        let v = self.json();
        v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }
}

/// A fresh HTTP/1.1 connection to the admin socket.
async fn connect<B>(
    socket: &Path,
) -> Result<hyper::client::conn::http1::SendRequest<B>, ClientError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one request with an optional JSON body over a fresh connection.
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<AdminResponse, ClientError> {
    let mut sender = connect(socket).await?;
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(AdminResponse { status, body })
}

/// Why a version directory could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error(transparent)]
    Version(#[from] coffer_models::VerifyError),
}

/// Sends the version directory `dir` to `POST /admin/models` as the import body
/// (`u64` big-endian manifest length, the manifest, then every listed file in manifest
/// order), streaming the files from a blocking reader thread. `progress(sent, total)`
/// is called as file bytes go out. The daemon hashes what it receives; nothing here is
/// trusted.
pub async fn import(
    socket: &Path,
    dir: &Path,
    allow_schema_change: bool,
    mut progress: impl FnMut(u64, u64) + Send + 'static,
) -> Result<AdminResponse, ImportError> {
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    let coffer_models::import_body::ImportBody {
        head, files, total, ..
    } = coffer_models::import_body::prepare(dir)?;
    let mut sender = connect(socket).await?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        if tx
            .blocking_send(Ok(Frame::data(Bytes::from(head))))
            .is_err()
        {
            return;
        }
        let mut sent = 0u64;
        for path in files {
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        sent += n as u64;
                        if tx.blocking_send(Ok(Frame::data(Bytes::from(buf)))).is_err() {
                            return;
                        }
                        progress(sent, total);
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        }
    });
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let query = if allow_schema_change {
        "?allow_schema_change=true"
    } else {
        ""
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/admin/models{query}"))
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .map_err(ClientError::Request)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(ClientError::Http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Http)?
        .to_bytes();
    // Not joined: when cofferd answers before reading everything (a refusal), the
    // reader thread ends at its next send, once the connection drops the body.
    drop(reader);
    Ok(AdminResponse { status, body })
}

/// Sends one request and hands each line of the answer to `line` as it arrives
/// (NDJSON progress streams); returns the status.
pub async fn call_lines(
    socket: &Path,
    method: Method,
    path: &str,
    mut line: impl FnMut(&[u8]),
) -> Result<StatusCode, ClientError> {
    let mut sender = connect(socket).await?;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            pending.extend_from_slice(&data);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let rest = pending.split_off(pos + 1);
                line(&pending[..pos]);
                pending = rest;
            }
        }
    }
    if !pending.is_empty() {
        line(&pending);
    }
    Ok(status)
}
