//! SASL (IRCv3 SASL 3.1 and 3.2): `AUTHENTICATE`, mechanisms PLAIN, EXTERNAL and
//! SCRAM-SHA-256, with the 900-908 numerics. The exchange may run before or after
//! connection registration; a PLAIN password is checked by an offload worker, never
//! on the shard's thread; EXTERNAL needs no check but the TLS client certificate's
//! fingerprint, which the handshake already computed; a SCRAM proof is checked here,
//! against the account's stored keys, in a few hashes ([`crate::scram`]).

use super::accounts::{
    authentication, in_flight, log_in, logged_in, login_failed, login_succeeded, start_login,
};
use super::Ctx;
use crate::accounts::decode_plain;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::{LineBuilder, Message};
use crate::scram::{parse_client_first, Challenge};
use crate::shard::AuthCount;
use crate::state::client::{SaslExchange, SaslMechanism, ScramStep};
use crate::state::offload::LoginVia;
use base64::Engine;

/// Longest `AUTHENTICATE` argument; a full one means more follows (IRCv3 SASL 3.1).
pub const CHUNK_LEN: usize = 400;

/// Most base64 one exchange may carry: a PLAIN message of a NICKLEN account, twice,
/// and a [`MAX_PASSWORD_LEN`](crate::accounts::MAX_PASSWORD_LEN) password fits.
pub const MAX_SASL_BYTES: usize = 4 * CHUNK_LEN;

/// The mechanisms offered (908; `sasl=` in CAP LS 302 says the same).
pub const MECHANISMS: &str = crate::proto::caps::SASL_MECHANISMS;

/// `AUTHENTICATE <mechanism>` opens an exchange (`AUTHENTICATE +` asks for the
/// message); then `AUTHENTICATE <base64>` in 400-byte chunks (`+` for an empty last
/// one); `AUTHENTICATE *` aborts (906). 907 to a client already logged in, 905 for
/// a chunk over 400 bytes, 904 for a message over [`MAX_SASL_BYTES`], 908 and 904
/// for an unknown mechanism, 904 for anything malformed or a wrong password; 900
/// and 903 on success. SCRAM-SHA-256 takes three client messages (client-first,
/// client-final, then an empty one after the server-final), each sent that way;
/// the server's messages come back as `AUTHENTICATE <base64>` in 400-byte chunks.
pub fn authenticate(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let argument = message.param(0).unwrap_or_default();
    if logged_in(ctx).is_some() {
        let reply = ctx
            .numeric(ERR_SASLALREADY)
            .trailing(texts::YOU_HAVE_ALREADY_AUTHENTICATED_USING_SASL);
        return ctx.reply(reply);
    }
    if argument == b"*" {
        close_exchange(ctx);
        let reply = ctx
            .numeric(ERR_SASLABORTED)
            .trailing(texts::SASL_AUTHENTICATION_ABORTED);
        return ctx.reply(reply);
    }
    if argument.len() > CHUNK_LEN {
        return too_long(ctx);
    }
    let open = ctx
        .client()
        .auth
        .as_ref()
        .is_some_and(|auth| auth.sasl.is_some());
    if !open {
        return choose_mechanism(ctx, argument);
    }
    let auth = authentication(ctx);
    let Some(received) = auth.sasl.as_mut().map(|exchange| &mut exchange.received) else {
        return;
    };
    if argument != b"+" {
        received.extend_from_slice(argument);
    }
    if received.len() > MAX_SASL_BYTES {
        // 905 is for one parameter over 400 bytes; a message too long in all is a
        // failed exchange (904), as irctest and Ergo expect.
        close_exchange(ctx);
        return fail(ctx);
    }
    if argument.len() == CHUNK_LEN {
        return;
    }
    let Some(exchange) = authentication(ctx).sasl.take() else {
        return;
    };
    match exchange.mechanism {
        SaslMechanism::Plain => plain(ctx, &exchange.received),
        SaslMechanism::External => external(ctx, &exchange.received),
        SaslMechanism::ScramSha256 => scram(ctx, exchange),
    }
}

/// PLAIN (RFC 4616): the password goes to a worker to be checked.
fn plain(ctx: &mut Ctx<'_>, message: &[u8]) {
    let credentials = match decode_plain(message) {
        Ok(credentials) => credentials,
        Err(why) => {
            tracing::debug!(client = ?ctx.id, %why, "malformed SASL PLAIN message");
            return fail(ctx);
        }
    };
    if let Err(why) = start_login(
        ctx,
        LoginVia::Sasl,
        &credentials.account,
        credentials.password,
    ) {
        let reply = ctx.numeric(ERR_SASLFAIL).trailing(why);
        ctx.reply(reply);
    }
}

/// The first `AUTHENTICATE` of an exchange names the mechanism.
fn choose_mechanism(ctx: &mut Ctx<'_>, mechanism: &[u8]) {
    if in_flight(ctx) {
        let reply = ctx
            .numeric(ERR_SASLFAIL)
            .trailing(texts::ANOTHER_AUTHENTICATION_IS_IN_PROGRESS);
        return ctx.reply(reply);
    }
    let mechanism = if mechanism.eq_ignore_ascii_case(b"PLAIN") {
        SaslMechanism::Plain
    } else if mechanism.eq_ignore_ascii_case(b"EXTERNAL") {
        SaslMechanism::External
    } else if mechanism.eq_ignore_ascii_case(b"SCRAM-SHA-256") {
        SaslMechanism::ScramSha256
    } else {
        let reply = ctx
            .numeric(RPL_SASLMECHS)
            .arg(MECHANISMS)
            .trailing(texts::ARE_AVAILABLE_SASL_MECHANISMS);
        ctx.reply(reply);
        return fail(ctx);
    };
    authentication(ctx).sasl = Some(SaslExchange {
        mechanism,
        received: Vec::new(),
        scram: None,
    });
    ctx.send(LineBuilder::sourceless("AUTHENTICATE").arg("+").finish());
}

