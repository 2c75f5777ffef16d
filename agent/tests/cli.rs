//! The `coffer-agent` binary's configuration check, as systemd's `ExecStartPre` runs it:
//! the shipped configuration passes, a broken one fails naming the key, and `--once`
//! without a sink refuses instead of draining cofferd's spool into nowhere.

use std::process::Command;

fn agent(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coffer-agent"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("coffer-agent runs")
}

#[test]
fn shipped_config_checks_and_broken_ones_are_named() {
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/etc/agent.toml");
    let out = agent(&shipped, &["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("agent.toml");
    std::fs::write(&bad, "[telemetry]\ninterval = \"often\"\n").unwrap();
    let out = agent(&bad, &["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("telemetry.interval"), "{err}");

    let out = agent(&shipped, &["telemetry", "--once"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no telemetry sink"), "{err}");
}
