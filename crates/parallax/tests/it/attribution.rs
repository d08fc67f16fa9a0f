//! Attribution: the model that answered is recorded beside the model requested.

use std::time::Duration;

use parallax_stub::StubConfig;

use crate::support::{Fleet, job_id, spec};

#[tokio::test]
async fn a_thousand_concurrent_calls_over_five_models_have_no_mismatch() {
    let fleet =
        Fleet::start(&["us", "eu"], |_| StubConfig { latency: Duration::from_millis(5), ..StubConfig::default() })
            .await;
    let models: Vec<(String, String)> = (0..5).map(|i| (format!("m{i}"), format!("provider/model-{i}"))).collect();
    let pairs: Vec<(&str, &str)> = models.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    fleet.catalog(&pairs, "");
    let ids: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    fleet.write("job.yaml", &spec(100, &ids, &["us", "eu"], "run: {concurrency: 64}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert_eq!(rows.len(), 1000);
    for r in &rows {
        let expected = format!("provider/model-{}", &r["model_id"].as_str().unwrap()[1..]);
        assert_eq!(r["requested_model"], expected.as_str());
        assert_eq!(r["reported_model"], expected.as_str());
        assert_eq!(r["model_mismatch"], false);
        assert!(r["response_text"].as_str().unwrap().contains(&expected), "{r}");
    }
    let max_in_flight: u64 = fleet.stubs.iter().map(|(_, s)| s.stats.max_in_flight()).sum();
    assert!(max_in_flight > 8, "calls really ran concurrently ({max_in_flight})");
}

#[tokio::test]
async fn a_different_model_answering_is_flagged_and_counted() {
    let fleet = Fleet::start(&["us", "eu"], |r| StubConfig {
        report_model: (r == "eu").then(|| "some-other-model".to_string()),
        model_suffix: (r == "us").then(|| "-2024-08-06".to_string()),
        ..StubConfig::default()
    })
    .await;
    fleet.write(
        "parallax.yaml",
        &format!(
            "regions:\n  us:\n    - name: u\n      kind: openai-chat\n      base_url: {}\n      models:\n        gpt: {{name: gpt-4o, aliases: [gpt-4o-2024-08-06]}}\n  eu:\n    - name: e\n      kind: openai-chat\n      base_url: {}\n      models:\n        gpt: gpt-4o\n",
            fleet.stub("us").base_url(),
            fleet.stub("eu").base_url()
        ),
    );
    fleet.write("job.yaml", &spec(3, &["gpt"], &["us", "eu"], ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    for r in &rows {
        match r["region"].as_str().unwrap() {
            "us" => {
                assert_eq!(r["reported_model"], "gpt-4o-2024-08-06");
                assert_eq!(r["model_mismatch"], false, "a declared alias is not a mismatch");
            }
            _ => {
                assert_eq!(r["reported_model"], "some-other-model");
                assert_eq!(r["model_mismatch"], true);
            }
        }
    }
    let status = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    assert_eq!(status["total"]["model_mismatches"], 3);
    let table = fleet.parallax(&["status", &job]).await;
    assert!(table.stdout.contains("MODEL MISMATCHES"), "{table:?}");
}

#[tokio::test]
async fn endpoint_concurrency_holds_under_load() {
    let fleet =
        Fleet::start(&["us", "eu"], |_| StubConfig { latency: Duration::from_millis(20), ..StubConfig::default() })
            .await;
    fleet.catalog(&[("a", "prov-a")], "      concurrency: 3\n");
    fleet.write("job.yaml", &spec(30, &["a"], &["us", "eu"], "run: {concurrency: 32}\n"));
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);
    for (region, stub) in &fleet.stubs {
        let max = stub.stats.max_in_flight();
        assert!((2..=3).contains(&max), "{region}: {max} in flight at most, limit 3");
    }
}

#[tokio::test]
async fn endpoint_rate_limits_hold() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "      rate_per_s: 20\n");
    fleet.write("job.yaml", &spec(30, &["a"], &["us"], "run: {concurrency: 32}\n"));
    let started = std::time::Instant::now();
    assert_eq!(fleet.parallax(&["run", "job.yaml"]).await.code, 0);
    // 30 calls at 20/s with a burst of at most 20: at least (30 - 20) / 20 = 0.5 s.
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
}
