//! `cofferctl`: the branch admin's command line for a running cofferd, over its admin
//! Unix socket. Human tables by default, `--json` for scripts. `cofferctl redact` needs
//! no daemon: it cleans text (a log excerpt for a support ticket) on stdin.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Model versions: list, import, verify, activate, roll back, pin, remove; drift
    /// of the served versions; shadow evaluation of a candidate.
    #[command(subcommand)]
    Models(ModelsCommand),
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

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every installed version with its state; `*` marks the active one.
    List,
    /// A model's versions and history, or one version with its manifest.
    Show {
        name: String,
        version: Option<String>,
    },
    /// Lifecycle changes, oldest first.
    History {
        /// Only this model's.
        #[arg(long)]
        name: Option<String>,
        /// The most recent N entries (the daemon's default: 100).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Send a version directory to the daemon, which stores and evaluates it.
    ///
    /// The directory holds manifest.toml and the files it lists; the daemon hashes what
    /// it receives, stores it and runs the version's evaluation gate. Exits 2 when the
    /// version was stored but failed its gate.
    Import {
        dir: PathBuf,
        /// Accept inputs that differ from the active version's (clients must change).
        #[arg(long)]
        allow_schema_change: bool,
    },
    /// Re-hash every file of an installed version against its manifest.
    Verify { name: String, version: String },
    /// Serve this version for its name.
    Activate {
        name: String,
        version: String,
        /// Accept inputs that differ from the active version's (clients must change).
        #[arg(long)]
        allow_schema_change: bool,
        /// Refuse unless this version is the one in shadow and has passed it (enough
        /// compared rows and agreement: scoring.shadow_min_rows and
        /// scoring.shadow_min_agreement).
        #[arg(long)]
        require_shadow: bool,
    },
    /// Serve the version that was active before the current one.
    Rollback { name: String },
    /// Keep a model on this version: activation and rollback are refused until unpinned.
    Pin { name: String, version: String },
    /// Lift a model's pin.
    Unpin { name: String },
    /// Remove an installed version that is neither active nor pinned.
    Remove { name: String, version: String },
    /// Delete stored files no installed version uses, and staging leftovers.
    Gc,
    /// Population Stability Index of the score and of each feature against the
    /// manifest's reference, per window (this and the previous hour and day), for each
    /// served version of a scoring model.
    Drift { name: String },
    /// Score a fraction of the model's live requests with VERSION as well, off the
    /// request path, and compare with the active version. Answers are never changed.
    Shadow {
        name: String,
        version: String,
        /// The share of requests compared, above 0 and at most 1.
        #[arg(long, default_value_t = 0.1, value_parser = finite_f64)]
        fraction: f64,
    },
    /// The running shadow comparison: agreement, score differences, score PSI.
    ShadowReport { name: String },
    /// Stop the shadow comparison and show its final report.
    ShadowStop { name: String },
}

