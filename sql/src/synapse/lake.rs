//! The storage side of a plan: the master key, the credential and data source at the table
//! root, the schemas, the private external tables, the gold views over `OPENROWSET` and the
//! cleanup of views whose tables are gone.

use super::{
    Batch, Credential, GOLD_SCHEMA, LakeTable, MASK_INNER_PLACEHOLDER, MASK_OUTER_PLACEHOLDER,
    PRIVATE_SCHEMA, PlanError, SAS_PLACEHOLDER, Target, ident, literal, sql_type,
};

/// Name of the credential, the data source and the file format.
pub(super) const SOURCE: &str = "patientflow_lake";
/// The mask key view in the private schema.
pub(super) const MASK_KEY_VIEW: &str = "mask_key";
/// Reader features serverless reads; any other is refused.
const READABLE_READER_VERSION: i32 = 1;

/// A mirrored column: its name in the file's case and its T-SQL type.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) sql_type: String,
    pub(super) integer: bool,
}

/// A gold table that serverless can read, with its columns mapped.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// Path under the root, `gold/<table>`.
    pub(super) path: String,
    /// The view's name, `<table>`.
    pub(super) name: String,
    pub(super) columns: Vec<Column>,
}

impl Table {
    pub(super) fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c.name == column)
    }

    pub(super) fn column(&self, column: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == column)
    }
}

/// The gold tables of a root, checked and mapped.
#[derive(Debug)]
pub(super) struct Lake {
    pub(super) tables: Vec<Table>,
}

impl Lake {
    pub(super) fn new(gold: &[&LakeTable]) -> Result<Self, PlanError> {
        let mut tables = Vec::with_capacity(gold.len());
        for t in gold {
            readable(t)?;
            let columns = t
                .schema
                .fields()
                .iter()
                .map(|f| {
                    let sql_type = sql_type(f.data_type()).map_err(|reason| {
                        PlanError(format!(
                            "table `{}`, column `{}`: {reason}; Synapse serverless cannot read it",
                            t.name,
                            f.name()
                        ))
                    })?;
                    Ok(Column {
                        name: f.name().clone(),
                        sql_type,
                        integer: f.data_type().is_integer(),
                    })
                })
                .collect::<Result<Vec<_>, PlanError>>()?;
            let name = t.name.trim_start_matches("gold/").to_string();
            tables.push(Table {
                path: t.name.clone(),
                name,
                columns,
            });
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { tables })
    }

    pub(super) fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The master key, the credential, the data source and the Delta file format.
    pub(super) fn setup(&self, target: &Target) -> Vec<Batch> {
        let credential = match target.credential {
            Credential::ManagedIdentity => "IDENTITY = 'Managed Identity'".to_string(),
            Credential::Sas => {
                format!("IDENTITY = 'SHARED ACCESS SIGNATURE', SECRET = '{SAS_PLACEHOLDER}'")
            }
        };
        let location = target.location.trim_end_matches('/').replace('\'', "''");
        let source = ident(SOURCE);
        let format = format!("{SOURCE}_delta");
        vec![
            Batch {
                name: "master key".into(),
                sql: "IF NOT EXISTS (SELECT * FROM sys.symmetric_keys WHERE name = '##MS_DatabaseMasterKey##')\n    CREATE MASTER KEY;".into(),
            },
            created_once(
                "credential",
                SOURCE,
                "sys.database_scoped_credentials",
                &format!("CREATE DATABASE SCOPED CREDENTIAL {source} WITH {credential};"),
            ),
            created_once(
                "data source",
                SOURCE,
                "sys.external_data_sources",
                &format!("CREATE EXTERNAL DATA SOURCE {source} WITH (LOCATION = '{location}', CREDENTIAL = {source});"),
            ),
            created_once(
                "file format",
                &format,
                "sys.external_file_formats",
                &format!("CREATE EXTERNAL FILE FORMAT {} WITH (FORMAT_TYPE = DELTA);", ident(&format)),
            ),
        ]
    }

    /// One external table per gold table in the private schema: what the role views read, so
    /// their members need no bulk-operations permission. Recreated when its columns change
    /// (an external table cannot be altered).
    pub(super) fn external_tables(&self) -> Vec<Batch> {
        self.tables
            .iter()
            .map(|t| {
                let object = format!("{}.{}", ident(PRIVATE_SCHEMA), ident(&t.name));
                let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
                let sql = format!(
                    "IF OBJECT_ID({obj}) IS NOT NULL\n    AND (SELECT STRING_AGG(CAST(name AS nvarchar(max)), N',') WITHIN GROUP (ORDER BY column_id) FROM sys.columns WHERE object_id = OBJECT_ID({obj})) <> {names}\n    DROP EXTERNAL TABLE {object};\nIF OBJECT_ID({obj}) IS NULL\n    CREATE EXTERNAL TABLE {object} (\n{columns}\n    ) WITH (LOCATION = '{path}/', DATA_SOURCE = {source}, FILE_FORMAT = {format});",
                    obj = literal(&object),
                    names = literal(&names.join(",")),
                    columns = column_list(&t.columns, "        "),
                    path = t.path,
                    source = ident(SOURCE),
                    format = ident(&format!("{SOURCE}_delta")),
                );
                Batch {
                    name: format!("external table {PRIVATE_SCHEMA}.{}", t.name),
                    sql,
                }
            })
            .collect()
    }

