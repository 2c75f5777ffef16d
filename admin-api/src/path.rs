//! Every admin path, built in one place: the route patterns cofferd's router serves
//! ([`route`]) and the request paths clients send, with names and versions
//! percent-encoded as one path segment ([`segment`]).

use std::fmt::Write as _;

/// The route patterns, as cofferd's router registers them.
pub mod route {
    pub const HEALTH: &str = "/admin/health";
    pub const KEYS: &str = "/admin/keys";
    pub const KEY: &str = "/admin/keys/{name}";
    pub const TELEMETRY: &str = "/admin/telemetry";
    pub const TELEMETRY_ACK: &str = "/admin/telemetry/ack";
    pub const CHECKPOINTS: &str = "/admin/audit/checkpoints";
    pub const SYNC_EVENTS: &str = "/admin/sync/events";
    pub const MODELS: &str = "/admin/models";
    pub const MODELS_HISTORY: &str = "/admin/models-history";
    pub const STORE_GC: &str = "/admin/model-store/gc";
    pub const MODEL: &str = "/admin/models/{name}";
    pub const ROLLBACK: &str = "/admin/models/{name}/rollback";
    pub const DRIFT: &str = "/admin/models/{name}/drift";
    pub const SHADOW: &str = "/admin/models/{name}/shadow";
    pub const PIN: &str = "/admin/models/{name}/pin";
    pub const VERSION: &str = "/admin/models/{name}/versions/{version}";
    pub const ACTIVATE: &str = "/admin/models/{name}/versions/{version}/activate";
    pub const VERIFY: &str = "/admin/models/{name}/versions/{version}/verify";
    pub const DECISIONS: &str = "/admin/decisions";
    pub const DECISION: &str = "/admin/decisions/{request_id}";
    pub const DECISIONS_REPLAY: &str = "/admin/decisions-replay";
    pub const DECISIONS_EXPORT: &str = "/admin/decisions-export";
    pub const DECISION_KEYS: &str = "/admin/decision-keys";
}

/// `GET /admin/decisions/{request_id}`.
pub fn decision(request_id: &str) -> String {
    format!("/admin/decisions/{}", segment(request_id))
}

fn decision_query(model: Option<&str>, since_ms: u64, limit: usize) -> String {
    let mut q = format!("since_ms={since_ms}&limit={limit}");
    if let Some(m) = model {
        q.push_str(&format!("&model={}", segment(m)));
    }
    q
}

/// `GET /admin/decisions?since_ms=T&limit=N[&model=M]`.
pub fn decisions(model: Option<&str>, since_ms: u64, limit: usize) -> String {
    format!(
        "/admin/decisions?{}",
        decision_query(model, since_ms, limit)
    )
}

/// `GET /admin/decisions-export?since_ms=T&limit=N[&model=M]&redacted=B`.
pub fn decisions_export(
    model: Option<&str>,
    since_ms: u64,
    limit: usize,
    redacted: bool,
) -> String {
    format!(
        "/admin/decisions-export?{}&redacted={redacted}",
        decision_query(model, since_ms, limit)
    )
}

/// `s` as one URL path segment (or query value): everything but unreserved characters
/// percent-encoded, and a segment of dots (`.`, `..`) encoded whole, since a server or
/// proxy may read it as a relative step.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.bytes().all(|b| b == b'.') {
        out = out.replace('.', "%2E");
    }
    out
}

pub fn key(name: &str) -> String {
    format!("/admin/keys/{}", segment(name))
}

/// `GET /admin/telemetry?max=N`.
pub fn telemetry(max: usize) -> String {
    format!("/admin/telemetry?max={max}")
}

/// `GET /admin/audit/checkpoints?after=SEQ&limit=N`.
pub fn checkpoints(after: u64, limit: usize) -> String {
    format!("/admin/audit/checkpoints?after={after}&limit={limit}")
}

/// `POST /admin/models[?allow_schema_change=true]`.
pub fn import(allow_schema_change: bool) -> String {
    if allow_schema_change {
        "/admin/models?allow_schema_change=true".into()
    } else {
        route::MODELS.into()
    }
}

/// `GET /admin/models-history[?name=&limit=]`.
pub fn history(name: Option<&str>, limit: Option<usize>) -> String {
    let mut query = Vec::new();
    if let Some(n) = name {
        query.push(format!("name={}", segment(n)));
    }
    if let Some(l) = limit {
        query.push(format!("limit={l}"));
    }
    if query.is_empty() {
        route::MODELS_HISTORY.into()
    } else {
        format!("{}?{}", route::MODELS_HISTORY, query.join("&"))
    }
}

pub fn model(name: &str) -> String {
    format!("/admin/models/{}", segment(name))
}

pub fn rollback(name: &str) -> String {
    format!("{}/rollback", model(name))
}

pub fn drift(name: &str) -> String {
    format!("{}/drift", model(name))
}

pub fn shadow(name: &str) -> String {
    format!("{}/shadow", model(name))
}

pub fn pin(name: &str) -> String {
    format!("{}/pin", model(name))
}

pub fn version(name: &str, version: &str) -> String {
    format!("{}/versions/{}", model(name), segment(version))
}

pub fn activate(name: &str, v: &str) -> String {
    format!("{}/activate", version(name, v))
}

/// `POST .../verify`, with NDJSON progress lines when `progress`.
pub fn verify(name: &str, v: &str, progress: bool) -> String {
    let query = if progress { "?progress=true" } else { "" };
    format!("{}/verify{query}", version(name, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_escape_everything_but_unreserved_characters() {
        assert_eq!(segment("credit-lr_2.0~x"), "credit-lr_2.0~x");
        assert_eq!(segment("a/b c?d#e%"), "a%2Fb%20c%3Fd%23e%25");
        assert_eq!(segment("名"), "%E5%90%8D");
    }

    #[test]
    fn dot_segments_are_encoded_whole() {
        assert_eq!(segment("."), "%2E");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("..."), "%2E%2E%2E");
        assert_eq!(segment("1.0.0"), "1.0.0");
        assert_eq!(version("..", ".."), "/admin/models/%2E%2E/versions/%2E%2E");
    }

    #[test]
    fn paths_fill_the_route_patterns() {
        let filled = |pattern: &str, name: &str, v: &str| {
            pattern.replace("{name}", name).replace("{version}", v)
        };
        assert_eq!(activate("m", "1"), filled(route::ACTIVATE, "m", "1"));
        assert_eq!(verify("m", "1", false), filled(route::VERIFY, "m", "1"));
        assert_eq!(rollback("m"), filled(route::ROLLBACK, "m", ""));
        assert_eq!(pin("m"), filled(route::PIN, "m", ""));
        assert_eq!(shadow("m"), filled(route::SHADOW, "m", ""));
        assert_eq!(drift("m"), filled(route::DRIFT, "m", ""));
        assert_eq!(key("k"), filled(route::KEY, "k", ""));
        assert_eq!(
            history(Some("a b"), Some(5)),
            "/admin/models-history?name=a%20b&limit=5"
        );
        assert_eq!(history(None, None), route::MODELS_HISTORY);
    }
}
