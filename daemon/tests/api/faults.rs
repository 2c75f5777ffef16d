//! Faults: garbage on the TLS port, hundreds of slowloris connections, and kill -9 in
//! the middle of traffic followed by a restart.

use std::time::{Duration, Instant};

use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{Setup, cofferctl, fixture};

#[tokio::test]
async fn garbage_on_the_tls_port_is_closed_without_a_log_flood() {
    let setup = Setup::new();
    let daemon = setup.start().await;
    let before = daemon.log().lines().count();
    for i in 0..200u32 {
        let mut s = TcpStream::connect(daemon.addr).await.unwrap();
        let garbage: Vec<u8> = (0..512u32)
            .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(17)) as u8)
            .collect();
        let _ = s.write_all(&garbage).await;
        let mut buf = [0u8; 64];
        // The server closes the connection (EOF or reset), it does not hang.
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(read.is_ok(), "connection {i} left open");
    }
    let client = setup.client(daemon.addr);
    assert_eq!(client.get("/healthz", None).await.status, 200);
    let after = daemon.log().lines().count();
    assert!(
        after - before < 10,
        "200 garbage connections wrote {} log lines",
        after - before
    );
    daemon.stop();
}

#[tokio::test]
async fn slowloris_connections_do_not_starve_other_clients() {
    let mut setup = Setup::new();
    setup.server_extra = "header_read_timeout = \"2s\"\ntls_handshake_timeout = \"2s\"\n".into();
    let daemon = setup.start().await;
    let client = setup.client(daemon.addr);
    // 250 that never finish the TLS handshake, 250 that never finish their headers, each
    // group from its own address (within max_connections_per_address).
    let mut held = Vec::new();
    for _ in 0..250 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(daemon.addr).await.unwrap();
        let _ = s.write_all(&[0x16, 0x03, 0x01]).await;
        held.push(s);
    }
    let mut slow = Vec::new();
    for _ in 0..250 {
        let mut t = client.tls_from("127.0.0.3".parse().unwrap()).await.unwrap();
        t.write_all(b"GET /healthz HTTP/1.1\r\nhost: lo")
            .await
            .unwrap();
        slow.push(t);
    }
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(client.get("/healthz", None).await.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served in {:?}",
        started.elapsed()
    );
    // The slow ones are cut off by the timeouts.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), held[0].read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a stalled handshake is closed: {closed:?}"
    );
    drop(held);
    drop(slow);
    daemon.stop();
}

