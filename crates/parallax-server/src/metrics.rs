//! `GET /metrics`: the store's figures in Prometheus' text format. Every figure is read
//! from the store at scrape time (over every job it holds), so each server sharing a store
//! reports the same values; the latency histogram scans the attempts, which is fine for a
//! scrape every few seconds on stores of millions of attempts, not for one every second.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use parallax_store::Metrics;

use crate::AppState;
use crate::api::require_read;
use crate::error::ApiError;

/// Prometheus text, behind the read rule.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_read(&state, &headers)?;
    let m = state.store().metrics().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&m)).into_response())
}

pub fn render(m: &Metrics) -> String {
    let mut text = String::new();
    let t = &mut text;
    head(t, "parallax_executions", "gauge", "Executions in the store by status.");
    for status in ["pending", "running", "succeeded", "failed", "parked", "cancelled"] {
        let n = m.executions.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        let _ = writeln!(t, "parallax_executions{{status=\"{status}\"}} {n}");
    }
    head(t, "parallax_attempts_total", "counter", "Upstream attempts by outcome.");
    for (outcome, n) in &m.attempts {
        let _ = writeln!(t, "parallax_attempts_total{{outcome=\"{}\"}} {n}", label_value(outcome));
    }
    head(
        t,
        "parallax_possibly_billed_attempts_total",
        "counter",
        "Attempts that may have reached the server (and been billed) without an answer recorded.",
    );
    let _ = writeln!(t, "parallax_possibly_billed_attempts_total {}", m.possibly_billed);
    head(t, "parallax_queue_depth", "gauge", "Executions pending, by region.");
    for (region, n) in &m.queue {
        let _ = writeln!(t, "parallax_queue_depth{{region=\"{}\"}} {n}", label_value(region));
    }
    head(t, "parallax_live_workers", "gauge", "Workers not stopped and seen within 15 s.");
    let _ = writeln!(t, "parallax_live_workers {}", m.live_workers);
    let latency = "parallax_upstream_latency_seconds";
    head(t, latency, "histogram", "Latency of finished attempts, by endpoint.");
    for h in &m.latency {
        let endpoint = label_value(&h.endpoint);
        for (le_ms, n) in &h.buckets {
            let _ = writeln!(t, "{latency}_bucket{{endpoint=\"{endpoint}\",le=\"{}\"}} {n}", *le_ms as f64 / 1000.0);
        }
        let _ = writeln!(t, "{latency}_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(t, "{latency}_sum{{endpoint=\"{endpoint}\"}} {}", h.sum_ms as f64 / 1000.0);
        let _ = writeln!(t, "{latency}_count{{endpoint=\"{endpoint}\"}} {}", h.count);
    }
    text
}

fn head(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format escapes it.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use parallax_store::{LatencyHistogram, Metrics};

    #[test]
    fn the_text_format_has_every_family_and_escapes_labels() {
        let m = Metrics {
            executions: vec![("succeeded".into(), 3), ("pending".into(), 1)],
            attempts: vec![("succeeded".into(), 3), ("retryable".into(), 2)],
            possibly_billed: 1,
            queue: vec![("eu \"west\"".into(), 1)],
            latency: vec![LatencyHistogram {
                endpoint: "eu/e1".into(),
                buckets: vec![(50, 1), (100, 3)],
                count: 4,
                sum_ms: 400,
            }],
            live_workers: 2,
        };
        let text = super::render(&m);
        for line in [
            "# TYPE parallax_executions gauge",
            "parallax_executions{status=\"succeeded\"} 3",
            "parallax_executions{status=\"failed\"} 0",
            "parallax_attempts_total{outcome=\"retryable\"} 2",
            "parallax_possibly_billed_attempts_total 1",
            "parallax_queue_depth{region=\"eu \\\"west\\\"\"} 1",
            "parallax_live_workers 2",
            "parallax_upstream_latency_seconds_bucket{endpoint=\"eu/e1\",le=\"0.05\"} 1",
            "parallax_upstream_latency_seconds_bucket{endpoint=\"eu/e1\",le=\"+Inf\"} 4",
            "parallax_upstream_latency_seconds_sum{endpoint=\"eu/e1\"} 0.4",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        // HELP and TYPE precede each family's samples.
        let type_at = text.find("# TYPE parallax_live_workers").unwrap();
        assert!(type_at < text.find("parallax_live_workers 2").unwrap());
    }
}
