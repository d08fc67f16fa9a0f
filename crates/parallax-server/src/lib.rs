//! `parallax serve`: an HTTP API, a live event stream and a portal over one store.
//!
//! Everything is read from the store on each request, so several servers can share one
//! PostgreSQL store (with `--no-runner`, workers elsewhere do the work) and what a worker
//! finished is visible on the next request. [`app`] builds the one [`Router`]:
//!
//! - `/api/v1/…` — the JSON API ([`api`]), its event stream ([`events`]) and its OpenAPI
//!   document ([`openapi`]);
//! - `/healthz` (always open) and `/metrics` (Prometheus text, behind the read rule);
//! - `/`, `/jobs/…`, `/executions/…`, `/login` — the portal ([`portal`]): server-rendered
//!   pages that read without JavaScript; one small script adds the live updates.
//!
//! Who may do what is [`auth`]'s: writes need a bearer token (or, in the portal, a signed-in
//! session and its CSRF token); reads need one too unless the server runs with `--public-read`.

pub mod api;
pub mod auth;
pub mod error;
pub mod events;
pub mod metrics;
pub mod openapi;
pub mod portal;
pub mod runner;
pub mod throttle;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parallax_core::catalog::Price;
use parallax_core::{Catalog, limits};
use parallax_store::Store;
use serde::Serialize;
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Auth;
pub use runner::{Runner, RunnerState};

/// What every handler shares: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    store: Store,
    catalog: Catalog,
    catalog_path: PathBuf,
    auth: Auth,
    public_read: bool,
    prices: HashMap<(String, String), Price>,
    horizon: watch::Receiver<i64>,
    runner: Arc<Mutex<RunnerState>>,
    /// Raised when the server stops: open event streams end.
    closing: watch::Sender<bool>,
    throttle: throttle::Throttle,
}

impl AppState {
    /// The state of a server over `store`, validating jobs against `catalog` (read from
    /// `catalog_path`, whose directory anchors local model paths). Starts the task that
    /// moves the event horizon on: call it inside a Tokio runtime.
    pub fn new(store: Store, catalog: Catalog, catalog_path: &Path, auth: Auth, public_read: bool) -> AppState {
        let prices = parallax_app::report::prices_of(&catalog);
        let horizon = events::horizon(store.clone());
        AppState(Arc::new(Shared {
            store,
            catalog,
            catalog_path: catalog_path.to_owned(),
            auth,
            public_read,
            prices,
            horizon,
            runner: Arc::new(Mutex::new(RunnerState::Off)),
            closing: watch::channel(false).0,
            throttle: throttle::Throttle::default(),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    pub fn catalog_path(&self) -> &Path {
        &self.0.catalog_path
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    pub fn public_read(&self) -> bool {
        self.0.public_read
    }

    pub fn prices(&self) -> &HashMap<(String, String), Price> {
        &self.0.prices
    }

    pub fn horizon(&self) -> watch::Receiver<i64> {
        self.0.horizon.clone()
    }

    pub(crate) fn throttle(&self) -> &throttle::Throttle {
        &self.0.throttle
    }

    /// Ends the open event streams (the server is stopping).
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    /// Where the in-process runner reports its state.
    pub fn runner_state(&self) -> Arc<Mutex<RunnerState>> {
        self.0.runner.clone()
    }

    /// A token, a signed-in session, or `--public-read`.
    pub fn can_read(&self, headers: &HeaderMap) -> bool {
        self.0.public_read || self.0.auth.bearer(headers) || self.session(headers).is_some()
    }

    /// The request's valid session cookie.
    pub fn session(&self, headers: &HeaderMap) -> Option<String> {
        self.0.auth.session(headers, now_s())
    }
}

pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The API's routes under `/api/v1`, each with its OpenAPI entry.
pub fn api_routes() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    let v1 = OpenApiRouter::new()
        .routes(routes!(api::create_job, api::list_jobs))
        .routes(routes!(api::get_job))
        .routes(routes!(api::cancel_job))
        .routes(routes!(api::list_executions))
        .routes(routes!(api::get_execution))
        .routes(routes!(api::get_report))
        .routes(routes!(events::events))
        .routes(routes!(openapi::document))
        .fallback(api_not_found);
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).nest("/api/v1", v1)
}

/// The whole service: API, events, metrics, health and portal.
pub fn app(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    api.route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .merge(portal::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), throttle::guard))
        .layer(DefaultBodyLimit::max(limits::MAX_SPEC_FILE_BYTES as usize))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then lets open requests finish
/// (event streams end at once: their clients reconnect elsewhere or later).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = state.clone();
    let shutdown = async move {
        shutdown.await;
        closing.close();
    };
    // The client's address reaches the sign-in throttle.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

async fn api_not_found() -> error::ApiError {
    error::ApiError::not_found("no such route in /api/v1 (see /api/v1/openapi.json)")
}

/// `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the store cannot be read or the runner stopped on an error.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// `off` (`--no-runner`), `running`, `stopped` or `failed: <why>`.
    pub runner: String,
}

/// Always open: says whether the store answers and the runner runs, nothing more.
async fn healthz(State(state): State<AppState>) -> Response {
    let store_ok = state.store().db_now_ms().await.is_ok();
    let runner = state.runner_state().lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (runner, runner_ok) = match runner {
        RunnerState::Off => ("off".to_owned(), true),
        RunnerState::Running { .. } => ("running".to_owned(), true),
        RunnerState::Stopped => ("stopped".to_owned(), true),
        RunnerState::Failed(why) => (format!("failed: {why}"), false),
    };
    let ok = store_ok && runner_ok;
    let health = Health { status: if ok { "ok" } else { "degraded" }, store: state.store().backend(), runner };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(health)).into_response()
}
