//! Many machines: `submit` and `worker` processes on one PostgreSQL ledger — every key once,
//! every upstream call in the ledger, each worker only its regions', after a `kill -9`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use parallax_stub::{Fault, StubConfig};

use crate::support::{Fleet, PgSchema, spec, wait_for_requests};

#[tokio::test]
async fn three_regions_of_workers_run_every_key_once_through_faults_and_a_kill() {
    let Some(pg) = PgSchema::create("three_regions_of_workers").await else { return };
    let db = pg.location.as_str();
    // 20% of keys fail their first attempt (503, retried), on top of 20 ms of latency.
    let fleet = Fleet::start(&["us", "eu", "ap"], |_| StubConfig {
        latency: Duration::from_millis(20),
        faults: vec![Fault::Status { status: 503, first_n_attempts: 1, retry_after_s: Some(0), fraction: 0.2 }],
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("a", "prov-a"), ("b", "prov-b")], "");
    // 100 questions × 2 models × 3 regions × 2 samples = 1,200 executions.
    fleet.write(
        "job.yaml",
        &spec(100, &["a", "b"], &["us", "eu", "ap"], "samples: 2\nrun: {concurrency: 16, lease_s: 3}\n"),
    );
    let out = fleet.parallax(&["submit", "job.yaml", "--db", db]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let job = out.stdout.trim().to_owned();
    assert!(job.starts_with("it-") && !job.contains('\n'), "stdout is the job id alone: {out:?}");
    assert_eq!(fleet.total_requests(), 0, "submit calls nothing");

    let worker =
        |region: &'static str| fleet.command(&["worker", "--region", region, "--exit-when-idle", "--db", db], &[]);
    let mut killed = worker("us").spawn().unwrap();
    let mut others = vec![worker("us").spawn().unwrap(), worker("eu").spawn().unwrap(), worker("ap").spawn().unwrap()];
    wait_for_requests(&fleet, 150).await;
    killed.start_kill().unwrap(); // SIGKILL
    killed.wait().await.unwrap();
    let at_kill = fleet.requests_by_key();
    others.push(worker("us").spawn().unwrap()); // restarted
    for child in &mut others {
        let status =
            tokio::time::timeout(Duration::from_secs(120), child.wait()).await.expect("workers finish").unwrap();
        assert_eq!(status.code(), Some(0), "every worker's executions succeeded");
    }

    let rows = fleet.parallax(&["results", &job, "--format", "jsonl", "--db", db]).await.json_lines();
    assert_eq!(rows.len(), 1200);
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "every key succeeded");
    let keys: HashSet<&str> = rows.iter().map(|r| r["idempotency_key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 1200, "once each");

    // Every upstream call is in the attempt ledger; the only duplicates are calls in flight
    // at the kill (recorded as lost, possibly billed) and the fault's retries.
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl", "--db", db]).await.json_lines();
    let calls = fleet.requests_by_key();
    let mut recorded: HashMap<(String, String, String, i64), u64> = HashMap::new();
    for a in &attempts {
        let k = (
            a["question_id"].as_str().unwrap().to_owned(),
            a["model_id"].as_str().unwrap().to_owned(),
            a["region"].as_str().unwrap().to_owned(),
            a["sample"].as_i64().unwrap(),
        );
        *recorded.entry(k).or_default() += 1;
    }
    let lost = attempts.iter().filter(|a| a["outcome"] == "lost").count();
    for r in &rows {
        let key = r["idempotency_key"].as_str().unwrap();
        let k = (
            r["question_id"].as_str().unwrap().to_owned(),
            r["model_id"].as_str().unwrap().to_owned(),
            r["region"].as_str().unwrap().to_owned(),
            r["sample"].as_i64().unwrap(),
        );
        let (made, kept) = (calls.get(key).copied().unwrap_or(0), recorded[&k]);
        assert!(made <= kept, "{key}: {made} upstream calls but {kept} attempts recorded");
        let retried = attempts.iter().any(|a| {
            a["outcome"] == "retryable"
                && a["question_id"] == r["question_id"]
                && a["model_id"] == r["model_id"]
                && a["region"] == r["region"]
                && a["sample"] == r["sample"]
        });
        let allowed = 1 + u64::from(retried) + u64::from(at_kill.contains_key(key));
        let of_key: Vec<String> = attempts
            .iter()
            .filter(|a| a["question_id"] == r["question_id"] && a["model_id"] == r["model_id"])
            .filter(|a| a["region"] == r["region"] && a["sample"] == r["sample"])
            .map(|a| format!("{} by {} at {}", a["outcome"], a["worker"], a["started_at_ms"]))
            .collect();
        assert!(
            made <= allowed,
            "{key}: {made} calls; only a retry and a call in flight at the kill may repeat it; attempts: {of_key:?}"
        );
    }
    let status = fleet.parallax(&["status", &job, "--format", "json", "--db", db]).await.json();
    assert_eq!(status["total"]["possibly_billed"].as_u64().unwrap(), lost as u64, "each lost call is possibly billed");

    // No worker claimed another region's item.
    let workers = fleet.parallax(&["workers", "--format", "jsonl", "--db", db]).await.json_lines();
    assert_eq!(workers.len(), 5, "five worker processes registered: {workers:?}");
    let regions_of: HashMap<&str, Vec<&str>> = workers
        .iter()
        .map(|w| {
            (w["id"].as_str().unwrap(), w["regions"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect())
        })
        .collect();
    for a in &attempts {
        let worker = a["worker"].as_str().unwrap();
        assert!(regions_of[worker].contains(&a["region"].as_str().unwrap()), "{worker} ran {a}");
    }
    let stopped = workers.iter().filter(|w| !w["stopped_at_ms"].is_null()).count();
    assert_eq!(stopped, 4, "the four that exited said so; the killed one did not");
}

#[tokio::test]
async fn a_worker_shares_itself_between_jobs_and_cancel_settles_the_rest() {
    let Some(pg) = PgSchema::create("a_worker_shares_itself_between_jobs").await else { return };
    let db = pg.location.as_str();
    let fleet =
        Fleet::start(&["us"], |_| StubConfig { latency: Duration::from_millis(50), ..StubConfig::default() }).await;
    fleet.catalog(&[("a", "prov-a")], "");
    // A large job first, then a small one: round-robin serves the small one at once.
    fleet.write("big.yaml", &spec(200, &["a"], &["us"], "run: {concurrency: 4}\n").replace("name: it", "name: big"));
    fleet.write("small.yaml", &spec(4, &["a"], &["us"], "run: {concurrency: 4}\n").replace("name: it", "name: small"));
    let big = fleet.parallax(&["submit", "big.yaml", "--db", db]).await.stdout.trim().to_owned();
    let small = fleet.parallax(&["submit", "small.yaml", "--db", db]).await.stdout.trim().to_owned();
    let mut worker = fleet.command(&["worker", "--region", "us", "--db", db], &[]).spawn().unwrap();
    let mut done = false;
    for _ in 0..200 {
        let s = fleet.parallax(&["status", &small, "--format", "json", "--db", db]).await.json();
        if s["total"]["succeeded"] == 4 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(done, "the small job finished");
    let b = fleet.parallax(&["status", &big, "--format", "json", "--db", db]).await.json();
    assert!(b["total"]["succeeded"].as_i64().unwrap() < 150, "long before the big one: {b}");

    let cancel = fleet.parallax(&["cancel", &big, "--db", db]).await;
    assert_eq!(cancel.code, 0, "{cancel:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = fleet.total_requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fleet.total_requests(), sent, "nothing of a cancelled job is called");
    let b = fleet.parallax(&["status", &big, "--format", "json", "--db", db]).await.json();
    let c = &b["total"];
    assert_eq!(c["pending"], 0);
    assert_eq!(c["running"], 0, "calls in flight were recorded and settled");
    assert_eq!(
        c["succeeded"].as_i64().unwrap() + c["cancelled"].as_i64().unwrap(),
        200,
        "every execution succeeded or was cancelled: {b}"
    );
    assert!(c["cancelled"].as_i64().unwrap() > 0);

    // A live worker is listed; SIGTERM drains it and it exits 130, saying it stopped.
    let listed = fleet.parallax(&["workers", "--format", "json", "--db", db]).await.json();
    assert_eq!(listed[0]["live"], true, "{listed}");
    let pid = worker.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
    let listed = fleet.parallax(&["workers", "--format", "json", "--db", db]).await.json();
    assert_eq!(listed[0]["live"], false);
    assert!(!listed[0]["stopped_at_ms"].is_null());
}

#[tokio::test]
async fn an_idle_worker_on_sqlite_exits_and_reports_failures_with_exit_1() {
    let fleet = Fleet::start(&["us", "eu"], |_| StubConfig {
        faults: vec![Fault::Status { status: 400, first_n_attempts: 1, retry_after_s: None, fraction: 0.25 }],
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(20, &["a"], &["us", "eu"], ""));
    let job = fleet.parallax(&["submit", "job.yaml"]).await.stdout.trim().to_owned();
    let us = fleet.parallax(&["worker", "--region", "us", "--exit-when-idle"]).await;
    assert_eq!(us.code, 1, "some executions failed (HTTP 400): {us:?}");
    let s = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    let cells = s["cells"].as_array().unwrap();
    let eu = cells.iter().find(|c| c["region"] == "eu").unwrap();
    assert_eq!(eu["pending"], 20, "a worker of us leaves eu alone");
    assert_eq!(fleet.stub("eu").stats.total_requests(), 0);
    let bad = fleet.parallax(&["worker", "--region", "mars"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("mars"), "{bad:?}");
}

#[tokio::test]
async fn a_database_restart_mid_run_loses_nothing_and_the_run_completes() {
    let Some(cluster) = crate::support::Cluster::start("a_database_restart_mid_run") else { return };
    let db = cluster.url();
    let fleet =
        Fleet::start(&["us", "eu"], |_| StubConfig { latency: Duration::from_millis(40), ..StubConfig::default() })
            .await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(150, &["a"], &["us", "eu"], "run: {concurrency: 8}\n"));
    let job = fleet.parallax(&["submit", "job.yaml", "--db", &db]).await.stdout.trim().to_owned();
    let mut workers: Vec<tokio::process::Child> = ["us", "eu"]
        .iter()
        .map(|r| fleet.command(&["worker", "--region", r, "--exit-when-idle", "--db", &db], &[]).spawn().unwrap())
        .collect();
    wait_for_requests(&fleet, 60).await;
    assert!(cluster.pg_ctl("stop"), "the database stops");
    let during = fleet.total_requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(cluster.pg_ctl("start"), "and starts again");
    let mut paused = 0;
    for w in workers.drain(..) {
        let out = tokio::time::timeout(Duration::from_secs(120), w.wait_with_output())
            .await
            .expect("workers finish")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        paused += usize::from(stderr.contains("store unavailable"));
    }
    assert!(paused > 0, "the workers saw the database go away and waited for it");
    assert!(during < 300, "the restart came mid-run ({during} calls before it)");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl", "--db", &db]).await.json_lines();
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "nothing lost");
    let calls = fleet.requests_by_key();
    let attempts =
        fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl", "--db", &db]).await.json_lines();
    let lost = attempts.iter().filter(|a| a["outcome"] == "lost").count() as u64;
    let duplicates: u64 = calls.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= lost,
        "a key called twice only for a call whose recording the restart lost ({duplicates} > {lost})"
    );
    assert_eq!(calls.len(), 300);
}

#[tokio::test]
async fn two_workers_of_one_region_together_keep_its_endpoint_and_job_limits() {
    let Some(pg) = PgSchema::create("two_workers_keep_limits").await else { return };
    let db = pg.location.as_str();
    let fleet =
        Fleet::start(&["us"], |_| StubConfig { latency: Duration::from_millis(60), ..StubConfig::default() }).await;
    // The endpoint allows 3 calls at once; each worker alone would send 3.
    fleet.catalog(&[("a", "prov-a")], "      concurrency: 3\n");
    fleet.write("job.yaml", &spec(40, &["a"], &["us"], "run: {concurrency: 8}\n"));
    fleet.write("small.yaml", &spec(30, &["a"], &["us"], "run: {concurrency: 2}\n").replace("name: it", "name: small"));
    let job = fleet.parallax(&["submit", "job.yaml", "--db", db]).await.stdout.trim().to_owned();
    two_us_workers_until_idle(&fleet, db).await;
    let s = fleet.parallax(&["status", &job, "--format", "json", "--db", db]).await.json();
    assert_eq!(s["total"]["succeeded"], 40);
    let peak = fleet.stub("us").stats.max_in_flight();
    assert!(peak <= 3, "two workers together sent {peak} calls at once to an endpoint that allows 3");
    assert!(peak >= 2, "and they did work in parallel ({peak})");

    // A job's concurrency holds across workers too: on an endpoint without a limit, the
    // stub never sees more of the job's calls at once than the job allows.
    fleet.catalog(&[("a", "prov-a")], "");
    let small = fleet.parallax(&["submit", "small.yaml", "--db", db]).await.stdout.trim().to_owned();
    fleet.stub("us").stats.reset();
    two_us_workers_until_idle(&fleet, db).await;
    let s = fleet.parallax(&["status", &small, "--format", "json", "--db", db]).await.json();
    assert_eq!(s["total"]["succeeded"], 30);
    let peak = fleet.stub("us").stats.max_in_flight();
    assert!(peak <= 2, "two workers together sent {peak} calls at once of a job of concurrency 2");
    assert_eq!(peak, 2, "and they used the job's concurrency");
}

/// Three workers for a limit of one call at once: each keeps its calls within its share of
/// the limit, shares move to whoever holds work, and no worker holding items it may not
/// send yet is left waiting on a share nobody uses.
#[tokio::test]
async fn more_workers_than_a_limit_has_slots_share_it_and_all_finish() {
    let Some(pg) = PgSchema::create("workers_share_one_slot").await else { return };
    let db = pg.location.as_str();
    let fleet =
        Fleet::start(&["us"], |_| StubConfig { latency: Duration::from_millis(20), ..StubConfig::default() }).await;
    fleet.catalog(&[("a", "prov-a"), ("b", "prov-b")], "      concurrency: 1\n");
    fleet.write("job.yaml", &spec(15, &["a", "b"], &["us"], "run: {concurrency: 1}\n"));
    let job = fleet.parallax(&["submit", "job.yaml", "--db", db]).await.stdout.trim().to_owned();
    us_workers_until_idle(&fleet, db, 3).await;
    let s = fleet.parallax(&["status", &job, "--format", "json", "--db", db]).await.json();
    assert_eq!(s["total"]["succeeded"], 30);
    assert_eq!(s["total"]["attempts"], 30);
    let peak = fleet.stub("us").stats.max_in_flight();
    assert_eq!(peak, 1, "three workers together sent {peak} calls at once of a job of concurrency 1");
}

/// Two workers of region us, run until they have nothing left; both must exit 0.
async fn two_us_workers_until_idle(fleet: &Fleet, db: &str) {
    us_workers_until_idle(fleet, db, 2).await
}

/// `n` workers of region us, run until they have nothing left; each must exit 0.
async fn us_workers_until_idle(fleet: &Fleet, db: &str, n: usize) {
    let workers: Vec<tokio::process::Child> = (0..n)
        .map(|_| fleet.command(&["worker", "--region", "us", "--exit-when-idle", "--db", db], &[]).spawn().unwrap())
        .collect();
    for w in workers {
        let out = tokio::time::timeout(Duration::from_secs(60), w.wait_with_output()).await.unwrap().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test]
async fn two_workers_of_one_region_together_keep_its_rate() {
    let Some(pg) = PgSchema::create("two_workers_keep_a_rate").await else { return };
    let db = pg.location.as_str();
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    // 10 calls a second for the endpoint; each worker alone would also send 10 a second.
    fleet.catalog(&[("a", "prov-a")], "      rate_per_s: 10\n");
    fleet.write("job.yaml", &spec(30, &["a"], &["us"], ""));
    let job = fleet.parallax(&["submit", "job.yaml", "--db", db]).await.stdout.trim().to_owned();
    two_us_workers_until_idle(&fleet, db).await;
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl", "--db", db]).await.json_lines();
    assert_eq!(attempts.len(), 30);
    let mut starts: Vec<i64> = attempts.iter().map(|a| a["started_at_ms"].as_i64().unwrap()).collect();
    starts.sort();
    // One token to start with, then ten a second, the bucket holding a second's worth at
    // most: the 30 calls take at least 2.9 s together, and no second holds more than a full
    // bucket and a second's refill (a pause — a loaded machine — lets the bucket fill).
    assert!(starts[29] - starts[0] >= 2_500, "30 calls in {} ms at 10/s", starts[29] - starts[0]);
    for (i, t) in starts.iter().enumerate() {
        let in_a_second = starts[i..].iter().take_while(|u| **u < t + 1000).count();
        assert!(in_a_second <= 21, "{in_a_second} calls within a second of {t}");
    }
}

#[tokio::test]
async fn two_workers_together_keep_a_jobs_delay_between_calls() {
    let Some(pg) = PgSchema::create("two_workers_keep_delay_ms").await else { return };
    let db = pg.location.as_str();
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    // 200 ms between calls: 8 calls take at least 1.4 s, whoever sends them; two workers
    // pacing themselves alone would take half that.
    fleet.write("job.yaml", &spec(8, &["a"], &["us"], "run: {delay_ms: 200}\n"));
    let job = fleet.parallax(&["submit", "job.yaml", "--db", db]).await.stdout.trim().to_owned();
    two_us_workers_until_idle(&fleet, db).await;
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl", "--db", db]).await.json_lines();
    assert_eq!(attempts.len(), 8);
    let mut starts: Vec<i64> = attempts.iter().map(|a| a["started_at_ms"].as_i64().unwrap()).collect();
    starts.sort();
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= 190, "calls {} ms apart under delay_ms 200: {starts:?}", pair[1] - pair[0]);
    }
}
