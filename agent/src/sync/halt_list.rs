//! The fleet's halt list as model sync reads it (`coffer_release::halts`): fetched
//! beside the metadata (`BASE/halts.json`, or the bundle's copy), checked against the
//! halt keys that the verified top-level targets authorize, its expiry and the newest
//! version this site took before. A halted release is neither downloaded nor activated.
//! Once the repository authorizes halt keys, nothing is activated while no current list
//! can be read (a host that hides the list must not lift a halt); a release with abort
//! criteria in a repository without halt keys is never activated.

use std::time::Duration;

use coffer_release::halts::{self, HaltKeys, HaltList, LIST_FILE, MAX_LIST_BYTES};
use coffer_release::layout::ReleaseInfo;

use super::tuf::Source;

/// What this poll knows of halts.
#[derive(Debug, Clone, PartialEq)]
pub enum HaltView {
    /// The repository authorizes no halt keys: nothing can be halted.
    NotUsed,
    /// A current list, verified.
    Current(HaltList),
    /// Keys are authorized but no current list could be taken (why).
    Unavailable(String),
}

impl HaltView {
    /// Why `info` must not be downloaded or activated now, if it must not.
    pub fn stops(&self, info: &ReleaseInfo) -> Option<String> {
        match self {
            HaltView::Current(list) => list.find(&info.model, &info.version).map(|h| {
                format!(
                    "halted by the fleet since {}: {}; neither downloaded nor activated",
                    h.at, h.reason
                )
            }),
            // Whoever controls the host could otherwise lift a halt by hiding the list.
            HaltView::Unavailable(why) => Some(format!(
                "waiting for a current halt list ({why}): with halt keys authorized, nothing is activated while the list cannot be checked"
            )),
            HaltView::NotUsed if info.abort.is_some() => Some(
                "the release has abort criteria but the repository authorizes no halt keys: not activated".into(),
            ),
            _ => None,
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
                return Err(format!("the host answered {}", reply.status));
            }
            Ok(reply.body.to_vec())
        }
        Source::Bundle { dir, .. } => {
            let path = dir.join(LIST_FILE);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() > MAX_LIST_BYTES {
                return Err(format!(
                    "{} is larger than {MAX_LIST_BYTES} bytes",
                    path.display()
                ));
            }
            Ok(bytes)
        }
    }
}

/// The halt view for this poll; `seen` (the newest list version taken before) is
/// raised to the version taken.
pub async fn view(
    source: &Source<'_>,
    targets: &tough::schema::Targets,
    seen: &mut u64,
) -> HaltView {
    let Some(keys) = halts::authorized(targets) else {
        return HaltView::NotUsed;
    };
    check(fetch(source).await, &keys, seen)
}

fn check(bytes: Result<Vec<u8>, String>, keys: &HaltKeys, seen: &mut u64) -> HaltView {
    let bytes = match bytes {
        Ok(b) => b,
        Err(why) => return HaltView::Unavailable(why),
    };
    match halts::verify(&bytes, keys, jiff::Timestamp::now(), *seen) {
        Ok(list) => {
            *seen = list.version;
            HaltView::Current(list)
        }
        Err(e) => HaltView::Unavailable(e.to_string()),
    }
}

/// What activation needs to look at the halt list again just before it activates (a
/// download can take long after the poll's first look).
#[derive(Debug, Clone, Copy)]
pub struct Recheck<'a> {
    pub targets: &'a tough::schema::Targets,
    /// The version the poll took.
    pub seen: u64,
}

impl Recheck<'_> {
    /// Why `info` must not be activated now, if it must not.
    pub async fn stops(&self, source: &Source<'_>, info: &ReleaseInfo) -> Option<String> {
        let mut seen = self.seen;
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
        };
        let current = HaltView::Current(list.clone());
        assert!(
            current
                .stops(&info(false))
                .unwrap()
                .contains("halted by the fleet")
        );
        let mut other = info(false);
        other.version = "3".into();
        assert_eq!(current.stops(&other), None);
        let gone = HaltView::Unavailable("the host answered 404".into());
        assert!(gone.stops(&info(false)).unwrap().contains("404"));
        assert!(gone.stops(&info(true)).unwrap().contains("404"));
        assert!(HaltView::NotUsed.stops(&info(true)).is_some());
        assert_eq!(HaltView::NotUsed.stops(&info(false)), None);
        let keys = HaltKeys {
            keys: vec![],
            threshold: 1,
        };
        let mut seen = 3;
        assert!(matches!(
            check(Err("x".into()), &keys, &mut seen),
            HaltView::Unavailable(_)
        ));
        assert_eq!(seen, 3);
    }
}
