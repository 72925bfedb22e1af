//! The deterministic performance gate: instruction counts of the hot paths under
//! valgrind's callgrind, compared with the committed baseline `benches/instructions.baseline`.
//!
//! Owns: the measured scenarios, running each under callgrind, and the verdict. Must
//! not: use anything of ringchat but its public sans-IO surface (`ShardFixture`,
//! `Message::parse`), so the server's internals can change under it.
//!
//! Why instructions and not time: an instruction count does not depend on the machine's
//! load, so the gate cannot cry wolf on a busy CI runner; two runs of the same build
//! give the same counts. It does depend on the compiler and the build profile, so the
//! baseline must be made by this same command (`cargo bench --bench instructions`,
//! the bench profile, which is the release profile) with the same toolchain.
//!
//! ```text
//! cargo bench --bench instructions                  # check (exit 1 on growth past the tolerance)
//! cargo bench --bench instructions -- --bless       # rewrite the baseline after an intended change
//! cargo bench --bench instructions -- --tolerance 5%
//! ```
//!
//! How: the binary runs itself once per scenario under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*measured_section*`,
//! so only the instructions executed inside [`measured_section`] (and what it calls)
//! are counted; the fixture's set-up and a warm-up round before it are not. Without
//! valgrind the gate is skipped with its reason (under `CI=true` that is an error:
//! `.ci/run` installs valgrind).

use ringchat::proto::Message;
use ringchat::state::ClientId;
use ringchat::testing::ShardFixture;
use ringchat::Config;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Growth beyond which a scenario fails the gate, unless `--tolerance` says otherwise.
const DEFAULT_TOLERANCE: f64 = 0.05;

/// The committed baseline, relative to the crate root.
const BASELINE: &str = "benches/instructions.baseline";

/// The function callgrind counts inside (its name is the `--toggle-collect` pattern).
const MEASURED_SYMBOL: &str = "*measured_section*";

/// One measured scenario: its name in the baseline and what it measures.
struct Scenario {
    name: &'static str,
    what: &'static str,
    run: fn(),
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "parse_privmsg_with_tags",
        what: "Message::parse of one tagged PRIVMSG line",
        run: parse_one_line,
    },
    Scenario {
        name: "fan_out_1000_local",
        what: "one channel message fanned out to 1,000 members on one shard",
        run: fan_out_to_1000_local_members,
    },
    Scenario {
        name: "cross_shard_handoff",
        what: "one channel message handed from shard 0 to a member on shard 1",
        run: cross_shard_handoff,
    },
    Scenario {
        name: "join_channel_of_100",
        what: "a JOIN applied to a channel of 100 members spread over 2 shards",
        run: join_applied,
    },
];

/// Fixed bytes in place of the kernel's randomness, for this measuring binary only.
///
/// The server keeps clients and channels in `HashMap`s whose `RandomState` seeds come
/// from `getrandom`; with random seeds a table probes a little differently each run
/// and a JOIN's count wandered by about 0.05%. std calls `getrandom` through a weak
/// symbol precisely so a program can interpose it "for perf measurements that want to
/// disable randomness for consistency" (std's words); defining it here makes every
/// run of a build count exactly the same instructions.
///
/// # Safety
/// Called by std with a buffer of `len` writable bytes, as libc's `getrandom` is.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, _flags: u32) -> isize {
    // SAFETY: the caller provides `len` writable bytes at `buf`.
    unsafe { std::ptr::write_bytes(buf, 0x5a, len) };
    len as isize
}

/// Runs `work` where callgrind counts. Never inlined, so its symbol exists to toggle on.
#[inline(never)]
fn measured_section<R>(work: impl FnOnce() -> R) -> R {
    black_box(work())
}

/// Runs `work` in [`measured_section`].
fn measure<R>(work: impl FnOnce() -> R) -> R {
    measured_section(work)
}

