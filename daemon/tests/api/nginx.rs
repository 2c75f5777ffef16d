//! A real nginx (the Debian package; `.ci/run` installs it) serving a release
//! repository's `public/` tree over TLS on 127.0.0.1, as a branch's release host would,
//! with an access log the tests read (status, Range header, bytes sent).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Pki;

pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

/// One access log line.
#[derive(Debug, Clone)]
pub struct Access {
    pub status: u16,
    pub path: String,
    pub range: String,
    pub bytes: u64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The nginx binary, or `None` (the test then says so and passes, except under CI).
pub fn binary() -> Option<PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install nginx (see .ci/run)"
    );
    eprintln!("nginx is not installed: skipping (apt-get install nginx-light)");
    None
}

impl Nginx {
    /// Serves `root` over https with a certificate from `pki` (CN localhost); target
    /// files are sent at most `rate` bytes per second when set.
    pub fn start(dir: &Path, pki: &Pki, root: &Path, rate: Option<&str>) -> Option<Nginx> {
        let bin = binary()?;
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        pki.issue("release-host", "localhost", &["localhost", "127.0.0.1"]);
        let port = free_port();
        let limit = rate.map(|r| format!("limit_rate {r};")).unwrap_or_default();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  default_type application/octet-stream;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  log_format fleet '$status $request_uri "$http_range" $body_bytes_sent';
  access_log {d}/access.log fleet;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root};
    location /targets/ {{ {limit} }}
  }}
}}
"#,
            d = dir.display(),
            cert = pki.path("release-host").display(),
            key = pki.dir.join("release-host-key.pem").display(),
            root = root.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let nginx = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(nginx)
    }

    /// The repository's base URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }

    /// The access log so far.
    pub fn log(&self) -> Vec<Access> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (status, rest) = l.split_once(' ')?;
                let (path, rest) = rest.split_once(' ')?;
                let (range, bytes) = rest.rsplit_once(' ')?;
                Some(Access {
                    status: status.parse().ok()?,
                    path: path.to_string(),
                    range: range.trim_matches('"').to_string(),
                    bytes: bytes.parse().ok()?,
                })
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
