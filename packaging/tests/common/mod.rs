//! What the package tests share: tool checks that skip locally and fail under CI, the
//! staged binaries of this test build, output directories, and a lock for the tests that
//! build packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use coffer_packaging::{PACKAGES, run, stage};

/// Serialises the tests that build packages (they share the staging directory).
pub static BUILD: Mutex<()> = Mutex::new(());

/// Writes to the real stderr, past the test harness's capture, so that CI logs show the
/// scores and lintian's findings of passing runs too.
pub fn report(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when every requirement holds; otherwise skips locally and fails under CI.
pub fn requires(what: &[(&str, bool)]) -> bool {
    let missing: Vec<&str> = what.iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {missing:?} (see .ci/run)"
    );
    eprintln!("skipped: needs {missing:?}");
    false
}

/// The target directory of this test build (…/target/debug/deps/this-test → …/target).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// Stages the binaries that `cargo test --workspace` built (cofferd's and coffer-agent's
/// integration tests make cargo build them before any test runs), once.
pub fn staging() -> &'static Path {
    static STAGED: OnceLock<PathBuf> = OnceLock::new();
    STAGED.get_or_init(|| {
        let target = target_dir();
        let binaries = target.join("debug");
        for (_, _, names) in PACKAGES {
            for name in *names {
                assert!(
                    binaries.join(name).is_file(),
                    "{} is not built: run the workspace's tests (cargo test --workspace)",
                    binaries.join(name).display()
                );
            }
        }
        let staging = target.join("package-test/staging");
        stage(&binaries, &staging).unwrap();
        staging
    })
}

pub fn out_dir(name: &str) -> PathBuf {
    let dir = target_dir().join("package-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn sh(command: &str) -> String {
    run(Command::new("sh").args(["-c", command])).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs lintian on `debs`, shows its findings past the harness's capture, and fails on
/// any error.
pub fn assert_lintian_clean(debs: &[PathBuf]) {
    let lint = Command::new("lintian")
        .args(["--no-tag-display-limit"])
        .args(debs)
        .output()
        .unwrap();
    let lint = String::from_utf8_lossy(&lint.stdout).to_string();
    report(&format!("lintian:\n{lint}"));
    let errors: Vec<&str> = lint.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors: {errors:#?}");
}
