//! Delivery, handler-facing: a line to one local client, a message in each
//! recipient's capability variant, to a client anywhere (a hand-off), and to a
//! channel's members (local arrays walked once, one hand-off per other shard). A
//! recipient past its sendq is doomed, and closed once the handler is done.

use super::{live, Shard, SENDQ_EXCEEDED};
use crate::proto::outgoing::Outgoing;
use crate::proto::CaselessKey;
use crate::state::bus::{Handoff, KeptDirect};
use crate::state::client::{Client, CloseReason};
use crate::state::network::ShardSet;
use crate::state::shared::CounterSnapshot;
use crate::state::slab::Slab;
use crate::state::ClientId;
use crate::store::history::Kind;
use bytes::Bytes;

/// A channel line to at most this many of a shard's members is as urgent as a
/// reply: their writers go ahead of a big fan-out's backlog (the ring driver's
/// `SMALL_WAKE`), so a small room stays responsive beside a flooding big one.
const SMALL_FAN_OUT: usize = 64;

impl Shard {
    /// Queues `line` for client `id` of this shard. A client past its sendq is marked
    /// for closing once the current handler is done.
    pub fn send(&mut self, id: ClientId, line: Bytes) {
        push_line(
            &mut self.clients,
            &mut self.doomed,
            &mut self.counts,
            self.shared.live.sendq(),
            id,
            line,
        );
    }

    /// Queues `message` for local client `id` in the variant its capabilities ask for.
    pub fn send_message(&mut self, id: ClientId, message: &mut Outgoing) {
        deliver_one(
            &mut self.clients,
            &mut self.doomed,
            &mut self.counts,
            self.shared.live.sendq(),
            id,
            message,
            true,
        );
    }

    /// Queues `message` for `id`, wherever it lives; a direct message `kept` in
    /// history here is kept by the recipient's node too when that is another node.
    pub fn send_anywhere(&mut self, id: ClientId, mut message: Outgoing, kept: Option<KeptDirect>) {
        if self.is_local(id) {
            self.send_message(id, &mut message);
        } else if id.node == self.node {
            // This node keeps it already (the sender's shard did).
            let handoff = Handoff::Client {
                to: id,
                message,
                kept: None,
            };
            self.hand_off(id.shard, handoff);
        } else if let Some(link) = self.link_endpoint() {
            self.hand_off(
                link,
                Handoff::Client {
                    to: id,
                    message,
                    kept,
                },
            );
        }
    }

    /// The cluster link's bus endpoint, on a cluster node.
    pub(super) fn link_endpoint(&self) -> Option<u16> {
        self.shared.cluster.as_ref().map(|cluster| cluster.endpoint)
    }

    /// Delivers a channel message to every member of `channel` but `except` (the
    /// message hot path): this shard's members now, from its own member array;
    /// each other shard with members through one hand-off, which that shard fans out
    /// to its own members. A message `kept` in history (as this shard did) goes to
    /// every live node of a cluster, so that each keeps it, members or not; cost:
    /// one atomic load.
    pub fn deliver_to_channel(
        &mut self,
        channel: &CaselessKey,
        mut message: Outgoing,
        except: Option<ClientId>,
        kept: Option<Kind>,
    ) {
        self.deliver_to_local_members(channel.as_str(), &mut message, except);
        let places = match self.log.network().channel(channel.as_str()) {
            Some(found) => found.members.shards(),
            None => return,
        };
        let (me, layout) = (self.id, self.log.network().layout());
        let mut nodes = ShardSet::default();
        for place in places.iter().filter(|&p| p != me) {
            match layout.remote_node(place) {
                Some(node) => nodes.insert(node),
                None => self.hand_off(
                    place,
                    Handoff::Channel {
                        channel: channel.clone(),
                        message: message.clone(),
                        except,
                    },
                ),
            }
        }
        if let (Some(cluster), Some(_)) = (&self.shared.cluster, kept) {
            nodes.extend(cluster.live_nodes());
        }
        if let (Some(link), false) = (self.link_endpoint(), nodes == ShardSet::default()) {
            self.hand_off(
                link,
                Handoff::Nodes {
                    nodes,
                    channel: channel.clone(),
                    message,
                    except,
                    kept,
                },
            );
        }
    }

