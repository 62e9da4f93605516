"""Samples a streaming ingest's /metrics during one phase of bench/stream.sh and prints a
Markdown row: freshness p50/p99 over the phase (from the histogram's change), records, lag at
the middle and the end, batches. Usage: stream_probe.py <metrics-url> <seconds> <label> [shares]
(with a fourth argument it also prints, to stderr, the share of records within each bound: of
freshness and, for Kafka, of delivery — a message's timestamp to its receipt, the broker's part)."""
import re, sys, time, urllib.request

url, seconds, label = sys.argv[1], float(sys.argv[2]), sys.argv[3]

def sample():
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    buckets, lag, values = {}, 0, {}
    for line in text.splitlines():
        m = re.match(r'patientflow_stream_(freshness|delivery)_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            buckets.setdefault(m.group(1), {})[float(m.group(2))] = float(m.group(3))
            continue
        m = re.match(r'patientflow_stream_consumer_lag\{[^}]*\} (\S+)', line)
        if m:
            lag += float(m.group(1))
            continue
        m = re.match(r'(patientflow_stream_\w+) (\S+)', line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return buckets, lag, values

def quantile(before, after, q):
    if not after:
        return "-"
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0)
    if total <= 0:
        return "-"
    for b in bounds:
        if after[b] - before.get(b, 0) >= q * total:
            return "≤ %g s" % b if b != float("inf") else "> 300 s"
    return "?"

b0, _, v0 = sample()
time.sleep(seconds / 2)
_, lag_mid, _ = sample()
time.sleep(seconds / 2)
b1, lag_end, v1 = sample()
d = lambda k: int(v1.get(k, 0) - v0.get(k, 0))
f0, f1 = b0.get("freshness", {}), b1.get("freshness", {})
print(f"| {label} | {d('patientflow_stream_records_total')} | {d('patientflow_stream_batches_total')} "
      f"| {quantile(f0, f1, 0.5)} | {quantile(f0, f1, 0.99)} | {int(lag_mid)} | {int(lag_end)} |")
if len(sys.argv) > 4:  # the share of records at or under each bound, for a closer look
    for kind in ("freshness", "delivery"):  # delivery: Kafka timestamp → receipt (broker's part)
        before, after = b0.get(kind, {}), b1.get(kind, {})
        total = after[max(after)] - before.get(max(after), 0) if after else 0
        if total:
            print(kind, " ".join(f"≤{b:g}s:{(after[b] - before.get(b, 0)) / total:.4f}"
                                 for b in sorted(after) if b <= 5), file=sys.stderr)
