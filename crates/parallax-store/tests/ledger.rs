//! The ledger's promises, exercised directly with a controllable clock, on both back ends.
//!
//! Every test body is written once, as an `async fn(Db)`, and `on_both_back_ends!` runs it
//! twice: `sqlite::name` on a temporary file, `postgres::name` in a fresh schema of the
//! server at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped
//! afterwards. Without a server the PostgreSQL half says so loudly on stderr and passes,
//! unless `PARALLAX_CI=1`, where a skipped test is a failed one.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parallax_core::{Catalog, JobSpec, Plan};
use parallax_store::{
    Applied, BlockRecord, Cancelled, ClaimRequest, Clock, LabelRecord, Next, Outcome, RawRecord, ResultFilter,
    ResultRecord, ShareAsk, Store, StoreError, WorkerRecord, redact,
};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

struct TestClock(AtomicI64);
impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
impl TestClock {
    fn new() -> Arc<TestClock> {
        Arc::new(TestClock(AtomicI64::new(1_700_000_000_000)))
    }
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

/// A fresh, empty store location for one test, removed when dropped.
struct Db {
    location: String,
    place: Place,
}

/// Held for its `Drop`: the directory or schema goes with the test.
#[allow(dead_code)]
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(Schema),
}

/// A schema of its own on the shared server; dropped (with everything in it) at the end.
struct Schema {
    admin_url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop runs outside async (and maybe while a failed test unwinds): use a thread
        // with a runtime of its own.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = admin(&url).await?;
                client.batch_execute(&format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test schema {}", self.name);
        }
    }
}

async fn admin(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("ledger.db").to_str().unwrap().to_owned();
        Db { location, place: Place::Sqlite(dir) }
    }

    /// A fresh schema, or `None` (after a loud message) when no server answers.
    async fn postgres(test: &str) -> Option<Db> {
        let url = database_url();
        let client = match admin(&url).await {
            Ok(client) => client,
            Err(e) => {
                let message = format!(
                    "PostgreSQL test `{test}` SKIPPED: no server at {} ({e}). Set DATABASE_URL to run it.",
                    redact(&url)
                );
                if std::env::var("PARALLAX_CI").is_ok_and(|v| v == "1") {
                    panic!("{message} PARALLAX_CI=1: a skipped test fails.");
                }
                // Straight to stderr: `eprintln!` is captured, and hidden, for a passing test.
                let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {message} !!!!!!!!\n");
                return None;
            }
        };
        let name = format!("t_{}", hex::encode(rand::random::<[u8; 8]>()));
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let location = format!("{url}{sep}options=-c%20search_path%3D{name}");
        Some(Db { location, place: Place::Postgres(Schema { admin_url: url, name }) })
    }

    fn kind(&self) -> &'static str {
        match self.place {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres(_) => "postgres",
        }
    }

    /// A store with a test clock.
    async fn store(&self) -> (Store, Arc<TestClock>) {
        let clock = TestClock::new();
        (Store::open_with_clock(&self.location, clock.clone()).await.unwrap(), clock)
    }

    /// Runs SQL on the store directly, behind the back end's back (tampering, inspection).
    async fn sql(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.place {
            Place::Sqlite(_) => {
                let conn = rusqlite::Connection::open(&self.location).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => None,
                                rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                                rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                                v => Some(format!("{v:?}")),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            Place::Postgres(_) => {
                let client = admin(&self.location).await.unwrap();
                client
                    .simple_query(sql)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                        }
                        _ => None,
                    })
                    .collect()
            }
        }
    }
}

macro_rules! on_both_back_ends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::Db::postgres(stringify!($name)).await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

on_both_back_ends!(
    enqueue_is_idempotent_and_fresh_starts_a_new_generation,
    a_claim_records_its_attempt_and_each_key_is_claimed_once,
    a_stale_lease_cannot_write_and_the_new_holder_can,
    a_late_answer_whose_token_is_still_current_is_kept,
    many_batches_in_a_row_each_apply_and_a_stale_one_among_them_is_refused,
    lost_attempts_park_under_the_park_policy_and_fail_when_the_budget_is_spent,
    retries_wait_out_their_backoff_and_results_are_unique,
    a_heartbeat_keeps_a_lease_and_names_the_stale_ones,
    a_batch_that_repeats_an_execution_applies_it_once,
    released_and_aborted_calls_go_back_to_pending,
    fair_shares_leave_room_for_every_endpoint,
    labels_replace_their_own_classifier_only,
    pages_to_label_are_full_until_the_last_and_cover_each_answer_once,
    a_label_given_with_its_answer_is_committed_with_it_behind_the_same_fence,
    concurrent_claims_from_two_stores_never_share_a_key,
    concurrent_opens_migrate_once,
    a_changed_migration_or_a_newer_schema_is_refused,
    a_read_only_store_fails_the_finish_with_a_backend_error,
    unknown_jobs_are_reported_as_such,
    active_jobs_are_those_with_work_on_the_endpoints_asked_for,
    a_cancelled_job_is_claimed_no_more_and_its_rest_is_settled,
    workers_register_beat_and_stop,
    a_notice_wakes_a_listening_worker,
    shared_limits_count_live_leases_of_every_holder,
    a_lease_whose_call_returned_holds_no_slot,
    a_shared_rate_is_one_bucket_for_every_worker,
    shares_of_a_limit_never_add_up_to_more_than_it_and_even_out_between_workers,
    a_block_and_what_came_back_are_kept,
    pages_events_and_metrics_read_what_was_committed,
    leases_are_listed_by_holder_and_a_gone_holders_end_at_once,
    a_read_only_open_migrates_nothing_and_writes_nothing,
    a_jobs_pacing_spaces_its_calls_whoever_claims_them,
);

fn plan(questions: usize) -> Arc<Plan> {
    plan_of(questions, &["m"], 1)
}

/// `questions` × `models` × regions r1, r2 × `samples`; every model served in both regions.
fn plan_of(questions: usize, models: &[&str], samples: u32) -> Arc<Plan> {
    let served: Vec<String> = models.iter().map(|m| format!("{m}: provider-{m}")).collect();
    let served = served.join(", ");
    let catalog = Catalog::parse(
        &format!(
            "regions:\n  r1:\n    - {{name: e1, kind: openai-chat, base_url: 'http://127.0.0.1:1/v1', models: {{{served}}}}}\n  r2:\n    - {{name: e2, kind: openai-chat, base_url: 'http://127.0.0.1:2/v1', models: {{{served}}}}}\n"
        ),
        Path::new("c.yaml"),
    )
    .unwrap();
    let mut spec = String::from("name: ledger\nquestions:\n");
    for i in 0..questions {
        spec.push_str(&format!("  - {{id: q{i}, text: question {i}}}\n"));
    }
    spec.push_str(&format!("models: [{}]\nregions: [r1, r2]\n", models.join(", ")));
    if samples > 1 {
        spec.push_str(&format!("samples: {samples}\n"));
    }
    let mut read = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    let spec = JobSpec::parse(&spec, Path::new("s.yaml"), &mut read).unwrap();
    Arc::new(Plan::build(&spec, &catalog).unwrap())
}

fn claim_request(job: &str, n: usize) -> ClaimRequest {
    ClaimRequest {
        job_id: job.into(),
        worker: "test".into(),
        wants: vec![("r1/e1".into(), n), ("r2/e2".into(), n)],
        max_total: 2 * n,
        lease: Duration::from_secs(10),
        max_attempts: 3,
        park_possibly_billed: false,
        endpoint_caps: vec![],
        job_cap: None,
        returned: vec![],
        endpoint_rates: vec![],
        job_rate: None,
    }
}

fn success(claim: &parallax_store::Claim, text: &str) -> Outcome {
    Outcome {
        execution_id: claim.execution_id,
        attempt_id: claim.attempt_id,
        lease_token: claim.lease_token.clone(),
        latency_ms: 5,
        http_status: Some(200),
        possibly_billed: false,
        error: None,
        next: Next::Succeeded(Box::new(ResultRecord {
            reported_model: Some("provider-m".into()),
            model_mismatch: false,
            response_text: Some(text.into()),
            finish_reason: Some("stop".into()),
            usage: None,
            provenance: None,
            block: None,
            label: None,
        })),
        raw: None,
    }
}

/// The built-in classifier's label (version 1), sure of itself.
fn builtin_label(execution_id: i64, label: &str, confidence: f64) -> LabelRecord {
    LabelRecord {
        execution_id,
        classifier: "builtin".into(),
        version: "1".into(),
        label: label.into(),
        evidence: None,
        rubric: None,
        raw: None,
        confidence: Some(confidence),
        uncertain: Some(false),
        doubts: None,
    }
}

fn ended(claim: &parallax_store::Claim, next: Next) -> Outcome {
    Outcome { next, http_status: None, error: Some("it ended so".into()), ..success(claim, "") }
}

async fn enqueue_is_idempotent_and_fresh_starts_a_new_generation(db: Db) {
    let (store, _) = db.store().await;
    assert_eq!(store.backend(), db.kind());
    let plan = plan(3);
    assert!(store.current_job(&plan.base_job_id).await.unwrap().is_none());
    let first = store.enqueue(plan.clone(), false).await.unwrap();
    assert_eq!((first.id.as_str(), first.inserted), (plan.base_job_id.as_str(), 6));
    let again = store.enqueue(plan.clone(), false).await.unwrap();
    assert_eq!((again.id, again.inserted), (first.id.clone(), 0));
    let fresh = store.enqueue(plan.clone(), true).await.unwrap();
    assert_eq!(fresh.id, format!("{}-2", plan.base_job_id));
    assert_eq!(fresh.inserted, 6);
    // A plain enqueue now continues the newest generation.
    assert_eq!(store.enqueue(plan.clone(), false).await.unwrap().id, fresh.id);
    assert_eq!(store.current_job(&plan.base_job_id).await.unwrap().unwrap().id, fresh.id);
    assert_eq!(store.job_identity(&fresh.id).await.unwrap(), plan.identity);
    let jobs = store.jobs(10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.counts.pending == 6 && j.counts.total() == 6));
}

