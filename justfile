# ws-router: a WebSocket route host whose routes are WebAssembly plugins.
# `just build-plugins && just run` serves bars, quotes and trades with a demo
# feed; `just test` runs every test.

set shell := ["bash", "-euo", "pipefail", "-c"]

plugin_target := "target/wasm32-wasip2/plugin"

# List the recipes.
default:
    @just --list

# Build the bars, quotes, trades, orders and positions (Rust), news (Python)
# and orderbook (JavaScript) plugins into plugins/*.wasm.
build-plugins: build-python-plugins build-js-plugins
    @# rustup installs a pinned toolchain's targets only with the toolchain:
    @# one already installed does not get wasm32-wasip2. A no-op when present.
    rustup target add wasm32-wasip2
    cargo build --profile plugin --target wasm32-wasip2 -p bars -p quotes -p trades -p orders -p positions
    for p in bars quotes trades orders positions; do cp {{plugin_target}}/$p.wasm plugins/$p.wasm; done
    @ls -l plugins/*.wasm

# The Python SDK (sdk/python, with its pinned componentize-py) installed in
# .venv/, as a route's own venv has it; reinstalled when the SDK changes.
python-venv:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp=$(cat sdk/python/pyproject.toml sdk/python/ws_router/*.py | sha256sum)
    if [ "$stamp" != "$(cat .venv/.ws-router-sdk 2>/dev/null)" ]; then
        [ -x .venv/bin/pip ] || python3 -m venv .venv
        pip=(.venv/bin/pip install --quiet --disable-pip-version-check)
        "${pip[@]}" sdk/python
        "${pip[@]}" --force-reinstall --no-deps sdk/python
        echo "$stamp" > .venv/.ws-router-sdk
    fi

# Python routes: plugins/<name>/app.py -> plugins/<name>.wasm. componentize-py
# finds the SDK in the venv named by VIRTUAL_ENV (what `activate` sets).
build-python-plugins: python-venv
    cd plugins/news && VIRTUAL_ENV="$PWD/../../.venv" ../../.venv/bin/componentize-py -d ../../wit -w route-plugin componentize app -o ../news.wasm

# The JavaScript SDK's locked packages (`npm ci` in sdk/js/ when its lock file
# changes) and its TypeScript compiled to sdk/js/dist/ (when src/ changes).
js-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    cd sdk/js
    if ! cmp -s package-lock.json node_modules/.ws-router-lock; then
        # Runs the `prepare` script too: tsc, src/ -> dist/.
        npm ci --no-audit --no-fund --loglevel=error
        cp package-lock.json node_modules/.ws-router-lock
    fi
    if [ ! -f dist/index.js ] || [ -n "$(find src tsconfig.json -newer dist/index.js)" ]; then
        npx --no-install tsc -p tsconfig.json
        touch dist/index.js
    fi

# JavaScript routes: plugins/<name>/route.js -> plugins/<name>.wasm, built as
# a route author builds one: `ws-router-sdk` installed from sdk/js.
build-js-plugins: js-deps
    cd plugins/orderbook && { [ -e node_modules/ws-router-sdk ] || npm ci --no-audit --no-fund --loglevel=error; } && npx --no-install ws-router-build route.js ../orderbook.wasm

# Test the Python and JavaScript SDKs (shared topic vectors, schemas,
# defaults; the JavaScript SDK's types with tsc).
test-sdks: python-venv js-deps
    .venv/bin/python -m unittest discover -s sdk/python/tests
    cd sdk/js && npm test --silent

# Follow each docs/write-a-route-*.md from an empty folder outside the
# repository to a route serving a subscription, and check that one route
# written with each SDK looks the same to clients (tests/guides/).
test-guides: python-venv js-deps
    cargo build -p ws-router-host
    node --test --test-concurrency=1 --experimental-websocket tests/guides/

# Run the host (release build) with the demo feed; extra arguments go to the host.
run *ARGS:
    @for p in bars quotes trades news orderbook orders positions; do [ -f plugins/$p.wasm ] || { just build-plugins; break; }; done
    cargo run --release -p ws-router-host -- --demo-feed {{ARGS}}

# Build the test plugins (tests/plugins/<name>/) into target/test-plugins/<name>.wasm.
build-test-plugins:
    #!/usr/bin/env bash
    set -euo pipefail
    shopt -s nullglob
    dirs=(tests/plugins/*/)
    [ ${#dirs[@]} -gt 0 ] || exit 0
    args=(); for d in "${dirs[@]}"; do args+=(-p "$(basename "$d")"); done
    rustup target add wasm32-wasip2
    cargo build --profile plugin --target wasm32-wasip2 "${args[@]}"
    mkdir -p target/test-plugins
    for d in "${dirs[@]}"; do n=$(basename "$d"); cp "{{plugin_target}}/${n//-/_}.wasm" "target/test-plugins/$n.wasm"; done

# Run every test.
test: lint build-plugins build-test-plugins test-sdks test-guides redis-deps && test-browser test-ts-client
    cargo test
    # The broker routes' authorize rules, as native unit tests.
    cargo test -p orders -p positions
    just bench-smoke

# (Part of `just test`: the benchmark tooling still works against the host.)
# A few seconds of the load generator against the debug host; fails if updates are lost.
bench-smoke:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q -p ws-router-host -p bench --bins
    # Unit tests, and each criterion benchmark run once (test mode).
    cargo test -q -p bench --all-targets
    dir=$(mktemp -d)
    cp plugins/{bars,quotes,trades}.wasm "$dir"/
    port=$((20000 + RANDOM % 20000))
    RUST_LOG=warn target/debug/ws-router-host --listen 127.0.0.1:$port --plugins "$dir" --no-demo-feed &
    pid=$!
    trap 'kill $pid; rm -rf "$dir"' EXIT
    for _ in $(seq 100); do (: </dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    common=(--server ws-router --ws ws://127.0.0.1:$port/api/v1/ws --pid $pid)
    out=$(target/debug/loadgen fanout "${common[@]}" --scenario smoke --publish http://127.0.0.1:$port/api/v1/publish \
        --conns 20 --topics 5 --subs-per-conn 2 --warmup 0.2 --duration 0.5)
    echo "$out"
    if ! grep -q '"max_lost":0,' <<<"$out" || ! grep -q '"half_lost":0,' <<<"$out" \
        || grep -q '"max_delivered_per_s":0\.0' <<<"$out"; then
        echo "bench-smoke: updates were lost or none delivered" >&2
        exit 1
    fi
    target/debug/loadgen storm "${common[@]}" --scenario smoke --conns 50

# Install Debian's redis-server where missing (the cluster tests and the two-node benchmark start their own).
redis-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v redis-server >/dev/null; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends redis-server
    fi

# Install what the browser tests need, idempotently: Debian's chromium
# (never a downloaded browser) and tests/browser's locked npm packages.
browser-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    if [ ! -x /usr/bin/chromium ]; then
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium
    fi
    command -v npm >/dev/null || { echo "node and npm (>= 20) are required for the browser tests" >&2; exit 1; }
    cd tests/browser
    # `npm ci` reinstalls from scratch; skip it when the lock file is unchanged.
    if ! cmp -s package-lock.json node_modules/.installed-lock.json 2>/dev/null; then
        # No install scripts: nothing here needs one (the only one is telemetry).
        npm ci --no-audit --no-fund --ignore-scripts
        cp package-lock.json node_modules/.installed-lock.json
    fi

# Validate the served AsyncAPI document with @asyncapi/parser and test the
# docs page in headless Chromium, against the real host binary.
test-browser: browser-deps
    cargo build -p ws-router-host
    cd tests/browser && node --test --test-concurrency=1 asyncapi.test.mjs docs-page.test.mjs

# The pinned TypeScript toolchain in sdk/typescript/node_modules/ (`npm ci` when its lock file changes).
ts-client-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! cmp -s sdk/typescript/package-lock.json sdk/typescript/node_modules/.ws-router-lock; then
        # No install scripts: nothing here needs one.
        (cd sdk/typescript && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
        cp sdk/typescript/package-lock.json sdk/typescript/node_modules/.ws-router-lock
    fi

# Writes sdk/typescript/generated/ (`--out DIR`: elsewhere), every route or
# one module's (`--tag TAG`); see docs/typescript-client.md.
# Generate the typed TypeScript client from an AsyncAPI document: URL, FILE, or the bundled plugins'.
[positional-arguments]
gen-client *ARGS: ts-client-deps
    #!/usr/bin/env bash
    set -euo pipefail
    case "${1:-}" in ""|-*) cargo build -q -p ws-router-host ;; esac
    cd "{{invocation_directory()}}"
    node "{{justfile_directory()}}/sdk/typescript/codegen/generate.mjs" "$@"

# Strict type check of the package and the generated code, which must be
# current, then Node's test runner against the real host and in Chromium.
# Test the TypeScript client (sdk/typescript).
test-ts-client: ts-client-deps browser-deps
    cargo build -p ws-router-host
    cd sdk/typescript && node_modules/.bin/tsc -p tsconfig.json --strict --noEmit
    node sdk/typescript/codegen/generate.mjs --check
    cd sdk/typescript && rm -rf dist && node_modules/.bin/tsc -p tsconfig.json && node_modules/.bin/tsc -p tsconfig.test.json
    cd sdk/typescript && node --test --test-concurrency=1 --test-timeout=180000 dist/test/*.test.js

# Format and lint.
lint:
    cargo fmt --all --check
    cargo clippy --all-targets -p ws-router-host -p ws-router-sdk -p bench -- -D warnings

# A flame graph of the host under one load (storm, storm-shared, hot, topics) in target/profile/.
profile LOAD *HOST:
    bench/profile.sh {{LOAD}} {{HOST}}

# See BENCHMARKS.md; sizes and subsets: BENCH_* variables in bench/run.sh.
# Benchmark ws-router against bare Rust, Node ws and FastAPI/fastws; print the tables.
bench:
    bench/run.sh

# Fuzz the envelope parser and the canonical topic builder (proptest) at
# length: PROPTEST_CASES cases per property (default 20000).
fuzz:
    PROPTEST_CASES=${PROPTEST_CASES:-20000} cargo test -p ws-router-host --test fuzz
    PROPTEST_CASES=${PROPTEST_CASES:-20000} cargo test -p ws-router-sdk --test topic_fuzz
