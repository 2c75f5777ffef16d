//! Helpers for the integration tests: a test PKI (CA, server and client certificates),
//! the real `cofferd` started as a child process on 127.0.0.1:0 with a notify socket,
//! an HTTPS client with real TLS, and `cofferctl` runs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpStream, UnixDatagram};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const COFFERD: &str = env!("CARGO_BIN_EXE_cofferd");
/// The `cofferctl` binary (package `cofferctl`) beside cofferd's: `cargo test
/// --workspace` builds it with its own tests, before any test runs.
pub fn cofferctl() -> std::path::PathBuf {
    let path = std::path::Path::new(COFFERD).with_file_name("cofferctl");
    assert!(
        path.is_file(),
        "{} is not built: run the workspace's tests (cargo test --workspace), or cargo build -p cofferctl first",
        path.display()
    );
    path
}

/// A CA and the certificates it signed, written as PEM files into a directory.
pub struct Pki {
    pub dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), ca_cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_cert,
            ca_key,
        }
    }

    pub fn ca_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-ca.pem"))
    }

    /// Issues a leaf certificate; writes `<file>.pem` and `<file>-key.pem`, returns its DER.
    pub fn issue(&self, file: &str, common_name: &str, sans: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        std::fs::write(self.dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(
            self.dir.join(format!("{file}-key.pem")),
            key.serialize_pem(),
        )
        .unwrap();
        cert.der().to_vec()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(format!("{file}.pem"))
    }
}

/// Identifiers a client may send; none may show up in the daemon's log or anything it
/// writes or ships.
pub const PII: [&str; 4] = [
    "4111111111111111",
    "11010519491231002X",
    "13812345678",
    "zhang.san@bank.cn",
];

/// An identifier in the spellings people use: plain, grouped by 4 with spaces, dashes
/// or dots, and full-width.
pub fn spellings(id: &str) -> Vec<String> {
    let digits: Vec<char> = id.chars().collect();
    let grouped = |sep: &str| {
        digits
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(sep)
    };
    let full_width: String = id
        .chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect();
    let mut all = vec![id.to_string(), full_width];
    if !id.contains('@') {
        all.extend([grouped(" "), grouped("-"), grouped(".")]);
    }
    all
}

/// An HPACK string length (7-bit prefix integer, no Huffman coding).
fn hpack_len(out: &mut Vec<u8>, len: usize) {
    if len < 127 {
        out.push(u8::try_from(len).unwrap());
        return;
    }
    out.push(127);
    let mut rest = len - 127;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).unwrap() | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).unwrap());
}

fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The bytes of an HTTP/2 connection's start and one request on stream 1, written by
/// hand so that a test can send what a well-behaved client would not: the preface, a
/// SETTINGS frame (with `initial_window` as SETTINGS_INITIAL_WINDOW_SIZE when given: 0
/// means the server may send no DATA at all), a HEADERS frame whose block is HPACK
/// literals sent as they are, and the body as one DATA frame.
pub fn h2_request_frames(
    method: &str,
    path: &str,
    authority: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    initial_window: Option<u32>,
) -> Vec<u8> {
    let mut block = Vec::new();
    let pseudo = [
        (":method", method),
        (":scheme", "https"),
        (":path", path),
        (":authority", authority),
    ];
    for (name, value) in pseudo.iter().chain(headers) {
        // Literal header field without indexing, new name.
        block.push(0x00);
        hpack_len(&mut block, name.len());
        block.extend_from_slice(name.as_bytes());
        hpack_len(&mut block, value.len());
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let settings = initial_window.map_or_else(Vec::new, |w| {
        let mut p = vec![0, 4];
        p.extend_from_slice(&w.to_be_bytes());
        p
    });
    h2_frame(&mut out, 0x04, 0, 0, &settings);
    let end_stream = if body.is_empty() { 0x01 } else { 0 };
    h2_frame(&mut out, 0x01, 0x04 | end_stream, 1, &block);
    if !body.is_empty() {
        h2_frame(&mut out, 0x00, 0x01, 1, body);
    }
    out
}

/// [`h2_request_frames`] for a plain `GET path`.
pub fn h2_get_frames(path: &str, authority: &str) -> Vec<u8> {
    h2_request_frames("GET", path, authority, &[], b"", None)
}

/// A test setup: temp dir, server PKI, and extra lines for the config's tables.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub pki: Pki,
    pub server_extra: String,
    pub tls_extra: String,
    pub admission_extra: String,
    pub telemetry_extra: String,
    /// Lines of the `[gpu]` section (and its `[gpu.models.*]` tables after them).
    pub gpu_extra: String,
    /// Lines of the `[chat]` section.
    pub chat_extra: String,
    /// Lines of the `[embedding]` section.
    pub embedding_extra: String,
    pub scoring_models: Vec<PathBuf>,
    /// Lines of the `[scoring]` section after `models`.
    pub scoring_extra: String,
    /// Lines of the `[audit]` section.
    pub audit_extra: String,
    /// Lines of the `[decisions]` table.
    pub decisions_extra: String,
}

