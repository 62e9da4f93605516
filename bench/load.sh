#!/usr/bin/env bash
# Benchmark: the query service under a shift change's load (issue 21). A network of about 1M
# stays (3M simulated events through the pipeline), one `serve`; 64 clients for DURATION
# seconds (default 300), then 256 clients for SHORT seconds (default 60); the mix and the
# numbers are bench/load_bench.py's. BEFORE=<binary> measures that build too, on the same data
# in the same run (e.g. one built from the commit before admission control). DATA=<root> serves
# an existing table root instead of building one.
# Prints Markdown rows for BENCHMARKS.md.
EVENTS="${EVENTS:-3000000}"
DURATION="${DURATION:-300}"
SHORT="${SHORT:-60}"
source "$(dirname "$0")/common.sh"
PY="$TOOLS/venv/bin/python"
AS_OF="2026-11-20T12:00:00Z"

if [ -n "${DATA:-}" ]; then
  ln -s "$(realpath "$DATA")" "$WORK/data"
else
  "$TREE_BIN" --log warn produce --out "$WORK/landing" --events "$EVENTS" --until "$AS_OF" --seed 21 >/dev/null
  "$TREE_BIN" --log warn ingest --from "$WORK/landing" --data "$WORK/data" --as-of "$AS_OF" >/dev/null
fi
STAYS="$("$PY" -c 'import sys; from deltalake import DeltaTable; print(DeltaTable(sys.argv[1]).to_pyarrow_dataset().count_rows())' "$WORK/data/gold/fact_admission")"
export PATIENTFLOW_TOKEN="$("$TREE_BIN" --log off token --role network_admin --dev-key "$WORK/dev-key.pem")"

PID=""
trap '{ [ -n "$PID" ] && kill "$PID" 2>/dev/null; } || true; rm -rf "$WORK"' EXIT
measure() { # binary label clients seconds
  "$1" --log warn serve --data "$WORK/data" --http-addr 127.0.0.1:0 --flight-addr 127.0.0.1:0 \
    --dev-tokens --dev-key "$WORK/dev-key.pem" > "$WORK/serve.out" 2> "$WORK/serve-$2-$3.log" &
  PID=$!
  until grep -q "Flight SQL" "$WORK/serve.out" 2>/dev/null; do sleep 0.2; done
  local http flight
  http="$(sed -n 's|^dashboard: http://\(.*\)/$|\1|p' "$WORK/serve.out")"
  flight="$(sed -n 's|^Flight SQL: grpc://||p' "$WORK/serve.out")"
  local out
  out="$("$PY" bench/load_bench.py "$http" "$flight" "$PID" "$3" "$4")"
  local warnings
  warnings="$(grep -c "query refused or cancelled" "$WORK/serve-$2-$3.log" || true)"
  kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""
  "$PY" - "$2" "$STAYS" "$warnings" "$out" <<'PY'
import json, sys
label, stays, warnings, r = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
print(f"| {label} | {stays:,} | {r['clients']} × {r['seconds']:.0f} s | {r['requests']:,} ({r['per_second']}/s) "
      f"| {r['other_errors']} {r['other_statuses'] or ''} | {r['refused_503']} ({r['refused_503_with_retry_after']} with Retry-After) "
      f"| {r['dashboard_p50_ms']} / {r['dashboard_p99_ms']} | {r['sql_p50_ms']} / {r['sql_p99_ms']} | {r['all_p99_ms']} / {r['all_max_ms']} "
      f"| {r['rss_mib_first_quarter']} → {r['rss_mib_last_quarter']} | {warnings} | {'yes' if r['server_alive'] else 'NO'} |")
PY
}

echo "| build | stays | clients × time | requests | errors (not 503) | 503 | dashboard p50 / p99 ms | SQL p50 / p99 ms | all p99 / max ms | RSS MiB (1st → last quarter) | warnings logged | server up |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
if [ -n "${BEFORE:-}" ]; then
  measure "$BEFORE" before 64 "$DURATION"
fi
measure "$BIN" "this tree" 64 "$DURATION"
if [ -n "${BEFORE:-}" ]; then
  measure "$BEFORE" before 256 "$SHORT"
fi
measure "$BIN" "this tree" 256 "$SHORT"
