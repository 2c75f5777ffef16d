//! The fleet's rollout as one view (`coffer-release fleet-status`): from the site
//! series in the fleet's Prometheus, per release and ring, the sites on it, still on
//! the previous version, and in each state; per ring the sites that are silent (no
//! report for more than N poll intervals), refusing metadata, or whose metadata expires
//! soon. [`FleetStatus::build`] is pure (the tests drive it with samples);
//! [`FleetStatus::fetch`] runs the queries.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::prom::{PromError, Prometheus, VectorSample};
use crate::site::{ReleaseState, SyncState, names};

/// What the view looks at.
#[derive(Debug, Clone)]
pub struct Options {
    /// A site is silent after this many of its poll intervals without a report.
    pub silent_after_polls: f64,
    /// Metadata expiring within this many seconds is flagged.
    pub expiring_within_secs: f64,
    /// How far back sites are remembered (a PromQL duration, e.g. `7d`).
    pub lookback: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            silent_after_polls: 3.0,
            expiring_within_secs: 7.0 * 86_400.0,
            lookback: "7d".into(),
        }
    }
}

/// One release in one ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseRow {
    pub model: String,
    pub version: String,
    pub ring: String,
    /// Sites of the ring that report this release.
    pub sites: usize,
    /// Sites of the ring serving this version.
    pub on_it: usize,
    /// Sites of the ring serving another version of the model.
    pub previous: usize,
    /// Reporting sites by their state with this release.
    pub states: BTreeMap<ReleaseState, usize>,
}

impl ReleaseRow {
    pub fn count(&self, state: ReleaseState) -> usize {
        self.states.get(&state).copied().unwrap_or(0)
    }

    /// Sites done trying it (active, gate failed, rolled back).
    pub fn tried(&self) -> usize {
        self.states
            .iter()
            .filter(|(s, _)| s.tried())
            .map(|(_, n)| n)
            .sum()
    }

    /// Sites where it failed (gate failed, rolled back).
    pub fn failed(&self) -> usize {
        self.states
            .iter()
            .filter(|(s, _)| s.failed())
            .map(|(_, n)| n)
            .sum()
    }
}

/// One ring's sites.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RingRow {
    pub ring: String,
    pub sites: usize,
    pub silent: usize,
    pub refusing: usize,
    pub expiring: usize,
}

/// A site worth naming, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteNote {
    pub site: String,
    pub ring: String,
    pub detail: String,
}

/// The whole view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetStatus {
    /// Prometheus's time of the view (unix seconds).
    pub at: f64,
    pub sites: usize,
    pub rings: Vec<RingRow>,
    pub releases: Vec<ReleaseRow>,
    pub silent: Vec<SiteNote>,
    pub refusing: Vec<SiteNote>,
    pub expiring: Vec<SiteNote>,
    pub failed: Vec<SiteNote>,
}

/// The query results the view is built from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub now: f64,
    pub last_report: Vec<VectorSample>,
    /// Each site's info series over the lookback, and the current ones (which win: a
    /// site that changed rings is counted in its new one).
    pub info: Vec<VectorSample>,
    pub info_now: Vec<VectorSample>,
    pub poll_interval: Vec<VectorSample>,
    pub releases: Vec<VectorSample>,
    pub active: Vec<VectorSample>,
    pub sync: Vec<VectorSample>,
    pub expires: Vec<VectorSample>,
}

fn ring_order(ring: &str) -> (u8, String) {
    let rank = match ring {
        "canary" => 0,
        "early" => 1,
        "broad" => 2,
        _ => 3,
    };
    (rank, ring.to_string())
}

/// The row of ring `r`, made empty if it is not there yet.
fn ring_row<'a>(rings: &'a mut BTreeMap<(u8, String), RingRow>, r: &str) -> &'a mut RingRow {
    rings.entry(ring_order(r)).or_insert_with(|| RingRow {
        ring: r.to_string(),
        ..RingRow::default()
    })
}

