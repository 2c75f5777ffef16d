//! Model sync: brings the models cofferd serves to what the fleet's signed release
//! repository says this site's ring should run, one verified step at a time.
//!
//! One cycle ([`cycle`]): load and verify the TUF metadata ([`tuf`]), pick for each
//! model the newest release the site's ring receives, and for each one not already
//! serving: download its files with HTTP Range resume and the signed hashes checked
//! as bytes arrive ([`download`]), import them into cofferd (its evaluation gate runs
//! there), activate, watch the health check ([`health_check`]) and roll back if it fails. Pins
//! set on the appliance win. Outcomes persist ([`state`]), so a version that failed is
//! not tried again until a newer release comes, and a restart mid-download resumes.
//! [`run`] repeats cycles at the poll interval with jitter, backing off after failures;
//! cofferd keeps serving whatever happens to the host. A copied bundle goes through
//! the same cycle ([`Source::Bundle`]).

pub mod daemon;
pub mod download;
pub mod halt_list;
pub mod health_check;
pub mod metadata_fetch;
pub mod regular;
pub mod state;
pub mod trust;
pub mod tuf;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use coffer_release::layout;
use rand::Rng as _;

use self::daemon::{DaemonError, ImportOutcome, SyncEvent};
use self::download::{DownloadError, Expected, Limits};
use self::state::{OutcomeKind, SyncState};
pub use self::tuf::Source;
use self::tuf::{MetadataError, Release};
use crate::AgentConfig;

/// Why a cycle stopped before looking at every release.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("release {model}@{version}: {what}")]
    BadRelease {
        model: String,
        version: String,
        what: String,
    },
}

impl SyncError {
    /// Whether the host was too slow: a gap past `sync.timeout`, a file past
    /// `sync.metadata_timeout`, or a release file below `sync.min_rate`.
    pub fn stalled(&self) -> bool {
        match self {
            SyncError::Download(DownloadError::Stalled { .. } | DownloadError::TooSlow { .. }) => {
                true
            }
            SyncError::Metadata(MetadataError::Rejected(why)) => metadata_fetch::is_stall(why),
            _ => false,
        }
    }
}

impl SyncError {
    /// The poll's state and reason as the site report says them.
    pub fn health(&self) -> state::PollHealth {
        use coffer_fleet::site::{RefusalKind, SyncState as Poll, refusal_kind};
        let (state, reason) = match self {
            _ if self.stalled() => (
                Poll::Stalled,
                match self {
                    SyncError::Download(_) => "download",
                    _ => "host",
                },
            ),
            SyncError::Metadata(MetadataError::Rejected(why)) => {
                if why.contains("Failed to fetch") || why.contains("cannot connect") {
                    (Poll::Failing, "host")
                } else {
                    (Poll::Refusing, refusal_kind(why).as_str())
                }
            }
            SyncError::Metadata(MetadataError::BundleExpired { .. }) => {
                (Poll::Refusing, RefusalKind::Expired.as_str())
            }
            SyncError::Metadata(MetadataError::Trust(trust::TrustError::OlderRoot { .. })) => {
                (Poll::Refusing, RefusalKind::Rollback.as_str())
            }
            SyncError::Metadata(MetadataError::Url(_)) => (Poll::Failing, "host"),
            SyncError::Metadata(MetadataError::BadRelease { .. })
            | SyncError::BadRelease { .. } => (Poll::Failing, "release"),
            SyncError::Metadata(_) | SyncError::State { .. } => (Poll::Failing, "state"),
            SyncError::Download(_) => (Poll::Failing, "download"),
            SyncError::Daemon(_) => (Poll::Failing, "cofferd"),
        };
        state::PollHealth {
            state,
            reason: reason.into(),
        }
    }
}

/// What a cycle did with one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub model: String,
    pub version: String,
    pub kind: OutcomeKind,
    pub detail: String,
    /// Bytes fetched from the host (or copied from a bundle) in this cycle.
    pub bytes: u64,
}

