//! The command line: global options and every subcommand, as clap parses them. Pure
//! definitions; [`crate::run`] acts on them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cofferctl", version, about = "Administer a running cofferd")]
pub struct Cli {
    /// Admin socket; defaults to $COFFER_ADMIN_SOCKET, then the config's admin.socket,
    /// then /run/coffer/admin.sock.
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Read admin.socket from this cofferd configuration file.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Scoring decisions kept on the box: show, list, replay, export, rotate the key.
    /// Every call is recorded in the audit log.
    #[command(subcommand)]
    Decisions(DecisionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum DecisionsCommand {
    /// One decision (inputs, outputs, explanation, version) by its request id.
    Show { request_id: String },
    /// Decisions by time, oldest first.
    List {
        #[arg(long)]
        model: Option<String>,
        /// How far back: a duration such as `7days` or `24h` (default: everything kept).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Re-score recorded decisions with the recorded version and report any output
    /// that is not the recorded one bit for bit (exit 1 then).
    Replay {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
    /// The decisions as JSON; `--redacted` withholds attribute values and inputs (a
    /// dispute file: scores, reasons, versions and hashes).
    Export {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        redacted: bool,
    },
    /// Add a new sealing key; older keys stay to open the decisions they sealed.
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
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

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, checkpoint signatures and HEAD of an audit directory, and
    /// name the first bad record. Reads the files directly; needs no running daemon.
    Verify {
        /// The audit directory; defaults to the config's audit directory, then
        /// /var/lib/coffer/audit.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its token is printed once and never stored.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: chat, embed, score, metrics, admin.
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

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_shadow_fraction_must_be_finite() {
        assert!(finite_f64("0.25").is_ok());
        assert!(finite_f64("NaN").is_err());
        assert!(finite_f64("inf").is_err());
        let parsed = Cli::try_parse_from([
            "cofferctl",
            "models",
            "shadow",
            "m",
            "2",
            "--fraction",
            "nan",
        ]);
        assert!(parsed.is_err());
    }
}
