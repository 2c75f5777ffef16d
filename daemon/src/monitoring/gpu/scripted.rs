//! A scripted GPU: replays a timeline of readings and XID events from a TOML file, one
//! step per sample interval. The tests use it, and so can a fire drill
//! (`gpu.simulate = "FILE"`): it shows what a branch sees when a GPU overheats or falls
//! off the bus, without touching hardware.
//!
//! ```toml
//! [[gpus]]
//! name = "NVIDIA H200 (scripted)"
//! [[steps]]              # applies to every GPU unless `gpu = N`
//! repeat = 3             # sample intervals this step lasts
//! temperature_c = 45
//! slowdown_c = 90
//! [[steps]]
//! xid = [79]             # delivered as the step begins
//! lost = true            # reads fail as for a GPU off the bus
//! ```
//! Fields a step leaves out keep their previous values; the last step lasts forever.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::probe::{DeviceInfo, GpuProbe, ProbeError, Sample, Throttle, XidEvent};

/// Why a timeline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Timeline {
    gpus: Vec<RawGpu>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    name: String,
    #[serde(default)]
    uuid: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    gpu: Option<u32>,
    #[serde(default = "one")]
    repeat: u32,
    temperature_c: Option<u32>,
    slowdown_c: Option<u32>,
    memory_used_mib: Option<u64>,
    memory_total_mib: Option<u64>,
    utilization_pct: Option<u32>,
    power_w: Option<u32>,
    power_limit_w: Option<u32>,
    ecc_sbe: Option<u64>,
    ecc_dbe: Option<u64>,
    retired_pages: Option<u64>,
    retirement_pending: Option<bool>,
    remap_pending: Option<bool>,
    throttle: Option<Vec<String>>,
    pcie_replays: Option<u64>,
    #[serde(default)]
    xid: Vec<u64>,
    lost: Option<bool>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default)]
struct GpuNow {
    sample: Sample,
    lost: bool,
}

/// The scripted probe.
#[derive(Debug)]
pub struct ScriptedProbe {
    devices: Vec<DeviceInfo>,
    now: Vec<GpuNow>,
    /// One entry per sample interval still to come: the step that begins then, if any.
    ticks: VecDeque<Option<RawStep>>,
    pending: Vec<XidEvent>,
    sleep: bool,
}

impl ScriptedProbe {
    pub fn load(path: &Path) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|detail| ScriptError::Invalid {
            path: path.display().to_string(),
            detail,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let timeline: Timeline = toml::from_str(text).map_err(|e| e.to_string())?;
        if timeline.gpus.is_empty() {
            return Err("a timeline needs at least one [[gpus]] entry".into());
        }
        let count = u32::try_from(timeline.gpus.len()).map_err(|_| "too many GPUs")?;
        let mut throttle_names = Vec::new();
        let mut ticks = VecDeque::new();
        for (i, step) in timeline.steps.iter().enumerate() {
            if let Some(gpu) = step.gpu.filter(|g| *g >= count) {
                return Err(format!("steps[{i}]: gpu {gpu} is not in [[gpus]]"));
            }
            for name in step.throttle.iter().flatten() {
                if Throttle::from_name(name).is_none() {
                    throttle_names.push(format!("steps[{i}]: unknown throttle reason {name:?}"));
                }
            }
            ticks.push_back(Some(step.clone()));
            for _ in 1..step.repeat.max(1) {
                ticks.push_back(None);
            }
        }
        if let Some(first) = throttle_names.into_iter().next() {
            return Err(first);
        }
        let devices = timeline
            .gpus
            .iter()
            .zip(0..)
            .map(|(g, index)| DeviceInfo {
                index,
                uuid: g
                    .uuid
                    .clone()
                    .unwrap_or_else(|| format!("GPU-scripted-{index}")),
                name: g.name.clone(),
            })
            .collect::<Vec<_>>();
        let mut probe = Self {
            now: vec![GpuNow::default(); devices.len()],
            devices,
            ticks,
            pending: Vec::new(),
            sleep: true,
        };
        probe.advance();
        Ok(probe)
    }

    /// Tests drive the clock themselves.
    #[cfg(test)]
    pub(crate) fn without_sleep(mut self) -> Self {
        self.sleep = false;
        self
    }

    /// Enters the next sample interval.
    fn advance(&mut self) {
        let Some(Some(step)) = self.ticks.pop_front() else {
            return;
        };
        let targets: Vec<u32> = match step.gpu {
            Some(g) => vec![g],
            None => self.devices.iter().map(|d| d.index).collect(),
        };
        for gpu in targets {
            let now = &mut self.now[gpu as usize];
            apply(&step, now);
            for xid in &step.xid {
                self.pending.push(XidEvent { gpu, xid: *xid });
            }
        }
    }
}

