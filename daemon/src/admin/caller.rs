//! Who is calling the admin socket (the peer's uid and the role its credentials give
//! it), and what a call acted on when its path does not say: set by the accept loop and
//! the handlers, read by the role check and the audit trail.

use super::Role;

/// What an admin call acted on when the path does not say (an import's
/// `name@version`), set by the handler on its response.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// The connection's peer: its role (`None`: it may not use the socket) and uid.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub role: Option<Role>,
    pub uid: u32,
}
