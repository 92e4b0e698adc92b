//! A quick first look at throughput, not the benchmark proper: 1 MiB scans taken in and served as
//! verified copies per second over loopback HTTP, each printed beside a reference measured in the
//! same run on the same machine (a bare axum handler serving the same bytes from memory; fsync'd
//! 1 MiB file writes).
//!
//! `cargo bench --bench quick` (settings: HOSO_BENCH_SECONDS, HOSO_BENCH_CLIENTS, HOSO_BENCH_KIB).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;

use hoso::app::{App, AppState};

mod support;
use hoso::auth::{self, TokenRequest};
use hoso::config::Settings;
use hoso::domain::Role;
use support::{Conn, intake_request, scan};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `clients` connections against `addr` for `seconds`, each calling `make(seq)` for the
/// request. Returns requests per second of successful replies.
async fn drive<F>(addr: SocketAddr, clients: u64, seconds: u64, ok: u16, make: F) -> f64
where
    F: Fn(u64) -> (String, Vec<u8>) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let seq = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (make, seq, done) = (make.clone(), seq.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            while Instant::now() < deadline {
                let (head, body) = make(seq.fetch_add(1, Ordering::Relaxed));
                let (status, reply) = conn.call(&head, &body).await;
                assert_eq!(
                    status,
                    ok,
                    "{}",
                    String::from_utf8_lossy(&reply[..reply.len().min(300)])
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

fn fsync_writes_per_second(dir: &std::path::Path, size: usize, seconds: u64) -> f64 {
    let data = scan(7, size);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let path = dir.join(format!("ref-{n}"));
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(&data).expect("write");
        f.sync_all().expect("fsync");
        std::fs::File::open(dir)
            .expect("dir")
            .sync_all()
            .expect("dir fsync");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let seconds = env_u64("HOSO_BENCH_SECONDS", 10);
    let clients = env_u64("HOSO_BENCH_CLIENTS", 4);
    let size = env_u64("HOSO_BENCH_KIB", 1024) as usize * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    // Embedded default unless pointed elsewhere (a fresh, empty PostgreSQL database; an S3 URL).
    let mut settings = Settings::embedded_in(dir.path());
    if let Ok(url) = std::env::var("HOSO_BENCH_DATABASE_URL") {
        settings.database_url = url.parse().expect("HOSO_BENCH_DATABASE_URL");
    }
    if let Ok(url) = std::env::var("HOSO_BENCH_STORAGE_URL") {
        settings.storage_url = url.parse().expect("HOSO_BENCH_STORAGE_URL");
    }
    settings.max_upload_bytes = 64 * 1024 * 1024;
    let storage_url = settings.storage_url.to_string();
    let database_url = settings.database_url.expose().to_owned();
    let state = AppState(Arc::new(
        App::open(settings, true).await.expect("open vault"),
    ));
    let token = |role| {
        let req = TokenRequest {
            role,
            sub: "bench",
            office: Some("BENCH"),
            ttl_seconds: 3600,
            grant: None,
            via: None,
        };
        auth::issue(&state.vault.keys(), &state.vault.token_policy, req)
            .expect("token")
            .0
    };
    let clerk = token(Role::Clerk);
    let addr = serve(hoso::http::app(state.clone())).await;
    println!(
        "hoso quick bench: {} KiB scans, {clients} clients, {seconds} s per phase, loopback HTTP/1.1, {} + {}",
        size / 1024,
        database_url.split(':').next().unwrap_or_default(),
        storage_url.split(':').next().unwrap_or_default()
    );

    // Intake: every request a different scan (the vault stores a repeated scan only once).
    let base = scan(1, size);
    let clerk_in = clerk.clone();
    let intake_rate = drive(addr, clients, seconds, 201, move |n| {
        let mut file = base.clone();
        file[16..24].copy_from_slice(&n.to_le_bytes());
        intake_request(&clerk_in, &file)
    })
    .await;

    // Verified copies: read back what was taken in, round robin.
    let mut conn = Conn::open(addr).await;
    let list = format!(
        "GET /v1/citizens/001099012345/documents HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {clerk}\r\n\r\n"
    );
    let (_, listed) = conn.call(&list, b"").await;
    let listed: serde_json::Value = serde_json::from_slice(&listed).expect("json");
    let ids: Vec<String> = listed["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect();
    let ids = Arc::new(ids);
    let clerk_read = clerk.clone();
    let read_rate = drive(addr, clients, seconds, 200, move |n| {
        let id = &ids[n as usize % ids.len()];
        (format!("GET /v1/documents/{id}/content HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {clerk_read}\r\n\r\n"), Vec::new())
    })
    .await;

    // References, same machine, same run, same client.
    let blob = Bytes::from(scan(2, size));
    let bare = Router::new().route(
        "/blob",
        get(move || {
            let b = blob.clone();
            async move { b }
        }),
    );
    let bare_addr = serve(bare).await;
    let bare_rate = drive(bare_addr, clients, seconds, 200, |_| {
        (
            "GET /blob HTTP/1.1\r\nHost: bench\r\n\r\n".into(),
            Vec::new(),
        )
    })
    .await;
    let ref_dir = dir.path().join("fsync-ref");
    std::fs::create_dir_all(&ref_dir).expect("ref dir");
    let fsync_rate =
        tokio::task::spawn_blocking(move || fsync_writes_per_second(&ref_dir, size, seconds))
            .await
            .expect("fsync ref");

    let audit = hoso::records::oversight::verify_all(&state.vault, None)
        .await
        .expect("verify");
    println!("{:<46} {:>10}", "measure", "per second");
    println!(
        "{:<46} {:>10.0}",
        "hoso intake (sniff, hash, seal, fsync, commit)", intake_rate
    );
    println!(
        "{:<46} {:>10.0}",
        "reference: fsync'd file writes, 1 writer", fsync_rate
    );
    println!(
        "{:<46} {:>10.2}",
        "  ratio intake / fsync'd writes",
        intake_rate / fsync_rate
    );
    println!(
        "{:<46} {:>10.0}",
        "hoso verified copies (auth, audit, decrypt)", read_rate
    );
    println!(
        "{:<46} {:>10.0}",
        "reference: bare axum serving from memory", bare_rate
    );
    println!(
        "{:<46} {:>10.2}",
        "  ratio copies / bare axum",
        read_rate / bare_rate
    );
    println!(
        "audit log after the run: ok={} entries={}",
        audit.ok, audit.entries
    );
}
