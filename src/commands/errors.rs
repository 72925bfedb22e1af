//! The one mapping from a refused operation to its numeric reply.
//!
//! Handlers get a [`Refusal`] from the network state (from an event's outcome, or
//! from the message path's permission check) and answer it here, so each error has
//! exactly one wording and one parameter layout.

use super::Ctx;
use crate::proto::numeric::*;
use crate::state::network::Refusal;

/// Answers `refusal` to the client. `channel` is the channel the client named and
/// `nick` the nickname it named, for the errors that echo them.
pub(super) fn reply_refusal(ctx: &mut Ctx<'_>, refusal: Refusal, channel: &str, nick: &str) {
    let numeric = |code| ctx.numeric(code);
    let reply = match refusal {
        Refusal::NickInUse => numeric(ERR_NICKNAMEINUSE)
            .arg(nick)
            .trailing("Nickname is already in use"),
        Refusal::NoSuchChannel => numeric(ERR_NOSUCHCHANNEL)
            .arg(channel)
            .trailing("No such channel"),
        Refusal::NotOnChannel => numeric(ERR_NOTONCHANNEL)
            .arg(channel)
            .trailing("You're not on that channel"),
        Refusal::CannotSend => numeric(ERR_CANNOTSENDTOCHAN)
            .arg(channel)
            .trailing("Cannot send to channel"),
        Refusal::NotOperator => numeric(ERR_CHANOPRIVSNEEDED)
            .arg(channel)
            .trailing("You're not channel operator"),
        Refusal::NoSuchNick => numeric(ERR_NOSUCHNICK)
            .arg(nick)
            .trailing("No such nick/channel"),
        Refusal::UserNotInChannel => numeric(ERR_USERNOTINCHANNEL)
            .arg(nick)
            .arg(channel)
            .trailing("They aren't on that channel"),
        Refusal::UserOnChannel => numeric(ERR_USERONCHANNEL)
            .arg(nick)
            .arg(channel)
            .trailing("is already on channel"),
        Refusal::TooManyChannels => numeric(ERR_TOOMANYCHANNELS)
            .arg(channel)
            .trailing("You have joined too many channels"),
        Refusal::ChannelFull => numeric(ERR_CHANNELISFULL)
            .arg(channel)
            .trailing("Cannot join channel (+l)"),
        Refusal::InviteOnly => numeric(ERR_INVITEONLYCHAN)
            .arg(channel)
            .trailing("Cannot join channel (+i)"),
        Refusal::Banned => numeric(ERR_BANNEDFROMCHAN)
            .arg(channel)
            .trailing("Cannot join channel (+b)"),
        Refusal::BadKey => numeric(ERR_BADCHANNELKEY)
            .arg(channel)
            .trailing("Cannot join channel (+k)"),
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
            numeric(ERR_NOPRIVILEGES).trailing("Permission Denied- You're not an IRC operator")
        }
    };
    ctx.reply(reply);
}
