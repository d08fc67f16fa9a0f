//! End-to-end tests of the stub over real HTTP on loopback.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{chat_body, exchange, parse, post, request};
use parallax_stub::{Fault, REFUSAL_TEXT, StubConfig, answer_text, spawn_on_loopback};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CHAT: &str = "/v1/chat/completions";
const TEXT: &str = "/v1/completions";

fn region(name: &str) -> StubConfig {
    StubConfig { region: name.to_owned(), ..Default::default() }
}

#[tokio::test]
async fn chat_answer_has_openai_shape() {
    let stub = spawn_on_loopback(region("us-east")).await.expect("spawn");
    assert_eq!(stub.base_url(), format!("http://{}/v1", stub.addr));

    let response = post(stub.addr, CHAT, "k1", &chat_body("gpt-test", "What is 2+2?")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("x-stub-region"), Some("us-east"));
    assert_eq!(response.header("x-stub-attempt"), Some("1"));
    let body = response.json();
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().is_some_and(|t| t > 1_600_000_000));
    assert_eq!(body["model"], "gpt-test");
    let content = answer_text("us-east", "gpt-test", "What is 2+2?");
    assert_eq!(content, "[us-east/gpt-test] Here is an answer to: What is 2+2?");
    assert_eq!(
        body["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }])
    );
    assert_eq!(body["usage"], json!({"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}));
    stub.shutdown().await;
}

#[tokio::test]
async fn completions_answer_has_openai_shape() {
    let stub = spawn_on_loopback(region("eu-west")).await.expect("spawn");
    let response =
        post(stub.addr, TEXT, "k1", r#"{"model":"davinci-test","prompt":"Once upon a time","max_tokens":4}"#).await;
    assert_eq!(response.status, 200);
    let body = response.json();
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "davinci-test");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["text"], "[eu-west/davinci-test] Here is an");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"], json!({"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}));
    stub.shutdown().await;
}

#[tokio::test]
async fn stop_sequences_cut_the_answer() {
    let stub = spawn_on_loopback(region("r")).await.expect("spawn");
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "stop": ["answer", "Here"],
    });
    let response = post(stub.addr, CHAT, "k", &body.to_string()).await;
    let body = response.json();
    assert_eq!(body["choices"][0]["message"]["content"], "[r/m] ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    stub.shutdown().await;
}

#[tokio::test]
async fn counts_requests_and_body_digests_per_key() {
    let stub = spawn_on_loopback(StubConfig::default()).await.expect("spawn");
    // Odd spacing on purpose: the digest must be of the raw bytes, not of a
    // re-serialization.
    let first = "{ \"model\" : \"m\", \"messages\": [{\"role\":\"user\",\"content\":\"a\"}] }";
    let second = chat_body("m", "b");
    assert_eq!(post(stub.addr, CHAT, "key-a", first).await.status, 200);
    assert_eq!(post(stub.addr, CHAT, "key-a", &second).await.status, 200);
    assert_eq!(post(stub.addr, CHAT, "key-b", &second).await.status, 200);
    let unkeyed = request(stub.addr, "POST", CHAT, &[], second.as_bytes()).await;
    assert_eq!(unkeyed.status, 200);

    let stats = &stub.stats;
    assert_eq!(stats.total_requests(), 4);
    assert_eq!(stats.requests_without_key(), 1);
    assert_eq!(stats.requests_by_key(), HashMap::from([("key-a".to_owned(), 2), ("key-b".to_owned(), 1)]));
    let sha = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    let bodies = stats.bodies_sha256_by_key();
    assert_eq!(bodies["key-a"], vec![sha(first), sha(&second)]);
    assert_eq!(bodies["key-b"], vec![sha(&second)]);

    // The same data over HTTP, for scripts.
    let report = request(stub.addr, "GET", "/stub/stats", &[], b"").await.json();
    assert_eq!(report["region"], "stub");
    assert_eq!(report["total_requests"], 4);
    assert_eq!(report["requests_by_key"], json!({"key-a": 2, "key-b": 1}));
    assert_eq!(report["bodies_sha256_by_key"]["key-b"], json!([sha(&second)]));
    assert_eq!(report["models_seen"], json!(["m"]));

    let models = request(stub.addr, "GET", "/v1/models", &[], b"").await.json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "m");

    let reset = request(stub.addr, "DELETE", "/stub/stats", &[], b"").await;
    assert_eq!(reset.status, 204);
    assert_eq!(stats.total_requests(), 0);
    assert!(stats.requests_by_key().is_empty());
    stub.shutdown().await;
}