fn apply(step: &RawStep, now: &mut GpuNow) {
    let s = &mut now.sample;
    let set = |slot: &mut Option<u32>, v: Option<u32>| {
        if v.is_some() {
            *slot = v;
        }
    };
    set(&mut s.temperature_c, step.temperature_c);
    set(&mut s.slowdown_c, step.slowdown_c);
    set(&mut s.utilization_pct, step.utilization_pct);
    set(&mut s.power_mw, step.power_w.map(|w| w * 1000));
    set(&mut s.power_limit_mw, step.power_limit_w.map(|w| w * 1000));
    let set64 = |slot: &mut Option<u64>, v: Option<u64>| {
        if v.is_some() {
            *slot = v;
        }
    };
    set64(
        &mut s.memory_used_bytes,
        step.memory_used_mib.map(|m| m << 20),
    );
    set64(
        &mut s.memory_total_bytes,
        step.memory_total_mib.map(|m| m << 20),
    );
    set64(&mut s.ecc_sbe, step.ecc_sbe);
    set64(&mut s.ecc_dbe, step.ecc_dbe);
    set64(&mut s.retired_pages, step.retired_pages);
    set64(&mut s.pcie_replays, step.pcie_replays);
    if step.retirement_pending.is_some() {
        s.retirement_pending = step.retirement_pending;
    }
    if step.remap_pending.is_some() {
        s.remap_pending = step.remap_pending;
    }
    if let Some(names) = &step.throttle {
        s.throttle = Throttle(names.iter().filter_map(|n| Throttle::from_name(n)).sum());
    }
    if let Some(lost) = step.lost {
        now.lost = lost;
    }
}

impl GpuProbe for ScriptedProbe {
    fn open(&mut self) -> Result<Vec<DeviceInfo>, ProbeError> {
        Ok(self.devices.clone())
    }

    fn sample(&mut self, gpu: u32) -> Result<Sample, ProbeError> {
        let now = self.now.get(gpu as usize).ok_or_else(|| ProbeError::Read {
            gpu,
            detail: "no such GPU".into(),
        })?;
        if now.lost {
            return Err(ProbeError::Lost(gpu));
        }
        Ok(now.sample.clone())
    }

    fn wait_events(&mut self, timeout: Duration) -> Vec<XidEvent> {
        if self.sleep {
            std::thread::sleep(timeout);
        }
        self.advance();
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_steps_with_repeats_xids_and_loss_then_holds_the_last() {
        let mut p = ScriptedProbe::parse(
            r#"
[[gpus]]
name = "A"
[[gpus]]
name = "B"
uuid = "GPU-b"
[[steps]]
repeat = 2
temperature_c = 40
slowdown_c = 90
throttle = ["hw_thermal"]
[[steps]]
gpu = 1
xid = [79]
lost = true
"#,
        )
        .unwrap()
        .without_sleep();
        let devices = p.open().unwrap();
        assert_eq!(devices[1].uuid, "GPU-b");
        assert_eq!(p.sample(0).unwrap().temperature_c, Some(40));
        assert!(p.sample(0).unwrap().throttle.has(Throttle::HW_THERMAL));
        assert!(p.wait_events(Duration::ZERO).is_empty()); // second tick of step 0
        assert!(p.sample(1).is_ok());
        let events = p.wait_events(Duration::ZERO);
        assert_eq!(events, vec![XidEvent { gpu: 1, xid: 79 }]);
        assert!(matches!(p.sample(1), Err(ProbeError::Lost(1))));
        assert_eq!(p.sample(0).unwrap().temperature_c, Some(40));
        assert!(p.wait_events(Duration::ZERO).is_empty());
        assert!(matches!(p.sample(1), Err(ProbeError::Lost(1))));
    }

    #[test]
    fn bad_timelines_are_refused_with_the_step() {
        assert!(ScriptedProbe::parse("steps = []\ngpus = []\n").is_err());
        let e = ScriptedProbe::parse("[[gpus]]\nname = \"A\"\n[[steps]]\ngpu = 3\n").unwrap_err();
        assert!(e.contains("steps[0]"), "{e}");
        let e = ScriptedProbe::parse("[[gpus]]\nname = \"A\"\n[[steps]]\nthrottle = [\"hot\"]\n")
            .unwrap_err();
        assert!(e.contains("hot"), "{e}");
        let e = ScriptedProbe::parse("[[gpus]]\nname = \"A\"\n[[steps]]\ntemp = 3\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
