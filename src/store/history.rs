//! History in the node's store: the tables that keep each channel's messages and
//! events and each conversation's direct messages, the writes that append them
//! (with retention), and the queries that CHATHISTORY asks. It knows messages and
//! positions, never clients or replies.
//!
//! Layout (redb tables):
//! - `history_messages`: (target, time in Unix milliseconds, sequence) -> kind byte
//!   and the message's parts (postcard of [`WireOutgoing`]). The sequence is per
//!   target and only grows, so messages of one millisecond still have one total
//!   order, and a key orders as `server-time` does. The target is a channel name
//!   folded to lower case (CASEMAPPING=ascii), or a conversation's key (see
//!   [`Conversation`]), which starts with `@` and so never names a channel.
//! - `history_msgids`: msgid -> that message's key, for `msgid=` references.
//! - `history_targets`: target -> (next sequence, messages kept), so an append is
//!   one lookup and retention by count needs no count of the table.
//! - `history_correspondents`: (account party, other party) -> the other party's
//!   name as last seen, so CHATHISTORY TARGETS lists an account's conversations
//!   with one range read.
//! - `history_kept_through`: `""` -> the number of the last flush committed (see
//!   [`crate::store::uncommitted`]), so a reader knows which records handed to the
//!   store its snapshot holds.
//!
//! Time is kept in milliseconds because that is what clients see (`server-time`
//! has millisecond precision): a `timestamp=` taken from a message's tag then bounds
//! exactly at that message.

use super::uncommitted::Kept;
use crate::proto::outgoing::{Outgoing, WireOutgoing};
use crate::proto::CaselessKey;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use std::sync::Arc;

const MESSAGES: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("history_messages");
const MSGIDS: TableDefinition<&[u8], (&str, u64, u64)> = TableDefinition::new("history_msgids");
const TARGETS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("history_targets");
const CORRESPONDENTS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("history_correspondents");
const KEPT_THROUGH: TableDefinition<&str, u64> = TableDefinition::new("history_kept_through");

/// What a stored message is, for whom it is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PRIVMSG or NOTICE: replayed to every reader.
    Message = 0,
    /// TAGMSG: replayed only with `draft/event-playback` (IRCv3 chathistory,
    /// "Event playback").
    Tagmsg = 1,
    /// A channel event (JOIN, PART, KICK, QUIT, NICK, TOPIC, MODE): replayed only
    /// with `draft/event-playback`.
    Event = 2,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            0 => Some(Kind::Message),
            1 => Some(Kind::Tagmsg),
            2 => Some(Kind::Event),
            _ => None,
        }
    }
}

/// Whose history a record joins.
#[derive(Debug, Clone)]
pub enum Target {
    /// A channel's, read by its members.
    Channel(CaselessKey),
    /// A conversation's, read by its parties that are accounts.
    Direct(Conversation),
}

impl Target {
    /// The target's storage key.
    pub fn key(&self) -> String {
        match self {
            Target::Channel(channel) => target_key(channel.as_str()),
            Target::Direct(conversation) => conversation.key(),
        }
    }

    /// Whether `key` (a [`Target::key`]) is this target's; without building the key.
    fn has_key(&self, key: &str) -> bool {
        match self {
            Target::Channel(channel) => {
                let name = channel.as_str();
                name.len() == key.len()
                    && name
                        .bytes()
                        .zip(key.bytes())
                        .all(|(a, b)| a.to_ascii_lowercase() == b)
            }
            Target::Direct(conversation) => {
                let [a, b] = &conversation.parties;
                let parties = in_order(&a.key, &b.key);
                key.strip_prefix('@')
                    .and_then(|pair| pair.split_once(' '))
                    .is_some_and(|pair| pair == parties)
            }
        }
    }
}

/// One side of a direct conversation: an account, or, for a user not logged in,
/// the nick it used. Two users of one account share their conversations; a nick
/// is a party only towards an account (a conversation between two nicks is not
/// kept: neither side could prove later that it was them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// `a:<account>` or `n:<nick>`, folded to lower case.
    key: String,
    /// The name others see: the nick the party used.
    shown: String,
}

impl Party {
    /// An account's side, shown as `nick`.
    pub fn account(account: &str, nick: &str) -> Party {
        Party {
            key: format!("a:{}", account.to_ascii_lowercase()),
            shown: nick.to_owned(),
        }
    }

    /// A side not logged in, known by its nick.
    pub fn nick(nick: &str) -> Party {
        Party {
            key: format!("n:{}", nick.to_ascii_lowercase()),
            shown: nick.to_owned(),
        }
    }

    fn is_account(&self) -> bool {
        self.key.starts_with("a:")
    }
}

/// The two sides of a direct conversation; the same whoever spoke first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    parties: [Party; 2],
}

impl Conversation {
    /// The conversation between `a` and `b` (a user's notes to itself when they are
    /// the same), if it is kept: at least one side must be an account.
    pub fn between(a: Party, b: Party) -> Option<Conversation> {
        (a.is_account() || b.is_account()).then_some(Conversation { parties: [a, b] })
    }

    fn key(&self) -> String {
        let [a, b] = &self.parties;
        conversation_key(&a.key, &b.key)
    }

    /// Each side that is an account, with the other side: whose TARGETS list the
    /// conversation, under which name.
    fn sides(&self) -> impl Iterator<Item = (&Party, &Party)> {
        let [a, b] = &self.parties;
        [(a, b), (b, a)]
            .into_iter()
            .filter(|(owner, _)| owner.is_account())
    }
}

/// `@<one party key> <other>`, the keys in order: a space is in neither key (nor in
/// a nick or an account name), and `@` starts no channel name.
fn conversation_key(a: &str, b: &str) -> String {
    let (low, high) = in_order(a, b);
    format!("@{low} {high}")
}

/// Two party keys in the order a conversation's key names them.
fn in_order<'k>(a: &'k str, b: &'k str) -> (&'k str, &'k str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// One message or event handed to the store by a shard: whose history it joins and
/// the message as its recipients got it (its parts are shared by reference with the
/// fan-out).
#[derive(Debug, Clone)]
pub struct Record {
    /// The channel or conversation.
    pub target: Target,
    /// Replayed to whom.
    pub kind: Kind,
    /// The message, with its time and msgid.
    pub message: Outgoing,
}

