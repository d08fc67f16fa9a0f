//! `parallax plan`: the exact product, the requests, parity; bad input is refused whole.

use crate::support::{Fleet, spec};
use parallax_stub::StubConfig;

#[tokio::test]
async fn the_plan_is_the_exact_product_with_each_request() {
    let fleet = Fleet::start(&["us", "eu"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a"), ("b", "prov-b"), ("c", "prov-c")], "");
    fleet.write("job.yaml", &spec(4, &["a", "b", "c"], &["us", "eu"], "samples: 3\nsampling: {seed: 10}\n"));
    let out = fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(plan["executions"], 4 * 3 * 2 * 3);
    let items = plan["items"].as_array().unwrap();
    assert_eq!(items.len(), 72);
    let item = &items[0];
    for field in ["question_id", "model_id", "region", "sample", "request", "request_sha256"] {
        assert!(!item[field].is_null(), "missing {field} in {item}");
    }
    assert_eq!(item["request"]["model"], "prov-a");
    assert_eq!(item["request"]["messages"][0]["content"], "Question number 0?");
    assert_eq!(items[2]["request"]["seed"], 12, "sample 3 uses seed + 2");
    assert_eq!(plan["parity"]["undeclared"], 0);
    assert!(!fleet.db().exists(), "plan writes nothing");

    let table = fleet.parallax(&["plan", "job.yaml"]).await;
    assert!(table.stdout.contains("4 questions × 3 models × 2 regions × 3 samples = 72 executions"), "{table:?}");
    assert!(table.stdout.contains("parity: every region sends identical messages"), "{table:?}");
}

#[tokio::test]
async fn bad_specs_exit_2_with_every_problem_and_write_nothing() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write(
        "job.yaml",
        "name: bad\nquestions:\n  - {id: x, text: one}\n  - {id: x, text: two}\nmodels: [a, zz]\nregions: [us]\nrun: {concurency: 3}\n",
    );
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("job.yaml:4:5: `id`: duplicate question id `x`"), "{out:?}");
    assert!(out.stderr.contains("job.yaml:7:7: `run.concurency`: unknown field `concurency`"), "{out:?}");
    assert!(out.stderr.contains("did you mean `concurrency`?"), "{out:?}");
    assert!(!fleet.db().exists(), "nothing written on bad input");

    // Catalog problems are spec-independent: found even when the spec is fine.
    fleet.write("job.yaml", &spec(1, &["a", "zz"], &["us"], ""));
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("job.yaml:5:13: `models`: model `zz` is not served in region us"), "{out:?}");
    assert!(!fleet.db().exists());

    let out = fleet.parallax(&["run", "missing.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = fleet.parallax(&["run", "--bogus-flag", "job.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test]
async fn a_missing_api_key_is_bad_input_and_a_present_one_is_sent() {
    let fleet =
        Fleet::start(&["us"], |_| StubConfig { require_api_key: Some("s3cret".into()), ..StubConfig::default() }).await;
    fleet.catalog(&[("a", "prov-a")], "      api_key_env: IT_KEY\n");
    fleet.write("job.yaml", &spec(2, &["a"], &["us"], ""));
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("`IT_KEY` is not set"), "{out:?}");
    assert!(!fleet.db().exists());

    let out = fleet.parallax_env(&["run", "job.yaml"], &[("IT_KEY", "s3cret")]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // The secret never reaches the store.
    for file in ["parallax.db", "parallax.db-wal"] {
        let bytes = std::fs::read(fleet.dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(6).any(|w| w == b"s3cret"), "secret found in {file}");
    }
}
