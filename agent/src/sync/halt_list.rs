//! The fleet's halt list as model sync reads it (`coffer_release::halts`): fetched
//! beside the metadata (`BASE/halts.json`, or the bundle's copy, accepted within
//! `sync.bundle_expiry_grace` of its expiry like the bundle's metadata), checked against
//! the halt keys that the verified top-level targets authorize, its expiry and the
//! newest version this site took under those keys. A halted release is neither
//! downloaded nor activated. Once the repository authorizes halt keys, nothing is
//! activated while no current list can be read (a host that hides the list must not
//! lift a halt): the poll records `awaiting_halt_list`, and the halts of the last list
//! taken stay in force meanwhile.

use std::collections::BTreeSet;
use std::time::Duration;

use coffer_release::halts::{self, HaltKeys, HaltList, LIST_FILE, MAX_LIST_BYTES};
use coffer_release::layout::ReleaseInfo;

use super::state::{HaltSeen, OutcomeKind};
use super::tuf::Source;

/// What this poll knows of halts.
#[derive(Debug, Clone, PartialEq)]
pub enum HaltView {
    /// The repository authorizes no halt keys: nothing can be halted.
    NotUsed,
    /// A current list, verified.
    Current(HaltList),
    /// Halts are in force but no current list could be taken (why), and the releases
    /// the last list taken halted.
    Unavailable {
        why: String,
        known: BTreeSet<(String, String)>,
    },
}

impl HaltView {
    /// Why `info` must not be downloaded or activated now, if it must not, as the
    /// outcome to record.
    pub fn stops(&self, info: &ReleaseInfo) -> Option<(OutcomeKind, String)> {
        let key = (info.model.clone(), info.version.clone());
        match self {
            HaltView::Current(list) => list.find(&info.model, &info.version).map(|h| {
                (
                    OutcomeKind::Halted,
                    format!(
                        "halted by the fleet since {}: {}; neither downloaded nor activated",
                        h.at, h.reason
                    ),
                )
            }),
            HaltView::Unavailable { known, .. } if known.contains(&key) => Some((
                OutcomeKind::Halted,
                "halted by the last halt list this site took (no current list can be read now)"
                    .into(),
            )),
            HaltView::Unavailable { why, .. } => Some((
                OutcomeKind::AwaitingHaltList,
                format!(
                    "waiting for a current halt list ({why}): with halt keys authorized, nothing is activated while the list cannot be checked"
                ),
            )),
            HaltView::NotUsed if info.abort.is_some() => Some((
                OutcomeKind::AwaitingHaltList,
                "the release has abort criteria but the repository authorizes no halt keys: not activated".into(),
            )),
            HaltView::NotUsed => None,
        }
    }
}

