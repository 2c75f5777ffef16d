//! What one site says about itself, and the Prometheus series it says it with: the one
//! contract between the agent (which writes the series, `coffer-agent`'s `site_report`)
//! and everything that reads them (`coffer-release fleet-status` and `watch`, the
//! dashboards and alert rules under `dashboards/`). Every label value comes from a closed
//! set or from names the signed release metadata and the site's configuration already
//! limit (model, version, variant, `site_id`), so a site's series count is bounded by its
//! models.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The series names, each with the labels it carries besides `site`.
pub mod names {
    /// `{ring, agent_version, cofferd_version}` = 1.
    pub const INFO: &str = "coffer_site_info";
    /// 1 when cofferd answers ready, 0 when it is not ready or unreachable.
    pub const READY: &str = "coffer_site_ready";
    /// The report's time (unix seconds): how silence is seen.
    pub const REPORT_TIME: &str = "coffer_site_report_timestamp_seconds";
    /// The agent's `sync.poll_interval` in seconds.
    pub const POLL_INTERVAL: &str = "coffer_site_poll_interval_seconds";
    /// `{state, reason}` = 1: how model sync's last poll went.
    pub const SYNC: &str = "coffer_site_sync";
    /// Polls that failed in a row.
    pub const SYNC_FAILURES: &str = "coffer_site_sync_consecutive_failures";
    /// The earliest expiry (unix seconds) of the root, targets and snapshot metadata the
    /// site trusts (the timestamp, re-signed on a schedule, is left out).
    pub const METADATA_EXPIRES: &str = "coffer_site_metadata_expires_timestamp_seconds";
    /// `{state}` = 1: the appliance's GPU health.
    pub const GPU: &str = "coffer_site_gpu";
    /// `{model, version, variant}` = 1: what the appliance serves.
    pub const MODEL_ACTIVE: &str = "coffer_site_model_active";
    /// `{model, version, state}` = when (unix seconds) the state was reached: the last
    /// outcome of the release the site's ring should run.
    pub const RELEASE: &str = "coffer_site_release";
    /// `{model, version}`: bytes of a download not finished yet.
    pub const DOWNLOAD_BYTES: &str = "coffer_site_download_bytes";
}

/// A closed set of label values, written and parsed by the same table.
macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("{s:?} is not a {}", stringify!($name)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// Where a site stands with the release its ring should run.
    ReleaseState {
        /// Serving it, through its health gate.
        Active => "active",
        /// The model is pinned on the appliance; the pin wins.
        Pinned => "pinned",
        /// cofferd's evaluation gate refused it.
        GateFailed => "gate_failed",
        /// Activated, failed the health gate, rolled back.
        RolledBack => "rolled_back",
        /// cofferd refused it for a reason an admin must look at.
        Refused => "refused",
        /// cofferd holds another version under its name.
        Impostor => "impostor",
        /// Imported; waits for the change window, the not-before time or its pace.
        AwaitingWindow => "awaiting_window",
        /// Halts are in force and no current halt list can be read: nothing activates.
        AwaitingHaltList => "awaiting_halt_list",
        /// The release is halted: not downloaded or activated here.
        Halted => "halted",
        /// Some of its files are downloaded.
        Downloading => "downloading",
        /// Something transient; tried again next poll.
        Error => "error",
    }
}

impl ReleaseState {
    /// A site that tried the release and it failed there (what halt criteria count).
    pub fn failed(self) -> bool {
        matches!(self, ReleaseState::GateFailed | ReleaseState::RolledBack)
    }

    /// A site that is done trying (succeeded or failed): the denominator of a failure
    /// rate.
    pub fn tried(self) -> bool {
        matches!(
            self,
            ReleaseState::Active | ReleaseState::GateFailed | ReleaseState::RolledBack
        )
    }
}

