//! From readings to a health state, per GPU. [`assess`] turns one reading (and the one
//! before, and the XIDs in between) into a level with reasons; [`HealthMachine`] applies
//! hysteresis: a worse level applies at once, a better one only after `recover_after`
//! consecutive better samples (monitors that never recover, or flap, are both wrong).

use super::probe::{ProbeError, Sample};
use crate::config::GpuThresholds;

/// Health levels, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Healthy,
    Degraded,
    Failed,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Degraded => "degraded",
            Level::Failed => "failed",
        }
    }

    /// The `coffer_gpu_state` gauge value.
    pub fn gauge(self) -> i64 {
        self as i64
    }
}

/// XIDs caused by applications (bad kernels, page faults, user-initiated resets): they
/// are counted but do not mark the GPU failed.
pub const APPLICATION_XIDS: &[u64] = &[13, 31, 43, 45, 68];

/// One sample's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub level: Level,
    pub reasons: Vec<String>,
}

impl Assessment {
    pub fn reason(&self) -> String {
        if self.reasons.is_empty() {
            "all signals normal".into()
        } else {
            self.reasons.join("; ")
        }
    }
}

fn grew(now: Option<u64>, before: Option<u64>) -> u64 {
    match (now, before) {
        (Some(n), Some(b)) => n.saturating_sub(b),
        _ => 0,
    }
}

/// The level of one reading.
pub fn assess(
    now: Result<&Sample, &ProbeError>,
    before: Option<&Sample>,
    xids: &[u64],
    t: &GpuThresholds,
) -> Assessment {
    let mut failed = Vec::new();
    let mut degraded = Vec::new();
    for xid in xids {
        if !APPLICATION_XIDS.contains(xid) {
            failed.push(format!("critical XID {xid}"));
        }
    }
    match now {
        Err(ProbeError::Lost(_)) => failed.push("fallen off the bus (GPU is lost)".into()),
        Err(ProbeError::NoGpu(why)) => failed.push(format!("driver gone: {why}")),
        Err(ProbeError::Read { detail, .. }) => degraded.push(format!("cannot read: {detail}")),
        Ok(s) => {
            if let Some(dbe) = s.ecc_dbe.filter(|n| *n > 0) {
                failed.push(format!("{dbe} uncorrectable (double-bit) ECC errors"));
            }
            if s.retirement_pending == Some(true) {
                failed.push("page retirement pending (reset needed)".into());
            }
            if s.remap_pending == Some(true) {
                failed.push("row remapping pending (reset needed)".into());
            }
            if s.remap_failed == Some(true) {
                failed.push("row remapping failed".into());
            }
            let slow = s.throttle.slowdowns();
            if !slow.is_empty() {
                degraded.push(format!("throttled: {}", slow.join(", ")));
            }
            if let (Some(temp), Some(limit)) = (s.temperature_c, s.slowdown_c) {
                if temp + t.temperature_margin_c >= limit {
                    degraded.push(format!("{temp} °C, slowdown at {limit} °C"));
                }
            }
            let before_sbe = before.and_then(|b| b.ecc_sbe);
            let sbe = grew(s.ecc_sbe, before_sbe);
            if sbe >= t.sbe_per_sample {
                degraded.push(format!("{sbe} corrected ECC errors since the last sample"));
            }
            let replays = grew(s.pcie_replays, before.and_then(|b| b.pcie_replays));
            if replays >= t.pcie_replays_per_sample {
                degraded.push(format!("{replays} PCIe replays since the last sample"));
            }
        }
    }
    if !failed.is_empty() {
        Assessment {
            level: Level::Failed,
            reasons: failed,
        }
    } else if !degraded.is_empty() {
        Assessment {
            level: Level::Degraded,
            reasons: degraded,
        }
    } else {
        Assessment {
            level: Level::Healthy,
            reasons: Vec::new(),
        }
    }
}

/// A change of state, to log, count and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Level,
    pub to: Level,
    pub reason: String,
}

/// One GPU's state with hysteresis.
#[derive(Debug, Clone)]
pub struct HealthMachine {
    level: Level,
    reason: String,
    recover_after: u32,
    better_streak: u32,
    worst_in_streak: Level,
}

