//! The service through its router (`tower::ServiceExt::oneshot`, no socket): the API's
//! promises, its errors, its security rules, the event stream and the portal's escaping.
//! A worker is played by the store's own claim and finish, as `parallax worker` calls them.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use futures_util::StreamExt;
use parallax_core::Catalog;
use parallax_server::{AppState, Auth, app, auth};
use parallax_store::{ClaimRequest, Next, Outcome, ResultRecord, Store};
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "a-test-token-0123456789";

struct Server {
    app: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn server(public_read: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let catalog_path = dir.path().join("catalog.yaml");
    let text = "regions:\n  r1:\n    - {name: e1, kind: openai-chat, base_url: 'http://127.0.0.1:9/v1', models: {m: provider-m}}\n  r2:\n    - {name: e2, kind: openai-chat, base_url: 'http://127.0.0.1:9/v1', models: {m: provider-m}}\n";
    std::fs::write(&catalog_path, text).unwrap();
    let catalog = Catalog::parse(text, &catalog_path).unwrap();
    let store = Store::open(dir.path().join("ledger.db").to_str().unwrap()).await.unwrap();
    let auth = Auth::new(vec![auth::hash(TOKEN)], Some("test key"));
    let state = AppState::new(store, catalog, &catalog_path, auth, public_read);
    Server { app: app(state.clone()), state, _dir: dir }
}

fn spec(questions: usize) -> String {
    let mut s = String::from("name: api\nquestions:\n");
    for i in 0..questions {
        s.push_str(&format!("  - {{id: q{i}, text: question {i}}}\n"));
    }
    s.push_str("models: [m]\nregions: [r1, r2]\n");
    s
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Server {
    async fn call(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self.app.clone().oneshot(request.body(body.into()).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
        Answer { status, headers, body }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, &[("authorization", &format!("Bearer {TOKEN}"))], Body::empty()).await
    }

    async fn submit(&self, text: &str) -> Answer {
        self.call(Method::POST, "/api/v1/jobs", &[("authorization", &format!("Bearer {TOKEN}"))], text.to_owned()).await
    }

    /// Submits `spec(questions)` and returns the job id.
    async fn job(&self, questions: usize) -> String {
        let a = self.submit(&spec(questions)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        a.json()["job_id"].as_str().unwrap().to_owned()
    }

    /// Plays a worker: claims up to `n` executions of each region and answers them `text`.
    async fn finish(&self, job: &str, n: usize, text: &str) -> Vec<i64> {
        let store = self.state.store();
        let claims = store
            .claim(ClaimRequest {
                job_id: job.into(),
                worker: "test-worker".into(),
                wants: vec![("r1/e1".into(), n), ("r2/e2".into(), n)],
                max_total: 2 * n,
                lease: Duration::from_secs(30),
                max_attempts: 3,
                park_possibly_billed: false,
                endpoint_caps: vec![],
                job_cap: None,
                returned: vec![],
                endpoint_rates: vec![],
                job_rate: None,
            })
            .await
            .unwrap()
            .claims;
        let outcomes = claims
            .iter()
            .map(|c| Outcome {
                execution_id: c.execution_id,
                attempt_id: c.attempt_id,
                lease_token: c.lease_token.clone(),
                latency_ms: 12,
                http_status: Some(200),
                possibly_billed: false,
                error: None,
                next: Next::Succeeded(Box::new(ResultRecord {
                    reported_model: Some("provider-m".into()),
                    model_mismatch: false,
                    response_text: Some(text.into()),
                    finish_reason: Some("stop".into()),
                    usage: Some(serde_json::json!({"prompt_tokens": 3, "completion_tokens": 5})),
                    provenance: None,
                    block: None,
                    label: None,
                })),
                raw: None,
            })
            .collect();
        store.finish(outcomes).await.unwrap();
        parallax_app::label::label_job(store, job, false).await.unwrap();
        claims.iter().map(|c| c.execution_id).collect()
    }
}

#[tokio::test]
async fn reads_are_closed_unless_public_and_writes_always_need_a_token() {
    let s = server(false).await;
    let a = s.call(Method::GET, "/api/v1/jobs", &[], Body::empty()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["error"], "unauthorized");
    assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
    let a = s.call(Method::GET, "/api/v1/jobs", &[("authorization", "Bearer wrong")], Body::empty()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(!a.text().contains("wrong"), "a token is never echoed");
    assert_eq!(s.get("/api/v1/jobs").await.status, StatusCode::OK);
    // A page of the portal sends the reader to sign in, and comes back after.
    let a = s.call(Method::GET, "/", &[], Body::empty()).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/login?next=/");
    assert_eq!(s.call(Method::GET, "/metrics", &[], Body::empty()).await.status, StatusCode::UNAUTHORIZED);
    let health = s.call(Method::GET, "/healthz", &[], Body::empty()).await;
    assert_eq!(health.status, StatusCode::OK, "health is always open");
    assert_eq!(health.json()["store"], "sqlite");

    let public = server(true).await;
    assert_eq!(public.call(Method::GET, "/api/v1/jobs", &[], Body::empty()).await.status, StatusCode::OK);
    assert_eq!(public.call(Method::GET, "/", &[], Body::empty()).await.status, StatusCode::OK);
    let a = public.call(Method::POST, "/api/v1/jobs", &[], spec(1)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "public reads, never public writes");
}

#[tokio::test]
async fn a_spec_is_validated_as_the_cli_validates_it_every_problem_with_its_place() {
    let s = server(false).await;
    let a = s.submit(&spec(2)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let created = a.json();
    assert_eq!(created["planned"], 4);
    assert!(a.headers[header::LOCATION].to_str().unwrap().ends_with(created["job_id"].as_str().unwrap()));
    // The same spec again: the same job, nothing inserted, nothing to run twice.
    let again = s.submit(&spec(2)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["job_id"], created["job_id"]);
    assert_eq!(again.json()["inserted"], 0);
    // JSON is YAML too.
    let json = r#"{"name": "as-json", "questions": [{"id": "a", "text": "hi"}], "models": ["m"], "regions": ["r1"]}"#;
    assert_eq!(s.submit(json).await.status, StatusCode::CREATED);

    let bad = "name: bad\nquestions:\n  - {id: q1, text: hello}\nmodels: [nope]\nregions: [r1, mars]\nrun: {concurrency: 0, timeout_s: -1}\n";
    let a = s.submit(bad).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text());
    let body = a.json();
    assert_eq!(body["error"], "invalid_spec");
    let problems = body["problems"].as_array().unwrap();
    assert!(problems.len() >= 2, "every problem at once: {body}");
    let fields: Vec<&str> = problems.iter().map(|p| p["field"].as_str().unwrap()).collect();
    assert!(fields.iter().any(|f| f.starts_with("run.concurrency")), "{fields:?}");
    assert!(problems.iter().all(|p| p["line"].as_u64().unwrap() > 0), "{body}");

    let a = s.submit("name: f\nquestions:\n  - file: /etc/passwd\nmodels: [m]\nregions: [r1]\n").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.text().contains("does not read files"), "{}", a.text());
    assert!(!a.text().contains("root:"), "nothing of the file");

    let a =
        s.call(Method::POST, "/api/v1/jobs", &[("authorization", &format!("Bearer {TOKEN}"))], vec![0xff, 0xfe]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.submit("  \n").await.status, StatusCode::BAD_REQUEST);
    let huge = "#".repeat(17 << 20);
    let a = s.submit(&huge).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &a.text()[..a.text().len().min(200)]);
}

#[tokio::test]
async fn executions_come_a_keyset_page_at_a_time_with_what_a_worker_finished() {
    let s = server(false).await;
    let job = s.job(3).await; // 6 executions
    let page = s.get(&format!("/api/v1/jobs/{job}/executions?limit=4")).await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let cursor = page["next_cursor"].as_str().expect("a next page").to_owned();
    let rest = s.get(&format!("/api/v1/jobs/{job}/executions?limit=4&cursor={cursor}")).await.json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    let ids: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|i| i["execution_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 6);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // What a worker finished is there on the next request.
    let done = s.finish(&job, 1, "Sure, here it is.").await;
    assert_eq!(done.len(), 2);
    let succeeded = s.get(&format!("/api/v1/jobs/{job}/executions?status=succeeded")).await.json();
    let items = succeeded["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["label"] == "compliance" && i["response_text"] == "Sure, here it is."));
    let r2 = s.get(&format!("/api/v1/jobs/{job}/executions?region=r2&label=compliance")).await.json();
    assert_eq!(r2["items"].as_array().unwrap().len(), 1);
    let view = s.get(&format!("/api/v1/jobs/{job}")).await.json();
    assert_eq!(view["total"]["counts"]["succeeded"], 2);
    assert_eq!(view["total"]["counts"]["pending"], 4);
    assert_eq!(view["cells"].as_array().unwrap().len(), 2);

    let detail = s.get(&format!("/api/v1/executions/{}", done[0])).await;
    assert_eq!(detail.status, StatusCode::OK);
    let detail = detail.json();
    assert_eq!(detail["attempts"][0]["outcome"], "succeeded");
    assert_eq!(detail["attempts"][0]["worker"], "test-worker");
    assert!(detail["execution"]["request_body"].as_str().unwrap().contains("question"));

    for (uri, status) in [
        (format!("/api/v1/jobs/{job}/executions?cursor=abc"), StatusCode::BAD_REQUEST),
        (format!("/api/v1/jobs/{job}/executions?limit=0"), StatusCode::BAD_REQUEST),
        (format!("/api/v1/jobs/{job}/executions?limit=abc"), StatusCode::BAD_REQUEST),
        (format!("/api/v1/jobs/{job}/executions?status=done"), StatusCode::BAD_REQUEST),
        (format!("/api/v1/jobs/{job}/executions?label=maybe"), StatusCode::BAD_REQUEST),
        ("/api/v1/jobs/no-such-job/executions".to_owned(), StatusCode::NOT_FOUND),
        ("/api/v1/jobs/no-such-job".to_owned(), StatusCode::NOT_FOUND),
        ("/api/v1/executions/abc".to_owned(), StatusCode::BAD_REQUEST),
        ("/api/v1/executions/999999".to_owned(), StatusCode::NOT_FOUND),
        ("/api/v1/no-such-route".to_owned(), StatusCode::NOT_FOUND),
        (format!("/api/v1/jobs/{job}/report?format=pdf"), StatusCode::BAD_REQUEST),
    ] {
        let a = s.get(&uri).await;
        assert_eq!(a.status, status, "{uri}: {}", a.text());
        assert!(a.json()["error"].is_string(), "{uri}: a JSON error");
    }

    let cancelled = s
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{job}/cancel"),
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Body::empty(),
        )
        .await
        .json();
    assert_eq!(cancelled["cancelled"], true);
    assert_eq!(cancelled["settled"], 4);
    let report = s.get(&format!("/api/v1/jobs/{job}/report")).await.json();
    assert_eq!(report["schema"], "parallax.report/1");
    let html = s.get(&format!("/api/v1/jobs/{job}/report?format=html")).await;
    assert!(html.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
}

/// Reads an event stream until `n` `execution` events came (or `wait` passed); returns
/// `(event id, execution id)` of each.
async fn read_events(s: &Server, uri: &str, last_event_id: Option<&str>, n: usize, wait: Duration) -> Vec<(i64, i64)> {
    let mut request = Request::get(uri).header("authorization", format!("Bearer {TOKEN}"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = s.app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut stream = response.into_body().into_data_stream();
    let mut text = String::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while seen.len() < n {
        let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await else { break };
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if frame.lines().any(|l| l == "event: execution") {
                let id = frame.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().parse().unwrap();
                let data: Value =
                    serde_json::from_str(frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
                seen.push((id, data["execution_id"].as_i64().unwrap()));
            }
        }
    }
    seen
}

#[tokio::test]
async fn events_come_in_order_and_a_resumed_stream_misses_nothing() {
    let s = server(false).await;
    let job = s.job(3).await;
    let mut first = s.finish(&job, 1, "I can't help with that.").await;
    first.sort();
    let uri = format!("/api/v1/jobs/{job}/events");
    // Each execution: its end, then its label; the stream sends its latest state once.
    let events = read_events(&s, &uri, None, 2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let mut got: Vec<i64> = events.iter().map(|e| e.1).collect();
    got.sort();
    assert_eq!(got, first);
    assert!(events[0].0 < events[1].0, "ids increase");
    // While nobody listens, more finish; a client resuming after the last id it saw gets
    // exactly those.
    let mut more = s.finish(&job, 2, "Sure.").await;
    more.sort();
    let resumed = read_events(&s, &uri, Some(&events[1].0.to_string()), more.len(), Duration::from_secs(10)).await;
    let mut got: Vec<i64> = resumed.iter().map(|e| e.1).collect();
    got.sort();
    assert_eq!(got, more);
    assert!(resumed.iter().all(|e| e.0 > events[1].0));
    // `?after=` does the same for a page drawn at a known point.
    let after =
        read_events(&s, &format!("{uri}?after={}", resumed.last().unwrap().0), None, 1, Duration::from_millis(500))
            .await;
    assert!(after.is_empty(), "{after:?}");
    let a = s
        .call(
            Method::GET,
            &uri,
            &[("authorization", &format!("Bearer {TOKEN}")), ("last-event-id", "x")],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_portal_shows_hostile_answers_as_text_under_a_strict_policy() {
    let s = server(true).await;
    let job = s.job(1).await;
    let hostile = r#"<script>alert(1)</script> "><img src=x onerror=alert(2)> <a href="javascript:alert(3)">click</a>"#;
    let ids = s.finish(&job, 1, hostile).await;
    for uri in [format!("/jobs/{job}"), format!("/executions/{}", ids[0]), "/".to_owned()] {
        let page = s.call(Method::GET, &uri, &[], Body::empty()).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        let html = page.text();
        assert!(!html.contains("<script>alert"), "{uri}: a script tag from an answer");
        assert!(!html.contains("<img src=x"), "{uri}");
        assert!(!html.contains("href=\"javascript:"), "{uri}");
        if uri != "/" {
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{uri}: shown as text");
        }
        // The only script is the portal's own file.
        assert_eq!(html.matches("<script").count(), 1, "{uri}");
    }
    let js = s.call(Method::GET, "/static/portal.js", &[], Body::empty()).await.text();
    assert!(!js.contains("innerHTML"), "the script writes text only");
}

fn cookie_of(a: &Answer) -> String {
    let set = a.headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    set.split(';').next().unwrap().to_owned()
}

fn form(cookie: &str) -> Vec<(&'static str, String)> {
    vec![("content-type", "application/x-www-form-urlencoded".into()), ("cookie", cookie.to_owned())]
}

async fn post_form(s: &Server, uri: &str, headers: &[(&'static str, String)], body: &str) -> Answer {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.call(Method::POST, uri, &headers, body.to_owned()).await
}

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn signing_in_gives_a_strict_cookie_and_forms_need_its_csrf_token() {
    let s = server(false).await;
    let bad = post_form(&s, "/login", &form(""), "token=wrong&next=/").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let login = post_form(&s, "/login", &form(""), &format!("token={TOKEN}&next=//evil.example")).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.headers[header::LOCATION], "/", "never another origin");
    let cookie = cookie_of(&login);
    assert!(!cookie.contains(TOKEN));

    let page = s.call(Method::GET, "/jobs/new", &[("cookie", &cookie)], Body::empty()).await;
    let csrf = csrf_in(&page.text());
    let body = |csrf: &str, spec: &str| format!("csrf={csrf}&spec={}", url(spec));
    // Without the session's CSRF token the form is refused; with it, the job is submitted.
    let refused = post_form(&s, "/jobs/new", &form(&cookie), &body("0".repeat(64).as_str(), &spec(1))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad_spec = post_form(
        &s,
        "/jobs/new",
        &form(&cookie),
        &body(&csrf, "name: x\nquestions: []\nmodels: [zz]\nregions: [r1]\n"),
    )
    .await;
    assert_eq!(bad_spec.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_spec.text().contains("class=\"bad\""), "problems are shown at their lines");
    let ok = post_form(&s, "/jobs/new", &form(&cookie), &body(&csrf, &spec(1))).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text());
    let location = ok.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/jobs/api-"), "{location}");
    let job = location.trim_start_matches("/jobs/");
    // The job page reads with the cookie; cancelling needs the CSRF token too.
    assert_eq!(s.call(Method::GET, &location, &[("cookie", &cookie)], Body::empty()).await.status, StatusCode::OK);
    let refused = post_form(&s, &format!("/jobs/{job}/cancel"), &form(&cookie), "csrf=").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let cancelled = post_form(&s, &format!("/jobs/{job}/cancel"), &form(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    assert_eq!(s.get(&format!("/api/v1/jobs/{job}")).await.json()["total"]["counts"]["cancelled"], 2);
    // Without a session, the submit form asks for a token instead.
    let anonymous = post_form(&s, "/jobs/new", &form(""), &format!("token={TOKEN}&spec={}", url(&spec(2)))).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
}

fn url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_what_the_store_holds() {
    let s = server(false).await;
    let job = s.job(2).await;
    s.finish(&job, 1, "ok").await;
    let m = s.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = m.text();
    for line in [
        "parallax_executions{status=\"succeeded\"} 2",
        "parallax_executions{status=\"pending\"} 2",
        "parallax_attempts_total{outcome=\"succeeded\"} 2",
        "parallax_queue_depth{region=\"r1\"} 1",
        "parallax_upstream_latency_seconds_count{endpoint=\"r1/e1\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
}

/// The schema `doc` gives for `path`'s `method` answered with `status`.
fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "the document has no {method} {path}");
    let schema = &op["responses"][status]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "no {status} JSON schema for {method} {path}");
    schema
}

/// A small validator for what utoipa emits: `$ref`, `type` (one or a list), `properties`,
/// `required`, `items`, `oneOf`/`anyOf`/`allOf`. Every required property must be there,
/// every property there must be declared, and each value must have its declared type.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            return if options.iter().any(|o| conforms(doc, o, value, at).is_ok()) {
                Ok(())
            } else {
                Err(format!("{at}: matches none of {key}"))
            };
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            conforms(doc, s, value, at)?;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let type_ok = types.is_empty()
        || types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        });
    if !type_ok {
        return Err(format!("{at}: {value} is not {types:?}"));
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object()) {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(required) {
                return Err(format!("{at}: `{required}` is required but missing"));
            }
        }
        for (k, v) in object {
            let Some(s) = properties.get(k) else { return Err(format!("{at}: `{k}` is not in the schema")) };
            conforms(doc, s, v, &format!("{at}.{k}"))?;
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, schema, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn answers_match_the_openapi_document_and_it_names_every_route() {
    let s = server(false).await;
    let doc = s.get("/api/v1/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/executions/{id}",
            "/api/v1/jobs",
            "/api/v1/jobs/{id}",
            "/api/v1/jobs/{id}/cancel",
            "/api/v1/jobs/{id}/events",
            "/api/v1/jobs/{id}/executions",
            "/api/v1/jobs/{id}/report",
            "/api/v1/openapi.json",
        ]
    );
    let job = s.job(2).await;
    let done = s.finish(&job, 1, "I won't do that.").await;
    let bearer = format!("Bearer {TOKEN}");
    let checks: Vec<(&str, &str, String, Answer)> = vec![
        ("/api/v1/jobs", "post", "200".into(), s.submit(&spec(2)).await),
        ("/api/v1/jobs", "post", "422".into(), s.submit("name: x\n").await),
        ("/api/v1/jobs", "get", "200".into(), s.get("/api/v1/jobs?limit=1").await),
        ("/api/v1/jobs/{id}", "get", "200".into(), s.get(&format!("/api/v1/jobs/{job}")).await),
        ("/api/v1/jobs/{id}", "get", "404".into(), s.get("/api/v1/jobs/nope").await),
        ("/api/v1/jobs/{id}/executions", "get", "200".into(), s.get(&format!("/api/v1/jobs/{job}/executions")).await),
        (
            "/api/v1/jobs/{id}/executions",
            "get",
            "400".into(),
            s.get(&format!("/api/v1/jobs/{job}/executions?limit=0")).await,
        ),
        ("/api/v1/executions/{id}", "get", "200".into(), s.get(&format!("/api/v1/executions/{}", done[0])).await),
        (
            "/api/v1/jobs/{id}/cancel",
            "post",
            "200".into(),
            s.call(Method::POST, &format!("/api/v1/jobs/{job}/cancel"), &[("authorization", &bearer)], Body::empty())
                .await,
        ),
        (
            "/api/v1/jobs/{id}/cancel",
            "post",
            "401".into(),
            s.call(Method::POST, &format!("/api/v1/jobs/{job}/cancel"), &[], Body::empty()).await,
        ),
    ];
    for (path, method, status, answer) in checks {
        assert_eq!(answer.status.as_str(), status, "{method} {path}: {}", answer.text());
        let schema = response_schema(&doc, path, method, &status);
        if let Err(e) = conforms(&doc, schema, &answer.json(), "body") {
            panic!("{method} {path} {status} does not match its schema: {e}\n{}", answer.text());
        }
    }
    // Every path and method of the document is served (not the API's "no such route").
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{id}", if path.contains("executions/{id}") { "1" } else { &job });
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = Request::builder().method(m).uri(&uri).header("authorization", &bearer);
            if path.ends_with("/events") {
                request = request.header("last-event-id", "999999999");
            }
            let response = s.app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
            assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if response.status() == StatusCode::NOT_FOUND {
                let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
                assert!(!String::from_utf8_lossy(&body).contains("no such route"), "{method} {path} is not routed");
            }
        }
    }
}

#[tokio::test]
async fn guessing_tokens_is_throttled_and_nothing_else_is() {
    let s = server(true).await;
    for _ in 0..parallax_server::throttle::MAX_FAILURES {
        let a = post_form(&s, "/login", &form(""), "token=guess&next=/").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // Every credentialed request from that address now waits, the right token too.
    let a = post_form(&s, "/login", &form(""), &format!("token={TOKEN}&next=/")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text());
    assert!(a.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() <= 60);
    assert_eq!(s.get("/api/v1/jobs").await.status, StatusCode::TOO_MANY_REQUESTS);
    // Reads without credentials (public here) and health are not throttled.
    assert_eq!(s.call(Method::GET, "/api/v1/jobs", &[], Body::empty()).await.status, StatusCode::OK);
    assert_eq!(s.call(Method::GET, "/healthz", &[], Body::empty()).await.status, StatusCode::OK);
}
