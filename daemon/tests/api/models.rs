//! The model lifecycle end to end with the real fixture models and the real daemon:
//! import → gate → activate → rollback through `cofferctl`, pins, removal and gc; a
//! distilled student with shuffled weights refused by its gate; refused inputs naming
//! their problem; and a full disk during import leaving the active version serving.

use std::path::{Path, PathBuf};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Setup, eval_set, fixture};

/// Copies a fixture version into `root/NAME/VERSION`, renamed.
pub fn derived_version(root: &Path, from: &str, name: &str, version: &str) -> PathBuf {
    let src = fixture(from);
    let dst = root.join(name).join(version);
    std::fs::create_dir_all(&dst).unwrap();
    let mut manifest = coffer_models::Manifest::parse(
        &std::fs::read_to_string(src.join("manifest.toml")).unwrap(),
    )
    .unwrap();
    for f in &manifest.files {
        let to = dst.join(&f.path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(&f.path), to).unwrap();
    }
    manifest.name = name.into();
    manifest.version = version.into();
    write_manifest(&dst, &manifest);
    dst
}

/// Rewrites the manifest with every file's current size and sha256.
pub fn write_manifest(dir: &Path, manifest: &coffer_models::Manifest) {
    let mut m = manifest.clone();
    for f in &mut m.files {
        let path = dir.join(&f.path);
        f.size = std::fs::metadata(&path).unwrap().len();
        f.sha256 = coffer_models::verify::sha256_file(&path).unwrap();
    }
    std::fs::write(dir.join("manifest.toml"), toml::to_string(&m).unwrap()).unwrap();
}

pub(crate) fn manifest_of(dir: &Path) -> coffer_models::Manifest {
    coffer_models::Manifest::parse(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap())
        .unwrap()
}

