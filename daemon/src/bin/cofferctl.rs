//! `cofferctl`: the branch admin's command line for a running cofferd, over its admin
//! Unix socket. Human tables by default, `--json` for scripts. `cofferctl redact` needs
//! no daemon: it cleans text (a log excerpt for a support ticket) on stdin.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cofferd::client::{self, AdminResponse};
use http::Method;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "cofferctl", version, about = "Administer a running cofferd")]
struct Cli {
    /// Admin socket; defaults to $COFFER_ADMIN_SOCKET, then the config's admin.socket,
    /// then /run/coffer/admin.sock.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Read admin.socket from this cofferd configuration file.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Copy stdin to stdout with every card number, IBAN, resident ID, phone number,
    /// e-mail and IP address, and long account-like number replaced by a tag such as
    /// [PAN]; a count per tag goes to stderr. Needs no running daemon.
    Redact,
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// TLS material.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a self-signed certificate and key for this host (host name, localhost,
    /// 127.0.0.1, ::1 and any --name). Existing files are kept unless --force. Meant for a
    /// first start on loopback; replace it with a certificate from your CA.
    HostCert {
        #[arg(long, default_value = "/etc/coffer/tls/server.pem")]
        cert: PathBuf,
        #[arg(long, default_value = "/etc/coffer/tls/server-key.pem")]
        key: PathBuf,
        /// A further DNS name or IP address for the certificate (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        #[arg(long)]
        force: bool,
    },
}

