//! The in-process runner of `parallax serve` (unless `--no-runner`): a worker for every
//! region of the server's catalog, claiming from the same store the API reads. Each answer
//! is committed with its built-in label, so the portal shows labels as answers arrive; a
//! sweep now and then labels what came without one (answers of older workers, a label the
//! classifier failed to give).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parallax_app::{AppError, label, providers};
use parallax_core::{Catalog, RunPolicy};
use parallax_runner::{Event, Reporter, RunConfig, RunSummary, Scope, Settled, Stop};
use parallax_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the jobs this runner answered are swept for answers without a label (a
/// sweep of a job with none costs two counts).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

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
        let answered = Arc::new(Answered::default());
        let sweeper = tokio::spawn(sweep(store.clone(), answered.clone()));
        let config = RunConfig {
            scope: Scope::Worker { default_policy, exit_when_idle: false },
            worker: id.clone(),
            endpoints,
            hooks: Default::default(),
            labeller: label::Builtin::labeller(),
        };
        let task = tokio::spawn(async move {
            let result = parallax_runner::run(store.clone(), config, answered.clone(), stop_rx).await;
            sweeper.abort();
            let _ = store.worker_stopped(&id).await;
            // The last sweep, before the runner says it stopped.
            for job in answered.take() {
                label::label_job(&store, &job, false).await?;
            }
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

/// Jobs with answers since the last sweep.
#[derive(Default)]
struct Answered(Mutex<BTreeSet<String>>);

impl Answered {
    fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Reporter for Answered {
    fn event(&self, event: Event) {
        if let Event::Settled { job_id, settled: Settled::Succeeded, .. } = event {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(job_id);
        }
    }
}

async fn sweep(store: Store, answered: Arc<Answered>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        for job in answered.take() {
            if let Err(e) = label::label_job(&store, &job, false).await {
                tracing::warn!(error = %e, job = %job, "labelling failed; it is tried again at the next sweep");
                answered.0.lock().unwrap_or_else(|p| p.into_inner()).insert(job);
            }
        }
    }
}
