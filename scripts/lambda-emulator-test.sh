#!/usr/bin/env bash
# The Lambda binary itself, served by cargo-lambda's Runtime API emulator, invoked with fixture
# events against DynamoDB Local (run under scripts/with-dynamodb-local.sh):
#   - a batch that applies answers {"batchItemFailures":[]} and the aggregates land;
#   - a batch whose table does not exist answers every record as a batch item failure;
#   - with TALLY_RULES naming the learning example's rules, its fixtures apply to its table;
#   - with TALLY_RULES naming a broken rules file, init fails and no invocation is served.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo_lambda="$root/.venv/bin/cargo-lambda"
tally="$root/target/debug/tally"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pass=0
fail=0
check() { # name, expected, actual
    if [[ "$2" == "$3" ]]; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1: expected $2, got $3"; fi
}

table="university"
"$tally" init --table "$table" >/dev/null

watchers=()
stop_watchers() { for pid in "${watchers[@]}"; do kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done; }
trap stop_watchers EXIT INT TERM

# Serves the function with TABLE_NAME=$1, AWS_ACCESS_KEY_ID=$2 and TALLY_RULES=$3 (empty: the
# built-in rules) on a free port, which it leaves in $port. Not called in $(...): the watcher's
# PID must reach this shell's trap.
# DynamoDB Local keeps one database per access key: another key sees none of this key's tables.
serve() {
    port=$(free_port)
    setsid env TABLE_NAME="$1" AWS_ACCESS_KEY_ID="$2" TALLY_RULES="${3:-}" "$cargo_lambda" lambda watch --manifest-path processor/lambda/Cargo.toml --bin bootstrap --ignore-changes --invoke-port "$port" \
        >"$root/target/lambda-watch-$2.log" 2>&1 &
    watchers+=($!)
    for _ in $(seq 1 240); do
        if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "cargo lambda watch did not listen on $port" >&2
    cat "$root/target/lambda-watch-$2.log" >&2
    return 1
}

invoke() { # port, event file[, seconds to wait]
    timeout "${3:-300}" "$cargo_lambda" lambda invoke bootstrap --invoke-port "$1" --data-file "$2" --output-format json
}

serve "$table" "$AWS_ACCESS_KEY_ID"
response=$(invoke "$port" fixtures/events/01-term-opens.json)
check "first fixture batch applies" '{"batchItemFailures":[]}' "$(echo "$response" | tr -d ' \n')"
response=$(invoke "$port" fixtures/events/02-grading-and-expiry.json)
check "second fixture batch applies" '{"batchItemFailures":[]}' "$(echo "$response" | tr -d ' \n')"
course=$(curl -sf -X POST "$AWS_ENDPOINT_URL_DYNAMODB" -H 'Content-Type: application/x-amz-json-1.0' -H 'X-Amz-Target: DynamoDB_20120810.GetItem' \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/$AWS_REGION/dynamodb/aws4_request, SignedHeaders=host, Signature=0" \
    -d "{\"TableName\":\"$table\",\"Key\":{\"pk\":{\"S\":\"course#c101\"},\"sk\":{\"S\":\"stats\"}},\"ConsistentRead\":true}")
check "course average landed" "91.25" "$(echo "$course" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Item"]["gradeAverage"]["N"])')"
grep -q '"_aws"' "$root/target/lambda-watch-$AWS_ACCESS_KEY_ID.log" && check "EMF metrics emitted" yes yes || check "EMF metrics emitted" yes no

serve "$table" tallyempty
missing_port=$port
response=$(invoke "$missing_port" fixtures/events/01-term-opens.json)
expected=$(python3 -c 'import json; r=json.load(open("fixtures/events/01-term-opens.json"))["Records"]; print(json.dumps({"batchItemFailures":[{"itemIdentifier":x["dynamodb"]["SequenceNumber"]} for x in r]}, separators=(",",":")))')
check "a failing batch reports every unapplied record" "$expected" "$(echo "$response" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), separators=(",",":")))')"

get_item() { # table, key JSON
    curl -sf -X POST "$AWS_ENDPOINT_URL_DYNAMODB" -H 'Content-Type: application/x-amz-json-1.0' -H 'X-Amz-Target: DynamoDB_20120810.GetItem' \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/$AWS_REGION/dynamodb/aws4_request, SignedHeaders=host, Signature=0" \
        -d "{\"TableName\":\"$1\",\"Key\":$2,\"ConsistentRead\":true}"
}

# The learning example: its own table (PK/SK, TTL on expiresAt) and its rules, read at init.
"$tally" --rules examples/rules/learning.toml init --table learning >/dev/null
serve learning "$AWS_ACCESS_KEY_ID" examples/rules/learning.toml
for fixture in fixtures/events/learning/*.json; do
    response=$(invoke "$port" "$fixture")
    check "learning $(basename "$fixture") applies" '{"batchItemFailures":[]}' "$(echo "$response" | tr -d ' \n')"
done
stats=$(get_item learning '{"PK":{"S":"CONV#conv-1"},"SK":{"S":"STATS"}}')
check "learning conversation messages landed" "2" "$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Item"]["messages"]["N"])')"

# Rules that do not load: the function's init fails, naming the file and the problem. The
# emulator then never answers: waited for 30 s (a served invocation takes well under one).
serve learning tallybroken fixtures/rules/broken/unknown-names.toml
if invoke "$port" fixtures/events/learning/01-conversations.json 30 >/dev/null 2>&1; then
    check "broken rules fail init" "an error" "a response"
else
    check "broken rules fail init" "an error" "an error"
fi
grep -q "loading the rules (TALLY_RULES): fixtures/rules/broken/unknown-names.toml:" "$root/target/lambda-watch-tallybroken.log" \
    && check "init names the rules problem" yes yes || check "init names the rules problem" yes no

echo "lambda-emulator: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
