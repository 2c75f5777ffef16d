//! `coffer-release` as the admin runs it: relative paths from the current directory,
//! the exit status that says whether anything was published, `add` without a ring, and
//! replacing one lost root key.

use std::path::{Path, PathBuf};
use std::process::Output;

const BIN: &str = env!("CARGO_BIN_EXE_coffer-release");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/credit-lr/1.0.0")
}

/// Runs the tool in `cwd` with `args`.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .current_dir(cwd)
        .env_remove("COFFER_RELEASE_REPO")
        .env_remove("COFFER_RELEASE_KEYS")
        .args(args)
        .output()
        .unwrap()
}

/// Runs the tool in `cwd` with `--repo CWD/repo` and `args` (other paths relative).
fn run(cwd: &Path, args: &[&str]) -> Output {
    let repo = cwd.join("repo");
    run_in(cwd, &[&["--repo", repo.to_str().unwrap()], args].concat())
}

fn says(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(out: Output) -> Output {
    assert_eq!(out.status.code(), Some(0), "{}", says(&out));
    out
}

/// A directory holding a copy of the fixture (`v1`).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1");
    std::fs::create_dir_all(v1.join("eval")).unwrap();
    for f in ["manifest.toml", "model.onnx", "eval/holdout.json"] {
        std::fs::copy(fixture().join(f), v1.join(f)).unwrap();
    }
    dir
}

/// [`workdir`] with a repository in `repo`, its keys in `keys`.
fn site(init: &[&str]) -> tempfile::TempDir {
    let dir = workdir();
    ok(run(
        dir.path(),
        &[&["init", "--keys", "keys"], init].concat(),
    ));
    dir
}

