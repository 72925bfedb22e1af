//! A message on its way to many recipients, serialized once per distinct set of the
//! capabilities that change its bytes (`server-time`, `message-tags`), not once per
//! recipient.
//!
//! Cost: the plain line is built once by the handler. A tagged variant is built the
//! first time a recipient needs it (one allocation and one copy of the line) and then
//! shared by reference, on this shard and, through a hand-off clone, on the others.
//! The message id ([`MsgId`]) and the `bot` tag live inline in the value and are
//! written only into the tagged variants, so they cost no allocation per recipient.

use crate::proto::caps::{Cap, Caps};
use crate::proto::time::server_time;
use crate::proto::CaselessKey;
use bytes::{BufMut, Bytes, BytesMut};
use std::time::SystemTime;

/// Longest message id: a 13-digit hex start time, the shard, a 16-digit hex counter.
const MSGID_CAPACITY: usize = 40;

/// A server-generated message id (IRCv3 `message-ids`), kept inline so carrying it
/// to every recipient costs nothing. Unique in the process (shard number and a
/// per-shard counter) and across restarts (the server's start time in microseconds).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MsgId {
    bytes: [u8; MSGID_CAPACITY],
    len: u8,
}

impl MsgId {
    /// The id of message number `counter` sent by `shard` of a server started at
    /// `started_micros` (Unix microseconds). Only `[0-9a-z-]`, so it needs no tag
    /// value escaping.
    pub fn new(started_micros: u64, shard: u16, counter: u64) -> MsgId {
        let mut id = MsgId {
            bytes: [0; MSGID_CAPACITY],
            len: 0,
        };
        // At most 16 + 1 + 4 + 1 + 16 hex digits: it fits. Written by hand, not with
        // `write!`: this runs once per message on the hot path.
        id.push_hex(started_micros);
        id.bytes[id.len as usize] = b'-';
        id.len += 1;
        id.push_hex(u64::from(shard));
        id.bytes[id.len as usize] = b'-';
        id.len += 1;
        id.push_hex(counter);
        id
    }

    fn push_hex(&mut self, value: u64) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let digits = ((64 - value.leading_zeros() as usize).div_ceil(4)).max(1);
        for place in (0..digits).rev() {
            self.bytes[self.len as usize] = DIGITS[((value >> (place * 4)) & 0xf) as usize];
            self.len += 1;
        }
    }

    /// The id as text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The members a STATUSMSG (ISUPPORT `STATUSMSG=@+`) is for: `@#c` reaches
/// operators, `+#c` voiced members and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusTarget {
    /// `+`: voiced members and operators.
    Voiced,
    /// `@`: operators.
    Operators,
}

impl StatusTarget {
    /// The target for a channel name with a status prefix (`@#c`, `+#c`), and the
    /// channel name without it.
    pub fn split(target: &str) -> Option<(StatusTarget, &str)> {
        let status = match target.as_bytes().first()? {
            b'@' => StatusTarget::Operators,
            b'+' => StatusTarget::Voiced,
            _ => return None,
        };
        Some((status, &target[1..]))
    }

    /// Whether a member that is an operator (`op`) or voiced (`voice`) is reached.
    pub fn reaches(self, op: bool, voice: bool) -> bool {
        match self {
            StatusTarget::Operators => op,
            StatusTarget::Voiced => op || voice,
        }
    }
}

