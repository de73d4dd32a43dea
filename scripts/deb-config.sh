#!/usr/bin/env bash
# Writes deploy/debian/tally.toml, the /etc/tally/tally.toml of the Debian package: the example
# configuration (deploy/tally.example.toml, every key with its default) with state.path set to
# the service's StateDirectory (deploy/systemd/tally.service). Run it after changing the
# example; tests/tests/packaging.rs fails while the two disagree. An argument names another
# file to write instead (the test writes a fresh copy to compare).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:-$here/../deploy/debian/tally.toml}")"
cd "$here/.."

example=deploy/tally.example.toml
default_line='path = "./tally-data"'
[ "$(grep -cxF "$default_line" "$example")" -eq 1 ] \
    || { echo "deb-config: $example must have exactly one line: $default_line" >&2; exit 1; }

{
    cat <<'HEADER'
# /etc/tally/tally.toml: the configuration of the tally service (systemctl status tally).
#
# Installed by the Debian package: deploy/tally.example.toml with state.path set to the
# service's state directory. `tally check --config /etc/tally/tally.toml` checks a
# change; `systemctl restart tally` applies it.
#
# Every local user can read this file: keep secrets out of it. Give them to the service with a
# drop-in (`systemctl edit tally`): Environment=/EnvironmentFile= for TALLY_<SECTION>_<KEY>
# variables, or LoadCredential= for the files that *_file keys name. README "Install" shows how.

HEADER
    while IFS= read -r line; do
        if [ "$line" = "$default_line" ]; then
            printf '%s\n' 'path = "/var/lib/tally"'
        else
            printf '%s\n' "$line"
        fi
    done <"$example"
} >"$out"
echo "deb-config: wrote $out" >&2
