//! The data-quality rules of contract §3, kept as data.
//!
//! [`RULES`] is the single source: the silver refinement evaluates it in order, the quality
//! report counts by its names, and `patientflow quality rules` renders the documentation
//! from it. A rule is a name, the records it applies to, a check and an outcome.

use super::record::{Field, Record, Shape};

/// Which records a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Every record, parsed or not.
    Any,
    /// Records that are JSON objects, of either shape.
    Object,
    /// Flat admission records only.
    Flat,
    /// ADT events only.
    Adt,
}

/// What happens to a record a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The record goes to `silver/quarantine` with every reason that applies.
    Quarantine,
    /// The record is corrected in place and kept; `flag` is set on the silver row.
    Correct {
        /// Boolean column of silver that marks the correction.
        flag: &'static str,
    },
    /// The named field becomes NULL and the record is kept.
    NullField {
        /// The silver column set to NULL.
        field: &'static str,
    },
    /// The record is dropped as a duplicate and counted (only records that would reach
    /// silver are checked).
    DropDuplicate,
}

impl Outcome {
    /// A short description for reports and docs.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Quarantine => "quarantine".into(),
            Outcome::Correct { flag } => format!("corrected, flag `{flag}`"),
            Outcome::NullField { field } => format!("row kept, `{field}` NULL"),
            Outcome::DropDuplicate => "dropped, counted".into(),
        }
    }
}

/// What a check may look at besides the record.
#[derive(Debug)]
pub(crate) struct Context {
    /// When the record reached bronze, UTC microseconds.
    pub(crate) received_at: i64,
    /// Duplicate keys already in silver (and earlier in this batch).
    pub(crate) seen: super::seen::Seen,
}

/// One named rule.
#[derive(Debug)]
pub struct Rule {
    /// Stable name, used in reports, quarantine reasons and silver flags.
    pub name: &'static str,
    /// When it fires, in words (rendered into the docs).
    pub when: &'static str,
    /// Records it applies to.
    pub applies: Applies,
    /// What happens to a matching record.
    pub outcome: Outcome,
    pub(crate) check: fn(&Record, &Context) -> bool,
    /// Correction applied when the outcome is [`Outcome::Correct`].
    pub(crate) correct: Option<fn(&mut Record, &Context)>,
}

/// How far in the future an admission may be before it is corrected (contract §3).
pub const FUTURE_TOLERANCE_MICROS: i64 = 5 * 60 * 1_000_000;

