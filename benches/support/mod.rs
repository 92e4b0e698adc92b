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
