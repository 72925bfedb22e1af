//! IRCv3 `labeled-response`: the replies to a labeled command carry its label, as one
//! labeled line, an `ACK` when there is no reply, or a `labeled-response` BATCH when
//! there are several. Handlers know nothing of it: the replies are rewritten in the
//! client's outbox after the handler returns, before any writer can take them.

use crate::proto::caps::Cap;
use crate::proto::outgoing::add_tags;
use crate::proto::LineBuilder;
use crate::proto::Message;
use crate::shard::Shard;
use crate::state::ClientId;
use std::sync::atomic::{AtomicU64, Ordering};

/// Batch references, unique in the process.
static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);

/// A fresh batch reference (for any BATCH the server opens).
pub fn next_batch_reference() -> String {
    NEXT_BATCH.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The `label` tag of `message`, if its sender enabled `labeled-response`.
pub fn requested<'m>(shard: &Shard, id: ClientId, message: &Message<'m>) -> Option<&'m [u8]> {
    let client = shard.client(id)?;
    if !client.caps.has(Cap::LabeledResponse) {
        return None;
    }
    message
        .tags?
        .split(|&b| b == b';')
        .find_map(|tag| tag.strip_prefix(b"label="))
        .filter(|label| !label.is_empty() && label.len() <= 64)
}

/// Where the client's queue stands before the command runs.
pub fn mark(shard: &Shard, id: ClientId) -> usize {
    shard.client(id).map_or(0, |c| c.outbox.queued_lines())
}

/// Rewrites the replies queued since `mark` to carry `label`.
pub fn label_replies(shard: &mut Shard, id: ClientId, label: &[u8], mark: usize) {
    let server = shard.shared.config.server_name.clone();
    let sendq = shard.shared.live.sendq();
    let Some(client) = shard.client_mut(id) else {
        return;
    };
    if client.closing {
        return;
    }
    let replies = client.outbox.take_since(mark);
    let mut label_tag = b"label=".to_vec();
    label_tag.extend_from_slice(label);
    let labeled = match replies.len() {
        0 => vec![add_tags(
            &LineBuilder::from_source(&server, "ACK").finish(),
            &label_tag,
        )],
        1 => vec![add_tags(&replies[0], &label_tag)],
        _ if client.caps.has(Cap::Batch) => {
            let reference = next_batch_reference();
            let start = LineBuilder::from_source(&server, "BATCH")
                .arg(format!("+{reference}"))
                .arg("labeled-response")
                .finish();
            let batch_tag = format!("batch={reference}");
            let mut lines = vec![add_tags(&start, &label_tag)];
            lines.extend(
                replies
                    .iter()
                    .map(|line| add_tags(line, batch_tag.as_bytes())),
            );
            lines.push(
                LineBuilder::from_source(&server, "BATCH")
                    .arg(format!("-{reference}"))
                    .finish(),
            );
            lines
        }
        _ => replies,
    };
    // The labels add a few bytes to each reply: the sendq still holds.
    let overflowed = labeled
        .into_iter()
        .any(|line| client.outbox.push(line, sendq).is_err());
    if overflowed {
        client.outbox.discard_queued();
        shard.close(
            id,
            crate::state::client::CloseReason::Server(crate::shard::SENDQ_EXCEEDED),
        );
    }
}
