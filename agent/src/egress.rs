//! Telemetry egress: take the oldest batch from cofferd's spool, run every string
//! through the redaction once more (the last filter before anything leaves the box),
//! send metrics by Prometheus remote-write and events by OTLP/HTTP, and acknowledge the
//! batch only when every configured sink accepted it. A failure leaves the batch in the
//! spool and the next attempt sends it again (at least once), after a backoff that
//! doubles up to `backoff_max`, with jitter.
//!
//! Sink answers follow the remote-write specification: 2xx accepted; 429 and 5xx
//! retried; any other 4xx means the sink will never take this batch (for example samples
//! older than Prometheus accepts), so it is logged, counted and acknowledged rather than
//! blocking the spool forever.

use std::time::Duration;

use bytes::Bytes;
use coffer_admin_api::{AdminClient, ClientError};
use coffer_privacy::telemetry::Record;
use http::StatusCode;
use rand::Rng as _;

use crate::config::AgentConfig;
use crate::transport::{self, HttpError, Tls};
use crate::{otlp, remote_write};

/// Why a delivery attempt failed; the batch stays in the spool.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("cofferd admin socket: {0}")]
    Daemon(#[source] ClientError),
    #[error("{sink}: {source}")]
    Sink {
        sink: &'static str,
        source: HttpError,
    },
    #[error("{sink} answered {status}; will retry")]
    SinkBusy {
        sink: &'static str,
        status: StatusCode,
    },
    #[error("remote-write encoding: {0}")]
    Encode(#[from] snap::Error),
}

/// What one attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    /// Records acknowledged (sent, or refused for good by a sink).
    pub records: usize,
    /// Records refused for good by a sink (4xx other than 429).
    pub refused: usize,
    /// Records still waiting in the spool after this batch.
    pub pending: usize,
}

/// cofferd's admin socket under the telemetry timeout.
fn daemon(config: &AgentConfig) -> AdminClient {
    AdminClient::new(&config.admin_socket).with_timeout(config.telemetry.timeout)
}

/// Sends to one sink; `Ok(false)` when the sink refused the batch for good.
pub(crate) async fn send(
    sink: &'static str,
    url: &http::Uri,
    tls: Option<&Tls>,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<bool, EgressError> {
    let reply = transport::post(url, tls, headers, body, timeout)
        .await
        .map_err(|source| EgressError::Sink { sink, source })?;
    let status = reply.status;
    if status.is_success() {
        return Ok(true);
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || !status.is_client_error()
    {
        return Err(EgressError::SinkBusy { sink, status });
    }
    let reason: String = String::from_utf8_lossy(&reply.body)
        .chars()
        .take(300)
        .collect();
    tracing::warn!(sink, %status, reason = %coffer_privacy::redact(&reason), "sink refused a telemetry batch for good; dropping it");
    Ok(false)
}

/// One attempt: a batch from the spool to the sinks, acknowledged on success.
pub async fn deliver_once(
    config: &AgentConfig,
    tls: Option<&Tls>,
) -> Result<Delivered, EgressError> {
    let t = &config.telemetry;
    let batch = daemon(config)
        .telemetry(t.batch_size)
        .await
        .map_err(EgressError::Daemon)?;
    if batch.records.is_empty() {
        return Ok(Delivered::default());
    }
    // The last filter: whatever cofferd wrote, every string is redacted again here.
    let records: Vec<Record> = batch.records.into_iter().map(Record::sanitized).collect();
    let site = coffer_privacy::redact(&config.site_id).into_owned();
    let mut refused = 0;
    if let Some(url) = &t.remote_write_url {
        let request = remote_write::build(&records, &site);
        if !request.timeseries.is_empty() {
            let body = Bytes::from(remote_write::encode(&request)?);
            if !send(
                "remote-write",
                url,
                tls,
                &remote_write::HEADERS,
                body,
                t.timeout,
            )
            .await?
            {
                refused = records.len();
            }
        }
    }
    if let Some(url) = &t.otlp_logs_url {
        if let Some(logs) = otlp::build(&records, &site) {
            let body = Bytes::from(logs.to_string());
            if !send("otlp", url, tls, &otlp::HEADERS, body, t.timeout).await? {
                refused = records.len();
            }
        }
    }
    daemon(config)
        .ack_telemetry(&batch.batch_id)
        .await
        .map_err(EgressError::Daemon)?;
    Ok(Delivered {
        records: records.len(),
        refused,
        pending: batch.pending.saturating_sub(records.len()),
    })
}

/// `d` with ±10% jitter, so that a fleet does not move in step.
pub(crate) fn jitter(d: Duration) -> Duration {
    let f = rand::thread_rng().gen_range(0.9..1.1);
    d.mul_f64(f)
}

/// Delivers until `stop` resolves: drains the spool, then waits `interval`; after a
/// failure waits a backoff that doubles from `backoff_min` to `backoff_max`.
pub async fn run(
    config: &AgentConfig,
    tls: Option<&Tls>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let t = &config.telemetry;
    let mut backoff = t.backoff_min;
    loop {
        let delivered = deliver_once(config, tls).await;
        // Audit checkpoints once the spool is drained (or delivery failed): they wait
        // for no sink but OTLP's, and a failure leaves them for the next round.
        if t.otlp_logs_url.is_some() && !matches!(&delivered, Ok(d) if d.pending > 0) {
            crate::checkpoints::ship_logged(config, tls).await;
        }
        let wait = match delivered {
            Ok(d) => {
                backoff = t.backoff_min;
                if d.records > 0 {
                    tracing::info!(
                        records = d.records,
                        refused = d.refused,
                        pending = d.pending,
                        "telemetry delivered"
                    );
                }
                if d.pending > 0 {
                    Duration::ZERO
                } else {
                    jitter(t.interval)
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "telemetry delivery failed; the batch stays spooled");
                let wait = jitter(backoff);
                backoff = (backoff * 2).min(t.backoff_max);
                wait
            }
        };
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