/// See the module comment.
#[derive(Debug, Clone)]
pub struct Outgoing {
    plain: Bytes,
    time: SystemTime,
    /// The sender's client-only tags (`+a=b;+c`), relayed to `message-tags` clients.
    client_tags: Option<Bytes>,
    /// The message's id, shown to `message-tags` clients as `msgid=`.
    msgid: Option<MsgId>,
    /// The sender has user mode `+B`: `message-tags` clients see the `bot` tag.
    from_bot: bool,
    /// The sender's account: `account-tag` recipients see `account=`.
    account: Option<CaselessKey>,
    /// Only recipients with this capability get the message at all.
    required: Option<Cap>,
    /// STATUSMSG (`PRIVMSG @#c`): only channel members with this status or higher.
    status: Option<StatusTarget>,
    /// Another form of the message for recipients with a capability
    /// (`extended-join`): one pass over the members serves both forms. Local
    /// notifications only; not carried in hand-offs.
    alternative: Option<Box<(Cap, Outgoing)>>,
    /// Tagged variants built so far, indexed by [`variant_index`] less one.
    variants: [Option<Bytes>; 7],
}

impl Outgoing {
    /// A line stamped with the current time for `server-time` recipients.
    pub fn new(plain: Bytes) -> Outgoing {
        Outgoing {
            plain,
            time: SystemTime::now(),
            client_tags: None,
            msgid: None,
            from_bot: false,
            account: None,
            required: None,
            status: None,
            alternative: None,
            variants: [None, None, None, None, None, None, None],
        }
    }

    /// Stamps the line with `time` instead of now (an event's line, the same on
    /// every shard that tells it).
    pub fn at(mut self, time: SystemTime) -> Outgoing {
        self.time = time;
        self
    }

    /// Recipients that enabled `cap` get `other` instead (`extended-join`'s JOIN).
    pub fn or_with(mut self, cap: Cap, other: Outgoing) -> Outgoing {
        self.alternative = Some(Box::new((cap, other)));
        self
    }

    /// Attaches the sender's client-only tags.
    pub fn with_client_tags(mut self, tags: Option<Bytes>) -> Outgoing {
        self.client_tags = tags;
        self
    }

    /// Gives the message its id (PRIVMSG, NOTICE, TAGMSG).
    pub fn with_msgid(mut self, msgid: MsgId) -> Outgoing {
        self.msgid = Some(msgid);
        self
    }

    /// Marks the message as sent by a bot (`+B`).
    pub fn from_bot(mut self, bot: bool) -> Outgoing {
        self.from_bot = bot;
        self
    }

    /// Names the sender's account, for `account-tag` recipients.
    pub fn with_account(mut self, account: Option<CaselessKey>) -> Outgoing {
        self.account = account;
        self
    }

    /// Restricts a channel delivery to members with `status` or higher (STATUSMSG).
    pub fn to_status(mut self, status: StatusTarget) -> Outgoing {
        self.status = Some(status);
        self
    }

    /// Whether `message-tags` recipients get tags beyond `time`.
    fn has_tags(&self) -> bool {
        self.msgid.is_some() || self.client_tags.is_some() || self.from_bot
    }

    /// The lowest channel status a member needs to get this message, if any.
    pub fn status_target(&self) -> Option<StatusTarget> {
        self.status
    }

    /// Restricts delivery to recipients that enabled `cap`.
    pub fn requiring(mut self, cap: Cap) -> Outgoing {
        self.required = Some(cap);
        self
    }

    /// The bytes for a recipient with `caps`, or `None` if it must not get the message.
    pub fn for_recipient(&mut self, caps: Caps) -> Option<Bytes> {
        if let Some(alternative) = &mut self.alternative {
            let (cap, other) = &mut **alternative;
            if caps.has(*cap) {
                return other.for_recipient(caps);
            }
        }
        if self.required.is_some_and(|cap| !caps.has(cap)) {
            return None;
        }
        let index = variant_index(caps, self.has_tags(), self.account.is_some());
        if index == 0 {
            return Some(self.plain.clone());
        }
        let slot = &mut self.variants[index - 1];
        if slot.is_none() {
            let with_time = index & 1 != 0;
            let with_tags = index & 2 != 0;
            let with_account = index & 4 != 0;
            let tags = MessageTags {
                time: with_time.then(|| server_time(self.time)),
                account: self.account.as_ref().filter(|_| with_account),
                msgid: self.msgid.filter(|_| with_tags),
                bot: self.from_bot && with_tags,
                client_tags: self.client_tags.as_deref().filter(|_| with_tags),
            };
            *slot = Some(tags.prepend_to(&self.plain));
        }
        slot.clone()
    }
}

