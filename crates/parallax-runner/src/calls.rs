//! The calls of a run: one task per claimed item, held within its job's and its
//! endpoint's concurrency by permits (claims may run ahead of the calls), and how they end
//! when the run stops — drained, or abandoned and recorded as such.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parallax_core::RunPolicy;
use parallax_providers::Provider;
use parallax_store::{Claim, Next, Outcome};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::call::{self, Done};
use crate::flight::{Held, InFlight};
use crate::limits::{self, Gate};
use crate::{CrashPoint, Labeller, Settled, Stop, TestHooks};

/// What a call needs of its job: the job's concurrency (as permits) and its policy.
#[derive(Clone)]
pub(crate) struct JobLimits {
    pub job_id: Arc<str>,
    pub lease: Duration,
    /// The job's concurrency (a worker's share of it).
    pub gate: Gate,
    pub policy: Arc<RunPolicy>,
}

/// The endpoint a call goes through: its lane, provider and gate.
pub(crate) struct Via {
    pub lane: usize,
    pub provider: Arc<dyn Provider>,
    pub gate: Option<Gate>,
}

pub(crate) struct Calls {
    tasks: JoinSet<()>,
    /// Set when the run stops: a call that has not left yet gives its item back.
    stopping: Arc<AtomicBool>,
    done: mpsc::UnboundedSender<Done>,
    /// A call's lane and job, sent when its HTTP call returns (its slots are free from then on).
    freed_tx: mpsc::UnboundedSender<(usize, usize)>,
    pub freed: mpsc::UnboundedReceiver<(usize, usize)>,
    in_flight: Arc<InFlight>,
    /// Outcomes sent to the writer and not committed yet.
    uncommitted: Arc<AtomicUsize>,
    hooks: TestHooks,
    labeller: Option<Arc<dyn Labeller>>,
    /// Calls started whose slot is not freed yet.
    pub running: usize,
}

impl Calls {
    pub fn new(
        done: mpsc::UnboundedSender<Done>,
        in_flight: Arc<InFlight>,
        uncommitted: Arc<AtomicUsize>,
        hooks: TestHooks,
        labeller: Option<Arc<dyn Labeller>>,
    ) -> Calls {
        let (freed_tx, freed) = mpsc::unbounded_channel();
        Calls {
            tasks: JoinSet::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            done,
            freed_tx,
            freed,
            in_flight,
            uncommitted,
            hooks,
            labeller,
            running: 0,
        }
    }

    /// Starts the call of a claimed item through its endpoint. It waits for a pass of its
    /// job's gate and one of its endpoint's, then sends — unless the run stopped meanwhile,
    /// or its lease is near its end, and then it gives the item back unsent. `asked`: when
    /// the claim was asked for (its lease runs from about then).
    pub fn start(&mut self, claim: Claim, via: Via, job_index: usize, job: &JobLimits, asked: std::time::Instant) {
        let Via { lane, provider, gate: endpoint } = via;
        self.running += 1;
        let sent = Arc::new(AtomicBool::new(false));
        self.in_flight.lock().insert(
            claim.execution_id,
            Held {
                attempt_id: claim.attempt_id,
                lease_token: claim.lease_token.clone(),
                lease: job.lease,
                job_id: job.job_id.clone(),
                key: claim.key.clone(),
                sent: sent.clone(),
                until: asked + job.lease,
            },
        );
        let (in_flight, ids, lease) = (self.in_flight.clone(), (claim.execution_id, claim.attempt_id), job.lease);
        let (done, freed, uncommitted) = (self.done.clone(), self.freed_tx.clone(), self.uncommitted.clone());
        let (send, stopping, hooks) = (job.gate.clone(), self.stopping.clone(), self.hooks.clone());
        let (policy, job_id, labeller) = (job.policy.clone(), job.job_id.clone(), self.labeller.clone());
        // The spec's range keeps it far inside a Duration; never panic if it is not.
        let timeout = Duration::try_from_secs_f64(policy.timeout_s).unwrap_or(Duration::MAX);
        self.tasks.spawn(async move {
            // A closed gate: the run stops, and the item goes back unsent.
            let passes = limits::passes(&send, endpoint.as_ref()).await;
            // An item claimed ahead whose lease is near its end (its renewals failed) is not
            // sent: another worker may hold it by now, and would call it too.
            let stale = !in_flight.sendable(ids.0, ids.1, lease / 3);
            let d = if passes.is_err() || stale || stopping.load(Ordering::SeqCst) {
                call::release(job_id, claim)
            } else {
                sent.store(true, Ordering::SeqCst);
                // A panic in the call (a provider's bug, a server's surprise) fails this
                // attempt and nothing else: the slot is freed and the outcome recorded below.
                let key = (claim.execution_id, claim.attempt_id, claim.lease_token.clone(), claim.key.clone());
                let hooks = hooks.clone();
                let job = job_id.clone();
                let called = async move {
                    let d = call::call(provider.as_ref(), job, claim, timeout, &policy, labeller.as_deref()).await;
                    hooks.panic_in_call();
                    d
                };
                match (CatchUnwind(Box::pin(called))).await {
                    Ok(d) => d,
                    Err(panic) => call::panicked(job_id, key, panic_message(panic.as_ref())),
                }
            };
            drop(passes);
            hooks.reached(CrashPoint::AfterSend, 1);
            uncommitted.fetch_add(1, Ordering::SeqCst);
            let _ = done.send(d);
            let _ = freed.send((lane, job_index));
        });
    }

