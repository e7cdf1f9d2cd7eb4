# ws-router: a WebSocket route host whose routes are WebAssembly plugins.
# `just build-plugins && just run` serves bars, quotes and trades with a demo
# feed; `just test` runs every test.

set shell := ["bash", "-euo", "pipefail", "-c"]

plugin_target := "target/wasm32-wasip2/plugin"

# List the recipes.
default:
    @just --list

# Build the bars, quotes and trades plugins into plugins/*.wasm.
build-plugins:
    cargo build --profile plugin --target wasm32-wasip2 -p bars -p quotes -p trades
    for p in bars quotes trades; do cp {{plugin_target}}/$p.wasm plugins/$p.wasm; done
    @ls -l plugins/*.wasm

# Run the host (release build) with the demo feed; extra arguments go to the host.
run *ARGS:
    @for p in bars quotes trades; do [ -f plugins/$p.wasm ] || { just build-plugins; break; }; done
    cargo run --release -p ws-router-host -- --demo-feed {{ARGS}}

# Build the test plugins (tests/plugins/<name>/) into target/test-plugins/<name>.wasm.
build-test-plugins:
    #!/usr/bin/env bash
    set -euo pipefail
    shopt -s nullglob
    dirs=(tests/plugins/*/)
    [ ${#dirs[@]} -gt 0 ] || exit 0
    args=(); for d in "${dirs[@]}"; do args+=(-p "$(basename "$d")"); done
    cargo build --profile plugin --target wasm32-wasip2 "${args[@]}"
    mkdir -p target/test-plugins
    for d in "${dirs[@]}"; do n=$(basename "$d"); cp "{{plugin_target}}/${n//-/_}.wasm" "target/test-plugins/$n.wasm"; done

# Run every test.
test: build-plugins build-test-plugins
    cargo test

# Format and lint.
lint:
    cargo fmt --all --check
    cargo clippy --all-targets -- -D warnings

# Fuzz the envelope parser and the canonical topic builder (proptest) at
# length: PROPTEST_CASES cases per property (default 20000).
fuzz:
    PROPTEST_CASES=${PROPTEST_CASES:-20000} cargo test -p ws-router-host --test fuzz
    PROPTEST_CASES=${PROPTEST_CASES:-20000} cargo test -p ws-router-sdk --test topic_fuzz
