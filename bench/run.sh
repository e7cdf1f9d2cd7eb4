#!/usr/bin/env bash
# Every benchmark scenario against ws-router and its three baselines, in one
# run, then the tables. Called by `just bench`; see BENCHMARKS.md.
#
# Sizes are environment variables, so a smoke run is one line:
#   BENCH_HOT_CONNS=200 BENCH_TOPICS=50 BENCH_STORM_CONNS=500 \
#   BENCH_IDLE_CONNS=1000 BENCH_DURATION=1 just bench
# BENCH_SERVERS and BENCH_SCENARIOS (hot topics storm idle reload two-nodes
# criterion)
# pick a subset. BENCH_HOSTS="before=/path/to/ws-router-host ..." adds other
# builds of the host, run as servers `ws-router@before` ... in the same run
# (to compare a change with its parent on a noisy machine).
# `ws-router@history-off` is this host with `--history-memory-mib 0` (bars
# then keeps no snapshot and no history), in the hot and many-topics
# scenarios only: history on against off in one run (BENCH_SERVERS without
# it leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

servers=${BENCH_SERVERS:-"ws-router ws-router@history-off bare-rust node-ws fastapi-fastws"}
declare -A host_bins=([ws-router]=target/release/ws-router-host [ws-router@history-off]=target/release/ws-router-host)
declare -A host_args=([ws-router@history-off]="--history-memory-mib 0")
for entry in ${BENCH_HOSTS:-}; do
    label=${entry%%=*}
    host_bins[ws-router@$label]=${entry#*=}
    servers="ws-router@$label $servers"
done
scenarios=${BENCH_SCENARIOS:-"hot topics storm idle reload two-nodes criterion"}
hot_conns=${BENCH_HOT_CONNS:-5000}
topics=${BENCH_TOPICS:-1000}
topic_subs=${BENCH_TOPIC_SUBS:-10}
topic_conns=${BENCH_TOPIC_CONNS:-1000}
storm_conns=${BENCH_STORM_CONNS:-10000}
idle_conns=${BENCH_IDLE_CONNS:-20000}
size=${BENCH_SIZE:-128}
warmup=${BENCH_WARMUP:-1}
duration=${BENCH_DURATION:-4}
results=${BENCH_RESULTS:-target/bench/results.jsonl}

# 20,000 connections need 20,000 descriptors on each side: raise the limit
# (as root past the hard limit where allowed); where it cannot be raised,
# open as many idle connections as fit, and say so.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
if [ "$limit" != unlimited ] && [ "$limit" -lt $((idle_conns + 500)) ]; then
    echo "warning: ulimit -n is $limit; the idle scenario opens $((limit - 500)) connections, not $idle_conns" >&2
    idle_conns=$((limit - 500))
fi

# Latency is only the server's when the load generator does not take its
# cores: with more than two cores, the server gets the first half and the
# load generator the rest (taskset); with two or fewer they share, and the
# tables say that percentiles include CPU sharing.
cores=$(nproc)
if [ "$cores" -gt 2 ] && command -v taskset >/dev/null; then
    half=$((cores / 2))
    pin_server=(taskset -c "0-$((half - 1))")
    pin_load=(taskset -c "$half-$((cores - 1))")
    BENCH_PLACEMENT="server pinned to cores 0-$((half - 1)), load generator to cores $half-$((cores - 1)) (taskset)"
else
    pin_server=()
    pin_load=()
    BENCH_PLACEMENT="server and load generator share all $cores cores: latency percentiles include CPU sharing"
fi
export BENCH_PLACEMENT

echo "== building (release)"
for p in bars quotes trades; do [ -f "plugins/$p.wasm" ] || { just build-plugins; break; }; done
cargo build --release -p ws-router-host -p bench --bins
loadgen=$root/target/release/loadgen

if [[ " $servers " == *" fastapi-fastws "* ]]; then
    venv=bench/baselines/fastapi/.venv
    stamp=$venv/.requirements
    if ! cmp -s bench/baselines/fastapi/requirements.txt "$stamp" 2>/dev/null; then
        echo "== creating the FastAPI/fastws virtual environment"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/baselines/fastapi/requirements.txt
        cp bench/baselines/fastapi/requirements.txt "$stamp"
    fi
fi
if [[ " $servers " == *" node-ws "* ]]; then
    stamp=bench/baselines/node-ws/node_modules/.lock-installed
    if ! cmp -s bench/baselines/node-ws/package-lock.json "$stamp" 2>/dev/null; then
        echo "== installing the Node ws baseline"
        (cd bench/baselines/node-ws && npm ci --no-audit --no-fund --silent)
        cp bench/baselines/node-ws/package-lock.json "$stamp"
    fi
fi

mkdir -p "$(dirname "$results")"
: > "$results"
work=$(mktemp -d)
pid=
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    fi
}
trap 'stop; rm -rf "$work"' EXIT

