//! Fleet releases end to end: a TUF repository made with coffer-release's library,
//! served by a real nginx over TLS, pulled by coffer-agent's sync into the real cofferd.
//! Happy path with rings, pins and the per-poll request count; a download cut mid-way
//! resumes; a tampered target, a replayed timestamp (rollback), an expired timestamp
//! (freeze) and metadata signed by keys not in root are rejected with nothing
//! activated; key rotations are followed; an evaluation gate and a health gate that
//! fail leave (or put back) the old version; an unreachable host makes the agent back
//! off while cofferd serves; an exported bundle imports air-gapped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_agent::AgentConfig;
use coffer_agent::sync::state::{OutcomeKind, SyncState};
use coffer_agent::sync::{Source, Step, SyncError, cycle};
use coffer_agent::transport::Tls;
use coffer_release::layout::Ring;
use coffer_release::publish::{self, Expiries};
use coffer_release::repo::Repo;
use coffer_release::{bundle, init, keys, root};

use crate::common::{Daemon, Setup, fixture};
use crate::models::{derived_version, score, write_manifest};
use crate::nginx::Nginx;

pub(crate) struct Fleet {
    pub(crate) s: Setup,
    pub(crate) d: Daemon,
    pub(crate) repo: Repo,
    pub(crate) keys: PathBuf,
    pub(crate) nginx: Nginx,
    pub(crate) api_key: String,
    pub(crate) versions: PathBuf,
}

impl Fleet {
    /// cofferd serving credit-lr 1.0.0, an initialised repository, nginx serving it.
    pub(crate) async fn start(rate: Option<&str>, scoring_extra: &str) -> Option<Fleet> {
        crate::nginx::binary()?;
        let mut s = Setup::new();
        s.scoring_models = vec![fixture("credit-lr")];
        s.scoring_extra = scoring_extra.into();
        if !scoring_extra.is_empty() {
            s.admission_extra = "max_in_flight = 512\nmax_queue = 512\n".into();
        }
        let d = s.start().await;
        let api_key = s.create_key("scorer", "score", None);
        let repo = Repo::new(s.dir().join("release-repo"));
        let keys = s.dir().join("release-keys");
        init::init(&repo, &keys, 1, 1, &Expiries::default())
            .await
            .unwrap();
        let nginx = Nginx::start(&s.dir().join("nginx"), &s.pki, &repo.public(), rate)?;
        let versions = s.dir().join("versions");
        Some(Fleet {
            s,
            d,
            repo,
            keys,
            nginx,
            api_key,
            versions,
        })
    }

    pub(crate) fn agent(&self, ring: &str, extra: &str) -> AgentConfig {
        let text = format!(
            "state_dir = \"{state}\"\n[daemon]\nadmin_socket = \"{socket}\"\n[sync]\n\
             repository_url = \"{url}\"\ntrusted_root = \"{root}\"\nca_bundle = \"{ca}\"\n\
             ring = \"{ring}\"\nhealth_gate = \"2s\"\nhealth_interval = \"200ms\"\ntimeout = \"10s\"\n{extra}",
            state = self.s.dir().join("agent").display(),
            socket = self.s.socket().display(),
            url = self.nginx.url(),
            root = self.repo.metadata().join("1.root.json").display(),
            ca = self.s.pki.ca_path("server").display(),
        );
        AgentConfig::parse(&text).unwrap()
    }

    pub(crate) fn tls(&self) -> Tls {
        Tls::from_bundle(&self.s.pki.ca_path("server")).unwrap()
    }

    /// A credit-lr version directory (the fixture's files under another version).
    pub(crate) fn version(&self, version: &str) -> PathBuf {
        derived_version(&self.versions, "credit-lr", "credit-lr", version)
    }

    pub(crate) fn add(&self, dir: &Path, ring: Ring) {
        self.repo.add(dir, ring, &mut |_, _| {}).unwrap();
    }

