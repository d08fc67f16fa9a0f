//! The same verbs on either back end: `run` works as one process on PostgreSQL, and
//! `status`, `results`, `report` and `classify` read SQLite and PostgreSQL with the same output.

use parallax_stub::StubConfig;

use crate::support::{Fleet, PgSchema, job_id, spec};

/// What of a row does not depend on timing.
fn stable(row: &serde_json::Value) -> serde_json::Value {
    let mut row = row.clone();
    let obj = row.as_object_mut().unwrap();
    obj.remove("latency_ms");
    row
}

#[tokio::test]
async fn a_job_on_postgresql_reads_the_same_as_on_sqlite() {
    let Some(pg) = PgSchema::create("a_job_on_postgresql_reads_the_same_as_on_sqlite").await else { return };
    let fleet = Fleet::start(&["us", "eu"], |_| StubConfig {
        refuse_markers_by_region: [("eu".to_string(), vec!["number 1".to_string()])].into(),
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("a", "prov-a"), ("b", "prov-b")], "");
    fleet.write("job.yaml", &spec(15, &["a", "b"], &["us", "eu"], "samples: 2\nrun: {concurrency: 8}\n"));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let sqlite = ["--db", "parallax.db"];
    let postgres = ["--db", pg.location.as_str()];

    for db in [&sqlite, &postgres] {
        let out = fleet.parallax(&[&["run", "job.yaml"], &db[..]].concat()).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(!out.stderr.contains("password"), "{out:?}");
        let again = fleet.parallax(&[&["run", "job.yaml"], &db[..]].concat()).await;
        assert!(again.stderr.contains("complete, nothing to do"), "{again:?}");
    }
    // Each store ran every key once: two calls per key in all, none more.
    let by_key = fleet.requests_by_key();
    assert_eq!(by_key.len(), 120);
    assert!(by_key.values().all(|n| *n == 2), "{by_key:?}");

    let read = |args: Vec<&'static str>| {
        let fleet = &fleet;
        let job = job.clone();
        let pg = pg.location.clone();
        async move {
            let mut outs = Vec::new();
            for db in ["parallax.db".to_owned(), pg] {
                let mut argv: Vec<&str> = args.clone();
                argv.insert(1, &job);
                argv.extend(["--db", &db]);
                let out = fleet.parallax(&argv).await;
                assert_eq!(out.code, 0, "{argv:?}: {out:?}");
                outs.push(out);
            }
            outs
        }
    };
    let results = read(vec!["results", "--format", "jsonl"]).await;
    let (a, b): (Vec<_>, Vec<_>) =
        (results[0].json_lines().iter().map(stable).collect(), results[1].json_lines().iter().map(stable).collect());
    assert_eq!(a.len(), 120);
    assert_eq!(a, b, "results differ between SQLite and PostgreSQL");
    assert!(a.iter().any(|r| r["label"] == "refusal") && a.iter().any(|r| r["label"] == "compliance"));

    let attempts = read(vec!["results", "--attempts", "--format", "jsonl"]).await;
    let strip = |o: &crate::support::Output| -> Vec<serde_json::Value> {
        o.json_lines()
            .into_iter()
            .map(|mut r| {
                let obj = r.as_object_mut().unwrap();
                for volatile in ["started_at_ms", "finished_at_ms", "latency_ms", "worker"] {
                    obj.remove(volatile);
                }
                r
            })
            .collect()
    };
    // Attempts are listed in the order they were made, which differs run to run: compare them as sets.
    let sorted = |o: &crate::support::Output| {
        let mut rows: Vec<String> = strip(o).iter().map(|r| r.to_string()).collect();
        rows.sort();
        rows
    };
    assert_eq!(sorted(&attempts[0]), sorted(&attempts[1]));

    let status = read(vec!["status", "--format", "json"]).await;
    let (mut sa, mut sb) = (status[0].json(), status[1].json());
    for s in [&mut sa, &mut sb] {
        s["job"].as_object_mut().unwrap().remove("created_at_ms");
    }
    assert_eq!(sa, sb);

    let report = read(vec!["report", "--format", "json"]).await;
    let (ra, rb) = (report[0].json(), report[1].json());
    for part in ["completeness", "cells", "comparisons", "divergences", "expectations"] {
        assert_eq!(ra[part], rb[part], "report section `{part}` differs");
    }
    assert_eq!(ra["audits"]["parity"], rb["audits"]["parity"]);

    // A judge-free relabel reads and writes either store the same way.
    let relabel = read(vec!["classify", "--all"]).await;
    assert_eq!(relabel[0].stderr, relabel[1].stderr);
}

#[tokio::test]
async fn a_postgresql_password_never_reaches_the_output() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(1, &["a"], &["us"], ""));
    // Nothing listens on port 1: the connection fails, and the error names the store.
    let url = "postgres://parallax:hunter2-secret@127.0.0.1:1/ledger";
    let out = fleet.parallax(&["run", "job.yaml", "--db", url]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(!out.stderr.contains("hunter2-secret") && !out.stdout.contains("hunter2-secret"), "{out:?}");
    assert!(out.stderr.contains("127.0.0.1:1"), "the error still says which store: {out:?}");
    let help = fleet.parallax_env(&["run", "--help"], &[("PARALLAX_DB", url)]).await;
    assert!(!help.stdout.contains("hunter2-secret"), "{help:?}");
}

/// Reading verbs work on a store they may not write to; `sqlite:` URLs are parsed, their
/// `?mode=ro` honoured, and an unknown parameter refused instead of naming a file after it.
#[tokio::test]
async fn reading_verbs_need_no_write_access_and_sqlite_urls_are_parsed() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(3, &["a"], &["us"], ""));
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let db = fleet.dir.path().join("store.db");
    let url = format!("sqlite://{}", db.display());
    assert_eq!(fleet.parallax(&["run", "job.yaml", "--db", &url]).await.code, 0);
    assert!(db.is_file(), "the URL named the file, without its query");

    let read_only = format!("sqlite://{}?mode=ro", db.display());
    let before = std::fs::read(&db).unwrap();
    for verb in [vec!["status", job.as_str()], vec!["results", job.as_str()], vec!["report", job.as_str()]] {
        let mut args = verb.clone();
        args.extend(["--db", read_only.as_str()]);
        let out = fleet.parallax(&args).await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    }
    let refused = fleet.parallax(&["run", "job.yaml", "--fresh", "--db", &read_only]).await;
    assert_eq!(refused.code, 3, "a read-only store refuses writes: {refused:?}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing was written");
    assert!(!fleet.dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains('?')));

    // Made read-only on disk, the reading verbs still read it (as root the bit binds nothing;
    // the `mode=ro` checks above are the proof there).
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).unwrap();
    let out = fleet.parallax(&["results", &job, "--format", "jsonl", "--db", &url]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json_lines().len(), 3);

    let bad = fleet.parallax(&["status", "--db", &format!("sqlite://{}?cache=shared", db.display())]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("cache=shared"), "{bad:?}");
}