impl HealthMachine {
    pub fn new(recover_after: u32) -> Self {
        Self {
            level: Level::Healthy,
            reason: "no sample yet".into(),
            recover_after: recover_after.max(1),
            better_streak: 0,
            worst_in_streak: Level::Healthy,
        }
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Feeds one assessment; returns the transition it caused, if any.
    pub fn observe(&mut self, a: &Assessment) -> Option<Transition> {
        if a.level >= self.level {
            self.better_streak = 0;
            self.worst_in_streak = Level::Healthy;
            let from = self.level;
            self.reason = a.reason();
            if a.level > from {
                self.level = a.level;
                return Some(Transition {
                    from,
                    to: a.level,
                    reason: self.reason.clone(),
                });
            }
            return None;
        }
        self.better_streak += 1;
        self.worst_in_streak = self.worst_in_streak.max(a.level);
        if self.better_streak < self.recover_after {
            return None;
        }
        let from = self.level;
        self.level = self.worst_in_streak;
        self.reason = format!(
            "{} after {} consecutive better samples",
            a.reason(),
            self.better_streak
        );
        self.better_streak = 0;
        self.worst_in_streak = Level::Healthy;
        Some(Transition {
            from,
            to: self.level,
            reason: self.reason.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::probe::Throttle;
    use super::*;

    const T: GpuThresholds = GpuThresholds {
        temperature_margin_c: 5,
        sbe_per_sample: 100,
        pcie_replays_per_sample: 50,
    };

    fn ok() -> Sample {
        Sample {
            temperature_c: Some(50),
            slowdown_c: Some(90),
            ecc_sbe: Some(0),
            ecc_dbe: Some(0),
            pcie_replays: Some(0),
            ..Sample::default()
        }
    }

    #[test]
    fn each_signal_maps_to_its_level() {
        assert_eq!(assess(Ok(&ok()), None, &[], &T).level, Level::Healthy);
        let a = assess(Ok(&ok()), None, &[79], &T);
        assert_eq!(a.level, Level::Failed);
        assert!(a.reason().contains("XID 79"));
        for xid in APPLICATION_XIDS {
            assert_eq!(assess(Ok(&ok()), None, &[*xid], &T).level, Level::Healthy);
        }
        let lost = ProbeError::Lost(0);
        assert_eq!(assess(Err(&lost), None, &[], &T).level, Level::Failed);
        let dbe = Sample {
            ecc_dbe: Some(1),
            ..ok()
        };
        assert_eq!(assess(Ok(&dbe), None, &[], &T).level, Level::Failed);
        let pending = Sample {
            remap_pending: Some(true),
            ..ok()
        };
        assert_eq!(assess(Ok(&pending), None, &[], &T).level, Level::Failed);
        let hot = Sample {
            throttle: Throttle(Throttle::HW_THERMAL),
            ..ok()
        };
        let a = assess(Ok(&hot), None, &[], &T);
        assert_eq!(a.level, Level::Degraded);
        assert!(a.reason().contains("hw_thermal"), "{}", a.reason());
        let capped = Sample {
            throttle: Throttle(Throttle::SW_POWER_CAP | Throttle::GPU_IDLE),
            ..ok()
        };
        assert_eq!(assess(Ok(&capped), None, &[], &T).level, Level::Healthy);
        let warm = Sample {
            temperature_c: Some(86),
            ..ok()
        };
        assert_eq!(assess(Ok(&warm), None, &[], &T).level, Level::Degraded);
        let sbe = Sample {
            ecc_sbe: Some(150),
            ..ok()
        };
        assert_eq!(
            assess(Ok(&sbe), Some(&ok()), &[], &T).level,
            Level::Degraded
        );
        // A high but steady count is not a new burst.
        assert_eq!(assess(Ok(&sbe), Some(&sbe), &[], &T).level, Level::Healthy);
        let unread = ProbeError::Read {
            gpu: 0,
            detail: "timeout".into(),
        };
        assert_eq!(assess(Err(&unread), None, &[], &T).level, Level::Degraded);
    }

    #[test]
    fn worse_applies_at_once_better_only_after_n_samples() {
        let healthy = assess(Ok(&ok()), None, &[], &T);
        let failed = assess(Ok(&ok()), None, &[79], &T);
        let degraded = Assessment {
            level: Level::Degraded,
            reasons: vec!["hot".into()],
        };
        let mut m = HealthMachine::new(3);
        assert_eq!(m.observe(&healthy), None);
        let t = m.observe(&failed).unwrap();
        assert_eq!((t.from, t.to), (Level::Healthy, Level::Failed));
        assert_eq!(m.observe(&healthy), None);
        assert_eq!(m.observe(&healthy), None);
        // A relapse restarts the count.
        assert_eq!(m.observe(&failed), None);
        assert_eq!(m.observe(&healthy), None);
        assert_eq!(m.observe(&degraded), None);
        // Three better samples, the worst of them degraded: failed → degraded.
        let t = m.observe(&healthy).unwrap();
        assert_eq!((t.from, t.to), (Level::Failed, Level::Degraded));
        assert_eq!(m.observe(&healthy), None);
        assert_eq!(m.observe(&healthy), None);
        let t = m.observe(&healthy).unwrap();
        assert_eq!((t.from, t.to), (Level::Degraded, Level::Healthy));
        assert_eq!(m.level(), Level::Healthy);
    }
}