    pub(crate) async fn publish(&self) {
        publish::publish(&self.repo, &self.keys, &Expiries::default())
            .await
            .unwrap();
    }

    pub(crate) async fn sync(&self, cfg: &AgentConfig) -> Result<Vec<Step>, SyncError> {
        let tls = self.tls();
        let base: http::Uri = self.nginx.url().parse().unwrap();
        let source = Source::remote(&base, Some(&tls), &cfg.sync);
        cycle(cfg, &source).await
    }

    pub(crate) async fn serving(&self) -> String {
        score(&self.s.client(self.d.addr), &self.api_key, "credit-lr")
            .await
            .0
    }

    /// Versions cofferd has installed for credit-lr.
    pub(crate) async fn installed(&self) -> Vec<String> {
        let models = coffer_agent::sync::daemon::models(&self.s.socket(), Duration::from_secs(5))
            .await
            .unwrap();
        models
            .into_iter()
            .filter(|m| m.name == "credit-lr")
            .flat_map(|m| m.versions.into_iter().map(|(v, _)| v))
            .collect()
    }
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let md = e.metadata().unwrap();
        n += if md.is_dir() {
            dir_bytes(&e.path())
        } else {
            md.len()
        };
    }
    n
}

pub(crate) fn version_bytes(dir: &Path) -> u64 {
    let m = coffer_models::Manifest::parse(
        &std::fs::read_to_string(dir.join("manifest.toml")).unwrap(),
    )
    .unwrap();
    std::fs::metadata(dir.join("manifest.toml")).unwrap().len()
        + m.files.iter().map(|f| f.size).sum::<u64>()
}

pub(crate) fn only(steps: &[Step]) -> &Step {
    assert_eq!(steps.len(), 1, "{steps:?}");
    &steps[0]
}

