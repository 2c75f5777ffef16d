//! The feature specification of a scoring model (`[[attributes]]` in the manifest): the
//! raw applicant or transaction attributes a client may send instead of the encoded
//! vector, and how each one becomes columns of the model's input (identity, standardized,
//! one-hot, ordinal or bucketed), in order. The training pipeline writes it; cofferd
//! applies it before the engine (`coffer_score::attributes`). This module owns the schema
//! and its checks; the `[reasons]` table (the adverse-action text of each attribute) is
//! checked here too, because it is keyed by attribute.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Datatype, Manifest, ManifestError, invalid};

/// What a client sends for an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Any OIP numeric datatype (INT32, INT64, FP32, FP64).
    Number,
    /// BYTES (a UTF-8 string), one of the attribute's categories.
    Category,
}

/// How an attribute becomes columns of the encoded input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One column: the number as it is.
    Identity,
    /// One column: `(x - mean) / scale`, computed in f64 and then rounded to the input's
    /// type.
    Standardize,
    /// One column per category: 1 for the value's category, 0 elsewhere; a category of
    /// `zero_categories` gives all zeros.
    OneHot,
    /// One column: the category's index in `categories`.
    Ordinal,
    /// One column per bucket (`edges.len() + 1`): bucket `i` holds
    /// `edges[i-1] < x <= edges[i]`, as the drift bins.
    Bucket,
}

/// A value the client may leave out (`missing`), typed as the attribute is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawDefault {
    Number(f64),
    Text(String),
}

/// One raw attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    pub encoding: Encoding,
    /// `standardize`: the training mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// `standardize`: the training scale (standard deviation), > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// `one_hot` and `ordinal`: the categories, in column (or index) order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// `one_hot`: further valid categories that have no column (not seen in training)
    /// and encode as all zeros.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zero_categories: Vec<String>,
    /// `bucket`: strictly increasing finite edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// What an absent or null value becomes; without it the attribute is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<RawDefault>,
}

impl AttributeSpec {
    /// Columns this attribute fills.
    pub fn width(&self) -> usize {
        match self.encoding {
            Encoding::Identity | Encoding::Standardize | Encoding::Ordinal => 1,
            Encoding::OneHot => self.categories.len(),
            Encoding::Bucket => self.edges.len() + 1,
        }
    }

    /// Every value a client may send for a category attribute, columns first.
    pub fn allowed(&self) -> impl Iterator<Item = &str> {
        self.categories
            .iter()
            .chain(&self.zero_categories)
            .map(String::as_str)
    }

    /// The names of its columns as the input's `features` list names them (`name` or
    /// `name=category`); `None` for buckets, whose columns have no fixed naming.
    fn column_names(&self) -> Option<Vec<String>> {
        match self.encoding {
            Encoding::Identity | Encoding::Standardize | Encoding::Ordinal => {
                Some(vec![self.name.clone()])
            }
            Encoding::OneHot => Some(
                self.categories
                    .iter()
                    .map(|c| format!("{}={c}", self.name))
                    .collect(),
            ),
            Encoding::Bucket => None,
        }
    }
}

