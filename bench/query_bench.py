"""The client of bench/query.sh: KPI latency through patientflow's Flight SQL (ADBC) and REST,
cached and uncached, and DuckDB running the same SQL on the same Parquet files, in one run;
then Flight SQL bulk-read throughput. Prints Markdown rows.

usage: query_bench.py <root> <stays> <flight uncached> <http uncached> <flight cached> <http cached>
       (a network_admin bearer token in PATIENTFLOW_TOKEN: both doors check it, as in production)
"""
import http.client, json, math, os, random, statistics, sys, time, warnings
warnings.simplefilter("ignore")
import duckdb
import adbc_driver_flightsql.dbapi as flight_sql

root, stays = sys.argv[1], int(sys.argv[2])
flight_u, http_u, flight_c, http_c = sys.argv[3:7]
RUNS = int(os.environ.get("RUNS", "30"))
AUTH = f"Bearer {os.environ['PATIENTFLOW_TOKEN']}"
ADBC = {"adbc.flight.sql.authorization_header": AUTH}

# The KPIs of the dashboard as SQL both engines run. {t} is a gold table.
KPIS = {
    "census by department, latest hour": """
        SELECT hospital_id, department, sum(census) AS census FROM {fact_census_hourly}
        WHERE hour_start = (SELECT max(hour_start) FROM {fact_census_hourly})
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "occupancy by department per day, 30 days": """
        SELECT date_trunc('day', hour_start) AS day, department,
               sum(occupied_bed_hours) / sum(bed_capacity) AS occupancy
        FROM {fact_census_hourly} WHERE hour_start >= TIMESTAMP '2026-10-21 12:00:00'
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "admissions per day by hospital, 30 days": """
        SELECT date_trunc('day', admission_time) AS day, hospital_id, count(*) AS admissions
        FROM {fact_admission} WHERE admission_time >= TIMESTAMP '2026-10-21 12:00:00'
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "ALOS and median LOS by department, 1 year": """
        SELECT department, avg(length_of_stay_hours) AS alos, median(length_of_stay_hours) AS median_los
        FROM {fact_admission} WHERE discharge_time IS NOT NULL GROUP BY 1 ORDER BY 1""",
    "ED wait p50/p90 by hospital, 1 year": """
        SELECT hospital_id,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY ed_wait_minutes) AS p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY ed_wait_minutes) AS p90
        FROM {fact_admission} WHERE ed_wait_minutes IS NOT NULL GROUP BY 1 ORDER BY 1""",
    "admissions by gender and age band, 90 days": """
        SELECT p.gender,
               CASE WHEN f.age_at_admission IS NULL THEN 'Unknown' WHEN f.age_at_admission < 18 THEN '0-17'
                    WHEN f.age_at_admission < 35 THEN '18-34' WHEN f.age_at_admission < 50 THEN '35-49'
                    WHEN f.age_at_admission < 65 THEN '50-64' WHEN f.age_at_admission < 80 THEN '65-79'
                    ELSE '80+' END AS age_band,
               count(*) AS admissions
        FROM {fact_admission} f LEFT JOIN {dim_patient} p ON f.patient_sk = p.patient_sk
        WHERE f.admission_time >= TIMESTAMP '2026-08-22 12:00:00'
        GROUP BY 1, 2 ORDER BY 1, 2""",
}
TABLES = ["fact_census_hourly", "fact_admission", "dim_patient"]


def timed(runs):
    """p50, p99 (ms) and rows of each of `runs`, taking turns: run i of every engine before run
    i + 1 of any, so a noisy moment on the machine falls on all engines alike, in a new order
    each round, so no engine always follows the same one (here a query right after the same
    query on the same server ran up to a quarter faster)."""
    rows = [run() for run in runs]  # warm-up: fills the OS page cache (and, for "cached", the cache)
    times = [[] for _ in runs]
    order, rng = list(range(len(runs))), random.Random(2026)
    for _ in range(RUNS):
        rng.shuffle(order)
        for i in order:
            run = runs[i]
            t = time.perf_counter()
            rows[i] = run()
            times[i].append((time.perf_counter() - t) * 1000)
    for t in times:
        t.sort()
    return [(statistics.median(t), t[math.ceil(0.99 * len(t)) - 1], r) for t, r in zip(times, rows)]


OPEN = []  # connections and cursors, closed at the end


def flight(uri):
    conn = flight_sql.connect(f"grpc://{uri}", db_kwargs=ADBC)
    cur = conn.cursor()
    OPEN.extend([cur, conn])

    def run(sql):
        cur.execute(sql)
        return cur.fetch_arrow_table().num_rows
    return run


def rest(uri):
    # One kept-alive connection, as a browser or an HTTP client library holds it.
    conn = http.client.HTTPConnection(uri)
    OPEN.append(conn)
    headers = {"content-type": "application/json", "authorization": AUTH}

    def run(sql):
        conn.request("POST", "/api/v1/sql", body=json.dumps({"sql": sql}), headers=headers)
        response = conn.getresponse()
        body = json.load(response)
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {body}")
        return body["row_count"]
    return run


duck = duckdb.connect()
duck.execute("SET threads TO 2")
duck_sql = {t: f"read_parquet('{root}/gold/{t}/**/*.parquet', hive_partitioning = false)" for t in TABLES}
pf_sql = {t: f"gold.{t}" for t in TABLES}

engines = [
    ("DuckDB (in-process, same Parquet files)", lambda sql: duck.execute(sql).to_arrow_table().num_rows, duck_sql),
    ("patientflow Flight SQL, uncached", flight(flight_u), pf_sql),
    ("patientflow REST, uncached", rest(http_u), pf_sql),
    ("patientflow Flight SQL, cached", flight(flight_c), pf_sql),
    ("patientflow REST, cached", rest(http_c), pf_sql),
]
for kpi, template in KPIS.items():
    runs = [lambda run=run, sql=template.format(**tables): run(sql) for _, run, tables in engines]
    for (name, _, _), (p50, p99, rows) in zip(engines, timed(runs)):
        print(f"| {stays:,} | {kpi} | {name} | {rows} | {p50:.1f} | {p99:.1f} |", flush=True)

# Bulk read: every stay over Flight SQL.
conn = flight_sql.connect(f"grpc://{flight_u}", db_kwargs=ADBC)
cur = conn.cursor()
t = time.perf_counter()
cur.execute("SELECT * FROM gold.fact_admission LIMIT 1000000")
table = cur.fetch_arrow_table()
secs = time.perf_counter() - t
cur.close()
conn.close()
for handle in OPEN:
    handle.close()
print(f"BULK | {stays:,} | {table.num_rows} rows | {table.nbytes / 2**20:.0f} MiB | {secs:.2f} s | {table.nbytes / 2**20 / secs:.0f} MiB/s")
