//! Site reports and the fleet-status view end to end: 200 agents (each with its own
//! site id, ring, sync state and trusted metadata, all asking one real cofferd what it
//! serves) report to a real Prometheus; `coffer_fleet::status` reads every site back,
//! per release and ring; a state change replaces its series at once (staleness marker)
//! and reaches OTLP as a transition; a site that stopped reporting shows as silent.
//! Without a `prometheus` binary the test says so and passes locally, but fails under CI.

use std::path::Path;
use std::time::Instant;

use coffer_agent::AgentConfig;
use coffer_agent::site_report::{Reporter, collect};
use coffer_agent::sync::state::{OutcomeKind, PollHealth, SyncState};
use coffer_fleet::site::{ReleaseState, SyncState as Poll};
use coffer_fleet::status::{FleetStatus, Options};
use futures_util::StreamExt as _;

use crate::common::{Setup, fixture};
use crate::prometheus::{Prometheus, installed};
use crate::telemetry::otlp_receiver;

const SITES: usize = 200;
const CANARY: usize = 20;
const EARLY: usize = 60;

fn ring(i: usize) -> &'static str {
    match i {
        _ if i < CANARY => "canary",
        _ if i < CANARY + EARLY => "early",
        _ => "broad",
    }
}

/// Site `i`'s agent: its own state directory, with the outcome its sync recorded for
/// credit-lr 2.0.0 and the metadata it trusts.
pub(crate) fn site(root: &Path, i: usize, socket: &Path, prom: u16, otlp: u16) -> AgentConfig {
    let state_dir = root.join(format!("site-{i:03}"));
    let sync = state_dir.join("sync");
    std::fs::create_dir_all(sync.join("trusted")).unwrap();
    let mut state = SyncState::default();
    let kind = match i {
        // 3 of 20 canary sites failed their gates.
        0..=2 => OutcomeKind::GateFailed,
        3..CANARY => OutcomeKind::Active,
        _ => OutcomeKind::AwaitingWindow,
    };
    state.record("credit-lr", "2.0.0", 2, kind, "test".into());
    if i == 7 {
        state.last_poll = Some(PollHealth {
            state: Poll::Refusing,
            reason: "expired".into(),
        });
        state.consecutive_failures = 4;
    }
    state.save(&sync).unwrap();
    // Site 9's metadata expires in 2 days, everyone else's in 30.
    let days = if i == 9 { 2 } else { 30 };
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days);
    let ts = serde_json::json!({"signed": {"expires": expires.to_string()}});
    std::fs::write(sync.join("trusted/snapshot.json"), ts.to_string()).unwrap();
    AgentConfig::parse(&format!(
        "site_id = \"branch-{i:03}\"\nallow_insecure_http = true\nstate_dir = \"{}\"\n\
         [daemon]\nadmin_socket = \"{}\"\n[sync]\nring = \"{}\"\npoll_interval = \"1m\"\n\
         [telemetry]\nremote_write_url = \"http://127.0.0.1:{prom}/api/v1/write\"\n\
         otlp_logs_url = \"http://127.0.0.1:{otlp}/v1/logs\"\ntimeout = \"10s\"\n",
        state_dir.display(),
        socket.display(),
        ring(i)
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sites_report_and_fleet_status_sees_each_one() {
    let Some(binary) = installed("the fleet-status test") else {
        return;
    };
    let mut setup = Setup::new();
    setup.scoring_models = vec![fixture("credit-lr")];
    let daemon = setup.start().await;
    let prometheus = Prometheus::under(&binary, setup.dir(), "").await;
    let port = prometheus.port;
    let (otlp_port, otlp_seen) = otlp_receiver().await;
    let root = setup.dir().join("sites");
    let configs: Vec<AgentConfig> = (0..SITES)
        .map(|i| site(&root, i, &setup.socket(), port, otlp_port))
        .collect();

    // Every site reports once, 4 at a time: each report asks cofferd twice, and the one
    // cofferd bounds its admin connections per uid (a real site has its own cofferd).
    let started = Instant::now();
    let mut reporters: Vec<Reporter<'_>> = configs.iter().map(|c| Reporter::new(c, None)).collect();
    let results: Vec<_> = futures_util::stream::iter(reporters.iter_mut())
        .map(|r| async move { r.report_once().await })
        .buffer_unordered(4)
        .collect()
        .await;
    let took = started.elapsed();
    let series: usize = results
        .into_iter()
        .map(|r| r.expect("report delivered").series)
        .sum();
    eprintln!(
        "{SITES} site reports in {took:.2?}: {:.0} reports/s, {:.0} samples/s into Prometheus, {:.1} series per site",
        SITES as f64 / took.as_secs_f64(),
        series as f64 / took.as_secs_f64(),
        series as f64 / SITES as f64
    );

    let client = prometheus.client();
    let per_site = client
        .query("count by (site) ({__name__=~\"coffer_site_.*\", site=\"branch-000\"})")
        .await
        .unwrap();
    assert_eq!(per_site.len(), 1);
    let per_site = per_site[0].value;
    assert!(
        (9.0..=12.0).contains(&per_site),
        "{per_site} series per site"
    );

    let view = FleetStatus::fetch(&client, &Options::default())
        .await
        .unwrap();
    assert_eq!(view.sites, SITES);
    let rows = view.release("credit-lr", "2.0.0");
    let row = |r: &str| *rows.iter().find(|row| row.ring == r).unwrap();
    let canary = row("canary");
    assert_eq!(canary.sites, CANARY);
    assert_eq!(canary.count(ReleaseState::GateFailed), 3);
    assert_eq!(canary.count(ReleaseState::Active), CANARY - 3);
    assert_eq!((canary.tried(), canary.failed()), (CANARY, 3));
    // All sites ask the one cofferd, which serves the fixture's version.
    assert_eq!(canary.on_it + canary.previous, CANARY);
    assert_eq!(row("early").count(ReleaseState::AwaitingWindow), EARLY);
    assert_eq!(
        row("broad").count(ReleaseState::AwaitingWindow),
        SITES - CANARY - EARLY
    );
    assert_eq!(view.refusing.len(), 1);
    assert_eq!(view.refusing[0].site, "branch-007");
    assert_eq!(view.refusing[0].detail, "metadata refused: expired");
    assert_eq!(view.expiring.len(), 1);
    assert_eq!(view.expiring[0].site, "branch-009");
    assert!(view.silent.is_empty(), "{:?}", view.silent);
    let text = view.render(20);
    assert!(text.contains("200 sites, 0 silent, 1 refusing"), "{text}");

    // Site 0 rolls back its next try: its gate_failed series ends at once.
    let sync0 = root.join("site-000/sync");
    let mut state = SyncState::load(&sync0);
    state.record("credit-lr", "2.0.0", 2, OutcomeKind::RolledBack, "x".into());
    state.save(&sync0).unwrap();
    let r = reporters[0].report_once().await.unwrap();
    assert_eq!((r.ended, r.transitions), (1, 1));
    let states = client
        .query("coffer_site_release{site=\"branch-000\"}")
        .await
        .unwrap();
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0].label("state"), "rolled_back");
    let logs: Vec<String> = otlp_seen
        .lock()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("\"rolled_back\"") && l.contains("\"gate_failed\"")),
        "no transition event for branch-000"
    );

    // A site whose last report is 20 minutes old (3 poll intervals = 3 minutes) is
    // silent; one that never reported is not in the view at all.
    let quiet = site(&root, 500, &setup.socket(), port, otlp_port);
    let mut old = collect(&quiet).await;
    old.at_ms -= 20 * 60 * 1000;
    Reporter::new(&quiet, None).send(&old).await.unwrap();
    let view = FleetStatus::fetch(&client, &Options::default())
        .await
        .unwrap();
    assert_eq!(view.sites, SITES + 1);
    assert_eq!(view.silent.len(), 1, "{:?}", view.silent);
    assert_eq!(view.silent[0].site, "branch-500");
    assert!(
        view.silent[0].detail.contains("20 poll intervals"),
        "{:?}",
        view.silent
    );

    prometheus.kill();
    daemon.stop();
}