    /// One view per gold table over `OPENROWSET … FORMAT = 'DELTA'`, every column typed.
    pub(super) fn gold_views(&self) -> Vec<Batch> {
        self.tables
            .iter()
            .map(|t| {
                let sql = format!(
                    "CREATE OR ALTER VIEW {schema}.{name} AS\nSELECT *\nFROM OPENROWSET(\n    BULK '{path}/',\n    DATA_SOURCE = '{SOURCE}',\n    FORMAT = 'DELTA'\n) WITH (\n{columns}\n) AS [rows];",
                    schema = ident(GOLD_SCHEMA),
                    name = ident(&t.name),
                    path = t.path,
                    columns = column_list(&t.columns, "    "),
                );
                Batch {
                    name: format!("view {GOLD_SCHEMA}.{}", t.name),
                    sql,
                }
            })
            .collect()
    }
}

/// `create`, run when the catalog view `catalog` has no object `name`.
fn created_once(kind: &str, name: &str, catalog: &str, create: &str) -> Batch {
    Batch {
        name: format!("{kind} {name}"),
        sql: format!(
            "IF NOT EXISTS (SELECT * FROM {catalog} WHERE name = {})\n    {create}",
            literal(name)
        ),
    }
}

/// Refuses a table whose protocol or features serverless cannot read.
fn readable(t: &LakeTable) -> Result<(), PlanError> {
    let p = &t.protocol;
    let features: Vec<&str> = p
        .reader_features
        .iter()
        .chain(p.writer_features.iter().filter(|f| {
            matches!(
                f.as_str(),
                "deletionVectors" | "columnMapping" | "v2Checkpoint" | "timestampNtz"
            )
        }))
        .map(String::as_str)
        .collect();
    if p.min_reader_version > READABLE_READER_VERSION || !features.is_empty() {
        return Err(PlanError(format!(
            "table `{}` needs Delta reader version {} (features: {}); Synapse serverless reads reader version 1 without deletion vectors, column mapping or v2 checkpoints. Rewrite it at reader 1 / writer 2 (patientflow's own writes are), then plan again",
            t.name,
            p.min_reader_version,
            if features.is_empty() {
                "none".to_string()
            } else {
                features.join(", ")
            }
        )));
    }
    Ok(())
}

fn column_list(columns: &[Column], indent: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{indent}{} {}", ident(&c.name), c.sql_type))
        .collect::<Vec<_>>()
        .join(",\n")
}

/// A schema, created if missing (through `EXEC`, so `CREATE SCHEMA` stands alone).
pub(super) fn create_schema(schema: &str) -> Batch {
    Batch {
        name: format!("schema {schema}"),
        sql: format!(
            "IF SCHEMA_ID({name}) IS NULL\n    EXEC(N'CREATE SCHEMA {id}');",
            name = literal(schema),
            id = ident(schema).replace('\'', "''")
        ),
    }
}

/// The mask key's padded halves, as a view in the private schema that the role views read
/// (ownership chaining: members need no permission on it). The key is filled in at apply.
pub(super) fn mask_key_view() -> Batch {
    Batch {
        name: format!("view {PRIVATE_SCHEMA}.{MASK_KEY_VIEW}"),
        sql: format!(
            "CREATE OR ALTER VIEW {schema}.{view} AS\nSELECT CONVERT(varbinary(64), '{MASK_INNER_PLACEHOLDER}', 2) AS [inner_pad],\n       CONVERT(varbinary(64), '{MASK_OUTER_PLACEHOLDER}', 2) AS [outer_pad];",
            schema = ident(PRIVATE_SCHEMA),
            view = ident(MASK_KEY_VIEW),
        ),
    }
}

/// Drops the views of patientflow's own `schemas` that the plan does not create (tables that
/// no longer exist, roles removed); views in any other schema are never touched.
pub(super) fn drop_stale_views(schemas: &[String], kept: &[(String, String)]) -> Batch {
    let schemas: Vec<String> = schemas.iter().map(|s| literal(s)).collect();
    let kept: Vec<String> = kept
        .iter()
        .map(|(s, v)| literal(&format!("{s}.{v}")))
        .collect();
    Batch {
        name: "drop stale views".into(),
        sql: format!(
            "DECLARE @drop nvarchar(max);\nSELECT @drop = STRING_AGG(CAST(N'DROP VIEW ' + QUOTENAME(s.name) + N'.' + QUOTENAME(v.name) AS nvarchar(max)), N'; ')\nFROM sys.views AS v\nJOIN sys.schemas AS s ON s.schema_id = v.schema_id\nWHERE s.name IN ({schemas})\n  AND s.name + N'.' + v.name NOT IN ({kept});\nIF @drop IS NOT NULL\n    EXEC sp_executesql @drop;",
            schemas = schemas.join(", "),
            kept = kept.join(",\n      "),
        ),
    }
}
