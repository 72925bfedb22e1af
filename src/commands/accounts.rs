//! Accounts: IRCv3 `draft/account-registration` (`REGISTER`), logging in and out,
//! and taking up the work the offload workers finished (a password checked or
//! hashed, an account stored, a password checked before a drop) for the command
//! that asked: SASL ([`super::sasl`]), NickServ ([`super::nickserv`]) or REGISTER.
//!
//! A registration is acknowledged (`REGISTER SUCCESS`, NickServ's notice, 900) only
//! once the store has committed it, when the server has a data directory: what a
//! client was told exists survives a crash (SIGKILL) of the server.

use super::Ctx;
use crate::accounts::{
    check_password, hash_password, is_valid_account_name, verify_password, Credentials,
};
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::Message;
use crate::shard::{AuthCount, Shard};
use crate::state::client::{Authentication, CloseReason};
use crate::state::network::{Event, Outcome, Refusal};
use crate::state::offload::{Busy, Finished, LoginVia, RegisterVia};
use crate::state::ClientId;
use std::time::Instant;
use tracing::{info, warn};

/// Failed logins (SASL, IDENTIFY) a connection may make; the last closes it. Each
/// costs an argon2 run on a worker, and the per-source limits bound how many
/// connections can try at once.
pub const MAX_LOGIN_FAILURES: u8 = 5;

/// The QUIT reason of a client that failed [`MAX_LOGIN_FAILURES`] logins.
const TOO_MANY_LOGIN_FAILURES: &str = "Too many failed login attempts";

/// `REGISTER <account> {<email> | *} <password>` (IRCv3 `draft/account-registration`),
/// before or after connection registration (`before-connect`); `*` as the account
/// is the current nick. E-mail is neither required nor kept. Answered with
/// `REGISTER SUCCESS <account> :...` once the account is stored, or
/// `FAIL REGISTER <code> <account> :...` with the spec's codes.
pub fn register(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let wanted = message.param_str(0).unwrap_or_default();
    let password = message.param(2).unwrap_or_default().to_vec();
    let account = if wanted == "*" {
        let nick = ctx.client().nick();
        if nick == "*" {
            return fail_register(ctx, "NEED_NICK", "*", "Choose a nickname first");
        }
        nick.to_owned()
    } else {
        wanted.to_owned()
    };
    if logged_in(ctx).is_some() {
        return fail_register(
            ctx,
            "ALREADY_AUTHENTICATED",
            &account,
            "You are already logged in",
        );
    }
    if !is_valid_account_name(&account) {
        return fail_register(ctx, "BAD_ACCOUNT_NAME", &account, "Invalid account name");
    }
    if ctx.network().account(&account).is_some() {
        return fail_register(ctx, "ACCOUNT_EXISTS", &account, "Account already exists");
    }
    if let Err(weak) = check_password(&account, &password, ctx.config().min_password_len) {
        return fail_register(ctx, "WEAK_PASSWORD", &account, &weak.to_string());
    }
    if let Err(why) = start_registration(ctx, RegisterVia::Ircv3, &account, password) {
        fail_register(ctx, "TEMPORARILY_UNAVAILABLE", &account, why);
    }
}

/// `FAIL REGISTER <code> <account> :<description>`.
fn fail_register(ctx: &mut Ctx<'_>, code: &str, account: &str, description: &str) {
    ctx.fail("REGISTER", code, &[account], description);
}

/// The account the client is logged in to (or will be once registered).
pub fn logged_in(ctx: &Ctx<'_>) -> Option<String> {
    let client = ctx.client();
    match (&client.account, &client.auth) {
        (Some(account), _) => Some(account.to_string()),
        (None, Some(auth)) => auth.pending_account.as_deref().map(str::to_owned),
        (None, None) => None,
    }
}

/// The client's authentication state, made on first use.
pub fn authentication<'c>(ctx: &'c mut Ctx<'_>) -> &'c mut Authentication {
    ctx.client_mut().auth.get_or_insert_with(Box::default)
}

