//! The one place that configures rustls. TLS 1.3 and 1.2 only, AEAD cipher suites with
//! forward secrecy only, ALPN `h2` then `http/1.1`, and client certificates per
//! `tls.client_auth`. [`ReloadableTls`] swaps the whole server configuration on SIGHUP:
//! connections already open keep the session they have; new ones get the new files.

mod pem;
pub mod selfsigned;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::{CryptoProvider, ring};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};

pub use pem::{load_certs, load_key};

/// Why TLS could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path} is not valid PEM: {detail}")]
    BadPem { path: PathBuf, detail: String },
    #[error("client CA bundle {path} is unusable: {detail}")]
    BadClientCa { path: PathBuf, detail: String },
    #[error("certificate and key do not make a usable TLS identity: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider with our explicit choice of suites (ring's AEAD suites, ECDHE only).
fn provider() -> Arc<CryptoProvider> {
    let base = ring::default_provider();
    let cipher_suites = vec![
        ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(CryptoProvider {
        cipher_suites,
        ..base
    })
}

/// Builds a rustls server configuration from the files named in `tls`.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    if certs
        .first()
        .is_some_and(|leaf| selfsigned::is_self_issued(leaf))
    {
        tracing::warn!(
            cert = %tls.cert.display(),
            "SELF-SIGNED CERTIFICATE: clients can trust it only by pinning this file; \
             replace it with a certificate from your CA (then SIGHUP or restart)"
        );
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (tls.client_auth, &tls.client_ca) {
        (ClientAuth::Off, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca_path)) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca_path)? {
                roots.add(cert).map_err(|e| TlsError::BadClientCa {
                    path: ca_path.clone(),
                    detail: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadClientCa {
                path: ca_path.clone(),
                detail: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS acceptor whose configuration can be replaced while the server runs.
#[derive(Debug)]
pub struct ReloadableTls {
    settings: TlsConfig,
    current: ArcSwap<ServerConfig>,
}

impl ReloadableTls {
    pub fn new(settings: TlsConfig) -> Result<Self, TlsError> {
        let config = server_config(&settings)?;
        Ok(Self {
            settings,
            current: ArcSwap::new(config),
        })
    }

    /// Re-reads certificate, key and client CA. On error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        self.current.store(config);
        Ok(())
    }

    /// An acceptor for the next connection, with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}
