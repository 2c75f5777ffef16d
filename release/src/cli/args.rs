//! The command line of `coffer-release`: its options and subcommands (clap), with the
//! paths made absolute once, before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::layout::Ring;
use crate::publish::Expiries;

// `coffer-release`'s arguments (no doc comment: clap would take it as the help text).
#[derive(Debug, Parser)]
#[command(
    name = "coffer-release",
    version,
    about = "Build, sign and publish Coffer model releases (TUF)"
)]
pub struct Cli {
    /// The release repository directory (`public/` inside it is what the host serves);
    /// every command but `fleet-status` needs it.
    #[arg(long, short, env = "COFFER_RELEASE_REPO")]
    pub repo: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct KeyDir {
    /// Directory of the signing keys (keep root keys offline).
    #[arg(long, env = "COFFER_RELEASE_KEYS")]
    pub keys: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExpiryArgs {
    /// How long signed targets metadata stays valid.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub targets_expires: Duration,
    /// How long signed snapshot metadata stays valid.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub snapshot_expires: Duration,
    /// How long the timestamp stays valid: agents refuse the repository after it (freeze
    /// protection), so re-sign it more often (`publish --timestamp-only`).
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub timestamp_expires: Duration,
    /// How long a new root version stays valid (init, rotate-key).
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    pub root_expires: Duration,
}

impl ExpiryArgs {
    /// The expiries the options give.
    pub fn expiries(&self) -> Expiries {
        Expiries {
            root: self.root_expires,
            targets: self.targets_expires,
            snapshot: self.snapshot_expires,
            timestamp: self.timestamp_expires,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository: keys for every role and root version 1.
    Init {
        #[command(flatten)]
        keys: KeyDir,
        /// Root keys to make.
        #[arg(long, default_value_t = 1)]
        root_keys: usize,
        /// Root signatures a new root version needs.
        #[arg(long, default_value_t = 1)]
        root_threshold: u64,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
    /// Stage a model version directory (manifest.toml and its files) for release.
    Add {
        dir: PathBuf,
        /// The widest ring that receives it. Required: sites are in `broad` unless set
        /// otherwise, so how far a version goes is always the admin's choice.
        #[arg(long, value_name = RINGS)]
        ring: Ring,
    },
    /// Stage a change of the ring a released version goes to.
    Promote {
        model: String,
        version: String,
        #[arg(long, value_name = RINGS)]
        ring: Ring,
    },
    /// Stage the earliest time sites may activate a released version (they download and
    /// import it before): `--not-before 2026-12-10T19:00:00Z`, or `--clear`.
    Schedule {
        model: String,
        version: String,
        /// RFC 3339 time with an offset, e.g. 2026-12-10T19:00:00+01:00.
        #[arg(long, value_name = "TIME", required_unless_present = "clear")]
        not_before: Option<jiff::Timestamp>,
        /// Activation at any time again.
        #[arg(long, conflicts_with = "not_before")]
        clear: bool,
    },
    /// Stage a paced rollout: `--first 1 --double-every 6h` lets 1% of the sites
    /// activate the version at the start, then 2%, 4% … every 6 hours; `--clear`: all.
    Pace {
        model: String,
        version: String,
        /// Percent of the sites at the start (above 0, at most 100).
        #[arg(long, value_name = "PERCENT", required_unless_present = "clear")]
        first: Option<f64>,
        /// How often the share doubles (e.g. 6h, 1d).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, required_unless_present = "clear")]
        double_every: Option<std::time::Duration>,
        /// When the ramp starts (RFC 3339 with an offset); now by default.
        #[arg(long, value_name = "TIME")]
        start: Option<jiff::Timestamp>,
        /// Every site at once again.
        #[arg(long, conflicts_with_all = ["first", "double_every", "start"])]
        clear: bool,
    },
    /// Stage abort criteria: `coffer-release watch` halts the version once more than
    /// `--failed-above` percent of the sites that tried it failed its gates or rolled
    /// it back, after at least `--after` sites tried it; `--clear`: none.
    AbortWhen {
        model: String,
        version: String,
        /// Percent of the sites that tried it (above 0, below 100).
        #[arg(long, value_name = "PERCENT", required_unless_present = "clear")]
        failed_above: Option<f64>,
        /// Sites that must have tried it before the share counts.
        #[arg(long, value_name = "SITES", required_unless_present = "clear")]
        after: Option<u32>,
        #[arg(long, conflicts_with_all = ["failed_above", "after"])]
        clear: bool,
    },
    /// Stage the authorization of the halt keys in `--halt-keys` (one is made if there is
    /// none, or with `--new`); `publish` with the targets key makes it live. A halt key
    /// signs only the halt list: it can stop releases and lift halts, never publish or change
    /// one.
    HaltKeys {
        #[command(flatten)]
        halt_keys: HaltKeyDir,
        /// Make a new halt key beside the ones there (then remove the old file to
        /// rotate).
        #[arg(long)]
        new: bool,
    },
    /// Stage the end of halts: the halt keys' authorization goes with the next
    /// `publish` (targets key), and sites no longer need a halt list. Refused while a
    /// release carries abort criteria.
    DropHaltKeys,
    /// Halt a release on every site that has not activated it yet (signed with a halt
    /// key; no publish needed).
    Halt {
        model: String,
        version: String,
        /// Why (one line; every site shows it).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        halt_keys: HaltKeyDir,
        /// How long the signed halt list stays valid.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Let a halted release roll out again.
    LiftHalt {
        model: String,
        version: String,
        #[command(flatten)]
        halt_keys: HaltKeyDir,
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Re-sign the halt list unchanged, valid for `--valid-for` (before `export-bundle`
    /// for sites that import it weeks later, or to keep it fresh without `watch`).
    RefreshHalts {
        #[command(flatten)]
        halt_keys: HaltKeyDir,
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Halt releases whose abort criteria trip, from the fleet's Prometheus, every
    /// `--every`, and keep the halt list fresh; runs until interrupted.
    Watch {
        #[command(flatten)]
        prometheus: PrometheusArgs,
        #[command(flatten)]
        halt_keys: HaltKeyDir,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        every: Duration,
        /// How long each signed halt list stays valid (re-signed when half is gone):
        /// sites stop activating releases this long after the watch stops, and a host
        /// that serves an older list delays a new halt by at most this long.
        #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
        valid_for: Duration,
        /// One round, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Stage the removal of a released version: sites return to the previous one.
    Withdraw { model: String, version: String },
    /// Sign and publish the staged changes (new targets, snapshot and timestamp).
    Publish {
        #[command(flatten)]
        keys: KeyDir,
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Re-sign only the timestamp (needs only the timestamp key).
        #[arg(long)]
        timestamp_only: bool,
    },
    /// Replace a role's keys (root, targets, snapshot, timestamp) and publish.
    RotateKey {
        role: String,
        /// Replace only this key (its id, or the first hex digits of it as in the key's
        /// file name `ROLE-ID.pk8`), keeping the others: a lost root key among several.
        /// Without it, every key of the role is replaced.
        #[arg(long, value_name = "ID")]
        key_id: Option<String>,
        #[command(flatten)]
        keys: KeyDir,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
    /// List the releases in the draft (staged) or published targets.
    List,
    /// Load the published repository as an agent would, and report its expiry.
    Check,
    /// Copy the current release into DIR for an air-gapped site.
    ExportBundle { dir: PathBuf },
    /// Where each release stands across the fleet, from the sites' reports in the
    /// fleet's Prometheus: per release and ring the sites on it, on the previous
    /// version, failed, pinned, waiting; silent sites, refused or expiring metadata.
    FleetStatus {
        #[command(flatten)]
        prometheus: PrometheusArgs,
        /// A site is silent after this many of its poll intervals without a report.
        #[arg(long, default_value_t = 3.0, value_name = "POLLS")]
        silent_after: f64,
        /// Flag metadata that expires within this long.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        expiring_within: Duration,
        /// How far back sites are remembered (a PromQL duration).
        #[arg(long, default_value = "7d")]
        lookback: String,
        /// Print JSON (every site named) instead of tables.
        #[arg(long)]
        json: bool,
        /// Print again every DURATION until interrupted.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        watch: Option<Duration>,
        /// Sites named per list in the tables.
        #[arg(long, default_value_t = 20)]
        list: usize,
    },
}

/// The halt keys (kept online, apart from the role keys).
#[derive(Debug, Args)]
pub struct HaltKeyDir {
    /// Directory of the halt keys (`halt-ID.pk8`).
    #[arg(long, env = "COFFER_RELEASE_HALT_KEYS", value_name = "DIR")]
    pub halt_keys: PathBuf,
}

/// Where the fleet's Prometheus is and how to reach it.
#[derive(Debug, Args)]
pub struct PrometheusArgs {
    /// The fleet's Prometheus (its HTTP API base URL, e.g. https://prom.example:9090).
    #[arg(long, env = "COFFER_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus: String,
    /// CA bundle (PEM) to trust for an https Prometheus.
    #[arg(long, value_name = "FILE")]
    pub prometheus_ca: Option<PathBuf>,
    /// File holding a bearer token for Prometheus (kept out of the command line).
    #[arg(long, value_name = "FILE")]
    pub prometheus_token_file: Option<PathBuf>,
    /// How long one query may take.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,
}

impl PrometheusArgs {
    fn resolve(&mut self) -> anyhow::Result<()> {
        for path in [&mut self.prometheus_ca, &mut self.prometheus_token_file]
            .into_iter()
            .flatten()
        {
            *path = std::path::absolute(&*path)
                .with_context(|| format!("{}: cannot make it absolute", path.display()))?;
        }
        Ok(())
    }
}

/// The rings, as the help shows them.
const RINGS: &str = "canary|early|broad";

impl Cli {
    /// Makes every path absolute (against the current directory), once.
    pub fn resolve(mut self) -> anyhow::Result<Cli> {
        fn abs(path: &mut PathBuf) -> anyhow::Result<()> {
            *path = std::path::absolute(&*path)
                .with_context(|| format!("{}: cannot make it absolute", path.display()))?;
            Ok(())
        }
        if let Some(repo) = &mut self.repo {
            abs(repo)?;
        }
        match &mut self.command {
            Command::Init { keys, .. }
            | Command::Publish { keys, .. }
            | Command::RotateKey { keys, .. } => abs(&mut keys.keys)?,
            Command::Add { dir, .. } | Command::ExportBundle { dir } => abs(dir)?,
            Command::FleetStatus { prometheus, .. } => prometheus.resolve()?,
            Command::Watch {
                prometheus,
                halt_keys,
                ..
            } => {
                prometheus.resolve()?;
                abs(&mut halt_keys.halt_keys)?;
            }
            Command::HaltKeys { halt_keys, .. }
            | Command::RefreshHalts { halt_keys, .. }
            | Command::Halt { halt_keys, .. }
            | Command::LiftHalt { halt_keys, .. } => abs(&mut halt_keys.halt_keys)?,
            Command::Promote { .. }
            | Command::Schedule { .. }
            | Command::Pace { .. }
            | Command::AbortWhen { .. }
            | Command::DropHaltKeys
            | Command::Withdraw { .. }
            | Command::List
            | Command::Check => {}
        }
        Ok(self)
    }
}
