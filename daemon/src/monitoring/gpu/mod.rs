//! GPU health: a dedicated thread samples every GPU through a [`probe::GpuProbe`]
//! (NVML, or a scripted timeline), turns readings into a state per GPU with hysteresis
//! ([`health`]), and publishes it: the `gpu` readiness component (false while a GPU is
//! failed), dcgm-exporter-named metrics ([`metrics`]), a log line and an audit record
//! per transition, and the shared [`GpuHealth`] that the request path consults for each
//! GPU model's fallback policy (`serving::gpu_fallback`). A host without NVIDIA driver or GPU is
//! the "no GPU" state: one log line, CPU serving, no thread, no retries.

pub mod health;
pub mod metrics;
pub mod nvml;
pub mod placement;
pub mod probe;
pub mod scripted;

use std::sync::{Arc, Mutex, RwLock};

use health::{HealthMachine, Level};
use placement::{Device, Placements};
use probe::{DeviceInfo, GpuProbe, ProbeError, Sample};

use crate::audit::{AuditEvent, AuditLog};
use crate::config::GpuConfig;
use crate::monitoring::readiness::Readiness;

pub use metrics::GpuMetrics;

/// Why GPU monitoring could not start.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("gpu.simulate: {0}")]
    Script(#[from] scripted::ScriptError),
    #[error("cannot start the GPU monitor thread: {0}")]
    Thread(std::io::Error),
}

/// One GPU as the request path and `/readyz` see it.
#[derive(Debug, Clone)]
pub struct GpuStatus {
    pub device: DeviceInfo,
    pub level: Level,
    pub reason: String,
    /// Free memory at the last sample (variant choice); `None` before one.
    pub memory_free_bytes: Option<u64>,
    /// Whether the monitor has sampled this GPU yet.
    pub sampled: bool,
    /// Samples taken of this GPU.
    pub samples: u64,
}

/// What the host has.
#[derive(Debug, Clone)]
pub enum Presence {
    /// `gpu.enabled = false`.
    Disabled,
    /// No NVIDIA driver or no GPU: everything runs on the CPU.
    Absent(String),
    Present(Vec<GpuStatus>),
}

/// The GPUs' current state, shared with the request path.
#[derive(Debug)]
pub struct GpuHealth {
    presence: RwLock<Presence>,
    placements: Mutex<Placements>,
    /// The index of each GPU that leaves `failed`.
    recovered: tokio::sync::broadcast::Sender<u32>,
}

impl GpuHealth {
    pub fn new(presence: Presence) -> Arc<Self> {
        Arc::new(Self {
            presence: RwLock::new(presence),
            placements: Mutex::new(Placements::default()),
            recovered: tokio::sync::broadcast::channel(16).0,
        })
    }

    /// Hears of each GPU that leaves `failed` (the model lifecycle reloads its models).
    pub fn subscribe_recoveries(&self) -> tokio::sync::broadcast::Receiver<u32> {
        self.recovered.subscribe()
    }

    /// Records whether `model` waits for a GPU to recover (it wanted one and found none):
    /// `Some(Some(i))` GPU i, `Some(None)` any GPU.
    pub fn set_awaiting(&self, model: &str, awaiting: Option<Option<u32>>) {
        self.placements().set_awaiting(model, awaiting);
    }

    /// The models to reload now that `gpu` recovered.
    pub fn for_recovery(&self, gpu: u32) -> Vec<String> {
        self.placements().for_recovery(gpu)
    }

    fn placements(&self) -> std::sync::MutexGuard<'_, Placements> {
        self.placements.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records where `model` runs (`gpu.models.NAME.gpu`, or where its layers went).
    pub fn place(&self, model: &str, device: Device) {
        self.placements().place(model, device);
    }

    /// Records GPU memory a model just took, until the readings show it.
    pub fn reserve(&self, gpu: u32, bytes: u64) {
        let samples = self.status(gpu).map_or(0, |g| g.samples);
        self.placements().reserve(gpu, bytes, samples);
    }

    fn status(&self, gpu: u32) -> Option<GpuStatus> {
        match &*self.presence.read().unwrap_or_else(|e| e.into_inner()) {
            Presence::Present(gpus) => gpus.iter().find(|g| g.device.index == gpu).cloned(),
            _ => None,
        }
    }

