//! `parallax run`, `status`, `results`: exactly once, the stored bytes are the sent bytes.

use std::collections::HashMap;

use parallax_stub::StubConfig;
use sha2::Digest;

use crate::support::{Fleet, job_id, spec};

#[tokio::test]
async fn a_job_runs_exactly_once_and_a_second_run_calls_nothing() {
    let fleet = Fleet::start(&["us", "eu", "ap"], |r| StubConfig {
        refuse_markers_by_region: [("ap".to_string(), vec!["number 3".to_string()])].into(),
        latency: std::time::Duration::from_millis(if r == "eu" { 20 } else { 0 }),
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("a", "prov-a"), ("b", "prov-b")], "");
    fleet.write("job.yaml", &spec(10, &["a", "b"], &["us", "eu", "ap"], "run: {concurrency: 8}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());

    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(fleet.total_requests(), 60);
    let by_key = fleet.requests_by_key();
    assert_eq!(by_key.len(), 60);
    assert!(by_key.values().all(|n| *n == 1), "one upstream call per key");

    let results = fleet.parallax(&["results", &job, "--format", "jsonl"]).await;
    assert_eq!(results.code, 0, "{results:?}");
    let rows = results.json_lines();
    assert_eq!(rows.len(), 60);
    let mut keys = std::collections::HashSet::new();
    for row in &rows {
        for field in [
            "job_id",
            "question_id",
            "model_id",
            "region",
            "sample",
            "status",
            "attempts",
            "request_body",
            "request",
            "request_sha256",
            "requested_model",
            "reported_model",
            "model_mismatch",
            "response_text",
            "finish_reason",
            "usage",
            "latency_ms",
            "error",
        ] {
            assert!(row.get(field).is_some(), "field {field} missing from {row}");
        }
        assert_eq!(row["status"], "succeeded");
        assert_eq!(row["attempts"], 1);
        assert_eq!(row["model_mismatch"], false);
        // The stored bytes are the sent bytes: their hash is what the server received.
        let body = row["request_body"].as_str().unwrap();
        let sha = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        assert_eq!(row["request_sha256"], sha.as_str());
        assert_eq!(row["request"], serde_json::from_str::<serde_json::Value>(body).unwrap());
        let region = row["region"].as_str().unwrap();
        let received = fleet.stub(region).stats.bodies_sha256_by_key();
        let key = row["idempotency_key"].as_str().unwrap();
        assert_eq!(received[key], vec![sha.clone()], "the server received exactly the stored bytes");
        assert!(keys.insert((row["question_id"].clone(), row["model_id"].clone(), row["region"].clone())));
    }
    let refused: Vec<_> = rows.iter().filter(|r| r["response_text"] == parallax_stub::REFUSAL_TEXT).collect();
    assert_eq!(refused.len(), 2, "q3 refused in ap for both models");

    let again = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("complete, nothing to do"), "{again:?}");
    assert_eq!(fleet.total_requests(), 60, "a finished job calls nothing");

    // Changing run policy continues the same job.
    fleet.write("job.yaml", &spec(10, &["a", "b"], &["us", "eu", "ap"], "run: {concurrency: 2, limit: 5}\n"));
    let again = fleet.parallax(&["run", "job.yaml"]).await;
    assert!(again.stderr.contains(&job), "{again:?}");
    assert_eq!(fleet.total_requests(), 60);

    let status = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    assert_eq!(status["total"]["succeeded"], 60);
    assert_eq!(status["cells"].as_array().unwrap().len(), 6);
    let list = fleet.parallax(&["status"]).await;
    assert!(list.stdout.contains(&job), "{list:?}");
}

#[tokio::test]
async fn limit_runs_a_part_and_the_next_run_continues() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(20, &["a"], &["us"], "run: {concurrency: 4}\n"));
    let out = fleet.parallax(&["run", "job.yaml", "--limit", "7"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(fleet.total_requests(), 7);
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("continuing job"), "{out:?}");
    assert_eq!(fleet.total_requests(), 20);
    assert!(fleet.requests_by_key().values().all(|n| *n == 1));
}

