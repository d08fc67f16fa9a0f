//! Drawing the runner's events: a progress bar on stderr (hidden when quiet, when
//! stderr is not a terminal, or with `--no-progress`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parallax_runner::{Event, Reporter, Settled};

pub struct Bar {
    bar: ProgressBar,
    /// With the bar hidden (and not quiet), waits and reclaims are said on stderr instead,
    /// each wait once per set of holders.
    say: bool,
    said: std::sync::Mutex<Option<Vec<String>>>,
}

impl Bar {
    pub fn new(total: u64, done: u64, visible: bool, quiet: bool) -> Bar {
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_position(done);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Bar { bar, say: !visible && !quiet, said: std::sync::Mutex::new(None) }
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
            Event::Waiting { wait, held_by } => {
                let why = if held_by.is_empty() {
                    "for backoffs or leases to end".to_owned()
                } else {
                    format!("for leases held by {} (another run or worker)", held_by.join(", "))
                };
                let until = utc_clock_after(wait);
                self.bar.set_message(format!("waiting {:.0}s {why}", wait.as_secs_f64()));
                if self.say {
                    let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
                    if said.as_ref() != Some(&held_by) {
                        eprintln!("waiting {why}, until about {until} ({:.0}s)", wait.as_secs_f64());
                        *said = Some(held_by);
                    }
                }
            }
            Event::Reclaimed { job_id, worker, executions } => {
                let line = format!(
                    "{executions} leases of job {job_id} held by {worker}, a process of this host that is gone: claimed again now (their calls count as possibly billed)"
                );
                if self.say {
                    eprintln!("{line}");
                } else {
                    self.bar.println(line);
                }
            }
            Event::Draining { in_flight } => {
                self.bar.set_message(format!("stopping: {in_flight} calls in flight (Ctrl-C again to abort them)"));
            }
        }
    }
}

/// The time `wait` from now as `HH:MM:SS UTC` (a local time would need a time zone database).
fn utc_clock_after(wait: std::time::Duration) -> String {
    let at = std::time::SystemTime::now() + wait;
    let secs = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day % 3600 / 60, day % 60)
}
