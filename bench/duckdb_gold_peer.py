"""The peer for bench/gold.sh: DuckDB building the patient-keyed gold tables in SQL.

Reads the current files of `silver/patient_events` (the Delta snapshot's file list, through
the `deltalake` package) and writes, as Parquet:
  * dim_patient  - SCD type 2 over gender and insurance_type, sequenced by event time, a record
                   that does not state an attribute keeping the value in force;
  * stays        - one row per encounter with an ADMIT: admission, discharge, first and last
                   department, length of stay;
  * segments     - one row per stay and department spell (ADMIT and every TRANSFER open one,
                   the next event of the encounter closes it).
It is the bulk of what patientflow's full gold build does, without the census, the stale-stay
rule or the ED facts, so the peer's time is a lower bound for the same work.
Usage: duckdb_gold_peer.py <data-root> <out-dir>
"""
import os
import sys

import duckdb
from deltalake import DeltaTable

root, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
files = DeltaTable(os.path.join(root, "silver", "patient_events")).file_uris()
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"SET temp_directory = '{out}/tmp'")
con.execute(
    f"CREATE VIEW silver AS SELECT * FROM read_parquet({files!r}, union_by_name = true)"
)
has_insurance = any(
    r[0] == "insurance_type" for r in con.execute("DESCRIBE silver").fetchall()
)
insurance = "insurance_type" if has_insurance else "NULL::VARCHAR"

con.execute(f"""
COPY (
  WITH events AS (
    SELECT patient_id, event_time, gender, {insurance} AS insurance_type
    FROM silver WHERE event_time IS NOT NULL
  ),
  filled AS (
    SELECT patient_id, event_time,
      last_value(nullif(gender, 'Unknown') IGNORE NULLS) OVER w AS gender,
      last_value(insurance_type IGNORE NULLS) OVER w AS insurance_type
    FROM events
    WINDOW w AS (PARTITION BY patient_id ORDER BY event_time
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
  ),
  changes AS (
    SELECT *, lag(gender) OVER p IS DISTINCT FROM gender
           OR lag(insurance_type) OVER p IS DISTINCT FROM insurance_type
           OR lag(patient_id) OVER p IS NULL AS opens
    FROM filled WINDOW p AS (PARTITION BY patient_id ORDER BY event_time)
  ),
  versions AS (
    SELECT patient_id, gender, insurance_type, event_time AS valid_from,
      lead(event_time) OVER (PARTITION BY patient_id ORDER BY event_time) AS valid_to
    FROM changes WHERE opens
  )
  SELECT row_number() OVER (ORDER BY patient_id, valid_from) AS patient_sk, *,
         valid_to IS NULL AS is_current
  FROM versions
) TO '{out}/dim_patient.parquet' (FORMAT parquet)
""")

con.execute("""
CREATE TABLE adt AS
SELECT encounter_id, patient_id, hospital_id, department, event_type, event_time
FROM silver
WHERE encounter_id IS NOT NULL AND event_time IS NOT NULL
  AND event_type IN ('ADMIT', 'TRANSFER', 'DISCHARGE')
""")
con.execute(f"""
COPY (
  SELECT encounter_id, any_value(patient_id) AS patient_id, any_value(hospital_id) AS hospital_id,
    min(event_time) FILTER (event_type = 'ADMIT') AS admission_time,
    max(event_time) FILTER (event_type = 'DISCHARGE') AS discharge_time,
    arg_min(department, event_time) AS admitting_department,
    arg_max(department, event_time) AS discharging_department,
    date_diff('minute', min(event_time) FILTER (event_type = 'ADMIT'),
              max(event_time) FILTER (event_type = 'DISCHARGE')) / 1440.0 AS los_days
  FROM adt GROUP BY encounter_id
  HAVING count(*) FILTER (event_type = 'ADMIT') > 0
) TO '{out}/stays.parquet' (FORMAT parquet)
""")
con.execute(f"""
COPY (
  SELECT * FROM (
    SELECT encounter_id, hospital_id, department, event_type, event_time AS segment_start,
      lead(event_time) OVER e AS segment_end
    FROM adt WINDOW e AS (PARTITION BY encounter_id ORDER BY event_time)
  ) WHERE event_type <> 'DISCHARGE'
) TO '{out}/segments.parquet' (FORMAT parquet)
""")
count = lambda name: con.execute(
    f"SELECT count(*) FROM '{out}/{name}.parquet'"
).fetchone()[0]
print(
    f"dim_patient {count('dim_patient')} rows, stays {count('stays')}, "
    f"segments {count('segments')}"
)
