//! A deliberately tiny HTTP/1.1 client over a raw `TcpStream`, so the tests
//! see exactly what went over the wire (including aborted connections)
//! without depending on a full HTTP client.

#![allow(dead_code)] // each test binary uses a different subset

use std::io;
use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request with `Connection: close` and returns the raw bytes of
/// whatever came back (possibly nothing, or an error, for aborted connections).
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut received = Vec::new();
    stream.read_to_end(&mut received).await?;
    Ok(received)
}

/// Parses a complete `Content-Length`-delimited response.
pub fn parse(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header terminator in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    let body = raw[split + 4..].to_vec();
    let response = HttpResponse { status, headers, body };
    if let Some(len) = response.header("content-length") {
        assert_eq!(
            len.parse::<usize>().expect("numeric content-length"),
            response.body.len(),
            "body length matches Content-Length"
        );
    }
    response
}

/// Sends a request and parses the response, panicking on transport errors.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let raw = exchange(addr, method, path, headers, body).await.expect("request completes");
    parse(&raw)
}

/// POSTs a JSON body to `path` with an idempotency key.
pub async fn post(addr: SocketAddr, path: &str, key: &str, body: &str) -> HttpResponse {
    request(addr, "POST", path, &[("Content-Type", "application/json"), ("Idempotency-Key", key)], body.as_bytes())
        .await
}

/// A minimal chat request body.
pub fn chat_body(model: &str, prompt: &str) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "seed": 7,
    })
    .to_string()
}
