//! Local account names in the admin socket policy (`admin.allowed_users`,
//! `admin.allowed_groups`, `admin.agent_users`, `admin.agent_groups`): resolved to ids once at start from `/etc/passwd` and
//! `/etc/group`, the files where system users made by sysusers.d or useradd live. Names
//! served only by NSS modules (LDAP, SSSD) are not looked up: list their ids instead. A
//! name that does not exist (the packaged config names `coffer-agent`, which a host
//! without the agent package lacks) admits nobody and is logged, not fatal.

use std::path::Path;

/// A name in the policy that the account files do not define, or files that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("{key}: no {kind} named {name:?} in {path}")]
    Unknown {
        key: &'static str,
        kind: &'static str,
        name: String,
        path: &'static str,
    },
}

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// The id (third field) of `name` in a passwd- or group-format text.
fn lookup(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name)
                .then(|| fields.nth(1)?.trim().parse().ok())
                .flatten()
        })
}

fn resolve(
    names: &[String],
    path: &'static str,
    key: &'static str,
    kind: &'static str,
) -> Result<Vec<u32>, AccountError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(Path::new(path))
        .map_err(|source| AccountError::Read { path, source })?;
    let mut ids = Vec::new();
    for name in names {
        match lookup(&text, name) {
            Some(id) => ids.push(id),
            None => {
                let unknown = AccountError::Unknown {
                    key,
                    kind,
                    name: name.clone(),
                    path,
                };
                tracing::warn!("{unknown}; it admits nobody");
            }
        }
    }
    Ok(ids)
}

/// Uids of the user names under `key` (`admin.allowed_users`, `admin.agent_users`).
pub fn user_ids(names: &[String], key: &'static str) -> Result<Vec<u32>, AccountError> {
    resolve(names, PASSWD, key, "user")
}

/// Gids of the group names under `key` (`admin.allowed_groups`, `admin.agent_groups`).
pub fn group_ids(names: &[String], key: &'static str) -> Result<Vec<u32>, AccountError> {
    resolve(names, GROUP, key, "group")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_id_field_of_the_named_entry_only() {
        let passwd = "# comment\nroot:x:0:0:root:/root:/bin/sh\ncoffer:x:998:997::/var/lib/coffer:/usr/sbin/nologin\ncoffer-agent:x:997:996::/:/usr/sbin/nologin\n";
        assert_eq!(lookup(passwd, "coffer"), Some(998));
        assert_eq!(lookup(passwd, "coffer-agent"), Some(997));
        assert_eq!(lookup(passwd, "coff"), None);
        assert_eq!(lookup("broken:x:notanumber:0::/:/bin/sh", "broken"), None);
    }

    #[test]
    fn root_resolves_from_the_real_files_and_unknown_names_are_named() {
        assert_eq!(
            user_ids(&["root".into()], "admin.allowed_users").unwrap(),
            vec![0]
        );
        assert_eq!(
            group_ids(&["root".into()], "admin.allowed_groups").unwrap(),
            vec![0]
        );
        // An unknown name admits nobody and does not stop the start.
        assert_eq!(
            user_ids(
                &["no-such-user-coffer".into(), "root".into()],
                "admin.allowed_users"
            )
            .unwrap(),
            vec![0]
        );
    }
}
