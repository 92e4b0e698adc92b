//! Real `hoso serve` processes and a small HTTP/1.1 client for tests that need them: several
//! processes on one database, kills, memory.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// The vault processes, killed when the test ends however it ends.
pub struct Fleet(pub Vec<(Child, SocketAddr)>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub async fn start_fleet(vault: &TestVault, n: usize) -> Fleet {
    start_fleet_with(vault, n, &[]).await
}

/// Starts `n` processes with extra environment settings, each on a port of its own.
///
/// A port found free may be taken by a parallel test before the process binds it; that process
/// exits saying it cannot listen and is started again on another port. Any other early exit, or
/// a process not ready within 30 s, fails the test with what the process printed.
pub async fn start_fleet_with(vault: &TestVault, n: usize, env: &[(&str, &str)]) -> Fleet {
    let mut fleet = Fleet(Vec::new());
    for _ in 0..n {
        fleet.0.push(ready_process(vault, env).await);
    }
    fleet
}

async fn ready_process(vault: &TestVault, env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for _attempt in 0..5 {
        let addr = free_port();
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = spawn_serve(vault, addr, env, stderr.reopen().unwrap());
        loop {
            if let Ok((200, _)) = call(addr, "GET", "/readyz", None, None).await {
                return (child, addr);
            }
            if let Some(status) = child.try_wait().unwrap() {
                let said = std::fs::read_to_string(stderr.path()).unwrap_or_default();
                assert!(
                    said.contains("cannot listen on"),
                    "hoso serve on {addr} exited ({status}) before it was ready:\n{said}"
                );
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let said = std::fs::read_to_string(stderr.path()).unwrap_or_default();
                panic!("hoso serve on {addr} did not become ready within 30 s:\n{said}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("hoso serve lost its port to another test five times running")
}

fn spawn_serve(
    vault: &TestVault,
    addr: SocketAddr,
    env: &[(&str, &str)],
    stderr: std::fs::File,
) -> Child {
    let s = &vault.state.settings;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"));
    command
        .arg("serve")
        .env("HOSO_DATABASE_URL", s.database_url.expose())
        .env("HOSO_STORAGE_URL", s.storage_url.to_string())
        .env("HOSO_KEYS_DIR", &s.keys_dir)
        .env("HOSO_LISTEN", addr.to_string())
        .env("HOSO_LOG", "warn");
    crate::common::pkcs11_env(&mut command, s);
    command
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), bounded in time.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: hoso\r\nConnection: close\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                head.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                    bytes.len()
                ));
                bytes
            }
            None => Vec::new(),
        };
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let status_line = String::from_utf8_lossy(&reply[..split]).into_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let headers = status_line.to_ascii_lowercase();
        let mut payload = reply[split + 4..].to_vec();
        if headers.contains("transfer-encoding: chunked") {
            payload = dechunk(&payload);
        }
        Ok((status, payload))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)?
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
    out
}

pub async fn intake(
    addr: SocketAddr,
    token: &str,
    national_id: &str,
    doc_type: &str,
    scan: Vec<u8>,
) -> (u16, Value) {
    try_intake(addr, token, national_id, doc_type, scan)
        .await
        .unwrap()
}

/// An intake whose connection may fail (the server may be killed under it).
pub async fn try_intake(
    addr: SocketAddr,
    token: &str,
    national_id: &str,
    doc_type: &str,
    scan: Vec<u8>,
) -> std::io::Result<(u16, Value)> {
    let meta = metadata(doc_type).to_string();
    let (content_type, body) = multipart(&[
        ("metadata", meta.as_bytes(), "application/json"),
        ("file", &scan, "application/pdf"),
    ]);
    let path = format!("/v1/citizens/{national_id}/documents");
    let (status, reply) = call(
        addr,
        "POST",
        &path,
        Some(token),
        Some((&content_type, body)),
    )
    .await?;
    Ok((
        status,
        serde_json::from_slice(&reply).unwrap_or(Value::Null),
    ))
}
