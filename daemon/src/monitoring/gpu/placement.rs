//! Which device each model runs on, as far as GPU failures go: a model placed on a GPU
//! is sent to its fallback policy only when that GPU fails, a model placed on the CPU
//! never, and a model not placed (a scoring model listed under `gpu.models` without a
//! `gpu`) when any GPU fails; which models go back to a GPU that recovers. Also the GPU
//! memory that models loaded since the last
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
    /// Chat models that wanted a GPU (the one they name, or any) but found none usable:
    /// their fallback policy applies while it is failed, and they go back to a GPU when
    /// one recovers.
    awaiting: BTreeMap<String, Option<u32>>,
    reserved: Vec<Reserved>,
}

impl Placements {
    /// Records where `model` runs, and whether it waits for a GPU to recover.
    pub fn place(&mut self, model: &str, device: Device) {
        self.models.insert(model.to_string(), device);
    }

    /// `Some(gpu)`: `model` waits for `gpu` (`None`: any GPU); `None`: it waits for none.
    pub fn set_awaiting(&mut self, model: &str, awaiting: Option<Option<u32>>) {
        match awaiting {
            Some(gpu) => {
                self.awaiting.insert(model.to_string(), gpu);
            }
            None => {
                self.awaiting.remove(model);
            }
        }
    }

    /// The GPU `model` waits for: `Some(Some(i))` GPU i, `Some(None)` any.
    pub fn awaiting(&self, model: &str) -> Option<Option<u32>> {
        self.awaiting.get(model).copied()
    }

    /// The models to reload when `gpu` recovers: those on it (their engine's CUDA state
    /// did not survive the failure) and those waiting for a GPU.
    pub fn for_recovery(&self, gpu: u32) -> Vec<String> {
        let mut models: Vec<String> = self
            .models
            .iter()
            .filter(|(_, d)| **d == Device::Gpu(gpu))
            .map(|(m, _)| m.clone())
            .collect();
        models.extend(
            self.awaiting
                .iter()
                .filter(|(_, g)| g.is_none_or(|g| g == gpu))
                .map(|(m, _)| m.clone()),
        );
        models.sort();
        models.dedup();
        models
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

    #[test]
    fn a_recovered_gpu_takes_back_its_models_and_those_waiting_for_one() {
        let mut p = Placements::default();
        p.place("on-0", Device::Gpu(0));
        p.place("on-1", Device::Gpu(1));
        p.place("waiting", Device::Cpu);
        p.set_awaiting("waiting", Some(None));
        p.place("waiting-for-1", Device::Cpu);
        p.set_awaiting("waiting-for-1", Some(Some(1)));
        p.place("cpu", Device::Cpu);
        assert_eq!(p.for_recovery(0), ["on-0", "waiting"]);
        assert_eq!(p.for_recovery(1), ["on-1", "waiting", "waiting-for-1"]);
        p.set_awaiting("waiting", None);
        assert_eq!(p.for_recovery(0), ["on-0"]);
        assert_eq!(p.awaiting("waiting-for-1"), Some(Some(1)));
    }
}
