#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds every binary (the
# integration tests run the real `tally`), then runs the whole workspace's tests.
# Extra arguments go to `cargo test`, e.g. `./scripts/test.sh -p tally-tests -- restart`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

bash "$here/install-deps.sh"
# shellcheck source=scripts/env.sh
. "$here/env.sh"

tally_use_shared_target

echo "test.sh: cargo build --workspace --bins" >&2
cargo build --workspace --bins
# --no-fail-fast: one failing test binary must not hide the results of the others.
echo "test.sh: cargo test --workspace --no-fail-fast $*" >&2
cargo test --workspace --no-fail-fast "$@"
