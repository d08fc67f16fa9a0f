//! `parallax workers`: live and recently seen workers — id, host, regions, version,
//! started, last heartbeat, calls in flight.

use crate::cli::{Format, Global, WorkersArgs};
use crate::exit::{Code, Failure, Outcome};
use crate::output;

/// A worker beats at least every 5 s; one silent for longer than this is not live.
const LIVE_MS: i64 = 15_000;

pub async fn run(global: &Global, args: &WorkersArgs) -> Outcome {
    let Some(store) = super::open_store_to_read(global).await? else {
        if !global.quiet {
            eprintln!("no workers yet (no store at `{}`)", global.db);
        }
        return Ok(Code::Success);
    };
    let now = store.now_ms();
    let since = if args.all { i64::MIN } else { now - 3_600_000 };
    let workers = store.workers(since).await?;
    let text = match args.format {
        Format::Table => {
            let rows: Vec<Vec<String>> = workers
                .iter()
                .map(|w| {
                    let state = match w.stopped_at_ms {
                        Some(_) => "stopped",
                        None if now - w.last_seen_ms <= LIVE_MS => "live",
                        None => "silent",
                    };
                    vec![
                        w.id.clone(),
                        state.to_owned(),
                        w.regions.join(","),
                        w.version.clone(),
                        ago(now - w.started_at_ms),
                        ago(now - w.last_seen_ms),
                        w.in_flight.to_string(),
                    ]
                })
                .collect();
            output::table(&["WORKER", "STATE", "REGIONS", "VERSION", "STARTED", "LAST SEEN", "IN FLIGHT"], &rows)
        }
        format => {
            #[derive(serde::Serialize)]
            struct Row<'a> {
                #[serde(flatten)]
                worker: &'a parallax_store::WorkerRow,
                live: bool,
            }
            let rows: Vec<Row> = workers
                .iter()
                .map(|w| Row { worker: w, live: w.stopped_at_ms.is_none() && now - w.last_seen_ms <= LIVE_MS })
                .collect();
            super::results::serialize(&rows, format)?
        }
    };
    output::stdout(&text).map_err(|e| Failure::Internal(e.into()))?;
    Ok(Code::Success)
}

fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}
