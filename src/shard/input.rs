//! Client input: framing received bytes into lines, flood control (token bucket,
//! throttling while a link to another shard is congested) and the receive queue.

use super::{live, Input, Shard, EXCESS_FLOOD};
use crate::proto::framing::{Frame, LineLimits};
use crate::state::client::CloseReason;
use crate::state::ClientId;
use std::time::Instant;

impl Shard {
    /// Frames and handles lines from `data` while flood tokens last; returns how many
    /// bytes were consumed (the rest waits in the client's input).
    pub(super) fn process_lines(&mut self, id: ClientId, data: &[u8], now: Instant) -> usize {
        let policy = self.shared.live.flood_policy();
        let mut at = 0;
        loop {
            if self.links_congested() {
                self.throttle(id);
                return at;
            }
            let Some(client) = live(&mut self.clients, id) else {
                return data.len();
            };
            if client.awaiting_reply.is_some()
                || client.auth.as_ref().is_some_and(|auth| auth.in_flight)
            {
                // An answer is being built off the shard (a CHATHISTORY batch, or a
                // password with the workers): the client's next lines wait for it,
                // so replies keep the order of the commands (a PING sent after
                // AUTHENTICATE gets its PONG after 903 or 904). The recvq bounds
                // what waits.
                return at;
            }
            let Some((frame, used)) = client.framer.next(&data[at..], LineLimits::IRC) else {
                return at;
            };
            match frame {
                Frame::Line(line) => {
                    if !client.flood.try_take(policy, now) {
                        self.throttle(id);
                        return at;
                    }
                    at += used;
                    self.counts.lines_in += 1;
                    (self.handle_line)(self, id, Input::Line(line), now);
                }
                Frame::TooLong => {
                    at += used;
                    (self.handle_line)(self, id, Input::TooLong, now);
                }
                Frame::Nul | Frame::Skipped => at += used,
            }
        }
    }

    /// Marks `id`'s input as waiting; the housekeeping tick resumes it.
    pub(super) fn throttle(&mut self, id: ClientId) {
        if let Some(client) = self.clients.get_mut(id.slot) {
            if !client.throttled {
                client.throttled = true;
                self.throttled.push(id);
            }
        }
    }

    /// Processes lines waiting in the client's own input buffer.
    pub(super) fn process_buffered(&mut self, id: ClientId, now: Instant) {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return;
        };
        let input = std::mem::take(&mut client.input);
        let consumed = self.process_lines(id, &input, now);
        if let Some(client) = self.clients.get_mut(id.slot) {
            if !client.closing {
                client.input = input;
                client.input.drain(..consumed);
                if client.input.is_empty() && client.input.capacity() > 1024 {
                    client.input = Vec::new();
                }
            }
        }
    }

    pub(super) fn check_recvq(&mut self, id: ClientId) {
        let recvq = self.shared.live.recvq();
        if let Some(client) = self.clients.get(id.slot) {
            if !client.closing && client.input.len() > recvq {
                self.doomed.push((id, CloseReason::Server(EXCESS_FLOOD)));
            }
        }
    }
}