/// Attribute names: 1-128 of `[A-Za-z0-9_.-]`.
pub fn valid_attribute_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn check_one(a: &AttributeSpec, field: &str) -> Result<(), ManifestError> {
    if !valid_attribute_name(&a.name) {
        return Err(invalid(
            format!("{field}.name"),
            format!("{:?}: use 1-128 of A-Z, a-z, 0-9, '_', '.', '-'", a.name),
        ));
    }
    let fits = matches!(
        (a.value_type, a.encoding),
        (
            ValueType::Number,
            Encoding::Identity | Encoding::Standardize | Encoding::Bucket
        ) | (ValueType::Category, Encoding::OneHot | Encoding::Ordinal)
    );
    if !fits {
        return Err(invalid(
            format!("{field}.encoding"),
            "numbers take identity, standardize or bucket; categories one_hot or ordinal",
        ));
    }
    let unused = |what: &str, present: bool| -> Result<(), ManifestError> {
        if present {
            Err(invalid(
                format!("{field}.{what}"),
                format!("is not used by the {:?} encoding", a.encoding),
            ))
        } else {
            Ok(())
        }
    };
    let standardize = a.encoding == Encoding::Standardize;
    unused("mean", !standardize && a.mean.is_some())?;
    unused("scale", !standardize && a.scale.is_some())?;
    unused(
        "categories",
        a.value_type == ValueType::Number && !a.categories.is_empty(),
    )?;
    unused(
        "zero_categories",
        a.encoding != Encoding::OneHot && !a.zero_categories.is_empty(),
    )?;
    unused(
        "edges",
        a.encoding != Encoding::Bucket && !a.edges.is_empty(),
    )?;
    if standardize {
        let ok =
            a.mean.is_some_and(f64::is_finite) && a.scale.is_some_and(|s| s.is_finite() && s > 0.0);
        if !ok {
            return Err(invalid(
                field,
                "standardize needs a finite mean and a finite scale above 0",
            ));
        }
    }
    if a.value_type == ValueType::Category {
        if a.categories.is_empty() {
            return Err(invalid(format!("{field}.categories"), "lists no category"));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = a.allowed().find(|c| !seen.insert(*c)) {
            return Err(invalid(
                format!("{field}.categories"),
                format!("{dup:?} appears twice"),
            ));
        }
    }
    if a.encoding == Encoding::Bucket {
        let ok = !a.edges.is_empty()
            && a.edges.iter().all(|e| e.is_finite())
            && a.edges.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(invalid(
                format!("{field}.edges"),
                "must be finite, strictly increasing and not empty",
            ));
        }
    }
    match (&a.missing, a.value_type) {
        (None, _) => {}
        (Some(RawDefault::Number(x)), ValueType::Number) if x.is_finite() => {}
        (Some(RawDefault::Text(t)), ValueType::Category) if a.allowed().any(|c| c == t) => {}
        (Some(_), _) => {
            return Err(invalid(
                format!("{field}.missing"),
                "must be a finite number for a number, one of the categories for a category",
            ));
        }
    }
    Ok(())
}

/// Checks `[[attributes]]` and `[reasons]` against each other and the model's input.
pub(crate) fn check(manifest: &Manifest) -> Result<(), ManifestError> {
    let attrs = &manifest.attributes;
    if attrs.is_empty() {
        if !manifest.reasons.is_empty() {
            return Err(invalid("reasons", "needs [[attributes]] to name"));
        }
        return Ok(());
    }
    let [input] = manifest.io.inputs.as_slice() else {
        return Err(invalid(
            "attributes",
            "a model with attributes has exactly one input, which they fill",
        ));
    };
    if !matches!(input.datatype, Datatype::Fp32 | Datatype::Fp64) || input.shape.len() != 2 {
        return Err(invalid(
            "attributes",
            format!(
                "fill an FP32 or FP64 input of shape [-1, columns]; '{}' is {} {:?}",
                input.name, input.datatype, input.shape
            ),
        ));
    }
    let mut names = HashSet::new();
    for (i, a) in attrs.iter().enumerate() {
        let field = format!("attributes[{i}]");
        check_one(a, &field)?;
        if !names.insert(a.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("{:?} appears twice", a.name),
            ));
        }
        if a.name == input.name {
            return Err(invalid(
                format!("{field}.name"),
                format!("{:?} is the name of the model's input", a.name),
            ));
        }
    }
    let width: usize = attrs.iter().map(AttributeSpec::width).sum();
    if width != input.row_elements() {
        return Err(invalid(
            "attributes",
            format!(
                "encode into {width} columns but input '{}' has {}",
                input.name,
                input.row_elements()
            ),
        ));
    }
    if !input.features.is_empty() {
        let mut column = 0;
        for a in attrs {
            if let Some(expected) = a.column_names() {
                let got = &input.features[column..column + a.width()];
                if got != expected.as_slice() {
                    return Err(invalid(
                        "attributes",
                        format!(
                            "attribute {:?} fills columns {column}.. named {:?}, but the input's features name them {:?}",
                            a.name, expected, got
                        ),
                    ));
                }
            }
            column += a.width();
        }
    }
    check_reasons(&manifest.reasons, &names)
}

