//! What a command handler works with, and all it can reach: the client that sent the
//! line, a read view of the network state, the proposal path, delivery, and the
//! node's shared settings. The shard itself stays private to this module, so a
//! handler cannot reach its framing, flood control, hand-off links or timers (issue
//! 30: a handler gets what it needs, not the shard).

use crate::config::Config;
use crate::proto::caps::Cap;
use crate::proto::outgoing::{MsgId, Outgoing};
use crate::proto::snomask::{NoticeKind, Snomask};
use crate::proto::{CaselessKey, LineBuilder, Message};
use crate::shard::monitor::MonitorRefusal;
use crate::shard::AuthCount;
use crate::shard::Shard;
use crate::state::bus::KeptDirect;
use crate::state::client::CloseReason;
use crate::state::network::{Event, Network, Outcome};
use crate::state::{Client, ClientId, Shared};
use crate::store::history::{Kind, Record};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// What a handler works with: the client that sent the line, the time, and the
/// shard's capabilities named below (not the shard: its field is private here).
pub struct Ctx<'a> {
    /// The client's shard, reached only through the methods below.
    shard: &'a mut Shard,
    /// The client that sent the line.
    pub id: ClientId,
    /// The injected clock.
    pub now: Instant,
    /// Messages for the client itself that are side effects of its command, not
    /// replies (a PRIVMSG it sent to its own nick): queued after its replies are
    /// labeled, so they never carry the label. Empty unless the client talks to
    /// itself; dropped with the `Ctx` at the end of the line.
    side_effects: Vec<Outgoing>,
    /// The command's answer is built elsewhere and arrives later (CHATHISTORY): its
    /// label goes on that answer, so none is added here.
    reply_deferred: bool,
}

