//! Accounts' pure rules: what an account name may be, which passwords are refused as
//! weak, hashing and verifying passwords (argon2id, and the SCRAM-SHA-256 keys of
//! [`crate::scram`]), and decoding a SASL PLAIN message. It neither touches clients
//! nor runs on a shard's thread by itself: the commands call the slow parts
//! ([`hash_password`], [`verify_password`]) through the offload workers.

use crate::proto::names::is_valid_nick;
use crate::scram::ScramKeys;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use base64::Engine;

/// Longest password accepted (argon2 takes any length; the line bounds it anyway,
/// this keeps the SASL buffer and the hashing cost small).
pub const MAX_PASSWORD_LEN: usize = 300;

/// The name of the services pseudo-client; no user may take it as a nick.
pub const NICKSERV: &str = "NickServ";

/// NickServ's `nick!user@host` on server `server_name`: the source of its NOTICEs.
pub fn nickserv_source(server_name: &str) -> String {
    format!("{NICKSERV}!{NICKSERV}@{server_name}")
}

/// Whether `name` can be an account: a valid nick (so an account can always be
/// used as one) without `\`, so it needs no escaping in an `account=` tag.
pub fn is_valid_account_name(name: &str) -> bool {
    is_valid_nick(name.as_bytes()) && !name.contains('\\') && !name.eq_ignore_ascii_case(NICKSERV)
}

/// Why a password is refused at registration (the text is what the client reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Under `--min-password-len` bytes (that many).
    #[error("the password must be at least {0} characters long")]
    TooShort(usize),
    /// Over [`MAX_PASSWORD_LEN`] bytes.
    #[error("the password is too long")]
    TooLong,
    /// The account's own name, in any case, or one character repeated.
    #[error("the password is too easy to guess")]
    Guessable,
}

/// Refuses passwords that fall to the first guesses of anyone who knows the name,
/// and those under `min_len` bytes (`--min-password-len`).
pub fn check_password(account: &str, password: &[u8], min_len: usize) -> Result<(), WeakPassword> {
    if password.len() < min_len.max(1) {
        return Err(WeakPassword::TooShort(min_len.max(1)));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(WeakPassword::TooLong);
    }
    let one_repeated = password.iter().all(|&b| b == password[0]);
    if one_repeated || password.eq_ignore_ascii_case(account.as_bytes()) {
        return Err(WeakPassword::Guessable);
    }
    Ok(())
}

/// What an account keeps of a password: its argon2id hash (PLAIN, IDENTIFY, PASS)
/// and its SCRAM-SHA-256 keys, each with its own fresh salt; never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The argon2id PHC string.
    pub hash: Box<str>,
    /// The SCRAM-SHA-256 keys.
    pub scram: ScramKeys,
}

/// The [`Credentials`] of `password` (slow: a worker's job).
pub fn hash_password(password: &[u8]) -> anyhow::Result<Credentials> {
    let hash = crate::opers::hash_password(password)?;
    let scram = ScramKeys::new(password)
        .ok_or_else(|| anyhow::anyhow!("the system's random source failed"))?;
    Ok(Credentials {
        hash: hash.into(),
        scram,
    })
}

/// Whether `password` matches the PHC string `hash`, in constant time (slow: a
/// worker's job). A malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
}

/// A SASL PLAIN message (RFC 4616): the identity to act as (empty: the same), the
/// account and the password.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The account to log in to.
    pub account: String,
    /// The password, as sent.
    pub password: Vec<u8>,
}

/// Why a SASL PLAIN message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlainRefusal {
    /// Not base64.
    #[error("not base64")]
    NotBase64,
    /// Not three NUL-separated fields, or a name that is not UTF-8.
    #[error("not authzid NUL authcid NUL password")]
    Malformed,
    /// An authorization identity other than the account (acting as someone else).
    #[error("authorization identity differs from the account")]
    OtherIdentity,
}

/// Decodes the base64 of a SASL PLAIN message (`authzid NUL authcid NUL passwd`).
pub fn decode_plain(base64: &[u8]) -> Result<PlainCredentials, PlainRefusal> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|_| PlainRefusal::NotBase64)?;
    let mut fields = bytes.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(PlainRefusal::Malformed);
    };
    let account = std::str::from_utf8(authcid).map_err(|_| PlainRefusal::Malformed)?;
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid) {
        return Err(PlainRefusal::OtherIdentity);
    }
    Ok(PlainCredentials {
        account: account.to_owned(),
        password: password.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    #[test]
    fn plain_messages_decode_or_say_why_not() {
        assert_eq!(
            decode_plain(&b64(b"\0alice\0sesame open")),
            Ok(PlainCredentials {
                account: "alice".into(),
                password: b"sesame open".to_vec()
            })
        );
        assert!(decode_plain(&b64(b"Alice\0alice\0pw")).is_ok());
        assert_eq!(
            decode_plain(&b64(b"bob\0alice\0pw")),
            Err(PlainRefusal::OtherIdentity)
        );
        assert_eq!(
            decode_plain(&b64(b"alice\0pw")),
            Err(PlainRefusal::Malformed)
        );
        assert_eq!(decode_plain(b"%%%"), Err(PlainRefusal::NotBase64));
    }

    #[test]
    fn weak_passwords_are_refused() {
        let check = |name: &str, password: &[u8]| check_password(name, password, 8);
        assert_eq!(check("alice", b"short"), Err(WeakPassword::TooShort(8)));
        assert_eq!(check("alice", b"aaaaaaaaaa"), Err(WeakPassword::Guessable));
        assert_eq!(
            check("aliceliddell", b"AliceLiddell"),
            Err(WeakPassword::Guessable)
        );
        assert!(check("alice", b"correct horse").is_ok());
        assert!(check_password("alice", b"sesame", 6).is_ok());
    }

    #[test]
    fn account_names_are_nicks_without_backslash_or_the_service_name() {
        assert!(is_valid_account_name("alice"));
        assert!(!is_valid_account_name("a\\b"));
        assert!(!is_valid_account_name("nickserv"));
        assert!(!is_valid_account_name("#chan"));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let credentials = hash_password(b"correct horse").expect("hashing works");
        let hash = &credentials.hash;
        assert!(verify_password(hash, b"correct horse"));
        assert!(!verify_password(hash, b"wrong horse"));
        assert_eq!(
            credentials.scram,
            ScramKeys::derive(b"correct horse", &credentials.scram.salt, 4096)
        );
        assert!(!verify_password("not a hash", b"correct horse"));
    }
}
