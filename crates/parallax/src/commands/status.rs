//! `parallax status`: where a job stands, per model × region; without an id, the recent jobs.

use parallax_store::ResultFilter;

use crate::cli::{Format, Global, StatusArgs};
use crate::exit::{Code, Failure, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &StatusArgs) -> Outcome {
    let Some(store) = super::open_store_to_read(global).await? else {
        if args.job_id.is_some() {
            return Err(Failure::input(anyhow::anyhow!(
                "no store at `{}`\n\nhint: pass `--db` or set PARALLAX_DB",
                global.db
            )));
        }
        if !global.quiet {
            eprintln!("no jobs yet (no store at `{}`)", global.db);
        }
        return Ok(Code::Success);
    };
    let Some(job_id) = &args.job_id else {
        let jobs = store.jobs(20).await?;
        let text = match args.format {
            Format::Table => {
                let rows: Vec<Vec<String>> = jobs
                    .iter()
                    .map(|j| {
                        let c = &j.counts;
                        vec![
                            j.id.clone(),
                            j.planned.to_string(),
                            c.succeeded.to_string(),
                            c.failed.to_string(),
                            c.parked.to_string(),
                            (c.pending + c.running).to_string(),
                        ]
                    })
                    .collect();
                output::table(&["JOB", "PLANNED", "SUCCEEDED", "FAILED", "PARKED", "PENDING"], &rows)
            }
            format => super::results::serialize(&jobs, format)?,
        };
        output::stdout(&text).map_err(|e| Failure::Internal(e.into()))?;
        return Ok(Code::Success);
    };
    if args.attempts {
        let attempts = store.attempts(job_id, ResultFilter::default()).await?;
        let text = super::results::attempts_text(&attempts, args.format)?;
        output::stdout(&text).map_err(|e| Failure::Internal(e.into()))?;
        return Ok(Code::Success);
    }
    let status = store.status(job_id).await?;
    let text = match args.format {
        Format::Table => {
            let mut rows: Vec<Vec<String>> = status
                .cells
                .iter()
                .map(|((m, r), c)| {
                    let n = &c.counts;
                    vec![
                        m.clone(),
                        r.clone(),
                        n.succeeded.to_string(),
                        n.failed.to_string(),
                        n.parked.to_string(),
                        n.running.to_string(),
                        n.pending.to_string(),
                        c.attempts.to_string(),
                        c.possibly_billed.to_string(),
                        c.model_mismatches.to_string(),
                    ]
                })
                .collect();
            let t = &status.total;
            rows.push(vec![
                "total".into(),
                String::new(),
                t.counts.succeeded.to_string(),
                t.counts.failed.to_string(),
                t.counts.parked.to_string(),
                t.counts.running.to_string(),
                t.counts.pending.to_string(),
                t.attempts.to_string(),
                t.possibly_billed.to_string(),
                t.model_mismatches.to_string(),
            ]);
            format!(
                "job {} ({} executions planned)\n\n{}",
                status.job.id,
                status.job.planned,
                output::table(
                    &[
                        "MODEL",
                        "REGION",
                        "SUCCEEDED",
                        "FAILED",
                        "PARKED",
                        "RUNNING",
                        "PENDING",
                        "ATTEMPTS",
                        "POSSIBLY BILLED",
                        "MODEL MISMATCHES"
                    ],
                    &rows
                )
            )
        }
        Format::Json | Format::Jsonl => serde_json::to_string(&status).map_err(|e| Failure::Internal(e.into()))? + "\n",
        Format::Csv => {
            let rows: Vec<serde_json::Value> = serde_json::to_value(&status)
                .ok()
                .and_then(|v| v.get("cells").cloned())
                .and_then(|c| c.as_array().cloned())
                .unwrap_or_default();
            super::results::csv_text(&rows)?
        }
    };
    output::stdout(&text).map_err(|e| Failure::Internal(e.into()))?;
    Ok(Code::Success)
}
