//! The subcommands that stop releases: `abort-when` and `halt-keys` (staged, published
//! with the targets key), `halt` and `lift-halt` (signed with a halt key, live at once)
//! and `watch` (halts by itself when abort criteria trip).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use coffer_fleet::prom::Prometheus;
use coffer_fleet::status::Options;

use crate::halts::{self, SignedHaltList};
use crate::layout::Abort;
use crate::repo::Repo;
use crate::watch;

pub fn abort_when(
    repo: &Repo,
    model: &str,
    version: &str,
    criteria: Option<(f64, u32)>,
) -> anyhow::Result<ExitCode> {
    let abort = criteria.map(|(percent, after)| Abort {
        // Hundredths of a percent; the repository refuses what is out of range.
        failed_above_basis_points: (percent * 100.0).round().clamp(0.0, 1e6) as u32,
        min_tried: after,
    });
    repo.abort_when(model, version, abort.clone())?;
    match abort {
        Some(a) => println!(
            "staged: {model}@{version} halts once more than {}% of the sites that tried it failed, after {} sites; run `coffer-release publish`, and keep `coffer-release watch` running",
            f64::from(a.failed_above_basis_points) / 100.0,
            a.min_tried
        ),
        None => println!(
            "staged: {model}@{version} has no abort criteria; run `coffer-release publish`"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn halt_keys(repo: &Repo, dir: &Path, new: bool) -> anyhow::Result<ExitCode> {
    let authorized = halts::authorize_keys(repo, dir, new)?;
    println!(
        "staged: {} halt key(s) from {} authorized to sign the halt list; run `coffer-release publish` with the targets key, then keep `coffer-release watch` running (or sign a list with `halt`/`lift-halt`): once the keys are live, sites activate releases only while a current halt list is published",
        authorized.keys.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_list(list: &SignedHaltList) {
    println!(
        "halt list v{} published, valid until {}: {} release(s) halted",
        list.signed.version,
        list.signed.expires,
        list.signed.halts.len()
    );
    for h in &list.signed.halts {
        println!("  {}@{} since {}: {}", h.model, h.version, h.at, h.reason);
    }
}

pub async fn halt(
    repo: &Repo,
    dir: &Path,
    model: &str,
    version: &str,
    reason: &str,
    valid_for: Duration,
) -> anyhow::Result<ExitCode> {
    let (list, new) = halts::halt(repo, dir, model, version, reason, valid_for)
        .await
        .context("nothing was halted")?;
    if !new {
        println!("{model}@{version} was halted already");
    }
    print_list(&list);
    Ok(ExitCode::SUCCESS)
}

pub async fn lift(
    repo: &Repo,
    dir: &Path,
    model: &str,
    version: &str,
    valid_for: Duration,
) -> anyhow::Result<ExitCode> {
    let (list, lifted) = halts::lift(repo, dir, model, version, valid_for)
        .await
        .context("no halt was lifted")?;
    if !lifted {
        println!("{model}@{version} was not halted");
    }
    print_list(&list);
    Ok(ExitCode::SUCCESS)
}

pub async fn refresh(repo: &Repo, dir: &Path, valid_for: Duration) -> anyhow::Result<ExitCode> {
    let list = halts::refresh(repo, dir, valid_for)
        .await
        .context("the halt list was not re-signed")?;
    print_list(&list);
    Ok(ExitCode::SUCCESS)
}

/// Rounds every `every` (one with `once`); a round that fails is reported and the next
/// one tried (with `once`: exit 1).
pub async fn watch(
    repo: &Repo,
    dir: &Path,
    prom: &Prometheus,
    every: Duration,
    valid_for: Duration,
    once: bool,
) -> anyhow::Result<ExitCode> {
    let opts = Options::default();
    loop {
        match watch::round(repo, dir, prom, &opts, valid_for).await {
            Ok(round) => {
                for c in &round.checked {
                    let state = if c.halted_now {
                        "HALTED NOW"
                    } else if c.halted_before {
                        "halted"
                    } else if c.lifted_by_hand {
                        "halt lifted by hand"
                    } else {
                        "rolling out"
                    };
                    println!(
                        "{}@{}: {} of {} sites that tried it failed: {state}",
                        c.model, c.version, c.failed, c.tried
                    );
                }
                if round.list_signed {
                    println!("halt list signed and published");
                }
            }
            Err(e) if !once => eprintln!("coffer-release: watch: {e}"),
            Err(e) => return Err(e).context("watch"),
        }
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(every) => {}
        }
    }
}
