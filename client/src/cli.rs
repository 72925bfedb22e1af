//! Command-line arguments: what to connect to and as whom. Parsing only; nothing here
//! touches the network or the terminal.

use clap::Parser;

/// Port used when the server argument has none: the standard IRC port.
pub const DEFAULT_PORT: u16 = 6667;
/// Port used with `--tls` when the server argument has none: the standard IRC TLS port.
pub const DEFAULT_TLS_PORT: u16 = 6697;

/// A terminal IRC chat client that needs no setup: start it, type, and talk.
///
/// A typed line goes to the current channel; /help lists the commands.
/// When standard input is not a terminal, each input line is sent as it arrives and
/// the client quits at end of input. When the server drops the link, the client
/// reconnects with backoff and rejoins its channels (unless --no-reconnect).
///
/// Exit codes: 0 normal quit, 2 bad arguments, 3 cannot connect, 4 the server closed
/// the link (at registration, or with --no-reconnect), 5 nickname in use or rejected,
/// 1 any other error.
#[derive(Debug, Parser)]
#[command(name = "ringchat-client", version)]
pub struct Args {
    /// Server to connect to: HOST, HOST:PORT or [IPv6]:PORT (port 6667, or 6697 with --tls).
    #[arg(value_name = "HOST[:PORT]", default_value = "127.0.0.1", value_parser = parse_server)]
    pub server: ServerArg,

    /// Nickname; default: your login name ($USER / $LOGNAME), else "guest".
    #[arg(long, value_name = "NAME")]
    pub nick: Option<String>,

    /// Channel to join once registered.
    #[arg(long, value_name = "#CHANNEL", default_value = "#lobby", value_parser = parse_channel)]
    pub channel: String,

    /// Server password, sent with PASS before registering.
    #[arg(long, value_name = "P")]
    pub password: Option<String>,

    /// Connect with TLS, verifying the server's certificate against the system's
    /// trusted authorities (SSL_CERT_FILE / SSL_CERT_DIR override them).
    #[arg(long)]
    pub tls: bool,

    /// With TLS, accept any server certificate (self-signed test servers). The link
    /// is encrypted but the server is not authenticated. Implies --tls.
    #[arg(long)]
    pub tls_insecure: bool,

    /// Full-screen mode: a window per channel and query, a member list, scroll-back
    /// (PageUp/PageDown), Alt-1..9 or Ctrl-N/Ctrl-P to switch windows. Needs a
    /// terminal; ignored in a pipe.
    #[arg(long)]
    pub full_screen: bool,

    /// When the server drops the link, exit (code 4) instead of reconnecting with
    /// backoff and rejoining the channels.
    #[arg(long)]
    pub no_reconnect: bool,

    /// mIRC colours and bold as terminal colours: auto (on a terminal, unless NO_COLOR
    /// is set or TERM is dumb), always, or never (removed).
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColourChoice,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColourChoice {
    Auto,
    Always,
    Never,
}

impl ColourChoice {
    /// Whether to show colours, given whether the output is an interactive terminal.
    pub fn enabled(self, interactive: bool) -> bool {
        match self {
            ColourChoice::Always => true,
            ColourChoice::Never => false,
            ColourChoice::Auto => {
                interactive
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").map_or(true, |term| term != "dumb")
            }
        }
    }
}

impl Args {
    /// Whether to connect with TLS, and if so whether to check the certificate.
    pub fn tls(&self) -> Option<TlsMode> {
        match (self.tls, self.tls_insecure) {
            (_, true) => Some(TlsMode::Insecure),
            (true, false) => Some(TlsMode::Verified),
            (false, false) => None,
        }
    }

    /// Where to connect: the server argument, with the default port for the transport.
    pub fn server_addr(&self) -> ServerAddr {
        let default = match self.tls() {
            Some(_) => DEFAULT_TLS_PORT,
            None => DEFAULT_PORT,
        };
        ServerAddr {
            host: self.server.host.clone(),
            port: self.server.port.unwrap_or(default),
        }
    }
}

/// How a TLS connection treats the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Verified against trusted authorities and the host name.
    Verified,
    /// Accepted whatever it is (`--tls-insecure`).
    Insecure,
}

/// The server argument as typed: a host and perhaps a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArg {
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// The port, if one was given.
    pub port: Option<u16>,
}