/// What a handler leaves for the dispatcher once it gives the shard back.
pub struct Finished {
    /// Messages to the sender that are side effects, queued after its replies.
    pub side_effects: Vec<Outgoing>,
    /// The answer comes later and carries the label itself.
    pub reply_deferred: bool,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(shard: &'a mut Shard, id: ClientId, now: Instant) -> Ctx<'a> {
        Ctx {
            shard,
            id,
            now,
            side_effects: Vec::new(),
            reply_deferred: false,
        }
    }

    /// The client that sent the line. Slots are freed only by the connection's writer
    /// task, never while a handler runs, so the client is always there.
    pub fn client(&self) -> &Client {
        self.shard
            .client(self.id)
            .expect("a client outlives the handling of its own line")
    }

    /// The server configuration.
    pub fn config(&self) -> &Config {
        &self.shard.shared.config
    }

    /// A numeric reply to this client: `:server CODE nick`.
    pub fn numeric(&self, code: &str) -> LineBuilder {
        LineBuilder::from_source(&self.config().server_name, code).arg(self.client().nick())
    }

    /// A line from the server to this client with a non-numeric command (`PONG`, `CAP`).
    pub fn from_server(&self, command: &str) -> LineBuilder {
        LineBuilder::from_source(&self.config().server_name, command)
    }

    /// An IRCv3 standard reply, `FAIL <command> <code> <context...> :<description>`.
    /// Empty context parts are left out; one that could not be a middle parameter
    /// (a leading `:`, a space: client input echoed back) is shown as `*`.
    pub fn fail(&mut self, command: &str, code: &str, context: &[&str], description: &str) {
        let reply = context
            .iter()
            .filter(|part| !part.is_empty())
            .fold(
                self.from_server("FAIL").arg(command).arg(code),
                |line, part| line.arg(middle_param(part)),
            )
            .trailing(description);
        self.reply(reply);
    }

    /// A failure no specification has a reply for (IRCv3 `standard-replies`):
    /// `FAIL <command> <code> :<description>` to a client with the capability, a
    /// server NOTICE with the description to any other, which may not understand an
    /// unexpected FAIL.
    pub fn fail_nonstandard(&mut self, command: &str, code: &str, description: &str) {
        if self.client().caps.has(Cap::StandardReplies) {
            return self.fail(command, code, &[], description);
        }
        let reply = self
            .from_server("NOTICE")
            .arg(self.client().nick())
            .trailing(format!("{command}: {description}"));
        self.reply(reply);
    }

    /// Queues a line for this client.
    pub fn reply(&mut self, line: LineBuilder) {
        self.send(line.finish());
    }

    /// Queues a built line for this client.
    pub fn send(&mut self, line: Bytes) {
        self.shard.send(self.id, line);
    }

    /// Delivers `message` to this client as a side effect of its command, after its
    /// replies (see [`Ctx::side_effects`]).
    pub fn send_side_effect(&mut self, message: Outgoing) {
        self.side_effects.push(message);
    }

    /// The `label` tag the sender put on `message`, if it has `labeled-response`.
    pub fn requested_label<'m>(&self, message: &Message<'m>) -> Option<&'m [u8]> {
        super::labels::requested(self.shard, self.id, message)
    }

    /// Says that the answer will come later, carrying the label itself.
    pub fn defer_reply(&mut self) {
        self.reply_deferred = true;
        let now = self.now;
        self.client_mut().awaiting_reply = Some(now);
    }

    /// Ends the handler's use of the shard.
    pub(super) fn finish(self) -> Finished {
        Finished {
            side_effects: self.side_effects,
            reply_deferred: self.reply_deferred,
        }
    }

    // ---- the sender ----------------------------------------------------------------

    /// The client that sent the line, to change it (caps, modes, registration).
    pub fn client_mut(&mut self) -> &mut Client {
        self.shard
            .client_mut(self.id)
            .expect("a client outlives the handling of its own line")
    }

    /// Gives the unregistered sender the address a trusted gateway named (WEBIRC), as
    /// a trusted proxy's header does (see [`Shard::readdress`]): DLINEs and per-source
    /// limits are checked for it and its host becomes it; on a refusal nothing changes.
    pub fn readdress(&mut self, ip: std::net::IpAddr) -> Result<(), crate::shard::Refused> {
        self.shard.readdress(self.id, ip, self.now)
    }

    /// Ends the registration of the sender (001 has been queued).
    pub fn mark_registered(&mut self) {
        self.shard.mark_registered(self.id);
    }

    // ---- reading the network state ---------------------------------------------------

    /// The network state as this shard has told its clients about it.
    pub fn network(&self) -> &Network {
        self.shard.network()
    }

    /// The same version, held past the handler (a long reply streamed from it).
    pub fn network_version(&self) -> Arc<Network> {
        self.shard.network_version()
    }

    /// The shard's NAMES text of its big channels.
    pub fn names_cache(&mut self) -> &mut crate::state::names_cache::NamesCache {
        self.shard.names_cache()
    }

    /// What every shard of the node shares: the settings, the live settings,
    /// counters, the cloak key, REHASH requests.
    pub fn shared(&self) -> &Shared {
        &self.shard.shared
    }

    // ---- changing it: the proposal path ----------------------------------------------

    /// Proposes `event` to the ordered log and waits for its outcome (see
    /// [`Shard::propose`]).
    pub fn propose(&mut self, event: Event) -> Outcome {
        self.shard.propose(event)
    }

    // ---- delivery --------------------------------------------------------------------

    /// A message id for a message this client sends (`msgid` tag).
    pub fn next_msgid(&mut self) -> MsgId {
        self.shard.next_msgid()
    }

    /// Queues `message` for local client `id`, in the variant its capabilities ask for.
    pub fn send_message(&mut self, id: ClientId, message: &mut Outgoing) {
        self.shard.send_message(id, message);
    }

    /// Queues `message` for `id`, wherever it lives (a hand-off when remote); a
    /// direct message `kept` in history here is kept by the recipient's node too.
    pub fn send_anywhere(&mut self, id: ClientId, message: Outgoing, kept: Option<KeptDirect>) {
        self.shard.send_anywhere(id, message, kept);
    }

    /// Delivers `message` to every member of `channel` but `except`; one `kept` in
    /// history here is kept by every node of a cluster.
    pub fn deliver_to_channel(
        &mut self,
        channel: &CaselessKey,
        message: Outgoing,
        except: Option<ClientId>,
        kept: Option<Kind>,
    ) {
        self.shard
            .deliver_to_channel(channel, message, except, kept);
    }

    /// Keeps a channel message for CHATHISTORY (batched for the store's writer).
    pub fn keep_in_history(&mut self, record: Record) {
        self.shard.keep_in_history(record);
    }

    /// Hands the messages kept so far to the store's writer now (a CHATHISTORY query
    /// queued after them then sees them).
    pub fn flush_history(&mut self) {
        self.shard.flush_history();
    }

    /// Sends `text` to the operators whose snomask asks for `kind`.
    pub fn server_notice(&mut self, kind: NoticeKind, text: &str) {
        self.shard.server_notice(kind, text);
    }

    // ---- connections -----------------------------------------------------------------

    /// Closes local client `id` (the sender, or a user a KILL or KLINE ends).
    pub fn close(&mut self, id: ClientId, reason: CloseReason) {
        self.shard.close(id, reason);
    }

    /// Publishes this shard's counters now (STATS reads them).
    pub fn publish_counters(&mut self) {
        self.shard.publish_counters();
    }

    // ---- the sender's lists ----------------------------------------------------------

    /// Adds `nick` to the sender's MONITOR list.
    pub fn monitor_add(&mut self, nick: &str) -> Result<(), MonitorRefusal> {
        self.shard.monitor_add(self.id, nick)
    }

    /// Removes `nick` from the sender's MONITOR list.
    pub fn monitor_remove(&mut self, nick: &str) {
        self.shard.monitor_remove(self.id, nick);
    }

    /// Empties the sender's MONITOR list.
    pub fn monitor_clear(&mut self) {
        self.shard.monitor_clear(self.id);
    }

    /// Sets the sender's server notice mask (user mode `+s`).
    pub fn set_snomask(&mut self, mask: Snomask) {
        self.shard.set_snomask(self.id, mask);
    }

    // ---- accounts ----------------------------------------------------------------------

    /// Counts an authentication outcome for `/metrics`.
    pub fn count_auth(&mut self, what: AuthCount) {
        self.shard.count_auth(what);
    }

    /// Runs `work` off the shard threads (argon2, store waits); its result comes back
    /// to the sender as [`Input::Finished`](crate::shard::Input::Finished).
    pub fn offload(
        &self,
        work: impl FnOnce(&Shared) -> crate::state::offload::Finished + Send + 'static,
    ) -> Result<(), crate::state::offload::Busy> {
        self.shard.offload(self.id, work)
    }

    /// Whether the sender holds a nick that is an account it is not logged in to.
    pub fn holds_anothers_nick(&self) -> bool {
        self.shard.holds_anothers_nick(self.id)
    }

    /// Starts the sender's grace period for the registered nick it holds.
    pub fn watch_nick(&mut self) {
        self.shard.watch_nick(self.id, self.now);
    }

    /// Renames the sender to a fresh `Guest-<n>`; `false` if the change was refused.
    pub fn rename_to_guest(&mut self) -> bool {
        self.shard.rename_to_guest(self.id)
    }
}

/// A client-given word shown as a middle parameter: `*` when it could not be one.
pub(super) fn middle_param(text: &str) -> &str {
    if text.is_empty() || text.starts_with(':') || text.contains(' ') {
        "*"
    } else {
        text
    }
}
