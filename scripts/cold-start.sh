#!/usr/bin/env bash
# How long the Lambda function takes to serve its first invocation under cargo-lambda's Runtime
# API emulator, the binary built beforehand (run under scripts/with-dynamodb-local.sh). Per run,
# one line:
#   cold start: first invocation served N ms after start (bootstrap debug build, cargo lambda watch; ...)
# where start is the launch of `cargo lambda watch` and served is the invoke's answer. N holds:
#   - the watcher's start, up to its invoke port listening ("listening after");
#   - the first invocation, sent then: the emulator starts the function for it with `cargo run`,
#     whose freshness check (no compiling: a run that compiles is refused) is given apart, then
#     the process start, the function's init (SDK client, metrics recorder) and the fixture batch
#     fixtures/events/01-term-opens.json (12 records) applied on DynamoDB Local, on an empty
#     database of its own (DynamoDB Local keeps one per access key); the batch's own time (its
#     BatchDuration metric) is given apart too: the first run's is longer, DynamoDB Local's JVM
#     serving its first transactions.
# usage: scripts/cold-start.sh [RUNS]   (default 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}
cargo_lambda="$root/.venv/bin/cargo-lambda"
event=fixtures/events/01-term-opens.json
table=university
cargo build -q -p tally-lambda --bin bootstrap
# The same build as `make test`'s, so that neither makes the other compile the engine again.
cargo build -q --workspace --all-targets --features dynamodb-local
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
watcher=""
stop_watcher() { if [[ -n "$watcher" ]]; then kill -- -"$watcher" 2>/dev/null || kill "$watcher" 2>/dev/null || true; fi; watcher=""; }
trap stop_watcher EXIT INT TERM

for run in $(seq 1 "$runs"); do
    key="coldstart$$r$run"
    log="$root/target/cold-start-$run.log"
    AWS_ACCESS_KEY_ID="$key" "$root/target/debug/tally" init --table "$table" >/dev/null
    port=$(free_port)
    launched=$(now_ms)
    setsid env TABLE_NAME="$table" AWS_ACCESS_KEY_ID="$key" "$cargo_lambda" lambda watch --manifest-path processor/lambda/Cargo.toml \
        --bin bootstrap --ignore-changes --invoke-port "$port" >"$log" 2>&1 &
    watcher=$!
    for _ in $(seq 1 3000); do
        if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.02
    done
    (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "run $run: cargo lambda watch did not listen on $port" >&2; cat "$log" >&2; exit 1; }
    listening=$(now_ms)
    response=$(timeout 300 "$cargo_lambda" lambda invoke bootstrap --invoke-port "$port" --data-file "$event" --output-format json)
    answered=$(now_ms)
    stop_watcher
    [[ "$(echo "$response" | tr -d ' \n')" == '{"batchItemFailures":[]}' ]] || { echo "run $run: unexpected answer: $response" >&2; cat "$log" >&2; exit 1; }
    if grep -q '^ *Compiling ' "$log"; then echo "run $run: cargo run compiled the function: the figure would hold a build" >&2; cat "$log" >&2; exit 1; fi
    # The batch must have done DynamoDB's work, not skipped its records.
    grep '"Batch applied."' "$log" | grep -q '"transactions":[1-9]' || { echo "run $run: the batch wrote nothing" >&2; cat "$log" >&2; exit 1; }
    check=$(sed -n 's/.*Finished .* in \([0-9.]*\)s$/\1/p' "$log" | head -n 1)
    batch=$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    if line.startswith("{") and "BatchDuration" in line:
        print(round(json.loads(line)["BatchDuration"][0])); break' "$log")
    echo "cold start: first invocation served $((answered - launched)) ms after start (bootstrap debug build, cargo lambda watch; listening after $((listening - launched)) ms, answered $((answered - listening)) ms after the invoke, of which cargo run's freshness check ${check:-?} s and the batch itself ${batch:-?} ms)"
done
