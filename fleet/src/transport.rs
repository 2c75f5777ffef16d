//! One-request HTTP/1.1 exchanges over TCP, with TLS (rustls, a configured CA bundle) for
//! https URLs: the agent's with its telemetry sinks and the release host, the fleet
//! admin's tools' with the fleet's Prometheus. (cofferd's admin socket is called through
//! `coffer_admin_api::AdminClient`.) Each exchange has a timeout; a fresh connection per
//! request keeps failure handling simple at these request rates. Answers come back
//! whole ([`post`], [`get`], bounded in size), or as a head and a body read as it arrives
//! ([`get_streaming`], for large downloads).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

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
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// The head of an answer whose body is read as it arrives.
#[derive(Debug)]
pub struct Streaming {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Incoming,
}

/// Sends one request over a fresh HTTP/1.1 connection on `stream`; the answer's body is
/// left to the caller.
async fn send<S, B>(stream: S, request: Request<B>) -> Result<Response<Incoming>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(request).await?)
}

/// The most of a POST's answer that is read (sinks answer with a few bytes).
const MAX_POST_ANSWER: usize = 64 << 10;

async fn collect(response: Response<Incoming>, max_bytes: usize) -> Result<Reply, HttpError> {
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| match e.downcast::<hyper::Error>() {
            Ok(e) => HttpError::Protocol(*e),
            Err(_) => HttpError::TooLarge(max_bytes),
        })?
        .to_bytes();
    Ok(Reply { status, body })
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
    let run = async {
        let request = request_to(url, Method::POST, headers).body(Full::new(body))?;
        collect(
            send_tcp(url, tls, "https needs telemetry.ca_bundle", request).await?,
            MAX_POST_ANSWER,
        )
        .await
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

/// A GET whose answer's body is read as it arrives (downloads). The timeout covers the
/// connection, TLS and the answer's head; reading the body is the caller's to bound.
pub async fn get_streaming(
    url: &Uri,
    tls: Option<&Tls>,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Streaming, HttpError> {
    let run = async {
        let request = request_to(url, Method::GET, headers).body(Full::new(Bytes::new()))?;
        send_tcp(url, tls, "https needs a CA bundle", request).await
    };
    let response = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HttpError::Timeout(timeout))??;
    let (head, body) = response.into_parts();
    Ok(Streaming {
        status: head.status,
        headers: head.headers,
        body,
    })
}

/// A GET whose answer comes back whole, refused past `max_bytes`; the timeout covers
/// the whole exchange.
pub async fn get(
    url: &Uri,
    tls: Option<&Tls>,
    headers: &[(&str, &str)],
    timeout: Duration,
    max_bytes: usize,
) -> Result<Reply, HttpError> {
    let run = async {
        let request = request_to(url, Method::GET, headers).body(Full::new(Bytes::new()))?;
        collect(
            send_tcp(url, tls, "https needs a CA bundle", request).await?,
            max_bytes,
        )
        .await
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

/// A request for `url`'s path and query, with `Host` and the extra headers.
fn request_to(url: &Uri, method: Method, headers: &[(&str, &str)]) -> http::request::Builder {
    let mut request = Request::builder()
        .method(method)
        .uri(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(
            http::header::HOST,
            url.authority()
                .map(|a| a.as_str())
                .or(url.host())
                .unwrap_or("localhost"),
        );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

/// Connects to `url`'s host (TLS for https, which needs `tls`; `no_tls` says what to
/// configure) and sends `request`.
async fn send_tcp<B>(
    url: &Uri,
    tls: Option<&Tls>,
    no_tls: &str,
    request: Request<B>,
) -> Result<Response<Incoming>, HttpError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let host = url.host().unwrap_or("localhost").to_string();
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let target = format!("{host}:{port}");
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|source| HttpError::Connect {
            target: target.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    if !https {
        return send(tcp, request).await;
    }
    let tls_error = |e: String| HttpError::Tls {
        target: target.clone(),
        source: std::io::Error::other(e),
    };
    let Some(tls) = tls else {
        return Err(tls_error(no_tls.to_string()));
    };
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| tls_error(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.0))
        .connect(name, tcp)
        .await
        .map_err(|source| HttpError::Tls {
            target: target.clone(),
            source,
        })?;
    send(stream, request).await
}
