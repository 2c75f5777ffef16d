//! Builds the daemon from a validated configuration and runs it: state, keys, TLS, the
//! public listener, the admin socket, systemd notifications and the drain on shutdown.
//! The binary is a thin shell around [`run`].

use std::path::Path;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::net::TcpListener;

use crate::access::admission::Admission;
use crate::access::keys::{KeyStore, RateLimiter};
use crate::admin::{self, AdminState, PeerPolicy};
use crate::api::{self, AppState, Limits};
use crate::audit::{AuditEvent, AuditLog};
use crate::config::Config;
use crate::devmode::{self, DevLayout};
use crate::lifecycle::startup::{self, Parts};
use crate::lifecycle::{LifecycleMetrics, LoadContext, ModelManager};
use crate::metrics::Metrics;
use crate::monitoring::drift::monitor::{self as drift_monitor, DriftMetrics, DriftStore};
use crate::monitoring::readiness::Readiness;
use crate::score::ScoreMetrics;
use crate::server::{self, ConnectionLimits, ConnectionMetrics, Drain, ServeConfig, TlsOpen};
use crate::systemd;
use crate::telemetry::{Spool, Telemetry, spawn_flush};
use crate::tls::{ReloadableTls, TlsError};
use coffer_privacy::telemetry::EventKind;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the state database: {0}")]
    State(#[from] sled::Error),
    #[error("cannot load API keys: {0}")]
    Keys(#[from] crate::access::keys::KeyError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("admin socket: {0}")]
    Admin(#[from] admin::AdminError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("dev mode: {0}")]
    Dev(#[from] devmode::DevError),
    #[error("models: {0}")]
    Models(#[from] startup::StartupError),
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("telemetry: {0}")]
    Telemetry(#[from] crate::telemetry::SpoolError),
    #[error("GPU: {0}")]
    Gpu(#[from] crate::monitoring::gpu::GpuError),
    #[error("{0}")]
    GpuPolicy(#[from] crate::serving::gpu_fallback::PolicyError),
    #[error("admin socket policy: {0}")]
    Accounts(#[from] admin::accounts::AccountError),
    #[error(transparent)]
    DecisionKeys(#[from] crate::decisions::KeyError),
    #[error(transparent)]
    Decisions(#[from] crate::decisions::StoreError),
}

/// Starts the model lifecycle (store, registry, seeds from the configuration) and
/// loads every active version, off the async runtime.
async fn start_models(
    config: &Config,
    db: &sled::Db,
    metrics: &Metrics,
    gpu: Arc<crate::monitoring::gpu::GpuHealth>,
    audit: Option<Arc<AuditLog>>,
    telemetry: Arc<Telemetry>,
    readiness: Arc<Readiness>,
) -> Result<Arc<ModelManager>, StartError> {
    let parts = Parts {
        store_dir: config.state.model_store.clone(),
        db: db.clone(),
        load_context: LoadContext {
            score_metrics: metrics.with_registry(ScoreMetrics::register),
            chat_metrics: metrics.with_registry(crate::chat::ChatMetrics::register),
            chat_settings: config.chat.engine.clone(),
            embedding_settings: config.embedding.engine.clone(),
            score_queue_capacity: config.scoring.queue_capacity,
            drift: Some(DriftStore::open(db, config.scoring.drift_min_rows)?),
            shadow_pass: (
                config.scoring.shadow_min_rows,
                config.scoring.shadow_min_agreement,
            ),
            faults: crate::engine_faults::FaultWatch::new(
                metrics.engine_restarts.clone(),
                audit.clone().map(crate::engine_faults::AuditFaults::sink),
            ),
            gpu_devices: config.gpu.devices.clone(),
            gpu_simulated: config.gpu.simulate.is_some(),
            cpu_variants: config
                .gpu
                .models
                .iter()
                .filter_map(|(model, policy)| match policy {
                    crate::config::FallbackPolicy::CpuVariant(v) => {
                        Some((v.clone(), model.clone()))
                    }
                    _ => None,
                })
                .collect(),
        },
        gpu,
        audit,
        telemetry,
        readiness,
        metrics: metrics.with_registry(LifecycleMetrics::register),
    };
    let mut seeds = config.scoring.models.clone();
    seeds.extend(config.chat.models.iter().cloned());
    seeds.extend(config.embedding.models.iter().cloned());
    tokio::task::spawn_blocking(move || startup::start(parts, &seeds))
        .await
        .map_err(|e| {
            StartError::Models(startup::StartupError::Manage(
                crate::lifecycle::ManageError::Worker(e),
            ))
        })?
        .map_err(StartError::Models)
}

fn open_state(dir: &Path) -> Result<sled::Db, StartError> {
    std::fs::create_dir_all(dir).map_err(|source| StartError::StateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(sled::Config::new().path(dir.join("db")).open()?)
}

/// Runs the daemon until it is told to stop and has drained. `dev` is set by
/// `serve --dev`, which prints the welcome once the listener is bound.
pub async fn run(config: Config, dev: Option<DevLayout>) -> Result<Drain, StartError> {
    let readiness = Arc::new(Readiness::default());
    let metrics = Arc::new(Metrics::new());
    readiness.set("listener", false, "starting");

    let db = open_state(&config.state.dir)?;
    readiness.set("state", true, "open");
    crate::monitoring::state::spawn(
        config.state.dir.clone(),
        config.state.check_interval,
        config.state.min_free_bytes,
        Arc::clone(&readiness),
    )
    .map_err(|source| StartError::StateDir {
        path: config.state.dir.clone(),
        source,
    })?;
    let keys = Arc::new(KeyStore::open(&db)?);
    let audit = if config.audit.enabled {
        let settings = config.audit.settings.clone();
        let log = tokio::task::spawn_blocking(move || AuditLog::open(settings))
            .await
            .map_err(|e| crate::audit::AuditError::Io {
                path: config.audit.settings.dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })??;
        Some(Arc::new(log))
    } else {
        None
    };
    if let Some(a) = &audit {
        a.record(AuditEvent::Started {
            public_key: a.public_key().to_string(),
        })
        .await;
    }
    let tls = Arc::new(ReloadableTls::new(config.tls.clone())?);
    readiness.set("tls", true, "certificate loaded");
    readiness.set("models", false, "loading");

    let spool = if config.telemetry.enabled {
        Some(Arc::new(Spool::open(
            &db,
            config.telemetry.spool_max_records,
        )?))
    } else {
        None
    };
    let telemetry = Arc::new(Telemetry::new(&config.telemetry, spool.clone()));
    telemetry.event(EventKind::Started, None, None);
    let gpu_metrics = crate::monitoring::gpu::GpuMetrics::register(&metrics);
    let gpu_health = crate::monitoring::gpu::start(
        &config.gpu,
        crate::monitoring::gpu::Sinks {
            readiness: Arc::clone(&readiness),
            metrics: gpu_metrics.clone(),
            audit: audit.clone(),
            telemetry: Some(Arc::clone(&telemetry)),
            fallbacks: crate::serving::gpu_fallback::GpuFallback::summary(&config.gpu.models),
        },
    )?;
    // Subscribed before any model is placed, so that no recovery is missed.
    let gpu_recoveries = gpu_health.subscribe_recoveries();
    for (model, gpu) in &config.gpu.devices {
        gpu_health.place(model, crate::monitoring::gpu::placement::Device::Gpu(*gpu));
    }
    let models = start_models(
        &config,
        &db,
        &metrics,
        Arc::clone(&gpu_health),
        audit.clone(),
        Arc::clone(&telemetry),
        Arc::clone(&readiness),
    )
    .await?;
    let scoring = models.scoring.load();
    let chat = models.chat.load();
    let active = models.served();
    for (model, version, _) in &active {
        telemetry.event(EventKind::ModelLoaded, Some(model), Some(version));
        if let Some(a) = &audit {
            a.record(AuditEvent::ModelLoaded {
                model: model.clone(),
                version: version.clone(),
            })
            .await;
        }
    }
    crate::serving::gpu_fallback::check(&config.gpu.models, &scoring, &chat)?;
    let admin_gpu = Arc::clone(&gpu_health);
    // Chat models go back onto a GPU when it recovers (lifecycle::gpu_return).
    let _gpu_return = crate::lifecycle::gpu_return::spawn(Arc::clone(&models), gpu_recoveries);
    let gpu_gate = Arc::new(crate::serving::gpu_fallback::GpuFallback::new(
        gpu_health,
        &config.gpu.models,
        gpu_metrics,
    ));

    let drift_models = Arc::clone(&models);
    let drift_store = DriftStore::open(&db, config.scoring.drift_min_rows)?;
    let drift_task = drift_monitor::spawn(
        drift_store.clone(),
        config.scoring.drift_interval,
        Arc::new(move || drift_models.drift_trackers()),
        metrics.with_registry(DriftMetrics::register),
        audit.clone(),
        Arc::clone(&telemetry),
    );
    let decision_store = Arc::new(
        crate::decisions::DecisionStore::open(
            &db,
            &config.state.dir.join("decisions"),
            crate::decisions::Keyring::open_or_create(&config.decisions.keys_dir)?,
            config.decisions.retention,
        )?
        .audited_by(audit.clone()),
    );
    models.keep_decided_versions(Arc::clone(&decision_store));
    let decisions = Arc::new(crate::decisions::Decisions::new(
        Arc::clone(&decision_store),
        config.decisions.models.clone(),
    ));
    let prune_task = crate::decisions::retention::spawn(Arc::clone(&decision_store), audit.clone());
    let decisions_health = (!config.decisions.models.is_empty()).then(|| {
        crate::decisions::health::watch(Arc::clone(&decision_store), Arc::clone(&readiness))
    });
    let served = Arc::clone(&models);
    let flush_task = spawn_flush(
        Arc::clone(&telemetry),
        config.telemetry.interval,
        Arc::new(move || served.served()),
    );

    let limiter = Arc::new(RateLimiter::default());
    let state = Arc::new(AppState {
        keys: Arc::clone(&keys),
        limiter: Arc::clone(&limiter),
        admission: Admission::new(&config.admission, Arc::clone(&metrics)),
        metrics: Arc::clone(&metrics),
        readiness: Arc::clone(&readiness),
        serving: crate::serving::Serving {
            scoring: Arc::clone(&models.scoring),
            chat: Arc::clone(&models.chat),
            embedding: Arc::clone(&models.embedding),
            shadows: Arc::clone(&models.shadows),
            gpu: gpu_gate,
            telemetry: Arc::clone(&telemetry),
            metrics: Arc::clone(&metrics),
            cores: Arc::clone(&config.chat.engine.cores),
        },
        grammars: crate::chat::grammar::GrammarCompiler::default(),
        chat_keep_alive: config.chat.keep_alive,
        audit: audit.clone().filter(|_| config.audit.requests),
        decisions: Some(Arc::clone(&decisions)),
        explain_slots: Arc::new(tokio::sync::Semaphore::new(
            // One more than the cores: a slot handed on leaves no core idle meanwhile.
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) + 1,
        )),
        limits: Limits {
            max_body_bytes: config.server.max_body_bytes,
            request_timeout: config.server.request_timeout,
            retry_after: config.admission.retry_after,
            default_key_rate: config.admission.default_key_rate,
            access_log: config.log.access,
            stream_stall_timeout: config.server.stream_stall_timeout,
        },
    });
    let app = api::router(Arc::clone(&state), api::base_routes());

    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let admin_listener = admin::bind(&config.admin.socket)?;
    let shutdown = systemd::install_signals(Arc::clone(&tls), Arc::clone(&metrics))
        .map_err(StartError::Signals)?;

    if let Some(layout) = &dev {
        let welcome = devmode::finish(layout, &keys, bound)?;
        println!("{welcome}");
    }
    let admin_state = Arc::new(AdminState {
        keys: Arc::clone(&keys),
        limiter,
        spool,
        audit: audit.clone(),
        models: Arc::clone(&models),
        readiness: Arc::clone(&readiness),
        metrics: Arc::clone(&metrics),
        decisions: Arc::clone(&decision_store),
        gpu: admin_gpu,
    });
    let a = &config.admin;
    let ids = |uids: &[u32], users, users_key, gids: &[u32], groups, groups_key| {
        let mut u = uids.to_vec();
        u.extend(admin::accounts::user_ids(users, users_key)?);
        let mut g = gids.to_vec();
        g.extend(admin::accounts::group_ids(groups, groups_key)?);
        Ok::<_, admin::accounts::AccountError>(admin::PeerIds { uids: u, gids: g })
    };
    let policy = PeerPolicy::new(
        ids(
            &a.allowed_uids,
            &a.allowed_users,
            "admin.allowed_users",
            &a.allowed_gids,
            &a.allowed_groups,
            "admin.allowed_groups",
        )?,
        ids(
            &a.agent_uids,
            &a.agent_users,
            "admin.agent_users",
            &a.agent_gids,
            &a.agent_groups,
            "admin.agent_groups",
        )?,
    );
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_state,
        policy,
        &config.server,
        ConnectionMetrics::register_admin(&metrics),
        shutdown.clone().wait(),
    ));

    readiness.set("listener", true, format!("listening on {bound}"));
    tracing::info!(addr = %bound, admin_socket = %config.admin.socket.display(), "cofferd ready");
    let status = format!("listening on https://{bound}");
    systemd::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    systemd::spawn_watchdog();

    let s = &config.server;
    let serve_config = ServeConfig {
        app,
        limits: ConnectionLimits {
            max_connections: s.max_connections,
            max_connections_per_address: s.max_connections_per_address,
            tls_handshake_timeout: s.tls_handshake_timeout,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_connection_age: s.max_connection_age,
            request_timeout: s.request_timeout,
        },
        metrics: ConnectionMetrics::register(&metrics),
        grace: s.shutdown_grace,
    };
    let drain = server::serve(listener, TlsOpen(tls), serve_config, shutdown.wait()).await;
    readiness.set("listener", false, "stopped");
    admin_task.abort();
    flush_task.abort();
    drift_task.abort();
    prune_task.abort();
    if let Some(task) = decisions_health {
        task.abort();
    }
    decision_store.close();
    let trackers = models.drift_trackers();
    let _ = tokio::task::spawn_blocking(move || drift_store.save_all(&trackers)).await;
    let final_flush = Arc::clone(&telemetry);
    let _ = tokio::task::spawn_blocking(move || {
        final_flush.flush(&models.served());
        final_flush.event(EventKind::Stopping, None, None);
    })
    .await;
    if let Some(a) = audit {
        a.record(AuditEvent::Stopping).await;
        let _ = tokio::task::spawn_blocking(move || a.close()).await;
    }
    let _ = std::fs::remove_file(&config.admin.socket);
    if let Err(e) = db.flush_async().await {
        tracing::error!(error = %e, "state flush at shutdown failed");
    }
    match drain {
        Drain::Complete => tracing::info!("drained; exiting"),
        Drain::TimedOut => {
            tracing::warn!("shutdown grace ran out with requests still open; exiting")
        }
    }
    Ok(drain)
}