/// How much history is kept per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Messages kept per target; the oldest go first.
    pub max_messages: u64,
    /// Age past which a message is gone, in milliseconds.
    pub max_age_ms: u64,
}

impl Retention {
    /// The retention the operator configured.
    pub fn of(config: &crate::config::Config) -> Retention {
        Retention {
            max_messages: config.history_max_messages,
            max_age_ms: config.history_max_age.as_millis() as u64,
        }
    }

    /// The oldest time (Unix milliseconds) still kept at `now_ms`.
    pub fn cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.max_age_ms)
    }
}

/// The storage key of a target (a channel name folded to lower case).
pub fn target_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Hands `records` (one shard's loop turn, or what another node relayed) to the
/// store's writer as one job: the one way history is written. Until the job has
/// committed, the records wait in the store's uncommitted tail, where queries find
/// them ([`Snapshot`]). Refused, nothing kept, when the writer is far behind.
pub fn keep(
    store: &crate::store::Store,
    records: Vec<Record>,
    retention: Retention,
    now_ms: u64,
) -> Result<(), crate::store::WriteRefused> {
    let uncommitted = store.uncommitted();
    uncommitted.hand_over(records, retention, |kept| {
        let noted = uncommitted.clone();
        store.write(Box::new(move |transaction: &WriteTransaction| {
            let appended = append(transaction, &kept.records, retention, now_ms);
            // Noted even when the append failed: its records are as committed as
            // they will ever be, and the tail must let them go.
            noted.written(kept.id);
            transaction.open_table(KEPT_THROUGH)?.insert("", kept.id)?;
            appended
        }))
    })
}

/// Appends `records` (one shard's loop turn) inside the writer's transaction, then
/// applies retention to each target written: the oldest past `retention.max_messages`
/// and everything older than its age go, with their msgid entries.
pub fn append(
    transaction: &WriteTransaction,
    records: &[Record],
    retention: Retention,
    now_ms: u64,
) -> Result<(), redb::Error> {
    let mut messages = transaction.open_table(MESSAGES)?;
    let mut msgids = transaction.open_table(MSGIDS)?;
    let mut targets = transaction.open_table(TARGETS)?;
    let mut correspondents = transaction.open_table(CORRESPONDENTS)?;
    // Each target's (next sequence, count), read once per job and written back once.
    let mut counters: std::collections::HashMap<String, (u64, u64)> =
        std::collections::HashMap::new();
    let mut value = Vec::with_capacity(256);
    for record in records {
        let key = record.target.key();
        if let Target::Direct(conversation) = &record.target {
            for (owner, other) in conversation.sides() {
                correspondents.insert(
                    (owner.key.as_str(), other.key.as_str()),
                    other.shown.as_str(),
                )?;
            }
        }
        let (next, count) = match counters.get(&key) {
            Some(&known) => known,
            None => targets
                .get(key.as_str())?
                .map_or((1, 0), |found| found.value()),
        };
        let wire = record.message.to_wire();
        let millis = wire.time_micros() / 1000;
        value.clear();
        value.push(record.kind as u8);
        let encoded = postcard::to_extend(&wire, std::mem::take(&mut value))
            .map_err(|why| redb::Error::Io(std::io::Error::other(why)))?;
        if record.kind == Kind::Event && already_kept(&messages, &key, millis, encoded.as_slice())?
        {
            value = encoded;
            continue;
        }
        messages.insert((key.as_str(), millis, next), encoded.as_slice())?;
        value = encoded;
        if let Some(msgid) = wire.msgid() {
            msgids.insert(msgid, (key.as_str(), millis, next))?;
        }
        counters.insert(key, (next + 1, count + 1));
    }
    for (key, counts) in &counters {
        targets.insert(key.as_str(), *counts)?;
    }
    let touched: Vec<&String> = counters.keys().collect();
    for key in &touched {
        expire(
            &mut messages,
            &mut msgids,
            &mut targets,
            key,
            retention,
            now_ms,
        )?;
    }
    Ok(())
}

/// Whether `key` already holds this exact stored value in millisecond `millis`:
/// every shard with members of a channel keeps its events (so a member's own
/// shard has handed the store an event before the member can ask for it), and the
/// copies after the first are byte for byte the same (the same line, msgid and
/// time, made from one log entry).
fn already_kept(
    messages: &impl ReadableTable<(&'static str, u64, u64), &'static [u8]>,
    key: &str,
    millis: u64,
    value: &[u8],
) -> Result<bool, redb::Error> {
    for entry in messages.range((key, millis, 0)..=(key, millis, u64::MAX))? {
        if entry?.1.value() == value {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Expires every target's old messages (an occasional sweep, for targets that no
/// longer get writes: an append expires only the target it writes).
pub fn expire_all(
    transaction: &WriteTransaction,
    retention: Retention,
    now_ms: u64,
) -> Result<(), redb::Error> {
    let mut messages = transaction.open_table(MESSAGES)?;
    let mut msgids = transaction.open_table(MSGIDS)?;
    let mut targets = transaction.open_table(TARGETS)?;
    let keys: Vec<String> = targets
        .iter()?
        .map(|entry| entry.map(|(key, _)| key.value().to_owned()))
        .collect::<Result<_, _>>()?;
    for key in &keys {
        expire(
            &mut messages,
            &mut msgids,
            &mut targets,
            key,
            retention,
            now_ms,
        )?;
    }
    // A conversation that expired whole leaves TARGETS' index.
    let mut correspondents = transaction.open_table(CORRESPONDENTS)?;
    let mut gone = Vec::new();
    for entry in correspondents.iter()? {
        let (pair, _) = entry?;
        let (owner, other) = pair.value();
        let kept = targets
            .get(conversation_key(owner, other).as_str())?
            .map_or(0, |found| found.value().1);
        if kept == 0 {
            gone.push((owner.to_owned(), other.to_owned()));
        }
    }
    for (owner, other) in gone {
        correspondents.remove((owner.as_str(), other.as_str()))?;
    }
    Ok(())
}

/// Drops `key`'s messages past the count or older than the age limit, oldest first.
fn expire(
    messages: &mut Table<(&str, u64, u64), &[u8]>,
    msgids: &mut Table<&[u8], (&str, u64, u64)>,
    targets: &mut Table<&str, (u64, u64)>,
    key: &str,
    retention: Retention,
    now_ms: u64,
) -> Result<(), redb::Error> {
    let Some((next, mut count)) = targets.get(key)?.map(|found| found.value()) else {
        return Ok(());
    };
    let cutoff = retention.cutoff(now_ms);
    let mut doomed = Vec::new();
    {
        let oldest = messages.range((key, 0, 0)..(key, u64::MAX, u64::MAX))?;
        let mut kept = count;
        for entry in oldest {
            let (stored_key, value) = entry?;
            let (_, millis, _) = stored_key.value();
            if kept <= retention.max_messages && millis >= cutoff {
                break;
            }
            let msgid =
                decode(value.value()).and_then(|(_, wire)| wire.msgid().map(<[u8]>::to_vec));
            doomed.push((stored_key.value().1, stored_key.value().2, msgid));
            kept -= 1;
        }
    }
    for (millis, seq, msgid) in doomed {
        messages.remove((key, millis, seq))?;
        if let Some(msgid) = msgid {
            msgids.remove(msgid.as_slice())?;
        }
        count -= 1;
    }
    targets.insert(key, (next, count))?;
    Ok(())
}

/// A record's stored value: its kind byte, then the message's parts.
fn stored_value(kind: Kind, wire: &WireOutgoing) -> Result<Vec<u8>, redb::Error> {
    postcard::to_extend(wire, vec![kind as u8])
        .map_err(|why| redb::Error::Io(std::io::Error::other(why)))
}

fn decode(value: &[u8]) -> Option<(Kind, WireOutgoing)> {
    let (&kind, parts) = value.split_first()?;
    let kind = Kind::from_byte(kind)?;
    let (wire, _) = postcard::take_from_bytes::<WireOutgoing>(parts).ok()?;
    Some((kind, wire))
}

/// Where a CHATHISTORY reference points (IRCv3 chathistory, "Message references").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `msgid=`: that message.
    MsgId(Vec<u8>),
    /// `timestamp=`: that instant, in Unix milliseconds.
    Time(u64),
}

/// A CHATHISTORY selection (IRCv3 chathistory, "Subcommands"); every bound is
/// exclusive but AROUND's centre.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The most recent messages, after the reference if there is one.
    Latest(Option<Reference>),
    /// Messages before the reference, the nearest ones.
    Before(Reference),
    /// Messages after the reference, the nearest ones.
    After(Reference),
    /// Messages around the reference: half before, the rest from it on.
    Around(Reference),
    /// Messages between two references, the nearest to the first one.
    Between(Reference, Reference),
}

/// One replayed message.
#[derive(Debug)]
pub struct Replayed {
    /// Who gets it.
    pub kind: Kind,
    /// The message as it was sent, with its time and msgid.
    pub message: Outgoing,
}

/// A position inside one target: (milliseconds, sequence). Stored sequences start
/// at 1 and stay below [`UNCOMMITTED`]; a record not yet committed is placed at
/// `UNCOMMITTED` plus its rank in the tail, after the stored ones of its
/// millisecond, where the writer will append it. So `(t, 0)` lies before every
/// message of millisecond `t` and `(t, u64::MAX)` after them.
type Point = (u64, u64);

/// Where uncommitted records' sequences start: a target's stored sequence grows by
/// one per message and never gets near 2^63.
const UNCOMMITTED: u64 = 1 << 63;

/// What a history read reads: the writer's open transaction (everything it was
/// handed, in order), or a reader's [`Snapshot`] (a read snapshot and the records
/// handed to the store that it does not hold yet).
pub trait Source {
    /// An open table.
    type Table<'s, K: redb::Key + 'static, V: redb::Value + 'static>: ReadableTable<K, V>
    where
        Self: 's;

    /// Opens `table` for reading.
    fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Self::Table<'_, K, V>, redb::Error>;

    /// Flushes handed to the store that the tables do not hold yet, oldest first.
    fn pending(&self) -> &[Arc<Kept>];
}

impl Source for WriteTransaction {
    type Table<'s, K: redb::Key + 'static, V: redb::Value + 'static> = Table<'s, K, V>;

    fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Table<'_, K, V>, redb::Error> {
        Ok(self.open_table(table)?)
    }

    /// None: the writer runs the jobs in order, so its tables hold every flush
    /// queued before the read.
    fn pending(&self) -> &[Arc<Kept>] {
        &[]
    }
}

/// A read snapshot of the store and the records handed to the store that it does
/// not hold yet (see [`crate::store::uncommitted`] for why nothing is missed or
/// read twice): what CHATHISTORY reads, off the writer. Every answer is the one the
/// writer would give once those records are committed.
pub struct Snapshot {
    transaction: redb::ReadTransaction,
    /// The flushes after the last one the snapshot holds, oldest first.
    pending: Vec<Arc<Kept>>,
}

impl Snapshot {
    /// Completes `view` (taken first) with a snapshot opened now.
    pub fn open(database: &redb::Database, view: Vec<Arc<Kept>>) -> Result<Snapshot, redb::Error> {
        use redb::ReadableDatabase;
        let transaction = database.begin_read()?;
        let through = kept_through(&transaction.open_table(KEPT_THROUGH)?)?;
        let mut pending = view;
        pending.retain(|kept| kept.id > through);
        Ok(Snapshot {
            transaction,
            pending,
        })
    }
}

impl Source for Snapshot {
    type Table<'s, K: redb::Key + 'static, V: redb::Value + 'static> = redb::ReadOnlyTable<K, V>;

    fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<redb::ReadOnlyTable<K, V>, redb::Error> {
        Ok(self.transaction.open_table(table)?)
    }

    fn pending(&self) -> &[Arc<Kept>] {
        &self.pending
    }
}

/// Reads `selection` of the target stored as `key` ([`Target::key`]; at most
/// `limit` messages, ascending), showing nothing older than `oldest_ms` (age
/// retention, and an access cutoff), and TAGMSGs and events only with
/// `event_playback`. A msgid that is unknown, or of another target, selects nothing.
pub fn query(
    source: &impl Source,
    key: &str,
    selection: &Selection,
    limit: usize,
    oldest_ms: u64,
    event_playback: bool,
) -> Result<Vec<Replayed>, redb::Error> {
    let messages = source.open(MESSAGES)?;
    let msgids = source.open(MSGIDS)?;
    scan(source, &messages, key, oldest_ms, event_playback)?.select(&msgids, selection, limit)
}

/// The time (Unix milliseconds) of the latest PRIVMSG or NOTICE of the target
/// stored as `key` (not older than `oldest_ms`), if it lies in `from..to`,
/// exclusive at both ends (CHATHISTORY TARGETS: a target whose latest message is
/// past the span is not listed, even with messages inside it). Walks back over the
/// TAGMSGs and events after that message, reading one byte of each.
pub fn latest_time(
    source: &impl Source,
    key: &str,
    from_ms: u64,
    to_ms: u64,
    oldest_ms: u64,
) -> Result<Option<u64>, redb::Error> {
    let messages = source.open(MESSAGES)?;
    scan(source, &messages, key, oldest_ms, false)?.latest_time(from_ms, to_ms)
}

/// The conversations of `account`: each one's storage key and the other side's
/// name as last seen (CHATHISTORY TARGETS). One first seen in pending records comes
/// last; a newer name in them replaces the stored one.
pub fn conversations_of(
    source: &impl Source,
    account: &Party,
) -> Result<Vec<(String, String)>, redb::Error> {
    let correspondents = source.open(CORRESPONDENTS)?;
    let owner = account.key.as_str();
    let mut found = Vec::new();
    for entry in correspondents.range((owner, "")..)? {
        let (pair, shown) = entry?;
        let (stored_owner, other) = pair.value();
        if stored_owner != owner {
            break;
        }
        found.push((conversation_key(owner, other), shown.value().to_owned()));
    }
    let records = source.pending().iter().flat_map(|kept| &kept.records);
    for conversation in records.filter_map(|record| match &record.target {
        Target::Direct(conversation) => Some(conversation),
        Target::Channel(_) => None,
    }) {
        for (owner, other) in conversation.sides() {
            if owner.key != account.key {
                continue;
            }
            let key = conversation_key(&owner.key, &other.key);
            match found.iter_mut().find(|(known, _)| *known == key) {
                Some((_, shown)) => other.shown.clone_into(shown),
                None => found.push((key, other.shown.clone())),
            }
        }
    }
    Ok(found)
}

/// A scan of `key` over `messages` and the target's pending records, whose floor
/// hides what the writer's count retention will drop when it appends them.
fn scan<'s, T>(
    source: &impl Source,
    messages: &'s T,
    key: &'s str,
    oldest_ms: u64,
    event_playback: bool,
) -> Result<Scan<'s, T>, redb::Error>
where
    T: ReadableTable<(&'static str, u64, u64), &'static [u8]>,
{
    let mut scan = Scan::stored(messages, key, oldest_ms, event_playback);
    let mut max_messages = u64::MAX;
    // The msgids of the pending events taken so far: a join storm can leave
    // thousands pending in one commit interval, so no scan of the list per event.
    let mut pending_events = std::collections::HashSet::new();
    for kept in source.pending() {
        for record in kept
            .records
            .iter()
            .filter(|record| record.target.has_key(key))
        {
            let wire = record.message.to_wire();
            let millis = wire.time_micros() / 1000;
            // An event several shards handed over is stored once: its first copy.
            if record.kind == Kind::Event {
                let msgid = wire.msgid().map(<[u8]>::to_vec);
                if !pending_events.insert(msgid)
                    || already_kept(messages, key, millis, &stored_value(record.kind, &wire)?)?
                {
                    continue;
                }
            }
            let point = (millis, UNCOMMITTED + scan.pending.len() as u64);
            scan.pending.push(Pending {
                point,
                kind: record.kind,
                wire,
            });
            max_messages = kept.retention.max_messages;
        }
    }
    if scan.pending.is_empty() {
        return Ok(scan);
    }
    scan.pending.sort_by_key(|record| record.point);
    let stored = match source.open(TARGETS)?.get(key)? {
        Some(counts) => counts.value().1,
        None => 0,
    };
    let dropped = (stored + scan.pending.len() as u64).saturating_sub(max_messages);
    if dropped > 0 {
        scan.dropped_before = scan.nth_point(dropped as usize)?;
    }
    Ok(scan)
}

/// One uncommitted record of the scanned target, as the writer will store it.
struct Pending {
    point: Point,
    kind: Kind,
    wire: WireOutgoing,
}

/// The last flush number the store holds (0 before the first).
fn kept_through(table: &impl ReadableTable<&'static str, u64>) -> Result<u64, redb::Error> {
    Ok(table.get("")?.map_or(0, |found| found.value()))
}

/// Creates the history tables if they are missing (a read snapshot cannot open a
/// table that was never created) and returns the last flush number the store
/// holds. Run once when the store opens.
pub fn prepare(database: &redb::Database) -> Result<u64, redb::Error> {
    let transaction = database.begin_write()?;
    let through = {
        transaction.open_table(MESSAGES)?;
        transaction.open_table(MSGIDS)?;
        transaction.open_table(TARGETS)?;
        transaction.open_table(CORRESPONDENTS)?;
        kept_through(&transaction.open_table(KEPT_THROUGH)?)?
    };
    transaction.commit()?;
    Ok(through)
}

/// Reads over one target's messages: the stored ones in `messages` merged with the
/// `pending` uncommitted ones, in [`Point`] order.
struct Scan<'s, T> {
    messages: &'s T,
    key: &'s str,
    /// TAGMSGs are shown.
    event_playback: bool,
    /// The target's uncommitted records, ascending; empty inside the writer.
    pending: Vec<Pending>,
    /// Nothing before it is shown: age retention and the access cutoff.
    floor: Point,
    /// Where the records count retention keeps start: what is before it is dropped
    /// when the pending records are appended; `(0, 0)` when nothing is.
    dropped_before: Point,
}

impl<'s, T: ReadableTable<(&'static str, u64, u64), &'static [u8]>> Scan<'s, T> {
    /// A scan of what `messages` stores of `key`, nothing pending.
    fn stored(messages: &'s T, key: &'s str, oldest_ms: u64, event_playback: bool) -> Self {
        Scan {
            messages,
            key,
            event_playback,
            pending: Vec::new(),
            floor: (oldest_ms, 0),
            dropped_before: (0, 0),
        }
    }

