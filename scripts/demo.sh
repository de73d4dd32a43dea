#!/usr/bin/env bash
# The demo (README Quick start): installs what is missing, then runs `tally demo`, which starts a
# local nats-server in a temp dir, creates the streams, generates multi-store traffic, shows
# stores, alerts, postings and throughput on one screen redrawn in place, and ends with a summary
# and where to look next (docs/demo.md). Extra arguments go to `tally demo`
# (`./scripts/demo.sh --help` lists them), e.g. `./scripts/demo.sh --duration 60s`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

bash "$here/install-deps.sh" --no-packaging
# shellcheck source=scripts/env.sh
. "$here/env.sh"

tally_use_shared_target

# The dev profile, like the test suite: RocksDB's C++ build (the long part of a first build) is
# then shared by both Quick start commands. The demo's default load is far below what even an
# unoptimized build handles; `cargo run --release … -- demo` is the fast variant.
echo "demo.sh: cargo run -p tally-processor --bin tally -- demo $*" >&2
exec cargo run -p tally-processor --bin tally -- demo "$@"
