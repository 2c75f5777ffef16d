//! A fleet of 200 agents end to end: each with its own site id, state and polling loop
//! (`coffer_agent::sync::run` and `site_report::run`, in this process), syncing from
//! nginx and reporting to a real Prometheus. The 20 canary sites each have their own
//! cofferd; 3 of them have a (scripted) GPU, so they pick the release's GPU variant,
//! whose weights are broken, and its evaluation gate fails there: 15% of the canary
//! ring, under "halt above 10% after 20 sites". `coffer-release watch` (its rounds, in
//! this process) halts the release within 2 poll intervals; the admin promotes it to
//! every ring anyway, and none of the 180 later-ring sites (on 3 shared cofferds) imports
//! it; every site's state shows in the fleet-status view within one poll plus one
//! delivery interval. Prints the figures: reports/s into Prometheus and series per site.
//! (60 agents on one cofferd exceed its admin socket's 16 connections per uid, which
//! one agent per cofferd never does: a poll that loses its connection is retried after
//! a short backoff, as configured here.)
//! Without `prometheus` or `nginx` the test says so and passes locally, but fails under
//! CI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_agent::AgentConfig;
use coffer_agent::sync::state::{OutcomeKind, SyncState};
use coffer_fleet::site::ReleaseState;
use coffer_fleet::status::{FleetStatus, Options};
use coffer_release::halts;
use coffer_release::layout::{Abort, Ring};
use coffer_release::watch;

use crate::common::{Daemon, Setup, fixture};
use crate::fleet::Fleet;
use crate::prometheus::{Prometheus, installed};

const CANARY: usize = 20;
const LATER: usize = 180;
const GPU_SITES: usize = 3;
const POLL: Duration = Duration::from_secs(2);
const REPORT: Duration = Duration::from_secs(1);
/// Later-ring sites report less often: 180 of them share 3 cofferds here.
const REPORT_LATER: Duration = Duration::from_secs(3);
const SHARED: usize = 3;

