//! REHASH between the shards and the process's main loop: an operator's REHASH is a
//! request the main loop (which owns the command line and reloads on SIGHUP) takes
//! up, and the reload's outcome comes back as an answer that the operator's shard
//! delivers at its next liveness tick. So the operator hears `382` only when the
//! reload applied, and the error when it did not, without a shard ever reading a
//! file itself.

use super::ClientId;
use crate::proto::numeric::RPL_REHASHING;
use crate::proto::texts;
use crate::proto::LineBuilder;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What a reload came to, as the operator who asked is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RehashOutcome {
    /// The settings were read and the live ones applied; `file` is the config file
    /// (`*` without one) for 382, `notes` what the operator should also know (settings
    /// that need a restart, a TLS certificate that was kept).
    Applied { file: String, notes: Vec<String> },
    /// Nothing changed: the error, one line naming the file, line and key.
    Failed { error: String },
    /// `UPGRADE` (the same mechanism carries it): the new binary took over, told
    /// by the new process.
    Upgraded { from: String, to: String },
    /// `UPGRADE` failed; this process serves on.
    UpgradeFailed { error: String },
}

impl RehashOutcome {
    /// The lines the operator `nick` gets from `server`: `382 nick file :Rehashing`
    /// (RFC 1459 and Modern IRC's RPL_REHASHING) and a NOTICE per note when the reload
    /// applied; one NOTICE with the error when it did not (a NOTICE, which every
    /// client shows, rather than `FAIL REHASH`, which not all do).
    pub fn lines(&self, server: &str, nick: &str) -> Vec<Bytes> {
        let notice = |text: String| {
            LineBuilder::from_source(server, "NOTICE")
                .arg(nick)
                .trailing(text)
                .finish()
        };
        match self {
            RehashOutcome::Applied { file, notes } => std::iter::once(
                LineBuilder::from_source(server, RPL_REHASHING)
                    .arg(nick)
                    .arg(file)
                    .trailing(texts::REHASHING)
                    .finish(),
            )
            .chain(notes.iter().map(|note| notice(format!("REHASH: {note}"))))
            .collect(),
            RehashOutcome::Failed { error } => {
                vec![notice(format!("REHASH failed, nothing changed: {error}"))]
            }
            RehashOutcome::Upgraded { from, to } => vec![notice(format!(
                "UPGRADE done: now running ringchat {to} (was {from}); every plaintext connection kept"
            ))],
            RehashOutcome::UpgradeFailed { error } => vec![notice(format!(
                "UPGRADE failed, still running the old binary: {error}"
            ))],
        }
    }
}

/// Operators waiting for a reload, and the answers waiting for their shards.
#[derive(Debug, Default)]
pub struct Rehash {
    /// Wakes the main loop; requests before it looks coalesce into one reload (a
    /// `Notify` keeps one permit).
    requested: tokio::sync::Notify,
    /// Whether a main loop serves requests (not so in a server embedded by tests).
    served: AtomicBool,
    /// Operators whose REHASH the next reload answers.
    waiting: Mutex<Vec<ClientId>>,
    /// Answers not yet taken by their shards.
    answers: Mutex<Vec<(ClientId, RehashOutcome)>>,
    /// Whether `answers` holds any: one load per liveness tick.
    has_answers: AtomicBool,
}

impl Rehash {
    /// The main loop says it serves requests (before it waits for the first).
    pub fn serve(&self) {
        self.served.store(true, Ordering::Release);
    }

    /// Whether anything will take up a request.
    pub fn is_served(&self) -> bool {
        self.served.load(Ordering::Acquire)
    }

    /// `by` asks for a reload and waits for its answer.
    pub fn request(&self, by: ClientId) {
        lock(&self.waiting).push(by);
        self.requested.notify_one();
    }

    /// Resolves when a reload was requested (the main loop's `select!`).
    pub async fn requested(&self) {
        self.requested.notified().await;
    }

    /// The operators the reload about to run answers.
    pub fn take_waiting(&self) -> Vec<ClientId> {
        std::mem::take(&mut *lock(&self.waiting))
    }

    /// Leaves `outcome` for each of `operators`, for their shards to deliver.
    pub fn answer(&self, operators: Vec<ClientId>, outcome: &RehashOutcome) {
        if operators.is_empty() {
            return;
        }
        let mut answers = lock(&self.answers);
        answers.extend(operators.into_iter().map(|id| (id, outcome.clone())));
        self.has_answers.store(true, Ordering::Release);
    }

    /// The answers for clients of shard `shard` of node `node`; the others stay.
    pub fn take_answers(&self, node: u16, shard: u16) -> Vec<(ClientId, RehashOutcome)> {
        if !self.has_answers.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut answers = lock(&self.answers);
        let (mine, others): (Vec<_>, Vec<_>) = answers
            .drain(..)
            .partition(|(id, _)| id.node == node && id.shard == shard);
        *answers = others;
        self.has_answers
            .store(!answers.is_empty(), Ordering::Release);
        mine
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
