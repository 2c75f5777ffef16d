//! The agent under systemd (`Type=notify`): `READY=1` once the configuration and the CA
//! bundle are loaded, watchdog pings at half of `WATCHDOG_USEC` while the runtime is
//! responsive, `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` each is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(state: NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "systemd notification failed");
    }
}

pub fn ready() {
    notify(NotifyState::Ready);
}

pub fn stopping() {
    notify(NotifyState::Stopping);
}

/// Starts the watchdog pings on the current runtime, when systemd asked for them.
pub fn spawn_watchdog() {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            notify(NotifyState::Watchdog);
        }
    });
}
