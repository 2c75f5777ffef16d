//! The manifest (`manifest.toml`) of one model version: parsing with unknown keys
//! refused, and the checks that need no file system (names, shapes, references between
//! sections).

pub mod attributes;
pub mod embedding;
pub mod explain;

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Score,
    Chat,
    Embedding,
}

/// The file format of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Onnx,
    Gguf,
}

/// Tensor element types, named as the Open Inference Protocol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Datatype {
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "BOOL")]
    Bool,
}

impl Datatype {
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Bool => "BOOL",
        }
    }

    pub fn parse(s: &str) -> Option<Datatype> {
        [
            Datatype::Fp32,
            Datatype::Fp64,
            Datatype::Int32,
            Datatype::Int64,
            Datatype::Bool,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Role of a file in a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRole {
    Model,
    Eval,
    /// What an explanation method needs beside the model file (`explain`).
    Explain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub role: FileRole,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    pub base: Option<String>,
    pub quantization: Option<String>,
    pub distilled_from: Option<String>,
    pub training_data: Option<String>,
}

/// One input or output tensor: `-1` in the first axis is the batch dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl TensorSpec {
    /// Elements per batch row (the product of the non-batch axes).
    pub fn row_elements(&self) -> usize {
        self.shape
            .iter()
            .skip(1)
            .map(|&d| d.max(0) as usize)
            .product()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoSchema {
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serving {
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    #[serde(default = "default_delay")]
    pub max_queue_delay_us: u64,
}

fn default_max_batch() -> usize {
    1024
}

fn default_delay() -> u64 {
    500
}

impl Default for Serving {
    fn default() -> Self {
        Self {
            max_batch: default_max_batch(),
            max_queue_delay_us: default_delay(),
        }
    }
}

/// The evaluation gate of a scoring model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalGate {
    pub set: String,
    pub score_output: String,
    #[serde(default)]
    pub score_column: usize,
    pub decision_threshold: f64,
    pub auc_min: f64,
    pub max_abs_diff: f64,
    pub teacher_agreement_min: Option<f64>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub format: Format,
    #[serde(default)]
    pub description: Option<String>,
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub lineage: Lineage,
    #[serde(default)]
    pub io: IoSchema,
    #[serde(default)]
    pub serving: Serving,
    pub eval: Option<EvalGate>,
    #[serde(default)]
    pub chat: Option<ChatSpec>,
    /// Embedding models: limits and the evaluation gate (`crate::embedding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<embedding::EmbeddingSpec>,
    /// Alternative model files of this version for different hardware, in order of
    /// preference; empty: the one file with role `model` serves everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
    /// Reference distributions for drift monitoring (scoring models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReference>,
    /// The raw attributes a client may send instead of the encoded input (scoring
    /// models; `attributes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<attributes::AttributeSpec>,
    /// The adverse-action text of each attribute, for reason codes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reasons: std::collections::BTreeMap<String, String>,
    /// How scores are explained (`explain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<explain::ExplainSpec>,
}

/// Binned reference distributions of a scoring model's inputs and score, computed from
/// its training data by the release tooling. Bin `i` holds values `x` with
/// `edges[i-1] < x <= edges[i]`; the first bin everything `<= edges[0]`, the last
/// everything `> edges[last]`: `proportions` has one entry more than `edges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftReference {
    /// PSI at or above this reads "watch" (industry usage: 0.1).
    #[serde(default = "default_psi_watch")]
    pub psi_watch: f64,
    /// PSI at or above this reads "act" (industry usage: 0.25).
    #[serde(default = "default_psi_act")]
    pub psi_act: f64,
    /// Training rows the proportions come from.
    pub rows: u64,
    pub score: ScoreReference,
    #[serde(default)]
    pub features: Vec<FeatureReference>,
}

fn default_psi_watch() -> f64 {
    0.1
}

fn default_psi_act() -> f64 {
    0.25
}

/// The reference distribution of the model's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreReference {
    pub output: String,
    #[serde(default)]
    pub column: usize,
    pub edges: Vec<f64>,
    pub proportions: Vec<f64>,
}

/// The reference distribution of one input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureReference {
    /// The column's feature name (the input's `features` entry).
    pub name: String,
    pub input: String,
    pub column: usize,
    pub edges: Vec<f64>,
    pub proportions: Vec<f64>,
}

