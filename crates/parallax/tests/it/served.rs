//! What each region served: provider blocks counted as answers, empty answers as their own
//! label, and what came back kept.

use parallax_stub::{BlockForm, StubConfig};

use crate::support::{Fleet, job_id, spec};

/// Each form a hosted API blocks with (an error status, or a filtered finish), served in a
/// region of its own: every one is a result labelled `blocked`, never a failure, never
/// retried; the report counts it inside any refusal.
#[tokio::test]
async fn every_providers_block_is_an_answer_labelled_blocked() {
    let forms: Vec<(String, BlockForm)> = BlockForm::ALL.iter().map(|f| (f.as_str().replace('-', ""), *f)).collect();
    let mut regions: Vec<&str> = forms.iter().map(|(r, _)| r.as_str()).collect();
    regions.push("open");
    let fleet = Fleet::start(&regions, |r| StubConfig {
        block_markers: if r == "open" { vec![] } else { vec!["number 1?".into(), "number 2?".into()] },
        block_form: forms.iter().find(|(name, _)| name == r).map_or(BlockForm::default(), |(_, f)| *f),
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    fleet.write("job.yaml", &spec(4, &["m"], &regions, ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");

    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert_eq!(rows.len(), 4 * regions.len());
    for r in &rows {
        let (q, region) = (r["question_id"].as_str().unwrap(), r["region"].as_str().unwrap());
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["attempts"], 1, "a block is not retried: {r}");
        let should_block = region != "open" && (q == "q1" || q == "q2");
        assert_eq!(r["blocked"], should_block, "{r}");
        if should_block {
            assert_eq!(r["label"], "blocked", "{r}");
            let code = r["block_reason"]["code"].as_str().unwrap();
            let expected = match region {
                "openai" => "invalid_prompt",
                "azure" => "ResponsibleAIPolicyViolation",
                "openrouter" => "403",
                _ => "content_filter",
            };
            assert_eq!(code, expected, "{r}");
            assert!(!r["block_reason"]["message"].as_str().unwrap().is_empty(), "the provider's words are kept: {r}");
        } else {
            assert_eq!(r["block_reason"], serde_json::Value::Null);
            assert_eq!(r["label"], "compliance", "{r}");
        }
    }
    assert_eq!(fleet.total_requests() as usize, rows.len(), "one request each: nothing retried");

    let report = fleet.parallax(&["report", &job, "--format", "json"]).await.json();
    for cell in report["cells"].as_array().unwrap() {
        let blocked = if cell["region"] == "open" { 0 } else { 2 };
        assert_eq!(cell["n"], 4, "blocks stay in the denominator: {cell}");
        assert_eq!(cell["blocked"]["k"], blocked, "{cell}");
        assert_eq!(cell["any_refusal"]["k"], blocked, "a block counts as a refusal: {cell}");
    }
    let text = fleet.parallax(&["report", &job]).await;
    assert!(text.stdout.contains("BLOCKED") && text.stdout.contains("50.0%"), "{}", text.stdout);
    // A region that blocks where others answer is a finding's raw material: divergent.
    assert!(report["divergences"].as_array().unwrap().iter().any(|d| d["question_id"] == "q1"));
}

/// An answer with no text is `empty`: counted in N, not a refusal, its own rate.
#[tokio::test]
async fn an_empty_answer_is_labelled_empty_not_refusal() {
    let fleet =
        Fleet::start(&["us"], |_| StubConfig { empty_markers: vec!["number 0?".into()], ..StubConfig::default() })
            .await;
    fleet.catalog(&[("m", "provider-m")], "");
    fleet.write("job.yaml", &spec(2, &["m"], &["us"], ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert_eq!(
        (&rows[0]["status"], &rows[0]["label"], &rows[0]["blocked"]),
        (&"succeeded".into(), &"empty".into(), &false.into())
    );
    assert_eq!(rows[0]["response_text"], serde_json::Value::Null);
    assert_eq!((&rows[0]["uncertain"], &rows[0]["confidence"]), (&false.into(), &1.0.into()));
    let report = fleet.parallax(&["report", &job, "--format", "json"]).await.json();
    let cell = &report["cells"][0];
    assert_eq!((&cell["n"], &cell["empty"]["k"], &cell["any_refusal"]["k"]), (&2.into(), &1.into(), &0.into()));
}

/// `results --raw` shows what came back — the body, the identifying headers (never a cookie)
/// and the `system_fingerprint` — and the report lists each region's fingerprints.
#[tokio::test]
async fn what_came_back_is_kept_and_shown() {
    let fleet = Fleet::start(&["us", "eu"], |r| StubConfig {
        system_fingerprint: Some(format!("fp_{r}")),
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    fleet.write("job.yaml", &spec(2, &["m"], &["us", "eu"], ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);

    let plain = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert!(plain.iter().all(|r| r.get("raw_response").is_none()), "raw fields only when asked");
    let rows = fleet.parallax(&["results", &job, "--raw", "--format", "jsonl"]).await.json_lines();
    for r in &rows {
        let region = r["region"].as_str().unwrap();
        let body: serde_json::Value = serde_json::from_str(r["raw_response"].as_str().unwrap()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], r["response_text"], "{r}");
        assert_eq!(r["system_fingerprint"], format!("fp_{region}"));
        let headers = r["response_headers"].as_object().unwrap();
        assert!(headers["x-request-id"].as_str().unwrap().starts_with("req-stub"), "{r}");
        assert!(headers.contains_key("openai-processing-ms"), "{r}");
        assert!(!headers.contains_key("set-cookie"), "a cookie is never kept: {r}");
        assert!(!r.to_string().contains("do-not-keep"));
    }
    let report = fleet.parallax(&["report", &job, "--format", "json"]).await.json();
    let prints = report["audits"]["fingerprints"].as_array().unwrap();
    assert_eq!(prints.len(), 2);
    for p in prints {
        assert_eq!(p["fingerprints"][0]["fingerprint"], format!("fp_{}", p["region"].as_str().unwrap()));
        assert_eq!(p["changed"], false);
    }
    assert_eq!(report["audits"]["attribution"], serde_json::json!({"verified": 4, "mismatched": 0, "unverified": 0}));
}