/// This measuring binary's allocator: a bump pointer over a fixed arena, freeing
/// nothing.
///
/// Under glibc's malloc the count of a scenario depended on the heap's layout, not on
/// ringchat's code: whether a request was served from a bin or split from the top,
/// and when fast bins were consolidated, moved with anything that allocated earlier
/// (a new setting in `Config`, a longer path). The same JOIN code counted 144,481 in
/// one build and 161,693 in the next, all of the difference in `_int_malloc`
/// (11,481 -> 24,555). With a bump allocator an allocation costs the same few
/// instructions wherever it happens, so the gate sees ringchat's instructions and
/// the number of allocations (which `tests/alloc_gate.rs` also pins), nothing else.
/// The scenarios are small and short-lived processes, so never freeing is fine.
struct BumpArena;

/// The arena's size: far above what the largest scenario allocates (about 20 MiB
/// for a fixture of 1,000 clients); untouched pages cost nothing.
const ARENA_BYTES: usize = 1 << 30;

/// The next free byte, as an offset into the arena.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The arena's base address (mapped once, on first use).
static BASE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn arena_base() -> usize {
    *BASE.get_or_init(|| {
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ARENA_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "cannot map the bench's arena");
        base as usize
    })
}

// SAFETY: every block is a distinct, suitably aligned range of the arena, handed out
// once and never reused; `dealloc` does nothing, so no block is freed twice.
unsafe impl std::alloc::GlobalAlloc for BumpArena {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering;
        let base = arena_base();
        let mut start = 0;
        let claimed = NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            start = (base + next).next_multiple_of(layout.align()) - base;
            let end = start.checked_add(layout.size())?;
            (end <= ARENA_BYTES).then_some(end)
        });
        match claimed {
            Ok(_) => (base + start) as *mut u8,
            Err(_) => std::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _block: *mut u8, _layout: std::alloc::Layout) {}
}

#[global_allocator]
static ALLOCATOR: BumpArena = BumpArena;

fn parse_one_line() {
    let line: &[u8] = b"@+draft/reply=abc :nick!~user@host PRIVMSG #rust :hello there, crab people";
    // Warm-up outside the count, so lazily initialised state is not measured.
    black_box(
        Message::parse(black_box(line))
            .map(|m| m.params().len())
            .ok(),
    );
    measure(|| {
        Message::parse(black_box(line))
            .map(|m| m.params().len())
            .ok()
    });
}

/// A fixture whose channel `channel` has `members` members placed on shards by `shard_of`.
///
/// Nicks all have the same length: the server keeps members in hash maps seeded at
/// random, so NAMES lists them in a different order each run; with equal lengths the
/// lines break at the same places whatever the order, and the count does not move.
fn channel(
    shards: usize,
    channel: &str,
    members: usize,
    shard_of: impl Fn(usize) -> u16,
) -> (ShardFixture, Vec<ClientId>) {
    let mut fixture = ShardFixture::new(Config {
        shards,
        flood_rate: 0.0,
        ..Config::loopback()
    });
    let ids: Vec<ClientId> = (0..members)
        .map(|i| fixture.register(shard_of(i), &format!("m{i:04}")))
        .collect();
    let join = format!("JOIN {channel}\r\n");
    for &id in &ids {
        fixture.send(id, &join);
    }
    for &id in &ids {
        fixture.drain_quietly(id);
    }
    (fixture, ids)
}

/// Sends one warm-up message and drains every member, then sends the measured one.
fn send_measured(fixture: &mut ShardFixture, ids: &[ClientId], line: &str) {
    fixture.send(ids[0], line);
    for &id in ids {
        fixture.drain_quietly(id);
    }
    measure(|| fixture.send(ids[0], line));
    let delivered: usize = ids[1..].iter().map(|&id| fixture.drain_quietly(id)).sum();
    assert!(delivered > 0, "the measured message reached no member");
}

fn fan_out_to_1000_local_members() {
    let (mut fixture, ids) = channel(1, "#bench", 1000, |_| 0);
    send_measured(
        &mut fixture,
        &ids,
        "PRIVMSG #bench :a line of ordinary chat text\r\n",
    );
}

fn cross_shard_handoff() {
    let (mut fixture, ids) = channel(2, "#bench", 2, |i| i as u16);
    send_measured(
        &mut fixture,
        &ids,
        "PRIVMSG #bench :a line of ordinary chat text\r\n",
    );
}