/// The agent's sync directory under its state directory.
pub fn sync_dir(config: &AgentConfig) -> PathBuf {
    config.state_dir.join("sync")
}

fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
        && s != "."
        && s != ".."
}

/// Whether the file at `path` has the expected length and sha256 (hashed on a blocking
/// thread: model files are large).
async fn matches_file(path: &Path, expect: Expected) -> bool {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() == expect.len)
            && coffer_models::verify::sha256_file(&path)
                .is_ok_and(|hex| hex == hex::encode(expect.sha256))
    })
    .await
    .unwrap_or(false)
}

/// Brings every file of `release` into `dir`, verified against the signed metadata.
async fn fetch_release(
    config: &AgentConfig,
    source: &Source<'_>,
    targets_base: &str,
    release: &Release,
    dir: &Path,
) -> Result<u64, SyncError> {
    let info = &release.info;
    let bad = |what: String| SyncError::BadRelease {
        model: info.model.clone(),
        version: info.version.clone(),
        what,
    };
    let mut bytes = 0;
    for f in &release.files {
        if !safe_relative(&f.path) {
            return Err(bad(format!("file path {:?} leaves its directory", f.path)));
        }
        let dest = dir.join(&f.path);
        let parent = dest.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|source| SyncError::State {
            path: parent.to_path_buf(),
            source,
        })?;
        let expect = Expected {
            len: f.len,
            sha256: f.sha256,
        };
        if dest.exists() {
            // Verified when it arrived; checked again, as it sat on disk since.
            if matches_file(&dest, expect).await {
                continue;
            }
            let _ = std::fs::remove_file(&dest);
        }
        match source {
            Source::Remote { tls, timeout, .. } => {
                let url: http::Uri = format!("{targets_base}{}", f.location)
                    .parse()
                    .map_err(|e| bad(format!("target URL: {e}")))?;
                let partial = dest.with_file_name(format!(
                    "{}.partial",
                    dest.file_name().and_then(|n| n.to_str()).unwrap_or("file")
                ));
                let limits = Limits {
                    rate_bytes_per_s: config.sync.bandwidth_limit,
                    timeout: *timeout,
                    min_rate_bytes_per_s: config.sync.min_rate,
                };
                let got = download::fetch(&url, *tls, &partial, &dest, &expect, &limits).await?;
                if got.resumed_from > 0 {
                    tracing::info!(file = %f.path, resumed_from = got.resumed_from, "download resumed");
                }
                bytes += got.bytes_transferred;
            }
            Source::Bundle { dir: bundle, .. } => {
                let src = bundle.join("targets").join(&f.location);
                let to = dest.clone();
                bytes += tokio::task::spawn_blocking(move || {
                    download::copy_verified(&src, &to, &expect)
                })
                .await
                .map_err(|e| SyncError::State {
                    path: dest.clone(),
                    source: std::io::Error::other(e.to_string()),
                })??;
            }
        }
    }
    // The manifest inside must be the release it is signed as.
    let manifest_path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| SyncError::State {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest =
        coffer_models::Manifest::parse(&text).map_err(|e| bad(format!("manifest: {e}")))?;
    if manifest.name != info.model || manifest.version != info.version {
        return Err(bad(format!(
            "its manifest is {}@{}",
            manifest.name, manifest.version
        )));
    }
    Ok(bytes)
}

/// The sha256 (hex) of the release's signed `manifest.toml`.
fn signed_manifest(release: &Release) -> Result<String, SyncError> {
    release
        .files
        .iter()
        .find(|f| f.path == "manifest.toml")
        .map(|f| hex::encode(f.sha256))
        .ok_or_else(|| SyncError::BadRelease {
            model: release.info.model.clone(),
            version: release.info.version.clone(),
            what: "no manifest.toml among its files".into(),
        })
}

