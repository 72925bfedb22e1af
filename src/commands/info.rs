//! Server information: MOTD, LUSERS, STATS, INFO and LINKS.

use super::Ctx;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::Message;
use std::sync::atomic::Ordering;

/// `MOTD`.
pub fn motd(ctx: &mut Ctx<'_>, _message: &Message<'_>) {
    send_motd(ctx);
}

/// `LUSERS`.
pub fn lusers(ctx: &mut Ctx<'_>, _message: &Message<'_>) {
    send_lusers(ctx);
}

/// `STATS S`: per-shard counters (`STATS C`: cluster figures, [`stats_cluster`]) (connections, lines in, deliveries, bytes out,
/// slow-consumer and flood disconnects, failed TLS handshakes): this shard's as of now, the others' as
/// published at their last tick (about once a second).
pub fn stats(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let query = message.param_str(0).unwrap_or("S");
    if query.eq_ignore_ascii_case("S") {
        // This shard's figures are fresh; the others are as of their last tick.
        ctx.publish_counters();
        let counters: Vec<_> = ctx.shared().counters.iter().map(|c| c.snapshot()).collect();
        for (shard, c) in counters.iter().enumerate() {
            let reply = ctx.numeric(RPL_STATSDEBUG).arg("S").trailing(format!(
                "shard {shard} connections={} accepted={} lines_in={} deliveries={} bytes_out={} reads={} writes={} enters={} sendq_disconnects={} flood_disconnects={} write_timeouts={} refused_full={} refused_per_source={} refused_too_fast={} refused_unregistered={} tls_handshake_failures={}",
                c.connections, c.accepted, c.lines_in, c.deliveries, c.bytes_out, c.reads, c.writes, c.enters, c.sendq_disconnects, c.flood_disconnects, c.write_timeouts, c.refused_full, c.refused_per_source, c.refused_too_fast, c.refused_unregistered, c.tls_handshake_failures
            ));
            ctx.reply(reply);
        }
    } else if query.eq_ignore_ascii_case("C") {
        stats_cluster(ctx);
    } else if query.eq_ignore_ascii_case("K") || query.eq_ignore_ascii_case("D") {
        super::server_bans::stats(ctx, query.chars().next().unwrap_or('K'));
    }
    let end = ctx
        .numeric(RPL_ENDOFSTATS)
        .arg(query)
        .trailing(texts::END_OF_STATS_REPORT);
    ctx.reply(end);
}

/// `STATS C`: this node's cluster figures: whether it reaches NATS, how far it has
/// applied the cluster's log and how far behind the stream's end that is, events
/// and cross-node messages in and out, the apply lag of other nodes' events, lost
/// nodes and snapshots. Alone: one line saying so.
fn stats_cluster(ctx: &mut Ctx<'_>) {
    let text = match &ctx.shared().cluster {
        None => "not part of a cluster".to_owned(),
        Some(cluster) => {
            let c = &cluster.counters;
            let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
            let (applied, last) = (load(&c.stream_applied), load(&c.stream_last));
            format!(
                "cluster node={} connected={} nodes_alive={} applied={applied} stream_last={last} log_lag={} events_in={} events_out={} messages_in={} messages_out={} lag_p50_us={} lag_p99_us={} nodes_lost={} snapshots={}",
                cluster.node,
                cluster.is_connected(),
                load(&c.nodes_alive),
                last.saturating_sub(applied),
                load(&c.events_in),
                load(&c.events_out),
                load(&c.messages_in),
                load(&c.messages_out),
                load(&c.lag_p50_micros),
                load(&c.lag_p99_micros),
                load(&c.nodes_lost),
                load(&c.snapshots),
            )
        }
    };
    let reply = ctx.numeric(RPL_STATSDEBUG).arg("C").trailing(text);
    ctx.reply(reply);
}

/// 375/372.../376, or 422 when no MOTD is configured.
pub fn send_motd(ctx: &mut Ctx<'_>) {
    let server = ctx.config().server_name.clone();
    let Some(lines) = ctx.shared().live.motd() else {
        let reply = ctx
            .numeric(ERR_NOMOTD)
            .trailing(texts::MOTD_FILE_IS_MISSING);
        ctx.reply(reply);
        return;
    };
    let start = ctx
        .numeric(RPL_MOTDSTART)
        .trailing(format!("- {server} Message of the day - "));
    ctx.reply(start);
    for line in lines.iter() {
        let reply = ctx.numeric(RPL_MOTD).trailing(format!("- {line}"));
        ctx.reply(reply);
    }
    let end = ctx
        .numeric(RPL_ENDOFMOTD)
        .trailing(texts::END_OF_MOTD_COMMAND);
    ctx.reply(end);
}