    /// Forgets finished tasks (their outcomes are with the writer already).
    pub fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    pub fn pending_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Ends the calls: lets them finish (drain), or, on a second stop or when the run
    /// failed (`abort`), abandons them, recording each as aborted (it may have been sent)
    /// or released (it was not). Every outcome reaches the writer before this returns.
    pub async fn stop(mut self, stop: &mut watch::Receiver<Stop>, abort: bool) {
        self.stopping.store(true, Ordering::SeqCst);
        while !self.tasks.is_empty() {
            if !abort && *stop.borrow() != Stop::Abort {
                tokio::select! {
                    _ = self.tasks.join_next() => continue,
                    _ = stop.changed() => {}
                }
                if *stop.borrow() != Stop::Abort {
                    continue;
                }
            }
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            let abandoned: Vec<(i64, Held)> = self.in_flight.lock().iter().map(|(id, h)| (*id, h.clone())).collect();
            for (execution_id, held) in abandoned {
                let sent = held.sent.load(Ordering::SeqCst);
                let outcome = Outcome {
                    execution_id,
                    attempt_id: held.attempt_id,
                    lease_token: held.lease_token.clone(),
                    latency_ms: 0,
                    http_status: None,
                    possibly_billed: sent,
                    error: Some(if sent {
                        "aborted by the user while in flight (the request may have been sent)".into()
                    } else {
                        "not sent: the run was aborted before this call left".into()
                    }),
                    next: if sent { Next::Aborted } else { Next::Released },
                    raw: None,
                };
                let _ = self.done.send(Done {
                    outcome,
                    job_id: held.job_id.clone(),
                    key: held.key.clone(),
                    settled: if sent { Settled::Retrying } else { Settled::Released },
                });
            }
            break;
        }
    }
}

/// A future whose panic is caught and returned as an error, like
/// `std::panic::catch_unwind` for a closure.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_core::{EndpointKind, ItemKey};
    use parallax_providers::{SendFuture, SendRequest};

    /// A provider with a bug: it panics on every call.
    struct Panics;

    impl Provider for Panics {
        fn send<'a>(&'a self, _: SendRequest<'a>) -> SendFuture<'a> {
            Box::pin(async { panic!("a provider bug") })
        }
    }

    fn claim() -> Claim {
        Claim {
            execution_id: 7,
            attempt_id: 11,
            lease_token: "token".into(),
            key: ItemKey { question_id: "q".into(), model_id: "m".into(), region: "r".into(), sample: 1 },
            endpoint: "r/e".into(),
            kind: EndpointKind::OpenAiChat,
            requested_model: "m".into(),
            model_aliases: vec![],
            request_body: b"{}".to_vec(),
            idempotency_key: "key".into(),
            attempt_in_budget: 1,
            question_text: "q?".into(),
        }
    }

    #[tokio::test]
    async fn a_panicking_call_fails_its_attempt_and_frees_its_slot() {
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let policy = RunPolicy { concurrency: 1, ..RunPolicy::default() };
        let job = JobLimits {
            job_id: "j".into(),
            lease: Duration::from_secs(10),
            gate: Gate::new(1),
            policy: Arc::new(policy),
        };
        let mut calls = Calls::new(done_tx, Arc::default(), Arc::default(), TestHooks::default(), None);
        calls.start(
            claim(),
            Via { lane: 3, provider: Arc::new(Panics), gate: None },
            0,
            &job,
            std::time::Instant::now(),
        );
        let d = done.recv().await.expect("an outcome, not a lost task");
        assert!(matches!(d.outcome.next, Next::Failed));
        assert_eq!(d.settled, Settled::Failed);
        assert_eq!((d.outcome.execution_id, d.outcome.attempt_id, d.outcome.lease_token.as_str()), (7, 11, "token"));
        assert!(d.outcome.possibly_billed);
        assert!(d.outcome.error.as_deref().unwrap().contains("panicked (a provider bug)"), "{:?}", d.outcome.error);
        assert_eq!(calls.freed.recv().await, Some((3, 0)), "the slot is freed");
        // The job's one permit came back: a second call can start and end too.
        calls.start(
            claim(),
            Via { lane: 4, provider: Arc::new(Panics), gate: None },
            0,
            &job,
            std::time::Instant::now(),
        );
        assert!(done.recv().await.is_some());
        assert_eq!(calls.freed.recv().await, Some((4, 0)));
    }
}
