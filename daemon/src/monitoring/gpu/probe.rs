//! What a GPU monitor reads: the [`GpuProbe`] trait, one reading of one GPU
//! ([`Sample`]), and the XID events between readings. Two implementations: NVML
//! (`nvml.rs`) and a scripted timeline for tests and drills (`scripted.rs`).

use std::time::Duration;

/// A GPU as found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub index: u32,
    pub uuid: String,
    pub name: String,
}

/// Throttle reasons, NVML's `nvmlClocksThrottleReason*` bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttle(pub u64);

impl Throttle {
    pub const GPU_IDLE: u64 = 0x1;
    pub const APPLICATIONS_CLOCKS: u64 = 0x2;
    pub const SW_POWER_CAP: u64 = 0x4;
    pub const HW_SLOWDOWN: u64 = 0x8;
    pub const SYNC_BOOST: u64 = 0x10;
    pub const SW_THERMAL: u64 = 0x20;
    pub const HW_THERMAL: u64 = 0x40;
    pub const HW_POWER_BRAKE: u64 = 0x80;
    pub const DISPLAY_CLOCKS: u64 = 0x100;

    /// Named bits, for configuration files and log lines.
    pub const NAMES: &'static [(&'static str, u64)] = &[
        ("gpu_idle", Self::GPU_IDLE),
        ("applications_clocks", Self::APPLICATIONS_CLOCKS),
        ("sw_power_cap", Self::SW_POWER_CAP),
        ("hw_slowdown", Self::HW_SLOWDOWN),
        ("sync_boost", Self::SYNC_BOOST),
        ("sw_thermal", Self::SW_THERMAL),
        ("hw_thermal", Self::HW_THERMAL),
        ("hw_power_brake", Self::HW_POWER_BRAKE),
        ("display_clocks", Self::DISPLAY_CLOCKS),
    ];

    pub fn has(self, bit: u64) -> bool {
        self.0 & bit != 0
    }

    pub fn from_name(name: &str) -> Option<u64> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| *b)
    }

    /// The names of the set bits that slow the GPU down (idle and clock settings are
    /// not slowdowns).
    pub fn slowdowns(self) -> Vec<&'static str> {
        const SLOW: u64 = Throttle::HW_SLOWDOWN
            | Throttle::SW_THERMAL
            | Throttle::HW_THERMAL
            | Throttle::HW_POWER_BRAKE;
        Self::NAMES
            .iter()
            .filter(|(_, bit)| bit & SLOW != 0 && self.has(*bit))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// One reading of one GPU. A value the GPU or driver does not report is `None`
/// (consumer boards have no ECC, pre-Ampere boards no row remapping).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub temperature_c: Option<u32>,
    /// The temperature at which the GPU starts slowing itself down.
    pub slowdown_c: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub utilization_pct: Option<u32>,
    pub power_mw: Option<u32>,
    pub power_limit_mw: Option<u32>,
    /// Volatile (since the driver loaded) corrected / uncorrected ECC error counts.
    pub ecc_sbe: Option<u64>,
    pub ecc_dbe: Option<u64>,
    pub retired_pages: Option<u64>,
    pub retirement_pending: Option<bool>,
    pub remap_pending: Option<bool>,
    pub remap_failed: Option<bool>,
    pub throttle: Throttle,
    pub pcie_replays: Option<u64>,
}

/// A critical XID error NVML reported for a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XidEvent {
    pub gpu: u32,
    pub xid: u64,
}

/// Why a probe could not read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No NVIDIA driver or no GPU: the host serves on CPU. Not an error to repeat.
    #[error("no NVIDIA GPU: {0}")]
    NoGpu(String),
    /// The GPU stopped answering (NVML_ERROR_GPU_IS_LOST): fallen off the bus.
    #[error("GPU {0} is lost (fallen off the bus)")]
    Lost(u32),
    #[error("GPU {gpu}: {detail}")]
    Read { gpu: u32, detail: String },
}

/// A source of GPU readings. The monitor thread owns it.
pub trait GpuProbe: Send {
    /// The GPUs present; `ProbeError::NoGpu` on a host without driver or GPU.
    fn open(&mut self) -> Result<Vec<DeviceInfo>, ProbeError>;
    /// Reads one GPU now.
    fn sample(&mut self, gpu: u32) -> Result<Sample, ProbeError>;
    /// Waits up to `timeout` for critical XID events and returns those that arrived
    /// (the monitor's pause between samples).
    fn wait_events(&mut self, timeout: Duration) -> Vec<XidEvent>;
}
