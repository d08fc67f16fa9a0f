//! Drawing the runner's events: a progress bar on stderr (hidden when quiet, when
//! stderr is not a terminal, or with `--no-progress`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parallax_runner::{Event, Reporter, Settled};

pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn new(total: u64, done: u64, visible: bool) -> Bar {
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_position(done);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Bar { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Reporter for Bar {
    fn event(&self, event: Event) {
        match event {
            Event::Settled { settled: Settled::Succeeded | Settled::Failed | Settled::Parked, .. } => self.bar.inc(1),
            Event::Settled { .. } => {}
            Event::Waiting { wait } => {
                self.bar
                    .set_message(format!("waiting {:.0}s for leases held elsewhere or backoffs", wait.as_secs_f64()));
            }
            Event::Draining { in_flight } => {
                self.bar.set_message(format!("stopping: {in_flight} calls in flight (Ctrl-C again to abort them)"));
            }
        }
    }
}
