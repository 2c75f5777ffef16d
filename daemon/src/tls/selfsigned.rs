//! Whether a certificate is self-issued (its issuer name is its subject name), read
//! straight from the DER: cofferd warns at every load of such a certificate, because
//! clients can only trust it by pinning it.

/// One DER element: (tag, content, rest of the input).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;

/// True when the certificate's issuer equals its subject. Unparseable input is not
/// self-issued (rustls has already refused anything that is not a certificate).
pub fn is_self_issued(der: &[u8]) -> bool {
    let names = || -> Option<(&[u8], &[u8])> {
        let (SEQUENCE, cert, _) = element(der)? else {
            return None;
        };
        let (SEQUENCE, tbs, _) = element(cert)? else {
            return None;
        };
        let mut rest = tbs;
        let (tag, _, after) = element(rest)?;
        if tag == VERSION {
            rest = after;
        }
        let (_serial, _, rest) = element(rest)?;
        let (_signature, _, rest) = element(rest)?;
        let (_, issuer, rest) = element(rest)?;
        let (_validity, _, rest) = element(rest)?;
        let (_, subject, _) = element(rest)?;
        Some((issuer, subject))
    };
    matches!(names(), Some((issuer, subject)) if issuer == subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    #[test]
    fn self_signed_is_detected_and_ca_signed_is_not() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["branch-01".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "branch-01");
        let own = params.clone().self_signed(&key).unwrap();
        assert!(is_self_issued(own.der()));

        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "Bank CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        assert!(!is_self_issued(leaf.der()));
        assert!(!is_self_issued(b"\x30\x82\xff"));
        assert!(!is_self_issued(&[]));
    }

    #[test]
    fn a_host_certificate_loads_as_a_server_certificate_and_is_seen_as_self_signed() {
        use rustls_pki_types::pem::PemObject as _;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("server.pem"), dir.path().join("key.pem"));
        coffer_hostcert::generate(&cert, &key, &[], false).unwrap();
        let pem = std::fs::read(&cert).unwrap();
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        assert!(is_self_issued(&der));
        let settings = crate::config::TlsConfig {
            cert,
            key,
            client_auth: crate::config::ClientAuth::Off,
            client_ca: None,
        };
        super::super::server_config(&settings).unwrap();
    }
}
