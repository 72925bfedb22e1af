//! HELP and HELPOP (Modern IRC): a short text per command, answered 704, 705..., 706,
//! or 524 for a subject without help. `tests` checks that every command in the
//! command table has its entry, so the help cannot fall behind the table.

use super::Ctx;
use crate::proto::numeric::*;
use crate::proto::Message;

/// The index shown by `HELP` without a subject.
const INDEX: &[&str] = &[
    "ringchat help",
    "",
    "Commands: ADMIN AWAY CAP CHATHISTORY HELP INFO INVITE ISON JOIN KICK KNOCK LINKS LIST",
    "LUSERS MARKREAD MODE MONITOR MOTD NAMES NICK NOTICE PART PASS PING PONG PRIVMSG QUIT",
    "SETNAME STATS TAGMSG TIME TOPIC USER USERHOST VERSION WHO WHOIS WHOWAS",
    "Accounts: AUTHENTICATE REGISTER NICKSERV NS",
    "Operators: OPER KILL WALLOPS KLINE UNKLINE DLINE UNDLINE REHASH UPGRADE DIE BACKUP",
    "Web gateways: WEBIRC",
    "",
    "HELP <command> explains one command.",
];

/// Each command's help: its syntax first, then what it does.
const TOPICS: &[(&str, &[&str])] = &[
    (
        "AUTHENTICATE",
        &[
            "AUTHENTICATE <PLAIN|EXTERNAL|SCRAM-SHA-256>, then AUTHENTICATE <base64>",
            "Logs in to an account with SASL (clients do this for you).",
        ],
    ),
    (
        "REGISTER",
        &[
            "REGISTER <account|*> <email|*> <password>",
            "Registers an account (* for your nick) and logs you in to it.",
        ],
    ),
    (
        "NICKSERV",
        &[
            "NICKSERV <REGISTER|IDENTIFY|LOGOUT|GHOST|CERT|SET|DROP|INFO|HELP> ...",
            "Account commands; the same as /msg NickServ ... (NICKSERV HELP lists them).",
        ],
    ),
    ("NS", &["NS <command> ...", "The same as NICKSERV."]),
    (
        "AWAY",
        &[
            "AWAY [:message]",
            "Marks you away with a message, or back without one.",
        ],
    ),
    (
        "CAP",
        &["CAP LS|LIST|REQ|END", "Negotiates IRCv3 capabilities."],
    ),
    (
        "CHATHISTORY",
        &[
            "CHATHISTORY LATEST|BEFORE|AFTER|AROUND <#channel> <*|msgid=id|timestamp=time> <limit>",
            "CHATHISTORY BETWEEN <#channel> <ref> <ref> <limit>, CHATHISTORY TARGETS <time> <time> <limit>",
            "Replays a channel's kept messages to its members (IRCv3 draft/chathistory).",
        ],
    ),
    (
        "HELP",
        &[
            "HELP [command]",
            "Shows the command list, or help on one command.",
        ],
    ),
    ("HELPOP", &["HELPOP [command]", "The same as HELP."]),
    ("INFO", &["INFO", "Shows what this server is."]),
    (
        "INVITE",
        &[
            "INVITE <nick> <#channel>",
            "Invites a user to a channel; INVITE alone lists your invitations.",
        ],
    ),
    (
        "ISON",
        &[
            "ISON <nick> [nick...]",
            "Says which of the nicks are online.",
        ],
    ),
    (
        "JOIN",
        &[
            "JOIN <#channel>[,#channel] [key,key]",
            "Joins channels; JOIN 0 leaves them all.",
        ],
    ),
    (
        "KICK",
        &[
            "KICK <#channel> <nick>[,nick] [:reason]",
            "Removes members (operators only).",
        ],
    ),
    (
        "LINKS",
        &["LINKS", "Lists the servers of the network: this one."],
    ),
    (
        "LIST",
        &[
            "LIST [#channel|mask|>n|<n]",
            "Lists channels with their members and topic.",
        ],
    ),
    (
        "LUSERS",
        &[
            "LUSERS",
            "Counts users, invisible users, channels and the peak.",
        ],
    ),
    (
        "MARKREAD",
        &[
            "MARKREAD <target> [timestamp=YYYY-MM-DDThh:mm:ss.sssZ]",
            "Without a time, shows where your account stopped reading a channel or nick;",
            "with one, moves that read marker forward (never back), and your account's other",
            "connections with draft/read-marker are told. Needs an account to set.",
        ],
    ),
    (
        "MODE",
        &[
            "MODE <#channel> [+-beIiklmnostv [params]] or MODE <nick> [+-iBw] [-o] [+s [+bcfko]|-s]",
            "Shows or changes channel or user modes; +s (operators) brings server notices.",
        ],
    ),
    (
        "MONITOR",
        &[
            "MONITOR +|- <nick>[,nick], MONITOR C|L|S",
            "Watches nicks: you are told when they come online or go offline.",
        ],
    ),
    ("MOTD", &["MOTD", "Shows the message of the day."]),
    ("NAMES", &["NAMES <#channel>", "Lists a channel's members."]),
    (
        "NICK",
        &["NICK <nick>", "Chooses or changes your nickname."],
    ),
    (
        "NOTICE",
        &[
            "NOTICE <target>[,target] :text",
            "Like PRIVMSG, but never answered.",
        ],
    ),
    (
        "PART",
        &["PART <#channel>[,#channel] [:reason]", "Leaves channels."],
    ),
    (
        "PASS",
        &[
            "PASS <password>",
            "Gives the server password before registering.",
        ],
    ),
    (
        "PING",
        &["PING <token>", "The server answers PONG with the token."],
    ),
    ("PONG", &["PONG <token>", "Answers the server's PING."]),
    (
        "PRIVMSG",
        &[
            "PRIVMSG <target>[,target] :text",
            "Sends a message to nicks or channels; @#channel reaches its operators,",
            "+#channel its voiced members and operators.",
        ],
    ),
    ("QUIT", &["QUIT [:reason]", "Leaves the server."]),
    (
        "OPER",
        &[
            "OPER <name> <password>",
            "Makes you a server operator (+o); three failures disconnect.",
        ],
    ),
    (
        "KILL",
        &["KILL <nick> :<reason>", "Operators: disconnects a user."],
    ),
    (
        "WALLOPS",
        &["WALLOPS :<text>", "Operators: a message to every +w user."],
    ),
    (
        "KLINE",
        &[
            "KLINE [FORCE] [minutes|Ns|Nm|Nh|Nd] <user@host> :<reason>",
            "Operators: bans ~user@ip masks, connected matches too.",
            "FORCE sets one that hits you or more than max-ban-share of users.",
        ],
    ),
    (
        "UNKLINE",
        &["UNKLINE <user@host>", "Operators: lifts a KLINE."],
    ),
    (
        "DLINE",
        &[
            "DLINE [FORCE] [minutes|Ns|Nm|Nh|Nd] <ip|cidr> :<reason>",
            "Operators: bans addresses before registration, connected ones too.",
            "FORCE sets one that hits you or more than max-ban-share of users.",
        ],
    ),
    (
        "UNDLINE",
        &["UNDLINE <ip|cidr>", "Operators: lifts a DLINE."],
    ),
    (
        "REHASH",
        &["REHASH", "Operators: reloads the configuration, as SIGHUP."],
    ),
    (
        "UPGRADE",
        &[
            "UPGRADE",
            "Operators: runs the binary now at the server's path and hands it every",
            "plaintext connection, as SIGUSR2; TLS and WebSocket clients reconnect.",
        ],
    ),
    (
        "DIE",
        &["DIE", "Operators: shuts the server down gracefully."],
    ),
    (
        "BACKUP",
        &[
            "BACKUP",
            "Operators: copies the store (accounts, history) to backups/ in the data",
            "directory while the server runs; a NOTICE says when the copy is made.",
        ],
    ),
    (
        "SETNAME",
        &["SETNAME :real name", "Changes your real name."],
    ),
    (
        "STATS",
        &[
            "STATS S|C|K|D",
            "Shows per-shard counters (S), cluster figures (C), or, to",
            "operators, every K-Line (K) or D-Line (D).",
        ],
    ),
    (
        "TAGMSG",
        &["@+tag TAGMSG <target>", "Sends tags only (message-tags)."],
    ),
    ("TIME", &["TIME", "Shows the server's time."]),
    (
        "KNOCK",
        &[
            "KNOCK <#channel> [:reason]",
            "Asks the operators of a +i, +k or full channel to invite you.",
        ],
    ),
    (
        "ADMIN",
        &["ADMIN", "Shows who runs the server and how to reach them."],
    ),
    (
        "TOPIC",
        &[
            "TOPIC <#channel> [:topic]",
            "Shows or sets a channel's topic.",
        ],
    ),
    (
        "USER",
        &[
            "USER <user> 0 * :real name",
            "Gives your user name and real name.",
        ],
    ),
    (
        "USERHOST",
        &[
            "USERHOST <nick> [nick...]",
            "Shows user@host of up to five nicks.",
        ],
    ),
    (
        "VERSION",
        &[
            "VERSION",
            "Shows the server version and its ISUPPORT tokens.",
        ],
    ),
    (
        "WEBIRC",
        &[
            "WEBIRC <password> <gateway> <hostname> <ip> [:options]",
            "Sent by a trusted web gateway before registering: names the user behind it.",
        ],
    ),
    (
        "WHO",
        &[
            "WHO <#channel|mask> [%fields[,token]]",
            "Lists users, with WHOX fields.",
        ],
    ),
    ("WHOIS", &["WHOIS <nick>[,nick]", "Shows who a user is."]),
    (
        "WHOWAS",
        &["WHOWAS <nick> [count]", "Shows who held a nickname before."],
    ),
];

