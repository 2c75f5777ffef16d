//! The real probe: NVML through `nvml-wrapper`, which loads `libnvidia-ml.so.1` at run
//! time. A host without the library, the driver or a GPU is the "no GPU" state
//! ([`ProbeError::NoGpu`]), not an error. Row remapping (Ampere and newer) has no
//! wrapper method; it is read with one raw call into the loaded library.

use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, RetirementCause, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, EventSet};

use super::probe::{DeviceInfo, GpuProbe, ProbeError, Sample, Throttle, XidEvent};

/// NVML, its devices and the XID event set. NVML is initialised once per process and
/// kept for its lifetime (devices and events borrow it).
#[derive(Default)]
pub struct NvmlProbe {
    nvml: Option<&'static Nvml>,
    devices: Vec<Device<'static>>,
    events: Option<EventSet<'static>>,
}

impl std::fmt::Debug for NvmlProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlProbe")
            .field("devices", &self.devices.len())
            .field("events", &self.events.is_some())
            .finish()
    }
}

fn read_error(gpu: u32, e: NvmlError) -> ProbeError {
    match e {
        NvmlError::GpuLost => ProbeError::Lost(gpu),
        other => ProbeError::Read {
            gpu,
            detail: other.to_string(),
        },
    }
}

/// `Ok(None)` for a signal this GPU does not have.
fn optional<T>(gpu: u32, r: Result<T, NvmlError>) -> Result<Option<T>, ProbeError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(NvmlError::NotSupported | NvmlError::NoPermission | NvmlError::FunctionNotFound) => {
            Ok(None)
        }
        Err(e) => Err(read_error(gpu, e)),
    }
}

/// (pending, failed) row remapping, through `nvmlDeviceGetRemappedRows`.
#[allow(unsafe_code)]
fn remapped_rows(nvml: &Nvml, device: &Device<'_>) -> Option<(bool, bool)> {
    let call = nvml.lib().nvmlDeviceGetRemappedRows.as_ref().ok()?;
    let (mut corrected, mut uncorrected, mut pending, mut failed) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: `call` was resolved from the NVML library that `nvml` keeps loaded, the
    // handle belongs to a device of that library instance, and every out-pointer points
    // at a live u32 for the duration of the call.
    let rc = unsafe {
        call(
            device.handle(),
            &mut corrected,
            &mut uncorrected,
            &mut pending,
            &mut failed,
        )
    };
    (rc == 0).then_some((pending != 0, failed != 0))
}

impl GpuProbe for NvmlProbe {
    fn open(&mut self) -> Result<Vec<DeviceInfo>, ProbeError> {
        let nvml: &'static Nvml = match self.nvml {
            Some(n) => n,
            None => {
                let nvml = Nvml::init().map_err(|e| ProbeError::NoGpu(e.to_string()))?;
                let leaked: &'static Nvml = Box::leak(Box::new(nvml));
                self.nvml = Some(leaked);
                leaked
            }
        };
        let count = nvml
            .device_count()
            .map_err(|e| ProbeError::NoGpu(e.to_string()))?;
        if count == 0 {
            return Err(ProbeError::NoGpu("the driver reports no GPU".into()));
        }
        let mut infos = Vec::new();
        self.devices.clear();
        let mut events = nvml.create_event_set().ok();
        for index in 0..count {
            let device = nvml
                .device_by_index(index)
                .map_err(|e| read_error(index, e))?;
            infos.push(DeviceInfo {
                index,
                uuid: device.uuid().unwrap_or_else(|_| format!("GPU-{index}")),
                name: device.name().unwrap_or_else(|_| "NVIDIA GPU".into()),
            });
            if let Some(set) = events.take() {
                // Boards without XID events keep the set for the others.
                events = match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                    Ok(set) => Some(set),
                    Err(_) => nvml.create_event_set().ok(),
                };
            }
            self.devices.push(device);
        }
        self.events = events;
        Ok(infos)
    }

    fn sample(&mut self, gpu: u32) -> Result<Sample, ProbeError> {
        let (Some(nvml), Some(d)) = (self.nvml, self.devices.get(gpu as usize)) else {
            return Err(ProbeError::Read {
                gpu,
                detail: "not opened".into(),
            });
        };
        // The temperature read doubles as the liveness check: a lost GPU fails it.
        let temperature = d
            .temperature(TemperatureSensor::Gpu)
            .map_err(|e| read_error(gpu, e))?;
        let memory = optional(gpu, d.memory_info())?;
        let retired = optional(
            gpu,
            d.retired_pages(RetirementCause::MultipleSingleBitEccErrors),
        )?
        .zip(optional(
            gpu,
            d.retired_pages(RetirementCause::DoubleBitEccError),
        )?)
        .map(|(a, b)| (a.len() + b.len()) as u64);
        let remap = remapped_rows(nvml, d);
        Ok(Sample {
            temperature_c: Some(temperature),
            slowdown_c: optional(gpu, d.temperature_threshold(TemperatureThreshold::Slowdown))?,
            memory_used_bytes: memory.as_ref().map(|m| m.used),
            memory_total_bytes: memory.as_ref().map(|m| m.total),
            utilization_pct: optional(gpu, d.utilization_rates())?.map(|u| u.gpu),
            power_mw: optional(gpu, d.power_usage())?,
            power_limit_mw: optional(gpu, d.enforced_power_limit())?,
            ecc_sbe: optional(
                gpu,
                d.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile),
            )?,
            ecc_dbe: optional(
                gpu,
                d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
            )?,
            retired_pages: retired,
            retirement_pending: optional(gpu, d.are_pages_pending_retired())?,
            remap_pending: remap.map(|(pending, _)| pending),
            remap_failed: remap.map(|(_, failed)| failed),
            throttle: Throttle(
                optional(gpu, d.current_throttle_reasons())?
                    .map(|r| r.bits())
                    .unwrap_or(0),
            ),
            pcie_replays: optional(gpu, d.pcie_replay_counter())?.map(u64::from),
        })
    }

    fn wait_events(&mut self, timeout: Duration) -> Vec<XidEvent> {
        let Some(set) = &self.events else {
            std::thread::sleep(timeout);
            return Vec::new();
        };
        let deadline = Instant::now() + timeout;
        let mut found = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // After the first event, only drain what is already queued.
            let wait_ms = if found.is_empty() {
                u32::try_from(left.as_millis()).unwrap_or(u32::MAX)
            } else {
                0
            };
            match set.wait(wait_ms) {
                Ok(event) => {
                    if let Some(XidError::Value(xid)) = event.event_data {
                        let gpu = event.device.index().unwrap_or(0);
                        found.push(XidEvent { gpu, xid });
                    }
                }
                Err(NvmlError::Timeout) => return found,
                Err(_) => {
                    // A broken event set must not turn the monitor into a busy loop.
                    std::thread::sleep(left);
                    return found;
                }
            }
            if Instant::now() >= deadline && !found.is_empty() {
                return found;
            }
        }
    }
}