/// Where to connect: a host name or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST`, `HOST:PORT`, `[IPV6]`, `[IPV6]:PORT` or a bare IPv6 address.
pub fn parse_server(arg: &str) -> Result<ServerArg, String> {
    let (host, port) = if let Some(bracketed) = arg.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in {arg:?}"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("expected :PORT after ']' in {arg:?}")),
            },
        }
    } else if arg.matches(':').count() > 1 {
        (arg, None)
    } else {
        match arg.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (arg, None),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in {arg:?}"));
    }
    let port = match port {
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("invalid port {port:?}"))?,
        ),
        None => None,
    };
    Ok(ServerArg {
        host: host.to_string(),
        port,
    })
}

/// Accepts `#name` or `name` (a `#` is added); rejects characters no channel may hold.
pub fn parse_channel(arg: &str) -> Result<String, String> {
    let channel = if crate::irc::is_channel(arg) {
        arg.to_string()
    } else {
        format!("#{arg}")
    };
    if channel.len() < 2 || channel.contains([' ', ',', '\x07', '\0', '\r', '\n']) {
        return Err(format!("invalid channel name {arg:?}"));
    }
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> ServerAddr {
        ServerAddr {
            host: host.to_string(),
            port,
        }
    }

    fn arg(host: &str, port: Option<u16>) -> ServerArg {
        ServerArg {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn server_forms() {
        assert_eq!(parse_server("example.org"), Ok(arg("example.org", None)));
        assert_eq!(
            parse_server("127.0.0.1:7000"),
            Ok(arg("127.0.0.1", Some(7000)))
        );
        assert_eq!(parse_server("[::1]:7000"), Ok(arg("::1", Some(7000))));
        assert_eq!(parse_server("[::1]"), Ok(arg("::1", None)));
        assert_eq!(parse_server("::1"), Ok(arg("::1", None)));
    }

    #[test]
    fn tls_changes_the_default_port_only() {
        let args = Args::try_parse_from(["ringchat-client", "--tls", "irc.test"]).unwrap();
        assert_eq!(args.server_addr(), addr("irc.test", 6697));
        assert_eq!(args.tls(), Some(TlsMode::Verified));
        let args =
            Args::try_parse_from(["ringchat-client", "--tls-insecure", "irc.test:6667"]).unwrap();
        assert_eq!(args.server_addr(), addr("irc.test", 6667));
        assert_eq!(args.tls(), Some(TlsMode::Insecure));
        let args = Args::try_parse_from(["ringchat-client", "irc.test"]).unwrap();
        assert_eq!(args.tls(), None);
    }

    #[test]
    fn server_errors() {
        assert!(parse_server("host:notaport").is_err());
        assert!(parse_server("host:0").is_err());
        assert!(parse_server(":6667").is_err());
        assert!(parse_server("[::1").is_err());
        assert!(parse_server("[::1]x").is_err());
    }

    #[test]
    fn server_display_round_trips() {
        assert_eq!(addr("::1", 7000).to_string(), "[::1]:7000");
        assert_eq!(addr("localhost", 6667).to_string(), "localhost:6667");
    }

    #[test]
    fn channel_forms() {
        assert_eq!(parse_channel("#lobby"), Ok("#lobby".to_string()));
        assert_eq!(parse_channel("rust"), Ok("#rust".to_string()));
        assert!(parse_channel("#").is_err());
        assert!(parse_channel("#a b").is_err());
        assert!(parse_channel("#a,b").is_err());
    }

    #[test]
    fn defaults_and_flags() {
        let args = Args::try_parse_from(["ringchat-client"]).unwrap();
        assert_eq!(args.server_addr(), addr("127.0.0.1", 6667));
        assert_eq!(args.channel, "#lobby");
        assert_eq!(args.nick, None);
        let args = Args::try_parse_from([
            "ringchat-client",
            "irc.test:6697",
            "--nick",
            "bob",
            "--channel",
            "dev",
            "--password",
            "s3cret",
        ])
        .unwrap();
        assert_eq!(args.server_addr(), addr("irc.test", 6697));
        assert_eq!(args.nick.as_deref(), Some("bob"));
        assert_eq!(args.channel, "#dev");
        assert_eq!(args.password.as_deref(), Some("s3cret"));
    }
}
