//! On a GPU host: cofferd's GPU monitor, started as the daemon starts it (real NVML, its
//! own thread), publishes what `nvidia-smi` reads: the `gpu` readiness component is
//! ready and healthy, and the dcgm-exporter-named metrics carry each GPU's temperature,
//! memory and power limit under its UUID. Skipped where there is no GPU.

use std::sync::Arc;
use std::time::Duration;

use coffer_hw_tests::nvidia_smi_gpus;
use cofferd::config::GpuConfig;
use cofferd::config::GpuThresholds;
use cofferd::metrics::Metrics;
use cofferd::monitoring::gpu::metrics::GpuMetrics;
use cofferd::monitoring::gpu::{self, Sinks};
use cofferd::monitoring::readiness::Readiness;

/// The value of the metric `name` whose labels include `uuid`, from the text exposition.
fn gauge(text: &str, name: &str, uuid: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(uuid))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn the_monitor_publishes_what_nvidia_smi_reads() {
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        eprintln!("skipped: no /dev/nvidiactl");
        return;
    }
    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::default());
    let config = GpuConfig {
        enabled: true,
        interval: Duration::from_millis(200),
        recover_after: 3,
        thresholds: GpuThresholds {
            temperature_margin_c: 5,
            sbe_per_sample: 10,
            pcie_replays_per_sample: 100,
        },
        simulate: None,
        models: Default::default(),
        devices: Default::default(),
    };
    let health = gpu::start(
        &config,
        Sinks {
            readiness: Arc::clone(&readiness),
            metrics: GpuMetrics::register(&metrics),
            audit: None,
            telemetry: None,
            fallbacks: String::new(),
        },
    )
    .expect("the monitor starts");
    health.wait_first_sample(Duration::from_secs(10));
    // Metrics are recorded before a GPU counts as sampled; readiness is published once the
    // whole sample is done, just after the last GPU counts: allow it that moment.
    std::thread::sleep(Duration::from_millis(500));

    let gpu_state = readiness.snapshot().remove("gpu").expect("a gpu component");
    assert!(gpu_state.ready, "{}", gpu_state.detail);
    assert!(gpu_state.detail.contains("healthy"), "{}", gpu_state.detail);

    let text = metrics.render();
    assert!(text.contains("coffer_gpu_present 1"), "{text}");
    let gpus = nvidia_smi_gpus();
    assert!(!gpus.is_empty());
    for smi in &gpus {
        let uuid = smi.uuid.as_str();
        let temp = gauge(&text, "DCGM_FI_DEV_GPU_TEMP", uuid).expect("temperature metric");
        assert!(
            (temp - smi.temperature_c).abs() <= 5.0,
            "{uuid}: {temp} vs {}",
            smi.temperature_c
        );
        let used = gauge(&text, "DCGM_FI_DEV_FB_USED", uuid).expect("memory used metric");
        let free = gauge(&text, "DCGM_FI_DEV_FB_FREE", uuid).expect("memory free metric");
        let total = smi.memory_total_mib as f64;
        assert!(
            (used + free - total).abs() <= total * 0.02,
            "{uuid}: used {used} + free {free} MiB vs total {total} MiB"
        );
        if let (Some(limit), Some(w)) = (
            gauge(&text, "DCGM_FI_DEV_ENFORCED_POWER_LIMIT", uuid),
            smi.power_limit_w,
        ) {
            assert!(
                (limit - w).abs() <= 1.0,
                "{uuid}: power limit {limit} vs {w}"
            );
        }
        let state = gauge(&text, "coffer_gpu_state", uuid).expect("state metric");
        assert_eq!(state, 0.0, "{uuid}: healthy is 0");
        println!("{uuid}: {temp} C, {used}/{total} MiB used, state healthy");
    }
}
