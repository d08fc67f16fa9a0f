//! `hf:owner/repo/file.gguf` models through the real CLI, downloaded from a fake Hugging
//! Face hub on loopback (`HF_ENDPOINT`) that serves the real SmolLM2 file (fetched by
//! `scripts/fetch-models.sh`; in CI a missing model is a failure, elsewhere a loud skip).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;

use crate::support::{Fleet, quickstart_models};
use parallax_stub::StubConfig;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const REPO: &str = "parallax-test/SmolLM2-135M-Instruct-GGUF";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn smollm2_file() -> Option<PathBuf> {
    quickstart_models(&[SMOLLM2]).map(|dir| dir.join(SMOLLM2))
}

/// A fake hub: `GET /{REPO}/resolve/{revision}/{SMOLLM2}` with HTTP ranges, the headers
/// hf-hub reads (`etag`, `x-repo-commit`, `content-range`), 404 for anything else. It
/// records every request as `METHOD path range authorization`.
struct FakeHub {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    async fn start(file: &Path) -> FakeHub {
        let body = Bytes::from(std::fs::read(file).expect("read the model"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let body = body.clone();
            let log = log.clone();
            async move { serve(&body, &log, method, uri, headers) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeHub { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(body: &Bytes, log: &Mutex<Vec<String>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    log.lock().unwrap().push(format!(
        "{method} {} {} {}",
        uri.path(),
        text(header::RANGE),
        text(header::AUTHORIZATION)
    ));
    let found = uri
        .path()
        .strip_prefix(&format!("/{REPO}/resolve/"))
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_revision, file)| file == SMOLLM2);
    if method != Method::GET || !found {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Body::from("Entry not found")).unwrap();
    }
    let len = body.len();
    // `bytes=start-stop`, inclusive; hf-hub asks one past the end for the last chunk.
    let (start, stop) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(s, e)| Some((s.parse::<usize>().ok()?, e.parse::<usize>().ok()?.min(len - 1))))
        .unwrap_or((0, len - 1));
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header(header::ETAG, format!("\"{SMOLLM2_SHA256}\""))
        .header("x-repo-commit", COMMIT)
        .header(header::CONTENT_RANGE, format!("bytes {start}-{stop}/{len}"))
        .body(Body::from(body.slice(start..=stop)))
        .unwrap()
}

const JOB: &str = "name: hub\nquestions:\n  - {id: a, text: What is 2 + 2?}\nmodels: [smollm2]\nregions: [laptop]\nsampling: {temperature: 0, max_tokens: 8}\n";

#[tokio::test]
async fn an_hf_model_is_downloaded_once_into_the_models_dir_and_planned_by_its_sha256() {
    let Some(file) = smollm2_file() else { return };
    let hub = FakeHub::start(&file).await;
    let fleet = Fleet::start(&[], |_| StubConfig::default()).await;
    let models = fleet.dir.path().join("models");
    fleet.write(
        "parallax.yaml",
        &format!(
            "regions:\n  laptop:\n    - name: cpu\n      kind: local-gguf\n      path: ${{PARALLAX_MODELS}}\n      models:\n        smollm2: hf:{REPO}/{SMOLLM2}\n        missing: hf:{REPO}/nope.gguf\n    - name: pinned\n      kind: local-gguf\n      path: hf:{REPO}@v1/{SMOLLM2}\n      models:\n        pinned: smollm2-v1\n"
        ),
    );
    fleet.write("job.yaml", JOB);
    let env =
        [("HF_ENDPOINT", hub.url.as_str()), ("HF_TOKEN", "hf_test"), ("PARALLAX_MODELS", models.to_str().unwrap())];
    let reference = format!("hf:{REPO}/{SMOLLM2}");

    let out = fleet.parallax_env(&["plan", "job.yaml", "--format", "json"], &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    let item = &plan["items"][0];
    assert_eq!(item["request"]["gguf_sha256"], SMOLLM2_SHA256, "{plan}");
    assert_eq!(item["requested_model"], reference.as_str());
    let url = format!("{}/{REPO}/resolve/main/{SMOLLM2}", hub.url);
    assert!(out.stderr.contains(&format!("downloading {reference} from {url}")), "{out:?}");
    // hf-hub's cache layout, in the models directory.
    let cached = models.join(format!("models--parallax-test--SmolLM2-135M-Instruct-GGUF/snapshots/{COMMIT}/{SMOLLM2}"));
    assert!(cached.is_file(), "{}", cached.display());
    let requests = hub.requests();
    assert!(requests.len() >= 2, "a metadata request, then the file: {requests:?}");
    assert!(requests.iter().all(|r| r.ends_with("Bearer hf_test")), "HF_TOKEN is sent: {requests:?}");

    // Cached: planned again without asking the hub.
    let again = fleet.parallax_env(&["plan", "job.yaml", "--format", "json"], &env).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["items"][0]["request"]["gguf_sha256"], SMOLLM2_SHA256);
    assert!(!again.stderr.contains("downloading"), "{again:?}");
    assert_eq!(hub.requests().len(), requests.len(), "{:?}", hub.requests());

    // A file the hub does not have: exit 2, naming the reference and the URL.
    fleet.write("missing.yaml", &JOB.replace("[smollm2]", "[missing]"));
    let out = fleet.parallax_env(&["plan", "missing.yaml"], &env).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(&format!("hf:{REPO}/nope.gguf")), "{out:?}");
    assert!(out.stderr.contains("no such repository, revision or file"), "{out:?}");

