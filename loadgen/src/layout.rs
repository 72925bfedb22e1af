//! Who is where in a run: the channels, their members and senders, and each client's
//! plan (nick, channel, server address, source address).
//!
//! Owns: the layout of clients over channels, over the servers of `--addr` (the nodes
//! of a cluster) and over loopback source addresses, and the run id that makes nicks
//! and channels unique. Must not: connect or send anything.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::cli::CommonArgs;
use crate::conn::ClientPlan;
use crate::scenario::Scenario;

/// Loopback clients per source address: below the ~28,000 ephemeral ports of one.
const CLIENTS_PER_SOURCE_IP: u32 = 25_000;

/// Who is where: channels, their members and senders, and each client's plan.
pub struct Layout {
    pub channels: Vec<ChannelPlan>,
    pub clients: Vec<ClientPlan>,
}

pub struct ChannelPlan {
    pub name: String,
    /// Number of members (every client joined to it).
    pub members: u32,
    /// The senders' client numbers; a sender's slot is its position here.
    pub senders: Vec<usize>,
}

impl Layout {
    pub fn new(scenario: &Scenario, common: &CommonArgs) -> Self {
        let run_id = run_id();
        let clients = common.clients.max(1) as usize;
        let (channel_count, senders_per_channel) = match scenario {
            Scenario::Fanout { senders, .. } => (1, Some((*senders).clamp(1, clients as u32))),
            Scenario::Rooms {
                channels, senders, ..
            } => ((*channels).clamp(1, clients as u32) as usize, *senders),
            Scenario::Idle { channels, .. } => ((*channels).min(clients as u32) as usize, None),
            Scenario::Connect => (0, None),
        };
        let mut channels: Vec<ChannelPlan> = (0..channel_count)
            .map(|k| ChannelPlan {
                name: if channel_count == 1 {
                    format!("#lg{run_id}")
                } else {
                    format!("#lg{run_id}-{k}")
                },
                members: 0,
                senders: Vec::new(),
            })
            .collect();
        let silent_from = match scenario {
            Scenario::Idle { churn, .. } => clients.saturating_sub(churn.silent as usize),
            _ => clients,
        };
        let source_ips = source_ips(common);
        let servers = common.addr.all();
        let mut plans = Vec::with_capacity(clients);
        for index in 0..clients {
            let channel = (channel_count > 0).then(|| index % channel_count);
            // Round robin over the servers, by member number within the channel:
            // client i goes to server i % n in fanout, connect and idle; in rooms,
            // member j of channel k goes to server (j + k) % n. Plain i % n there would
            // put all of a channel's members on one node whenever K and n share a
            // factor (-k 10 over 2 nodes), and no message would cross nodes.
            let spread_number = match channel {
                Some(k) => index / channel_count + k,
                None => index,
            };
            let addr = servers[spread_number % servers.len()];
            if let Some(k) = channel {
                let member_number = index / channel_count;
                let ch = &mut channels[k];
                ch.members += 1;
                if senders_per_channel.is_none_or(|s| member_number < s as usize) {
                    ch.senders.push(index);
                }
            }
            let source_ip = if is_loopback_v4(addr) {
                source_ips
                    .get(index / CLIENTS_PER_SOURCE_IP as usize % source_ips.len().max(1))
                    .copied()
            } else {
                None
            };
            plans.push(ClientPlan {
                index,
                nick: format!("lg{run_id}{}", base36(index as u64)),
                channel: channel.map(|k| channels[k].name.clone()),
                senders_in_channel: 0,
                addr,
                source_ip,
                silent: index >= silent_from,
            });
        }
        for plan in &mut plans {
            if let Some(name) = &plan.channel {
                if let Some(ch) = channels.iter().find(|c| &c.name == name) {
                    plan.senders_in_channel = ch.senders.len() as u32;
                }
            }
        }
        Self {
            channels,
            clients: plans,
        }
    }

    /// How many clients go to each server of `--addr`, in its order.
    pub fn clients_per_addr(&self, common: &CommonArgs) -> Vec<(SocketAddr, u32)> {
        common
            .addr
            .all()
            .iter()
            .map(|&addr| {
                let clients = self.clients.iter().filter(|c| c.addr == addr).count();
                (addr, clients as u32)
            })
            .collect()
    }
}

fn is_loopback_v4(addr: SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
}

/// Source addresses for the clients of 127.0.0.0/8 servers: none (the kernel's
/// choice) unless asked or unless there are more clients than one address has ports.
fn source_ips(common: &CommonArgs) -> Vec<IpAddr> {
    let loopback_v4 = common.addr.all().iter().any(|&addr| is_loopback_v4(addr));
    let wanted = if common.source_ips > 0 {
        common.source_ips
    } else if loopback_v4 && common.clients > CLIENTS_PER_SOURCE_IP {
        common.clients.div_ceil(CLIENTS_PER_SOURCE_IP)
    } else {
        0
    };
    if !loopback_v4 {
        return Vec::new();
    }
    (0..wanted.min(250))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i as u8)))
        .collect()
}

