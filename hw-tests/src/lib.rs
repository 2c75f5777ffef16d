//! coffer-hw-tests: tests that need a real NVIDIA GPU, and their helpers. Every test
//! skips cleanly (with a message) where no GPU is present, so the crate runs in CI too.
//!
//! Now: cofferd's NVML probe against `nvidia-smi` (`tests/nvml_readings.rs`); the GPU
//! monitor started as the daemon starts it, its readiness and DCGM metrics against
//! `nvidia-smi` (`tests/gpu_monitor_live.rs`); and the hardening of
//! `systemd/cofferd.service` applied to `nvidia-smi` through `systemd-run`, so that a
//! directive that hides the GPU from cofferd is caught on a GPU host
//! (`tests/unit_sandbox.rs`, docs/packaging.md). Not yet: a CUDA build of cofferd serving
//! a fully offloaded chat model, GPU vs CPU output equality and throughput. Run them with
//! `cargo test -p coffer-hw-tests -- --nocapture` on the GPU host.

/// The sandboxing directives of a unit's `[Service]` section, as `Key=Value` strings for
/// `systemd-run --property`. Process settings (user, exec lines, restart, directories)
/// are left out: the check is about what the sandbox lets a process reach.
pub fn sandbox_properties(unit: &str) -> Vec<String> {
    const SANDBOX: &[&str] = &[
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "AmbientCapabilities",
        "SecureBits",
        "RestrictSUIDSGID",
        "PrivateUsers",
        "RemoveIPC",
        "PrivateMounts",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateNetwork",
        "ProtectProc",
        "ProcSubset",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictRealtime",
        "RestrictNamespaces",
        "KeyringMode",
        "DevicePolicy",
        "DeviceAllow",
        "RestrictAddressFamilies",
        "SystemCallArchitectures",
        "SystemCallFilter",
        "SystemCallErrorNumber",
        "UMask",
    ];
    let mut in_service = false;
    let mut found = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            if SANDBOX.contains(&key.trim()) {
                found.push(line.to_string());
            }
        }
    }
    found
}

/// One GPU as `nvidia-smi` reports it: the reference the NVML tests compare with.
#[derive(Debug, Clone)]
pub struct SmiGpu {
    pub uuid: String,
    pub temperature_c: f64,
    pub memory_total_mib: u64,
    /// `None` where the GPU reports no enforced power limit (`[N/A]`).
    pub power_limit_w: Option<f64>,
}

/// Every GPU `nvidia-smi` lists, in its index order. Panics (a failed test) when
/// `nvidia-smi` cannot run or prints what it was not asked for.
pub fn nvidia_smi_gpus() -> Vec<SmiGpu> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=uuid,temperature.gpu,memory.total,enforced.power.limit",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .expect("nvidia-smi runs on a GPU host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(f.len(), 4, "unexpected nvidia-smi line: {line}");
            SmiGpu {
                uuid: f[0].to_string(),
                temperature_c: f[1].parse().expect("a temperature"),
                memory_total_mib: f[2].parse().expect("a memory size"),
                power_limit_w: f[3].parse().ok(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_sandbox_of_the_service_section_only() {
        let unit = "[Unit]\nDescription=x\nPrivateTmp=yes\n[Service]\nUser=coffer\n# DevicePolicy=auto\nDevicePolicy=closed\nDeviceAllow=/dev/nvidiactl rw\nExecStart=/usr/bin/cofferd\nSystemCallFilter=~@mount @swap\n[Install]\nWantedBy=multi-user.target\n";
        assert_eq!(
            sandbox_properties(unit),
            vec![
                "DevicePolicy=closed",
                "DeviceAllow=/dev/nvidiactl rw",
                "SystemCallFilter=~@mount @swap",
            ]
        );
    }

    #[test]
    fn the_shipped_unit_keeps_its_device_policy() {
        let unit = include_str!("../../systemd/cofferd.service");
        let props = sandbox_properties(unit);
        assert!(props.iter().any(|p| p == "DevicePolicy=closed"));
        assert!(
            props
                .iter()
                .filter(|p| p.starts_with("DeviceAllow="))
                .count()
                >= 4
        );
        assert!(!props.iter().any(|p| p.starts_with("User=")));
    }
}
