# Sourced by the benchmark scripts: the release binary, the tools folder and a scratch folder
# removed on exit (kept, and named, with KEEP_WORK=1). Sets BIN, TREE_BIN, TOOLS and WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${PATIENTFLOW_TOOLS:-$HOME/.cache/patientflow}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TOOLS/target}"
cargo build --release -q -p patientflow-server
# This tree's binary makes the data; PATIENTFLOW_BIN measures another build (e.g. an earlier
# commit's) on the same data.
TREE_BIN="$CARGO_TARGET_DIR/release/patientflow"
BIN="${PATIENTFLOW_BIN:-$TREE_BIN}"
WORK="$(mktemp -d)"
if [ -n "${KEEP_WORK:-}" ]; then echo "scratch folder kept: $WORK" >&2; else trap 'rm -rf "$WORK"' EXIT; fi
