#!/usr/bin/env bash
# Benchmark: sustained produce → Kafka (nisshi on loopback) → `ingest --follow` → gold, and the
# same through a followed landing folder, at 100, 1,000 and 10,000 events/s for DURATION seconds
# each (default 180) on a history of EVENTS ADT events (default 3.6M, about 1M stays). Prints
# Markdown rows: records and batches in the phase, freshness p50/p99 (a record's Kafka timestamp,
# or its read time for files, → its batch visible in gold; from the stream's histogram), consumer
# lag at the middle and the end of the phase, and the follower's peak RSS.
N="${1:-3600000}"
DURATION="${DURATION:-180}"
source "$(dirname "$0")/common.sh"
NISSHI="$TOOLS/tools/bin/nisshi"
PY="${PATIENTFLOW_PYTHON:-python3}"
"$TREE_BIN" produce --out "$WORK/landing" --events "$N" --seed 1 >/dev/null
"$BIN" ingest --from "$WORK/landing" --data "$WORK/data" --no-gold --log off >/dev/null
"$BIN" gold refresh --data "$WORK/data" --log off >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BROKER="127.0.0.1:$(free_port)"
"$NISSHI" broker --kafka-listener-url "tcp://$BROKER" --kafka-advertised-listener-url "tcp://$BROKER" \
  --storage-engine memory://nisshi/ >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
trap 'kill $BROKER_PID $FOLLOW_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 2
"$NISSHI" topic create adt --partitions 3 --broker "tcp://$BROKER" >/dev/null

echo "History: $N ADT events. Phases of $DURATION s."
echo
echo "| source, rate | records | batches | freshness p50 | freshness p99 | lag mid | lag end |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
phase() { # label, rate, produce destination flag, value
  local label="$1" rate="$2"; shift 2
  "$TREE_BIN" produce "$@" --events "$((rate * DURATION))" --rate "$rate" --seed "$rate" \
    --ledger "$WORK/ledger-$rate.json" >/dev/null &
  local prod=$!
  "$PY" bench/stream_probe.py "http://$METRICS/metrics" "$DURATION" "$label, $rate/s"
  kill "$prod" 2>/dev/null || true; wait "$prod" 2>/dev/null || true
}
follow() { # --from value; starts the follower with /metrics
  METRICS="127.0.0.1:$(free_port)"
  "$BIN" ingest --follow --from "$1" --data "$WORK/data" \
    --metrics-addr "$METRICS" --log off >/dev/null 2>&1 &
  FOLLOW_PID=$!
  sleep 3
}
stop_follow() {
  local hwm
  hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$FOLLOW_PID/status")
  kill -TERM "$FOLLOW_PID" || true; wait "$FOLLOW_PID" 2>/dev/null || true
  echo "| (follower peak RSS: $hwm MiB) | | | | | | |"
}
follow "kafka://$BROKER/adt"
for rate in 100 1000 10000; do phase kafka "$rate" --to "kafka://$BROKER/adt"; done
stop_follow
mkdir -p "$WORK/live"
follow "$WORK/live"
for rate in 100 1000 10000; do phase "landing folder" "$rate" --out "$WORK/live/r$rate"; done
stop_follow