/// The model file's float weights negated: same graph and size, another function.
fn break_weights(path: &std::path::Path) {
    use prost::Message as _;
    let mut model = tract_onnx::pb::ModelProto::decode(&*std::fs::read(path).unwrap()).unwrap();
    let mut changed = 0;
    for init in &mut model.graph.as_mut().unwrap().initializer {
        if !init.float_data.is_empty() {
            init.float_data.iter_mut().for_each(|f| *f = -*f - 1.0);
            changed += 1;
        } else if init.data_type == 1 && !init.raw_data.is_empty() {
            for c in init.raw_data.chunks_exact_mut(4) {
                let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                c.copy_from_slice(&(-f - 1.0).to_le_bytes());
            }
            changed += 1;
        }
    }
    assert!(changed >= 1, "the model has weights to break");
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

/// A canary site's own cofferd; the first `GPU_SITES` have a GPU with 80 GiB free.
async fn canary_daemon(i: usize) -> (Setup, Daemon) {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    if i < GPU_SITES {
        let timeline = s.dir().join("timeline.toml");
        std::fs::write(
            &timeline,
            "[[gpus]]\nname = \"NVIDIA L40S\"\n[[steps]]\nmemory_total_mib = 81920\nmemory_used_mib = 0\n",
        )
        .unwrap();
        s.gpu_extra = format!(
            "interval = \"200ms\"\nsimulate = \"{}\"\n",
            timeline.display()
        );
    }
    let d = s.start().await;
    (s, d)
}

fn agent(
    f: &Fleet,
    site: &str,
    ring: &str,
    socket: &std::path::Path,
    prom: u16,
    report: Duration,
) -> AgentConfig {
    AgentConfig::parse(&format!(
        "site_id = \"{site}\"\nallow_insecure_http = true\nstate_dir = \"{state}\"\n\
         [daemon]\nadmin_socket = \"{socket}\"\n[sync]\n\
         repository_url = \"{url}\"\ntrusted_root = \"{root}\"\nca_bundle = \"{ca}\"\n\
         ring = \"{ring}\"\npoll_interval = \"{poll}s\"\njitter = \"500ms\"\n\
         health_gate = \"1s\"\nhealth_interval = \"200ms\"\ntimeout = \"20s\"\n\
         backoff_min = \"1s\"\nbackoff_max = \"2s\"\n\
         [telemetry]\nremote_write_url = \"http://127.0.0.1:{prom}/api/v1/write\"\n\
         interval = \"{report}s\"\ntimeout = \"10s\"\n",
        state = f.s.dir().join("sites").join(site).display(),
        socket = socket.display(),
        url = f.nginx.url(),
        root = f.repo.metadata().join("1.root.json").display(),
        ca = f.s.pki.ca_path("server").display(),
        poll = POLL.as_secs(),
        report = report.as_secs(),
    ))
    .unwrap()
}

fn outcome(cfg: &AgentConfig) -> Option<OutcomeKind> {
    SyncState::load(&cfg.state_dir.join("sync"))
        .models
        .get("credit-lr")
        .filter(|o| o.version == "2.0.0")
        .map(|o| o.kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_halt_a_failing_release_before_later_rings_take_it() {
    let Some(binary) = installed("the fleet scale test") else {
        return;
    };
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    let prometheus = Prometheus::under(&binary, f.s.dir(), "").await;
    let port = prometheus.port;
    let prom = prometheus.client();
    let halt_keys = f.s.dir().join("halt-keys");
    let valid = Duration::from_secs(3600);
    let opts = Options::default();

    // credit-lr 2.0.0 to the canary ring, its GPU variant broken, with abort criteria.
    let dir = crate::models::with_variants(&f.s.dir().join("versions"), "2.0.0");
    break_weights(&dir.join("model.onnx"));
    crate::models::write_manifest(&dir, &crate::models::manifest_of(&dir));
    f.add(&dir, Ring::Canary);
    halts::authorize_keys(&f.repo, &halt_keys, false).unwrap();
    let criteria = Abort {
        failed_above_basis_points: 1_000,
        min_tried: CANARY as u32,
    };
    f.repo
        .abort_when("credit-lr", "2.0.0", Some(criteria))
        .unwrap();
    f.publish().await;
    watch::round(&f.repo, &halt_keys, &prom, &opts, valid)
        .await
        .unwrap();

    // 200 agents: 20 canary sites with their own cofferd, 180 later-ring sites on three
    // (the fleet's and two more).
    let canary_daemons = futures_util::future::join_all((0..CANARY).map(canary_daemon)).await;
    let shared_daemons =
        futures_util::future::join_all((GPU_SITES..GPU_SITES + SHARED - 1).map(canary_daemon))
            .await;
    let mut shared_sockets = vec![f.s.socket()];
    shared_sockets.extend(shared_daemons.iter().map(|(s, _)| s.socket()));
    let mut configs = Vec::new();
    for (i, (s, _)) in canary_daemons.iter().enumerate() {
        configs.push(agent(
            &f,
            &format!("canary-{i:02}"),
            "canary",
            &s.socket(),
            port,
            REPORT,
        ));
    }
    for i in 0..LATER {
        let ring = if i < 60 { "early" } else { "broad" };
        configs.push(agent(
            &f,
            &format!("{ring}-{i:03}"),
            ring,
            &shared_sockets[i % SHARED],
            port,
            REPORT_LATER,
        ));
    }
    let configs: Vec<Arc<AgentConfig>> = configs.into_iter().map(Arc::new).collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tls = f.tls();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for cfg in &configs {
        let polled = Arc::new(tokio::sync::Notify::new());
        for job in 0..2 {
            let cfg = Arc::clone(cfg);
            let polled = Arc::clone(&polled);
            let tls = tls.clone();
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if job == 0 {
                    coffer_agent::sync::run(&cfg, Some(&tls), Some(&polled), stop).await;
                } else {
                    coffer_agent::site_report::run(&cfg, None, &polled, stop).await;
                }
            }));
        }
    }

    // The canary sites try it; the watch halts it within 2 poll intervals of the last
    // canary outcome.
    let deadline = started + Duration::from_secs(120);
    let mut tried_at = None;
    let mut halted_at = None;
    while halted_at.is_none() {
        assert!(Instant::now() < deadline, "not halted in time");
        if tried_at.is_none()
            && configs[..CANARY].iter().all(|c| {
                matches!(
                    outcome(c),
                    Some(OutcomeKind::Active | OutcomeKind::GateFailed)
                )
            })
        {
            tried_at = Some(Instant::now());
        }
        let round = watch::round(&f.repo, &halt_keys, &prom, &opts, valid)
            .await
            .unwrap();
        if round.checked[0].halted_now {
            assert_eq!(
                (round.checked[0].tried, round.checked[0].failed),
                (CANARY, GPU_SITES),
                "{round:?}"
            );
            halted_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let failed: Vec<_> = configs[..CANARY]
        .iter()
        .filter(|c| outcome(c) == Some(OutcomeKind::GateFailed))
        .map(|c| c.site_id.clone())
        .collect();
    assert_eq!(failed.len(), GPU_SITES, "{failed:?}");
    // (Outcomes that landed during the halting round count from the halt.)
    let tried_at = tried_at.unwrap_or(halted_at.unwrap());
    let to_halt = halted_at.unwrap() - tried_at;
    eprintln!("halted {to_halt:.2?} after the last canary outcome (poll interval {POLL:?})");
    assert!(
        to_halt <= 2 * POLL,
        "halted {to_halt:?} after the last canary outcome"
    );

    // Promoted to every ring all the same: no later-ring site imports it.
    f.repo.promote("credit-lr", "2.0.0", Ring::Broad).unwrap();
    f.publish().await;
    let promoted = Instant::now();
    let later = &configs[CANARY..];
    let deadline = promoted + 3 * POLL + Duration::from_secs(30);
    loop {
        let halted = later
            .iter()
            .filter(|c| outcome(c) == Some(OutcomeKind::Halted))
            .count();
        if halted == LATER {
            break;
        }
        if Instant::now() >= deadline {
            let other: Vec<_> = later
                .iter()
                .filter(|c| outcome(c) != Some(OutcomeKind::Halted))
                .take(5)
                .map(|c| {
                    let st = SyncState::load(&c.state_dir.join("sync"));
                    format!(
                        "{}: {:?} {:?} {:?}",
                        c.site_id,
                        st.models.get("credit-lr"),
                        st.last_error,
                        st.consecutive_failures
                    )
                })
                .collect();
            panic!("{halted} of {LATER} later-ring sites halted it: {other:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "every later-ring site saw the halt {:.2?} after the promotion",
        promoted.elapsed()
    );
    for socket in &shared_sockets {
        let models = coffer_agent::sync::daemon::models(socket, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            models
                .iter()
                .all(|m| m.versions.iter().all(|(v, _)| v != "2.0.0")),
            "a later-ring cofferd has 2.0.0: {models:?}"
        );
    }
    assert!(
        later
            .iter()
            .all(|c| !c.state_dir.join("sync/downloads/credit-lr/2.0.0").exists())
    );

    // Every site's state in the fleet-status view within one poll plus one delivery
    // (plus a margin for this shared 2-core machine).
    let settled = Instant::now();
    let deadline = settled + POLL + REPORT_LATER + Duration::from_secs(5);
    let view = loop {
        let view = FleetStatus::fetch(&prom, &opts).await.unwrap();
        let halted: usize = view
            .release("credit-lr", "2.0.0")
            .iter()
            .map(|r| r.count(ReleaseState::Halted))
            .sum();
        if view.sites == CANARY + LATER && halted == LATER {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "fleet-status: {} sites, {halted} halted\n{}",
            view.sites,
            view.render(5)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "fleet-status showed every site's state {:.2?} after the last site's poll",
        settled.elapsed()
    );
    eprint!("{}", view.render(5));
    let canary_row = view
        .release("credit-lr", "2.0.0")
        .into_iter()
        .find(|r| r.ring == "canary")
        .unwrap();
    assert_eq!(canary_row.count(ReleaseState::GateFailed), GPU_SITES);
    assert_eq!(canary_row.count(ReleaseState::Active), CANARY - GPU_SITES);

    // The figures: samples per report and reports per second into Prometheus.
    let series = prom
        .query("count({__name__=~\"coffer_site_.*\"})")
        .await
        .unwrap()[0]
        .value;
    let per_site = series / (CANARY + LATER) as f64;
    eprintln!(
        "{} sites: {series} site series ({per_site:.1} per site); {:.0} reports/s into Prometheus (canary sites every {REPORT:?}, the others every {REPORT_LATER:?})",
        CANARY + LATER,
        CANARY as f64 / REPORT.as_secs_f64() + LATER as f64 / REPORT_LATER.as_secs_f64(),
    );
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.unwrap();
    }
    drop(canary_daemons);
    drop(shared_daemons);
    prometheus.kill();
}
