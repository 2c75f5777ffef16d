//! API keys: `POST /admin/keys` (create; the token is in that answer only),
//! `GET /admin/keys` (list) and `DELETE /admin/keys/{name}` (revoke).

use serde::{Deserialize, Serialize};

/// The body of `POST /admin/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// `chat`, `score`, `metrics`, `admin`.
    pub scopes: Vec<String>,
    /// Sustained rate such as `20/s` or `600/m`.
    #[serde(default)]
    pub rate: Option<String>,
    /// Bucket size; needs a rate.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A key's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// A key as the admin API shows it: no hash, no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    pub name: String,
    pub id: String,
    pub scopes: Vec<String>,
    pub rate: Option<Rate>,
    /// Unix seconds.
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

/// The answer to `POST /admin/keys`: the key and, this once, its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    pub token: String,
}
