//! Hostile servers and hostile input, through the real CLI: a server must not crash, stall
//! or fool a run; a number that passes must not panic; no credential is stored. Each
//! server test also checks that the server was really called.

use std::time::{Duration, Instant, SystemTime};

use parallax_stub::StubConfig;
use parallax_stub::hostile::{self, Hostile, Reply};

use crate::support::{Fleet, Output, job_id, spec};

/// A temp dir with a catalog of one `openai-chat` endpoint, region `us`, at `server`.
async fn against(server: &Hostile, endpoint_extra: &str, spec_extra: &str, questions: usize) -> Fleet {
    let fleet = Fleet::start(&[], |_| StubConfig::default()).await;
    fleet.write(
        "parallax.yaml",
        &format!(
            "regions:\n  us:\n    - name: h\n      kind: openai-chat\n      base_url: {}\n{endpoint_extra}      models:\n        a: prov-a\n",
            server.base_url()
        ),
    );
    fleet.write("job.yaml", &spec(questions, &["a"], &["us"], spec_extra));
    fleet
}

/// Runs the job (within a minute: a stalled run fails the test) and returns its results.
async fn run(fleet: &Fleet, env: &[(&str, &str)]) -> (Output, Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = tokio::time::timeout(Duration::from_secs(60), fleet.parallax_env(&["run", "job.yaml"], env))
        .await
        .expect("the run ends: no stall");
    assert!(!out.stderr.contains("panicked") || env.iter().any(|(k, _)| *k == "PARALLAX_TEST_PANIC_CALL"), "{out:?}");
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
    (out, rows, attempts)
}

