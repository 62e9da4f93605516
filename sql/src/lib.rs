//! SQL front door: validation, RBAC plan rewriting and Synapse T-SQL (built in a later milestone).
