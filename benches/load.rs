//! Load and soak: a real `hoso serve` process on loopback, concurrent clients mixing intake and
//! verified-copy reads for a bounded time. Reports requests/s, p50/p99 latency per kind, errors
//! and the server's peak RSS; then proves nothing was lost (every acknowledged document reads
//! back byte-identical) and the audit chain verifies.
//!
//! `cargo bench --bench load` (HOSO_LOAD_SECONDS=60, HOSO_LOAD_CLIENTS=8, HOSO_LOAD_KIB=256).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::{Conn, intake_request, rss_kib, scan};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Tally {
    intake: Vec<Duration>,
    read: Vec<Duration>,
    client_errors: u64,
    server_errors: u64,
    acknowledged: Vec<(String, Vec<u8>)>,
}

struct Server {
    child: std::process::Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hoso(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"));
    command
        .env(
            "HOSO_DATABASE_URL",
            format!("sqlite://{}", dir.join("hoso.db").display()),
        )
        .env(
            "HOSO_STORAGE_URL",
            format!("file://{}", dir.join("storage").display()),
        )
        .env("HOSO_KEYS_DIR", dir.join("keys"))
        .env("HOSO_LOG", "warn");
    command
}

#[tokio::main]
async fn main() {
    let seconds = env_u64("HOSO_LOAD_SECONDS", 60);
    let clients = env_u64("HOSO_LOAD_CLIENTS", 8);
    let size = env_u64("HOSO_LOAD_KIB", 256) as usize * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr")
    };
    assert!(
        hoso(dir.path())
            .arg("init")
            .status()
            .expect("init")
            .success()
    );
    let clerk = String::from_utf8(
        hoso(dir.path())
            .args([
                "token", "issue", "--role", "clerk", "--sub", "load", "--office", "BENCH",
            ])
            .output()
            .expect("token")
            .stdout,
    )
    .expect("utf8")
    .trim()
    .to_owned();
    let child = hoso(dir.path())
        .arg("serve")
        .env("HOSO_LISTEN", addr.to_string())
        .spawn()
        .expect("serve");
    let server = Server { child };
    let pid = server.child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "hoso serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = rss_kib(pid, "VmRSS");
    println!(
        "hoso load: {clients} clients, {seconds} s, {} KiB scans, 1 intake in 4 requests, sqlite + file",
        size / 1024
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (tally, clerk) = (tally.clone(), clerk.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let base = scan(c + 1, size);
            let mut mine: Vec<String> = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let began = Instant::now();
                if mine.is_empty() || n.is_multiple_of(4) {
                    let mut file = base.clone();
                    file[16..24].copy_from_slice(&n.to_le_bytes());
                    let (head, body) = intake_request(&clerk, &file);
                    let (status, reply) = conn.call(&head, &body).await;
                    let took = began.elapsed();
                    let mut t = tally.lock().expect("tally");
                    match status {
                        200 | 201 => {
                            let doc: serde_json::Value = serde_json::from_slice(&reply).expect("json");
                            let id = doc["id"].as_str().expect("id").to_owned();
                            mine.push(id.clone());
                            t.acknowledged.push((id, file));
                            t.intake.push(took);
                        }
                        500..=599 => t.server_errors += 1,
                        _ => t.client_errors += 1,
                    }
                } else {
                    let id = &mine[(n as usize * 7) % mine.len()];
                    let head = format!("GET /v1/documents/{id}/content HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {clerk}\r\n\r\n");
                    let (status, _) = conn.call(&head, b"").await;
                    let took = began.elapsed();
                    let mut t = tally.lock().expect("tally");
                    match status {
                        200 => t.read.push(took),
                        500..=599 => t.server_errors += 1,
                        _ => t.client_errors += 1,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let peak = rss_kib(pid, "VmHWM");
    let mut t = std::mem::take(&mut *tally.lock().expect("tally"));
    t.intake.sort();
    t.read.sort();
    let total = t.intake.len() + t.read.len();
    println!(
        "requests/s {:.0} ({} intakes, {} copies in {elapsed:.1} s)",
        total as f64 / elapsed,
        t.intake.len(),
        t.read.len()
    );
    println!(
        "intake  p50 {:.1} ms  p99 {:.1} ms",
        percentile(&t.intake, 0.5),
        percentile(&t.intake, 0.99)
    );
    println!(
        "copies  p50 {:.1} ms  p99 {:.1} ms",
        percentile(&t.read, 0.5),
        percentile(&t.read, 0.99)
    );
    println!("errors: {} 5xx, {} 4xx", t.server_errors, t.client_errors);
    println!(
        "server RSS: idle {} MiB, peak {} MiB",
        idle / 1024,
        peak / 1024
    );

    // Nothing lost: every acknowledged document reads back byte-identical.
    let mut conn = Conn::open(addr).await;
    let mut lost = 0;
    for (id, file) in &t.acknowledged {
        let head = format!(
            "GET /v1/documents/{id}/content HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {clerk}\r\n\r\n"
        );
        let (status, body) = conn.call(&head, b"").await;
        if status != 200 || &body != file {
            lost += 1;
        }
    }
    drop(server);
    let audit = hoso(dir.path())
        .args(["audit", "verify"])
        .output()
        .expect("audit verify");
    println!("lost documents: {lost} of {}", t.acknowledged.len());
    print!("audit: {}", String::from_utf8_lossy(&audit.stdout));
    if t.server_errors > 0 || lost > 0 || !audit.status.success() {
        std::process::exit(1);
    }
}