/// Hands a logged-in user's new password to a worker to hash; the change continues
/// in [`finished`] (NickServ SET PASSWORD).
pub fn start_password_change(
    ctx: &mut Ctx<'_>,
    account: &str,
    password: Vec<u8>,
) -> Result<(), &'static str> {
    if in_flight(ctx) {
        return Err("Another authentication is in progress");
    }
    let name: Box<str> = account.into();
    let submitted = ctx.offload(move |_| Finished::Rehashed {
        account: name,
        password: hash_password(&password).ok().map(Box::new),
    });
    busy_or_started(ctx, submitted)
}

/// Whether a password of this client is with the workers already.
pub fn in_flight(ctx: &Ctx<'_>) -> bool {
    ctx.client()
        .auth
        .as_ref()
        .is_some_and(|auth| auth.in_flight)
}

fn set_in_flight(ctx: &mut Ctx<'_>, on: bool) {
    authentication(ctx).in_flight = on;
}

/// Hands the password to a worker to hash; the registration continues in
/// [`finished`]. `Err` with the reason to tell the client when it cannot start.
pub fn start_registration(
    ctx: &mut Ctx<'_>,
    via: RegisterVia,
    account: &str,
    password: Vec<u8>,
) -> Result<(), &'static str> {
    if in_flight(ctx) {
        return Err("Another authentication is in progress");
    }
    let source = ctx.client().host.parse::<std::net::IpAddr>().ok();
    let exempt = |ip: &std::net::IpAddr| {
        ctx.config()
            .sources
            .exempt
            .iter()
            .any(|net| net.contains(ip))
    };
    if let Some(source) = source.filter(|ip| !exempt(ip)) {
        if !ctx
            .shared()
            .auth_throttle
            .allow_registration(source, ctx.now)
        {
            return Err("Too many registrations from your address; try again later");
        }
    }
    let name: Box<str> = account.into();
    let submitted = ctx.offload(move |_| Finished::Hashed {
        via,
        account: name,
        password: hash_password(&password).ok().map(Box::new),
    });
    busy_or_started(ctx, submitted)
}

/// Hands the password to a worker to check against `account`'s hash; the login
/// continues in [`finished`]. An account that does not exist fails at once (as a
/// wrong password does, so the answer says nothing more).
pub fn start_login(
    ctx: &mut Ctx<'_>,
    via: LoginVia,
    account: &str,
    password: Vec<u8>,
) -> Result<(), &'static str> {
    if in_flight(ctx) {
        return Err("Another authentication is in progress");
    }
    if !ctx.shared().auth_throttle.allow_login(account, ctx.now) {
        login_failed(ctx, via, account);
        return Ok(());
    }
    let Some(hash) = ctx
        .network()
        .account(account)
        .map(|account| account.password.clone())
    else {
        login_failed(ctx, via, account);
        return Ok(());
    };
    let name: Box<str> = account.into();
    let submitted = ctx.offload(move |_| Finished::Verified {
        via,
        account: name,
        matched: verify_password(&hash, &password),
    });
    busy_or_started(ctx, submitted)
}