/// Checks one binned distribution; `None` when it is well formed.
pub fn check_bins(edges: &[f64], proportions: &[f64]) -> Option<String> {
    if proportions.len() != edges.len() + 1 {
        return Some(format!(
            "{} proportions for {} edges (need one more proportion than edges)",
            proportions.len(),
            edges.len()
        ));
    }
    if edges.windows(2).any(|w| w[0] >= w[1] || w[0].is_nan())
        || edges.iter().any(|e| !e.is_finite())
    {
        return Some("edges must be finite and strictly increasing".into());
    }
    if proportions.iter().any(|p| !(p.is_finite() && *p >= 0.0)) {
        return Some("proportions must be finite and not negative".into());
    }
    let sum: f64 = proportions.iter().sum();
    if (sum - 1.0).abs() > 1e-3 {
        return Some(format!("proportions sum to {sum}, not 1"));
    }
    None
}

/// One variant of a model version: which model file it uses and what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// `[a-z0-9._-]`, unique in the manifest (e.g. `q8`, `q4`, `cpu-student`).
    pub name: String,
    /// A file of this version with role `model`.
    pub file: String,
    /// Overrides `lineage.quantization` for this variant (`Q8_0`, `Q4_K_M`, ...).
    #[serde(default)]
    pub quantization: Option<String>,
    /// Free memory this variant needs on a healthy GPU, in MiB; absent: it runs on the
    /// CPU and fits any host.
    #[serde(default)]
    pub gpu_memory_mib: Option<u64>,
}

/// Chat models: what the GGUF file does not say itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSpec {
    /// A llama.cpp built-in template name (`chatml`, `llama3`, …) used when the GGUF
    /// carries no `tokenizer.chat_template`.
    pub template: Option<String>,
    /// The evaluation gate of a chat model.
    #[serde(default)]
    pub eval: Option<ChatEvalGate>,
}

/// The evaluation gate of a chat model: perplexity on a shipped text, computed from
/// llama.cpp's logits, and optionally golden greedy answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatEvalGate {
    /// A file with role `eval`: plain UTF-8 text.
    pub text: String,
    /// The gate: perplexity of the model on `text` must not exceed this.
    pub perplexity_max: f64,
    /// Optional file with role `eval`: a JSON list of `{"messages": [...], "answer": "..."}`
    /// whose greedy completions must start with `answer`.
    #[serde(default)]
    pub golden: Option<String>,
}

/// One golden greedy answer of a chat evaluation set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenAnswer {
    pub messages: Vec<GoldenMessage>,
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenMessage {
    pub role: String,
    pub content: String,
}

/// Why a manifest is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest does not parse: {0}")]
    Parse(String),
    #[error("manifest field {field}: {problem}")]
    Invalid { field: String, problem: String },
}

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Names and versions: 1–64 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn safe_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

