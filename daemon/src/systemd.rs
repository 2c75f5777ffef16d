//! Process lifecycle under systemd: `READY=1`/`STATUS=`/`STOPPING=1` notifications,
//! watchdog pings at half of `WATCHDOG_USEC`, and the signals: SIGTERM/SIGINT start a
//! drain (a second one exits at once), SIGHUP reloads the TLS files.
//! Without `NOTIFY_SOCKET` every notification is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::metrics::{Metrics, ResultLabel};
use crate::tls::ReloadableTls;

/// Sends one state to systemd, if it is listening.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "systemd notification failed");
    }
}

pub fn status(line: &str) {
    notify(&[NotifyState::Status(line)]);
}

/// Pings the watchdog at half its interval while the runtime is responsive.
pub fn spawn_watchdog() {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}

/// A shutdown signal that many tasks can wait on.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Installs the signal handlers. Returns the shutdown signal that the first SIGTERM or
/// SIGINT fires; a second one exits the process immediately with status 1.
pub fn install_signals(
    tls: Arc<ReloadableTls>,
    metrics: Arc<Metrics>,
) -> std::io::Result<Shutdown> {
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutdown requested: draining (a second signal exits at once)");
        notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
        let _ = tx.send(true);
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second shutdown signal: exiting without finishing the drain");
        std::process::exit(1);
    });
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let result = match tls.reload() {
                Ok(()) => {
                    tracing::info!("TLS certificate and key reloaded");
                    "ok"
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate");
                    "error"
                }
            };
            metrics
                .tls_reloads
                .get_or_create(&ResultLabel { result })
                .inc();
        }
    });
    Ok(Shutdown { rx })
}