/// Every rule, in evaluation order: corrections run before the checks that depend on them.
pub static RULES: &[Rule] = &[
    Rule {
        name: "malformed_record",
        when: "not a JSON object (invalid JSON, invalid UTF-8, an array, a string, a truncated line)",
        applies: Applies::Any,
        outcome: Outcome::Quarantine,
        check: |r, _| r.shape.is_none(),
        correct: None,
    },
    Rule {
        name: "missing_patient_id",
        when: "`patient_id` missing or empty",
        applies: Applies::Object,
        outcome: Outcome::Quarantine,
        check: |r, _| r.patient_id.is_none(),
        correct: None,
    },
    Rule {
        name: "missing_admission_time",
        when: "flat record without `admission_time`",
        applies: Applies::Flat,
        outcome: Outcome::Quarantine,
        check: |r, _| r.time == Field::Missing,
        correct: None,
    },
    Rule {
        name: "missing_event_time",
        when: "ADT event without `event_time`",
        applies: Applies::Adt,
        outcome: Outcome::Quarantine,
        check: |r, _| r.time == Field::Missing,
        correct: None,
    },
    Rule {
        name: "unknown_event_type",
        when: "`event_type` present but not ARRIVAL, ADMIT, TRANSFER, DISCHARGE or UPDATE \
               (not in the contract; see docs/data-quality.md)",
        applies: Applies::Adt,
        outcome: Outcome::Quarantine,
        check: |r, _| r.event_type == Field::Invalid,
        correct: None,
    },
    Rule {
        name: "missing_encounter_id",
        when: "ADT event other than UPDATE without `encounter_id`, its stay key \
               (not in the contract; see docs/data-quality.md)",
        applies: Applies::Adt,
        outcome: Outcome::Quarantine,
        check: |r, _| r.encounter_id.is_none() && r.event_type != Field::Valid("UPDATE"),
        correct: None,
    },
    Rule {
        name: "invalid_timestamp",
        when: "a present timestamp that matches no accepted form",
        applies: Applies::Object,
        outcome: Outcome::Quarantine,
        check: |r, _| r.time == Field::Invalid || r.discharge_time == Field::Invalid,
        correct: None,
    },
    Rule {
        name: "future_admission_time",
        when: "admission (or ADT `event_time`) later than `received_at` + 5 minutes",
        applies: Applies::Object,
        outcome: Outcome::Correct {
            flag: "admission_time_corrected",
        },
        check: |r, c| {
            r.time
                .valid()
                .is_some_and(|t| *t > c.received_at + FUTURE_TOLERANCE_MICROS)
        },
        correct: Some(|r, c| {
            r.time = Field::Valid(c.received_at);
            r.time_corrected = true;
        }),
    },
    Rule {
        name: "discharge_before_admission",
        when: "`discharge_time` earlier than the admission time (after correction)",
        applies: Applies::Flat,
        outcome: Outcome::Quarantine,
        check: |r, _| matches!((r.time.valid(), r.discharge_time.valid()), (Some(a), Some(d)) if d < a),
        correct: None,
    },
    Rule {
        name: "unknown_department",
        when: "no canonical department name or alias matches (or it is missing)",
        applies: Applies::Object,
        outcome: Outcome::Quarantine,
        check: |r, _| r.department.valid().is_none(),
        correct: None,
    },
    Rule {
        name: "unknown_hospital",
        when: "`hospital_id` not in the department reference data (or missing)",
        applies: Applies::Object,
        outcome: Outcome::Quarantine,
        check: |r, _| r.hospital_id.valid().is_none(),
        correct: None,
    },
    Rule {
        name: "invalid_age",
        when: "`age` present but not an integer in 0..=120",
        applies: Applies::Object,
        outcome: Outcome::NullField { field: "age" },
        check: |r, _| r.age == Field::Invalid,
        correct: None,
    },
    Rule {
        name: "invalid_bed",
        when: "`bed_id` present but not a positive integer",
        applies: Applies::Object,
        outcome: Outcome::NullField { field: "bed_id" },
        check: |r, _| r.bed_id == Field::Invalid,
        correct: None,
    },
    Rule {
        name: "duplicate_event",
        when: "same `event_id` already seen; for flat records, identical normalised content",
        applies: Applies::Object,
        outcome: Outcome::DropDuplicate,
        check: |r, c| c.seen.contains(&r.dedupe_key),
        correct: None,
    },
];

impl Rule {
    fn applies_to(&self, shape: Option<Shape>) -> bool {
        match (self.applies, shape) {
            (Applies::Any, _) => true,
            (_, None) => false,
            (Applies::Object, Some(_)) => true,
            (Applies::Flat, Some(s)) => s == Shape::Flat,
            (Applies::Adt, Some(s)) => s == Shape::Adt,
        }
    }
}

/// Where one record ends up (contract §3: exactly one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    Silver,
    Quarantine,
    Duplicate,
}

/// The outcome for one record and every rule (index into [`RULES`]) that matched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) destination: Destination,
    pub(crate) matched: Vec<usize>,
}

/// Runs every rule over `record` (applying corrections) and records its key as seen when it
/// goes to silver. A dropped duplicate reports only the duplicate rule: its other findings
/// were counted with the original.
pub(crate) fn evaluate(record: &mut Record, ctx: &mut Context) -> Verdict {
    let mut matched = Vec::new();
    let mut quarantined = false;
    for (i, rule) in RULES.iter().enumerate() {
        if !rule.applies_to(record.shape) {
            continue;
        }
        if rule.outcome == Outcome::DropDuplicate && quarantined {
            continue;
        }
        if !(rule.check)(record, ctx) {
            continue;
        }
        match rule.outcome {
            Outcome::DropDuplicate => {
                return Verdict {
                    destination: Destination::Duplicate,
                    matched: vec![i],
                };
            }
            Outcome::Quarantine => quarantined = true,
            Outcome::Correct { .. } => {
                if let Some(correct) = rule.correct {
                    correct(record, ctx);
                }
            }
            Outcome::NullField { .. } => {}
        }
        matched.push(i);
    }
    let destination = if quarantined {
        Destination::Quarantine
    } else {
        ctx.seen.insert(record.dedupe_key);
        Destination::Silver
    };
    Verdict {
        destination,
        matched,
    }
}

