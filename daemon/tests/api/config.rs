//! `cofferd check-config`: one clear line per problem, non-zero exit.

use std::process::Command;

use crate::common::{COFFERD, Setup};

fn check(path: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(COFFERD)
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_config_passes() {
    let s = Setup::new();
    let (code, out, _) = check(&s.write_config());
    assert_eq!(code, Some(0));
    assert!(out.contains("configuration OK"));
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let s = Setup::new();
    let path = s.write_config();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[server]\n", "[server]\nlisen = \"x\"\n");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, Some(2));
    let line = err.lines().next().unwrap();
    assert!(
        line.contains("server.lisen: unknown field `lisen`"),
        "{err}"
    );
    assert!(line.contains("fix:"), "{err}");
}

#[test]
fn missing_cert_file_and_bad_values_are_each_named() {
    let s = Setup::new();
    let path = s.write_config();
    let cert = s.pki.path("server").display().to_string();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&cert, "/nonexistent/server.pem")
        .replace(
            "[admission]\n",
            "[admission]\nqueue_timeout = \"whenever\"\n",
        );
    std::fs::write(&path, &text).unwrap();
    // The pure validation reports the bad duration first; the file check needs a valid file.
    let (code, _, err) = check(&path);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("admission.queue_timeout: \"whenever\" is not a duration"),
        "{err}"
    );

    std::fs::write(&path, text.replace("queue_timeout = \"whenever\"\n", "")).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("tls.cert: cannot open /nonexistent/server.pem"),
        "{err}"
    );
    assert!(
        err.contains("fix: point tls.cert at a PEM certificate chain"),
        "{err}"
    );
}

#[test]
fn chat_threads_beside_scoring_may_not_exceed_chat_threads() {
    let mut s = Setup::new();
    s.chat_extra = "threads = 2\nthreads_beside_scoring = 3\n".into();
    let (code, _, err) = check(&s.write_config());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("chat.threads_beside_scoring: 3 is more than chat.threads (2)"),
        "{err}"
    );
    s.chat_extra = "threads = 2\nthreads_beside_scoring = 2\nscoring_quiet = \"0s\"\n".into();
    let (code, _, err) = check(&s.write_config());
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn decisions_may_not_outlive_the_audit_records_that_chain_them() {
    let mut s = Setup::new();
    s.decisions_extra = "models = [\"credit-lr\"]\nretention = \"25months\"\n".into();
    s.audit_extra = "max_age = \"365d\"\n".into();
    let (code, _, err) = check(&s.write_config());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("decisions.retention:") && err.contains("longer than audit.max_age"),
        "{err}"
    );
    s.audit_extra = "max_age = \"800d\"\n".into();
    let (code, _, err) = check(&s.write_config());
    assert_eq!(code, Some(0), "{err}");
}
