//! Row-level security: policy files map Entra ID app roles and groups to grants (tables,
//! hospitals and departments, column masks); a principal's grants become a catalog of
//! secured views that every query is planned against.
//!
//! ```text
//!  token ─▶ Principal ─▶ Policies::access ─▶ Access ─▶ SecuredCatalog (scan → filter → masks)
//! ```

mod access;
mod mask_key;
mod policy;
mod secure;
mod tables;

pub use access::{Access, Grant, Principal, Scope};
pub use mask_key::MaskKey;
pub(crate) use policy::scope_of;
pub use policy::{Binding, Mask, Policies, PolicyError, Role, ScopeKind};
pub use secure::AccessDenied;
pub(crate) use secure::SecuredCatalog;
pub(crate) use tables::{RowScope, row_scope};
