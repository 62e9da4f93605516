//! How the gold tables are laid out: their partition columns, and whether a table written by
//! an earlier release still has them.

use deltalake::DeltaTable;

use crate::tables::GOLD_SPECS;

/// The partition columns of the gold table `name`.
pub(super) fn partition_columns(name: &str) -> &'static [&'static str] {
    GOLD_SPECS
        .iter()
        .find(|spec| spec.name == name)
        .map_or(&[], |spec| spec.partition_by)
}

/// Whether `table` does not exist yet or is partitioned as its specification says.
pub(super) fn partitioned_as_specified(table: &DeltaTable, name: &str) -> bool {
    table.snapshot().map_or(true, |snapshot| {
        snapshot
            .metadata()
            .partition_columns()
            .iter()
            .map(String::as_str)
            .eq(partition_columns(name).iter().copied())
    })
}
