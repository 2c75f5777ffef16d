//! The evaluation gate a candidate passes before it may serve: it runs its own eval set
//! in a separate engine instance (not the serving one). Scoring: AUC at least the
//! manifest's floor, outputs within `max_abs_diff` of the reference outputs, and for
//! distilled students decision agreement with the teacher at the manifest's threshold.
//! Chat: perplexity and golden answers ([`crate::chat::eval`]). Embeddings: cosine to
//! reference vectors and recall@k (`coffer_chat::embed::eval`).

use std::path::Path;

use coffer_models::evalset::{EvalSet, auc};
use coffer_models::{Datatype, Kind, Manifest};

use crate::tensor::{Tensor, TensorData};

/// The outcome of a gate: passed or not, and a one-line summary of the measurements.
#[derive(Debug, Clone)]
pub struct GateReport {
    pub passed: bool,
    pub summary: String,
}

fn fail(summary: String) -> GateReport {
    GateReport {
        passed: false,
        summary,
    }
}

/// Runs the gate of the version in `dir` on `model_file` (the variant that would serve).
/// A version without a gate passes with a summary saying so.
pub fn run(dir: &Path, manifest: &Manifest, model_file: &Path, chat_threads: usize) -> GateReport {
    match manifest.kind {
        Kind::Score => score_gate(dir, manifest, model_file),
        Kind::Chat => {
            if manifest.chat_gate().is_none() {
                return GateReport {
                    passed: true,
                    summary: "no evaluation gate in the manifest".into(),
                };
            }
            match crate::chat::eval::evaluate(dir, manifest, model_file, chat_threads) {
                Ok(report) => GateReport {
                    passed: report.passed(),
                    summary: report.summary(),
                },
                Err(e) => fail(format!("evaluation could not run: {e}")),
            }
        }
        Kind::Embedding => {
            if manifest
                .embedding
                .as_ref()
                .and_then(|e| e.eval.as_ref())
                .is_none()
            {
                return GateReport {
                    passed: true,
                    summary: "no evaluation gate in the manifest".into(),
                };
            }
            match coffer_chat::embed::eval::evaluate(dir, manifest, model_file, chat_threads) {
                Ok(report) => GateReport {
                    passed: report.passed(),
                    summary: report.summary(),
                },
                Err(e) => fail(format!("evaluation could not run: {e}")),
            }
        }
    }
}

fn rows_tensor(name: &str, datatype: Datatype, rows: &[Vec<f64>]) -> Tensor {
    let flat = rows.iter().flatten().copied();
    let data = match datatype {
        Datatype::Fp32 => TensorData::F32(flat.map(|x| x as f32).collect()),
        Datatype::Fp64 => TensorData::F64(flat.collect()),
        Datatype::Int32 => TensorData::I32(flat.map(|x| x as i32).collect()),
        Datatype::Int64 => TensorData::I64(flat.map(|x| x as i64).collect()),
        Datatype::Bool => TensorData::Bool(flat.map(|x| x != 0.0).collect()),
    };
    Tensor {
        name: name.to_string(),
        shape: vec![rows.len(), rows.first().map_or(0, Vec::len)],
        data,
    }
}

