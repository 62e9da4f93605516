# Sourced by the benchmark scripts: the release binary, the tools folder and a scratch folder
# removed on exit. Sets BIN, TOOLS and WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${PATIENTFLOW_TOOLS:-$HOME/.cache/patientflow}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TOOLS/target}"
cargo build --release -q -p patientflow-server
BIN="$CARGO_TARGET_DIR/release/patientflow"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
