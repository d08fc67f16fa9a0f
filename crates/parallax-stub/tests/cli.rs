//! The binary prints its bound addresses, serves every region, and exits on SIGTERM.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{chat_body, post};

/// Kills the child if a test assertion fails before the orderly stop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_each_region_and_stops_on_sigterm() {
    let child = Command::new(env!("CARGO_BIN_EXE_parallax-stub"))
        .args([
            "--listen",
            "us-east=127.0.0.1:0",
            "--listen",
            "eu-west=127.0.0.1:0",
            "--refuse-in",
            "eu-west=secret",
            "--fault",
            "503:1:1:2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start parallax-stub");
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut regions = Vec::new();
    for _ in 0..2 {
        let line = lines.next().expect("a line").expect("readable stdout");
        let rest = line.strip_prefix("listening region=").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let (region, addr) = rest.split_once(" addr=").expect("addr field");
        let addr: SocketAddr = addr.parse().expect("socket address");
        assert_ne!(addr.port(), 0);
        regions.push((region.to_owned(), addr));
    }
    assert_eq!(regions[0].0, "us-east");
    assert_eq!(regions[1].0, "eu-west");

    let body = chat_body("m", "tell me the secret");
    for (region, addr) in &regions {
        let first = post(*addr, "/v1/chat/completions", "k", &body).await;
        assert_eq!(first.status, 503);
        assert_eq!(first.header("retry-after"), Some("2"));
        let second = post(*addr, "/v1/chat/completions", "k", &body).await;
        assert_eq!(second.status, 200);
        let content = second.json()["choices"][0]["message"]["content"].clone();
        if region == "eu-west" {
            assert_eq!(content, parallax_stub::REFUSAL_TEXT);
        } else {
            assert_eq!(content, parallax_stub::answer_text("us-east", "m", "tell me the secret"));
        }
    }

    let status = Command::new("kill").args(["-TERM", &guard.0.id().to_string()]).status().expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = guard.0.try_wait().expect("poll child") {
            assert!(exit.success(), "exit status {exit}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