/// 0: plain; bit 0: with `time=`; bit 1: with the message tags (`msgid`, `bot`, the
/// sender's client-only tags); bit 2: with `account=`.
fn variant_index(caps: Caps, has_tags: bool, has_account: bool) -> usize {
    let time = caps.has(Cap::ServerTime) as usize;
    let tags = (has_tags && caps.has(Cap::MessageTags)) as usize;
    let account = (has_account && caps.has(Cap::AccountTag)) as usize;
    time | tags << 1 | account << 2
}

/// The tags of one tagged variant, in the order they are written.
struct MessageTags<'a> {
    time: Option<String>,
    account: Option<&'a CaselessKey>,
    msgid: Option<MsgId>,
    bot: bool,
    client_tags: Option<&'a [u8]>,
}

impl MessageTags<'_> {
    /// `@time=..;account=..;msgid=..;bot;client-tags <line>`.
    fn prepend_to(&self, line: &[u8]) -> Bytes {
        let mut tags = BytesMut::with_capacity(line.len() + 96);
        let separate = |tags: &mut BytesMut| {
            if !tags.is_empty() {
                tags.put_u8(b';');
            }
        };
        if let Some(time) = &self.time {
            tags.put_slice(b"time=");
            tags.put_slice(time.as_bytes());
        }
        if let Some(account) = self.account {
            // An account name is a valid nick: no tag value escaping is needed.
            separate(&mut tags);
            tags.put_slice(b"account=");
            tags.put_slice(account.as_str().as_bytes());
        }
        if let Some(msgid) = &self.msgid {
            separate(&mut tags);
            tags.put_slice(b"msgid=");
            tags.put_slice(msgid.as_bytes());
        }
        if self.bot {
            separate(&mut tags);
            tags.put_slice(b"bot");
        }
        if let Some(client_tags) = self.client_tags {
            separate(&mut tags);
            tags.put_slice(client_tags);
        }
        add_tags(line, &tags)
    }
}

/// Prepends `tags` (without `@`) to `line`, merging with tags it already has.
pub fn add_tags(line: &[u8], tags: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(line.len() + tags.len() + 2);
    out.put_u8(b'@');
    out.put_slice(tags);
    match line.strip_prefix(b"@") {
        Some(rest) => {
            out.put_u8(b';');
            out.put_slice(rest);
        }
        None => {
            out.put_u8(b' ');
            out.put_slice(line);
        }
    }
    out.freeze()
}