/// The rule table as Markdown, for `docs/data-quality.md` and `patientflow quality rules`.
pub fn rules_markdown() -> String {
    let mut out = String::from(
        "| # | rule | applies to | when | outcome |\n| --- | --- | --- | --- | --- |\n",
    );
    for (i, r) in RULES.iter().enumerate() {
        let applies = match r.applies {
            Applies::Any => "every record",
            Applies::Object => "JSON objects",
            Applies::Flat => "flat records",
            Applies::Adt => "ADT events",
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            i + 1,
            r.name,
            applies,
            r.when,
            r.outcome.describe()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::ReferenceData;
    use crate::silver::seen::Seen;
    use chrono_tz::Tz;

    /// The index of a rule by name.
    fn rule_index(name: &str) -> Option<usize> {
        RULES.iter().position(|r| r.name == name)
    }

    fn run(json: &str, received_at: i64, seen: &[u128]) -> (Verdict, Record) {
        let reference = ReferenceData::reference_network().unwrap();
        let mut r = Record::parse(json.as_bytes(), &reference, Tz::UTC);
        let mut ctx = Context {
            received_at,
            seen: Seen::in_memory(seen.iter().copied().collect()),
        };
        (evaluate(&mut r, &mut ctx), r)
    }

    fn names(v: &[usize]) -> Vec<&'static str> {
        v.iter().map(|i| RULES[*i].name).collect()
    }

    const NOW: i64 = 1_795_511_702_000_000;

    #[test]
    fn every_reason_is_listed() {
        let (v, _) = run(
            r#"{"patient_id":"","department":"X","hospital_id":42}"#,
            NOW,
            &[],
        );
        assert_eq!(v.destination, Destination::Quarantine);
        assert_eq!(
            names(&v.matched),
            [
                "missing_patient_id",
                "missing_admission_time",
                "unknown_department",
                "unknown_hospital"
            ]
        );
    }

    #[test]
    fn future_admission_is_corrected_before_discharge_check() {
        // Before correction the discharge (2027) precedes the admission (2099); after it the
        // admission is `received_at` (2026) and the stay is consistent.
        let json = r#"{"patient_id":"p","department":"ICU","hospital_id":1,
            "admission_time":"2099-01-01T00:00:00Z","discharge_time":"2027-01-01T00:00:00Z"}"#;
        let (v, _) = run(json, NOW, &[]);
        assert_eq!(v.destination, Destination::Silver);
        assert_eq!(names(&v.matched), ["future_admission_time"]);
        let json = r#"{"patient_id":"p","department":"ICU","hospital_id":1,
            "admission_time":"2099-01-01T00:00:00Z","discharge_time":"2026-01-01T00:00:00Z"}"#;
        let (v, _) = run(json, NOW, &[]);
        assert_eq!(v.destination, Destination::Quarantine);
        assert_eq!(
            names(&v.matched),
            ["future_admission_time", "discharge_before_admission"]
        );
        let json = r#"{"patient_id":"p","department":"ICU","hospital_id":1,"age":"old",
            "admission_time":"2099-01-01T00:00:00Z"}"#;
        let (v, r) = run(json, NOW, &[]);
        assert_eq!(v.destination, Destination::Silver);
        assert_eq!(names(&v.matched), ["future_admission_time", "invalid_age"]);
        assert_eq!(r.time, Field::Valid(NOW));
        assert!(r.time_corrected);
    }

    #[test]
    fn duplicates_only_among_clean_records() {
        let json = r#"{"patient_id":"p","department":"ICU","hospital_id":1,"admission_time":"2026-01-01T00:00:00Z"}"#;
        let (v, r) = run(json, NOW, &[]);
        assert_eq!(
            v,
            Verdict {
                destination: Destination::Silver,
                matched: vec![]
            }
        );
        let (v, _) = run(json, NOW, &[r.dedupe_key]);
        let dup = rule_index("duplicate_event").unwrap();
        assert_eq!(
            v,
            Verdict {
                destination: Destination::Duplicate,
                matched: vec![dup]
            }
        );
        let (v, _) = run(r#"[1]"#, NOW, &[]);
        assert_eq!(
            v,
            Verdict {
                destination: Destination::Quarantine,
                matched: vec![0]
            }
        );
    }

    #[test]
    fn the_data_quality_doc_shows_the_rule_table_of_the_code() {
        let doc = include_str!("../../../docs/data-quality.md");
        assert!(
            doc.contains(&rules_markdown()),
            "docs/data-quality.md is stale: paste the output of `patientflow quality rules`"
        );
    }

    #[test]
    fn rules_render_as_markdown() {
        let md = rules_markdown();
        for r in RULES {
            assert!(md.contains(r.name));
        }
    }
}
