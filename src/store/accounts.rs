//! The accounts table of the node's store: one row per registered account, keyed
//! by its name in lower case (the `ascii` casemapping), the value the account in
//! postcard form. The network state is the truth ([`crate::state::network::Account`]);
//! this is the node's durable copy, written for every applied account event and read
//! once at start to seed the network before any shard runs.

use super::{Store, WriteJob};
use crate::scram::ScramKeys;
use anyhow::Context;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Name in lower case -> [`StoredAccount`] as postcard bytes.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");

/// An account as stored: its name as registered, the argon2id PHC string of its
/// password and its SCRAM-SHA-256 keys, and when it was registered (Unix seconds).
///
/// postcard has no field names or defaults: a record written before `scram` existed
/// ends after `certfps`, and [`load`] reads it as a [`StoredAccountV1`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    /// The name, spelled as registered.
    pub name: Box<str>,
    /// The password's argon2id hash (PHC string), never the password.
    pub password: Box<str>,
    /// Registration time, Unix seconds.
    pub registered_at: u64,
    /// Client certificate fingerprints accepted for SASL EXTERNAL.
    pub certfps: Vec<Box<str>>,
    /// The password's SCRAM-SHA-256 keys; `None` for an account stored before they
    /// were kept (until its password is set again).
    pub scram: Option<ScramKeys>,
}

/// A record of the first layout (before SCRAM keys): [`StoredAccount`] without `scram`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredAccountV1 {
    name: Box<str>,
    password: Box<str>,
    registered_at: u64,
    certfps: Vec<Box<str>>,
}

/// A stored record in either layout: the current one, else the first, which must
/// then take every byte (a current record cut short is corrupt, not an old one).
fn decode(bytes: &[u8]) -> postcard::Result<StoredAccount> {
    postcard::from_bytes::<StoredAccount>(bytes).or_else(|current| {
        let old = match postcard::take_from_bytes::<StoredAccountV1>(bytes) {
            Ok((old, [])) => old,
            _ => return Err(current),
        };
        Ok(StoredAccount {
            name: old.name,
            password: old.password,
            registered_at: old.registered_at,
            certfps: old.certfps,
            scram: None,
        })
    })
}

/// The job that writes `account` (a registration or a password change).
pub fn put(account: StoredAccount) -> WriteJob {
    Box::new(move |transaction| {
        let bytes = postcard::to_stdvec(&account)
            .map_err(|why| redb::Error::Io(std::io::Error::other(why)))?;
        let mut table = transaction.open_table(ACCOUNTS)?;
        table.insert(account.name.to_ascii_lowercase().as_str(), bytes.as_slice())?;
        Ok(())
    })
}

/// The job that deletes the account `name` (DROP).
pub fn remove(name: &str) -> WriteJob {
    let key = name.to_ascii_lowercase();
    Box::new(move |transaction| {
        let mut table = transaction.open_table(ACCOUNTS)?;
        table.remove(key.as_str())?;
        Ok(())
    })
}

/// Every stored account (at start). A row that does not decode stops the start with
/// its key named: silently dropping an account would free its name for anyone.
pub fn load(store: &Store) -> anyhow::Result<Vec<StoredAccount>> {
    let snapshot = store.read().context("cannot read the store")?;
    let table = match snapshot.open_table(ACCOUNTS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(why) => return Err(why).context("cannot open the accounts table"),
    };
    let mut accounts = Vec::new();
    for row in table.iter().context("cannot read the accounts table")? {
        let (key, value) = row.context("cannot read an account")?;
        let account = decode(value.value())
            .with_context(|| format!("the stored account {:?} is corrupt", key.value()))?;
        accounts.push(account);
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_written_are_read_back_after_reopening_and_removed_ones_are_gone() {
        let dir = std::env::temp_dir().join(format!("ringchat-accounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let account = |name: &str| StoredAccount {
            name: name.into(),
            password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            registered_at: 7,
            certfps: vec!["ab".into()],
            scram: Some(ScramKeys::derive(b"pencil", b"salt", 2)),
        };
        {
            let store = Store::open(&dir).expect("the store opens");
            assert!(load(&store).expect("an empty store loads").is_empty());
            store.write(put(account("Alice"))).expect("queued");
            store.write(put(account("bob"))).expect("queued");
            store.write(remove("BOB")).expect("queued");
        }
        let store = Store::open(&dir).expect("the store opens again");
        assert_eq!(load(&store).expect("loads"), vec![account("Alice")]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_record_written_before_scram_keys_reads_without_them() {
        let old = StoredAccountV1 {
            name: "Alice".into(),
            password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            registered_at: 7,
            certfps: vec!["ab".into()],
        };
        let bytes = postcard::to_stdvec(&old).expect("encodes");
        let read = decode(&bytes).expect("an old record decodes");
        assert_eq!(read.name, old.name);
        assert_eq!(read.certfps, old.certfps);
        assert_eq!(read.scram, None);
        let current = StoredAccount {
            scram: Some(ScramKeys::derive(b"pencil", b"salt", 2)),
            ..read
        };
        let bytes = postcard::to_stdvec(&current).expect("encodes");
        assert_eq!(decode(&bytes).expect("a current record decodes"), current);
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
