//! The health check after an activation (configured as `sync.health_gate`): for that long, every
//! `sync.health_interval`, cofferd must stay ready and the new version must not answer
//! more than `sync.max_error_ratio` of its requests with server errors (once it has
//! seen `sync.min_requests`). Counts come from cofferd's `GET /admin/health` and are
//! taken relative to the gate's start. If someone else moves the model meanwhile (an
//! admin's rollback or pin), the gate stops: that decision wins.

use std::path::Path;
use std::time::Duration;

use super::daemon::{self, Health};
use crate::config::SyncConfig;

/// How a gate ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Passed {
        requests: u64,
        server_errors: u64,
    },
    Failed(String),
    /// The model no longer serves this version for another reason than the agent.
    Superseded(String),
}

/// Counts of one version in a health answer: (total, server errors).
fn counts(h: &Health, model: &str, version: &str) -> (u64, u64) {
    h.models
        .iter()
        .find(|c| c.model == model && c.version == version)
        .map(|c| {
            let c = &c.counts;
            (c.ok + c.client_error + c.server_error, c.server_error)
        })
        .unwrap_or((0, 0))
}

/// The verdict on one sample, given the counts at the gate's start; `None`: go on.
pub fn judge(cfg: &SyncConfig, start: (u64, u64), now: (u64, u64)) -> Option<String> {
    let total = now.0.saturating_sub(start.0);
    let errors = now.1.saturating_sub(start.1);
    if total >= cfg.min_requests.max(1) && errors as f64 > cfg.max_error_ratio * total as f64 {
        return Some(format!(
            "{errors} of {total} requests answered with server errors ({:.1}%, limit {:.1}%)",
            100.0 * errors as f64 / total as f64,
            100.0 * cfg.max_error_ratio
        ));
    }
    None
}

/// Watches `model@version` for the gate period.
pub async fn watch(socket: &Path, cfg: &SyncConfig, model: &str, version: &str) -> Verdict {
    let timeout = cfg.timeout.min(Duration::from_secs(30));
    let start = match daemon::health(socket, timeout).await {
        Ok(h) => counts(&h, model, version),
        Err(_) => (0, 0),
    };
    let deadline = tokio::time::Instant::now() + cfg.health_gate;
    let mut not_ready = 0u32;
    let mut last = start;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(cfg.health_interval.min(left)).await;
        match daemon::health(socket, timeout).await {
            Ok(h) if h.ready => {
                not_ready = 0;
                last = counts(&h, model, version);
                if let Some(reason) = judge(cfg, start, last) {
                    return Verdict::Failed(reason);
                }
            }
            Ok(_) => not_ready += 1,
            Err(e) => {
                tracing::warn!(error = %e, "health gate: cofferd did not answer");
                not_ready += 1;
            }
        }
        // One not-ready sample may be a restart's blink; two in a row are not.
        if not_ready >= 2 {
            return Verdict::Failed(format!(
                "cofferd was not ready for {not_ready} samples in a row after activating {model}@{version}"
            ));
        }
        if let Ok(models) = daemon::models(socket, timeout).await {
            let active = models
                .iter()
                .find(|m| m.name == model)
                .and_then(|m| m.active.clone());
            if active.as_deref() != Some(version) {
                return Verdict::Superseded(format!(
                    "{model} now serves {} (changed on the appliance)",
                    active.as_deref().unwrap_or("nothing")
                ));
            }
        }
    }
    Verdict::Passed {
        requests: last.0.saturating_sub(start.0),
        server_errors: last.1.saturating_sub(start.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SyncConfig {
        let mut c = crate::AgentConfig::parse("").unwrap().sync;
        c.max_error_ratio = 0.1;
        c.min_requests = 10;
        c
    }

    #[test]
    fn judges_the_error_ratio_once_enough_requests_came() {
        let c = cfg();
        assert_eq!(
            judge(&c, (100, 5), (105, 10)),
            None,
            "5 requests: too few to judge"
        );
        assert_eq!(judge(&c, (100, 5), (120, 6)), None, "1 of 20 errors");
        let why = judge(&c, (100, 5), (120, 9)).unwrap();
        assert!(why.starts_with("4 of 20 requests"), "{why}");
    }
}