async fn a_claim_records_its_attempt_and_each_key_is_claimed_once(db: Db) {
    let (store, _) = db.store().await;
    let plan = plan(5);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    let a = store.claim(claim_request(&job.id, 3)).await.unwrap();
    let b = store.claim(claim_request(&job.id, 3)).await.unwrap();
    let c = store.claim(claim_request(&job.id, 3)).await.unwrap();
    let mut ids: Vec<i64> = a.claims.iter().chain(&b.claims).chain(&c.claims).map(|c| c.execution_id).collect();
    assert_eq!(ids.len(), 10, "every execution claimed once, none twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    let attempts = store.attempts(&job.id, ResultFilter::default()).await.unwrap();
    assert_eq!(attempts.len(), 10);
    assert!(attempts.iter().all(|a| a.outcome == "open"));
    // The stored bytes are the planned bytes, and a claim says what to send.
    let first = &a.claims[0];
    let planned = plan.items().find(|i| i.key == first.key).unwrap();
    assert_eq!(first.request_body, planned.request_body.as_bytes());
    assert_eq!((first.endpoint.as_str(), first.requested_model.as_str()), ("r1/e1", "provider-m"));
    assert_eq!((first.attempt_in_budget, first.lease_token.len()), (1, 32));
    assert_eq!(first.idempotency_key, parallax_core::idempotency_key(&job.id, &first.key));
    // Claims come in plan order, endpoint by endpoint.
    let keys: Vec<(String, String)> =
        a.claims.iter().map(|c| (c.key.question_id.clone(), c.key.region.clone())).collect();
    let want: Vec<(String, String)> =
        [("q0", "r1"), ("q1", "r1"), ("q2", "r1"), ("q0", "r2"), ("q1", "r2"), ("q2", "r2")]
            .iter()
            .map(|(q, r)| (q.to_string(), r.to_string()))
            .collect();
    assert_eq!(keys, want);
    assert_eq!(store.status(&job.id).await.unwrap().total.counts.running, 10);
}

async fn a_stale_lease_cannot_write_and_the_new_holder_can(db: Db) {
    let (store, clock) = db.store().await;
    let plan = plan(1);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    let mut req = claim_request(&job.id, 1);
    req.wants.truncate(1);
    let old = store.claim(req.clone()).await.unwrap().claims.remove(0);
    // Not expired yet: nothing to claim.
    assert!(store.claim(req.clone()).await.unwrap().claims.is_empty());
    clock.advance(Duration::from_secs(11));
    let batch = store.claim(req.clone()).await.unwrap();
    assert_eq!(batch.lost_attempts, 1, "the first holder's open attempt is closed as lost");
    let new = &batch.claims[0];
    assert_eq!(new.execution_id, old.execution_id);
    assert_ne!(new.lease_token, old.lease_token);
    assert_eq!(new.attempt_in_budget, 2);

    // The first worker's late answer is refused; the heartbeat says so too.
    assert_eq!(
        store.heartbeat(vec![(old.execution_id, old.lease_token.clone())], Duration::from_secs(10)).await.unwrap(),
        vec![old.execution_id]
    );
    assert_eq!(store.finish(vec![success(&old, "late")]).await.unwrap(), vec![Applied::Stale]);
    assert_eq!(store.finish(vec![success(new, "current")]).await.unwrap(), vec![Applied::Applied]);
    // And a second write with the same (now released) token is refused as well.
    assert_eq!(store.finish(vec![success(new, "again")]).await.unwrap(), vec![Applied::Stale]);

    let results =
        store.results(&job.id, ResultFilter { region: Some("r1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].response_text.as_deref(), Some("current"));
    assert_eq!(results[0].attempts, 2);
    let outcomes: Vec<String> =
        store.attempts(&job.id, ResultFilter::default()).await.unwrap().into_iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, ["stale", "succeeded"], "the late attempt stays in the ledger, marked stale");
    let status = store.status(&job.id).await.unwrap();
    assert_eq!(status.total.possibly_billed, 1);
}

/// More batches than PostgreSQL plans a prepared statement for before it may settle on a
/// generic plan (the store prepares `FINISH` afresh every five uses), on one store: each
/// applies, and a repeated one is refused.
async fn many_batches_in_a_row_each_apply_and_a_stale_one_among_them_is_refused(db: Db) {
    let (store, _clock) = db.store().await;
    let job = store.enqueue(plan(12), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 12)).await.unwrap().claims;
    assert_eq!(claims.len(), 24);
    for (i, pair) in claims.chunks(2).enumerate() {
        let applied = store.finish(pair.iter().map(|c| success(c, &format!("answer {i}"))).collect()).await.unwrap();
        assert_eq!(applied, [Applied::Applied, Applied::Applied], "batch {i}");
    }
    // Every token is spent now: a second write of any of them is refused, and its attempt,
    // closed already, stays as it closed.
    assert_eq!(store.finish(vec![success(&claims[7], "again")]).await.unwrap(), [Applied::Stale]);
    let status = store.status(&job.id).await.unwrap();
    assert_eq!((status.total.counts.succeeded, status.total.attempts, status.total.possibly_billed), (24, 24, 0));
    let results = store.results(&job.id, ResultFilter::default()).await.unwrap();
    assert_eq!(results.len(), 24);
    assert!(results.iter().all(|r| r.response_text.as_deref().is_some_and(|t| t.starts_with("answer "))));
}

async fn a_late_answer_whose_token_is_still_current_is_kept(db: Db) {
    let (store, clock) = db.store().await;
    let plan = plan(1);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    let claim = store.claim(claim_request(&job.id, 1)).await.unwrap().claims.remove(0);
    clock.advance(Duration::from_secs(60)); // expired, but nobody reclaimed
    assert_eq!(store.finish(vec![success(&claim, "late but ours")]).await.unwrap(), vec![Applied::Applied]);
}

async fn lost_attempts_park_under_the_park_policy_and_fail_when_the_budget_is_spent(db: Db) {
    let (store, clock) = db.store().await;
    let plan = plan(1);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    let mut req = claim_request(&job.id, 1);
    req.park_possibly_billed = true;
    store.claim(req.clone()).await.unwrap();
    clock.advance(Duration::from_secs(11));
    let batch = store.claim(req.clone()).await.unwrap();
    assert_eq!((batch.claims.len(), batch.parked, batch.lost_attempts), (0, 2, 2));
    let status = store.status(&job.id).await.unwrap();
    assert_eq!(status.total.counts.parked, 2);

    // Re-arm parked items; with a budget of 1 a second loss fails them.
    assert_eq!(store.rearm(&job.id, false, true).await.unwrap(), 2);
    let mut req = claim_request(&job.id, 1);
    req.max_attempts = 1;
    assert_eq!(store.claim(req.clone()).await.unwrap().claims.len(), 2);
    clock.advance(Duration::from_secs(11));
    let batch = store.claim(req).await.unwrap();
    assert_eq!((batch.claims.len(), batch.failed), (0, 2));
    let results = store.results(&job.id, ResultFilter::default()).await.unwrap();
    assert!(
        results.iter().all(|r| r.status == "failed"
            && r.error.as_deref() == Some("attempt budget of 1 spent; the last attempt was lost"))
    );
    assert_eq!(store.rearm(&job.id, true, false).await.unwrap(), 2);
    assert_eq!(store.status(&job.id).await.unwrap().total.counts.pending, 2);
}

async fn retries_wait_out_their_backoff_and_results_are_unique(db: Db) {
    let (store, clock) = db.store().await;
    let plan = plan(1);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    assert_eq!(store.next_wakeup(&job.id).await.unwrap(), Some(0), "pending without backoff: due now");
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    assert_eq!(store.next_wakeup(&job.id).await.unwrap(), Some(store.now_ms() + 10_000), "the leases' end");
    let retry: Vec<Outcome> = claims
        .iter()
        .map(|c| Outcome {
            next: Next::Retry { after: Duration::from_secs(5) },
            http_status: Some(500),
            possibly_billed: true,
            error: Some("HTTP 500".into()),
            ..success(c, "")
        })
        .collect();
    store.finish(retry).await.unwrap();
    assert!(store.claim(claim_request(&job.id, 1)).await.unwrap().claims.is_empty(), "still backing off");
    assert_eq!(store.next_wakeup(&job.id).await.unwrap(), Some(store.now_ms() + 5_000));
    clock.advance(Duration::from_secs(5));
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    assert_eq!(claims.len(), 2);
    assert!(claims.iter().all(|c| c.attempt_in_budget == 2));
    store.finish(claims.iter().map(|c| success(c, "ok")).collect()).await.unwrap();
    let status = store.status(&job.id).await.unwrap();
    assert_eq!((status.total.counts.succeeded, status.total.attempts, status.total.possibly_billed), (2, 4, 2));
    assert_eq!(store.next_wakeup(&job.id).await.unwrap(), None);
    let attempts = store.attempts(&job.id, ResultFilter::default()).await.unwrap();
    let first = &attempts[0];
    assert_eq!(
        (first.outcome.as_str(), first.http_status, first.error.as_deref()),
        ("retryable", Some(500), Some("HTTP 500"))
    );
    assert_eq!((first.started_at_ms, first.finished_at_ms), (1_700_000_000_000, Some(1_700_000_000_000)));
    assert!(attempts[2..].iter().all(|a| a.started_at_ms == 1_700_000_005_000 && a.number == 2));
}

async fn a_heartbeat_keeps_a_lease_and_names_the_stale_ones(db: Db) {
    let (store, clock) = db.store().await;
    let job = store.enqueue(plan(1), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    let held: Vec<(i64, String)> = claims.iter().map(|c| (c.execution_id, c.lease_token.clone())).collect();
    clock.advance(Duration::from_secs(8));
    assert!(store.heartbeat(held.clone(), Duration::from_secs(10)).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(8)); // 16 s after the claim, 8 s after the heartbeat
    assert!(store.claim(claim_request(&job.id, 1)).await.unwrap().claims.is_empty(), "the leases were extended");
    let mut wrong = held.clone();
    wrong[1].1 = "not-the-token".into();
    assert_eq!(store.heartbeat(wrong, Duration::from_secs(10)).await.unwrap(), vec![held[1].0]);
    assert!(store.heartbeat(Vec::new(), Duration::from_secs(10)).await.unwrap().is_empty());
}

async fn a_batch_that_repeats_an_execution_applies_it_once(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(1), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    let (a, b) = (&claims[0], &claims[1]);
    let applied = store.finish(vec![success(a, "first"), success(b, "other"), success(a, "second")]).await.unwrap();
    assert_eq!(applied, [Applied::Applied, Applied::Applied, Applied::Stale]);
    let results = store.results(&job.id, ResultFilter::default()).await.unwrap();
    let texts: Vec<_> = results.iter().map(|r| r.response_text.as_deref().unwrap()).collect();
    assert!(texts.contains(&"first") && !texts.contains(&"second"));
    assert_eq!(store.finish(Vec::new()).await.unwrap(), []);
}

async fn a_block_and_what_came_back_are_kept(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(1), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    let (a, b) = (&claims[0], &claims[1]);
    let block = BlockRecord { code: "content_filter".into(), message: "The response was filtered (hate: high)".into() };
    let blocked = Outcome {
        http_status: Some(400),
        next: Next::Succeeded(Box::new(ResultRecord {
            reported_model: None,
            model_mismatch: false,
            response_text: None,
            finish_reason: None,
            usage: None,
            provenance: None,
            block: Some(block.clone()),
            label: None,
        })),
        raw: Some(Box::new(RawRecord {
            body_gzip: parallax_store::raw::compress(br#"{"error":{"code":"content_filter"}}"#),
            headers: vec![
                ("x-request-id".into(), "req-7".into()),
                ("x-ratelimit-remaining-requests".into(), "99".into()),
            ],
            system_fingerprint: None,
        })),
        ..success(a, "")
    };
    let answered = Outcome {
        raw: Some(Box::new(RawRecord {
            body_gzip: parallax_store::raw::compress("{\"system_fingerprint\":\"fp_1\",\"é\":1}".as_bytes()),
            headers: vec![],
            system_fingerprint: Some("fp_1".into()),
        })),
        ..success(b, "fine")
    };
    store.finish(vec![blocked, answered]).await.unwrap();

    let rows = store.results(&job.id, ResultFilter { raw: true, ..Default::default() }).await.unwrap();
    assert_eq!((rows[0].status.as_str(), rows[0].blocked), ("succeeded", true));
    assert_eq!(rows[0].block_reason.as_ref(), Some(&block));
    assert_eq!((rows[1].blocked, rows[1].block_reason.as_ref()), (false, None));
    let raw = rows[0].raw.as_ref().unwrap();
    assert_eq!(raw.raw_response.as_deref(), Some(r#"{"error":{"code":"content_filter"}}"#));
    let headers = serde_json::to_value(&raw.response_headers).unwrap();
    assert_eq!(headers, serde_json::json!({"x-request-id": "req-7", "x-ratelimit-remaining-requests": "99"}));
    let raw = rows[1].raw.as_ref().unwrap();
    assert_eq!(raw.raw_response.as_deref(), Some("{\"system_fingerprint\":\"fp_1\",\"é\":1}"));
    assert_eq!(raw.system_fingerprint.as_deref(), Some("fp_1"));

    // Without asking, the raw fields are not read and not shown; `blocked` always is.
    let plain = store.results(&job.id, ResultFilter::default()).await.unwrap();
    let shown = serde_json::to_value(&plain[0]).unwrap();
    assert!(shown.get("raw_response").is_none() && shown.get("system_fingerprint").is_none());
    assert_eq!(
        (&shown["blocked"], &shown["block_reason"]["code"]),
        (&serde_json::json!(true), &serde_json::json!("content_filter"))
    );

    // The labeller learns of the block; the analysis of the fingerprint.
    let todo = store.to_label(&job.id, "builtin", "5", false, 0, 10).await.unwrap();
    assert_eq!(todo[0].block.as_ref(), Some(&block));
    assert_eq!(todo[1].block, None);
    let rows = store.analysis_rows(&job.id).await.unwrap();
    let prints: Vec<Option<&str>> = rows.iter().map(|r| r.system_fingerprint.as_deref()).collect();
    assert_eq!(prints, [None, Some("fp_1")]);

    // `blocked` and `empty` are labels the store takes.
    for (t, label) in todo.iter().zip(["blocked", "empty"]) {
        let record = LabelRecord {
            execution_id: t.execution_id,
            classifier: "builtin".into(),
            version: "5".into(),
            label: label.into(),
            evidence: None,
            rubric: None,
            raw: None,
            confidence: Some(1.0),
            uncertain: Some(false),
            doubts: None,
        };
        store.put_labels(vec![record]).await.unwrap();
    }
    let labels: Vec<Option<String>> =
        store.results(&job.id, ResultFilter::default()).await.unwrap().into_iter().map(|r| r.label).collect();
    assert_eq!(labels, [Some("blocked".into()), Some("empty".into())]);
}

async fn released_and_aborted_calls_go_back_to_pending(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(1), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    let applied =
        store.finish(vec![ended(&claims[0], Next::Released), ended(&claims[1], Next::Aborted)]).await.unwrap();
    assert_eq!(applied, [Applied::Applied, Applied::Applied]);
    let results = store.results(&job.id, ResultFilter::default()).await.unwrap();
    // A released call never left: it does not count as an attempt; an aborted one does.
    let attempts: Vec<(String, i64)> = results.iter().map(|r| (r.region.clone(), r.attempts)).collect();
    assert_eq!(attempts, [("r1".to_string(), 0), ("r2".to_string(), 1)]);
    assert!(results.iter().all(|r| r.status == "pending" && r.error.as_deref() == Some("it ended so")));
    let outcomes: Vec<String> =
        store.attempts(&job.id, ResultFilter::default()).await.unwrap().into_iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, ["released", "aborted"]);
    // Both are claimable again at once; the released one's next attempt is its first.
    let again = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    let budget: Vec<u32> = again.iter().map(|c| c.attempt_in_budget).collect();
    assert_eq!(budget, [1, 2]);
    // A failed or parked outcome is terminal and keeps its message.
    store.finish(vec![ended(&again[0], Next::Failed), ended(&again[1], Next::Parked)]).await.unwrap();
    let counts = store.status(&job.id).await.unwrap().total.counts;
    assert_eq!((counts.failed, counts.parked, counts.pending), (1, 1, 0));
}

async fn fair_shares_leave_room_for_every_endpoint(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(6), false).await.unwrap();
    let by_endpoint = |claims: &[parallax_store::Claim]| {
        let r1 = claims.iter().filter(|c| c.endpoint == "r1/e1").count();
        (r1, claims.len() - r1)
    };
    // Room for 4: two each, though each endpoint would take 6.
    let req = ClaimRequest { max_total: 4, ..claim_request(&job.id, 6) };
    assert_eq!(by_endpoint(&store.claim(req).await.unwrap().claims), (2, 2));
    // r2 only has room for 1: r1 takes the rest in the second pass.
    let req = ClaimRequest {
        wants: vec![("r1/e1".into(), 6), ("r2/e2".into(), 1)],
        max_total: 4,
        ..claim_request(&job.id, 0)
    };
    assert_eq!(by_endpoint(&store.claim(req).await.unwrap().claims), (3, 1));
    // r1 is out of work: r2 takes everything left.
    let req = ClaimRequest { max_total: 10, ..claim_request(&job.id, 10) };
    assert_eq!(by_endpoint(&store.claim(req).await.unwrap().claims), (1, 3));
    assert!(store.claim(claim_request(&job.id, 5)).await.unwrap().claims.is_empty());
}

async fn labels_replace_their_own_classifier_only(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(2), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 2)).await.unwrap().claims;
    store.finish(claims.iter().map(|c| success(c, "sure, here it is")).collect()).await.unwrap();
    let todo = store.to_label(&job.id, "builtin", "1", false, 0, 100).await.unwrap();
    assert_eq!(todo.len(), 4);
    assert_eq!((todo[0].question_text.as_str(), todo[0].response_text.as_str()), ("question 0", "sure, here it is"));
    let label = |id: i64, classifier: &str, version: &str, label: &str| LabelRecord {
        execution_id: id,
        classifier: classifier.into(),
        version: version.into(),
        label: label.into(),
        evidence: Some("sure".into()),
        rubric: None,
        raw: None,
        confidence: (classifier == "builtin").then_some(0.875),
        uncertain: (classifier == "builtin").then_some(true),
        doubts: (classifier == "builtin").then(|| "moralising truncated".into()),
    };
    let first = todo[0].execution_id;
    let stored = store
        .put_labels(vec![
            label(first, "builtin", "1", "refusal"),
            label(first, "builtin", "1", "compliance"), // the later one wins
            label(first, "judge:m@r1", "1", "partial"),
        ])
        .await
        .unwrap();
    assert_eq!(stored, 3);
    let todo = store.to_label(&job.id, "builtin", "1", false, 0, 100).await.unwrap();
    assert_eq!(todo.len(), 3, "labelled at this version: not to do again");
    assert_eq!(store.to_label(&job.id, "builtin", "2", false, 0, 100).await.unwrap().len(), 4);
    assert_eq!(store.to_label(&job.id, "builtin", "1", true, 0, 2).await.unwrap().len(), 2);
    assert_eq!(store.to_label(&job.id, "builtin", "1", true, first, 100).await.unwrap().len(), 3);
    let rows = store.analysis_rows(&job.id).await.unwrap();
    let labelled = rows.iter().find(|r| r.label.is_some()).unwrap();
    assert_eq!(labelled.label.as_deref(), Some("compliance"));
    assert_eq!(labelled.judge_labels, [("judge:m@r1".to_string(), "partial".to_string())]);
    let results = store.results(&job.id, ResultFilter::default()).await.unwrap();
    assert_eq!(results.iter().filter_map(|r| r.classifier.as_deref()).collect::<Vec<_>>(), ["builtin@1"]);
    // The built-in label keeps how sure it is; a judge's label carries none of that.
    let sure = results.iter().find(|r| r.classifier.is_some()).unwrap();
    assert_eq!((sure.confidence, sure.uncertain), (Some(0.875), Some(true)));
    assert_eq!(sure.doubts.as_deref(), Some(&["moralising".to_owned(), "truncated".to_owned()][..]));
    assert!(results.iter().filter(|r| r.classifier.is_none()).all(|r| r.confidence.is_none() && r.doubts.is_none()));
    // The same label again changes nothing, not even the live views' event number; a
    // different one is news.
    let seq = |rows: Vec<parallax_store::ResultRow>| rows.iter().find(|r| r.classifier.is_some()).unwrap().event_seq;
    let before = seq(store.results(&job.id, ResultFilter::default()).await.unwrap());
    store.put_labels(vec![label(first, "builtin", "1", "compliance")]).await.unwrap();
    assert_eq!(seq(store.results(&job.id, ResultFilter::default()).await.unwrap()), before);
    store.put_labels(vec![label(first, "builtin", "1", "partial")]).await.unwrap();
    assert!(seq(store.results(&job.id, ResultFilter::default()).await.unwrap()) > before);
    // A label outside the classifier's vocabulary is refused by the schema.
    assert!(store.put_labels(vec![label(first, "builtin", "1", "maybe")]).await.is_err());
}

/// A claim carries its question; a label given with the answer is committed in the
/// answer's transaction (a live reader sees both at once), and is never written where the
/// fence refused the answer.
async fn a_label_given_with_its_answer_is_committed_with_it_behind_the_same_fence(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(2), false).await.unwrap();
    let horizon0 = store.event_horizon().await.unwrap();
    let claims = store.claim(claim_request(&job.id, 2)).await.unwrap().claims;
    assert_eq!(claims.len(), 4);
    let mut asked: Vec<&str> = claims.iter().map(|c| c.question_text.as_str()).collect();
    asked.sort();
    assert_eq!(asked, ["question 0", "question 0", "question 1", "question 1"]);
    let labelled = |c: &parallax_store::Claim, label: &str| {
        let mut o = success(c, "no, I can't");
        if let Next::Succeeded(r) = &mut o.next {
            r.label = Some(builtin_label(c.execution_id, label, 0.75));
        }
        o
    };
    let mut refused = labelled(&claims[2], "compliance");
    refused.lease_token = "not the claim's token".into();
    let applied = store
        .finish(vec![
            labelled(&claims[0], "refusal"),
            success(&claims[1], "sure"),
            refused,
            labelled(&claims[3], "partial"),
        ])
        .await
        .unwrap();
    assert_eq!(applied, [Applied::Applied, Applied::Applied, Applied::Stale, Applied::Applied]);
    let label_of = |rows: &[parallax_store::ResultRow], id: i64| {
        rows.iter().find(|r| r.execution_id == id).and_then(|r| r.label.clone())
    };
    let rows = store.results(&job.id, ResultFilter::default()).await.unwrap();
    assert_eq!(label_of(&rows, claims[0].execution_id).as_deref(), Some("refusal"));
    assert_eq!(label_of(&rows, claims[1].execution_id), None);
    assert_eq!(label_of(&rows, claims[2].execution_id), None, "no answer behind a refused fence, so no label");
    assert_eq!(label_of(&rows, claims[3].execution_id).as_deref(), Some("partial"));
    let todo: Vec<i64> =
        store.to_label(&job.id, "builtin", "1", false, 0, 100).await.unwrap().iter().map(|t| t.execution_id).collect();
    assert_eq!(todo, [claims[1].execution_id]);
    store.put_labels(vec![builtin_label(claims[1].execution_id, "compliance", 1.0)]).await.unwrap();
    assert!(store.to_label(&job.id, "builtin", "1", false, 0, 100).await.unwrap().is_empty());
    assert_eq!(store.to_label(&job.id, "builtin", "2", false, 0, 100).await.unwrap().len(), 3, "another version's");
    // Each answer is one event, and a labelled one carries its label from the first read.
    let (_, events) = events_until(&store, &job.id, horizon0, 3).await;
    assert_eq!(events.len(), 3);
    assert_eq!(label_of(&events, claims[0].execution_id).as_deref(), Some("refusal"));
}

async fn pages_to_label_are_full_until_the_last_and_cover_each_answer_once(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(15), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 15)).await.unwrap().claims;
    assert_eq!(claims.len(), 30);
    // Every fifth call failed (nothing to label); every third answer is labelled already.
    let outcomes = claims
        .iter()
        .enumerate()
        .map(|(i, c)| if i % 5 == 0 { ended(c, Next::Failed) } else { success(c, "fine") })
        .collect();
    store.finish(outcomes).await.unwrap();
    let all = store.to_label(&job.id, "builtin", "1", false, 0, 100).await.unwrap();
    assert_eq!(all.len(), 24);
    let labelled: Vec<LabelRecord> =
        all.iter().step_by(3).map(|t| builtin_label(t.execution_id, "compliance", 1.0)).collect();
    store.put_labels(labelled).await.unwrap();
    let todo: Vec<i64> =
        store.to_label(&job.id, "builtin", "1", false, 0, 100).await.unwrap().iter().map(|t| t.execution_id).collect();
    assert_eq!(todo.len(), 16);
    // Pages of 3: each full but the last, in order, every answer to label exactly once.
    let (mut paged, mut after) = (Vec::new(), 0);
    loop {
        let page = store.to_label(&job.id, "builtin", "1", false, after, 3).await.unwrap();
        paged.extend(page.iter().map(|t| t.execution_id));
        if page.len() < 3 {
            break;
        }
        after = page[2].execution_id;
    }
    assert_eq!(paged, todo);
}