/// The student's model with every weight tensor's values shuffled (seeded): the same
/// graph, shapes and file size class, but the learned function is gone.
fn shuffle_weights(dir: &Path) {
    use prost::Message as _;
    use rand::SeedableRng as _;
    use rand::seq::SliceRandom as _;
    let path = dir.join("model.onnx");
    let mut model = tract_onnx::pb::ModelProto::decode(&*std::fs::read(&path).unwrap()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut shuffled = 0;
    for init in &mut model.graph.as_mut().unwrap().initializer {
        if init.float_data.len() > 1 {
            init.float_data.shuffle(&mut rng);
            shuffled += 1;
        } else if init.raw_data.len() > 4 && init.data_type == 1 {
            let mut floats: Vec<[u8; 4]> = init
                .raw_data
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect();
            floats.shuffle(&mut rng);
            init.raw_data = floats.concat();
            shuffled += 1;
        }
    }
    assert!(shuffled >= 2, "the student has weight tensors to shuffle");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    write_manifest(dir, &manifest_of(dir));
}

/// `cofferctl --json ARGS`: exit code and parsed stdout.
pub fn ctl_json(s: &Setup, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = s.ctl(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    if !out.status.success() {
        eprintln!(
            "cofferctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    (out.status.code().unwrap_or(-1), value)
}

fn ctl_err(s: &Setup, args: &[&str]) -> String {
    let out = s.ctl(args);
    assert!(!out.status.success(), "cofferctl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn record<'a>(list: &'a Value, name: &str, version: &str) -> &'a Value {
    list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| {
            m["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["version"] == version)
        })
        .unwrap_or(&Value::Null)
}

/// Scores five holdout rows through `/v2/models/NAME/infer`: (served version, scores).
pub async fn score(c: &crate::common::Client, key: &str, name: &str) -> (String, Vec<f64>) {
    let set = eval_set("credit-lr");
    let rows = &set.rows[..5];
    let body = json!({
        "inputs": [{ "name": "features", "shape": [rows.len(), rows[0].len()], "datatype": "FP32", "data": rows }],
    });
    let r = c
        .request(
            Method::POST,
            &format!("/v2/models/{name}/infer"),
            Some(key),
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    let scores = v["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    (v["model_version"].as_str().unwrap().to_string(), scores)
}

/// `POST /v2/models/NAME/versions/VERSION/infer` with one holdout row: the status and
/// the version that answered.
async fn score_version(
    c: &crate::common::Client,
    key: &str,
    name: &str,
    version: &str,
) -> (StatusCode, String) {
    let set = eval_set("credit-lr");
    let body = json!({
        "inputs": [{ "name": "features", "shape": [1, set.rows[0].len()], "datatype": "FP32", "data": [set.rows[0].clone()] }],
    });
    let r = c
        .request(
            Method::POST,
            &format!("/v2/models/{name}/versions/{version}/infer"),
            Some(key),
            body.to_string().as_bytes(),
        )
        .await;
    let served = r.json()["model_version"].as_str().unwrap_or("").to_string();
    (r.status, served)
}

#[tokio::test]
async fn import_gate_activate_rollback_pin_remove_and_gc() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let d = s.start().await;
    let key = s.create_key("scorer", "score,metrics", None);
    let c = s.client(d.addr);
    let (v, lr_scores) = score(&c, &key, "credit-lr").await;
    assert_eq!(v, "1.0.0");

    // 2.0.0: the distilled MLP student under the scorecard's name (same inputs).
    let work = s.dir().join("releases");
    let v2 = derived_version(&work, "credit-mlp", "credit-lr", "2.0.0");
    let (code, rec) = ctl_json(&s, &["models", "import", v2.to_str().unwrap()]);
    assert_eq!(code, 0, "{rec}");
    assert_eq!(rec["state"], "ready", "{rec}");
    assert!(rec["reason"].as_str().unwrap().contains("AUC"), "{rec}");
    // Imported is not active: 1.0.0 still answers.
    assert_eq!(score(&c, &key, "credit-lr").await.0, "1.0.0");

    let (code, act) = ctl_json(&s, &["models", "activate", "credit-lr", "2.0.0"]);
    assert_eq!(code, 0, "{act}");
    assert_eq!(act["previous"], "1.0.0");
    let (v, mlp_scores) = score(&c, &key, "credit-lr").await;
    assert_eq!(v, "2.0.0");
    assert_ne!(mlp_scores, lr_scores, "another model answers now");
    // A client that pins the replaced version is still answered by it.
    assert_eq!(
        score_version(&c, &key, "credit-lr", "1.0.0").await,
        (StatusCode::OK, "1.0.0".to_string())
    );
    let (_, list) = ctl_json(&s, &["models", "list"]);
    assert_eq!(record(&list, "credit-lr", "2.0.0")["state"], "active");
    assert_eq!(record(&list, "credit-lr", "1.0.0")["state"], "retired");

    // Readiness and metrics say what serves.
    let ready = c.get("/readyz", Some(&key)).await.json();
    assert!(ready.to_string().contains("credit-lr@2.0.0"), "{ready}");
    let metrics = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    assert!(
        metrics.contains(
            "coffer_model_active_info{model=\"credit-lr\",version=\"2.0.0\",variant=\"default\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("coffer_model_active_info{model=\"credit-lr\",version=\"1.0.0\""));

    let (code, back) = ctl_json(&s, &["models", "rollback", "credit-lr"]);
    assert_eq!(code, 0, "{back}");
    assert_eq!(back["version"], "1.0.0");
    let (v, again) = score(&c, &key, "credit-lr").await;
    assert_eq!((v.as_str(), &again), ("1.0.0", &lr_scores));

    // Pins win over activation and rollback; the pinned and the active version stay.
    assert_eq!(ctl_json(&s, &["models", "pin", "credit-lr", "1.0.0"]).0, 0);
    let err = ctl_err(&s, &["models", "activate", "credit-lr", "2.0.0"]);
    assert!(err.contains("pinned to 1.0.0"), "{err}");
    let err = ctl_err(&s, &["models", "remove", "credit-lr", "1.0.0"]);
    assert!(err.contains("active"), "{err}");
    assert_eq!(ctl_json(&s, &["models", "unpin", "credit-lr"]).0, 0);

    assert_eq!(
        ctl_json(&s, &["models", "verify", "credit-lr", "2.0.0"]).0,
        0
    );
    assert_eq!(
        score_version(&c, &key, "credit-lr", "2.0.0").await.0,
        StatusCode::OK,
        "the version rolled back from still answers pinned clients"
    );
    assert_eq!(
        ctl_json(&s, &["models", "remove", "credit-lr", "2.0.0"]).0,
        0
    );
    assert_eq!(
        score_version(&c, &key, "credit-lr", "2.0.0").await.0,
        StatusCode::NOT_FOUND,
        "a removed version is no longer served"
    );
    let (code, gc) = ctl_json(&s, &["models", "gc"]);
    assert_eq!(code, 0);
    assert_eq!(
        gc["blobs_removed"], 3,
        "the MLP, its eval set and its explanation background: {gc}"
    );
    let (_, list) = ctl_json(&s, &["models", "list"]);
    assert!(record(&list, "credit-lr", "2.0.0").is_null());

    // The history has every step with who did it; the audit trail has the admin calls
    // and the activations.
    let (_, shown) = ctl_json(&s, &["models", "show", "credit-lr"]);
    let actions: Vec<&str> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    for step in [
        "import", "gate", "activate", "rollback", "pin", "unpin", "verify", "remove",
    ] {
        assert!(actions.contains(&step), "{step} missing from {actions:?}");
    }
    let uid = rustix::process::getuid().as_raw().to_string();
    assert!(
        shown["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "activate" && h["actor"] == format!("uid {uid}")),
        "{shown}"
    );
    let err = ctl_err(&s, &["models", "verify", "credit-lr", "9.9.9"]);
    assert!(err.contains("9.9.9"), "{err}");
    d.stop();
    let audit = std::fs::read_dir(s.dir().join("state/audit"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(
        audit.contains("\"action\":\"models.import\",\"target\":\"credit-lr@2.0.0\""),
        "the import's audit record names the version"
    );
    for action in [
        "models.import",
        "models.activate",
        "models.rollback",
        "models.pin",
        "models.remove",
        "models.gc",
    ] {
        assert!(
            audit.contains(&format!("\"{action}\"")),
            "{action} not audited"
        );
    }
    // A verify streams its progress under a 200; its outcome is a record of its own.
    assert!(
        audit.contains(
            "\"action\":\"models.verify.result\",\"target\":\"credit-lr@2.0.0\",\"status\":200"
        ),
        "a passed verify's outcome"
    );
    assert!(
        audit.contains(
            "\"action\":\"models.verify.result\",\"target\":\"credit-lr@9.9.9\",\"status\":404"
        ),
        "a failed verify's outcome"
    );
    assert!(
        audit.contains("\"kind\":\"model_activated\"") && audit.contains("\"action\":\"rollback\""),
        "activation and rollback records"
    );
}

#[tokio::test]
async fn a_student_with_shuffled_weights_is_refused_by_its_gate() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-mlp")];
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    let (_, before) = score(&c, &key, "credit-mlp").await;

    let bad = derived_version(
        &s.dir().join("releases"),
        "credit-mlp",
        "credit-mlp",
        "2.0.0",
    );
    shuffle_weights(&bad);
    let out = s.ctl(&["--json", "models", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a failed gate exits 2");
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["state"], "failed", "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("AUC") && reason.contains("below"),
        "the reason names the failed measurement: {reason}"
    );
    let err = ctl_err(&s, &["models", "activate", "credit-mlp", "2.0.0"]);
    assert!(err.contains("failed its evaluation gate"), "{err}");
    let (v, after) = score(&c, &key, "credit-mlp").await;
    assert_eq!(
        (v.as_str(), &after),
        ("1.0.0", &before),
        "the active version never changed"
    );
}

#[tokio::test]
async fn bad_imports_are_refused_naming_the_problem() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let d = s.start().await;
    let work = s.dir().join("releases");

    // A file that does not match its manifest.
    let tampered = derived_version(&work, "credit-lr", "credit-lr", "2.0.0");
    let mut bytes = std::fs::read(tampered.join("model.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(tampered.join("model.onnx"), bytes).unwrap();
    let err = ctl_err(&s, &["models", "import", tampered.to_str().unwrap()]);
    assert!(
        err.contains("model.onnx") && err.contains("sha256"),
        "{err}"
    );

    // A manifest that does not parse, and one with a missing file.
    let broken = derived_version(&work, "credit-lr", "credit-lr", "2.0.1");
    std::fs::write(
        broken.join("manifest.toml"),
        "name = \"credit-lr\"\nflavour = 1\n",
    )
    .unwrap();
    let err = ctl_err(&s, &["models", "import", broken.to_str().unwrap()]);
    assert!(err.contains("manifest"), "{err}");
    let missing = derived_version(&work, "credit-lr", "credit-lr", "2.0.2");
    std::fs::remove_file(missing.join("eval/holdout.json")).unwrap();
    let err = ctl_err(&s, &["models", "import", missing.to_str().unwrap()]);
    assert!(err.contains("holdout.json"), "{err}");

    // Another input schema under the same name breaks existing clients.
    let other = derived_version(&work, "aml-risk", "credit-lr", "3.0.0");
    let err = ctl_err(&s, &["models", "import", other.to_str().unwrap()]);
    assert!(
        err.contains("input \"features\" is gone") && err.contains("--allow-schema-change"),
        "{err}"
    );
    let (code, rec) = ctl_json(
        &s,
        &[
            "models",
            "import",
            other.to_str().unwrap(),
            "--allow-schema-change",
        ],
    );
    assert_eq!((code, rec["state"].as_str()), (0, Some("ready")), "{rec}");

    // A kind the format cannot serve.
    let wrong = derived_version(&work, "credit-lr", "credit-lr", "2.0.3");
    let text = std::fs::read_to_string(wrong.join("manifest.toml"))
        .unwrap()
        .replace("kind = \"score\"", "kind = \"chat\"");
    std::fs::write(wrong.join("manifest.toml"), text).unwrap();
    let err = ctl_err(&s, &["models", "import", wrong.to_str().unwrap()]);
    assert!(err.contains("chat models must be \"gguf\""), "{err}");

    // A chat version may not take over a scoring model's name.
    let chat = work.join("credit-lr").join("4.0.0");
    std::fs::create_dir_all(&chat).unwrap();
    std::fs::write(chat.join("m.gguf"), b"GGUF not really").unwrap();
    let chat_manifest = coffer_models::Manifest::parse(&format!(
        "name = \"credit-lr\"\nversion = \"4.0.0\"\nkind = \"chat\"\nformat = \"gguf\"\n\
         [[files]]\npath = \"m.gguf\"\nsha256 = \"{}\"\nsize = 1\nrole = \"model\"\n",
        "0".repeat(64)
    ))
    .unwrap();
    write_manifest(&chat, &chat_manifest);
    let err = ctl_err(
        &s,
        &[
            "models",
            "import",
            chat.to_str().unwrap(),
            "--allow-schema-change",
        ],
    );
    assert!(err.contains("a chat version cannot take it over"), "{err}");

    // The same version twice, and unknown names.
    let again = ctl_err(
        &s,
        &[
            "models",
            "import",
            other.to_str().unwrap(),
            "--allow-schema-change",
        ],
    );
    assert!(again.contains("already installed"), "{again}");
    let err = ctl_err(&s, &["models", "activate", "credit-lr", "9.9.9"]);
    assert!(err.contains("not installed"), "{err}");

    // Nothing half-imported is visible: only 1.0.0 and 3.0.0 are installed, staging is
    // empty.
    let (_, list) = ctl_json(&s, &["models", "list"]);
    let versions: Vec<&str> = list["models"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0", "3.0.0"]);
    let store = s.dir().join("state/models");
    assert_eq!(std::fs::read_dir(store.join("staging")).unwrap().count(), 0);
    let installed: Vec<String> = std::fs::read_dir(store.join("versions/credit-lr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(installed.len(), 2, "{installed:?}");
    drop(d);
}

/// Needs root to mount a small tmpfs as the model store; CI runs as root.
#[tokio::test]
async fn a_full_disk_during_import_leaves_the_active_version_serving() {
    if !rustix::process::getuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let mut s = Setup::new();
    let store = s.dir().join("small-store");
    let _mount = crate::common::Tmpfs::mount(&store, "1m").expect("mount a tmpfs as root");
    s.scoring_models = vec![fixture("credit-lr")];
    let config = s.write_config();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[state]\n",
        &format!("[state]\nmodel_store = \"{}\"\n", store.display()),
    );
    std::fs::write(&config, text).unwrap();
    let d = crate::common::Daemon::start(config, s.dir()).await;
    let key = s.create_key("scorer", "score", None);
    let c = s.client(d.addr);
    assert_eq!(score(&c, &key, "credit-lr").await.0, "1.0.0");

    // 2.0.0 carries a 2 MiB extra eval file: more than the store has left.
    let big = derived_version(&s.dir().join("releases"), "credit-lr", "credit-lr", "2.0.0");
    let mut manifest = manifest_of(&big);
    std::fs::write(big.join("eval/extra.bin"), vec![7u8; 2 << 20]).unwrap();
    manifest.files.push(coffer_models::manifest::FileEntry {
        path: "eval/extra.bin".into(),
        sha256: String::new(),
        size: 0,
        role: coffer_models::manifest::FileRole::Eval,
    });
    write_manifest(&big, &manifest);
    let err = ctl_err(&s, &["models", "import", big.to_str().unwrap()]);
    assert!(err.contains("disk is full"), "{err}");

    // Still serving the active version; nothing half-written stays; and once space is
    // there again an import works.
    assert_eq!(score(&c, &key, "credit-lr").await.0, "1.0.0");
    assert_eq!(std::fs::read_dir(store.join("staging")).unwrap().count(), 0);
    assert!(!store.join("versions/credit-lr/2.0.0").exists());
    let (code, gc) = ctl_json(&s, &["models", "gc"]);
    assert_eq!(code, 0, "{gc}");
    let small = derived_version(
        &s.dir().join("releases"),
        "credit-mlp",
        "credit-lr",
        "2.0.1",
    );
    let (code, rec) = ctl_json(&s, &["models", "import", small.to_str().unwrap()]);
    assert_eq!((code, rec["state"].as_str()), (0, Some("ready")), "{rec}");
    drop(d);
}

/// credit-lr under VERSION with two variants: `gpu` (needs 40 GiB of free GPU memory)
/// and `cpu`, in that order of preference (same weights: the test is about the choice).
pub(crate) fn with_variants(root: &Path, version: &str) -> PathBuf {
    let dir = derived_version(root, "credit-lr", "credit-lr", version);
    std::fs::copy(dir.join("model.onnx"), dir.join("model-cpu.onnx")).unwrap();
    let mut m = manifest_of(&dir);
    m.files.push(coffer_models::manifest::FileEntry {
        path: "model-cpu.onnx".into(),
        sha256: String::new(),
        size: 0,
        role: coffer_models::manifest::FileRole::Model,
    });
    m.variants = vec![
        coffer_models::Variant {
            name: "gpu".into(),
            file: "model.onnx".into(),
            quantization: None,
            gpu_memory_mib: Some(40_960),
        },
        coffer_models::Variant {
            name: "cpu".into(),
            file: "model-cpu.onnx".into(),
            quantization: None,
            gpu_memory_mib: None,
        },
    ];
    write_manifest(&dir, &m);
    dir
}

async fn activated_variant(s: &Setup, d: &crate::common::Daemon, dir: &Path) -> String {
    let (code, rec) = ctl_json(s, &["models", "import", dir.to_str().unwrap()]);
    assert_eq!((code, rec["state"].as_str()), (0, Some("ready")), "{rec}");
    let (code, act) = ctl_json(s, &["models", "activate", "credit-lr", "2.0.0"]);
    assert_eq!(code, 0, "{act}");
    let variant = act["variant"].as_str().unwrap().to_string();
    let key = s.create_key("watcher", "metrics,score", None);
    let c = s.client(d.addr);
    let ready = c.get("/readyz", Some(&key)).await.json().to_string();
    assert!(
        ready.contains(&format!("credit-lr@2.0.0 (variant {variant})")),
        "{ready}"
    );
    let metrics = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).to_string();
    assert!(
        metrics.contains(&format!(
            "coffer_model_active_info{{model=\"credit-lr\",version=\"2.0.0\",variant=\"{variant}\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(score(&c, &key, "credit-lr").await.0, "2.0.0");
    let (_, list) = ctl_json(s, &["models", "list"]);
    assert_eq!(
        record(&list, "credit-lr", "2.0.0")["variant"],
        variant.as_str()
    );
    variant
}

#[tokio::test]
async fn the_variant_that_fits_the_hardware_is_served_and_reported() {
    // No GPU here: the CPU variant.
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let d = s.start().await;
    let dir = with_variants(&s.dir().join("releases"), "2.0.0");
    assert_eq!(activated_variant(&s, &d, &dir).await, "cpu");
    drop(d);

    // A (simulated) GPU with 79 GiB free: the GPU variant; the audit trail says so.
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let script = s.dir().join("gpu.toml");
    std::fs::write(
        &script,
        "[[gpus]]\nname = \"NVIDIA H100\"\n[[steps]]\nmemory_total_mib = 81920\nmemory_used_mib = 1024\n",
    )
    .unwrap();
    s.gpu_extra = format!(
        "interval = \"100ms\"\nsimulate = \"{}\"\n",
        script.display()
    );
    let d = s.start().await;
    let dir = with_variants(&s.dir().join("releases"), "2.0.0");
    assert_eq!(activated_variant(&s, &d, &dir).await, "gpu");
    d.stop();
    let audit = std::fs::read_to_string(s.dir().join("state/audit/audit-000001.log")).unwrap();
    assert!(
        audit.contains("\"kind\":\"model_activated\"") && audit.contains("\"variant\":\"gpu\""),
        "the audit record names the variant"
    );
}

#[tokio::test]
async fn an_empty_store_with_a_registry_refuses_to_start() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let d = s.start().await;
    d.stop();
    // The store's file system "not mounted": an empty directory where it was.
    let store = s.dir().join("state/models");
    std::fs::rename(&store, s.dir().join("store-elsewhere")).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    let out = std::process::Command::new(crate::common::COFFERD)
        .args(["serve", "--config"])
        .arg(s.write_config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is its file system mounted"), "{err}");
    // Mounted again: it starts and serves as before.
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::rename(s.dir().join("store-elsewhere"), &store).unwrap();
    let d = s.start().await;
    let key = s.create_key("scorer", "score", None);
    assert_eq!(score(&s.client(d.addr), &key, "credit-lr").await.0, "1.0.0");
    drop(d);
}
