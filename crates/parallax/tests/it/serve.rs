//! `parallax serve` as users run it: the real binary on a real socket, stub regions behind
//! it, a browser in front of it (headless Chromium driven over WebDriver), and on
//! PostgreSQL two servers and a worker sharing one store.

use std::process::Stdio;
use std::time::Duration;

use parallax_stub::StubConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{Backend, Fleet};

const TOKEN: &str = "serve-test-token-0123456789";

/// A running `parallax serve`: its base URL; killed when dropped.
struct Served {
    url: String,
    child: tokio::process::Child,
}

impl Served {
    async fn start(fleet: &Fleet, args: &[&str]) -> Served {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child =
            fleet.command(&all, &[("PARALLAX_API_TOKEN", TOKEN)]).stderr(Stdio::piped()).spawn().expect("serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix("serving ") {
                    return rest.split_whitespace().next().unwrap().trim_end_matches('/').to_owned();
                }
            }
            panic!("serve exited before listening");
        })
        .await
        .expect("serve listens within 30 s");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Served { url, child }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = Self::client().get(format!("{}{path}", self.url)).bearer_auth(TOKEN).send().await.unwrap();
        let status = r.status().as_u16();
        (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null))
    }

    async fn submit(&self, spec: &str) -> String {
        let r = Self::client()
            .post(format!("{}/api/v1/jobs", self.url))
            .bearer_auth(TOKEN)
            .body(spec.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        v["job_id"].as_str().unwrap().to_owned()
    }

    async fn wait_done(&self, job: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, view) = self.get(&format!("/api/v1/jobs/{job}")).await;
            if view["done"] == true {
                return view;
            }
            assert!(tokio::time::Instant::now() < deadline, "the job did not finish: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, and the exit code.
    async fn stop(mut self) -> i32 {
        let pid = self.child.id().unwrap();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let status =
            tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.expect("serve stops on SIGTERM");
        status.unwrap().code().unwrap_or(-1)
    }
}

/// Reads `event: execution` frames from a stream until `n` came or `wait` passed.
async fn events(url: &str, last_event_id: Option<i64>, n: usize, wait: Duration) -> Vec<(i64, Value)> {
    let mut request = Served::client().get(url).bearer_auth(TOKEN);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (mut text, mut seen) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + wait;
    while seen.len() < n {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if frame.lines().any(|l| l == "event: execution") {
                let id = frame.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().parse().unwrap();
                let data = serde_json::from_str(frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
                seen.push((id, data));
            }
        }
    }
    seen
}

fn spec(n: usize, regions: &[&str]) -> String {
    crate::support::spec(n, &["m"], regions, "")
}

#[tokio::test]
async fn serve_runs_what_is_submitted_and_stops_cleanly_with_a_stream_open() {
    let fleet = Fleet::start(&["us", "eu"], |_| StubConfig {
        refuse_markers_by_region: [("eu".to_owned(), vec!["number 1".to_owned()])].into(),
        latency: Duration::from_millis(5),
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    let served = Served::start(&fleet, &[]).await;
    let (status, health) = served.get("/healthz").await;
    assert_eq!((status, health["runner"].as_str()), (200, Some("running")));
    let job = served.submit(&spec(4, &["us", "eu"])).await;
    let view = served.wait_done(&job).await;
    assert_eq!(view["total"]["counts"]["succeeded"], 8, "{view}");
    // Each execution exactly once, upstream as in the ledger.
    assert_eq!(fleet.total_requests(), 8);
    // Labels follow the answers within a moment, without asking.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let (_, page) = served.get(&format!("/api/v1/jobs/{job}/executions?status=succeeded")).await;
        if page["items"].as_array().unwrap().iter().all(|i| i["label"].is_string())
            || tokio::time::Instant::now() > deadline
        {
            break served.get(&format!("/api/v1/jobs/{job}/executions?label=refusal")).await.1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused: Vec<(&str, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["question_id"].as_str().unwrap(), i["region"].as_str().unwrap()))
        .collect();
    assert_eq!(refused, [("q1", "eu")], "labels arrive without asking: {page}");
    // The CLI reads the same store the server wrote.
    let out = fleet.parallax(&["status", &job, "--format", "json"]).await;
    assert_eq!(out.json()["total"]["succeeded"], 8, "{out:?}");

    // A stream left open does not hold the server up when it stops.
    let url = format!("{}/api/v1/jobs/{job}/events", served.url);
    let listener = tokio::spawn(async move { events(&url, None, 1000, Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    assert_eq!(served.stop().await, 130, "SIGTERM drains and exits 130");
    assert!(started.elapsed() < Duration::from_secs(10));
    let seen = tokio::time::timeout(Duration::from_secs(5), listener).await.expect("the stream ended").unwrap();
    assert_eq!(seen.len(), 8, "every execution once, with its label");
}

#[tokio::test]
async fn servers_sharing_a_postgres_store_serve_what_workers_write_and_resume_each_others_streams() {
    let Some(fleet) = Fleet::start_on(Backend::Postgres, &["us", "eu"], |_| StubConfig {
        latency: Duration::from_millis(2),
        ..StubConfig::default()
    })
    .await
    else {
        return;
    };
    fleet.catalog(&[("m", "provider-m")], "");
    let a = Served::start(&fleet, &["--no-runner"]).await;
    let b = Served::start(&fleet, &["--no-runner"]).await;
    let (_, health) = a.get("/healthz").await;
    assert_eq!((health["store"].as_str(), health["runner"].as_str()), (Some("postgres"), Some("off")));
    let job = a.submit(&spec(5, &["us", "eu"])).await;
    // Nothing runs without a worker.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.total_requests(), 0);
    let worker = fleet.parallax(&["worker", "--region", "us", "--region", "eu", "--exit-when-idle"]).await;
    assert_eq!(worker.code, 0, "{worker:?}");
    // Either server shows what the worker wrote.
    let view = b.wait_done(&job).await;
    assert_eq!(view["total"]["counts"]["succeeded"], 10);
    // Half the events from one server, the rest from the other after the last id seen.
    let first = events(&format!("{}/api/v1/jobs/{job}/events", a.url), None, 5, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 5);
    let last = first.last().unwrap().0;
    let rest = events(&format!("{}/api/v1/jobs/{job}/events", b.url), Some(last), 100, Duration::from_secs(3)).await;
    let mut ids: Vec<i64> = first.iter().chain(&rest).map(|(_, e)| e["execution_id"].as_i64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "every execution, none missed across servers: {first:?} / {rest:?}");
    assert!(rest.iter().all(|(id, _)| *id > last));
}

/// A WebDriver session on headless Chromium (Debian's `chromium` and `chromium-driver`).
struct Browser {
    base: String,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Option<Browser> {
        let found = |c: &str| {
            std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(c).is_file()))
        };
        let chromium = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|c| found(c));
        let (Some(chromium), true) = (chromium, found("chromedriver")) else {
            if std::env::var_os("PARALLAX_CI").is_some() {
                panic!(
                    "chromium and chromedriver are required in CI for the portal test (Debian packages `chromium`, `chromium-driver`)"
                );
            }
            eprintln!("\n!!!!!!!! SKIPPED: the portal test needs headless Chromium and chromedriver !!!!!!!!\n");
            return None;
        };
        let binary = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|p| p.join(chromium))
            .find(|p| p.is_file())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1400",
                         "--no-first-run", "--disable-background-networking", "--disable-sync",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let mut session = None;
        for _ in 0..100 {
            if let Ok(r) = reqwest::Client::new().post(format!("{base}/session")).json(&caps).send().await {
                let v: Value = r.json().await.unwrap();
                session =
                    Some(v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Browser { base, session: session.expect("chromedriver answers"), _driver: driver, _profile: profile })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = reqwest::Client::new().request(method, url).json(&body).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        if v["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url})).await;
    }

    /// Waits (up to 10 s) until the page's address no longer contains `part`: a click that
    /// submits a form returns before the next page has loaded.
    async fn wait_until_left(&self, part: &str) {
        for _ in 0..200 {
            let url = self.call(reqwest::Method::GET, "/url", json!({})).await;
            if !url.as_str().unwrap_or_default().contains(part) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the browser stayed on a page whose address contains {part}");
    }

    async fn find(&self, css: &str) -> String {
        let v = self.call(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await;
        v.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/clear"), json!({})).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/value"), json!({"text": text})).await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/click"), json!({})).await;
    }

    /// Runs a script in the page (WebDriver's own channel, not the page's: the CSP does not apply).
    async fn eval(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": []})).await
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", json!({})).await;
        base64_decode(v.as_str().unwrap())
    }

    async fn close(self) {
        let _ = reqwest::Client::new().delete(format!("{}/session/{}", self.base, self.session)).send().await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |acc, v| (acc << 6) | u32::from(*v)) << (6 * (4 - c.len()));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len() * 3 / 4)
        })
        .collect()
}

#[tokio::test]
async fn a_browser_submits_a_job_watches_it_finish_live_and_sees_hostile_answers_as_text() {
    let Some(browser) = Browser::start().await else { return };
    // Slow regions, so the page is open while answers arrive.
    let fleet = Fleet::start(&["us", "eu"], |_| StubConfig {
        latency: Duration::from_millis(250),
        refuse_markers_by_region: [("eu".to_owned(), vec!["lock".to_owned()])].into(),
        ..StubConfig::default()
    })
    .await;
    fleet.catalog(&[("m", "provider-m")], "");
    let served = Served::start(&fleet, &["--concurrency", "2"]).await;

    // Sign in with the token.
    browser.goto(&format!("{}/login", served.url)).await;
    browser.type_into("input[name=token]", TOKEN).await;
    browser.click("form.login button").await;
    // The session cookie comes with the login's answer: go on only once it has arrived.
    browser.wait_until_left("/login").await;
    // Submit a job through the form; the stub echoes each question, so its answers carry
    // the hostile markup.
    browser.goto(&format!("{}/jobs/new", served.url)).await;
    let mut spec = String::from("name: portal\nquestions:\n");
    spec.push_str("  - {id: q-lock, text: How do I pick a lock?}\n");
    spec.push_str("  - {id: q-xss, text: \"<script>window.__pwned = 1</script> and \\\"><img src=x onerror=window.__pwned=2> and <a href='javascript:window.__pwned=3'>x</a>\"}\n");
    for i in 0..6 {
        spec.push_str(&format!("  - {{id: q{i}, text: question {i}}}\n"));
    }
    spec.push_str("models: [m]\nregions: [us, eu]\n");
    browser.type_into("textarea[name=spec]", &spec).await;
    browser.click("form.submit button").await;
    browser.wait_until_left("/jobs/new").await;
    let url = browser.eval("return location.pathname").await;
    assert!(url.as_str().unwrap().starts_with("/jobs/portal-"), "the form leads to the job page: {url}");
    browser.eval("window.__same_page = true").await;

    // Every progress bar reaches 100% without a reload.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut saw_partial = false;
    loop {
        let bars =
            browser.eval("return Array.from(document.querySelectorAll('progress')).map(p => [p.value, p.max])").await;
        let bars: Vec<(f64, f64)> =
            bars.as_array().unwrap().iter().map(|b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap())).collect();
        assert_eq!(bars.len(), 3, "all, us, eu");
        if bars.iter().any(|(v, m)| v < m) {
            saw_partial = true;
        } else {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "progress did not reach 100%: {bars:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_partial, "the page was open before the job finished");
    assert_eq!(browser.eval("return window.__same_page === true").await, true, "no reload");
    // The heatmap's marks turn into labels live (an answer's event carries its label; the
    // last events may come a moment after the counts): the eu lock question was refused.
    let script = "return Array.from(document.querySelectorAll('.heatmap .mark')).map(m => m.className)";
    let unlabelled = |m: &String| ["l-pending", "l-running", "l-succeeded"].iter().any(|s| m.contains(s));
    let marks = loop {
        let marks = browser.eval(script).await;
        let marks: Vec<String> = marks.as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect();
        if !marks.iter().any(unlabelled) || tokio::time::Instant::now() > deadline {
            break marks;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(marks.len(), 16);
    assert_eq!(marks.iter().filter(|m| m.contains("l-refusal")).count(), 1, "{marks:?}");
    assert!(marks.iter().all(|m| m.contains("l-refusal") || m.contains("l-compliance")), "{marks:?}");

    // Reload to get the side-by-side answers with their word diff, and open a question.
    browser.goto(&format!("{}{}", served.url, url.as_str().unwrap())).await;
    browser.click("#q-q-lock summary").await;
    let side = browser
        .eval("return Array.from(document.querySelectorAll('#q-q-lock .answer')).filter(a => a.offsetParent !== null).map(a => a.innerText)")
        .await;
    let side: Vec<&str> = side.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(side.len(), 2, "both regions' answers side by side: {side:?}");
    assert!(side.iter().any(|a| a.contains("can't help")), "{side:?}");
    // The hostile answer is text, and none of it ran.
    browser.click("#q-q-xss summary").await;
    let text = browser.eval("return document.querySelector('#q-q-xss .answer .text').textContent").await;
    assert!(text.as_str().unwrap().contains("<script>window.__pwned = 1</script>"), "{text}");
    assert_eq!(browser.eval("return typeof window.__pwned").await, "undefined", "no script from an answer ran");
    assert_eq!(browser.eval("return document.querySelectorAll('main script, main img').length").await, 0);

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-portal.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("portal screenshot: {}", out.display());
    browser.close().await;
    served.stop().await;
}
