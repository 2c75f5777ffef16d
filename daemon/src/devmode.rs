//! `cofferd serve --dev`: everything a newcomer needs on one host, made on first start
//! and reused after: a self-signed CA and a server certificate for localhost (rcgen), a
//! sled database, a first API key with every scope, and `dev.env` (mode 0600) with
//! `COFFER_URL`, `COFFER_CA`, `COFFER_API_KEY` and `COFFER_ADMIN_SOCKET`.
//! Dev mode only ever listens on a loopback address.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::access::keys::{KeyStore, NewKey, Scope};
use crate::config::{self, Config};

/// Why dev mode could not set itself up.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("dev mode listens on loopback only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the dev certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot create the dev API key: {0}")]
    Key(#[from] crate::access::keys::KeyError),
}

/// Paths of the dev data directory.
#[derive(Debug, Clone)]
pub struct DevLayout {
    pub dir: PathBuf,
}

impl DevLayout {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("tls/ca-key.pem")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("tls/server.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("tls/server-key.pem")
    }
    pub fn env_file(&self) -> PathBuf {
        self.dir.join("dev.env")
    }
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), DevError> {
    crate::atomic_write::write_atomically(path, contents, mode).map_err(|source| DevError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The models dev mode serves: every scoring version under `scoring`, and the chat and
/// embedding version directories found ([`fetched`]).
#[derive(Debug, Clone)]
pub struct DevModels {
    pub scoring: PathBuf,
    /// Scoring model names whose decisions are kept.
    pub record_decisions: Vec<String>,
    pub chat: Vec<String>,
    pub embedding: Vec<String>,
}

/// Makes the directory, certificates and configuration; reuses what exists.
pub fn prepare(
    dir: &Path,
    listen: SocketAddr,
    models: DevModels,
) -> Result<(DevLayout, Config), DevError> {
    if !listen.ip().is_loopback() {
        return Err(DevError::NotLoopback(listen));
    }
    let layout = DevLayout {
        dir: dir.to_path_buf(),
    };
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p)
            .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)))
            .map_err(|source| DevError::Write {
                path: p.to_path_buf(),
                source,
            })
    };
    mkdir(dir)?;
    mkdir(&dir.join("tls"))?;
    if !(layout.ca().exists() && layout.cert().exists() && layout.key().exists()) {
        make_certificates(&layout)?;
    }
    let mut raw = config::RawConfig::default();
    raw.server.listen = listen.to_string();
    raw.tls.cert = Some(layout.cert().display().to_string());
    raw.tls.key = Some(layout.key().display().to_string());
    raw.state.dir = dir.join("state").display().to_string();
    raw.admin.socket = layout.admin_socket().display().to_string();
    raw.scoring.models = scoring_fixtures(&models.scoring);
    raw.chat.models = models.chat;
    raw.embedding.models = models.embedding;
    raw.decisions.models = models.record_decisions;
    // Dev mode has one key, which every benchmark and demo uses: it may take the whole
    // pool (a served appliance keeps each key to half of it by default).
    raw.admission.max_in_flight_per_key = Some(raw.admission.max_in_flight);
    // A developer's disk, not an appliance's: keep 1 GiB of audit log (16 segments).
    raw.audit.max_total_bytes = 1 << 30;
    // The defaults always validate; a failure here is a bug, reported as a write error.
    let config = config::validate(&raw).map_err(|problems| DevError::Write {
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!("{problems:?}")),
    })?;
    Ok((layout, config))
}

/// Every model version of `kind` under `dir` (`NAME/VERSION/manifest.toml`). When there
/// is none and `fetch` (a repository script: `models/fetch-smollm2`,
/// `models/fetch-minilm`) exists, it is run first, so a fresh checkout's dev mode serves
/// the dev chat and embedding models; a failed fetch only means no model of that kind.
pub fn fetched(dir: &Path, kind: coffer_models::Kind, fetch: &str) -> Vec<String> {
    let fetch = Path::new(fetch);
    if fixtures_of_kind(dir, kind).is_empty() && fetch.is_file() {
        eprintln!("cofferd: fetching a dev model with {}", fetch.display());
        match std::process::Command::new(fetch).status() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!(
                "cofferd: {} failed ({s}); serving without it",
                fetch.display()
            ),
            Err(e) => eprintln!(
                "cofferd: cannot run {}: {e}; serving without it",
                fetch.display()
            ),
        }
    }
    fixtures_of_kind(dir, kind)
}

