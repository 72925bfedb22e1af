//! TLS as clients see it, on every driver (ring included) and with 1 and 4 shards:
//! registration and chat over TLS 1.3 and 1.2, channels mixing TLS and plaintext
//! members, lines queued together sharing records, the sendq cut-off and the write
//! timeout for readers that stop, certificate reload, client certificate fingerprints
//! in WHOIS, STS, and garbage or corrupted handshakes that close only their own
//! connection. Certificates are made by the tests (rcgen).

mod common;

use common::tls::TestPki;
use common::{has_numeric, join_all, Client, HANG};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A socket whose writes go out 3 bytes per system call.
struct Trickle(TcpStream);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks(3) {
            self.0.write_all(chunk)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A socket that counts the TLS application-data records it receives, reading their
/// 5-byte headers as the bytes pass (TLS 1.2: handshake records have their own type).
struct RecordCounter {
    socket: TcpStream,
    header: Vec<u8>,
    /// Bytes of the current record's body still to pass.
    body_left: usize,
    application_data: usize,
}

impl Read for RecordCounter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.socket.read(buf)?;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(rest.len());
                self.body_left -= skipped;
                rest = &rest[skipped..];
                continue;
            }
            self.header.push(rest[0]);
            rest = &rest[1..];
            if let [content_type, _, _, high, low] = self.header[..] {
                if content_type == 23 {
                    self.application_data += 1;
                }
                self.body_left = usize::from(u16::from_be_bytes([high, low]));
                self.header.clear();
            }
        }
        Ok(n)
    }
}

impl Write for RecordCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.socket.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.socket.flush()
    }
}

