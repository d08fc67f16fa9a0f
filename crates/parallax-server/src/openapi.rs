//! The OpenAPI 3.1 document, derived from the handlers' annotations and the API's types
//! (utoipa). Each route is registered with its entry (`utoipa_axum::routes!`, in
//! [`crate::api_routes`]), so the document cannot name a route the router lacks or miss
//! one it serves; `tests/api.rs` checks the answers against the schemas it gives.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "parallax",
        description = "Submit evaluation jobs, read their executions and reports, and follow them live. \
                       Writes need `Authorization: Bearer <token>`; reads too unless the server runs with `--public-read`."
    ),
    components(schemas(error::ApiError, error::Problem)),
    modifiers(&Bearer),
    tags(
        (name = "jobs", description = "Jobs: submit, list, follow, cancel, report"),
        (name = "executions", description = "Each question × model × region × sample, with its request, attempts and result"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi().clone())
}

/// The document of the routes [`crate::app`] serves.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = crate::api_routes().into_openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc
    })
}
