#!/usr/bin/env bash
# Benchmark: KPI latency p50/p99 through Flight SQL and REST, cached and uncached, beside
# DuckDB running the same SQL on the same Parquet files, at each size in stays (default 1M
# and 10M); then Flight SQL bulk-read throughput. Prints Markdown for BENCHMARKS.md.
SIZES=("${@:-1000000 10000000}")
source "$(dirname "$0")/common.sh"
"$TOOLS/venv/bin/python" -c 'import duckdb, numpy' 2>/dev/null || "$TOOLS/venv/bin/pip" install -q duckdb numpy
PY="$TOOLS/venv/bin/python"
printf '[serve]\ncache_entries = 0\n' > "$WORK/uncached.toml"

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
start() { # config file, name: a server in the background, on free ports
  "$BIN" --config "$1" --log off serve --data "$WORK/data" --http-addr 127.0.0.1:0 --flight-addr 127.0.0.1:0 \
    --dev-tokens --dev-key "$WORK/dev-key.pem" > "$WORK/$2.out" &
  PIDS+=($!)
}
addresses() { # name → "http flight" once the server has printed them
  until grep -q "Flight SQL" "$WORK/$1.out" 2>/dev/null; do sleep 0.2; done
  echo "$(sed -n 's|^dashboard: http://\(.*\)/$|\1|p' "$WORK/$1.out") $(sed -n 's|^Flight SQL: grpc://||p' "$WORK/$1.out")"
}

export PATIENTFLOW_TOKEN="$("$BIN" --log off token --role network_admin --dev-key "$WORK/dev-key.pem")"
echo "| stays | KPI | engine | rows | p50 ms | p99 ms |"
echo "| ---: | --- | --- | ---: | ---: | ---: |"
for n in ${SIZES[@]}; do
  rm -rf "$WORK/data"
  "$PY" bench/gold_synth.py "$WORK/data" "$n" >&2
  printf '[serve]\n' > "$WORK/cached.toml"
  start "$WORK/uncached.toml" uncached
  start "$WORK/cached.toml" cached
  read -r HU FU < <(addresses uncached)
  read -r HC FC < <(addresses cached)
  "$PY" bench/query_bench.py "$WORK/data" "$n" "$FU" "$HU" "$FC" "$HC"
  kill "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
done
