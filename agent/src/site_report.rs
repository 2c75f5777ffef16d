//! The site's report to the fleet: every `telemetry.interval` and after each sync poll,
//! what this site runs and how its rollout stands ([`coffer_fleet::site::SiteReport`]),
//! sent straight to the configured sinks: as Prometheus series by remote-write (with a
//! staleness marker for each series the previous report had and this one has not, so a
//! state that changed leaves no ghost behind) and as OTLP log events for each
//! transition. Nothing in it comes from requests: the labels are the site's id, its
//! ring, model and version names, and closed sets of states.
//!
//! It reads what model sync persisted (`sync/state.json`, the trusted metadata, the
//! download directory) and asks cofferd for what it serves, its readiness, version and
//! GPU state; a cofferd that does not answer is reported as such, not as a failure to
//! report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::Bytes;
use coffer_admin_api::AdminClient;
use coffer_fleet::site::{
    ActiveModel, GpuState, ReleaseState, ReleaseStatus, SiteReport, SyncState as Poll,
};

use crate::config::AgentConfig;
use crate::egress::{EgressError, send};
use crate::otlp::{self, Transition};
use crate::remote_write::{self, SeriesKey};
use crate::sync::state::{OutcomeKind, SyncState};
use crate::sync::sync_dir;
use crate::transport::Tls;

/// The state a sync outcome puts a release in.
pub fn release_state(kind: OutcomeKind) -> ReleaseState {
    match kind {
        OutcomeKind::Active => ReleaseState::Active,
        OutcomeKind::GateFailed => ReleaseState::GateFailed,
        OutcomeKind::RolledBack => ReleaseState::RolledBack,
        OutcomeKind::Refused => ReleaseState::Refused,
        OutcomeKind::Pinned => ReleaseState::Pinned,
        OutcomeKind::Error => ReleaseState::Error,
        OutcomeKind::Impostor => ReleaseState::Impostor,
        OutcomeKind::AwaitingWindow => ReleaseState::AwaitingWindow,
        OutcomeKind::AwaitingHaltList => ReleaseState::AwaitingHaltList,
        OutcomeKind::Halted => ReleaseState::Halted,
    }
}

fn unix(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// Bytes of every file under `dir` (an unfinished download).
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The newest modification time (unix seconds) of anything under `dir`.
fn modified(dir: &Path) -> Option<i64> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.is_dir() {
                stack.push(entry.path());
            }
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            newest = newest.max(t);
        }
    }
    newest
}

/// Each model's release state: the last outcome sync recorded, or a download under
/// way (`downloads/<model>/<version>/` holding bytes, written to since that outcome)
/// for a release it has no final outcome for.
pub fn release_states(state: &SyncState, downloads: &Path, now: i64) -> Vec<ReleaseStatus> {
    let mut out: BTreeMap<String, ReleaseStatus> = state
        .models
        .iter()
        .map(|(model, o)| {
            (
                model.clone(),
                ReleaseStatus {
                    model: model.clone(),
                    version: o.version.clone(),
                    state: release_state(o.kind),
                    since: unix(&o.at).unwrap_or(now),
                    download_bytes: None,
                },
            )
        })
        .collect();
    for model_dir in std::fs::read_dir(downloads).into_iter().flatten().flatten() {
        let model = model_dir.file_name().to_string_lossy().into_owned();
        for version_dir in std::fs::read_dir(model_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let version = version_dir.file_name().to_string_lossy().into_owned();
            let bytes = bytes_under(&version_dir.path());
            if bytes == 0 {
                continue;
            }
            let settled = out
                .get(&model)
                .is_some_and(|r| r.version == version && !matches!(r.state, ReleaseState::Error));
            // A directory left from before the last outcome (an abandoned download)
            // does not hide that outcome.
            let touched = modified(&version_dir.path());
            let stale = out
                .get(&model)
                .is_some_and(|r| r.version != version && touched.is_some_and(|t| t < r.since));
            if settled || stale {
                continue;
            }
            let since = out
                .get(&model)
                .filter(|r| r.version == version)
                .map_or(now, |r| r.since);
            out.insert(
                model.clone(),
                ReleaseStatus {
                    model: model.clone(),
                    version,
                    state: ReleaseState::Downloading,
                    since,
                    download_bytes: Some(bytes),
                },
            );
        }
    }
    out.into_values().collect()
}

