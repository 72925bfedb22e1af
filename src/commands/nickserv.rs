//! `NickServ`: the account commands users type (`/msg NickServ REGISTER ...`, or the
//! `NS`/`NICKSERV` commands), answered as NOTICEs from a `NickServ` pseudo-client
//! that every shard and node answers for itself (no services daemon, no link). Its
//! nick is reserved: no user can take it.

use super::accounts::{
    check_nick, log_out, logged_in, start_drop, start_login, start_password_change,
    start_registration,
};
use super::Ctx;
use crate::accounts::{check_password, is_valid_account_name, nickserv_source, NICKSERV};
use crate::proto::{LineBuilder, Message};
use crate::state::network::{Event, Outcome, Refusal};
use crate::state::offload::{LoginVia, RegisterVia};

/// Whether `target` (a PRIVMSG's) is NickServ.
pub fn is_nickserv(target: &str) -> bool {
    target.eq_ignore_ascii_case(NICKSERV)
        || target
            .split_once('@')
            .is_some_and(|(nick, _)| nick.eq_ignore_ascii_case(NICKSERV))
}

/// `NS <command> ...` and `NICKSERV <command> ...`: the parameters are the words.
pub fn command(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let words: Vec<String> = message
        .params()
        .iter()
        .flat_map(|param| {
            String::from_utf8_lossy(param)
                .split(' ')
                .filter(|word| !word.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    run(ctx, &words);
}

/// `PRIVMSG NickServ :<command> ...`.
pub fn privmsg(ctx: &mut Ctx<'_>, text: &[u8]) {
    let words: Vec<String> = String::from_utf8_lossy(text)
        .split(' ')
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect();
    run(ctx, &words);
}

/// A NOTICE from NickServ to this client.
pub fn tell(ctx: &mut Ctx<'_>, text: &str) {
    let source = nickserv_source(&ctx.config().server_name);
    let line = LineBuilder::from_source(&source, "NOTICE")
        .arg(ctx.client().nick())
        .trailing(text);
    ctx.reply(line);
}

fn run(ctx: &mut Ctx<'_>, words: &[String]) {
    let Some((verb, args)) = words.split_first() else {
        return help(ctx);
    };
    match verb.to_ascii_uppercase().as_str() {
        "REGISTER" => register(ctx, args),
        "IDENTIFY" | "LOGIN" => identify(ctx, args),
        "LOGOUT" => {
            if logged_in(ctx).is_none() {
                tell(ctx, "You are not logged in");
            } else {
                log_out(ctx);
                tell(ctx, "You are now logged out");
                check_nick(ctx);
            }
        }
        "INFO" => info(ctx, args),
        "GHOST" => ghost(ctx, args),
        "CERT" => cert(ctx, args),
        "SET" => set(ctx, args),
        "DROP" => drop_account(ctx, args),
        "HELP" => help(ctx),
        _ => tell(ctx, &format!("Unknown command {verb}; try HELP")),
    }
}

/// `REGISTER <password> [email]`: registers the current nick as an account.
fn register(ctx: &mut Ctx<'_>, args: &[String]) {
    let Some(password) = args.first() else {
        return tell(ctx, "Syntax: REGISTER <password> [email]");
    };
    let account = ctx.client().nick().to_owned();
    if logged_in(ctx).is_some() {
        return tell(ctx, "You are already logged in");
    }
    if !is_valid_account_name(&account) {
        return tell(ctx, &format!("{account} cannot be an account name"));
    }
    if ctx.network().account(&account).is_some() {
        return tell(ctx, &format!("{account} is already registered"));
    }
    if let Err(weak) = check_password(&account, password.as_bytes(), ctx.config().min_password_len)
    {
        return tell(ctx, &format!("{account} was not registered: {weak}"));
    }
    if let Err(why) = start_registration(
        ctx,
        RegisterVia::NickServ,
        &account,
        password.as_bytes().to_vec(),
    ) {
        tell(ctx, why);
    }
}

/// `IDENTIFY [account] <password>`: logs in (to the current nick's account without
/// one).
fn identify(ctx: &mut Ctx<'_>, args: &[String]) {
    let (account, password) = match args {
        [password] => (ctx.client().nick().to_owned(), password),
        [account, password, ..] => (account.clone(), password),
        [] => return tell(ctx, "Syntax: IDENTIFY [account] <password>"),
    };
    if logged_in(ctx).is_some() {
        return tell(ctx, "You are already logged in");
    }
    if let Err(why) = start_login(
        ctx,
        LoginVia::Identify,
        &account,
        password.as_bytes().to_vec(),
    ) {
        tell(ctx, why);
    }
}

/// `INFO [account]`: when it was registered, and who is logged in to it here.
fn info(ctx: &mut Ctx<'_>, args: &[String]) {
    let name = match args.first() {
        Some(name) => name.clone(),
        None => match logged_in(ctx) {
            Some(account) => account,
            None => ctx.client().nick().to_owned(),
        },
    };
    let network = ctx.network_version();
    let Some(account) = network.account(&name) else {
        return tell(ctx, &format!("{name} is not registered"));
    };
    let registered = crate::proto::time::human(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(account.registered_at),
    );
    tell(
        ctx,
        &format!("Account {}: registered {registered}", account.name),
    );
}

/// `GHOST <nick>`: disconnects whoever holds the nick of the account the user is
/// logged in to (a stale connection of its own, or someone in its grace period).
fn ghost(ctx: &mut Ctx<'_>, args: &[String]) {
    let Some(target) = args.first() else {
        return tell(ctx, "Syntax: GHOST <nick>");
    };
    let outcome = ctx.propose(Event::Ghost {
        client: ctx.id,
        target: target.as_str().into(),
    });
    match outcome {
        Outcome::Killed { nick, .. } => tell(ctx, &format!("{nick} has been disconnected")),
        Outcome::Refused(Refusal::NoPrivileges) => tell(
            ctx,
            &format!("You must be logged in to the account {target} to free its nick"),
        ),
        Outcome::Refused(Refusal::NoSuchNick) => {
            tell(ctx, &format!("Nobody else is using {target}"))
        }
        Outcome::Refused(refusal) => tell(ctx, &refusal.to_string()),
        _ => {}
    }
}

/// `SET PASSWORD <new password>`: changes the password of the account the user is
/// logged in to (the same strength rules as REGISTER).
fn set(ctx: &mut Ctx<'_>, args: &[String]) {
    let (Some(what), Some(password)) = (args.first(), args.get(1)) else {
        return tell(ctx, "Syntax: SET PASSWORD <new password>");
    };
    if !what.eq_ignore_ascii_case("PASSWORD") {
        return tell(ctx, "Only SET PASSWORD is known");
    }
    let Some(account) = logged_in(ctx) else {
        return tell(ctx, "Log in to your account first");
    };
    if let Err(weak) = check_password(&account, password.as_bytes(), ctx.config().min_password_len)
    {
        return tell(ctx, &format!("The password was not changed: {weak}"));
    }
    if let Err(why) = start_password_change(ctx, &account, password.as_bytes().to_vec()) {
        tell(ctx, why);
    }
}

/// `DROP <password>`: drops the account the user is logged in to, once the password
/// is checked (on a worker, like IDENTIFY; a wrong one counts as a failed login).
/// Everyone logged in to it is logged out, and its name is free.
fn drop_account(ctx: &mut Ctx<'_>, args: &[String]) {
    let Some(password) = args.first() else {
        return tell(ctx, "Syntax: DROP <password>");
    };
    let Some(account) = ctx.client().account.as_ref().map(|a| a.to_string()) else {
        return tell(ctx, "Log in to your account first");
    };
    if let Err(why) = start_drop(ctx, &account, password.as_bytes().to_vec()) {
        tell(ctx, why);
    }
}

/// `CERT ADD [fingerprint]` (the connection's own certificate without one),
/// `CERT DEL <fingerprint>`, `CERT LIST`: the client certificates that log in to the
/// account with SASL EXTERNAL.
fn cert(ctx: &mut Ctx<'_>, args: &[String]) {
    let Some(account) = logged_in(ctx) else {
        return tell(ctx, "Log in to your account first");
    };
    let verb = args.first().map(|verb| verb.to_ascii_uppercase());
    match (verb.as_deref(), args.get(1)) {
        (Some("LIST"), _) => {
            let certfps = ctx
                .network()
                .account(&account)
                .map(|account| account.certfps.clone())
                .unwrap_or_default();
            if certfps.is_empty() {
                tell(ctx, &format!("{account} has no certificates"));
            }
            for certfp in certfps {
                tell(ctx, &format!("{account}: {certfp}"));
            }
        }
        (Some(verb @ ("ADD" | "DEL")), given) => {
            let own = ctx.client().tls.as_ref().and_then(|tls| tls.certfp.clone());
            let Some(certfp) = given
                .map(|fp| normalize_certfp(fp))
                .or(own.map(String::from))
            else {
                return tell(
                    ctx,
                    "Syntax: CERT ADD <fingerprint> (or connect with a client certificate)",
                );
            };
            if certfp.len() != 64 || !certfp.bytes().all(|b| b.is_ascii_hexdigit()) {
                return tell(
                    ctx,
                    "A fingerprint is the certificate's SHA-256 in hex (64 digits)",
                );
            }
            let add = verb == "ADD";
            let outcome = ctx.propose(Event::SetCertificate {
                client: ctx.id,
                certfp: certfp.as_str().into(),
                add,
            });
            match outcome {
                Outcome::AccountUpdated { .. } if add => tell(
                    ctx,
                    &format!("{certfp} now logs in to {account} (SASL EXTERNAL)"),
                ),
                Outcome::AccountUpdated { .. } => {
                    tell(ctx, &format!("{certfp} no longer logs in to {account}"))
                }
                Outcome::Unchanged => tell(ctx, &format!("{account} already has {certfp}")),
                Outcome::Refused(refusal) => tell(ctx, &format!("CERT {verb}: {refusal}")),
                _ => {}
            }
        }
        _ => tell(
            ctx,
            "Syntax: CERT ADD [fingerprint] | CERT DEL <fingerprint> | CERT LIST",
        ),
    }
}

/// A fingerprint as users paste it (`AB:CD:...`), as the server writes it (`abcd...`).
fn normalize_certfp(given: &str) -> String {
    given
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn help(ctx: &mut Ctx<'_>) {
    for line in [
        "NickServ: your account, kept by this network.",
        "REGISTER <password> [email]: register your current nick as an account",
        "IDENTIFY [account] <password>: log in (or use SASL PLAIN or SCRAM-SHA-256 when connecting)",
        "LOGOUT: log out",
        "INFO [account]: when an account was registered",
        "GHOST <nick>: disconnect whoever uses your account's nick",
        "CERT ADD [fingerprint] | DEL <fingerprint> | LIST: certificates for SASL EXTERNAL",
        "SET PASSWORD <new password>: change your account's password",
        "DROP <password>: delete your account; everyone logged in to it is logged out",
    ] {
        tell(ctx, line);
    }
}
