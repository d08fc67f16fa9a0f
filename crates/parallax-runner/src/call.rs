//! Calling: one claimed item, one request through its provider, and what the answer (or
//! the failure) means for the item — the retry policy of `LEDGER.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parallax_core::{ItemKey, OnPossiblyBilled, RunPolicy};
use parallax_providers::{Provider, SendError, SendRequest, scrub};
use parallax_store::{BlockRecord, Claim, Next, Outcome, RawRecord, ResultRecord};

use crate::{Labeller, Settled, backoff};

/// A finished call, on its way to the writer.
pub(crate) struct Done {
    pub outcome: Outcome,
    pub job_id: Arc<str>,
    pub key: ItemKey,
    pub settled: Settled,
}

/// Makes one call and decides what it means.
pub(crate) async fn call(
    provider: &dyn Provider,
    job_id: Arc<str>,
    claim: Claim,
    timeout: Duration,
    policy: &RunPolicy,
    labeller: Option<&dyn Labeller>,
) -> Done {
    let started = Instant::now();
    let exchange = provider
        .exchange(SendRequest {
            kind: claim.kind,
            body: &claim.request_body,
            idempotency_key: &claim.idempotency_key,
            timeout,
        })
        .await;
    let latency_ms = started.elapsed().as_millis() as i64;
    // Compressed here, in the call's own task, not in the writer every call waits for.
    let raw = exchange.raw.map(|r| {
        Box::new(RawRecord {
            body_gzip: parallax_store::raw::compress(&r.body),
            headers: r.headers,
            system_fingerprint: r.system_fingerprint,
        })
    });
    let (next, settled, http_status, possibly_billed, error) = match exchange.result {
        Ok(reply) => {
            let model_mismatch = reply
                .reported_model
                .as_deref()
                .is_some_and(|r| r != claim.requested_model && !claim.model_aliases.iter().any(|a| a == r));
            let mut record = ResultRecord {
                reported_model: reply.reported_model,
                model_mismatch,
                response_text: reply.text,
                finish_reason: reply.finish_reason,
                usage: reply.usage,
                provenance: reply.provenance,
                // A block is the provider's answer: kept, never retried.
                block: reply.block.map(|b| BlockRecord { code: b.code, message: b.message }),
                label: None,
            };
            // A labeller's panic, or a label the schema would refuse, costs the label, not the
            // answer (nor the batch it is committed with): the answer is kept unlabelled, and
            // the pass over the job that labels what has no label meets the fault there.
            if let Some(labeller) = labeller {
                let labelled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    labeller.label(claim.execution_id, &claim.question_text, &record)
                }));
                record.label = labelled.ok().flatten().filter(|l| {
                    let storable = l.is_storable();
                    if !storable {
                        tracing::warn!(label = %l.label, confidence = ?l.confidence, "a label the store cannot keep: the answer is kept without it");
                    }
                    storable
                });
            }
            (Next::Succeeded(Box::new(record)), Settled::Succeeded, reply.http_status, false, None)
        }
        Err(e) => {
            let (next, settled) = decide(&e, claim.attempt_in_budget, policy);
            let message = match next {
                Next::Failed if e.retryable() => format!("gave up after {} attempts: {e}", claim.attempt_in_budget),
                _ => e.to_string(),
            };
            // Stored errors are read by people and tools: nothing in them may be a credential.
            (next, settled, e.http_status(), e.possibly_billed(), Some(scrub(&message)))
        }
    };
    Done {
        outcome: Outcome {
            execution_id: claim.execution_id,
            attempt_id: claim.attempt_id,
            lease_token: claim.lease_token,
            latency_ms,
            http_status,
            possibly_billed,
            error,
            next,
            raw,
        },
        job_id,
        key: claim.key,
        settled,
    }
}

/// A call that panicked after its request may have left: that attempt failed (possibly
/// billed), the item with it; the run goes on.
pub(crate) fn panicked(
    job_id: Arc<str>,
    (execution_id, attempt_id, lease_token, key): (i64, i64, String, ItemKey),
    panic: String,
) -> Done {
    Done {
        outcome: Outcome {
            execution_id,
            attempt_id,
            lease_token,
            latency_ms: 0,
            http_status: None,
            possibly_billed: true,
            error: Some(scrub(&format!("internal error: the call panicked ({panic}); the request may have been sent"))),
            next: Next::Failed,
            raw: None,
        },
        job_id,
        key,
        settled: Settled::Failed,
    }
}