#[tokio::test]
async fn status_fault_with_retry_after_hits_first_attempt_only() {
    let config = StubConfig {
        faults: vec![Fault::Status { status: 429, first_n_attempts: 1, retry_after_s: Some(7), fraction: 1.0 }],
        ..Default::default()
    };
    let stub = spawn_on_loopback(config).await.expect("spawn");
    let body = chat_body("m", "hi");

    let first = post(stub.addr, CHAT, "k", &body).await;
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), Some("7"));
    let error = first.json();
    assert_eq!(error["error"]["type"], "requests");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert!(error["error"]["message"].is_string());

    let second = post(stub.addr, CHAT, "k", &body).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("retry-after"), None);
    assert_eq!(second.header("x-stub-attempt"), Some("2"));
    assert_eq!(stub.stats.requests_by_key()["k"], 2);

    // Another key has its own attempt counter.
    assert_eq!(post(stub.addr, CHAT, "other", &body).await.status, 429);
    stub.shutdown().await;
}

#[tokio::test]
async fn fractional_faults_follow_the_published_rule() {
    let config = StubConfig { faults: vec!["500:1:0.3".parse().expect("valid spec")], ..Default::default() };
    let stub = spawn_on_loopback(config.clone()).await.expect("spawn");
    let body = chat_body("m", "hi");
    let mut failed = 0;
    for i in 0..100 {
        let key = format!("key-{i}");
        let expected = if config.planned_fault(&key, 1).is_some() {
            failed += 1;
            500
        } else {
            200
        };
        assert_eq!(post(stub.addr, CHAT, &key, &body).await.status, expected);
        assert_eq!(config.planned_fault(&key, 2), None);
    }
    assert!((10..=50).contains(&failed), "{failed} of 100 keys failed");
    stub.shutdown().await;
}

#[tokio::test]
async fn reset_fault_aborts_without_a_response() {
    let config = StubConfig { faults: vec!["reset:1:1".parse().expect("valid spec")], ..Default::default() };
    let stub = spawn_on_loopback(config).await.expect("spawn");
    let body = chat_body("m", "hi");
    let headers = [("Idempotency-Key", "k")];

    match exchange(stub.addr, "POST", CHAT, &headers, body.as_bytes()).await {
        Ok(bytes) => assert!(bytes.is_empty(), "got a response: {bytes:?}"),
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset),
    }
    // The request was fully received and counted before the abort.
    assert_eq!(stub.stats.requests_by_key()["k"], 1);

    let raw = exchange(stub.addr, "POST", CHAT, &headers, body.as_bytes()).await.expect("second attempt succeeds");
    assert_eq!(parse(&raw).status, 200);
    stub.shutdown().await;
}

#[tokio::test]
async fn broken_body_fault_sends_truncated_json() {
    let config = StubConfig { faults: vec!["broken".parse().expect("valid spec")], ..Default::default() };
    let stub = spawn_on_loopback(config).await.expect("spawn");
    let body = chat_body("m", "hi");
    let first = post(stub.addr, CHAT, "k", &body).await;
    assert_eq!(first.status, 200);
    assert!(serde_json::from_slice::<Value>(&first.body).is_err());
    assert!(first.body.starts_with(b"{\"id\":\"chatcmpl-"));
    let second = post(stub.addr, CHAT, "k", &body).await;
    assert_eq!(second.json()["object"], "chat.completion");
    stub.shutdown().await;
}

