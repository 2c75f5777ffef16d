//! One-request HTTP/1.1 exchanges: with cofferd over its admin Unix socket, and with the
//! sinks over TCP, with TLS (rustls, the configured CA bundle) for https URLs. Each
//! exchange has a timeout; a fresh connection per request keeps failure handling simple
//! at telemetry's request rate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Why an exchange failed before a status came back.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("TLS with {target}: {source}")]
    Tls {
        target: String,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Protocol(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("CA bundle {path}: {what}")]
    CaBundle { path: String, what: String },
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<Reply, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply { status, body })
}

/// A request to cofferd's admin socket.
pub async fn admin(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> Result<Reply, HttpError> {
    let run = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| HttpError::Connect {
                target: socket.display().to_string(),
                source,
            })?;
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))?;
        exchange(stream, request).await
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

/// TLS settings for https sinks.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Trusts exactly the certificates in a PEM bundle.
    pub fn from_bundle(path: &Path) -> Result<Tls, HttpError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let bad = |what: String| HttpError::CaBundle {
            path: path.display().to_string(),
            what,
        };
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        for cert in certs {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("holds no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls(Arc::new(config)))
    }
}

/// A POST to a sink URL.
pub async fn post(
    url: &Uri,
    tls: Option<&Tls>,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<Reply, HttpError> {
    let host = url.host().unwrap_or("localhost").to_string();
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let target = format!("{host}:{port}");
    let run = async {
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|source| HttpError::Connect {
                target: target.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(
                http::header::HOST,
                url.authority().map(|a| a.as_str()).unwrap_or(&host),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        if https {
            let Some(tls) = tls else {
                return Err(HttpError::Tls {
                    target: target.clone(),
                    source: std::io::Error::other("https needs telemetry.ca_bundle"),
                });
            };
            let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                HttpError::Tls {
                    target: target.clone(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.0))
                .connect(name, tcp)
                .await
                .map_err(|source| HttpError::Tls {
                    target: target.clone(),
                    source,
                })?;
            exchange(stream, request).await
        } else {
            exchange(tcp, request).await
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}
