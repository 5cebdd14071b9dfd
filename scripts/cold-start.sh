#!/usr/bin/env bash
# How long the Lambda function takes to serve its first invocation under cargo-lambda's Runtime
# API emulator, with the binary already built (run under scripts/with-dynamodb-local.sh):
#   - start: `cargo lambda watch` launched → its invoke port listening;
#   - first invocation: the invoke sent → its answer (the emulator starts the function on the first
#     invocation, so this holds the process start, the function's init and one fixture batch of
#     20 records applied on DynamoDB Local);
#   - total: launch → answer.
# usage: scripts/cold-start.sh [RUNS]   (default 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}
cargo_lambda="$root/.venv/bin/cargo-lambda"
cargo build -q -p tally-lambda --bin bootstrap
cargo build -q -p tally-cli --bin tally
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
watcher=""
stop_watcher() { [[ -n "$watcher" ]] && { kill -- -"$watcher" 2>/dev/null || kill "$watcher" 2>/dev/null || true; }; watcher=""; }
trap stop_watcher EXIT INT TERM

for run in $(seq 1 "$runs"); do
    table="coldstart$run"
    "$root/target/debug/tally" --table "$table" init >/dev/null
    port=$(free_port)
    launched=$(now_ms)
    setsid env TABLE_NAME="$table" "$cargo_lambda" lambda watch --manifest-path processor/lambda/Cargo.toml --bin bootstrap \
        --ignore-changes --invoke-port "$port" >"$root/target/cold-start-$run.log" 2>&1 &
    watcher=$!
    until (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.02; done
    listening=$(now_ms)
    response=$(timeout 300 "$cargo_lambda" lambda invoke bootstrap --invoke-port "$port" \
        --data-file fixtures/events/01-term-opens.json --output-format json)
    answered=$(now_ms)
    [[ "$(echo "$response" | tr -d ' \n')" == '{"batchItemFailures":[]}' ]] || { echo "run $run: unexpected answer: $response" >&2; exit 1; }
    echo "cold start run $run: watch listening after $((listening - launched)) ms; first invocation answered $((answered - listening)) ms after it was sent; $((answered - launched)) ms in all (bootstrap debug build, cargo lambda watch)"
    stop_watcher
done