impl Setup {
    pub fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::new(&tmp.path().join("pki"), "server");
        pki.issue("server", "localhost", &["localhost", "127.0.0.1"]);
        Setup {
            tmp,
            pki,
            server_extra: String::new(),
            tls_extra: String::new(),
            admission_extra: String::new(),
            telemetry_extra: String::new(),
            gpu_extra: String::new(),
            chat_extra: String::new(),
            embedding_extra: String::new(),
            scoring_models: Vec::new(),
            scoring_extra: String::new(),
            audit_extra: String::new(),
            decisions_extra: String::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("admin.sock")
    }

    /// Writes the configuration file and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let d = self.dir();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
             [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n{tls}\n\
             [admission]\n{admission}\n\
             [state]\ndir = \"{state}\"\n\
             [admin]\nsocket = \"{sock}\"\n\
             [scoring]\nmodels = [{models}]\n{scoring}\n\
             [telemetry]\n{telemetry}\n\
             [chat]\n{chat}\n\
             [embedding]\n{embedding}\n\
             [gpu]\n{gpu}\n\
             [audit]\n{audit}\n\
             [decisions]\n{decisions}\n",
            server = self.server_extra,
            cert = self.pki.path("server").display(),
            key = self.pki.path("server-key").display(),
            tls = self.tls_extra,
            admission = self.admission_extra,
            telemetry = self.telemetry_extra,
            gpu = self.gpu_extra,
            chat = self.chat_extra,
            embedding = self.embedding_extra,
            scoring = self.scoring_extra,
            audit = self.audit_extra,
            decisions = self.decisions_extra,
            state = d.join("state").display(),
            sock = self.socket().display(),
            models = self
                .scoring_models
                .iter()
                .map(|p| format!("\"{}\"", p.display()))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let path = d.join("cofferd.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub async fn start(&self) -> Daemon {
        Daemon::start(self.write_config(), self.dir()).await
    }

    /// Runs `cofferctl --socket <this setup's socket> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(cofferctl())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    /// Creates a key and returns its token.
    pub fn create_key(&self, name: &str, scopes: &str, rate: Option<(&str, u32)>) -> String {
        let mut args = vec![
            "--json", "keys", "create", "--name", name, "--scopes", scopes,
        ];
        let burst;
        if let Some((r, b)) = rate {
            burst = b.to_string();
            args.extend(["--rate", r, "--burst", &burst]);
        }
        let out = self.ctl(&args);
        assert!(
            out.status.success(),
            "cofferctl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    pub fn client(&self, addr: SocketAddr) -> Client {
        Client::new(addr, &self.pki.ca_path("server"), None)
    }
}

/// Collects systemd notifications sent by the child.
pub struct Notifications {
    socket: UnixDatagram,
    pub seen: Vec<String>,
}

impl Notifications {
    /// Waits for a notification line that satisfies `pred`; returns it.
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let n = tokio::time::timeout(left, self.socket.recv(&mut buf))
                .await
                .ok()?
                .ok()?;
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let mut found = None;
            for line in msg.lines() {
                self.seen.push(line.to_string());
                if found.is_none() && pred(line) {
                    found = Some(line.to_string());
                }
            }
            if found.is_some() {
                return found;
            }
        }
    }
}

/// A running cofferd child process.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub notify: Notifications,
    stderr_path: Option<PathBuf>,
}

impl Daemon {
    pub async fn start(config: PathBuf, dir: &Path) -> Daemon {
        Daemon::start_logging(config, dir, "info").await
    }