fn error(row: &serde_json::Value) -> &str {
    row["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_retry_after_past_durations_range_fails_the_attempt_without_a_panic_or_a_stall() {
    for value in ["1e300", "99999999999999999999999", "inf", "3601"] {
        let server = hostile::spawn(vec![Reply::retry_after(429, value)]).await.unwrap();
        let fleet = against(&server, "", "run: {concurrency: 2}\n", 2).await;
        let started = Instant::now();
        let (out, rows, attempts) = run(&fleet, &[]).await;
        assert_eq!(out.code, 1, "{value}: {out:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "{value}: no long wait");
        assert_eq!(server.requests(), 2, "{value}: called once per item, not retried now");
        assert_eq!(attempts.len(), 2);
        for row in &rows {
            assert_eq!(row["status"], "failed", "{row}");
            let e = error(row);
            assert!(e.contains(&format!("Retry-After: {value}")) && e.contains("max_retry_after_s (60 s)"), "{e}");
            assert!(e.contains("--retry-failed"), "{e}");
        }
        assert!(attempts.iter().all(|a| a["possibly_billed"] == false && a["http_status"] == 429));
    }
}

#[tokio::test]
async fn a_retry_after_within_the_cap_is_honoured_as_seconds_or_as_an_http_date() {
    for date in [false, true] {
        // Seconds, or an HTTP-date three seconds ahead (whole seconds: the wait is over two).
        let value =
            if date { httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3)) } else { "2".to_owned() };
        let server = hostile::spawn(vec![Reply::retry_after(503, &value), Reply::Answer]).await.unwrap();
        let fleet = against(&server, "", "", 1).await;
        let started = Instant::now();
        let (out, rows, _) = run(&fleet, &[]).await;
        assert_eq!(out.code, 0, "{value}: {out:?}");
        assert!(started.elapsed() >= Duration::from_millis(1900), "{value}: waited {:?}", started.elapsed());
        assert_eq!(server.requests(), 2);
        assert_eq!(rows[0]["status"], "succeeded");
    }
    // An endpoint may lower the cap.
    let server = hostile::spawn(vec![Reply::retry_after(429, "5"), Reply::Answer]).await.unwrap();
    let fleet = against(&server, "      max_retry_after_s: 1\n", "", 1).await;
    let (out, rows, _) = run(&fleet, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(server.requests(), 1);
    assert!(error(&rows[0]).contains("Retry-After: 5") && error(&rows[0]).contains("(1 s)"), "{}", rows[0]);
}

#[tokio::test]
async fn a_panic_in_a_call_fails_that_attempt_and_the_run_goes_on() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(4, &["a"], &["us"], "run: {concurrency: 2}\n"));
    let (out, rows, attempts) = run(&fleet, &[("PARALLAX_TEST_PANIC_CALL", "2")]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(fleet.total_requests(), 4, "every item was sent, the panicked one included");
    let failed: Vec<_> = rows.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    assert!(error(failed[0]).contains("panicked"), "{}", failed[0]);
    assert_eq!(rows.iter().filter(|r| r["status"] == "succeeded").count(), 3);
    assert_eq!(attempts.len(), 4);
    assert_eq!(attempts.iter().filter(|a| a["possibly_billed"] == true).count(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed_and_fail_naming_the_location() {
    for status in [301, 302, 307, 308] {
        let elsewhere = hostile::spawn(vec![Reply::Answer]).await.unwrap();
        let location = format!("{}/chat/completions", elsewhere.base_url());
        let server = hostile::spawn(vec![Reply::redirect(status, &location)]).await.unwrap();
        let fleet = against(&server, "", "", 2).await;
        let (out, rows, attempts) = run(&fleet, &[]).await;
        assert_eq!(out.code, 1, "{status}: {out:?}");
        assert_eq!(server.requests(), 2, "{status}: called, not retried");
        assert_eq!(elsewhere.requests(), 0, "{status}: the other host was never called");
        for row in &rows {
            assert_eq!(row["status"], "failed");
            assert!(error(row).contains(&format!("HTTP {status}: redirected to `{location}`")), "{row}");
            assert!(row["response_text"].is_null());
        }
        assert!(attempts.iter().all(|a| a["possibly_billed"] == false));
    }
}

/// The peak resident memory of a process, polled from `/proc` until it exits (Linux).
async fn peak_rss_kib(mut child: tokio::process::Child) -> (std::process::ExitStatus, u64) {
    let pid = child.id().expect("running");
    let mut peak = 0;
    loop {
        let hwm = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        });
        peak = peak.max(hwm.unwrap_or(0));
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, peak);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_huge_answer_is_cut_at_the_cap_in_bounded_memory() {
    const HUGE: u64 = 300 << 20;
    for declare_length in [false, true] {
        let server = hostile::spawn(vec![Reply::Huge { bytes: HUGE, declare_length }]).await.unwrap();
        let fleet = against(&server, "", "run: {concurrency: 4}\n", 4).await;
        let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
        let child = fleet.command(&["run", "job.yaml"], &[]).spawn().unwrap();
        let (status, peak_kib) =
            tokio::time::timeout(Duration::from_secs(120), peak_rss_kib(child)).await.expect("the run ends");
        assert_eq!(status.code(), Some(1));
        eprintln!(
            "huge answers (declared length: {declare_length}): 4 × {} MiB offered, {} MiB sent before the client hung up, peak RSS {} MiB",
            HUGE >> 20,
            server.bytes_sent() >> 20,
            peak_kib >> 10
        );
        assert_eq!(server.requests(), 4, "called once per item, not retried");
        assert!(server.bytes_sent() < 4 * (64 << 20), "reading stopped early: {}", server.bytes_sent());
        if cfg!(target_os = "linux") {
            assert!(peak_kib > 0 && peak_kib < 256 << 10, "peak RSS {peak_kib} KiB");
        }
        let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
        for row in &rows {
            assert_eq!(row["status"], "failed");
            assert!(error(row).contains("max_response_bytes (8388608 bytes)"), "{row}");
        }
        let attempts = fleet.parallax(&["results", &job, "--attempts", "--format", "jsonl"]).await.json_lines();
        assert!(attempts.iter().all(|a| a["possibly_billed"] == true), "{attempts:?}");
    }
    // A smaller cap of the endpoint's own, and an answer under it, pass.
    let server = hostile::spawn(vec![Reply::Huge { bytes: 100_000, declare_length: false }]).await.unwrap();
    let fleet = against(&server, "      max_response_bytes: 200000\n", "", 1).await;
    let (out, rows, _) = run(&fleet, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = rows[0]["response_text"].as_str().unwrap();
    assert!(text.len() > 99_000 && text.bytes().all(|b| b == b'a'), "{}", text.len());
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn an_error_inside_a_200_is_classified_like_its_status_with_the_servers_message() {
    // A rate limit: retried, not billed, the message kept.
    let server = hostile::spawn(vec![
        Reply::json(
            r#"{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#,
        ),
        Reply::Answer,
    ])
    .await
    .unwrap();
    let fleet = against(&server, "", "", 1).await;
    let (out, rows, attempts) = run(&fleet, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(server.requests(), 2);
    assert_eq!(rows[0]["status"], "succeeded");
    assert_eq!(attempts.len(), 2);
    let first = attempts.iter().find(|a| !a["error"].is_null()).expect("the failed attempt");
    assert!(error(first).contains("taken as HTTP 429") && error(first).contains("Rate limit reached"), "{first}");
    assert_eq!(first["possibly_billed"], false);

    // A named client error: failed at once, not retried.
    let server =
        hostile::spawn(vec![Reply::json(r#"{"error":{"message":"The model `prov-a` does not exist","code":404}}"#)])
            .await
            .unwrap();
    let fleet = against(&server, "", "", 1).await;
    let (out, rows, _) = run(&fleet, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(server.requests(), 1);
    assert!(error(&rows[0]).contains("taken as HTTP 404") && error(&rows[0]).contains("does not exist"), "{}", rows[0]);
}

#[tokio::test]
async fn credentials_in_base_url_are_refused_and_credentials_in_errors_are_scrubbed() {
    let server = hostile::spawn(vec![Reply::Answer]).await.unwrap();
    let port = server.addr.port();
    for base_url in
        [format!("http://user:hunter2@127.0.0.1:{port}/v1"), format!("http://127.0.0.1:{port}/v1?api_key=hunter2")]
    {
        let fleet = Fleet::start(&[], |_| StubConfig::default()).await;
        fleet.write(
            "parallax.yaml",
            &format!("regions:\n  us:\n    - name: h\n      kind: openai-chat\n      base_url: {base_url}\n      models: {{a: prov-a}}\n"),
        );
        fleet.write("job.yaml", &spec(1, &["a"], &["us"], ""));
        let out = fleet.parallax(&["run", "job.yaml"]).await;
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("parallax.yaml:5:17: `regions.us[0].base_url`"), "{out:?}");
        assert!(out.stderr.contains("api_key_env"), "{out:?}");
        assert!(!out.stderr.contains("hunter2"), "{out:?}");
        assert!(!fleet.db().exists(), "nothing was written");
    }
    assert_eq!(server.requests(), 0, "nothing was sent");

    // A server that echoes the key in its error: the key is never stored or printed.
    let key = "sk-live-AbCdEfGhIjKlMnOpQrStUvWx0123";
    let server = hostile::spawn(vec![Reply::Raw {
        status: 401,
        headers: vec![],
        body: format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}. Or try token={key}"}}}}"#)
            .into_bytes(),
    }])
    .await
    .unwrap();
    let fleet = against(&server, "      api_key_env: HOSTILE_TEST_KEY\n", "", 1).await;
    let (out, rows, attempts) = run(&fleet, &[("HOSTILE_TEST_KEY", key)]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(server.requests(), 1);
    let auth = server.received()[0].headers.iter().find(|(k, _)| k == "authorization").cloned();
    assert_eq!(auth, Some(("authorization".into(), format!("Bearer {key}"))), "the key was sent");
    assert!(error(&rows[0]).contains("Incorrect API key provided: ***"), "{}", rows[0]);
    let everything = format!("{out:?}{rows:?}{attempts:?}");
    assert!(!everything.contains("AbCdEfGhIjKlMnOpQrStUvWx0123"), "{everything}");
    let csv = fleet
        .parallax(&[
            "results",
            &job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json()),
            "--format",
            "csv",
        ])
        .await;
    assert!(!csv.stdout.contains("AbCdEfGhIjKlMnOpQrStUvWx0123"));
}

#[tokio::test]
async fn numbers_past_their_range_are_exit_2_with_the_place_never_a_panic() {
    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(1, &["a"], &["us"], ""));
    for (flag, value) in [
        ("--concurrency", "2305843009213693952"),
        ("--concurrency", "0"),
        ("--limit", "18446744073709551615"),
        ("--limit=-1", ""),
    ] {
        let args: Vec<&str> = ["run", "job.yaml", flag, value].into_iter().filter(|a| !a.is_empty()).collect();
        let out = fleet.parallax(&args).await;
        assert_eq!(out.code, 2, "{flag} {value}: {out:?}");
        assert!(out.stderr.contains(flag.trim_end_matches("=-1")) && !out.stderr.contains("panicked"), "{out:?}");
    }
    for (extra, at) in [
        (
            "run: {timeout_s: 1e300}\n",
            "bad.yaml:7:18: `run.timeout_s`: must be a number from 0.001 to 86,400, found 1e300",
        ),
        ("run: {lease_s: 1e300}\n", "bad.yaml:7:16: `run.lease_s`"),
        ("run: {concurrency: 3000000000000000000}\n", "bad.yaml:7:20: `run.concurrency`: must be from 1 to 10,000"),
        ("samples: 4000000000\n", "bad.yaml:7:10: `samples`: must be from 1 to 10,000"),
    ] {
        fleet.write("bad.yaml", &spec(1, &["a"], &["us"], extra));
        let out = fleet.parallax(&["run", "bad.yaml"]).await;
        assert_eq!(out.code, 2, "{extra}: {out:?}");
        assert!(out.stderr.contains(at), "{extra}: {out:?}");
    }
    let (stub_requests, db) = (fleet.total_requests(), fleet.db());
    assert_eq!(stub_requests, 0);
    assert!(!db.exists(), "bad input writes nothing");
    // Within range, the stub is called.
    let out = fleet.parallax(&["run", "job.yaml", "--concurrency", "10000"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(fleet.total_requests(), 1);
}

#[tokio::test]
async fn question_files_must_be_regular_and_small() {
    let fleet = Fleet::start(&[], |_| StubConfig::default()).await;
    fleet.write(
        "parallax.yaml",
        "regions:\n  us:\n    - name: h\n      kind: openai-chat\n      base_url: http://127.0.0.1:9/v1\n      models: {a: p}\n",
    );
    let big = fleet.dir.path().join("big.jsonl");
    // Sparse: larger than the cap without writing it.
    std::fs::File::create(&big).unwrap().set_len(parallax_core::limits::MAX_QUESTION_FILE_BYTES + 1).unwrap();
    std::fs::create_dir(fleet.dir.path().join("adir")).unwrap();
    let long =
        format!("{{\"id\": \"x\", \"text\": \"{}\"}}\n", "y".repeat(parallax_core::limits::MAX_QUESTION_BYTES + 1));
    fleet.write("long.jsonl", &long);
    for (file, expect) in [
        ("/dev/zero", "not a regular file"),
        ("adir", "a directory"),
        ("big.jsonl", "larger than the 128 MiB"),
        ("long.jsonl", "a question holds at most 1,048,576 bytes"),
    ] {
        fleet.write("job.yaml", &format!("name: q\nquestions:\n  - file: {file}\nmodels: [a]\nregions: [us]\n"));
        let out = tokio::time::timeout(Duration::from_secs(30), fleet.parallax(&["plan", "job.yaml"]))
            .await
            .expect("refused at once, not read to the end");
        assert_eq!(out.code, 2, "{file}: {out:?}");
        assert!(out.stderr.contains(expect), "{file}: {out:?}");
    }
}

/// Every file of `tests/hostile/`: a spec (`spec-*`) planned against a good catalog, or a
/// catalog (`catalog-*`) against a good spec. Each must be exit 2 with a message that names
/// the file and a line, and never a panic. A file's first line `# expect: TEXT` names text
/// the message must hold.
#[tokio::test]
async fn the_hostile_corpus_is_refused_with_located_messages() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let fleet = Fleet::start(&[], |_| StubConfig::default()).await;
    let good_catalog = corpus.join("good-catalog.yaml");
    let good_spec = corpus.join("good-spec.yaml");
    // The good pair plans.
    let out = fleet.parallax(&["plan", good_spec.to_str().unwrap(), "--config", good_catalog.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut files: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (mut tried, mut codes) = (0, std::collections::BTreeMap::new());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (spec, catalog) = if name.starts_with("spec-") {
            (path.clone(), good_catalog.clone())
        } else if name.starts_with("catalog-") {
            (good_spec.clone(), path.clone())
        } else {
            continue;
        };
        let text = std::fs::read(&path).unwrap();
        let expect =
            String::from_utf8_lossy(&text).lines().next().and_then(|l| l.strip_prefix("# expect: ")).map(str::to_owned);
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            fleet.parallax(&["plan", spec.to_str().unwrap(), "--config", catalog.to_str().unwrap()]),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer in 30 s"));
        tried += 1;
        *codes.entry(out.code).or_insert(0) += 1;
        assert_eq!(out.code, 2, "{name}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{name}: {out:?}");
        assert!(!out.stderr.chars().any(|c| c.is_control() && c != '\n'), "{name}: raw control characters: {out:?}");
        let located = out.stderr.lines().any(|l| {
            l.find(&name).is_some_and(|i| {
                let rest = &l[i + name.len()..];
                rest.starts_with(':') && rest[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
            })
        }) || out.stderr.contains(&format!("`{}`", path.display()));
        assert!(located, "{name}: the message names the file and a line: {out:?}");
        if let Some(expect) = expect {
            assert!(out.stderr.contains(&expect), "{name}: expected {expect:?} in {out:?}");
        }
    }
    eprintln!("hostile corpus: {tried} files, exit codes {codes:?}");
    assert!(tried >= 40, "the corpus is all there: {tried}");
}

#[tokio::test]
async fn control_characters_from_a_server_or_a_spec_never_reach_the_terminal_and_json_stays_exact() {
    let hostile_text = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}]8;;http://evil.example\u{7}click\u{1b}]8;;\u{7}\u{9b}31m";
    let body = serde_json::json!({
        "model": "prov-a",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": hostile_text}, "finish_reason": "stop"}],
    });
    let server = hostile::spawn(vec![Reply::json(&body.to_string())]).await.unwrap();
    let fleet = against(&server, "", "", 1).await;
    fleet.write(
        "job.yaml",
        "name: esc\nquestions:\n  - {id: \"q\\e[2J\", text: \"hi \\e]0;title\\a\"}\nmodels: [a]\nregions: [us]\n",
    );
    let job = job_id(&fleet.parallax(&["plan", "job.yaml", "--format", "json"]).await.json());
    let out = fleet.parallax(&["run", "job.yaml"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(server.requests(), 1);
    let raw = |o: &Output| o.stdout.chars().chain(o.stderr.chars()).any(|c| c.is_control() && c != '\n');
    for args in [
        vec!["results", job.as_str()],
        vec!["results", job.as_str(), "--attempts"],
        vec!["status", job.as_str()],
        vec!["report", job.as_str()],
        vec!["plan", "job.yaml"],
    ] {
        let out = fleet.parallax(&args).await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(!raw(&out), "{args:?}: raw control characters reached the terminal: {out:?}");
    }
    let table = fleet.parallax(&["results", &job]).await;
    assert!(table.stdout.contains("q\\u{1b}[2J") && table.stdout.contains("\\u{1b}]0;pwned"), "{table:?}");
    // JSON Lines keep the bytes exactly.
    let rows = fleet.parallax(&["results", &job, "--format", "jsonl"]).await.json_lines();
    assert_eq!(rows[0]["response_text"], hostile_text);
    assert_eq!(rows[0]["question_id"], "q\u{1b}[2J");
}