/// A number that JSON can carry (no NaN or infinity).
fn finite_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        Ok(_) => Err("must be a finite number".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// How often a progress bar is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// The width of a progress bar between its brackets.
const BAR_WIDTH: usize = 30;

/// A one-line progress bar on stderr, drawn only when stderr is a terminal, at most ten
/// times a second plus once at 100%.
#[derive(Debug)]
struct ProgressBar {
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressBar {
    fn new() -> ProgressBar {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// Redraws `label [===>  ] 45% 12.3/27.1 MB` and `tail` in place.
    fn update(&mut self, label: &str, done: u64, total: u64, tail: &str) {
        if !self.enabled {
            return;
        }
        let finished = done >= total;
        if !finished && self.last.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}{tail}\x1b[K", bar_line(label, done, total));
        let _ = err.flush();
    }

    /// Ends the line of a bar that was drawn, so the next bar or message starts on its
    /// own line.
    fn next_line(&mut self) {
        if self.drawn {
            eprintln!();
        }
        self.drawn = false;
        self.last = None;
    }

    /// Ends the bar for good: later updates draw nothing.
    fn finish(&mut self) {
        self.next_line();
        self.enabled = false;
    }
}

fn bar_line(label: &str, done: u64, total: u64) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    let mut bar = "=".repeat(filled);
    if filled < BAR_WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    format!(
        "{label} [{bar}] {:>3}% {}/{} MB",
        (fraction * 100.0) as u32,
        mb(done),
        mb(total)
    )
}

/// Bytes as decimal megabytes with one decimal.
fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// Bytes in MB, for tables that compare sizes.
fn size(bytes: &Value) -> String {
    bytes
        .as_u64()
        .map_or_else(|| "-".into(), |b| format!("{} MB", mb(b)))
}

/// Bytes in the unit that suits them (decimal: kB, MB, GB).
fn human_size(bytes: &Value) -> String {
    match bytes.as_u64() {
        None => "-".into(),
        Some(b) if b < 1_000 => format!("{b} B"),
        Some(b) if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        Some(b) if b < 1_000_000_000 => format!("{} MB", mb(b)),
        Some(b) => format!("{:.2} GB", b as f64 / 1e9),
    }
}

/// The registry's times are Unix milliseconds.
fn fmt_ms(ms: &Value) -> String {
    fmt_time(ms.as_u64().map(|ms| ms / 1000))
}

/// A string field, or `-`.
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Daemon-supplied text for one table cell or line: control characters (escape
/// sequences, newlines) become spaces, and more than `max` characters end in `...`.
fn one_line(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(3)).collect();
        cut.push_str("...");
        cut
    }
}

/// Percent-encodes one URL path segment or query value.
fn seg(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    // `.` and `..` alone would be read as relative path steps.
    if out.bytes().all(|b| b == b'.') {
        out = out.replace('.', "%2E");
    }
    out
}

fn model_path(name: &str) -> String {
    format!("/admin/models/{}", seg(name))
}

fn version_path(name: &str, version: &str) -> String {
    format!("{}/versions/{}", model_path(name), seg(version))
}

fn record_id(r: &Value) -> String {
    format!("{}@{}", text(&r["name"]), text(&r["version"]))
}

/// `cofferctl models ...`.
async fn models_command(
    json_out: bool,
    socket: &Path,
    command: ModelsCommand,
) -> Result<ExitCode, String> {
    let call = |method: Method, path: String, body: Option<Value>| async move {
        client::call(socket, method, &path, body)
            .await
            .map_err(|e| e.to_string())
    };
    let code = match command {
        ModelsCommand::List => {
            let r = call(Method::GET, "/admin/models".into(), None).await?;
            print(json_out, &r, print_model_list)
        }
        ModelsCommand::Show {
            name,
            version: None,
        } => {
            let r = call(Method::GET, model_path(&name), None).await?;
            print(json_out, &r, print_model)
        }
        ModelsCommand::Show {
            name,
            version: Some(version),
        } => {
            let r = call(Method::GET, version_path(&name, &version), None).await?;
            print(json_out, &r, print_version)
        }
        ModelsCommand::History { name, limit } => {
            let mut query = Vec::new();
            if let Some(name) = &name {
                query.push(format!("name={}", seg(name)));
            }
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            let mut path = "/admin/models-history".to_string();
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let r = call(Method::GET, path, None).await?;
            print(json_out, &r, |h| print_history(&h["history"], true))
        }
        ModelsCommand::Import {
            dir,
            allow_schema_change,
        } => return models_import(json_out, socket, &dir, allow_schema_change).await,
        ModelsCommand::Verify { name, version } => {
            return models_verify(json_out, socket, &name, &version).await;
        }
        ModelsCommand::Activate {
            name,
            version,
            allow_schema_change,
            require_shadow,
        } => {
            let body = json!({
                "allow_schema_change": allow_schema_change,
                "require_shadow": require_shadow,
            });
            let path = format!("{}/activate", version_path(&name, &version));
            let r = call(Method::POST, path, Some(body)).await?;
            print(json_out, &r, print_activation)
        }
        ModelsCommand::Rollback { name } => {
            let path = format!("{}/rollback", model_path(&name));
            let r = call(Method::POST, path, None).await?;
            print(json_out, &r, print_activation)
        }
        ModelsCommand::Pin { name, version } => {
            let path = format!("{}/pin", model_path(&name));
            let r = call(Method::PUT, path, Some(json!({ "version": version }))).await?;
            print(json_out, &r, |p| {
                println!("{} pinned to {}", text(&p["name"]), text(&p["pinned"]));
            })
        }
        ModelsCommand::Unpin { name } => {
            let path = format!("{}/pin", model_path(&name));
            let r = call(Method::DELETE, path, None).await?;
            print(json_out, &r, |p| match p["unpinned"].as_str() {
                Some(was) => println!("{} unpinned (was pinned to {was})", text(&p["name"])),
                None => println!("{} was not pinned", text(&p["name"])),
            })
        }
        ModelsCommand::Remove { name, version } => {
            let r = call(Method::DELETE, version_path(&name, &version), None).await?;
            print(json_out, &r, |rec| {
                println!(
                    "removed {}; `cofferctl models gc` deletes the files no other version uses",
                    record_id(rec)
                );
            })
        }
        ModelsCommand::Gc => {
            let r = call(Method::POST, "/admin/model-store/gc".into(), None).await?;
            print(json_out, &r, |g| {
                println!(
                    "removed {} blobs ({} MB) and {} staging entries",
                    g["blobs_removed"].as_u64().unwrap_or(0),
                    mb(g["bytes_freed"].as_u64().unwrap_or(0)),
                    g["staging_removed"].as_u64().unwrap_or(0)
                );
            })
        }
        ModelsCommand::Drift { name } => {
            let path = format!("{}/drift", model_path(&name));
            let r = call(Method::GET, path, None).await?;
            print(json_out, &r, print_drift)
        }
        ModelsCommand::Shadow {
            name,
            version,
            fraction,
        } => {
            let path = format!("{}/shadow", model_path(&name));
            let body = json!({ "version": version, "fraction": fraction });
            let r = call(Method::PUT, path, Some(body)).await?;
            print(json_out, &r, |s| {
                println!(
                    "{} now shadows {}@{} on {} of requests",
                    one_line(text(&s["candidate"]), 100),
                    one_line(text(&s["model"]), 100),
                    one_line(text(&s["active"]), 100),
                    percent(&s["fraction"], 2)
                );
            })
        }
        ModelsCommand::ShadowReport { name } => {
            let path = format!("{}/shadow", model_path(&name));
            let r = call(Method::GET, path, None).await?;
            print(json_out, &r, print_shadow_report)
        }
        ModelsCommand::ShadowStop { name } => {
            let path = format!("{}/shadow", model_path(&name));
            let r = call(Method::DELETE, path, None).await?;
            print(json_out, &r, |s| {
                println!("shadow stopped");
                print_shadow_report(s);
            })
        }
    };
    Ok(code)
}

/// How many features a drift window lists besides those that read `watch` or `act`.
const DRIFT_TOP_FEATURES: usize = 5;

/// A PSI value, or `n/a`.
fn psi_value(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |p| format!("{p:.4}"))
}