    /// The GPUs a model may be placed on now (not failed, memory read), each with the
    /// free memory less what models loaded since its reading took.
    pub fn usable(&self) -> Vec<(u32, u64)> {
        let Presence::Present(gpus) = self.snapshot() else {
            return Vec::new();
        };
        let mut placements = self.placements();
        gpus.iter()
            .filter(|g| g.level != Level::Failed)
            .filter_map(|g| {
                let free = g.memory_free_bytes?;
                let unseen = placements.unseen(g.device.index, g.samples);
                Some((g.device.index, free.saturating_sub(unseen)))
            })
            .collect()
    }

    /// Why `model` cannot run on its GPU now: the failure of the GPU it is placed on (or
    /// waits for), or of any GPU for a model not placed; `None` for a model on the CPU by
    /// choice.
    pub fn failure_for(&self, model: &str) -> Option<String> {
        let (device, awaiting) = {
            let p = self.placements();
            (p.device(model), p.awaiting(model))
        };
        match (device, awaiting) {
            // On the CPU only because its GPU is failed: the policy applies meanwhile.
            (_, Some(Some(index))) => {
                let g = self.status(index)?;
                (g.level == Level::Failed)
                    .then(|| format!("GPU {} failed: {}", g.device.index, g.reason))
            }
            (_, Some(None)) => self.failure(),
            (device, None) => self.failure_on(device),
        }
    }

    fn failure_on(&self, device: Option<Device>) -> Option<String> {
        match device {
            Some(Device::Cpu) => None,
            None => self.failure(),
            Some(Device::Gpu(index)) => {
                let g = self.status(index)?;
                (g.level == Level::Failed)
                    .then(|| format!("GPU {} failed: {}", g.device.index, g.reason))
            }
        }
    }

    /// Every GPU found, healthy until sampled.
    pub fn present(devices: &[DeviceInfo]) -> Arc<Self> {
        Self::new(Presence::Present(
            devices
                .iter()
                .map(|d| GpuStatus {
                    device: d.clone(),
                    level: Level::Healthy,
                    reason: "no sample yet".into(),
                    memory_free_bytes: None,
                    sampled: false,
                    samples: 0,
                })
                .collect(),
        ))
    }

    pub fn snapshot(&self) -> Presence {
        self.presence
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The health in one word: `disabled`, `absent`, or the worst GPU's level.
    pub fn summary(&self) -> &'static str {
        match &*self.presence.read().unwrap_or_else(|e| e.into_inner()) {
            Presence::Disabled => "disabled",
            Presence::Absent(_) => "absent",
            Presence::Present(gpus) => gpus
                .iter()
                .map(|g| g.level)
                .max()
                .unwrap_or(Level::Healthy)
                .as_str(),
        }
    }

    /// Why GPU work cannot run now: the failed GPUs and their reasons; `None` while no
    /// GPU is failed (including hosts without a GPU, which serve on the CPU by design).
    pub fn failure(&self) -> Option<String> {
        let presence = self.presence.read().unwrap_or_else(|e| e.into_inner());
        let Presence::Present(gpus) = &*presence else {
            return None;
        };
        let failed: Vec<String> = gpus
            .iter()
            .filter(|g| g.level == Level::Failed)
            .map(|g| format!("GPU {} failed: {}", g.device.index, g.reason))
            .collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }

