//! The one mapping from a refused operation to its numeric reply.
//!
//! Handlers get a [`Refusal`] from the network state (from an event's outcome, or
//! from the message path's permission check) and answer it here, so each error has
//! exactly one wording and one parameter layout.

use super::Ctx;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::state::network::Refusal;

/// Answers `refusal` to the client. `channel` is the channel the client named and
/// `nick` the nickname it named, for the errors that echo them.
pub(super) fn reply_refusal(ctx: &mut Ctx<'_>, refusal: Refusal, channel: &str, nick: &str) {
    let numeric = |code| ctx.numeric(code);
    let reply = match refusal {
        Refusal::NickInUse => numeric(ERR_NICKNAMEINUSE)
            .arg(nick)
            .trailing(texts::NICKNAME_IS_ALREADY_IN_USE),
        Refusal::NoSuchChannel => numeric(ERR_NOSUCHCHANNEL)
            .arg(channel)
            .trailing(texts::NO_SUCH_CHANNEL),
        Refusal::NotOnChannel => numeric(ERR_NOTONCHANNEL)
            .arg(channel)
            .trailing(texts::YOURE_NOT_ON_THAT_CHANNEL),
        Refusal::CannotSend => numeric(ERR_CANNOTSENDTOCHAN)
            .arg(channel)
            .trailing(texts::CANNOT_SEND_TO_CHANNEL),
        Refusal::NotOperator => numeric(ERR_CHANOPRIVSNEEDED)
            .arg(channel)
            .trailing(texts::YOURE_NOT_CHANNEL_OPERATOR),
        Refusal::NoSuchNick => numeric(ERR_NOSUCHNICK)
            .arg(nick)
            .trailing(texts::NO_SUCH_NICK_CHANNEL),
        Refusal::UserNotInChannel => numeric(ERR_USERNOTINCHANNEL)
            .arg(nick)
            .arg(channel)
            .trailing(texts::THEY_ARENT_ON_THAT_CHANNEL),
        Refusal::UserOnChannel => numeric(ERR_USERONCHANNEL)
            .arg(nick)
            .arg(channel)
            .trailing(texts::IS_ALREADY_ON_CHANNEL),
        Refusal::TooManyChannels => numeric(ERR_TOOMANYCHANNELS)
            .arg(channel)
            .trailing(texts::YOU_HAVE_JOINED_TOO_MANY_CHANNELS),
        Refusal::ChannelFull => numeric(ERR_CHANNELISFULL)
            .arg(channel)
            .trailing(texts::CANNOT_JOIN_CHANNEL_L),
        Refusal::InviteOnly => numeric(ERR_INVITEONLYCHAN)
            .arg(channel)
            .trailing(texts::CANNOT_JOIN_CHANNEL_I),
        Refusal::Banned => numeric(ERR_BANNEDFROMCHAN)
            .arg(channel)
            .trailing(texts::CANNOT_JOIN_CHANNEL_B),
        Refusal::BadKey => numeric(ERR_BADCHANNELKEY)
            .arg(channel)
            .trailing(texts::CANNOT_JOIN_CHANNEL_K),
        // No numeric exists for these: a server NOTICE, as Solanum and InspIRCd do.
        Refusal::ServerBanListFull | Refusal::NoSuchServerBan => ctx
            .from_server("NOTICE")
            .arg(ctx.client().nick())
            .trailing(match refusal {
                Refusal::ServerBanListFull => "The server ban list is full".to_owned(),
                _ => format!("No such ban: {nick}"),
            }),
        // The account commands answer these themselves (FAIL REGISTER, NickServ);
        // anywhere else a NOTICE says what happened.
        Refusal::AccountExists
        | Refusal::NoSuchAccount
        | Refusal::TooManyAccounts
        | Refusal::NotLoggedIn
        | Refusal::CertificateInUse
        | Refusal::CertificateListFull
        | Refusal::NoSuchCertificate => ctx
            .from_server("NOTICE")
            .arg(ctx.client().nick())
            .trailing(format!("Refused: {refusal}")),
        // Modern IRC has no numeric for it; a NOTICE names what happened.
        Refusal::ClusterUnavailable => ctx.from_server("NOTICE").arg(ctx.client().nick()).trailing(
            "Cannot do that now: this server has lost its cluster connection; try again shortly",
        ),
        Refusal::NoPrivileges => {
            numeric(ERR_NOPRIVILEGES).trailing(texts::PERMISSION_DENIED_YOURE_NOT_AN_IRC_OPERATOR)
        }
    };
    ctx.reply(reply);
}
