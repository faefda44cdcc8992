#!/usr/bin/env bash
# Installs switchyard as a systemd service. Safe to run again: it changes only what
# differs, never overwrites an existing config or env file, and checks the config
# before it enables or restarts anything.
#
#   sudo systemd/install.sh                      # cargo build --release (as $SUDO_USER), install, enable --now
#   sudo systemd/install.sh --binary ./switchyard  # install a binary built elsewhere
#   systemd/install.sh --dry-run                 # print what would be done, change nothing
#   systemd/install.sh --prefix /tmp/root --binary target/debug/switchyard
#                                                # install under a root directory; no systemctl
#
# It never runs cargo as root on someone's behalf: under sudo it builds as
# $SUDO_USER. It ends by printing what to do next (replace the placeholder
# secrets that `check` warned about, then start).
#
# Options:
#   --binary PATH   install this binary instead of building one
#   --config PATH   initial config to install when none exists
#                   (default: config/switchyard.example.yaml)
#   --prefix DIR    treat DIR as the root directory; systemctl is not called
#   --no-start      install and check, but do not enable or start the service
#   --dry-run       print every step instead of doing it
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

binary=""
config_source="$repo/config/switchyard.example.yaml"
prefix=""
dry_run=0
start=1

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary="$2"; shift 2 ;;
        --binary=*) binary="${1#*=}"; shift ;;
        --config) [ $# -ge 2 ] || die "--config needs a path"; config_source="$2"; shift 2 ;;
        --config=*) config_source="${1#*=}"; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --no-start) start=0; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (try --help)" ;;
    esac
done

if [ -n "$prefix" ]; then
    [ "$dry_run" = 1 ] || mkdir -p "$prefix"
    if [ -d "$prefix" ]; then
        prefix="$(cd "$prefix" && pwd)"
    fi
fi
[ -f "$config_source" ] || die "config template not found: $config_source"

bin_dest="$prefix/usr/local/bin/switchyard"
etc_dir="$prefix/etc/switchyard"
config_dest="$etc_dir/switchyard.yaml"
env_dest="$etc_dir/switchyard.env"
unit_dest="$prefix/etc/systemd/system/switchyard.service"

changed=0