fn tls_host_cert(command: &TlsCommand) -> ExitCode {
    let TlsCommand::HostCert {
        cert,
        key,
        names,
        force,
    } = command;
    match cofferd::tls::hostcert::generate(cert, key, names, *force) {
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
        Err(cofferd::tls::hostcert::HostCertError::Exists(path)) => {
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

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain, checkpoint signatures and HEAD of an audit directory, and
    /// name the first bad record. Reads the files directly; needs no running daemon.
    Verify {
        /// The audit directory; defaults to the config's audit directory, then
        /// /var/lib/coffer/audit.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; its token is printed once and never stored.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: chat, score, metrics, admin.
        #[arg(long)]
        scopes: String,
        /// Sustained rate, such as 20/s or 600/m.
        #[arg(long)]
        rate: Option<String>,
        /// Burst size (default: twice the per-second rate).
        #[arg(long)]
        burst: Option<u32>,
    },
    /// List keys (never their tokens).
    List,
    /// Revoke a key; it fails from its next request on.
    Revoke { name: String },
}

fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    if let Some(s) = std::env::var_os("COFFER_ADMIN_SOCKET") {
        return Ok(PathBuf::from(s));
    }
    if let Some(path) = &cli.config {
        let config = cofferd::config::load(path).map_err(|e| {
            e.problems()
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        return Ok(config.admin.socket);
    }
    Ok(PathBuf::from("/run/coffer/admin.sock"))
}

fn fmt_time(secs: Option<u64>) -> String {
    secs.map(|s| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
            .to_string()
    })
    .unwrap_or_else(|| "-".into())
}

fn key_row(k: &Value) -> String {
    let scopes: Vec<&str> = k["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let rate = match k["rate"].as_object() {
        Some(r) => format!("{}/s burst {}", r["per_second"], r["burst"]),
        None => "unlimited".into(),
    };
    let state = if k["revoked_at"].is_null() {
        "active".to_string()
    } else {
        format!("revoked {}", fmt_time(k["revoked_at"].as_u64()))
    };
    format!(
        "{:<24} {:<16} {:<28} {:<20} {:<22} {}",
        k["name"].as_str().unwrap_or("?"),
        k["id"].as_str().unwrap_or("?"),
        scopes.join(","),
        rate,
        fmt_time(k["created_at"].as_u64()),
        state
    )
}

fn print(json_out: bool, response: &AdminResponse, human: impl FnOnce(&Value)) -> ExitCode {
    if !response.status.is_success() {
        if json_out {
            println!("{}", response.json());
        }
        eprintln!("cofferctl: {}", response.error_message());
        return ExitCode::FAILURE;
    }
    let value = response.json();
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        human(&value);
    }
    ExitCode::SUCCESS
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let socket = socket_path(&cli)?;
    let call = |method, path: String, body| {
        let socket = socket.clone();
        async move {
            client::call(&socket, method, &path, body)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let command = match cli.command {
        Command::Keys(command) => command,
        Command::Redact => return Ok(redact_stdin()),
        Command::Audit(AuditCommand::Verify { ref dir }) => {
            return Ok(audit_verify(&cli, dir.as_ref()));
        }
        Command::Tls(ref command) => return Ok(tls_host_cert(command)),
    };
    let code = match command {
        KeysCommand::Create {
            name,
            scopes,
            rate,
            burst,
        } => {
            let scopes: Vec<&str> = scopes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let body = json!({ "name": name, "scopes": scopes, "rate": rate, "burst": burst });
            let r = call(Method::POST, "/admin/keys".into(), Some(body)).await?;
            print(cli.json, &r, |k| {
                println!(
                    "created key {} ({})",
                    k["name"].as_str().unwrap_or("?"),
                    k["id"].as_str().unwrap_or("?")
                );
                println!(
                    "token (shown once, store it now): {}",
                    k["token"].as_str().unwrap_or("?")
                );
            })
        }
        KeysCommand::List => {
            let r = call(Method::GET, "/admin/keys".into(), None).await?;
            print(cli.json, &r, |keys| {
                println!(
                    "{:<24} {:<16} {:<28} {:<20} {:<22} STATE",
                    "NAME", "ID", "SCOPES", "RATE", "CREATED"
                );
                for k in keys.as_array().into_iter().flatten() {
                    println!("{}", key_row(k));
                }
            })
        }
        KeysCommand::Revoke { name } => {
            let r = call(Method::DELETE, format!("/admin/keys/{name}"), None).await?;
            print(cli.json, &r, |k| {
                println!(
                    "revoked key {} ({})",
                    k["name"].as_str().unwrap_or("?"),
                    k["id"].as_str().unwrap_or("?")
                )
            })
        }
    };
    Ok(code)
}

/// `cofferctl redact`: line by line, so any size of input streams through.
fn redact_stdin() -> ExitCode {
    use std::io::{BufRead as _, Write as _};
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
fn audit_verify(cli: &Cli, dir: Option<&PathBuf>) -> ExitCode {
    let dir = match (dir, &cli.config) {
        (Some(d), _) => d.clone(),
        (None, Some(path)) => match cofferd::config::load(path) {
            Ok(c) => c.audit.settings.dir,
            Err(e) => {
                for p in e.problems() {
                    eprintln!("cofferctl: {}: {p}", path.display());
                }
                return ExitCode::FAILURE;
            }
        },
        (None, None) => PathBuf::from("/var/lib/coffer/audit"),
    };
    match cofferd::audit::verify_dir(&dir) {
        Ok(report) => {
            if cli.json {
                println!("{}", json!({ "ok": true, "report": report }));
            } else {
                println!(
                    "audit log OK: {} records in {} segment(s), {} signed checkpoints, last record {}",
                    report.records, report.segments, report.checkpoints, report.last_seq
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if cli.json {
                println!("{}", json!({ "ok": false, "error": e.to_string() }));
            } else {
                eprintln!("cofferctl: audit log {}: {e}", dir.display());
            }
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Redact) {
        return redact_stdin();
    }
    if let Command::Audit(AuditCommand::Verify { dir }) = &cli.command {
        return audit_verify(&cli, dir.as_ref());
    }
    if let Command::Tls(command) = &cli.command {
        return tls_host_cert(command);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cofferctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cofferctl: {e}");
            ExitCode::FAILURE
        }
    }
}
