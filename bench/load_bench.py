"""The client of bench/load.sh: N concurrent clients for D seconds against one `patientflow
serve`, the mix of a shift change: three of every four requests a dashboard read over REST
(occupancy by department now, admissions per day, ALOS by department, the latest quality run),
one an uncached SQL aggregate over gold.fact_admission, through REST and Flight SQL (ADBC) in
turn. Samples the server's RSS every 5 s. Prints one JSON object.

usage: load_bench.py <http host:port> <flight host:port> <server pid> <clients> <seconds>
       (a bearer token in PATIENTFLOW_TOKEN)
"""
import http.client, json, os, random, sys, threading, time, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql

http_addr, flight_addr, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
clients, seconds = int(sys.argv[4]), float(sys.argv[5])
AUTH = f"Bearer {os.environ['PATIENTFLOW_TOKEN']}"
host, port = http_addr.split(":")

DASHBOARD = [
    "/api/v1/kpis/occupancy_rate_point?dimensions=hospital,department",
    "/api/v1/kpis/admissions?dimensions=hospital&grain=day&from=2026-10-21",
    "/api/v1/kpis/alos_hours?dimensions=department",
    "/api/v1/quality/latest",
]


def aggregate():
    """An aggregate the result cache has not seen: its cut-off differs each time."""
    days = random.randint(1, 3000)
    return ("SELECT department, count(*) AS stays, avg(length_of_stay_hours) AS alos "
            "FROM gold.fact_admission "
            f"WHERE admission_time >= TIMESTAMP '2026-11-20 12:00:00' - INTERVAL '{days} days' "
            f"AND hospital_id <= {random.randint(1, 7)} GROUP BY 1")


samples = []  # (kind, door, seconds, status, retry_after)
lock = threading.Lock()
deadline = time.monotonic() + seconds


def client(i):
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    flight = None
    n = 0
    local = []
    while time.monotonic() < deadline:
        n += 1
        if n % 4:
            kind, door = "dashboard", "rest"
            request = ("GET", DASHBOARD[(i + n) % len(DASHBOARD)], None)
        elif (i + n // 4) % 2:
            kind, door = "sql", "rest"
            request = ("POST", "/api/v1/sql", json.dumps({"sql": aggregate()}))
        else:
            kind, door = "sql", "flight"
        if door == "rest":
            method, path, body = request
            start = time.monotonic()
            try:
                conn.request(method, path, body=body,
                             headers={"Authorization": AUTH, "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status, retry = r.status, r.getheader("Retry-After")
            except Exception:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
                status, retry = 0, None
        else:
            start = time.monotonic()
            try:
                if flight is None:
                    flight = flight_sql.connect(f"grpc://{flight_addr}",
                                                db_kwargs={"adbc.flight.sql.authorization_header": AUTH})
                cur = flight.cursor()
                cur.execute(aggregate())
                cur.fetchall()
                cur.close()
                status, retry = 200, None
            except Exception as e:
                text = str(e)
                status = 503 if "RESOURCE_EXHAUSTED" in text or "ResourceExhausted" in text else 500
                retry = "flight" if status == 503 else None
                flight = None
        local.append((kind, door, time.monotonic() - start, status, retry))
    with lock:
        samples.extend(local)


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


rss = [rss_kib()]
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    time.sleep(5)
    try:
        rss.append(rss_kib())
    except FileNotFoundError:
        rss.append(-1)  # the server is gone
        break
for t in threads:
    t.join()


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 1)


ok = [s for s in samples if s[3] == 200]
refused = [s for s in samples if s[3] == 503]
other = [s for s in samples if s[3] not in (200, 503)]
quarter = max(1, len(rss) // 4)
print(json.dumps({
    "clients": clients,
    "seconds": seconds,
    "requests": len(samples),
    "per_second": round(len(samples) / seconds, 1),
    "ok": len(ok),
    "refused_503": len(refused),
    "refused_503_with_retry_after": sum(1 for s in refused if s[4]),
    "other_errors": len(other),
    "other_statuses": sorted({s[3] for s in other}),
    "dashboard_p50_ms": pct([s[2] for s in ok if s[0] == "dashboard"], 0.50),
    "dashboard_p99_ms": pct([s[2] for s in ok if s[0] == "dashboard"], 0.99),
    "sql_p50_ms": pct([s[2] for s in ok if s[0] == "sql"], 0.50),
    "sql_p99_ms": pct([s[2] for s in ok if s[0] == "sql"], 0.99),
    "all_p99_ms": pct([s[2] for s in samples], 0.99),
    "all_max_ms": pct([s[2] for s in samples], 1.0),
    "flight_requests": sum(1 for s in samples if s[1] == "flight"),
    "rss_mib_first_quarter": round(max(rss[:quarter]) / 1024),
    "rss_mib_last_quarter": round(max(rss[-quarter:]) / 1024),
    "server_alive": rss[-1] > 0,
}))
