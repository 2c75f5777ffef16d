//! On a GPU host with systemd: `nvidia-smi -q` runs inside a transient unit with every
//! sandboxing directive of `systemd/cofferd.service`, and fails with
//! `PrivateDevices=yes` added (the control: it shows the check can see a hidden GPU).
//! Skipped, with a message, on hosts without an NVIDIA device, nvidia-smi or systemd.

use std::path::Path;
use std::process::Command;

use coffer_hw_tests::sandbox_properties;

fn gpu_host_with_systemd() -> Result<(), String> {
    if !Path::new("/dev/nvidiactl").exists() {
        return Err("no /dev/nvidiactl".into());
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return Err("systemd is not PID 1".into());
    }
    let smi = Command::new("sh")
        .args(["-c", "command -v nvidia-smi && command -v systemd-run"])
        .output()
        .map_err(|e| e.to_string())?;
    if !smi.status.success() {
        return Err("nvidia-smi or systemd-run missing".into());
    }
    Ok(())
}

fn nvidia_smi_in(props: &[String]) -> std::process::Output {
    let mut cmd = Command::new("systemd-run");
    cmd.args(["--wait", "--pipe", "--collect", "--quiet"]);
    for p in props {
        cmd.arg("--property").arg(p);
    }
    cmd.args(["nvidia-smi", "-q"]);
    cmd.output().expect("systemd-run runs")
}

#[test]
fn nvidia_smi_works_inside_cofferds_sandbox() {
    if let Err(why) = gpu_host_with_systemd() {
        eprintln!("skipped: {why}");
        return;
    }
    let unit = include_str!("../../systemd/cofferd.service");
    let props = sandbox_properties(unit);
    let out = nvidia_smi_in(&props);
    assert!(
        out.status.success(),
        "nvidia-smi fails inside cofferd's sandbox:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Product Name"));

    let mut hidden = props;
    hidden.push("PrivateDevices=yes".into());
    let out = nvidia_smi_in(&hidden);
    assert!(
        !out.status.success(),
        "with PrivateDevices=yes the GPU must be unreachable; the check cannot see a hidden GPU"
    );
}
