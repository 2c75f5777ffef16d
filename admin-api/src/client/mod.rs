//! The one client of the admin socket: a fresh HTTP/1.1 connection per call, an
//! optional deadline over the whole call, typed answers, and refusals as
//! [`ClientError::Refused`] with the stable code. `cofferctl` and `coffer-agent` both
//! call cofferd through it.

mod import;
mod lines;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::decisions::{DecisionList, DecisionRecords, KeyRotated, ReplayReport, ReplayRequest};
use crate::health::HealthReport;
use crate::keys::{CreateKey, CreatedKey, KeyView};
use crate::models::{
    ActivateOptions, Activation, GcReport, History, ModelDetail, ModelList, PinRequest, Pinned,
    Unpinned, Verified, VersionDetail, VersionRecord,
};
use crate::reports::{DriftAnswer, ShadowReport, ShadowRequest};
use crate::sync::SyncEvent;
use crate::telemetry::{Ack, Acked, Batch, Checkpoints};
use crate::{ErrorBody, path};

pub use import::ImportProgress;

/// Why an admin call did not give the answer asked for.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the admin socket {path}: {source} (is cofferd running, and may this user use its socket?)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket protocol error: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
    #[error("cofferd did not answer within {0:?}")]
    Timeout(Duration),
    /// cofferd refused the call: its status, stable code and message.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("cofferd's answer to {call} ({status}) is not what the admin API defines: {source}")]
    Answer {
        call: String,
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The version directory to import is not one.
    #[error(transparent)]
    Version(#[from] coffer_models::VerifyError),
    /// A file of the version could not be read while it was sent.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The stable code of a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The refusal as cofferd sent it (`{"error": {...}}`), for `--json` output.
    pub fn body(&self) -> Option<ErrorBody> {
        match self {
            ClientError::Refused { code, message, .. } => {
                Some(ErrorBody::new(code.clone(), message.clone()))
            }
            _ => None,
        }
    }
}

/// A status and body as they came back.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Bytes,
}

/// The admin socket at a path, with an optional deadline per call.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
    timeout: Option<Duration>,
}

impl AdminClient {
    pub fn new(socket: impl Into<PathBuf>) -> AdminClient {
        AdminClient {
            socket: socket.into(),
            timeout: None,
        }
    }

