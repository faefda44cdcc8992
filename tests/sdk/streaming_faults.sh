#!/usr/bin/env bash
# Runs tests/sdk/streaming_faults.py: the official openai Python SDK streaming
# through switchyard while the primary mock is faulted (503, SSE error, stall,
# mid-stream reset/stall, mid-stream reset with continue_after_commit).
# Usage: tests/sdk/streaming_faults.sh   (debug build; PROFILE=release for release)
# Exits with the script's exit code (0 = every case behaved as documented).
set -euo pipefail

source "$(dirname "$0")/lib.sh"
sdk_setup

primary_port="$(free_port)"
control_port="$(free_port)"
fallback_port="$(free_port)"
gw_port="$(free_port)"
key="sk-switchyard-sdk-check"

"$bin/mock-provider" --listen "127.0.0.1:$primary_port" --control "127.0.0.1:$control_port" \
    --name primary --chunks 8 >"$work/primary.log" 2>&1 &
pids+=($!)
"$bin/mock-provider" --listen "127.0.0.1:$fallback_port" --name fallback --chunks 8 \
    >"$work/fallback.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$primary_port/v1/models"
wait_for "http://127.0.0.1:$control_port/_mock/fault"
wait_for "http://127.0.0.1:$fallback_port/v1/models"

# Two routes over the same targets: the default streaming policy, and one that
# continues a stream broken after commit on the next target.
cat >"$work/switchyard.yaml" <<YAML
listen: 127.0.0.1:$gw_port
shards: 1
shutdown_grace: 2s
# Every case faults the primary; keep its breaker closed (default: opens after 5
# failures in a row) so each case shows the streaming path, not the breaker's.
health: { consecutive_failures: 100 }
keys:
  - { name: sdk, key: "\${SDK_KEY}" }
providers:
  primary: { kind: openai-compatible, base_url: "http://127.0.0.1:$primary_port/v1" }
  fallback: { kind: openai-compatible, base_url: "http://127.0.0.1:$fallback_port/v1" }
routes:
  - name: chat
    match: { model: chat }
    strategy: priority
    targets:
      - { provider: primary, model: primary-model, priority: 0 }
      - { provider: fallback, model: fallback-model, priority: 1 }
    retry: { attempts: 1 }
    timeouts: { first_byte: 1s, between_chunks: 1s, total: 30s }
    # Continuation is on by default; this route shows the stream ending cleanly.
    stream: { continue_after_commit: false }
  - name: chat-continue
    match: { model: chat-continue }
    strategy: priority
    targets:
      - { provider: primary, model: primary-model, priority: 0 }
      - { provider: fallback, model: fallback-model, priority: 1 }
    retry: { attempts: 1 }
    timeouts: { first_byte: 1s, between_chunks: 1s, total: 30s }
    # The default: continue_after_commit: auto.
YAML

start_switchyard "$gw_port" "$key"

echo "== openai $("$sdk_py" -c "import openai; print(openai.__version__)") streaming through switchyard on 127.0.0.1:$gw_port"
run_check "$sdk_py" tests/sdk/streaming_faults.py --base-url "http://127.0.0.1:$gw_port/v1" --api-key "$key" \
    --primary-control "127.0.0.1:$control_port" \
    --primary-url "http://127.0.0.1:$primary_port/v1" \
    --fallback-url "http://127.0.0.1:$fallback_port/v1"
