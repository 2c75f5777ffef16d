//! Keeps what native libraries write to stderr out of the daemon's log. llama.cpp prints
//! some messages with `fprintf(stderr, …)`, past its log callback: a grammar it cannot
//! parse (the whole grammar, built from a client's schema), a JSON-schema conversion
//! warning (the client's pattern). Under systemd stderr is the journal, so such text
//! would land there. [`capture`] moves the real stderr to a new descriptor (the log's
//! writer, which it returns) and points descriptor 2 at a pipe whose reader counts what
//! arrives and reports only the count, never the text. Rust's own panic output goes the
//! same way, so [`install_panic_hook`] logs panics through `tracing`, redacted.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::time::{Duration, Instant};

/// How often at most a "withheld" line is logged while output keeps arriving.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Points descriptor 2 at a draining pipe; returns a handle on the real stderr.
pub fn capture() -> std::io::Result<File> {
    let original = rustix::io::fcntl_dupfd_cloexec(std::io::stderr().as_fd(), 3)?;
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    std::thread::Builder::new()
        .name("native-stderr".into())
        .spawn(move || drain(File::from(read)))?;
    rustix::stdio::dup2_stderr(&write)?;
    Ok(File::from(original))
}

/// Reads the pipe for ever, logging how much was withheld: the first time at once, then
/// at most every [`REPORT_EVERY`].
fn drain(mut pipe: File) {
    let mut buf = [0u8; 8192];
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut reported: Option<Instant> = None;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        bytes += n as u64;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            reported = Some(Instant::now());
            tracing::warn!(
                target: "cofferd::native",
                lines,
                bytes,
                "a native library wrote to stderr; withheld from the log, since it may carry request content (counts since start)"
            );
        }
    }
}

/// Logs a panic's thread and location, and its message redacted, through `tracing`
/// (the default hook would print it to stderr, which [`capture`] withholds).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        tracing::error!(
            thread,
            location,
            message = %coffer_privacy::redact(&message),
            "panic"
        );
    }));
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::Arc;

    use tracing_subscriber::fmt::writer::BoxMakeWriter;

    use crate::config::LogFormat;

    const CHILD: &str = "COFFER_NATIVE_STDERR_CHILD";
    const CARD: &str = "4111111111111111";

    /// The child half of the test below: runs only in the process that test starts.
    #[test]
    fn child_writes_to_captured_stderr() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let real = super::capture().unwrap();
        crate::logging::init_with(LogFormat::Text, "info", BoxMakeWriter::new(Arc::new(real)));
        super::install_panic_hook();
        // What a C library's fprintf(stderr, …) does: a write to descriptor 2.
        eprintln!("llama_grammar_parse_impl: error parsing grammar: root ::= \"{CARD}\"");
        let _ = std::panic::catch_unwind(|| panic!("card {CARD} in a panic message"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        tracing::info!("child done");
    }

    #[test]
    fn native_output_is_withheld_and_panics_are_logged_redacted() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "native_stderr::tests::child_writes_to_captured_stderr",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(log.contains("withheld") && log.contains("lines=1"), "{log}");
        assert!(
            log.contains("panic") && log.contains("native_stderr.rs"),
            "{log}"
        );
        assert!(log.contains("child done"), "{log}");
        assert!(!log.contains(CARD), "{log}");
    }
}
