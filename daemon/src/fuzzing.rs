//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and for the
//! stable-toolchain run of the same entry points in this crate's tests: the Open
//! Inference Protocol request parser and validator (encoded tensors and raw attributes),
//! the chat completions and embeddings
//! request parsers,
//! the manifest parser, the config parser and validator, the PII redaction, and the
//! audit verifier's record parser.
//! Each must return on any input; a panic or a broken invariant is a bug. Not part of
//! the daemon's API.

use bytes::Bytes;
use coffer_models::{Datatype, TensorSpec};

use crate::api::oip_fuzzing;
use crate::chat::grammar;

fn specs() -> Vec<TensorSpec> {
    let spec = |name: &str, datatype, shape: Vec<i64>| TensorSpec {
        name: name.into(),
        datatype,
        shape,
        features: Vec::new(),
    };
    vec![
        spec("features", Datatype::Fp32, vec![-1, 4]),
        spec("counts", Datatype::Int64, vec![-1, 2]),
        spec("flags", Datatype::Bool, vec![-1, 1]),
        spec("amount", Datatype::Fp64, vec![-1, 1]),
        spec("code", Datatype::Int32, vec![-1, 1]),
    ]
}

/// An infer request body: the first byte picks whether it carries Triton's binary
/// extension (and where the JSON header ends); the rest is the body.
pub fn infer_request(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let header_length = (first & 1 == 1).then(|| usize::from(first >> 1).min(body.len()));
    let body = Bytes::copy_from_slice(body);
    if let Ok((tensors, rows)) = oip_fuzzing::parse_and_validate(&body, header_length, &specs(), 64)
    {
        assert!((1..=64).contains(&rows), "validated batch of {rows} rows");
        for t in &tensors {
            let per_row: usize = t.shape.iter().skip(1).product();
            assert_eq!(
                t.data.len(),
                rows * per_row,
                "tensor {} is consistent",
                t.name
            );
        }
    }
}

/// credit-lr's feature specification, for [`attributes_request`].
fn credit_encoder() -> &'static coffer_score::AttributeEncoder {
    static ENCODER: std::sync::OnceLock<coffer_score::AttributeEncoder> =
        std::sync::OnceLock::new();
    ENCODER.get_or_init(|| {
        let text = include_str!("../../models/fixtures/credit-lr/1.0.0/manifest.toml");
        let manifest = coffer_models::Manifest::parse(text).expect("the fixture's manifest parses");
        coffer_score::AttributeEncoder::new(&manifest).expect("the fixture has attributes")
    })
}

/// An infer request with raw attributes (credit-lr's 20), JSON or binary as for
/// [`infer_request`]; what it accepts is a finite encoded batch of 61-wide rows.
pub fn attributes_request(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let header_length = (first & 1 == 1).then(|| usize::from(first >> 1).min(body.len()));
    let body = Bytes::copy_from_slice(body);
    let encoder = credit_encoder();
    if let Ok((tensors, rows)) =
        oip_fuzzing::parse_and_encode_attributes(&body, header_length, encoder, 64)
    {
        assert!((1..=64).contains(&rows), "encoded batch of {rows} rows");
        let [t] = tensors.as_slice() else {
            panic!("one input tensor")
        };
        assert_eq!(t.shape, vec![rows, encoder.width()]);
        assert!(
            t.data.to_f64().iter().all(|x| x.is_finite()),
            "finite encoding"
        );
    }
}

/// A chat completions request body; what it accepts must be usable by the engine.
pub fn chat_request(data: &[u8]) {
    if let Ok(r) = crate::api::chat_fuzzing::parse_request(data) {
        assert!(!r.messages.is_empty(), "accepted without messages");
        assert!(r.params.stop.len() <= 4);
        assert!(r.params.max_tokens != Some(0));
        assert!((0.0..=2.0).contains(&r.params.temperature));
        assert!(r.params.top_p > 0.0 && r.params.top_p <= 1.0);
        assert!(r.messages.iter().all(|m| !m.content.contains('\0')));
    }
}

/// An embeddings request: what the parser accepts has between 1 and 2,048 inputs.
pub fn embeddings_request(data: &[u8]) {
    if let Ok(r) = crate::api::embeddings_fuzzing::parse_request(data) {
        assert!(
            (1..=2048).contains(&r.inputs.len()),
            "{} inputs",
            r.inputs.len()
        );
    }
}