async fn concurrent_claims_from_two_stores_never_share_a_key(db: Db) {
    let one = Store::open(&db.location).await.unwrap();
    let two = Store::open(&db.location).await.unwrap();
    let job = one.enqueue(plan(100), false).await.unwrap();
    assert_eq!(job.planned, 200);
    let mut workers = Vec::new();
    for (i, store) in [one.clone(), two.clone(), one.clone(), two.clone()].into_iter().enumerate() {
        let job = job.id.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for batch in 0.. {
                let mut req = claim_request(&job, 7);
                req.worker = format!("worker-{i}");
                let claims = store.claim(req).await.unwrap().claims;
                if claims.is_empty() {
                    break;
                }
                // Finish every other batch, so claims race finishes too.
                if batch % 2 == 0 {
                    let applied = store.finish(claims.iter().map(|c| success(c, "ok")).collect()).await.unwrap();
                    assert!(applied.iter().all(|a| *a == Applied::Applied));
                }
                mine.extend(claims.iter().map(|c| c.execution_id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), unique.len()), (200, 200), "every key claimed, and exactly once");
    let status = two.status(&job.id).await.unwrap();
    assert_eq!(status.total.counts.succeeded + status.total.counts.running, 200);
    assert_eq!(status.total.attempts, 200);
    assert_eq!(one.attempts(&job.id, ResultFilter::default()).await.unwrap().len(), 200);
}

async fn concurrent_opens_migrate_once(db: Db) {
    let location = Arc::new(db.location.clone());
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let location = location.clone();
            tokio::spawn(async move { Store::open(&location).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    let versions = db.sql("SELECT version FROM schema_migrations ORDER BY version").await;
    let versions: Vec<String> = versions.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(versions, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"]);
}

async fn a_changed_migration_or_a_newer_schema_is_refused(db: Db) {
    let (store, _) = db.store().await;
    drop(store);
    db.sql("UPDATE schema_migrations SET sha256 = 'edited' WHERE version = 2").await;
    match Store::open(&db.location).await {
        Err(StoreError::MigrationChanged { version: 2, name }) => assert_eq!(name, "labels"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("an edited migration was accepted"),
    }
    db.sql("UPDATE schema_migrations SET sha256 = (SELECT sha256 FROM schema_migrations WHERE version = 1) WHERE version = 2")
        .await;
    db.sql("DELETE FROM schema_migrations WHERE version = 2").await;
    db.sql("INSERT INTO schema_migrations (version, name, sha256, applied_at_ms) VALUES (14, 'future', 'x', 0)").await;
    match Store::open(&db.location).await {
        Err(StoreError::SchemaTooNew { found: 14, known: 13 }) => {}
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

async fn a_read_only_store_fails_the_finish_with_a_backend_error(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(2), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 2)).await.unwrap().claims;
    store.read_only_after(1);
    assert_eq!(store.finish(vec![success(&claims[0], "ok")]).await.unwrap(), [Applied::Applied]);
    let err = store.finish(vec![success(&claims[1], "ok")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    let chain = error_chain(&err);
    assert!(chain.contains("read"), "the database's own refusal is the source: {chain}");
    // Nothing of the refused batch was written.
    let results = store.results(&job.id, ResultFilter::default()).await.unwrap();
    assert_eq!(results.iter().filter(|r| r.status == "succeeded").count(), 1);
}

async fn unknown_jobs_are_reported_as_such(db: Db) {
    let (store, _) = db.store().await;
    for err in [
        store.job("nope").await.err(),
        store.job_identity("nope").await.err(),
        store.status("nope").await.err(),
        store.results("nope", ResultFilter::default()).await.err(),
        store.attempts("nope", ResultFilter::default()).await.err(),
        store.analysis_rows("nope").await.err(),
        store.to_label("nope", "builtin", "1", false, 0, 10).await.err(),
    ] {
        assert!(matches!(err, Some(StoreError::NoSuchJob(ref j)) if j == "nope"), "{err:?}");
    }
    assert_eq!(store.next_wakeup("nope").await.unwrap(), None);
    assert!(store.endpoint_attempts("nope").await.unwrap().is_empty());
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = format!("{e} / {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    text
}

/// PostgreSQL only: what the two back ends must agree on, and what only a server has.
mod postgres_only {
    use super::*;

    async fn db(test: &str) -> Option<Db> {
        Db::postgres(test).await
    }

    /// The same calls with the same clock give the same answers on both back ends, down to
    /// the order of rows (names sort by byte, NULLs as SQLite sorts them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_back_ends_give_the_same_answers() {
        let Some(pg) = db("both_back_ends_give_the_same_answers").await else { return };
        let lite = Db::sqlite();
        let (a, b) = (scripted_reads(&lite).await, scripted_reads(&pg).await);
        assert_eq!(a.len(), b.len());
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!(a, b, "read {i} differs between SQLite and PostgreSQL");
        }
    }

    /// A history touching every kind of row, then every read, serialized.
    async fn scripted_reads(db: &Db) -> Vec<String> {
        let (store, clock) = db.store().await;
        let plan = plan_of(3, &["zed", "Beta", "alpha", "Z-9"], 2);
        let job = store.enqueue(plan.clone(), false).await.unwrap();
        store.enqueue(plan.clone(), true).await.unwrap();
        let mut reads = Vec::new();
        let mut claims = Vec::new();
        for _ in 0..3 {
            claims.extend(store.claim(claim_request(&job.id, 5)).await.unwrap().claims);
            clock.advance(Duration::from_millis(7));
        }
        reads.push(format!("{:?}", claims.iter().map(|c| (c.execution_id, c.attempt_id, &c.key)).collect::<Vec<_>>()));
        let mut outcomes = Vec::new();
        for (i, c) in claims.iter().enumerate() {
            outcomes.push(match i % 6 {
                0 | 1 => Outcome {
                    next: Next::Succeeded(Box::new(ResultRecord {
                        reported_model: Some(format!("reported-{i}")),
                        model_mismatch: i % 4 == 0,
                        response_text: Some(format!("answer {i} ünïcödé")),
                        finish_reason: Some("stop".into()),
                        usage: Some(serde_json::json!({"prompt_tokens": i, "z": 1, "a": 2})),
                        provenance: (i % 3 == 0).then(|| serde_json::json!({"gguf_sha256": "ab", "threads": 4})),
                        block: (i % 4 == 1)
                            .then(|| BlockRecord { code: "content_filter".into(), message: "filtered".into() }),
                        label: None,
                    })),
                    raw: (i % 3 != 2).then(|| {
                        Box::new(RawRecord {
                            body_gzip: parallax_store::raw::compress(format!("{{\"n\": {i}, \"é\": true}}").as_bytes()),
                            headers: vec![
                                ("x-request-id".into(), format!("req-{i}")),
                                ("server".into(), "stub".into()),
                            ],
                            system_fingerprint: (i % 2 == 0).then(|| format!("fp_{i}")),
                        })
                    }),
                    ..success(c, "")
                },
                2 => Outcome {
                    next: Next::Retry { after: Duration::from_millis(1500 + i as u64) },
                    possibly_billed: true,
                    http_status: Some(503),
                    ..ended(c, Next::Failed)
                },
                3 => ended(c, Next::Failed),
                4 => ended(c, Next::Parked),
                _ => {
                    // Left running: its lease will expire and be reaped below.
                    continue;
                }
            });
        }
        reads.push(format!("{:?}", store.finish(outcomes).await.unwrap()));
        clock.advance(Duration::from_secs(11));
        let reaped =
            store.claim(ClaimRequest { park_possibly_billed: true, ..claim_request(&job.id, 50) }).await.unwrap();
        reads.push(format!("{} {} {} {}", reaped.claims.len(), reaped.lost_attempts, reaped.parked, reaped.failed));
        reads.push(format!(
            "{:?}",
            store.heartbeat(vec![(claims[0].execution_id, "x".into())], Duration::from_secs(1)).await.unwrap()
        ));
        let todo = store.to_label(&job.id, "builtin", "3", false, 0, 100).await.unwrap();
        reads.push(format!(
            "{:?}",
            todo.iter().map(|t| (t.execution_id, &t.question_text, &t.response_text)).collect::<Vec<_>>()
        ));
        let labels = todo
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                let l = |classifier: &str, label: &str| LabelRecord {
                    execution_id: t.execution_id,
                    classifier: classifier.into(),
                    version: "3".into(),
                    label: label.into(),
                    evidence: (i % 2 == 0).then(|| "because".into()),
                    rubric: Some("rubric".into()),
                    raw: None,
                    confidence: (classifier == "builtin").then_some(0.5),
                    uncertain: (classifier == "builtin").then_some(i % 3 == 0),
                    doubts: (classifier == "builtin").then(|| if i % 3 == 0 { "empty".into() } else { String::new() }),
                };
                [l("builtin", "refusal"), l("judge:Zed@r1", "partial"), l("judge:alpha@r2", "compliance")]
            })
            .collect();
        reads.push(store.put_labels(labels).await.unwrap().to_string());
        reads.push(store.rearm(&job.id, true, false).await.unwrap().to_string());
        let json = |v: serde_json::Value| v.to_string();
        reads.push(json(serde_json::to_value(store.jobs(10).await.unwrap()).unwrap()));
        reads.push(json(serde_json::to_value(store.job(&job.id).await.unwrap()).unwrap()));
        reads.push(json(serde_json::to_value(store.status(&job.id).await.unwrap()).unwrap()));
        for filter in [
            ResultFilter::default(),
            ResultFilter { model: Some("Beta".into()), region: Some("r2".into()), ..Default::default() },
            ResultFilter { question: Some("q1".into()), ..Default::default() },
            ResultFilter { raw: true, ..Default::default() },
        ] {
            reads.push(json(serde_json::to_value(store.results(&job.id, filter.clone()).await.unwrap()).unwrap()));
            reads.push(json(serde_json::to_value(store.attempts(&job.id, filter).await.unwrap()).unwrap()));
        }
        reads.push(json(serde_json::to_value(store.analysis_rows(&job.id).await.unwrap()).unwrap()));
        reads.push(json(serde_json::to_value(store.endpoint_attempts(&job.id).await.unwrap()).unwrap()));
        reads.push(format!("{:?} {}", store.next_wakeup(&job.id).await.unwrap(), store.now_ms()));
        reads.push(json(store.job_identity(&job.id).await.unwrap()));
        reads.push(format!("{:?}", store.current_job(&plan.base_job_id).await.unwrap().map(|j| j.id)));
        reads
    }

    /// Without an injected clock, leases and stamps come from the database's clock, and
    /// `now_ms` follows it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_are_timed_by_the_database_clock() {
        let Some(db) = db("leases_are_timed_by_the_database_clock").await else { return };
        let store = Store::open(&db.location).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        let job = store.enqueue(plan(1), false).await.unwrap();
        let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
        let db_now = |rows: Vec<Vec<Option<String>>>| -> i64 { rows[0][0].as_deref().unwrap().parse().unwrap() };
        let now = db_now(db.sql("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint").await);
        let until = db_now(
            db.sql(&format!("SELECT lease_until_ms FROM executions WHERE id = {}", claims[0].execution_id)).await,
        );
        assert!((until - (now + 10_000)).abs() < 2_000, "lease_until {until} is the database's now {now} + 10 s");
        let started = store.attempts(&job.id, ResultFilter::default()).await.unwrap()[0].started_at_ms;
        assert!((started - now).abs() < 2_000, "attempt stamped {started}, database now {now}");
        assert!((store.db_now_ms().await.unwrap() - now).abs() < 2_000);
        // `next_wakeup - now_ms` is the wait, whatever this host's clock says.
        let wakeup = store.next_wakeup(&job.id).await.unwrap().unwrap();
        let wait = wakeup - store.now_ms();
        assert!((8_000..=10_000).contains(&wait), "wait {wait} ms for a 10 s lease");

        // An injected clock replaces the database's in every statement.
        let clock = TestClock::new();
        let tested = Store::open_with_clock(&db.location, clock.clone()).await.unwrap();
        clock.advance(Duration::from_secs(60));
        let batch = tested.claim(claim_request(&job.id, 1)).await.unwrap();
        assert!(batch.claims.is_empty(), "{} ms is long before the database's leases end", clock.now_ms());
        assert_eq!(tested.now_ms(), 1_700_000_060_000);
        assert_eq!(tested.db_now_ms().await.unwrap(), 1_700_000_060_000);
    }

    /// A connection the server drops is `Unavailable` (never a plain back-end error): here
    /// the database is shut down under a heartbeat waiting on a row lock. The pool does not
    /// hand the dead connection out again, and nothing is claimed twice across losses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_connection_is_unavailable_and_the_next_call_reconnects() {
        let Some(db) = db("a_dropped_connection_is_unavailable_and_the_next_call_reconnects").await else { return };
        let app = format!("parallax-test-{}", hex::encode(rand::random::<[u8; 6]>()));
        let store = Store::open(&format!("{}&application_name={app}", db.location)).await.unwrap();
        let job = store.enqueue(plan(2), false).await.unwrap();
        let kill =
            format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'");

        let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
        let held: Vec<(i64, String)> = claims.iter().map(|c| (c.execution_id, c.lease_token.clone())).collect();
        let locker = admin(&db.location).await.unwrap();
        locker
            .batch_execute(&format!("BEGIN; SELECT 1 FROM executions WHERE id = {} FOR UPDATE", held[0].0))
            .await
            .unwrap();
        let beat = tokio::spawn({
            let (store, held) = (store.clone(), held.clone());
            async move { store.heartbeat(held, Duration::from_secs(10)).await }
        });
        let waiting = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND wait_event_type = 'Lock'"
        );
        while db.sql(&waiting).await[0][0].as_deref() != Some("1") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        db.sql(&kill).await;
        let err = beat.await.unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        locker.batch_execute("ROLLBACK").await.unwrap();
        assert!(store.heartbeat(held, Duration::from_secs(10)).await.unwrap().is_empty(), "a new connection");

        // Killed between calls: a call may find its connection gone, or the pool may have
        // noticed first; either way no key is claimed twice.
        let mut claimed: Vec<i64> = claims.iter().map(|c| c.execution_id).collect();
        for round in 0..3 {
            if round < 2 {
                db.sql(&kill).await;
            }
            match store.claim(claim_request(&job.id, 1)).await {
                Ok(batch) => claimed.extend(batch.claims.iter().map(|c| c.execution_id)),
                Err(StoreError::Unavailable { .. }) => {}
                Err(e) => panic!("a dropped connection must read as unavailable: {e:?}"),
            }
        }
        let unique: HashSet<i64> = claimed.iter().copied().collect();
        assert_eq!((claimed.len(), unique.len()), (4, 4), "every key once");
    }
    /// A connection string's password appears in no error, however the open fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passwords_never_appear_in_errors() {
        let secret = "s3cr3t-Pa55";
        let refused = format!("postgres://postgres:{secret}@127.0.0.1:1/test?connect_timeout=2");
        let err = Store::open(&refused).await.err().expect("nothing listens on port 1");
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        let text = error_chain(&err);
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("postgres:***@127.0.0.1:1"), "the location is shown, redacted: {text}");

        for malformed in [
            format!("postgres://postgres:{secret}@127.0.0.1:notaport/test"),
            format!("postgresql://db/test?password={secret}&sslmode=bogus"),
            format!("postgres://127.0.0.1/test?user=postgres&password={secret}&port=notaport"),
            format!("postgres://127.0.0.1/test?password={secret}&nosuchoption=1"),
        ] {
            let err = Store::open(&malformed).await.err().expect("a malformed URL is refused");
            let text = error_chain(&err);
            assert!(!text.contains(secret), "{text}");
        }

        let Some(db) = db("passwords_never_appear_in_errors").await else { return };
        // The server refuses (no such database): its message is kept, the password is not.
        let url = database_url();
        let (scheme, rest) = url.split_once("://").unwrap();
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let host = rest.split(['/', '?']).next().unwrap();
        let wrong = format!("{scheme}://postgres:{secret}@{host}/parallax_no_such_database");
        let err = Store::open(&wrong).await.err().expect("no such database");
        let text = error_chain(&err);
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("parallax_no_such_database"), "{text}");
        drop(db);
    }

    /// Round trips per batch, measured (printed with `--nocapture`), and bounded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_cost_a_fixed_number_of_round_trips() {
        let Some(db) = db("batches_cost_a_fixed_number_of_round_trips").await else { return };
        let (store, _) = db.store().await;
        let job = store.enqueue(plan(100), false).await.unwrap();
        let trips = || store.round_trips().unwrap();
        // Warm every statement on the connection first.
        let warm = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
        store.finish(warm.iter().map(|c| success(c, "ok")).collect()).await.unwrap();
        store
            .heartbeat(warm.iter().map(|c| (c.execution_id, c.lease_token.clone())).collect(), Duration::from_secs(1))
            .await
            .unwrap();
        let before = trips();
        let claims = store.claim(claim_request(&job.id, 25)).await.unwrap().claims;
        let claim_trips = trips() - before;
        assert_eq!(claims.len(), 50);
        let before = trips();
        store
            .heartbeat(
                claims.iter().map(|c| (c.execution_id, c.lease_token.clone())).collect(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let heartbeat_trips = trips() - before;
        let before = trips();
        store.finish(claims.iter().map(|c| success(c, "ok")).collect()).await.unwrap();
        let finish_trips = trips() - before;
        eprintln!(
            "round trips: claim of 50 over 2 endpoints {claim_trips}, heartbeat of 50 {heartbeat_trips}, finish of 50 {finish_trips}"
        );
        assert_eq!((claim_trips, heartbeat_trips, finish_trips), (2, 1, 1));
    }
}

