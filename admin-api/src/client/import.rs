//! `POST /admin/models`: a version directory streamed as the import body (`u64`
//! big-endian manifest length, the manifest, then every listed file in manifest order,
//! [`coffer_models::import_body`]), read a chunk at a time on a blocking thread. cofferd
//! hashes what it receives; nothing here is trusted.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::{AdminClient, ClientError, Reply, answer};
use crate::models::VersionRecord;
use crate::path;

/// Bytes read from a file at a time.
const CHUNK: usize = 1 << 20;

/// Called as file bytes go out: `(sent, total)`.
pub type ImportProgress = Box<dyn FnMut(u64, u64) + Send>;

type Chunks = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

impl AdminClient {
    /// Sends the version directory `dir`; cofferd stores it and runs its gate. The
    /// record comes back with state `ready`, or `failed` with the gate's reason.
    pub async fn import(
        &self,
        dir: &Path,
        allow_schema_change: bool,
        progress: Option<ImportProgress>,
    ) -> Result<VersionRecord, ClientError> {
        let coffer_models::import_body::ImportBody {
            head, files, total, ..
        } = coffer_models::import_body::prepare(dir)?;
        let (tx, rx) = mpsc::channel(4);
        let reader = tokio::task::spawn_blocking(move || send(head, files, total, progress, &tx));
        let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let target = path::import(allow_schema_change);
        let sent = self
            .timed(async {
                let mut sender = self.connect().await?;
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(&target)
                    .header(http::header::HOST, "localhost")
                    .header(http::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body)?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                Ok(Reply { status, body })
            })
            .await;
        match sent {
            Ok(reply) => answer(&format!("POST {target}"), reply),
            Err(e) => {
                // A file that could not be read explains the broken request best. The
                // connection is gone, so the reader stops at its next send.
                match tokio::time::timeout(std::time::Duration::from_secs(1), reader).await {
                    Ok(Ok(Err(read_error))) => Err(read_error),
                    _ => Err(e),
                }
            }
        }
    }
}

/// Feeds the import body into `tx`; stops quietly when the request is gone (cofferd
/// answered before reading everything: a refusal).
fn send(
    head: Vec<u8>,
    files: Vec<PathBuf>,
    total: u64,
    mut progress: Option<ImportProgress>,
    tx: &Chunks,
) -> Result<(), ClientError> {
    if tx
        .blocking_send(Ok(Frame::data(Bytes::from(head))))
        .is_err()
    {
        return Ok(());
    }
    let mut sent = 0u64;
    for path in files {
        let fail = |source: std::io::Error| {
            let _ = tx.blocking_send(Err(std::io::Error::new(source.kind(), source.to_string())));
            ClientError::Read {
                path: path.clone(),
                source,
            }
        };
        let mut file = std::fs::File::open(&path).map_err(fail)?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            sent += n as u64;
            if tx.blocking_send(Ok(Frame::data(Bytes::from(buf)))).is_err() {
                return Ok(());
            }
            if let Some(p) = progress.as_mut() {
                p(sent, total);
            }
        }
    }
    Ok(())
}