    /// Every call must be answered in full within `timeout` (the upload of an import
    /// and cofferd's gate included).
    pub fn with_timeout(mut self, timeout: Duration) -> AdminClient {
        self.timeout = Some(timeout);
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A fresh HTTP/1.1 connection.
    async fn connect<B>(&self) -> Result<hyper::client::conn::http1::SendRequest<B>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Runs `call` under the client's deadline.
    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match self.timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| ClientError::Timeout(t))?,
            None => call.await,
        }
    }

    /// Sends one request with a JSON body (or none) and reads the whole answer.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        self.timed(async {
            let mut sender = self.connect().await?;
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, "localhost")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok(Reply { status, body })
        })
        .await
    }

    /// One call with a typed body and answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(ClientError::Encode)?;
        let call = format!("{method} {path}");
        let reply = self.raw(method, path, body).await?;
        answer(&call, reply)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    // Keys.

    pub async fn create_key(&self, key: &CreateKey) -> Result<CreatedKey, ClientError> {
        self.call(Method::POST, path::route::KEYS, Some(key)).await
    }

    pub async fn keys(&self) -> Result<Vec<KeyView>, ClientError> {
        self.get(path::route::KEYS).await
    }

    pub async fn revoke_key(&self, name: &str) -> Result<KeyView, ClientError> {
        self.call(Method::DELETE, &path::key(name), None::<&()>)
            .await
    }

    // Models.

    pub async fn models(&self) -> Result<ModelList, ClientError> {
        self.get(path::route::MODELS).await
    }

    pub async fn model(&self, name: &str) -> Result<ModelDetail, ClientError> {
        self.get(&path::model(name)).await
    }

    pub async fn version(&self, name: &str, version: &str) -> Result<VersionDetail, ClientError> {
        self.get(&path::version(name, version)).await
    }

    pub async fn history(
        &self,
        name: Option<&str>,
        limit: Option<usize>,
    ) -> Result<History, ClientError> {
        self.get(&path::history(name, limit)).await
    }

    /// Re-hashes a version's files; without progress lines.
    pub async fn verify(&self, name: &str, version: &str) -> Result<Verified, ClientError> {
        self.call(
            Method::POST,
            &path::verify(name, version, false),
            None::<&()>,
        )
        .await
    }

    pub async fn activate(
        &self,
        name: &str,
        version: &str,
        options: ActivateOptions,
    ) -> Result<Activation, ClientError> {
        self.call(Method::POST, &path::activate(name, version), Some(&options))
            .await
    }

    pub async fn rollback(&self, name: &str) -> Result<Activation, ClientError> {
        self.call(Method::POST, &path::rollback(name), None::<&()>)
            .await
    }

    pub async fn pin(&self, name: &str, version: &str) -> Result<Pinned, ClientError> {
        let body = PinRequest {
            version: version.into(),
        };
        self.call(Method::PUT, &path::pin(name), Some(&body)).await
    }

    pub async fn unpin(&self, name: &str) -> Result<Unpinned, ClientError> {
        self.call(Method::DELETE, &path::pin(name), None::<&()>)
            .await
    }

    pub async fn remove(&self, name: &str, version: &str) -> Result<VersionRecord, ClientError> {
        self.call(Method::DELETE, &path::version(name, version), None::<&()>)
            .await
    }

    pub async fn gc(&self) -> Result<GcReport, ClientError> {
        self.call(Method::POST, path::route::STORE_GC, None::<&()>)
            .await
    }

    pub async fn drift(&self, name: &str) -> Result<DriftAnswer, ClientError> {
        self.get(&path::drift(name)).await
    }

    pub async fn start_shadow(
        &self,
        name: &str,
        request: &ShadowRequest,
    ) -> Result<ShadowReport, ClientError> {
        self.call(Method::PUT, &path::shadow(name), Some(request))
            .await
    }

    pub async fn shadow_report(&self, name: &str) -> Result<ShadowReport, ClientError> {
        self.get(&path::shadow(name)).await
    }

    pub async fn stop_shadow(&self, name: &str) -> Result<ShadowReport, ClientError> {
        self.call(Method::DELETE, &path::shadow(name), None::<&()>)
            .await
    }

    // Decisions kept on the box.

    pub async fn decision(&self, request_id: &str) -> Result<DecisionRecords, ClientError> {
        self.get(&path::decision(request_id)).await
    }

    pub async fn decisions(
        &self,
        model: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<DecisionList, ClientError> {
        self.get(&path::decisions(model, since_ms, limit)).await
    }

    pub async fn replay_decisions(
        &self,
        request: &ReplayRequest,
    ) -> Result<ReplayReport, ClientError> {
        self.call(Method::POST, path::route::DECISIONS_REPLAY, Some(request))
            .await
    }

    pub async fn export_decisions(
        &self,
        model: Option<&str>,
        since_ms: u64,
        limit: usize,
        redacted: bool,
    ) -> Result<DecisionRecords, ClientError> {
        self.get(&path::decisions_export(model, since_ms, limit, redacted))
            .await
    }

    pub async fn rotate_decision_key(&self) -> Result<KeyRotated, ClientError> {
        self.call(Method::POST, path::route::DECISION_KEYS, None::<&()>)
            .await
    }

    // The fleet agent's calls.

    pub async fn health(&self) -> Result<HealthReport, ClientError> {
        self.get(path::route::HEALTH).await
    }

    pub async fn telemetry(&self, max: usize) -> Result<Batch, ClientError> {
        self.get(&path::telemetry(max)).await
    }

    pub async fn ack_telemetry(&self, batch_id: &str) -> Result<Acked, ClientError> {
        let body = Ack {
            batch_id: batch_id.into(),
        };
        self.call(Method::POST, path::route::TELEMETRY_ACK, Some(&body))
            .await
    }

    pub async fn checkpoints(&self, after: u64, limit: usize) -> Result<Checkpoints, ClientError> {
        self.get(&path::checkpoints(after, limit)).await
    }

    /// Answered with 204 and no body.
    pub async fn report_sync_event(&self, event: &SyncEvent) -> Result<(), ClientError> {
        let body = serde_json::to_vec(event).map_err(ClientError::Encode)?;
        let reply = self
            .raw(Method::POST, path::route::SYNC_EVENTS, Some(body))
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(refusal(reply.status, &reply.body))
        }
    }
}

/// A success as `T`, a refusal as [`ClientError::Refused`].
fn answer<T: DeserializeOwned>(call: &str, reply: Reply) -> Result<T, ClientError> {
    if !reply.status.is_success() {
        return Err(refusal(reply.status, &reply.body));
    }
    serde_json::from_slice(&reply.body).map_err(|source| ClientError::Answer {
        call: call.to_string(),
        status: reply.status,
        source,
    })
}

/// A refusal from its `{"error": {...}}` body; a body that is not one is kept as the
/// message (a proxy's or an old daemon's answer), with no code.
fn refusal(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ClientError::Refused {
            status,
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => ClientError::Refused {
            status,
            code: String::new(),
            message: match String::from_utf8_lossy(body).trim() {
                "" => format!("HTTP {status}"),
                text => text.chars().take(300).collect(),
            },
        },
    }
}

#[cfg(test)]
mod tests;
