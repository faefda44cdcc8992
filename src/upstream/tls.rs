//! TLS client settings for https providers: rustls (ring) with the webpki root store.

use std::sync::Arc;

use monoio_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use super::pool::TlsTarget;

/// One rustls client config per shard, shared by all its https pools.
pub fn connector() -> TlsConnector {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // `ring` is the only crypto provider compiled in, so the builder cannot be
    // ambiguous about which one to use.
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// The TLS target for `host` (its SNI name), or `None` when it is not a valid name.
pub fn target(connector: &TlsConnector, host: &str) -> Option<TlsTarget> {
    let server_name = ServerName::try_from(host.to_string()).ok()?;
    Some(TlsTarget {
        connector: connector.clone(),
        server_name,
    })
}
