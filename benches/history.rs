//! Channel history on the store, measured the way the server uses it (not a
//! criterion run: each figure is one pass, printed):
//! - appends: 1,000,000 channel messages in 100 channels, handed to the store
//!   (`history::keep`) as one job per 256 messages (a busy shard's pass), until
//!   committed: messages/s on the writer's one core, and the file's size per message;
//! - `CHATHISTORY LATEST #c * 100` as the server runs it (on a reader thread, over a
//!   snapshot and the uncommitted tail, the answer back through a channel): p50 and
//!   p99 over 2,000 queries of an idle store, then while another thread keeps
//!   handing over 20,000 messages/s; and, for comparison, the same query queued on
//!   the writer (`Store::read_in_order`, how CHATHISTORY ran before the readers);
//!   and what `history::keep` costs the thread handing over (a shard's flush).
//!
//! `cargo bench --bench history`; `HISTORY_MESSAGES=N` changes the million.

use bytes::Bytes;
use ringchat::proto::outgoing::{MsgId, Outgoing};
use ringchat::proto::CaselessKey;
use ringchat::store::history::{self, Kind, Record, Retention, Selection, Target};
use ringchat::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHANNELS: u64 = 100;
const PER_JOB: u64 = 256;
/// Messages handed over per second while queries are measured under load.
const LOAD_PER_SECOND: f64 = 20_000.0;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn record(counter: u64) -> Record {
    let channel = format!("#channel{}", counter % CHANNELS);
    let line = format!(
        ":nick{0}!~user{0}@192.0.2.{1} PRIVMSG {channel} :message {counter}, about seventy bytes of chat text\r\n",
        counter % 1000,
        counter % 250
    );
    Record {
        target: Target::Channel(CaselessKey::new(&channel)),
        kind: Kind::Message,
        message: Outgoing::new(Bytes::from(line)).with_msgid(MsgId::new(1, 0, counter)),
    }
}

/// Where a query runs.
#[derive(Clone, Copy)]
enum Path {
    /// A store reader thread (CHATHISTORY).
    Reader,
    /// The writer's queue, behind the writes.
    Writer,
}

fn latest_once(store: &Store, path: Path) -> Duration {
    let (done, answer) = std::sync::mpsc::channel();
    let asked = Instant::now();
    let selection = Selection::Latest(None);
    match path {
        Path::Reader => store.read_history(Box::new(move |snapshot| {
            let found = match snapshot {
                Ok(snapshot) => history::query(snapshot, "#channel7", &selection, 100, 0, false),
                Err(why) => panic!("no snapshot: {why}"),
            };
            let _ = done.send(found.map_or(0, |found| found.len()));
        })),
        Path::Writer => store.read_in_order(Box::new(move |t| {
            let found = history::query(t, "#channel7", &selection, 100, 0, false)?;
            let _ = done.send(found.len());
            Ok(())
        })),
    }
    .expect("queued");
    let found = answer.recv().expect("answered");
    assert_eq!(found, 100);
    asked.elapsed()
}

/// p50 and p99 of `LATEST 100` over 2,000 queries on `path`, printed as `label`.
fn measure(store: &Store, path: Path, label: &str) {
    let samples: Vec<Duration> = (0..2_000).map(|_| latest_once(store, path)).collect();
    let (p50, p99) = percentiles(samples);
    println!("LATEST 100, {label}: p50 {p50:?} p99 {p99:?}");
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99))
}

fn main() {
    let total: u64 = std::env::var("HISTORY_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("ringchat-history-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let store = Arc::new(Store::open(&dir).expect("the store opens"));
    let retention = Retention {
        max_messages: 10_000,
        max_age_ms: 30 * 86_400_000,
    };

    let started = Instant::now();
    let mut counter = 0;
    while counter < total {
        let records: Vec<Record> = (counter..(counter + PER_JOB).min(total))
            .map(record)
            .collect();
        counter += records.len() as u64;
        // 1,000,000 / 256 jobs stay well under the store's queue bound.
        history::keep(&store, records, retention, now_ms()).expect("the queue has room");
    }
    store.sync().expect("the writer runs");
    let elapsed = started.elapsed();
    let size = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    println!(
        "append: {total} messages in {:.2} s = {:.0} messages/s; file {:.1} MiB = {:.0} bytes/message",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        size as f64 / 1_048_576.0,
        size as f64 / total as f64
    );

    measure(&store, Path::Reader, "idle store, reader");
    measure(&store, Path::Writer, "idle store, on the writer (before)");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            // Paced by the clock, not by the sleep (which oversleeps): a flush about
            // every millisecond with what is due by then.
            let started = Instant::now();
            let mut counter = total;
            let mut handing_over = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let due = total + (started.elapsed().as_secs_f64() * LOAD_PER_SECOND) as u64;
                if due > counter {
                    let records: Vec<Record> = (counter..due).map(record).collect();
                    counter = due;
                    let handed = Instant::now();
                    let _ = history::keep(&store, records, retention, now_ms());
                    handing_over.push(handed.elapsed());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let rate = (counter - total) as f64 / started.elapsed().as_secs_f64();
            (rate, percentiles(handing_over))
        })
    };
    measure(
        &store,
        Path::Reader,
        "while appending ~20,000 messages/s, reader",
    );
    measure(
        &store,
        Path::Writer,
        "while appending ~20,000 messages/s, on the writer (before)",
    );
    stop.store(true, Ordering::Relaxed);
    let (rate, (p50, p99)) = writer.join().expect("the load thread ends");
    println!(
        "(the load handed over {rate:.0} messages/s; history::keep on its thread, the \
         shard's cost per flush: p50 {p50:?} p99 {p99:?})"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