impl Manifest {
    /// Parses and checks a manifest's text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ManifestError::Parse(e.message().to_string()))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The checks that need no file system.
    pub fn check(&self) -> Result<(), ManifestError> {
        if !valid_name(&self.name) {
            return Err(invalid(
                "name",
                format!("{:?}: use 1-64 of a-z, 0-9, '.', '_', '-'", self.name),
            ));
        }
        if !valid_name(&self.version) {
            return Err(invalid(
                "version",
                format!("{:?}: use 1-64 of a-z, 0-9, '.', '_', '-'", self.version),
            ));
        }
        if self.files.is_empty() {
            return Err(invalid("files", "lists no file"));
        }
        for (i, f) in self.files.iter().enumerate() {
            if !safe_relative(&f.path) {
                return Err(invalid(
                    format!("files[{i}].path"),
                    format!(
                        "{:?} must be a relative path inside the version directory",
                        f.path
                    ),
                ));
            }
            if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    format!("files[{i}].sha256"),
                    "must be 64 hex digits",
                ));
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            let clash = self.files.iter().enumerate().any(|(j, g)| {
                j != i && (g.path == f.path || g.path.starts_with(&format!("{}/", f.path)))
            });
            if clash || f.path == "manifest.toml" {
                return Err(invalid(
                    format!("files[{i}].path"),
                    format!(
                        "{:?} is listed twice, is the manifest itself, or is a directory of another file",
                        f.path
                    ),
                ));
            }
        }
        if !self.files.iter().any(|f| f.role == FileRole::Model) {
            return Err(invalid("files", "no file has role \"model\""));
        }
        if self.kind != Kind::Embedding && self.embedding.is_some() {
            return Err(invalid(
                "embedding",
                "only embedding models (kind = \"embedding\") have an [embedding] section",
            ));
        }
        match self.kind {
            Kind::Score => self.check_scoring()?,
            Kind::Chat => self.check_chat()?,
            Kind::Embedding => embedding::check(self)?,
        }
        if self.kind != Kind::Score
            && !(self.attributes.is_empty() && self.reasons.is_empty() && self.explain.is_none())
        {
            return Err(invalid(
                "attributes",
                "only scoring models have [[attributes]], [reasons] and [explain]",
            ));
        }
        self.check_variants()
    }

    pub(crate) fn has_file(&self, path: &str, role: FileRole) -> bool {
        self.files.iter().any(|f| f.path == path && f.role == role)
    }

    fn check_chat(&self) -> Result<(), ManifestError> {
        if self.format != Format::Gguf {
            return Err(invalid("format", "chat models must be \"gguf\""));
        }
        if self.eval.is_some() {
            return Err(invalid(
                "eval",
                "is the scoring gate; a chat model's gate is [chat.eval]",
            ));
        }
        if let Some(gate) = self.chat.as_ref().and_then(|c| c.eval.as_ref()) {
            if !self.has_file(&gate.text, FileRole::Eval) {
                return Err(invalid(
                    "chat.eval.text",
                    format!("{:?} is not a file with role \"eval\"", gate.text),
                ));
            }
            if let Some(golden) = &gate.golden {
                if !self.has_file(golden, FileRole::Eval) {
                    return Err(invalid(
                        "chat.eval.golden",
                        format!("{golden:?} is not a file with role \"eval\""),
                    ));
                }
            }
            if !(gate.perplexity_max.is_finite() && gate.perplexity_max >= 1.0) {
                return Err(invalid(
                    "chat.eval.perplexity_max",
                    "must be a finite number of at least 1",
                ));
            }
        }
        Ok(())
    }

    fn check_drift(&self, drift: &DriftReference) -> Result<(), ManifestError> {
        if !(0.0 < drift.psi_watch && drift.psi_watch < drift.psi_act) {
            return Err(invalid(
                "drift.psi_watch",
                "must be above 0 and below drift.psi_act",
            ));
        }
        let score = &drift.score;
        match self.io.outputs.iter().find(|o| o.name == score.output) {
            Some(o) if score.column < o.row_elements().max(1) => {}
            _ => {
                return Err(invalid(
                    "drift.score.output",
                    format!(
                        "{:?} column {} is not an output column",
                        score.output, score.column
                    ),
                ));
            }
        }
        if let Some(problem) = check_bins(&score.edges, &score.proportions) {
            return Err(invalid("drift.score", problem));
        }
        for (i, f) in drift.features.iter().enumerate() {
            let field = format!("drift.features[{i}]");
            match self.io.inputs.iter().find(|inp| inp.name == f.input) {
                Some(inp) if f.column < inp.row_elements().max(1) => {}
                _ => {
                    return Err(invalid(
                        field,
                        format!("{:?} column {} is not an input column", f.input, f.column),
                    ));
                }
            }
            if let Some(problem) = check_bins(&f.edges, &f.proportions) {
                return Err(invalid(field, format!("{}: {problem}", f.name)));
            }
        }
        Ok(())
    }

    fn check_variants(&self) -> Result<(), ManifestError> {
        for (i, v) in self.variants.iter().enumerate() {
            let field = format!("variants[{i}]");
            if !valid_name(&v.name) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!("{:?}: use 1-64 of a-z, 0-9, '.', '_', '-'", v.name),
                ));
            }
            if self.variants.iter().filter(|o| o.name == v.name).count() > 1 {
                return Err(invalid(
                    format!("{field}.name"),
                    format!("{:?} appears twice", v.name),
                ));
            }
            if !self.has_file(&v.file, FileRole::Model) {
                return Err(invalid(
                    format!("{field}.file"),
                    format!("{:?} is not a file with role \"model\"", v.file),
                ));
            }
        }
        Ok(())
    }

    fn check_scoring(&self) -> Result<(), ManifestError> {
        if self.format != Format::Onnx {
            return Err(invalid("format", "scoring models must be \"onnx\""));
        }
        if self.io.inputs.is_empty() || self.io.outputs.is_empty() {
            return Err(invalid(
                "io",
                "a scoring model declares at least one input and one output",
            ));
        }
        for (section, specs) in [
            ("io.inputs", &self.io.inputs),
            ("io.outputs", &self.io.outputs),
        ] {
            for (i, spec) in specs.iter().enumerate() {
                let field = format!("{section}[{i}]");
                if spec.shape.first() != Some(&-1) {
                    return Err(invalid(
                        format!("{field}.shape"),
                        "the first axis must be -1 (the batch)",
                    ));
                }
                if spec.shape.iter().skip(1).any(|&d| d < 1) {
                    return Err(invalid(
                        format!("{field}.shape"),
                        "axes after the batch must be fixed positive sizes",
                    ));
                }
                if !spec.features.is_empty() && spec.features.len() != spec.row_elements() {
                    return Err(invalid(
                        format!("{field}.features"),
                        format!(
                            "has {} names for {} columns",
                            spec.features.len(),
                            spec.row_elements()
                        ),
                    ));
                }
                if specs.iter().filter(|s| s.name == spec.name).count() > 1 {
                    return Err(invalid(
                        format!("{field}.name"),
                        format!("{:?} appears twice", spec.name),
                    ));
                }
            }
        }
        if self.serving.max_batch == 0 {
            return Err(invalid("serving.max_batch", "must be at least 1"));
        }
        if let Some(drift) = &self.drift {
            self.check_drift(drift)?;
        }
        attributes::check(self)?;
        explain::check(self)?;
        if let Some(gate) = &self.eval {
            let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
            let valid = unit(gate.auc_min)
                && gate.max_abs_diff.is_finite()
                && gate.max_abs_diff >= 0.0
                && gate.decision_threshold.is_finite()
                && gate.teacher_agreement_min.is_none_or(unit);
            if !valid {
                return Err(invalid(
                    "eval",
                    "auc_min and teacher_agreement_min must be in [0, 1], max_abs_diff finite and not negative, decision_threshold finite",
                ));
            }
            if !self.has_file(&gate.set, FileRole::Eval) {
                return Err(invalid(
                    "eval.set",
                    format!("{:?} is not a file with role \"eval\"", gate.set),
                ));
            }
            if !self.io.outputs.iter().any(|o| o.name == gate.score_output) {
                return Err(invalid(
                    "eval.score_output",
                    format!("{:?} is not an output", gate.score_output),
                ));
            }
        }
        Ok(())
    }

    /// The file with role `model` (the first, if several).
    pub fn model_file(&self) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == FileRole::Model)
    }

    /// The model file of a variant by name; `None` names the default model file.
    pub fn variant_file(&self, variant: Option<&str>) -> Option<&FileEntry> {
        match variant {
            None => self.model_file(),
            Some(name) => {
                let v = self.variants.iter().find(|v| v.name == name)?;
                self.files.iter().find(|f| f.path == v.file)
            }
        }
    }

    /// The chat evaluation gate, if the manifest has one.
    pub fn chat_gate(&self) -> Option<&ChatEvalGate> {
        self.chat.as_ref().and_then(|c| c.eval.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"
name = "credit-lr"
version = "1.0.0"
kind = "score"
format = "onnx"

[[files]]
path = "model.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 3
role = "model"

[[files]]
path = "eval/holdout.json"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 3
role = "eval"

[lineage]
distilled_from = "credit-gbdt@1.0.0"

[[io.inputs]]
name = "features"
datatype = "FP32"
shape = [-1, 2]
features = ["a", "b"]

[[io.outputs]]
name = "probability"
datatype = "FP32"
shape = [-1, 1]

[eval]
set = "eval/holdout.json"
score_output = "probability"
decision_threshold = 0.5
auc_min = 0.7
max_abs_diff = 1e-5
"#;

    #[test]
    fn parses_a_scoring_manifest() {
        let m = Manifest::parse(SAMPLE).unwrap();
        assert_eq!(m.id(), "credit-lr@1.0.0");
        assert_eq!(m.io.inputs[0].row_elements(), 2);
        assert_eq!(m.serving.max_batch, 1024);
        assert_eq!(
            m.lineage.distilled_from.as_deref(),
            Some("credit-gbdt@1.0.0")
        );
    }

    #[test]
    fn variants_and_chat_gates_are_checked() {
        let two_models = SAMPLE.replace(
            "[lineage]",
            "[[files]]\npath = \"small.onnx\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 1\nrole = \"model\"\n\n[lineage]",
        );
        let ok = format!(
            "{two_models}\n[[variants]]\nname = \"big\"\nfile = \"model.onnx\"\ngpu_memory_mib = 4096\n\n[[variants]]\nname = \"cpu\"\nfile = \"small.onnx\"\n"
        );
        let m = Manifest::parse(&ok).unwrap();
        assert_eq!(m.variant_file(Some("cpu")).unwrap().path, "small.onnx");
        assert_eq!(m.variants[0].gpu_memory_mib, Some(4096));
        let bad = ok.replace("file = \"small.onnx\"", "file = \"eval/holdout.json\"");
        match Manifest::parse(&bad) {
            Err(ManifestError::Invalid { field, .. }) => assert_eq!(field, "variants[1].file"),
            other => panic!("{other:?}"),
        }
        let chat = "name = \"c\"\nversion = \"1\"\nkind = \"chat\"\nformat = \"gguf\"\n\
            [[files]]\npath = \"m.gguf\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 1\nrole = \"model\"\n\
            [chat.eval]\ntext = \"eval/text.txt\"\nperplexity_max = 30.0\n";
        match Manifest::parse(chat) {
            Err(ManifestError::Invalid { field, .. }) => assert_eq!(field, "chat.eval.text"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_errors() {
        let text = SAMPLE.replace("kind = \"score\"", "kind = \"score\"\nflavour = \"mint\"");
        assert!(
            matches!(Manifest::parse(&text), Err(ManifestError::Parse(m)) if m.contains("flavour"))
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (
                SAMPLE.replace("name = \"credit-lr\"", "name = \"Credit LR\""),
                "name",
            ),
            (
                SAMPLE.replace("path = \"model.onnx\"", "path = \"../model.onnx\""),
                "files[0].path",
            ),
            (
                SAMPLE.replace("shape = [-1, 2]", "shape = [2, 2]"),
                "io.inputs[0].shape",
            ),
            (
                SAMPLE.replace("features = [\"a\", \"b\"]", "features = [\"a\"]"),
                "io.inputs[0].features",
            ),
            (
                SAMPLE.replace("score_output = \"probability\"", "score_output = \"p\""),
                "eval.score_output",
            ),
        ];
        for (text, field) in cases {
            match Manifest::parse(&text) {
                Err(ManifestError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
