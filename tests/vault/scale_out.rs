//! Several `hoso serve` processes on one database and one object store behave as one vault:
//! grant uses are counted exactly across processes, the audit chain stays one valid chain, and a
//! key rotation done through one process is seen by all.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// The vault processes, killed when the test ends however it ends.
struct Fleet(Vec<(Child, SocketAddr)>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn start_fleet(vault: &TestVault, n: usize) -> Fleet {
    let s = &vault.state.settings;
    let mut fleet = Fleet(Vec::new());
    for _ in 0..n {
        let addr = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"))
            .arg("serve")
            .env("HOSO_DATABASE_URL", s.database_url.expose())
            .env("HOSO_STORAGE_URL", &s.storage_url)
            .env("HOSO_KEYS_DIR", &s.keys_dir)
            .env("HOSO_LISTEN", addr.to_string())
            .env("HOSO_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        fleet.0.push((child, addr));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (_, addr) in &fleet.0 {
        loop {
            if let Ok((200, _)) = call(*addr, "GET", "/readyz", None, None).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "hoso serve on {addr} did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    fleet
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), bounded in time.
async fn call(
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

fn dechunk(mut data: &[u8]) -> Vec<u8> {
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

async fn intake(
    addr: SocketAddr,
    token: &str,
    national_id: &str,
    doc_type: &str,
    scan: Vec<u8>,
) -> (u16, Value) {
    let meta = metadata(doc_type).to_string();
    let (content_type, body) = multipart(&[
        ("metadata", meta.as_bytes(), "application/json"),
        ("file", &scan, "application/pdf"),
    ]);
    let (status, reply) = call(
        addr,
        "POST",
        &format!("/v1/citizens/{national_id}/documents"),
        Some(token),
        Some((&content_type, body)),
    )
    .await
    .unwrap();
    (
        status,
        serde_json::from_slice(&reply).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_one_database_and_store_behave_as_one_vault() {
    let vault = TestVault::new().await;
    let fleet = start_fleet(&vault, 3).await;
    let addrs: Vec<SocketAddr> = fleet.0.iter().map(|(_, a)| *a).collect();
    let clerk = vault.clerk();

    // Intake spread over the three processes at once.
    let mut tasks = Vec::new();
    for i in 0..24u64 {
        let (addr, clerk) = (addrs[i as usize % 3], clerk.clone());
        let citizen = if i % 2 == 0 { CITIZEN_A } else { CITIZEN_B };
        let doc_type = [
            "cccd",
            "passport",
            "diploma",
            "birth_certificate",
            "other",
            "driving_licence",
        ][(i / 2) as usize % 6];
        let scan = pdf(500 + i, 20_000 + (i as usize) * 7_000);
        tasks.push(tokio::spawn(async move {
            let (status, doc) = intake(addr, &clerk, citizen, doc_type, scan.clone()).await;
            (status, doc, scan)
        }));
    }
    let mut docs = Vec::new();
    for t in tasks {
        let (status, doc, scan) = t.await.unwrap();
        assert!(status == 201 || status == 200, "intake: {status} {doc}");
        docs.push((doc["id"].as_str().unwrap().to_owned(), scan));
    }
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 24);

    // One grant, read concurrently through all three: exactly max_uses succeed.
    let a_cccd = docs[0].0.clone();
    let (grant_id, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 7).await;
    let mut reads = Vec::new();
    for i in 0..24 {
        let (addr, officer, path) = (
            addrs[i % 3],
            officer.clone(),
            format!("/v1/documents/{a_cccd}/content"),
        );
        reads.push(tokio::spawn(async move {
            call(addr, "GET", &path, Some(&officer), None)
                .await
                .unwrap()
        }));
    }
    let mut ok = 0;
    let mut exhausted = 0;
    for r in reads {
        let (status, body) = r.await.unwrap();
        match status {
            200 => {
                assert_eq!(body, docs[0].1, "a served copy is byte-identical");
                ok += 1;
            }
            403 => {
                assert!(String::from_utf8_lossy(&body).contains("grant_exhausted"));
                exhausted += 1;
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    assert_eq!((ok, exhausted), (7, 17));
    assert_eq!(
        vault
            .count(&format!("SELECT uses FROM grants WHERE id = '{grant_id}'"))
            .await,
        7
    );

    // Every document reads back intact, through any process.
    for (i, (id, scan)) in docs.iter().enumerate() {
        let (status, body) = call(
            addrs[(i + 1) % 3],
            "GET",
            &format!("/v1/documents/{id}/content"),
            Some(&clerk),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(&body, scan, "document {id}");
    }

    // Rotation through the CLI is seen by every running process: a document wrapped under the
    // new version by one process reads through the others before they have taken anything in,
    // and each process's next intake uses the new version.
    let out = hoso_cli(&vault, &["keys", "rotate"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan = pdf(900, 5_000);
    let (status, doc) = intake(
        addrs[0],
        &clerk,
        CITIZEN_B,
        "land_use_certificate",
        scan.clone(),
    )
    .await;
    assert_eq!(status, 201, "{doc}");
    let new_id = doc["id"].as_str().unwrap().to_owned();
    assert_eq!(
        vault
            .count(&format!(
                "SELECT kek_version FROM documents WHERE id = '{new_id}'"
            ))
            .await,
        2
    );
    for addr in &addrs[1..] {
        let (status, body) = call(
            *addr,
            "GET",
            &format!("/v1/documents/{new_id}/content"),
            Some(&clerk),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(body, scan);
    }
    for (i, addr) in addrs.iter().enumerate().skip(1) {
        let (status, doc) = intake(
            *addr,
            &clerk,
            CITIZEN_B,
            "marriage_certificate",
            pdf(900 + i as u64, 5_000),
        )
        .await;
        assert_eq!(status, 201, "{doc}");
        let id = doc["id"].as_str().unwrap();
        assert_eq!(
            vault
                .count(&format!(
                    "SELECT kek_version FROM documents WHERE id = '{id}'"
                ))
                .await,
            2,
            "process {i}"
        );
    }

    // One chain, no fork, no gap, across all processes.
    let out = hoso_cli(&vault, &["audit", "verify"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let entries = vault.count("SELECT COUNT(*) FROM audit_entries").await;
    assert!(entries >= 24 + 1 + 24 + 24 + 3, "{entries} entries");
    let (status, report) = call(
        addrs[2],
        "GET",
        "/v1/audit/verify",
        Some(&vault.auditor()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["ok"], json!(true), "{report}");
    drop(fleet);
}
