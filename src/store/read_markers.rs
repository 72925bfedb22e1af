//! The read markers table of the node's store (IRCv3 `draft/read-marker`): one row
//! per account and target, keyed by `<account> <target>` in lower case (the `ascii`
//! casemapping; neither name can hold a space), the value the target as spelled
//! and the marker in Unix milliseconds, in postcard form. The network state is the
//! truth ([`crate::state::network::ReadMarkers`]); this is the node's durable copy,
//! written for every marker that moves and read once at start, after the accounts.

use super::{Store, WriteJob};
use anyhow::Context;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// `<account> <target>` in lower case -> [`StoredMarker`] as postcard bytes.
const READ_MARKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("read_markers");

/// One stored marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMarker {
    /// The account's name, as spelled when the marker was set.
    pub account: Box<str>,
    /// The target (a channel or a nick), as spelled when the marker was first set.
    pub target: Box<str>,
    /// The time of the last message read, Unix milliseconds.
    pub millis: u64,
}

fn key(account: &str, target: &str) -> String {
    format!(
        "{} {}",
        account.to_ascii_lowercase(),
        target.to_ascii_lowercase()
    )
}

/// The job that writes a marker (set or moved), and deletes the one `dropped` made
/// room for, in one transaction.
pub fn put(marker: StoredMarker, dropped: Option<Box<str>>) -> WriteJob {
    Box::new(move |transaction| {
        let bytes = postcard::to_stdvec(&marker)
            .map_err(|why| redb::Error::Io(std::io::Error::other(why)))?;
        let mut table = transaction.open_table(READ_MARKERS)?;
        if let Some(dropped) = dropped {
            table.remove(key(&marker.account, &dropped).as_str())?;
        }
        table.insert(
            key(&marker.account, &marker.target).as_str(),
            bytes.as_slice(),
        )?;
        Ok(())
    })
}

/// The job that deletes every marker of the account `name` (DROP).
pub fn remove_account(name: &str) -> WriteJob {
    // Every key of the account starts with `<name> `; `!` sorts right after space.
    let name = name.to_ascii_lowercase();
    Box::new(move |transaction| {
        let mut table = transaction.open_table(READ_MARKERS)?;
        let (from, to) = (format!("{name} "), format!("{name}!"));
        table.retain_in(from.as_str()..to.as_str(), |_, _| false)?;
        Ok(())
    })
}

/// Every stored marker (at start). A row that does not decode stops the start with
/// its key named, as for accounts.
pub fn load(store: &Store) -> anyhow::Result<Vec<StoredMarker>> {
    let snapshot = store.read().context("cannot read the store")?;
    let table = match snapshot.open_table(READ_MARKERS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(why) => return Err(why).context("cannot open the read markers table"),
    };
    let mut markers = Vec::new();
    for row in table.iter().context("cannot read the read markers table")? {
        let (key, value) = row.context("cannot read a read marker")?;
        let marker = postcard::from_bytes(value.value())
            .with_context(|| format!("the stored read marker {:?} is corrupt", key.value()))?;
        markers.push(marker);
    }
    Ok(markers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_written_are_read_back_and_dropped_ones_are_gone() {
        let dir = std::env::temp_dir().join(format!("ringchat-markers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let marker = |account: &str, target: &str, millis| StoredMarker {
            account: account.into(),
            target: target.into(),
            millis,
        };
        {
            let store = Store::open(&dir).expect("the store opens");
            assert!(load(&store).expect("an empty store loads").is_empty());
            store
                .write(put(marker("Alice", "#Rust", 1), None))
                .expect("queued");
            store
                .write(put(marker("alice", "#rust", 2), None))
                .expect("queued");
            store
                .write(put(marker("alice", "bob", 3), None))
                .expect("queued");
            store
                .write(put(marker("alice", "carol", 4), Some("BOB".into())))
                .expect("queued");
            store
                .write(put(marker("al", "#x", 5), None))
                .expect("queued");
            store
                .write(put(marker("alice2", "#x", 6), None))
                .expect("queued");
            store
                .write(put(marker("bo", "#x", 7), None))
                .expect("queued");
            store.write(remove_account("AL")).expect("queued");
        }
        let store = Store::open(&dir).expect("the store opens again");
        let mut loaded = load(&store).expect("loads");
        loaded.sort_by_key(|marker| marker.millis);
        assert_eq!(
            loaded,
            vec![
                marker("alice", "#rust", 2),
                marker("alice", "carol", 4),
                marker("alice2", "#x", 6),
                marker("bo", "#x", 7),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
