//! A borrowing, allocation-light view of one JSON object: top-level keys with their raw values.
//!
//! Silver only needs the top level of each record, so values stay as raw JSON text and are
//! decoded on demand by the field parsers in [`super::normalize`].

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level members of one JSON object, in document order.
#[derive(Debug)]
pub(crate) struct Members<'a>(pub(crate) Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// Parses `text` as exactly one JSON object; anything else is an error.
    pub(crate) fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The raw value of the last member named `key` (JSON allows repeats; the last wins).
    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push((k.0, v));
                }
                Ok(Members(out))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A decoded scalar JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array, an object, or a number out of range: kept as JSON text.
    Composite(&'a str),
}

impl<'a> Scalar<'a> {
    /// Decodes a raw JSON value without building a `serde_json::Value`.
    pub(crate) fn of(raw: &'a RawValue) -> Self {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => {
                let inner = &text[1..text.len() - 1];
                if inner.contains('\\') {
                    match serde_json::from_str::<String>(text) {
                        Ok(s) => Scalar::Str(Cow::Owned(s)),
                        Err(_) => Scalar::Composite(text),
                    }
                } else {
                    Scalar::Str(Cow::Borrowed(inner))
                }
            }
            Some(b'n') => Scalar::Null,
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'-' | b'0'..=b'9') => match text.parse::<i64>() {
                Ok(i) => Scalar::Int(i),
                Err(_) => match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => Scalar::Float(f),
                    _ => Scalar::Composite(text),
                },
            },
            _ => Scalar::Composite(text),
        }
    }

    /// The value as attribute text: strings as themselves, everything else as JSON text.
    pub(crate) fn into_text(self, raw: &RawValue) -> Option<String> {
        match self {
            Scalar::Null => None,
            Scalar::Str(s) => Some(s.into_owned()),
            _ => Some(raw.get().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_and_everything_else_fails() {
        let m = Members::parse(r#"{"a": 1, "b\u0041": "x\"y", "a": [1,2]}"#).unwrap();
        assert_eq!(m.0.len(), 3);
        assert_eq!(m.get("a").unwrap().get(), "[1,2]");
        assert_eq!(Scalar::of(m.get("bA").unwrap()), Scalar::Str("x\"y".into()));
        for bad in ["[1,2]", "\"text\"", "42", "{\"a\":", "{} x", ""] {
            assert!(Members::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scalars_decode() {
        let m = Members::parse(
            r#"{"i": -3, "f": 54.0, "big": 1e400, "s": "ok", "n": null, "t": true}"#,
        )
        .unwrap();
        assert_eq!(Scalar::of(m.get("i").unwrap()), Scalar::Int(-3));
        assert_eq!(Scalar::of(m.get("f").unwrap()), Scalar::Float(54.0));
        assert!(matches!(
            Scalar::of(m.get("big").unwrap()),
            Scalar::Composite(_)
        ));
        assert_eq!(Scalar::of(m.get("s").unwrap()), Scalar::Str("ok".into()));
        assert_eq!(Scalar::of(m.get("n").unwrap()), Scalar::Null);
        assert_eq!(Scalar::of(m.get("t").unwrap()), Scalar::Bool(true));
    }
}