fn score_gate(dir: &Path, manifest: &Manifest, model_file: &Path) -> GateReport {
    let Some(gate) = &manifest.eval else {
        return GateReport {
            passed: true,
            summary: "no evaluation gate in the manifest".into(),
        };
    };
    let set_path = dir.join(&gate.set);
    let set = match std::fs::read(&set_path)
        .map_err(|e| e.to_string())
        .and_then(|b| EvalSet::parse(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: {e}", gate.set)),
    };
    let Some(input) = manifest.io.inputs.iter().find(|i| i.name == set.input) else {
        return fail(format!(
            "{}: its input {:?} is not an input of the model",
            gate.set, set.input
        ));
    };
    if manifest.io.inputs.len() != 1 {
        return fail("the gate supports models with one input".into());
    }
    if set.rows.first().map(Vec::len) != Some(input.row_elements()) {
        return fail(format!(
            "{}: rows do not have the {} columns of input {:?}",
            gate.set,
            input.row_elements(),
            input.name
        ));
    }
    let encoding = match attributes_check(manifest, &set) {
        Ok(text) => text,
        Err(problem) => return fail(format!("{}: {problem}", gate.set)),
    };
    let engine = match crate::score::load_engine_file(manifest, model_file) {
        Ok(e) => e,
        Err(e) => return fail(format!("the model does not load: {e}")),
    };
    // Batches of at most max_batch rows, outputs concatenated per output.
    let mut outputs: Vec<(String, usize, Vec<f64>)> = Vec::new();
    for chunk in set.rows.chunks(manifest.serving.max_batch.max(1)) {
        let tensor = rows_tensor(&input.name, input.datatype, chunk);
        let result = match engine.run(vec![tensor], chunk.len()) {
            Ok(r) => r,
            Err(e) => return fail(format!("inference on the eval set failed: {e}")),
        };
        for out in result {
            let cols = out.row_len();
            match outputs.iter_mut().find(|o| o.0 == out.name) {
                Some(o) => o.2.extend(out.data.to_f64()),
                None => outputs.push((out.name.clone(), cols, out.data.to_f64())),
            }
        }
    }
    let Some((_, cols, score_values)) = outputs.iter().find(|o| o.0 == gate.score_output) else {
        return fail(format!("the model gave no output {:?}", gate.score_output));
    };
    if gate.score_column >= (*cols).max(1) {
        return fail(format!(
            "eval.score_column {} is outside output {:?} ({} columns)",
            gate.score_column, gate.score_output, cols
        ));
    }
    let scores: Vec<f64> = score_values
        .chunks((*cols).max(1))
        .map(|r| r[gate.score_column])
        .collect();
    let mut problems = Vec::new();
    if set.labels.iter().any(|&l| l > 1) {
        problems.push(format!("{}: labels must be 0 or 1", gate.set));
    }
    if set.reference_flat(&gate.score_output).is_none() {
        problems.push(format!(
            "{}: no reference outputs for {:?}",
            gate.set, gate.score_output
        ));
    }
    let measured_auc = auc(&scores, &set.labels);
    match measured_auc {
        Some(a) if a >= gate.auc_min => {}
        Some(a) => problems.push(format!("AUC {a:.4} is below the floor {}", gate.auc_min)),
        None => problems.push("the eval set has only one class; AUC is undefined".into()),
    }
    let mut worst = 0.0f64;
    for (name, _, values) in &outputs {
        let Some(reference) = set.reference_flat(name) else {
            continue;
        };
        if reference.len() != values.len() {
            problems.push(format!(
                "output {name:?} has {} values, the reference {}",
                values.len(),
                reference.len()
            ));
            continue;
        }
        let diff = values
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        worst = worst.max(if diff.is_nan() { f64::INFINITY } else { diff });
    }
    if worst > gate.max_abs_diff {
        problems.push(format!(
            "outputs differ from the reference by up to {worst:.3e} (max {:.1e})",
            gate.max_abs_diff
        ));
    }
    let all_rows = rows_tensor(&input.name, input.datatype, &set.rows);
    let explained =
        match super::explain_gate::check(manifest, dir, model_file, &set, &all_rows, &scores) {
            Ok(text) => text,
            Err(found) => {
                problems.extend(found);
                String::new()
            }
        };
    let mut agreement_text = String::new();
    if let Some(min) = gate.teacher_agreement_min {
        match &set.teacher {
            Some(t) if t.scores.len() == scores.len() => {}
            Some(t) => problems.push(format!(
                "{}: {} teacher scores for {} rows",
                gate.set,
                t.scores.len(),
                scores.len()
            )),
            None => problems.push(format!(
                "{}: teacher_agreement_min is {min} but the set has no teacher scores",
                gate.set
            )),
        }
    }
    if let (Some(min), Some(teacher)) = (gate.teacher_agreement_min, &set.teacher) {
        let agree = scores
            .iter()
            .zip(&teacher.scores)
            .filter(|(a, b)| (**a >= gate.decision_threshold) == (**b >= gate.decision_threshold))
            .count() as f64
            / scores.len().max(1) as f64;
        agreement_text = format!("; agreement with {} {agree:.3}", teacher.model);
        if agree < min {
            problems.push(format!(
                "decision agreement with the teacher {} is {agree:.3}, below {min}",
                teacher.model
            ));
        }
    }
    let summary = format!(
        "AUC {} (floor {}); max abs diff {worst:.1e}{agreement_text}; {} rows{encoding}{explained}",
        measured_auc.map_or("n/a".to_string(), |a| format!("{a:.4}")),
        gate.auc_min,
        scores.len()
    );
    if problems.is_empty() {
        GateReport {
            passed: true,
            summary,
        }
    } else {
        fail(format!("{}; measured: {summary}", problems.join("; ")))
    }
}

/// A model with `[[attributes]]` ships its eval rows as raw attributes too: encoding them
/// must give the eval rows bit for bit (as the input's type), so a specification that
/// does not match the training pipeline's transform never activates.
fn attributes_check(manifest: &Manifest, set: &EvalSet) -> Result<String, String> {
    let Some(encoder) = coffer_score::AttributeEncoder::new(manifest) else {
        return Ok(String::new());
    };
    let Some(columns) = &set.attributes else {
        return Err("the model has [[attributes]] but the set has no raw `attributes`".into());
    };
    let encoded = encoder
        .encode_columns(columns, set.rows.len())
        .map_err(|(row, e)| format!("raw attributes of row {row}: {e}"))?;
    // Compared as the input's type: the set's f32 values read as f64 may be an ulp off.
    let as_input = |x: f64| match manifest.io.inputs[0].datatype {
        Datatype::Fp64 => x,
        _ => f64::from(x as f32),
    };
    let width = encoder.width();
    for (r, (row, got)) in set.rows.iter().zip(encoded.chunks_exact(width)).enumerate() {
        let differs = |c: usize| as_input(got[c]).to_bits() != as_input(row[c]).to_bits();
        if let Some(c) = (0..width).find(|&c| differs(c)) {
            return Err(format!(
                "the attributes encode row {r} column {c} as {} but the set has {}",
                as_input(got[c]),
                row[c]
            ));
        }
    }
    Ok(format!(
        "; {} attributes encode all rows exactly",
        encoder.attributes().len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> (std::path::PathBuf, Manifest) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/fixtures")
            .join(name)
            .join("1.0.0");
        let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        (dir, Manifest::parse(&text).unwrap())
    }

    #[test]
    fn the_fixtures_attributes_reproduce_their_eval_rows() {
        for name in ["credit-gbdt", "credit-lr", "credit-mlp", "aml-risk"] {
            let (dir, manifest) = fixture(name);
            let report = run(&dir, &manifest, &dir.join("model.onnx"), 1);
            eprintln!("{name}: {}", report.summary);
            assert!(report.passed, "{name}: {}", report.summary);
            assert!(
                report
                    .summary
                    .contains("attributes encode all rows exactly"),
                "{name}: {}",
                report.summary
            );
        }
    }

    #[test]
    fn a_specification_that_differs_from_the_training_transform_fails_the_gate() {
        let (dir, mut manifest) = fixture("credit-lr");
        // The training mean of the first attribute, a millionth off.
        let mean = manifest.attributes[0].mean.unwrap();
        manifest.attributes[0].mean = Some(mean * (1.0 + 1e-6));
        let report = run(&dir, &manifest, &dir.join("model.onnx"), 1);
        assert!(!report.passed);
        assert!(
            report.summary.contains("encode row") && report.summary.contains("column 0"),
            "{}",
            report.summary
        );

        let (dir, mut manifest) = fixture("credit-lr");
        let purpose = manifest
            .attributes
            .iter_mut()
            .find(|a| a.name == "purpose")
            .unwrap();
        purpose.categories.swap(0, 1);
        let report = run(&dir, &manifest, &dir.join("model.onnx"), 1);
        assert!(!report.passed, "{}", report.summary);
    }

    #[test]
    fn explanations_that_do_not_match_the_reference_fail_the_gate() {
        let (dir, mut manifest) = fixture("credit-lr");
        let spec = manifest.explain.as_mut().unwrap();
        spec.background_mean[0] += 0.01;
        let report = run(&dir, &manifest, &dir.join("model.onnx"), 1);
        assert!(!report.passed);
        assert!(
            report
                .summary
                .contains("explanations differ from the reference"),
            "{}",
            report.summary
        );
        // Covers that do not add up are refused before any row is explained.
        let (dir, manifest) = fixture("credit-gbdt");
        let tmp = tempfile::tempdir().unwrap();
        for entry in ["model.onnx", "eval", "explain"] {
            let status = std::process::Command::new("cp")
                .args(["-r", &dir.join(entry).display().to_string()])
                .arg(tmp.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let covers = tmp.path().join("explain/tree_covers.json");
        let text = std::fs::read_to_string(&covers).unwrap();
        std::fs::write(&covers, text.replacen("[700.0,424.0", "[700.0,425.0", 1)).unwrap();
        let report = run(tmp.path(), &manifest, &tmp.path().join("model.onnx"), 1);
        assert!(!report.passed);
        assert!(report.summary.contains("cover"), "{}", report.summary);
    }
}
