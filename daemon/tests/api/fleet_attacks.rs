//! The fleet channel under attack and after a crash, with a real cofferd: a host that
//! drips metadata or targets at one byte per second is cut off by the configured
//! deadlines (counted, reported to cofferd's telemetry and audit) while cofferd serves;
//! a look-alike version held under a released name is never activated as the release;
//! a torn or lost trust state neither stops sync nor lets it trust an older root; a FIFO
//! in a bundle is refused at once.

use std::path::Path;
use std::time::{Duration, Instant};

use coffer_agent::AgentConfig;
use coffer_agent::sync::state::{OutcomeKind, SyncState};
use coffer_agent::sync::{Source, SyncError, cycle, sync_dir};
use coffer_release::layout::Ring;
use coffer_release::publish::{self, Expiries};
use coffer_release::{bundle, root};
use http::Method;

use crate::drip_host::DripHost;
use crate::fleet::{Fleet, copy_dir, only};
use crate::models::{derived_version, write_manifest};

/// cofferd serving credit-lr 1.0.0 and a published release of 2.0.0 for every ring.
async fn releasing_2_0_0() -> Option<Fleet> {
    let f = Fleet::start(None, "").await?;
    f.add(&f.version("2.0.0"), Ring::Broad);
    f.publish().await;
    Some(f)
}

/// The agent's configuration against the drip host, with short limits.
fn drip_agent(f: &Fleet, url: &str, extra: &str) -> AgentConfig {
    let text = format!(
        "allow_insecure_http = true\nstate_dir = \"{state}\"\n[daemon]\nadmin_socket = \"{socket}\"\n\
         [sync]\nrepository_url = \"{url}\"\ntrusted_root = \"{root}\"\nring = \"broad\"\n\
         timeout = \"5s\"\nmetadata_timeout = \"3s\"\nmin_rate = \"64KiB\"\n\
         backoff_min = \"1h\"\nbackoff_max = \"1h\"\nhealth_gate = \"1s\"\n{extra}",
        state = f.s.dir().join("agent").display(),
        socket = f.s.socket().display(),
        root = f.repo.metadata().join("1.root.json").display(),
    );
    AgentConfig::parse(&text).unwrap()
}

/// Scores every 100 ms until `done` resolves; returns (answers, versions seen).
async fn keep_scoring(
    f: &Fleet,
    done: impl std::future::Future<Output = ()>,
) -> (u32, Vec<String>) {
    tokio::pin!(done);
    let mut answers = 0;
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            () = &mut done => return (answers, seen),
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let version = f.serving().await;
                answers += 1;
                if !seen.contains(&version) {
                    seen.push(version);
                }
            }
        }
    }
}