/// What sync says of a version cofferd holds under a released name but not as signed.
fn impostor(info: &layout::ReleaseInfo, held: Option<&str>, signed: &str, done: &str) -> String {
    format!(
        "cofferd holds {m}@{v} with manifest sha256 {held}, not the signed release's {signed}: \
         {done}; remove that version (cofferctl models remove {m} {v}) for sync to install \
         the signed one",
        m = info.model,
        v = info.version,
        held = held.unwrap_or("(none)"),
    )
}

/// cofferd's answers that end a release's attempt (an outcome to record), as opposed
/// to failures that end the cycle (cofferd unreachable, a 5xx): those stay errors.
fn final_refusal(e: DaemonError) -> Result<(OutcomeKind, String), SyncError> {
    match e {
        DaemonError::Pinned { message } => Ok((OutcomeKind::Pinned, message)),
        DaemonError::GateFailed { message } => Ok((OutcomeKind::GateFailed, message)),
        DaemonError::Refused {
            status,
            code,
            message,
        } if status.is_client_error() => Ok((OutcomeKind::Refused, format!("{code}: {message}"))),
        e => Err(e.into()),
    }
}

/// One release through install, activation and the health gate.
async fn apply(
    config: &AgentConfig,
    source: &Source<'_>,
    targets_base: &str,
    release: &Release,
    status: Option<&daemon::ModelStatus>,
    halts: halt_list::Recheck<'_>,
) -> Result<Step, SyncError> {
    let info = &release.info;
    let socket = &config.admin_socket;
    let timeout = config.sync.timeout;
    let step = |kind, detail: String, bytes| Step {
        model: info.model.clone(),
        version: info.version.clone(),
        kind,
        detail,
        bytes,
    };
    let signed_manifest = signed_manifest(release)?;
    let installed_state = status.and_then(|s| {
        s.versions
            .iter()
            .find(|(v, _)| *v == info.version)
            .map(|(_, st)| st.clone())
    });
    let mut bytes = 0;
    match installed_state.as_deref() {
        Some("failed") => {
            return Ok(step(
                OutcomeKind::GateFailed,
                "cofferd holds this version as failed".into(),
                0,
            ));
        }
        Some(_) => {}
        None => {
            let dir = sync_dir(config)
                .join("downloads")
                .join(&info.model)
                .join(&info.version);
            bytes = fetch_release(config, source, targets_base, release, &dir).await?;
            match daemon::import(socket, &dir, config.sync.import_timeout).await {
                Ok(ImportOutcome::Imported(_) | ImportOutcome::AlreadyInstalled) => {}
                Ok(ImportOutcome::GateFailed { message }) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Ok(step(OutcomeKind::GateFailed, message, bytes));
                }
                Err(e) => {
                    let (kind, detail) = final_refusal(e)?;
                    return Ok(step(kind, detail, bytes));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    // Whatever cofferd holds under this name must be what the release signed: a version
    // imported by other means (or a name collision) is never activated as the release.
    let now_held = daemon::models(socket, timeout).await?;
    let held = now_held
        .iter()
        .find(|m| m.name == info.model)
        .and_then(|m| m.manifest_sha256(&info.version));
    if held != Some(signed_manifest.as_str()) {
        let detail = impostor(info, held, &signed_manifest, "not activated");
        tracing::error!(model = %info.model, version = %info.version, "{detail}");
        return Ok(step(OutcomeKind::Impostor, detail, bytes));
    }
    // Imported any time; activated only when the site's window and the release allow.
    // A time the agent cannot read (a release made by another tool) is refused, not guessed.
    let time = |what: &str, text: &str| {
        text.parse::<jiff::Timestamp>().map_err(|e| {
            step(
                OutcomeKind::Refused,
                format!("the release's {what} is unreadable ({e}); not activated"),
                bytes,
            )
        })
    };
    let not_before = match info
        .not_before
        .as_deref()
        .map(|t| time("not-before time", t))
    {
        Some(Err(refused)) => return Ok(refused),
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let paced = match info
        .pace
        .as_ref()
        .map(|p| (p, time("pace start", &p.start)))
    {
        Some((_, Err(refused))) => return Ok(refused),
        Some((pace, Ok(start))) => Some(crate::window::Paced {
            pace,
            start,
            position: crate::window::pace_position(&config.site_id, &info.model, &info.version),
        }),
        None => None,
    };
    if let Some(why) = crate::window::activation_waits(
        config.sync.change_window.as_ref(),
        &config.sync.time_zone,
        not_before,
        paced.as_ref(),
        jiff::Timestamp::now(),
    ) {
        return Ok(step(OutcomeKind::AwaitingWindow, why, bytes));
    }
    // Halted while it downloaded or waited: not activated.
    if let Some((kind, why)) = halts.stops(source, info).await {
        return Ok(step(kind, why, bytes));
    }
    let previous = status.and_then(|s| s.active.clone());
    match daemon::activate(
        socket,
        &info.model,
        &info.version,
        config.sync.import_timeout,
    )
    .await
    {
        Ok(()) => {}
        Err(e) => {
            let (kind, detail) = final_refusal(e)?;
            return Ok(step(kind, detail, bytes));
        }
    }
    tracing::info!(model = %info.model, version = %info.version, previous = ?previous, gate = ?config.sync.health_gate, "activated; health gate running");
    match health_check::watch(socket, &config.sync, &info.model, &info.version).await {
        health_check::Verdict::Passed {
            requests,
            server_errors,
        } => Ok(step(
            OutcomeKind::Active,
            format!("health gate passed: {requests} requests, {server_errors} server errors"),
            bytes,
        )),
        health_check::Verdict::Superseded(why) => Ok(step(OutcomeKind::Refused, why, bytes)),
        health_check::Verdict::Failed(why) => {
            let detail = if previous.is_some() {
                match daemon::rollback(socket, &info.model, timeout).await {
                    Ok(()) => format!(
                        "health gate failed: {why}; rolled back to {}",
                        previous.as_deref().unwrap_or("?")
                    ),
                    Err(e) => format!("health gate failed: {why}; ROLLBACK FAILED: {e}"),
                }
            } else {
                format!("health gate failed: {why}; no earlier version to roll back to")
            };
            tracing::error!(model = %info.model, version = %info.version, "{detail}");
            Ok(step(OutcomeKind::RolledBack, detail, bytes))
        }
    }
}

/// One sync cycle from `source`. Errors that stop the cycle (metadata rejected, host or
/// cofferd unreachable, a download cut) leave everything as it was for the next one.
pub async fn cycle(config: &AgentConfig, source: &Source<'_>) -> Result<Vec<Step>, SyncError> {
    let dir = sync_dir(config);
    let loaded = tuf::load(source, &config.sync.trusted_root, &dir).await?;
    let releases = tuf::releases(&loaded.repo)?;
    for r in &releases {
        if !safe_name(&r.info.model) || !safe_name(&r.info.version) {
            return Err(SyncError::BadRelease {
                model: r.info.model.clone(),
                version: r.info.version.clone(),
                what: "model and version names are limited to [A-Za-z0-9.+_-]".into(),
            });
        }
    }
    let desired = layout::desired(releases.iter().map(|r| &r.info), config.sync.ring);
    let models = daemon::models(&config.admin_socket, config.sync.timeout).await?;
    let mut state = SyncState::load(&dir);
    let targets = &loaded.repo.targets().signed;
    let halts = halt_list::view(source, targets, &mut state.halt_list).await;
    if let halt_list::HaltView::Unavailable { why, .. } = &halts {
        tracing::warn!(
            why,
            "no current halt list: no release is activated until one can be read"
        );
    }
    let recheck = halt_list::Recheck {
        targets,
        seen: state.halt_list.clone(),
    };
    let mut steps = Vec::new();
    for want in desired {
        let Some(release) = releases
            .iter()
            .find(|r| r.info.model == want.model && r.info.seq == want.seq)
        else {
            continue;
        };
        let status = models.iter().find(|m| m.name == want.model);
        let serving = status.and_then(|s| s.active.as_deref()) == Some(want.version.as_str());
        let signed = signed_manifest(release)?;
        let held = status.and_then(|s| s.manifest_sha256(&want.version));
        // Serving under the release's name, but not what the release signed.
        let impostor_serving = serving && held != Some(signed.as_str());
        if serving && !impostor_serving {
            if state
                .models
                .get(&want.model)
                .is_none_or(|o| o.seq != want.seq)
            {
                state.record(
                    &want.model,
                    &want.version,
                    want.seq,
                    OutcomeKind::Active,
                    "already serving".into(),
                );
            }
            continue;
        }
        if let Some(pinned) = status.and_then(|s| s.pinned.as_deref()) {
            let detail = format!("pinned to {pinned} on the appliance; the pin wins");
            state.record(
                &want.model,
                &want.version,
                want.seq,
                OutcomeKind::Pinned,
                detail.clone(),
            );
            steps.push(Step {
                model: want.model.clone(),
                version: want.version.clone(),
                kind: OutcomeKind::Pinned,
                detail,
                bytes: 0,
            });
            continue;
        }
        if state.gave_up_on(&want.model, want.seq) && !impostor_serving {
            continue;
        }
        let halted = if impostor_serving {
            None
        } else {
            halts.stops(&release.info)
        };
        let applied = if let Some((kind, detail)) = halted {
            Ok(Step {
                model: want.model.clone(),
                version: want.version.clone(),
                kind,
                detail,
                bytes: 0,
            })
        } else if impostor_serving {
            Ok(Step {
                model: want.model.clone(),
                version: want.version.clone(),
                kind: OutcomeKind::Impostor,
                detail: impostor(want, held, &signed, "it serves, but not as the release"),
                bytes: 0,
            })
        } else {
            apply(
                config,
                source,
                &loaded.targets_base,
                release,
                status,
                recheck.clone(),
            )
            .await
        };
        let step = match applied {
            Ok(step) => step,
            Err(e) => {
                state.record(
                    &want.model,
                    &want.version,
                    want.seq,
                    OutcomeKind::Error,
                    e.to_string(),
                );
                save(&state, &dir)?;
                return Err(e);
            }
        };
        tracing::info!(model = %step.model, version = %step.version, outcome = ?step.kind, bytes = step.bytes, "{}", step.detail);
        let already_reported = state
            .models
            .get(&step.model)
            .is_some_and(|o| o.seq == want.seq && o.kind == step.kind);
        if step.kind == OutcomeKind::Impostor && !already_reported {
            report(
                config,
                SyncEvent::Impostor,
                Some(&step.model),
                Some(&step.version),
            )
            .await;
        }
        state.record(
            &step.model,
            &step.version,
            want.seq,
            step.kind,
            step.detail.clone(),
        );
        save(&state, &dir)?;
        steps.push(step);
    }
    save(&state, &dir)?;
    Ok(steps)
}

/// Reports a sync event to cofferd, best effort (cofferd may be what failed).
async fn report(
    config: &AgentConfig,
    event: SyncEvent,
    model: Option<&str>,
    version: Option<&str>,
) {
    if let Err(e) = daemon::report(
        &config.admin_socket,
        event,
        model,
        version,
        config.sync.timeout,
    )
    .await
    {
        tracing::debug!(error = %e, ?event, "sync event not reported to cofferd");
    }
}

fn save(state: &SyncState, dir: &Path) -> Result<(), SyncError> {
    state.save(dir).map_err(|source| SyncError::State {
        path: SyncState::path(dir),
        source,
    })
}

/// The wait before the next poll: the interval plus up to `jitter` after a good one;
/// after `failures` failed ones in a row, `backoff_min` doubled per failure up to
/// `backoff_max`, with ±10% jitter so that a fleet does not retry in step.
pub fn next_wait(config: &AgentConfig, failures: u32) -> Duration {
    let s = &config.sync;
    let mut rng = rand::thread_rng();
    if failures == 0 {
        let extra = if s.jitter.is_zero() {
            Duration::ZERO
        } else {
            s.jitter.mul_f64(rng.gen_range(0.0..1.0))
        };
        return s.poll_interval + extra;
    }
    let doubled = s.backoff_min.saturating_mul(
        1u32.checked_shl(failures.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX),
    );
    doubled.min(s.backoff_max).mul_f64(rng.gen_range(0.9..1.1))
}

/// Polls the repository until `stop` resolves; `polled` (the site report) is notified
/// after each poll.
pub async fn run(
    config: &AgentConfig,
    tls: Option<&crate::transport::Tls>,
    polled: Option<&tokio::sync::Notify>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let Some(base) = config.sync.repository_url.as_ref() else {
        stop.await;
        return;
    };
    let dir = sync_dir(config);
    loop {
        let source = Source::remote(base, tls, &config.sync);
        let result = tokio::select! {
            () = &mut stop => return,
            r = cycle(config, &source) => r,
        };
        let mut state = SyncState::load(&dir);
        state.polls += 1;
        match &result {
            Ok(_) => {
                state.consecutive_failures = 0;
                state.last_success = Some(state::now());
                state.last_poll = Some(state::PollHealth {
                    state: coffer_fleet::site::SyncState::Ok,
                    reason: String::new(),
                });
            }
            Err(e) => {
                state.consecutive_failures += 1;
                state.last_error = Some(format!("{}: {e}", state::now()));
                state.last_poll = Some(e.health());
            }
        }
        let wait = next_wait(config, state.consecutive_failures);
        if let Err(e) = &result {
            let stalled = e.stalled();
            if stalled {
                state.stalled_polls += 1;
            }
            tracing::warn!(error = %e, stalled, failures = state.consecutive_failures, retry_in = ?wait, "model sync failed; cofferd keeps serving what it has");
            let event = if stalled {
                SyncEvent::Stalled
            } else {
                SyncEvent::Failure
            };
            report(config, event, None, None).await;
        }
        if let Err(e) = save(&state, &dir) {
            tracing::warn!(error = %e, "cannot save the sync state");
        }
        if let Some(p) = polled {
            p.notify_one();
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_and_names_that_leave_their_directory() {
        assert!(safe_relative("eval/holdout.json"));
        assert!(!safe_relative("../etc/passwd"));
        assert!(!safe_relative("/etc/passwd"));
        assert!(!safe_relative("a/../../b"));
        assert!(!safe_relative(""));
        assert!(safe_name("credit-lr") && safe_name("2.0.0+build.1"));
        assert!(!safe_name("..") && !safe_name("a/b") && !safe_name(""));
    }

    #[test]
    fn backs_off_doubling_up_to_the_cap() {
        let mut c = AgentConfig::parse("").unwrap();
        c.sync.backoff_min = Duration::from_secs(10);
        c.sync.backoff_max = Duration::from_secs(60);
        let w = |f| next_wait(&c, f).as_secs_f64();
        assert!((9.0..=11.0).contains(&w(1)), "{}", w(1));
        assert!((18.0..=22.0).contains(&w(2)), "{}", w(2));
        assert!((36.0..=44.0).contains(&w(3)), "{}", w(3));
        assert!((54.0..=66.0).contains(&w(10)), "{}", w(10));
        assert!((54.0..=66.0).contains(&w(u32::MAX)), "{}", w(u32::MAX));
        let good = next_wait(&c, 0);
        assert!(good >= c.sync.poll_interval && good <= c.sync.poll_interval + c.sync.jitter);
    }
}