e2e! {
    fn lines_queued_together_share_tls_records(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |c| c.flood_rate = 0.0);
        let mut sender = server.register("sender");
        let socket = TcpStream::connect(server.tls_addr.expect("TLS listener")).expect("connect");
        socket.set_read_timeout(Some(HANG)).expect("timeout");
        let session = rustls::ClientConnection::new(
            pki.client_config_tls12(),
            "localhost".try_into().expect("name"),
        )
        .expect("session");
        let counter = RecordCounter { socket, header: Vec::new(), body_left: 0, application_data: 0 };
        let mut reader = BufReader::new(rustls::StreamOwned::new(session, counter));
        reader.get_mut().write_all(b"NICK reader\r\nUSER reader 0 * :R\r\n").expect("register");
        let mut line = String::new();
        while !line.contains(" 376 reader ") && !line.contains(" 422 reader ") {
            line.clear();
            reader.read_line(&mut line).expect("the welcome");
        }
        let before = reader.get_ref().sock.application_data;
        // 200 lines in one write: they reach the reader's outbox a read at a time, and
        // each writer turn encrypts all it finds there into shared records.
        let burst: String = (0..200).map(|i| format!("PRIVMSG reader :line {i}\r\n")).collect();
        sender.send_raw(burst.as_bytes());
        for i in 0..200 {
            line.clear();
            reader.read_line(&mut line).expect("a line of the burst");
            assert!(line.ends_with(&format!("PRIVMSG reader :line {i}\r\n")), "{line:?}");
        }
        let records = reader.get_ref().sock.application_data - before;
        println!("200 lines in {records} records");
        assert!(records <= 20, "200 lines took {records} records");
    }

    fn registration_and_chat_work_over_tls(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let mut alice = server.register_tls("alice", pki.client_config());
        let mut bob = server.register_tls("bob", pki.client_config_tls12());
        join_all("#secure", &mut [&mut alice, &mut bob]);
        alice.send("PRIVMSG #secure :over TLS 1.3");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG #secure :over TLS 1.3");
        bob.send("PRIVMSG alice :and back over TLS 1.2");
        alice.expect(":bob!~bob@127.0.0.1 PRIVMSG alice :and back over TLS 1.2");
        alice.expect_nothing();
        bob.send("QUIT :done");
        assert_eq!(
            bob.expect_closed(),
            [
                ":bob!~bob@127.0.0.1 QUIT :Quit: done",
                "ERROR :Closing Link: 127.0.0.1 (Quit: done)"
            ]
        );
        alice.expect(":bob!~bob@127.0.0.1 QUIT :Quit: done");
    }

    fn whois_says_671_for_a_tls_user_and_not_for_a_plaintext_one(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let _alice = server.register_tls("alice", pki.client_config());
        let mut bob = server.register("bob");
        bob.send("WHOIS alice");
        let reply = bob.skip_until(|line| has_numeric(line, "318"));
        assert!(
            reply.contains(&":ringchat.local 671 bob alice :is using a secure connection".to_owned()),
            "{reply:?}"
        );
        bob.send("WHOIS bob");
        let reply = bob.skip_until(|line| has_numeric(line, "318"));
        assert!(!reply.iter().any(|line| has_numeric(line, "671")), "{reply:?}");
    }

    fn tls_and_plaintext_members_share_a_channel(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let mut secure = server.register_tls("secure", pki.client_config());
        let mut plain = server.register("plain");
        let mut old = server.register_tls("old", pki.client_config_tls12());
        join_all("#mixed", &mut [&mut secure, &mut plain, &mut old]);
        for sender in 0..3 {
            let mut members = [&mut secure, &mut plain, &mut old];
            let text = format!("line from {}", members[sender].nick);
            members[sender].send(&format!("PRIVMSG #mixed :{text}"));
            let source = members[sender].source();
            for (index, member) in members.iter_mut().enumerate() {
                if index != sender {
                    member.expect(&format!(":{source} PRIVMSG #mixed :{text}"));
                }
            }
        }
        for member in [&mut secure, &mut plain, &mut old] {
            member.expect_nothing();
        }
    }

    fn a_burst_larger_than_the_tls_buffer_arrives_whole_and_in_order(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |config| config.flood_rate = 0.0);
        let mut sender = server.register("sender");
        let mut reader = server.register_tls("reader", pki.client_config());
        join_all("#burst", &mut [&mut sender, &mut reader]);
        // 600 lines of about 450 bytes: several times the 64 KiB one writer turn
        // encrypts, and more lines than one turn takes, so the rest waits its turn.
        let padding = "x".repeat(400);
        let burst: String = (0..600)
            .map(|i| format!("PRIVMSG #burst :{i:04} {padding}\r\n"))
            .collect();
        sender.send_raw(burst.as_bytes());
        for i in 0..600 {
            reader.expect(&format!(
                ":sender!~sender@127.0.0.1 PRIVMSG #burst :{i:04} {padding}"
            ));
        }
        reader.expect_nothing();
    }

    fn a_tls_client_that_never_reads_is_dropped_at_its_sendq(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |c| {
            c.flood_rate = 0.0;
            c.sendq = 64 * 1024;
        });
        let mut bob = server.register_tls("bob", pki.client_config());
        let mut sender = server.register("sender");
        let mut slow = server.register_tls("slow", pki.client_config());
        join_all("#c", &mut [&mut bob, &mut sender, &mut slow]);
        // `slow` is never read again; its socket buffers fill, then its sendq.
        common::flood_until_cut_off(&mut sender, &mut bob, "slow");
        bob.expect_nothing();
        drop(slow);
    }

    fn a_tls_client_that_stops_reading_is_reset_after_the_write_timeout(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |c| {
            c.flood_rate = 0.0;
            c.sendq = 64 << 10;
            c.write_timeout = Duration::from_secs(1);
        });
        let mut bob = server.register("bob");
        let mut sender = server.register("sender");
        // The zombie: a TLS client with the smallest receive buffer the kernel allows,
        // which joins and then never reads again.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
        socket
            .connect(&server.tls_addr.expect("TLS listener").into())
            .expect("connect");
        let socket: TcpStream = socket.into();
        socket.set_read_timeout(Some(HANG)).expect("timeout");
        let session = rustls::ClientConnection::new(
            pki.client_config(),
            "localhost".try_into().expect("name"),
        )
        .expect("session");
        let mut zombie = BufReader::new(rustls::StreamOwned::new(session, socket));
        zombie
            .get_mut()
            .write_all(b"NICK zombie\r\nUSER zombie 0 * :Z\r\nJOIN #c\r\n")
            .expect("register");
        let mut line = String::new();
        while !line.contains(" 366 zombie #c ") {
            line.clear();
            zombie.read_line(&mut line).expect("the zombie's welcome and JOIN");
        }
        join_all("#c", &mut [&mut bob, &mut sender]);
        let open = |server: &common::TestServer| -> u64 {
            server.server().shard_counters().iter().map(|c| c.connections).sum()
        };
        // Counters are published about once a second: see the zombie counted first.
        let deadline = Instant::now() + HANG;
        while open(&server) != 3 {
            assert!(Instant::now() < deadline, "the zombie was never counted");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its socket fills, then its sendq. Its final ERROR usually cannot be written
        // then, and the write timeout resets it; either way its slot is freed.
        common::flood_until_cut_off(&mut sender, &mut bob, "zombie");
        let deadline = Instant::now() + HANG;
        while open(&server) != 2 {
            assert!(Instant::now() < deadline, "the zombie's slot was never freed");
            std::thread::sleep(Duration::from_millis(50));
        }
        let resets: u64 = server.server().shard_counters().iter().map(|c| c.write_timeouts).sum();
        println!("write timeouts: {resets}");
        sender.send("PING :still here");
        sender.skip_until(|line| line.ends_with(":still here"));
        drop(zombie);
    }

    fn tls_trickled_a_few_bytes_at_a_time_still_makes_lines(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let mut alice = server.register("alice");
        let socket = TcpStream::connect(server.tls_addr.expect("TLS listener")).expect("connect");
        socket.set_read_timeout(Some(HANG)).expect("timeout");
        socket.set_nodelay(true).expect("nodelay");
        let session = rustls::ClientConnection::new(
            pki.client_config(),
            "localhost".try_into().expect("name"),
        )
        .expect("session");
        // Every record, the handshake included, reaches the server in 3-byte writes, so
        // it arrives split across many reads.
        let mut trickler = rustls::StreamOwned::new(session, Trickle(socket));
        trickler
            .write_all(b"NICK trickle\r\nUSER t 0 * :t\r\nPRIVMSG alice :one byte at a time\r\n")
            .expect("send");
        alice.expect(":trickle!~t@127.0.0.1 PRIVMSG alice :one byte at a time");
        let mut welcome = String::new();
        BufReader::new(&mut trickler).read_line(&mut welcome).expect("read");
        assert!(welcome.contains(" 001 trickle "), "{welcome}");
    }

    fn corrupted_handshakes_panic_nothing_and_close_only_themselves(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let tls_addr = server.tls_addr.expect("TLS listener");
        let mut plain = server.register("plain");
        let mut hello = Vec::new();
        rustls::ClientConnection::new(pki.client_config(), "localhost".try_into().expect("name"))
            .expect("session")
            .write_tls(&mut hello)
            .expect("a ClientHello");
        // xorshift64*, fixed seed: a failure is reproducible.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |n: usize| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
        };
        for round in 0..120 {
            let mut bytes = hello.clone();
            for _ in 0..1 + random(8) {
                let at = random(bytes.len());
                bytes[at] ^= 1 << random(8);
            }
            match round % 4 {
                0 => bytes.truncate(random(bytes.len())),
                1 => bytes.extend((0..random(300)).map(|_| random(256) as u8)),
                _ => {}
            }
            let mut socket = TcpStream::connect(tls_addr).expect("connect");
            socket.set_read_timeout(Some(HANG)).expect("timeout");
            let _ = socket.write_all(&bytes);
            let _ = socket.shutdown(std::net::Shutdown::Write);
            // Whatever the server answers (an alert, a ServerHello), it closes. (A panic
            // in a connection task would leave the connection open: the read times out.)
            match socket.read_to_end(&mut Vec::new()) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(error) => panic!("round {round}: the server did not close: {error}"),
            }
        }
        plain.expect_nothing();
        let mut secure = server.register_tls("secure", pki.client_config());
        secure.expect_nothing();
    }

    fn chat_continues_across_a_tls_key_update(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let mut alice = server.register_tls("alice", pki.client_config());
        let mut bob = server.register("bob");
        alice.send("PRIVMSG bob :before");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :before");
        alice.update_tls_keys();
        alice.send("PRIVMSG bob :after new keys");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :after new keys");
        bob.send("PRIVMSG alice :still readable");
        alice.expect(":bob!~bob@127.0.0.1 PRIVMSG alice :still readable");
        alice.expect_nothing();
    }

    fn a_reload_serves_the_new_certificate_and_keeps_old_connections(setup) {
        let pki = TestPki::new();
        let first = pki.server_files();
        let server = setup.start_tls(&pki, |_| {});
        let mut early = server.connect_tls(pki.client_config());
        let early_cert = early.server_certificates().remove(0);
        let mut early = Client::register(early, "early");

        let renewed = pki.issue_server_certificate();
        assert!(server.server().reload_tls().expect("the reload succeeds"));
        let mut late = server.connect_tls(pki.client_config());
        assert_eq!(late.server_certificates()[0], renewed, "a new handshake sees the new certificate");
        assert_ne!(early_cert, renewed);
        let mut late = Client::register(late, "late");

        join_all("#renewal", &mut [&mut early, &mut late]);
        early.send("PRIVMSG #renewal :still here");
        late.expect(":early!~early@127.0.0.1 PRIVMSG #renewal :still here");

        // A broken file is refused and the renewed certificate stays in use.
        std::fs::write(&first.cert, b"not a certificate").expect("write garbage");
        let error = server.server().reload_tls().expect_err("a bad file is refused");
        assert!(error.to_string().contains("server.crt"), "{error:#}");
        let mut after = server.connect_tls(pki.client_config());
        assert_eq!(after.server_certificates()[0], renewed);
        let mut after = Client::register(after, "after");
        after.expect_nothing();
        early.expect_nothing();
    }

    fn whois_shows_ones_own_client_certificate_fingerprint(setup) {
        let pki = TestPki::new();
        let identity = pki.client_identity();
        let server = setup.start_tls(&pki, |_| {});
        let mut alice = server.register_tls("alice", pki.client_config_with(&identity));
        let mut bob = server.register_tls("bob", pki.client_config());
        alice.send("WHOIS alice");
        let reply = alice.skip_until(|line| has_numeric(line, "318"));
        let certfp: Vec<&String> = reply.iter().filter(|line| has_numeric(line, "276")).collect();
        assert_eq!(
            certfp,
            [&format!(
                ":ringchat.local 276 alice alice :has client certificate fingerprint {}",
                identity.fingerprint
            )]
        );
        // Others do not see it (there are no opers yet); no certificate, no 276.
        bob.send("WHOIS alice");
        let reply = bob.skip_until(|line| has_numeric(line, "318"));
        assert!(!reply.iter().any(|line| has_numeric(line, "276")), "{reply:?}");
        bob.send("WHOIS bob");
        let reply = bob.skip_until(|line| has_numeric(line, "318"));
        assert!(!reply.iter().any(|line| has_numeric(line, "276")), "{reply:?}");
    }

    fn a_garbage_handshake_closes_only_that_connection(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let mut plain = server.register("plain");
        let mut secure = server.register_tls("secure", pki.client_config());
        join_all("#calm", &mut [&mut plain, &mut secure]);

        // Plaintext IRC sent to the TLS port is not a handshake.
        let mut confused = Client::connect(server.tls_addr.expect("TLS listener"));
        confused.send_raw(b"NICK confused\r\nUSER c 0 * :C\r\n");
        let answer = confused.read_to_end();
        assert!(
            !String::from_utf8_lossy(&answer).contains("001"),
            "no IRC without a handshake: {answer:?}"
        );
        // Random bytes too.
        let mut noisy = Client::connect(server.tls_addr.expect("TLS listener"));
        noisy.send_raw(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00]);
        noisy.read_to_end();

        plain.send("PRIVMSG #calm :unaffected");
        secure.expect(":plain!~plain@127.0.0.1 PRIVMSG #calm :unaffected");
        let mut newcomer = server.register_tls("newcomer", pki.client_config());
        newcomer.expect_nothing();
        plain.expect_nothing();

        // Both failures are counted (counters are published about once a second).
        let deadline = Instant::now() + HANG;
        loop {
            let failures: u64 = server
                .server()
                .shard_counters()
                .iter()
                .map(|c| c.tls_handshake_failures)
                .sum();
            if failures == 2 {
                break;
            }
            assert!(failures < 2 && Instant::now() < deadline, "{failures} failures counted");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn sts_sends_plaintext_clients_to_tls_and_tells_tls_clients_how_long(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |config| {
            config.sts = Some(ringchat::config::StsPolicy {
                port: 6697,
                duration: std::time::Duration::from_secs(3600),
            });
        });
        let mut plain = server.connect();
        plain.send("CAP LS 302");
        let offer = plain.line();
        assert!(offer.ends_with(" sts=port=6697"), "{offer}");
        let mut secure = server.connect_tls(pki.client_config());
        secure.send("CAP LS 302");
        let offer = secure.line();
        assert!(offer.ends_with(" sts=duration=3600"), "{offer}");
        // Values are for CAP LS 302 only; STS cannot be requested.
        let mut old = server.connect();
        old.send("CAP LS");
        let offer = old.line();
        assert!(!offer.contains("sts"), "{offer}");
        old.send("CAP REQ sts");
        old.expect(":ringchat.local CAP * NAK :sts");
    }

    fn without_a_policy_there_is_no_sts(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |_| {});
        let mut plain = server.connect();
        plain.send("CAP LS 302");
        let offer = plain.line();
        assert!(!offer.contains("sts"), "{offer}");
    }

    fn shutdown_tells_tls_clients_and_closes_cleanly(setup) {
        let pki = TestPki::new();
        let mut server = setup.start_tls(&pki, |_| {});
        let mut alice = server.register_tls("alice", pki.client_config());
        alice.expect_nothing();
        server.shutdown();
        assert_eq!(
            alice.expect_closed(),
            ["ERROR :Closing Link: 127.0.0.1 (Server shutting down)"]
        );
    }
}
