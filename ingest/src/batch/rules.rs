//! The data-quality rules of the daily batches (contract §4), kept as data like the event
//! rules: each dataset has one table of named rules that refinement evaluates in order and
//! the report and docs are generated from.

use std::collections::BTreeMap;

use chrono_tz::Tz;

use crate::reference::ReferenceData;
use crate::silver::Outcome;
use crate::silver::json::Scalar;
use crate::silver::record::{Field, integer};
use crate::silver::time::parse_timestamp;

/// A batch row as the rules see it.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    /// Fields by lower-cased name; `None`: unreadable.
    pub(crate) fields: Option<BTreeMap<String, String>>,
    pub(crate) reference: &'a ReferenceData,
    pub(crate) tz: Tz,
}

impl Row<'_> {
    /// A field's trimmed value, `None` when missing or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .as_ref()?
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A field as an integer: missing, valid or invalid.
    pub(crate) fn int(&self, name: &str) -> Field<i64> {
        match self.get(name) {
            None => Field::Missing,
            Some(v) => integer(&Scalar::Str(v.into())),
        }
    }

    /// A field as a positive number of hours: missing, valid or invalid.
    pub(crate) fn hours(&self, name: &str) -> Field<f64> {
        match self.get(name).map(str::parse::<f64>) {
            None => Field::Missing,
            Some(Ok(h)) if h.is_finite() && h > 0.0 => Field::Valid(h),
            Some(_) => Field::Invalid,
        }
    }

    /// The open-stay limits of a department row (contract §4, §5.1), each if given and valid.
    pub(crate) fn limits(&self) -> (Option<f64>, Option<f64>) {
        let valid = |name| match self.hours(name) {
            Field::Valid(h) => Some(h),
            _ => None,
        };
        (valid("warn_after_hours"), valid("stale_after_hours"))
    }

    /// A field as a UTC timestamp (contract §2 forms): missing, valid or invalid.
    pub(crate) fn timestamp(&self, name: &str) -> Field<i64> {
        match self.get(name) {
            None => Field::Missing,
            Some(v) => match parse_timestamp(&Scalar::Str(v.into()), self.tz) {
                Ok(Some(t)) => Field::Valid(t),
                Ok(None) => Field::Missing,
                Err(()) => Field::Invalid,
            },
        }
    }
}

