//! What the accept loop serves on. A [`Listen`] is a listening socket: the API's TCP
//! port, or the admin Unix socket; each accepted stream comes with the address its
//! connections are counted against (the client's IP address; the peer's uid on the Unix
//! socket). An [`Open`] makes an accepted stream ready to speak HTTP and says which app
//! serves it: the TLS handshake on the API port ([`TlsOpen`]), the peer's credentials on
//! the admin socket (`admin::server`). Both sockets get the same bounds, eviction and
//! drain from the one accept loop.

use std::future::Future;
use std::hash::Hash;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::tls::ReloadableTls;

/// A listening socket.
pub trait Listen: Send + 'static {
    type Stream: Send + 'static;
    /// What a connection counts against for `max_connections_per_address`.
    type Address: Hash + Eq + Clone + Send + Sync + 'static;

    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Address)>> + Send;
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    type Address = IpAddr;

    async fn accept(&self) -> io::Result<(TcpStream, IpAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.ip()))
    }
}

/// The uid of a Unix-socket peer (`u32::MAX` when the kernel does not say).
impl Listen for UnixListener {
    type Stream = UnixStream;
    type Address = u32;

    async fn accept(&self) -> io::Result<(UnixStream, u32)> {
        let (stream, _) = UnixListener::accept(self).await?;
        let uid = stream.peer_cred().map_or(u32::MAX, |c| c.uid());
        Ok((stream, uid))
    }
}

/// Makes an accepted stream ready for HTTP.
pub trait Open<S>: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The stream to speak HTTP on and the app that serves it, or `None` to close the
    /// connection (counted as `handshake`). The accept loop bounds it by
    /// `tls_handshake_timeout`.
    fn open(
        &self,
        stream: S,
        app: &Router,
    ) -> impl Future<Output = Option<(Self::Io, Router)>> + Send;
}

/// The API port's opener: a TLS handshake with the certificate in force now (a SIGHUP
/// reload applies to the next handshake).
#[derive(Clone)]
pub struct TlsOpen(pub Arc<ReloadableTls>);

impl std::fmt::Debug for TlsOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsOpen")
    }
}

impl Open<TcpStream> for TlsOpen {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn open(&self, stream: TcpStream, app: &Router) -> Option<(Self::Io, Router)> {
        match self.0.acceptor().accept(stream).await {
            Ok(tls) => Some((tls, app.clone())),
            // Handshake failures are the client's business; keep them out of the default
            // log so that garbage on the port cannot flood it.
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
        }
    }
}