/// A `response_format` JSON schema: what the checks accept, llama.cpp's converter must
/// convert and its output must pass the grammar check (or exceed the grammar budget,
/// which the check exists to catch); where a vocabulary is at hand
/// (`COFFER_FUZZ_VOCAB`, or the dev chat model), llama.cpp's grammar parser must accept
/// it too. A run under `-rss_limit_mb` turns an allocation blow-up into a crash.
pub fn chat_schema(data: &[u8]) {
    use grammar::{GbnfError, GrammarError};
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(checked) = grammar::check(&schema) else {
        return;
    };
    match grammar::convert(&checked) {
        Ok(gbnf) => {
            if let Some(vocab) = schema_vocab() {
                assert!(
                    vocab.accepts(&gbnf),
                    "llama.cpp refused the grammar of a checked schema: {checked}\n{gbnf}"
                );
            }
        }
        Err(GrammarError::Grammar(GbnfError::Expansion(_) | GbnfError::TooLarge(_))) => {}
        Err(e) => panic!("a checked schema did not convert ({e}): {checked}"),
    }
}

/// A vocabulary for the grammar parser: the GGUF at `COFFER_FUZZ_VOCAB`, else the dev
/// chat model when it has been fetched; loaded once, vocabulary only.
fn schema_vocab() -> Option<&'static grammar::Vocabulary> {
    static VOCAB: std::sync::OnceLock<Option<grammar::Vocabulary>> = std::sync::OnceLock::new();
    VOCAB
        .get_or_init(|| {
            let path = std::env::var_os("COFFER_FUZZ_VOCAB")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../models/chat/smollm2-135m/1.0.0/SmolLM2-135M-Instruct.Q4_1.gguf")
                });
            grammar::Vocabulary::load(&path)
        })
        .as_ref()
}

/// A manifest's text.
pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = coffer_models::Manifest::parse(text) {
            assert!(!m.name.is_empty());
        }
    }
}

/// A configuration file's text, parsed and validated.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(raw) = crate::config::parse(text) {
            let _ = crate::config::validate(&raw);
        }
    }
}

/// Text to redact: findings in order, not overlapping, on character boundaries; the
/// redacted text has no finding left.
pub fn redact(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let findings = coffer_privacy::find(&text);
    let mut last = 0;
    for f in &findings {
        assert!(f.start >= last && f.start < f.end && f.end <= text.len());
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        last = f.end;
    }
    let _ = coffer_privacy::redact(&text);
}

