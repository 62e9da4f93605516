#!/usr/bin/env bash
# Benchmark: landing → bronze → silver at N events (default 1M), against DuckDB doing the same
# work (read the NDJSON, normalise and quarantine, write Parquet) on the same files, in the
# same run. Prints a Markdown table for BENCHMARKS.md.
N="${1:-1000000}"
source "$(dirname "$0")/common.sh"
"$TOOLS/venv/bin/python" -c 'import duckdb' 2>/dev/null || "$TOOLS/venv/bin/pip" install -q duckdb
"$BIN" produce --out "$WORK/landing" --events "$N" --seed 1 >/dev/null

measure() { # label, command…  → seconds and peak RSS (MiB)
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }
  read -r secs kib < "$WORK/time"
  printf '| %s | %s | %.2f | %.0f | %.0f |\n' "$label" "$N" "$secs" "$(echo "$N / $secs" | bc -l)" "$(echo "$kib / 1024" | bc -l)"
}
echo "| engine | events | seconds | events/s | peak RSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: |"
measure "patientflow ingest (bronze + silver + quarantine + quality, Delta)" \
  "$BIN" ingest --from "$WORK/landing" --data "$WORK/data" --no-gold --log off
measure "DuckDB $("$TOOLS/venv/bin/python" -c 'import duckdb; print(duckdb.__version__)') (same normalisation to Parquet)" \
  "$TOOLS/venv/bin/python" bench/duckdb_peer.py "$WORK/landing" "$WORK/duck"