#[tokio::test]
async fn a_signed_release_reaches_cofferd_through_nginx_by_ring_and_pins_win() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    assert_eq!(f.serving().await, "1.0.0");
    let v2 = f.version("2.0.0");
    let v3 = f.version("3.0.0");
    f.add(&v2, Ring::Broad);
    f.add(&v3, Ring::Canary);
    f.publish().await;

    // A broad site takes 2.0.0; 3.0.0 is for canaries only.
    let cfg = f.agent("broad", "");
    let steps = f.sync(&cfg).await.unwrap();
    let step = only(&steps);
    assert_eq!(
        (step.version.as_str(), step.kind),
        ("2.0.0", OutcomeKind::Active),
        "{step:?}"
    );
    assert_eq!(step.bytes, version_bytes(&v2));
    assert_eq!(f.serving().await, "2.0.0");
    assert!(
        !f.s.dir()
            .join("agent/sync/downloads/credit-lr/2.0.0")
            .exists(),
        "downloads are removed once cofferd holds the version"
    );

    // The next poll finds nothing to do, and costs the host two small requests: the
    // timestamp and the probe for a newer root (versioned metadata is cached).
    let before = f.nginx.log().len();
    assert!(f.sync(&cfg).await.unwrap().is_empty());
    let mut asked: Vec<String> = f.nginx.log()[before..]
        .iter()
        .map(|a| a.path.clone())
        .collect();
    asked.sort();
    assert_eq!(asked, ["/metadata/2.root.json", "/metadata/timestamp.json"]);

    // A pin on the appliance wins over the fleet.
    let out = f.s.ctl(&["models", "pin", "credit-lr", "2.0.0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.repo.promote("credit-lr", "3.0.0", Ring::Broad).unwrap();
    f.publish().await;
    let steps = f.sync(&cfg).await.unwrap();
    assert_eq!(only(&steps).kind, OutcomeKind::Pinned);
    assert_eq!(f.serving().await, "2.0.0");
    assert!(
        !f.installed().await.contains(&"3.0.0".to_string()),
        "nothing fetched for a pinned model"
    );
    let out = f.s.ctl(&["models", "unpin", "credit-lr"]);
    assert!(out.status.success());
    let steps = f.sync(&cfg).await.unwrap();
    assert_eq!(
        (only(&steps).version.as_str(), only(&steps).kind),
        ("3.0.0", OutcomeKind::Active)
    );
    assert_eq!(f.serving().await, "3.0.0");
    let state = SyncState::load(&f.s.dir().join("agent/sync"));
    assert_eq!(state.models["credit-lr"].version, "3.0.0");
}

#[tokio::test]
async fn a_download_cut_mid_way_resumes_where_it_stopped() {
    // nginx sends target files at 1 MiB/s; the release carries a 4 MiB evaluation file.
    let Some(f) = Fleet::start(Some("1m"), "").await else {
        return;
    };
    let v2 = f.version("2.0.0");
    let holdout = v2.join("eval/holdout.json");
    let mut text = std::fs::read(&holdout).unwrap();
    text.extend(std::iter::repeat_n(b' ', 4 << 20)); // JSON allows trailing whitespace
    std::fs::write(&holdout, text).unwrap();
    let m =
        coffer_models::Manifest::parse(&std::fs::read_to_string(v2.join("manifest.toml")).unwrap())
            .unwrap();
    write_manifest(&v2, &m);
    f.add(&v2, Ring::Broad);
    f.publish().await;
    let total = version_bytes(&v2);

    let cfg = f.agent("broad", "");
    // The agent stops (as at a restart) once a quarter of the 4 MiB file has arrived.
    let downloads = f.s.dir().join("agent/sync/downloads/credit-lr/2.0.0");
    let partial = downloads.join("eval/holdout.json.partial");
    let size = || std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let quarter = async {
        while size() < 1 << 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = f.sync(&cfg) => panic!("the download finished before the cut: {r:?}"),
        () = quarter => {}
        () = tokio::time::sleep(Duration::from_secs(60)) => panic!("the download did not progress"),
    }
    // What the writer had in hand when the agent stopped lands on disk; then it stays.
    let mut kept = size();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if size() == kept {
            break;
        }
        kept = size();
    }
    assert!(
        ((1 << 20)..(4 << 20)).contains(&kept),
        "partial file holds {kept} bytes"
    );
    let on_disk = dir_bytes(&downloads);
    assert_eq!(f.serving().await, "1.0.0");

    let steps = f.sync(&cfg).await.unwrap();
    let step = only(&steps);
    assert_eq!(step.kind, OutcomeKind::Active, "{step:?}");
    assert_eq!(
        step.bytes,
        total - on_disk,
        "only the missing bytes travel the second time"
    );
    assert_eq!(f.serving().await, "2.0.0");
    // The host saw the resumption as a Range request answered 206.
    let log = f.nginx.log();
    let resumed = log
        .iter()
        .find(|a| a.path.ends_with("eval/holdout.json") && a.status == 206)
        .unwrap_or_else(|| panic!("no 206 in {log:?}"));
    assert_eq!(resumed.range, format!("bytes={kept}-"));
    assert_eq!(
        resumed.bytes,
        std::fs::metadata(&holdout).unwrap().len() - kept
    );
}

