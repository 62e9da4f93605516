//! Semantic layer: named KPIs compiled to DataFusion plans (built in a later milestone).
