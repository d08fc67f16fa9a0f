//! A fleet of stub regions, files in a temp dir, and the real CLI.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use parallax_stub::{StubConfig, StubHandle};
use tempfile::TempDir;

pub struct Fleet {
    pub dir: TempDir,
    pub stubs: Vec<(String, StubHandle)>,
    /// The store every command uses: `None` for `parallax.db` in the fleet's directory, or
    /// a PostgreSQL schema of its own.
    pg: Option<PgSchema>,
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", self.stdout))
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Fleet {
    /// One stub per region, configured by `config(region)`.
    pub async fn start(regions: &[&str], config: impl Fn(&str) -> StubConfig) -> Fleet {
        let mut stubs = Vec::new();
        for region in regions {
            let cfg = StubConfig { region: region.to_string(), ..config(region) };
            stubs.push((region.to_string(), parallax_stub::spawn_on_loopback(cfg).await.expect("stub starts")));
        }
        Fleet { dir: tempfile::tempdir().expect("temp dir"), stubs, pg: None }
    }

    /// Like [`Fleet::start`], with every command on `backend`'s store; `None` when
    /// PostgreSQL is wanted and no server answers (see [`PgSchema::create`]).
    pub async fn start_on(backend: Backend, regions: &[&str], config: impl Fn(&str) -> StubConfig) -> Option<Fleet> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgSchema::create("a crash test on PostgreSQL").await?),
        };
        Some(Fleet { pg, ..Fleet::start(regions, config).await })
    }

    pub fn stub(&self, region: &str) -> &StubHandle {
        &self.stubs.iter().find(|(r, _)| r == region).expect("region").1
    }

    /// Writes a catalog with one `openai-chat` endpoint per region serving `models`
    /// (`id: provider name`); `endpoint_extra` is added to every endpoint's mapping.
    pub fn catalog(&self, models: &[(&str, &str)], endpoint_extra: &str) -> PathBuf {
        let mut text = String::from("regions:\n");
        for (region, stub) in &self.stubs {
            text.push_str(&format!(
                "  {region}:\n    - name: {region}-stub\n      kind: openai-chat\n      base_url: {}\n{endpoint_extra}      models:\n",
                stub.base_url()
            ));
            for (id, name) in models {
                text.push_str(&format!("        {id}: {name}\n"));
            }
        }
        self.write("parallax.yaml", &text)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("parallax.db")
    }

    /// Runs the CLI in the fleet's directory with its catalog and store.
    pub async fn parallax(&self, args: &[&str]) -> Output {
        self.parallax_env(args, &[]).await
    }

    pub async fn parallax_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.command(args, env).output().await.expect("run parallax");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_parallax"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("PARALLAX_DB")
            .env_remove("PARALLAX_CONFIG")
            .env_remove("RUST_LOG")
            .env("PARALLAX_NO_PROGRESS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(pg) = &self.pg {
            cmd.env("PARALLAX_DB", &pg.location);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Requests each stub received, per idempotency key, over the whole fleet.
    pub fn requests_by_key(&self) -> HashMap<String, u64> {
        let mut all = HashMap::new();
        for (_, stub) in &self.stubs {
            for (k, n) in stub.stats.requests_by_key() {
                *all.entry(k).or_insert(0) += n;
            }
        }
        all
    }

    pub fn total_requests(&self) -> u64 {
        self.stubs.iter().map(|(_, s)| s.stats.total_requests()).sum()
    }
}

/// A spec with `n` questions `q0..`, the given models and regions, and extra YAML.
pub fn spec(n: usize, models: &[&str], regions: &[&str], extra: &str) -> String {
    let mut s = String::from("name: it\nquestions:\n");
    for i in 0..n {
        s.push_str(&format!("  - id: q{i}\n    text: Question number {i}?\n"));
    }
    s.push_str(&format!("models: [{}]\nregions: [{}]\n{extra}", models.join(", "), regions.join(", ")));
    s
}

pub fn job_id(plan_json: &serde_json::Value) -> String {
    plan_json["job_id"].as_str().expect("job_id").to_owned()
}

