//! `coffer-release watch`: the loop that halts a release by itself. Each round it
//! reads the fleet's state from Prometheus (the sites' reports, as `fleet-status`
//! does), checks every published release that carries abort criteria, and halts those
//! whose criteria tripped, with the online halt key; it keeps the halt list fresh
//! (re-signed once less than half its validity is left, and published empty the first
//! time): once halt keys are authorized, sites activate releases only while a current
//! list is published, so they go on while someone watches and stop once nobody does.

use std::path::Path;
use std::time::Duration;

use coffer_fleet::prom::{PromError, Prometheus};
use coffer_fleet::status::{FleetStatus, Options};

use crate::ReleaseError;
use crate::halts;
use crate::repo::{Repo, draft_of, releases};

/// Why a round did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error("reading the fleet: {0}")]
    Prometheus(#[from] PromError),
}

/// One release with criteria, as a round saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub model: String,
    pub version: String,
    pub tried: usize,
    pub failed: usize,
    /// Halted in this round.
    pub halted_now: bool,
    /// Halted before (by a round or by hand).
    pub halted_before: bool,
    /// Its halt was lifted by hand: not halted again by its criteria.
    pub lifted_by_hand: bool,
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub checked: Vec<Checked>,
    /// The halt list was (re-)signed and published.
    pub list_signed: bool,
}

/// One round (see the module header).
pub async fn round(
    repo: &Repo,
    halt_keys: &Path,
    prom: &Prometheus,
    opts: &Options,
    valid_for: Duration,
) -> Result<Round, WatchError> {
    let published = repo
        .published()?
        .ok_or_else(|| ReleaseError::Usage("nothing is published yet".into()))?;
    let watched: Vec<_> = releases(&draft_of(published.targets.signed))
        .into_iter()
        .filter_map(|r| r.abort.clone().map(|a| (r, a)))
        .collect();
    let list = halts::published_list(repo)?;
    let mut round = Round::default();
    let halted: Vec<(String, String)> = list
        .as_ref()
        .map(|l| l.signed.halted().into_iter().collect())
        .unwrap_or_default();
    let lifted: Vec<(String, String)> = list
        .as_ref()
        .map(|l| {
            l.signed
                .lifted
                .iter()
                .map(|h| (h.model.clone(), h.version.clone()))
                .collect()
        })
        .unwrap_or_default();
    // The fleet's state is read first; whatever comes of it, the list is kept fresh
    // below (a Prometheus outage must not let the list lapse and stop every rollout).
    let evaluated = if watched.is_empty() {
        Ok(())
    } else {
        match FleetStatus::fetch(prom, opts).await {
            Ok(view) => {
                for (info, abort) in &watched {
                    let rows = view.release(&info.model, &info.version);
                    let tried: usize = rows.iter().map(|r| r.tried()).sum();
                    let failed: usize = rows.iter().map(|r| r.failed()).sum();
                    let key = (info.model.clone(), info.version.clone());
                    let halted_before = halted.contains(&key);
                    let lifted_by_hand = lifted.contains(&key);
                    let trip = !halted_before && !lifted_by_hand && abort.tripped(tried, failed);
                    if trip {
                        let reason = format!(
                            "abort criteria: {failed} of {tried} sites failed it (above {}% after {} sites)",
                            f64::from(abort.failed_above_basis_points) / 100.0,
                            abort.min_tried
                        );
                        halts::halt(
                            repo,
                            halt_keys,
                            &info.model,
                            &info.version,
                            &reason,
                            valid_for,
                        )
                        .await?;
                        round.list_signed = true;
                    }
                    round.checked.push(Checked {
                        model: info.model.clone(),
                        version: info.version.clone(),
                        tried,
                        failed,
                        halted_now: trip,
                        halted_before,
                        lifted_by_hand,
                    });
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    if !round.list_signed {
        let stale = match &list {
            // Sites activate nothing without a current list once halt keys are live.
            None => true,
            Some(l) => l
                .signed
                .expires
                .parse::<jiff::Timestamp>()
                .map(|t| {
                    let left = t.duration_since(jiff::Timestamp::now());
                    left < jiff::SignedDuration::try_from(valid_for / 2).unwrap_or_default()
                })
                .unwrap_or(true),
        };
        if stale {
            halts::refresh(repo, halt_keys, valid_for).await?;
            round.list_signed = true;
        }
    }
    evaluated?;
    Ok(round)
}
