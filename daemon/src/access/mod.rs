//! Who may call what, and how much: API keys (tokens, scopes, rates, the sled key
//! store), admission (the global in-flight bound, each key's share, the bounded queue)
//! and the admin socket's peers (roles from the caller's uid and gids).

pub mod admission;
pub mod keys;
pub mod peers;
