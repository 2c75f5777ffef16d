//! The fleet release repository's contract between `coffer-release` (which writes it)
//! and `coffer-agent` (which reads it): where files live, how model files are named as
//! TUF targets, and the signed custom metadata that says which sites get a version.
//!
//! ```text
//! REPO/public/metadata/1.root.json, 2.root.json, …   every root version (rotation chain)
//! REPO/public/metadata/N.targets.json, N.snapshot.json  immutable, consistent snapshots
//! REPO/public/metadata/timestamp.json                 the only file that changes in place
//! REPO/public/targets/<sha256>.<model>/<version>/<path> every file of every version
//! REPO/public/halts.json                              the halt list (crate::halts)
//! ```
//!
//! Each file of a model version is the target `<model>/<version>/<path>`; the version's
//! `manifest.toml` target carries [`ReleaseInfo`] under the custom key `coffer`, inside
//! the targets metadata that the targets role signs. Target files are named as TUF's
//! consistent snapshots name them (`<sha256>.<name>`), so a file is never replaced in
//! place and any cache may keep it forever.

use serde::{Deserialize, Serialize};

/// The custom-metadata key of [`ReleaseInfo`] on a manifest target.
pub const CUSTOM_KEY: &str = "coffer";
/// The published tree inside a release repository directory (what the host serves).
pub const PUBLIC_DIR: &str = "public";
pub const METADATA_DIR: &str = "metadata";
pub const TARGETS_DIR: &str = "targets";
/// The target that carries the halt keys ([`crate::halts`]), and its custom-metadata key.
pub const HALT_KEYS_TARGET: &str = "coffer/halt-keys.json";
pub const HALT_KEYS_CUSTOM: &str = "coffer_halt_keys";
/// The halt list, beside `metadata/` and `targets/` in the published tree.
pub const HALT_LIST_FILE: &str = "halts.json";

/// Rollout rings, narrowest first. A version released to a ring reaches the sites of
/// that ring and of every narrower one: `early` reaches `canary` and `early` sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ring {
    Canary,
    Early,
    Broad,
}

impl Ring {
    pub const ALL: [Ring; 3] = [Ring::Canary, Ring::Early, Ring::Broad];

    pub fn as_str(self) -> &'static str {
        match self {
            Ring::Canary => "canary",
            Ring::Early => "early",
            Ring::Broad => "broad",
        }
    }

    /// Whether a site in ring `self` takes a version released to `released_to`.
    pub fn receives(self, released_to: Ring) -> bool {
        self <= released_to
    }
}

impl std::str::FromStr for Ring {
    type Err = String;
    fn from_str(s: &str) -> Result<Ring, String> {
        Ring::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a ring (canary, early, broad)"))
    }
}

impl std::fmt::Display for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A variant as the release lists it (from the manifest), so that a fleet view can say
/// what each site may serve without downloading the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedVariant {
    pub name: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mib: Option<u64>,
}

/// Signed facts about one released model version (custom metadata of its manifest
/// target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub model: String,
    pub version: String,
    /// `score` or `chat`, as in the manifest.
    pub kind: String,
    /// The widest ring that receives this version.
    pub ring: Ring,
    /// Release order in this repository (1, 2, …): among the versions of a model that a
    /// ring receives, the highest `seq` is the one its sites run.
    pub seq: u64,
    /// Every file of the version, relative to the version directory, in manifest order
    /// (`manifest.toml` first).
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<ReleasedVariant>,
    /// Sites activate it no earlier than this (RFC 3339, `coffer-release schedule`);
    /// they may download and import it before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// A paced rollout (`coffer-release pace`): the share of sites that may activate it
    /// grows over time; each site knows from its `site_id` when its turn comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<Pace>,
    /// When `coffer-release watch` halts it by itself (`coffer-release abort-when`).
    /// Sites activate such a release only while they can read a current halt list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
}

/// Abort criteria: halt once more than `failed_above_basis_points` (hundredths of a
/// percent) of the sites that tried the release failed it (its evaluation gate, or the
/// health gate and a rollback), counted once at least `min_tried` sites tried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abort {
    pub failed_above_basis_points: u32,
    pub min_tried: u32,
}

impl Abort {
    /// Whether `failed` of `tried` sites trip it.
    pub fn tripped(&self, tried: usize, failed: usize) -> bool {
        tried >= self.min_tried as usize
            && failed as u64 * 10_000 > u64::from(self.failed_above_basis_points) * tried as u64
    }
}

