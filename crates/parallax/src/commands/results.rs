//! `parallax results`: the executions of a job, in the output contract's shape.
//!
//! `--format jsonl` writes one object per execution with at least: `job_id, question_id,
//! model_id, region, sample, status, attempts, request_body, request, request_sha256,
//! requested_model, reported_model, model_mismatch, response_text, finish_reason, usage,
//! latency_ms, error, label, blocked, block_reason`; with `--raw` also `raw_response,
//! response_headers, system_fingerprint`. Other tools read it: fields are added, never renamed.

use parallax_store::{AttemptRow, ResultFilter};
use serde::Serialize;

use crate::cli::{Format, Global, ResultsArgs};
use crate::exit::{Code, Failure, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &ResultsArgs) -> Outcome {
    let Some(store) = super::open_store_to_read(global).await? else {
        return Err(Failure::input(anyhow::anyhow!(
            "no store at `{}`\n\nhint: pass `--db` or set PARALLAX_DB",
            global.db
        )));
    };
    let filter = ResultFilter {
        question: args.question.clone(),
        model: args.model.clone(),
        region: args.region.clone(),
        raw: args.raw,
        ..Default::default()
    };
    if args.attempts {
        let attempts = store.attempts(&args.job_id, filter).await?;
        output::stdout(&attempts_text(&attempts, args.format)?).map_err(|e| Failure::Internal(e.into()))?;
        return Ok(Code::Success);
    }
    let rows = store.results(&args.job_id, filter).await?;
    let text = match args.format {
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let blocked = r.block_reason.as_ref().map(|b| format!("BLOCKED ({}): {}", b.code, b.message));
                    let answer = blocked.as_deref().or(r.response_text.as_deref()).or(r.error.as_deref()).unwrap_or("");
                    let model = match (&r.reported_model, r.model_mismatch) {
                        (Some(m), Some(true)) => format!("{m} (MISMATCH)"),
                        (Some(m), _) => m.clone(),
                        (None, _) => String::new(),
                    };
                    vec![
                        r.question_id.clone(),
                        r.model_id.clone(),
                        r.region.clone(),
                        r.sample.to_string(),
                        r.status.clone(),
                        r.attempts.to_string(),
                        model,
                        output::truncate(answer, 60),
                    ]
                })
                .collect();
            output::table(
                &["QUESTION", "MODEL", "REGION", "SAMPLE", "STATUS", "ATTEMPTS", "ANSWERED AS", "ANSWER"],
                &table,
            )
        }
        format => serialize(&rows, format)?,
    };
    output::stdout(&text).map_err(|e| Failure::Internal(e.into()))?;
    Ok(Code::Success)
}

pub fn attempts_text(attempts: &[AttemptRow], format: Format) -> Result<String, Failure> {
    match format {
        Format::Table => {
            let rows: Vec<Vec<String>> = attempts
                .iter()
                .map(|a| {
                    vec![
                        a.question_id.clone(),
                        a.model_id.clone(),
                        a.region.clone(),
                        a.sample.to_string(),
                        a.number.to_string(),
                        a.outcome.clone(),
                        if a.possibly_billed { "yes".into() } else { String::new() },
                        a.http_status.map(|s| s.to_string()).unwrap_or_default(),
                        a.latency_ms.map(|s| s.to_string()).unwrap_or_default(),
                        output::truncate(a.error.as_deref().unwrap_or(""), 50),
                    ]
                })
                .collect();
            Ok(output::table(
                &[
                    "QUESTION",
                    "MODEL",
                    "REGION",
                    "SAMPLE",
                    "ATTEMPT",
                    "OUTCOME",
                    "POSSIBLY BILLED",
                    "HTTP",
                    "MS",
                    "ERROR",
                ],
                &rows,
            ))
        }
        format => serialize(attempts, format),
    }
}

/// JSON (one array), JSON Lines, or CSV (nested values as JSON text).
pub fn serialize<T: Serialize>(rows: &[T], format: Format) -> Result<String, Failure> {
    let internal = |e: serde_json::Error| Failure::Internal(e.into());
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(rows).map_err(internal)? + "\n"),
        Format::Jsonl | Format::Table => {
            let mut out = String::new();
            for row in rows {
                out.push_str(&serde_json::to_string(row).map_err(internal)?);
                out.push('\n');
            }
            Ok(out)
        }
        Format::Csv => {
            let values: Vec<serde_json::Value> =
                rows.iter().map(serde_json::to_value).collect::<Result<_, _>>().map_err(internal)?;
            csv_text(&values)
        }
    }
}

pub fn csv_text(rows: &[serde_json::Value]) -> Result<String, Failure> {
    let mut headers: Vec<String> = Vec::new();
    for row in rows {
        if let Some(obj) = row.as_object() {
            for k in obj.keys() {
                if !headers.contains(k) {
                    headers.push(k.clone());
                }
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| Failure::Internal(e.into());
    w.write_record(&headers).map_err(internal)?;
    for row in rows {
        let record: Vec<String> = headers
            .iter()
            .map(|h| match row.get(h) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            })
            .collect();
        w.write_record(&record).map_err(internal)?;
    }
    let bytes = w.into_inner().map_err(|e| Failure::Internal(anyhow::anyhow!("{e}")))?;
    String::from_utf8(bytes).map_err(|e| Failure::Internal(e.into()))
}
