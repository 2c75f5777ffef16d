//! Who may use the admin socket, decided from the peer's credentials (SO_PEERCRED):
//! root, the daemon's own user, and the uids and gids the configuration lists.

/// The credential check for admin socket peers.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub own_uid: u32,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
}

impl PeerPolicy {
    pub fn new(allowed_uids: Vec<u32>, allowed_gids: Vec<u32>) -> Self {
        Self {
            own_uid: rustix::process::geteuid().as_raw(),
            allowed_uids,
            allowed_gids,
        }
    }

    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0
            || uid == self.own_uid
            || self.allowed_uids.contains(&uid)
            || self.allowed_gids.contains(&gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_self_and_listed_ids_only() {
        let p = PeerPolicy {
            own_uid: 990,
            allowed_uids: vec![1000],
            allowed_gids: vec![50],
        };
        assert!(p.allows(0, 0));
        assert!(p.allows(990, 990));
        assert!(p.allows(1000, 1000));
        assert!(p.allows(1234, 50));
        assert!(!p.allows(1234, 1234));
    }
}
