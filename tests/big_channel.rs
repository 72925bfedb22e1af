//! A big channel filled by a member flood, on every driver: every member receives
//! every later JOIN exactly once, in the order the server took the JOINs in.
//!
//! Filling a channel of N members delivers N²/2 JOIN lines, so this is the load that
//! made the tokio-uring driver collapse (issue 34). The members' sockets are read by
//! a few threads with poll(2) while the JOINs arrive, as real clients would read
//! them; nothing here measures time.

mod common;

use common::{has_numeric, HANG};
use ringchat::state::shared::CounterSnapshot;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Mutex};

/// Members of the channel. Both ends of every connection count against the
/// per-process open-file limit: 4,000 descriptors a test, one test at a time
/// ([`ONE_AT_A_TIME`]).
const MEMBERS: usize = 2_000;
/// Held by the running test, so the tests' descriptors never add up past the limit
/// whatever the number of test threads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// The fewest lines a write must carry on average while the channel fills (one
/// shard): the JOINs read in one turn share each member's write. Measured in a debug
/// build: 172 (uring), 180 (epoll), 225 (ring); a driver writing each JOIN on its
/// own (the collapse of issue 34) carries about 1.
const MIN_LINES_PER_WRITE: u64 = 16;
/// Threads reading the members' sockets.
const READERS: usize = 4;
/// The nick of the client that joins after every member's JOIN was answered: the
/// last JOIN every member must see.
const LAST: &str = "last";

// Every driver on one shard, and the driver that collapsed (issue 34) on four, where
// the JOINs cross shards through the event log: 4 tests in about 18 s in a debug
// build on 2 cores.
e2e_on! {
    [uring_1_shard Uring 1, uring_4_shards Uring 4, epoll_1_shard Epoll 1, ring_1_shard Ring 1]
    fn a_member_flood_reaches_every_member_once_in_order(setup) {
        let (_alone, server) = alone_with_room_for(&setup, MEMBERS);
        let mut members: Vec<(usize, TcpStream)> = (0..MEMBERS)
            .map(|index| (index, server.register(&nick(index)).into_raw()))
            .collect();
        let (joined, answered) = mpsc::channel();
        let mut chunks = Vec::new();
        while !members.is_empty() {
            let rest = members.split_off(members.len().min(MEMBERS.div_ceil(READERS)));
            chunks.push(std::mem::replace(&mut members, rest));
        }
        let readers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let joined = joined.clone();
                std::thread::spawn(move || join_and_read(chunk, &joined))
            })
            .collect();
        // Wait until each member's own JOIN was answered (its 366), so `LAST` is last.
        drop(joined);
        for waiting in (1..=MEMBERS).rev() {
            answered
                .recv_timeout(HANG)
                .unwrap_or_else(|_| panic!("{waiting} members still wait for their 366"));
        }
        let mut last = server.register(LAST);
        last.send("JOIN #big");
        let names = last.skip_until(|line| has_numeric(line, "366"));
        assert_names_list_everyone_within_linelen(&names);

        // The sockets stay open until every reader is done: a member that left would
        // be a QUIT in the others' input.
        let mut seen: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut sockets: Vec<TcpStream> = Vec::new();
        for reader in readers {
            for (index, joins, socket) in reader.join().expect("a reader thread") {
                seen.push((index, joins));
                sockets.push(socket);
            }
        }
        assert_eq!(seen.len(), MEMBERS);
        // The first member to join saw every JOIN: that is the order the server took.
        let order = seen
            .iter()
            .map(|(_, joins)| joins)
            .max_by_key(|joins| joins.len())
            .expect("members")
            .clone();
        assert_eq!(order.len(), MEMBERS + 1, "the first member saw every JOIN");
        let mut position = HashMap::new();
        for (at, &index) in order.iter().enumerate() {
            assert!(position.insert(index, at).is_none(), "{} joined twice", nick(index));
        }
        for (member, joins) in &seen {
            let from = position[member];
            assert!(
                joins[..] == order[from..],
                "{} saw {} JOINs, expected the {} from its own on, in order",
                nick(*member),
                joins.len(),
                order.len() - from
            );
        }

        // With one shard, STATS S publishes every counter: the flood's lines went
        // out in few writes.
        if setup.shards == 1 {
            last.send("STATS S");
            last.skip_until(|line| has_numeric(line, "219"));
            let counts = server
                .server()
                .shard_counters()
                .into_iter()
                .fold(CounterSnapshot::default(), CounterSnapshot::plus);
            println!(
                "{:?}: {} deliveries in {} writes ({:.1} lines per write)",
                setup.io,
                counts.deliveries,
                counts.writes,
                counts.deliveries as f64 / counts.writes as f64
            );
            assert!(
                counts.writes * MIN_LINES_PER_WRITE < counts.deliveries,
                "{:?}: {} writes carried {} deliveries: fewer than {MIN_LINES_PER_WRITE} lines a write",
                setup.io,
                counts.writes,
                counts.deliveries
            );
        }
    }
}

