//! A message on its way to many recipients, serialized once per distinct set of the
//! capabilities that change its bytes (`server-time`, `message-tags`), not once per
//! recipient.
//!
//! Cost: the plain line is built once by the handler. A tagged variant is built the
//! first time a recipient needs it (one allocation and one copy of the line) and then
//! shared by reference, on this shard and, through a hand-off clone, on the others.

use crate::proto::caps::{Cap, Caps};
use crate::proto::time::server_time;
use bytes::{BufMut, Bytes, BytesMut};
use std::time::SystemTime;

/// See the module comment.
#[derive(Debug, Clone)]
pub struct Outgoing {
    plain: Bytes,
    time: SystemTime,
    /// The sender's client-only tags (`+a=b;+c`), relayed to `message-tags` clients.
    client_tags: Option<Bytes>,
    /// Only recipients with this capability get the message at all.
    required: Option<Cap>,
    /// Tagged variants built so far, indexed by [`variant_index`] less one.
    variants: [Option<Bytes>; 3],
}

impl Outgoing {
    /// A line stamped with the current time for `server-time` recipients.
    pub fn new(plain: Bytes) -> Outgoing {
        Outgoing {
            plain,
            time: SystemTime::now(),
            client_tags: None,
            required: None,
            variants: [None, None, None],
        }
    }

    /// Attaches the sender's client-only tags.
    pub fn with_client_tags(mut self, tags: Option<Bytes>) -> Outgoing {
        self.client_tags = tags;
        self
    }

    /// Restricts delivery to recipients that enabled `cap`.
    pub fn requiring(mut self, cap: Cap) -> Outgoing {
        self.required = Some(cap);
        self
    }

    /// The bytes for a recipient with `caps`, or `None` if it must not get the message.
    pub fn for_recipient(&mut self, caps: Caps) -> Option<Bytes> {
        if self.required.is_some_and(|cap| !caps.has(cap)) {
            return None;
        }
        let index = variant_index(caps, self.client_tags.is_some());
        if index == 0 {
            return Some(self.plain.clone());
        }
        let slot = &mut self.variants[index - 1];
        if slot.is_none() {
            let with_time = index & 1 != 0;
            let with_tags = index & 2 != 0;
            *slot = Some(tagged(
                &self.plain,
                with_time.then(|| server_time(self.time)).as_deref(),
                self.client_tags.as_deref().filter(|_| with_tags),
            ));
        }
        slot.clone()
    }
}

/// 0: plain; bit 0: with `time=`; bit 1: with client tags.
fn variant_index(caps: Caps, has_client_tags: bool) -> usize {
    let time = caps.has(Cap::ServerTime) as usize;
    let tags = (has_client_tags && caps.has(Cap::MessageTags)) as usize;
    time | tags << 1
}

/// `@time=..;client-tags <line>`.
fn tagged(line: &[u8], time: Option<&str>, client_tags: Option<&[u8]>) -> Bytes {
    let mut tags = BytesMut::with_capacity(line.len() + 64);
    if let Some(time) = time {
        tags.put_slice(b"time=");
        tags.put_slice(time.as_bytes());
    }
    if let Some(client_tags) = client_tags {
        if !tags.is_empty() {
            tags.put_u8(b';');
        }
        tags.put_slice(client_tags);
    }
    add_tags(line, &tags)
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
