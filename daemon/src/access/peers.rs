//! Who may use the admin socket, and for what, decided from the peer's credentials
//! (SO_PEERCRED). Two roles: `admin` (root, the daemon's own user, and the uids and gids
//! of `admin.allowed_*`: people, every call) and `agent` (`admin.agent_*`: the fleet
//! agent, exactly the calls it makes: health, telemetry and its ack, audit checkpoints,
//! the model list, import, activation and rollback; anything else is a 403
//! `role_not_allowed`). An agent can therefore not create
//! or revoke API keys, remove models or collect garbage, whatever runs as it.

use coffer_admin_api::path::route;
use http::Method;

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    /// Whether this role may make the call `method` on the route `pattern` (the router's
    /// matched path, such as `/admin/models/{name}/rollback`).
    pub fn allows(self, method: &Method, pattern: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::Agent => AGENT_CALLS
                .iter()
                .any(|(m, p)| m == method && *p == pattern),
        }
    }
}

/// The calls coffer-agent makes (agent/src: egress, checkpoints, sync).
const AGENT_CALLS: [(Method, &str); 9] = [
    (Method::GET, route::HEALTH),
    (Method::GET, route::TELEMETRY),
    (Method::POST, route::TELEMETRY_ACK),
    (Method::GET, route::CHECKPOINTS),
    (Method::GET, route::MODELS),
    (Method::POST, route::MODELS),
    (Method::POST, route::ACTIVATE),
    (Method::POST, route::ROLLBACK),
    (Method::POST, route::SYNC_EVENTS),
];

/// Uids and primary gids.
#[derive(Debug, Clone, Default)]
pub struct PeerIds {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl PeerIds {
    fn contains(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// The credential check for admin socket peers.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub own_uid: u32,
    pub admins: PeerIds,
    pub agents: PeerIds,
}

impl PeerPolicy {
    pub fn new(admins: PeerIds, agents: PeerIds) -> Self {
        Self {
            own_uid: rustix::process::geteuid().as_raw(),
            admins,
            agents,
        }
    }

    /// The peer's role, if it may use the socket at all.
    pub fn role(&self, uid: u32, gid: u32) -> Option<Role> {
        if uid == 0 || uid == self.own_uid || self.admins.contains(uid, gid) {
            Some(Role::Admin)
        } else if self.agents.contains(uid, gid) {
            Some(Role::Agent)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PeerPolicy {
        PeerPolicy {
            own_uid: 990,
            admins: PeerIds {
                uids: vec![1000],
                gids: vec![50],
            },
            agents: PeerIds {
                uids: vec![997],
                gids: vec![],
            },
        }
    }

    #[test]
    fn root_self_and_listed_ids_are_admins_agents_are_agents_others_nothing() {
        let p = policy();
        assert_eq!(p.role(0, 0), Some(Role::Admin));
        assert_eq!(p.role(990, 990), Some(Role::Admin));
        assert_eq!(p.role(1000, 1000), Some(Role::Admin));
        assert_eq!(p.role(1234, 50), Some(Role::Admin));
        assert_eq!(p.role(997, 996), Some(Role::Agent));
        assert_eq!(p.role(1234, 1234), None);
        assert_eq!(p.role(65534, 65534), None);
    }

    #[test]
    fn an_agent_makes_exactly_the_agents_calls() {
        let a = Role::Agent;
        assert!(a.allows(&Method::POST, "/admin/models"));
        assert!(a.allows(
            &Method::POST,
            "/admin/models/{name}/versions/{version}/activate"
        ));
        assert!(a.allows(&Method::POST, "/admin/telemetry/ack"));
        assert!(!a.allows(&Method::POST, "/admin/keys"));
        assert!(!a.allows(&Method::DELETE, "/admin/keys/{name}"));
        assert!(!a.allows(&Method::DELETE, "/admin/models/{name}/versions/{version}"));
        assert!(!a.allows(&Method::POST, "/admin/model-store/gc"));
        assert!(!a.allows(&Method::GET, "/admin/keys"));
        assert!(Role::Admin.allows(&Method::POST, "/admin/keys"));
    }
}