/// Members of the channel whose NAMES text the shard keeps between JOINs (it keeps
/// channels of at least 256).
const KEPT_MEMBERS: usize = 300;

// The kept NAMES text follows every change, not only JOINs: on one shard, where each
// JOIN appends to it, and on two, where a shard's JOINs and the other's interleave.
e2e_on! {
    [ring_1_shard Ring 1, epoll_2_shards Epoll 2]
    fn a_big_channels_names_follow_joins_nick_changes_parts_and_status(setup) {
        let (_alone, server) = alone_with_room_for(&setup, KEPT_MEMBERS);
        let mut members: Vec<_> = (0..KEPT_MEMBERS)
            .map(|index| {
                let mut member = server.register(&nick(index));
                member.send("JOIN #big");
                member.skip_until(|line| has_numeric(line, "366"));
                member
            })
            .collect();
        let mut asker = server.register("asker");
        asker.send("JOIN #big");
        let names = asker.skip_until(|line| has_numeric(line, "366"));
        assert_eq!(listed(&names).len(), KEPT_MEMBERS + 1, "every member and the asker");

        // A NAMES after each change alone: the kept text must follow each kind.
        let names_now = |asker: &mut common::Client| {
            asker.send("NAMES #big");
            listed(&asker.skip_until(|line| has_numeric(line, "366")))
        };
        members[5].send("NICK renamed5");
        asker.skip_until(|line| line.contains(" NICK "));
        let names = names_now(&mut asker);
        assert!(names.contains(&"renamed5".to_owned()), "the new nick is listed");
        assert!(!names.contains(&nick(5)), "the old nick is gone");

        members[7].send("PART #big");
        asker.skip_until(|line| line.contains(" PART "));
        assert!(!names_now(&mut asker).contains(&nick(7)), "who parted is gone");

        members[0].send(&format!("MODE #big +v {}", nick(9)));
        asker.skip_until(|line| line.contains(" MODE "));
        let voiced = format!("+{}", nick(9));
        assert!(names_now(&mut asker).contains(&voiced), "the voice is shown");

        let mut late = server.register("late");
        late.send("JOIN #big");
        asker.skip_until(|line| line.contains("late!"));
        let names = names_now(&mut asker);
        assert_eq!(names.len(), KEPT_MEMBERS + 1, "one parted, one joined: {names:?}");
        assert!(names.contains(&format!("@{}", nick(0))), "the creator is an operator");
        assert!(names.contains(&"late".to_owned()), "the latest joiner is listed");
    }
}

/// Waits for the other big-channel tests to end ([`ONE_AT_A_TIME`]), raises the soft
/// open-file limit and starts a server that admits `members` clients and a few more.
fn alone_with_room_for(
    setup: &common::Setup,
    members: usize,
) -> (std::sync::MutexGuard<'static, ()>, common::TestServer) {
    let alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ringchat::server::raise_open_file_limit();
    let server = setup.start_with(|c| {
        c.max_clients = members + 16;
        c.sources.max_unregistered_total = members + 16;
    });
    (alone, server)
}

/// The names of a NAMES reply's 353 lines, with their status prefixes.
fn listed(reply: &[String]) -> Vec<String> {
    reply
        .iter()
        .filter(|line| has_numeric(line, "353"))
        .filter_map(|line| line.split_once(" :"))
        .flat_map(|(_, names)| names.split(' ').map(str::to_owned))
        .collect()
}

