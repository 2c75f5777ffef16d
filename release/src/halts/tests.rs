//! What a halt list signed by a halt key can and cannot say, checked as an agent
//! checks it.

use std::path::Path;

use tough::key_source::{KeySource as _, LocalKeySource};
use tough::schema::Signature;

use super::*;
use crate::keys;

const NO_GRACE: std::time::Duration = std::time::Duration::ZERO;

fn list(version: u64, expires: jiff::Timestamp, halts: &[(&str, &str)]) -> HaltList {
    HaltList {
        kind: LIST_TYPE.into(),
        version,
        expires: expires.to_string(),
        lifted: Vec::new(),
        halts: halts
            .iter()
            .map(|(m, v)| Halt {
                model: m.to_string(),
                version: v.to_string(),
                reason: "gates failing".into(),
                at: "2026-12-07T10:00:00Z".into(),
            })
            .collect(),
    }
}

async fn sign(list: &HaltList, key: &Path) -> Vec<u8> {
    let signer = LocalKeySource {
        path: key.to_path_buf(),
    }
    .as_sign()
    .await
    .unwrap();
    let sig = signer
        .sign(&canonical(list).unwrap(), &crate::common::rng())
        .await
        .unwrap();
    let signed = SignedHaltList {
        signed: list.clone(),
        signatures: vec![Signature {
            keyid: signer.tuf_key().key_id().unwrap(),
            sig: sig.into(),
        }],
    };
    serde_json::to_vec(&signed).unwrap()
}

fn later(hours: i64) -> jiff::Timestamp {
    jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours)
}

#[tokio::test]
async fn only_a_current_list_signed_by_an_authorized_key_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let halt = keys::generate_halt(dir.path()).unwrap();
    let stranger = keys::generate_halt(&dir.path().join("other")).unwrap();
    let authorized = HaltKeys {
        keys: vec![halt.key.clone()],
        threshold: 1,
    };
    let now = jiff::Timestamp::now();
    let good = list(3, later(24), &[("credit-lr", "2.0.0")]);
    let taken = verify(
        &sign(&good, &halt.path).await,
        &authorized,
        now,
        2,
        NO_GRACE,
    )
    .unwrap();
    assert!(
        taken
            .halted()
            .contains(&("credit-lr".into(), "2.0.0".into()))
    );

    // Another key, however well formed its list, is not a halt key.
    let forged = sign(&good, &stranger.path).await;
    assert_eq!(
        verify(&forged, &authorized, now, 0, NO_GRACE),
        Err(HaltError::Threshold {
            valid: 0,
            threshold: 1
        })
    );
    // A list changed after signing (a halt lifted on the way) does not verify.
    let mut bytes: serde_json::Value =
        serde_json::from_slice(&sign(&good, &halt.path).await).unwrap();
    bytes["signed"]["halts"] = serde_json::json!([]);
    assert!(matches!(
        verify(
            &serde_json::to_vec(&bytes).unwrap(),
            &authorized,
            now,
            0,
            NO_GRACE
        ),
        Err(HaltError::Threshold { .. })
    ));
    // Replaying an older list (one without the halt) is refused.
    assert_eq!(
        verify(
            &sign(&good, &halt.path).await,
            &authorized,
            now,
            4,
            NO_GRACE
        ),
        Err(HaltError::Rollback { got: 3, seen: 4 })
    );
    // An expired list is refused: a blocked host cannot keep an old "no halts" alive.
    let old = list(5, later(-1), &[]);
    assert!(matches!(
        verify(&sign(&old, &halt.path).await, &authorized, now, 0, NO_GRACE),
        Err(HaltError::Expired(_))
    ));
    // Within a bundle's grace, the expired list still counts.
    let grace = std::time::Duration::from_secs(7_200);
    assert!(verify(&sign(&old, &halt.path).await, &authorized, now, 0, grace).is_ok());
    // A version far ahead of the clock would block every later list: refused.
    let ahead = list(u64::MAX, later(24), &[]);
    assert_eq!(
        verify(
            &sign(&ahead, &halt.path).await,
            &authorized,
            now,
            0,
            NO_GRACE
        ),
        Err(HaltError::FromTheFuture { got: u64::MAX })
    );
    // No keys authorized: nothing is taken.
    let none = HaltKeys {
        keys: vec![],
        threshold: 1,
    };
    assert_eq!(
        verify(&sign(&good, &halt.path).await, &none, now, 0, NO_GRACE),
        Err(HaltError::NoKeys)
    );
}

/// The halt key signs a list; the list's format has no room for anything but halts:
/// a "release", a target or a key smuggled in is refused, signature or not.
#[tokio::test]
async fn a_halt_key_cannot_say_anything_but_halts() {
    let dir = tempfile::tempdir().unwrap();
    let halt = keys::generate_halt(dir.path()).unwrap();
    let authorized = HaltKeys {
        keys: vec![halt.key.clone()],
        threshold: 1,
    };
    let good = list(1, later(24), &[]);
    let signed: serde_json::Value = serde_json::from_slice(&sign(&good, &halt.path).await).unwrap();
    for (path, value) in [
        (
            "releases",
            serde_json::json!([{"model": "credit-lr", "version": "9.9.9"}]),
        ),
        (
            "targets",
            serde_json::json!({"credit-lr/9.9.9/manifest.toml": {}}),
        ),
        ("keys", serde_json::json!([])),
    ] {
        let mut smuggled = signed.clone();
        smuggled["signed"][path] = value;
        let err = verify(
            &serde_json::to_vec(&smuggled).unwrap(),
            &authorized,
            jiff::Timestamp::now(),
            0,
            NO_GRACE,
        )
        .unwrap_err();
        assert!(matches!(err, HaltError::Malformed(_)), "{path}: {err}");
    }
    let mut typed = signed.clone();
    typed["signed"]["_type"] = "targets".into();
    assert!(matches!(
        verify(
            &serde_json::to_vec(&typed).unwrap(),
            &authorized,
            jiff::Timestamp::now(),
            0,
            NO_GRACE
        ),
        Err(HaltError::Malformed(_))
    ));
    let huge = vec![b' '; MAX_LIST_BYTES + 1];
    assert!(matches!(
        verify(&huge, &authorized, jiff::Timestamp::now(), 0, NO_GRACE),
        Err(HaltError::Malformed(_))
    ));
}