impl FleetStatus {
    /// Runs the queries and builds the view.
    pub async fn fetch(prom: &Prometheus, opts: &Options) -> Result<FleetStatus, PromError> {
        let last = |name: &str| format!("last_over_time({name}[{}])", opts.lookback);
        let now = prom
            .query("time()")
            .await?
            .first()
            .map(|s| s.value)
            .unwrap_or_default();
        let inputs = Inputs {
            now,
            last_report: prom.query(&last(names::REPORT_TIME)).await?,
            info: prom.query(&last(names::INFO)).await?,
            info_now: prom.query(names::INFO).await?,
            poll_interval: prom.query(&last(names::POLL_INTERVAL)).await?,
            releases: prom.query(names::RELEASE).await?,
            active: prom.query(names::MODEL_ACTIVE).await?,
            sync: prom.query(names::SYNC).await?,
            expires: prom.query(names::METADATA_EXPIRES).await?,
        };
        Ok(FleetStatus::build(&inputs, opts))
    }

    /// The view from query results.
    pub fn build(inp: &Inputs, opts: &Options) -> FleetStatus {
        let by_site = |v: &[VectorSample]| -> BTreeMap<String, f64> {
            v.iter()
                .map(|s| (s.label("site").to_string(), s.value))
                .collect()
        };
        let last_report = by_site(&inp.last_report);
        let poll = by_site(&inp.poll_interval);
        // A site's ring: its most recent info series.
        let mut ring: BTreeMap<String, String> = BTreeMap::new();
        for s in inp.info.iter().chain(&inp.info_now) {
            ring.insert(s.label("site").into(), s.label("ring").into());
        }
        let sites: BTreeSet<String> = last_report.keys().chain(ring.keys()).cloned().collect();
        let ring_of = |site: &str| ring.get(site).cloned().unwrap_or_else(|| "?".into());
        let mut rings: BTreeMap<(u8, String), RingRow> = BTreeMap::new();

        let mut silent = Vec::new();
        for site in &sites {
            let r = ring_of(site);
            let row = ring_row(&mut rings, &r);
            row.sites += 1;
            let interval = poll.get(site).copied().unwrap_or(300.0);
            let ago = last_report.get(site).map(|t| inp.now - t);
            if ago.is_none_or(|ago| ago > opts.silent_after_polls * interval) {
                row.silent += 1;
                silent.push(SiteNote {
                    site: site.clone(),
                    ring: r,
                    detail: match ago {
                        Some(ago) => format!(
                            "last report {} ago ({:.0} poll intervals)",
                            human(ago),
                            ago / interval
                        ),
                        None => "never reported".into(),
                    },
                });
            }
        }
        let mut refusing = Vec::new();
        for s in &inp.sync {
            if s.label("state") == SyncState::Refusing.as_str() {
                let site = s.label("site");
                let r = ring_of(site);
                ring_row(&mut rings, &r).refusing += 1;
                refusing.push(SiteNote {
                    site: site.into(),
                    ring: r,
                    detail: format!("metadata refused: {}", s.label("reason")),
                });
            }
        }
        let mut expiring = Vec::new();
        for s in &inp.expires {
            let left = s.value - inp.now;
            if left < opts.expiring_within_secs {
                let site = s.label("site");
                let r = ring_of(site);
                ring_row(&mut rings, &r).expiring += 1;
                expiring.push(SiteNote {
                    site: site.into(),
                    ring: r,
                    detail: if left <= 0.0 {
                        format!("metadata expired {} ago", human(-left))
                    } else {
                        format!("metadata expires in {}", human(left))
                    },
                });
            }
        }
        // What each site serves, per model.
        let mut serving: BTreeMap<(String, String), String> = BTreeMap::new();
        for s in &inp.active {
            serving.insert(
                (s.label("site").into(), s.label("model").into()),
                s.label("version").into(),
            );
        }
        let mut rows: BTreeMap<(String, String, (u8, String)), ReleaseRow> = BTreeMap::new();
        let mut failed = Vec::new();
        // One state per site and model: the latest, should an ended series still show
        // (a report lost, an agent restarted) beside its successor.
        let mut latest: BTreeMap<(&str, &str), &VectorSample> = BTreeMap::new();
        for s in &inp.releases {
            let key = (s.label("site"), s.label("model"));
            if latest.get(&key).is_none_or(|kept| kept.value < s.value) {
                latest.insert(key, s);
            }
        }
        for s in latest.into_values() {
            let Ok(state) = s.label("state").parse::<ReleaseState>() else {
                continue;
            };
            let (site, model, version) = (s.label("site"), s.label("model"), s.label("version"));
            let r = ring_of(site);
            let row = rows
                .entry((model.into(), version.into(), ring_order(&r)))
                .or_insert_with(|| ReleaseRow {
                    model: model.into(),
                    version: version.into(),
                    ring: r.clone(),
                    sites: 0,
                    on_it: 0,
                    previous: 0,
                    states: BTreeMap::new(),
                });
            row.sites += 1;
            *row.states.entry(state).or_default() += 1;
            if state.failed() {
                failed.push(SiteNote {
                    site: site.into(),
                    ring: r,
                    detail: format!("{model}@{version}: {state}"),
                });
            }
        }
        for row in rows.values_mut() {
            for site in sites.iter().filter(|s| ring_of(s) == row.ring) {
                match serving.get(&(site.clone(), row.model.clone())) {
                    Some(v) if *v == row.version => row.on_it += 1,
                    Some(_) => row.previous += 1,
                    None => {}
                }
            }
        }
        FleetStatus {
            at: inp.now,
            sites: sites.len(),
            rings: rings.into_values().collect(),
            releases: rows.into_values().collect(),
            silent,
            refusing,
            expiring,
            failed,
        }
    }