/// The joiner's NAMES: 353 lines of at most 512 bytes (CR LF included) that name
/// every member once.
fn assert_names_list_everyone_within_linelen(reply: &[String]) {
    let mut named = HashMap::new();
    for line in reply.iter().filter(|line| has_numeric(line, "353")) {
        assert!(line.len() + 2 <= 512, "{} bytes: {line}", line.len() + 2);
        let (_, names) = line.split_once(" :").expect("353 ends with its names");
        for name in names.split(' ') {
            *named
                .entry(name.trim_start_matches(['@', '+']))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(
        named.len(),
        MEMBERS + 1,
        "every member and the joiner named"
    );
    assert!(
        named.values().all(|&count| count == 1),
        "a name listed twice"
    );
}

fn nick(index: usize) -> String {
    if index == MEMBERS {
        LAST.to_owned()
    } else {
        format!("m{index}")
    }
}

fn index_of(nick: &str) -> usize {
    if nick == LAST {
        MEMBERS
    } else {
        nick.strip_prefix('m')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a JOIN from an unknown nick {nick:?}"))
    }
}

/// One member's socket and what it has read.
struct Member {
    index: usize,
    socket: TcpStream,
    pending: Vec<u8>,
    joins: Vec<usize>,
    saw_last: bool,
}

/// Sends every member's JOIN at once (the flood), then reads the members' sockets
/// until each has seen `LAST` join, telling `joined` of each 366. Returns each member's
/// index, the JOINs it saw, in order (its own first), and its socket, still open.
fn join_and_read(
    chunk: Vec<(usize, TcpStream)>,
    joined: &mpsc::Sender<()>,
) -> Vec<(usize, Vec<usize>, TcpStream)> {
    let mut members: Vec<Member> = chunk
        .into_iter()
        .map(|(index, mut socket)| {
            socket.write_all(b"JOIN #big\r\n").expect("send JOIN");
            socket.set_nonblocking(true).expect("nonblocking");
            Member {
                index,
                socket,
                pending: Vec::new(),
                joins: Vec::new(),
                saw_last: false,
            }
        })
        .collect();
    let mut buf = vec![0u8; 64 << 10];
    let timeout_ms = i32::try_from(HANG.as_millis()).expect("a short hang timeout");
    loop {
        let waiting: Vec<usize> = (0..members.len())
            .filter(|&at| !members[at].saw_last)
            .collect();
        if waiting.is_empty() {
            break;
        }
        let mut fds: Vec<libc::pollfd> = waiting
            .iter()
            .map(|&at| libc::pollfd {
                fd: members[at].socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd for the sockets `members` owns.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        assert!(
            ready > 0,
            "no member received anything for {HANG:?} ({} still waiting)",
            waiting.len()
        );
        for (fd, &at) in fds.iter().zip(&waiting) {
            if fd.revents != 0 {
                members[at].read_available(&mut buf, joined);
            }
        }
    }
    members
        .into_iter()
        .map(|member| (member.index, member.joins, member.socket))
        .collect()
}

impl Member {
    fn read_available(&mut self, buf: &mut [u8], joined: &mpsc::Sender<()>) {
        loop {
            match self.socket.read(buf) {
                Ok(0) => panic!("{} was disconnected", nick(self.index)),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => panic!("{}: read failed: {error}", nick(self.index)),
            }
        }
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.pending[start..start + end])
                .trim_end()
                .to_owned();
            start += end + 1;
            self.take_line(&line, joined);
        }
        self.pending.drain(..start);
    }

    fn take_line(&mut self, line: &str, joined: &mpsc::Sender<()>) {
        let mut words = line.split(' ');
        let source = words.next().unwrap_or_default();
        match (words.next(), words.next()) {
            (Some("JOIN"), Some("#big" | ":#big")) => {
                let nick = source
                    .trim_start_matches(':')
                    .split('!')
                    .next()
                    .unwrap_or_default();
                self.joins.push(index_of(nick));
                self.saw_last |= nick == LAST;
            }
            (Some("353"), _) => {}
            (Some("366"), _) => {
                joined.send(()).expect("the test waits for every 366");
            }
            _ => panic!("{} got an unexpected line: {line:?}", nick(self.index)),
        }
    }
}
