//! `cofferd serve --dev`: certificates, a first key and dev.env on first start, all
//! reused on the second; loopback only.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use http::StatusCode;
use rustix::process::Signal;
use tokio::net::UnixDatagram;

use crate::common::{COFFERD, Client, Daemon};

fn env_value(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("{name} missing from dev.env:\n{text}"))
        .trim_matches('\'')
        .to_string()
}

/// Starts dev mode on a free loopback port; returns the daemon and what it printed.
async fn start_dev(dir: &Path, run: &str) -> (Daemon, String) {
    let notify_path = dir.join(format!("notify-{run}.sock"));
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    let out_path = dir.join(format!("stdout-{run}"));
    let child = Command::new(COFFERD)
        .args(["serve", "--dev", "--listen", "0", "--data-dir"])
        .arg(dir.join("dev"))
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon::adopt(child, socket, dir).await;
    (daemon, std::fs::read_to_string(out_path).unwrap())
}

#[tokio::test]
async fn dev_mode_sets_up_once_and_reuses_after() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, printed) = start_dev(tmp.path(), "1").await;
    let env_path = tmp.path().join("dev/dev.env");
    let env = std::fs::read_to_string(&env_path).unwrap();
    assert_eq!(
        std::fs::metadata(&env_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let url = env_value(&env, "COFFER_URL");
    let ca = env_value(&env, "COFFER_CA");
    let key = env_value(&env, "COFFER_API_KEY");
    assert_eq!(url, format!("https://{}", d.addr));
    assert!(d.addr.ip().is_loopback());
    assert!(
        printed.contains(&url) && printed.contains(&ca) && printed.contains(&key),
        "{printed}"
    );

    let client = Client::new(d.addr, Path::new(&ca), None);
    assert_eq!(client.get("/v2", Some(&key)).await.status, StatusCode::OK);
    assert_eq!(
        client.get("/metrics", Some(&key)).await.status,
        StatusCode::OK
    );
    d.stop();

    let (d, printed) = start_dev(tmp.path(), "2").await;
    assert!(
        !printed.contains(&key),
        "the key was printed again:\n{printed}"
    );
    let env = std::fs::read_to_string(&env_path).unwrap();
    assert_eq!(env_value(&env, "COFFER_API_KEY"), key);
    assert_eq!(env_value(&env, "COFFER_CA"), ca);
    let client = Client::new(d.addr, Path::new(&ca), None);
    assert_eq!(client.get("/v2", Some(&key)).await.status, StatusCode::OK);
    d.signal(Signal::TERM);
}

#[test]
fn dev_mode_refuses_a_non_loopback_address() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(COFFERD)
        .args(["serve", "--dev", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("dev"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
