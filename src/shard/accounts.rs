//! The shard's side of accounts: handing slow work (argon2, store waits) to the
//! [`Offload`](crate::state::offload::Offload) workers and taking their results in,
//! and writing each applied account event to the node's store once.

use super::{Input, Shard};
use crate::state::log::Entry;
use crate::state::network::Outcome;
use crate::state::offload::{Busy, Finished};
use crate::state::{ClientId, Shared};
use crate::store::accounts;
use std::sync::Arc;
use std::time::Instant;
use tracing::warn;

impl Shard {
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
            shared.offload.finish(client, finished);
            shared.bus.wake(client.shard);
        }))
    }

    /// Hands what the workers finished for this shard's clients to the command
    /// layer, as input of its client (one atomic load when nothing finished).
    pub(super) fn take_in_finished(&mut self) {
        for (client, finished) in self.shared.offload.take_finished(self.id) {
            if self.client(client).is_some_and(|c| !c.closing) {
                (self.handle_line)(self, client, Input::Finished(&finished), Instant::now());
            }
        }
    }

    /// Writes an applied account event to the node's store, once per node: the
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
        if let Outcome::AccountRegistered { account } = &entry.outcome {
            if let Err(why) = store.write(accounts::put(account.to_stored())) {
                warn!(account = %account.name, %why, "an account was not written to the store");
            }
        }
    }
}