#[tokio::test]
async fn a_tampered_target_is_rejected_and_nothing_is_activated() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    let v2 = f.version("2.0.0");
    f.add(&v2, Ring::Broad);
    f.publish().await;
    // Someone with write access to the host (not to the keys) swaps the model's bytes.
    let sha = coffer_models::verify::sha256_file(&v2.join("model.onnx")).unwrap();
    let served = f
        .repo
        .targets_dir()
        .join(format!("{sha}.credit-lr/2.0.0/model.onnx"));
    let mut bytes = std::fs::read(&served).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&served, bytes).unwrap();

    let cfg = f.agent("broad", "");
    let err = f.sync(&cfg).await.unwrap_err();
    assert!(matches!(err, SyncError::Download(_)), "{err}");
    assert!(
        err.to_string().contains("sha256") || err.to_string().contains("hash"),
        "{err}"
    );
    assert_eq!(f.serving().await, "1.0.0");
    assert!(!f.installed().await.contains(&"2.0.0".to_string()));
    assert!(
        !f.s.dir()
            .join("agent/sync/downloads/credit-lr/2.0.0/model.onnx")
            .exists()
            && !f
                .s
                .dir()
                .join("agent/sync/downloads/credit-lr/2.0.0/model.onnx.partial")
                .exists(),
        "no rejected bytes are kept"
    );
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn rejected(r: Result<Vec<Step>, SyncError>) -> String {
    match r {
        Err(e @ SyncError::Metadata(_)) => e.to_string(),
        other => panic!("expected the metadata to be rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn replayed_expired_and_foreign_metadata_is_rejected_and_key_rotations_are_followed() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    let v2 = f.version("2.0.0");
    f.add(&v2, Ring::Broad);
    f.publish().await;
    let cfg = f.agent("broad", "");
    assert_eq!(only(&f.sync(&cfg).await.unwrap()).kind, OutcomeKind::Active);
    let meta = f.repo.metadata();
    let seen_timestamp = std::fs::read(meta.join("timestamp.json")).unwrap();
    f.publish().await;
    assert!(f.sync(&cfg).await.unwrap().is_empty());

    // Rollback attack: the host serves an older, genuinely signed timestamp.
    let current = std::fs::read(meta.join("timestamp.json")).unwrap();
    std::fs::write(meta.join("timestamp.json"), &seen_timestamp).unwrap();
    let why = rejected(f.sync(&cfg).await);
    assert!(why.contains("previously fetched"), "{why}");
    std::fs::write(meta.join("timestamp.json"), &current).unwrap();
    assert!(f.sync(&cfg).await.unwrap().is_empty());

    // Freeze attack: a timestamp that has expired.
    let short = Expiries {
        timestamp: Duration::from_secs(3),
        ..Expiries::default()
    };
    publish::publish(&f.repo, &f.keys, &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let why = rejected(f.sync(&cfg).await);
    assert!(why.to_lowercase().contains("expire"), "{why}");
    f.publish().await;
    assert!(f.sync(&cfg).await.unwrap().is_empty());

    // Metadata signed by keys the root does not list: a second repository's
    // timestamp, snapshot and targets (with higher versions) over the real ones.
    let rogue = Repo::new(f.s.dir().join("rogue-repo"));
    let rogue_keys = f.s.dir().join("rogue-keys");
    init::init(&rogue, &rogue_keys, 1, 1, &Expiries::default())
        .await
        .unwrap();
    rogue
        .add(&f.version("9.0.0"), Ring::Broad, &mut |_, _| {})
        .unwrap();
    for _ in 0..8 {
        publish::publish(&rogue, &rogue_keys, &Expiries::default())
            .await
            .unwrap();
    }
    let backup = f.s.dir().join("metadata-backup");
    copy_dir(&meta, &backup);
    for e in std::fs::read_dir(rogue.metadata()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".root.json") {
            std::fs::copy(e.path(), meta.join(&name)).unwrap();
        }
    }
    copy_dir(&rogue.targets_dir(), &f.repo.targets_dir());
    let why = rejected(f.sync(&cfg).await);
    assert!(why.contains("Signature threshold"), "{why}");
    assert!(!f.installed().await.contains(&"9.0.0".to_string()));
    std::fs::remove_dir_all(&meta).unwrap();
    copy_dir(&backup, &meta);
    assert!(f.sync(&cfg).await.unwrap().is_empty());

    // Key rotations (root, then targets and timestamp) are followed through the root
    // chain; a release signed with the new keys is taken.
    for role in ["root", "targets", "timestamp"] {
        root::rotate_key(
            &f.repo,
            &f.keys,
            keys::parse_role(role).unwrap(),
            &Expiries::default(),
        )
        .await
        .unwrap();
    }
    f.add(&f.version("3.0.0"), Ring::Broad);
    f.publish().await;
    let step = f.sync(&cfg).await.unwrap();
    assert_eq!(
        (only(&step).version.as_str(), only(&step).kind),
        ("3.0.0", OutcomeKind::Active)
    );
    let trusted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.s.dir().join("agent/sync/tuf/root.json")).unwrap())
            .unwrap();
    assert_eq!(
        trusted["signed"]["version"], 4,
        "root v1 → v4 through three rotations"
    );
    // A root signed only by the retired key would no longer be accepted: the old
    // timestamp key's signature on new metadata fails.
    let retired_ts = std::fs::read_dir(f.keys.join("retired"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("timestamp-"));
    assert!(retired_ts);
}

#[tokio::test]
async fn failed_gates_leave_or_put_back_the_old_version() {
    // One queued request per scoring model: a flood makes a version answer 503s.
    let Some(f) = Fleet::start(None, "queue_capacity = 1\n").await else {
        return;
    };
    let c = f.s.client(f.d.addr);

    // Evaluation gate: 2.0.0 demands an AUC the model does not reach. Clients keep
    // scoring throughout and get 1.0.0's answers, all 200.
    let v2 = f.version("2.0.0");
    let mut m =
        coffer_models::Manifest::parse(&std::fs::read_to_string(v2.join("manifest.toml")).unwrap())
            .unwrap();
    m.eval.as_mut().unwrap().auc_min = 0.99;
    write_manifest(&v2, &m);
    f.add(&v2, Ring::Broad);
    f.publish().await;
    let cfg = f.agent("broad", "max_error_ratio = 0.01\nmin_requests = 20\n");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (c, key, stop) = (c.clone(), f.api_key.clone(), stop.clone());
        tokio::spawn(async move {
            let mut served = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                served.push(score(&c, &key, "credit-lr").await.0);
            }
            served
        })
    };
    let steps = f.sync(&cfg).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = watcher.await.unwrap();
    assert_eq!(only(&steps).kind, OutcomeKind::GateFailed, "{steps:?}");
    assert!(only(&steps).detail.contains("AUC"), "{steps:?}");
    assert!(
        !served.is_empty() && served.iter().all(|v| v == "1.0.0"),
        "{served:?}"
    );
    // Not tried again.
    assert!(f.sync(&cfg).await.unwrap().is_empty());

    // Health gate: 3.0.0 passes its evaluation, but once active it sheds requests
    // (server errors) under the branch's load: the agent rolls back to 1.0.0.
    f.add(&f.version("3.0.0"), Ring::Broad);
    f.publish().await;
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut flood = Vec::new();
    for _ in 0..16 {
        let (c, key, on) = (c.clone(), f.api_key.clone(), flooding.clone());
        flood.push(tokio::spawn(async move {
            let rows: Vec<Vec<f64>> = crate::common::eval_set("credit-lr").rows[..64].to_vec();
            let body = serde_json::json!({
                "inputs": [{ "name": "features", "shape": [rows.len(), rows[0].len()], "datatype": "FP32", "data": rows }],
            })
            .to_string();
            let mut conn = c.connect().await.unwrap();
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = conn
                    .request(http::Method::POST, "/v2/models/credit-lr/infer", Some(&key), body.as_bytes())
                    .await;
            }
        }));
    }
    let steps = f.sync(&cfg).await.unwrap();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for t in flood {
        t.await.unwrap();
    }
    let step = only(&steps);
    assert_eq!(step.kind, OutcomeKind::RolledBack, "{step:?}");
    assert!(
        step.detail.contains("server errors") && step.detail.contains("rolled back to 1.0.0"),
        "{step:?}"
    );
    assert_eq!(f.serving().await, "1.0.0");
    assert!(
        f.sync(&cfg).await.unwrap().is_empty(),
        "a rolled-back release is not retried"
    );
}