/// The client-only tags (`+name[=value]`) of a raw tag section, joined by `;`.
pub fn client_only_tags(raw: Option<&[u8]>) -> Option<Bytes> {
    let raw = raw?;
    let mut kept = BytesMut::new();
    for tag in raw
        .split(|&b| b == b';')
        .filter(|t| t.starts_with(b"+") && t.len() > 1)
    {
        if !kept.is_empty() {
            kept.put_u8(b';');
        }
        kept.put_slice(tag);
    }
    (!kept.is_empty()).then(|| kept.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[Cap]) -> Caps {
        let mut caps = Caps::NONE;
        for &cap in list {
            caps.set(cap, true);
        }
        caps
    }

    #[test]
    fn each_capability_set_gets_its_variant_built_once() {
        let mut message = Outgoing::new(Bytes::from_static(b":a PRIVMSG #c :hi\r\n"))
            .with_client_tags(client_only_tags(Some(b"+draft/reply=1;label=x;+typing")));
        let plain = message.for_recipient(Caps::NONE).expect("delivered");
        assert_eq!(&plain[..], b":a PRIVMSG #c :hi\r\n");
        let tags_only = message
            .for_recipient(caps(&[Cap::MessageTags]))
            .expect("delivered");
        assert_eq!(
            &tags_only[..],
            b"@+draft/reply=1;+typing :a PRIVMSG #c :hi\r\n"
        );
        let both = message
            .for_recipient(caps(&[Cap::MessageTags, Cap::ServerTime]))
            .expect("delivered");
        assert!(
            both.starts_with(b"@time=")
                && both.ends_with(b";+draft/reply=1;+typing :a PRIVMSG #c :hi\r\n")
        );
        let again = message
            .for_recipient(caps(&[Cap::MessageTags, Cap::ServerTime]))
            .expect("delivered");
        assert_eq!(
            both.as_ptr(),
            again.as_ptr(),
            "the variant is shared, not rebuilt"
        );
    }

    #[test]
    fn the_msgid_and_bot_tags_go_to_message_tags_recipients_only() {
        let msgid = MsgId::new(0x1234, 3, 0xff);
        assert_eq!(msgid.as_bytes(), b"1234-3-ff");
        assert_eq!(
            MsgId::new(0, 0, u64::MAX).as_bytes(),
            b"0-0-ffffffffffffffff"
        );
        let mut message = Outgoing::new(Bytes::from_static(b":a PRIVMSG #c :hi\r\n"))
            .with_msgid(msgid)
            .from_bot(true)
            .with_client_tags(client_only_tags(Some(b"+x")));
        assert_eq!(
            &message.for_recipient(Caps::NONE).expect("delivered")[..],
            b":a PRIVMSG #c :hi\r\n"
        );
        assert_eq!(
            &message
                .for_recipient(caps(&[Cap::MessageTags]))
                .expect("delivered")[..],
            b"@msgid=1234-3-ff;bot;+x :a PRIVMSG #c :hi\r\n"
        );
        let timed = message
            .for_recipient(caps(&[Cap::ServerTime]))
            .expect("delivered");
        assert!(!timed.windows(5).any(|w| w == b"msgid"), "{timed:?}");
    }

    #[test]
    fn a_message_requiring_a_cap_skips_other_recipients() {
        let mut message = Outgoing::new(Bytes::from_static(b"x\r\n")).requiring(Cap::AwayNotify);
        assert_eq!(message.for_recipient(Caps::NONE), None);
        assert!(message.for_recipient(caps(&[Cap::AwayNotify])).is_some());
    }

    #[test]
    fn tags_merge_into_an_existing_tag_section() {
        assert_eq!(
            &add_tags(b"@time=1 :a B\r\n", b"batch=7")[..],
            b"@batch=7;time=1 :a B\r\n"
        );
        assert_eq!(&add_tags(b":a B\r\n", b"label=x")[..], b"@label=x :a B\r\n");
    }

    #[test]
    fn only_client_tags_are_relayed() {
        assert_eq!(client_only_tags(Some(b"label=1;time=x")), None);
        assert_eq!(client_only_tags(None), None);
    }
}

/// An [`Outgoing`] as it travels to another node of a cluster: the parts its variants
/// are built from (the receiving node builds the ones its members need, once each).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireOutgoing {
    plain: Bytes,
    time_micros: u64,
    client_tags: Option<Bytes>,
    msgid: Option<Bytes>,
    from_bot: bool,
    account: Option<Box<str>>,
    required: Option<Box<str>>,
    status: Option<u8>,
}

impl WireOutgoing {
    /// When the message was received, in Unix microseconds (its `server-time`).
    pub fn time_micros(&self) -> u64 {
        self.time_micros
    }

    /// The message's id, if it has one.
    pub fn msgid(&self) -> Option<&[u8]> {
        self.msgid.as_deref()
    }
}

/// The longest line (without tags) a node accepts from another: a 512-byte message
/// plus a long source, with room to spare.
const MAX_WIRE_LINE: usize = 2048;
/// The longest client-only tags a node accepts from another (IRCv3 allows 4094
/// bytes of client tags).
const MAX_WIRE_TAGS: usize = 4096;

