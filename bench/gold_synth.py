"""Synthetic gold tables for the query benchmark (bench/query.sh): N stays over the year up to
2026-11-20 in the reference network (7 hospitals x 7 departments), with the gold schemas
(gold/fact_admission, gold/dim_patient, gold/fact_census_hourly), written as Delta tables with
delta-rs's Python writer. The pipeline itself tops out near 1.2M stays on this machine
(BENCHMARKS.md, gold), so 10M stays are generated here; the numbers are realistic in shape
(length of stay, ED waits, ages, genders), not a simulation of flows.

usage: gold_synth.py <root> <stays>
"""
import sys
import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
US = 1_000_000
AS_OF = np.datetime64("2026-11-20T12:00:00", "us").astype(np.int64)
START = AS_OF - 365 * 24 * 3600 * US
DEPTS = ["Emergency", "Surgery", "ICU", "Pediatrics", "Maternity", "Oncology", "Cardiology"]
WEIGHTS = [0.40, 0.15, 0.07, 0.10, 0.10, 0.08, 0.10]
CAPACITY = [40, 60, 20, 30, 25, 30, 35]
TS = pa.timestamp("us", tz="UTC")

hospital = rng.integers(1, 8, n).astype(np.int32)
dept = rng.choice(len(DEPTS), n, p=WEIGHTS)
admit = rng.integers(START, AS_OF, n)
los_h = rng.gamma(2.0, 30.0, n)
discharge = admit + (los_h * 3600 * US).astype(np.int64)
open_ = discharge > AS_OF
age = rng.integers(0, 100, n).astype(np.int32)
age_null = rng.random(n) < 0.02
ed = dept == 0
wait = rng.gamma(2.0, 45.0, n)
patients = np.arange(n) // 3


def days(t):
    return np.datetime_as_string(t.astype("datetime64[us]"), unit="D")


def date_key(t):
    return np.char.replace(days(t), "-", "").astype(np.int32)


dept_names = np.array(DEPTS)[dept]
stays = pa.table({
    "stay_key": pa.array(np.char.add("s", np.arange(n).astype(str))),
    "record_kind": pa.array(np.full(n, "adt")),
    "encounter_id": pa.array(np.char.add("e", np.arange(n).astype(str))),
    "patient_id": pa.array(np.char.add("p", patients.astype(str))),
    "patient_sk": pa.array(patients.astype(np.int64)),
    "hospital_id": pa.array(hospital),
    "department_sk": pa.array((hospital * 10 + dept).astype(np.int64)),
    "department": pa.array(dept_names),
    "discharge_department": pa.array(dept_names),
    "bed_id": pa.array(rng.integers(1, 60, n).astype(np.int64)),
    "admission_time": pa.array(admit, type=TS),
    "discharge_time": pa.array(np.where(open_, 0, discharge), type=TS, mask=open_),
    "admission_date_key": pa.array(date_key(admit)),
    "discharge_date_key": pa.array(date_key(discharge), mask=open_),
    "length_of_stay_hours": pa.array(los_h, mask=open_),
    "is_currently_admitted": pa.array(open_),
    "age_at_admission": pa.array(age, mask=age_null),
    "ed_arrival_time": pa.array(admit - (wait * 60 * US).astype(np.int64), type=TS, mask=~ed),
    "ed_wait_minutes": pa.array(wait, mask=~ed),
    "admission_time_corrected": pa.array(np.zeros(n, dtype=bool)),
    "transfers": pa.array(np.zeros(n, dtype=np.int32)),
    "as_of": pa.array(np.full(n, AS_OF), type=TS),
    "admission_month": pa.array((date_key(admit) // 100).astype(np.int32)),
})
write_deltalake(f"{root}/gold/fact_admission", stays, partition_by=["admission_month"], mode="overwrite")

m = int(patients[-1]) + 1
patient_ids = np.arange(m)
dim_patient = pa.table({
    "patient_sk": pa.array(patient_ids.astype(np.int64)),
    "patient_id": pa.array(np.char.add("p", patient_ids.astype(str))),
    "gender": pa.array(rng.choice(np.array(["Female", "Male", "Unknown"]), m, p=[0.51, 0.48, 0.01])),
    "age": pa.array(rng.integers(0, 100, m).astype(np.int32)),
    "valid_from": pa.array(np.full(m, START), type=TS),
    "valid_to": pa.array(np.zeros(m, dtype=np.int64), type=TS, mask=np.ones(m, dtype=bool)),
    "is_current": pa.array(np.ones(m, dtype=bool)),
})
write_deltalake(f"{root}/gold/dim_patient", dim_patient, mode="overwrite")

hours = np.arange(START, AS_OF, 3600 * US)
h = len(hours)
rows = h * 49
hour = np.repeat(hours, 49)
hosp = np.tile(np.repeat(np.arange(1, 8), 7), h).astype(np.int32)
d = np.tile(np.arange(7), 7 * h)
cap = np.array(CAPACITY)[d].astype(np.int32)
census = np.maximum(0, (cap * rng.normal(0.8, 0.15, rows))).astype(np.int32)
census_t = pa.table({
    "hour_start": pa.array(hour, type=TS),
    "date_key": pa.array(date_key(hour)),
    "hour": pa.array(((hour // (3600 * US)) % 24).astype(np.int32)),
    "department_sk": pa.array((hosp * 10 + d).astype(np.int64)),
    "hospital_id": pa.array(hosp),
    "department": pa.array(np.array(DEPTS)[d]),
    "census": pa.array(census),
    "bed_capacity": pa.array(cap),
    "occupancy_rate": pa.array(census / cap),
    "occupied_bed_hours": pa.array(census.astype(np.float64)),
    "admissions": pa.array(rng.integers(0, 4, rows).astype(np.int32)),
    "discharges": pa.array(rng.integers(0, 4, rows).astype(np.int32)),
    "month_key": pa.array((date_key(hour) // 100).astype(np.int32)),
})
write_deltalake(f"{root}/gold/fact_census_hourly", census_t, partition_by=["month_key"], mode="overwrite")
print(f"{n} stays, {m} patients, {rows} census rows under {root}")