/// A fraction as a percentage with at most `decimals` decimals (`10%`, `2.5%`), or `n/a`.
fn percent(v: &Value, decimals: usize) -> String {
    match v.as_f64() {
        None => "n/a".into(),
        Some(f) => {
            let s = format!("{:.decimals$}", f * 100.0);
            let s = if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.')
            } else {
                &s
            };
            format!("{s}%")
        }
    }
}

/// A number in scientific notation, or `n/a`.
fn scientific(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |f| format!("{f:.2e}"))
}

/// A threshold or other plain number as the daemon sent it, or `-`.
fn number(v: &Value) -> String {
    if v.is_number() {
        v.to_string()
    } else {
        "-".into()
    }
}

/// `cofferctl models drift NAME`: per served version, per window, the score's PSI and
/// the features that moved.
fn print_drift(d: &Value) {
    let reports: Vec<&Value> = d["versions"].as_array().into_iter().flatten().collect();
    if reports.is_empty() {
        println!("no drift reports for {}", one_line(text(&d["model"]), 100));
        return;
    }
    for (i, r) in reports.into_iter().enumerate() {
        if i > 0 {
            println!();
        }
        let min_rows = r["min_rows"].as_u64().unwrap_or(0);
        println!(
            "{}@{}  (watch >= {}, act >= {}, min rows {min_rows})",
            one_line(text(&r["model"]), 100),
            one_line(text(&r["version"]), 100),
            number(&r["psi_watch"]),
            number(&r["psi_act"]),
        );
        let windows: Vec<&Value> = r["windows"].as_array().into_iter().flatten().collect();
        if windows.is_empty() {
            println!("(no windows yet)");
        }
        for w in windows {
            print_drift_window(w, min_rows);
        }
    }
}

