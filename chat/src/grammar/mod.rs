//! `response_format` schemas made into GBNF grammars safely. A client's schema is checked
//! and rebuilt in Rust ([`schema`], patterns by [`pattern`]) before llama.cpp's
//! JSON-schema converter reads it; the converter's output is checked ([`gbnf`]) before
//! llama.cpp's grammar parser reads it. [`GrammarCompiler`] runs the conversion on a
//! blocking thread, a few at a time, within a time budget, so no async worker waits on
//! C++ and a burst of schemas cannot multiply its cost. Every bound is in [`limits`].

pub mod gbnf;
pub mod limits;
pub mod pattern;
pub mod schema;

use std::path::Path;
use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use serde_json::Value;
use tokio::sync::Semaphore;

pub use gbnf::GbnfError;
pub use pattern::PatternError;
pub use schema::SchemaError;

/// Why a schema could not become a grammar.
#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("llama.cpp could not convert the schema")]
    Convert(#[source] llama_cpp_2::LlamaCppError),
    #[error(transparent)]
    Grammar(#[from] GbnfError),
    #[error("converting the schema took longer than {0:?}")]
    Timeout(std::time::Duration),
    #[error("too many schemas are being converted at once")]
    Busy,
    #[error("the conversion thread failed")]
    Thread,
}

/// Checks a schema and returns the rebuilt one the converter may read (cheap, pure Rust).
pub fn check(schema: &Value) -> Result<Value, SchemaError> {
    schema::normalize(schema)
}

/// Turns a schema that passed [`check`] into a checked GBNF grammar (blocking: llama.cpp).
pub fn convert(checked: &Value) -> Result<String, GrammarError> {
    let grammar =
        llama_cpp_2::json_schema_to_grammar(&checked.to_string()).map_err(GrammarError::Convert)?;
    gbnf::check(&grammar)?;
    Ok(grammar)
}

/// Runs [`convert`] off the async workers, at most
/// [`limits::MAX_CONCURRENT_CONVERSIONS`] at once, each within
/// [`limits::CONVERSION_BUDGET`]. A conversion past its budget keeps its slot until it
/// ends, so abandoned ones cannot pile up either.
#[derive(Debug, Clone)]
pub struct GrammarCompiler {
    slots: Arc<Semaphore>,
}

impl Default for GrammarCompiler {
    fn default() -> Self {
        GrammarCompiler {
            slots: Arc::new(Semaphore::new(limits::MAX_CONCURRENT_CONVERSIONS)),
        }
    }
}

impl GrammarCompiler {
    pub async fn compile(&self, checked: Value) -> Result<String, GrammarError> {
        let budget = limits::CONVERSION_BUDGET;
        let permit = tokio::time::timeout(budget, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| GrammarError::Busy)?
            .map_err(|_| GrammarError::Busy)?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            convert(&checked)
        });
        match tokio::time::timeout(budget, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_join)) => Err(GrammarError::Thread),
            Err(_elapsed) => Err(GrammarError::Timeout(budget)),
        }
    }
}

/// A GGUF's vocabulary alone (no weights): enough for llama.cpp's grammar parser, which
/// the fuzz targets ask whether it accepts what [`convert`] made.
pub struct Vocabulary(LlamaModel);

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary").finish_non_exhaustive()
    }
}

impl Vocabulary {
    /// The vocabulary of the GGUF at `path`; `None` when it is absent or llama.cpp
    /// cannot load it.
    pub fn load(path: &Path) -> Option<Vocabulary> {
        if !path.is_file() {
            return None;
        }
        let backend = crate::backend::backend().ok()?;
        let params = LlamaModelParams::default().with_vocab_only(true);
        LlamaModel::load_from_file(backend, path, &params)
            .ok()
            .map(Vocabulary)
    }

    /// Whether llama.cpp's grammar parser accepts `gbnf` (its rule `root`).
    pub fn accepts(&self, gbnf: &str) -> bool {
        LlamaSampler::grammar(&self.0, gbnf, "root").is_ok()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn grammar(schema: Value) -> Result<String, GrammarError> {
        convert(&check(&schema)?)
    }

    #[test]
    fn a_checked_schema_becomes_a_grammar_llama_cpp_accepts() {
        let g = grammar(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 20},
                "id": {"type": "string", "pattern": "^[A-Z]{2}\\d{4}$"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}
            },
            "required": ["name"]
        }))
        .unwrap();
        assert!(g.contains("root ::="), "{g}");
        assert!(gbnf::check(&g).unwrap() > 0);
    }

    #[test]
    fn the_grammar_bomb_never_reaches_llama_cpp() {
        let e = grammar(json!({"type": "string", "pattern": "^a{2,1}$"})).unwrap_err();
        assert!(
            matches!(e, GrammarError::Schema(SchemaError::Pattern { .. })),
            "{e}"
        );
    }

    #[test]
    fn many_bounded_repetitions_together_exceed_the_grammar_budget() {
        let props: serde_json::Map<String, Value> = (0..40)
            .map(|i| {
                (
                    format!("p{i}"),
                    json!({"type": "string", "maxLength": 1000}),
                )
            })
            .collect();
        let e = grammar(json!({"type": "object", "properties": props})).unwrap_err();
        assert!(
            matches!(e, GrammarError::Grammar(GbnfError::Expansion(_))),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_compiler_converts_off_the_async_workers() {
        let c = GrammarCompiler::default();
        let checked = check(&json!({"type": "object"})).unwrap();
        let g = c.compile(checked).await.unwrap();
        assert!(g.contains("root ::="), "{g}");
    }
}
