//! Consistency check and clean-up (`hoso doctor`, `hoso sweep`), and hostile clients.

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;
use hoso::config::FaultPoint;
use hoso::records::maintenance;

use crate::common::*;

#[tokio::test]
async fn doctor_names_every_missing_altered_or_mismatched_document_and_a_broken_chain() {
    let vault = TestVault::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            vault
                .take_in(
                    CITIZEN_A,
                    ["cccd", "passport", "diploma", "other", "birth_certificate"][i],
                    &pdf(300 + i as u64, 90_000),
                )
                .await,
        );
    }
    let out = hoso_cli(&vault, &["doctor"]).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("5 documents checked, 0 with problems"),
        "{text}"
    );

    let key = |id: &str| hoso::blob::BlobStore::key_for(uuid::Uuid::parse_str(id).unwrap());
    vault.state.vault.blobs.delete(&key(&ids[0])).await.unwrap();
    let mut body = vault.object(&ids[1]).await;
    body[70_000] ^= 1;
    vault.set_object(&ids[1], body).await;
    vault
        .sql(&format!(
            "UPDATE documents SET sha256 = '{}' WHERE id = '{}'",
            "0".repeat(64),
            ids[2]
        ))
        .await;
    vault
        .sql("UPDATE audit_entries SET reason = 'edited' WHERE seq = 2")
        .await;

    let out = hoso_cli(&vault, &["doctor"]).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for bad in &ids[..3] {
        assert!(
            text.contains(&format!("document {bad}:")),
            "{bad} not named: {text}"
        );
    }
    for good in &ids[3..] {
        assert!(
            !text.contains(good.as_str()),
            "{good} wrongly named: {text}"
        );
    }
    assert!(
        text.contains("5 documents checked, 3 with problems"),
        "{text}"
    );
    assert!(
        text.contains("NOT intact") && text.contains("first bad entry 2"),
        "{text}"
    );
}

#[tokio::test]
async fn sweep_reports_first_and_removes_only_what_no_document_will_use() {
    let vault = TestVault::with(|s| s.test_fault = Some(FaultPoint::AfterObject)).await;
    vault
        .intake(
            &vault.clerk(),
            CITIZEN_A,
            &metadata("cccd"),
            &pdf(310, 5000),
        )
        .await;
    let vault = vault.restart(|_| {}).await;
    let kept = vault.take_in(CITIZEN_A, "passport", &pdf(311, 5000)).await;
    let orphan = format!("bodies/ffff/{}", uuid::Uuid::now_v7());
    vault
        .put_raw_object(&orphan, b"left by a restore gone wrong".to_vec())
        .await;
    if backend() == Backend::SqliteLocal {
        let dir = vault.storage().join("bodies/eeee");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}#1", uuid::Uuid::now_v7())), b"cut off").unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // Within the grace period nothing is touched, not even reported.
    let young = maintenance::sweep(&vault.state.vault, 3_600_000, true)
        .await
        .unwrap();
    assert!(
        young.abandoned.objects.is_empty()
            && young.orphans.is_empty()
            && young.staging_files.is_empty()
    );

    let dry = maintenance::sweep(&vault.state.vault, 0, false)
        .await
        .unwrap();
    assert_eq!(dry.abandoned.objects.len(), 1);
    assert_eq!(dry.orphans, vec![orphan.clone()]);
    let staging = usize::from(backend() == Backend::SqliteLocal);
    assert_eq!(dry.staging_files.len(), staging);
    assert_eq!(
        vault.stored_keys().await.len(),
        3,
        "a dry run deletes nothing"
    );

    let done = maintenance::sweep(&vault.state.vault, 0, true)
        .await
        .unwrap();
    assert_eq!(
        done.abandoned.objects.len() + done.orphans.len() + done.staging_files.len(),
        2 + staging
    );
    let left = vault.stored_keys().await;
    assert_eq!(
        left,
        vec![hoso::blob::BlobStore::key_for(
            uuid::Uuid::parse_str(&kept).unwrap()
        )]
    );
    vault
        .get(&format!("/v1/documents/{kept}/content"), &vault.clerk())
        .await
        .expect(StatusCode::OK);
    let out = hoso_cli(&vault, &["sweep"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 objects would remove"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(hoso_cli(&vault, &["doctor"]).await.status.success());
}

#[tokio::test]
async fn an_upload_the_client_abandons_midway_leaves_nothing() {
    let vault = TestVault::new().await;
    let first = open_intake_body();
    // 12 MiB of the file, then the connection drops.
    let chunks = std::iter::once(Ok(first))
        .chain((0..192).map(|_| Ok(Bytes::from(vec![3u8; 65_536]))))
        .chain(std::iter::once(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))));
    let request = streaming_intake(
        &vault,
        Body::from_stream(futures_util::stream::iter(chunks)),
    );
    let reply = vault.send(request).await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert!(vault.stored_keys().await.is_empty(), "no object left");
    assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 0);
}

