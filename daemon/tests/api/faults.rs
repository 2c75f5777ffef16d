//! Faults: garbage on the TLS port, hundreds of slowloris connections, and kill -9 in
//! the middle of traffic followed by a restart.

use std::time::{Duration, Instant};

use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{COFFERCTL, Setup, fixture};

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
    // 250 that never finish the TLS handshake, 250 that never finish their headers.
    let mut held = Vec::new();
    for _ in 0..250 {
        let mut s = TcpStream::connect(daemon.addr).await.unwrap();
        let _ = s.write_all(&[0x16, 0x03, 0x01]).await;
        held.push(s);
    }
    let mut slow = Vec::new();
    for _ in 0..250 {
        let mut t = client.tls().await.unwrap();
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
    let out = std::process::Command::new(COFFERCTL)
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