/// Hands the password to a worker to check against the hash of `account`, the one
/// the user is logged in to; the drop continues in [`finished`] (NickServ DROP). A
/// wrong password counts as a failed login.
pub fn start_drop(ctx: &mut Ctx<'_>, account: &str, password: Vec<u8>) -> Result<(), &'static str> {
    if in_flight(ctx) {
        return Err("Another authentication is in progress");
    }
    if !ctx.shared().auth_throttle.allow_login(account, ctx.now) {
        login_failed(ctx, LoginVia::Identify, account);
        return Ok(());
    }
    let Some(hash) = ctx
        .network()
        .account(account)
        .map(|account| account.password.clone())
    else {
        return Err("You are not logged in to an account");
    };
    let name: Box<str> = account.into();
    let submitted = ctx.offload(move |_| Finished::DropVerified {
        account: name,
        matched: verify_password(&hash, &password),
    });
    busy_or_started(ctx, submitted)
}

fn busy_or_started(ctx: &mut Ctx<'_>, submitted: Result<(), Busy>) -> Result<(), &'static str> {
    match submitted {
        Ok(()) => {
            set_in_flight(ctx, true);
            Ok(())
        }
        Err(Busy) => {
            ctx.count_auth(AuthCount::Busy);
            warn!(client = ?ctx.id, "authentication refused: the workers are busy");
            Err("The server is busy; try again in a moment")
        }
    }
}

/// Continues the command whose slow part finished (the shard's
/// [`Input::Finished`](crate::shard::Input::Finished)).
pub fn finished(shard: &mut Shard, id: ClientId, finished: &Finished, now: Instant) {
    let mut ctx = Ctx::new(shard, id, now);
    set_in_flight(&mut ctx, false);
    match finished {
        Finished::Verified {
            via,
            account,
            matched: true,
        } => match log_in(&mut ctx, account) {
            Some(account) => login_succeeded(&mut ctx, *via, &account),
            None => login_failed(&mut ctx, *via, account),
        },
        Finished::Verified { via, account, .. } => login_failed(&mut ctx, *via, account),
        Finished::Hashed {
            via,
            account,
            password: Some(password),
        } => enrol(&mut ctx, *via, account, password),
        Finished::Hashed { via, account, .. } => {
            warn!(%account, "hashing a new account's password failed");
            registration_failed(
                &mut ctx,
                *via,
                account,
                "TEMPORARILY_UNAVAILABLE",
                "The password could not be hashed",
            );
        }
        Finished::Rehashed {
            account,
            password: Some(credentials),
        } => {
            let outcome = ctx.propose(Event::SetPassword {
                client: ctx.id,
                password: credentials.hash.clone(),
                scram: credentials.scram.clone(),
            });
            let text = match outcome {
                Outcome::AccountUpdated { .. } => format!("The password of {account} is changed"),
                Outcome::Refused(refusal) => format!("The password was not changed: {refusal}"),
                _ => "The password was not changed".to_owned(),
            };
            super::nickserv::tell(&mut ctx, &text);
        }
        Finished::Rehashed { account, .. } => {
            warn!(%account, "hashing a new password failed");
            super::nickserv::tell(
                &mut ctx,
                "The password could not be hashed; it is unchanged",
            );
        }
        Finished::DropVerified {
            account,
            matched: true,
        } => drop_account(&mut ctx, account),
        Finished::DropVerified { account, .. } => {
            login_failed(&mut ctx, LoginVia::Identify, account)
        }
        Finished::Committed {
            via,
            account,
            stored,
        } => {
            if !stored {
                warn!(%account, "the store's writer has stopped: a new account is not on disk");
            }
            registered(&mut ctx, *via, account);
        }
    }
}

/// The password was right: proposes the drop; every shard logs out its users of
/// the account (901, `ACCOUNT *`) as it applies it, and the store forgets it.
fn drop_account(ctx: &mut Ctx<'_>, account: &str) {
    let outcome = ctx.propose(Event::DropAccount {
        client: ctx.id,
        account: account.into(),
    });
    match outcome {
        Outcome::AccountDropped { account, users } => {
            info!(client = ?ctx.id, account = %account.name, logged_out = users.len(), "account dropped");
            super::nickserv::tell(
                ctx,
                &format!(
                    "Account {} has been dropped; its name is free",
                    account.name
                ),
            );
        }
        Outcome::Refused(refusal) => {
            super::nickserv::tell(ctx, &format!("{account} was not dropped: {refusal}"))
        }
        _ => {}
    }
}

/// Proposes the new account; once applied (the name is this client's everywhere),
/// waits on a worker for the store to commit it, then answers.
fn enrol(ctx: &mut Ctx<'_>, via: RegisterVia, account: &str, credentials: &Credentials) {
    let outcome = ctx.propose(Event::RegisterAccount {
        client: ctx.id,
        account: account.into(),
        password: credentials.hash.clone(),
        scram: credentials.scram.clone(),
    });
    let account = match outcome {
        Outcome::AccountRegistered { account } => account.name.to_string(),
        Outcome::Refused(Refusal::AccountExists) => {
            return registration_failed(
                ctx,
                via,
                account,
                "ACCOUNT_EXISTS",
                "Account already exists",
            )
        }
        Outcome::Refused(refusal) => {
            let text = refusal.to_string();
            return registration_failed(ctx, via, account, "TEMPORARILY_UNAVAILABLE", &text);
        }
        _ => return,
    };
    info!(client = ?ctx.id, %account, "account registered");
    if ctx.shared().store.is_none() {
        return registered(ctx, via, &account);
    }
    let name: Box<str> = account.as_str().into();
    let submitted = ctx.offload(move |shared| Finished::Committed {
        via,
        stored: shared
            .store
            .as_ref()
            .is_some_and(|store| store.sync().is_ok()),
        account: name,
    });
    match submitted {
        Ok(()) => set_in_flight(ctx, true),
        // Queued for the store already; only the wait for it could not be queued.
        Err(Busy) => registered(ctx, via, &account),
    }
}

/// The account exists (and is stored): log the client in and tell it.
fn registered(ctx: &mut Ctx<'_>, via: RegisterVia, account: &str) {
    let Some(account) = log_in(ctx, account) else {
        return;
    };
    ctx.count_auth(AuthCount::Login);
    match via {
        RegisterVia::Ircv3 => {
            let reply = ctx
                .from_server("REGISTER")
                .arg("SUCCESS")
                .arg(&account)
                .trailing(texts::ACCOUNT_SUCCESSFULLY_REGISTERED);
            ctx.reply(reply);
        }
        RegisterVia::NickServ => super::nickserv::tell(
            ctx,
            &format!("Account {account} registered; you are now logged in to it"),
        ),
    }
    send_logged_in(ctx, &account);
}

fn registration_failed(
    ctx: &mut Ctx<'_>,
    via: RegisterVia,
    account: &str,
    code: &str,
    description: &str,
) {
    match via {
        RegisterVia::Ircv3 => fail_register(ctx, code, account, description),
        RegisterVia::NickServ => {
            super::nickserv::tell(ctx, &format!("{account} was not registered: {description}"))
        }
    }
}

/// Logs the client in to `account`: a user through the network (every shard and node
/// learns it, `account-notify`), a client still registering once it is a user.
/// Returns the account's name as registered, `None` if it no longer exists.
pub fn log_in(ctx: &mut Ctx<'_>, account: &str) -> Option<String> {
    let name = ctx.network().account(account)?.name.to_string();
    if ctx.client().is_registered() {
        let outcome = ctx.propose(Event::SetAccount {
            client: ctx.id,
            account: Some(name.as_str().into()),
        });
        if matches!(outcome, Outcome::Refused(_)) {
            return None;
        }
    } else {
        authentication(ctx).pending_account = Some(name.as_str().into());
    }
    Some(name)
}

/// A client that logged in while registering becomes logged in as a user (called
/// once registration completed).
pub fn apply_pending_login(ctx: &mut Ctx<'_>) {
    let pending = authentication(ctx).pending_account.take();
    if let Some(account) = pending {
        ctx.propose(Event::SetAccount {
            client: ctx.id,
            account: Some(account),
        });
    }
}

/// `900 RPL_LOGGEDIN <nick> <nick>!<user>@<host> <account> :You are now logged in as
/// <account>` (IRCv3 SASL 3.1; sent for every way of logging in, as Ergo does).
fn send_logged_in(ctx: &mut Ctx<'_>, account: &str) {
    let mask = if ctx.client().is_registered() {
        ctx.client().source().to_owned()
    } else {
        format!("{}!*@{}", ctx.client().nick(), ctx.client().host)
    };
    let reply = ctx
        .numeric(RPL_LOGGEDIN)
        .arg(&mask)
        .arg(account)
        .trailing(format!("You are now logged in as {account}"));
    ctx.reply(reply);
}

/// Tells the client it is logged in (900, then 903 or NickServ's notice).
pub fn login_succeeded(ctx: &mut Ctx<'_>, via: LoginVia, account: &str) {
    ctx.count_auth(AuthCount::Login);
    info!(client = ?ctx.id, %account, ?via, "logged in");
    send_logged_in(ctx, account);
    match via {
        LoginVia::Sasl => {
            let reply = ctx
                .numeric(RPL_SASLSUCCESS)
                .trailing(texts::SASL_AUTHENTICATION_SUCCESSFUL);
            ctx.reply(reply);
        }
        LoginVia::Identify => {
            super::nickserv::tell(ctx, &format!("You are now identified for {account}"))
        }
        LoginVia::Pass => {}
    }
}

/// Answers a failed login and counts it; the [`MAX_LOGIN_FAILURES`]th closes the
/// connection.
pub fn login_failed(ctx: &mut Ctx<'_>, via: LoginVia, account: &str) {
    ctx.count_auth(AuthCount::LoginFailure);
    ctx.shared()
        .auth_throttle
        .note_login_failure(account, ctx.now);
    match via {
        LoginVia::Sasl => {
            let reply = ctx
                .numeric(ERR_SASLFAIL)
                .trailing(texts::SASL_AUTHENTICATION_FAILED);
            ctx.reply(reply);
        }
        LoginVia::Identify => {
            super::nickserv::tell(ctx, &format!("Invalid password for {account}"))
        }
        LoginVia::Pass => {
            let reply = ctx
                .from_server("NOTICE")
                .arg(ctx.client().nick())
                .trailing(format!(
                    "PASS: invalid password for {account}, not logged in"
                ));
            ctx.reply(reply);
        }
    }
    let failures = {
        let auth = authentication(ctx);
        auth.failures = auth.failures.saturating_add(1);
        auth.failures
    };
    warn!(client = ?ctx.id, host = %ctx.client().host, %account, failures, "login failed");
    if failures >= MAX_LOGIN_FAILURES {
        ctx.close(ctx.id, CloseReason::Server(TOO_MANY_LOGIN_FAILURES));
    }
}

/// Logs a user out (NickServ LOGOUT): `901 RPL_LOGGEDOUT` and `account-notify`.
pub fn log_out(ctx: &mut Ctx<'_>) {
    let outcome = ctx.propose(Event::SetAccount {
        client: ctx.id,
        account: None,
    });
    if let Outcome::AccountChanged { account: None } = outcome {
        let mask = ctx.client().source().to_owned();
        let reply = ctx
            .numeric(RPL_LOGGEDOUT)
            .arg(&mask)
            .trailing(texts::YOU_ARE_NOW_LOGGED_OUT);
        ctx.reply(reply);
    }
}

/// After registration, a nick change or a logout: a user holding an account's name
/// without being logged in to it is warned by NickServ and renamed once the grace
/// period (`--nick-grace`) is over, or at once when it is 0 (strict).
pub fn check_nick(ctx: &mut Ctx<'_>) {
    if !ctx.holds_anothers_nick() {
        return;
    }
    let grace = ctx.config().nick_grace;
    if grace.is_zero() {
        ctx.rename_to_guest();
        return;
    }
    super::nickserv::tell(
        ctx,
        &format!(
            "This nick is registered: log in to its account (IDENTIFY, or SASL) within {} seconds, or you will be renamed",
            grace.as_secs()
        ),
    );
    ctx.watch_nick();
}

/// Whether strict nick enforcement (`--nick-grace 0`) keeps this client from
/// taking `nick`: an account it is not logged in to.
pub fn nick_is_protected(ctx: &Ctx<'_>, nick: &str) -> bool {
    if !ctx.config().nick_grace.is_zero() {
        return false;
    }
    ctx.network().account(nick).is_some_and(|account| {
        logged_in(ctx).is_none_or(|mine| !mine.eq_ignore_ascii_case(account.name.as_str()))
    })
}
