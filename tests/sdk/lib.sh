# shellcheck shell=bash
# Shared by the SDK checks (run.sh, anthropic_run.sh, streaming_faults.sh): the
# build, free ports, background processes with their cleanup, and waiting for a
# server. Source it after `set -euo pipefail`, then call `sdk_setup MODULE`.

sdk_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# sdk_setup PYTHON_MODULE: goes to the repository root, builds mock-provider and
# switchyard (PROFILE=debug, or release), installs the SDK from PyPI when it is
# missing, and makes $work (removed on exit, with every process in $pids ended).
sdk_setup() {
    cd "$sdk_root"
    PROFILE="${PROFILE:-debug}"
    local flag=
    if [ "$PROFILE" = release ]; then flag=--release; fi

    echo "== building ($PROFILE)"
    cargo build $flag -p loadtest --bin mock-provider
    cargo build $flag --bin switchyard
    bin="target/$PROFILE"

    if ! python3 -c "import $1" 2>/dev/null; then
        echo "== installing the $1 SDK"
        python3 -m pip install --quiet "$1"
    fi

    work="$(mktemp -d)"
    pids=()
    trap cleanup EXIT INT TERM
}

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # URL [header...]: waits up to 15 s for a 200
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

# start_switchyard PORT KEY: runs $work/switchyard.yaml (its one key is
# ${SDK_KEY}) and waits until it answers on PORT.
start_switchyard() {
    SDK_KEY="$2" "$bin/switchyard" run --config "$work/switchyard.yaml" >"$work/switchyard.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$1/v1/models" "Authorization: Bearer $2"
}

# run_check COMMAND...: runs the check and exits with its status, showing the
# end of switchyard's log when it failed.
run_check() {
    local status=0
    "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "== switchyard log"
        tail -n 30 "$work/switchyard.log"
    fi
    exit "$status"
}

# The provider kinds every SDK check goes through, one route each (`via-KIND`).
sdk_kinds=(openai azure anthropic gemini bedrock)

# sdk_kind_models: the route models, comma-separated (via-openai,via-azure,...).
sdk_kind_models() {
    local IFS=,
    local models=("${sdk_kinds[@]/#/via-}")
    echo "${models[*]}"
}

# sdk_kind_providers ADDR: YAML provider entries (2-space indent), one per kind,
# all pointing at the one mock-provider on ADDR, which speaks every dialect by path.
sdk_kind_providers() {
    cat <<YAML
  kind-openai:    { kind: openai,    base_url: "http://$1/v1", api_key: sk-mock-openai }
  kind-azure:     { kind: azure,     base_url: "http://$1", api_key: mock-azure-key, api_version: 2024-10-21 }
  kind-anthropic: { kind: anthropic, base_url: "http://$1", api_key: sk-ant-mock }
  kind-gemini:    { kind: gemini,    base_url: "http://$1/v1beta", api_key: mock-gemini-key }
  kind-bedrock:
    kind: bedrock
    base_url: "http://$1"
    region: us-east-1
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
YAML
}

# sdk_kind_routes: YAML route entries (2-space indent), `via-KIND` -> kind-KIND.
sdk_kind_routes() {
    local kind
    for kind in "${sdk_kinds[@]}"; do
        cat <<YAML
  - name: via-$kind
    match: { model: via-$kind }
    targets:
      - { provider: kind-$kind, model: $kind-model }
YAML
    done
}