    fn select(
        &self,
        msgids: &impl ReadableTable<&'static [u8], (&'static str, u64, u64)>,
        selection: &Selection,
        limit: usize,
    ) -> Result<Vec<Replayed>, redb::Error> {
        let key = self.key;
        let resolve = |reference: &Reference| -> Result<Option<Point>, redb::Error> {
            let point = match reference {
                Reference::Time(millis) => return Ok(Some((*millis, 0))),
                Reference::MsgId(id) => {
                    let stored = match msgids.get(id.as_slice())? {
                        Some(found) => {
                            let (owner, millis, seq) = found.value();
                            if owner == key {
                                Some((millis, seq))
                            } else {
                                // A QUIT or NICK is kept in each of the user's channels
                                // under one msgid, and the index names one of them.
                                self.stored_in_millisecond(millis, id)?
                            }
                        }
                        None => None,
                    };
                    stored.or_else(|| {
                        self.pending
                            .iter()
                            .find(|record| record.wire.msgid() == Some(id.as_slice()))
                            .map(|record| record.point)
                    })
                }
            };
            // A message count retention drops is as gone as one it dropped.
            Ok(point.filter(|point| *point >= self.dropped_before))
        };
        // The first point after a reference (exclusive lower bound) and the point of
        // the reference itself (exclusive upper bound).
        let after = |reference: &Reference, point: Point| match reference {
            Reference::Time(millis) => (millis.saturating_add(1), 0),
            Reference::MsgId(_) => (point.0, point.1 + 1),
        };
        let floor = self.floor.max(self.dropped_before);
        let ceiling: Point = (u64::MAX, u64::MAX);
        let found = match selection {
            Selection::Latest(None) => self.last(floor, ceiling, limit)?,
            Selection::Latest(Some(reference)) => match resolve(reference)? {
                Some(point) => self.last(after(reference, point).max(floor), ceiling, limit)?,
                None => Vec::new(),
            },
            Selection::Before(reference) => match resolve(reference)? {
                Some(point) => self.last(floor, point, limit)?,
                None => Vec::new(),
            },
            Selection::After(reference) => match resolve(reference)? {
                Some(point) => self.first(after(reference, point).max(floor), ceiling, limit)?,
                None => Vec::new(),
            },
            Selection::Around(reference) => match resolve(reference)? {
                Some(point) => {
                    let before = limit / 2;
                    let mut found = self.last(floor, point, before)?;
                    found.extend(self.first(point.max(floor), ceiling, limit - before)?);
                    found
                }
                None => Vec::new(),
            },
            Selection::Between(first, second) => match (resolve(first)?, resolve(second)?) {
                (Some(a), Some(b)) if a <= b => self.first(after(first, a).max(floor), b, limit)?,
                (Some(a), Some(b)) => self.last(after(second, b).max(floor), a, limit)?,
                _ => Vec::new(),
            },
        };
        Ok(found)
    }

    /// Where this target stores the message `msgid` of millisecond `millis`, if it
    /// does: a read of that millisecond's few keys.
    fn stored_in_millisecond(
        &self,
        millis: u64,
        msgid: &[u8],
    ) -> Result<Option<Point>, redb::Error> {
        for entry in self
            .messages
            .range((self.key, millis, 0)..=(self.key, millis, u64::MAX))?
        {
            let (stored_key, value) = entry?;
            let found = decode(value.value()).is_some_and(|(_, wire)| wire.msgid() == Some(msgid));
            if found {
                let (_, millis, seq) = stored_key.value();
                return Ok(Some((millis, seq)));
            }
        }
        Ok(None)
    }

    /// The first `limit` messages in `from..to`, ascending.
    fn first(&self, from: Point, to: Point, limit: usize) -> Result<Vec<Replayed>, redb::Error> {
        if limit == 0 || from >= to {
            return Ok(Vec::new());
        }
        let range = self
            .messages
            .range((self.key, from.0, from.1)..(self.key, to.0, to.1))?;
        let mut found = Vec::new();
        for entry in range {
            let (stored_key, value) = entry?;
            found.extend(self.visible(stored_key.value(), value.value()));
            if found.len() == limit {
                break;
            }
        }
        let pending = self
            .pending
            .iter()
            .filter(|r| from <= r.point && r.point < to);
        found.extend(pending.filter_map(|r| self.pending_visible(r)).take(limit));
        found.sort_by_key(|(point, _)| *point);
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, replayed)| replayed).collect())
    }

    /// The last `limit` messages in `from..to`, ascending.
    fn last(&self, from: Point, to: Point, limit: usize) -> Result<Vec<Replayed>, redb::Error> {
        if limit == 0 || from >= to {
            return Ok(Vec::new());
        }
        let range = self
            .messages
            .range((self.key, from.0, from.1)..(self.key, to.0, to.1))?;
        let mut found = Vec::new();
        for entry in range.rev() {
            let (stored_key, value) = entry?;
            found.extend(self.visible(stored_key.value(), value.value()));
            if found.len() == limit {
                break;
            }
        }
        let pending = self.pending.iter().rev();
        let pending = pending.filter(|r| from <= r.point && r.point < to);
        found.extend(pending.filter_map(|r| self.pending_visible(r)).take(limit));
        found.sort_by_key(|(point, _)| *point);
        let surplus = found.len().saturating_sub(limit);
        Ok(found
            .into_iter()
            .skip(surplus)
            .map(|(_, replayed)| replayed)
            .collect())
    }

    /// See [`latest_time`]; the newest of the stored and the pending messages.
    fn latest_time(&self, from_ms: u64, to_ms: u64) -> Result<Option<u64>, redb::Error> {
        let floor = self.floor.max(self.dropped_before);
        let key = self.key;
        let mut stored = None;
        for entry in self
            .messages
            .range((key, floor.0, floor.1)..(key, u64::MAX, u64::MAX))?
            .rev()
        {
            let (stored_key, value) = entry?;
            if value.value().first() == Some(&(Kind::Message as u8)) {
                let (_, millis, seq) = stored_key.value();
                stored = Some((millis, seq));
                break;
            }
        }
        let pending = self
            .pending
            .iter()
            .rev()
            .find(|r| r.kind == Kind::Message && r.point >= floor)
            .map(|r| r.point);
        let latest = stored.max(pending).map(|(millis, _)| millis);
        Ok(latest.filter(|&millis| from_ms < millis && millis < to_ms))
    }

    /// The point of the `n`th record (from 0, any kind) of the target, stored and
    /// pending together; past the end if there are fewer. Reads `n + 1` keys.
    fn nth_point(&self, n: usize) -> Result<Point, redb::Error> {
        let key = self.key;
        let mut points = Vec::with_capacity(2 * n + 2);
        for entry in self
            .messages
            .range((key, 0, 0)..(key, u64::MAX, u64::MAX))?
            .take(n + 1)
        {
            let (_, millis, seq) = entry?.0.value();
            points.push((millis, seq));
        }
        points.extend(self.pending.iter().take(n + 1).map(|r| r.point));
        points.sort_unstable();
        Ok(points.get(n).copied().unwrap_or((u64::MAX, u64::MAX)))
    }

    /// A stored message at its point, if this reader sees it.
    fn visible(
        &self,
        (_, millis, seq): (&str, u64, u64),
        value: &[u8],
    ) -> Option<(Point, Replayed)> {
        let (kind, wire) = decode(value)?;
        Some(((millis, seq), shown(self.event_playback, kind, wire)?))
    }

    /// A pending record as the writer will store it, if this reader sees it.
    fn pending_visible(&self, record: &Pending) -> Option<(Point, Replayed)> {
        let replayed = shown(self.event_playback, record.kind, record.wire.clone())?;
        Some((record.point, replayed))
    }
}

