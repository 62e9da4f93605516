"""The peer for bench/ingest.sh: DuckDB doing patientflow's landing → silver work in SQL.

Reads every NDJSON line as text (bronze), parses it, normalises timestamps, gender,
department aliases, age and bed, routes bad rows to a quarantine file and deduplicates by
event id — the same work patientflow's silver does, written to Parquet (zstd).
"""
import sys, duckdb

landing, out = sys.argv[1], sys.argv[2]
import os
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"""
CREATE TABLE bronze AS
SELECT * FROM read_csv('{landing}/*.ndjson', columns={{'raw':'VARCHAR'}}, delim=chr(1), quote='',
                       escape='', header=false, filename=true, max_line_size=300000000,
                       ignore_errors=true)
""")
con.execute(f"COPY bronze TO '{out}/bronze.parquet' (FORMAT parquet, COMPRESSION zstd)")
con.execute("CREATE TABLE parsed AS SELECT raw, filename, try(json(raw)) AS j FROM bronze")
con.execute("""
CREATE TABLE norm AS
SELECT raw, filename,
  j IS NULL OR json_type(j) <> 'OBJECT' AS malformed,
  nullif(trim(j->>'patient_id'), '') AS patient_id,
  j->>'event_id' AS event_id,
  upper(trim(j->>'event_type')) AS event_type,
  coalesce(
    try_cast(j->>'event_time' AS TIMESTAMPTZ),
    CASE WHEN json_type(j->'event_time') IN ('UBIGINT','BIGINT','DOUBLE')
         THEN CASE WHEN (j->>'event_time')::DOUBLE >= 1e11
                   THEN to_timestamp((j->>'event_time')::DOUBLE / 1000)
                   ELSE to_timestamp((j->>'event_time')::DOUBLE) END END) AS event_time,
  CASE lower(trim(j->>'gender')) WHEN 'm' THEN 'Male' WHEN 'male' THEN 'Male'
       WHEN 'f' THEN 'Female' WHEN 'female' THEN 'Female' ELSE 'Unknown' END AS gender,
  CASE lower(trim(j->>'department'))
       WHEN 'er' THEN 'Emergency' WHEN 'ed' THEN 'Emergency' WHEN 'emergency' THEN 'Emergency'
       WHEN 'icu' THEN 'ICU' WHEN 'surgery' THEN 'Surgery' WHEN 'pediatrics' THEN 'Pediatrics'
       WHEN 'maternity' THEN 'Maternity' WHEN 'oncology' THEN 'Oncology'
       WHEN 'cardiology' THEN 'Cardiology' END AS department,
  try_cast(j->>'hospital_id' AS INTEGER) AS hospital_id,
  CASE WHEN try_cast(j->>'age' AS DOUBLE) BETWEEN 0 AND 120
        AND try_cast(j->>'age' AS DOUBLE) = floor(try_cast(j->>'age' AS DOUBLE))
       THEN try_cast(j->>'age' AS DOUBLE)::INTEGER END AS age,
  CASE WHEN try_cast(j->>'bed_id' AS DOUBLE) > 0 THEN try_cast(j->>'bed_id' AS BIGINT) END AS bed_id,
  j->>'insurance_type' AS insurance_type
FROM parsed
""")
con.execute("""
CREATE TABLE routed AS
SELECT *, (malformed OR patient_id IS NULL OR event_time IS NULL OR department IS NULL
           OR hospital_id IS NULL OR hospital_id NOT BETWEEN 1 AND 7) AS quarantined
FROM norm
""")
con.execute(f"""COPY (SELECT raw, filename FROM routed WHERE quarantined)
                TO '{out}/quarantine.parquet' (FORMAT parquet, COMPRESSION zstd)""")
con.execute(f"""COPY (SELECT * EXCLUDE (raw, malformed, quarantined) FROM routed
                      WHERE NOT quarantined
                      QUALIFY row_number() OVER (PARTITION BY coalesce(event_id, md5(raw))) = 1)
                TO '{out}/silver.parquet' (FORMAT parquet, COMPRESSION zstd)""")
