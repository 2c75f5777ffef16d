//! Every model under `tests/data/` must give onnxruntime's outputs (written next to it by
//! `tests/data/generate.py`): identical labels and scores within 1e-5, on 1 and several threads.

use std::path::{Path, PathBuf};

use coffer_trees::{OutputKind, Prediction, TreeEnsemble};

const TOLERANCE: f32 = 1e-5;

struct Reference {
    n_rows: usize,
    n_features: usize,
    n_out: usize,
    rows: Vec<f32>,
    labels: Option<Vec<i64>>,
    scores: Vec<f32>,
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn read_reference(path: &Path) -> Reference {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"CTREF1\0\0", "{}", path.display());
    let (n_rows, n_features, n_out, flags) = (
        u32_at(&b, 8),
        u32_at(&b, 12),
        u32_at(&b, 16),
        u32_at(&b, 20),
    );
    let mut at = 24;
    let f32s = |n: usize, at: &mut usize| -> Vec<f32> {
        let v = b[*at..*at + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        *at += 4 * n;
        v
    };
    let rows = f32s(n_rows * n_features, &mut at);
    let labels = (flags & 1 == 1).then(|| {
        let v = b[at..at + 8 * n_rows]
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        at += 8 * n_rows;
        v
    });
    let scores = f32s(n_rows * n_out, &mut at);
    assert_eq!(at, b.len(), "{}", path.display());
    Reference {
        n_rows,
        n_features,
        n_out,
        rows,
        labels,
        scores,
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    v
}

/// The committed cases, plus those in `$COFFER_TREES_EXTRA_DATA` when set (models too big to
/// commit, with references from `generate.py --reference MODEL.onnx DIR`).
fn cases() -> Vec<PathBuf> {
    let mut v = onnx_files(&data_dir());
    if let Some(extra) = std::env::var_os("COFFER_TREES_EXTRA_DATA") {
        v.extend(onnx_files(Path::new(&extra)));
    }
    v
}

/// Max abs difference, NaN equal to NaN (PROBIT of a score outside (0, 1) is NaN in both).
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x.is_nan() && y.is_nan() {
                0.0
            } else if x.is_nan() || y.is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// The reference repeated `times` times: enough rows for `predict` to use several threads
/// even on a tiny model.
fn tiled(reference: &Reference, times: usize) -> Reference {
    Reference {
        n_rows: reference.n_rows * times,
        n_features: reference.n_features,
        n_out: reference.n_out,
        rows: reference.rows.repeat(times),
        labels: reference.labels.as_ref().map(|l| l.repeat(times)),
        scores: reference.scores.repeat(times),
    }
}

fn check(model: &TreeEnsemble, reference: &Reference, threads: usize, name: &str) -> f32 {
    let pred = model
        .predict(&reference.rows, reference.n_rows, threads)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    match pred {
        Prediction::Classifier {
            labels,
            probabilities,
        } => {
            let want = reference
                .labels
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: reference has no labels"));
            for (i, (got, want)) in labels.iter().zip(want).enumerate() {
                assert_eq!(got, want, "{name}: label of row {i} (threads {threads})");
            }
            let d = max_diff(&probabilities, &reference.scores);
            assert!(
                d <= TOLERANCE,
                "{name}: max abs diff {d} (threads {threads})"
            );
            d
        }
        Prediction::Regressor { values } => {
            assert!(reference.labels.is_none(), "{name}");
            let d = max_diff(&values, &reference.scores);
            if d > TOLERANCE {
                for (i, (a, b)) in values.iter().zip(&reference.scores).enumerate() {
                    if (a - b).abs() > TOLERANCE {
                        eprintln!("{name} value {i}: got {a} want {b}");
                    }
                }
            }
            assert!(
                d <= TOLERANCE,
                "{name}: max abs diff {d} (threads {threads})"
            );
            d
        }
    }
}

#[test]
fn matches_onnxruntime_on_every_test_model() {
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "test data missing: run tests/data/generate.py"
    );
    let mut failures = Vec::new();
    for path in &cases {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let result = std::panic::catch_unwind(|| {
            let model = TreeEnsemble::from_onnx_path(path)
                .unwrap_or_else(|e| panic!("{name}: load failed: {e}"));
            let reference = read_reference(&path.with_extension("ref"));
            assert_eq!(model.n_features(), reference.n_features, "{name}");
            assert_eq!(model.n_outputs(), reference.n_out, "{name}");
            assert_eq!(model.is_classifier(), reference.labels.is_some(), "{name}");
            let mut worst: f32 = 0.0;
            for threads in [1, 2, 3] {
                worst = worst.max(check(&model, &reference, threads, &name));
            }
            // Each tree is at least one step, and predict gives a thread 100k steps at least:
            // enough rows for 3 threads.
            let times = (300_000 / model.n_trees().max(1))
                .div_ceil(reference.n_rows)
                .max(1);
            let many = tiled(&reference, times);
            for threads in [2, 3] {
                worst = worst.max(check(&model, &many, threads, &name));
            }
            // Row by row (batch 1) must give the same as the batch.
            let nf = reference.n_features;
            for r in 0..reference.n_rows.min(20) {
                let one = model
                    .predict(&reference.rows[r * nf..(r + 1) * nf], 1, 1)
                    .unwrap();
                let all = model.predict(&reference.rows, reference.n_rows, 1).unwrap();
                match (one, all) {
                    (
                        Prediction::Classifier {
                            labels: l1,
                            probabilities: p1,
                        },
                        Prediction::Classifier {
                            labels: l,
                            probabilities: p,
                        },
                    ) => {
                        let n = reference.n_out;
                        assert_eq!(l1[0], l[r], "{name}");
                        assert_eq!(max_diff(&p1, &p[r * n..(r + 1) * n]), 0.0, "{name}");
                    }
                    (Prediction::Regressor { values: v1 }, Prediction::Regressor { values: v }) => {
                        let n = reference.n_out;
                        assert_eq!(max_diff(&v1, &v[r * n..(r + 1) * n]), 0.0, "{name}");
                    }
                    _ => panic!("{name}: kind changed"),
                }
            }
            eprintln!("{name:40} ok  max |diff| {worst:.2e}");
        });
        if result.is_err() {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "failed: {failures:?}");
}

#[test]
fn converted_models_expose_their_graph() {
    let m = TreeEnsemble::from_onnx_path(data_dir().join("lgbm_binary.onnx")).unwrap();
    assert!(m.is_classifier());
    assert_eq!(m.classes(), &[0, 1]);
    assert_eq!(m.input_name(), "X");
    assert_eq!(m.output_names(), vec!["label", "probabilities"]);
    assert_eq!(m.outputs()[0].kind, OutputKind::Label);
    assert_eq!(m.outputs()[1].kind, OutputKind::Probabilities);
    assert_eq!(m.n_features(), 8);
    assert_eq!(m.n_trees(), 25);

    let r = TreeEnsemble::from_onnx_path(data_dir().join("sk_gbdt_regressor.onnx")).unwrap();
    assert!(!r.is_classifier());
    assert!(r.classes().is_empty());
    assert_eq!(r.outputs().len(), 1);
    assert_eq!(r.outputs()[0].kind, OutputKind::Values);
    assert_eq!(r.n_outputs(), 1);
}

#[test]
fn a_model_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<TreeEnsemble>();
}
