#!/usr/bin/env bash
# The style gate (.ci/run runs it after the tests): formatting as rustfmt.toml says, and no
# clippy warning anywhere in the workspace, tests and benches included, nor in the fuzz crate.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
# shellcheck source=scripts/env.sh
. "$here/env.sh"
tally_use_shared_target

echo "lint.sh: cargo fmt --all --check" >&2
if ! cargo fmt --all --check; then
    echo "lint.sh: formatting differs (above); run \`cargo fmt --all\` and commit the result." >&2
    exit 1
fi
echo "lint.sh: cargo clippy --workspace --all-targets -- -D warnings" >&2
cargo clippy --workspace --all-targets -- -D warnings
# The fuzz crate is a workspace of its own (it must not pull libFuzzer into the main build), so
# the commands above never see it: check its checks and fallback loop here, without libFuzzer.
echo "lint.sh: cargo clippy --manifest-path fuzz/Cargo.toml --no-default-features --all-targets -- -D warnings" >&2
cargo clippy --manifest-path fuzz/Cargo.toml --no-default-features --all-targets -- -D warnings
echo "lint.sh: clean" >&2
