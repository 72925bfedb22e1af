#!/usr/bin/env bash
# Runs the same loadgen scenario against ringchat (each --io driver), ngircd and
# InspIRCd on loopback, server and loadgen pinned to different cores, and writes a
# table (summary.txt) and a latency-by-percentile chart (latency.svg, and latency.png beside it).
#
# Usage: loadgen/compare-servers.sh [OUTDIR]
# Settings (environment):
#   SERVERS="ringchat-uring ringchat-epoll ngircd inspircd"   which servers
#   SCENARIO=fanout CLIENTS=200 SENDERS=10 RATES=1000,2000 DURATION=10s WARMUP=2s
#   EXTRA_ARGS=""            more loadgen flags (e.g. "--size 100")
#   SERVER_CPU=0 LOADGEN_CPU=1   cores for taskset
#   PORT=26700               first port used (one per server)
# Flood control and per-IP limits are off on every server; ngircd's listen backlog
# is 10, so clients are set up 8 at a time for every server (same for all).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/compare-servers}
SERVERS=${SERVERS:-"ringchat-uring ringchat-epoll ngircd inspircd"}
SCENARIO=${SCENARIO:-fanout}
CLIENTS=${CLIENTS:-200}
SENDERS=${SENDERS:-10}
RATES=${RATES:-1000,2000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
EXTRA_ARGS=${EXTRA_ARGS:-}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
PORT=${PORT:-26700}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

need_packages=()
case " $SERVERS " in *" ngircd "*) command -v ngircd >/dev/null || need_packages+=(ngircd) ;; esac
case " $SERVERS " in *" inspircd "*) command -v inspircd >/dev/null || need_packages+=(inspircd) ;; esac
if [ ${#need_packages[@]} -gt 0 ]; then
    echo "installing ${need_packages[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
    # The packages start system services on 6667; the benchmark uses its own instances.
    systemctl stop ngircd inspircd 2>/dev/null || true
fi

(cd "$ROOT" && cargo build --release -p loadgen -p ringchat --bin loadgen --bin ringchat)
LOADGEN=$TARGET/release/loadgen
RINGCHAT=$TARGET/release/ringchat

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

# Waits until something accepts on 127.0.0.1:$1 (InspIRCd takes a few seconds).
wait_for_port() {
    for _ in $(seq 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "server did not listen on port $1" >&2
    return 1
}

start_ngircd() {
    local port=$1 dir=$OUT/ngircd
    mkdir -p "$dir"
    cat > "$dir/ngircd.conf" <<CONF
[Global]
Name = irc.ngircd.test
Info = loadgen comparison
Listen = 127.0.0.1
Ports = $port
MotdPhrase = loadgen
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
CONF
    taskset -c "$SERVER_CPU" ngircd -n -f "$dir/ngircd.conf" > "$dir/ngircd.log" 2>&1 &
    SERVER_PID=$!
}

start_inspircd() {
    local port=$1 dir=$OUT/inspircd
    mkdir -p "$dir"
    cat > "$dir/inspircd.conf" <<CONF
<server name="irc.inspircd.test" description="loadgen comparison" network="loadgen">
<admin name="loadgen" nick="loadgen" email="loadgen@localhost">
<bind address="127.0.0.1" port="$port" type="clients">
<connect name="bench" allow="*" timeout="60" pingfreq="600"
         hardsendq="1G" softsendq="16M" recvq="16M"
         threshold="1000000" commandrate="1000000000" fakelag="off"
         localmax="1000000" globalmax="1000000" maxconnwarn="off"
         resolvehostnames="no" usednsbl="no" useident="no" maxchans="100">
<channels users="100" opers="100">
<performance somaxconn="4096" softlimit="1000000" clonesonconnect="no" quietbursts="yes">
<pid file="$dir/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="$dir/inspircd.log">
<options prefixquit="Quit: ">
<security maxtargets="20">
<limits maxnick="30" maxchan="64">
CONF
    local asroot=()
    [ "$(id -u)" = 0 ] && asroot=(--runasroot)
    taskset -c "$SERVER_CPU" inspircd --config "$dir/inspircd.conf" --nofork "${asroot[@]}" > "$dir/stdout.log" 2>&1 &
    SERVER_PID=$!
}

start_ringchat() {
    local port=$1 io=$2
    taskset -c "$SERVER_CPU" "$RINGCHAT" --listen "127.0.0.1:$port" --shards 1 --io "$io" \
        --flood-rate 0 > "$OUT/ringchat-$io.log" 2>&1 &
    SERVER_PID=$!
}

results=()
for server in $SERVERS; do
    PORT=$((PORT + 1))
    case $server in
        ringchat-uring) start_ringchat "$PORT" uring ;;
        ringchat-epoll) start_ringchat "$PORT" epoll ;;
        ngircd) start_ngircd "$PORT" ;;
        inspircd) start_inspircd "$PORT" ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
    wait_for_port "$PORT"
    echo "== $server (pid $SERVER_PID, port $PORT)"
    traffic=()
    case $SCENARIO in
        fanout) traffic=(--senders "$SENDERS" --rate "$RATES" --duration "$DURATION" --warmup "$WARMUP") ;;
        rooms) traffic=(--rate "$RATES" --duration "$DURATION" --warmup "$WARMUP") ;;
    esac
    # shellcheck disable=SC2086
    taskset -c "$LOADGEN_CPU" "$LOADGEN" "$SCENARIO" --addr "127.0.0.1:$PORT" --clients "$CLIENTS" \
        --connect-concurrency 8 --server-pid "$SERVER_PID" --label "$server" --quiet \
        --json "$OUT/$server.json" --hgrm "$OUT/$server.hgrm" "${traffic[@]}" $EXTRA_ARGS \
        | tee "$OUT/$server.txt" || echo "loadgen reported a failure for $server (see $OUT/$server.txt)"
    [ -f "$OUT/$server.json" ] && results+=("$OUT/$server.json")
    stop_server
done

if [ ${#results[@]} -gt 0 ]; then
    "$LOADGEN" summary "${results[@]}" | tee "$OUT/summary.txt"
    if [ "$SCENARIO" != idle ]; then
        "$LOADGEN" plot "$OUT/latency.svg" "${results[@]}" --title "$SCENARIO, $CLIENTS clients: latency by percentile" \
            && echo "chart: $OUT/latency.svg and $OUT/latency.png"
    fi
fi
