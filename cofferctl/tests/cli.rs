//! The `cofferctl` binary as an admin runs it, for the commands that need no daemon
//! (the daemon's own tests run the admin commands against a real cofferd): `redact`,
//! `tls host-cert`, `audit verify`, and what it says when there is no daemon.

use std::io::Write as _;
use std::process::{Command, Stdio};

const COFFERCTL: &str = env!("CARGO_BIN_EXE_cofferctl");

#[test]
fn redact_cleans_a_log_excerpt_without_a_daemon() {
    let input = "2024-03-07 12:00:01 INFO 客户卡号6222 0212 3456 7890 124申请\n\
                 card ４１１１－１１１１－１１１１－１１１１ declined, call +86 138-1234-5678\n\
                 ID 11010519491231002X mail zhang.san@bank.cn from 10.20.30.40\n\
                 order ORD-2024-000123 amount ¥12,345.67\n";
    let mut child = Command::new(COFFERCTL)
        .arg("redact")
        // No socket exists: redact must not need one.
        .env("COFFER_ADMIN_SOCKET", "/nonexistent/admin.sock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cofferctl starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("cofferctl ends");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        text,
        "2024-03-07 12:00:01 INFO 客户卡号[PAN]申请\n\
         card [PAN] declined, call [PHONE]\n\
         ID [CN_ID] mail [EMAIL] from [IP]\n\
         order ORD-2024-000123 amount ¥12,345.67\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redacted 6 identifiers"), "{stderr}");
    assert!(stderr.contains("[PAN] 2"), "{stderr}");
}

#[test]
fn host_cert_writes_a_pair_once_and_exits_3_rather_than_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("key.pem"));
    let run = |force: bool| {
        let mut cmd = Command::new(COFFERCTL);
        cmd.args([
            "tls",
            "host-cert",
            "--name",
            "branch-7.bank.example",
            "--cert",
        ])
        .arg(&cert)
        .arg("--key")
        .arg(&key);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let first = run(false);
    assert!(first.status.success(), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("SELF-SIGNED"));
    let before = std::fs::read(&key).unwrap();
    let again = run(false);
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    assert!(run(true).status.success());
    assert_ne!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn audit_verify_passes_a_clean_log_and_names_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let settings = coffer_audit::test_support::settings_for(dir.path());
    coffer_audit::test_support::write_events(settings, 20);
    let verify = |json: bool| {
        let mut cmd = Command::new(COFFERCTL);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["audit", "verify", "--dir"]).arg(dir.path());
        cmd.output().unwrap()
    };
    let ok = verify(false);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("audit log OK: "));
    let (segment, text) = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .next()
        .unwrap();
    std::fs::write(&segment, text.replacen("key-3", "key-X", 1)).unwrap();
    let bad = verify(true);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("record"), "{v}");
}

#[test]
fn without_a_daemon_the_socket_is_named() {
    let out = Command::new(COFFERCTL)
        .args(["--socket", "/nonexistent/admin.sock", "models", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/admin.sock") && stderr.contains("is cofferd running"),
        "{stderr}"
    );
}