# Prints a command (dry run) or runs it.
run() {
    if [ "$dry_run" = 1 ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

# Installs $1 at $2 with mode $3 unless $2 already has that content and mode.
install_file() {
    local src="$1" dest="$2" mode="$3"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        if [ "$(stat -c '%a' "$dest")" = "${mode#0}" ]; then
            echo "unchanged: $dest"
        else
            echo "mode $mode: $dest"
            run chmod "$mode" "$dest"
            changed=1
        fi
        return
    fi
    echo "install ($mode): $dest"
    run install -D -m "$mode" "$src" "$dest"
    changed=1
}

# Installs $1 at $2 with mode $3 only when $2 does not exist (operator-owned files).
install_once() {
    local src="$1" dest="$2" mode="$3"
    if [ -e "$dest" ]; then
        if [ "$(stat -c '%a' "$dest")" != "${mode#0}" ]; then
            echo "mode $mode: $dest (kept its content)"
            run chmod "$mode" "$dest"
        else
            echo "kept: $dest (exists; not overwritten)"
        fi
        return
    fi
    echo "install ($mode): $dest"
    run install -D -m "$mode" "$src" "$dest"
}

# 1. The binary: the one given, or a fresh release build. Never cargo as root:
#    root rarely has cargo on its PATH, and a root-owned target/ breaks the next
#    build of the user who cloned the repository.
build_cmd=(cargo build --release --locked --bin switchyard)
if [ -z "$binary" ]; then
    # Under sudo, the user who cloned the repository builds it; otherwise
    # whoever runs this does (root in a root-only container is fine).
    as_user=()
    if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        # A login shell, so the user's ~/.cargo/bin is on PATH.
        as_user=(sudo -u "$SUDO_USER" -H bash -lc 'cd "$1" && shift && "$@"' build "$repo")
    fi
    hint="build it as your user (cargo build --release --bin switchyard), then: sudo $0 --binary target/release/switchyard"
    echo "build: ${build_cmd[*]} in $repo${as_user[*]:+ (as $SUDO_USER)}"
    if [ "$dry_run" = 1 ]; then
        echo "would run: ${as_user[*]:+${as_user[*]} }${build_cmd[*]}"
    elif [ ${#as_user[@]} -gt 0 ]; then
        "${as_user[@]}" "${build_cmd[@]}" || die "the build as $SUDO_USER failed; $hint"
    else
        command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH; $hint"
        (cd "$repo" && "${build_cmd[@]}") || die "the build failed; $hint"
    fi
    binary="$repo/target/release/switchyard"
else
    [ -f "$binary" ] && [ -x "$binary" ] || die "--binary: not an executable file: $binary"
fi

if [ -z "$prefix" ] && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "installing into / needs root (or use --prefix DIR / --dry-run)"
fi

# 2. Files.
if [ "$dry_run" = 1 ] && [ ! -e "$binary" ]; then
    echo "install (0755): $bin_dest (from $binary once built)"
else
    install_file "$binary" "$bin_dest" 0755
fi
install_file "$here/switchyard.service" "$unit_dest" 0644
if [ ! -d "$etc_dir" ]; then
    echo "mkdir (0755): $etc_dir"
    run install -d -m 0755 "$etc_dir"
fi
install_once "$config_source" "$config_dest" 0644
install_once "$here/switchyard.env.example" "$env_dest" 0600

# 3. Check the config with the env file's values, as ExecStartPre will.
check_config() {
    (
        if [ -r "$env_dest" ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                line="${line#"${line%%[![:space:]]*}"}"
                case "$line" in '' | '#'*) continue ;; esac
                name="${line%%=*}"
                value="${line#*=}"
                case "$value" in
                    \"*\") value="${value:1:${#value}-2}" ;;
                    \'*\') value="${value:1:${#value}-2}" ;;
                esac
                [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
                export "$name=$value"
            done <"$env_dest"
        fi
        "$bin_dest" check --config "$config_dest"
    )
}

if [ "$dry_run" = 1 ]; then
    echo "would run: $bin_dest check --config $config_dest (with $env_dest)"
else
    echo "check: $config_dest"
    if ! check_config; then
        echo "install.sh: the config does not pass 'switchyard check'; not starting the service." >&2
        echo "install.sh: edit $config_dest and $env_dest, then run this script again." >&2
        exit 1
    fi
fi

# What to do now: the secrets are still the example's placeholders (check warned
# about each one), and the service is not started with them.
next_steps() {
    echo
    echo "Next:"
    echo "  1. Put real secrets in $env_dest (check warns about every placeholder left)."
    echo "  2. Review $config_dest (providers, routes, keys); see config/switchyard.example.yaml."
    echo "  3. Check it: $bin_dest check $config_dest  (with the env file's values exported)"
    if [ -n "$prefix" ]; then
        echo "  4. Run it:   $bin_dest run --config $config_dest"
    else
        echo "  4. Start it: systemctl enable --now switchyard; logs: journalctl -u switchyard -f"
        echo "     After editing: systemctl reload switchyard (a changed secret needs restart)."
    fi
}

# 4. systemd.
if [ -n "$prefix" ]; then
    echo "skip: systemctl (--prefix $prefix)"
    next_steps
    exit 0
fi
if ! command -v systemctl >/dev/null 2>&1; then
    echo "skip: systemctl not found"
    next_steps
    exit 0
fi
run systemctl daemon-reload
if [ "$start" = 0 ]; then
    echo "skip: systemctl enable --now (--no-start)"
    next_steps
    exit 0
fi
if [ "$changed" = 1 ] && [ "$dry_run" = 0 ] && systemctl is-active --quiet switchyard.service; then
    # A new binary or unit: restart (drains in-flight requests for shutdown_grace).
    run systemctl restart switchyard.service
fi
run systemctl enable --now switchyard.service
echo "started: systemctl status switchyard; logs: journalctl -u switchyard -f"