    /// The release rows of one model version.
    pub fn release(&self, model: &str, version: &str) -> Vec<&ReleaseRow> {
        self.releases
            .iter()
            .filter(|r| r.model == model && r.version == version)
            .collect()
    }

    /// The view as text: a table per release and ring, one per ring, then the sites
    /// worth naming (at most `list` of each kind).
    pub fn render(&self, list: usize) -> String {
        let mut out = String::new();
        let at = utc_time(self.at);
        let silent = self.silent.len();
        let _ = writeln!(
            out,
            "fleet at {at}: {} sites, {silent} silent, {} refusing metadata, {} with metadata expiring soon",
            self.sites,
            self.refusing.len(),
            self.expiring.len()
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<28} {:<7} {:>6} {:>6} {:>8} {:>7} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>6}",
            "RELEASE",
            "RING",
            "SITES",
            "ON IT",
            "PREVIOUS",
            "ACTIVE",
            "GATE ✗",
            "ROLLED",
            "PINNED",
            "WAITING",
            "HALTED",
            "FETCH",
            "ERROR"
        );
        for r in &self.releases {
            let name = format!("{}@{}", r.model, r.version);
            let refused = r.count(ReleaseState::Refused) + r.count(ReleaseState::Impostor);
            let _ = writeln!(
                out,
                "{:<28} {:<7} {:>6} {:>6} {:>8} {:>7} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>6}",
                name,
                r.ring,
                r.sites,
                r.on_it,
                r.previous,
                r.count(ReleaseState::Active),
                r.count(ReleaseState::GateFailed),
                r.count(ReleaseState::RolledBack),
                r.count(ReleaseState::Pinned),
                r.count(ReleaseState::AwaitingWindow) + r.count(ReleaseState::AwaitingHaltList),
                r.count(ReleaseState::Halted),
                r.count(ReleaseState::Downloading),
                r.count(ReleaseState::Error) + refused,
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<7} {:>6} {:>7} {:>9} {:>9}",
            "RING", "SITES", "SILENT", "REFUSING", "EXPIRING"
        );
        for r in &self.rings {
            let _ = writeln!(
                out,
                "{:<7} {:>6} {:>7} {:>9} {:>9}",
                r.ring, r.sites, r.silent, r.refusing, r.expiring
            );
        }
        for (title, notes) in [
            ("silent", &self.silent),
            ("refusing metadata", &self.refusing),
            ("metadata expiring", &self.expiring),
            ("failed", &self.failed),
        ] {
            if notes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{title} ({}):", notes.len());
            for n in notes.iter().take(list) {
                let _ = writeln!(out, "  {} ({}): {}", n.site, n.ring, n.detail);
            }
            if notes.len() > list {
                let _ = writeln!(
                    out,
                    "  ... and {} more (--json lists all)",
                    notes.len() - list
                );
            }
        }
        out
    }
}