async fn active_jobs_are_those_with_work_on_the_endpoints_asked_for(db: Db) {
    let (store, clock) = db.store().await;
    let old = store.enqueue(plan(2), false).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let new = store.enqueue(plan_of(1, &["m", "n"], 1), false).await.unwrap();
    let policy = serde_json::json!({"concurrency": 3, "max_attempts": 2});
    store.set_run_policy(&new.id, policy.clone()).await.unwrap();
    let both = store.active_jobs(vec!["r1/e1".into()]).await.unwrap();
    let ids: Vec<&str> = both.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, [old.id.as_str(), new.id.as_str()], "oldest first");
    assert_eq!(both[0].run_policy, None);
    assert_eq!(both[1].run_policy, Some(policy));
    assert!(store.active_jobs(vec!["elsewhere/e9".into()]).await.unwrap().is_empty());
    // A job whose executions on the endpoint are all done is not active there.
    let claims = store
        .claim(ClaimRequest { wants: vec![("r1/e1".into(), 9)], ..claim_request(&old.id, 9) })
        .await
        .unwrap()
        .claims;
    store.finish(claims.iter().map(|c| success(c, "done")).collect()).await.unwrap();
    let left: Vec<String> = store.active_jobs(vec!["r1/e1".into()]).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(left, [new.id]);
    assert_eq!(store.active_jobs(vec!["r2/e2".into()]).await.unwrap().len(), 2, "r2's work is untouched");
    assert!(matches!(store.set_run_policy("nope", serde_json::json!({})).await, Err(StoreError::NoSuchJob(_))));
}

