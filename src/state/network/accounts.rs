//! Registered accounts as the network knows them: the name, the password's argon2id
//! hash (a PHC string, never the password) and SCRAM-SHA-256 keys, and when it was
//! registered. Plain data;
//! only [`super::apply`] changes it, so every shard and node agrees on who owns a name.
//! The node's store keeps a copy ([`crate::store::accounts`]); this is the truth.

use crate::proto::CaselessKey;
use crate::scram::ScramKeys;
use crate::store::accounts::StoredAccount;
use serde::{Deserialize, Serialize};

/// Most accounts the network holds: REGISTER past it is refused, so a registration
/// flood cannot grow the state (and every node's store) without bound.
pub const MAX_ACCOUNTS: usize = 1_000_000;

/// Most client certificate fingerprints one account accepts for SASL EXTERNAL.
pub const MAX_CERTFPS: usize = 8;

/// One registered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The name, spelled as registered; compared without case (`ascii` casemapping).
    pub name: CaselessKey,
    /// The password's argon2id hash in PHC form, made off the shard threads.
    pub password: Box<str>,
    /// When it was registered, Unix seconds (the event's time, so every replica agrees).
    pub registered_at: u64,
    /// SHA-256 fingerprints (lowercase hex) of the client certificates that log in
    /// to it with SASL EXTERNAL; at most [`MAX_CERTFPS`].
    pub certfps: Vec<Box<str>>,
    /// The password's SCRAM-SHA-256 keys, made with the hash; `None` for an account
    /// whose password was set before they were kept (SCRAM fails for it, PLAIN works,
    /// until its password is set again).
    pub scram: Option<ScramKeys>,
}

impl Account {
    /// The account as the node's store keeps it.
    pub fn to_stored(&self) -> StoredAccount {
        StoredAccount {
            name: self.name.as_str().into(),
            password: self.password.clone(),
            registered_at: self.registered_at,
            certfps: self.certfps.clone(),
            scram: self.scram.clone(),
        }
    }

    /// An account read back from the store.
    pub fn from_stored(stored: StoredAccount) -> Account {
        Account {
            name: CaselessKey::new(&stored.name),
            password: stored.password,
            registered_at: stored.registered_at,
            certfps: stored.certfps,
            scram: stored.scram,
        }
    }
}
