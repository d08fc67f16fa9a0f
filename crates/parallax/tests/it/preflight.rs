//! Before a run: every endpoint with work is checked (`GET /models` with its key, no
//! completion); an unreachable endpoint or a refused key stops the run with exit 2.

use parallax_stub::StubConfig;

use crate::support::{Fleet, job_id, spec};

#[tokio::test]
async fn a_refused_key_stops_the_run_before_anything_is_sent() {
    let fleet = Fleet::start(&["us", "eu"], |r| StubConfig {
        require_api_key: (r == "eu").then(|| "the-right-key".to_owned()),
        models: vec!["provider-m".into()],
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "      api_key_env: STUB_KEY\n");
    fleet.write("job.yaml", &spec(3, &["m"], &["us", "eu"], ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax_env(&["run", "job.yaml"], &[("STUB_KEY", "a-wrong-key")]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("endpoint `eu-stub` of region `eu`")
            && out.stderr.contains("refused the API key (HTTP 401"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("a-wrong-key"), "the key is never printed");
    assert_eq!(fleet.total_requests(), 0, "no completion was sent");

    // With the right key it runs; `us` (no key required) was never the problem.
    let out = fleet.parallax_env(&["run", "job.yaml"], &[("STUB_KEY", "the-right-key")]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("warning:"), "both endpoints list the model: {}", out.stderr);
    let status = fleet.parallax(&["status", &job, "--format", "json"]).await.json();
    assert_eq!(status["total"]["succeeded"], 6);
}

#[tokio::test]
async fn an_unreachable_endpoint_stops_the_run_and_no_preflight_starts_anyway() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    fleet.write(
        "parallax.yaml",
        &format!(
            "regions:\n  us:\n    - name: live\n      kind: openai-chat\n      base_url: {}\n      models:\n        m: provider-m\n  eu:\n    - name: gone\n      kind: openai-chat\n      base_url: http://{dead}/v1\n      models:\n        m: provider-m\n",
            fleet.stub("us").base_url()
        ),
    );
    fleet.write("job.yaml", &spec(2, &["m"], &["us", "eu"], "run: {max_attempts: 1}\n"));
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("endpoint `gone` of region `eu`") && out.stderr.contains("cannot be reached"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--no-preflight"), "{}", out.stderr);
    // The live endpoint lists no model yet: a warning, not a reason to stop.
    assert!(out.stderr.contains("warning: endpoint `live`"), "{}", out.stderr);
    assert_eq!(fleet.total_requests(), 0);

    let out = fleet.parallax(&["run", "job.yaml", "--no-preflight"]).await;
    assert_eq!(out.code, 1, "the unreachable region's items fail, the others succeed: {out:?}");
    assert_eq!(fleet.total_requests(), 2);
}

/// `doctor` checks remote endpoints: reachable and key accepted, the model listed, one tiny
/// completion, and the model that answered.
#[tokio::test]
async fn doctor_checks_remote_endpoints_and_who_answers() {
    let fleet = Fleet::start(&["us", "eu"], |r| StubConfig {
        report_model: (r == "eu").then(|| "someone-else".to_owned()),
        models: vec!["provider-m".into()],
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    let out = fleet.parallax(&["doctor", "--json"]).await;
    assert_eq!(out.code, 1, "eu answers as another model: {out:?}");
    let doc = out.json();
    let checks = doc["checks"].as_array().unwrap();
    let find = |region: &str, check: &str| {
        checks
            .iter()
            .find(|c| c["region"] == region && c["check"] == check)
            .unwrap_or_else(|| panic!("{region} {check}: {doc}"))
    };
    for region in ["us", "eu"] {
        assert_eq!(find(region, "endpoint")["ok"], true);
        assert!(find(region, "endpoint")["detail"].as_str().unwrap().contains("lists `provider-m`"));
        assert_eq!(find(region, "completion")["ok"], true);
    }
    assert_eq!(find("us", "model-reported")["ok"], true);
    let eu = find("eu", "model-reported");
    assert_eq!(eu["ok"], false);
    assert!(eu["detail"].as_str().unwrap().contains("answered as `someone-else`"), "{eu}");
}
