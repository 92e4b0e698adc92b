//! What the benches share: a keep-alive HTTP/1.1 client just big enough to drive the vault,
//! and made-up scans.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection; just enough client to drive the vault.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream: BufReader::with_capacity(256 * 1024, stream),
        }
    }

    /// Sends a request; returns the status and the body.
    pub async fn call(&mut self, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write");
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("body");
        (status, body)
    }
}

pub fn scan(seed: u64, len: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    out.resize(len, 0);
    let mut x = seed | 1;
    for chunk in out[9..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    out
}

/// A clerk's intake of `file` for citizen 001099012345, as raw HTTP/1.1 head and body.
#[allow(dead_code)] // each bench compiles this module; `compare` drives intakes through wrk
pub fn intake_request(clerk: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "hosoloadboundary";
    let meta = r#"{"doc_type":"cccd","doc_number":"B1","holder_name":"Nguyễn Văn A","issued_on":"2020-01-01","issued_by":"Công an"}"#;
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.pdf\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /v1/citizens/001099012345/documents HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {clerk}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    (head, body)
}

/// A `VmRSS`/`VmHWM`-style field of a process's `/proc/PID/status`, in KiB (0 if unreadable).
#[allow(dead_code)] // each bench compiles this module; `quick` measures no process
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field).and_then(|v| {
                    v.trim_start_matches(':')
                        .trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse()
                        .ok()
                })
            })
        })
        .unwrap_or(0)
}
