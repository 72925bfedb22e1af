//! The shard's side of accounts: handing slow work (argon2, store waits) to the
//! [`Offload`](crate::state::offload::Offload) workers and taking their results in,
//! writing each applied account event to the node's store once, and renaming users
//! who keep a registered nick past its grace period without logging in.

use super::{Input, Shard};
use crate::proto::texts;
use crate::proto::LineBuilder;
use crate::state::log::Entry;
use crate::state::network::{Event, Outcome};
use crate::state::offload::{Busy, Finished};
use crate::state::{ClientId, Shared};
use crate::store::{accounts, read_markers};
use std::sync::Arc;
use std::time::Instant;
use tracing::warn;

/// What the account commands count for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCount {
    /// A login succeeded.
    Login,
    /// A login was refused.
    LoginFailure,
    /// AUTHENTICATE input was refused unchecked.
    SaslMalformed,
    /// The offload workers' queue was full.
    Busy,
}

impl Shard {
    /// Counts an authentication outcome (published with the shard's counters).
    pub fn count_auth(&mut self, what: AuthCount) {
        let counter = match what {
            AuthCount::Login => &mut self.counts.logins,
            AuthCount::LoginFailure => &mut self.counts.login_failures,
            AuthCount::SaslMalformed => &mut self.counts.sasl_malformed,
            AuthCount::Busy => &mut self.counts.auth_busy,
        };
        *counter += 1;
    }

    /// Runs `work` on an authentication worker (never on this thread); what it
    /// returns comes back to `client` through this shard's completion queue, taken in
    /// by [`Shard::pump`] after the bus wakes the shard. Refused with [`Busy`] when
    /// the workers' queue is full.
    pub fn offload(
        &self,
        client: ClientId,
        work: impl FnOnce(&Shared) -> Finished + Send + 'static,
    ) -> Result<(), Busy> {
        let shared = Arc::downgrade(&self.shared);
        self.shared.offload.submit(Box::new(move || {
            // The server may have stopped meanwhile: then nobody waits for this.
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let finished = work(&shared);
            // The node's state (its store among it) is let go before the client can
            // hear the answer: a server stopped right after it finds the store closed,
            // not held open by a worker for a moment more.
            let (offload, bus) = (shared.offload.clone(), shared.bus.clone());
            drop(shared);
            offload.finish(client, finished);
            bus.wake(client.shard);
        }))
    }

    /// Hands what the workers finished for this shard's clients to the command
    /// layer, as input of its client, then lets the lines that waited for it through
    /// (one atomic load when nothing finished).
    pub(super) fn take_in_finished(&mut self) {
        for (client, finished) in self.shared.offload.take_finished(self.id) {
            if self.client(client).is_some_and(|c| !c.closing) {
                let now = Instant::now();
                (self.handle_line)(self, client, Input::Finished(&finished), now);
                self.process_buffered(client, now);
            }
        }
        self.close_doomed();
    }

    /// Writes an applied account event (read markers too) to the node's store, once per node: the
    /// shard that proposed it writes it (so its proposer can wait for the commit
    /// before answering), and shard 0 writes those that came from other nodes of a
    /// cluster. Queuing is all this does; the store's writer thread commits.
    pub(super) fn persist_accounts(&self, entry: &Entry) {
        let Some(store) = self.shared.store.as_ref() else {
            return;
        };
        let from_another_node = entry.origin as usize >= self.shared.config.shards;
        if entry.origin != self.id && !(self.id == 0 && from_another_node) {
            return;
        }
        match &entry.outcome {
            Outcome::AccountRegistered { account } | Outcome::AccountUpdated { account } => {
                if let Err(why) = store.write(accounts::put(account.to_stored())) {
                    warn!(account = %account.name, %why, "an account was not written to the store");
                }
            }
            Outcome::AccountDropped { account, .. } => {
                if let Err(why) = store.write(accounts::remove(account.name.as_str())) {
                    warn!(account = %account.name, %why, "a dropped account was not removed from the store");
                }
                if let Err(why) = store.write(read_markers::remove_account(account.name.as_str())) {
                    warn!(account = %account.name, %why, "a dropped account's read markers were not removed from the store");
                }
            }
            Outcome::ReadMarkerMoved {
                account,
                target,
                millis,
                dropped,
            } => {
                let marker = read_markers::StoredMarker {
                    account: account.as_str().into(),
                    target: target.as_str().into(),
                    millis: *millis,
                };
                let dropped = dropped.as_ref().map(|target| target.as_str().into());
                if let Err(why) = store.write(read_markers::put(marker, dropped)) {
                    warn!(%account, %target, %why, "a read marker was not written to the store");
                }
            }
            _ => {}
        }
    }

    /// Whether local user `id` holds a nick that is an account it is not logged in to.
    pub fn holds_anothers_nick(&self, id: ClientId) -> bool {
        let network = self.network();
        let Some(user) = network.user(id) else {
            return false;
        };
        network
            .account(user.nick.as_str())
            .is_some_and(|account| user.account.as_ref() != Some(&account.name))
    }

    /// Starts `id`'s grace period for the registered nick it holds; the liveness tick
    /// renames it once the period is over unless it logged in or changed nick.
    pub fn watch_nick(&mut self, id: ClientId, now: Instant) {
        let deadline = now + self.shared.config.nick_grace;
        self.nick_deadlines.retain(|&(client, _)| client != id);
        self.nick_deadlines.push((id, deadline));
    }

    /// Renames the users whose grace period is over and who still hold another's
    /// nick; one that cannot be renamed now (the guest nick is taken, the cluster is
    /// unreachable) is tried again at the next tick.
    pub(super) fn enforce_nicks(&mut self, now: Instant) {
        if self.nick_deadlines.is_empty() {
            return;
        }
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.nick_deadlines)
            .into_iter()
            .partition(|&(_, deadline)| deadline <= now);
        self.nick_deadlines = waiting;
        for (id, _) in due {
            if self.client(id).is_some_and(|client| !client.closing)
                && self.holds_anothers_nick(id)
                && !self.rename_to_guest(id)
            {
                self.nick_deadlines.push((id, now));
            }
        }
    }

    /// Renames `id` to a fresh `Guest-<n>` and tells it why; `false` if the change
    /// was refused.
    pub fn rename_to_guest(&mut self, id: ClientId) -> bool {
        self.guests += 1;
        // Unique per shard and node; a clash with a user's own choice is refused
        // by the log and retried with the next number.
        let number = (self.guests * 64 + u64::from(self.id)) * 64 + u64::from(self.node);
        let guest = format!("Guest-{number}");
        let outcome = self.propose(Event::ChangeNick {
            client: id,
            nick: guest.as_str().into(),
        });
        if !matches!(outcome, Outcome::NickChanged { .. }) {
            return false;
        }
        if let Some(client) = self.client_mut(id) {
            client.rename(&guest);
        }
        let source = crate::accounts::nickserv_source(&self.shared.config.server_name);
        let line = LineBuilder::from_source(&source, "NOTICE")
            .arg(&guest)
            .trailing(texts::THAT_NICK_IS_REGISTERED_AND_YOU_DID)
            .finish();
        self.send(id, line);
        true
    }
}