    /// Delivers `message` to this shard's members of `channel` but `except` (only
    /// to those with the status a STATUSMSG asks for).
    pub(super) fn deliver_to_local_members(
        &mut self,
        channel: &str,
        message: &mut Outgoing,
        except: Option<ClientId>,
    ) {
        let status = message.status_target();
        let (count, members) = self.local_members.of(channel);
        let urgent = count <= SMALL_FAN_OUT;
        for (member, membership) in members {
            let unwanted = status.is_some_and(|s| !s.reaches(membership.op, membership.voice));
            if Some(member) != except && !unwanted {
                deliver_one(
                    &mut self.clients,
                    &mut self.doomed,
                    &mut self.counts,
                    self.shared.live.sendq(),
                    member,
                    message,
                    urgent,
                );
            }
        }
    }

    /// Delivers `message` once to each of this shard's members of any of `channels`
    /// but `except` (QUIT, NICK, AWAY: one line however many channels are shared).
    pub(super) fn deliver_to_local_members_once(
        &mut self,
        channels: &[CaselessKey],
        message: &mut Outgoing,
        except: Option<ClientId>,
    ) {
        self.stamp = self.stamp.wrapping_add(1);
        let stamp = self.stamp;
        for channel in channels {
            for member in self.local_members.ids_of(channel.as_str()) {
                if Some(member) == except {
                    continue;
                }
                let Some(client) = self.clients.get_mut(member.slot) else {
                    continue;
                };
                if client.delivery_stamp == stamp {
                    continue;
                }
                client.delivery_stamp = stamp;
                deliver_one(
                    &mut self.clients,
                    &mut self.doomed,
                    &mut self.counts,
                    self.shared.live.sendq(),
                    member,
                    message,
                    false,
                );
            }
        }
    }
}

/// Queues the variant of `message` that a client's capabilities ask for (marking
/// the outbox [`urgent`](crate::state::outbox::Outbox::mark_urgent) if asked); a
/// free function so fan-out loops can borrow the replica and the client slab at once.
#[inline(always)]
pub(super) fn deliver_one(
    clients: &mut Slab<Client>,
    doomed: &mut Vec<(ClientId, CloseReason)>,
    counts: &mut CounterSnapshot,
    sendq: usize,
    id: ClientId,
    message: &mut Outgoing,
    urgent: bool,
) {
    let Some(client) = live(clients, id) else {
        return;
    };
    if let Some(line) = message.for_recipient(client.caps) {
        queue(client, doomed, counts, sendq, line);
        if urgent {
            client.outbox.mark_urgent();
        }
    }
}

/// Queues a line for one client, marking a slow consumer for closing.
pub(super) fn push_line(
    clients: &mut Slab<Client>,
    doomed: &mut Vec<(ClientId, CloseReason)>,
    counts: &mut CounterSnapshot,
    sendq: usize,
    id: ClientId,
    line: Bytes,
) {
    if let Some(client) = live(clients, id) {
        queue(client, doomed, counts, sendq, line);
        // A line for one client alone (a reply): its writer goes ahead of a big
        // fan-out's backlog, so a command's answer does not wait for every member
        // of a channel that a JOIN just woke.
        client.outbox.mark_urgent();
    }
}

#[inline(always)]
fn queue(
    client: &mut Client,
    doomed: &mut Vec<(ClientId, CloseReason)>,
    counts: &mut CounterSnapshot,
    sendq: usize,
    line: Bytes,
) {
    match client.outbox.push(line, sendq) {
        Ok(()) => counts.deliveries += 1,
        Err(_) => {
            client.outbox.discard_queued();
            doomed.push((client.id, CloseReason::Server(SENDQ_EXCEEDED)));
        }
    }
}