/// EXTERNAL (RFC 4422 appendix A): the account that accepts the connection's TLS
/// client certificate; the message is an authorization identity, empty or that
/// account. 904 without a certificate, or for one no account accepts.
fn external(ctx: &mut Ctx<'_>, message: &[u8]) {
    let certfp = ctx.client().tls.as_ref().and_then(|tls| tls.certfp.clone());
    let account = certfp.and_then(|certfp| {
        ctx.network()
            .account_by_certfp(&certfp)
            .map(|account| account.name.to_string())
    });
    let authzid = base64::engine::general_purpose::STANDARD.decode(message);
    let account = match (account, authzid) {
        (Some(account), Ok(authzid))
            if authzid.is_empty() || authzid.eq_ignore_ascii_case(account.as_bytes()) =>
        {
            account
        }
        (account, _) => {
            let tried = account.as_deref().unwrap_or("*").to_owned();
            return login_failed(ctx, LoginVia::Sasl, &tried);
        }
    };
    if let Some(account) = log_in(ctx, &account) {
        login_succeeded(ctx, LoginVia::Sasl, &account);
    }
}

/// SCRAM-SHA-256 (RFC 5802, 7677), one client message at a time: the client-first
/// gets the server-first (for an account without keys, or none, a made-up salt, so
/// the answer tells nobody whether it exists), the client-final with the right proof
/// gets the server-final, and the empty message after it logs in (900, 903). A wrong
/// proof is a failed login (904, counted like a wrong PLAIN password); a malformed
/// message or channel binding (`p=`) is 904 unchecked.
fn scram(ctx: &mut Ctx<'_>, mut exchange: SaslExchange) {
    let received = std::mem::take(&mut exchange.received);
    match exchange.scram.take() {
        None => {
            let first = match parse_client_first(&received) {
                Ok(first) => first,
                Err(why) => {
                    tracing::debug!(client = ?ctx.id, %why, "refused SCRAM client-first message");
                    return fail(ctx);
                }
            };
            if !ctx.shared().auth_throttle.allow_login(&first.user, ctx.now) {
                return login_failed(ctx, LoginVia::Sasl, &first.user);
            }
            let keys = ctx
                .network()
                .account(&first.user)
                .and_then(|account| account.scram.clone());
            let Some((challenge, server_first)) = Challenge::new(first, keys) else {
                tracing::warn!(client = ?ctx.id, "no random nonce for a SCRAM exchange");
                return fail(ctx);
            };
            exchange.scram = Some(ScramStep::Challenged(Box::new(challenge)));
            authentication(ctx).sasl = Some(exchange);
            send_chunked(ctx, server_first.as_bytes());
        }
        Some(ScramStep::Challenged(challenge)) => match challenge.finish(&received) {
            Ok(Some(server_final)) => {
                exchange.scram = Some(ScramStep::Verified {
                    account: challenge.user.as_str().into(),
                });
                authentication(ctx).sasl = Some(exchange);
                send_chunked(ctx, server_final.as_bytes());
            }
            Ok(None) => login_failed(ctx, LoginVia::Sasl, &challenge.user),
            Err(why) => {
                tracing::debug!(client = ?ctx.id, %why, "refused SCRAM client-final message");
                fail(ctx);
            }
        },
        Some(ScramStep::Verified { account }) => {
            if !received.is_empty() {
                return fail(ctx);
            }
            match log_in(ctx, &account) {
                Some(name) => login_succeeded(ctx, LoginVia::Sasl, &name),
                None => login_failed(ctx, LoginVia::Sasl, &account),
            }
        }
    }
}

/// A server message of an exchange: `AUTHENTICATE <base64>` in [`CHUNK_LEN`] pieces,
/// and `AUTHENTICATE +` after a full last piece (IRCv3 SASL 3.1).
fn send_chunked(ctx: &mut Ctx<'_>, message: &[u8]) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(message);
    for chunk in encoded.as_bytes().chunks(CHUNK_LEN) {
        ctx.send(LineBuilder::sourceless("AUTHENTICATE").arg(chunk).finish());
    }
    if encoded.len() % CHUNK_LEN == 0 {
        ctx.send(LineBuilder::sourceless("AUTHENTICATE").arg("+").finish());
    }
}

fn close_exchange(ctx: &mut Ctx<'_>) {
    if let Some(auth) = ctx.client_mut().auth.as_mut() {
        auth.sasl = None;
    }
}

/// 905: the exchange is over.
fn too_long(ctx: &mut Ctx<'_>) {
    close_exchange(ctx);
    ctx.count_auth(AuthCount::SaslMalformed);
    let reply = ctx
        .numeric(ERR_SASLTOOLONG)
        .trailing(texts::SASL_MESSAGE_TOO_LONG);
    ctx.reply(reply);
}

/// 904, without counting a login failure: nothing was checked.
fn fail(ctx: &mut Ctx<'_>) {
    ctx.count_auth(AuthCount::SaslMalformed);
    let reply = ctx
        .numeric(ERR_SASLFAIL)
        .trailing(texts::SASL_AUTHENTICATION_FAILED);
    ctx.reply(reply);
}
