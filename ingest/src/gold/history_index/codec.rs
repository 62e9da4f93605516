//! How the index stores a patient's records: one after another in one value, each naming its
//! source (a landing file or a topic partition) by a number the index assigns, since millions
//! of records name a few hundred sources.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::history::{Interner, Kind, Observation};

/// The numbers of the sources named so far, assigned from `next` on.
#[derive(Debug, Default)]
pub(super) struct SourceIds {
    pub(super) ids: HashMap<Arc<str>, u32>,
    pub(super) next: u32,
    /// The sources numbered since the ids were read, to be stored with the records.
    pub(super) added: Vec<(u32, Arc<str>)>,
}

impl SourceIds {
    fn id(&mut self, source: &Arc<str>) -> u32 {
        if let Some(id) = self.ids.get(source) {
            return *id;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(source.clone(), id);
        self.added.push((id, source.clone()));
        id
    }
}

/// The sources by number, for reading records back.
#[derive(Debug, Default)]
pub(super) struct SourceNames(pub(super) HashMap<u32, Arc<str>>);

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    out.push(u8::from(s.is_some()));
    if let Some(s) = s {
        put_str(out, s);
    }
}

fn put_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    out.push(u8::from(v.is_some()));
    if let Some(v) = v {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends one record to `out`, numbering its source in `sources`.
pub(super) fn encode(o: &Observation, sources: &mut SourceIds, out: &mut Vec<u8>) {
    let kind = match o.kind {
        Kind::Flat => 0u8,
        Kind::Arrival => 1,
        Kind::Admit => 2,
        Kind::Transfer => 3,
        Kind::Discharge => 4,
        Kind::Update => 5,
    };
    out.extend_from_slice(&o.received.0.to_le_bytes());
    out.extend_from_slice(&sources.id(&o.received.1).to_le_bytes());
    out.extend_from_slice(&o.received.2.to_le_bytes());
    out.extend([u8::from(o.from_ehr), kind, u8::from(o.corrected)]);
    put_opt_str(out, o.encounter_id.as_deref());
    out.extend_from_slice(&o.hospital_id.to_le_bytes());
    put_str(out, &o.department);
    put_opt_i64(out, o.bed_id);
    put_str(out, &o.gender);
    put_opt_i64(out, o.age.map(i64::from));
    out.extend_from_slice(&o.time.to_le_bytes());
    out.extend_from_slice(&o.received_at.to_le_bytes());
    put_opt_i64(out, o.discharge_time);
    out.extend_from_slice(&(o.attributes.len() as u32).to_le_bytes());
    for a in &o.attributes {
        put_opt_str(out, a.as_deref());
    }
}

/// What is left of an encoded value.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        Some(match self.u8()? {
            0 => None,
            _ => Some(self.str()?.to_string()),
        })
    }
    fn opt_i64(&mut self) -> Option<Option<i64>> {
        Some(match self.u8()? {
            0 => None,
            _ => Some(self.i64()?),
        })
    }
}

/// Reads one record; `None` when the bytes are not one or name a source not in `sources`.
pub(super) fn decode(
    r: &mut Reader<'_>,
    sources: &SourceNames,
    interner: &mut Interner,
) -> Option<Observation> {
    let seq = r.i64()?;
    let source = interner.intern(sources.0.get(&r.u32()?)?);
    let line = r.i64()?;
    let (from_ehr, kind, corrected) = (r.u8()? != 0, r.u8()?, r.u8()? != 0);
    let kind = match kind {
        0 => Kind::Flat,
        1 => Kind::Arrival,
        2 => Kind::Admit,
        3 => Kind::Transfer,
        4 => Kind::Discharge,
        _ => Kind::Update,
    };
    Some(Observation {
        received: (seq, source, line),
        from_ehr,
        kind,
        corrected,
        encounter_id: r.opt_str()?,
        hospital_id: r.i32()?,
        department: r.str()?.to_string(),
        bed_id: r.opt_i64()?,
        gender: r.str()?.to_string(),
        age: r.opt_i64()?.map(|a| a as i32),
        time: r.i64()?,
        received_at: r.i64()?,
        discharge_time: r.opt_i64()?,
        attributes: (0..r.u32()?)
            .map(|_| r.opt_str())
            .collect::<Option<Vec<_>>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(source: &str, line: i64, attributes: Vec<Option<String>>) -> Observation {
        let mut interner = Interner::default();
        Observation {
            received: (7, interner.intern(source), line),
            from_ehr: false,
            kind: Kind::Transfer,
            encounter_id: Some("E1".into()),
            hospital_id: 3,
            department: "ICU".into(),
            bed_id: None,
            gender: "F".into(),
            age: Some(-1),
            time: -5,
            received_at: i64::MAX,
            discharge_time: Some(0),
            corrected: true,
            attributes,
        }
    }

    #[test]
    fn records_decode_as_they_were_encoded_and_a_cut_value_is_an_error() {
        let records = [
            observation(
                "events-000001.ndjson",
                1,
                vec![None, Some("Medicare".into())],
            ),
            observation("events-000002.ndjson", 2, vec![]),
            observation("events-000001.ndjson", 3, vec![]),
        ];
        let mut ids = SourceIds::default();
        let mut bytes = Vec::new();
        records.iter().for_each(|o| encode(o, &mut ids, &mut bytes));
        // Two sources, numbered once each.
        assert_eq!(ids.next, 2);
        assert_eq!(ids.added.len(), 2);
        let names = SourceNames(ids.added.iter().cloned().collect());
        let mut reader = Reader(&bytes);
        let mut interner = Interner::default();
        for expected in &records {
            let got = decode(&mut reader, &names, &mut interner).unwrap();
            assert_eq!(format!("{got:?}"), format!("{expected:?}"));
        }
        assert!(reader.0.is_empty());
        let cut = &bytes[..bytes.len() - 1];
        let mut reader = Reader(cut);
        decode(&mut reader, &names, &mut interner).unwrap();
        assert!(decode(&mut reader, &names, &mut interner).is_some());
        assert!(decode(&mut reader, &names, &mut interner).is_none());
        // A source the index does not name.
        let mut reader = Reader(&bytes);
        assert!(decode(&mut reader, &SourceNames::default(), &mut interner).is_none());
    }
}