label_enum! {
    /// How model sync's last poll went.
    SyncState {
        Ok => "ok",
        /// The host or cofferd could not be reached, a download or the state failed.
        Failing => "failing",
        /// The release metadata was refused (see [`RefusalKind`]).
        Refusing => "refusing",
        /// The host was too slow (a stall, the minimum rate, the metadata deadline).
        Stalled => "stalled",
    }
}

label_enum! {
    /// Why the metadata was refused, as TUF's checks name it.
    RefusalKind {
        Expired => "expired",
        Signature => "signature",
        Rollback => "rollback",
        Threshold => "threshold",
        Hash => "hash",
        Other => "other",
    }
}

label_enum! {
    /// The appliance's GPU health as cofferd reports it.
    GpuState {
        Disabled => "disabled",
        Absent => "absent",
        Healthy => "healthy",
        Degraded => "degraded",
        Failed => "failed",
        /// cofferd did not answer.
        Unknown => "unknown",
    }
}

/// What the appliance serves for one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveModel {
    pub model: String,
    pub version: String,
    pub variant: Option<String>,
}

/// The site's state with one release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseStatus {
    pub model: String,
    pub version: String,
    pub state: ReleaseState,
    /// When the state was reached (unix seconds).
    pub since: i64,
    /// Bytes on disk of an unfinished download.
    pub download_bytes: Option<u64>,
}

/// One report of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    /// When it was made (unix milliseconds): the samples' timestamp.
    pub at_ms: u64,
    pub ring: String,
    pub agent_version: String,
    /// `None` while cofferd does not answer.
    pub cofferd_version: Option<String>,
    pub ready: bool,
    pub poll_interval_secs: f64,
    pub sync: SyncState,
    /// For [`SyncState::Refusing`] a [`RefusalKind`]; for failing, what failed.
    pub sync_reason: String,
    pub consecutive_failures: u32,
    /// `None` before the first metadata was trusted.
    pub metadata_expires: Option<i64>,
    pub gpu: GpuState,
    pub active: Vec<ActiveModel>,
    pub releases: Vec<ReleaseStatus>,
}

/// One sample of a report: a series (name and labels, `site` not included) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl SiteReport {
    /// The report as samples, in a fixed order.
    pub fn samples(&self) -> Vec<Sample> {
        let one = |name, labels: Vec<(&'static str, String)>| Sample {
            name,
            labels,
            value: 1.0,
        };
        let plain = |name, value| Sample {
            name,
            labels: Vec::new(),
            value,
        };
        let mut out = vec![
            one(
                names::INFO,
                vec![
                    ("ring", self.ring.clone()),
                    ("agent_version", self.agent_version.clone()),
                    (
                        "cofferd_version",
                        self.cofferd_version
                            .clone()
                            .unwrap_or_else(|| "unreachable".into()),
                    ),
                ],
            ),
            plain(names::READY, if self.ready { 1.0 } else { 0.0 }),
            plain(names::REPORT_TIME, self.at_ms as f64 / 1000.0),
            plain(names::POLL_INTERVAL, self.poll_interval_secs),
            one(
                names::SYNC,
                vec![
                    ("state", self.sync.as_str().into()),
                    ("reason", self.sync_reason.clone()),
                ],
            ),
            plain(names::SYNC_FAILURES, f64::from(self.consecutive_failures)),
            one(names::GPU, vec![("state", self.gpu.as_str().into())]),
        ];
        if let Some(t) = self.metadata_expires {
            out.push(plain(names::METADATA_EXPIRES, t as f64));
        }
        for a in &self.active {
            out.push(one(
                names::MODEL_ACTIVE,
                vec![
                    ("model", a.model.clone()),
                    ("version", a.version.clone()),
                    ("variant", a.variant.clone().unwrap_or_default()),
                ],
            ));
        }
        for r in &self.releases {
            let release = vec![("model", r.model.clone()), ("version", r.version.clone())];
            let mut labels = release.clone();
            labels.push(("state", r.state.as_str().into()));
            out.push(Sample {
                name: names::RELEASE,
                labels,
                value: r.since as f64,
            });
            if let Some(bytes) = r.download_bytes {
                out.push(Sample {
                    name: names::DOWNLOAD_BYTES,
                    labels: release,
                    value: bytes as f64,
                });
            }
        }
        out
    }
}

