//! IRCv3 capabilities a client can enable with `CAP REQ`, as a compact bit set.

/// The SASL mechanisms the server offers: `sasl=` in `CAP LS 302`, and 908.
pub const SASL_MECHANISMS: &str = "PLAIN,EXTERNAL,SCRAM-SHA-256";

/// One capability the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Cap {
    /// The server may announce capability changes (implied by `CAP LS 302`).
    CapNotify = 1 << 0,
    /// NAMES and WHO show every prefix a member has (`@+alice`).
    MultiPrefix = 1 << 1,
    /// Client-only tags (`+name=value`) are relayed, and TAGMSG is understood.
    MessageTags = 1 << 2,
    /// Relayed lines carry `@time=` with the server's receive time.
    ServerTime = 1 << 3,
    /// A client gets its own PRIVMSG and NOTICE back as the others see them.
    EchoMessage = 1 << 4,
    /// Channel members see AWAY changes of each other.
    AwayNotify = 1 << 5,
    /// The SETNAME command, and members see each other's real name changes.
    Setname = 1 << 6,
    /// NAMES lists `nick!user@host` instead of `nick`.
    UserhostInNames = 1 << 7,
    /// The server may group lines in BATCHes.
    Batch = 1 << 8,
    /// Replies to a command sent with `@label=` carry the label.
    LabeledResponse = 1 << 9,
    /// MONITOR watchers also get the AWAY and SETNAME lines (with `away-notify`,
    /// `setname`) of the nicks they watch, as if they shared a channel.
    ExtendedMonitor = 1 << 10,
    /// INVITE lines reach the channel members who could have invited too.
    InviteNotify = 1 << 11,
    /// The client understands any FAIL/WARN/NOTE, also where no specification calls
    /// for one (else it gets a server NOTICE there).
    StandardReplies = 1 << 12,
    /// The CHATHISTORY command (IRCv3 `draft/chathistory`).
    Chathistory = 1 << 13,
    /// CHATHISTORY replays TAGMSGs too (IRCv3 `draft/event-playback`).
    EventPlayback = 1 << 14,
    /// SASL authentication (`AUTHENTICATE`); its value lists the mechanisms.
    Sasl = 1 << 15,
    /// Messages from a logged-in user carry `@account=`.
    AccountTag = 1 << 16,
    /// JOIN lines carry the joiner's account (`*` for none) and real name.
    ExtendedJoin = 1 << 17,
    /// Members see each other log in and out (`ACCOUNT name`, `ACCOUNT *`).
    AccountNotify = 1 << 18,
    /// IRCv3 `draft/account-registration`: the `REGISTER` command.
    AccountRegistration = 1 << 19,
    /// IRCv3 `draft/read-marker`: MARKREAD, and the account's read markers after a
    /// JOIN and whenever one moves.
    ReadMarker = 1 << 20,
}

impl Cap {
    /// Every capability, in the order `CAP LS` lists them.
    pub const ALL: [Cap; 21] = [
        Cap::AccountNotify,
        Cap::AccountTag,
        Cap::AwayNotify,
        Cap::Batch,
        Cap::CapNotify,
        Cap::AccountRegistration,
        Cap::Chathistory,
        Cap::EventPlayback,
        Cap::ReadMarker,
        Cap::EchoMessage,
        Cap::ExtendedJoin,
        Cap::ExtendedMonitor,
        Cap::InviteNotify,
        Cap::LabeledResponse,
        Cap::MessageTags,
        Cap::MultiPrefix,
        Cap::Sasl,
        Cap::ServerTime,
        Cap::Setname,
        Cap::StandardReplies,
        Cap::UserhostInNames,
    ];

    /// The name used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Cap::CapNotify => "cap-notify",
            Cap::MultiPrefix => "multi-prefix",
            Cap::MessageTags => "message-tags",
            Cap::ServerTime => "server-time",
            Cap::EchoMessage => "echo-message",
            Cap::AwayNotify => "away-notify",
            Cap::Setname => "setname",
            Cap::UserhostInNames => "userhost-in-names",
            Cap::Batch => "batch",
            Cap::LabeledResponse => "labeled-response",
            Cap::ExtendedMonitor => "extended-monitor",
            Cap::InviteNotify => "invite-notify",
            Cap::StandardReplies => "standard-replies",
            Cap::Chathistory => "draft/chathistory",
            Cap::EventPlayback => "draft/event-playback",
            Cap::Sasl => "sasl",
            Cap::AccountTag => "account-tag",
            Cap::ExtendedJoin => "extended-join",
            Cap::AccountNotify => "account-notify",
            Cap::AccountRegistration => "draft/account-registration",
            Cap::ReadMarker => "draft/read-marker",
        }
    }

    /// The value `CAP LS 302` shows after the name, if any: the SASL mechanisms
    /// (IRCv3 SASL 3.2), and what account registration allows (registering before
    /// connecting, under a name other than the nick; no e-mail needed).
    pub fn value(self) -> Option<&'static str> {
        match self {
            Cap::Sasl => Some(SASL_MECHANISMS),
            Cap::AccountRegistration => Some("before-connect,custom-account-name"),
            _ => None,
        }
    }

    /// The capability called `name`, if the server offers it.
    pub fn from_name(name: &str) -> Option<Cap> {
        Cap::ALL.into_iter().find(|cap| cap.name() == name)
    }
}

/// A set of capabilities; four bytes in every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(u32);

impl Caps {
    /// The empty set.
    pub const NONE: Caps = Caps(0);

    /// The set as bits, for a live upgrade's handover (same binary family: the
    /// format number guards the meaning of each bit).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The set [`Caps::bits`] gave.
    pub fn from_bits(bits: u32) -> Caps {
        Caps(bits)
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: Cap) -> bool {
        self.0 & cap as u32 != 0
    }

    /// Adds or removes `cap`.
    pub fn set(&mut self, cap: Cap, on: bool) {
        if on {
            self.0 |= cap as u32;
        } else {
            self.0 &= !(cap as u32);
        }
    }

    /// The enabled capabilities' names, space-separated (`CAP LIST`).
    pub fn names(self) -> String {
        Cap::ALL
            .into_iter()
            .filter(|&cap| self.has(cap))
            .map(Cap::name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Applies a `CAP REQ` list (`cap -cap ...`) to `caps`: all of it, or nothing if any
/// name is unknown (IRCv3: the request is atomic).
pub fn apply_request(caps: Caps, request: &str) -> Option<Caps> {
    let mut changed = caps;
    for item in request.split(' ').filter(|s| !s.is_empty()) {
        let (name, on) = match item.strip_prefix('-') {
            Some(name) => (name, false),
            None => (item, true),
        };
        changed.set(Cap::from_name(name)?, on);
    }
    Some(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_applies_wholly_or_not_at_all() {
        let caps = apply_request(Caps::NONE, "server-time echo-message").expect("known caps");
        assert!(caps.has(Cap::ServerTime) && caps.has(Cap::EchoMessage));
        assert_eq!(apply_request(caps, "multi-prefix bogus"), None);
        let caps = apply_request(caps, "-echo-message").expect("known");
        assert!(!caps.has(Cap::EchoMessage));
        assert_eq!(caps.names(), "server-time");
    }
}