/// A message as it is replayed, if this reader sees its kind; parts this version
/// cannot read are skipped (a pending record goes through the same check, so it
/// reads as it will once stored).
fn shown(event_playback: bool, kind: Kind, wire: WireOutgoing) -> Option<Replayed> {
    if kind != Kind::Message && !event_playback {
        return None;
    }
    let message = Outgoing::from_wire(wire).ok()?;
    Some(Replayed { kind, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::outgoing::MsgId;
    use crate::store::Store;
    use bytes::Bytes;

    fn record(channel: &str, counter: u64) -> Record {
        let line = format!(":a!~a@h PRIVMSG {channel} :{counter}\r\n");
        Record {
            target: Target::Channel(CaselessKey::new(channel)),
            kind: Kind::Message,
            message: Outgoing::new(Bytes::from(line)).with_msgid(MsgId::new(1, 0, counter)),
        }
    }

    fn texts(found: &[Replayed]) -> Vec<String> {
        found
            .iter()
            .map(|replayed| {
                let line = replayed.message.to_wire();
                let msgid = line.msgid().unwrap_or_default();
                String::from_utf8_lossy(msgid).into_owned()
            })
            .collect()
    }

    fn read(
        store: &Store,
        job: impl FnOnce(&WriteTransaction) -> Vec<Replayed> + Send + 'static,
    ) -> Vec<String> {
        let (done, result) = std::sync::mpsc::channel();
        store
            .write(Box::new(move |transaction| {
                let _ = done.send(texts(&job(transaction)));
                Ok(())
            }))
            .expect("queued");
        result.recv().expect("the writer answers")
    }

    const KEEP_ALL: Retention = Retention {
        max_messages: 100,
        max_age_ms: u64::MAX,
    };

    #[test]
    fn messages_of_one_millisecond_keep_the_order_they_were_handed_over() {
        let store = Store::open(&crate::store::test_dir()).expect("the store opens");
        let records: Vec<Record> = (1..=5).map(|n| record("#Same", n)).collect();
        let now = now_millis();
        store
            .write(Box::new(move |t| append(t, &records, KEEP_ALL, now)))
            .expect("queued");
        let latest = read(&store, |t| {
            query(t, "#same", &Selection::Latest(None), 10, 0, false).expect("read")
        });
        assert_eq!(latest, ["1-0-1", "1-0-2", "1-0-3", "1-0-4", "1-0-5"]);
        let after = read(&store, |t| {
            let second = Reference::MsgId(b"1-0-2".to_vec());
            query(
                t,
                &target_key("#SAME"),
                &Selection::After(second),
                2,
                0,
                false,
            )
            .expect("read")
        });
        assert_eq!(after, ["1-0-3", "1-0-4"]);
    }

    #[test]
    fn the_sweep_drops_messages_past_their_age_with_their_msgids() {
        let store = Store::open(&crate::store::test_dir()).expect("the store opens");
        let records = vec![record("#old", 1), record("#old", 2)];
        let now = now_millis();
        store
            .write(Box::new(move |t| append(t, &records, KEEP_ALL, now)))
            .expect("queued");
        let an_hour = Retention {
            max_messages: 100,
            max_age_ms: 3_600_000,
        };
        let later = now + 2 * 3_600_000;
        store
            .write(Box::new(move |t| expire_all(t, an_hour, later)))
            .expect("queued");
        let left = read(&store, |t| {
            query(t, "#old", &Selection::Latest(None), 10, 0, false).expect("read")
        });
        assert!(left.is_empty(), "{left:?}");
        let by_id = read(&store, |t| {
            let known = t
                .open_table(MSGIDS)
                .expect("table")
                .get(b"1-0-1".as_slice())
                .expect("get")
                .is_some();
            assert!(!known, "the msgid index forgot the message");
            Vec::new()
        });
        assert!(by_id.is_empty());
    }

    fn direct(from: Party, to: Party, counter: u64, kind: Kind) -> Record {
        let line = format!(":x!~x@h PRIVMSG y :{counter}\r\n");
        Record {
            target: Target::Direct(Conversation::between(from, to).expect("kept")),
            kind,
            message: Outgoing::new(Bytes::from(line)).with_msgid(MsgId::new(1, 0, counter)),
        }
    }

    #[test]
    fn a_conversation_is_one_history_whoever_speaks_and_is_listed_for_its_accounts() {
        let store = Store::open(&crate::store::test_dir()).expect("the store opens");
        let alice = || Party::account("Alice", "alice_");
        let bob = || Party::nick("Bob");
        let records = vec![
            direct(alice(), bob(), 1, Kind::Message),
            direct(bob(), alice(), 2, Kind::Message),
            direct(alice(), bob(), 3, Kind::Tagmsg),
        ];
        let now = now_millis();
        store
            .write(Box::new(move |t| append(t, &records, KEEP_ALL, now)))
            .expect("queued");
        let key = Target::Direct(Conversation::between(bob(), alice()).expect("kept")).key();
        let plain = read(&store, {
            let key = key.clone();
            move |t| query(t, &key, &Selection::Latest(None), 10, 0, false).expect("read")
        });
        assert_eq!(plain, ["1-0-1", "1-0-2"]);
        let with_events = read(&store, move |t| {
            query(t, &key, &Selection::Latest(None), 10, 0, true).expect("read")
        });
        assert_eq!(with_events, ["1-0-1", "1-0-2", "1-0-3"]);
        let (done, listed) = std::sync::mpsc::channel();
        store
            .write(Box::new(move |t| {
                let alices = conversations_of(t, &Party::account("ALICE", "a"))?;
                let bobs = conversations_of(t, &Party::account("bob", "b"))?;
                let _ = done.send((alices, bobs));
                Ok(())
            }))
            .expect("queued");
        let (alices, bobs) = listed.recv().expect("the writer answers");
        assert_eq!(alices.len(), 1);
        assert_eq!(alices[0].1, "Bob");
        assert!(bobs.is_empty(), "a nick's side lists nothing: {bobs:?}");
    }

    #[test]
    fn an_event_kept_by_several_shards_is_stored_once() {
        let store = Store::open(&crate::store::test_dir()).expect("the store opens");
        let event = Record {
            kind: Kind::Event,
            ..record("#e", 7)
        };
        let now = now_millis();
        for _ in 0..3 {
            let records = vec![event.clone()];
            store
                .write(Box::new(move |t| append(t, &records, KEEP_ALL, now)))
                .expect("queued");
        }
        let kept = read(&store, |t| {
            query(t, "#e", &Selection::Latest(None), 10, 0, true).expect("read")
        });
        assert_eq!(kept, ["1-0-7"]);
    }

    #[test]
    fn an_event_kept_in_several_channels_is_found_by_its_msgid_in_each() {
        let store = Store::open(&crate::store::test_dir()).expect("the store opens");
        let quit = Outgoing::new(Bytes::from_static(b":a!~a@h QUIT :bye\r\n"))
            .with_msgid(MsgId::new(1, 0, 99));
        let event = |channel: &str| Record {
            target: Target::Channel(CaselessKey::new(channel)),
            kind: Kind::Event,
            message: quit.clone(),
        };
        let records = vec![record("#a", 1), event("#a"), event("#b"), record("#a", 2)];
        let now = now_millis();
        store
            .write(Box::new(move |t| append(t, &records, KEEP_ALL, now)))
            .expect("queued");
        let quit_id = || Reference::MsgId(b"1-0-63".to_vec()); // 99 in hex
        let after = read(&store, move |t| {
            query(t, "#a", &Selection::After(quit_id()), 10, 0, true).expect("read")
        });
        assert_eq!(after, ["1-0-2"]);
        let before = read(&store, move |t| {
            query(t, "#a", &Selection::Before(quit_id()), 10, 0, true).expect("read")
        });
        assert_eq!(before, ["1-0-1"]);
    }

    #[test]
    fn a_conversation_between_two_nicks_is_not_kept() {
        assert!(Conversation::between(Party::nick("a"), Party::nick("b")).is_none());
        assert!(Conversation::between(Party::nick("a"), Party::account("b", "b")).is_some());
    }

    /// `record` at millisecond `millis`, of `kind`.
    fn at(mut record: Record, millis: u64, kind: Kind) -> Record {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        record.message = record.message.at(time);
        record.kind = kind;
        record
    }

    /// Every selection the merge must answer as the writer does, with its limit.
    fn selections(t: u64) -> Vec<(Selection, usize)> {
        let id = |n: u64| Reference::MsgId(MsgId::new(1, 0, n).as_bytes().to_vec());
        let references = [
            id(3),
            id(11),
            id(12),
            id(16),
            id(51),
            id(99),
            Reference::Time(t),
            Reference::Time(t + 2),
            Reference::Time(t + 3),
        ];
        let mut all = Vec::new();
        for limit in [1, 2, 3, 100] {
            all.push((Selection::Latest(None), limit));
            for reference in &references {
                let reference = reference.clone();
                all.push((Selection::Latest(Some(reference.clone())), limit));
                all.push((Selection::Before(reference.clone()), limit));
                all.push((Selection::After(reference.clone()), limit));
                all.push((Selection::Around(reference.clone()), limit));
                for other in [
                    id(2),
                    id(14),
                    Reference::Time(t + 1),
                    Reference::Time(t + 4),
                ] {
                    all.push((Selection::Between(reference.clone(), other.clone()), limit));
                    all.push((Selection::Between(other, reference.clone()), limit));
                }
            }
        }
        all
    }

    /// What the merge answers (`merged`, from a snapshot and the tail) and what the
    /// writer answers once the tail is committed: the same, for every selection,
    /// both playback modes and an age floor inside the data.
    fn answers(
        t: u64,
        ask: impl Fn(&str, &Selection, usize, u64, bool) -> Vec<Replayed>,
    ) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        for key in ["#mix", "#other"] {
            for (selection, limit) in selections(t) {
                for oldest_ms in [0, t + 2] {
                    for playback in [false, true] {
                        all.push(texts(&ask(key, &selection, limit, oldest_ms, playback)));
                    }
                }
            }
        }
        all
    }

    fn tail_and_store_agree(retention: Retention) {
        let store = Store::open(&crate::store::test_dir()).expect("the store opens");
        let t = now_millis() - 60_000;
        let alice = || Party::account("Alice", "alice_");
        // (channel, counter, milliseconds after t, kind, committed before the query).
        // The uncommitted ones have times equal to stored ones and to each other, and
        // one is older than the newest stored (another shard's clock).
        let records = [
            ("#mix", 1, 0, Kind::Message, true),
            ("#mix", 2, 0, Kind::Message, true),
            ("#mix", 3, 1, Kind::Message, true),
            ("#MIX", 7, 1, Kind::Tagmsg, true),
            ("#other", 50, 1, Kind::Message, true),
            ("#mix", 4, 2, Kind::Message, true),
            ("#mix", 5, 2, Kind::Event, true),
            ("#mix", 6, 3, Kind::Message, true),
            ("#mix", 10, 2, Kind::Message, false),
            ("#Mix", 11, 3, Kind::Message, false),
            ("#mix", 12, 3, Kind::Message, false),
            ("#mix", 13, 1, Kind::Message, false),
            ("#mix", 14, 4, Kind::Tagmsg, false),
            ("#other", 51, 3, Kind::Message, false),
            ("#mix", 15, 4, Kind::Message, false),
            ("#mix", 16, 4, Kind::Message, false),
            // Events several shards handed over: a copy of a stored one, and a new
            // one twice. Stored and read once each.
            ("#mix", 5, 2, Kind::Event, false),
            ("#mix", 17, 4, Kind::Event, false),
            ("#mix", 17, 4, Kind::Event, false),
        ];
        let part = |committed: bool| -> Vec<Record> {
            let part = records.iter().filter(|r| r.4 == committed);
            part.map(|&(channel, n, millis, kind, _)| at(record(channel, n), t + millis, kind))
                .collect()
        };
        let mut committed = part(true);
        committed.push(direct(alice(), Party::nick("Bob"), 60, Kind::Message));
        keep(&store, committed, retention, t + 5).expect("queued");
        store.sync().expect("committed");
        let mut tail = part(false);
        tail.push(direct(Party::nick("Bob"), alice(), 61, Kind::Message));
        tail.push(direct(alice(), Party::nick("Carol"), 62, Kind::Message));
        let view = |id| {
            vec![Arc::new(Kept {
                id,
                records: tail.clone(),
                retention,
            })]
        };
        let snapshot = store.read().expect("a snapshot");
        let next =
            1 + kept_through(&snapshot.open_table(KEPT_THROUGH).expect("table")).expect("read");
        drop(snapshot);
        let merged = Snapshot::open(&store.database, view(next)).expect("a snapshot");
        let merged_answers = answers(t, |key, selection, limit, oldest, playback| {
            query(&merged, key, selection, limit, oldest, playback).expect("read")
        });
        let merged_latest = ["#mix", "#other", "#none"].map(|key| {
            [(0, u64::MAX), (t, t + 4), (t + 1, t + 3)]
                .map(|(from, to)| latest_time(&merged, key, from, to, 0).expect("read"))
        });
        let mut merged_conversations = conversations_of(&merged, &alice()).expect("read");
        merged_conversations.sort();
        drop(merged);

        keep(&store, tail.clone(), retention, t + 5).expect("queued");
        store.sync().expect("committed");
        let database = store.database.clone();
        let writer_answers = {
            let (done, answer) = std::sync::mpsc::channel();
            store
                .write(Box::new(move |w| {
                    let texts = answers(t, |key, selection, limit, oldest, playback| {
                        query(w, key, selection, limit, oldest, playback).expect("read")
                    });
                    let latest = ["#mix", "#other", "#none"].map(|key| {
                        [(0, u64::MAX), (t, t + 4), (t + 1, t + 3)]
                            .map(|(from, to)| latest_time(w, key, from, to, 0).expect("read"))
                    });
                    let mut conversations = conversations_of(w, &alice()).expect("read");
                    conversations.sort();
                    let _ = done.send((texts, latest, conversations));
                    Ok(())
                }))
                .expect("queued");
            answer.recv().expect("the writer answers")
        };
        assert_eq!(merged_latest, writer_answers.1);
        assert_eq!(merged_conversations, writer_answers.2);
        assert_eq!(merged_answers.len(), writer_answers.0.len());
        for (index, (merged, written)) in merged_answers.iter().zip(&writer_answers.0).enumerate() {
            assert_eq!(merged, written, "answer {index}");
        }
        // The same view once committed: the snapshot holds it, so it is not read twice.
        let after = Snapshot::open(&database, view(next)).expect("a snapshot");
        let again = answers(t, |key, selection, limit, oldest, playback| {
            query(&after, key, selection, limit, oldest, playback).expect("read")
        });
        assert_eq!(again, writer_answers.0);
    }

    #[test]
    fn a_query_over_committed_and_uncommitted_records_answers_as_the_writer_will() {
        tail_and_store_agree(KEEP_ALL);
    }

    #[test]
    fn uncommitted_records_drop_from_a_query_what_count_retention_will_drop() {
        tail_and_store_agree(Retention {
            max_messages: 5,
            max_age_ms: u64::MAX,
        });
    }

    /// The counters of `channel`'s messages, as a reader finds them.
    fn counters_read(store: &Store, channel: &'static str) -> Vec<u64> {
        let (done, answer) = std::sync::mpsc::channel();
        store
            .read_history(Box::new(move |snapshot| {
                let snapshot = snapshot.expect("a snapshot");
                let found = query(snapshot, channel, &Selection::Latest(None), 1000, 0, false)
                    .expect("read");
                let _ = done.send(texts(&found));
            }))
            .expect("queued");
        let found = answer.recv().expect("a reader answers");
        found
            .iter()
            .map(|id| {
                let counter = id.rsplit('-').next().unwrap_or_default();
                u64::from_str_radix(counter, 16).expect("a counter")
            })
            .collect()
    }

    #[test]
    fn queries_while_the_writer_appends_miss_and_repeat_nothing_handed_over() {
        let store = Arc::new(Store::open(&crate::store::test_dir()).expect("opens"));
        const FLUSHES: u64 = 150;
        // Two "shards", each flushing to its channel then asking, as CHATHISTORY
        // does, and reading the other's channel while it is written.
        let shards = [("#busy0", "#busy1"), ("#busy1", "#busy0")].map(|(own, other)| {
            let store = store.clone();
            std::thread::spawn(move || {
                for flush in 0..FLUSHES {
                    let records = (1..=3).map(|n| record(own, flush * 3 + n)).collect();
                    keep(&store, records, KEEP_ALL_BUSY, now_millis()).expect("queued");
                    let handed_over: Vec<u64> = (1..=flush * 3 + 3).collect();
                    assert_eq!(counters_read(&store, own), handed_over, "flush {flush}");
                    let seen = counters_read(&store, other);
                    let prefix: Vec<u64> = (1..=seen.len() as u64).collect();
                    assert_eq!(seen, prefix, "in order, none missing or twice");
                }
            })
        });
        for shard in shards {
            shard
                .join()
                .expect("every query found what was handed over");
        }
        store.sync().expect("committed");
        assert!(
            store.uncommitted().view().is_empty(),
            "committed flushes leave the tail"
        );
    }

    const KEEP_ALL_BUSY: Retention = Retention {
        max_messages: 10_000,
        max_age_ms: u64::MAX,
    };

    fn now_millis() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}
