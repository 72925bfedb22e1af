//! Ending connections: QUIT-relaying closes, quiet closes (shutdown, a lost
//! cluster), the clients a handler doomed, and server notices to everyone.

use super::{live, Shard, EXCESS_FLOOD, SENDQ_EXCEEDED};
use crate::proto::LineBuilder;
use crate::state::client::CloseReason;
use crate::state::ClientId;
use std::sync::atomic::Ordering;
use tracing::info;

impl Shard {
    /// Tells every client the server is going away and closes them (no QUITs are
    /// relayed: everyone is leaving, so the network state is left as it is).
    pub fn begin_shutdown(&mut self) {
        let ids: Vec<ClientId> = self.clients.iter().map(|c| c.id).collect();
        for id in ids {
            self.close_quietly(id, crate::proto::closing::SERVER_SHUTTING_DOWN);
        }
    }

    /// Closes a client: a registered user leaves the network (every shard relays its
    /// QUIT to the members who shared a channel with it, once each), the final ERROR
    /// is queued, and the writer flushes and shuts the socket.
    pub fn close(&mut self, id: ClientId, reason: CloseReason) {
        let Some(client) = live(&mut self.clients, id) else {
            return;
        };
        let text = match &reason {
            CloseReason::Quit(message) => format!("Quit: {message}"),
            CloseReason::ConnectionClosed => "Connection closed".to_owned(),
            CloseReason::Server(why) => (*why).to_owned(),
            CloseReason::Killed(why) => why.clone(),
        };
        let (nick, address) = (client.nick().to_owned(), client.host.clone());
        client.closing = true;
        let leaving = self
            .shared
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.leaving.load(Ordering::Acquire));
        if leaving {
            // This node's `NodeLost` quits every user of it at once.
        } else if client.is_registered() {
            if matches!(reason, CloseReason::Quit(_)) {
                let quit = LineBuilder::from_source(client.source(), "QUIT")
                    .trailing(&text)
                    .finish();
                let _ = client.outbox.push(quit, usize::MAX);
            }
            self.propose(crate::state::network::Event::Quit {
                client: id,
                reason: text.as_str().into(),
            });
        } else if client
            .registration
            .as_ref()
            .is_some_and(|r| r.nick.is_some())
        {
            self.propose(crate::state::network::Event::ReleaseNick { client: id });
        }
        // The audit trail's last line of a connection: one line, whoever ended it.
        let what = match &reason {
            CloseReason::Server(SENDQ_EXCEEDED) => "sendq cut-off",
            CloseReason::Server(EXCESS_FLOOD) => "flood cut-off",
            CloseReason::Killed(_) => "killed",
            CloseReason::Server(_) => "disconnected",
            CloseReason::Quit(_) | CloseReason::ConnectionClosed => "quit",
        };
        info!(client = %id, %nick, %address, reason = %text, "{what}");
        if reason == CloseReason::Server(SENDQ_EXCEEDED) {
            self.counts.sendq_disconnects += 1;
        } else if reason == CloseReason::Server(EXCESS_FLOOD) {
            self.counts.flood_disconnects += 1;
        }
        self.close_quietly(id, &text);
    }

    /// Sends every registered local client a server NOTICE.
    pub(super) fn notice_everyone(&mut self, text: &str) {
        let server = self.shared.config.server_name.clone();
        let told: Vec<(ClientId, String)> = self
            .clients
            .iter()
            .filter(|client| client.is_registered() && !client.closing)
            .map(|client| (client.id, client.nick().to_owned()))
            .collect();
        for (id, nick) in told {
            let line = LineBuilder::from_source(&server, "NOTICE")
                .arg(&nick)
                .trailing(text)
                .finish();
            self.send(id, line);
        }
    }

    /// Closes every local client after the cluster applied `NodeLost` for this node
    /// (the others stopped hearing from it): the network has already quit them, so
    /// they are closed without proposing anything.
    pub(super) fn close_all_declared_lost(&mut self) {
        let ids: Vec<ClientId> = self.clients.iter().map(|client| client.id).collect();
        for id in ids {
            self.close_quietly(id, "This server lost its place in the cluster");
        }
    }

    /// Ends a connection without telling the network: queues `ERROR`, and wakes the
    /// writer to flush and shut down.
    pub(super) fn close_quietly(&mut self, id: ClientId, why: &str) {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return;
        };
        if client.outbox.is_finished() {
            return;
        }
        client.closing = true;
        client.throttled = false;
        client.input = Vec::new();
        let monitoring = std::mem::take(&mut client.monitoring);
        let error = crate::proto::closing::closing_link(&client.host, why);
        if why == SENDQ_EXCEEDED {
            client.outbox.discard_queued();
        }
        client.outbox.finish(error);
        self.monitors.forget(id, &monitoring);
        self.forget_notice_watcher(id);
    }

    pub(super) fn close_doomed(&mut self) {
        while let Some((id, reason)) = self.doomed.pop() {
            self.close(id, reason);
        }
    }
}
