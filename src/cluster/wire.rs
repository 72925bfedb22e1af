//! What cluster nodes send each other through NATS, and the subjects it travels on.
//!
//! Two kinds of traffic, on purpose on two paths:
//! - **events** (state changes) go to one JetStream stream, whose order is the
//!   cluster's total order: [`EventEnvelope`] on [`Subjects::events`];
//! - **messages** (PRIVMSG, NOTICE, TAGMSG to channels and users) go on core NATS, to
//!   the nodes that have recipients (and, kept in history, to every live node):
//!   [`MessageHeader`] plus a [`MessageBody`] and an optional [`Kept`] trailer on
//!   [`Subjects::node`] of each such node. The body is serialized once per message
//!   and sent unchanged to every node; only the small header differs.
//!
//! Every decoder treats the bytes as hostile: a malformed payload is an error that
//! the link counts and logs, never a panic.

use crate::proto::outgoing::{Outgoing, WireOutgoing};
use crate::state::ClientId;
use serde::{Deserialize, Serialize};

/// The NATS names of one cluster (one `--network`).
#[derive(Debug, Clone)]
pub struct Subjects {
    /// The JetStream stream holding the events.
    pub stream: String,
    /// The subject events are published on (the stream's only subject).
    pub events: String,
    /// Heartbeats of every node.
    pub heartbeat: String,
    /// The object store bucket holding snapshots.
    pub snapshots: String,
    /// The key-value bucket of node id leases ([`super::lease`]).
    pub node_ids: String,
    /// Prefix of the per-node message subjects.
    node_prefix: String,
}

impl Subjects {
    /// The names for network `network`; characters NATS gives a meaning to (`.`, `*`,
    /// `>`, spaces) become `_`, so any network name is safe.
    pub fn for_network(network: &str) -> Subjects {
        let token: String = network
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Subjects {
            stream: format!("RINGCHAT_{token}"),
            events: format!("ringchat.{token}.events"),
            heartbeat: format!("ringchat.{token}.heartbeat"),
            snapshots: format!("ringchat_{token}_snapshots"),
            node_ids: format!("ringchat_{token}_node_ids"),
            node_prefix: format!("ringchat.{token}.node."),
        }
    }

    /// Where messages for node `node`'s users go.
    pub fn node(&self, node: u16) -> String {
        format!("{}{node}", self.node_prefix)
    }
}

/// One proposed event as published to the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// The proposing node.
    pub node: u16,
    /// Which run of that node (its link's start time in Unix microseconds): a
    /// restarted node numbers its proposals and messages afresh.
    pub incarnation: u64,
    /// The proposing shard (or the proposing node's link endpoint).
    pub shard: u16,
    /// The shard's number for the proposal, so it finds its entry.
    pub proposal: u64,
    /// Wall-clock time of the proposal, Unix seconds (becomes the entry's time).
    pub at_unix: u64,
    /// When it was published, Unix microseconds: receivers measure the apply lag.
    pub published_micros: u64,
    /// How many messages the proposing node had published to each node (indexed by
    /// node number) before this event: a receiver forwards that many from it first,
    /// so a PRIVMSG sent before a PART arrives before the PART everywhere.
    pub sent: Vec<u64>,
    /// The event, as [`crate::state::network::wire::encode_event`] wrote it.
    pub event: Vec<u8>,
}

/// The per-destination part of a cross-node message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageHeader {
    /// The sending node.
    pub from: u16,
    /// Which run of it (see [`EventEnvelope::incarnation`]).
    pub incarnation: u64,
    /// This is the `number`-th message `from` sent to this node (from 1).
    pub number: u64,
    /// The last stream entry the sending shard had applied: the receiver applies the
    /// log that far first (a JOIN before the message that follows it).
    pub after: u64,
}

/// What a cross-node message asks the receiving node to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Deliver to the receiving node's members of `channel`, but `except`.
    Channel {
        /// The channel name.
        channel: Box<str>,
        /// The sender, when it must not get its own message.
        except: Option<ClientId>,
        /// The message.
        message: WireOutgoing,
    },
    /// Deliver to one user of the receiving node.
    Client {
        /// The recipient.
        to: ClientId,
        /// The message.
        message: WireOutgoing,
    },
}

/// How the receiving node keeps a message in its history, as the sending node kept
/// it. Sent after the [`MessageBody`] as an optional trailer, so the format stays
/// compatible both ways: a node that predates it reads the body and ignores what
/// follows (postcard leaves trailing bytes unread), and a message without it (from
/// such a node), or with one this node cannot read, is delivered and not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kept {
    /// In the channel's history (the body is a [`MessageBody::Channel`]).
    Channel {
        /// A TAGMSG (replayed with `draft/event-playback` only), else PRIVMSG or
        /// NOTICE.
        tagmsg: bool,
    },
    /// In the conversation of `from` and the recipient (the body is a
    /// [`MessageBody::Client`]), which the receiving node finds in its replica.
    Direct {
        /// The sender.
        from: ClientId,
        /// See [`Kept::Channel`].
        tagmsg: bool,
    },
}

/// A decoded message: what to deliver and how to keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// What to deliver.
    pub body: MessageBody,
    /// How to keep it in history, if the sender asked.
    pub kept: Option<Kept>,
}

/// Why a payload from NATS was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not postcard of the expected shape.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What postcard found wrong.
        #[source]
        source: postcard::Error,
    },
    /// Decoded, but the message inside cannot be delivered as it is.
    #[error(transparent)]
    Outgoing(#[from] crate::proto::outgoing::MalformedOutgoing),
}

