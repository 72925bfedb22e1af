//! A tiny IRC server for loadgen's tests: enough of registration, JOIN, PRIVMSG
//! fan-out, PING and QUIT to run every scenario, with injectable faults (dropped or
//! duplicated deliveries) so loss accounting can be checked against a known truth.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Faults the mock injects into channel deliveries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Faults {
    /// Drop every Nth channel delivery (0: never).
    pub drop_every: u64,
    /// Deliver every Nth channel delivery twice (0: never).
    pub duplicate_every: u64,
    /// Handle at most one PRIVMSG per this interval from each client, later ones
    /// waiting their turn (zero: no limit): per-sender flood control, as IRC servers
    /// have by default.
    pub throttle: std::time::Duration,
}

/// What the mock saw, for assertions.
#[derive(Debug, Default)]
pub struct MockStats {
    pub deliveries: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub pongs: AtomicU64,
}

type Outbox = mpsc::UnboundedSender<String>;

#[derive(Default)]
struct State {
    channels: HashMap<String, Vec<(u64, String, Outbox)>>,
}

/// Starts the mock on 127.0.0.1 (ephemeral port) on its own thread; it runs until
/// the test process ends.
pub fn start(faults: Faults) -> (SocketAddr, Arc<MockStats>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let stats = Arc::new(MockStats::default());
    let thread_stats = stats.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            let state = Arc::new(Mutex::new(State::default()));
            let counter = Arc::new(AtomicU64::new(0));
            let mut next_id = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                next_id += 1;
                tokio::spawn(serve(
                    stream,
                    next_id,
                    state.clone(),
                    faults,
                    counter.clone(),
                    thread_stats.clone(),
                ));
            }
        });
    });
    (addr, stats)
}

async fn serve(
    stream: TcpStream,
    id: u64,
    state: Arc<Mutex<State>>,
    faults: Faults,
    counter: Arc<AtomicU64>,
    stats: Arc<MockStats>,
) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = first;
            while let Ok(more) = rx.try_recv() {
                batch.push_str(&more);
            }
            if write.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    let mut nick = String::from("*");
    let mut next_allowed = tokio::time::Instant::now();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.splitn(3, ' ');
        let command = words.next().unwrap_or("");
        let arg = words.next().unwrap_or("");
        match command {
            "NICK" => nick = arg.to_string(),
            "USER" => {
                let _ = tx.send(format!(
                    ":mock 001 {nick} :Welcome\r\n:mock 004 {nick} mock mock-1.0 o o\r\n:mock 422 {nick} :No MOTD\r\nPING :mock-{id}\r\n"
                ));
            }
            "PONG" => {
                stats.pongs.fetch_add(1, Ordering::Relaxed);
            }
            "PING" => {
                let _ = tx.send(format!(":mock PONG mock {arg}\r\n"));
            }
            "JOIN" => {
                let mut st = state.lock().expect("lock");
                let members = st.channels.entry(arg.to_string()).or_default();
                members.push((id, nick.clone(), tx.clone()));
                for (_, _, out) in members.iter() {
                    let _ = out.send(format!(":{nick}!~u@127.0.0.1 JOIN {arg}\r\n"));
                }
                let _ = tx.send(format!(":mock 366 {nick} {arg} :End of NAMES list\r\n"));
            }
            "PRIVMSG" => {
                if !faults.throttle.is_zero() {
                    tokio::time::sleep_until(next_allowed).await;
                    next_allowed = next_allowed.max(tokio::time::Instant::now()) + faults.throttle;
                }
                let text = words.next().unwrap_or("");
                let out_line = format!(":{nick}!~u@127.0.0.1 PRIVMSG {arg} {text}\r\n");
                let st = state.lock().expect("lock");
                for (member, _, out) in st.channels.get(arg).map(|m| m.as_slice()).unwrap_or(&[]) {
                    if *member == id {
                        continue;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    if faults.drop_every > 0 && n % faults.drop_every == 0 {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    stats.deliveries.fetch_add(1, Ordering::Relaxed);
                    let _ = out.send(out_line.clone());
                    if faults.duplicate_every > 0 && n % faults.duplicate_every == 0 {
                        stats.duplicated.fetch_add(1, Ordering::Relaxed);
                        let _ = out.send(out_line.clone());
                    }
                }
            }
            "QUIT" => break,
            _ => {}
        }
    }
    let mut st = state.lock().expect("lock");
    for members in st.channels.values_mut() {
        members.retain(|(member, _, _)| *member != id);
    }
}
