//! Crashes and interruptions: `kill -9` mid-run, Ctrl-C, and what the ledger says after —
//! each test on both stores (`sqlite::…`, `postgres::…`).

use std::time::Duration;

use parallax_stub::StubConfig;

use crate::support::{Backend, Fleet, job_id, spec, wait_for_requests};

async fn kill_9_mid_run_then_resume_gives_one_result_per_key(backend: Backend) {
    let Some(fleet) = Fleet::start_on(backend, &["us", "eu"], |_| StubConfig {
        latency: Duration::from_millis(300),
        ..StubConfig::default()
    })
    .await
    else {
        return;
    };
    fleet.catalog(&[("a", "prov-a"), ("b", "prov-b")], "");
    fleet.write("job.yaml", &spec(20, &["a", "b"], &["us", "eu"], "run: {concurrency: 8, lease_s: 2}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());

    let mut child = fleet.command(&["run", "job.yaml"], &[]).spawn().unwrap();
    wait_for_requests(&fleet, 20).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let before = fleet.requests_by_key();
    assert!(before.len() < 80, "killed mid-run");

    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert_eq!(rows.len(), 80);
    assert!(rows.iter().all(|r| r["status"] == "succeeded"));

    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    let after = fleet.requests_by_key();
    assert_eq!(after.len(), 80, "every key was called");
    let lost = attempts.iter().filter(|a| a["outcome"] == "lost").count();
    assert!(lost > 0, "calls in flight at the kill are in the ledger as lost");
    for r in &rows {
        let key = r["idempotency_key"].as_str().unwrap();
        let calls = after[key];
        // Duplicates only for calls in flight at the kill, and each such call is accounted for.
        let recorded = attempts
            .iter()
            .filter(|a| {
                a["question_id"] == r["question_id"] && a["model_id"] == r["model_id"] && a["region"] == r["region"]
            })
            .count() as u64;
        assert!(calls <= recorded, "{key}: {calls} upstream calls but {recorded} attempts recorded");
        if calls > 1 {
            assert!(before.contains_key(key), "a duplicate call must be one in flight at the kill");
            assert_eq!(calls, 2);
        }
    }
    let status = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    assert_eq!(status["total"]["possibly_billed"].as_u64().unwrap(), lost as u64);
}

async fn ctrl_c_stops_claiming_records_in_flight_calls_and_exits_130(backend: Backend) {
    let Some(fleet) = Fleet::start_on(backend, &["us"], |_| StubConfig {
        latency: Duration::from_millis(400),
        ..StubConfig::default()
    })
    .await
    else {
        return;
    };
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(40, &["a"], &["us"], "run: {concurrency: 4}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let child = fleet.command(&["run", "job.yaml"], &[]).spawn().unwrap();
    wait_for_requests(&fleet, 4).await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130));
    let sent = fleet.total_requests();
    assert!(sent < 40);
    // The summary counts the calls the server saw: claims given back unsent are no calls
    // and no retries.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("this run: {sent} calls in ")), "{sent} calls sent: {stderr}");
    assert!(stderr.contains("(0 retried"), "{stderr}");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    let succeeded = rows.iter().filter(|r| r["status"] == "succeeded").count() as u64;
    assert_eq!(succeeded, sent, "every call in flight finished and was recorded");
    assert!(rows.iter().all(|r| r["status"] != "running"), "no lease left behind");

    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(fleet.total_requests(), 40);
    assert!(fleet.requests_by_key().values().all(|n| *n == 1));
}

/// Runs `job.yaml` with a crash hook, then again without, and checks the ledger.
/// Returns (requests per key before the resume, after it, the attempts' outcomes).
async fn crash_then_resume(
    backend: Backend,
    point: &str,
) -> Option<(Fleet, Vec<serde_json::Value>, std::collections::HashMap<String, u64>)> {
    let fleet = Fleet::start_on(backend, &["us"], |_| StubConfig {
        latency: Duration::from_millis(100),
        ..StubConfig::default()
    })
    .await?;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(12, &["a"], &["us"], "run: {concurrency: 4, lease_s: 1}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let crashed = fleet.parallax_env(&["run", "job.yaml"], &[("PARALLAX_TEST_CRASH", point)]).await;
    assert_ne!(crashed.code, 0, "{crashed:?}");
    assert!(crashed.stderr.contains("test hook: crashing"), "{crashed:?}");
    let before = fleet.requests_by_key();
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "{rows:?}");
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    assert!(attempts.iter().all(|a| a["outcome"] != "open"), "no attempt left open");
    assert_eq!(fleet.requests_by_key().len(), 12);
    assert_eq!(fleet.db().exists(), backend == Backend::Sqlite, "the commands used the store asked for");
    Some((fleet, attempts, before))
}

async fn crash_after_the_claim_before_sending_duplicates_nothing(backend: Backend) {
    let Some((fleet, attempts, before)) = crash_then_resume(backend, "after-claim:1").await else { return };
    assert!(before.is_empty(), "nothing was sent before the crash");
    let lost = attempts.iter().filter(|a| a["outcome"] == "lost").count();
    // The first claim takes up to concurrency (4) + as many ahead: their attempts were
    // recorded before any call left, so they are lost (possibly billed, unknowably).
    assert!((1..=8).contains(&lost), "the claimed batch's attempts are lost: {lost}");
    assert!(fleet.requests_by_key().values().all(|n| *n == 1), "no key was called twice");
}

async fn crash_after_an_answer_arrives_duplicates_only_calls_in_flight(backend: Backend) {
    let Some((fleet, attempts, before)) = crash_then_resume(backend, "after-send:1").await else { return };
    let after = fleet.requests_by_key();
    let lost = attempts.iter().filter(|a| a["outcome"] == "lost").count();
    let duplicated: Vec<_> = after.iter().filter(|(_, n)| **n > 1).collect();
    assert!(!duplicated.is_empty(), "the answered call was lost and made again");
    for (key, n) in &duplicated {
        assert_eq!(**n, 2);
        assert!(before.contains_key(*key), "only calls in flight at the crash are made twice");
    }
    assert!(duplicated.len() <= lost, "every duplicate is a lost attempt in the ledger");
    assert_eq!(attempts.len() as u64, after.values().sum::<u64>() + (lost - duplicated.len()) as u64);
}

async fn crash_after_recording_never_calls_again(backend: Backend) {
    let Some((fleet, _attempts, before)) = crash_then_resume(backend, "after-finish:1").await else { return };
    let after = fleet.requests_by_key();
    assert!(!before.is_empty());
    // Calls recorded before the crash are never made again; only those in flight may be.
    let twice = after.values().filter(|n| **n > 1).count();
    assert!(twice < before.len(), "recorded answers were not re-requested");
}

async fn a_failing_store_stops_the_run_with_exit_3_and_loses_nothing_reported(backend: Backend) {
    let Some(fleet) = Fleet::start_on(backend, &["us"], |_| StubConfig {
        latency: Duration::from_millis(50),
        ..StubConfig::default()
    })
    .await
    else {
        return;
    };
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(30, &["a"], &["us"], "run: {concurrency: 4, lease_s: 1}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax_env(&["run", "job.yaml"], &[("PARALLAX_TEST_STORE_READ_ONLY_AFTER", "2")]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("store failed"), "{out:?}");
    assert!(
        out.stderr.contains("readonly") || out.stderr.contains("read-only") || out.stderr.contains("read only"),
        "{out:?}"
    );
    let sent = fleet.total_requests();
    assert!(sent < 30, "the run stopped early ({sent} calls)");

    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert!(rows.iter().all(|r| r["status"] == "succeeded"));
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    // Every upstream call has its attempt; attempts claimed ahead and never sent are in
    // the ledger too (closed as lost), so there may be more attempts than calls.
    assert!(attempts.len() as u64 >= fleet.total_requests(), "every upstream call is in the ledger");
    let calls = fleet.requests_by_key();
    for r in &rows {
        let recorded = attempts.iter().filter(|a| a["question_id"] == r["question_id"]).count() as u64;
        assert!(calls[r["idempotency_key"].as_str().unwrap()] <= recorded);
    }
}

async fn a_second_ctrl_c_aborts_calls_in_flight_and_the_ledger_keeps_them(backend: Backend) {
    let Some(fleet) =
        Fleet::start_on(backend, &["us"], |_| StubConfig { latency: Duration::from_secs(30), ..StubConfig::default() })
            .await
    else {
        return;
    };
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(10, &["a"], &["us"], "run: {concurrency: 4}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let mut child = fleet.command(&["run", "job.yaml"], &[]).spawn().unwrap();
    wait_for_requests(&fleet, 4).await;
    let pid = child.id().unwrap().to_string();
    let started = std::time::Instant::now();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(10), "did not wait for the 30 s calls");

    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    let aborted: Vec<_> = attempts.iter().filter(|a| a["outcome"] == "aborted").collect();
    assert_eq!(aborted.len(), 4, "{attempts:?}");
    assert!(aborted.iter().all(|a| a["possibly_billed"] == true));
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert!(rows.iter().all(|r| r["status"] == "pending"), "aborted items go back to pending at once");
}
/// With the default lease (30 s), a run resumed on the same host after a `kill -9` finds
/// the dead process's leases and claims its items again at once, saying so, instead of
/// sitting out the lease.
async fn a_resumed_run_reclaims_at_once_the_leases_of_a_dead_process_of_this_host(backend: Backend) {
    let Some(fleet) = Fleet::start_on(backend, &["us"], |_| StubConfig {
        latency: Duration::from_millis(1_500),
        ..StubConfig::default()
    })
    .await
    else {
        return;
    };
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(4, &["a"], &["us"], "run: {concurrency: 4}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let mut child = fleet.command(&["run", "job.yaml"], &[]).spawn().unwrap();
    wait_for_requests(&fleet, 4).await;
    child.start_kill().unwrap(); // SIGKILL, all four calls in flight under 30 s leases
    child.wait().await.unwrap();

    let started = std::time::Instant::now();
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}: the lease was sat out", started.elapsed());
    assert!(out.stderr.contains("a process of this host that is gone: claimed again now"), "{out:?}");
    let status = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    assert_eq!(status["total"]["succeeded"], 4);
    assert_eq!(status["total"]["possibly_billed"], 4, "the killed calls are accounted for");
}

macro_rules! on_both_back_ends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both_back_ends!(
    kill_9_mid_run_then_resume_gives_one_result_per_key,
    ctrl_c_stops_claiming_records_in_flight_calls_and_exits_130,
    crash_after_the_claim_before_sending_duplicates_nothing,
    crash_after_an_answer_arrives_duplicates_only_calls_in_flight,
    crash_after_recording_never_calls_again,
    a_failing_store_stops_the_run_with_exit_3_and_loses_nothing_reported,
    a_second_ctrl_c_aborts_calls_in_flight_and_the_ledger_keeps_them,
    a_resumed_run_reclaims_at_once_the_leases_of_a_dead_process_of_this_host
);
