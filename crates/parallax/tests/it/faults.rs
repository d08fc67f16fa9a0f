//! Faults handled like a serious client: retries with backoff, Retry-After, fail fast on
//! 4xx, possibly billed attempts counted, parking, re-arming.

use std::time::Duration;

use parallax_stub::{Fault, StubConfig};

use crate::support::{Fleet, job_id, spec};

fn faulty(faults: Vec<Fault>) -> impl Fn(&str) -> StubConfig {
    move |_| StubConfig { faults: faults.clone(), ..StubConfig::default() }
}

#[tokio::test]
async fn transient_faults_are_retried_with_the_same_key_and_accounted_for() {
    let fleet = Fleet::start(
        &["us"],
        faulty(vec![
            Fault::Status { status: 500, first_n_attempts: 1, retry_after_s: None, fraction: 0.3 },
            Fault::Status { status: 429, first_n_attempts: 1, retry_after_s: Some(1), fraction: 0.2 },
            Fault::BrokenBody { first_n_attempts: 1, fraction: 0.1 },
            Fault::Reset { first_n_attempts: 1, fraction: 0.1 },
        ]),
    )
    .await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(40, &["a"], &["us"], "run: {concurrency: 8, max_attempts: 4}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");

    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "{rows:?}");
    let by_key = fleet.requests_by_key();
    let retried = by_key.values().filter(|n| **n > 1).count();
    assert!(retried >= 10, "some keys were faulted: {retried}");
    // Every upstream call is in the ledger: attempts == requests received, per key.
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    assert_eq!(attempts.len() as u64, fleet.total_requests());
    for r in &rows {
        assert_eq!(r["attempts"].as_u64().unwrap(), by_key[r["idempotency_key"].as_str().unwrap()]);
    }
    // The same Idempotency-Key and the same bytes on every attempt.
    for (_, stub) in &fleet.stubs {
        for bodies in stub.stats.bodies_sha256_by_key().values() {
            assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        }
    }
    // 500s, broken bodies and resets after sending are possibly billed; 429s are not.
    let billed = attempts.iter().filter(|a| a["possibly_billed"] == true).count();
    let http_500 = attempts.iter().filter(|a| a["http_status"] == 500).count();
    let http_429: Vec<_> = attempts.iter().filter(|a| a["http_status"] == 429).collect();
    assert!(http_500 > 0 && !http_429.is_empty());
    assert!(http_429.iter().all(|a| a["possibly_billed"] == false));
    assert!(billed >= http_500);
    let status = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    assert_eq!(status["total"]["possibly_billed"], billed);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fleet = Fleet::start(
        &["us"],
        faulty(vec![Fault::Status { status: 429, first_n_attempts: 1, retry_after_s: Some(2), fraction: 1.0 }]),
    )
    .await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(2, &["a"], &["us"], ""));
    let started = std::time::Instant::now();
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited as the server asked");
    assert_eq!(fleet.total_requests(), 4);
}

#[tokio::test]
async fn client_errors_fail_fast_and_retry_failed_rearms_them() {
    let fleet = Fleet::start(
        &["us"],
        faulty(vec![Fault::Status { status: 400, first_n_attempts: 1, retry_after_s: None, fraction: 1.0 }]),
    )
    .await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(3, &["a"], &["us"], ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(fleet.total_requests(), 3, "no retries on a 4xx");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert!(rows.iter().all(|r| r["status"] == "failed"));
    assert!(rows[0]["error"].as_str().unwrap().starts_with("HTTP 400:"), "{:?}", rows[0]);

    // A plain re-run leaves failed items alone.
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--retry-failed"), "{out:?}");
    assert_eq!(fleet.total_requests(), 3);

    // The stub fails only the first attempt per key: re-armed items now succeed, in place.
    let out = fleet.parallax(&["run", "job.yaml", "--retry-failed"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["status"] == "succeeded" && r["attempts"] == 2 && r["error"].is_null()));
}

#[tokio::test]
async fn attempts_run_out_and_the_item_fails_visibly() {
    let fleet = Fleet::start(
        &["us"],
        faulty(vec![Fault::Status { status: 503, first_n_attempts: 10, retry_after_s: None, fraction: 1.0 }]),
    )
    .await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(1, &["a"], &["us"], "run: {max_attempts: 3}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(fleet.total_requests(), 3);
    let row = &fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines()[0];
    assert_eq!(row["status"], "failed");
    assert_eq!(row["attempts"], 3);
    assert!(row["error"].as_str().unwrap().contains("gave up after 3 attempts"), "{row}");
}

#[tokio::test]
async fn possibly_billed_failures_park_under_the_park_policy() {
    let fleet = Fleet::start(
        &["us"],
        faulty(vec![
            Fault::Status { status: 502, first_n_attempts: 1, retry_after_s: None, fraction: 0.5 },
            Fault::Hang { first_n_attempts: 1, fraction: 0.3 },
        ]),
    )
    .await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(20, &["a"], &["us"], "run: {on_possibly_billed: park, timeout_s: 0.5}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let status = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    let parked = status["total"]["parked"].as_u64().unwrap();
    assert!(parked > 0);
    assert_eq!(status["total"]["possibly_billed"].as_u64().unwrap(), parked, "each parked item has one billed attempt");
    assert_eq!(fleet.total_requests(), 20, "nothing possibly billed was retried");
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    assert!(attempts.iter().any(|a| a["outcome"] == "parked" && a["error"].as_str().unwrap().contains("timed out")));

    let out = fleet.parallax(&["run", "job.yaml", "--retry-parked"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(fleet.total_requests(), 20 + parked);
}
