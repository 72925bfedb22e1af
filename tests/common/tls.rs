//! TLS for the test harness: a throwaway certificate authority made with rcgen, server
//! certificates for `localhost` written as PEM files the server reads, client
//! certificates, and rustls client configurations that trust the authority (so the
//! tests verify the server's certificate as a real client would).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use ringchat::tls::TlsFiles;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A certificate authority and a directory for the files it issues; the directory is
/// removed when this is dropped.
pub struct TestPki {
    dir: PathBuf,
    authority: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and its key, with the fingerprint the server should show.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of the certificate, lowercase hex.
    pub fingerprint: String,
}

impl TestPki {
    /// A fresh authority, and a server certificate in [`TestPki::server_files`].
    pub fn new() -> TestPki {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringchat-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the test certificate directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: a leaf named like its issuer looks self-signed to OpenSSL.
        params
            .distinguished_name
            .push(DnType::CommonName, "ringchat test authority");
        let authority = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("a self-signed CA");
        let pki = TestPki { dir, authority };
        pki.issue_server_certificate();
        pki
    }

    /// Where the server's certificate and key are.
    pub fn server_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join("server.crt"),
            key: self.dir.join("server.key"),
        }
    }

    /// Issues a new `localhost` certificate with a new key over the server's files
    /// (as a renewal would); returns the new certificate.
    pub fn issue_server_certificate(&self) -> CertificateDer<'static> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &self.authority)
            .expect("a server certificate");
        let files = self.server_files();
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        cert.der().clone()
    }

    /// A client configuration that trusts this authority and presents no certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(self.roots())
                .with_no_client_auth(),
        )
    }

    /// A client configuration limited to TLS 1.2.
    pub fn client_config_tls12(&self) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .expect("protocol versions")
                .with_root_certificates(self.roots())
                .with_no_client_auth(),
        )
    }

    /// A client configuration that presents `identity`.
    pub fn client_config_with(&self, identity: &ClientIdentity) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(self.roots())
                .with_client_auth_cert(
                    identity.chain.clone(),
                    PrivateKeyDer::Pkcs8(identity.key.clone_key()),
                )
                .expect("a client certificate"),
        )
    }

    /// A self-signed client certificate, as IRC users make for CertFP.
    pub fn client_identity(&self) -> ClientIdentity {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["alice".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("a client certificate");
        ClientIdentity {
            fingerprint: ringchat::tls::fingerprint(cert.der()),
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// The directory the files live in (for tests that write broken files there).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The authority's certificate as PEM (for outside clients such as openssl).
    pub fn authority_pem(&self) -> String {
        self.authority.pem()
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.authority.der().clone())
            .expect("the CA is a valid trust anchor");
        roots
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends SIGHUP to `server` and waits until a new TLS handshake at `tls_addr`
/// presents `renewed`: the signal is handled asynchronously, and until it has been,
/// handshakes must still present `first`.
pub fn sighup_until_renewed(
    server: &std::process::Child,
    tls_addr: std::net::SocketAddr,
    client_config: Arc<ClientConfig>,
    first: &CertificateDer<'static>,
    renewed: &CertificateDer<'static>,
) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGHUP);
    }
    let deadline = std::time::Instant::now() + super::HANG;
    loop {
        let mut probe = super::Client::connect_tls(tls_addr, client_config.clone());
        let presented = probe.server_certificates().remove(0);
        if presented == *renewed {
            return;
        }
        assert_eq!(
            presented, *first,
            "a certificate that is neither old nor new"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP never renewed the certificate"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
