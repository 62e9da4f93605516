//! The producer's own tests: determinism, exact counts, defects, the history's end.

use super::*;
use serde_json::Map;

#[derive(Default)]
struct Memory(Vec<Vec<u8>>);
impl Sink for Memory {
    fn send(&mut self, r: &[u8]) -> Result<()> {
        self.0.push(r.to_vec());
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<String>> {
        Ok(vec!["memory".into()])
    }
}

#[test]
fn deterministic_and_exact_count() {
    let until = 1_795_511_700_000_000;
    let run = |seed| {
        let mut sink = Memory::default();
        let ledger = Producer::new(2_000, Shape::Adt)
            .with_seed(seed)
            .with_until(until)
            .run(&mut sink)
            .unwrap();
        (sink.0, ledger)
    };
    let (a, la) = run(7);
    let (b, _) = run(7);
    let (c, _) = run(8);
    assert_eq!(a.len(), 2_000);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        la.records_in,
        la.silver_rows + la.quarantined + la.duplicates
    );
    assert!(la.rules.values().sum::<u64>() > 0);
}

#[test]
fn a_discharge_before_admission_is_before_the_records_own_admission() {
    // Flat records are snapshots of a stay taken at later events (transfers, discharge);
    // the defect must move the discharge before the admission the record carries.
    let mut sink = Memory::default();
    let ledger = Producer::new(3_000, Shape::Flat)
        .with_seed(3)
        .with_until(1_795_511_700_000_000)
        .with_dirty_rate(0.0)
        .unwrap()
        .with_defect_rate(Defect::DischargeBeforeAdmission, 1.0)
        .unwrap()
        .with_defect_mode(DefectMode::Replace)
        .run(&mut sink)
        .unwrap();
    assert_eq!(ledger.rules["discharge_before_admission"], 3_000);
    let time =
        |v: &Value| chrono::NaiveDateTime::parse_from_str(v.as_str()?, "%Y-%m-%dT%H:%M:%S%.f").ok();
    let mut checked = 0;
    for bytes in &sink.0 {
        let record: Map<String, Value> = serde_json::from_slice(bytes).unwrap();
        // A messy admission (epoch seconds, an offset) is checked by the ingest tests.
        let Some(admission) = time(&record["admission_time"]) else {
            continue;
        };
        let discharge = time(&record["discharge_time"]).unwrap();
        assert!(discharge < admission, "{record:?}");
        checked += 1;
    }
    assert!(checked > 2_800, "{checked}");
}

#[test]
fn the_history_reaches_until_and_a_quarantined_defect_is_resent_clean() {
    let until = 1_795_511_700_000_000;
    for events in [3_000, 30_000] {
        let mut sink = Memory::default();
        let ledger = Producer::new(events, Shape::Adt)
            .with_seed(5)
            .with_until(until)
            .with_dirty_rate(0.0)
            .unwrap()
            .with_defect_rate(Defect::UnknownHospital, 0.1)
            .unwrap()
            .with_lost_rate(0.01)
            .unwrap()
            .run(&mut sink)
            .unwrap();
        assert_eq!(sink.0.len() as u64, events);
        // The last events fall in the hour before `until`, whatever the count.
        let last = chrono::DateTime::parse_from_rfc3339(ledger.last_event.as_deref().unwrap())
            .unwrap()
            .timestamp_micros();
        assert!(last < until && until - last < HOUR, "{last}");
        // Each quarantined record is followed by its clean resend under a new event id.
        let quarantined = ledger.rules["unknown_hospital"];
        assert_eq!(ledger.quarantined, quarantined);
        assert!(quarantined > events / 20, "{quarantined}");
        let records: Vec<Map<String, Value>> = sink
            .0
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        let mut resent = 0;
        for pair in records.windows(2) {
            let bad = &pair[0];
            if bad["hospital_id"]
                .as_i64()
                .is_some_and(|h| (1..=7).contains(&h))
            {
                continue;
            }
            let good = &pair[1];
            assert_eq!(bad["encounter_id"], good["encounter_id"]);
            assert_eq!(bad["event_type"], good["event_type"]);
            assert_ne!(bad["event_id"], good["event_id"]);
            resent += 1;
        }
        // The stream's very last record may be a defective one whose resend did not fit.
        assert!(quarantined - resent <= 1, "{quarantined} {resent}");
        // About 1% of the clean events were never sent, and the ledger says which.
        let lost: u64 = ledger.lost.values().sum();
        assert!(lost > events / 200 && lost < events / 50, "{lost}");
        assert!(ledger.lost.contains_key("DISCHARGE"), "{:?}", ledger.lost);
    }
}

#[test]
fn defect_rate_parsing() {
    assert_eq!(
        parse_defect_rate("invalid_age=0.5").unwrap(),
        (Defect::InvalidAge, 0.5)
    );
    let err = parse_defect_rate("nope=1").unwrap_err().to_string();
    assert!(err.contains("known: malformed_record"), "{err}");
}
