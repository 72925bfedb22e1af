//! ngircd as the test server, for checking the client against an IRC server other
//! than ringchat. Chosen with `RINGCHAT_CLIENT_TEST_SERVER=ngircd`; needs the Debian
//! package `ngircd`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{wait_child, WAIT};

/// A running ngircd and its private configuration directory.
pub struct Ngircd {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Ngircd {
    /// Writes a configuration for a free loopback port and starts ngircd in the
    /// foreground; returns once it accepts connections.
    pub fn start(password: Option<&str>) -> Ngircd {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        Ngircd::start_on(port, password)
    }

    /// Starts ngircd on `port` of loopback (a restart on the port of a stopped one).
    pub fn start_on(port: u16, password: Option<&str>) -> Ngircd {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = std::env::temp_dir().join(format!("ringchat-client-ngircd-{port}"));
        std::fs::create_dir_all(&dir).expect("create ngircd dir");
        let conf = dir.join("ngircd.conf");
        let password = password
            .map(|p| format!("Password = {p}\n"))
            .unwrap_or_default();
        std::fs::write(
            &conf,
            format!(
                "[Global]\nName = irc.test\nInfo = test\nListen = 127.0.0.1\nPorts = {port}\n\
                 MotdPhrase = test\n{password}\
                 [Limits]\nMaxNickLength = 30\n\
                 [Options]\nDNS = no\nIdent = no\nPAM = no\nRequireAuthPing = no\n"
            ),
        )
        .expect("write ngircd config");
        let child = Command::new("ngircd")
            .args(["-n", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ngircd (apt-get install ngircd)");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "ngircd did not listen on {addr}");
            thread::sleep(Duration::from_millis(20));
        }
        Ngircd { child, dir, addr }
    }

    /// Stops ngircd (SIGKILL: its clients see the connection close).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, WAIT);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