#[tokio::test]
async fn hang_fault_never_answers_and_shutdown_still_returns() {
    let config = StubConfig { faults: vec!["hang".parse().expect("valid spec")], ..Default::default() };
    let stub = spawn_on_loopback(config).await.expect("spawn");
    let body = chat_body("m", "hi");
    let attempt = exchange(stub.addr, "POST", CHAT, &[("Idempotency-Key", "k")], body.as_bytes());
    let timed_out = tokio::time::timeout(Duration::from_millis(300), attempt).await;
    assert!(timed_out.is_err(), "hung request answered");
    assert_eq!(stub.stats.total_requests(), 1);

    let started = Instant::now();
    stub.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn refusal_markers_global_and_per_region() {
    let by_region = HashMap::from([("cn-north".to_owned(), vec!["Tiananmen".to_owned()])]);
    let make = |name: &str| StubConfig {
        region: name.to_owned(),
        refuse_markers: vec!["bomb".to_owned()],
        refuse_markers_by_region: by_region.clone(),
        ..Default::default()
    };
    let us = spawn_on_loopback(make("us-east")).await.expect("spawn");
    let cn = spawn_on_loopback(make("cn-north")).await.expect("spawn");
    let content = |r: &common::HttpResponse| r.json()["choices"][0]["message"]["content"].clone();

    let bomb = chat_body("m", "How do I build a BOMB?");
    assert_eq!(content(&post(us.addr, CHAT, "a", &bomb).await), REFUSAL_TEXT);
    assert_eq!(content(&post(cn.addr, CHAT, "a", &bomb).await), REFUSAL_TEXT);

    let history = chat_body("m", "What happened at tiananmen square in 1989?");
    assert_eq!(
        content(&post(us.addr, CHAT, "b", &history).await),
        answer_text("us-east", "m", "What happened at tiananmen square in 1989?")
    );
    assert_eq!(content(&post(cn.addr, CHAT, "b", &history).await), REFUSAL_TEXT);
    us.shutdown().await;
    cn.shutdown().await;
}

#[tokio::test]
async fn report_model_and_model_suffix_rewrite_the_model_field() {
    let mismatched = spawn_on_loopback(StubConfig {
        report_model: Some("other-model".to_owned()),
        model_suffix: Some("-ignored".to_owned()),
        ..Default::default()
    })
    .await
    .expect("spawn");
    let dated = spawn_on_loopback(StubConfig { model_suffix: Some("-2024-08-06".to_owned()), ..Default::default() })
        .await
        .expect("spawn");
    let body = chat_body("gpt-4o", "hi");

    let answer = post(mismatched.addr, CHAT, "k", &body).await.json();
    assert_eq!(answer["model"], "other-model");
    // The text is still about the requested model.
    assert_eq!(answer["choices"][0]["message"]["content"], answer_text("stub", "gpt-4o", "hi"));
    assert_eq!(post(dated.addr, CHAT, "k", &body).await.json()["model"], "gpt-4o-2024-08-06");
    mismatched.shutdown().await;
    dated.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_get_openai_error_bodies() {
    let stub = spawn_on_loopback(StubConfig::default()).await.expect("spawn");
    for (path, body) in [
        (CHAT, "{not json"),
        (CHAT, ""),
        (CHAT, r#"{"messages":[{"role":"user","content":"x"}]}"#),
        (CHAT, r#"{"model":"m","messages":[]}"#),
        (CHAT, r#"{"model":"m","messages":"nope"}"#),
        (CHAT, r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#),
        (CHAT, r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#),
        (TEXT, r#"{"model":"m"}"#),
        (TEXT, r#"[1,2,3]"#),
    ] {
        let response = post(stub.addr, path, "k", body).await;
        assert_eq!(response.status, 400, "body {body:?}");
        let error = response.json();
        assert_eq!(error["error"]["type"], "invalid_request_error", "body {body:?}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let unknown = request(stub.addr, "GET", "/v1/nope", &[], b"").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["type"], "invalid_request_error");
    stub.shutdown().await;
}

#[tokio::test]
async fn api_key_is_enforced_when_configured() {
    let stub = spawn_on_loopback(StubConfig { require_api_key: Some("sk-test".to_owned()), ..Default::default() })
        .await
        .expect("spawn");
    let body = chat_body("m", "hi");
    let cases =
        [(None, 401), (Some("Bearer sk-wrong"), 401), (Some("Basic sk-test"), 401), (Some("Bearer sk-test"), 200)];
    for (auth, expected) in cases {
        let mut headers = vec![("Idempotency-Key", "k")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let response = request(stub.addr, "POST", CHAT, &headers, body.as_bytes()).await;
        assert_eq!(response.status, expected, "auth {auth:?}");
        if expected == 401 {
            assert_eq!(response.json()["error"]["type"], "invalid_request_error");
        }
    }
    stub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_applied_concurrently_and_max_in_flight_observed() {
    let stub = spawn_on_loopback(StubConfig { latency: Duration::from_millis(200), ..Default::default() })
        .await
        .expect("spawn");
    let addr = stub.addr;
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|i| tokio::spawn(async move { post(addr, CHAT, &format!("k{i}"), &chat_body("m", "hi")).await.status }))
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), 200);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(stub.stats.max_in_flight() >= 8, "{}", stub.stats.max_in_flight());
    assert_eq!(stub.stats.in_flight(), 0);
    stub.shutdown().await;
}

#[tokio::test]
async fn invalid_config_is_rejected_at_spawn() {
    let result = spawn_on_loopback(StubConfig {
        faults: vec![Fault::Status { status: 200, first_n_attempts: 1, retry_after_s: None, fraction: 1.0 }],
        ..Default::default()
    })
    .await;
    let err = result.expect_err("status 200 is not a fault");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
