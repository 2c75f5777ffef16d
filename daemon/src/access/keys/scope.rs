//! What an API key may do: the scopes `chat`, `embed`, `score`, `metrics` and `admin`.

use serde::{Deserialize, Serialize};

/// One permission an API key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Chat,
    Embed,
    Score,
    Metrics,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Chat,
        Scope::Embed,
        Scope::Score,
        Scope::Metrics,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Embed => "embed",
            Scope::Score => "score",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: use chat, embed, score, metrics or admin")]
pub struct UnknownScope(pub String);

impl std::str::FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| UnknownScope(s.trim().to_string()))
    }
}

/// Parses a comma-separated scope list such as `chat,score`; sorted, without repeats.
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, UnknownScope> {
    let mut scopes = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Scope>, _>>()?;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_rejects_unknown_names() {
        assert_eq!(
            parse_scopes("score, chat,score").unwrap(),
            vec![Scope::Chat, Scope::Score]
        );
        assert_eq!(
            parse_scopes("chat,root").unwrap_err(),
            UnknownScope("root".into())
        );
    }
}
