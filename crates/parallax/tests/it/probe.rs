//! `parallax probe` against stub regions: one whose deployment adds its own system prompt,
//! one that answers identical requests differently, and the rest alike.

use parallax_stub::StubConfig;

use crate::support::Fleet;

fn verdicts(out: &serde_json::Value) -> Vec<(String, String)> {
    out["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["region"].as_str().unwrap().to_owned(), r["verdict"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_region_that_adds_its_own_system_prompt_is_found_and_a_probe_runs_once() {
    let fleet = Fleet::start(&["ap", "eu", "us"], |_| StubConfig {
        system_prompt_by_region: [(
            "ap".to_owned(),
            "You are a careful assistant. Refuse anything about locks.".to_owned(),
        )]
        .into(),
        refuse_markers_with_system: vec!["lock".into()],
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    let out = fleet.parallax(&["probe", "--model", "m", "--format", "json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(report["model"], "m");
    assert_eq!(report["probe_set"], "parallax-probes/1");
    assert_eq!(
        verdicts(&report),
        [("ap".into(), "different".into()), ("eu".into(), "same".into()), ("us".into(), "same".into())]
    );
    let ap = &report["regions"][0]["evidence"];
    let kinds: Vec<&str> = ap.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"instructions") && kinds.contains(&"label"), "{ap}");
    assert!(ap.to_string().contains("Refuse anything about locks"), "what it revealed is shown");
    // 7 probes × 3 samples × 3 regions, each once; asked again, it is read from the store.
    assert_eq!(fleet.total_requests(), 63);
    let table = fleet.parallax(&["probe", "--model", "m"]).await;
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.contains("ap      DIFFERENT configuration suspected"), "{}", table.stdout);
    assert!(table.stdout.contains("reveals instructions the others do not"), "{}", table.stdout);
    assert_eq!(fleet.total_requests(), 63, "a complete probe is not asked again");
    // The probe job is an ordinary job of the store.
    let job = report["job_id"].as_str().unwrap();
    let status = fleet.parallax(&["status", job, "--format", "json"]).await.json();
    assert_eq!(status["total"]["succeeded"], 63);
}

#[tokio::test]
async fn a_region_that_answers_the_same_request_differently_is_nondeterministic() {
    let fleet = Fleet::start(&["eu", "us", "ap"], |_| StubConfig {
        nondeterministic_regions: vec!["eu".into()],
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    let out = fleet.parallax(&["probe", "--model", "m", "--region", "eu", "--region", "us", "--format", "json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(verdicts(&report), [("eu".into(), "nondeterministic".into()), ("us".into(), "same".into())]);
    assert_eq!(fleet.stub("ap").stats.total_requests(), 0, "only the regions asked for");
    let one = fleet.parallax(&["probe", "--model", "m", "--region", "us"]).await;
    assert_eq!(one.code, 2, "{one:?}");
    assert!(one.stderr.contains("compares two regions or more"), "{one:?}");
}

#[tokio::test]
async fn run_probe_puts_each_regions_verdict_beside_its_rates() {
    let fleet = Fleet::start(&["ap", "eu", "us"], |_| StubConfig {
        system_prompt_by_region: [("ap".to_owned(), "Refuse anything about locks.".to_owned())].into(),
        refuse_markers_with_system: vec!["lock".into()],
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    fleet.write("job.yaml", &crate::support::spec(5, &["m"], &["ap", "eu", "us"], "run: {probe: true}\n"));
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("probe of m (probe-m-") && out.stderr.contains("ap different"), "{out:?}");
    assert_eq!(fleet.total_requests(), 63 + 15, "the probe set, then the job");
    let job = crate::support::job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let report = fleet.parallax(&["report", &job, "--format", "json"]).await.json();
    let verdicts: Vec<(&str, &str)> = report["probe_verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["region"].as_str().unwrap(), p["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(verdicts, [("ap", "different"), ("eu", "same"), ("us", "same")]);
    let table = fleet.parallax(&["report", &job]).await.stdout;
    assert!(table.contains("PROBE") && table.contains("probe: m in ap served something different"), "{table}");
    let html = fleet.parallax(&["report", &job, "--format", "html"]).await.stdout;
    assert!(html.contains("<th>probe</th>") && html.contains(">different</span>"));
    // A second run probes nothing again and calls nothing.
    let again = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(fleet.total_requests(), 78);
}
