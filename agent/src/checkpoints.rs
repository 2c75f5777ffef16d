//! The audit log's signed checkpoints leave the appliance: after each telemetry round the
//! agent asks cofferd for the checkpoints after the last one it shipped
//! (`GET /admin/audit/checkpoints?after=SEQ`), sends them as OTLP log records (event
//! `audit_checkpoint`) and only then remembers the last one shipped
//! (`<state_dir>/audit-checkpoints.json`, replaced atomically). A sink that is down or
//! refuses leaves the state alone, so the same checkpoints are sent again later: at
//! least once, nothing skipped; `coffer.audit.seq` lets the fleet drop repeats.
//!
//! The fleet keeps them; a local log later truncated or rewritten (even re-signed by
//! someone holding the key) no longer matches what the fleet holds. [`verify`] checks a
//! shipped checkpoint's signature exactly as `cofferctl audit verify` does
//! (`coffer-agent verify-checkpoint` on the command line).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use coffer_admin_api::{AdminClient, ClientError};
use coffer_privacy::checkpoint::Statement;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::AgentConfig;
use crate::otlp::{self, attr};
use crate::transport::{self, HttpError, Tls};

/// The OTLP event name (and `coffer.event`) of a shipped checkpoint.
pub const EVENT: &str = "audit_checkpoint";

/// The state file under `state_dir`.
pub const STATE_FILE: &str = "audit-checkpoints.json";

/// Checkpoints asked for (and sent) at a time.
const PAGE: usize = 100;

/// Why checkpoints were not shipped; what was not accepted is sent again next time.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("audit checkpoints are sent as OTLP logs; telemetry.otlp_logs_url is not set")]
    NoSink,
    #[error("cofferd admin socket: {0}")]
    Daemon(#[source] ClientError),
    #[error("otlp: {0}")]
    Sink(HttpError),
    #[error("otlp answered {status}: {body}; the checkpoints will be sent again")]
    SinkRefused { status: StatusCode, body: String },
    #[error("agent state {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One checkpoint as cofferd lists it (the wire form both ends share).
pub use coffer_privacy::checkpoint::Checkpoint;

/// `GET /admin/audit/checkpoints`.
pub use coffer_admin_api::telemetry::Checkpoints as Listing;

/// What the agent remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipState {
    /// The key the shipped checkpoints verify with.
    pub public_key: Option<String>,
    /// The sequence number of the last checkpoint the sink accepted.
    pub last_seq: u64,
}

impl ShipState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(STATE_FILE)
    }

    /// The saved state; nothing shipped yet when there is none. An unreadable file is
    /// logged and read as nothing shipped: sending everything again is harmless,
    /// skipping is not.
    pub fn load(state_dir: &Path) -> Result<ShipState, CheckpointError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable audit checkpoint state; shipping the checkpoints from the start");
                ShipState::default()
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ShipState::default()),
            Err(source) => Err(CheckpointError::State { path, source }),
        }
    }

    /// Replaces the state file atomically (write, fsync, rename, fsync the directory).
    pub fn save(&self, state_dir: &Path) -> Result<(), CheckpointError> {
        let path = Self::path(state_dir);
        let tmp = state_dir.join(format!("{STATE_FILE}.tmp"));
        let err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| CheckpointError::State { path: p, source }
        };
        std::fs::create_dir_all(state_dir).map_err(err(state_dir))?;
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
        f.write_all(&body).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(err(&path))?;
        std::fs::File::open(state_dir)
            .and_then(|d| d.sync_all())
            .map_err(err(state_dir))?;
        Ok(())
    }
}

/// What one call of [`ship`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shipped {
    /// Checkpoints the sink accepted in this call.
    pub checkpoints: usize,
    /// The last checkpoint shipped, in this call or before.
    pub last_seq: u64,
    /// cofferd runs without an audit log: there is nothing to ship.
    pub audit_off: bool,
}

/// Whether `signature_hex` is the appliance key `public_key_hex`'s ed25519 signature
/// of the statement that the chain up to `upto_seq` ends in `upto_hash`: the check
/// `cofferctl audit verify` makes of every checkpoint.
pub fn verify(public_key_hex: &str, upto_seq: u64, upto_hash: &str, signature_hex: &str) -> bool {
    Statement::Checkpoint.verify(public_key_hex, upto_seq, upto_hash, signature_hex)
}

/// `value` if it is lowercase hex of `len` characters, else `"invalid"`: only hex
/// leaves the box, and a mangled checkpoint still arrives (and fails to verify) rather
/// than blocking the ones after it.
fn hex_only(value: &str, len: usize) -> &str {
    let ok = value.len() == len
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok { value } else { "invalid" }
}

