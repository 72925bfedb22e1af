//! One shard's members of each channel: the dense arrays its fan-out walks.
//!
//! The node-wide replica ([`crate::state::network`]) knows every member of every
//! channel; a shard delivering a channel message needs only its own, walked as a
//! dense array (the cost the fan-out gate in `benches/instructions.rs` guards). This
//! index holds exactly those, with their status (a STATUSMSG such as `@#c` reaches
//! only some), and nothing else.
//!
//! It is derived only from the ordered log: the shard changes it while taking in an
//! entry, from the event and its outcome ([`LocalMembers::take_in`]), before it tells
//! its clients what the entry changed. So it cannot diverge from the replica the
//! shard reads: after entry `n`, its members of a channel are exactly the replica's
//! members of that channel that live on this shard (checked by the tests of the
//! shard's conversations and by `tests/ordering.rs`). Cost: O(1) per membership
//! change of a local client, O(channels of the user) for its QUIT; nothing for
//! remote clients' events.

use super::network::{Event, ModeChange, Network, Outcome};
use super::ClientId;
use crate::proto::{Caseless, CaselessKey};
use crate::state::network::Membership;
use indexmap::IndexMap;
use std::collections::HashMap;

/// One shard's members of each channel that has any; see the module comment.
#[derive(Debug, Default)]
pub struct LocalMembers {
    /// Channels with at least one member on this shard, each with those members in
    /// the order they joined (removal swaps the last into the gap).
    channels: HashMap<CaselessKey, IndexMap<ClientId, Membership>>,
}

impl LocalMembers {
    /// The members of every channel that live in `place` of `network` (a shard
    /// starting from a cluster snapshot). O(memberships): at start only.
    pub fn of_place(network: &Network, place: u16) -> LocalMembers {
        let layout = network.layout();
        let mut local = LocalMembers::default();
        for channel in network.channels() {
            for (member, membership) in channel.members.iter() {
                if layout.place(member) == place {
                    local.insert(&channel.name, member, membership);
                }
            }
        }
        local
    }

    /// This shard's members of `channel` with their status, densely, and how many
    /// there are (one lookup for both: this is the fan-out's).
    pub fn of(&self, channel: &str) -> (usize, impl Iterator<Item = (ClientId, Membership)> + '_) {
        let members = self.channels.get(Caseless::new(channel));
        let count = members.map_or(0, IndexMap::len);
        let members = members
            .into_iter()
            .flat_map(|members| members.iter().map(|(&id, &m)| (id, m)));
        (count, members)
    }

    /// This shard's members of `channel`, densely (the fan-out loop).
    pub fn ids_of(&self, channel: &str) -> impl Iterator<Item = ClientId> + '_ {
        self.channels
            .get(Caseless::new(channel))
            .into_iter()
            .flat_map(|members| members.keys().copied())
    }

    /// How many channels have members here.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Changes the index as the log entry (`event`, its `outcome`) changed the
    /// replica, now `network`, for the clients `is_local` says live here.
    pub fn take_in(
        &mut self,
        event: &Event,
        outcome: &Outcome,
        network: &Network,
        is_local: impl Fn(ClientId) -> bool,
    ) {
        match (event, outcome) {
            (Event::Join { client, .. }, Outcome::Joined { channel }) if is_local(*client) => {
                let membership = network
                    .channel(channel.as_str())
                    .and_then(|found| found.members.get(*client))
                    .unwrap_or_default();
                self.insert(channel, *client, membership);
            }
            (Event::Part { client, .. }, Outcome::Parted { channel }) if is_local(*client) => {
                self.remove(channel.as_str(), *client);
            }
            (
                _,
                Outcome::Kicked {
                    channel, member, ..
                },
            ) if is_local(*member) => self.remove(channel.as_str(), *member),
            (Event::Quit { client, .. }, Outcome::Quit { user }) if is_local(*client) => {
                for channel in &user.channels {
                    self.remove(channel.as_str(), *client);
                }
            }
            (_, Outcome::NodeLost { users }) => {
                for (id, user) in users.iter().filter(|(id, _)| is_local(*id)) {
                    for channel in &user.channels {
                        self.remove(channel.as_str(), *id);
                    }
                }
            }
            (
                _,
                Outcome::ModesChanged {
                    channel, applied, ..
                },
            ) => {
                let Some(members) = self.channels.get_mut(Caseless::new(channel.as_str())) else {
                    return;
                };
                let Some(found) = network.channel(channel.as_str()) else {
                    return;
                };
                for change in applied {
                    let ModeChange::Member { nick, .. } = change else {
                        continue;
                    };
                    let Some(member) = network.nick_owner(nick) else {
                        continue;
                    };
                    if let Some(status) = members.get_mut(&member) {
                        *status = found.members.get(member).unwrap_or_default();
                    }
                }
            }
            _ => {}
        }
    }

    fn insert(&mut self, channel: &CaselessKey, id: ClientId, membership: Membership) {
        match self.channels.get_mut(Caseless::new(channel.as_str())) {
            Some(members) => {
                members.insert(id, membership);
            }
            None => {
                self.channels
                    .insert(channel.clone(), IndexMap::from([(id, membership)]));
            }
        }
    }

    fn remove(&mut self, channel: &str, id: ClientId) {
        let Some(members) = self.channels.get_mut(Caseless::new(channel)) else {
            return;
        };
        members.swap_remove(&id);
        if members.is_empty() {
            self.channels.remove(Caseless::new(channel));
        }
    }
}