/// Reads the list's bytes from the host or the bundle.
async fn fetch(source: &Source<'_>) -> Result<Vec<u8>, String> {
    match source {
        Source::Remote {
            base,
            tls,
            metadata_timeout,
            ..
        } => {
            let b = base.to_string();
            let b = if b.ends_with('/') { b } else { format!("{b}/") };
            let url: http::Uri = format!("{b}{LIST_FILE}")
                .parse()
                .map_err(|e| format!("halt list URL: {e}"))?;
            let timeout: Duration = *metadata_timeout;
            let reply = crate::transport::get(&url, *tls, &[], timeout, MAX_LIST_BYTES)
                .await
                .map_err(|e| e.to_string())?;
            if !reply.status.is_success() {
                return Err(format!(
                    "the host answered {} for {LIST_FILE}",
                    reply.status
                ));
            }
            Ok(reply.body.to_vec())
        }
        Source::Bundle { dir, .. } => {
            let path = dir.join(LIST_FILE);
            let file =
                super::regular::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut bytes = Vec::new();
            use std::io::Read as _;
            file.take(MAX_LIST_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(bytes)
        }
    }
}

/// The halt view for this poll; `seen` (what this site took last) is updated to the
/// list taken.
pub async fn view(
    source: &Source<'_>,
    targets: &tough::schema::Targets,
    seen: &mut HaltSeen,
) -> HaltView {
    let known = || seen.halted.iter().cloned().collect::<BTreeSet<_>>();
    let keys = match halts::authorized(targets) {
        Ok(Some(keys)) => keys,
        Ok(None) => return HaltView::NotUsed,
        Err(why) => {
            return HaltView::Unavailable {
                why,
                known: known(),
            };
        }
    };
    let grace = match source {
        Source::Bundle { grace, .. } => *grace,
        Source::Remote { .. } => Duration::ZERO,
    };
    check(fetch(source).await, &keys, grace, seen)
}

fn check(
    bytes: Result<Vec<u8>, String>,
    keys: &HaltKeys,
    grace: Duration,
    seen: &mut HaltSeen,
) -> HaltView {
    let keys_id = halts::keys_id(keys);
    // A new key set (a rotation) starts afresh: its lists are not older than anything.
    let floor = if seen.keys == keys_id {
        seen.version
    } else {
        0
    };
    let taken = bytes.and_then(|b| {
        halts::verify(&b, keys, jiff::Timestamp::now(), floor, grace).map_err(|e| e.to_string())
    });
    match taken {
        Ok(list) => {
            *seen = HaltSeen {
                keys: keys_id,
                version: list.version,
                halted: list.halted().into_iter().collect(),
            };
            HaltView::Current(list)
        }
        Err(why) => HaltView::Unavailable {
            why,
            known: seen.halted.iter().cloned().collect(),
        },
    }
}

/// What activation needs to look at the halt list again just before it activates (a
/// download can take long after the poll's first look).
#[derive(Debug, Clone)]
pub struct Recheck<'a> {
    pub targets: &'a tough::schema::Targets,
    /// What the poll took.
    pub seen: HaltSeen,
}

impl Recheck<'_> {
    /// Why `info` must not be activated now, if it must not.
    pub async fn stops(
        &self,
        source: &Source<'_>,
        info: &ReleaseInfo,
    ) -> Option<(OutcomeKind, String)> {
        let mut seen = self.seen.clone();
        view(source, self.targets, &mut seen).await.stops(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(abort: bool) -> ReleaseInfo {
        serde_json::from_value(serde_json::json!({
            "model": "m", "version": "2", "kind": "score", "ring": "canary", "seq": 2,
            "files": ["manifest.toml"],
            "abort": if abort { serde_json::json!({"failed_above_basis_points": 1000, "min_tried": 20}) } else { serde_json::Value::Null },
        }))
        .unwrap()
    }

    #[test]
    fn halts_and_missing_lists_stop_what_they_should() {
        let list = HaltList {
            kind: halts::LIST_TYPE.into(),
            version: 4,
            expires: "2099-01-01T00:00:00Z".into(),
            halts: vec![halts::Halt {
                model: "m".into(),
                version: "2".into(),
                reason: "gates".into(),
                at: "2026-12-07T10:00:00Z".into(),
            }],
            lifted: vec![],
        };
        let current = HaltView::Current(list.clone());
        let (kind, why) = current.stops(&info(false)).unwrap();
        assert_eq!(kind, OutcomeKind::Halted);
        assert!(why.contains("halted by the fleet"), "{why}");
        let mut other = info(false);
        other.version = "3".into();
        assert_eq!(current.stops(&other), None);
        // No current list: the last list's halts stay; everything else waits.
        let gone = HaltView::Unavailable {
            why: "the host answered 404".into(),
            known: [("m".to_string(), "2".to_string())].into(),
        };
        assert_eq!(gone.stops(&info(false)).unwrap().0, OutcomeKind::Halted);
        let (kind, why) = gone.stops(&other).unwrap();
        assert_eq!(kind, OutcomeKind::AwaitingHaltList);
        assert!(why.contains("404"), "{why}");
        assert!(HaltView::NotUsed.stops(&info(true)).is_some());
        assert_eq!(HaltView::NotUsed.stops(&info(false)), None);
        // A failed fetch leaves what was seen as it was.
        let keys = HaltKeys {
            keys: vec![],
            threshold: 1,
        };
        let mut seen = HaltSeen {
            keys: halts::keys_id(&keys),
            version: 3,
            halted: vec![],
        };
        let before = seen.clone();
        assert!(matches!(
            check(Err("x".into()), &keys, Duration::ZERO, &mut seen),
            HaltView::Unavailable { .. }
        ));
        assert_eq!(seen, before);
    }
}
