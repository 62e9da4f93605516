//! The caller of a data endpoint: `Authorization: Bearer <token>` → its access. Health,
//! readiness, metrics, the OpenAPI document and the dashboard's static files stay open.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use patientflow_sql::Session;
use patientflow_sql::rbac::Access;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::AppState;
use crate::http::error::ApiError;

/// The authenticated caller's access.
#[derive(Debug)]
pub(crate) struct Caller(pub(crate) Arc<Access>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.auth.access(header, "rest").await {
            Ok(access) => Ok(Self(access)),
            Err(e) => Err(ApiError::unauthenticated(e.to_string())),
        }
    }
}

impl Caller {
    /// The caller's session on the engine.
    pub(crate) fn session(self, state: &AppState) -> Result<Session<'_>, ApiError> {
        Ok(state.engine.session(self.0, "rest")?)
    }
}

/// Declares the bearer scheme in the OpenAPI document.
pub(crate) struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A Microsoft Entra ID access token for patientflow (or, on a server started with --dev-tokens, one from `patientflow token`)"))
                    .build(),
            ),
        );
    }
}
