//! The explanation's part of an infer response (`docs/scoring.md`, "Reason codes"): the
//! response parameters that say how to read it and its five outputs, serialized straight
//! from the explained rows, with no intermediate JSON values or copied strings.

use serde::Serialize;
use serde::ser::{SerializeSeq as _, Serializer};

use coffer_score::{Explainer, Explanation};

/// The response parameters of an explained request.
#[derive(Serialize)]
pub struct ExplanationParameters<'a> {
    explanation_method: &'static str,
    explanation_space: &'static str,
    explanation_attributes: Joined<'a>,
}

/// Strings written as one, comma-separated.
struct Joined<'a>(&'a [String]);

impl std::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which of the explanation's values an output holds.
#[derive(Clone, Copy)]
enum Part {
    Contributions,
    BaseValue,
    Margin,
    ReasonCodes,
    Reasons,
}

/// One explanation output, in the protocol's tensor form.
#[derive(Serialize)]
pub struct ExplanationOutput<'a> {
    name: &'static str,
    datatype: &'static str,
    shape: Dims,
    data: Data<'a>,
}

/// A shape of rank 1 or 2, written as its JSON array.
#[derive(Clone, Copy)]
struct Dims {
    dims: [usize; 2],
    rank: usize,
}

impl Serialize for Dims {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.dims[..self.rank].serialize(s)
    }
}

/// An output's values, read from the rows as they are written.
struct Data<'a> {
    part: Part,
    explainer: &'a Explainer,
    rows: &'a [Explanation],
    /// Reasons a row: shorter rows are padded with empty strings.
    k: usize,
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rows = self.rows;
        match self.part {
            Part::Contributions => s.collect_seq(rows.iter().flat_map(|r| r.contributions.iter())),
            Part::BaseValue => s.collect_seq(rows.iter().map(|r| r.base_value)),
            Part::Margin => s.collect_seq(rows.iter().map(|r| r.margin)),
            Part::ReasonCodes => {
                let names = self.explainer.attributes();
                reasons(s, rows, self.k, |a| names[a].as_str())
            }
            Part::Reasons => reasons(s, rows, self.k, |a| self.explainer.reason_text(a)),
        }
    }
}

/// `k` reasons a row, each written by `text` from its attribute's index; a row with
/// fewer is padded with empty strings.
fn reasons<'t, S: Serializer>(
    s: S,
    rows: &[Explanation],
    k: usize,
    text: impl Fn(usize) -> &'t str,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(rows.len() * k))?;
    for row in rows {
        for i in 0..k {
            seq.serialize_element(row.reasons.get(i).map_or("", |&a| text(a)))?;
        }
    }
    seq.end()
}

/// The response parameters and the five outputs of `rows` explained rows: shapes
/// `[N, attributes]`, `[N]`, `[N]`, `[N, K]` and `[N, K]`, with `K` the most reasons a
/// row has.
pub fn explanation<'a>(
    explainer: &'a Explainer,
    rows: &'a [Explanation],
) -> (ExplanationParameters<'a>, [ExplanationOutput<'a>; 5]) {
    let n = rows.len();
    let k = rows.iter().map(|r| r.reasons.len()).max().unwrap_or(0);
    let output = |name, datatype, dims: &[usize], part| ExplanationOutput {
        name,
        datatype,
        shape: Dims {
            dims: [dims[0], dims.get(1).copied().unwrap_or(0)],
            rank: dims.len(),
        },
        data: Data {
            part,
            explainer,
            rows,
            k,
        },
    };
    let parameters = ExplanationParameters {
        explanation_method: explainer.method(),
        explanation_space: "log_odds",
        explanation_attributes: Joined(explainer.attributes()),
    };
    let attributes = explainer.attributes().len();
    let outputs = [
        output(
            "explain_contributions",
            "FP64",
            &[n, attributes],
            Part::Contributions,
        ),
        output("explain_base_value", "FP64", &[n], Part::BaseValue),
        output("explain_margin", "FP64", &[n], Part::Margin),
        output("explain_reason_codes", "BYTES", &[n, k], Part::ReasonCodes),
        output("explain_reasons", "BYTES", &[n, k], Part::Reasons),
    ];
    (parameters, outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::path::Path;

    fn credit_lr() -> Explainer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/credit-lr/1.0.0");
        let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        let manifest = coffer_models::Manifest::parse(&text).unwrap();
        coffer_score::load_explainer(&manifest, &dir, &dir.join("model.onnx"))
            .unwrap()
            .unwrap()
    }

    /// The bytes a response would carry, read back.
    fn written(explainer: &Explainer, rows: &[Explanation]) -> Value {
        #[derive(Serialize)]
        struct Body<'a> {
            parameters: ExplanationParameters<'a>,
            outputs: [ExplanationOutput<'a>; 5],
        }
        let (parameters, outputs) = explanation(explainer, rows);
        let bytes = serde_json::to_vec(&Body {
            parameters,
            outputs,
        })
        .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn rows_are_written_in_tensor_form_with_short_reason_lists_padded() {
        let explainer = credit_lr();
        let a = explainer.attributes().len();
        let row = |base: f64, reasons: Vec<usize>| Explanation {
            base_value: base,
            margin: base + 0.25 * a as f64,
            contributions: vec![0.25; a],
            reasons,
        };
        let mut rows = [row(-1.5, vec![2, 0]), row(-1.5, vec![])];
        // A non-finite value is written as null, as for the model's own outputs.
        rows[1].contributions[a - 1] = f64::NAN;
        let mut contributions = vec![json!(0.25); 2 * a];
        contributions[2 * a - 1] = Value::Null;
        let names = explainer.attributes();
        let texts = [explainer.reason_text(2), explainer.reason_text(0)];
        let want = json!({
            "parameters": {
                "explanation_method": "linear",
                "explanation_space": "log_odds",
                "explanation_attributes": names.join(","),
            },
            "outputs": [
                {"name": "explain_contributions", "datatype": "FP64", "shape": [2, a], "data": contributions},
                {"name": "explain_base_value", "datatype": "FP64", "shape": [2], "data": [-1.5, -1.5]},
                {"name": "explain_margin", "datatype": "FP64", "shape": [2], "data": [rows[0].margin, rows[1].margin]},
                {"name": "explain_reason_codes", "datatype": "BYTES", "shape": [2, 2], "data": [names[2], names[0], "", ""]},
                {"name": "explain_reasons", "datatype": "BYTES", "shape": [2, 2], "data": [texts[0], texts[1], "", ""]},
            ],
        });
        assert_eq!(written(&explainer, &rows), want);
        assert!(!texts[0].is_empty() && texts[0] != names[2], "{texts:?}");
    }

    #[test]
    fn no_rows_are_empty_tensors() {
        let explainer = credit_lr();
        let a = explainer.attributes().len();
        let v = written(&explainer, &[]);
        let shapes: Vec<&Value> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| &o["shape"])
            .collect();
        assert_eq!(
            shapes,
            [
                &json!([0, a]),
                &json!([0]),
                &json!([0]),
                &json!([0, 0]),
                &json!([0, 0])
            ]
        );
        assert!(
            v["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o["data"] == json!([]))
        );
    }
}
