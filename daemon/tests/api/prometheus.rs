//! A real Prometheus for the tests (the Debian package): started on a free port with
//! its remote-write receiver on, asked through its HTTP API, killed at the end.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

pub fn prometheus_binary() -> Option<PathBuf> {
    let candidates = [PathBuf::from("/usr/bin/prometheus")];
    candidates.into_iter().find(|p| p.exists()).or_else(|| {
        let out = Command::new("sh")
            .args(["-c", "command -v prometheus"])
            .output()
            .ok()?;
        let path = String::from_utf8(out.stdout).ok()?;
        let path = PathBuf::from(path.trim());
        path.exists().then_some(path)
    })
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The prometheus binary, or `None` after saying that `test` is skipped; under CI a
/// missing binary fails the test.
pub fn installed(test: &str) -> Option<PathBuf> {
    let binary = prometheus_binary();
    if binary.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install prometheus (see .ci/run)"
        );
        eprintln!("prometheus not installed; skipping {test}");
    }
    binary
}

pub struct Prometheus {
    pub port: u16,
    child: Child,
}

impl Prometheus {
    pub async fn start(binary: &Path, dir: &Path, port: u16) -> Prometheus {
        Prometheus::start_with(binary, dir, port, "").await
    }

    /// Started in `parent/prom` on a free port, with `extra` configuration.
    pub async fn under(binary: &Path, parent: &Path, extra: &str) -> Prometheus {
        let dir = parent.join("prom");
        std::fs::create_dir_all(&dir).unwrap();
        Prometheus::start_with(binary, &dir, free_port(), extra).await
    }

    /// The fleet tools' client of this Prometheus.
    pub fn client(&self) -> coffer_fleet::prom::Prometheus {
        coffer_fleet::prom::Prometheus::new(
            &format!("http://127.0.0.1:{}", self.port),
            None,
            None,
            Duration::from_secs(20),
        )
        .unwrap()
    }

    /// [`Prometheus::start`] with more configuration (e.g. `scrape_configs:`).
    pub async fn start_with(binary: &Path, dir: &Path, port: u16, extra: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, format!("global:\n  scrape_interval: 1m\n{extra}")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus { child, port };
        for _ in 0..300 {
            if p.get("/-/ready").await.is_some_and(|(s, _)| s == 200) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "prometheus did not become ready: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The result vector of an instant query.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = self
            .get(&format!("/api/v1/query?query={q}"))
            .await
            .expect("query answered");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
