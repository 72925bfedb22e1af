//! The wire form of network state: how an [`Event`] (and, in [`super::snapshot`], a
//! whole replica) travels between the nodes of a cluster as bytes.
//!
//! Encoding is serde into `postcard` (compact varints, no field names, no schema
//! files), after one format byte, so that a node reading bytes written by a build
//! with another layout says so instead of misreading them. Decoding never trusts the
//! bytes: garbage or truncated input is an error, never a panic; the input is
//! consumed exactly (trailing bytes are an error); and memory stays proportional to
//! the input: postcard reads a length prefix only as a count of elements that must
//! each still be in the input (every element we decode takes at least one byte),
//! and serde preallocates at most 1 MiB for a sequence whatever its prefix claims.

use super::event::Event;
use serde::{Deserialize, Serialize};

/// The layout of encoded events; bump it when [`Event`] or anything in it changes
/// shape.
pub const EVENT_FORMAT: u8 = 3;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not even the format byte.
    #[error("{what}: no bytes to decode")]
    Empty {
        /// `event` or `snapshot`.
        what: &'static str,
    },
    /// Written by a build with another layout.
    #[error("{what} is in format {found}; this build reads format {expected}")]
    UnknownFormat {
        /// `event` or `snapshot`.
        what: &'static str,
        /// The format byte read.
        found: u8,
        /// The format this build writes and reads.
        expected: u8,
    },
    /// The bytes do not hold a value of the expected shape (truncated, corrupt).
    #[error("{what} of {len} bytes is malformed: {source}")]
    Malformed {
        /// `event` or `snapshot`.
        what: &'static str,
        /// How many bytes were given.
        len: usize,
        /// What postcard found wrong.
        #[source]
        source: postcard::Error,
    },
    /// A whole value was read and bytes were left over.
    #[error("{what} of {len} bytes has {extra} bytes after its end")]
    TrailingBytes {
        /// `event` or `snapshot`.
        what: &'static str,
        /// How many bytes were given.
        len: usize,
        /// How many were left after the value.
        extra: usize,
    },
    /// A snapshot decoded but breaks an invariant of the state (a member who is not
    /// a user, a nick held twice, a list past its bound, ...).
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// Encodes `event` for another node. O(size of the event), one allocation.
pub fn encode_event(event: &Event) -> Vec<u8> {
    encode(EVENT_FORMAT, event)
}

/// Decodes an event encoded by [`encode_event`] (by a build with the same
/// [`EVENT_FORMAT`]). A registration's activity clock becomes an
/// [`Activity::remote`](super::Activity::remote).
pub fn decode_event(bytes: &[u8]) -> Result<Event, WireError> {
    decode("event", EVENT_FORMAT, bytes)
}

/// `format`, then `value` in postcard.
pub(super) fn encode<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    // Serializing into a Vec fails only for a sequence of unknown length or a
    // failing `Serialize` impl; the state's types have neither.
    postcard::to_extend(value, vec![format]).expect("network state always serializes")
}