/// One named rule of a batch dataset.
#[derive(Debug)]
pub struct BatchRule {
    /// Stable name, used in reports and quarantine reasons.
    pub name: &'static str,
    /// When it fires, in words.
    pub when: &'static str,
    /// What happens to a matching row.
    pub outcome: Outcome,
    pub(crate) check: fn(&Row<'_>) -> bool,
}

/// Columns a department row must have (contract §4).
pub const DEPARTMENT_COLUMNS: [&str; 6] = [
    "hospital_id",
    "hospital_name",
    "department",
    "bed_capacity",
    "staff_count",
    "effective_from",
];

fn positive(f: Field<i64>) -> bool {
    matches!(f, Field::Valid(v) if v > 0 && v <= i64::from(i32::MAX))
}

/// The department reference rules, in evaluation order.
pub static DEPARTMENT_RULES: &[BatchRule] = &[
    BatchRule {
        name: "malformed_record",
        when: "a row that cannot be read: invalid UTF-8 or another number of fields than the header",
        outcome: Outcome::Quarantine,
        check: |r| r.fields.is_none(),
    },
    BatchRule {
        name: "missing_field",
        when: "one of `hospital_id, hospital_name, department, bed_capacity, staff_count, effective_from` missing or empty",
        outcome: Outcome::Quarantine,
        check: |r| r.fields.is_some() && DEPARTMENT_COLUMNS.iter().any(|c| r.get(c).is_none()),
    },
    BatchRule {
        name: "invalid_number",
        when: "`hospital_id` or `bed_capacity` not a positive integer, or `staff_count` not a non-negative integer",
        outcome: Outcome::Quarantine,
        check: |r| {
            let bad = |c: &str, ok: fn(Field<i64>) -> bool| r.get(c).is_some() && !ok(r.int(c));
            bad("hospital_id", positive)
                || bad("bed_capacity", positive)
                || bad(
                    "staff_count",
                    |f| matches!(f, Field::Valid(v) if (0..=i64::from(i32::MAX)).contains(&v)),
                )
        },
    },
    BatchRule {
        name: "invalid_date",
        when: "`effective_from` not a `YYYY-MM-DD` date",
        outcome: Outcome::Quarantine,
        check: |r| {
            r.get("effective_from")
                .is_some_and(|d| d.parse::<chrono::NaiveDate>().is_err())
        },
    },
    BatchRule {
        name: "invalid_limit",
        when: "`warn_after_hours` or `stale_after_hours` present but not a positive number of hours, or `warn_after_hours` not below `stale_after_hours`",
        outcome: Outcome::Quarantine,
        check: |r| {
            let invalid = |name| r.hours(name) == Field::Invalid;
            let inverted = matches!(r.limits(), (Some(w), Some(s)) if w >= s);
            invalid("warn_after_hours") || invalid("stale_after_hours") || inverted
        },
    },
    BatchRule {
        name: "unknown_department",
        when: "`department` is not a canonical department name or alias (any case)",
        outcome: Outcome::Quarantine,
        check: |r| {
            r.get("department")
                .is_some_and(|d| r.reference.canonical_department(d).is_none())
        },
    },
    BatchRule {
        name: "duplicate_row",
        when: "the same normalised row already in silver",
        outcome: Outcome::DropDuplicate,
        check: |_| false,
    },
];

/// The EHR extract rules, in evaluation order.
pub static EHR_RULES: &[BatchRule] = &[
    BatchRule {
        name: "malformed_record",
        when: "a row that cannot be read: invalid UTF-8, another number of fields than the header, or (Parquet) not an object",
        outcome: Outcome::Quarantine,
        check: |r| r.fields.is_none(),
    },
    BatchRule {
        name: "missing_patient_id",
        when: "`patient_id` missing or empty",
        outcome: Outcome::Quarantine,
        check: |r| r.fields.is_some() && r.get("patient_id").is_none(),
    },
    BatchRule {
        name: "invalid_timestamp",
        when: "`updated_at` present but in no accepted timestamp form",
        outcome: Outcome::Quarantine,
        check: |r| r.timestamp("updated_at") == Field::Invalid,
    },
    BatchRule {
        name: "invalid_age",
        when: "`age` present but not an integer in 0..=120",
        outcome: Outcome::NullField { field: "age" },
        check: |r| {
            r.get("age").is_some()
                && !matches!(r.int("age"), Field::Valid(a) if (0..=120).contains(&a))
        },
    },
    BatchRule {
        name: "duplicate_row",
        when: "the same normalised row already in silver",
        outcome: Outcome::DropDuplicate,
        check: |_| false,
    },
];

/// A rule table as Markdown.
pub fn batch_rules_markdown(rules: &[BatchRule]) -> String {
    let mut md = String::from("| # | rule | when | outcome |\n| ---: | --- | --- | --- |\n");
    for (i, r) in rules.iter().enumerate() {
        md.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            i + 1,
            r.name,
            r.when,
            r.outcome.describe()
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_quality_doc_shows_the_batch_rule_tables_of_the_code() {
        let doc = include_str!("../../../docs/data-quality.md");
        for rules in [DEPARTMENT_RULES, EHR_RULES] {
            assert!(
                doc.contains(&batch_rules_markdown(rules)),
                "docs/data-quality.md is stale: paste the output of `patientflow quality rules`"
            );
        }
    }

    #[test]
    fn every_batch_rule_set_ends_with_its_duplicate_rule() {
        for rules in [DEPARTMENT_RULES, EHR_RULES] {
            let last = rules.last().unwrap();
            assert_eq!(last.outcome, Outcome::DropDuplicate);
            assert_eq!(
                rules
                    .iter()
                    .filter(|r| r.outcome == Outcome::DropDuplicate)
                    .count(),
                1
            );
        }
    }
}
