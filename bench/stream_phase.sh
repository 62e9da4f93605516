#!/usr/bin/env bash
# One streaming phase on a copy of an existing table root, with the follower's memory, threads
# and CPU and the consumer lag sampled every 5 s (bench/stream.sh builds its own root and runs
# every phase; this one re-measures a single phase quickly on a root kept from before).
#
#   bench/stream_phase.sh ROOT folder|kafka RATE SECONDS [CONFIG_TOML]
#
# ROOT is copied, never changed. "folder": a follower on a live landing folder fed by `produce
# --out`; "kafka": nisshi on loopback (memory storage, a 3-partition topic), `produce --to`,
# a follower in group "g". CONFIG_TOML (e.g. a `[kafka]` table) goes to both through
# PATIENTFLOW_CONFIG. Prints the probe's row and shares, then "seconds RSS-MiB threads
# lag broker-cpu-s" samples, the follower's peak RSS and CPU, the broker's and the producer's CPU.
# PRODUCE_ARGS adds options to `produce` (e.g. `--evolve-at 1` for traffic without the new
# attribute half-way, which gives every returning patient a new `dim_patient` version).
ROOT="$(realpath "$1")"; SOURCE="$2"; RATE="$3"; SECONDS_="$4"; CONF="${5:-}"
source "$(dirname "$0")/common.sh"
[ -n "$CONF" ] && export PATIENTFLOW_CONFIG="$(realpath "$CONF")"
cp -a "$ROOT" "$WORK/data"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
BROKER_PID=""
if [ "$SOURCE" = kafka ]; then
  BROKER="127.0.0.1:$(free_port)"
  "$TOOLS/tools/bin/nisshi" broker --kafka-listener-url "tcp://$BROKER" \
    --kafka-advertised-listener-url "tcp://$BROKER" --storage-engine memory://nisshi/ \
    >"$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  sleep 2
  "$TOOLS/tools/bin/nisshi" topic create adt --partitions 3 --broker "tcp://$BROKER" >/dev/null
  FROM=(--from "kafka://$BROKER/adt" --group g); TO=(--to "kafka://$BROKER/adt")
else
  mkdir -p "$WORK/live"
  FROM=(--from "$WORK/live"); TO=(--out "$WORK/live/r")
fi
METRICS="127.0.0.1:$(free_port)"
"$BIN" ingest --follow "${FROM[@]}" --data "$WORK/data" --metrics-addr "$METRICS" --log warn \
  >/dev/null 2>"$WORK/follow.log" &
FOLLOW_PID=$!
# (`|| true`: a failing command in an EXIT trap under `set -e` ends it before the clean-up.)
trap 'kill $FOLLOW_PID $BROKER_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 3
"$TREE_BIN" produce "${TO[@]}" --events "$((RATE * SECONDS_))" --rate "$RATE" --seed "$RATE" \
  --ledger "$WORK/ledger.json" ${PRODUCE_ARGS:-} >/dev/null 2>&1 &
PRODUCE_PID=$!
(
  s=0
  while kill -0 "$FOLLOW_PID" 2>/dev/null; do
    lag=$(curl -s "http://$METRICS/metrics" | awk '/^patientflow_stream_consumer_lag/ {n += $2} END {print n + 0}')
    echo "$s $(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$FOLLOW_PID/status") $(awk '/Threads/ {print $2}' "/proc/$FOLLOW_PID/status") $lag ${BROKER_PID:+$(cpu "$BROKER_PID")}"
    sleep 5; s=$((s + 5))
  done
) >"$WORK/samples" &
python3 bench/stream_probe.py "http://$METRICS/metrics" "$SECONDS_" "$SOURCE, $RATE/s" shares
if [ -e "/proc/$PRODUCE_PID" ]; then echo "producer cpu s: $(cpu "$PRODUCE_PID")"; else echo "producer: done before the phase ended"; fi
kill "$PRODUCE_PID" 2>/dev/null || true; wait "$PRODUCE_PID" 2>/dev/null || true
echo "follower peak RSS MiB: $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$FOLLOW_PID/status"), cpu s: $(cpu "$FOLLOW_PID")${BROKER_PID:+, broker cpu s: $(cpu "$BROKER_PID")}"
kill -TERM "$FOLLOW_PID"; wait "$FOLLOW_PID" 2>/dev/null || true
echo "samples (s, RSS MiB, threads, consumer lag${BROKER_PID:+, broker cpu s}):"
sed 's/ *$//' "$WORK/samples" | tr '\n' ';'; echo