/// The `ExportLogsServiceRequest` for a page of checkpoints.
pub fn build(checkpoints: &[Checkpoint], public_key: &str, site: &str) -> Value {
    let observed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string();
    let public_key = hex_only(public_key, 64);
    let logs: Vec<Value> = checkpoints
        .iter()
        .map(|c| {
            let mut attributes = vec![attr("coffer.event", EVENT)];
            if !site.is_empty() {
                attributes.push(attr("coffer.site", site));
            }
            attributes.extend([
                attr("coffer.audit.seq", &c.seq.to_string()),
                attr("coffer.audit.upto_seq", &c.upto_seq.to_string()),
                attr("coffer.audit.upto_hash", hex_only(&c.upto_hash, 64)),
                attr("coffer.audit.signature", hex_only(&c.signature, 128)),
                attr("coffer.audit.public_key", public_key),
            ]);
            json!({
                "timeUnixNano": (u128::from(c.at_ms) * 1_000_000).to_string(),
                "observedTimeUnixNano": observed,
                "severityNumber": 9,
                "severityText": "INFO",
                "eventName": EVENT,
                "body": { "stringValue": EVENT },
                "attributes": attributes,
            })
        })
        .collect();
    let mut resource = vec![attr("service.name", "cofferd")];
    if !site.is_empty() {
        resource.push(attr("coffer.site", site));
    }
    json!({
        "resourceLogs": [{
            "resource": { "attributes": resource },
            "scopeLogs": [{
                "scope": { "name": "coffer", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": logs,
            }],
        }],
    })
}

fn excerpt(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    coffer_privacy::redact(&text).into_owned()
}

/// The checkpoints after `after`; `None` when cofferd's audit log is off.
async fn list(config: &AgentConfig, after: u64) -> Result<Option<Listing>, CheckpointError> {
    let answer = AdminClient::new(&config.admin_socket)
        .with_timeout(config.telemetry.timeout)
        .checkpoints(after, PAGE)
        .await;
    match answer {
        Ok(list) => Ok(Some(list)),
        Err(e) if e.code() == Some("audit_disabled") => Ok(None),
        Err(e) => Err(CheckpointError::Daemon(e)),
    }
}

async fn send(
    url: &http::Uri,
    tls: Option<&Tls>,
    body: Value,
    timeout: Duration,
) -> Result<(), CheckpointError> {
    let reply = transport::post(
        url,
        tls,
        &otlp::HEADERS,
        Bytes::from(body.to_string()),
        timeout,
    )
    .await
    .map_err(CheckpointError::Sink)?;
    if reply.status.is_success() {
        Ok(())
    } else {
        // Unlike telemetry, never dropped for good: a checkpoint the fleet lacks is
        // what an attacker would want.
        Err(CheckpointError::SinkRefused {
            status: reply.status,
            body: excerpt(&reply.body),
        })
    }
}

/// Ships every checkpoint after the last one shipped, a page at a time, and records
/// each page as shipped once the OTLP sink accepted it.
pub async fn ship(config: &AgentConfig, tls: Option<&Tls>) -> Result<Shipped, CheckpointError> {
    let Some(url) = &config.telemetry.otlp_logs_url else {
        return Err(CheckpointError::NoSink);
    };
    let site = coffer_privacy::redact(&config.site_id).into_owned();
    let mut state = ShipState::load(&config.state_dir)?;
    let mut shipped = Shipped {
        last_seq: state.last_seq,
        ..Shipped::default()
    };
    loop {
        let Some(listing) = list(config, state.last_seq).await? else {
            shipped.audit_off = true;
            return Ok(shipped);
        };
        if state.public_key.as_deref() != Some(listing.public_key.as_str()) {
            // Asked after the old key's last checkpoint: ask again from the start.
            let again = state.public_key.is_some() && state.last_seq > 0;
            if let Some(previous) = &state.public_key {
                // A new key: the audit directory was replaced (or the key was). Its
                // sequence numbers start again; ship all of it for the fleet to judge.
                tracing::warn!(
                    previous = %hex_only(previous, 64),
                    now = %hex_only(&listing.public_key, 64),
                    "cofferd's audit signing key changed; shipping its checkpoints from the start"
                );
                state.last_seq = 0;
                shipped.last_seq = 0;
            }
            state.public_key = Some(listing.public_key.clone());
            state.save(&config.state_dir)?;
            if again {
                continue;
            }
        }
        let page: Vec<Checkpoint> = listing
            .checkpoints
            .into_iter()
            .filter(|c| c.seq > state.last_seq)
            .collect();
        let Some(last) = page.iter().map(|c| c.seq).max() else {
            return Ok(shipped);
        };
        for c in &page {
            if !verify(&listing.public_key, c.upto_seq, &c.upto_hash, &c.signature) {
                tracing::warn!(
                    seq = c.seq,
                    "audit checkpoint does not verify with cofferd's public key; shipping it for the fleet to see"
                );
            }
        }
        send(
            url,
            tls,
            build(&page, &listing.public_key, &site),
            config.telemetry.timeout,
        )
        .await?;
        state.last_seq = last;
        state.save(&config.state_dir)?;
        shipped.checkpoints += page.len();
        shipped.last_seq = last;
        if page.len() < PAGE {
            return Ok(shipped);
        }
    }
}

/// [`ship`] with its outcome logged; the telemetry loop's call.
pub async fn ship_logged(config: &AgentConfig, tls: Option<&Tls>) {
    match ship(config, tls).await {
        Ok(s) if s.checkpoints > 0 => tracing::info!(
            checkpoints = s.checkpoints,
            last_seq = s.last_seq,
            "audit checkpoints shipped"
        ),
        Ok(s) if s.audit_off => tracing::debug!("cofferd's audit log is off; no checkpoints"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "audit checkpoints not shipped; they will be sent later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn signed(key: &Ed25519KeyPair, seq: u64, hash: &str) -> Checkpoint {
        Checkpoint {
            seq: seq + 1,
            at_ms: 1_764_400_000_000,
            upto_seq: seq,
            upto_hash: hash.into(),
            signature: hex::encode(
                key.sign(Statement::Checkpoint.text(seq, hash).as_bytes())
                    .as_ref(),
            ),
        }
    }

    #[test]
    fn signatures_verify_and_anything_else_does_not() {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let pk = hex::encode(key.public_key().as_ref());
        let hash = "ab".repeat(32);
        let c = signed(&key, 41, &hash);
        assert!(verify(&pk, 41, &hash, &c.signature));
        assert!(!verify(&pk, 40, &hash, &c.signature));
        assert!(!verify(&pk, 41, &"cd".repeat(32), &c.signature));
        assert!(!verify(&pk, 41, &hash, &"00".repeat(64)));
        assert!(!verify("zz", 41, &hash, &c.signature));
        assert!(!verify(&"00".repeat(32), 41, &hash, &c.signature));
    }

    #[test]
    fn checkpoints_become_otlp_records_with_only_hex() {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let pk = hex::encode(key.public_key().as_ref());
        let mut bad = signed(&key, 20, &"11".repeat(32));
        bad.upto_hash = "4111 1111 1111 1111".into();
        let body = build(&[signed(&key, 10, &"ef".repeat(32)), bad], &pk, "branch-7");
        let records = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
        assert_eq!(records.as_array().unwrap().len(), 2);
        let attrs = |i: usize| -> Vec<(String, String)> {
            records[i]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["key"].as_str().unwrap().to_string(),
                        a["value"]["stringValue"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let first = attrs(0);
        let get = |k: &str| first.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(records[0]["eventName"], EVENT);
        assert_eq!(get("coffer.event"), Some(EVENT));
        assert_eq!(get("coffer.site"), Some("branch-7"));
        assert_eq!(get("coffer.audit.seq"), Some("11"));
        assert_eq!(get("coffer.audit.upto_seq"), Some("10"));
        assert_eq!(get("coffer.audit.public_key"), Some(pk.as_str()));
        assert!(verify(
            get("coffer.audit.public_key").unwrap(),
            10,
            get("coffer.audit.upto_hash").unwrap(),
            get("coffer.audit.signature").unwrap()
        ));
        assert!(
            attrs(1)
                .iter()
                .any(|(k, v)| k == "coffer.audit.upto_hash" && v == "invalid")
        );
        assert!(!body.to_string().contains("4111"));
    }

    #[test]
    fn state_round_trips_and_an_unreadable_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("agent");
        assert_eq!(ShipState::load(&state_dir).unwrap(), ShipState::default());
        let s = ShipState {
            public_key: Some("ab".repeat(32)),
            last_seq: 42,
        };
        s.save(&state_dir).unwrap();
        assert_eq!(ShipState::load(&state_dir).unwrap(), s);
        std::fs::write(ShipState::path(&state_dir), b"{\"last_seq\":").unwrap();
        assert_eq!(ShipState::load(&state_dir).unwrap(), ShipState::default());
    }
}
