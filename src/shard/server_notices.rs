//! Server notices to operators who asked for them (user mode `+s` with a snomask,
//! [`crate::proto::snomask`]): which local clients watch, and the notice each
//! applied event means to them. It renders and sends; it never decides anything.
//!
//! Every shard renders every event for its own watchers (as for WALLOPS), so an
//! operator on any shard or node hears of a registration, quit, KILL, oper-up or ban
//! wherever it happened, once, in log order, at no cost of hand-offs. What is not an
//! event (a KLINE refusing a registration, a DLINE refusing a connection) reaches
//! the watchers of the shard where it happened ([`Shard::server_notice`]). With no
//! watcher on the shard, an event costs one check of an empty list.

use super::Shard;
use crate::proto::snomask::{NoticeKind, Snomask};
use crate::proto::LineBuilder;
use crate::shard::{EXCESS_FLOOD, SENDQ_EXCEEDED};
use crate::state::network::{Event, Outcome, Sequenced, User};
use crate::state::ClientId;

impl Shard {
    /// Sets client `id`'s snomask (empty: `-s`), keeping the watcher list in step.
    pub fn set_snomask(&mut self, id: ClientId, mask: Snomask) {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return;
        };
        client.snomask = mask;
        self.notice_watchers.retain(|watcher| *watcher != id);
        if !mask.is_empty() {
            self.notice_watchers.push(id);
        }
    }

    /// Forgets a closing client as a watcher.
    pub(super) fn forget_notice_watcher(&mut self, id: ClientId) {
        self.notice_watchers.retain(|watcher| *watcher != id);
    }

    /// Sends `*** text` to this shard's watchers of `kind`.
    pub fn server_notice(&mut self, kind: NoticeKind, text: &str) {
        if self.notice_watchers.is_empty() {
            return;
        }
        let server = self.shared.config.server_name.clone();
        let told: Vec<(ClientId, String)> = self
            .notice_watchers
            .iter()
            .filter_map(|id| self.clients.get(id.slot))
            .filter(|client| client.snomask.has(kind) && !client.closing)
            .map(|client| (client.id, client.nick().to_owned()))
            .collect();
        for (id, nick) in told {
            let line = LineBuilder::from_source(&server, "NOTICE")
                .arg(&nick)
                .trailing(format!("*** {text}"))
                .finish();
            self.send(id, line);
        }
    }

    /// The server notices the applied `entry` means, to this shard's watchers.
    pub(super) fn tell_server_notices(&mut self, entry: &Sequenced, outcome: &Outcome) {
        if self.notice_watchers.is_empty() {
            return;
        }
        let network = self.log.network().clone();
        let notices: Vec<(NoticeKind, String)> = match (&entry.event, outcome) {
            (Event::Register { client, tls, .. }, Outcome::Registered) => network
                .user(*client)
                .map(|user| {
                    let tls = if *tls { " (TLS)" } else { "" };
                    let text = format!(
                        "Client connecting: {} ({}) [{}]{tls} {{{}}}",
                        user.nick,
                        user.user_at_address(),
                        user.host,
                        user.realname
                    );
                    vec![(NoticeKind::Connects, text)]
                })
                .unwrap_or_default(),
            (Event::Quit { reason, .. }, Outcome::Quit { user }) => quit_notices(user, reason),
            (Event::NodeLost { node, reason }, Outcome::NodeLost { users }) => vec![(
                NoticeKind::Connects,
                format!(
                    "Node {node} lost ({reason}): {} of its users exited",
                    users.len()
                ),
            )],
            (Event::Kill { reason, .. }, Outcome::Killed { nick, by, .. }) => vec![(
                NoticeKind::Kills,
                format!("Received KILL message for {nick}. From {by} ({reason})"),
            )],
            (Event::SetOper { client, oper }, Outcome::OperChanged(true)) => network
                .user(*client)
                .map(|user| {
                    let text = format!(
                        "{} ({}) is now an operator ({})",
                        user.nick,
                        user.user_at_address(),
                        oper.as_deref().unwrap_or_default()
                    );
                    vec![(NoticeKind::Opers, text)]
                })
                .unwrap_or_default(),
            (Event::AddBan { ban, .. }, Outcome::BanAdded) => {
                let lasting = match ban.expires_at {
                    Some(end) => format!("{} s", end.saturating_sub(ban.set_at)),
                    None => "permanent".to_owned(),
                };
                vec![(
                    NoticeKind::Bans,
                    format!(
                        "{} added {} {} for [{}]: {}",
                        ban.set_by,
                        lasting,
                        ban.target.kind(),
                        ban.target.mask(),
                        ban.reason
                    ),
                )]
            }
            (Event::RemoveBan { client, target }, Outcome::BanRemoved) => {
                let by = network
                    .user(*client)
                    .map_or_else(|| "*".to_owned(), |user| user.nick.to_string());
                vec![(
                    NoticeKind::Bans,
                    format!("{by} removed {} for [{}]", target.kind(), target.mask()),
                )]
            }
            _ => Vec::new(),
        };
        for (kind, text) in notices {
            self.server_notice(kind, &text);
        }
    }
}

/// A quit is a connect notice (`c`), and also a flood notice (`f`) when the server
/// cut the user off, or a ban notice (`b`) when a KLINE or DLINE closed it.
fn quit_notices(user: &User, reason: &str) -> Vec<(NoticeKind, String)> {
    let who = format!("{} ({})", user.nick, user.user_at_address());
    let mut notices = vec![(
        NoticeKind::Connects,
        format!("Client exiting: {who} [{reason}]"),
    )];
    if reason == EXCESS_FLOOD || reason == SENDQ_EXCEEDED {
        notices.push((NoticeKind::Floods, format!("{who} cut off: {reason}")));
    }
    if reason.starts_with("K-Lined") || reason.starts_with("D-Lined") {
        notices.push((NoticeKind::Bans, format!("Ban hit: {who} {reason}")));
    }
    notices
}
