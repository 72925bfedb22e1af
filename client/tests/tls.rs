//! The client over TLS against a real ringchat with a TLS listener: `--tls-insecure`
//! with a test certificate, `--tls` verifying against an authority given through
//! SSL_CERT_FILE, and certificates the client does not accept (untrusted, self-signed,
//! expired, for another name) refused with exit 3 and a reason in words.
//! Certificates are made here with rcgen.

mod common;

use common::{Client, RawPeer, CLIENT};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A ringchat with a plaintext and a TLS listener whose certificate (for `localhost`)
/// is signed by a throwaway authority; its files are removed on drop.
struct TlsServer {
    server: Option<ringchat::Server>,
    dir: PathBuf,
}

/// The server's certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServerCert {
    /// For `localhost`, signed by the test authority (`ca.pem`).
    Signed,
    /// Signed by the test authority, but expired in 2001.
    Expired,
    /// Its own authority, as `openssl req -x509` makes by default.
    SelfSigned,
}

impl TlsServer {
    fn start() -> TlsServer {
        TlsServer::start_with(ServerCert::Signed)
    }

    fn start_with(kind: ServerCert) -> TlsServer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringchat-client-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let authority = authority("client test authority");
        std::fs::write(dir.join("ca.pem"), authority.pem()).expect("write the CA");
        std::fs::write(dir.join("other-ca.pem"), self::authority("stranger").pem())
            .expect("write another CA");
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        if kind == ServerCert::Expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = if kind == ServerCert::SelfSigned {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.self_signed(&key).expect("self-signed certificate")
        } else {
            params
                .signed_by(&key, &authority)
                .expect("server certificate")
        };
        std::fs::write(dir.join("server.crt"), cert.pem()).expect("write the certificate");
        std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write the key");

        let mut config = ringchat::Config::loopback();
        config.tls_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        config.tls = Some(ringchat::tls::TlsFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        });
        let server = ringchat::Server::start(config).expect("ringchat starts with TLS");
        TlsServer {
            server: Some(server),
            dir,
        }
    }

    fn server(&self) -> &ringchat::Server {
        self.server.as_ref().expect("running")
    }

    /// `localhost:PORT` of the TLS listener (the name the certificate is for).
    fn tls_addr(&self) -> String {
        format!("localhost:{}", self.server().tls_local_addrs()[0].port())
    }

    fn plain_addr(&self) -> String {
        self.server().local_addr().to_string()
    }

    /// The client over TLS, trusting the authorities in `ca_file`.
    fn client_trusting(&self, ca_file: &str, nick: &str) -> Client {
        self.client_at(&self.tls_addr(), ca_file, nick)
    }

    /// The client over TLS to `addr`, trusting the authorities in `ca_file`.
    fn client_at(&self, addr: &str, ca_file: &str, nick: &str) -> Client {
        let mut command = Command::new(CLIENT);
        command
            .arg(addr)
            .args(["--tls", "--nick", nick])
            .env("SSL_CERT_FILE", self.dir.join(ca_file))
            .env_remove("SSL_CERT_DIR");
        Client::spawn(nick, command)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("a CA")
}

#[test]
fn tls_insecure_chats_with_a_plaintext_user() {
    let server = TlsServer::start();
    let mut alice = Client::start(&server.tls_addr(), "alice", &["--tls-insecure"]);
    alice.expect("-- alice joined #lobby");
    let mut bob = RawPeer::register(&server.plain_addr(), "bob");
    bob.send("JOIN #lobby");
    bob.expect("366");
    alice.expect("-- bob joined #lobby");
    alice.send("hello over TLS");
    bob.expect("PRIVMSG #lobby :hello over TLS");
    bob.send("PRIVMSG #lobby :hello in plaintext");
    alice.expect("<bob> hello in plaintext");
    alice.send("/quit bye");
    bob.expect("QUIT :Quit: bye");
    let (code, stderr) = alice.wait_exit();
    assert_eq!(code, 0, "stderr: {stderr}");
}

#[test]
fn tls_verifies_the_server_against_trusted_authorities() {
    let server = TlsServer::start();
    let mut alice = server.client_trusting("ca.pem", "alice");
    alice.expect("-- alice joined #lobby");
    alice.send("/quit");
    let (code, stderr) = alice.wait_exit();
    assert_eq!(code, 0, "stderr: {stderr}");
}

#[test]
fn an_untrusted_certificate_is_refused_with_exit_code_3() {
    let server = TlsServer::start();
    let mut alice = server.client_trusting("other-ca.pem", "alice");
    let (code, stderr) = alice.wait_exit();
    assert_eq!(code, 3, "stderr: {stderr}");
    assert!(
        stderr.contains("cannot connect to localhost:"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("not signed by an authority this machine trusts"),
        "stderr: {stderr}"
    );
}

/// The refusal of a certificate: exit 3, one line, the reason in words, never
/// rustls' debug names.
fn refused(client: &mut Client) -> String {
    let (code, stderr) = client.wait_exit();
    assert_eq!(code, 3, "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("Other("), "debug text: {stderr}");
    assert!(!stderr.contains("Error"), "debug text: {stderr}");
    stderr
}

#[test]
fn a_self_signed_certificate_is_explained() {
    let server = TlsServer::start_with(ServerCert::SelfSigned);
    let mut alice = server.client_trusting("ca.pem", "alice");
    let stderr = refused(&mut alice);
    assert!(
        stderr.contains("the server's certificate is self-signed"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("--tls-insecure"), "stderr: {stderr}");
}

#[test]
fn an_expired_certificate_is_explained() {
    let server = TlsServer::start_with(ServerCert::Expired);
    let mut alice = server.client_trusting("ca.pem", "alice");
    let stderr = refused(&mut alice);
    assert!(
        stderr.contains("the server's certificate has expired"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_certificate_for_another_name_is_explained() {
    let server = TlsServer::start();
    let port = server.server().tls_local_addrs()[0].port();
    let mut alice = server.client_at(&format!("127.0.0.1:{port}"), "ca.pem", "alice");
    let stderr = refused(&mut alice);
    assert!(
        stderr.contains("the server's certificate is for localhost, not for 127.0.0.1"),
        "stderr: {stderr}"
    );
}
