//! The connection's byte stream, plain TCP or TLS over TCP, split into a read half for
//! the reader thread and a write half for the [`Link`](crate::session::Link).
//!
//! TLS with two threads: rustls' session is one object, so both halves share it behind
//! a mutex, each with its own clone of the socket. The reader never holds the lock
//! while it blocks on the socket (it reads ciphertext unlocked, then feeds it in), so
//! a line typed while nothing arrives is never held up. Both halves write ciphertext
//! only under the lock, so records never interleave.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use crate::cli::TlsMode;

/// Ciphertext read from the socket at a time: small enough that the plaintext it
/// decrypts to always fits rustls' 16 KiB receive buffer.
const CIPHERTEXT_CHUNK: usize = 8 << 10;

/// The read side of a connection.
pub enum ReadHalf {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS: a socket clone and the shared session.
    Tls {
        socket: TcpStream,
        session: Arc<Mutex<ClientConnection>>,
        ciphertext: Box<[u8]>,
    },
}

/// The write side of a connection.
pub enum WriteHalf {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS: a socket clone and the shared session.
    Tls {
        socket: TcpStream,
        session: Arc<Mutex<ClientConnection>>,
    },
}

/// Splits a plain TCP connection.
pub fn plain(socket: TcpStream) -> io::Result<(ReadHalf, WriteHalf)> {
    Ok((
        ReadHalf::Plain(socket.try_clone()?),
        WriteHalf::Plain(socket),
    ))
}

/// Completes a TLS handshake on `socket` for server `host` (within `timeout`), then
/// splits the connection. A certificate the client does not accept is an error that
/// says why (unknown issuer, wrong name, expired).
pub fn tls(
    mut socket: TcpStream,
    host: &str,
    mode: TlsMode,
    timeout: Duration,
) -> io::Result<(ReadHalf, WriteHalf)> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| io::Error::other(format!("{host:?} is not a valid TLS server name")))?;
    let mut session =
        ClientConnection::new(Arc::new(client_config(mode)?), name).map_err(io::Error::other)?;
    socket.set_read_timeout(Some(timeout))?;
    while session.is_handshaking() {
        session
            .complete_io(&mut socket)
            .map_err(|error| match error.kind() {
                io::ErrorKind::WouldBlock => io::Error::from(io::ErrorKind::TimedOut),
                _ => io::Error::new(
                    error.kind(),
                    format!(
                        "TLS handshake failed: {}",
                        describe_handshake_error(&error, host)
                    ),
                ),
            })?;
    }
    socket.set_read_timeout(None)?;
    let session = Arc::new(Mutex::new(session));
    Ok((
        ReadHalf::Tls {
            socket: socket.try_clone()?,
            session: Arc::clone(&session),
            ciphertext: vec![0; CIPHERTEXT_CHUNK].into_boxed_slice(),
        },
        WriteHalf::Tls { socket, session },
    ))
}

/// Why a handshake failed, in words a user can act on: the certificate's problem and
/// what to do about it, instead of rustls' debug names (`CaUsedAsEndEntity`).
fn describe_handshake_error(error: &io::Error, host: &str) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return error.to_string();
    };
    describe_tls_error(tls, host)
}

