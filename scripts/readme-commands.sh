#!/usr/bin/env bash
# Runs every ```sh block of README.md, in order, as one bash -euo pipefail script (a shell a
# reader types into: what one block exports or defines, the next sees), in an empty temporary
# directory, with the debug `tally` (target/debug/tally, which `make test` builds) first on the
# PATH and DynamoDB Local from AWS_ENDPOINT_URL_DYNAMODB: run it under
# scripts/with-dynamodb-local.sh, as `make test-readme` does.
#
# Two lines of a block are not run as written: `make test`, which runs this script, is skipped
# (saying so), and `make demo` runs scripts/demo.sh with the debug build instead of a release one
# (TALLY=target/debug/tally). Every command is traced with
# its README line; the first that fails stops the run, naming its block and README line.
#
# usage: scripts/with-dynamodb-local.sh scripts/readme-commands.sh [README]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
readme=$(realpath "${1:-$root/README.md}")
name=$(basename "$readme")
tally_bin=$root/target/debug/tally

fail() { echo "readme-commands: $*" >&2; exit 2; }
[[ -f $readme ]] || fail "$readme: no such file"
[[ -x $tally_bin ]] || fail "$tally_bin is missing: build it first (make test builds it:" \
    "cargo build --workspace --all-targets --features dynamodb-local)"
[[ -n ${AWS_ENDPOINT_URL_DYNAMODB:-} ]] \
    || fail "AWS_ENDPOINT_URL_DYNAMODB is not set: run under scripts/with-dynamodb-local.sh"
if grep -nE '^```(bash|shell|console|zsh)[[:space:]]*$' "$readme" >&2; then
    fail "$readme: command blocks must be tagged \`\`\`sh to be run (the lines above are not)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-readme.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/run" "$work/tmp"

# The script: line 1 sources the prologue; each README line inside a ```sh block becomes one line,
# and a block's opening fence a line announcing it. `map` gives each script line its README line
# (a command continued with `\` is reported at its first line) and `block` its block's number.
awk -v body="$work/body.sh" -v map="$work/map.sh" -v name="$name" '
    function emit(text, line) {
        out++
        print text > body
        printf "[%d]=%d ", out, (cont ? cont : line) > map
        printf "[%d]=%d ", out, n >> (map ".blocks")
        cont = (text ~ /\\$/) ? (cont ? cont : line) : 0
    }
    BEGIN { out = 1 }
    /^```sh[[:space:]]*$/ && !inside { inside = 1; n++; start = NR
        emit(sprintf(": \"== block %d, %s line %d\"", n, name, NR), NR); next }
    /^```/ && inside { inside = 0; next }
    inside {
        if ($0 ~ /^make test([[:space:]]|$)/)
            emit("echo \"readme-commands: skipped: make test (it runs this script)\" >&2", NR)
        else if ($0 ~ /^make demo([[:space:]]|$)/)
            emit("TALLY=\"$__readme_tally\" bash \"$__readme_demo\"   # make demo, with the debug build", NR)
        else
            emit($0, NR)
    }
    END {
        if (inside) { printf "%s line %d: the ```sh block opened there is not closed\n", name, start > "/dev/stderr"; exit 3 }
        if (!n) { print name ": no ```sh block" > "/dev/stderr"; exit 3 }
        print n > (map ".count")
    }
' "$readme" || fail "cannot extract the blocks of $readme"
blocks=$(cat "$work/map.sh.count")

{
    echo "declare -A __readme_line=($(cat "$work/map.sh")) __readme_block=($(cat "$work/map.sh.blocks"))"
    echo "__readme_demo=$(printf %q "$root/scripts/demo.sh") __readme_tally=$(printf %q "$tally_bin") __readme_name=$(printf %q "$name")"
    # shellcheck disable=SC2016 # expanded when the trap and the trace run
    echo 'PS4='"'"'+ $__readme_name:${__readme_line[$LINENO]:-?}: '"'"
    # shellcheck disable=SC2016
    echo 'trap '"'"'{ __s=$?; set +x; } 2>/dev/null; printf "readme-commands: FAILED: block %s, %s line %s, exit %s: %s\n" "${__readme_block[$LINENO]:-?}" "$__readme_name" "${__readme_line[$LINENO]:-?}" "$__s" "$BASH_COMMAND" >&2'"'"' ERR'
    echo 'set -x'
} > "$work/prologue.sh"
{ echo "source $(printf %q "$work/prologue.sh")"; cat "$work/body.sh"; } > "$work/readme.sh"

echo "readme-commands: $blocks block(s) of $readme, in $work/run, tally = $tally_bin" >&2
status=0
(
    cd "$work/run"
    unset TALLY_RULES TABLE_NAME
    export PATH="$root/target/debug:$root/.venv/bin:$PATH" TMPDIR="$work/tmp"
    exec bash -euo pipefail "$work/readme.sh" </dev/null
) || status=$?
if (( status != 0 )); then
    echo "readme-commands: $name's commands failed (exit $status); the failing command is named above" >&2
    exit "$status"
fi
echo "readme-commands: all $blocks block(s) of $name ran" >&2