fn print_drift_window(w: &Value, min_rows: u64) {
    let rows = w["rows"].as_u64().unwrap_or(0);
    let head = format!(
        "{:<13}  start {}  rows {rows}",
        one_line(text(&w["window"]), 40),
        fmt_time(w["start"].as_u64())
    );
    if rows < min_rows {
        println!("{head}  (too few rows for a reading)");
        return;
    }
    let score = &w["score"];
    if score.is_object() {
        println!(
            "{head}  score PSI {} {}",
            psi_value(&score["psi"]),
            one_line(text(&score["reading"]), 20)
        );
    } else {
        println!("{head}  score PSI n/a");
    }
    let by_psi = |a: &&Value, b: &&Value| {
        let psi = |v: &Value| v["psi"].as_f64().unwrap_or(f64::NEG_INFINITY);
        psi(b).total_cmp(&psi(a))
    };
    let (mut moved, mut stable): (Vec<&Value>, Vec<&Value>) = w["features"]
        .as_array()
        .into_iter()
        .flatten()
        .partition(|f| f["reading"].as_str() != Some("stable"));
    moved.sort_by(by_psi);
    stable.sort_by(by_psi);
    let room = DRIFT_TOP_FEATURES.saturating_sub(moved.len());
    for f in moved.into_iter().chain(stable.into_iter().take(room)) {
        println!(
            "  {:<48} {:>8}  {}",
            one_line(text(&f["name"]), 48),
            psi_value(&f["psi"]),
            one_line(text(&f["reading"]), 20)
        );
    }
}

/// `cofferctl models shadow-report NAME` (and after `shadow-stop`).
fn print_shadow_report(s: &Value) {
    let stats = &s["stats"];
    println!("shadow of {}", one_line(text(&s["model"]), 100));
    println!("  candidate:     {}", one_line(text(&s["candidate"]), 100));
    println!("  active:        {}", one_line(text(&s["active"]), 100));
    println!(
        "  fraction:      {} of requests",
        percent(&s["fraction"], 2)
    );
    println!("  since:         {}", fmt_ms(&s["started_at_ms"]));
    match stats["requests"].as_u64() {
        Some(sampled) => println!(
            "  rows compared: {} ({sampled} requests sampled)",
            s["rows"].as_u64().unwrap_or(0)
        ),
        None => println!("  rows compared: {}", s["rows"].as_u64().unwrap_or(0)),
    }
    println!(
        "  agreement:     {} (decision threshold {})",
        percent_fixed(&s["agreement"]),
        number(&s["decision_threshold"])
    );
    println!("  mean abs diff: {}", scientific(&s["mean_abs_diff"]));
    println!("  max abs diff:  {}", scientific(&s["max_abs_diff"]));
    println!("  score PSI:     {}", psi_value(&s["score_psi"]));
    println!(
        "  skipped:       {}",
        stats["skipped"].as_u64().unwrap_or(0)
    );
}

