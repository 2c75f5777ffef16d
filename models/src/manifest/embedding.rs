//! Embedding models in the manifest: `kind = "embedding"`, a GGUF encoder (BERT and its
//! kin) whose pooling is in the file, and an `[embedding]` section with what the file
//! does not say: how many tokens one input may have, whether vectors are scaled to unit
//! length, and the evaluation gate (`[embedding.eval]`): cosine agreement with
//! reference vectors shipped in the release, and optionally recall@k on a labelled
//! retrieval set.

use serde::{Deserialize, Serialize};

use super::{FileRole, Format, Manifest, ManifestError, invalid};

/// The `[embedding]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// Tokens one input may have, special tokens included; longer inputs are refused.
    pub max_tokens: usize,
    /// Scale every vector to unit length (as sentence-transformers' `Normalize`).
    #[serde(default = "yes")]
    pub normalize: bool,
    #[serde(default)]
    pub eval: Option<EmbeddingEvalGate>,
}

fn yes() -> bool {
    true
}

/// The `[embedding.eval]` gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingEvalGate {
    /// A file with role `eval`: one sentence per line.
    pub sentences: String,
    /// A file with role `eval`: the reference vectors of `sentences`, little-endian
    /// float32, one row of the model's width per sentence.
    pub vectors: String,
    /// The gate: every sentence's cosine similarity to its reference vector is at
    /// least this.
    pub cosine_min: f64,
    /// Optional file with role `eval`: `{"k": K, "passages": [{"id", "text"}],
    /// "queries": [{"query", "relevant"}]}`: each query's relevant passage must be among
    /// its `k` nearest for at least `recall_min` of the queries.
    #[serde(default)]
    pub retrieval: Option<String>,
    #[serde(default)]
    pub recall_min: Option<f64>,
}

/// A labelled retrieval set (the `retrieval` file of the gate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalSet {
    pub k: usize,
    pub passages: Vec<Passage>,
    pub queries: Vec<Query>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub query: String,
    pub relevant: String,
}

/// The checks of an embedding manifest.
pub(crate) fn check(m: &Manifest) -> Result<(), ManifestError> {
    if m.format != Format::Gguf {
        return Err(invalid("format", "embedding models must be \"gguf\""));
    }
    if m.eval.is_some() || m.chat.is_some() {
        return Err(invalid(
            "eval",
            "[eval] and [chat] belong to scoring and chat models; an embedding model's gate is [embedding.eval]",
        ));
    }
    let Some(spec) = &m.embedding else {
        return Err(invalid(
            "embedding",
            "an embedding model needs an [embedding] section (max_tokens)",
        ));
    };
    if spec.max_tokens == 0 {
        return Err(invalid("embedding.max_tokens", "must be at least 1"));
    }
    let Some(gate) = &spec.eval else {
        return Ok(());
    };
    for (field, path) in [
        ("embedding.eval.sentences", Some(&gate.sentences)),
        ("embedding.eval.vectors", Some(&gate.vectors)),
        ("embedding.eval.retrieval", gate.retrieval.as_ref()),
    ] {
        if let Some(path) = path {
            if !m.has_file(path, FileRole::Eval) {
                return Err(invalid(
                    field,
                    format!("{path:?} is not a file with role \"eval\""),
                ));
            }
        }
    }
    if !(gate.cosine_min > 0.0 && gate.cosine_min <= 1.0) {
        return Err(invalid("embedding.eval.cosine_min", "must be in (0, 1]"));
    }
    match (&gate.retrieval, gate.recall_min) {
        (Some(_), Some(r)) if (0.0..=1.0).contains(&r) => Ok(()),
        (Some(_), _) => Err(invalid(
            "embedding.eval.recall_min",
            "must be in [0, 1] when a retrieval set is given",
        )),
        (None, Some(_)) => Err(invalid(
            "embedding.eval.recall_min",
            "needs embedding.eval.retrieval",
        )),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{Manifest, ManifestError};

    const HEAD: &str = "name = \"e\"\nversion = \"1\"\nkind = \"embedding\"\nformat = \"gguf\"\n\
        [[files]]\npath = \"m.gguf\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nsize = 1\nrole = \"model\"\n\
        [[files]]\npath = \"eval/s.txt\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nsize = 1\nrole = \"eval\"\n\
        [[files]]\npath = \"eval/v.f32\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nsize = 1\nrole = \"eval\"\n";

    fn field(text: &str) -> Option<String> {
        match Manifest::parse(text) {
            Ok(_) => None,
            Err(ManifestError::Invalid { field, .. }) => Some(field),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_embedding_manifest_with_its_gate_parses_and_each_fault_names_its_field() {
        let ok = format!(
            "{HEAD}[embedding]\nmax_tokens = 256\n[embedding.eval]\nsentences = \"eval/s.txt\"\nvectors = \"eval/v.f32\"\ncosine_min = 0.999\n"
        );
        let m = Manifest::parse(&ok).unwrap();
        let spec = m.embedding.as_ref().unwrap();
        assert!(spec.normalize);
        assert_eq!(spec.max_tokens, 256);
        assert_eq!(field(HEAD).as_deref(), Some("embedding"));
        assert_eq!(
            field(&format!("{HEAD}[embedding]\nmax_tokens = 0\n")).as_deref(),
            Some("embedding.max_tokens")
        );
        assert_eq!(
            field(&ok.replace("eval/v.f32\"\ncosine", "eval/missing.f32\"\ncosine")).as_deref(),
            Some("embedding.eval.vectors")
        );
        assert_eq!(
            field(&ok.replace("0.999", "1.5")).as_deref(),
            Some("embedding.eval.cosine_min")
        );
        assert_eq!(
            field(&format!("{ok}recall_min = 0.9\n")).as_deref(),
            Some("embedding.eval.recall_min")
        );
        assert_eq!(
            field(&ok.replace("format = \"gguf\"", "format = \"onnx\"")).as_deref(),
            Some("format")
        );
    }
}
