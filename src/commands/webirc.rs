//! WEBIRC (IRCv3 WebIRC extension): a trusted web gateway names the user behind its
//! connection before registration. The address changes through the same path as a
//! trusted WebSocket proxy's `X-Forwarded-For` ([`Ctx::readdress`]), so DLINEs and
//! per-source limits are checked for the user's address, and the KLINE check and the
//! cloak at registration see it. It must not trust anyone outside `--webirc`.

use super::Ctx;
use crate::proto::names::is_valid_hostname;
use crate::proto::texts;
use crate::proto::Message;
use crate::state::client::{CloseReason, GatewayUser};
use std::net::IpAddr;
use tracing::{debug, info};

/// `WEBIRC <password> <gateway> <hostname> <ip> [:<options>]`. Before registration
/// only (462 after); once per connection. A source outside every gateway network, a
/// wrong password or a second WEBIRC closes the connection with an `ERROR`, as Ergo
/// does, without saying which it was; so does an `ip` that is no address.
pub fn webirc(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if ctx.client().is_registered() {
        super::registration::already_registered(ctx);
        return;
    }
    let given = message.param(0).unwrap_or_default();
    let trusted = ctx
        .client()
        .host
        .parse::<IpAddr>()
        .ok()
        .filter(|_| no_gateway_yet(ctx))
        .and_then(|peer| {
            // Every gateway of that network is tried, and each comparison takes the
            // same time wherever the passwords differ.
            ctx.config().webirc.iter().find(|gateway| {
                gateway.network.contains(&peer)
                    && crate::scram::same(given, gateway.password.as_bytes())
            })
        })
        .is_some();
    if !trusted {
        debug!(client = %ctx.id, "WEBIRC refused");
        ctx.close(ctx.id, CloseReason::Server(texts::WEBIRC_NOT_USABLE));
        return;
    }
    let Some(ip) = message
        .param_str(3)
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    else {
        ctx.close(ctx.id, CloseReason::Server(texts::WEBIRC_IP_NOT_VALID));
        return;
    };
    let gateway_host = ctx.client().host.clone();
    if let Err(refused) = ctx.readdress(ip) {
        debug!(client = %ctx.id, %ip, %refused, "WEBIRC address refused");
        ctx.close(ctx.id, CloseReason::Killed(refused.to_string()));
        return;
    }
    let hostname = message
        .param(2)
        .filter(|hostname| is_valid_hostname(hostname))
        .map(|hostname| String::from_utf8_lossy(hostname).into());
    let tls = ctx.client().tls.is_some();
    let secure = tls && message.param_str(4).is_some_and(says_secure);
    info!(
        client = %ctx.id,
        gateway = %String::from_utf8_lossy(message.param(1).unwrap_or_default()),
        from = %gateway_host,
        %ip,
        hostname = hostname.as_deref().unwrap_or("none"),
        secure,
        "WEBIRC"
    );
    let client = ctx.client_mut();
    // A certificate the gateway presented is the gateway's, not its user's: SASL
    // EXTERNAL must not log the user in with it.
    if let Some(tls) = client.tls.as_mut() {
        tls.certfp = None;
    }
    if let Some(registration) = client.registration.as_mut() {
        registration.gateway = Some(GatewayUser { hostname, secure });
    }
}

/// No WEBIRC has named this connection's user yet (a second one would let the user
/// behind a gateway name itself again).
fn no_gateway_yet(ctx: &Ctx<'_>) -> bool {
    ctx.client()
        .registration
        .as_ref()
        .is_some_and(|registration| registration.gateway.is_none())
}

/// Whether WEBIRC's options carry `secure` (with or without a value, which the spec
/// says to ignore).
fn says_secure(options: &str) -> bool {
    options.split(' ').any(|option| {
        option
            .split('=')
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("secure"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secure_option_counts_with_or_without_a_value() {
        assert!(says_secure("secure"));
        assert!(says_secure("secure=examplevalue123 local-port=6697"));
        assert!(says_secure("remote-port=21726 SECURE"));
        assert!(!says_secure("insecure local-port=6697"));
        assert!(!says_secure(""));
    }
}
