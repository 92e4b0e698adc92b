//! Survival of real `hoso serve` processes: SIGKILL at random moments during intake, and a
//! 200 MiB document going in and out in bounded memory.

use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::processes::{intake, start_fleet, start_fleet_with, try_intake};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_document_survives_sigkill_at_random_moments() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let kills = 12;
    for round in 0..kills {
        let mut fleet = start_fleet(&vault, 1).await;
        let addr = fleet.0[0].1;
        let mut clients = Vec::new();
        // Acknowledged this round: the kill comes at a random moment after the first, so every
        // round puts a promise to the test however slow the machine is that minute.
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for c in 0..4u64 {
            let clerk = clerk.clone();
            let acked = acked.clone();
            clients.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for n in 0.. {
                    let scan = pdf(
                        round * 1_000_000 + c * 10_000 + n,
                        30_000 + (n as usize % 7) * 40_000,
                    );
                    let doc_type = ["cccd", "passport", "diploma", "other"][c as usize];
                    let reply = try_intake(addr, &clerk, CITIZEN_A, doc_type, scan.clone()).await;
                    match reply {
                        Ok((201 | 200, doc)) => {
                            done.push((doc["id"].as_str().unwrap().to_owned(), scan));
                            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        // Killed mid-request: not acknowledged, so nothing is promised.
                        _ => break,
                    }
                }
                done
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while acked.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no intake acknowledged in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(50 + seed % 400)).await;
        let (child, _) = &mut fleet.0[0];
        child.kill().unwrap(); // SIGKILL: no clean-up of any kind
        child.wait().unwrap();
        for client in clients {
            acknowledged.extend(client.await.unwrap());
        }
    }
    assert!(
        acknowledged.len() >= kills as usize,
        "the clients got {} documents in",
        acknowledged.len()
    );

    // A killed process's last COMMIT may still be on its way through PostgreSQL; a sweep with no
    // grace period must not race it (in service the grace period is an hour). Wait until no
    // other session of this database is inside a statement or a transaction.
    if backend() == Backend::PostgresS3 {
        let busy = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                    AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while vault.count(busy).await > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // After the last kill: sweep what the crashes left, then prove everything.
    hoso::records::maintenance::sweep_abandoned(&vault.state.vault, 0, true)
        .await
        .unwrap();
    for (id, scan) in &acknowledged {
        let copy = vault
            .get(&format!("/v1/documents/{id}/content"), &clerk)
            .await;
        copy.expect(StatusCode::OK);
        assert!(
            copy.body.as_ref() == scan.as_slice(),
            "document {id} reads back byte-identical"
        );
    }
    let report = hoso::records::maintenance::doctor(&vault.state.vault, |_, _| {})
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.audit_ok, "{:?}", report.audit_problem);
    let rows = vault.count("SELECT COUNT(*) FROM documents").await;
    assert_eq!(rows as u64, report.documents);
    assert!(rows as usize >= acknowledged.len());
    // Retrying acknowledged intakes stores nothing new.
    for (id, scan) in acknowledged.iter().take(5) {
        let doc_type = vault
            .get(&format!("/v1/documents/{id}"), &clerk)
            .await
            .json()["doc_type"]
            .as_str()
            .unwrap()
            .to_owned();
        let again = vault
            .intake(&clerk, CITIZEN_A, &metadata(&doc_type), scan)
            .await;
        again.expect(StatusCode::OK);
        assert_eq!(again.json()["id"], id.as_str());
    }
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, rows);
    println!(
        "{kills} kills survived; {} acknowledged documents, {rows} rows checked",
        acknowledged.len()
    );
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field).map(|v| {
                v.trim_start_matches(':')
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse()
                    .unwrap()
            })
        })
        .unwrap()
}

/// Streams a multipart intake of `len` bytes generated on the fly; returns status and body.
async fn stream_intake(
    addr: std::net::SocketAddr,
    token: &str,
    len: usize,
) -> (u16, Vec<u8>, String) {
    let meta = metadata("land_use_certificate").to_string();
    let prefix = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n\r\n"
    );
    let suffix = format!("\r\n--{BOUNDARY}--\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/citizens/{CITIZEN_A}/documents HTTP/1.1\r\nHost: hoso\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        prefix.len() + len + suffix.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(prefix.as_bytes()).await.unwrap();
    let mut sha = hoso::crypto::Sha256::default();
    let mut sent = 0;
    let mut n = 0u64;
    while sent < len {
        let mut chunk = pdf(n, (len - sent).min(1024 * 1024));
        if sent > 0 {
            chunk[..9].copy_from_slice(b"continued");
        }
        sha.update(&chunk);
        stream.write_all(&chunk).await.unwrap();
        sent += chunk.len();
        n += 1;
    }
    stream.write_all(suffix.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&reply[9..12]).parse().unwrap();
    (
        status,
        reply[split + 4..].to_vec(),
        hex::encode(sha.finish()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_document_goes_in_and_out_without_the_server_growing_64_mib() {
    let vault = TestVault::new().await;
    let limit = (256 * 1024 * 1024).to_string();
    let fleet = start_fleet_with(&vault, 1, &[("HOSO_MAX_UPLOAD_BYTES", &limit)]).await;
    let (child, addr) = &fleet.0[0];
    let (pid, addr) = (child.id(), *addr);
    let clerk = vault.clerk();
    // Warm up every path once so pools and caches exist before "idle" is read.
    let (status, _) = intake(addr, &clerk, CITIZEN_A, "cccd", pdf(1, 100_000)).await;
    assert_eq!(status, 201);
    let idle = rss_kib(pid, "VmRSS");

    let size = 200 * 1024 * 1024;
    let (status, body, sha) = stream_intake(addr, &clerk, size).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["sha256"], sha.as_str());
    let after_intake = rss_kib(pid, "VmHWM");

    // Read it back through the server, hashing as it streams.
    let id = doc["id"].as_str().unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/documents/{id}/content HTTP/1.1\r\nHost: hoso\r\nConnection: close\r\nAuthorization: Bearer {clerk}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut copy_sha = hoso::crypto::Sha256::default();
    let mut received = 0;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        copy_sha.update(&buf[..n]);
        received += n;
    }
    assert_eq!(received, size);
    assert_eq!(hex::encode(copy_sha.finish()), sha);
    let peak = rss_kib(pid, "VmHWM");
    println!(
        "server RSS: idle {idle} KiB, peak after 200 MiB intake {after_intake} KiB, after serving it {peak} KiB"
    );
    assert!(
        peak.saturating_sub(idle) < 64 * 1024,
        "peak {peak} KiB vs idle {idle} KiB"
    );
}
