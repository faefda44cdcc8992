#!/usr/bin/env bash
# Runs the smoke suite N times in a row (default 10) while `stress-ng --cpu 1`
# keeps one core busy, and counts the outcomes. Proves the verdicts do not depend
# on machine noise: every run must pass.
#
#   loadtest/scripts/smoke-under-stress.sh [N] [OUT_DIR]
#
# Needs stress-ng (Debian: apt-get install -y stress-ng). Builds the release
# switchyard and suite binaries first. Exit status 0 only if all N runs passed.
# Each run's report stays in OUT_DIR/run-I/ (default: a fresh temp dir).
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${1:-10}
out=${2:-$(mktemp -d -t smoke-under-stress.XXXXXX)}
mkdir -p "$out"
# A hung run must not hang the loop: the smoke suite takes about 80 s.
per_run_limit=600

command -v stress-ng >/dev/null || { echo "stress-ng not found (apt-get install -y stress-ng)" >&2; exit 2; }
cargo build --release --bin switchyard -p switchyard
cargo build --release -p loadtest --bin suite

# Bounded too: the hog outlives the loop by at most its own timeout.
stress-ng --cpu 1 --timeout "$(( runs * per_run_limit + 60 ))s" --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null || true; wait "$stress_pid" 2>/dev/null || true' EXIT
sleep 1

pass=0 fail=0 harness=0 other=0
for i in $(seq 1 "$runs"); do
    dir="$out/run-$i"
    set +e
    timeout "$per_run_limit" ./target/release/suite --smoke --out "$dir" >"$dir.stdout" 2>"$dir.stderr"
    rc=$?
    set -e
    case $rc in
        0) pass=$((pass + 1)); verdict=PASS ;;
        1) fail=$((fail + 1)); verdict=FAIL ;;
        3) harness=$((harness + 1)); verdict="HARNESS ERROR" ;;
        *) other=$((other + 1)); verdict="exit $rc" ;;
    esac
    echo "run $i/$runs: $verdict ($(tail -n 2 "$dir.stdout" | head -n 1))"
    if [ "$rc" -ne 0 ]; then
        grep -E 'FAIL|NOT MEASURED|ERROR' "$dir.stdout" | grep '^|' || true
    fi
done
echo "smoke under stress-ng --cpu 1: $pass/$runs passed, $fail failed, $harness harness errors, $other other; reports in $out"
[ "$pass" -eq "$runs" ]