/// A short id that makes this run's nicks and channels unique (2 base-36 characters,
/// so nicks fit a NICKLEN of 9 up to 46,656 clients).
fn run_id() -> String {
    let seed =
        (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ crate::clock::now_ns();
    let id = base36(seed % (36 * 36));
    format!("{id:0>2}")
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TrafficArgs;
    use clap::Parser;

    fn common(args: &[&str]) -> CommonArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            common: CommonArgs,
        }
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).expect("parses").common
    }

    fn traffic() -> TrafficArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            traffic: TrafficArgs,
        }
        Wrapper::try_parse_from(["x"]).expect("parses").traffic
    }

    #[test]
    fn fanout_layout_has_one_channel_and_s_senders() {
        let scenario = Scenario::Fanout {
            traffic: traffic(),
            senders: 3,
        };
        let layout = Layout::new(&scenario, &common(&["--clients", "10"]));
        assert_eq!(layout.channels.len(), 1);
        assert_eq!(layout.channels[0].members, 10);
        assert_eq!(layout.channels[0].senders, vec![0, 1, 2]);
        assert!(layout.clients.iter().all(|c| c.senders_in_channel == 3));
        let nicks: std::collections::HashSet<_> =
            layout.clients.iter().map(|c| c.nick.clone()).collect();
        assert_eq!(nicks.len(), 10);
        assert!(layout.clients.iter().all(|c| c.nick.len() <= 9));
    }

    #[test]
    fn rooms_layout_spreads_clients_and_senders() {
        let scenario = Scenario::Rooms {
            traffic: traffic(),
            channels: 3,
            senders: Some(2),
        };
        let layout = Layout::new(&scenario, &common(&["--clients", "10"]));
        let members: Vec<u32> = layout.channels.iter().map(|c| c.members).collect();
        assert_eq!(members, vec![4, 3, 3]);
        assert_eq!(layout.channels[0].senders, vec![0, 3]);
        assert_eq!(layout.channels[2].senders, vec![2, 5]);
        let all = Scenario::Rooms {
            traffic: traffic(),
            channels: 3,
            senders: None,
        };
        let layout = Layout::new(&all, &common(&["--clients", "10"]));
        assert_eq!(layout.channels[0].senders.len(), 4);
    }

    fn servers_of(layout: &Layout) -> Vec<u16> {
        layout.clients.iter().map(|c| c.addr.port()).collect()
    }

    #[test]
    fn a_single_address_takes_every_client() {
        let scenario = Scenario::Connect;
        let common = common(&["--clients", "5", "--addr", "127.0.0.1:7"]);
        let layout = Layout::new(&scenario, &common);
        assert_eq!(servers_of(&layout), vec![7; 5]);
        let per_addr = layout.clients_per_addr(&common);
        assert_eq!(per_addr, vec![(SocketAddr::from(([127, 0, 0, 1], 7)), 5)]);
    }

    #[test]
    fn fanout_spreads_senders_and_receivers_over_the_servers() {
        let scenario = Scenario::Fanout {
            traffic: traffic(),
            senders: 2,
        };
        let common = common(&["--clients", "7", "--addr", "127.0.0.1:1,127.0.0.1:2"]);
        let layout = Layout::new(&scenario, &common);
        assert_eq!(servers_of(&layout), vec![1, 2, 1, 2, 1, 2, 1]);
        // One sender on each node.
        assert_eq!(layout.channels[0].senders, vec![0, 1]);
        let counts: Vec<u32> = layout
            .clients_per_addr(&common)
            .iter()
            .map(|c| c.1)
            .collect();
        assert_eq!(counts, vec![4, 3]);
    }

    #[test]
    fn rooms_spread_every_channel_over_the_servers() {
        let scenario = Scenario::Rooms {
            traffic: traffic(),
            channels: 2,
            senders: Some(2),
        };
        let common = common(&["--clients", "8", "--addr", "127.0.0.1:1,127.0.0.1:2"]);
        let layout = Layout::new(&scenario, &common);
        // With plain i % 2, channel 0 (clients 0, 2, 4, 6) would all be on server 1.
        for ch in &layout.channels {
            let on: Vec<u16> = layout
                .clients
                .iter()
                .filter(|c| c.channel.as_deref() == Some(ch.name.as_str()))
                .map(|c| c.addr.port())
                .collect();
            assert_eq!(on.iter().filter(|&&p| p == 1).count(), 2, "{}", ch.name);
            let sender_ports: Vec<u16> = ch
                .senders
                .iter()
                .map(|&i| layout.clients[i].addr.port())
                .collect();
            assert!(sender_ports.contains(&1) && sender_ports.contains(&2));
        }
        let counts: Vec<u32> = layout
            .clients_per_addr(&common)
            .iter()
            .map(|c| c.1)
            .collect();
        assert_eq!(counts, vec![4, 4]);
    }

    #[test]
    fn source_addresses_only_for_loopback_servers() {
        let common = common(&[
            "--clients",
            "4",
            "--source-ips",
            "2",
            "--addr",
            "127.0.0.1:1,10.0.0.1:2",
        ]);
        let layout = Layout::new(&Scenario::Connect, &common);
        let sources: Vec<Option<IpAddr>> = layout.clients.iter().map(|c| c.source_ip).collect();
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(sources, vec![lo, None, lo, None]);
    }

    #[test]
    fn many_loopback_clients_get_several_source_addresses() {
        assert!(source_ips(&common(&["--clients", "1000"])).is_empty());
        let ips = source_ips(&common(&["--clients", "60000"]));
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    }
}