/// Reads `format` and then exactly one `T` from `bytes`; see the module comment.
pub(super) fn decode<'de, T: Deserialize<'de>>(
    what: &'static str,
    format: u8,
    bytes: &'de [u8],
) -> Result<T, WireError> {
    let (&found, body) = bytes.split_first().ok_or(WireError::Empty { what })?;
    if found != format {
        return Err(WireError::UnknownFormat {
            what,
            found,
            expected: format,
        });
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|source| WireError::Malformed {
        what,
        len: bytes.len(),
        source,
    })?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes {
            what,
            len: bytes.len(),
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// Every input a hostile or broken peer could derive from `bytes`: each truncation,
/// and each byte replaced by values that break varints, lengths, tags and UTF-8.
/// Shared by the wire and snapshot tests.
#[cfg(test)]
pub(super) fn corruptions(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let truncations = (0..bytes.len()).map(|len| bytes[..len].to_vec());
    let replacements = (0..bytes.len()).flat_map(move |at| {
        [0x00, 0x01, 0x7f, 0x80, 0xff, bytes[at] ^ 0x01]
            .into_iter()
            .map(move |value| {
                let mut corrupt = bytes.to_vec();
                corrupt[at] = value;
                corrupt
            })
    });
    truncations.chain(replacements)
}

#[cfg(test)]
mod tests {
    use super::super::modes::{MaskList, ModeChange};
    use super::super::server_bans::{BanTarget, ServerBan};
    use super::super::{Activity, Network, Sequenced};
    use super::*;
    use crate::state::slab::SlotKey;
    use crate::state::ClientId;
    use std::sync::Arc;
    use std::time::Instant;

    const ALICE: ClientId = ClientId {
        node: 3,
        shard: 1,
        slot: SlotKey {
            index: 70_000,
            generation: 3,
        },
    };

    fn ban(target: BanTarget, expires_at: Option<u64>) -> ServerBan {
        ServerBan {
            target,
            reason: "spam".into(),
            set_by: "oper".into(),
            set_at: 1_700_000_000,
            expires_at,
        }
    }

    /// One of every variant, with the optional parts both present and absent, and
    /// text that is not UTF-8 where the protocol passes bytes through.
    fn every_variant() -> Vec<Event> {
        let client = ALICE;
        vec![
            Event::ClaimNick {
                client,
                nick: "Alice".into(),
            },
            Event::ReleaseNick { client },
            Event::Register {
                client,
                user: "~alice".into(),
                host: "k3vq7m2xa9pqe.ip".into(),
                address: "2001:db8::1".into(),
                tls: true,
                realname: "Alice Liddell".into(),
                activity: Arc::new(Activity::new(Instant::now(), 1_700_000_000)),
            },
            Event::ChangeNick {
                client,
                nick: "Alicia".into(),
            },
            Event::Join {
                client,
                channel: "#Rust".into(),
                key: Some(b"k\xffey".as_slice().into()),
                channel_limit: 50,
            },
            Event::Join {
                client,
                channel: "#c".into(),
                key: None,
                channel_limit: u32::MAX,
            },
            Event::Part {
                client,
                channel: "#Rust".into(),
                reason: Some(b"bye \xe9".as_slice().into()),
            },
            Event::Part {
                client,
                channel: "#Rust".into(),
                reason: None,
            },
            Event::Kick {
                client,
                channel: "#Rust".into(),
                target: "bob".into(),
                reason: b"".as_slice().into(),
            },
            Event::Quit {
                client,
                reason: "Quit: \u{1f44b}".into(),
            },
            Event::SetTopic {
                client,
                channel: "#Rust".into(),
                text: b"topic \x01ACTION\x01".as_slice().into(),
            },
            Event::Invite {
                client,
                target: "bob".into(),
                channel: "#Rust".into(),
            },
            Event::ChangeModes {
                client,
                channel: "#Rust".into(),
                changes: vec![
                    ModeChange::Flag {
                        add: true,
                        mode: 'm',
                    },
                    ModeChange::Key {
                        add: true,
                        key: "sekrit".into(),
                    },
                    ModeChange::Key {
                        add: false,
                        key: String::new(),
                    },
                    ModeChange::Limit(Some(usize::MAX)),
                    ModeChange::Limit(None),
                    ModeChange::Mask {
                        list: MaskList::InviteException,
                        add: false,
                        mask: "*!*@192.0.2.*".into(),
                    },
                    ModeChange::Member {
                        add: true,
                        mode: 'o',
                        nick: "bob".into(),
                    },
                ],
            },
            Event::SetAway {
                client,
                message: Some(b"lunch".as_slice().into()),
            },
            Event::SetAway {
                client,
                message: None,
            },
            Event::SetInvisible {
                client,
                invisible: true,
            },
            Event::SetBot { client, bot: false },
            Event::SetRealname {
                client,
                realname: "A. L.".into(),
            },
            Event::SetOper {
                client,
                oper: Some("admin".into()),
            },
            Event::SetOper { client, oper: None },
            Event::SetWallops {
                client,
                wallops: true,
            },
            Event::Kill {
                client,
                target: "bob".into(),
                reason: "flooding".into(),
            },
            Event::AddBan {
                client,
                ban: ban(BanTarget::User("~bad*@*".into()), Some(u64::MAX)),
            },
            Event::RemoveBan {
                client,
                target: BanTarget::Address("2001:db8::/32".parse().expect("network")),
            },
            Event::ReplaceBans {
                bans: vec![
                    ban(
                        BanTarget::Address("192.0.2.0/24".parse().expect("network")),
                        None,
                    ),
                    ban(BanTarget::User("*@198.51.100.7".into()), Some(0)),
                ],
            },
            Event::ReplaceBans { bans: Vec::new() },
            Event::node_lost(3, "node 3 stopped"),
            Event::Wallops {
                client,
                text: b"hello opers".as_slice().into(),
            },
            Event::SetReadMarker {
                client,
                target: "#Rust".into(),
                millis: 1_764_000_000_123,
            },
        ]
    }

    #[test]
    fn every_event_round_trips() {
        let events = every_variant();
        for event in &events {
            let bytes = encode_event(event);
            let decoded = decode_event(&bytes).expect("decodes");
            assert_eq!(&decoded, event, "{bytes:?}");
        }
    }

    #[test]
    fn a_registration_carries_only_the_signon_and_arrives_idle_from_now() {
        let long_ago = Instant::now();
        let activity = Arc::new(Activity::new(long_ago, 1_234));
        let event = Event::Register {
            client: ALICE,
            user: "~a".into(),
            host: "h".into(),
            address: "h".into(),
            tls: false,
            realname: "r".into(),
            activity,
        };
        let Event::Register { activity, .. } =
            decode_event(&encode_event(&event)).expect("decodes")
        else {
            panic!("a registration decodes as one");
        };
        assert_eq!(activity.signon(), 1_234);
        assert_eq!(activity.idle_secs(Instant::now()), 0);
    }

    #[test]
    fn a_small_event_is_a_few_bytes() {
        let bytes = encode_event(&Event::SetAway {
            client: ALICE,
            message: None,
        });
        // format, variant, node, shard, slot index (3-byte varint), generation, and
        // the option's tag.
        assert_eq!(bytes.len(), 9, "{bytes:?}");
    }

    #[test]
    fn bytes_from_another_layout_or_with_leftovers_are_refused() {
        let bytes = encode_event(&Event::ReleaseNick { client: ALICE });
        assert!(matches!(decode_event(&[]), Err(WireError::Empty { .. })));
        let mut other_format = bytes.clone();
        other_format[0] = EVENT_FORMAT + 1;
        assert!(matches!(
            decode_event(&other_format),
            Err(WireError::UnknownFormat { found, .. }) if found == EVENT_FORMAT + 1
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode_event(&longer),
            Err(WireError::TrailingBytes { extra: 1, .. })
        ));
        let truncated = &bytes[..bytes.len() - 1];
        let message = decode_event(truncated).expect_err("truncated").to_string();
        let expected = format!("event of {} bytes is malformed", truncated.len());
        assert!(message.starts_with(&expected), "{message}");
    }

    /// A length prefix claiming more elements than any memory holds is an error at
    /// once: nothing is reserved for elements that are not in the input.
    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let mut bytes = encode_event(&Event::ReplaceBans { bans: Vec::new() });
        bytes.pop();
        bytes.extend_from_slice(&huge);
        assert!(matches!(
            decode_event(&bytes),
            Err(WireError::Malformed { .. })
        ));
        let mut text = encode_event(&Event::ClaimNick {
            client: ALICE,
            nick: "".into(),
        });
        text.pop();
        text.extend_from_slice(&huge);
        assert!(decode_event(&text).is_err());
    }

    /// Truncated and corrupted encodings of real events decode to an error or to some
    /// valid event, which a replica then applies without panicking.
    #[test]
    fn corrupt_events_are_errors_or_valid_events_never_panics() {
        let mut replica = Network::new(2);
        let mut seq = 0;
        let (mut refused, mut accepted) = (0, 0);
        for event in every_variant() {
            for corrupt in corruptions(&encode_event(&event)) {
                match decode_event(&corrupt) {
                    Err(_) => refused += 1,
                    Ok(event) => {
                        accepted += 1;
                        seq += 1;
                        replica.apply(&Sequenced {
                            seq,
                            origin: 0,
                            proposal: 0,
                            at_unix: 0,
                            event,
                        });
                    }
                }
            }
        }
        assert!(
            refused > 0 && accepted > 0,
            "{refused} refused, {accepted} accepted"
        );
    }
}