async fn a_cancelled_job_is_claimed_no_more_and_its_rest_is_settled(db: Db) {
    let (store, clock) = db.store().await;
    let job = store.enqueue(plan(3), false).await.unwrap();
    // One call in flight (r1), one whose worker died (r2's lease will expire), the rest pending.
    let live = store
        .claim(ClaimRequest { wants: vec![("r1/e1".into(), 1)], ..claim_request(&job.id, 1) })
        .await
        .unwrap()
        .claims;
    let dead = store
        .claim(ClaimRequest { wants: vec![("r2/e2".into(), 1)], ..claim_request(&job.id, 1) })
        .await
        .unwrap()
        .claims;
    assert!(store.cancel_job(&job.id).await.unwrap());
    assert!(!store.cancel_job(&job.id).await.unwrap(), "cancelling twice changes nothing");
    assert!(store.claim(claim_request(&job.id, 9)).await.unwrap().claims.is_empty(), "claims skip a cancelled job");
    clock.advance(Duration::from_secs(5));
    store.heartbeat(vec![(live[0].execution_id, live[0].lease_token.clone())], Duration::from_secs(10)).await.unwrap();
    clock.advance(Duration::from_secs(6));
    let settled = store.settle_cancelled(&job.id, vec!["r1/e1".into(), "r2/e2".into()]).await.unwrap();
    assert_eq!(
        settled,
        Cancelled { executions: 5, lost_attempts: 1 },
        "4 pending and the dead lease; not the live call"
    );
    // The call in flight ends with a retryable failure: it is settled, not sent back to pending.
    let applied = store.finish(vec![ended(&live[0], Next::Retry { after: Duration::from_millis(1) })]).await.unwrap();
    assert_eq!(applied, [Applied::Applied]);
    let counts = store.status(&job.id).await.unwrap().total.counts;
    assert_eq!((counts.cancelled, counts.pending, counts.running), (6, 0, 0));
    assert!(store.active_jobs(vec!["r1/e1".into(), "r2/e2".into()]).await.unwrap().is_empty());
    let lost: Vec<bool> = store
        .attempts(&job.id, ResultFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|a| a.outcome == "lost")
        .map(|a| a.possibly_billed)
        .collect();
    assert_eq!(lost, [true], "the dead worker's call may have been billed");
    let _ = dead;
    assert!(matches!(store.cancel_job("nope").await, Err(StoreError::NoSuchJob(_))));
}

