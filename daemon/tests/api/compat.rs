//! Unmodified client packages against the real daemon. The Python interpreter with the
//! clients installed is named by `COFFER_COMPAT_PYTHON` (`.ci/run` makes that venv);
//! without it the test says so and passes locally, but fails under CI.

use std::path::Path;
use std::process::Command;

use crate::common::{Setup, fixture};

fn compat_python() -> Option<String> {
    match std::env::var("COFFER_COMPAT_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must set COFFER_COMPAT_PYTHON (see .ci/run)")
        }
        Err(_) => {
            eprintln!("COFFER_COMPAT_PYTHON is not set: client compatibility not checked");
            None
        }
    }
}

/// Runs a check script of `tests/compat` with the daemon's URL, CA and key in its
/// environment; asserts it succeeded and printed `ok_line`.
async fn run_check(
    python: String,
    script: &'static str,
    s: Setup,
    d: crate::common::Daemon,
    key: String,
    ok_line: &'static str,
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tokio::task::spawn_blocking(move || {
        let out = Command::new(python)
            .arg(root.join("tests/compat").join(script))
            .env("COFFER_URL", format!("https://127.0.0.1:{}", d.addr.port()))
            .env("COFFER_CA", s.pki.ca_path("server"))
            .env("COFFER_API_KEY", &key)
            .env("COFFER_FIXTURES", root.join("models/fixtures"))
            .env(
                "COFFER_EMBED_REFERENCE",
                root.join("models/embed/reference"),
            )
            .output()
            .unwrap();
        drop(d);
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(ok_line), "{stdout}");
}

#[tokio::test]
async fn unmodified_tritonclient_scores_both_model_families() {
    let Some(python) = compat_python() else {
        return;
    };
    let mut s = Setup::new();
    s.scoring_models = ["credit-lr", "credit-mlp", "credit-gbdt", "aml-risk"]
        .map(fixture)
        .to_vec();
    let d = s.start().await;
    let key = s.create_key("triton-client", "score", None);
    run_check(
        python,
        "tritonclient_check.py",
        s,
        d,
        key,
        "tritonclient compatibility: OK",
    )
    .await;
}

#[tokio::test]
async fn unmodified_openai_package_lists_completes_streams_shapes_json_and_embeds() {
    let Some(python) = compat_python() else {
        return;
    };
    let Some(dir) = crate::chat::model_dir() else {
        return;
    };
    let Some(embedding) = crate::embeddings::model_dir() else {
        return;
    };
    let mut s = crate::embeddings::setup(&embedding);
    s.chat_extra = format!(
        "models = [\"{}\"]\nthreads = 1\ncontext = 512\nslots = 2\n",
        dir.display()
    );
    let d = s.start().await;
    let key = s.create_key("openai-client", "chat,embed", None);
    run_check(
        python,
        "openai_check.py",
        s,
        d,
        key,
        "openai compatibility: OK",
    )
    .await;
}