/// `HELP [subject]` and `HELPOP [subject]`. Every text has at least two lines (the
/// test below), so 704 and 706 are always distinct lines.
pub fn help(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let (subject, lines) = match message.param_str(0) {
        None => ("*".to_owned(), INDEX),
        Some(subject) => match topic(subject) {
            Some(lines) => (subject.to_owned(), lines),
            None => {
                let reply = ctx
                    .numeric(ERR_HELPNOTFOUND)
                    .arg(subject)
                    .trailing("No help available on this topic");
                ctx.reply(reply);
                return;
            }
        },
    };
    let last = lines.len() - 1;
    for (index, text) in lines.iter().enumerate() {
        let code = match index {
            0 => RPL_HELPSTART,
            i if i == last => RPL_ENDOFHELP,
            _ => RPL_HELPTXT,
        };
        let reply = ctx.numeric(code).arg(&subject).trailing(*text);
        ctx.reply(reply);
    }
}

/// The help for `subject` (a command name, any case).
fn topic(subject: &str) -> Option<&'static [&'static str]> {
    TOPICS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(subject))
        .map(|(_, lines)| *lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_help_and_the_index_names_it() {
        let index = INDEX.join(" ");
        for name in super::super::command_names() {
            let lines = topic(name).unwrap_or_else(|| panic!("no HELP for {name}"));
            assert!(lines.len() >= 2, "{name}: syntax and meaning");
            assert!(
                name == "HELPOP" || name == "NS" || index.split(' ').any(|word| word == name),
                "the index lacks {name}"
            );
        }
    }
}