    // `path:` as the reference, at a revision: downloaded into $PARALLAX_MODELS.
    fleet.write("pinned.yaml", &JOB.replace("[smollm2]", "[pinned]"));
    let out = fleet.parallax_env(&["plan", "pinned.yaml", "--format", "json"], &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["items"][0]["request"]["gguf_sha256"], SMOLLM2_SHA256);
    assert!(hub.requests().iter().any(|r| r.contains(&format!("/resolve/v1/{SMOLLM2}"))), "{:?}", hub.requests());
    assert!(models.join("models--parallax-test--SmolLM2-135M-Instruct-GGUF/refs/v1").is_file());
}

/// A fleet whose one local endpoint serves SmolLM2 as an `hf:` reference, downloaded into
/// the fleet's `models/`, and `job.yaml` asking it one question.
async fn hf_fleet() -> Fleet {
    let fleet = Fleet::start(&[], |_| StubConfig::default()).await;
    let models = fleet.dir.path().join("models");
    fleet.write(
        "parallax.yaml",
        &format!(
            "regions:\n  laptop:\n    - name: cpu\n      kind: local-gguf\n      path: {}\n      models:\n        smollm2: hf:{REPO}/{SMOLLM2}\n",
            models.display()
        ),
    );
    fleet.write("job.yaml", JOB);
    fleet
}

#[tokio::test]
async fn an_unreachable_hub_is_an_input_error_naming_the_reference_the_url_and_the_fix() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().unwrap())
    };
    let fleet = hf_fleet().await;
    let out = fleet.parallax_env(&["plan", "job.yaml"], &[("HF_ENDPOINT", &closed), ("HF_TOKEN", "")]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let url = format!("{closed}/{REPO}/resolve/main/{SMOLLM2}");
    assert!(out.stderr.contains(&format!("cannot download `hf:{REPO}/{SMOLLM2}` from {url}")), "{out:?}");
    assert!(out.stderr.contains("HF_ENDPOINT") && out.stderr.contains("`path:`"), "{out:?}");
    assert!(out.stderr.contains("scripts/fetch-models.sh"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    assert!(!fleet.db().exists());
}

/// A hub that takes the connection and then says nothing: the download gives up after
/// `PARALLAX_HUB_STALL_SECS` with an input error, instead of hanging the command.
#[tokio::test]
async fn a_silent_hub_fails_after_the_stall_timeout_instead_of_hanging() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let fleet = hf_fleet().await;
    let started = std::time::Instant::now();
    let env = [("HF_ENDPOINT", silent.as_str()), ("HF_TOKEN", ""), ("PARALLAX_HUB_STALL_SECS", "1")];
    let out = fleet.parallax_env(&["plan", "job.yaml"], &env).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("the hub sent nothing for 1 s"), "{out:?}");
    assert!(out.stderr.contains("PARALLAX_HUB_STALL_SECS"), "{out:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());

    let bad = fleet.parallax_env(&["plan", "job.yaml"], &[("PARALLAX_HUB_STALL_SECS", "soon")]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("PARALLAX_HUB_STALL_SECS=`soon`"), "{bad:?}");
}