/// Encodes a value that cannot fail to encode (no maps of unknown length).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Decodes an event envelope.
pub fn decode_envelope(bytes: &[u8]) -> Result<EventEnvelope, PayloadError> {
    postcard::from_bytes(bytes).map_err(|source| PayloadError::Malformed {
        what: "event envelope",
        source,
    })
}

/// A message's body, then its [`Kept`] trailer when it has one: serialized once,
/// sent to every destination.
pub fn encode_body(body: &MessageBody, kept: Option<Kept>) -> Vec<u8> {
    let mut bytes = encode(body);
    if let Some(kept) = kept {
        bytes.extend_from_slice(&encode(&kept));
    }
    bytes
}

/// Header then body: one message's payload for one destination.
pub fn message_payload(header: MessageHeader, body: &[u8]) -> Vec<u8> {
    let mut payload = encode(&header);
    payload.extend_from_slice(body);
    payload
}

/// Splits and decodes a message payload.
pub fn decode_message(bytes: &[u8]) -> Result<(MessageHeader, Received), PayloadError> {
    let (header, rest) = postcard::take_from_bytes::<MessageHeader>(bytes).map_err(|source| {
        PayloadError::Malformed {
            what: "message header",
            source,
        }
    })?;
    let (body, trailer) =
        postcard::take_from_bytes(rest).map_err(|source| PayloadError::Malformed {
            what: "message body",
            source,
        })?;
    let kept = postcard::from_bytes(trailer).ok();
    Ok((header, Received { body, kept }))
}

/// The message inside a body, checked (see [`Outgoing::from_wire`]).
pub fn outgoing(message: WireOutgoing) -> Result<Outgoing, PayloadError> {
    Ok(Outgoing::from_wire(message)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::slab::SlotKey;
    use bytes::Bytes;

    fn alice() -> ClientId {
        ClientId {
            node: 1,
            shard: 0,
            slot: SlotKey {
                index: 7,
                generation: 2,
            },
        }
    }

    #[test]
    fn a_message_crosses_with_its_header_and_tags_intact() {
        let original = Outgoing::new(Bytes::from_static(b":a!~a@h PRIVMSG #c :hi\r\n"))
            .with_client_tags(Some(Bytes::from_static(b"+draft/react=1")))
            .from_bot(true);
        let body = encode(&MessageBody::Channel {
            channel: "#c".into(),
            except: Some(alice()),
            message: original.to_wire(),
        });
        let header = MessageHeader {
            from: 1,
            incarnation: 7,
            number: 42,
            after: 9,
        };
        let (got_header, got) = decode_message(&message_payload(header, &body)).expect("decodes");
        assert_eq!(got_header, header);
        assert_eq!(got.kept, None, "a body without a trailer is not kept");
        let MessageBody::Channel {
            channel,
            except,
            message,
        } = got.body
        else {
            panic!("a channel message");
        };
        assert_eq!((&*channel, except), ("#c", Some(alice())));
        assert_eq!(message, original.to_wire());
        assert!(outgoing(message).is_ok());
    }

    #[test]
    fn hostile_payloads_are_errors_not_panics() {
        let body = encode(&MessageBody::Client {
            to: alice(),
            message: Outgoing::new(Bytes::from_static(b"PING :x\r\n")).to_wire(),
        });
        let payload = message_payload(
            MessageHeader {
                from: 0,
                incarnation: 7,
                number: 1,
                after: 0,
            },
            &body,
        );
        for cut in 0..payload.len() {
            let _ = decode_message(&payload[..cut]);
        }
        for flip in 0..payload.len() {
            let mut bent = payload.clone();
            bent[flip] ^= 0xff;
            let decoded = decode_message(&bent).map(|(_, received)| received.body);
            if let Ok(MessageBody::Client { message, .. }) = decoded {
                let _ = outgoing(message);
            }
        }
        let smuggled = Outgoing::new(Bytes::from_static(b"PRIVMSG a :x\r\nQUIT\r\n")).to_wire();
        assert!(outgoing(smuggled).is_err(), "two lines in one message");
        assert!(decode_envelope(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn the_history_trailer_is_read_by_new_nodes_and_ignored_by_old_ones() {
        let direct = MessageBody::Client {
            to: alice(),
            message: Outgoing::new(Bytes::from_static(b":b!~b@h PRIVMSG a :hi\r\n")).to_wire(),
        };
        let kept = Kept::Direct {
            from: alice(),
            tagmsg: true,
        };
        let header = MessageHeader {
            from: 1,
            incarnation: 7,
            number: 1,
            after: 0,
        };
        let payload = message_payload(header, &encode_body(&direct, Some(kept)));
        let (_, received) = decode_message(&payload).expect("decodes");
        assert_eq!(received.kept, Some(kept));
        assert_eq!(received.body, direct);
        // A node that predates the trailer decodes the body as it always did.
        let (_, body) = postcard::take_from_bytes::<MessageHeader>(&payload).expect("header");
        assert_eq!(
            postcard::from_bytes::<MessageBody>(body).expect("body"),
            direct
        );
        // A trailer from a newer node that this one cannot read: delivered, not kept.
        let mut unknown = message_payload(header, &encode(&direct));
        unknown.push(0x7f);
        let (_, received) = decode_message(&unknown).expect("decodes");
        assert_eq!((received.body, received.kept), (direct, None));
    }

    #[test]
    fn subjects_are_safe_for_any_network_name() {
        let subjects = Subjects::for_network("my net.*>");
        assert_eq!(subjects.events, "ringchat.my_net___.events");
        assert_eq!(subjects.node(3), "ringchat.my_net___.node.3");
        assert_eq!(subjects.stream, "RINGCHAT_my_net___");
    }
}
