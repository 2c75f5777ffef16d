//! The commands that need no running daemon: `redact` (stdin to stdout with personal
//! data replaced), `audit verify` (the log's files checked directly) and
//! `tls host-cert`.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use crate::args::{Cli, TlsCommand};

/// `cofferctl redact`: line by line, so any size of input streams through.
pub fn redact_stdin() -> ExitCode {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("cofferctl: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
        }
        // Bytes that are not UTF-8 are written as U+FFFD: nothing passes unchecked.
        let text = String::from_utf8_lossy(&line);
        let findings = coffer_privacy::find(&text);
        for f in &findings {
            *counts.entry(f.kind.tag()).or_default() += 1;
        }
        let written = if findings.is_empty() {
            out.write_all(text.as_bytes())
        } else {
            out.write_all(coffer_privacy::replace(&text, &findings).as_bytes())
        };
        if let Err(e) = written {
            eprintln!("cofferctl: cannot write stdout: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("cofferctl: cannot write stdout: {e}");
        return ExitCode::FAILURE;
    }
    let total: usize = counts.values().sum();
    let detail: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    eprintln!(
        "cofferctl: redacted {total} identifiers ({})",
        detail.join(", ")
    );
    ExitCode::SUCCESS
}

/// `cofferctl audit verify`.
pub fn audit_verify(cli: &Cli, dir: Option<&Path>) -> ExitCode {
    let dir = match crate::locate::audit_dir(cli, dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cofferctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match coffer_audit::verify_dir(&dir) {
        Ok(report) => {
            if cli.json {
                println!("{}", serde_json::json!({ "ok": true, "report": report }));
            } else {
                println!(
                    "audit log OK: {} records in {} segment(s), {} signed checkpoints, last record {}{}",
                    report.records,
                    report.segments,
                    report.checkpoints,
                    report.last_seq,
                    match report.pruned_before {
                        Some(n) => format!(" (records before {n} removed by retention)"),
                        None => String::new(),
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "error": e.to_string() })
                );
            } else {
                eprintln!("cofferctl: audit log {}: {e}", dir.display());
            }
            ExitCode::from(1)
        }
    }
}

/// `cofferctl tls host-cert`: exits 3 when a file exists and `--force` was not given.
pub fn tls_host_cert(command: &TlsCommand) -> ExitCode {
    let TlsCommand::HostCert {
        cert,
        key,
        names,
        force,
    } = command;
    match coffer_hostcert::generate(cert, key, names, *force) {
        Ok(made) => {
            println!(
                "wrote a SELF-SIGNED certificate {} (key {}) for {}",
                made.cert.display(),
                made.key.display(),
                made.names.join(", ")
            );
            println!("clients must pin it; replace both files with ones from your CA");
            ExitCode::SUCCESS
        }
        Err(coffer_hostcert::HostCertError::Exists(path)) => {
            eprintln!(
                "cofferctl: {} exists; kept (pass --force to replace it)",
                path.display()
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("cofferctl: {e}");
            ExitCode::FAILURE
        }
    }
}
