//! `POST .../verify?progress=true`: the answer as NDJSON lines, handed over as they
//! arrive, so a long verification shows its progress.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};

use super::{AdminClient, ClientError, refusal};
use crate::models::{Verified, VerifyLine, VerifyProgress};
use crate::path;

/// The longest line accepted (progress lines are short; a result carries one record).
const MAX_LINE: usize = 1 << 20;

impl AdminClient {
    /// Re-hashes a version's files, calling `progress` for each progress line.
    pub async fn verify_with_progress(
        &self,
        name: &str,
        version: &str,
        mut progress: impl FnMut(&VerifyProgress) + Send,
    ) -> Result<Verified, ClientError> {
        let target = path::verify(name, version, true);
        self.timed(async {
            let mut sender = self.connect().await?;
            let request = Request::builder()
                .method(Method::POST)
                .uri(&target)
                .header(http::header::HOST, "localhost")
                .body(Full::new(Bytes::new()))?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let mut body = response.into_body();
            if !status.is_success() {
                let bytes = body.collect().await?.to_bytes();
                return Err(refusal(status, &bytes));
            }
            let mut pending: Vec<u8> = Vec::new();
            let mut outcome = None;
            let mut take = |line: &[u8]| -> Result<(), ClientError> {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                let parsed: VerifyLine =
                    serde_json::from_slice(line).map_err(|source| ClientError::Answer {
                        call: format!("POST {target}"),
                        status,
                        source,
                    })?;
                match parsed {
                    VerifyLine::Progress(p) => progress(&p),
                    VerifyLine::Result(r) => outcome = Some(Ok(r)),
                    VerifyLine::Error(e) => {
                        outcome = Some(Err(ClientError::Refused {
                            status,
                            code: e.code,
                            message: e.message,
                        }))
                    }
                }
                Ok(())
            };
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    pending.extend_from_slice(&data);
                    while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                        let rest = pending.split_off(pos + 1);
                        take(&pending[..pos])?;
                        pending = rest;
                    }
                    if pending.len() > MAX_LINE {
                        pending.clear();
                    }
                }
            }
            take(&pending)?;
            outcome.unwrap_or_else(|| {
                Err(ClientError::Refused {
                    status,
                    code: "incomplete_answer".into(),
                    message: "the verification's answer ended without a result".into(),
                })
            })
        })
        .await
    }
}
