//! Server operators: OPER, and the commands only an operator may use (KILL, WALLOPS,
//! REHASH, DIE, BACKUP). Whether a user is an operator is network state (`+o`, set by an
//! event), so every shard agrees; authenticating is [`crate::opers`]'.

use super::errors::reply_refusal;
use super::Ctx;
use crate::opers::{authenticate, OperRefusal};
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::{LineBuilder, Message};
use crate::state::client::CloseReason;
use crate::state::deferred::DeferredReply;
use crate::state::network::{Event, Outcome, Refusal};
use tracing::{info, warn};

/// Failed OPER attempts a connection may make; the last one disconnects it. Each
/// attempt costs an argon2 run (tens of ms of the shard's CPU), and per-source
/// connection limits bound how many connections can try at once.
pub const MAX_OPER_FAILURES: u8 = 3;

/// The QUIT reason of a client that failed OPER [`MAX_OPER_FAILURES`] times.
const TOO_MANY_OPER_FAILURES: &str = "Too many failed OPER attempts";

/// `OPER name password`: 381 and `+o` (a MODE line to the user) when a block matches
/// the name and the user's `~user@ip` and the password verifies; 491 when no block
/// matches, 464 on a bad password. Failures are logged at warn and counted: the
/// [`MAX_OPER_FAILURES`]th closes the connection.
pub fn oper(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let name = message.param_str(0).unwrap_or_default().to_owned();
    let password = message.param(1).unwrap_or_default();
    let Some(user_at_host) = ctx
        .network()
        .user(ctx.id)
        .map(|user| user.user_at_address())
    else {
        return;
    };
    let opers = ctx.shared().live.opers();
    let refusal = match authenticate(&opers, &name, password, &user_at_host) {
        Ok(block) => {
            let outcome = ctx.propose(Event::SetOper {
                client: ctx.id,
                oper: Some(block.name.as_str().into()),
            });
            info!(client = %ctx.id, nick = %ctx.client().nick(), from = %user_at_host, oper = %block.name, "OPER succeeded");
            let reply = ctx
                .numeric(RPL_YOUREOPER)
                .trailing(texts::YOU_ARE_NOW_AN_IRC_OPERATOR);
            ctx.reply(reply);
            if outcome == Outcome::OperChanged(true) {
                let line = LineBuilder::from_source(ctx.client().source(), "MODE")
                    .arg(ctx.client().nick())
                    .arg("+o")
                    .finish();
                ctx.send(line);
            }
            return;
        }
        Err(refusal) => refusal,
    };
    let reply = match refusal {
        OperRefusal::NoOperHost => ctx
            .numeric(ERR_NOOPERHOST)
            .trailing(texts::NO_O_LINES_FOR_YOUR_HOST),
        OperRefusal::PasswordMismatch => ctx
            .numeric(ERR_PASSWDMISMATCH)
            .trailing(texts::PASSWORD_INCORRECT),
    };
    ctx.reply(reply);
    let client = ctx.client_mut();
    client.oper_failures = client.oper_failures.saturating_add(1);
    let failures = client.oper_failures;
    warn!(
        client = %ctx.id,
        nick = %ctx.client().nick(),
        from = %user_at_host,
        oper = %name,
        failures,
        why = %refusal,
        "OPER failed"
    );
    if failures >= MAX_OPER_FAILURES {
        ctx.close(ctx.id, CloseReason::Server(TOO_MANY_OPER_FAILURES));
    }
}

/// `KILL nick :reason`: the victim, on whatever shard, is closed with
/// `Killed (oper (reason))`, which its channels see as its QUIT. 481 for a user who
/// is not an operator, 401 for an unknown nick.
pub fn kill(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let target = message.param_str(0).unwrap_or_default().to_owned();
    let reason = message
        .param(1)
        .map(|r| String::from_utf8_lossy(super::clip(r, super::KICKLEN)).into_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "No reason".to_owned());
    let outcome = ctx.propose(Event::Kill {
        client: ctx.id,
        target: target.as_str().into(),
        reason: reason.as_str().into(),
    });
    match outcome {
        Outcome::Killed { nick, by, .. } => {
            info!(oper = %by, victim = %nick, %reason, "kill");
        }
        Outcome::Refused(refusal) => reply_refusal(ctx, refusal, "", &target),
        _ => {}
    }
}

/// `WALLOPS :text`: the text, from the operator, to every user with `+w` on every
/// shard (an event each shard renders for its own users). 481 for non-operators.
pub fn wallops(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let text = message.param(0).unwrap_or_default();
    let outcome = ctx.propose(Event::Wallops {
        client: ctx.id,
        text: text.into(),
    });
    if let Outcome::Refused(refusal) = outcome {
        reply_refusal(ctx, refusal, "", "");
    }
}