/// Every scoring model version under `fixtures` (`NAME/VERSION/manifest.toml`).
fn scoring_fixtures(fixtures: &Path) -> Vec<String> {
    fixtures_of_kind(fixtures, coffer_models::Kind::Score)
}

fn fixtures_of_kind(fixtures: &Path, kind: coffer_models::Kind) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(names) = std::fs::read_dir(fixtures) else {
        return found;
    };
    for name in names.flatten() {
        let Ok(versions) = std::fs::read_dir(name.path()) else {
            continue;
        };
        for version in versions.flatten() {
            let manifest = version.path().join("manifest.toml");
            let is_score = std::fs::read_to_string(&manifest)
                .ok()
                .and_then(|t| coffer_models::Manifest::parse(&t).ok())
                .is_some_and(|m| m.kind == kind);
            if is_score {
                found.push(version.path().display().to_string());
            }
        }
    }
    found.sort();
    found
}

fn make_certificates(layout: &DevLayout) -> Result<(), DevError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Coffer dev CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&server_key, &ca, &ca_key)?;

    write_file(&layout.ca_key(), ca_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&layout.ca(), ca.pem().as_bytes(), 0o644)?;
    write_file(&layout.key(), server_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&layout.cert(), cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// What the dev start-up tells the user.
#[derive(Debug)]
pub struct DevWelcome {
    pub url: String,
    pub ca: PathBuf,
    pub env_file: PathBuf,
    pub admin_socket: PathBuf,
    /// Set only when the key was created now; it is shown this once.
    pub new_key: Option<String>,
}

fn env_value(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| {
            l.trim_start_matches("export ")
                .strip_prefix(&format!("{name}="))
        })
        .map(|v| v.trim().trim_matches('\'').to_string())
}

/// After binding: reuses the key in `dev.env` if it still works, otherwise creates one,
/// and (re)writes `dev.env` with the URL of this run.
pub fn finish(
    layout: &DevLayout,
    keys: &KeyStore,
    bound: SocketAddr,
) -> Result<DevWelcome, DevError> {
    let existing = std::fs::read_to_string(layout.env_file())
        .ok()
        .and_then(|text| env_value(&text, "COFFER_API_KEY"))
        .filter(|token| keys.authenticate(token).is_some());
    let (token, new_key) = match existing {
        Some(token) => (token, None),
        None => {
            let name = format!(
                "dev-admin-{}",
                crate::access::keys::Token::generate().expose()[7..15].to_lowercase()
            );
            let (_, token) = keys.create(NewKey {
                name,
                scopes: Scope::ALL.to_vec(),
                rate: None,
            })?;
            (token.expose().to_string(), Some(token.expose().to_string()))
        }
    };
    let url = format!("https://{bound}");
    let env = format!(
        "export COFFER_URL='{url}'\nexport COFFER_CA='{}'\nexport COFFER_API_KEY='{token}'\nexport COFFER_ADMIN_SOCKET='{}'\n",
        layout.ca().display(),
        layout.admin_socket().display()
    );
    write_file(&layout.env_file(), env.as_bytes(), 0o600)?;
    Ok(DevWelcome {
        url,
        ca: layout.ca(),
        env_file: layout.env_file(),
        admin_socket: layout.admin_socket(),
        new_key,
    })
}

impl std::fmt::Display for DevWelcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Coffer dev server (loopback only)")?;
        writeln!(f, "  URL:          {}", self.url)?;
        writeln!(f, "  CA:           {}", self.ca.display())?;
        match &self.new_key {
            Some(key) => writeln!(f, "  API key:      {key}   (shown once; kept in dev.env)")?,
            None => writeln!(f, "  API key:      in {} (reused)", self.env_file.display())?,
        }
        writeln!(f, "  admin socket: {}", self.admin_socket.display())?;
        writeln!(
            f,
            "  try:          source {} && curl --cacert \"$COFFER_CA\" -H \"Authorization: Bearer $COFFER_API_KEY\" \"$COFFER_URL/v2\"",
            self.env_file.display()
        )
    }
}