#[test]
fn relative_paths_work_from_init_to_export() {
    let dir = workdir();
    let cwd = dir.path();
    let run = |args: &[&str]| run_in(cwd, &[&["--repo", "repo"], args].concat());
    ok(run(&["init", "--keys", "keys"]));
    ok(run(&["add", "v1", "--ring", "broad"]));
    let out = ok(run(&["publish", "--keys", "keys"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("targets v2"),
        "{}",
        says(&out)
    );
    ok(run(&["publish", "--keys", "keys", "--timestamp-only"]));
    ok(run(&["check"]));
    ok(run(&["export-bundle", "usb"]));
    assert!(cwd.join("usb/metadata/timestamp.json").exists());
}

#[test]
fn add_needs_a_ring() {
    let dir = site(&[]);
    let out = run(dir.path(), &["add", "v1"]);
    assert_eq!(out.status.code(), Some(2), "{}", says(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ring <canary|early|broad>"), "{err}");
    assert!(
        !dir.path().join("repo/draft.json").exists(),
        "nothing staged"
    );
    let out = run(dir.path(), &["add", "v1", "--ring", "everyone"]);
    assert_eq!(out.status.code(), Some(2), "{}", says(&out));
}

#[test]
fn a_publish_that_fails_exits_1_and_publishes_nothing() {
    let dir = site(&[]);
    let cwd = dir.path();
    ok(run(cwd, &["add", "v1", "--ring", "canary"]));
    let timestamp = cwd.join("repo/public/metadata/timestamp.json");
    let before = std::fs::read(&timestamp).unwrap();
    let out = run(
        cwd,
        &["publish", "--keys", "keys", "--timestamp-expires", "0s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    assert!(
        std::fs::read(&timestamp).unwrap() == before,
        "the new timestamp went live: {}",
        says(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was published"),
        "{}",
        says(&out)
    );
    assert!(cwd.join("repo/draft.json").exists(), "still staged");
}

#[test]
fn a_live_publish_with_an_unfinished_step_exits_3_and_says_it_is_live() {
    let dir = site(&[]);
    let cwd = dir.path();
    // `retired` is a file: the replaced key cannot move there after the new root is live.
    std::fs::write(cwd.join("keys/retired"), "").unwrap();
    let out = run(cwd, &["rotate-key", "targets", "--keys", "keys"]);
    assert_eq!(out.status.code(), Some(3), "{}", says(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IS published and live"), "{err}");
    assert!(err.contains("retired"), "{err}");
    let out = ok(run(cwd, &["check"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("root v2"),
        "{}",
        says(&out)
    );
}

#[test]
fn rotate_key_replaces_one_lost_root_key() {
    let dir = site(&["--root-keys", "3", "--root-threshold", "2"]);
    let cwd = dir.path();
    let lost = std::fs::read_dir(cwd.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("root-"))
        .unwrap();
    std::fs::remove_file(cwd.join("keys").join(&lost)).unwrap();
    let id = &lost["root-".len()..lost.len() - ".pk8".len()];
    let out = ok(run(
        cwd,
        &["rotate-key", "root", "--keys", "keys", "--key-id", id],
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("new key"),
        "{}",
        says(&out)
    );
    let root: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cwd.join("repo/public/metadata/2.root.json")).unwrap(),
    )
    .unwrap();
    let ids = root["signed"]["roles"]["root"]["keyids"]
        .as_array()
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(!ids.iter().any(|k| k.as_str().unwrap().starts_with(id)));
    ok(run(cwd, &["add", "v1", "--ring", "broad"]));
    ok(run(cwd, &["publish", "--keys", "keys"]));
    ok(run(cwd, &["check"]));
}

#[test]
fn schedule_sets_and_clears_a_not_before_time() {
    let dir = site(&[]);
    let cwd = dir.path();
    ok(run(cwd, &["add", "v1", "--ring", "broad"]));
    let out = ok(run(
        cwd,
        &[
            "schedule",
            "credit-lr",
            "1.0.0",
            "--not-before",
            "2026-12-10T19:00:00+01:00",
        ],
    ));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("no earlier than 2026-12-10T18:00:00Z"),
        "{said}"
    );
    let draft = std::fs::read_to_string(cwd.join("repo/draft.json")).unwrap();
    assert!(draft.contains("2026-12-10T18:00:00Z"), "staged: {draft}");
    for bad in [
        &["schedule", "credit-lr", "1.0.0", "--not-before", "tomorrow"][..],
        &["schedule", "credit-lr", "1.0.0"],
    ] {
        let out = run(cwd, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", says(&out));
    }
    let out = run(
        cwd,
        &[
            "schedule",
            "credit-lr",
            "9.9.9",
            "--not-before",
            "2026-12-10T19:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let out = ok(run(cwd, &["schedule", "credit-lr", "1.0.0", "--clear"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("as soon as sites have it"));
    let draft = std::fs::read_to_string(cwd.join("repo/draft.json")).unwrap();
    assert!(!draft.contains("not_before"), "cleared: {draft}");
}

#[test]
fn pace_stages_a_ramp_and_refuses_an_impossible_one() {
    let dir = site(&[]);
    let cwd = dir.path();
    ok(run(cwd, &["add", "v1", "--ring", "broad"]));
    let args = |first: &str| {
        run(
            cwd,
            &[
                "pace",
                "credit-lr",
                "1.0.0",
                "--first",
                first,
                "--double-every",
                "6h",
                "--start",
                "2026-12-10T19:00:00Z",
            ],
        )
    };
    let out = ok(args("1"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("reaches 1% of the sites from 2026-12-10T19:00:00Z, doubling every 6h"),
        "{said}"
    );
    let draft = std::fs::read_to_string(cwd.join("repo/draft.json")).unwrap();
    assert!(
        draft.contains("\"first_basis_points\": 100"),
        "staged: {draft}"
    );
    for first in ["0", "150"] {
        let out = args(first);
        assert_eq!(out.status.code(), Some(1), "{first}: {}", says(&out));
    }
    let out = ok(run(cwd, &["pace", "credit-lr", "1.0.0", "--clear"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("every site at once"));
}

/// `fleet-status` needs no repository, only the fleet's Prometheus; one it cannot reach,
/// a token file it cannot read or a URL that is not http(s) is a clear error (exit 1).
/// (Against a real Prometheus: `daemon/tests/api/fleet_status.rs`.)
#[test]
fn fleet_status_says_why_it_cannot_read_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = run_in(dir.path(), &["fleet-status", "--prometheus", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to 127.0.0.1"),
        "{}",
        says(&out)
    );
    let out = run_in(
        dir.path(),
        &[
            "fleet-status",
            "--prometheus",
            &url,
            "--prometheus-token-file",
            "missing-token",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never in clear"),
        "{}",
        says(&out)
    );
    let out = run_in(dir.path(), &["fleet-status", "--prometheus", "ftp://x"]);
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    // Every other command still needs the repository.
    let out = run_in(dir.path(), &["list"]);
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--repo"),
        "{}",
        says(&out)
    );
}

/// Halts as the admin runs them: abort criteria need halt keys; `halt-keys` stages them
/// for the targets key to publish; `halt` and `lift-halt` sign the list with the halt
/// key alone and refuse a release that is not published; `list` and `check` are
/// unchanged by the halt key beside the role keys.
#[test]
fn halts_are_signed_with_the_halt_key_alone() {
    let dir = site(&[]);
    let cwd = dir.path();
    ok(run(cwd, &["add", "v1", "--ring", "broad"]));
    let criteria = [
        "abort-when",
        "credit-lr",
        "1.0.0",
        "--failed-above",
        "10",
        "--after",
        "20",
    ];
    let out = run(cwd, &criteria);
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("halt-keys"));
    let out = ok(run(cwd, &["halt-keys", "--halt-keys", "halt"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 halt key(s)"));
    ok(run(cwd, &criteria));
    for bad in [
        &[
            "abort-when",
            "credit-lr",
            "1.0.0",
            "--failed-above",
            "0",
            "--after",
            "20",
        ][..],
        &[
            "abort-when",
            "credit-lr",
            "1.0.0",
            "--failed-above",
            "100",
            "--after",
            "20",
        ],
        &[
            "abort-when",
            "credit-lr",
            "1.0.0",
            "--failed-above",
            "10",
            "--after",
            "0",
        ],
    ] {
        let out = run(cwd, bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {}", says(&out));
    }
    // Halting before the keys are published is refused: sites would not take it.
    let halt = |version: &str| {
        run(
            cwd,
            &[
                "halt",
                "credit-lr",
                version,
                "--reason",
                "gates failing",
                "--halt-keys",
                "halt",
            ],
        )
    };
    let out = halt("1.0.0");
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    ok(run(cwd, &["publish", "--keys", "keys"]));
    let out = ok(halt("1.0.0"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("credit-lr@1.0.0 since"),
        "{}",
        says(&out)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cwd.join("repo/public/halts.json")).unwrap())
            .unwrap();
    assert_eq!(list["signed"]["halts"][0]["reason"], "gates failing");
    let out = halt("9.9.9");
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let out = ok(run(
        cwd,
        &["lift-halt", "credit-lr", "1.0.0", "--halt-keys", "halt"],
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 release(s) halted"));
    // A bundle carries the halt list, and only one that lasts as long as the bundle.
    ok(run(
        cwd,
        &["refresh-halts", "--halt-keys", "halt", "--valid-for", "1h"],
    ));
    let out = run(cwd, &["export-bundle", "usb"]);
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refresh-halts"),
        "{}",
        says(&out)
    );
    ok(run(
        cwd,
        &["refresh-halts", "--halt-keys", "halt", "--valid-for", "2d"],
    ));
    ok(run(cwd, &["export-bundle", "usb2"]));
    assert!(cwd.join("usb2/halts.json").is_file());
    // Halts end only once no release needs them.
    let out = run(cwd, &["drop-halt-keys"]);
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--clear"));
    ok(run(cwd, &["abort-when", "credit-lr", "1.0.0", "--clear"]));
    ok(run(cwd, &["drop-halt-keys"]));
    let draft = std::fs::read_to_string(cwd.join("repo/draft.json")).unwrap();
    assert!(!draft.contains("coffer/halt-keys.json"), "{draft}");
    // A halt key among the role keys is no role key: the repository still checks out.
    std::fs::copy(
        std::fs::read_dir(cwd.join("halt"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        cwd.join("keys/halt-0000.pk8"),
    )
    .unwrap();
    ok(run(cwd, &["check"]));
    ok(run(cwd, &["publish", "--keys", "keys", "--timestamp-only"]));
}
