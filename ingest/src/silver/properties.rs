//! Generated bad input for the record parser, the normaliser and the rules: any bytes in,
//! never a panic, every record accounted for (silver + quarantine + duplicates = records in),
//! and every quarantined record keeps its raw text.

use std::sync::Arc;

use chrono_tz::Tz;
use deltalake::arrow::array::{
    Array, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use proptest::prelude::*;

use super::refine::refine;
use super::rules::Context;
use crate::reference::ReferenceData;
use crate::tables::BRONZE_SCHEMA;

const RECEIVED: i64 = 1_795_511_702_000_000;

/// Keys a record may carry: the contract's, with case and spacing variants, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("patient_id".to_string()),
        Just("event_id".to_string()),
        Just("event_type".to_string()),
        Just("event_time".to_string()),
        Just("encounter_id".to_string()),
        Just("hospital_id".to_string()),
        Just("department".to_string()),
        Just("bed_id".to_string()),
        Just("gender".to_string()),
        Just("age".to_string()),
        Just("admission_time".to_string()),
        Just("discharge_time".to_string()),
        Just("insurance_type".to_string()),
        Just("Patient_ID".to_string()),
        "[a-z_ ]{1,12}",
        ".{0,8}",
    ]
}

/// A JSON value of the kinds sources send, plausible and not.
fn value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        (1i64..=7).prop_map(Value::from),
        prop_oneof![
            Just("ICU"),
            Just("Emergency"),
            Just(" cardiology "),
            Just("ADMIT"),
            Just("DISCHARGE"),
            Just("TRANSFER"),
            Just("ARRIVAL"),
            Just("F"),
            Just("m"),
            Just("2026-11-20T12:00:00Z"),
            Just("2026-11-20 12:00"),
            Just("11/20/2026 12:00 PM"),
            Just("1795511702"),
            Just("2099-01-01T00:00:00+14:00"),
            Just("-0001-13-45T99:99:99Z"),
        ]
        .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One raw record: arbitrary bytes, a JSON object of known and unknown keys (some
/// repeated), or such an object cut short.
fn raw() -> impl Strategy<Value = Vec<u8>> {
    let object = || {
        prop::collection::vec((key(), value()), 0..10).prop_map(|members| {
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect();
            format!("{{{}}}", body.join(","))
        })
    };
    // A good ADT event with one member replaced by anything.
    let event = (key(), value(), "[A-Z0-9]{1,6}").prop_map(|(k, v, id)| {
        let mut event = serde_json::json!({
            "event_id": id, "event_type": "ADMIT", "event_time": "2026-11-20T12:00:00Z",
            "encounter_id": "E1", "patient_id": "P1", "hospital_id": 1,
            "department": "ICU", "gender": "F", "age": 40,
        });
        event[k.as_str()] = v;
        event.to_string().into_bytes()
    });
    prop_oneof![
        event,
        prop::collection::vec(any::<u8>(), 0..64),
        object().prop_map(String::into_bytes),
        (object(), any::<prop::sample::Index>()).prop_map(|(text, cut)| {
            let bytes = text.into_bytes();
            let at = cut.index(bytes.len() + 1);
            bytes[..at].to_vec()
        }),
    ]
}

/// A bronze batch of `records` as the landing folder writes them.
fn bronze(records: &[Vec<u8>]) -> RecordBatch {
    let n = records.len();
    RecordBatch::try_new(
        Arc::clone(&BRONZE_SCHEMA),
        vec![
            Arc::new(Int64Array::from(vec![1; n])),
            Arc::new(StringArray::from(vec!["batch"; n])),
            Arc::new(StringArray::from(vec!["landing/events.ndjson"; n])),
            Arc::new(Int32Array::from(vec![None; n])),
            Arc::new(Int64Array::from_iter_values(1..=n as i64)),
            Arc::new(TimestampMicrosecondArray::from(vec![RECEIVED; n]).with_timezone("UTC")),
            Arc::new(BinaryArray::from_iter_values(records)),
        ],
    )
    .expect("a bronze batch")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn any_input_is_accounted_for_and_quarantine_keeps_the_raw_text(
        records in prop::collection::vec(raw(), 0..24),
        repeat in any::<prop::sample::Index>(),
    ) {
        // Send one record twice, as sources do.
        let mut records = records;
        if !records.is_empty() {
            let again = records[repeat.index(records.len())].clone();
            records.push(again);
        }
        let reference = ReferenceData::reference_network().expect("the reference network");
        let mut ctx = Context { received_at: RECEIVED, seen: Default::default() };
        let mut extra = Vec::new();
        let refined = refine(&bronze(&records), &reference, Tz::UTC, &mut ctx, &mut extra)
            .expect("refinement never fails on bad input");
        let counts = &refined.counts;
        prop_assert_eq!(counts.records_in, records.len() as u64);
        prop_assert!(counts.balanced(), "{:?}", counts);
        prop_assert_eq!(refined.silver.num_rows() as u64, counts.silver_rows);
        prop_assert_eq!(refined.quarantine.num_rows() as u64, counts.quarantined);

        let lines = refined.quarantine.column_by_name("source_line").expect("source_line");
        let lines = lines.as_any().downcast_ref::<Int64Array>().expect("Int64");
        let texts = refined.quarantine.column_by_name("raw_text").expect("raw_text");
        let texts = texts.as_any().downcast_ref::<StringArray>().expect("Utf8");
        for i in 0..texts.len() {
            let sent = &records[lines.value(i) as usize - 1];
            prop_assert_eq!(texts.value(i), String::from_utf8_lossy(sent));
        }
    }
}
