#!/usr/bin/env bash
# Runs the official openai Python SDK against switchyard in front of a mock provider:
# route `chat` (kind openai-compatible) and one route per provider kind (via-openai,
# via-azure, via-anthropic, via-gemini, via-bedrock), all targeting the same
# mock-provider process, which speaks each kind's dialect by path.
# Usage: tests/sdk/run.sh            (debug build; PROFILE=release for a release build)
# Exits with the check's exit code (0 = every check passed).
set -euo pipefail

source "$(dirname "$0")/lib.sh"
sdk_setup

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
$(sdk_kind_providers "127.0.0.1:$mock_port")
routes:
  - name: chat
    match: { model: chat }
    targets:
      - { provider: primary, model: primary-model }
$(sdk_kind_routes)
YAML

start_switchyard "$gw_port" "$key"

echo "== openai SDK against switchyard on 127.0.0.1:$gw_port"
run_check "$sdk_py" tests/sdk/openai_check.py --base-url "http://127.0.0.1:$gw_port/v1" --api-key "$key" \
    --models "chat,$(sdk_kind_models)" --completions-models chat,via-openai,via-azure \
    --no-completions-model via-anthropic