fn join_applied() {
    let (mut fixture, ids) = channel(2, "#bench", 100, |i| (i % 2) as u16);
    let newcomer = fixture.register(0, "newcomer");
    // Warm-up: a JOIN and PART of another channel, so first-use growth is not counted.
    fixture.send(newcomer, "JOIN #warm\r\nPART #warm\r\n");
    fixture.drain_quietly(newcomer);
    measure(|| fixture.send(newcomer, "JOIN #bench\r\n"));
    assert!(fixture.drain_quietly(ids[1]) > 0, "the members saw no JOIN");
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("instructions: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// What the command line asks for.
struct Options {
    bless: bool,
    tolerance: f64,
    /// Internal: run this one scenario (the binary under callgrind).
    measure: Option<String>,
    /// Only the scenarios whose names contain one of these (as `cargo bench NAME`).
    filters: Vec<String>,
}

fn parse_options(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        bless: false,
        tolerance: DEFAULT_TOLERANCE,
        measure: None,
        filters: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bless" => options.bless = true,
            "--tolerance" => {
                let value = args.next().ok_or("--tolerance needs a value, e.g. 5%")?;
                let number: f64 = value
                    .trim_end_matches('%')
                    .parse()
                    .map_err(|_| format!("--tolerance {value}: not a percentage"))?;
                options.tolerance = number / 100.0;
            }
            "--measure" => options.measure = Some(args.next().ok_or("--measure needs a name")?),
            // Cargo passes --bench to every bench binary.
            "--bench" => {}
            filter if !filter.starts_with('-') => options.filters.push(filter.to_string()),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (try --bless, --tolerance 5%)"
                ))
            }
        }
    }
    Ok(options)
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let options = parse_options(args)?;
    if let Some(name) = options.measure {
        let scenario = SCENARIOS
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("no scenario {name:?}"))?;
        (scenario.run)();
        return Ok(ExitCode::SUCCESS);
    }
    if !valgrind_available() {
        let reason = "valgrind is not installed (apt-get install valgrind)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            return Err(format!("{reason}; CI must install it"));
        }
        println!("instruction-count gate skipped: {reason}");
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let exe = at_fixed_path(&exe)?;
    if options.bless && !options.filters.is_empty() {
        return Err("--bless rewrites the whole baseline: run it without a filter".to_string());
    }
    let measured: Vec<(&Scenario, u64)> = SCENARIOS
        .iter()
        .filter(|s| {
            options.filters.is_empty()
                || options.filters.iter().any(|f| s.name.contains(f.as_str()))
        })
        .map(|s| count_instructions(&exe, s.name).map(|n| (s, n)))
        .collect::<Result<_, _>>()?;
    let baseline_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(BASELINE);
    let toolchain = rustc_version();
    if options.bless {
        write_baseline(&baseline_path, &toolchain, &measured)?;
        for (s, n) in &measured {
            println!("{:<26} {n:>12}  {}", s.name, s.what);
        }
        println!("baseline written to {BASELINE}");
        return Ok(ExitCode::SUCCESS);
    }
    let baseline = read_baseline(&baseline_path)?;
    let verdict = judge(&baseline.counts, &measured, options.tolerance);
    print!("{}", verdict.table);
    if baseline.toolchain != toolchain {
        println!(
            "note: the baseline was made with {:?}, this is {toolchain:?}; counts shift with the compiler (re-bless if the toolchain changed on purpose)",
            baseline.toolchain
        );
    }
    if verdict.failures.is_empty() {
        println!(
            "instruction counts within +{:.0}% of the baseline",
            options.tolerance * 100.0
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &verdict.failures {
            println!("INSTRUCTION REGRESSION: {failure}");
        }
        println!("(an intended change: `cargo bench --bench instructions -- --bless` and commit {BASELINE})");
        Ok(ExitCode::from(1))
    }
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `rustc -V` of the toolchain cargo uses, recorded in the baseline.
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// This binary under a name that is the same in every checkout: a symbolic link in
/// the temporary directory. The measured process's arguments (its own path first)
/// are on its heap, and their length moved where later allocations landed: the same
/// JOIN counted 144,126 run from one directory and 159,392 from another. CI runs a
/// clone in a folder of its own, so the path must not depend on where that is.
fn at_fixed_path(exe: &Path) -> Result<PathBuf, String> {
    let link = std::env::temp_dir().join("ringchat-instructions-bench");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(exe, &link)
        .map_err(|e| format!("cannot link {} to {}: {e}", link.display(), exe.display()))?;
    Ok(link)
}

/// Runs scenario `name` of this binary under callgrind; the instructions counted.
fn count_instructions(exe: &Path, name: &str) -> Result<u64, String> {
    let out_file = std::env::temp_dir().join(format!(
        "ringchat-callgrind-{}-{name}.out",
        std::process::id()
    ));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={MEASURED_SYMBOL}"))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .args(["--measure", name])
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let text = std::fs::read_to_string(&out_file);
    let _ = std::fs::remove_file(&out_file);
    if !output.status.success() {
        return Err(format!(
            "{name} failed under callgrind ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = text.map_err(|e| format!("{name}: no callgrind output: {e}"))?;
    let count = total_instructions(&text)
        .ok_or_else(|| format!("{name}: no `totals:` line in callgrind's output"))?;
    if count == 0 {
        return Err(format!(
            "{name}: callgrind counted nothing; was {MEASURED_SYMBOL} inlined away?"
        ));
    }
    Ok(count)
}

/// The `totals:` (or `summary:`) figure of a callgrind output file: instructions read.
fn total_instructions(callgrind_out: &str) -> Option<u64> {
    callgrind_out
        .lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The committed counts and the toolchain that made them.
struct Baseline {
    toolchain: String,
    counts: Vec<(String, u64)>,
}

fn read_baseline(path: &PathBuf) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (make it with `cargo bench --bench instructions -- --bless`)",
            path.display()
        )
    })?;
    let mut baseline = Baseline {
        toolchain: String::new(),
        counts: Vec::new(),
    };
    for line in text.lines() {
        if let Some(toolchain) = line.strip_prefix("# toolchain: ") {
            baseline.toolchain = toolchain.trim().to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(count)) = (words.next(), words.next()) else {
            return Err(format!("{}: bad line {line:?}", path.display()));
        };
        let count = count
            .parse()
            .map_err(|_| format!("{}: bad count in {line:?}", path.display()))?;
        baseline.counts.push((name.to_string(), count));
    }
    Ok(baseline)
}

fn write_baseline(
    path: &Path,
    toolchain: &str,
    measured: &[(&Scenario, u64)],
) -> Result<(), String> {
    let mut text = String::from(
        "# Instruction counts of ringchat's hot paths under callgrind (benches/instructions.rs).\n\
         # Regenerate after an intended change: cargo bench --bench instructions -- --bless\n",
    );
    text.push_str(&format!("# toolchain: {toolchain}\n"));
    for (s, n) in measured {
        text.push_str(&format!("{} {n}\n", s.name));
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The table to print and the scenarios that grew past the tolerance.
struct Verdict {
    table: String,
    failures: Vec<String>,
}

fn judge(baseline: &[(String, u64)], measured: &[(&Scenario, u64)], tolerance: f64) -> Verdict {
    let mut table = format!(
        "{:<26} {:>12} {:>12} {:>9}  verdict\n",
        "scenario", "baseline", "now", "change"
    );
    let mut failures = Vec::new();
    for (scenario, now) in measured {
        let Some(&(_, base)) = baseline.iter().find(|(name, _)| name == scenario.name) else {
            table.push_str(&format!(
                "{:<26} {:>12} {now:>12} {:>9}  NOT IN BASELINE\n",
                scenario.name, "-", "-"
            ));
            failures.push(format!("{} has no baseline (bless it)", scenario.name));
            continue;
        };
        let change = (*now as f64 - base as f64) / base as f64;
        let grew = change > tolerance;
        let verdict = if grew {
            "GREW"
        } else if change < -tolerance {
            "shrank (re-bless to keep the gain)"
        } else {
            "ok"
        };
        table.push_str(&format!(
            "{:<26} {base:>12} {now:>12} {:>+8.2}%  {verdict}\n",
            scenario.name,
            change * 100.0
        ));
        if grew {
            failures.push(format!(
                "{} ({}) grew {:+.2}%: {base} -> {now} instructions",
                scenario.name,
                scenario.what,
                change * 100.0
            ));
        }
    }
    Verdict { table, failures }
}