/// The quickstart's models directory when every named model is in it (fetched by
/// `scripts/fetch-models.sh`); otherwise `None` with a loud skip — and in CI
/// (`PARALLAX_CI`), where a missing model is a failure, a panic.
pub fn quickstart_models(files: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("PARALLAX_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/parallax/models")))?;
    if files.iter().all(|f| dir.join(f).is_file()) {
        return Some(dir);
    }
    if std::env::var_os("PARALLAX_CI").is_some() {
        panic!("the quickstart models are missing from {}: run `bash scripts/fetch-models.sh`", dir.display());
    }
    eprintln!("SKIPPED: the quickstart models are missing from {} (run `bash scripts/fetch-models.sh`)", dir.display());
    None
}

/// A fresh schema on the PostgreSQL server at `DATABASE_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`), dropped when this is dropped; `location`
/// is the `--db` URL that uses it. `None` (after a loud message) when no server answers —
/// and in CI (`PARALLAX_CI`), where a skipped test is a failed one, a panic.
pub struct PgSchema {
    pub location: String,
    admin_url: String,
    name: String,
}

impl PgSchema {
    pub async fn create(test: &str) -> Option<PgSchema> {
        let url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let client = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(e) => {
                let message = format!("PostgreSQL test `{test}` SKIPPED: no server at DATABASE_URL ({e})");
                if std::env::var_os("PARALLAX_CI").is_some() {
                    panic!("{message}; PARALLAX_CI is set: a skipped test fails");
                }
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {message} !!!!!!!!\n");
                return None;
            }
        };
        let name = format!("cli_{}", hex::encode(rand::random::<[u8; 8]>()));
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create schema");
        let sep = if url.contains('?') { '&' } else { '?' };
        let location = format!("{url}{sep}options=-c%20search_path%3D{name}");
        Some(PgSchema { location, admin_url: url, name })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: the cleanup gets a thread and runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await.ok()
            })
        })
        .join();
    }
}

/// A throwaway PostgreSQL cluster of the test's own (`initdb`, `pg_ctl`), on a free port,
/// for tests that restart the database: the shared server is never restarted. As root the
/// tools run as the `postgres` user (initdb refuses root). Stopped when dropped. `None`
/// (after a loud message) when the tools are missing — a panic in CI (`PARALLAX_CI`).
pub struct Cluster {
    dir: TempDir,
    pub port: u16,
    /// Server settings beyond the defaults (`-c name=value`).
    settings: Vec<String>,
}

impl Cluster {
    pub fn start(test: &str) -> Option<Cluster> {
        Cluster::start_with(test, None, |_| Vec::new())
    }

    /// As `start`, with a `pg_hba.conf` of its own (`hba`), and server settings returned by
    /// `prepare`, which first writes what they name into the cluster's directory (it gets
    /// that directory; the files become the server's).
    pub fn start_with(
        test: &str,
        hba: Option<&str>,
        prepare: impl FnOnce(&std::path::Path) -> Vec<String>,
    ) -> Option<Cluster> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let settings = prepare(dir.path());
        let cluster = Cluster { dir, port, settings };
        if std::process::Command::new("chown").args(["-R", "postgres", &cluster.path()]).status().is_err()
            || !cluster.tool("initdb", &["-D", &cluster.data(), "-A", "trust", "-U", "postgres", "--no-sync"])
        {
            let message = format!("PostgreSQL test `{test}` SKIPPED: initdb did not run (PostgreSQL's tools missing?)");
            if std::env::var_os("PARALLAX_CI").is_some() {
                panic!("{message}; PARALLAX_CI is set: a skipped test fails");
            }
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {message} !!!!!!!!\n");
            return None;
        }
        if let Some(hba) = hba {
            std::fs::write(format!("{}/pg_hba.conf", cluster.data()), hba).expect("write pg_hba.conf");
        }
        assert!(cluster.pg_ctl("start"), "the throwaway cluster starts");
        Some(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m fast` (connections are cut) or `start`; waits until done.
    pub fn pg_ctl(&self, action: &str) -> bool {
        let mut options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.path());
        for setting in &self.settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let log = format!("{}/log", self.path());
        match action {
            "stop" => self.tool("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]),
            _ => self.tool("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"]),
        }
    }

    pub fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn data(&self) -> String {
        format!("{}/data", self.path())
    }

    fn tool(&self, tool: &str, args: &[&str]) -> bool {
        let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut cmd = if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", tool]);
            c
        } else {
            std::process::Command::new(tool)
        };
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg_ctl("stop");
    }
}

/// Waits until the fleet has received `n` requests (at most 30 s).
pub async fn wait_for_requests(fleet: &Fleet, n: u64) {
    for _ in 0..3000 {
        if fleet.total_requests() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("never reached {n} requests");
}
