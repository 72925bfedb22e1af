//! TLS configuration for the server: loading the certificate chain and key, swapping
//! them on reload (SIGHUP), and accepting optional client certificates for their
//! fingerprint. Driving one connection's session is `io::tls`'s job, not this one's.
//!
//! Crypto provider: `ring`. It builds with only a C compiler (this machine and CI have
//! gcc but no cmake or clang, which aws-lc-rs's build may need), compiles faster, and
//! its AES-GCM and ChaCha20-Poly1305 are assembly like aws-lc's; ringchat needs no
//! FIPS mode and no post-quantum key exchange yet, the two reasons to pick aws-lc-rs.

use anyhow::{anyhow, Context};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::UnbufferedServerConnection;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Where the server's certificate chain and private key live (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// The private key of the leaf certificate (`--tls-key`).
    pub key: PathBuf,
}

/// Hands each new TLS connection a session built from the current certificate.
///
/// One per server, shared by every shard. The configuration is behind a `RwLock`
/// that is read once per accepted TLS connection (an `Arc` clone, nothing else under
/// the lock) and written only by [`TlsAcceptor::reload`]; the message path never
/// touches it. A session keeps the configuration it started with, so a reload changes
/// new handshakes only and existing connections continue.
#[derive(Debug)]
pub struct TlsAcceptor {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// Loads the certificate and key, or says in one line what is wrong with them.
    pub fn load(files: TlsFiles) -> anyhow::Result<TlsAcceptor> {
        let config = server_config(&files)?;
        Ok(TlsAcceptor {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again. On success new handshakes use the new certificate; on
    /// failure the old one stays in use and the error says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = Arc::new(server_config(&self.files)?);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        Ok(())
    }

    /// A server-side session for a newly accepted connection.
    pub fn session(&self) -> Result<UnbufferedServerConnection, rustls::Error> {
        let config = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        UnbufferedServerConnection::new(config)
    }
}

/// The SHA-256 fingerprint of a DER certificate as lowercase hex, the form IRC servers
/// show in `276 RPL_WHOISCERTFP` and match in SASL EXTERNAL.
pub fn fingerprint(certificate: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, certificate)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Builds the rustls configuration: TLS 1.2 and 1.3, optional client certificates.
fn server_config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| {
        anyhow!(
            "cannot read TLS key {}: {}",
            files.key.display(),
            describe_pem_error(&error)
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyClientCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| {
            let why = match error {
                rustls::Error::InconsistentKeys(_) => {
                    "the key does not belong to the certificate".to_owned()
                }
                other => other.to_string(),
            };
            anyhow!(
                "TLS certificate {} and key {} do not go together: {why}",
                files.cert.display(),
                files.key.display()
            )
        })
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let describe = |error: rustls::pki_types::pem::Error| {
        anyhow!(
            "cannot read TLS certificate {}: {}",
            path.display(),
            describe_pem_error(&error)
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(describe)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(describe)?;
    if chain.is_empty() {
        return Err(anyhow!(
            "cannot read TLS certificate {}: no certificate in it",
            path.display()
        ));
    }
    Ok(chain)
}

fn describe_pem_error(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the right kind in it".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// Offers client authentication without requiring it, and accepts any certificate the
/// client proves it holds the key of: the certificate identifies the user by its
/// fingerprint (WHOIS, later SASL EXTERNAL), not by a chain to some authority.
/// The handshake signature is still checked, so a client cannot claim someone else's
/// certificate.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_lowercase_hex_sha256() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