/// The event records of cofferd's telemetry spool.
async fn spooled_events(socket: &Path) -> Vec<serde_json::Value> {
    let reply = crate::common::admin_raw(
        socket,
        Method::GET,
        "/admin/telemetry?max=10000",
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let batch: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    batch["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].clone())
        .filter(|b| b["type"] == "event")
        .collect()
}

#[tokio::test]
async fn a_host_that_drips_bytes_is_cut_off_by_the_deadlines_while_cofferd_serves() {
    let Some(f) = releasing_2_0_0().await else {
        return;
    };
    let host = DripHost::start(f.repo.public()).await;
    let cfg = drip_agent(&f, &host.url, "");
    let base: http::Uri = host.url.parse().unwrap();

    // Metadata: timestamp.json at 1 byte/s (about 10 minutes whole).
    host.drip(&["timestamp.json"]);
    let started = Instant::now();
    let (result, (answers, seen)) = {
        let sync = async { cycle(&cfg, &Source::remote(&base, None, &cfg.sync)).await };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let scoring = keep_scoring(&f, async {
            let _ = rx.await;
        });
        let sync = async {
            let r = sync.await;
            let _ = tx.send(());
            r
        };
        tokio::join!(sync, scoring)
    };
    let metadata_took = started.elapsed();
    let err = result.unwrap_err();
    assert!(err.stalled(), "{err}");
    assert!(err.to_string().contains("sync.metadata_timeout"), "{err}");
    assert!(
        metadata_took >= Duration::from_secs(3) && metadata_took < Duration::from_secs(5),
        "{metadata_took:?}"
    );
    assert!(answers >= 10 && seen == ["1.0.0"], "{answers} {seen:?}");
    eprintln!(
        "1 byte/s host, metadata: gave up after {:.1} s (sync.metadata_timeout 3s, sync.timeout 5s); \
         cofferd answered {answers} scoring requests meanwhile, all by 1.0.0",
        metadata_took.as_secs_f64()
    );

    // An endless next root (2.root.json never ends): an error, not "no newer root".
    host.drip(&["2.root.json"]);
    let started = Instant::now();
    let err = cycle(&cfg, &Source::remote(&base, None, &cfg.sync))
        .await
        .unwrap_err();
    assert!(err.stalled(), "{err}");
    assert!(err.to_string().contains("2.root.json"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A target: model.onnx at 1 byte/s; the metadata arrives at once.
    host.drip(&["model.onnx"]);
    let model_len = std::fs::metadata(f.version("2.0.0").join("model.onnx"))
        .unwrap()
        .len();
    let allowed = Duration::from_secs(5) + Duration::from_secs_f64(model_len as f64 / 65536.0);
    let started = Instant::now();
    let err = cycle(&cfg, &Source::remote(&base, None, &cfg.sync))
        .await
        .unwrap_err();
    let target_took = started.elapsed();
    assert!(
        matches!(
            err,
            SyncError::Download(coffer_agent::sync::download::DownloadError::TooSlow { .. })
        ),
        "{err}"
    );
    assert!(
        target_took >= allowed && target_took < allowed + Duration::from_secs(3),
        "{target_took:?} (allowed {allowed:?})"
    );
    assert_eq!(f.serving().await, "1.0.0");
    eprintln!(
        "1 byte/s host, a {model_len}-byte target: gave up after {:.1} s (sync.timeout 5s + \
         {model_len} bytes at sync.min_rate 64KiB/s = {:.1} s); cofferd kept serving 1.0.0",
        target_took.as_secs_f64(),
        allowed.as_secs_f64()
    );

    // The polling loop counts the stall, backs off, and reports it to cofferd.
    host.drip(&["timestamp.json"]);
    let dir = sync_dir(&cfg);
    let polled = async {
        while SyncState::load(&dir).polls < 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    coffer_agent::sync::run(&cfg, None, None, polled).await;
    // The state is saved before the report is sent: wait for the report too.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = spooled_events(&f.s.socket()).await;
        if events.iter().any(|e| e["event"] == "sync_stalled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = SyncState::load(&dir);
    assert_eq!(
        (state.polls, state.consecutive_failures, state.stalled_polls),
        (1, 1, 1),
        "{state:?}"
    );
    assert!(
        state
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("sync.metadata_timeout")),
        "{state:?}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "sync_stalled"),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_impostor_version_is_never_activated_as_the_release() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    // A look-alike credit-lr 2.0.0 reaches cofferd by other means: the same files, a
    // manifest that differs only in its description.
    let lookalike = derived_version(
        &f.s.dir().join("lookalike"),
        "credit-lr",
        "credit-lr",
        "2.0.0",
    );
    let mut m = coffer_models::Manifest::parse(
        &std::fs::read_to_string(lookalike.join("manifest.toml")).unwrap(),
    )
    .unwrap();
    m.description = Some("not what the fleet released".into());
    write_manifest(&lookalike, &m);
    coffer_agent::sync::daemon::import(&f.s.socket(), &lookalike, Duration::from_secs(60))
        .await
        .unwrap();
    // The fleet releases the genuine credit-lr 2.0.0.
    f.add(&f.version("2.0.0"), Ring::Broad);
    f.publish().await;
    let cfg = f.agent("broad", "");

    let steps = f.sync(&cfg).await.unwrap();
    let step = only(&steps);
    assert_eq!(step.kind, OutcomeKind::Impostor, "{step:?}");
    assert!(step.detail.contains("not activated"), "{step:?}");
    assert_eq!(
        f.serving().await,
        "1.0.0",
        "the look-alike is not activated"
    );
    // Looked at again each poll, reported once.
    let again = f.sync(&cfg).await.unwrap();
    assert_eq!(only(&again).kind, OutcomeKind::Impostor);
    let events = spooled_events(&f.s.socket()).await;
    let impostors: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "impostor_version")
        .collect();
    assert_eq!(impostors.len(), 1, "{events:?}");
    assert_eq!(
        (&impostors[0]["model"], &impostors[0]["version"]),
        (&serde_json::json!("credit-lr"), &serde_json::json!("2.0.0"))
    );
    let status = SyncState::load(&sync_dir(&cfg));
    assert_eq!(status.models["credit-lr"].kind, OutcomeKind::Impostor);

    // Activated by hand, the look-alike serves under the release's name: sync still
    // does not count it as the release.
    let admin = |method: Method, path: &'static str| {
        let socket = f.s.socket();
        async move {
            let r = crate::common::admin_raw(&socket, method, path, None, Duration::from_secs(30))
                .await
                .unwrap();
            assert!(r.status.is_success(), "{path}: {:?}", r.status);
        }
    };
    admin(
        Method::POST,
        "/admin/models/credit-lr/versions/2.0.0/activate",
    )
    .await;
    assert_eq!(f.serving().await, "2.0.0");
    let serving = f.sync(&cfg).await.unwrap();
    assert_eq!(only(&serving).kind, OutcomeKind::Impostor, "{serving:?}");
    assert!(only(&serving).detail.contains("it serves"), "{serving:?}");
    admin(Method::POST, "/admin/models/credit-lr/rollback").await;
    assert_eq!(f.serving().await, "1.0.0");

    // The admin removes the look-alike: the signed release installs and serves.
    admin(Method::DELETE, "/admin/models/credit-lr/versions/2.0.0").await;
    let steps = f.sync(&cfg).await.unwrap();
    assert_eq!(only(&steps).kind, OutcomeKind::Active, "{steps:?}");
    assert_eq!(f.serving().await, "2.0.0");

    // The report is in the appliance's audit log, with what it concerned.
    let state_dir = f.s.dir().join("state/audit");
    f.d.stop();
    let audit = crate::common::audit_text(&state_dir);
    assert!(
        audit.lines().any(|l| {
            let e = &serde_json::from_str::<serde_json::Value>(l).unwrap()["event"];
            e["action"] == "sync.report"
                && e["target"] == "impostor_version credit-lr@2.0.0"
                && e["status"] == 204
        }),
        "{audit}"
    );
}

#[tokio::test]
async fn a_torn_or_lost_trust_state_neither_stops_sync_nor_trusts_an_older_root() {
    let Some(f) = releasing_2_0_0().await else {
        return;
    };
    // What an attacker keeps: the repository and keys as they are before the timestamp
    // key is rotated (and so revoked).
    let repo_dir = f.repo.public().parent().unwrap().to_path_buf();
    let stolen_repo = f.s.dir().join("stolen-repo");
    let stolen_keys = f.s.dir().join("stolen-keys");
    copy_dir(&repo_dir, &stolen_repo);
    copy_dir(&f.keys, &stolen_keys);
    root::rotate_key(
        &f.repo,
        &f.keys,
        coffer_release::keys::parse_role("timestamp").unwrap(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    let cfg = f.agent("broad", "");
    assert_eq!(only(&f.sync(&cfg).await.unwrap()).kind, OutcomeKind::Active);
    let dir = sync_dir(&cfg);
    let trusted = dir.join("trusted");
    let version = |p: &Path| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["signed"]["version"].as_u64().unwrap()
    };
    assert_eq!(version(&trusted.join("root.json")), 2);

    // A power cut tore the root files: every copy of root.json is 0 bytes.
    for p in [trusted.join("root.json"), dir.join("tuf/root.json")] {
        std::fs::write(p, b"").unwrap();
    }
    f.sync(&cfg)
        .await
        .unwrap_or_else(|e| panic!("a torn root.json stops sync: {e}"));
    assert_eq!(version(&trusted.join("root.json")), 2);

    // The trust files are lost (all but the recorded root version), and the host is
    // the attacker's: the repository before the rotation, with a ten-year timestamp
    // signed by the revoked key. The agent starts from the install-time root, which
    // still lists that key, and the host shows no newer root.
    for e in std::fs::read_dir(&trusted).unwrap().flatten() {
        if e.file_name() != "root-version" {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(dir.join("tuf"));
    let _ = std::fs::remove_dir_all(dir.join("metadata-cache"));
    let genuine = f.s.dir().join("genuine-repo");
    std::fs::rename(&repo_dir, &genuine).unwrap();
    std::fs::rename(&stolen_repo, &repo_dir).unwrap();
    publish::refresh_timestamp(&f.repo, &stolen_keys, Duration::from_secs(3650 * 24 * 3600))
        .await
        .unwrap();
    let err = f.sync(&cfg).await.unwrap_err().to_string();
    assert!(
        err.contains("root is version 1") && err.contains("verified root version 2"),
        "{err}"
    );
    assert_eq!(
        f.serving().await,
        "2.0.0",
        "nothing changed on the appliance"
    );
    // With the genuine host back, sync goes on from the root chain.
    std::fs::remove_dir_all(&repo_dir).unwrap();
    std::fs::rename(&genuine, &repo_dir).unwrap();
    f.sync(&cfg).await.unwrap();
    assert_eq!(version(&trusted.join("root.json")), 2);
}

#[tokio::test]
async fn a_fifo_in_a_bundle_is_refused_without_blocking() {
    let Some(f) = releasing_2_0_0().await else {
        return;
    };
    let usb = f.s.dir().join("usb");
    bundle::export(&f.repo, &usb, &mut |_, _| {}).await.unwrap();
    let mut cfg = f.agent("broad", "");
    cfg.sync.repository_url = None;

    let fifo_at = |original: &Path, copy: &Path, file: &Path| {
        copy_dir(original, copy);
        std::fs::remove_file(file).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(file)
            .status()
            .unwrap();
        assert!(made.success());
    };
    // The metadata's timestamp.json, then a target file, replaced by a FIFO.
    let meta = f.s.dir().join("usb-fifo-metadata");
    fifo_at(&usb, &meta, &meta.join("metadata/timestamp.json"));
    let targets = f.s.dir().join("usb-fifo-target");
    copy_dir(&usb, &targets);
    let model = std::fs::read_dir(targets.join("targets"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .map(|model_dir| {
            // targets/<sha>.credit-lr/2.0.0/model.onnx
            model_dir.join("2.0.0/model.onnx")
        })
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            let sha =
                coffer_models::verify::sha256_file(&f.version("2.0.0").join("model.onnx")).unwrap();
            targets.join(format!("targets/{sha}.credit-lr/2.0.0/model.onnx"))
        });
    std::fs::remove_file(&model).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&model)
            .status()
            .unwrap()
            .success()
    );
    for (what, dir) in [("metadata", &meta), ("target", &targets)] {
        let source = Source::Bundle {
            dir,
            grace: Duration::ZERO,
        };
        let err = tokio::time::timeout(Duration::from_secs(20), cycle(&cfg, &source))
            .await
            .unwrap_or_else(|_| panic!("a FIFO as the bundle's {what} blocks the import"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("FIFO"), "{what}: {err}");
    }
    assert_eq!(f.serving().await, "1.0.0");
}
