#!/usr/bin/env bash
# Runs the official openai Python SDK against switchyard in front of a mock provider.
# Usage: tests/sdk/run.sh            (debug build; PROFILE=release for a release build)
# Exits with the check's exit code (0 = every check passed).
set -euo pipefail

cd "$(dirname "$0")/../.."
PROFILE="${PROFILE:-debug}"
if [ "$PROFILE" = release ]; then flag=--release; else flag=; fi

echo "== building ($PROFILE)"
cargo build $flag -p loadtest --bin mock-provider
cargo build $flag --bin switchyard
bin="target/$PROFILE"

if ! python3 -c 'import openai' 2>/dev/null; then
    echo "== installing the openai SDK"
    python3 -m pip install --quiet openai
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_for() { # URL [curl args...]: waits up to 15 s for a 200
    local url="$1"; shift
    for _ in $(seq 1 150); do
        if python3 - "$url" "$@" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
sys.exit(0 if urllib.request.urlopen(req, timeout=1).status == 200 else 1)
PY
        sleep 0.1
    done
    echo "timed out waiting for $url" >&2
    return 1
}

mock_port="$(free_port)"
gw_port="$(free_port)"
key="sk-switchyard-sdk-check"

"$bin/mock-provider" --listen "127.0.0.1:$mock_port" --name primary --chunks 6 \
    >"$work/mock.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$mock_port/v1/models"

cat >"$work/switchyard.yaml" <<YAML
listen: 127.0.0.1:$gw_port
shards: 1
shutdown_grace: 2s
keys:
  - { name: sdk, key: "\${SDK_KEY}" }
providers:
  primary: { kind: openai-compatible, base_url: "http://127.0.0.1:$mock_port/v1" }
routes:
  - name: chat
    match: { model: chat }
    targets:
      - { provider: primary, model: primary-model }
YAML

SDK_KEY="$key" "$bin/switchyard" run --config "$work/switchyard.yaml" >"$work/switchyard.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$gw_port/v1/models" "Authorization: Bearer $key"

echo "== openai SDK against switchyard on 127.0.0.1:$gw_port"
status=0
python3 tests/sdk/openai_check.py --base-url "http://127.0.0.1:$gw_port/v1" --api-key "$key" || status=$?
if [ "$status" -ne 0 ]; then
    echo "== switchyard log"
    tail -n 30 "$work/switchyard.log"
fi
exit "$status"
