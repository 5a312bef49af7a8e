//! Raw HTTP/1.1 over `tokio::net::TcpStream`, for requests reqwest will not
//! produce: invalid bytes, broken framing, stalls, duplicate headers.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back on the socket.
#[derive(Debug)]
pub struct Reply {
    /// Final status (interim 100 Continue skipped); `None` if the server
    /// closed or the deadline passed before a status line arrived.
    pub status: Option<u16>,
    /// Lower-cased header names with their values.
    pub headers: Headers,
    /// The body (as many bytes as `content-length` announced, or up to EOF).
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A request head plus body: `head` lines are joined with CRLF and ended with
/// an empty line; `content-length` is added unless `head` sets framing itself.
pub fn request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    let framed = headers.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        h.starts_with("content-length:") || h.starts_with("transfer-encoding:")
    });
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    if !framed {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A JSON POST.
pub fn post_json(path: &str, body: &[u8]) -> Vec<u8> {
    request("POST", path, &["content-type: application/json"], body)
}

/// Sends `bytes` (from a separate task, so a server answering early — 413
/// before the body is read — is still heard) and reads one response. The
/// write half stays open until the reply is read: a half-close would tell
/// hyper the client is gone.
pub async fn exchange(port: u16, bytes: Vec<u8>, deadline: Duration) -> Reply {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may close while a large body is still being written.
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let reply = read_reply(&mut rd, deadline).await;
    writer.abort();
    reply
}

/// Reads one response (skipping 1xx) from `rd` within `deadline`.
pub async fn read_reply(rd: &mut (impl AsyncReadExt + Unpin), deadline: Duration) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(r) = parse(&buf) {
            return r;
        }
        match tokio::time::timeout_at(until, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    // EOF or deadline: whatever arrived.
    match parse_head(&buf) {
        Some((status, headers, start)) => Reply {
            status: Some(status),
            headers,
            body: buf[start..].to_vec(),
        },
        None => Reply {
            status: None,
            headers: Vec::new(),
            body: buf,
        },
    }
}

/// Lower-cased header names with their values.
type Headers = Vec<(String, String)>;

/// Status, headers and body offset of the first final response in `buf`.
fn parse_head(buf: &[u8]) -> Option<(u16, Headers, usize)> {
    let mut offset = 0;
    loop {
        let rest = &buf[offset..];
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        if (100..200).contains(&status) {
            offset += end + 4;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        return Some((status, headers, offset + end + 4));
    }
}

/// A complete response (head + `content-length` bytes of body), if in `buf`.
fn parse(buf: &[u8]) -> Option<Reply> {
    let (status, headers, start) = parse_head(buf)?;
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())?;
    if buf.len() < start + len {
        return None;
    }
    Some(Reply {
        status: Some(status),
        headers,
        body: buf[start..start + len].to_vec(),
    })
}