#[tokio::test]
async fn fresh_starts_a_new_generation_that_plain_runs_continue() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(3, &["a"], &["us"], ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);
    let out = fleet.parallax(&["run", "job.yaml", "--fresh"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(&format!("{job}-2")), "{out:?}");
    assert_eq!(fleet.total_requests(), 6);
    let plan = fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json();
    assert_eq!(plan["job_id"], format!("{job}-2"));
    assert!(fleet.parallax(&["run", "job.yaml"]).await.stderr.contains("nothing to do"));
    // Each generation has its own idempotency keys.
    assert_eq!(fleet.requests_by_key().len(), 6);
}

#[tokio::test]
async fn results_filter_and_speak_csv_and_json() {
    let fleet = Fleet::start(&["us", "eu"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a"), ("b", "prov-b")], "");
    fleet.write("job.yaml", &spec(3, &["a", "b"], &["us", "eu"], ""));
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());

    let json = fleet.parallax(&["results", &job, "--model", "b", "--region", "eu", "--format", "json"]).await.json();
    assert_eq!(json.as_array().unwrap().len(), 3);
    let one = fleet.parallax(&["results", &job, "--question", "q1", "--format", "jsonl"]).await.json_lines();
    assert_eq!(one.len(), 4);
    assert!(one.iter().all(|r| r["question_id"] == "q1"));

    let csv = fleet.parallax(&["results", &job, "--format", "csv"]).await;
    let mut reader = csv::Reader::from_reader(csv.stdout.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert!(headers.iter().any(|h| h == "request_sha256"));
    let records: Vec<_> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 12);
    let col: HashMap<&str, usize> = headers.iter().enumerate().map(|(i, h)| (h, i)).collect();
    let request: serde_json::Value = serde_json::from_str(&records[0][col["request"]]).unwrap();
    assert_eq!(request["messages"][0]["content"], "Question number 0?");

    let table = fleet.parallax(&["results", &job]).await;
    assert!(table.stdout.starts_with("QUESTION"), "{table:?}");
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    assert_eq!(attempts.len(), 12);
    assert!(attempts.iter().all(|a| a["outcome"] == "succeeded"));

    let missing = fleet.parallax(&["results", "no-such-job"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
}

#[tokio::test]
async fn an_unusable_store_is_exit_3() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(1, &["a"], &["us"], ""));
    fleet.write("not-a-db", "this is not a SQLite file, it is plain text padded out to look like one................");
    let out = fleet.parallax(&["run", "job.yaml", "--db", "not-a-db"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(fleet.total_requests(), 0);
}

#[tokio::test]
async fn status_attempts_lists_the_ledger_and_delay_ms_paces_calls() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(5, &["a"], &["us"], "run: {concurrency: 8, delay_ms: 100}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let started = std::time::Instant::now();
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);
    // Five calls at least 100 ms apart: at least 400 ms, whatever the concurrency.
    assert!(started.elapsed() >= std::time::Duration::from_millis(390), "{:?}", started.elapsed());

    let attempts = fleet.parallax(&["status", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    assert_eq!(attempts.len(), 5);
    assert!(attempts.iter().all(|a| a["outcome"] == "succeeded" && a["number"] == 1 && a["http_status"] == 200));
    let table = fleet.parallax(&["status", &job, "--attempts"]).await;
    assert!(table.stdout.starts_with("QUESTION") && table.stdout.contains("succeeded"), "{table:?}");
}

#[tokio::test]
async fn plan_reports_a_declared_regional_override() {
    let fleet = Fleet::start(&["us", "eu"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write(
        "job.yaml",
        &spec(
            2,
            &["a"],
            &["us", "eu"],
            "prompt:\n  system: Be helpful.\n  system_by_region: {eu: Seien Sie hilfreich.}\n",
        ),
    );
    let out = fleet.parallax(&["plan", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2 of 2 question×model groups differ only by the declared system_by_region override (eu)"),
        "{out:?}"
    );
}
