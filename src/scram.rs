//! SASL SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), the server's side, pure: the
//! keys kept for an account instead of its password ([`ScramKeys`], made when a
//! password is set, off the shard threads: PBKDF2 is the slow part), the messages of
//! the exchange (parsing the client's, writing the server's) and the proof check,
//! which is a few hashes and cheap enough for a shard's thread.
//!
//! An exchange: client-first `n,,n=<user>,r=<client nonce>`; server-first
//! `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`; client-final
//! `c=<base64 of the GS2 header>,r=<both nonces>,p=<proof>`; server-final
//! `v=<server signature>`. Channel binding is not offered (`n`; `y` is accepted as the
//! RFC allows, `p=` is refused).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::OnceLock;

/// PBKDF2 iterations for new keys (RFC 7677's minimum).
pub const ITERATIONS: u32 = 4096;

/// Bytes of a new salt.
pub const SALT_LEN: usize = 16;

/// Bytes of the server's nonce (before base64).
const NONCE_LEN: usize = 18;

/// What an account keeps for SCRAM-SHA-256 (RFC 5802 section 3): enough to check a
/// proof and sign the server's answer, not enough to log in elsewhere or to learn
/// the password without a dictionary attack of [`ITERATIONS`] PBKDF2 rounds a guess.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    /// The salt, random per password.
    pub salt: Box<[u8]>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `SHA-256(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramKeys {
    /// Keys for `password` with a fresh random salt and [`ITERATIONS`] (slow: a
    /// worker's job). `None` only if the system's random source fails.
    pub fn new(password: &[u8]) -> Option<ScramKeys> {
        let mut salt = [0u8; SALT_LEN];
        SystemRandom::new().fill(&mut salt).ok()?;
        Some(ScramKeys::derive(password, &salt, ITERATIONS))
    }

    /// Keys for `password` with this salt and iteration count (at least 1).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
            salt,
            password,
            &mut salted,
        );
        let salted = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        ScramKeys {
            salt: salt.into(),
            iterations,
            stored_key: sha256(client_key.as_ref()),
            server_key: array(hmac::sign(&salted, b"Server Key").as_ref()),
        }
    }
}

/// Why a client's SCRAM message was refused (904 either way; the text is for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScramRefusal {
    /// Not base64, not UTF-8, or not the RFC's grammar.
    #[error("malformed SCRAM message")]
    Malformed,
    /// The client asked for channel binding (`p=`), which is not offered.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// An authorization identity other than the user (acting as someone else).
    #[error("authorization identity differs from the user")]
    OtherIdentity,
    /// The client-final message's GS2 header or nonce is not the exchange's.
    #[error("the client-final message does not continue the exchange")]
    WrongExchange,
}

/// The client-first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user (the account), `=2C` and `=3D` decoded.
    pub user: String,
    /// The GS2 header as sent (`n,,` or `n,a=<user>,`): the client-final's `c=`
    /// must be its base64.
    pub gs2_header: String,
    /// The message without the GS2 header: part of the AuthMessage.
    pub bare: String,
    /// The client's nonce.
    pub nonce: String,
}

/// Parses a client-first message (the base64 the client sent).
pub fn parse_client_first(base64: &[u8]) -> Result<ClientFirst, ScramRefusal> {
    let message = decode_text(base64)?;
    let mut parts = message.splitn(3, ',');
    let (Some(binding), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramRefusal::Malformed);
    };
    match binding {
        "n" | "y" => {}
        _ if binding.starts_with("p=") => return Err(ScramRefusal::ChannelBinding),
        _ => return Err(ScramRefusal::Malformed),
    }
    let gs2_header = format!("{binding},{authzid},");
    let authzid = match authzid {
        "" => None,
        _ => Some(decode_name(
            authzid.strip_prefix("a=").ok_or(ScramRefusal::Malformed)?,
        )?),
    };
    // `[reserved-mext ","] username "," nonce ["," extensions]`: a leading `m=`
    // names a mandatory extension, none of which is known.
    let mut attributes = bare.split(',');
    let user = attributes
        .next()
        .and_then(|user| user.strip_prefix("n="))
        .ok_or(ScramRefusal::Malformed)
        .and_then(decode_name)?;
    let nonce = attributes
        .next()
        .and_then(|nonce| nonce.strip_prefix("r="))
        .filter(|nonce| is_nonce(nonce))
        .ok_or(ScramRefusal::Malformed)?;
    if user.is_empty() {
        return Err(ScramRefusal::Malformed);
    }
    if authzid.is_some_and(|authzid| !authzid.eq_ignore_ascii_case(&user)) {
        return Err(ScramRefusal::OtherIdentity);
    }
    Ok(ClientFirst {
        gs2_header,
        nonce: nonce.to_owned(),
        bare: bare.to_owned(),
        user,
    })
}

/// The server's side of one exchange after its first message: what the client-final
/// message is checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The user as the client named it.
    pub user: String,
    /// The keys to check the proof with; `None` for a user without them (no such
    /// account, or one registered before SCRAM keys were kept): the exchange goes on
    /// with a made-up salt and fails at the proof, so it tells nobody which.
    pub keys: Option<ScramKeys>,
    /// The client's GS2 header.
    pub gs2_header: String,
    /// Both nonces.
    pub nonce: String,
    /// client-first-bare "," server-first: the AuthMessage's first part.
    pub auth_message_start: String,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("user", &self.user)
            .field("known", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

impl Challenge {
    /// Starts the server's side: `keys` of the user's account if it has them. Returns
    /// the challenge and the server-first message (not yet base64).
    pub fn new(first: ClientFirst, keys: Option<ScramKeys>) -> Option<(Challenge, String)> {
        let mut server_nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut server_nonce).ok()?;
        let server_nonce = STANDARD.encode(server_nonce);
        Some(Challenge::with_server_nonce(first, keys, &server_nonce))
    }

    /// [`Challenge::new`] with a given server nonce (the RFC's test vector).
    pub fn with_server_nonce(
        first: ClientFirst,
        keys: Option<ScramKeys>,
        server_nonce: &str,
    ) -> (Challenge, String) {
        let nonce = format!("{}{server_nonce}", first.nonce);
        let (salt, iterations) = match &keys {
            Some(keys) => (STANDARD.encode(&keys.salt), keys.iterations),
            None => (STANDARD.encode(fake_salt(&first.user)), ITERATIONS),
        };
        let server_first = format!("r={nonce},s={salt},i={iterations}");
        let challenge = Challenge {
            auth_message_start: format!("{},{server_first}", first.bare),
            user: first.user,
            keys,
            gs2_header: first.gs2_header,
            nonce,
        };
        (challenge, server_first)
    }

    /// Checks the client-final message (the base64 the client sent). `Ok(Some(..))`
    /// with the server-final message (not yet base64) for the right proof,
    /// `Ok(None)` for a wrong one (or a user without keys), `Err` for a message that
    /// is not a client-final of this exchange.
    pub fn finish(&self, base64: &[u8]) -> Result<Option<String>, ScramRefusal> {
        let message = decode_text(base64)?;
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or(ScramRefusal::Malformed)?;
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramRefusal::Malformed)?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|binding| binding.strip_prefix("c="))
            .ok_or(ScramRefusal::Malformed)?;
        let nonce = attributes
            .next()
            .and_then(|nonce| nonce.strip_prefix("r="))
            .ok_or(ScramRefusal::Malformed)?;
        if binding != STANDARD.encode(&self.gs2_header) || nonce != self.nonce {
            return Err(ScramRefusal::WrongExchange);
        }
        if proof.len() != 32 {
            return Err(ScramRefusal::Malformed);
        }
        let Some(keys) = &self.keys else {
            return Ok(None);
        };
        let auth_message = format!("{},{without_proof}", self.auth_message_start);
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &keys.stored_key),
            auth_message.as_bytes(),
        );
        let client_key: Vec<u8> = proof
            .iter()
            .zip(signature.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        if !same(&sha256(&client_key), &keys.stored_key) {
            return Ok(None);
        }
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &keys.server_key),
            auth_message.as_bytes(),
        );
        Ok(Some(format!("v={}", STANDARD.encode(server_signature))))
    }
}

/// A salt for a user without keys: the same for the same name for as long as the
/// process runs (asking twice does not tell a made-up salt from a real one), keyed
/// with a random secret so nobody can compute it.
fn fake_salt(user: &str) -> [u8; SALT_LEN] {
    let tag = hmac::sign(process_key(), user.to_ascii_lowercase().as_bytes());
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&tag.as_ref()[..SALT_LEN]);
    salt
}

/// This process's random HMAC key (made salts, constant-time comparisons).
fn process_key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        if SystemRandom::new().fill(&mut bytes).is_err() {
            // Without a random source, the keys of this process's TLS and nonces fail
            // too; a key from the clock and address still keeps made salts unguessable
            // to a remote client.
            let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &bytes);
            bytes = sha256(seed.as_bytes());
        }
        hmac::Key::new(hmac::HMAC_SHA256, &bytes)
    })
}

/// Whether `a` equals `b`, in time that does not depend on where or whether they
/// differ (both go through an HMAC keyed with this process's secret, and the tags are
/// compared in constant time): for proofs here and shared secrets elsewhere (WEBIRC
/// passwords).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let tag = hmac::sign(process_key(), a);
    hmac::verify(process_key(), b, tag.as_ref()).is_ok()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    array(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn array(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[..32]);
    out
}

fn decode_text(base64: &[u8]) -> Result<String, ScramRefusal> {
    let bytes = STANDARD
        .decode(base64)
        .map_err(|_| ScramRefusal::Malformed)?;
    String::from_utf8(bytes).map_err(|_| ScramRefusal::Malformed)
}

/// A `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_name(name: &str) -> Result<String, ScramRefusal> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("=2C") {
            out.push(',');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("=3D") {
            out.push('=');
            rest = after;
        } else {
            return Err(ScramRefusal::Malformed);
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 5802's `printable`: ASCII 0x21-0x7E except `,`.
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        STANDARD.encode(text).into_bytes()
    }

    /// RFC 7677 section 3.
    #[test]
    fn the_rfc_7677_exchange_verifies_and_signs_as_the_rfc_says() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
        let keys = ScramKeys::derive(b"pencil", &salt, 4096);
        let first = parse_client_first(&b64("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
            .expect("a client-first message");
        assert_eq!(first.user, "user");
        assert_eq!(first.gs2_header, "n,,");
        let (challenge, server_first) =
            Challenge::with_server_nonce(first, Some(keys), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            challenge.finish(&b64(client_final)),
            Ok(Some(
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_owned()
            ))
        );
        let wrong = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVM=";
        assert_eq!(challenge.finish(&b64(wrong)), Ok(None));
        let other_nonce =
            "c=biws,r=rOprNGfwEbeRWgbNEkqOxx,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            challenge.finish(&b64(other_nonce)),
            Err(ScramRefusal::WrongExchange)
        );
    }

    #[test]
    fn client_first_messages_are_checked() {
        let parse = |text: &str| parse_client_first(&b64(text));
        assert_eq!(
            parse("p=tls-unique,,n=user,r=abc"),
            Err(ScramRefusal::ChannelBinding)
        );
        assert_eq!(
            parse("n,a=other,n=user,r=abc"),
            Err(ScramRefusal::OtherIdentity)
        );
        let first = parse("n,a=User,n=user,r=abc").expect("the user as authzid");
        assert_eq!(first.gs2_header, "n,a=User,");
        assert_eq!(first.bare, "n=user,r=abc");
        assert_eq!(
            parse("y,,n=a=2Cb=3Dc,r=abc").map(|f| f.user),
            Ok("a,b=c".into())
        );
        assert_eq!(parse("n,,n=a=b,r=abc"), Err(ScramRefusal::Malformed));
        assert_eq!(parse("n,,n=user,r="), Err(ScramRefusal::Malformed));
        assert_eq!(parse("n,,n=user,r=a b"), Err(ScramRefusal::Malformed));
        assert_eq!(parse("n,,m=ext,n=user,r=abc"), Err(ScramRefusal::Malformed));
        assert_eq!(parse("n,,n=,r=abc"), Err(ScramRefusal::Malformed));
        assert_eq!(
            parse_client_first(b"not base64!"),
            Err(ScramRefusal::Malformed)
        );
    }

    #[test]
    fn a_user_without_keys_gets_a_stable_salt_and_fails_at_the_proof() {
        let first = || parse_client_first(&b64("n,,n=nobody,r=abc")).expect("parses");
        let (challenge, server_first) = Challenge::with_server_nonce(first(), None, "xyz");
        let (_, again) = Challenge::with_server_nonce(first(), None, "xyz");
        assert_eq!(server_first, again);
        assert!(server_first.starts_with("r=abcxyz,s="), "{server_first}");
        assert!(server_first.ends_with(",i=4096"), "{server_first}");
        let proof = STANDARD.encode([0u8; 32]);
        assert_eq!(
            challenge.finish(&b64(&format!("c=biws,r=abcxyz,p={proof}"))),
            Ok(None)
        );
    }

    #[test]
    fn new_keys_have_a_fresh_salt_each_time() {
        let one = ScramKeys::new(b"pencil").expect("random");
        let two = ScramKeys::new(b"pencil").expect("random");
        assert_eq!(one.salt.len(), SALT_LEN);
        assert_eq!(one.iterations, ITERATIONS);
        assert_ne!(one.salt, two.salt);
        assert_eq!(one, ScramKeys::derive(b"pencil", &one.salt, ITERATIONS));
    }
}
