//! systemd notifications and the drain: READY=1, STOPPING=1, in-flight requests finish
//! after SIGTERM while new connections are refused, a second signal exits at once.

use std::time::{Duration, Instant};

use http::StatusCode;
use rustix::process::Signal;

use crate::common::{Client, RawConn, Setup};

/// Holds a request in flight and waits until the server counts it.
async fn hold_request(c: &Client, key: &str) -> RawConn {
    let mut held = RawConn::open(c).await;
    held.post_head("/v2/repository/index", key, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.get("/metrics", Some(key)).await;
        let text = String::from_utf8_lossy(&r.body).to_string();
        // The metrics request itself is in flight too.
        if text.contains("coffer_http_in_flight 2") {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "held request never admitted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refused(c: &Client) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(c.addr()).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let s = Setup::new();
    let mut d = s.start().await;
    assert!(
        d.notify.seen.iter().any(|l| l == "READY=1"),
        "{:?}",
        d.notify.seen
    );
    let key = s.create_key("ops", "score,metrics", None);
    let c = s.client(d.addr);
    let mut held = hold_request(&c, &key).await;

    d.signal(Signal::TERM);
    let stopping = d
        .notify
        .wait_for(|l| l == "STOPPING=1", Duration::from_secs(10))
        .await;
    assert!(stopping.is_some(), "no STOPPING=1: {:?}", d.notify.seen);
    assert!(
        refused(&c).await,
        "new connections still accepted while draining"
    );

    held.send(b"{}").await;
    assert_eq!(held.read_status().await, 200);
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)),
        Some(0),
        "log:\n{}",
        d.log()
    );
}

#[tokio::test]
async fn second_signal_exits_without_waiting_for_the_drain() {
    let s = Setup::new();
    let mut d = s.start().await;
    let key = s.create_key("ops", "score,metrics", None);
    let c = s.client(d.addr);
    let _held = hold_request(&c, &key).await;
    d.signal(Signal::TERM);
    assert!(
        d.notify
            .wait_for(|l| l == "STOPPING=1", Duration::from_secs(10))
            .await
            .is_some()
    );
    assert_eq!(
        d.wait_exit(Duration::from_millis(500)),
        None,
        "exited while a request was in flight"
    );
    d.signal(Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(1));
}

#[tokio::test]
async fn drain_is_cut_off_after_the_grace_period() {
    let mut s = Setup::new();
    s.server_extra = "shutdown_grace = \"300ms\"".into();
    let mut d = s.start().await;
    let key = s.create_key("ops", "score,metrics", None);
    let c = s.client(d.addr);
    let _held = hold_request(&c, &key).await;
    let start = Instant::now();
    d.signal(Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn readiness_is_reported_without_secrets() {
    let s = Setup::new();
    let d = s.start().await;
    let key = s.create_key("ops", "metrics", None);
    let r = s.client(d.addr).get("/readyz", Some(&key)).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&r.body);
    assert!(!text.contains("pki") && !text.contains(&key), "{text}");
    d.stop();
}

#[tokio::test]
async fn watchdog_is_pinged_when_systemd_asks_for_it() {
    let s = Setup::new();
    // systemd sets WATCHDOG_PID to the service's pid: `exec` keeps the shell's.
    let notify_path = s.dir().join("notify-wd.sock");
    let socket = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let child = std::process::Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" \"$@\"",
            crate::common::COFFERD,
            "serve",
            "--config",
        ])
        .arg(s.write_config())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut d = crate::common::Daemon::adopt(child, socket, s.dir()).await;
    let ping = d
        .notify
        .wait_for(|l| l == "WATCHDOG=1", Duration::from_secs(5))
        .await;
    assert!(ping.is_some(), "no watchdog ping: {:?}", d.notify.seen);
    d.stop();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = Setup::new();
    s.server_extra = "header_read_timeout = \"300ms\"".into();
    let d = s.start().await;
    let c = s.client(d.addr);
    let mut slow = c.tls().await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: local")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "slow client still connected after 5 s");
    // Other clients are served meanwhile.
    assert_eq!(c.get("/healthz", None).await.status, StatusCode::OK);
    d.stop();
}
