//! `cofferctl tls host-cert`: a self-signed certificate for this host, so that a fresh
//! install can start on its loopback listener before the bank's CA has issued one. The
//! names are the host name, `localhost`, `127.0.0.1` and `::1`, plus any given. The key
//! is written with mode 0600, the certificate 0644; existing files are never replaced
//! unless asked. cofferd warns at each start while it serves a self-signed certificate.

pub mod atomic_write;

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, KeyPair};

/// Why no host certificate was written.
#[derive(Debug, thiserror::Error)]
pub enum HostCertError {
    #[error("{0} exists; keep it, or pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// What was written.
#[derive(Debug)]
pub struct HostCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub names: Vec<String>,
}

/// The kernel's host name, if it has a usable one.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "(none)").then(|| name.to_string())
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), HostCertError> {
    crate::atomic_write::write_atomically(path, contents, mode).map_err(|source| {
        HostCertError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes `cert` and `key` (refusing to replace either unless `force`).
pub fn generate(
    cert: &Path,
    key: &Path,
    extra_names: &[String],
    force: bool,
) -> Result<HostCert, HostCertError> {
    if !force {
        for path in [cert, key] {
            if path.exists() {
                return Err(HostCertError::Exists(path.to_path_buf()));
            }
        }
    }
    let mut names: Vec<String> = host_name().into_iter().collect();
    for name in ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_string)
        .chain(extra_names.iter().cloned())
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let key_pair = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.clone())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    params.distinguished_name.push(
        DnType::OrganizationName,
        "Coffer self-signed host certificate",
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(825);
    let certificate = params.self_signed(&key_pair)?;
    for dir in [cert.parent(), key.parent()].into_iter().flatten() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|source| HostCertError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }
    write_new(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, certificate.pem().as_bytes(), 0o644)?;
    Ok(HostCert {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject as _;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn writes_a_self_signed_pair_with_private_key_mode_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("tls/server.pem"),
            dir.path().join("tls/server-key.pem"),
        );
        let made = generate(&cert, &key, &["branch-7.bank.example".into()], false).unwrap();
        assert!(made.names.iter().any(|n| n == "localhost"));
        assert!(made.names.iter().any(|n| n == "branch-7.bank.example"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        let pem = std::fs::read(&cert).unwrap();
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        // Issued by itself (cofferd's TLS tests load such a pair as a server certificate
        // and recognise it as self-signed).
        assert!(!der.is_empty());
        let key_pem = std::fs::read_to_string(&key).unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));

        let before = std::fs::read(&key).unwrap();
        assert!(matches!(
            generate(&cert, &key, &[], false),
            Err(HostCertError::Exists(_))
        ));
        assert_eq!(std::fs::read(&key).unwrap(), before);
        generate(&cert, &key, &[], true).unwrap();
        assert_ne!(std::fs::read(&key).unwrap(), before);
    }
}
