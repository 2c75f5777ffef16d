//! `coffer-release`: the fleet admin's tool to build, sign and publish the TUF release
//! repository that coffer-agent pulls from, rotate its keys and export bundles for
//! air-gapped sites. See `docs/fleet.md`.
//!
//! Paths are made absolute once, before anything runs. Exit status: 0 done; 1 failed,
//! and nothing was published; 2 the command line was refused; 3 published (the release
//! is live) but a later step did not complete, as the message says.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use coffer_models::release::layout::Ring;
use coffer_models::release::publish::{self, Expiries};
use coffer_models::release::repo::{Repo, releases};
use coffer_models::release::{bundle, keys};

#[derive(Parser)]
#[command(
    name = "coffer-release",
    version,
    about = "Build, sign and publish Coffer model releases (TUF)"
)]
struct Cli {
    /// The release repository directory (`public/` inside it is what the host serves).
    #[arg(long, short, env = "COFFER_RELEASE_REPO")]
    repo: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct KeyDir {
    /// Directory of the signing keys (keep root keys offline).
    #[arg(long, env = "COFFER_RELEASE_KEYS")]
    keys: PathBuf,
}

#[derive(Args)]
struct ExpiryArgs {
    /// How long signed targets metadata stays valid.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    targets_expires: Duration,
    /// How long signed snapshot metadata stays valid.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    snapshot_expires: Duration,
    /// How long the timestamp stays valid: agents refuse the repository after it (freeze
    /// protection), so re-sign it more often (`publish --timestamp-only`).
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    timestamp_expires: Duration,
    /// How long a new root version stays valid (init, rotate-key).
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    root_expires: Duration,
}

impl ExpiryArgs {
    fn expiries(&self) -> Expiries {
        Expiries {
            root: self.root_expires,
            targets: self.targets_expires,
            snapshot: self.snapshot_expires,
            timestamp: self.timestamp_expires,
        }
    }
}

#[derive(Subcommand)]
enum Command {
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
}

const RINGS: &str = "canary|early|broad";

impl Cli {
    /// Makes every path absolute (against the current directory), once.
    fn resolve(mut self) -> anyhow::Result<Cli> {
        fn abs(path: &mut PathBuf) -> anyhow::Result<()> {
            *path = std::path::absolute(&*path)
                .with_context(|| format!("{}: cannot make it absolute", path.display()))?;
            Ok(())
        }
        abs(&mut self.repo)?;
        match &mut self.command {
            Command::Init { keys, .. }
            | Command::Publish { keys, .. }
            | Command::RotateKey { keys, .. } => abs(&mut keys.keys)?,
            Command::Add { dir, .. } | Command::ExportBundle { dir } => abs(dir)?,
            Command::Promote { .. } | Command::Withdraw { .. } | Command::List | Command::Check => {
            }
        }
        Ok(self)
    }
}

/// A one-line progress bar on stderr when it is a terminal; a final line otherwise.
struct Progress {
    label: String,
    tty: bool,
    last: Instant,
}

impl Progress {
    fn new(label: &str) -> Progress {
        Progress {
            label: label.into(),
            tty: std::io::stderr().is_terminal(),
            last: Instant::now() - Duration::from_secs(1),
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        if !self.tty || (self.last.elapsed() < Duration::from_millis(100) && done < total) {
            return;
        }
        self.last = Instant::now();
        let width = 30usize;
        let filled = if total == 0 {
            width
        } else {
            ((done as f64 / total as f64) * width as f64) as usize
        };
        let _ = write!(
            std::io::stderr(),
            "\r{} [{}{}] {:.1}/{:.1} MiB",
            self.label,
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            done as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
        if done >= total {
            let _ = writeln!(std::io::stderr());
        }
    }
}

const NOTHING_PUBLISHED: &str = "nothing was published (what is live is as it was)";

/// Exit status 3: published, but not every step after that completed.
const LIVE_BUT_UNFINISHED: u8 = 3;

/// Prints what is live; says plainly when a step after publishing did not complete.
fn print_published(p: &publish::Published) -> ExitCode {
    println!(
        "published: root v{}, targets v{}, snapshot v{}, timestamp v{}; {} release(s); valid until {} (earliest expiry)",
        p.root_version,
        p.targets_version,
        p.snapshot_version,
        p.timestamp_version,
        p.releases,
        p.expires
    );
    if p.is_complete() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "coffer-release: the above IS published and live (agents fetch it), but not every step completed:"
    );
    for step in &p.unfinished {
        eprintln!("  - {step}");
    }
    ExitCode::from(LIVE_BUT_UNFINISHED)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let repo = Repo::new(&cli.repo);
    match cli.command {
        Command::Init {
            keys,
            root_keys,
            root_threshold,
            expiry,
        } => {
            let done = publish::init(
                &repo,
                &keys.keys,
                root_keys,
                root_threshold,
                &expiry.expiries(),
            )
            .await
            .context("init made nothing")?;
            for k in &done.keys {
                println!("key {}", k.display());
            }
            println!(
                "root: {} (install it on every site as sync.trusted_root)",
                done.root.display()
            );
            return Ok(print_published(&done.published));
        }
        Command::Add { dir, ring } => {
            let mut bar = Progress::new("copying");
            let info = repo.add(&dir, ring, &mut |d, t| bar.update(d, t))?;
            println!(
                "staged {}@{} ({} files) for ring {}; release {}; run `coffer-release publish`",
                info.model,
                info.version,
                info.files.len(),
                info.ring,
                info.seq
            );
        }
        Command::Promote {
            model,
            version,
            ring,
        } => {
            let info = repo.promote(&model, &version, ring)?;
            println!(
                "staged: {}@{} goes to ring {}",
                info.model, info.version, info.ring
            );
        }
        Command::Withdraw { model, version } => {
            let n = repo.withdraw(&model, &version)?;
            println!("staged: {model}@{version} withdrawn ({n} targets)");
        }
        Command::Publish {
            keys,
            expiry,
            timestamp_only,
        } => {
            let p = if timestamp_only {
                publish::refresh_timestamp(&repo, &keys.keys, expiry.timestamp_expires).await
            } else {
                publish::publish(&repo, &keys.keys, &expiry.expiries()).await
            }
            .context(NOTHING_PUBLISHED)?;
            return Ok(print_published(&p));
        }
        Command::RotateKey {
            role,
            key_id,
            keys: k,
            expiry,
        } => {
            let role = keys::parse_role(&role)?;
            let r = match key_id {
                Some(id) => {
                    publish::replace_key(&repo, &k.keys, role, &id, &expiry.expiries()).await
                }
                None => publish::rotate_key(&repo, &k.keys, role, &expiry.expiries()).await,
            }
            .context(NOTHING_PUBLISHED)?;
            println!(
                "{} key rotated: root v{}",
                keys::role_name(r.role),
                r.root_version
            );
            for new in &r.new_keys {
                println!("new key {}", new.display());
            }
            for old in &r.retired {
                println!("retired {}", old.display());
            }
            return Ok(print_published(&r.published));
        }
        Command::List => {
            let staged = repo.has_staged_changes();
            println!(
                "{} releases:",
                if staged {
                    "draft (staged, unpublished)"
                } else {
                    "published"
                }
            );
            for r in releases(&repo.draft()?) {
                println!(
                    "  #{:<4} {}@{}  {}  ring {}  {} files",
                    r.seq,
                    r.model,
                    r.version,
                    r.kind,
                    r.ring,
                    r.files.len()
                );
            }
        }
        Command::Check => {
            let loaded = publish::check(&repo, tough::ExpirationEnforcement::Safe).await?;
            println!(
                "repository OK: root v{}, targets v{}, {} targets; valid until {}",
                loaded.root().signed.version,
                loaded.targets().signed.version,
                loaded.all_targets().count(),
                publish::earliest_expiry(&loaded)
            );
        }
        Command::ExportBundle { dir } => {
            let mut bar = Progress::new("exporting");
            let e = bundle::export(&repo, &dir, &mut |d, t| bar.update(d, t)).await?;
            println!(
                "bundle {}: {} files, {:.1} MiB, {} release(s); importable until {} (later only within the site's sync.bundle_expiry_grace)",
                dir.display(),
                e.files,
                e.bytes as f64 / 1048576.0,
                e.releases,
                e.expires
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = match Cli::parse().resolve() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("coffer-release: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coffer-release: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer-release: {e:#}");
            ExitCode::FAILURE
        }
    }
}
