//! Several `hoso serve` processes on one database and one object store behave as one vault:
//! grant uses are counted exactly across processes, the audit chain stays one valid chain, and a
//! key rotation done through one process is seen by all.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::common::*;
use crate::processes::{call, intake, start_fleet};

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