async fn workers_register_beat_and_stop(db: Db) {
    let (store, clock) = db.store().await;
    let record = |id: &str| WorkerRecord {
        id: id.into(),
        host: "h".into(),
        pid: 7,
        regions: vec!["r1".into(), "r2".into()],
        version: "0.1.0".into(),
    };
    let start = clock.now_ms();
    store.register_worker(record("w1")).await.unwrap();
    clock.advance(Duration::from_secs(2));
    store.register_worker(record("w2")).await.unwrap();
    assert!(store.worker_seen("w1", 5).await.unwrap());
    assert!(!store.worker_seen("ghost", 0).await.unwrap(), "an unknown worker is told so");
    clock.advance(Duration::from_secs(1));
    store.worker_stopped("w2").await.unwrap();
    let rows = store.workers(start).await.unwrap();
    assert_eq!(rows.len(), 2);
    let w1 = rows.iter().find(|w| w.id == "w1").unwrap();
    assert_eq!((w1.in_flight, w1.stopped_at_ms, w1.started_at_ms), (5, None, start));
    assert_eq!(w1.last_seen_ms, start + 2000);
    assert_eq!(w1.regions, ["r1", "r2"]);
    let w2 = rows.iter().find(|w| w.id == "w2").unwrap();
    assert_eq!(w2.stopped_at_ms, Some(start + 3000));
    assert_eq!(rows[0].id, "w2", "most recently seen first");
    assert!(store.workers(start + 2500).await.unwrap().iter().all(|w| w.id == "w2"));
}

