//! On a GPU host: cofferd's NVML probe reads what `nvidia-smi` reads (the same GPUs and
//! UUIDs, temperature within a few degrees, the same memory size and power limit), and
//! an idle, working GPU is not assessed as failed. Skipped where there is no GPU.

use coffer_hw_tests::nvidia_smi_gpus;
use cofferd::config::GpuThresholds;
use cofferd::monitoring::gpu::health::{Level, assess};
use cofferd::monitoring::gpu::nvml::NvmlProbe;
use cofferd::monitoring::gpu::probe::GpuProbe as _;

#[test]
fn nvml_probe_agrees_with_nvidia_smi() {
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        eprintln!("skipped: no /dev/nvidiactl");
        return;
    }
    let rows = nvidia_smi_gpus();

    let mut probe = NvmlProbe::default();
    let devices = probe.open().expect("NVML opens where nvidia-smi works");
    assert_eq!(devices.len(), rows.len(), "the same number of GPUs");
    let thresholds = GpuThresholds {
        temperature_margin_c: 5,
        sbe_per_sample: 10,
        pcie_replays_per_sample: 100,
    };
    for (device, row) in devices.iter().zip(&rows) {
        assert_eq!(device.uuid, row.uuid, "GPU {}", device.index);
        let s = probe.sample(device.index).expect("a working GPU reads");
        let smi_temp = row.temperature_c;
        let temp = f64::from(s.temperature_c.unwrap());
        assert!(
            (temp - smi_temp).abs() <= 5.0,
            "temperature {temp} vs {smi_temp}"
        );
        assert_eq!(
            s.memory_total_bytes.unwrap() >> 20,
            row.memory_total_mib,
            "memory total"
        );
        if let (Some(mw), Some(w)) = (s.power_limit_mw, row.power_limit_w) {
            assert!(
                (f64::from(mw) / 1000.0 - w).abs() <= 1.0,
                "power limit {mw} mW vs {w} W"
            );
        }
        let a = assess(Ok(&s), None, &[], &thresholds);
        assert_ne!(
            a.level,
            Level::Failed,
            "an idle working GPU: {}",
            a.reason()
        );
        println!(
            "GPU {} {}: {:?}, {}",
            device.index,
            device.name,
            a.level,
            a.reason()
        );
    }
}
