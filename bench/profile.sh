#!/usr/bin/env bash
# A flame graph of the host (release build) under one benchmark load:
#   bench/profile.sh storm|storm-shared|hot|topics [host binary]
# (`just profile <load>`). perf samples the host process only, with DWARF
# call graphs, while the load generator runs the same load as `just bench`;
# the folded stacks and an SVG flame graph land in target/profile/, and the
# host's own functions are summarised on stdout. Needs `perf` (Debian's
# linux-perf; installed here if missing) and inferno (cargo-installed if
# missing). BENCHMARKS.md describes what the graphs showed.
set -euo pipefail
cd "$(dirname "$0")/.."
load=${1:?usage: bench/profile.sh storm|storm-shared|hot|topics [host binary]}
host=${2:-target/release/ws-router-host}
out=target/profile
mkdir -p "$out"

if ! command -v perf >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends linux-perf
fi
command -v inferno-flamegraph >/dev/null || cargo install --locked inferno
for p in bars quotes trades; do [ -f "plugins/$p.wasm" ] || { just build-plugins; break; }; done
cargo build --release -p ws-router-host -p bench --bins
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/plugins" && cp plugins/{bars,quotes,trades}.wasm "$work/plugins/"
port=8120
RUST_LOG=warn "$host" --listen 127.0.0.1:$port --plugins "$work/plugins" --no-demo-feed \
    --max-connections 100000 --commands-per-sec 100000 >"$work/host.log" 2>&1 &
pid=$!
# Ready, not just listening: WebSocket upgrades get 503 until the startup
# plugins are loaded.
for _ in $(seq 400); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.05; done
sleep 1

common=(--server ws-router --ws "ws://127.0.0.1:$port/api/v1/ws" --pid "$pid" --out "$work/results.jsonl")
fanout=(fanout "${common[@]}" --publish "http://127.0.0.1:$port/api/v1/publish" --size 128 --warmup 1 --duration 4)
case $load in
storm) cmd=(storm "${common[@]}" --scenario "subscribe storm" --conns 10000) ;;
storm-shared) cmd=(storm "${common[@]}" --scenario "subscribe storm, 100 distinct requests" --conns 10000 --distinct 100) ;;
hot) cmd=("${fanout[@]}" --scenario "hot topic" --conns 5000 --topics 1 --subs-per-conn 1) ;;
topics) cmd=("${fanout[@]}" --scenario "many topics" --conns 1000 --topics 1000 --subs-per-conn 10) ;;
*) echo "unknown load $load (storm, storm-shared, hot, topics)" >&2; exit 2 ;;
esac

# A storm lasts a fraction of a second: sample the storm alone (not the
# 10,000 connects before it nor the closes after it), at a high rate.
# A fan-out load lasts seconds: sample two seconds of its steady state.
if [[ $load == storm* ]]; then
    target/release/loadgen "${cmd[@]}" --settle 2 >/dev/null 2>"$work/stages" &
    loadgen=$!
    until grep -qs connected "$work/stages"; do kill -0 "$loadgen" && sleep 0.05; done
    perf record -F 5000 -g --call-graph dwarf,8192 -p "$pid" -o "$work/perf.data" 2>/dev/null &
    perf_pid=$!
    until grep -qs done "$work/stages"; do kill -0 "$loadgen" && sleep 0.02; done
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    wait "$loadgen"
else
    target/release/loadgen "${cmd[@]}" >/dev/null &
    loadgen=$!
    sleep 3
    perf record -F 999 -g --call-graph dwarf,8192 -p "$pid" -o "$work/perf.data" 2>/dev/null &
    perf_pid=$!
    sleep 2
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    wait "$loadgen"
fi
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$out/$load.folded"
inferno-flamegraph --title "ws-router-host: $load" <"$out/$load.folded" >"$out/$load.svg"
echo "flame graph: $out/$load.svg (folded stacks: $out/$load.folded)"
cat "$work/results.jsonl"

# The host's own functions, by share of all samples (inclusive).
python3 - "$out/$load.folded" <<'EOF'
import collections, re, sys
total, own = 0, collections.Counter()
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    seen = set()
    for frame in stack.split(";"):
        m = re.match(r"(ws_router_host::[A-Za-z_:]+)", frame)
        if m and m.group(1) not in seen:
            seen.add(m.group(1))
            own[m.group(1)] += n
for name, n in own.most_common(25):
    print(f"{100 * n / total:5.1f}%  {name}")
EOF
