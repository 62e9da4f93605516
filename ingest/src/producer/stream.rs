//! The stream of lines the producer sends, bounded by the number asked for, with the ledger
//! of exactly what was sent.

use super::ledger::{Ledger, OpenStays};
use super::plan::Emit;
use super::{Defect, Sink};
use crate::error::Result;

/// The lines sent so far, and the ledger of them: nothing past `limit` is sent or counted.
pub(super) struct Stream<'a> {
    pub(super) sink: &'a mut dyn Sink,
    pub(super) limit: u64,
    pub(super) ledger: Ledger,
    pub(super) open: OpenStays,
    /// The first and last event time of the records that reach silver.
    pub(super) times: Option<(i64, i64)>,
}

impl Stream<'_> {
    pub(super) fn has_room(&self) -> bool {
        self.ledger.records_in < self.limit
    }

    fn send(&mut self, bytes: &[u8]) -> Result<bool> {
        if !self.has_room() {
            return Ok(false);
        }
        self.sink.send(bytes)?;
        self.ledger.records_in += 1;
        Ok(true)
    }

    /// A record that reaches silver (clean, or kept by a rule); `corrected`: its time is
    /// corrected to its receipt.
    pub(super) fn clean(&mut self, emit: &Emit, bytes: &[u8], corrected: bool) -> Result<()> {
        if self.send(bytes)? {
            self.open.delivered(emit, corrected);
            let (lo, hi) = self.times.unwrap_or((emit.time, emit.time));
            self.times = Some((lo.min(emit.time), hi.max(emit.time)));
        }
        Ok(())
    }

    pub(super) fn quarantined(&mut self, bytes: &[u8]) -> Result<()> {
        if self.send(bytes)? {
            self.ledger.quarantined += 1;
        }
        Ok(())
    }

    pub(super) fn duplicate(&mut self, bytes: &[u8]) -> Result<()> {
        if self.send(bytes)? {
            self.ledger.duplicates += 1;
            *self
                .ledger
                .rules
                .entry(Defect::Duplicate.name().to_string())
                .or_default() += 1;
        }
        Ok(())
    }
}
