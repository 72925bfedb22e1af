//! Operator accounts: the `[[oper]]` blocks of the config file, their argon2 password
//! hashes, and deciding whether `OPER name password` from `~user@ip` succeeds. Pure
//! except for the salt `--hash-password` draws; it neither reads files nor touches
//! clients (the OPER command does).
//!
//! Passwords are never stored: a block holds an argon2 hash in PHC form
//! (`$argon2id$v=19$m=...`), checked when the config is loaded and verified in
//! constant time on OPER. Verifying costs what argon2 costs (about 20 ms with the
//! default parameters), which is why failures are rate-limited by the command.

use crate::proto::mask::wildcard_match;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// One operator account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperBlock {
    /// The name given to OPER (compared exactly).
    pub name: String,
    /// The password's argon2 hash, PHC string form (checked at load).
    pub password_hash: String,
    /// `user@host` wildcard masks matched against `~user@ip`; empty: from anywhere.
    pub hosts: Vec<String>,
}

/// Why an OPER attempt failed; each maps to one numeric. The text is the log's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OperRefusal {
    /// No block has this name, or none of its masks match (491 ERR_NOOPERHOST).
    #[error("no account of that name for this host")]
    NoOperHost,
    /// The block matched but the password is wrong (464 ERR_PASSWDMISMATCH).
    #[error("wrong password")]
    PasswordMismatch,
}

impl OperBlock {
    /// Whether `user_at_host` (`~user@ip`) may use this block.
    pub fn admits_host(&self, user_at_host: &str) -> bool {
        self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|mask| wildcard_match(mask.as_bytes(), user_at_host.as_bytes()))
    }
}

/// The block `name` from `user_at_host` authenticates with `password`, or why not.
/// The host is checked before the password, so a connection from the wrong place
/// learns nothing about the password (and costs no argon2 run).
pub fn authenticate<'a>(
    blocks: &'a [OperBlock],
    name: &str,
    password: &[u8],
    user_at_host: &str,
) -> Result<&'a OperBlock, OperRefusal> {
    let block = blocks
        .iter()
        .find(|block| block.name == name && block.admits_host(user_at_host))
        .ok_or(OperRefusal::NoOperHost)?;
    let verified = PasswordHash::new(&block.password_hash)
        .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok());
    if verified {
        Ok(block)
    } else {
        Err(OperRefusal::PasswordMismatch)
    }
}

/// Checks that `hash` is an argon2 PHC string; the error says what is wrong, for the
/// config file's one-line message.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|error| {
        format!("is not an argon2 hash ({error}); make one with `ringchat --hash-password`")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "is a {} hash, not argon2; make one with `ringchat --hash-password`",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// The argon2id hash of `password` with a fresh random salt, in PHC form.
pub fn hash_password(password: &[u8]) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| anyhow::anyhow!("cannot draw a random salt"))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|error| anyhow::anyhow!("cannot encode the salt: {error}"))?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow::anyhow!("cannot hash the password: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(hosts: &[&str]) -> OperBlock {
        OperBlock {
            name: "admin".to_owned(),
            password_hash: hash_password(b"secret").unwrap(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn the_right_name_password_and_host_authenticate() {
        let blocks = [block(&["~*@127.0.0.1"])];
        assert!(authenticate(&blocks, "admin", b"secret", "~me@127.0.0.1").is_ok());
        assert_eq!(
            authenticate(&blocks, "admin", b"wrong", "~me@127.0.0.1"),
            Err(OperRefusal::PasswordMismatch)
        );
        assert_eq!(
            authenticate(&blocks, "admin", b"secret", "~me@10.0.0.1"),
            Err(OperRefusal::NoOperHost)
        );
        assert_eq!(
            authenticate(&blocks, "nobody", b"secret", "~me@127.0.0.1"),
            Err(OperRefusal::NoOperHost)
        );
    }

    #[test]
    fn no_masks_admit_every_host() {
        assert!(block(&[]).admits_host("~x@192.0.2.1"));
    }

    #[test]
    fn only_argon2_hashes_pass_the_check() {
        assert!(check_hash(&hash_password(b"x").unwrap()).is_ok());
        assert!(check_hash("secret").is_err());
        assert!(check_hash("$2b$12$abcdefghijklmnopqrstuu").is_err());
    }
}
