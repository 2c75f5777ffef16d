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

/// `verify-checkpoint`, as a fleet admin runs it on a shipped checkpoint's attributes:
/// no configuration file needed, exit status 1 when the signature does not verify.
#[test]
fn verify_checkpoint_checks_a_shipped_signature() {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let public_key = hex::encode(key.public_key().as_ref());
    let hash = "5e".repeat(32);
    // The statement cofferd signs (daemon/src/audit/signing.rs).
    let signature = hex::encode(
        key.sign(format!("coffer-audit-checkpoint:1000:{hash}").as_bytes())
            .as_ref(),
    );
    let run = |seq: &str, sig: &str| {
        Command::new(env!("CARGO_BIN_EXE_coffer-agent"))
            .args(["--config", "/nonexistent/agent.toml", "verify-checkpoint"])
            .args(["--public-key", &public_key, "--upto-seq", seq])
            .args(["--upto-hash", &hash, "--signature", sig])
            .output()
            .expect("coffer-agent runs")
    };
    let out = run("1000", &signature);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoint OK"));
    let out = run("999", &signature);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not verify"));
    let out = run("1000", &"00".repeat(64));
    assert_eq!(out.status.code(), Some(1));
}