/// 251-255 and 265/266, counting every shard.
pub fn send_lusers(ctx: &mut Ctx<'_>) {
    let network = ctx.network();
    let (users, channels) = (network.user_count(), network.channel_count());
    let (invisible, max) = (network.invisible_count(), network.peak_user_count());
    let opers = network.oper_count();
    let visible = users.saturating_sub(invisible);
    let shared = ctx.shared();
    let connections = shared.connections.load(Ordering::Relaxed);
    let unregistered = shared.sources.unregistered();
    // This node's users: its open connections less the unregistered ones (two
    // counters, where counting the replica's users by node would cost O(users) at
    // every registration). Alone, that is every user.
    let local = match &shared.cluster {
        Some(_) => connections.saturating_sub(unregistered).min(users),
        None => users,
    };
    let local_max = shared
        .local_peak
        .fetch_max(local, Ordering::Relaxed)
        .max(local);
    let servers = shared.cluster.as_ref().map_or(1, |cluster| {
        cluster.counters.nodes_alive.load(Ordering::Relaxed).max(1)
    });
    // Modern IRC: 251 counts the users that are not invisible and, apart, the
    // invisible ones, on every server; 255 and 265 count this server's (one node of
    // a cluster: all its shards), 266 the network's; "max" is the peak since start.
    let replies = [
        ctx.numeric(RPL_LUSERCLIENT).trailing(format!(
            "There are {visible} users and {invisible} invisible on {servers} servers"
        )),
        ctx.numeric(RPL_LUSEROP)
            .arg(opers.to_string())
            .trailing(texts::OPERATOR_S_ONLINE),
        ctx.numeric(RPL_LUSERUNKNOWN)
            .arg(unregistered.to_string())
            .trailing(texts::UNKNOWN_CONNECTION_S),
        ctx.numeric(RPL_LUSERCHANNELS)
            .arg(channels.to_string())
            .trailing(texts::CHANNELS_FORMED),
        ctx.numeric(RPL_LUSERME).trailing(format!(
            "I have {local} clients and {} servers",
            servers - 1
        )),
        ctx.numeric(RPL_LOCALUSERS)
            .arg(local.to_string())
            .arg(local_max.to_string())
            .trailing(format!("Current local users {local}, max {local_max}")),
        ctx.numeric(RPL_GLOBALUSERS)
            .arg(users.to_string())
            .arg(max.to_string())
            .trailing(format!("Current global users {users}, max {max}")),
    ];
    for reply in replies {
        ctx.reply(reply);
    }
}

/// `INFO`: 371 lines saying what this server is, then 374.
pub fn info(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if !super::query::is_this_server(ctx, message) {
        return;
    }
    let started = crate::proto::time::human(ctx.shared().started);
    let shards = ctx.config().shards;
    let lines = [
        format!("{} (ringchat)", super::registration::VERSION),
        "A multi-client IRC server for Linux, in Rust, on io_uring or epoll.".to_owned(),
        format!("Running {shards} shard(s), one network-state replica each."),
        format!("Up since {started}."),
    ];
    for line in lines {
        let reply = ctx.numeric(RPL_INFO).trailing(line);
        ctx.reply(reply);
    }
    let end = ctx.numeric(RPL_ENDOFINFO).trailing(texts::END_OF_INFO_LIST);
    ctx.reply(end);
}

/// `LINKS`: this server is the whole network, so one 364 (hop count 0), then 365.
///
/// RFC 1459 §4.3.3 and RFC 2812 §3.4.5: `364 <mask> <server> :<hopcount> <server
/// info>`, the mask being the server listed and `<server>` the one it is linked
/// through: for this server, itself twice, as InspIRCd and ngIRCd answer (and
/// irctest's `testLinksSingleServer` checks); the server info is `--server-info`.
pub fn links(ctx: &mut Ctx<'_>, _message: &Message<'_>) {
    let server = ctx.config().server_name.clone();
    let info = ctx.config().server_info.clone();
    let link = ctx
        .numeric(RPL_LINKS)
        .arg(&server)
        .arg(&server)
        .trailing(format!("0 {info}"));
    ctx.reply(link);
    let end = ctx
        .numeric(RPL_ENDOFLINKS)
        .arg("*")
        .trailing(texts::END_OF_LINKS_LIST);
    ctx.reply(end);
}