fn check_reasons(
    reasons: &BTreeMap<String, String>,
    names: &HashSet<&str>,
) -> Result<(), ManifestError> {
    if reasons.is_empty() {
        return Ok(());
    }
    if let Some(unknown) = reasons.keys().find(|k| !names.contains(k.as_str())) {
        return Err(invalid(
            "reasons",
            format!("{unknown:?} is not an attribute"),
        ));
    }
    if let Some(missing) = names.iter().find(|n| !reasons.contains_key(**n)) {
        return Err(invalid(
            "reasons",
            format!("attribute {missing:?} has no reason text: every attribute needs one"),
        ));
    }
    if let Some((k, _)) = reasons
        .iter()
        .find(|(_, t)| t.trim().is_empty() || t.len() > 200)
    {
        return Err(invalid(format!("reasons.{k}"), "must be 1-200 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "m"
version = "1"
kind = "score"
format = "onnx"
[[files]]
path = "model.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 1
role = "model"
[[io.inputs]]
name = "features"
datatype = "FP32"
shape = [-1, 4]
features = ["age", "status=a", "status=b", "amount"]
[[io.outputs]]
name = "p"
datatype = "FP32"
shape = [-1, 1]
"#;

    const ATTRS: &str = r#"
[[attributes]]
name = "age"
type = "number"
encoding = "standardize"
mean = 35.5
scale = 11.2
[[attributes]]
name = "status"
type = "category"
encoding = "one_hot"
categories = ["a", "b"]
zero_categories = ["c"]
missing = "c"
[[attributes]]
name = "amount"
type = "number"
encoding = "identity"
"#;

    fn parse(extra: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(&format!("{BASE}{extra}"))
    }

    fn problem(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn a_consistent_specification_parses() {
        let m = parse(ATTRS).unwrap();
        assert_eq!(m.attributes.len(), 3);
        assert_eq!(m.attributes[1].width(), 2);
        assert_eq!(
            m.attributes[1].missing,
            Some(RawDefault::Text("c".to_string()))
        );
    }

    #[test]
    fn widths_must_fill_the_input() {
        let short = ATTRS.replace("categories = [\"a\", \"b\"]", "categories = [\"a\"]");
        assert!(
            problem(&short).contains("encode into 3 columns"),
            "{}",
            problem(&short)
        );
    }

    #[test]
    fn column_names_must_match_the_features_list() {
        let swapped = ATTRS.replace("[\"a\", \"b\"]", "[\"b\", \"a\"]");
        assert!(
            problem(&swapped).contains("status"),
            "{}",
            problem(&swapped)
        );
    }

    #[test]
    fn encodings_are_checked_for_their_parameters() {
        let no_scale = ATTRS.replace("scale = 11.2\n", "");
        assert!(problem(&no_scale).contains("finite scale"));
        let zero_scale = ATTRS.replace("scale = 11.2", "scale = 0.0");
        assert!(problem(&zero_scale).contains("finite scale"));
        let wrong = ATTRS.replace("encoding = \"identity\"", "encoding = \"one_hot\"");
        assert!(problem(&wrong).contains("numbers take"));
        let stray = ATTRS.replace(
            "encoding = \"identity\"",
            "encoding = \"identity\"\nmean = 1.0",
        );
        assert!(problem(&stray).contains("attributes[2].mean"));
        let dup = ATTRS.replace("zero_categories = [\"c\"]", "zero_categories = [\"a\"]");
        assert!(problem(&dup).contains("appears twice"));
        let bad_default = ATTRS.replace("missing = \"c\"", "missing = \"z\"");
        assert!(problem(&bad_default).contains("missing"));
        let typed_default = ATTRS.replace("missing = \"c\"", "missing = 1.0");
        assert!(problem(&typed_default).contains("missing"));
    }

    #[test]
    fn reasons_must_name_every_attribute_and_nothing_else() {
        let all = "[reasons]\nage = \"Age\"\nstatus = \"Status\"\namount = \"Amount\"\n";
        assert_eq!(parse(&format!("{ATTRS}{all}")).unwrap().reasons.len(), 3);
        let short = "[reasons]\nage = \"Age\"\nstatus = \"Status\"\n";
        assert!(problem(&format!("{ATTRS}{short}")).contains("amount"));
        let extra = format!("{all}other = \"x\"\n");
        assert!(problem(&format!("{ATTRS}{extra}")).contains("other"));
        assert!(problem(all).contains("needs [[attributes]]"));
    }

    #[test]
    fn bucket_edges_must_increase() {
        let text = BASE.replace(
            "features = [\"age\", \"status=a\", \"status=b\", \"amount\"]",
            "",
        );
        let ok = "[[attributes]]\nname = \"x\"\ntype = \"number\"\nencoding = \"bucket\"\nedges = [1.0, 2.0, 3.0]\n";
        assert!(Manifest::parse(&format!("{text}{ok}")).is_ok());
        let bad = ok.replace("[1.0, 2.0, 3.0]", "[1.0, 3.0, 2.0]");
        let e = Manifest::parse(&format!("{text}{bad}")).unwrap_err();
        assert!(e.to_string().contains("increasing"));
    }
}