    /// Waits (blocking) until every GPU has been sampled once, at most `timeout`, so
    /// that choices made at start (model variants) see real readings.
    pub fn wait_first_sample(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let done = match &*self.presence.read().unwrap_or_else(|e| e.into_inner()) {
                Presence::Present(gpus) => gpus.iter().all(|g| g.sampled),
                _ => true,
            };
            if done {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn update(&self, gpu: u32, level: Level, reason: &str, free: Option<u64>) {
        let mut presence = self.presence.write().unwrap_or_else(|e| e.into_inner());
        if let Presence::Present(gpus) = &mut *presence {
            if let Some(g) = gpus.iter_mut().find(|g| g.device.index == gpu) {
                g.level = level;
                g.reason = reason.to_string();
                g.sampled = true;
                g.samples += 1;
                if free.is_some() {
                    g.memory_free_bytes = free;
                }
            }
        }
    }
}

/// The readiness line for the current state; `fallbacks` says what GPU models get
/// meanwhile.
fn publish_readiness(readiness: &Readiness, health: &GpuHealth, fallbacks: &str) {
    match health.snapshot() {
        Presence::Disabled => readiness.set("gpu", true, "GPU monitoring disabled"),
        Presence::Absent(why) => readiness.set(
            "gpu",
            true,
            format!("no NVIDIA GPU ({why}): serving on CPU"),
        ),
        Presence::Present(gpus) => {
            let failed = gpus.iter().any(|g| g.level == Level::Failed);
            let lines: Vec<String> = gpus
                .iter()
                .map(|g| {
                    format!(
                        "GPU {} ({}) {}: {}",
                        g.device.index,
                        g.device.name,
                        g.level.as_str(),
                        g.reason
                    )
                })
                .collect();
            let mut detail = lines.join("; ");
            if failed && !fallbacks.is_empty() {
                detail.push_str("; meanwhile ");
                detail.push_str(fallbacks);
            }
            readiness.set("gpu", !failed, detail);
        }
    }
}

/// Everything the monitor thread publishes to.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub readiness: Arc<Readiness>,
    pub metrics: GpuMetrics,
    pub audit: Option<Arc<AuditLog>>,
    /// The fleet hears of a GPU entering `failed` as a `gpu_incident` event.
    pub telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    /// "credit-gbdt: cpu-variant credit-student, …" for `/readyz`.
    pub fallbacks: String,
}

/// Starts monitoring as configured; returns the shared state.
pub fn start(config: &GpuConfig, sinks: Sinks) -> Result<Arc<GpuHealth>, GpuError> {
    if !config.enabled {
        let health = GpuHealth::new(Presence::Disabled);
        publish_readiness(&sinks.readiness, &health, &sinks.fallbacks);
        return Ok(health);
    }
    let mut probe: Box<dyn GpuProbe> = match &config.simulate {
        Some(path) => {
            tracing::warn!(timeline = %path.display(), "GPU readings are SIMULATED from a timeline (gpu.simulate)");
            Box::new(scripted::ScriptedProbe::load(path)?)
        }
        None => Box::new(nvml::NvmlProbe::default()),
    };
    let devices = match probe.open() {
        Ok(devices) => devices,
        Err(e) => {
            let why = match e {
                ProbeError::NoGpu(why) => why,
                other => other.to_string(),
            };
            tracing::info!(reason = %why, "no NVIDIA GPU: serving on CPU");
            sinks.metrics.present.set(0);
            let health = GpuHealth::new(Presence::Absent(why));
            publish_readiness(&sinks.readiness, &health, &sinks.fallbacks);
            return Ok(health);
        }
    };
    sinks.metrics.present.set(1);
    for d in &devices {
        tracing::info!(gpu = d.index, name = %d.name, uuid = %d.uuid, "GPU found");
        sinks.metrics.level(d, Level::Healthy);
    }
    let health = GpuHealth::present(&devices);
    publish_readiness(&sinks.readiness, &health, &sinks.fallbacks);
    let monitor = Monitor {
        probe,
        machines: devices
            .iter()
            .map(|_| HealthMachine::new(config.recover_after))
            .collect(),
        previous: vec![None; devices.len()],
        devices,
        config: config.clone(),
        health: Arc::clone(&health),
        sinks,
    };
    std::thread::Builder::new()
        .name("coffer-gpu".into())
        .spawn(move || monitor.run())
        .map_err(GpuError::Thread)?;
    Ok(health)
}

struct Monitor {
    probe: Box<dyn GpuProbe>,
    devices: Vec<DeviceInfo>,
    machines: Vec<HealthMachine>,
    previous: Vec<Option<Sample>>,
    config: GpuConfig,
    health: Arc<GpuHealth>,
    sinks: Sinks,
}

impl Monitor {
    fn run(mut self) {
        let mut xids = Vec::new();
        loop {
            self.sample_all(&xids);
            xids = self.probe.wait_events(self.config.interval);
        }
    }