#[tokio::test]
async fn an_unreachable_host_makes_the_agent_back_off_while_cofferd_serves() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = f.agent(
        "broad",
        "backoff_min = \"100ms\"\nbackoff_max = \"800ms\"\n",
    );
    cfg.sync.repository_url = Some(format!("https://localhost:{closed}/").parse().unwrap());
    let tls = f.tls();
    let run = coffer_agent::sync::run(
        &cfg,
        Some(&tls),
        None,
        tokio::time::sleep(Duration::from_secs(4)),
    );
    let serve = async {
        let mut ok = 0;
        let end = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < end {
            assert_eq!(f.serving().await, "1.0.0");
            ok += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ok
    };
    let ((), served) = tokio::join!(run, serve);
    assert!(served >= 10);
    let state = SyncState::load(&f.s.dir().join("agent/sync"));
    // 0.1 + 0.2 + 0.4 + 0.8 + 0.8 … s (±10%): about 7 polls in 4 s, never dozens.
    assert!((4..=9).contains(&state.polls), "{state:?}");
    assert_eq!(u64::from(state.consecutive_failures), state.polls);
    let err = state.last_error.unwrap_or_default();
    assert!(err.contains("rejected") || err.contains("connect"), "{err}");
}

#[tokio::test]
async fn an_exported_bundle_imports_on_an_air_gapped_site() {
    let Some(f) = Fleet::start(None, "").await else {
        return;
    };
    let v2 = f.version("2.0.0");
    f.add(&v2, Ring::Broad);
    f.publish().await;
    let usb = f.s.dir().join("usb");
    let exported = bundle::export(&f.repo, &usb, &mut |_, _| {}).await.unwrap();
    assert_eq!(exported.releases, 1);

    // The air-gapped site has no repository URL; the bundle is the only source.
    let mut cfg = f.agent("broad", "");
    cfg.sync.repository_url = None;
    // A tampered copy is refused.
    let tampered = f.s.dir().join("usb-tampered");
    copy_dir(&usb, &tampered);
    let sha = coffer_models::verify::sha256_file(&v2.join("model.onnx")).unwrap();
    let file = tampered.join(format!("targets/{sha}.credit-lr/2.0.0/model.onnx"));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let err = cycle(
        &cfg,
        &Source::Bundle {
            dir: &tampered,
            grace: Duration::ZERO,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SyncError::Download(_)), "{err}");
    assert_eq!(f.serving().await, "1.0.0");
    // Files verified before the tampered one stay (they are what was signed).
    let kept = dir_bytes(&f.s.dir().join("agent/sync/downloads/credit-lr/2.0.0"));
    assert!(kept < version_bytes(&v2));

    let steps = cycle(
        &cfg,
        &Source::Bundle {
            dir: &usb,
            grace: Duration::ZERO,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (only(&steps).version.as_str(), only(&steps).kind),
        ("2.0.0", OutcomeKind::Active)
    );
    assert_eq!(only(&steps).bytes, version_bytes(&v2) - kept);
    assert_eq!(f.serving().await, "2.0.0");

    // A bundle whose metadata has expired is refused unless the site allows a grace.
    f.add(&f.version("3.0.0"), Ring::Broad);
    let short = Expiries {
        timestamp: Duration::from_secs(3),
        ..Expiries::default()
    };
    publish::publish(&f.repo, &f.keys, &short).await.unwrap();
    let old_usb = f.s.dir().join("usb-old");
    bundle::export(&f.repo, &old_usb, &mut |_, _| {})
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let err = cycle(
        &cfg,
        &Source::Bundle {
            dir: &old_usb,
            grace: Duration::ZERO,
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("expire"), "{err}");
    let steps = cycle(
        &cfg,
        &Source::Bundle {
            dir: &old_usb,
            grace: Duration::from_secs(30 * 24 * 3600),
        },
    )
    .await
    .unwrap();
    assert_eq!(only(&steps).version, "3.0.0");
    assert_eq!(f.serving().await, "3.0.0");
}