/// A fraction as a percentage with two decimals (`99.12%`), or `n/a`.
fn percent_fixed(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |f| format!("{:.2}%", f * 100.0))
}

/// `cofferctl models import DIR`: streams the directory with a progress bar; exits 2
/// when the version was stored but failed its evaluation gate.
async fn models_import(
    json_out: bool,
    socket: &Path,
    dir: &Path,
    allow_schema_change: bool,
) -> Result<ExitCode, String> {
    // The label only: client::import reads and checks the manifest itself and reports
    // what is wrong with it.
    let what = std::fs::read_to_string(dir.join("manifest.toml"))
        .ok()
        .and_then(|t| coffer_models::Manifest::parse(&t).ok())
        .map_or_else(|| dir.display().to_string(), |m| m.id());
    let label = format!("importing {what}");
    let bar = Arc::new(Mutex::new(ProgressBar::new()));
    let drawer = Arc::clone(&bar);
    let result = client::import(socket, dir, allow_schema_change, move |sent, total| {
        if let Ok(mut bar) = drawer.lock() {
            let tail = if sent >= total {
                " (checking and evaluating)"
            } else {
                ""
            };
            bar.update(&label, sent, total, tail);
        }
    })
    .await;
    if let Ok(mut bar) = bar.lock() {
        bar.finish();
    }
    let r = result.map_err(|e| e.to_string())?;
    let record = r.json();
    let failed = r.status.is_success() && record["state"].as_str() == Some("failed");
    let code = print(json_out, &r, |rec| {
        let state = text(&rec["state"]);
        match rec["reason"].as_str() {
            Some(reason) if !failed => println!(
                "imported {}: {state} ({})",
                record_id(rec),
                one_line(reason, 200)
            ),
            _ => println!("imported {}: {state}", record_id(rec)),
        }
    });
    if failed {
        eprintln!(
            "cofferctl: {} FAILED its evaluation gate: {}",
            record_id(&record),
            one_line(record["reason"].as_str().unwrap_or("no reason given"), 500)
        );
        return Ok(ExitCode::from(2));
    }
    Ok(code)
}

/// `cofferctl models verify NAME VERSION`: NDJSON progress lines drawn as one bar per
/// file, then the final `result` or `error` line.
async fn models_verify(
    json_out: bool,
    socket: &Path,
    name: &str,
    version: &str,
) -> Result<ExitCode, String> {
    let id = format!("{name}@{version}");
    let path = format!("{}/verify?progress=true", version_path(name, version));
    let mut stream = VerifyStream {
        label: format!("verifying {id}"),
        bar: ProgressBar::new(),
        file: String::new(),
        last: None,
        other: Vec::new(),
    };
    let status = client::call_lines(socket, Method::POST, &path, |line| stream.line(line)).await;
    stream.bar.finish();
    let status = status.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let r = AdminResponse {
            status,
            body: stream.other.into(),
        };
        return Ok(print(json_out, &r, |_| {}));
    }
    let Some(last) = stream
        .last
        .filter(|v| v.get("result").is_some() || v.get("error").is_some())
    else {
        eprintln!("cofferctl: the daemon's answer to verify {id} ended without a result");
        return Ok(ExitCode::FAILURE);
    };
    let failed = last.get("error").is_some();
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&last).unwrap_or_default()
        );
    } else if failed {
        eprintln!(
            "cofferctl: {}",
            one_line(
                last["error"]["message"].as_str().unwrap_or("verify failed"),
                1000
            )
        );
    } else {
        println!("{id}: every file matches its manifest");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What `models_verify` keeps of the NDJSON lines as they arrive.
#[derive(Debug)]
struct VerifyStream {
    label: String,
    bar: ProgressBar,
    /// The file the bar is drawing.
    file: String,
    /// The last line that parsed and was not progress.
    last: Option<Value>,
    /// Everything but progress lines, for an answer that is not a stream (an error).
    other: Vec<u8>,
}

impl VerifyStream {
    fn line(&mut self, line: &[u8]) {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) if v.get("progress").is_some() => {
                let p = &v["progress"];
                let file = text(&p["file"]);
                if file != self.file {
                    self.bar.next_line();
                    self.file = file.to_string();
                }
                let label = format!("{} {}", self.label, one_line(&self.file, 60));
                let done = p["done"].as_u64().unwrap_or(0);
                let total = p["total"].as_u64().unwrap_or(done);
                self.bar.update(&label, done, total, "");
            }
            parsed => {
                self.other.extend_from_slice(line);
                self.other.push(b'\n');
                if let Ok(v) = parsed {
                    self.last = Some(v);
                }
            }
        }
    }
}