#[tokio::test]
async fn a_grant_revoked_while_reads_are_in_flight_refuses_every_later_read() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(320, 200_000)).await;
    let (grant_id, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 100).await;
    let path = format!("/v1/documents/{id}/content");
    let reads = futures_util::future::join_all((0..12).map(|_| vault.get(&path, &officer)));
    let (revoke_path, clerk) = (format!("/v1/grants/{grant_id}"), vault.clerk());
    let revoke = vault.delete(&revoke_path, &clerk);
    let (replies, revoked) = tokio::join!(reads, revoke);
    revoked.expect(StatusCode::NO_CONTENT);
    let served = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count() as i64;
    for r in &replies {
        assert!(
            r.status == StatusCode::OK || r.code() == "grant_revoked",
            "{}",
            r.status
        );
    }
    // Every copy served was counted and logged as allowed; nothing after the revocation.
    assert_eq!(vault.count("SELECT uses FROM grants").await, served);
    let logged = vault.count("SELECT COUNT(*) FROM audit_entries WHERE action = 'document.content' AND outcome = 'allowed'").await;
    assert_eq!(logged, served);
    vault
        .get(&path, &officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "grant_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_document_acknowledged_before_it() {
    let vault = TestVault::new().await;
    let backup_dir = vault.path().join("backup");
    if backend() == Backend::PostgresS3 {
        // At scale the database and bucket have their own backup tools; the command says so.
        let refused = hoso::records::backup::backup(&vault.state.vault, &backup_dir, |_| {})
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("pg_dump"), "{refused}");
        return;
    }
    let mut before = Vec::new();
    for i in 0..20u64 {
        let scan = pdf(400 + i, 40_000 + i as usize * 3_000);
        before.push((
            vault
                .take_in(
                    CITIZEN_A,
                    ["cccd", "passport", "diploma", "other"][i as usize % 4],
                    &scan,
                )
                .await,
            scan,
        ));
        vault
            .intake(
                &vault.clerk(),
                CITIZEN_B,
                &metadata("cccd"),
                &pdf(450 + i, 1000),
            )
            .await;
    }
    // Intakes keep arriving while the backup runs.
    let vault = std::sync::Arc::new(vault);
    let busy = {
        let vault = vault.clone();
        tokio::spawn(async move {
            let mut n = 0;
            for i in 0..40u64 {
                let reply = vault
                    .intake(
                        &vault.clerk(),
                        CITIZEN_B,
                        &metadata("passport"),
                        &pdf(600 + i, 30_000),
                    )
                    .await;
                n += usize::from(reply.status == StatusCode::CREATED);
            }
            n
        })
    };
    let copied = hoso::records::backup::backup(&vault.state.vault, &backup_dir, |_| {})
        .await
        .unwrap();
    assert!(busy.await.unwrap() > 0);
    assert!(copied >= 40, "copied {copied}");
    assert!(
        hoso::records::backup::backup(&vault.state.vault, &backup_dir, |_| {})
            .await
            .is_err(),
        "never into a non-empty directory"
    );

    // Restore elsewhere, with the same keys (kept apart, as they must be).
    let elsewhere = tempfile::tempdir().unwrap();
    let mut settings = vault.state.settings.clone();
    settings.database_url = std::str::FromStr::from_str(&format!(
        "sqlite://{}",
        elsewhere.path().join("hoso.db").display()
    ))
    .unwrap();
    settings.storage_url = format!("file://{}", elsewhere.path().join("storage").display())
        .parse()
        .unwrap();
    let restored =
        hoso::records::backup::restore(&backup_dir, &settings.database_url, &settings.storage_url)
            .await
            .unwrap();
    assert_eq!(restored, copied);
    assert!(
        hoso::records::backup::restore(&backup_dir, &settings.database_url, &settings.storage_url)
            .await
            .is_err(),
        "never over a vault"
    );

    let restored = TestVault::open(elsewhere, settings).await;
    for (id, scan) in &before {
        let copy = restored
            .get(&format!("/v1/documents/{id}/content"), &restored.clerk())
            .await;
        copy.expect(StatusCode::OK);
        assert!(copy.body.as_ref() == scan.as_slice(), "{id}");
    }
    let report = maintenance::doctor(&restored.state.vault, |_, _| {})
        .await
        .unwrap();
    assert!(
        report.healthy(),
        "{:?} {:?}",
        report.problems,
        report.audit_problem
    );
    assert_eq!(report.documents, copied);
}

#[tokio::test]
async fn an_upload_that_stalls_is_cut_off_and_leaves_nothing() {
    let vault = TestVault::with(|s| s.upload_stall_seconds = 1).await;
    let first = Bytes::from([open_intake_body().as_ref(), &[1u8; 100_000]].concat());
    // A slow-loris client: some bytes, then nothing, forever.
    let body = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, std::io::Error>(first)]),
        futures_util::stream::pending(),
    );
    let request = streaming_intake(&vault, Body::from_stream(body));
    let started = std::time::Instant::now();
    let reply = vault.send(request).await;
    reply.expect_error(StatusCode::REQUEST_TIMEOUT, "request_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(vault.stored_keys().await.is_empty());
    assert_eq!(
        vault.count("SELECT COUNT(*) FROM intake_intents").await,
        0,
        "the intake was wound up, not left running"
    );
}
