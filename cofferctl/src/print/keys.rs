//! API keys: the table of `keys list` and the lines of create and revoke.

use coffer_admin_api::keys::{CreatedKey, KeyView};

use super::line;
use crate::format::time;

/// `keys list`.
pub fn key_table(keys: &[KeyView]) -> String {
    let mut out = String::new();
    line!(
        out,
        "{:<24} {:<16} {:<28} {:<20} {:<22} STATE",
        "NAME",
        "ID",
        "SCOPES",
        "RATE",
        "CREATED"
    );
    for k in keys {
        let rate = match &k.rate {
            Some(r) => format!(
                "{}/s burst {}",
                crate::format::number(r.per_second),
                r.burst
            ),
            None => "unlimited".into(),
        };
        let state = match k.revoked_at {
            None => "active".to_string(),
            Some(at) => format!("revoked {}", time(Some(at))),
        };
        line!(
            out,
            "{:<24} {:<16} {:<28} {:<20} {:<22} {}",
            k.name,
            k.id,
            k.scopes.join(","),
            rate,
            time(Some(k.created_at)),
            state
        );
    }
    out
}

/// `keys create`: the token, this once.
pub fn created(k: &CreatedKey) -> String {
    let mut out = String::new();
    line!(out, "created key {} ({})", k.key.name, k.key.id);
    line!(out, "token (shown once, store it now): {}", k.token);
    out
}

/// `keys revoke`.
pub fn revoked(k: &KeyView) -> String {
    format!("revoked key {} ({})\n", k.name, k.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_admin_api::keys::Rate;

    fn key(revoked_at: Option<u64>, rate: Option<Rate>) -> KeyView {
        KeyView {
            name: "teller-app".into(),
            id: "k_0123456789ab".into(),
            scopes: vec!["chat".into(), "score".into()],
            rate,
            created_at: 0,
            revoked_at,
        }
    }

    #[test]
    fn the_key_table_shows_scopes_rate_and_state_never_a_token() {
        let table = key_table(&[
            key(
                None,
                Some(Rate {
                    per_second: 20.0,
                    burst: 40,
                }),
            ),
            key(Some(86_400), None),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].contains("chat,score") && lines[1].contains("20.0/s burst 40"));
        assert!(lines[1].ends_with("active"));
        assert!(lines[2].contains("unlimited"));
        assert!(lines[2].ends_with("revoked 1970-01-02T00:00:00Z"));
    }

    #[test]
    fn the_token_is_shown_on_creation() {
        let text = created(&CreatedKey {
            key: key(None, None),
            token: "cof_secret".into(),
        });
        assert!(text.contains("created key teller-app (k_0123456789ab)"));
        assert!(text.contains("token (shown once, store it now): cof_secret"));
    }
}