fn print_activation(a: &Value) {
    let id = record_id(a);
    if a["changed"].as_bool() == Some(false) {
        println!("{id} was already active");
        return;
    }
    let mut notes = Vec::new();
    if let Some(previous) = a["previous"].as_str() {
        notes.push(format!("was {previous}"));
    }
    if let Some(variant) = a["variant"].as_str() {
        notes.push(format!("variant {variant}"));
    }
    if notes.is_empty() {
        println!("{id} active");
    } else {
        println!("{id} active ({})", notes.join("; "));
    }
}

fn print_model_list(list: &Value) {
    let models: Vec<&Value> = list["models"].as_array().into_iter().flatten().collect();
    if models.iter().all(|m| versions(m).is_empty()) {
        println!("no model versions installed");
        return;
    }
    println!(
        "{:<24} {:<12} {:<20} {:<6} {:<12} {:>10} {:<20} REASON",
        "NAME", "VERSION", "STATE", "KIND", "VARIANT", "SIZE", "INSTALLED"
    );
    for m in models {
        let active = m["active"].as_str();
        let pinned = m["pinned"].as_str();
        for v in versions(m) {
            let version = v["version"].as_str();
            let mut state = text(&v["state"]).to_string();
            if version.is_some() && version == active {
                state.push('*');
            }
            if version.is_some() && version == pinned {
                state.push_str(" (pinned)");
            }
            println!(
                "{:<24} {:<12} {:<20} {:<6} {:<12} {:>10} {:<20} {}",
                text(&v["name"]),
                text(&v["version"]),
                state,
                text(&v["kind"]),
                text(&v["variant"]),
                size(&v["bytes"]),
                fmt_ms(&v["installed_at"]),
                one_line(v["reason"].as_str().unwrap_or(""), 60)
            );
        }
    }
}

fn versions(model: &Value) -> Vec<&Value> {
    model["versions"].as_array().into_iter().flatten().collect()
}

/// `key: value` lines for one version record.
fn print_record(r: &Value) {
    println!("{}", record_id(r));
    println!("  state:         {}", text(&r["state"]));
    println!(
        "  kind:          {} ({})",
        text(&r["kind"]),
        text(&r["format"])
    );
    println!("  variant:       {}", text(&r["variant"]));
    println!("  size:          {}", human_size(&r["bytes"]));
    println!("  installed:     {}", fmt_ms(&r["installed_at"]));
    println!("  updated:       {}", fmt_ms(&r["updated_at"]));
    if let Some(reason) = r["reason"].as_str() {
        println!("  reason:        {}", one_line(reason, 500));
    }
    println!("  manifest:      sha256 {}", text(&r["manifest_sha256"]));
    if r["allow_schema_change"].as_bool() == Some(true) {
        println!("  schema change: allowed at import");
    }
}

/// `cofferctl models show NAME`.
fn print_model(m: &Value) {
    println!("{}", text(&m["name"]));
    println!("  active:        {}", text(&m["active"]));
    println!("  pinned:        {}", text(&m["pinned"]));
    for v in versions(m) {
        println!();
        print_record(v);
    }
    println!();
    print_history(&m["history"], false);
}

