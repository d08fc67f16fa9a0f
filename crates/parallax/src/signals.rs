//! Stopping on signals: the first Ctrl-C or SIGTERM drains (no new calls; calls in flight
//! finish and are recorded), a second aborts the calls in flight.

use parallax_runner::Stop;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The stop signal a run watches, raised by Ctrl-C or SIGTERM; abort the handle when the
/// run is over.
pub fn stop_on_signals(quiet: bool) -> (watch::Receiver<Stop>, JoinHandle<()>) {
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let task = tokio::spawn(async move {
        if signal().await {
            if !quiet {
                eprintln!(
                    "\nstopping: no new calls; waiting for calls in flight to be recorded (Ctrl-C again to abort them)"
                );
            }
            let _ = stop_tx.send(Stop::Drain);
            if signal().await {
                let _ = stop_tx.send(Stop::Abort);
            }
        }
    });
    (stop_rx, task)
}

/// The next Ctrl-C or SIGTERM; false if neither can be listened for.
async fn signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else { return tokio::signal::ctrl_c().await.is_ok() };
        tokio::select! {
            c = tokio::signal::ctrl_c() => c.is_ok(),
            t = term.recv() => t.is_some(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