/// A claimed item whose call never left (the run stopped first) goes back to pending.
pub(crate) fn release(job_id: Arc<str>, claim: Claim) -> Done {
    Done {
        outcome: Outcome {
            execution_id: claim.execution_id,
            attempt_id: claim.attempt_id,
            lease_token: claim.lease_token,
            latency_ms: 0,
            http_status: None,
            possibly_billed: false,
            error: Some("not sent: the run stopped before this call left".into()),
            next: Next::Released,
            raw: None,
        },
        job_id,
        key: claim.key,
        settled: Settled::Released,
    }
}

/// Retry, park or fail: the policy of `LEDGER.md`. `attempt` counts from 1 since the
/// item's last re-arm.
pub(crate) fn decide(e: &SendError, attempt: u32, policy: &RunPolicy) -> (Next, Settled) {
    if !e.retryable() {
        return (Next::Failed, Settled::Failed);
    }
    if e.possibly_billed() && policy.on_possibly_billed == OnPossiblyBilled::Park {
        return (Next::Parked, Settled::Parked);
    }
    if attempt >= policy.max_attempts {
        return (Next::Failed, Settled::Failed);
    }
    let after = e.retry_after().map_or_else(|| backoff::full_jitter(attempt), |d| d.min(backoff::MAX_RETRY_AFTER));
    (Next::Retry { after }, Settled::Retrying)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_core::EndpointKind;
    use parallax_providers::{Reply, SendFuture};
    use parallax_store::LabelRecord;
    use std::sync::Mutex;

    fn policy(max_attempts: u32, park: bool) -> RunPolicy {
        RunPolicy {
            max_attempts,
            on_possibly_billed: if park { OnPossiblyBilled::Park } else { OnPossiblyBilled::Retry },
            ..RunPolicy::default()
        }
    }

    fn http(status: u16, retry_after: Option<Duration>) -> SendError {
        SendError::Http { status, message: "nope".into(), retry_after }
    }

    #[test]
    fn a_client_error_fails_at_once() {
        let (next, settled) = decide(&http(400, None), 1, &policy(5, false));
        assert!(matches!(next, Next::Failed));
        assert_eq!(settled, Settled::Failed);
    }

    #[test]
    fn a_possibly_billed_failure_parks_under_park_and_retries_otherwise() {
        let timeout = SendError::Timeout(Duration::from_secs(1));
        assert!(matches!(decide(&timeout, 1, &policy(5, true)).0, Next::Parked));
        assert!(matches!(decide(&timeout, 1, &policy(5, false)).0, Next::Retry { .. }));
        // Not billed (the server refused to start): retried even under park.
        assert!(matches!(decide(&http(429, None), 1, &policy(5, true)).0, Next::Retry { .. }));
    }

    #[test]
    fn the_attempt_budget_ends_retries() {
        let e = SendError::Connect("refused".into());
        assert!(matches!(decide(&e, 2, &policy(3, false)).0, Next::Retry { .. }));
        assert!(matches!(decide(&e, 3, &policy(3, false)), (Next::Failed, Settled::Failed)));
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let asked = Duration::from_secs(7);
        assert!(
            matches!(decide(&http(429, Some(asked)), 1, &policy(5, false)).0, Next::Retry { after } if after == asked)
        );
        let huge = Duration::from_secs(86_400);
        assert!(
            matches!(decide(&http(503, Some(huge)), 1, &policy(5, false)).0, Next::Retry { after } if after == backoff::MAX_RETRY_AFTER)
        );
        // Without one: full jitter, under the exponential ceiling.
        match decide(&http(503, None), 1, &policy(5, false)).0 {
            Next::Retry { after } => assert!(after <= Duration::from_millis(400)),
            other => panic!("{other:?}"),
        }
    }

    /// A provider that answers with what it is given, and records what it was sent.
    struct Scripted {
        reply: Result<Reply, SendError>,
        sent: Mutex<Vec<(Vec<u8>, String)>>,
    }

    impl Provider for Scripted {
        fn send<'a>(&'a self, request: SendRequest<'a>) -> SendFuture<'a> {
            self.sent.lock().unwrap().push((request.body.to_vec(), request.idempotency_key.to_owned()));
            let reply = self.reply.clone();
            Box::pin(async move { reply })
        }
    }

    fn claim() -> Claim {
        Claim {
            execution_id: 7,
            attempt_id: 11,
            lease_token: "token".into(),
            key: ItemKey { question_id: "q".into(), model_id: "m".into(), region: "r".into(), sample: 0 },
            endpoint: "r/e".into(),
            kind: EndpointKind::OpenAiChat,
            requested_model: "provider-m".into(),
            model_aliases: vec!["provider-m-2025".into()],
            request_body: br#"{"model":"provider-m"}"#.to_vec(),
            idempotency_key: "key".into(),
            attempt_in_budget: 1,
            question_text: "q?".into(),
        }
    }

    fn reply(model: &str) -> Reply {
        Reply {
            http_status: Some(200),
            reported_model: Some(model.into()),
            text: Some("hello".into()),
            finish_reason: Some("stop".into()),
            usage: None,
            provenance: None,
            block: None,
        }
    }

    #[tokio::test]
    async fn the_claimed_bytes_are_sent_and_the_answer_is_fenced_by_the_claims_token() {
        let provider = Scripted { reply: Ok(reply("provider-m")), sent: Mutex::new(vec![]) };
        let done = call(&provider, "j".into(), claim(), Duration::from_secs(1), &policy(3, false), None).await;
        assert_eq!(
            provider.sent.lock().unwrap().as_slice(),
            [(br#"{"model":"provider-m"}"#.to_vec(), "key".to_owned())]
        );
        assert_eq!((done.outcome.execution_id, done.outcome.attempt_id), (7, 11));
        assert_eq!(done.outcome.lease_token, "token");
        assert_eq!(done.settled, Settled::Succeeded);
        match done.outcome.next {
            Next::Succeeded(r) => {
                assert_eq!(r.response_text.as_deref(), Some("hello"));
                assert!(!r.model_mismatch);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_model_that_is_neither_the_requested_one_nor_an_alias_is_a_mismatch() {
        for (reported, mismatch) in [("provider-m-2025", false), ("someone-else", true)] {
            let provider = Scripted { reply: Ok(reply(reported)), sent: Mutex::new(vec![]) };
            let done = call(&provider, "j".into(), claim(), Duration::from_secs(1), &policy(3, false), None).await;
            match done.outcome.next {
                Next::Succeeded(r) => assert_eq!(r.model_mismatch, mismatch, "{reported}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_failure_keeps_the_servers_message_and_its_billing() {
        let provider = Scripted { reply: Err(http(502, None)), sent: Mutex::new(vec![]) };
        let mut c = claim();
        c.attempt_in_budget = 3;
        let done = call(&provider, "j".into(), c, Duration::from_secs(1), &policy(3, false), None).await;
        assert!(matches!(done.outcome.next, Next::Failed));
        assert!(done.outcome.possibly_billed);
        assert_eq!(done.outcome.http_status, Some(502));
        assert_eq!(done.outcome.error.as_deref(), Some("gave up after 3 attempts: HTTP 502: nope"));
    }

    /// Labels every answer `label` with the question it was asked, or panics.
    struct Echo {
        panics: bool,
        label: &'static str,
    }

    impl Labeller for Echo {
        fn label(&self, execution_id: i64, question: &str, answer: &ResultRecord) -> Option<LabelRecord> {
            assert!(!self.panics, "a labeller bug");
            Some(LabelRecord {
                execution_id,
                classifier: "echo".into(),
                version: "1".into(),
                label: self.label.into(),
                evidence: Some(format!("{question} -> {}", answer.response_text.as_deref().unwrap_or(""))),
                rubric: None,
                raw: None,
                confidence: None,
                uncertain: None,
                doubts: None,
            })
        }
    }

    #[tokio::test]
    async fn an_answer_is_labelled_against_its_question_and_a_faulty_label_costs_only_the_label() {
        let label_of = |done: Done| match done.outcome.next {
            Next::Succeeded(r) => (r.response_text.clone(), r.label.map(|l| (l.execution_id, l.evidence))),
            other => panic!("{other:?}"),
        };
        let provider = Scripted { reply: Ok(reply("provider-m")), sent: Mutex::new(vec![]) };
        let labeller = Echo { panics: false, label: "compliance" };
        let done =
            call(&provider, "j".into(), claim(), Duration::from_secs(1), &policy(3, false), Some(&labeller)).await;
        assert_eq!(label_of(done), (Some("hello".into()), Some((7, Some("q? -> hello".into())))));

        // A panic, or a label outside the vocabulary: the answer is kept, without a label.
        for labeller in [Echo { panics: true, label: "compliance" }, Echo { panics: false, label: "maybe" }] {
            let done =
                call(&provider, "j".into(), claim(), Duration::from_secs(1), &policy(3, false), Some(&labeller)).await;
            assert_eq!(done.settled, Settled::Succeeded);
            assert_eq!(label_of(done), (Some("hello".into()), None), "{}", labeller.label);
        }
    }

    #[test]
    fn a_released_item_was_not_sent_and_is_not_billed() {
        let done = release("j".into(), claim());
        assert!(matches!(done.outcome.next, Next::Released));
        assert!(!done.outcome.possibly_billed);
    }
}
