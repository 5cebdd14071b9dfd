#!/usr/bin/env bash
# Runs a command against a fresh SQS emulator (moto's server, from .venv) on a free port, then
# stops it by PID whatever the command's outcome. The command sees the standard SDK variable
# AWS_ENDPOINT_URL_SQS; compose with with-dynamodb-local.sh for tests that need both.
#
# usage: scripts/with-sqs-local.sh COMMAND [ARGS...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
moto="$root/.venv/bin/moto_server"
if [[ ! -x "$moto" ]]; then
    echo "with-sqs-local: moto is not installed; run 'make install'" >&2
    exit 2
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp "${TMPDIR:-/tmp}/tally-sqs.XXXXXX")
"$moto" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT INT TERM

export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$port"
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-tallylocal}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-tallylocal}

for _ in $(seq 1 120); do
    if curl -sf "$AWS_ENDPOINT_URL_SQS/moto-api/" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "with-sqs-local: moto exited during start-up:" >&2
        cat "$log" >&2
        exit 2
    fi
    sleep 0.25
done
curl -sf "$AWS_ENDPOINT_URL_SQS/moto-api/" >/dev/null || { echo "with-sqs-local: moto did not answer within 30 s" >&2; cat "$log" >&2; exit 2; }
echo "with-sqs-local: SQS emulator (moto, pid $pid) on $AWS_ENDPOINT_URL_SQS" >&2

status=0
"$@" || status=$?
exit "$status"
