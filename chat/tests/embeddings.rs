//! The embedding engine against the reference implementation: every reference sentence
//! (models/embed/reference: 1,032 sentences embedded by sentence-transformers on the
//! original safetensors model) embedded by llama.cpp on the converted GGUF, batched
//! and one at a time, and the evaluation gate on the shipped version.

use std::path::PathBuf;

use coffer_chat::embed::eval::{embed_all, evaluate};
use coffer_chat::embed::{EmbedFailure, EmbedSettings, EmbedSpec, LlamaEmbedder, cosine};
use coffer_engine::FaultWatch;
use coffer_models::Manifest;

/// The model `models/fetch-minilm` writes: absent, the tests say so and pass, except
/// under CI.
fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("COFFER_EMBED_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../models/embedding/all-minilm-l6-v2/1.0.0")
        });
    if dir.join("manifest.toml").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must fetch the embedding model (models/fetch-minilm)"
    );
    eprintln!(
        "skipped: no embedding model at {} (run models/fetch-minilm)",
        dir.display()
    );
    None
}

fn reference() -> (Vec<String>, Vec<Vec<f32>>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/embed/reference");
    let sentences: Vec<String> = std::fs::read_to_string(dir.join("sentences.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let raw = std::fs::read(dir.join("vectors.f32")).unwrap();
    let width = raw.len() / 4 / sentences.len();
    let vectors = raw
        .chunks_exact(width * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();
    (sentences, vectors)
}

fn engine(dir: &std::path::Path, threads: usize) -> (Manifest, LlamaEmbedder) {
    let manifest =
        Manifest::parse(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
    let spec = manifest.embedding.clone().unwrap();
    let file = dir.join(&manifest.variant_file(None).unwrap().path);
    let engine = LlamaEmbedder::start(
        &file,
        &EmbedSpec {
            max_tokens: spec.max_tokens,
            normalize: spec.normalize,
        },
        &EmbedSettings {
            threads,
            ..EmbedSettings::default()
        },
        FaultWatch::default().for_version("t", "1"),
    )
    .unwrap();
    (manifest, engine)
}

#[test]
fn every_reference_sentence_matches_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let (_, engine) = engine(&dir, 2);
    let (sentences, reference) = reference();
    assert!(sentences.len() >= 1000);
    let got = embed_all(&engine, &sentences).unwrap();
    assert_eq!(got.len(), sentences.len());
    let cosines: Vec<f64> = got
        .iter()
        .zip(&reference)
        .map(|(a, b)| cosine(a, b))
        .collect();
    let (worst, min) = cosines
        .iter()
        .copied()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    eprintln!(
        "{} sentences: cosine to sentence-transformers min {min:.7} (\"{}\"), mean {mean:.7}",
        cosines.len(),
        sentences[worst]
    );
    assert!(
        min >= 0.999,
        "sentence {worst} ({:?}): {min}",
        sentences[worst]
    );
    // Unit length, as the reference's Normalize module makes them.
    for v in &got {
        let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}

#[test]
fn a_batched_request_gives_the_vectors_of_single_ones() {
    let Some(dir) = model_dir() else { return };
    let (_, engine) = engine(&dir, 2);
    let (sentences, _) = reference();
    let some: Vec<String> = sentences.iter().step_by(16).take(48).cloned().collect();
    let batched = embed_all(&engine, &some).unwrap();
    // The same sequences in passes of different shapes: llama.cpp's matrix kernels
    // block a 48-row pass differently from a one-row one, so the sums round
    // differently; the vectors agree to float rounding, not bit for bit.
    let mut worst = 0.0f32;
    let mut least_cosine = 1.0f64;
    for (s, b) in some.iter().zip(&batched) {
        let single = embed_all(&engine, std::slice::from_ref(s))
            .unwrap()
            .remove(0);
        least_cosine = least_cosine.min(cosine(&single, b));
        for (x, y) in single.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!(
        "batched vs single: largest element difference {worst:e}, least cosine {least_cosine:.9}"
    );
    assert!(worst <= 5e-4, "{worst}");
    assert!(least_cosine >= 0.999_999, "{least_cosine}");
    // Batching the same inputs the same way again gives the same bits.
    assert_eq!(embed_all(&engine, &some).unwrap(), batched);
}

#[test]
fn inputs_past_the_limits_are_refused_by_index() {
    let Some(dir) = model_dir() else { return };
    let (_, engine) = engine(&dir, 1);
    let long = "word ".repeat(400);
    match engine.tokenize(&["fine".into(), long]) {
        Err(EmbedFailure::TooLong {
            index: 1,
            max: 256,
            tokens,
        }) => assert!(tokens > 256),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        engine.tokenize(&[String::new()]),
        Err(EmbedFailure::Empty { index: 0 })
    );
    match engine.check_tokens(vec![vec![101, 102], vec![101, 999_999]]) {
        Err(EmbedFailure::UnknownToken {
            index: 1,
            id: 999_999,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        engine.check_tokens(vec![vec![101, 7592, 102]]).unwrap(),
        vec![vec![101, 7592, 102]]
    );
}

#[test]
fn the_gate_passes_the_shipped_version_and_fails_a_tampered_reference() {
    let Some(dir) = model_dir() else { return };
    let manifest =
        Manifest::parse(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
    let file = dir.join(&manifest.variant_file(None).unwrap().path);
    let report = evaluate(&dir, &manifest, &file, 2).unwrap();
    eprintln!("{}", report.summary());
    assert!(report.passed(), "{}", report.summary());
    let (got, _, k) = report.recall.unwrap();
    assert!(got >= 0.9 && k == 3);

    // The same model against reference vectors that are not its own.
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir(copy.path().join("eval")).unwrap();
    for f in ["eval/sentences.txt", "eval/retrieval.json"] {
        std::fs::copy(dir.join(f), copy.path().join(f)).unwrap();
    }
    let mut vectors = std::fs::read(dir.join("eval/vectors.f32")).unwrap();
    vectors.rotate_left(384 * 4);
    std::fs::write(copy.path().join("eval/vectors.f32"), vectors).unwrap();
    let report = evaluate(copy.path(), &manifest, &file, 2).unwrap();
    eprintln!("{}", report.summary());
    assert!(!report.passed());
}

#[test]
fn a_request_whose_client_left_stops_taking_passes() {
    let Some(dir) = model_dir() else { return };
    let (_, engine) = engine(&dir, 1);
    let sentence = "The customer asked how the interest on a fixed term savings account is paid.";
    let big = engine.tokenize(&vec![sentence.to_string(); 1024]).unwrap();
    // Measured: how long the small request takes alone.
    let small = vec!["opening hours".to_string()];
    let started = std::time::Instant::now();
    embed_all(&engine, &small).unwrap();
    let alone = started.elapsed();
    let (reply, answer) = tokio::sync::oneshot::channel();
    engine
        .submit(coffer_chat::embed::EmbedJob { inputs: big, reply })
        .unwrap();
    // The engine has taken it and is in its first passes when the client goes.
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(answer);
    let started = std::time::Instant::now();
    embed_all(&engine, &small).unwrap();
    let after = started.elapsed();
    eprintln!("small request alone {alone:?}, behind an abandoned 1,024-sentence one {after:?}");
    // The abandoned request's 1,024 sentences take seconds; at most its first pass runs.
    assert!(after < std::time::Duration::from_secs(2), "{after:?}");
}
