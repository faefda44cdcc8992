//! TLS client settings for https providers: rustls (ring) with the webpki root
//! store, plus a provider's own PEM roots (`ca_file`) for private CAs.
//!
//! The config loader reads and checks a `ca_file` on the control plane
//! ([`read_ca_file`]); shards only turn the parsed certificates into a connector
//! ([`connector_with`]), so no shard touches the disk and a bad file never gets
//! past `switchyard check` or a reload.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, ServerName};

use super::pool::TlsTarget;
use super::stream::TlsConnector;

/// Largest `ca_file` read (a bundle of a few hundred roots fits comfortably).
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a `ca_file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("is larger than {MAX_CA_FILE_BYTES} bytes")]
    TooLarge,
    #[error("is not valid PEM: {0}")]
    Pem(String),
    #[error("holds no `BEGIN CERTIFICATE` block")]
    NoCertificates,
    #[error("certificate #{index} cannot be used as a trust root: {reason}")]
    Invalid { index: usize, reason: String },
}

/// The shard's default rustls client config: webpki roots only.
pub fn connector() -> TlsConnector {
    connector_with(&[])
}

/// A client config trusting the webpki roots plus `extra` (already checked by
/// [`parse_ca_pem`]; one that does not parse is skipped, never fatal here).
pub fn connector_with(extra: &[CertificateDer<'static>]) -> TlsConnector {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(extra.iter().cloned());
    // `ring` is the only crypto provider compiled in, so the builder cannot be
    // ambiguous about which one to use.
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Reads the PEM roots of a provider's `ca_file` (control plane only: it blocks).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(CaFileError::TooLarge);
    }
    parse_ca_pem(&bytes)
}

/// The certificates of a PEM bundle, each checked to be a usable trust anchor.
/// Other PEM sections (keys, CRLs) are ignored; at least one certificate is needed.
pub fn parse_ca_pem(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| CaFileError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CaFileError::NoCertificates);
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| CaFileError::Invalid {
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// The TLS target for `host` (its SNI name), or `None` when it is not a valid name.
pub fn target(connector: &TlsConnector, host: &str) -> Option<TlsTarget> {
    let server_name = ServerName::try_from(host.to_string()).ok()?;
    Some(TlsTarget {
        connector: connector.clone(),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (CN "switchyard test CA", P-256), PEM.
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIUTui8iG4bItDTG8BtjvbwGyFFIKUwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSc3dpdGNoeWFyZCB0ZXN0IENBMCAXDTI2MTEyNTE5MjEyMloY
DzIxMjYxMTAxMTkyMTIyWjAdMRswGQYDVQQDDBJzd2l0Y2h5YXJkIHRlc3QgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT9GeLYXhLEGQJ1BGfswgScILI1mKZA
Wg8u7mGBjulJyJN+jJQdSh6PdTw0MqaVIVsiT3zIDKeV3b8XycQUMjvIo1MwUTAd
BgNVHQ4EFgQUGo7Z17MzII0DnfaqkRWZ18LSx78wHwYDVR0jBBgwFoAUGo7Z17Mz
II0DnfaqkRWZ18LSx78wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiEAn6yYGMDjR2hd6ZBw60yk3c4lpaCvh00qBUQT7O0KnuMCIDYW2kYJdTsN1sjV
fzquN5jl7q0G76JEkKIZCc201hls
-----END CERTIFICATE-----
";

    #[test]
    fn no_certificate_is_an_error() {
        assert!(matches!(
            parse_ca_pem(b"just text\n"),
            Err(CaFileError::NoCertificates)
        ));
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            parse_ca_pem(key_only),
            Err(CaFileError::NoCertificates)
        ));
    }

    #[test]
    fn garbage_inside_a_certificate_block_is_an_error() {
        let bad = b"-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n";
        assert!(parse_ca_pem(bad).is_err());
        let not_der = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_ca_pem(not_der),
            Err(CaFileError::Invalid { index: 1, .. })
        ));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let missing = Path::new("/nonexistent/switchyard-test/ca.pem");
        assert!(matches!(read_ca_file(missing), Err(CaFileError::Read(_))));
    }

    #[test]
    fn a_real_ca_parses_and_builds_a_connector() {
        let certs = parse_ca_pem(CA_PEM.as_bytes()).expect("CA parses");
        assert_eq!(certs.len(), 1);
        let connector = connector_with(&certs);
        assert!(target(&connector, "localhost").is_some());
    }
}
