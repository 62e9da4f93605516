//! Row-level security: policy files map Entra ID app roles and groups to grants (tables,
//! hospitals and departments, column masks); a principal's grants become a catalog of
//! secured views that every query is planned against.
//!
//! ```text
//!  token ─▶ Principal ─▶ Policies::access ─▶ Access ─▶ SecuredCatalog (scan → filter → masks)
//! ```

mod access;
mod policy;
mod secure;
mod tables;

pub use access::{Access, Grant, Principal, Scope};
pub use policy::{Binding, Mask, Policies, PolicyError, Role, ScopeKind};
pub use secure::AccessDenied;
pub(crate) use secure::SecuredCatalog;