#[tokio::test]
async fn kill_9_under_load_then_restart_keeps_state_consistent() {
    let mut setup = Setup::new();
    setup.scoring_models = vec![fixture("credit-lr")];
    let mut daemon = setup.start().await;
    let token = setup.create_key("scorer", "score", None);
    let client = setup.client(daemon.addr);
    let row = vec![0.3f32; 61];
    let body = serde_json::json!({"inputs": [{"name": "features", "shape": [1, 61], "datatype": "FP32", "data": row}]}).to_string();
    let load = {
        let client = client.clone();
        let token = token.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            for _ in 0..4000 {
                let Ok(mut conn) = client.connect().await else {
                    failed += 1;
                    break;
                };
                for _ in 0..50 {
                    match conn
                        .request(
                            Method::POST,
                            "/v2/models/credit-lr/infer",
                            Some(&token),
                            body.as_bytes(),
                        )
                        .await
                    {
                        Ok(r) if r.status == 200 => ok += 1,
                        _ => {
                            failed += 1;
                            return (ok, failed);
                        }
                    }
                }
            }
            (ok, failed)
        })
    };
    // Keys are created while requests flow; then the process is killed outright.
    for i in 0..5 {
        let out = setup.ctl(&[
            "keys",
            "create",
            "--name",
            &format!("k{i}"),
            "--scopes",
            "score",
        ]);
        assert!(out.status.success());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.signal(rustix::process::Signal::KILL);
    let _ = daemon.wait_exit(Duration::from_secs(5));
    let (ok, _failed) = load.await.unwrap();
    assert!(ok > 0, "traffic flowed before the kill");
    drop(daemon);

    // Restart on the same state: keys are all there, the audit chain verifies (a torn
    // last line is cut off), and requests are served again.
    let daemon = setup.start().await;
    let out = setup.ctl(&["--json", "keys", "list"]);
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 6, "{keys}");
    let client = setup.client(daemon.addr);
    let r = client
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(&token),
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
    daemon.stop();
    let out = std::process::Command::new(cofferctl())
        .args(["audit", "verify", "--dir"])
        .arg(setup.dir().join("state/audit"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mount -o OPTS DIR`, tried again for a while: the kernel refuses to make a mount
/// read-only (EBUSY) while a write through it is in flight, and the daemon's own state
/// probe writes through the bind mount every check interval.
fn mount_opts(dir: &std::path::Path, opts: &str) {
    for _ in 0..100 {
        let ok = std::process::Command::new("mount")
            .args(["-o", opts])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("mount -o {opts}: still refused after 100 tries");
}

async fn wait_ready(client: &crate::common::Client, key: &str, ready: bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client.get("/readyz", Some(key)).await;
        let v = r.json();
        if v["ready"] == ready || Instant::now() > deadline {
            assert_eq!(v["ready"], ready, "{v}");
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_or_read_only_state_directory_is_not_ready_and_recovers() {
    let mut setup = Setup::new();
    let state = setup.dir().join("state");
    let Some(_mount) = crate::common::Tmpfs::mount(&state, "48m") else {
        eprintln!("cannot mount a tmpfs here (needs CAP_SYS_ADMIN); skipping the disk-full test");
        return;
    };
    setup.server_extra.clear();
    setup.telemetry_extra = "interval = \"200ms\"\n".into();
    let config = setup.write_config();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("dir = \"{}\"\n", state.display()),
        &format!(
            "dir = \"{}\"\ncheck_interval = \"100ms\"\nmin_free_bytes = 1048576\n",
            state.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = crate::common::Daemon::start(config, setup.dir()).await;
    let key = setup.create_key("ops", "metrics", None);
    let client = setup.client(daemon.addr);
    wait_ready(&client, &key, true).await;

    // Full: a filler takes the space; readiness says why, the process lives on.
    let filler = state.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status();
    let v = wait_ready(&client, &key, false).await;
    let detail = v["components"]["state"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("full") || detail.contains("free"), "{v}");
    assert_eq!(
        client.get("/healthz", None).await.status,
        200,
        "still alive"
    );
    let r = client.get("/readyz", Some(&key)).await;
    assert_eq!(r.status, 503);
    std::fs::remove_file(&filler).unwrap();
    wait_ready(&client, &key, true).await;

    // Read-only: the same, with its own reason. Remounting a file system with files
    // open for writing read-only is refused (EBUSY), so a read-only bind mount over the
    // directory stands in: new writes through its path fail with EROFS.
    let bound = std::process::Command::new("mount")
        .args(["--bind"])
        .arg(&state)
        .arg(&state)
        .status()
        .unwrap()
        .success();
    assert!(bound, "bind mount");
    mount_opts(&state, "remount,bind,ro");
    let v = wait_ready(&client, &key, false).await;
    assert!(
        v["components"]["state"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("read-only"),
        "{v}"
    );
    assert_eq!(client.get("/healthz", None).await.status, 200);
    let unbound = std::process::Command::new("umount")
        .arg(&state)
        .status()
        .unwrap()
        .success();
    assert!(unbound, "umount the read-only bind");
    wait_ready(&client, &key, true).await;
    let log = daemon.log();
    assert!(
        log.lines().count() < 200,
        "no log flood: {} lines",
        log.lines().count()
    );
    daemon.stop();
}