/// A cross-node message whose parts cannot be a message (a hostile or broken peer).
#[derive(Debug, thiserror::Error)]
#[error("malformed cross-node message: {0}")]
pub struct MalformedOutgoing(&'static str);

impl Outgoing {
    /// The parts another node needs to deliver this message.
    pub fn to_wire(&self) -> WireOutgoing {
        let time_micros = self
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        WireOutgoing {
            plain: self.plain.clone(),
            time_micros,
            client_tags: self.client_tags.clone(),
            msgid: self.msgid.map(|id| Bytes::copy_from_slice(id.as_bytes())),
            from_bot: self.from_bot,
            account: self.account.as_ref().map(|account| account.as_str().into()),
            required: self.required.map(|cap| cap.name().into()),
            status: self.status.map(|status| match status {
                StatusTarget::Voiced => b'+',
                StatusTarget::Operators => b'@',
            }),
        }
    }

    /// The message another node sent, checked: one line that ends in CRLF, tags and
    /// an id that cannot break the line they are put in.
    pub fn from_wire(wire: WireOutgoing) -> Result<Outgoing, MalformedOutgoing> {
        let line = wire.plain.as_ref();
        if line.len() > MAX_WIRE_LINE
            || wire
                .client_tags
                .as_ref()
                .is_some_and(|t| t.len() > MAX_WIRE_TAGS)
        {
            return Err(MalformedOutgoing("longer than any line this server sends"));
        }
        let body = line
            .strip_suffix(b"\r\n")
            .ok_or(MalformedOutgoing("the line does not end in CRLF"))?;
        if body.is_empty() || body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(MalformedOutgoing("the line is empty or holds a line break"));
        }
        let unsafe_tag = |b: &u8| matches!(b, b' ' | b'\r' | b'\n' | 0);
        if wire
            .client_tags
            .as_ref()
            .is_some_and(|t| t.iter().any(unsafe_tag))
        {
            return Err(MalformedOutgoing("client tags hold a space or line break"));
        }
        // An account travels into an `account=` tag value unescaped: a nick's bytes.
        if wire.account.as_deref().is_some_and(|account| {
            !crate::proto::names::is_valid_nick(account.as_bytes()) || account.contains('\\')
        }) {
            return Err(MalformedOutgoing("bad account name"));
        }
        let msgid = match wire.msgid {
            Some(id) => Some(MsgId::from_wire(&id).ok_or(MalformedOutgoing("bad msgid"))?),
            None => None,
        };
        let required = match wire.required {
            Some(name) => {
                Some(Cap::from_name(&name).ok_or(MalformedOutgoing("unknown capability"))?)
            }
            None => None,
        };
        let status = match wire.status {
            None => None,
            Some(b'+') => Some(StatusTarget::Voiced),
            Some(b'@') => Some(StatusTarget::Operators),
            Some(_) => return Err(MalformedOutgoing("unknown status prefix")),
        };
        Ok(Outgoing {
            plain: wire.plain,
            time: std::time::UNIX_EPOCH + std::time::Duration::from_micros(wire.time_micros),
            client_tags: wire.client_tags,
            msgid,
            from_bot: wire.from_bot,
            account: wire.account.as_deref().map(CaselessKey::new),
            required,
            status,
            alternative: None,
            variants: [None, None, None, None, None, None, None],
        })
    }
}

impl MsgId {
    /// An id received from another node: at most the capacity, only `[0-9a-z-]`.
    fn from_wire(text: &[u8]) -> Option<MsgId> {
        if text.is_empty()
            || text.len() > MSGID_CAPACITY
            || !text
                .iter()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || *b == b'-')
        {
            return None;
        }
        let mut id = MsgId {
            bytes: [0; MSGID_CAPACITY],
            len: text.len() as u8,
        };
        id.bytes[..text.len()].copy_from_slice(text);
        Some(id)
    }
}