/// Seconds as `3d 4h`, `12m 5s`.
fn human(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Unix seconds as an RFC 3339 UTC time (civil-from-days, no time crate needed).
fn utc_time(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(labels: &[(&str, &str)], value: f64) -> VectorSample {
        VectorSample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn sites_are_counted_per_release_and_ring() {
        let now = 1_000_000.0;
        let site = |n: usize| format!("b{n}");
        let mut inp = Inputs {
            now,
            ..Inputs::default()
        };
        for n in 0..6 {
            let ring = if n < 4 { "canary" } else { "broad" };
            let id = site(n);
            // b3 last reported 20 minutes ago with a 5-minute poll: silent.
            let last = if n == 3 { now - 1_200.0 } else { now - 10.0 };
            inp.last_report.push(s(&[("site", &id)], last));
            inp.poll_interval.push(s(&[("site", &id)], 300.0));
            // b4 was in canary before; its current info says broad.
            let before = if n == 4 { "canary" } else { ring };
            inp.info.push(s(&[("site", &id), ("ring", before)], 1.0));
            inp.info_now.push(s(&[("site", &id), ("ring", ring)], 1.0));
        }
        let rel = |id: &str, state: &str| {
            s(
                &[
                    ("site", id),
                    ("model", "credit-lr"),
                    ("version", "2.0.0"),
                    ("state", state),
                ],
                now,
            )
        };
        let mut older = rel("b0", "awaiting_window");
        older.value = now - 600.0;
        inp.releases = vec![
            older,
            rel("b0", "active"),
            rel("b1", "gate_failed"),
            rel("b2", "rolled_back"),
            rel("b4", "pinned"),
        ];
        let serve =
            |id: &str, v: &str| s(&[("site", id), ("model", "credit-lr"), ("version", v)], 1.0);
        inp.active = vec![
            serve("b0", "2.0.0"),
            serve("b1", "1.0.0"),
            serve("b2", "1.0.0"),
            serve("b4", "1.0.0"),
            serve("b5", "1.0.0"),
        ];
        inp.sync = vec![
            s(
                &[("site", "b5"), ("state", "refusing"), ("reason", "expired")],
                1.0,
            ),
            s(&[("site", "b0"), ("state", "ok"), ("reason", "")], 1.0),
        ];
        inp.expires = vec![
            s(&[("site", "b0")], now + 30.0 * 86_400.0),
            s(&[("site", "b5")], now - 3_600.0),
        ];
        let v = FleetStatus::build(&inp, &Options::default());
        assert_eq!(v.sites, 6);
        let canary = &v.release("credit-lr", "2.0.0")[0];
        assert_eq!(canary.ring, "canary");
        assert_eq!((canary.sites, canary.on_it, canary.previous), (3, 1, 2));
        assert_eq!((canary.tried(), canary.failed()), (3, 2));
        let broad = &v.release("credit-lr", "2.0.0")[1];
        assert_eq!((broad.ring.as_str(), broad.previous), ("broad", 2));
        assert_eq!(broad.count(ReleaseState::Pinned), 1);
        assert_eq!(v.silent.len(), 1);
        assert_eq!(v.silent[0].site, "b3");
        assert_eq!(v.refusing[0].detail, "metadata refused: expired");
        assert_eq!(v.expiring.len(), 1);
        assert!(v.expiring[0].detail.starts_with("metadata expired 1h"));
        assert_eq!(v.failed.len(), 2);
        assert_eq!(
            v.rings
                .iter()
                .map(|r| (r.ring.as_str(), r.sites, r.silent))
                .collect::<Vec<_>>(),
            [("canary", 4, 1), ("broad", 2, 0)]
        );
        let text = v.render(1);
        assert!(text.contains("credit-lr@2.0.0"), "{text}");
        assert!(text.contains("... and 1 more"), "{text}");
    }

    #[test]
    fn times_render_as_utc() {
        assert_eq!(utc_time(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(1_796_558_400.0), "2026-12-06T12:00:00Z");
        assert_eq!(human(90_061.0), "1d 1h");
        assert_eq!(human(61.0), "1m 1s");
    }
}
