//! Which device each model runs on, as far as GPU failures go: a model placed on a GPU
//! is sent to its fallback policy only when that GPU fails, a model placed on the CPU
//! never, and a model not placed (a scoring model listed under `gpu.models` without a
//! `gpu`) when any GPU fails. Also the GPU memory that models loaded since the last
//! reading have taken: the monitor's free-memory reading lags a load by up to one
//! interval, and two loads in a row must not both plan with the same free memory.

use std::collections::BTreeMap;

/// Where a model's layers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Gpu(u32),
    Cpu,
}

#[derive(Debug, Clone, Copy)]
struct Reserved {
    gpu: u32,
    bytes: u64,
    /// Counted until the GPU's sample count reaches this: the reading after the one
    /// that may have raced the allocation.
    until_sample: u64,
}

/// The placements and recent reservations.
#[derive(Debug, Default)]
pub struct Placements {
    models: BTreeMap<String, Device>,
    reserved: Vec<Reserved>,
}

impl Placements {
    pub fn place(&mut self, model: &str, device: Device) {
        self.models.insert(model.to_string(), device);
    }

    pub fn device(&self, model: &str) -> Option<Device> {
        self.models.get(model).copied()
    }

    /// Records `bytes` taken on `gpu`, whose sample count is `samples` now.
    pub fn reserve(&mut self, gpu: u32, bytes: u64, samples: u64) {
        self.reserved.push(Reserved {
            gpu,
            bytes,
            until_sample: samples + 2,
        });
    }

    /// Bytes reserved on `gpu` that its reading (after `samples` samples) may not show.
    pub fn unseen(&mut self, gpu: u32, samples: u64) -> u64 {
        self.reserved
            .retain(|r| r.gpu != gpu || samples < r.until_sample);
        self.reserved
            .iter()
            .filter(|r| r.gpu == gpu)
            .map(|r| r.bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_counts_until_two_more_readings_then_lapses() {
        let mut p = Placements::default();
        p.reserve(1, 100, 5);
        p.reserve(0, 7, 5);
        assert_eq!(p.unseen(1, 5), 100);
        assert_eq!(p.unseen(1, 6), 100);
        assert_eq!(p.unseen(1, 7), 0);
        assert_eq!(p.unseen(0, 6), 7, "another GPU's reservation stays");
    }

    #[test]
    fn the_latest_placement_of_a_model_holds() {
        let mut p = Placements::default();
        assert_eq!(p.device("chat"), None);
        p.place("chat", Device::Gpu(1));
        p.place("chat", Device::Cpu);
        assert_eq!(p.device("chat"), Some(Device::Cpu));
    }
}
