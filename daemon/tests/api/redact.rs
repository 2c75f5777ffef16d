//! `cofferctl redact`: stdin to stdout with identifiers tagged, no daemon needed.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::common::COFFERCTL;

#[test]
fn redact_cleans_a_log_excerpt_without_a_daemon() {
    let input = "2024-03-07 12:00:01 INFO 客户卡号6222 0212 3456 7890 124申请\n\
                 card ４１１１－１１１１－１１１１－１１１１ declined, call +86 138-1234-5678\n\
                 ID 11010519491231002X mail zhang.san@bank.cn from 10.20.30.40\n\
                 order ORD-2024-000123 amount ¥12,345.67\n";
    let mut child = Command::new(COFFERCTL)
        .arg("redact")
        // No socket exists: redact must not need one.
        .env("COFFER_ADMIN_SOCKET", "/nonexistent/admin.sock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cofferctl starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("cofferctl ends");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        text,
        "2024-03-07 12:00:01 INFO 客户卡号[PAN]申请\n\
         card [PAN] declined, call [PHONE]\n\
         ID [CN_ID] mail [EMAIL] from [IP]\n\
         order ORD-2024-000123 amount ¥12,345.67\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redacted 6 identifiers"), "{stderr}");
    assert!(stderr.contains("[PAN] 2"), "{stderr}");
}
