#!/usr/bin/env bash
# Benchmark: a full gold build over EVENTS ADT events (default 3.6M, about 1M stays) beside
# DuckDB building the same patient-keyed tables (bench/duckdb_gold_peer.py), then 1k and 10k new
# events ingested end to end (bronze → silver → gold incremental), after a first incremental
# refresh with nothing new. Prints a Markdown table for BENCHMARKS.md. PATIENTFLOW_BIN=<binary> measures another build.
N="${1:-3600000}"
source "$(dirname "$0")/common.sh"
UNTIL="2026-11-20T00:00:00Z"
PY="${PATIENTFLOW_PYTHON:-$TOOLS/venv/bin/python}"
"$TREE_BIN" produce --out "$WORK/landing" --events "$N" --seed 1 --until "$UNTIL" >/dev/null

timed() { # command…  → "seconds peak-RSS-MiB" of the command, its stdout in $WORK/out
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }
  read -r secs kib < "$WORK/time"
  printf '%.2f %.0f' "$secs" "$(echo "$kib / 1024" | bc -l)"
}
field() { # JSON path in $WORK/out, e.g. gold.stays
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$WORK/out" "$1"
}
TOTAL_STAYS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stays"])' "$WORK/landing/_producer_ledger.json")
read -r s m <<<"$(timed "$BIN" ingest --from "$WORK/landing" --data "$WORK/data" --no-gold --format json --log off)"
echo "Data: $N ADT events, $TOTAL_STAYS simulated stays; \`ingest --no-gold\` $s s, $m MiB."
echo
echo "| step | patients rebuilt | stays written | slices | seconds | peak RSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
read -r s m <<<"$(timed "$BIN" gold refresh --data "$WORK/data" --format json --log off)"
echo "| full build | $(field patients) | $(field stays) | $(field slices) | $s | $m |"
read -r s m <<<"$(timed "$PY" bench/duckdb_gold_peer.py "$WORK/data" "$WORK/peer")"
echo "| peer: DuckDB $("$PY" -c 'import duckdb; print(duckdb.__version__)') (dim_patient, stays, segments; $(cat "$WORK/out")) | | | | $s | $m |"
rm -rf "$WORK/peer"
# The full build filled the patient history index; the first incremental refresh opens it.
read -r s m <<<"$(timed "$BIN" gold refresh --data "$WORK/data" --format json --log off)"
echo "| first incremental refresh, no new events (patient history index $(du -sm "$WORK/data/_index/gold_history.redb" | cut -f1) MB, filled by the full build) | $(field patients) | $(field stays) | | $s | $m |"
for MORE in 1000 10000; do
  "$TREE_BIN" produce --out "$WORK/more-$MORE" --events "$MORE" --seed "$MORE" --until "$UNTIL" >/dev/null
  cp "$WORK/more-$MORE/events-000001.ndjson" "$WORK/landing/more-$MORE.ndjson"
  read -r s m <<<"$(timed "$BIN" ingest --from "$WORK/landing" --data "$WORK/data" --format json --log off)"
  echo "| $MORE new events: \`ingest\` end to end (bronze → silver → gold; gold $(printf '%.2f' "$(field gold.elapsed_seconds)") s) | $(field gold.patients) | $(field gold.stays) | | $s | $m |"
done
