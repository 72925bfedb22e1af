//! Host cloaking: the host other users see in place of a client's IP address, a keyed
//! hash of that address, and the secret key it is keyed with. Pure apart from
//! [`Cloak::load`], which reads (or, once, writes) the key file in the data directory;
//! it never sees a client (registration asks it for a cloak).
//!
//! A cloak is `HMAC-SHA256(key, address)` cut to 65 bits, written as 13 lowercase
//! base32 letters and digits, then `.ip` (`k3vq7m2xa9pqe.ip`), as Ergo cloaks hosts:
//! the same address always gets the same cloak under the same key, so bans and
//! `/ignore` on a cloak keep working across reconnects and restarts, and nobody
//! without the key can go back from the cloak to the address (the whole IPv4 space
//! is only 2^32 guesses, which is why a key is needed at all, and why it must stay
//! secret). Every node of a cluster must use the same key for a user to keep one cloak
//! on every node: set `cloak-secret`, or copy one node's `cloak.key` to the others.

use anyhow::Context;
use ring::hmac;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

/// The key file's name in the data directory, written once when no `cloak-secret`
/// is configured.
pub const CLOAK_KEY_FILE: &str = "cloak.key";

/// What every cloak ends with, so a host is recognisably a cloak and never a real
/// name or address.
const CLOAK_SUFFIX: &str = ".ip";

/// Base32 letters (RFC 4648's alphabet, lowercased: hosts are shown as typed and
/// matched without case).
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Characters of hash in a cloak: 13 × 5 = 65 bits, so two addresses share a cloak
/// with odds of about n²/2^66 among n addresses (nil for any real network).
const CLOAK_LETTERS: usize = 13;

/// Keys an address into its cloak; see the module comment. Built once at start and
/// shared read-only by every shard.
pub struct Cloak {
    key: hmac::Key,
}

impl std::fmt::Debug for Cloak {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cloak { key: <secret> }")
    }
}

impl Cloak {
    /// A cloak keyed by `secret` (any bytes; at least 16 random ones to be safe).
    pub fn new(secret: &[u8]) -> Cloak {
        Cloak {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The key the server runs with: `secret` when configured, else the one in the
    /// data directory's [`CLOAK_KEY_FILE`] (generated there on the first start: 32
    /// random bytes as hex, readable by the server's user alone). Without a data
    /// directory (embedding and tests) a random key for this process only.
    pub fn load(secret: Option<&str>, data_dir: Option<&Path>) -> anyhow::Result<Cloak> {
        if let Some(secret) = secret {
            return Ok(Cloak::new(secret.as_bytes()));
        }
        let Some(dir) = data_dir else {
            return Ok(Cloak::new(&random_secret()?));
        };
        let path = dir.join(CLOAK_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => return Ok(Cloak::new(text.trim().as_bytes())),
            Ok(_) => anyhow::bail!(
                "the cloak key file {} is empty (delete it to have a new key made, which changes every cloak)",
                path.display()
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        }
        let secret: String = random_secret()?
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let secret = write_new_key(&path, &secret)?;
        tracing::info!(file = %path.display(), "host cloak key in place");
        Ok(Cloak::new(secret.as_bytes()))
    }

    /// The cloak of `address`; see the module comment. Costs one HMAC-SHA256 of a
    /// few bytes (about a microsecond), once per registration.
    pub fn host_for(&self, address: IpAddr) -> String {
        let tag = hmac::sign(&self.key, address.to_string().as_bytes());
        let mut cloak = String::with_capacity(CLOAK_LETTERS + CLOAK_SUFFIX.len());
        let bits = u128::from_be_bytes(
            tag.as_ref()[..16]
                .try_into()
                .expect("HMAC-SHA256 gives 32 bytes"),
        );
        for letter in 0..CLOAK_LETTERS {
            let index = (bits >> (128 - 5 * (letter + 1))) & 31;
            cloak.push(char::from(BASE32[index as usize]));
        }
        cloak.push_str(CLOAK_SUFFIX);
        cloak
    }
}

fn random_secret() -> anyhow::Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("cannot draw a random cloak key"))?;
    Ok(secret)
}

/// Writes a new key file, mode 0600, unless one appeared meanwhile (two servers
/// starting at once in one data directory): then that one is the key. The key is
/// written under a temporary name and linked into place, so a reader never sees a
/// half-written file.
fn write_new_key(path: &Path, secret: &str) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(format!("{secret}\n").as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match written {
        Ok(()) => Ok(secret.to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .with_context(|| format!("cannot read {}", path.display()))
        }
        Err(error) => Err(error)
            .with_context(|| format!("cannot create the cloak key file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloak_is_stable_for_a_key_and_differs_between_keys_and_addresses() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let one = Cloak::new(b"network secret");
        let cloak = one.host_for(ip);
        assert_eq!(cloak, Cloak::new(b"network secret").host_for(ip));
        assert_eq!(cloak.len(), CLOAK_LETTERS + CLOAK_SUFFIX.len());
        assert!(cloak.ends_with(".ip"));
        assert!(!cloak.contains("192"));
        assert_ne!(cloak, Cloak::new(b"another secret").host_for(ip));
        assert_ne!(cloak, one.host_for("192.0.2.8".parse().unwrap()));
        let v6 = one.host_for("2001:db8::1".parse().unwrap());
        assert!(v6.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
    }

    #[test]
    fn the_key_file_is_made_once_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("ringchat-cloak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join(CLOAK_KEY_FILE));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let first = Cloak::load(None, Some(&dir)).unwrap().host_for(ip);
        let again = Cloak::load(None, Some(&dir)).unwrap().host_for(ip);
        assert_eq!(first, again);
        let configured = Cloak::load(Some("configured"), Some(&dir)).unwrap();
        assert_ne!(first, configured.host_for(ip));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