async fn a_notice_wakes_a_listening_worker(db: Db) {
    let (store, _) = db.store().await;
    let wakeups = store.wakeups();
    if !wakeups.listens() {
        // SQLite: nothing to listen to; the wait is the poll.
        let started = std::time::Instant::now();
        wakeups.wait(Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        return;
    }
    // The first wake-up says "look once": the listener just (re)connected.
    tokio::time::timeout(Duration::from_secs(10), wakeups.wait(Duration::from_secs(60))).await.unwrap();
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        wakeups.wait(Duration::from_secs(30)).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.enqueue(plan(1), false).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert!(waited < Duration::from_secs(10), "woken by the enqueue's notice, not the poll: {waited:?}");
}

/// A store written before executions could be `cancelled` (schema 4) migrates to schema 5
/// by rebuilding `executions`: every row, id and reference survives, and the store works on.
#[tokio::test]
async fn sqlite_rebuilds_executions_for_cancelled_keeping_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
        )
        .unwrap();
        let migrations = [
            (1, "ledger", include_str!("../migrations/sqlite/0001_ledger.sql")),
            (2, "labels", include_str!("../migrations/sqlite/0002_labels.sql")),
            (3, "claim_indexes", include_str!("../migrations/sqlite/0003_claim_indexes.sql")),
            (4, "provenance", include_str!("../migrations/sqlite/0004_provenance.sql")),
        ];
        for (version, name, sql) in migrations {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, ?3, 0)",
                rusqlite::params![version, name, parallax_core::sha256_hex(sql.as_bytes())],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO jobs VALUES ('j', 'j', 1, 'old', '{}', 2, 0);
             INSERT INTO questions VALUES ('j', 'q', 0, 'text', NULL, '{}');
             INSERT INTO executions (id, job_id, question_id, model_id, region, sample, endpoint, kind, requested_model,
                 model_aliases, request_body, request_sha256, idempotency_key, status, attempts)
             VALUES (41, 'j', 'q', 'm', 'r1', 1, 'r1/e1', 'openai-chat', 'pm', '[]', X'7B7D', 'h', 'k1', 'succeeded', 1),
                    (42, 'j', 'q', 'm', 'r2', 1, 'r2/e2', 'openai-chat', 'pm', '[]', X'7B7D', 'h', 'k2', 'pending', 0);
             INSERT INTO attempts VALUES (7, 41, 1, 't', 'w', 0, 1, 'succeeded', 0, 200, 1, NULL);
             INSERT INTO results VALUES (41, 7, 'pm', 0, 'an old answer', 'stop', NULL, 1, 0, NULL);",
        )
        .unwrap();
    }
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    let rows = store.results("j", ResultFilter::default()).await.unwrap();
    let kept: Vec<(&str, &str, Option<&str>)> =
        rows.iter().map(|r| (r.region.as_str(), r.status.as_str(), r.response_text.as_deref())).collect();
    assert_eq!(kept, [("r1", "succeeded", Some("an old answer")), ("r2", "pending", None)]);
    assert_eq!(store.attempts("j", ResultFilter::default()).await.unwrap().len(), 1);
    // The rebuilt table takes the new status, and foreign keys hold again.
    assert!(store.cancel_job("j").await.unwrap());
    assert_eq!(store.settle_cancelled("j", vec!["r2/e2".into()]).await.unwrap().executions, 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys=ON").unwrap();
    let orphan = conn.execute("INSERT INTO attempts (execution_id, number, lease_token, worker, started_at_ms, outcome) VALUES (999, 1, 't', 'w', 0, 'open')", []);
    assert!(orphan.is_err(), "attempts still reference executions");
}

async fn shared_limits_count_live_leases_of_every_holder(db: Db) {
    let (store, clock) = db.store().await;
    let (other, _) = db.store().await; // another worker's handle on the same ledger
    let a = store.enqueue(plan(6), false).await.unwrap();
    let b = store.enqueue(plan_of(6, &["n"], 1), false).await.unwrap();
    let capped = |job: &str, n: usize| ClaimRequest {
        wants: vec![("r1/e1".into(), n)],
        endpoint_caps: vec![("r1/e1".into(), 3)],
        ..claim_request(job, n)
    };
    assert_eq!(store.claim(capped(&a.id, 2)).await.unwrap().claims.len(), 2);
    // The endpoint's limit is 3 whoever claims and for whichever job: one more, then none.
    let third = other.claim(capped(&b.id, 5)).await.unwrap().claims;
    assert_eq!(third.len(), 1);
    assert!(other.claim(capped(&a.id, 5)).await.unwrap().claims.is_empty());
    // Uncapped endpoints are not held back.
    assert_eq!(
        other
            .claim(ClaimRequest { wants: vec![("r2/e2".into(), 2)], ..claim_request(&b.id, 2) })
            .await
            .unwrap()
            .claims
            .len(),
        2
    );
    // A finished call frees its slot.
    store.finish(vec![success(&third[0], "done")]).await.unwrap();
    assert_eq!(store.claim(capped(&a.id, 5)).await.unwrap().claims.len(), 1);
    // An expired lease no longer counts (its holder is gone): the slots come back.
    clock.advance(Duration::from_secs(11));
    assert_eq!(store.claim(capped(&b.id, 5)).await.unwrap().claims.len(), 3);

    // A job's own limit counts its live leases on every endpoint.
    let c = store.enqueue(plan_of(4, &["o"], 1), false).await.unwrap();
    let job_capped = |n: usize| ClaimRequest { job_cap: Some(3), ..claim_request(&c.id, n) };
    assert_eq!(store.claim(job_capped(2)).await.unwrap().claims.len(), 3);
    assert!(other.claim(job_capped(2)).await.unwrap().claims.is_empty());
}

async fn a_lease_whose_call_returned_holds_no_slot(db: Db) {
    let (store, _) = db.store().await;
    let (other, _) = db.store().await;
    let job = store.enqueue(plan(8), false).await.unwrap();
    let capped = |n: usize, returned: Vec<i64>| ClaimRequest {
        wants: vec![("r1/e1".into(), n)],
        endpoint_caps: vec![("r1/e1".into(), 2)],
        job_cap: Some(3),
        returned,
        ..claim_request(&job.id, n)
    };
    let held = store.claim(capped(5, vec![])).await.unwrap().claims;
    assert_eq!(held.len(), 2, "the endpoint's cap");
    assert!(store.claim(capped(5, vec![])).await.unwrap().claims.is_empty());
    // One call came back; its outcome waits for the writer, its lease still lives. The
    // claimer says so, and that slot is free again: for the claimer, under both caps.
    let more = store.claim(capped(5, vec![held[0].execution_id])).await.unwrap().claims;
    assert_eq!(more.len(), 1);
    // Another worker cannot name someone else's leases: it sees three live ones.
    assert!(other.claim(capped(5, vec![])).await.unwrap().claims.is_empty());
    // The second call came back too: one call out on the endpoint, room for one more.
    let returned = vec![held[0].execution_id, held[1].execution_id];
    assert_eq!(store.claim(capped(5, returned.clone())).await.unwrap().claims.len(), 1);
    // Two calls out of the job's three: one more on another endpoint, then none.
    let elsewhere = || ClaimRequest { wants: vec![("r2/e2".into(), 5)], ..capped(5, returned.clone()) };
    assert_eq!(store.claim(elsewhere()).await.unwrap().claims.len(), 1);
    assert!(store.claim(elsewhere()).await.unwrap().claims.is_empty(), "the job's cap: 3 calls out");
}

/// Shares of a limit: what a worker asks for while it fits; under contention an even
/// split, never recorded below the calls a worker still has running; a share not renewed,
/// or given back, goes to the others.
async fn shares_of_a_limit_never_add_up_to_more_than_it_and_even_out_between_workers(db: Db) {
    let (store, clock) = db.store().await;
    let lease = Duration::from_secs(5);
    let ask = |want: u64, holding: u64| vec![ShareAsk { scope: "job/j".into(), cap: 8, want, holding }];
    let share = |worker: &'static str, want: u64, holding: u64| {
        let store = store.clone();
        async move { store.share_limits(worker, lease, ask(want, holding)).await.unwrap()[0] }
    };
    assert_eq!(share("a", 8, 0).await, 8, "alone, a worker has the whole limit");
    assert_eq!(share("b", 8, 0).await, 0, "nothing is left for a second one yet");
    // a learns that b waits: its share halves, but it is recorded at the 8 calls it runs.
    assert_eq!(share("a", 8, 8).await, 4);
    assert_eq!(share("b", 8, 0).await, 0, "a's running calls still hold their slots");
    assert_eq!(share("a", 8, 3).await, 4);
    assert_eq!(share("b", 8, 0).await, 4, "once a's calls are within its share, b has the rest");
    assert_eq!(share("c", 8, 0).await, 0);
    assert_eq!(share("a", 8, 4).await, 3, "three who want some: at most a third each (rounded up)");
    // A worker with nothing left to do there wants none: the others may have it all.
    assert_eq!(share("c", 0, 0).await, 0);
    assert_eq!(share("a", 8, 0).await, 4, "b still holds 4");
    // A share not renewed runs out; one given back goes at once.
    clock.advance(Duration::from_secs(6));
    assert_eq!(share("a", 8, 0).await, 8);
    assert_eq!(share("b", 8, 0).await, 0);
    store.worker_stopped("a").await.unwrap();
    assert_eq!(share("b", 8, 0).await, 8);
    // Scopes are apart: an endpoint's limit is not the job's.
    let both = store
        .share_limits(
            "a",
            lease,
            vec![
                ShareAsk { scope: "job/j".into(), cap: 8, want: 8, holding: 0 },
                ShareAsk { scope: "endpoint/r1/e1".into(), cap: 3, want: 3, holding: 0 },
            ],
        )
        .await
        .unwrap();
    assert_eq!(both, [0, 3]);
    // A registered worker no longer seen (killed) holds no share, however long it asked for.
    let record = WorkerRecord { id: "b".into(), host: "h".into(), pid: 7, regions: vec![], version: "0".into() };
    store.register_worker(record).await.unwrap();
    assert_eq!(store.share_limits("b", Duration::from_secs(600), ask(8, 8)).await.unwrap(), [4]);
    assert_eq!(share("a", 8, 0).await, 0);
    clock.advance(Duration::from_secs(16));
    assert_eq!(share("a", 8, 0).await, 8, "b was not seen for 16 s");
}

