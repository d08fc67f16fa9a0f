//! The in-process runner of `parallax serve` (unless `--no-runner`): a worker for every
//! region of the server's catalog, claiming from the same store the API reads. Each answer
//! is committed with its built-in label, so the portal shows labels as answers arrive.

use std::path::Path;
use std::sync::{Arc, Mutex};

use parallax_app::{AppError, label, providers};
use parallax_core::{Catalog, RunPolicy};
use parallax_runner::{RunConfig, RunSummary, Scope, Silent, Stop};
use parallax_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The runner as the server sees it: `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerState {
    /// `--no-runner`: workers elsewhere do the work.
    Off,
    Running {
        worker: String,
        regions: Vec<String>,
    },
    /// It stopped on an error; the server goes on serving what the store holds.
    Failed(String),
    Stopped,
}

/// A running runner: stop it with [`Runner::stop`].
pub struct Runner {
    stop: watch::Sender<Stop>,
    task: JoinHandle<Result<RunSummary, AppError>>,
}

impl Runner {
    /// Starts a worker for every region of the catalog. API keys and local models are
    /// read now: a missing key is an error before the server starts.
    pub async fn start(
        store: Store,
        catalog: &Catalog,
        catalog_path: &Path,
        concurrency: Option<usize>,
        state: Arc<Mutex<RunnerState>>,
    ) -> Result<Runner, AppError> {
        let regions: Vec<String> = catalog.regions.keys().cloned().collect();
        let mut default_policy = RunPolicy::default();
        if let Some(c) = concurrency {
            default_policy.concurrency = c;
        }
        let endpoints = providers::region_runtimes(&regions, catalog, catalog_path, default_policy.concurrency)?;
        let id = parallax_app::register_worker(&store, &regions).await?;
        set(&state, RunnerState::Running { worker: id.clone(), regions });
        let (stop, stop_rx) = watch::channel(Stop::Running);
        let config = RunConfig {
            scope: Scope::Worker { default_policy, exit_when_idle: false },
            worker: id.clone(),
            endpoints,
            hooks: Default::default(),
            labeller: label::Builtin::labeller(),
        };
        let task = tokio::spawn(async move {
            let result = parallax_runner::run(store.clone(), config, Arc::new(Silent), stop_rx).await;
            let _ = store.worker_stopped(&id).await;
            match &result {
                Ok(_) => set(&state, RunnerState::Stopped),
                Err(e) => {
                    tracing::error!(error = %e, "the runner stopped");
                    set(&state, RunnerState::Failed(e.to_string()));
                }
            }
            Ok(result?)
        });
        Ok(Runner { stop, task })
    }

    /// Drains: no new calls; calls in flight finish and are recorded. A second call aborts them.
    pub fn stop(&self) {
        let next = if *self.stop.borrow() == Stop::Running { Stop::Drain } else { Stop::Abort };
        let _ = self.stop.send(next);
    }

    /// Waits for the runner to end.
    pub async fn join(self) -> Result<RunSummary, AppError> {
        self.task.await.map_err(AppError::internal)?
    }
}

fn set(state: &Mutex<RunnerState>, to: RunnerState) {
    *state.lock().unwrap_or_else(|p| p.into_inner()) = to;
}