/// `cofferctl models show NAME VERSION`: the record, its manifest, its history.
fn print_version(v: &Value) {
    print_record(&v["record"]);
    let m = &v["manifest"];
    if m.is_null() {
        println!("  (its manifest cannot be read from the store)");
    } else {
        print_manifest(m);
    }
    println!();
    print_history(&v["history"], false);
}

fn print_manifest(m: &Value) {
    if let Some(description) = m["description"].as_str() {
        println!("  description:   {}", one_line(description, 500));
    }
    println!("  files:");
    for f in m["files"].as_array().into_iter().flatten() {
        println!(
            "    {:<32} {:>10} {:<6} sha256 {}",
            text(&f["path"]),
            human_size(&f["size"]),
            text(&f["role"]),
            text(&f["sha256"])
        );
    }
    let lineage: Vec<(&str, &str)> = ["base", "quantization", "distilled_from", "training_data"]
        .into_iter()
        .filter_map(|k| m["lineage"][k].as_str().map(|v| (k, v)))
        .collect();
    if !lineage.is_empty() {
        println!("  lineage:");
        for (k, v) in lineage {
            println!("    {:<15} {}", format!("{k}:"), one_line(v, 200));
        }
    }
    let variants: Vec<&Value> = m["variants"].as_array().into_iter().flatten().collect();
    if !variants.is_empty() {
        println!("  variants (in order of preference):");
        for v in variants {
            let mut line = format!("    {:<14} file {}", text(&v["name"]), text(&v["file"]));
            if let Some(q) = v["quantization"].as_str() {
                line.push_str(&format!(", {q}"));
            }
            match v["gpu_memory_mib"].as_u64() {
                Some(mib) => line.push_str(&format!(", GPU with {mib} MiB free")),
                None => line.push_str(", CPU"),
            }
            println!("{line}");
        }
    }
    for (title, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
        let tensors: Vec<String> = m["io"][key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{} {} {}",
                    text(&t["name"]),
                    text(&t["datatype"]),
                    t["shape"]
                )
            })
            .collect();
        if !tensors.is_empty() {
            println!("  {:<14} {}", format!("{title}:"), tensors.join(", "));
        }
    }
}

/// The history table, oldest first; `with_name` adds a NAME column (history across
/// models).
fn print_history(entries: &Value, with_name: bool) {
    let entries: Vec<&Value> = entries.as_array().into_iter().flatten().collect();
    if entries.is_empty() {
        println!("no history");
        return;
    }
    let name_col = |name: &str| {
        if with_name {
            format!("{name:<24} ")
        } else {
            String::new()
        }
    };
    println!(
        "{:<20} {}{:<12} {:<12} {:<12} DETAIL",
        "TIME",
        name_col("NAME"),
        "ACTOR",
        "ACTION",
        "VERSION"
    );
    for h in entries {
        println!(
            "{:<20} {}{:<12} {:<12} {:<12} {}",
            fmt_ms(&h["at"]),
            name_col(text(&h["name"])),
            text(&h["actor"]),
            text(&h["action"]),
            text(&h["version"]),
            one_line(h["detail"].as_str().unwrap_or(""), 300)
        );
    }
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

/// Unix seconds as RFC 3339 UTC; `-` when absent, the bare number past year 9999
/// (which humantime cannot format).
fn fmt_time(secs: Option<u64>) -> String {
    /// The first second of year 10000.
    const YEAR_10000: u64 = 253_402_300_800;
    match secs {
        None => "-".into(),
        Some(s) if s >= YEAR_10000 => s.to_string(),
        Some(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
    }
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
        Command::Models(command) => return models_command(cli.json, &socket, command).await,
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
    // One worker besides this thread: `client::import` joins its file-reader thread
    // from async code once the answer is in, and when the daemon answers early (the
    // version exists, a schema change is refused) that reader can only finish after
    // the connection task, run by the worker, has dropped the request body.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