async fn a_shared_rate_is_one_bucket_for_every_worker(db: Db) {
    let (store, clock) = db.store().await;
    let other = Store::open_with_clock(&db.location, clock.clone()).await.unwrap();
    let job = store.enqueue(plan(20), false).await.unwrap();
    let rated = |n: usize| ClaimRequest {
        wants: vec![("r1/e1".into(), n)],
        endpoint_rates: vec![("r1/e1".into(), 2.0)],
        ..claim_request(&job.id, n)
    };
    // A new bucket holds one token; the other worker finds it spent.
    assert_eq!(store.claim(rated(10)).await.unwrap().claims.len(), 1);
    assert!(other.claim(rated(10)).await.unwrap().claims.is_empty());
    // Two tokens a second, a second's worth at most, whoever takes them.
    clock.advance(Duration::from_millis(500));
    assert_eq!(other.claim(rated(10)).await.unwrap().claims.len(), 1);
    clock.advance(Duration::from_secs(10));
    assert_eq!(store.claim(rated(10)).await.unwrap().claims.len(), 2, "the bucket holds a second's worth");
    assert!(other.claim(rated(10)).await.unwrap().claims.is_empty());
    // Another endpoint is not held back by it.
    let free =
        other.claim(ClaimRequest { wants: vec![("r2/e2".into(), 3)], ..claim_request(&job.id, 3) }).await.unwrap();
    assert_eq!(free.claims.len(), 3);
}

/// What `parallax serve` reads: keyset pages, the event feed below the horizon, one
/// execution with its attempts, and the figures for a scrape.
async fn pages_events_and_metrics_read_what_was_committed(db: Db) {
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(3), false).await.unwrap(); // 3 questions × 2 regions
    let horizon0 = store.event_horizon().await.unwrap();
    assert!(store.events(&job.id, horizon0, i64::MAX, 100).await.unwrap().is_empty());

    // Pages: every row once, in id order, filters applied in the store.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.results_page(&job.id, ResultFilter::default(), after, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.execution_id;
        seen.extend(page.iter().map(|r| r.execution_id));
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let r2 = ResultFilter { region: Some("r2".into()), status: Some("pending".into()), ..Default::default() };
    assert_eq!(store.results_page(&job.id, r2, 0, 100).await.unwrap().len(), 3);

    // Two succeed, one is labelled: three events past the old horizon, in commit order.
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
    assert_eq!(claims.len(), 2);
    let outcomes = claims.iter().map(|c| success(c, "an answer")).collect();
    store.finish(outcomes).await.unwrap();
    let (horizon1, events) = events_until(&store, &job.id, horizon0, 2).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|r| r.status == "succeeded" && r.label.is_none()));
    store.put_labels(vec![builtin_label(claims[0].execution_id, "compliance", 0.9)]).await.unwrap();
    let (horizon2, events) = events_until(&store, &job.id, horizon1, 1).await;
    assert_eq!(events.len(), 1, "the label is an event of its execution");
    assert_eq!(events[0].execution_id, claims[0].execution_id);
    assert_eq!(events[0].label.as_deref(), Some("compliance"));
    // Nothing past the horizon asked for, and a limit holds.
    assert!(store.events(&job.id, horizon2, horizon2, 100).await.unwrap().is_empty());
    assert_eq!(store.events(&job.id, horizon0, horizon2, 1).await.unwrap().len(), 1);
    let labelled = ResultFilter { label: Some("compliance".into()), ..Default::default() };
    assert_eq!(store.results_page(&job.id, labelled, 0, 100).await.unwrap().len(), 1);

    // One execution, by id, with its attempts; an unknown id is `None`.
    let one = store.execution(claims[1].execution_id).await.unwrap().expect("the execution");
    assert_eq!(one.response_text.as_deref(), Some("an answer"));
    assert!(one.raw.is_some(), "one execution comes with what came back");
    let attempts = store.execution_attempts(claims[1].execution_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "succeeded");
    assert!(store.execution(i64::MAX).await.unwrap().is_none());

    let m = store.metrics().await.unwrap();
    let count = |pairs: &[(String, i64)], k: &str| pairs.iter().find(|p| p.0 == k).map_or(0, |p| p.1);
    assert_eq!(count(&m.executions, "succeeded"), 2);
    assert_eq!(count(&m.executions, "pending"), 4);
    assert_eq!(count(&m.attempts, "succeeded"), 2);
    assert_eq!(count(&m.queue, "r1"), 2);
    assert_eq!(m.latency.iter().map(|h| h.count).sum::<i64>(), 2);
    let e1 = m.latency.iter().find(|h| h.endpoint == "r1/e1").expect("r1/e1's histogram");
    assert_eq!(e1.buckets[0], (50, 1), "5 ms is in the first bucket");
    assert_eq!(e1.sum_ms, 5);
}

/// Reads events after `after` as a live reader does, moving the horizon on until `n`
/// have come (PostgreSQL's horizon passes a barrier a call or two after a commit, later
/// if another test's transaction is open then). Returns the horizon and the events.
async fn events_until(store: &Store, job: &str, after: i64, n: usize) -> (i64, Vec<parallax_store::ResultRow>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let horizon = store.event_horizon().await.unwrap();
        let events = store.events(job, after, horizon, 100).await.unwrap();
        if events.len() >= n || std::time::Instant::now() > deadline {
            return (horizon, events);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leases_are_listed_by_holder_and_a_gone_holders_end_at_once(db: Db) {
    let (store, clock) = db.store().await;
    let job = store.enqueue(plan(2), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 2)).await.unwrap().claims;
    assert_eq!(claims.len(), 4);
    let holders = store.lease_holders(&job.id).await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!((holders[0].worker.as_str(), holders[0].executions), ("test", 4));
    assert!(holders[0].until_ms > store.now_ms());
    // Nothing is claimable while the leases live; ended, every item is claimed again and
    // the old attempts close as lost.
    assert!(
        store
            .claim(ClaimRequest { worker: "next".into(), ..claim_request(&job.id, 2) })
            .await
            .unwrap()
            .claims
            .is_empty()
    );
    assert_eq!(store.expire_leases(&job.id, "someone else").await.unwrap(), 0);
    assert_eq!(store.expire_leases(&job.id, "test").await.unwrap(), 4);
    assert!(store.lease_holders(&job.id).await.unwrap().is_empty());
    clock.advance(Duration::from_millis(1));
    let again = store.claim(ClaimRequest { worker: "next".into(), ..claim_request(&job.id, 2) }).await.unwrap();
    assert_eq!((again.claims.len(), again.lost_attempts), (4, 4));
    // The dead holder's late answer is refused: its token is gone.
    let applied = store.finish(vec![success(&claims[0], "late")]).await.unwrap();
    assert_eq!(applied, [Applied::Stale]);
}

async fn a_read_only_open_migrates_nothing_and_writes_nothing(db: Db) {
    assert!(Store::open_read_only(&db.location).await.is_err(), "no ledger there yet, and none is made");
    let (store, _) = db.store().await;
    let job = store.enqueue(plan(1), false).await.unwrap();
    drop(store);
    let ro = Store::open_read_only(&db.location).await.unwrap();
    assert_eq!(ro.status(&job.id).await.unwrap().job.planned, 2);
    assert_eq!(ro.results(&job.id, ResultFilter::default()).await.unwrap().len(), 2);
    assert!(ro.enqueue(plan(2), false).await.is_err(), "a write is refused");
    drop(ro);
    // An older schema is refused with the fix, and left as it was.
    db.sql("DELETE FROM schema_migrations WHERE version = 13").await;
    let e = Store::open_read_only(&db.location).await.err().expect("an older schema is refused");
    assert!(e.to_string().contains("open it once read-write"), "{e}");
    let left = db.sql("SELECT count(*) FROM schema_migrations WHERE version = 13").await;
    assert_eq!(left[0][0].as_deref(), Some("0"), "nothing was migrated");
}

/// `run.delay_ms` across workers: one bucket per job holding one call at most, whichever
/// endpoint and whichever worker.
async fn a_jobs_pacing_spaces_its_calls_whoever_claims_them(db: Db) {
    let (store, clock) = db.store().await;
    let other = Store::open_with_clock(&db.location, clock.clone()).await.unwrap();
    let job = store.enqueue(plan(20), false).await.unwrap();
    let paced = |n: usize| ClaimRequest { job_rate: Some(2.0), ..claim_request(&job.id, n) }; // delay_ms 500
    assert_eq!(store.claim(paced(10)).await.unwrap().claims.len(), 1, "one call, not a burst");
    assert!(other.claim(paced(10)).await.unwrap().claims.is_empty(), "the other worker waits its turn");
    clock.advance(Duration::from_millis(499));
    assert!(other.claim(paced(10)).await.unwrap().claims.is_empty());
    clock.advance(Duration::from_millis(1));
    assert_eq!(other.claim(paced(10)).await.unwrap().claims.len(), 1);
    // Idle for a long while, still one call at a time: the bucket holds one.
    clock.advance(Duration::from_secs(60));
    assert_eq!(store.claim(paced(10)).await.unwrap().claims.len(), 1);
    assert!(other.claim(paced(10)).await.unwrap().claims.is_empty());
    // Another job is not held back by it.
    let second = store.enqueue(plan(3), true).await.unwrap();
    assert_eq!(other.claim(claim_request(&second.id, 2)).await.unwrap().claims.len(), 4);
}
