#!/usr/bin/env bash
# Benchmark: a full gold build over EVENTS ADT events (default 3.6M, about 1M stays), then an
# incremental refresh after 1k new events and another after 10k more. Prints a Markdown table
# for BENCHMARKS.md. PATIENTFLOW_BIN=<binary> measures another build.
N="${1:-3600000}"
source "$(dirname "$0")/common.sh"
UNTIL="2026-11-20T00:00:00Z"; AS_OF="2026-11-20T06:00:00Z"
"$TREE_BIN" produce --out "$WORK/landing" --events "$N" --seed 1 --until "$UNTIL" >/dev/null
"$BIN" ingest --from "$WORK/landing" --data "$WORK/data" --no-gold --log off >/dev/null

measure() { # label, command…  → seconds, peak RSS (MiB) and the refresh's own summary
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }
  read -r secs kib < "$WORK/time"
  local stays patients rows
  stays=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stays"])' "$WORK/out")
  patients=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["patients"])' "$WORK/out")
  rows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["census_rows"])' "$WORK/out")
  printf '| %s | %s | %s | %s | %.2f | %.0f |\n' "$label" "$patients" "$stays" "$rows" "$secs" "$(echo "$kib / 1024" | bc -l)"
}
TOTAL_STAYS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stays"])' "$WORK/landing/_producer_ledger.json")
echo "Data: $N ADT events, $TOTAL_STAYS simulated stays."
echo
echo "| refresh | patients rebuilt | stays written | census rows written | seconds | peak RSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
measure "full build" "$BIN" gold refresh --data "$WORK/data" --as-of "$AS_OF" --format json --log off
for MORE in 1000 10000; do
  "$TREE_BIN" produce --out "$WORK/more-$MORE" --events "$MORE" --seed "$MORE" --until "$UNTIL" >/dev/null
  cp "$WORK/more-$MORE/events-000001.ndjson" "$WORK/landing/more-$MORE.ndjson"
  "$BIN" ingest --from "$WORK/landing" --data "$WORK/data" --no-gold --log off >/dev/null
  measure "incremental, $MORE new events" "$BIN" gold refresh --data "$WORK/data" --as-of "$AS_OF" --format json --log off
done
