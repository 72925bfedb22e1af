//! TLS for `--tls`: the rustls client configuration (which certificates to trust) and
//! the name to verify the server as.
//!
//! Trust, in order: `--tls-insecure` (any certificate, for a self-signed test server;
//! the handshake's signatures are still checked, only the chain is not), `--tls-ca
//! FILE` (the PEM certificates in it), else the system's store
//! ([`SYSTEM_CA_BUNDLE`]). Owns: building the `TlsConnector` once per run. Must not:
//! do I/O per connection beyond the handshake tokio-rustls does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::cli::CommonArgs;

/// Debian's and Ubuntu's bundle of the system's trusted CA certificates.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What every client of a run needs to open TLS: cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct TlsClient {
    pub connector: TlsConnector,
    /// `--tls-server-name`: the name every server's certificate must carry (else each
    /// server's IP, see [`TlsClient::server_name`]).
    fixed_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// The TLS settings the flags ask for; None without `--tls` (or its companions).
    pub fn from_args(common: &CommonArgs) -> Result<Option<TlsClient>> {
        if !common.tls_wanted() {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS: no protocol version available")?;
        let config = if common.tls_insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
                .with_no_client_auth()
        } else {
            let path = common
                .tls_ca
                .as_deref()
                .unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
            builder
                .with_root_certificates(trusted_roots(path)?)
                .with_no_client_auth()
        };
        Ok(Some(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            fixed_name: common
                .tls_server_name
                .as_deref()
                .map(fixed_server_name)
                .transpose()?,
        }))
    }

    /// The name the certificate of the server at `addr` must carry: `--tls-server-name`,
    /// else the address's IP (a certificate for an IP carries it as an IP address SAN;
    /// each node of a cluster has its own).
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        self.fixed_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }
}

/// The certificates of a PEM file, as trust roots.
fn trusted_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("TLS: cannot read CA certificates from {}", path.display()))?;
    for cert in certs {
        let cert =
            cert.with_context(|| format!("TLS: bad PEM certificate in {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("TLS: unusable CA certificate in {}", path.display()))?;
    }
    if roots.is_empty() {
        bail!("TLS: no certificate in {} (--tls-ca)", path.display());
    }
    Ok(roots)
}

/// `--tls-server-name`, checked.
fn fixed_server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_string())
        .with_context(|| format!("TLS: {name:?} is not a valid server name"))
}

/// `--tls-insecure`: accepts any certificate chain, but still checks that the server
/// holds the key of the certificate it sent (the handshake signatures), so the
/// connection is a real TLS session, only unauthenticated.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
