//! Admin socket roles with real peers: `cofferctl` run as an `agent` uid may list and
//! import models but not manage keys (403 `role_not_allowed`), a uid in neither list may
//! do nothing (403 `peer_not_allowed`), and each refusal is in the audit log with the
//! caller's uid and role, never a path the caller chose.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

use crate::common::{Setup, cofferctl};

const AGENT_UID: u32 = 64_999;
const STRANGER_UID: u32 = 64_998;

fn as_uid(setup: &Setup, uid: u32, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "--".into(),
        ])
        .arg(cofferctl())
        .arg("--socket")
        .arg(setup.socket())
        .args(args)
        .output()
        .unwrap()
}

fn can_switch_users() -> bool {
    let root = rustix::process::geteuid().is_root();
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !(root && setpriv) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with setpriv (util-linux)"
        );
        eprintln!("skipped: needs root and setpriv to connect as other uids");
    }
    root && setpriv
}

#[tokio::test]
async fn an_agent_makes_the_agents_calls_only_and_refusals_are_audited() {
    if !can_switch_users() {
        return;
    }
    let s = Setup::new();
    // `Setup` writes `[admin]` with the socket; the agent's uid joins it there.
    let d = {
        let config = s.write_config();
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "[admin]\n",
            &format!("[admin]\nagent_uids = [{AGENT_UID}]\n"),
        );
        std::fs::write(&config, text).unwrap();
        crate::common::Daemon::start(config, s.dir()).await
    };
    // Other uids must reach the socket to be judged by their credentials.
    for path in [s.dir().to_path_buf(), s.socket()] {
        let mode = if path.is_dir() { 0o755 } else { 0o666 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    let list = as_uid(&s, AGENT_UID, &["models", "list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let keys = as_uid(
        &s,
        AGENT_UID,
        &["keys", "create", "--name", "x", "--scopes", "chat"],
    );
    assert!(!keys.status.success());
    assert!(
        String::from_utf8_lossy(&keys.stderr).contains("agent role"),
        "{}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let stranger = as_uid(&s, STRANGER_UID, &["models", "list"]);
    assert!(!stranger.status.success());
    assert!(
        String::from_utf8_lossy(&stranger.stderr).contains("may not use the admin socket"),
        "{}",
        String::from_utf8_lossy(&stranger.stderr)
    );
    // Root (an admin) still manages keys.
    assert!(
        s.ctl(&["keys", "create", "--name", "y", "--scopes", "chat"])
            .status
            .success()
    );
    d.stop();

    let audit = crate::common::audit_text(&s.dir().join("state/audit"));
    let admin: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .filter(|e| e["kind"] == "admin")
        .collect();
    assert!(
        admin.iter().any(|e| e["uid"] == AGENT_UID
            && e["role"] == "agent"
            && e["action"] == "keys.create"
            && e["status"] == 403),
        "{admin:?}"
    );
    assert!(
        admin
            .iter()
            .any(|e| e["uid"] == STRANGER_UID && e.get("role").is_none() && e["status"] == 403),
        "{admin:?}"
    );
    assert!(
        admin.iter().any(|e| e["uid"] == 0
            && e["role"] == "admin"
            && e["action"] == "keys.create"
            && e["status"] == 201),
        "{admin:?}"
    );
}