/// One audit log line.
pub fn audit_line(data: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<crate::audit::AuditRecord>(data) {
        let _ = record.compute_hash();
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the test runner and the regression corpus.
pub const TARGETS: [(&str, Target); 9] = [
    ("infer_request", infer_request),
    ("attributes_request", attributes_request),
    ("chat_request", chat_request),
    ("embeddings_request", embeddings_request),
    ("chat_schema", chat_schema),
    ("manifest", manifest),
    ("config", config),
    ("redact", redact),
    ("audit_line", audit_line),
];

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Seeds that look like real inputs, so mutations reach deep into the parsers.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut out: Vec<Vec<u8>> = match target {
            "infer_request" => vec![
                [b"\x00".as_slice(), br#"{"id":"a","inputs":[{"name":"features","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7,8]]},{"name":"counts","shape":[2,2],"datatype":"INT64","data":[1,2,3,4]},{"name":"flags","shape":[2,1],"datatype":"BOOL","data":[true,false]},{"name":"amount","shape":[2,1],"datatype":"FP64","data":[1.5,NaN]},{"name":"code","shape":[2,1],"datatype":"INT32","data":[7,8]}],"outputs":[{"name":"p"}]}"#.as_slice()].concat(),
            ],
            "attributes_request" => {
                // credit-lr's first holdout applicant as raw attributes, in JSON.
                let set: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(root.join("models/fixtures/credit-lr/1.0.0/eval/holdout.json")).unwrap_or_default(),
                )
                .unwrap_or_default();
                let inputs: Vec<serde_json::Value> = set["attributes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, values)| {
                        let v = &values[0];
                        let datatype = if v.is_string() { "BYTES" } else { "INT64" };
                        serde_json::json!({"name": name, "shape": [1], "datatype": datatype, "data": [v]})
                    })
                    .collect();
                let body = serde_json::json!({"inputs": inputs}).to_string();
                vec![[b"\x00".as_slice(), body.as_bytes()].concat()]
            }
            "chat_request" => vec![
                br#"{"model":"smollm2-135m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":8,"temperature":0.5,"top_p":0.9,"seed":7,"stop":["END","

"],"stream":true,"stream_options":{"include_usage":true},"presence_penalty":0.1,"frequency_penalty":-0.1,"n":1,"user":"u"}"#.to_vec(),
                br#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"array","items":{"type":"string"}}},"required":["a"]}}}}"#.to_vec(),
            ],
            "embeddings_request" => vec![
                br#"{"model":"all-minilm-l6-v2","input":["Where is my branch?","Opening hours"],"encoding_format":"base64","dimensions":384,"user":"u"}"#.to_vec(),
                br#"{"model":"m@1.0.0","input":[[101,2054,102],[101,102]]}"#.to_vec(),
            ],
            "chat_schema" => {
                // llama.cpp's own converter test schemas, and the pathological ones.
                let mut v: Vec<Vec<u8>> = vec![
                    br#"{"type":"object","properties":{"name":{"type":"string","maxLength":20},"id":{"type":"string","pattern":"^[A-Z]{2}\\d{4}$"},"tags":{"type":"array","items":{"enum":["a","b",1,null]},"minItems":1,"maxItems":3},"n":{"type":["integer","null"],"minimum":-5,"maximum":1000}},"required":["name"],"additionalProperties":false}"#.to_vec(),
                    br##"{"anyOf":[{"$ref":"#/$defs/a"},{"type":"string","format":"date-time"}],"$defs":{"a":{"type":"array","items":{"const":{"k":[1,2]}}}}}"##.to_vec(),
                    br#"{"type":"string","pattern":"^((a+)+b|(c{2,5}){3}|[^x-z\\s]?)$"}"#.to_vec(),
                ];
                let dir = root.join("fuzz/seeds/chat_schema");
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    if entry.path().extension().is_some_and(|e| e == "json") {
                        v.push(std::fs::read(entry.path()).unwrap_or_default());
                    }
                }
                v
            }
            "manifest" => vec![std::fs::read(root.join("models/fixtures/credit-lr/1.0.0/manifest.toml")).unwrap_or_default()],
            "config" => vec![b"[server]\nlisten = \"127.0.0.1:8443\"\n[tls]\ncert = \"a\"\nkey = \"b\"\n[audit]\nfsync = \"always\"\n".to_vec()],
            "redact" => vec!["卡号6222 0212 3456 7890 124，电话＋86 138-1234-5678 mail a@b.cn 10.0.0.1 fe80::1 DE89 3704 0044 0532 0130 00".as_bytes().to_vec()],
            _ => vec![br#"{"seq":1,"at_ms":2,"prev":"00","event":{"kind":"stopping"},"hash":"ab"}"#.to_vec()],
        };
        // Regression inputs found by fuzzing live beside the targets.
        let dir = root.join("fuzz/regressions").join(target);
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.push(std::fs::read(entry.path()).unwrap_or_default());
        }
        out
    }

    #[test]
    fn the_attributes_seed_is_a_request_the_encoder_takes() {
        let seed = &seeds("attributes_request")[0];
        let body = Bytes::copy_from_slice(&seed[1..]);
        let (tensors, rows) =
            oip_fuzzing::parse_and_encode_attributes(&body, None, credit_encoder(), 64).unwrap();
        assert_eq!((rows, tensors[0].shape.clone()), (1, vec![1, 61]));
    }

    fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
        const TOKENS: [&[u8]; 12] = [
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b"\"",
            b"-1",
            b"1e309",
            b"NaN",
            b"null",
            b"\xef\xbc\x91",
            b"99999999999999999999",
        ];
        for _ in 0..rng.gen_range(1..6) {
            let at = rng.gen_range(0..=input.len());
            match rng.gen_range(0..4) {
                0 if !input.is_empty() => {
                    let end = (at + rng.gen_range(1..8)).min(input.len());
                    input.drain(at.min(end)..end);
                }
                1 => input
                    .splice(
                        at..at,
                        TOKENS[rng.gen_range(0..TOKENS.len())].iter().copied(),
                    )
                    .for_each(drop),
                2 if at < input.len() => input[at] = rng.r#gen(),
                _ => {
                    let from = rng.gen_range(0..=input.len());
                    let piece: Vec<u8> = input[from..(from + 16).min(input.len())].to_vec();
                    input.splice(at..at, piece).for_each(drop);
                }
            }
        }
    }

    #[test]
    fn every_target_survives_mutated_and_random_inputs() {
        let mut rng = StdRng::seed_from_u64(0xC0FFE);
        for (name, target) in TARGETS {
            let seeds = seeds(name);
            for seed in &seeds {
                target(seed);
            }
            for _ in 0..3_000 {
                let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
                mutate(&mut rng, &mut input);
                target(&input);
            }
            for _ in 0..500 {
                let len = rng.gen_range(0..256);
                let input: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
                target(&input);
            }
        }
    }
}