    fn sample_all(&mut self, xids: &[probe::XidEvent]) {
        let mut changed = false;
        for (i, device) in self.devices.iter().enumerate() {
            let mine: Vec<u64> = xids
                .iter()
                .filter(|e| e.gpu == device.index)
                .map(|e| e.xid)
                .collect();
            for xid in &mine {
                self.sinks.metrics.xid(device, *xid);
                tracing::warn!(gpu = device.index, xid, "GPU XID error");
            }
            let now = self.probe.sample(device.index);
            if let Ok(s) = &now {
                self.sinks.metrics.record(device, s);
            }
            let assessment = health::assess(
                now.as_ref(),
                self.previous[i].as_ref(),
                &mine,
                &self.config.thresholds,
            );
            let free = now
                .as_ref()
                .ok()
                .and_then(|s| Some(s.memory_total_bytes?.saturating_sub(s.memory_used_bytes?)));
            if let Ok(s) = now {
                self.previous[i] = Some(s);
            }
            let machine = &mut self.machines[i];
            let transition = machine.observe(&assessment);
            self.health
                .update(device.index, machine.level(), machine.reason(), free);
            changed = true;
            let Some(t) = transition else { continue };
            self.sinks.metrics.level(device, t.to);
            self.sinks.metrics.transition(device, t.to);
            if t.to > t.from {
                tracing::warn!(gpu = device.index, uuid = %device.uuid, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "GPU health changed");
            } else {
                tracing::info!(gpu = device.index, uuid = %device.uuid, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "GPU health changed");
            }
            if t.from == Level::Failed && t.to < Level::Failed {
                // No receiver (nothing placed yet) is fine.
                let _ = self.health.recovered.send(device.index);
            }
            if t.to == Level::Failed {
                if let Some(telemetry) = &self.sinks.telemetry {
                    telemetry.event(
                        coffer_privacy::telemetry::EventKind::GpuIncident,
                        None,
                        None,
                    );
                }
            }
            if let Some(audit) = &self.sinks.audit {
                audit.record_blocking(AuditEvent::GpuState {
                    gpu: device.index,
                    uuid: device.uuid.clone(),
                    from: t.from.as_str().into(),
                    to: t.to.as_str().into(),
                    reason: t.reason.clone(),
                });
            }
        }
        if changed {
            publish_readiness(&self.sinks.readiness, &self.health, &self.sinks.fallbacks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(timeline: &str, readiness: &Arc<Readiness>) -> (Monitor, Arc<GpuHealth>) {
        let mut probe = scripted::ScriptedProbe::parse(timeline)
            .unwrap()
            .without_sleep();
        let devices = probe.open().unwrap();
        let health = GpuHealth::present(&devices);
        let raw =
            crate::config::parse("[tls]\ncert = \"/c\"\nkey = \"/k\"\n[gpu]\nrecover_after = 2\n")
                .unwrap();
        let config = crate::config::validate(&raw).unwrap().gpu;
        let m = Monitor {
            probe: Box::new(probe),
            machines: vec![HealthMachine::new(config.recover_after); devices.len()],
            previous: vec![None; devices.len()],
            devices,
            config,
            health: Arc::clone(&health),
            sinks: Sinks {
                readiness: Arc::clone(readiness),
                metrics: GpuMetrics::default(),
                audit: None,
                telemetry: None,
                fallbacks: "m: refused (fail)".into(),
            },
        };
        (m, health)
    }

    /// One monitor iteration: wait (the scripted clock advances), then sample.
    fn tick(m: &mut Monitor) {
        let xids = m.probe.wait_events(std::time::Duration::ZERO);
        m.sample_all(&xids);
    }

    #[test]
    fn the_sample_after_an_xid_fails_the_gpu_and_readiness_then_recovery_takes_n() {
        let readiness = Arc::new(Readiness::default());
        let (mut m, health) = monitor(
            "[[gpus]]\nname = \"H200\"\n[[steps]]\ntemperature_c = 40\n[[steps]]\nxid = [79]\n[[steps]]\nrepeat = 5\n",
            &readiness,
        );
        m.sample_all(&[]);
        assert!(readiness.is_ready());
        assert!(health.failure().is_none());
        tick(&mut m); // the step with the XID: failed at this very sample
        assert!(!readiness.is_ready());
        let detail = &readiness.snapshot()["gpu"].detail;
        assert!(
            detail.contains("XID 79") && detail.contains("meanwhile m: refused"),
            "{detail}"
        );
        assert!(health.failure().unwrap().contains("XID 79"));
        tick(&mut m); // one healthy sample: not enough
        assert!(!readiness.is_ready());
        tick(&mut m); // the second: recovered
        assert!(readiness.is_ready());
        assert!(health.failure().is_none());
    }

    #[test]
    fn application_xids_are_counted_but_do_not_fail_the_gpu() {
        let readiness = Arc::new(Readiness::default());
        let (mut m, health) = monitor(
            "[[gpus]]\nname = \"H200\"\n[[steps]]\n[[steps]]\nxid = [13, 43]\n",
            &readiness,
        );
        m.sample_all(&[]);
        tick(&mut m);
        assert!(readiness.is_ready());
        assert!(health.failure().is_none());
    }
}
