//! A shard's NAMES text of its big channels, kept between the JOINs that grow them.
//!
//! A member flood lists the channel to every joiner: filling 17,000 members writes
//! 144 M names, and rendering each from the member set was a quarter of the server's
//! CPU after the set held the nicks itself. The text a member sees (no
//! `userhost-in-names`, one form per prefix style) is kept per channel with the
//! set's [`Revision`]; a NAMES whose channel only gained the member that is asking
//! (a JOIN's own NAMES) appends one name, and any other change renders it afresh.
//!
//! Bounded: only channels of at least [`MIN_MEMBERS`] are kept, at most
//! [`MAX_CHANNELS`] of them (the least recently used goes).

use crate::proto::CaselessKey;
use crate::state::network::{Members, Membership, Revision};
use crate::state::ClientId;
use std::collections::HashMap;

/// Smaller channels are rendered each time: cheap, and not worth the memory.
pub const MIN_MEMBERS: usize = 256;
/// Channels kept per shard (17,000 members: about 170 KiB each).
pub const MAX_CHANNELS: usize = 8;

/// How a member's status is written before its nick.
pub type Prefix = fn(Membership) -> &'static str;

/// See the module documentation.
#[derive(Default)]
pub struct NamesCache {
    texts: HashMap<(CaselessKey, usize), Kept>,
    /// Bumped per use; the entry with the smallest is evicted first.
    clock: u64,
}

struct Kept {
    revision: Revision,
    text: String,
    used: u64,
}

impl NamesCache {
    /// The space-separated names of `members` of `channel` as `prefix` writes them,
    /// up to date, or `None` for a channel too small to keep (render it directly).
    pub fn text(
        &mut self,
        channel: &CaselessKey,
        members: &Members,
        prefix: Prefix,
    ) -> Option<&str> {
        if members.len() < MIN_MEMBERS || members.revision().lineage == 0 {
            return None;
        }
        self.clock += 1;
        let now = members.revision();
        let key = (channel.clone(), prefix as usize);
        if !self.texts.contains_key(&key) && self.texts.len() >= MAX_CHANNELS {
            let oldest = self.texts.iter().min_by_key(|(_, kept)| kept.used);
            if let Some(oldest) = oldest.map(|(key, _)| key.clone()) {
                self.texts.remove(&oldest);
            }
        }
        let kept = self.texts.entry(key).or_insert_with(|| Kept {
            revision: Revision::default(),
            text: String::new(),
            used: 0,
        });
        kept.used = self.clock;
        let before = kept.revision;
        let only_appended = now.lineage == before.lineage && now.changes == before.changes + 1;
        let current = match now.appended.filter(|_| only_appended) {
            _ if now == before => true,
            Some(joiner) => {
                append(&mut kept.text, members, joiner, prefix)
                    || render(&mut kept.text, members, prefix)
            }
            None => render(&mut kept.text, members, prefix),
        };
        // The joiner goes last (a fresh rendering puts it in member order): NAMES
        // promises the names, not their order.
        kept.revision = if current { now } else { Revision::default() };
        current.then_some(kept.text.as_str())
    }
}

/// Writes every member's name: `prefix` and nick, space-separated, in member order;
/// false if a nick was too long to copy (never: NICKLEN is 30), and the caller
/// renders from the users instead.
fn render(text: &mut String, members: &Members, prefix: Prefix) -> bool {
    text.clear();
    for (_, membership, nick) in members.iter_listed() {
        let Some(nick) = nick else {
            text.clear();
            return false;
        };
        push_name(text, prefix(membership), nick);
    }
    true
}

/// Adds `joiner`'s name at the end; whether it could.
fn append(text: &mut String, members: &Members, joiner: ClientId, prefix: Prefix) -> bool {
    let Some((membership, Some(nick))) = members.listed(joiner) else {
        return false;
    };
    push_name(text, prefix(membership), nick);
    true
}

fn push_name(text: &mut String, prefix: &str, nick: &str) {
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(prefix);
    text.push_str(nick);
}