/// `REHASH`: the same reload as SIGHUP (configuration file, MOTD, operator accounts,
/// TLS certificate, log file), done by the process's main loop; the operator hears
/// how it went from this shard's next liveness tick (`crate::state::rehash`): 382
/// only when it applied, the error (file, line, key) when it did not.
pub fn rehash(ctx: &mut Ctx<'_>, _message: &Message<'_>) {
    if !is_oper(ctx) {
        return;
    }
    info!(nick = %ctx.client().nick(), "REHASH");
    let rehash = &ctx.shared().rehash;
    if !rehash.is_served() {
        let reply = ctx
            .from_server("NOTICE")
            .arg(ctx.client().nick())
            .trailing(texts::REHASH_THIS_SERVER_WAS_STARTED_WITHOUT_SETTINGS);
        return ctx.reply(reply);
    }
    rehash.request(ctx.id);
}

/// `UPGRADE`: the live upgrade SIGUSR2 starts (`crate::upgrade`): the binary now at
/// the server's path takes over every connection. The main loop does it; the
/// operator hears the outcome from the new process, or the reason from this one.
pub fn upgrade(ctx: &mut Ctx<'_>, _message: &Message<'_>) {
    if !is_oper(ctx) {
        return;
    }
    warn!(nick = %ctx.client().nick(), "UPGRADE");
    let requests = &ctx.shared().upgrade_requests;
    let text = if requests.is_served() {
        requests.request(ctx.id);
        "UPGRADE: starting the binary at the server's path; connections stay open"
    } else {
        "UPGRADE: this server was not started by the ringchat binary; it cannot upgrade itself"
    };
    let reply = ctx
        .from_server("NOTICE")
        .arg(ctx.client().nick())
        .trailing(text);
    ctx.reply(reply);
}

/// `DIE`: the server's graceful shutdown, as on SIGTERM (every client gets `ERROR`
/// with `Server shutting down`, queued output is flushed, the process exits 0).
pub fn die(ctx: &mut Ctx<'_>, _message: &Message<'_>) {
    if !is_oper(ctx) {
        return;
    }
    warn!(nick = %ctx.client().nick(), "DIE: shutting down");
    ctx.shared().begin_shutdown();
}

/// `BACKUP`: copies the store (accounts, history) while the server runs, to
/// `backups/ringchat-<UTC time>.redb` in the data directory. Answered at once with
/// the file's name, then by a NOTICE once the store's writer has made the copy (or
/// with why it could not). The copy is the store as of one commit; see
/// [`Store::backup`](crate::store::Store::backup).
pub fn backup(ctx: &mut Ctx<'_>, _message: &Message<'_>) {
    if !is_oper(ctx) {
        return;
    }
    let nick = ctx.client().nick().to_owned();
    let server = ctx.config().server_name.clone();
    let notice = {
        let nick = nick.clone();
        move |text: String| {
            LineBuilder::from_source(&server, "NOTICE")
                .arg(&nick)
                .trailing(text)
                .finish()
        }
    };
    let (Some(store), Some(data_dir)) = (&ctx.shared().store, &ctx.config().data_dir) else {
        let reply = ctx
            .from_server("NOTICE")
            .arg(&nick)
            .trailing(texts::BACKUP_THIS_SERVER_KEEPS_NO_STORE);
        return ctx.reply(reply);
    };
    let stamp = crate::proto::time::server_time(std::time::SystemTime::now()).replace(':', "");
    let to = data_dir
        .join("backups")
        .join(format!("ringchat-{stamp}.redb"));
    let shown = to.display().to_string();
    info!(nick = %ctx.client().nick(), to = %shown, "BACKUP");
    let answer = ctx.shared().deferred.to_shard(ctx.id.shard);
    let client = ctx.id;
    let done = Box::new(move |copied: std::io::Result<u64>| {
        let text = match copied {
            Ok(bytes) => {
                info!(to = %shown, bytes, "backup written");
                format!("BACKUP: {shown} written ({bytes} bytes)")
            }
            Err(why) => {
                warn!(to = %shown, %why, "backup failed");
                format!("BACKUP: {shown} failed: {why}")
            }
        };
        if let Some(answer) = answer {
            answer.send(DeferredReply {
                to: client,
                lines: vec![notice(text)],
            });
        }
    });
    let text = match store.backup(to.clone(), done) {
        Ok(()) => format!("BACKUP: copying the store to {}", to.display()),
        Err(why) => format!("BACKUP: refused: {why}"),
    };
    let reply = ctx.from_server("NOTICE").arg(&nick).trailing(text);
    ctx.reply(reply);
}

/// Whether the client is a server operator; answers 481 when it is not.
fn is_oper(ctx: &mut Ctx<'_>) -> bool {
    let oper = ctx
        .network()
        .user(ctx.id)
        .is_some_and(|user| user.oper.is_some());
    if !oper {
        reply_refusal(ctx, Refusal::NoPrivileges, "", "");
    }
    oper
}