# start <server> [plugins...]: start a fresh server; sets $pid and $port.
start() {
    local server=$1
    shift
    case $server in
    ws-router | ws-router@*)
        port=8100
        rm -rf "$work/plugins" && mkdir -p "$work/plugins"
        for p in "$@"; do cp "plugins/$p.wasm" "$work/plugins/"; done
        RUST_LOG=warn "${pin_server[@]}" "${host_bins[$server]}" --listen 127.0.0.1:$port \
            --plugins "$work/plugins" --no-demo-feed \
            --max-connections 100000 --commands-per-sec 100000 ${host_args[$server]:-} >"$work/host.log" 2>&1 &
        ;;
    fastapi-fastws)
        port=8101
        "${pin_server[@]}" bench/baselines/fastapi/.venv/bin/uvicorn server:app --app-dir bench/baselines/fastapi \
            --host 127.0.0.1 --port $port --log-level warning >"$work/fastapi.log" 2>&1 &
        ;;
    node-ws)
        port=8102
        "${pin_server[@]}" node bench/baselines/node-ws/server.js $port >"$work/node.log" 2>&1 &
        ;;
    bare-rust)
        port=8103
        "${pin_server[@]}" target/release/bare-fanout 127.0.0.1:$port >"$work/bare.log" 2>&1 &
        ;;
    *)
        echo "unknown server $server" >&2
        exit 1
        ;;
    esac
    pid=$!
    for _ in $(seq 200); do
        if (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; then
            # The host refuses WebSocket upgrades (503) until its plugins
            # are loaded, which is after it starts listening.
            case $server in ws-router | ws-router@*) ready || break ;; esac
            return 0
        fi
        sleep 0.05
    done
    echo "$server did not start listening on $port, or did not get ready" >&2
    cat "$work"/*.log >&2
    exit 1
}

ready() { # the host on $port answers /readyz with 200 (within 10 s)
    for _ in $(seq 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && return 0
        sleep 0.05
    done
    return 1
}

run() { # run <server> <scenario> <loadgen subcommand and args...>
    local server=$1 scenario=$2 cmd=$3
    shift 3
    echo "== $scenario: $server"
    "${pin_load[@]}" "$loadgen" "$cmd" --server "$server" --scenario "$scenario" \
        --ws "ws://127.0.0.1:$port/api/v1/ws" --pid "$pid" --out "$results" "$@" >/dev/null ||
        echo "   $scenario on $server failed (see above)" >&2
}

want() { [[ " $scenarios " == *" $1 "* ]]; }
# History on/off is measured where it costs, publications fanned out: the
# history-off host runs the hot and many-topics scenarios only.
every() { [ "$1" != ws-router@history-off ]; }

# What the host keeps for snapshots and recovery after a run (ws-router only).
history_memory() {
    case $1 in ws-router | ws-router@*) ;; *) return 0 ;; esac
    local bytes keys
    bytes=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ws_router_history_bytes" {print $2}')
    keys=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ws_router_history_keys" {print $2}')
    echo "   history held by $1: ${bytes:-?} bytes in ${keys:-?} keys"
}

fanout_args=(--publish PUBLISH --size "$size" --warmup "$warmup" --duration "$duration")
for server in $servers; do
    args=("${fanout_args[@]/PUBLISH/http://127.0.0.1:8100/api/v1/publish}")
    if want hot; then
        start "$server" bars quotes trades
        args=("${fanout_args[@]/PUBLISH/http://127.0.0.1:$port/api/v1/publish}")
        run "$server" "hot topic" fanout "${args[@]}" --conns "$hot_conns" --topics 1 --subs-per-conn 1
        history_memory "$server"
        stop
    fi
    if want topics; then
        start "$server" bars quotes trades
        args=("${fanout_args[@]/PUBLISH/http://127.0.0.1:$port/api/v1/publish}")
        run "$server" "many topics" fanout "${args[@]}" --conns "$topic_conns" --topics "$topics" \
            --subs-per-conn $((topics * topic_subs / topic_conns))
        history_memory "$server"
        stop
    fi
    if want storm && every "$server"; then
        start "$server" bars quotes trades
        run "$server" "subscribe storm" storm --conns "$storm_conns"
        stop
        # The same storm where 100 requests are shared by every client (a
        # watch list): what remembering answers per plugin version buys.
        start "$server" bars quotes trades
        run "$server" "subscribe storm, 100 distinct requests" storm --conns "$storm_conns" --distinct 100
        stop
    fi
    if want idle && every "$server"; then
        start "$server" bars quotes trades
        sleep 1
        run "$server" "idle connections" idle --conns "$idle_conns"
        stop
    fi
done

if want reload && [[ " $servers " == *" ws-router "* ]]; then
    # Hot reload: a host serving bars only; copy trades.wasm in and time
    # until `trades.subscribe` succeeds.
    start ws-router bars
    run ws-router "hot reload" reload --plugins-dir "$work/plugins" \
        --wasm plugins/trades.wasm --route trades --request '{"symbols":["AAPL"]}' --timeout "${BENCH_RELOAD_TIMEOUT:-10}"
    stop
fi

# Two nodes with Redis between them (issue 15): the publisher on node A,
# the subscribers split over A and B; the same loads as one node's "hot
# topic" and "many topics", next to which the table shows them.
if want two-nodes && [[ " $servers " == *" ws-router "* ]]; then
    just redis-deps >/dev/null
    redis_port=8110
    "${pin_server[@]}" redis-server --bind 127.0.0.1 --port $redis_port --save '' --appendonly no \
        --dir "$work" >"$work/redis.log" 2>&1 &
    redis_pid=$!
    trap 'stop; kill $redis_pid $node_b 2>/dev/null || true; rm -rf "$work"' EXIT
    for _ in $(seq 100); do (: </dev/tcp/127.0.0.1/$redis_port) 2>/dev/null && break; sleep 0.05; done
    node_b=
    # two <one node> <scenario> <fanout args...>: node A on 8100, node B on
    # 8104, run as the single-node server <one node> is (`ws-router`, or
    # `ws-router@history-off`: the broker alone, without Redis streams).
    two() {
        local single=$1 scenario=$2
        shift 2
        local label="ws-router x2" extra=()
        if [ "$single" != ws-router ]; then
            label="${single} x2"
            read -ra extra <<<"${host_args[$single]:-}"
        fi
        rm -rf "$work/plugins" "$work/plugins-b" && mkdir -p "$work/plugins" "$work/plugins-b"
        for p in bars quotes trades; do cp "plugins/$p.wasm" "$work/plugins/"; cp "plugins/$p.wasm" "$work/plugins-b/"; done
        RUST_LOG=warn "${pin_server[@]}" target/release/ws-router-host --listen 127.0.0.1:8100 --plugins "$work/plugins" \
            --no-demo-feed --max-connections 100000 --commands-per-sec 100000 \
            --redis-url "redis://127.0.0.1:$redis_port/0" "${extra[@]}" >"$work/host.log" 2>&1 &
        pid=$!
        RUST_LOG=warn "${pin_server[@]}" target/release/ws-router-host --listen 127.0.0.1:8104 --plugins "$work/plugins-b" \
            --no-demo-feed --max-connections 100000 --commands-per-sec 100000 \
            --redis-url "redis://127.0.0.1:$redis_port/0" "${extra[@]}" >"$work/host-b.log" 2>&1 &
        node_b=$!
        for p in 8100 8104; do
            for _ in $(seq 200); do (: </dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.05; done
        done
        # Both nodes joined (Redis reachable) before the clients come.
        for p in 8100 8104; do
            for _ in $(seq 100); do
                curl -s "http://127.0.0.1:$p/readyz" | grep -q '"up":true' && break
                sleep 0.1
            done
        done
        echo "== $scenario: $label"
        "${pin_load[@]}" "$loadgen" fanout --server "$label" --scenario "$scenario" \
            --ws "ws://127.0.0.1:8100/api/v1/ws,ws://127.0.0.1:8104/api/v1/ws" --pid "$pid" \
            --out "$results" --publish http://127.0.0.1:8100/api/v1/publish \
            --size "$size" --warmup "$warmup" --duration "$duration" "$@" >/dev/null ||
            echo "   $scenario on two nodes failed (see above)" >&2
        kill "$node_b" 2>/dev/null || true
        wait "$node_b" 2>/dev/null || true
        node_b=
        stop
        # Latency at one rate: the pair's latency phase ran at half the
        # pair's maximum; one node now runs at that same rate.
        local rate
        rate=$(tail -n 1 "$results" | python3 -c 'import json, sys; r = json.load(sys.stdin); print(int(r.get("half_pubs_per_s") or 0))')
        if [ "${rate:-0}" -gt 0 ]; then
            start "$single" bars quotes trades
            run "$single at the pair's rate" "$scenario" fanout \
                "${fanout_args[@]/PUBLISH/http://127.0.0.1:$port/api/v1/publish}" --rate "$rate" "$@"
            stop
        fi
    }
    for single in ws-router ws-router@history-off; do
        two "$single" "hot topic" --conns "$hot_conns" --topics 1 --subs-per-conn 1
        two "$single" "many topics" --conns "$topic_conns" --topics "$topics" \
            --subs-per-conn $((topics * topic_subs / topic_conns))
    done
    kill $redis_pid 2>/dev/null || true
fi

criterion=
if want criterion; then
    echo "== topic builder micro-benchmark (criterion)"
    cargo bench -p bench --bench topic_builder -- --warm-up-time 1 --measurement-time 3 --noplot >/dev/null
    criterion=target/criterion
fi

echo
echo "Results: $results ($(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB)"
"$loadgen" table "$results" ${criterion:+--criterion "$criterion"}