/// The TUF error kind of a refusal message, from the words tough's errors use.
pub fn refusal_kind(message: &str) -> RefusalKind {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&["is expired", "expired at"]) {
        RefusalKind::Expired
    } else if any(&["threshold"]) {
        RefusalKind::Threshold
    } else if any(&[
        "previously fetched",
        "is less than",
        "is greater than",
        "older",
    ]) {
        RefusalKind::Rollback
    } else if any(&["hash", "digest", "length", "maximum size"]) {
        RefusalKind::Hash
    } else if any(&["signature", "failed to verify"]) {
        RefusalKind::Signature
    } else {
        RefusalKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SiteReport {
        SiteReport {
            at_ms: 1_700_000_000_500,
            ring: "canary".into(),
            agent_version: "0.1.0".into(),
            cofferd_version: None,
            ready: false,
            poll_interval_secs: 300.0,
            sync: SyncState::Refusing,
            sync_reason: RefusalKind::Expired.as_str().into(),
            consecutive_failures: 3,
            metadata_expires: Some(1_700_100_000),
            gpu: GpuState::Unknown,
            active: vec![ActiveModel {
                model: "credit-lr".into(),
                version: "1.0.0".into(),
                variant: None,
            }],
            releases: vec![ReleaseStatus {
                model: "credit-lr".into(),
                version: "2.0.0".into(),
                state: ReleaseState::Downloading,
                since: 1_700_000_000,
                download_bytes: Some(4096),
            }],
        }
    }

    #[test]
    fn a_report_is_its_series() {
        let samples = report().samples();
        let find = |name| samples.iter().find(|s| s.name == name).unwrap();
        assert_eq!(
            find(names::INFO).labels[2],
            ("cofferd_version", "unreachable".into())
        );
        assert_eq!(find(names::READY).value, 0.0);
        assert_eq!(find(names::REPORT_TIME).value, 1_700_000_000.5);
        assert_eq!(
            find(names::SYNC).labels,
            [("state", "refusing".into()), ("reason", "expired".into())]
        );
        assert_eq!(find(names::DOWNLOAD_BYTES).value, 4096.0);
        assert_eq!(
            find(names::RELEASE).labels[2],
            ("state", "downloading".into())
        );
        assert_eq!(find(names::MODEL_ACTIVE).labels[2], ("variant", "".into()));
        assert_eq!(samples.len(), 11);
    }

    #[test]
    fn label_values_parse_back() {
        for s in ReleaseState::ALL {
            assert_eq!(s.as_str().parse::<ReleaseState>().unwrap(), *s);
        }
        assert!("stuck".parse::<ReleaseState>().is_err());
        assert!(ReleaseState::RolledBack.failed() && ReleaseState::RolledBack.tried());
        assert!(!ReleaseState::Pinned.tried());
    }

    #[test]
    fn refusals_are_named_by_kind() {
        assert_eq!(
            refusal_kind("Failed to verify timestamp metadata: expired at 2026-01-01"),
            RefusalKind::Expired
        );
        assert_eq!(
            refusal_kind("Signature threshold of 1 not met for role targets"),
            RefusalKind::Threshold
        );
        assert_eq!(
            refusal_kind(
                "Found version 3 of timestamp metadata when we had previously fetched version 4"
            ),
            RefusalKind::Rollback
        );
        assert_eq!(
            refusal_kind("Failed to verify targets metadata: bad signature"),
            RefusalKind::Signature
        );
        assert_eq!(refusal_kind("something odd"), RefusalKind::Other);
    }
}
