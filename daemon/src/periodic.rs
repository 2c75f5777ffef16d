//! Background work on a fixed interval: each tick prepares a job on the runtime (cheap:
//! clones, snapshots) and runs it on a blocking thread (sled writes, audit sends), so
//! the async workers never wait on disk. Telemetry flushes and drift publication use it.

use std::time::Duration;

/// A job prepared at a tick, run off the async workers.
pub type Job = Box<dyn FnOnce() + Send>;

/// Runs `prepare()`'s job every `interval` (the first after one interval; late ticks
/// are delayed, not bunched) until the returned task is aborted.
pub fn every(
    interval: Duration,
    mut prepare: impl FnMut() -> Job + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(prepare()).await;
        }
    })
}
