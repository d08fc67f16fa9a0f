//! The ledger's promises, exercised directly with a controllable clock.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parallax_core::{Catalog, JobSpec, Plan};
use parallax_store::{Applied, ClaimRequest, Clock, Next, Outcome, ResultFilter, ResultRecord, Store};

struct TestClock(AtomicI64);
impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
impl TestClock {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

fn plan(questions: usize) -> Arc<Plan> {
    let catalog = Catalog::parse(
        "regions:\n  r1:\n    - {name: e1, kind: openai-chat, base_url: 'http://127.0.0.1:1/v1', models: {m: provider-m}}\n  r2:\n    - {name: e2, kind: openai-chat, base_url: 'http://127.0.0.1:2/v1', models: {m: provider-m}}\n",
        Path::new("c.yaml"),
    )
    .unwrap();
    let mut spec = String::from("name: ledger\nquestions:\n");
    for i in 0..questions {
        spec.push_str(&format!("  - {{id: q{i}, text: question {i}}}\n"));
    }
    spec.push_str("models: [m]\nregions: [r1, r2]\n");
    let mut read = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    let spec = JobSpec::parse(&spec, Path::new("s.yaml"), &mut read).unwrap();
    Arc::new(Plan::build(&spec, &catalog).unwrap())
}

async fn store() -> (Store, Arc<TestClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000_000)));
    let db = dir.path().join("ledger.db");
    let store = Store::open_with_clock(db.to_str().unwrap(), clock.clone()).await.unwrap();
    (store, clock, dir)
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
        })),
    }
}

#[tokio::test]
async fn enqueue_is_idempotent_and_fresh_starts_a_new_generation() {
    let (store, _, _dir) = store().await;
    let plan = plan(3);
    let first = store.enqueue(plan.clone(), false).await.unwrap();
    assert_eq!((first.id.as_str(), first.inserted), (plan.base_job_id.as_str(), 6));
    let again = store.enqueue(plan.clone(), false).await.unwrap();
    assert_eq!((again.id, again.inserted), (first.id.clone(), 0));
    let fresh = store.enqueue(plan.clone(), true).await.unwrap();
    assert_eq!(fresh.id, format!("{}-2", plan.base_job_id));
    assert_eq!(fresh.inserted, 6);
    // A plain enqueue now continues the newest generation.
    assert_eq!(store.enqueue(plan.clone(), false).await.unwrap().id, fresh.id);
}

#[tokio::test]
async fn a_claim_records_its_attempt_and_each_key_is_claimed_once() {
    let (store, _, _dir) = store().await;
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
    // The stored bytes are the planned bytes.
    let first = &a.claims[0];
    let planned = plan.items().find(|i| i.key == first.key).unwrap();
    assert_eq!(first.request_body, planned.request_body.as_bytes());
}

#[tokio::test]
async fn a_stale_lease_cannot_write_and_the_new_holder_can() {
    let (store, clock, _dir) = store().await;
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

#[tokio::test]
async fn a_late_answer_whose_token_is_still_current_is_kept() {
    let (store, clock, _dir) = store().await;
    let plan = plan(1);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    let claim = store.claim(claim_request(&job.id, 1)).await.unwrap().claims.remove(0);
    clock.advance(Duration::from_secs(60)); // expired, but nobody reclaimed
    assert_eq!(store.finish(vec![success(&claim, "late but ours")]).await.unwrap(), vec![Applied::Applied]);
}

#[tokio::test]
async fn lost_attempts_park_under_the_park_policy_and_fail_when_the_budget_is_spent() {
    let (store, clock, _dir) = store().await;
    let plan = plan(1);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    let mut req = claim_request(&job.id, 1);
    req.park_possibly_billed = true;
    store.claim(req.clone()).await.unwrap();
    clock.advance(Duration::from_secs(11));
    let batch = store.claim(req.clone()).await.unwrap();
    assert_eq!((batch.claims.len(), batch.parked), (0, 2));
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
}

#[tokio::test]
async fn retries_wait_out_their_backoff_and_results_are_unique() {
    let (store, clock, _dir) = store().await;
    let plan = plan(1);
    let job = store.enqueue(plan.clone(), false).await.unwrap();
    let claims = store.claim(claim_request(&job.id, 1)).await.unwrap().claims;
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
}