    /// [`Daemon::start`] with `RUST_LOG` set to `level`.
    pub async fn start_logging(config: PathBuf, dir: &Path, level: &str) -> Daemon {
        let notify_path = dir.join(format!("notify-{}.sock", rand_suffix()));
        let socket = UnixDatagram::bind(&notify_path).unwrap();
        let stderr_path = dir.join(format!("cofferd-{}.log", rand_suffix()));
        let child = Command::new(COFFERD)
            .args(["serve", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon::adopt(child, socket, dir).await;
        daemon.stderr_path = Some(stderr_path);
        daemon
    }

    /// Waits for a started child's `STATUS=listening on https://ADDR` notification.
    pub async fn adopt(mut child: Child, socket: UnixDatagram, _dir: &Path) -> Daemon {
        let mut notify = Notifications {
            socket,
            seen: Vec::new(),
        };
        let status = notify
            .wait_for(
                |l| l.starts_with("STATUS=listening on https://"),
                Duration::from_secs(30),
            )
            .await;
        let Some(status) = status else {
            let _ = child.kill();
            panic!(
                "cofferd did not report its address; notifications: {:?}",
                notify.seen
            );
        };
        let addr = status
            .trim_start_matches("STATUS=listening on https://")
            .parse()
            .unwrap();
        Daemon {
            child,
            addr,
            notify,
            stderr_path: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident set size in bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    pub fn log(&self) -> String {
        self.stderr_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stop(mut self) {
        self.signal(rustix::process::Signal::TERM);
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// An HTTPS client over real TLS; one keep-alive HTTP/1.1 connection per `connect`.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    roots: Arc<rustls::RootCertStore>,
    identity: Option<(PathBuf, PathBuf)>,
    alpn: Vec<Vec<u8>>,
    tls12_only: bool,
}

/// One open connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    pub peer_cert: Vec<u8>,
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }
}

impl Client {
    pub fn new(addr: SocketAddr, ca: &Path, identity: Option<(&Path, &Path)>) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        Client {
            addr,
            roots: Arc::new(roots),
            identity: identity.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
            alpn: Vec::new(),
            tls12_only: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn with_alpn(mut self, protocols: &[&[u8]]) -> Client {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    pub fn tls12_only(mut self) -> Client {
        self.tls12_only = true;
        self
    }

    fn connector(&self) -> TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(Arc::clone(&self.roots));
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let key = PrivateKeyDer::from_pem_file(key).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        TlsConnector::from(Arc::new(config))
    }

    pub async fn tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        self.connector()
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// A TLS connection from a chosen local address (any of 127.0.0.0/8 on loopback).
    pub async fn tls_from(
        &self,
        source: std::net::IpAddr,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let tcp = socket.connect(self.addr).await?;
        self.connector()
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    pub async fn connect(&self) -> std::io::Result<Conn> {
        let tls = self.tls().await?;
        let peer_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Conn { sender, peer_cert })
    }

    /// One request on a fresh connection.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: &[u8],
    ) -> Resp {
        self.connect()
            .await
            .unwrap()
            .request(method, path, key, body)
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Resp {
        self.request(Method::GET, path, key, b"").await
    }
}

impl Conn {
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<Resp, hyper::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str, key: Option<&str>) -> Result<Resp, hyper::Error> {
        self.request(Method::GET, path, key, b"").await
    }

    /// A POST with extra headers; panics on transport errors.
    pub async fn request_with_headers(
        &mut self,
        method: Method,
        path: &str,
        key: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {key}"));
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = self
            .sender
            .send_request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// A hand-driven HTTP/1.1 exchange over TLS, to hold a request in flight: headers (and
/// part of a body) now, the rest later.
pub struct RawConn {
    pub tls: TlsStream<TcpStream>,
}

impl RawConn {
    pub async fn open(client: &Client) -> RawConn {
        RawConn {
            tls: client.tls().await.unwrap(),
        }
    }

    /// Sends a POST's head declaring `len` body bytes, and no body yet.
    pub async fn post_head(&mut self, path: &str, key: &str, len: usize) {
        use tokio::io::AsyncWriteExt as _;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        );
        self.tls.write_all(head.as_bytes()).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt as _;
        self.tls.write_all(bytes).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// Reads until the response head is complete; returns the status code.
    pub async fn read_status(&mut self) -> u16 {
        use tokio::io::AsyncReadExt as _;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = self.tls.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// A fixture model version directory shipped in `models/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/fixtures")
        .join(name)
        .join("1.0.0")
}

/// The evaluation set of a fixture model.
pub fn eval_set(name: &str) -> coffer_models::evalset::EvalSet {
    let bytes = std::fs::read(fixture(name).join("eval/holdout.json")).unwrap();
    coffer_models::evalset::EvalSet::parse(&bytes).unwrap()
}

/// A small tmpfs mounted for a test, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where this process may not mount (no CAP_SYS_ADMIN).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The value of the sample whose line starts with `name_and_labels` in a metrics text.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The text of every audit segment (`audit-*`) under an audit directory, in name order.
pub fn audit_text(dir: &Path) -> String {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("audit-"))
        .map(|e| e.path())
        .collect();
    segments.sort();
    segments
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// A status and body from the admin socket, as they came.
#[derive(Debug)]
pub struct RawReply {
    pub status: http::StatusCode,
    pub body: bytes::Bytes,
}

/// One admin call with any JSON body, below the typed client: for tests of what cofferd
/// answers to calls the client never makes (malformed bodies, raw listings).
pub async fn admin_raw(
    socket: &std::path::Path,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> Result<RawReply, String> {
    use http_body_util::BodyExt as _;
    let call = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(bytes)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(RawReply { status, body })
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}