/// An exponential ramp: `first_basis_points` (hundredths of a percent) of the sites
/// from `start` (RFC 3339), doubling every `double_every_secs`, all of them once it
/// reaches 100%.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pace {
    pub start: String,
    pub first_basis_points: u32,
    pub double_every_secs: u64,
}

#[cfg(test)]
mod abort_tests {
    use super::Abort;

    #[test]
    fn trips_above_the_share_after_enough_sites() {
        let a = Abort {
            failed_above_basis_points: 1_000,
            min_tried: 20,
        };
        assert!(!a.tripped(19, 19), "too few sites tried");
        assert!(!a.tripped(20, 2), "10% is not above 10%");
        assert!(a.tripped(20, 3));
        assert!(!a.tripped(200, 20));
        assert!(a.tripped(200, 21));
    }
}

impl Pace {
    /// The share of sites (0..=1) allowed `elapsed_secs` after the start (negative:
    /// before it, none).
    pub fn share(&self, elapsed_secs: f64) -> f64 {
        if elapsed_secs < 0.0 || self.first_basis_points == 0 || self.double_every_secs == 0 {
            return 0.0;
        }
        let doublings = elapsed_secs / self.double_every_secs as f64;
        (self.first() * doublings.exp2()).min(1.0)
    }

    /// The share of sites at the start (0..=1).
    pub fn first(&self) -> f64 {
        f64::from(self.first_basis_points) / 10_000.0
    }

    /// Seconds after the start when the share reaches `position` (0..1).
    pub fn turn_after_secs(&self, position: f64) -> f64 {
        let first = self.first();
        if position < first {
            return 0.0;
        }
        (position / first).log2() * self.double_every_secs as f64
    }
}

/// The target name of a file of a model version.
pub fn target_name(model: &str, version: &str, path: &str) -> String {
    format!("{model}/{version}/{path}")
}

/// The path, relative to the targets directory (or URL), under which a target with
/// this sha256 (lowercase hex) is stored: TUF's consistent-snapshot name.
pub fn target_file(sha256_hex: &str, name: &str) -> String {
    format!("{sha256_hex}.{name}")
}

/// For each model, the release a site of `ring` should run: the highest `seq` among the
/// versions released to a ring that reaches it.
pub fn desired<'a>(
    releases: impl IntoIterator<Item = &'a ReleaseInfo>,
    ring: Ring,
) -> Vec<&'a ReleaseInfo> {
    let mut best: std::collections::BTreeMap<&str, &ReleaseInfo> = Default::default();
    for r in releases {
        if !ring.receives(r.ring) {
            continue;
        }
        let slot = best.entry(r.model.as_str()).or_insert(r);
        if r.seq > slot.seq {
            *slot = r;
        }
    }
    best.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(model: &str, version: &str, ring: Ring, seq: u64) -> ReleaseInfo {
        ReleaseInfo {
            model: model.into(),
            version: version.into(),
            kind: "score".into(),
            ring,
            seq,
            files: vec!["manifest.toml".into()],
            variants: vec![],
            not_before: None,
            pace: None,
            abort: None,
        }
    }

    #[test]
    fn rings_reach_narrower_rings() {
        assert!(Ring::Canary.receives(Ring::Broad));
        assert!(Ring::Canary.receives(Ring::Canary));
        assert!(!Ring::Broad.receives(Ring::Early));
        assert_eq!("early".parse::<Ring>().unwrap(), Ring::Early);
        assert!("beta".parse::<Ring>().is_err());
    }

    #[test]
    fn each_ring_runs_the_newest_release_it_receives() {
        let all = [
            info("credit-lr", "1.0.0", Ring::Broad, 1),
            info("credit-lr", "2.0.0", Ring::Canary, 2),
            info("aml-risk", "1.0.0", Ring::Early, 3),
        ];
        let pick = |ring| {
            desired(&all, ring)
                .into_iter()
                .map(|r| format!("{}@{}", r.model, r.version))
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Ring::Canary), ["aml-risk@1.0.0", "credit-lr@2.0.0"]);
        assert_eq!(pick(Ring::Early), ["aml-risk@1.0.0", "credit-lr@1.0.0"]);
        assert_eq!(pick(Ring::Broad), ["credit-lr@1.0.0"]);
    }

    #[test]
    fn names_follow_consistent_snapshots() {
        assert_eq!(
            target_file("ab12", &target_name("credit-lr", "2.0.0", "model.onnx")),
            "ab12.credit-lr/2.0.0/model.onnx"
        );
    }
}
