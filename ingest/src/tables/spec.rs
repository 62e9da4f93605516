//! How a table is documented: its columns with types and descriptions, from which its Arrow
//! schema is built.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::timestamp_type;

/// Column types of the gold tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// 64-bit float.
    Double,
    /// UTF-8 text.
    Text,
    /// Boolean.
    Bool,
    /// Calendar date.
    Date,
    /// UTC timestamp, microseconds.
    Timestamp,
}

impl Ty {
    /// The Arrow type.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Int => DataType::Int32,
            Self::Long => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::Text => DataType::Utf8,
            Self::Bool => DataType::Boolean,
            Self::Date => DataType::Date32,
            Self::Timestamp => timestamp_type(),
        }
    }

    /// The type's name in the docs (Spark / Synapse SQL spelling).
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Long => "bigint",
            Self::Double => "double",
            Self::Text => "string",
            Self::Bool => "boolean",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
        }
    }
}

/// A documented column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// Column name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// What it holds.
    pub doc: &'static str,
}

/// A documented gold table: the single source of its schema and its documentation.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// Table path under the root.
    pub name: &'static str,
    /// What one row is.
    pub grain: &'static str,
    /// What the table is for.
    pub doc: &'static str,
    /// Partition columns.
    pub partition_by: &'static [&'static str],
    /// Columns, in order.
    pub columns: &'static [ColumnSpec],
}

impl TableSpec {
    /// The Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.data_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }
}

pub(super) const fn c(name: &'static str, ty: Ty, doc: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable: false,
        doc,
    }
}

pub(super) const fn n(name: &'static str, ty: Ty, doc: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable: true,
        doc,
    }
}