/// See [`describe_handshake_error`].
fn describe_tls_error(error: &rustls::Error, host: &str) -> String {
    use rustls::{CertificateError, Error};
    const UNTRUSTED_HINT: &str = "for a test server, --tls-insecure accepts it; \
        or point SSL_CERT_FILE at the authority that signed it";
    let Error::InvalidCertificate(cert) = error else {
        return match error {
            Error::InvalidMessage(_) | Error::InappropriateHandshakeMessage { .. } => {
                "the server did not answer in TLS (a plain-text port? TLS is usually 6697)"
                    .to_string()
            }
            Error::AlertReceived(alert) => format!("the server refused the handshake ({alert:?})"),
            other => other.to_string(),
        };
    };
    match cert {
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not signed by an authority this machine trusts \
             (self-signed or a private authority): {UNTRUSTED_HINT}"
        ),
        CertificateError::Other(other)
            if other
                .0
                .downcast_ref::<webpki::Error>()
                .is_some_and(|e| matches!(e, webpki::Error::CaUsedAsEndEntity)) =>
        {
            format!(
                "the server's certificate is self-signed (an authority certificate used as \
                 the server's own): {UNTRUSTED_HINT}"
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (is this machine's clock right?)".to_string()
        }
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the server's certificate is for {}, not for {host}",
            if presented.is_empty() {
                "no name".to_string()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        CertificateError::NotValidForName => {
            format!("the server's certificate is not for {host}")
        }
        CertificateError::Revoked => "the server's certificate has been revoked".to_string(),
        other => format!("the server's certificate was refused: {other}"),
    }
}

/// A name as the certificate holds it, without webpki's wrapping: rustls presents
/// them as `DnsName("localhost")` or `IpAddress(..)`.
fn plain_name(presented: &str) -> &str {
    ["DnsName(", "IpAddress(", "UriName("]
        .iter()
        .find_map(|kind| presented.strip_prefix(kind)?.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

impl ReadHalf {
    /// Bounds how long one read may block (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            ReadHalf::Plain(socket) | ReadHalf::Tls { socket, .. } => {
                socket.set_read_timeout(timeout)
            }
        }
    }
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (socket, session, ciphertext) = match self {
            ReadHalf::Plain(socket) => return socket.read(buf),
            ReadHalf::Tls {
                socket,
                session,
                ciphertext,
            } => (socket, session, ciphertext),
        };
        loop {
            match lock(session).reader().read(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // Ok(0) after the server's close_notify; an unexpected EOF is an error.
                done => return done,
            }
            // Blocks without the lock, so the writer can send meanwhile.
            let n = socket.read(ciphertext)?;
            let mut session = lock(session);
            let mut fresh = &ciphertext[..n];
            loop {
                // With `fresh` empty this tells rustls the TCP stream ended.
                session.read_tls(&mut fresh)?;
                session.process_new_packets().map_err(io::Error::other)?;
                if fresh.is_empty() {
                    break;
                }
            }
            // Alerts and key-update answers go out now, not with the next typed line.
            while session.wants_write() {
                session.write_tls(&mut &*socket)?;
            }
        }
    }
}

impl Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Plain(socket) => socket.write(buf),
            WriteHalf::Tls { socket, session } => {
                let mut session = lock(session);
                let taken = session.writer().write(buf)?;
                while session.wants_write() {
                    session.write_tls(&mut &*socket)?;
                }
                Ok(taken)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(socket) => socket.flush(),
            WriteHalf::Tls { .. } => Ok(()),
        }
    }
}

fn lock(session: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

fn client_config(mode: TlsMode) -> io::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let config = match mode {
        TlsMode::Verified => builder.with_root_certificates(system_roots()?),
        TlsMode::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer { provider })),
    };
    Ok(config.with_no_client_auth())
}

/// The system's trusted authorities (honouring SSL_CERT_FILE and SSL_CERT_DIR).
fn system_roots() -> io::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or("none found".to_owned(), ToString::to_string);
        return Err(io::Error::other(format!(
            "no trusted certificate authorities to verify the server with ({why}); \
             use --tls-insecure for a self-signed server"
        )));
    }
    Ok(roots)
}

/// `--tls-insecure`: any certificate is accepted, but the handshake signature is still
/// checked against it, so the session is at least bound to the presented key.
#[derive(Debug)]
struct AcceptAnyServer {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{CertificateError, Error};

    #[test]
    fn certificate_errors_are_sentences() {
        let says = |error: Error| describe_tls_error(&error, "irc.example.org");
        assert!(
            says(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                .starts_with("the server's certificate is not signed by an authority")
        );
        let self_signed = CertificateError::Other(rustls::OtherError(Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        )));
        let text = says(Error::InvalidCertificate(self_signed));
        assert!(
            text.starts_with("the server's certificate is self-signed"),
            "{text}"
        );
        assert!(text.contains("--tls-insecure"), "{text}");
        assert_eq!(
            says(Error::InvalidCertificate(CertificateError::Expired)),
            "the server's certificate has expired"
        );
        let wrong_name = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("irc.example.org").expect("a name"),
            presented: vec!["DnsName(\"other.example.net\")".into()],
        };
        assert_eq!(
            says(Error::InvalidCertificate(wrong_name)),
            "the server's certificate is for other.example.net, not for irc.example.org"
        );
    }
}
