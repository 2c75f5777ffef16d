//! Scoring through the serving layer: a candidate in shadow sees its sample of the
//! requests (after the answer, off the request path), the batcher scores, and telemetry
//! counts the rows and which side of the decision threshold each fell on.

use super::{ServeError, Serving};
use crate::score::{BatchError, LoadedModel};
use crate::tensor::{Tensor, TensorData};

impl Serving {
    /// Scores `rows` rows of validated `inputs` on `loaded` (the version
    /// [`Serving::route_scoring`] chose). `model` is the name the request used, for the
    /// refusal.
    pub async fn score(
        &self,
        loaded: &LoadedModel,
        model: &str,
        inputs: Vec<Tensor>,
        rows: usize,
    ) -> Result<Vec<Tensor>, ServeError> {
        self.cores.scoring();
        let sampled = self.shadows.sample(&loaded.manifest.name, &inputs, rows);
        let outputs = match loaded.batcher.submit(inputs, rows).await {
            Ok(outputs) => outputs,
            Err(BatchError::QueueFull) => {
                loaded.metrics.queue_full.inc();
                return Err(ServeError::AtCapacity {
                    model: model.to_string(),
                });
            }
            Err(e) => {
                tracing::error!(model = %loaded.manifest.id(), error = %e, "scoring failed");
                return Err(ServeError::EngineGone);
            }
        };
        let manifest = &loaded.manifest;
        let above = rows_above_threshold(loaded, &outputs, rows);
        self.telemetry
            .observe_scores(&manifest.name, &manifest.version, rows as u64, above);
        if let Some(sampled) = sampled {
            sampled.compare_after(&outputs);
        }
        Ok(outputs)
    }
}

/// How many rows scored at or above the manifest's decision threshold (column
/// `score_column` of the evaluation gate's score output); 0 without a gate.
fn rows_above_threshold(loaded: &LoadedModel, outputs: &[Tensor], rows: usize) -> u64 {
    let Some(gate) = loaded.manifest.eval.as_ref() else {
        return 0;
    };
    let Some(t) = outputs.iter().find(|t| t.name == gate.score_output) else {
        return 0;
    };
    let width = t.data.len() / rows.max(1);
    let column = gate.score_column.min(width.saturating_sub(1));
    let score = |i: usize| -> Option<f64> {
        match &t.data {
            TensorData::F32(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::F64(v) => v.get(i).copied(),
            _ => None,
        }
    };
    (0..rows)
        .filter_map(|r| score(r * width + column))
        .filter(|s| *s >= gate.decision_threshold)
        .count() as u64
}
