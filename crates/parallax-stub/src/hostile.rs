//! Hostile servers: upstreams that misbehave in ways a well-behaved stub cannot — a
//! `Retry-After` of `1e300`, a redirect to another host, a body of hundreds of megabytes,
//! an error object in a `200` — written byte by byte on a raw socket, so that nothing
//! between the test and the client under test tidies them up.
//!
//! Each request (one per connection: every reply closes it) gets the next [`Reply`] of
//! its script; the last one repeats. The server counts what it received and what it sent,
//! so a test can show that the client was really called, and stopped reading when it should.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use parallax_stub::hostile::{self, Reply};
//! let server = hostile::spawn(vec![Reply::retry_after(429, "1e300"), Reply::Answer]).await?;
//! println!("point the client at {}", server.base_url());
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A well-formed chat completion naming the requested model; its text is `fine`.
    Answer,
    /// A status line, headers and body, written exactly as given (plus `Content-Length`
    /// and `Connection: close`).
    Raw { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// `200` with a body of `bytes` bytes (a completion whose text never ends), sent in
    /// chunks until the client hangs up; with `declare_length` its `Content-Length` is
    /// given, else it is chunked.
    Huge { bytes: u64, declare_length: bool },
}

impl Reply {
    /// An OpenAI-style error with a `Retry-After` header.
    pub fn retry_after(status: u16, value: &str) -> Reply {
        Reply::Raw {
            status,
            headers: vec![("Retry-After".into(), value.into()), ("Content-Type".into(), "application/json".into())],
            body: br#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#.to_vec(),
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::Raw { status, headers: vec![("Location".into(), location.into())], body: Vec::new() }
    }

    /// `200` with a JSON body.
    pub fn json(body: &str) -> Reply {
        Reply::Raw {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// The request's headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A running hostile server.
#[derive(Debug)]
pub struct Hostile {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Hostile {
    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many completion requests (POSTs) arrived.
    pub fn requests(&self) -> usize {
        self.received.lock().expect("not poisoned").len()
    }

    /// Every request, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }

    /// Body bytes written to clients, over every reply.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a hostile server on a loopback port, answering requests with `script` in order
/// (the last reply repeats; an empty script answers every request with [`Reply::Answer`]).
pub async fn spawn(script: Vec<Reply>) -> io::Result<Hostile> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let (r, s) = (received.clone(), sent.clone());
    let script = Arc::new(script);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (r, s, script) = (r.clone(), s.clone(), script.clone());
            tokio::spawn(async move {
                let _ = serve(stream, &r, &s, &script).await;
            });
        }
    });
    Ok(Hostile { addr, received, sent, task })
}

async fn serve(
    mut stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    sent: &AtomicU64,
    script: &[Reply],
) -> io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else { return Ok(()) };
    if request.method != "POST" {
        // A client's look around (`GET /models` before a run) is answered politely and not
        // counted: the script is for completions.
        let list = br#"{"object":"list","data":[]}"#;
        return write_raw(&mut stream, 200, &[("Content-Type".into(), "application/json".into())], list, sent).await;
    }
    let reply = {
        let mut all = received.lock().expect("not poisoned");
        all.push(request.clone());
        script.get(all.len() - 1).or(script.last()).cloned().unwrap_or(Reply::Answer)
    };
    match reply {
        Reply::Answer => {
            let model = serde_json::from_slice::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let body = serde_json::json!({
                "id": "hostile-1",
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })
            .to_string();
            write_raw(&mut stream, 200, &[("Content-Type".into(), "application/json".into())], body.as_bytes(), sent)
                .await
        }
        Reply::Raw { status, headers, body } => write_raw(&mut stream, status, &headers, &body, sent).await,
        Reply::Huge { bytes, declare_length } => write_huge(&mut stream, bytes, declare_length, sent).await,
    }
}

/// Reads one request: its head (at most 64 KiB) and a `Content-Length` body.
async fn read_request(stream: &mut TcpStream) -> io::Result<Option<Received>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 << 10 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or_default().to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length.min(16 << 20) {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Received { method, path, headers, body }))
}

async fn write_raw(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    sent: &AtomicU64,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} Hostile\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    sent.fetch_add(body.len() as u64, Ordering::SeqCst);
    stream.shutdown().await
}

/// A completion whose content is `bytes` long in all, written 64 KiB at a time until done
/// or until the client hangs up.
async fn write_huge(stream: &mut TcpStream, bytes: u64, declare_length: bool, sent: &AtomicU64) -> io::Result<()> {
    let prefix =
        br#"{"model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":""#;
    let suffix = br#""}}]}"#;
    let filler_len = bytes.saturating_sub((prefix.len() + suffix.len()) as u64);
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n");
    if declare_length {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", filler_len + (prefix.len() + suffix.len()) as u64));
    } else {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    }
    stream.write_all(head.as_bytes()).await?;
    let filler = vec![b'a'; 64 << 10];
    let write = |data: Vec<u8>| {
        let mut out = Vec::with_capacity(data.len() + 16);
        if declare_length {
            out.extend_from_slice(&data);
        } else {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        }
        (out, data.len() as u64)
    };
    let (out, n) = write(prefix.to_vec());
    stream.write_all(&out).await?;
    sent.fetch_add(n, Ordering::SeqCst);
    let mut left = filler_len;
    while left > 0 {
        let take = left.min(filler.len() as u64) as usize;
        let (out, n) = write(filler[..take].to_vec());
        stream.write_all(&out).await?;
        sent.fetch_add(n, Ordering::SeqCst);
        left -= take as u64;
    }
    let (out, n) = write(suffix.to_vec());
    stream.write_all(&out).await?;
    sent.fetch_add(n, Ordering::SeqCst);
    if !declare_length {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"model\":\"m\"}")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_script_plays_in_order_and_the_last_reply_repeats() {
        let server = spawn(vec![Reply::retry_after(429, "1e300"), Reply::Answer]).await.unwrap();
        let first = post(server.addr).await;
        assert!(first.starts_with("HTTP/1.1 429") && first.contains("Retry-After: 1e300"), "{first}");
        for _ in 0..2 {
            let next = post(server.addr).await;
            assert!(next.starts_with("HTTP/1.1 200") && next.contains(r#""model":"m""#), "{next}");
        }
        assert_eq!(server.requests(), 3);
        assert_eq!(server.received()[0].path, "/v1/chat/completions");
        assert_eq!(server.received()[0].body, br#"{"model":"m"}"#);
    }

    #[tokio::test]
    async fn a_huge_body_is_sent_whole_to_a_client_that_reads_it() {
        let server = spawn(vec![Reply::Huge { bytes: 300_000, declare_length: true }]).await.unwrap();
        let out = post(server.addr).await;
        let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
        assert_eq!(body.len(), 300_000);
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
        assert_eq!(server.bytes_sent(), 300_000);
    }
}
