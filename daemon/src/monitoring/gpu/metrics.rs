//! GPU metrics. Readings use dcgm-exporter's names and labels (`DCGM_FI_DEV_*` with
//! `gpu`, `UUID`, `modelName`), so dashboards built for it work unchanged; what only
//! Coffer knows (health state, transitions, fallbacks) is under `coffer_gpu_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicU64;

use super::health::Level;
use super::probe::{DeviceInfo, Sample};
use crate::metrics::Metrics;

#[allow(non_snake_case)]
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub gpu: String,
    pub UUID: String,
    pub modelName: String,
}

impl GpuLabels {
    pub fn of(d: &DeviceInfo) -> Self {
        Self {
            gpu: d.index.to_string(),
            UUID: d.uuid.clone(),
            modelName: d.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub gpu: String,
    pub to: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub model: String,
    pub policy: &'static str,
    pub outcome: &'static str,
    /// The model that answered (`none` when refused).
    pub served_by: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// Every GPU family.
#[derive(Debug, Clone, Default)]
pub struct GpuMetrics {
    temp: Family<GpuLabels, Gauge>,
    slowdown_temp: Family<GpuLabels, Gauge>,
    power: Family<GpuLabels, FGauge>,
    power_limit: Family<GpuLabels, FGauge>,
    fb_used: Family<GpuLabels, Gauge>,
    fb_free: Family<GpuLabels, Gauge>,
    util: Family<GpuLabels, Gauge>,
    sbe: Family<GpuLabels, Gauge>,
    dbe: Family<GpuLabels, Gauge>,
    retired_pending: Family<GpuLabels, Gauge>,
    remap_pending: Family<GpuLabels, Gauge>,
    xid: Family<GpuLabels, Gauge>,
    throttle: Family<GpuLabels, Gauge>,
    pcie_replays: Family<GpuLabels, Gauge>,
    pub state: Family<GpuLabels, Gauge>,
    pub transitions: Family<TransitionLabels, Counter>,
    pub present: Gauge,
    pub fallbacks: Family<FallbackLabels, Counter>,
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl GpuMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self::default();
        metrics.with_foreign_registry(|r| {
            r.register(
                "DCGM_FI_DEV_GPU_TEMP",
                "GPU temperature (in C)",
                m.temp.clone(),
            );
            r.register(
                "DCGM_FI_DEV_SLOWDOWN_TEMP",
                "Slowdown temperature threshold (in C)",
                m.slowdown_temp.clone(),
            );
            r.register(
                "DCGM_FI_DEV_POWER_USAGE",
                "Power draw (in W)",
                m.power.clone(),
            );
            r.register(
                "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
                "Enforced power limit (in W)",
                m.power_limit.clone(),
            );
            r.register(
                "DCGM_FI_DEV_FB_USED",
                "Framebuffer memory used (in MiB)",
                m.fb_used.clone(),
            );
            r.register(
                "DCGM_FI_DEV_FB_FREE",
                "Framebuffer memory free (in MiB)",
                m.fb_free.clone(),
            );
            r.register(
                "DCGM_FI_DEV_GPU_UTIL",
                "GPU utilization (in %)",
                m.util.clone(),
            );
            r.register(
                "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
                "Single-bit volatile ECC errors",
                m.sbe.clone(),
            );
            r.register(
                "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                "Double-bit volatile ECC errors",
                m.dbe.clone(),
            );
            r.register(
                "DCGM_FI_DEV_RETIRED_PENDING",
                "Pages pending retirement (1 if any)",
                m.retired_pending.clone(),
            );
            r.register(
                "DCGM_FI_DEV_ROW_REMAP_PENDING",
                "Row remapping pending (1 if any)",
                m.remap_pending.clone(),
            );
            r.register(
                "DCGM_FI_DEV_XID_ERRORS",
                "Value of the last XID error encountered",
                m.xid.clone(),
            );
            r.register(
                "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
                "Current clock throttle reasons (NVML bitmask)",
                m.throttle.clone(),
            );
            r.register(
                "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                "Total number of PCIe retries",
                m.pcie_replays.clone(),
            );
        });
        metrics.with_registry(|r| {
            r.register(
                "gpu_state",
                "GPU health: 0 healthy, 1 degraded, 2 failed",
                m.state.clone(),
            );
            r.register(
                "gpu_transitions",
                "GPU health state changes, by the state entered",
                m.transitions.clone(),
            );
            r.register(
                "gpu_present",
                "1 when NVML found at least one GPU, 0 when the host serves on CPU",
                m.present.clone(),
            );
            r.register(
                "gpu_fallback_requests",
                "Requests for GPU models while no healthy GPU could take them, by policy and outcome",
                m.fallbacks.clone(),
            );
        });
        m
    }

    pub fn record(&self, d: &DeviceInfo, s: &Sample) {
        let l = GpuLabels::of(d);
        let set = |f: &Family<GpuLabels, Gauge>, v: Option<i64>| {
            if let Some(v) = v {
                f.get_or_create(&l).set(v);
            }
        };
        set(&self.temp, s.temperature_c.map(i64::from));
        set(&self.slowdown_temp, s.slowdown_c.map(i64::from));
        if let Some(mw) = s.power_mw {
            self.power.get_or_create(&l).set(f64::from(mw) / 1000.0);
        }
        if let Some(mw) = s.power_limit_mw {
            self.power_limit
                .get_or_create(&l)
                .set(f64::from(mw) / 1000.0);
        }
        set(&self.fb_used, s.memory_used_bytes.map(|b| clamp(b >> 20)));
        set(
            &self.fb_free,
            s.memory_total_bytes
                .zip(s.memory_used_bytes)
                .map(|(t, u)| clamp(t.saturating_sub(u) >> 20)),
        );
        set(&self.util, s.utilization_pct.map(i64::from));
        set(&self.sbe, s.ecc_sbe.map(clamp));
        set(&self.dbe, s.ecc_dbe.map(clamp));
        set(&self.retired_pending, s.retirement_pending.map(i64::from));
        set(&self.remap_pending, s.remap_pending.map(i64::from));
        set(&self.throttle, Some(clamp(s.throttle.0)));
        set(&self.pcie_replays, s.pcie_replays.map(clamp));
    }

    pub fn xid(&self, d: &DeviceInfo, xid: u64) {
        self.xid.get_or_create(&GpuLabels::of(d)).set(clamp(xid));
    }

    pub fn level(&self, d: &DeviceInfo, level: Level) {
        self.state
            .get_or_create(&GpuLabels::of(d))
            .set(level.gauge());
    }

    pub fn transition(&self, d: &DeviceInfo, to: Level) {
        self.transitions
            .get_or_create(&TransitionLabels {
                gpu: d.index.to_string(),
                to: to.as_str(),
            })
            .inc();
    }
}
