//! Change windows end to end (nginx, coffer-agent's sync, the real cofferd): outside
//! `sync.change_window` a release is downloaded and imported but not activated, polls
//! keep it waiting without downloading it again, and inside the window it goes live; a
//! release scheduled with a not-before time waits for it even inside the window. The
//! windows are set around the real time in the site's configured zone (UTC here). A
//! paced release waits for the site's turn, which comes from its `site_id`.

use coffer_agent::sync::state::{OutcomeKind, SyncState};
use coffer_agent::window::pace_position;
use coffer_release::layout::{Pace, Ring};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};

use crate::fleet::{Fleet, only, version_bytes};

/// Every day from `from` to `to` hours after now (UTC), as `sync.change_window` lines.
fn window(from: i64, to: i64) -> String {
    let now = Timestamp::now().to_zoned(TimeZone::UTC);
    let at = |h: i64| {
        now.checked_add(SignedDuration::from_hours(h))
            .unwrap()
            .strftime("%H:%M")
            .to_string()
    };
    format!(
        "change_window = \"Mon-Sun {}-{}\"\ntime_zone = \"UTC\"\n",
        at(from),
        at(to)
    )
}

#[tokio::test]
async fn activation_waits_for_the_change_window_and_the_release_time() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    let v2 = f.version("2.0.0");
    f.add(&v2, Ring::Broad);
    f.publish().await;

    // Outside the window: fetched and imported, not activated.
    let outside = f.agent("broad", &window(2, 3));
    let steps = f.sync(&outside).await.unwrap();
    let step = only(&steps);
    assert_eq!(step.kind, OutcomeKind::AwaitingWindow, "{step:?}");
    assert!(step.detail.contains("change window Mon-Sun"), "{step:?}");
    assert_eq!(step.bytes, version_bytes(&v2));
    assert!(f.installed().await.contains(&"2.0.0".to_string()));
    assert_eq!(f.serving().await, "1.0.0");
    // The next poll looks again, without downloading it again.
    let steps = f.sync(&outside).await.unwrap();
    assert_eq!(
        (only(&steps).kind, only(&steps).bytes),
        (OutcomeKind::AwaitingWindow, 0)
    );
    let state = SyncState::load(&f.s.dir().join("agent/sync"));
    assert_eq!(state.models["credit-lr"].kind, OutcomeKind::AwaitingWindow);

    // The same site inside its window: it goes live.
    let inside = f.agent("broad", &window(-1, 1));
    let steps = f.sync(&inside).await.unwrap();
    assert_eq!(only(&steps).kind, OutcomeKind::Active, "{steps:?}");
    assert_eq!(f.serving().await, "2.0.0");

    // A release scheduled an hour ahead waits even inside the window.
    let v3 = f.version("3.0.0");
    f.add(&v3, Ring::Broad);
    let later = Timestamp::now()
        .checked_add(SignedDuration::from_hours(1))
        .unwrap();
    let info = f.repo.schedule("credit-lr", "3.0.0", Some(later)).unwrap();
    assert_eq!(info.not_before, Some(later.to_string()));
    f.publish().await;
    let steps = f.sync(&inside).await.unwrap();
    let step = only(&steps);
    assert_eq!(step.kind, OutcomeKind::AwaitingWindow, "{step:?}");
    assert!(
        step.detail.contains("not to be activated before"),
        "{step:?}"
    );
    assert_eq!(f.serving().await, "2.0.0");
    // Cleared, it goes at the next poll.
    f.repo.schedule("credit-lr", "3.0.0", None).unwrap();
    f.publish().await;
    let steps = f.sync(&inside).await.unwrap();
    assert_eq!(
        (only(&steps).version.as_str(), only(&steps).kind),
        ("3.0.0", OutcomeKind::Active)
    );
    assert_eq!(f.serving().await, "3.0.0");
}

#[tokio::test]
async fn a_paced_release_waits_for_the_sites_turn() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    let v2 = f.version("2.0.0");
    f.add(&v2, Ring::Broad);
    // A site whose place in line is past the first 2%.
    let site = (0..)
        .map(|i| format!("branch-{i:03}"))
        .find(|s| pace_position(s, "credit-lr", "2.0.0") > 0.02)
        .unwrap();
    let pace = |first_basis_points| Pace {
        start: Timestamp::now().to_string(),
        first_basis_points,
        double_every_secs: 1_000 * 3600,
    };
    f.repo.pace("credit-lr", "2.0.0", Some(pace(100))).unwrap();
    f.publish().await;
    let mut cfg = f.agent("broad", "");
    cfg.site_id = site;
    let steps = f.sync(&cfg).await.unwrap();
    let step = only(&steps);
    assert_eq!(step.kind, OutcomeKind::AwaitingWindow, "{step:?}");
    assert!(
        step.detail.contains("paced rollout at 1.00% of the sites"),
        "{step:?}"
    );
    assert_eq!(f.serving().await, "1.0.0");
    // The admin opens it to every site: the next poll activates it.
    f.repo
        .pace("credit-lr", "2.0.0", Some(pace(10_000)))
        .unwrap();
    f.publish().await;
    let steps = f.sync(&cfg).await.unwrap();
    assert_eq!(only(&steps).kind, OutcomeKind::Active, "{steps:?}");
    assert_eq!(f.serving().await, "2.0.0");
}
