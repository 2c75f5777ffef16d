//! Each subcommand of `coffer-release`: the library call it makes and what it prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{Cli, Command, ExpiryArgs};
use super::progress::Progress;
use crate::layout::{Pace, Ring};
use crate::publish::{self, Published};
use crate::repo::{Repo, releases};
use crate::{bundle, init, keys, root};

const NOTHING_PUBLISHED: &str = "nothing was published (what is live is as it was)";

/// Exit status 3: published, but not every step after that completed.
pub const LIVE_BUT_UNFINISHED: u8 = 3;

/// Runs one subcommand on the repository `cli.repo` (paths already absolute: see
/// [`Cli::resolve`]). `Err` means it failed and nothing was published.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::FleetStatus {
        prometheus,
        silent_after,
        expiring_within,
        lookback,
        json,
        watch,
        list,
    } = cli.command
    {
        let opts = coffer_fleet::status::Options {
            silent_after_polls: silent_after,
            expiring_within_secs: expiring_within.as_secs_f64(),
            lookback,
        };
        return super::fleet_status::run(&prometheus, &opts, json, watch, list).await;
    }
    let Some(dir) = &cli.repo else {
        anyhow::bail!("--repo (or COFFER_RELEASE_REPO) is required for this command");
    };
    let repo = Repo::new(dir);
    match cli.command {
        Command::Init {
            keys,
            root_keys,
            root_threshold,
            expiry,
        } => init_repo(&repo, &keys.keys, root_keys, root_threshold, &expiry).await,
        Command::Add { dir, ring } => add(&repo, &dir, ring),
        Command::Promote {
            model,
            version,
            ring,
        } => promote(&repo, &model, &version, ring),
        Command::Schedule {
            model,
            version,
            not_before,
            ..
        } => schedule(&repo, &model, &version, not_before),
        Command::Pace {
            model,
            version,
            first,
            double_every,
            start,
            ..
        } => {
            let pace = first.zip(double_every).map(|(first, every)| Pace {
                start: start.unwrap_or_else(jiff::Timestamp::now).to_string(),
                // Hundredths of a percent; the repository refuses what is out of range.
                first_basis_points: (first * 100.0).round().clamp(0.0, 1e6) as u32,
                double_every_secs: every.as_secs(),
            });
            pace_rollout(&repo, &model, &version, pace)
        }
        Command::Withdraw { model, version } => withdraw(&repo, &model, &version),
        Command::Publish {
            keys,
            expiry,
            timestamp_only,
        } => publish_staged(&repo, &keys.keys, &expiry, timestamp_only).await,
        Command::RotateKey {
            role,
            key_id,
            keys,
            expiry,
        } => rotate_key(&repo, &keys.keys, &role, key_id, &expiry).await,
        Command::List => list(&repo),
        Command::Check => check(&repo).await,
        Command::ExportBundle { dir } => export_bundle(&repo, &dir).await,
        Command::FleetStatus { .. } => unreachable!("answered above"),
        Command::AbortWhen {
            model,
            version,
            failed_above,
            after,
            ..
        } => super::halting::abort_when(&repo, &model, &version, failed_above.zip(after)),
        Command::HaltKeys { halt_keys, new } => {
            super::halting::halt_keys(&repo, &halt_keys.halt_keys, new)
        }
        Command::Halt {
            model,
            version,
            reason,
            halt_keys,
            valid_for,
        } => {
            super::halting::halt(
                &repo,
                &halt_keys.halt_keys,
                &model,
                &version,
                &reason,
                valid_for,
            )
            .await
        }
        Command::LiftHalt {
            model,
            version,
            halt_keys,
            valid_for,
        } => super::halting::lift(&repo, &halt_keys.halt_keys, &model, &version, valid_for).await,
        Command::DropHaltKeys => {
            crate::halts::deauthorize_keys(&repo)?;
            println!(
                "staged: no halt keys; run `coffer-release publish` with the targets key: sites then need no halt list"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::RefreshHalts {
            halt_keys,
            valid_for,
        } => super::halting::refresh(&repo, &halt_keys.halt_keys, valid_for).await,
        Command::Watch {
            prometheus,
            halt_keys,
            every,
            valid_for,
            once,
        } => {
            let prom = super::fleet_status::prometheus(&prometheus)?;
            super::halting::watch(&repo, &halt_keys.halt_keys, &prom, every, valid_for, once).await
        }
    }
}

/// Prints what is live; says plainly when a step after publishing did not complete.
fn print_published(p: &Published) -> ExitCode {
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

async fn init_repo(
    repo: &Repo,
    keys_dir: &Path,
    root_keys: usize,
    root_threshold: u64,
    expiry: &ExpiryArgs,
) -> anyhow::Result<ExitCode> {
    let done = init::init(
        repo,
        keys_dir,
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
    Ok(print_published(&done.published))
}

fn add(repo: &Repo, dir: &Path, ring: Ring) -> anyhow::Result<ExitCode> {
    let mut bar = Progress::new("copying");
    let info = repo.add(dir, ring, &mut |d, t| bar.update(d, t))?;
    println!(
        "staged {}@{} ({} files) for ring {}; release {}; run `coffer-release publish`",
        info.model,
        info.version,
        info.files.len(),
        info.ring,
        info.seq
    );
    Ok(ExitCode::SUCCESS)
}

fn promote(repo: &Repo, model: &str, version: &str, ring: Ring) -> anyhow::Result<ExitCode> {
    let info = repo.promote(model, version, ring)?;
    println!(
        "staged: {}@{} goes to ring {}",
        info.model, info.version, info.ring
    );
    Ok(ExitCode::SUCCESS)
}

fn schedule(
    repo: &Repo,
    model: &str,
    version: &str,
    not_before: Option<jiff::Timestamp>,
) -> anyhow::Result<ExitCode> {
    let info = repo.schedule(model, version, not_before)?;
    match &info.not_before {
        Some(t) => println!(
            "staged: {}@{} is activated no earlier than {t}",
            info.model, info.version
        ),
        None => println!(
            "staged: {}@{} is activated as soon as sites have it",
            info.model, info.version
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn pace_rollout(
    repo: &Repo,
    model: &str,
    version: &str,
    pace: Option<Pace>,
) -> anyhow::Result<ExitCode> {
    let info = repo.pace(model, version, pace)?;
    match &info.pace {
        Some(p) => println!(
            "staged: {}@{} reaches {}% of the sites from {}, doubling every {}",
            info.model,
            info.version,
            p.first() * 100.0,
            p.start,
            humantime::format_duration(std::time::Duration::from_secs(p.double_every_secs))
        ),
        None => println!(
            "staged: {}@{} is activated by every site at once",
            info.model, info.version
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn withdraw(repo: &Repo, model: &str, version: &str) -> anyhow::Result<ExitCode> {
    let n = repo.withdraw(model, version)?;
    println!("staged: {model}@{version} withdrawn ({n} targets)");
    Ok(ExitCode::SUCCESS)
}

async fn publish_staged(
    repo: &Repo,
    keys_dir: &Path,
    expiry: &ExpiryArgs,
    timestamp_only: bool,
) -> anyhow::Result<ExitCode> {
    let p = if timestamp_only {
        publish::refresh_timestamp(repo, keys_dir, expiry.timestamp_expires).await
    } else {
        publish::publish(repo, keys_dir, &expiry.expiries()).await
    }
    .context(NOTHING_PUBLISHED)?;
    Ok(print_published(&p))
}

async fn rotate_key(
    repo: &Repo,
    keys_dir: &Path,
    role: &str,
    key_id: Option<String>,
    expiry: &ExpiryArgs,
) -> anyhow::Result<ExitCode> {
    let role = keys::parse_role(role)?;
    let r = match key_id {
        Some(id) => root::replace_key(repo, keys_dir, role, &id, &expiry.expiries()).await,
        None => root::rotate_key(repo, keys_dir, role, &expiry.expiries()).await,
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
    Ok(print_published(&r.published))
}

fn list(repo: &Repo) -> anyhow::Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}

async fn check(repo: &Repo) -> anyhow::Result<ExitCode> {
    let loaded = publish::check(repo, tough::ExpirationEnforcement::Safe).await?;
    println!(
        "repository OK: root v{}, targets v{}, {} targets; valid until {}",
        loaded.root().signed.version,
        loaded.targets().signed.version,
        loaded.all_targets().count(),
        publish::earliest_expiry(&loaded)
    );
    Ok(ExitCode::SUCCESS)
}

async fn export_bundle(repo: &Repo, dir: &Path) -> anyhow::Result<ExitCode> {
    let mut bar = Progress::new("exporting");
    let e = bundle::export(repo, dir, &mut |d, t| bar.update(d, t)).await?;
    println!(
        "bundle {}: {} files, {:.1} MiB, {} release(s); importable until {} (later only within the site's sync.bundle_expiry_grace)",
        dir.display(),
        e.files,
        e.bytes as f64 / 1048576.0,
        e.releases,
        e.expires
    );
    Ok(ExitCode::SUCCESS)
}