/// The earliest expiry among the root, targets and snapshot metadata this site trusts
/// (`sync/trusted/`). The timestamp is left out: it is re-signed on a schedule and
/// valid for a day or so by design; one that lapses shows as sync `refusing: expired`.
pub fn metadata_expiry(sync_dir: &Path) -> Option<i64> {
    ["root.json", "snapshot.json", "targets.json"]
        .iter()
        .filter_map(|name| {
            let bytes = std::fs::read(sync_dir.join("trusted").join(name)).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            unix(v["signed"]["expires"].as_str()?)
        })
        .min()
}

/// What this site says now. `active` is `None` when cofferd did not list its models
/// (the caller decides what to say then: see [`Reporter::report_once`]).
pub async fn collect(config: &AgentConfig) -> SiteReport {
    collect_parts(config).await.0
}

async fn collect_parts(config: &AgentConfig) -> (SiteReport, bool) {
    let now = jiff::Timestamp::now();
    let dir = sync_dir(config);
    let state = SyncState::load(&dir);
    let daemon = AdminClient::new(&config.admin_socket).with_timeout(config.telemetry.timeout);
    let health = daemon.health().await.ok();
    let models = daemon.models().await.ok();
    let listed = models.is_some();
    let active = models
        .map(|list| {
            list.models
                .into_iter()
                .filter_map(|m| {
                    let version = m.active?;
                    let variant = m
                        .versions
                        .iter()
                        .find(|v| v.version == version)
                        .and_then(|v| v.variant.clone());
                    Some(ActiveModel {
                        model: m.name,
                        version,
                        variant,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let gpu = match health.as_ref().and_then(|h| h.gpu.as_deref()) {
        Some(word) => word.parse().unwrap_or(GpuState::Unknown),
        None => GpuState::Unknown,
    };
    let (sync, sync_reason) = match &state.last_poll {
        Some(p) => (p.state, p.reason.clone()),
        None => (Poll::Ok, String::new()),
    };
    let report = SiteReport {
        at_ms: now.as_millisecond().max(0) as u64,
        ring: config.sync.ring.as_str().into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        cofferd_version: health.as_ref().and_then(|h| h.version.clone()),
        ready: health.as_ref().is_some_and(|h| h.ready),
        poll_interval_secs: config.sync.poll_interval.as_secs_f64(),
        sync,
        sync_reason,
        consecutive_failures: state.consecutive_failures,
        metadata_expires: metadata_expiry(&dir),
        gpu,
        active,
        releases: release_states(&state, &dir.join("downloads"), now.as_second()),
    };
    (report, listed)
}

/// Each model's (version, state) in a report.
type Releases = BTreeMap<String, (String, ReleaseState)>;

/// Sends reports, remembering what the last one said.
#[derive(Debug)]
pub struct Reporter<'a> {
    config: &'a AgentConfig,
    tls: Option<&'a Tls>,
    site: String,
    /// The series the last report sent.
    sent: BTreeSet<SeriesKey>,
    /// Each model's (version, state) and the sync's state in the last report; `None`
    /// before the first.
    last: Option<(Releases, Poll)>,
    /// What cofferd served at the last report that listed it.
    last_active: Vec<ActiveModel>,
}

/// What one report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub series: usize,
    pub ended: usize,
    pub transitions: usize,
}

impl<'a> Reporter<'a> {
    pub fn new(config: &'a AgentConfig, tls: Option<&'a Tls>) -> Reporter<'a> {
        Reporter {
            config,
            tls,
            site: coffer_privacy::redact(&config.site_id).into_owned(),
            sent: BTreeSet::new(),
            last: None,
            last_active: Vec::new(),
        }
    }

    /// The transitions from the last report to `report`.
    fn transitions(&self, report: &SiteReport) -> Vec<Transition> {
        let (before, sync_before) = match &self.last {
            Some((b, s)) => (Some(b), Some(*s)),
            None => (None, None),
        };
        let mut out = Vec::new();
        if sync_before != Some(report.sync) {
            out.push(Transition {
                subject: "sync",
                model: None,
                version: None,
                from: sync_before.map(|s| s.as_str().to_string()),
                to: report.sync.as_str().into(),
            });
        }
        for r in &report.releases {
            let prev = before.and_then(|b| b.get(&r.model));
            if prev.is_some_and(|(v, s)| *v == r.version && *s == r.state) {
                continue;
            }
            out.push(Transition {
                subject: "release",
                model: Some(r.model.clone()),
                version: Some(r.version.clone()),
                from: prev.map(|(_, s)| s.as_str().to_string()),
                to: r.state.as_str().into(),
            });
        }
        out
    }

    /// Sends `report`; on success it becomes the one the next is compared with.
    pub async fn send(&mut self, report: &SiteReport) -> Result<Reported, EgressError> {
        let t = &self.config.telemetry;
        let samples = report.samples();
        let now: BTreeSet<SeriesKey> = samples
            .iter()
            .map(|s| remote_write::site_series(s, &self.site))
            .collect();
        let ended: Vec<SeriesKey> = self.sent.difference(&now).cloned().collect();
        let changes = self.transitions(report);
        if let Some(url) = &t.remote_write_url {
            let request =
                remote_write::build_site(&samples, &self.site, report.at_ms, ended.clone());
            let body = Bytes::from(remote_write::encode(&request)?);
            send(
                "remote-write",
                url,
                self.tls,
                &remote_write::HEADERS,
                body,
                t.timeout,
            )
            .await?;
            // Prometheus has these now: the next report ends what they do not carry on,
            // whatever happens to the OTLP send below.
            self.sent = now.clone();
        }
        if let Some(url) = &t.otlp_logs_url
            && let Some(logs) = otlp::transitions(&changes, &self.site, report.at_ms)
        {
            let body = Bytes::from(logs.to_string());
            send("otlp", url, self.tls, &otlp::HEADERS, body, t.timeout).await?;
        }
        self.sent = now;
        self.last = Some((
            report
                .releases
                .iter()
                .map(|r| (r.model.clone(), (r.version.clone(), r.state)))
                .collect(),
            report.sync,
        ));
        Ok(Reported {
            series: samples.len(),
            ended: ended.len(),
            transitions: changes.len(),
        })
    }

    /// Collects and sends one report. When cofferd does not list its models this time
    /// (busy, restarting), the models it served at the last report stand: the report
    /// says cofferd is unreachable or not ready through its own series, and what it
    /// serves does not flap in the fleet's view.
    pub async fn report_once(&mut self) -> Result<Reported, EgressError> {
        let (mut report, listed) = collect_parts(self.config).await;
        if listed {
            self.last_active = report.active.clone();
        } else {
            report.active = self.last_active.clone();
        }
        self.send(&report).await
    }
}

/// Reports every `telemetry.interval` (with jitter) and whenever `polled` is notified
/// (after each sync poll), until `stop` resolves. A failed report is logged and the
/// next one goes out on schedule: reports are current state, so none is queued.
pub async fn run(
    config: &AgentConfig,
    tls: Option<&Tls>,
    polled: &tokio::sync::Notify,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut reporter = Reporter::new(config, tls);
    loop {
        match reporter.report_once().await {
            Ok(r) => tracing::debug!(
                series = r.series,
                ended = r.ended,
                transitions = r.transitions,
                "site report sent"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "site report not delivered; the next one goes out on schedule")
            }
        }
        let wait = crate::egress::jitter(config.telemetry.interval);
        tokio::select! {
            () = &mut stop => return,
            () = polled.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_downloads_become_release_states() {
        let dir = tempfile::tempdir().unwrap();
        let downloads = dir.path().join("downloads");
        let mut state = SyncState::default();
        state.record("credit-lr", "2.0.0", 2, OutcomeKind::RolledBack, "x".into());
        state.record("aml", "1.0.0", 1, OutcomeKind::Active, "x".into());
        // A newer aml release half downloaded, an empty directory for credit-lr.
        std::fs::create_dir_all(downloads.join("aml/1.1.0/eval")).unwrap();
        std::fs::write(downloads.join("aml/1.1.0/model.onnx.partial"), [0u8; 700]).unwrap();
        std::fs::write(downloads.join("aml/1.1.0/eval/set.json"), [0u8; 24]).unwrap();
        std::fs::create_dir_all(downloads.join("credit-lr/3.0.0")).unwrap();
        let got = release_states(&state, &downloads, 42);
        // A download abandoned before the last outcome does not hide it.
        let mut later = state.clone();
        later.record("aml", "1.0.0", 1, OutcomeKind::GateFailed, "x".into());
        later.models.get_mut("aml").unwrap().at = "2999-01-01T00:00:00Z".into();
        let stale = release_states(&later, &downloads, 42);
        let aml = stale.iter().find(|r| r.model == "aml").unwrap();
        assert_eq!(
            (aml.version.as_str(), aml.state),
            ("1.0.0", ReleaseState::GateFailed)
        );
        assert_eq!(got.len(), 2);
        let aml = got.iter().find(|r| r.model == "aml").unwrap();
        assert_eq!(
            (
                aml.version.as_str(),
                aml.state,
                aml.download_bytes,
                aml.since
            ),
            ("1.1.0", ReleaseState::Downloading, Some(724), 42)
        );
        let lr = got.iter().find(|r| r.model == "credit-lr").unwrap();
        assert_eq!(
            (lr.state, lr.download_bytes),
            (ReleaseState::RolledBack, None)
        );
        assert!(lr.since > 1_700_000_000);
    }

    #[test]
    fn the_earliest_trusted_expiry() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(metadata_expiry(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("trusted")).unwrap();
        for (name, t) in [
            ("root.json", "2027-01-01T00:00:00Z"),
            ("snapshot.json", "2026-12-08T00:00:00Z"),
            ("timestamp.json", "2026-12-07T00:00:00Z"),
            ("targets.json", "garbage"),
        ] {
            let v = serde_json::json!({"signed": {"expires": t}});
            std::fs::write(dir.path().join("trusted").join(name), v.to_string()).unwrap();
        }
        assert_eq!(
            metadata_expiry(dir.path()),
            Some(
                "2026-12-08T00:00:00Z"
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    .as_second()
            )
        );
    }

    #[test]
    fn transitions_follow_the_last_report() {
        let config = AgentConfig::parse("site_id = \"b1\"\n").unwrap();
        let mut r = Reporter::new(&config, None);
        let report = |state| SiteReport {
            at_ms: 0,
            ring: "canary".into(),
            agent_version: "0".into(),
            cofferd_version: None,
            ready: true,
            poll_interval_secs: 1.0,
            sync: Poll::Ok,
            sync_reason: String::new(),
            consecutive_failures: 0,
            metadata_expires: None,
            gpu: GpuState::Absent,
            active: vec![],
            releases: vec![ReleaseStatus {
                model: "m".into(),
                version: "2".into(),
                state,
                since: 0,
                download_bytes: None,
            }],
        };
        let first = r.transitions(&report(ReleaseState::AwaitingWindow));
        assert_eq!(
            first.len(),
            2,
            "the sync state and the release, from nothing"
        );
        assert!(first.iter().all(|t| t.from.is_none()));
        r.last = Some((
            [(
                "m".to_string(),
                ("2".to_string(), ReleaseState::AwaitingWindow),
            )]
            .into(),
            Poll::Ok,
        ));
        assert!(
            r.transitions(&report(ReleaseState::AwaitingWindow))
                .is_empty()
        );
        let next = r.transitions(&report(ReleaseState::Active));
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].from.as_deref(), next[0].to.as_str()),
            (Some("awaiting_window"), "active")
        );
    }
}
