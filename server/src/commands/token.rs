//! `patientflow token`: a development token for a policy role.

use std::time::Duration;

use patientflow_sql::rbac::Binding;

use super::serve::policies;
use crate::auth::dev::{self, DevKey};
use crate::cli::TokenArgs;
use crate::error::{Error, Result};

/// The token for `role` with `binding`, signed by the development key at `key`.
pub(crate) fn mint(
    key: &DevKey,
    policies: &patientflow_sql::rbac::Policies,
    role: &str,
    binding: &Binding,
    oid: &str,
    ttl: Duration,
) -> Result<String> {
    let value = policies
        .app_role_value(role, binding)
        .map_err(Error::InvalidArgument)?;
    key.mint(oid, &[value], ttl)
}

pub(crate) fn run(args: TokenArgs) -> Result<()> {
    let policies = policies(args.local.policies.as_deref())?;
    let key = DevKey::load_or_create(&args.local.dev_key.unwrap_or_else(dev::default_path))?;
    let binding = Binding {
        hospital: args.hospital,
        department: args.department,
    };
    let token = mint(
        &key,
        &policies,
        &args.role,
        &binding,
        &args.oid,
        Duration::from_secs(args.minutes * 60),
    )?;
    println!("{token}");
    Ok(())
}
