//! The citizen's rights in the console, as people use them, on a real `hoso serve` in a real
//! headless Chromium: a citizen files an erasure request, downloads a receipt and their export;
//! a clerk finds it in the queue and carries it out, told what was kept and why, and is told
//! why a share for a citizen who restricted processing is refused; an auditor places and lifts
//! a legal hold. Each new screen passes axe at desktop and phone widths.

use serde_json::Value;

use crate::browser::Browser;
use crate::common::*;
use crate::console::{link, set, sign_in};
use crate::processes::start_fleet;

#[test]
fn a_citizen_a_clerk_and_an_auditor_use_the_rights_screens() {
    crate::browser::run_story(story);
}

async fn story() {
    let vault = TestVault::new().await;
    let fleet = start_fleet(&vault, 1).await;
    let addr = fleet.0[0].1;
    let cccd = vault.take_in(CITIZEN_A, "cccd", &pdf(200, 20_000)).await;
    let land = vault
        .take_in(CITIZEN_A, "land_use_certificate", &pdf(201, 20_000))
        .await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "CB-07", 3).await;
    let copy = vault
        .get(&format!("/v1/documents/{cccd}/content"), &officer)
        .await;
    assert_eq!(copy.status, axum::http::StatusCode::OK);
    let browser = Browser::open().await;

    // ---- The citizen: files an erasure request, takes a receipt and their export.
    let citizen = link(&vault, addr, &["--role", "citizen", "--sub", CITIZEN_A]).await;
    sign_in(&browser, &citizen).await;
    browser.wait("#file-request", None).await;
    set(&browser, "#request-kind", "erase").await;
    browser.click("#send-request").await;
    let filed = browser.wait("#request-filed", None).await.text().await;
    assert!(filed.contains("Hạn trả lời"), "{filed}");
    browser.wait("#requests tbody tr", None).await;
    browser.screenshot("rights-citizen").await;
    browser.check_accessible("rights-citizen").await;
    browser.click("#reads .receipt").await;
    let (_, proof) = browser.downloaded(".proof").await;
    assert!(
        String::from_utf8(proof)
            .unwrap()
            .starts_with("c2sp.org/tlog-proof@v1\n")
    );
    browser.click("#export").await;
    let (_, zip) = browser.downloaded(".zip").await;
    let jwks: Value = vault.get("/.well-known/jwks.json", "").await.json();
    let checked = hoso::records::export::verify(&zip, &jwks).unwrap();
    assert!(
        checked
            .manifest
            .files
            .iter()
            .any(|f| f.name == "access-log.json")
    );

    // ---- The clerk: the request waits in the queue; carrying it out says what was kept.
    let clerk = link(
        &vault,
        addr,
        &[
            "--role",
            "clerk",
            "--sub",
            "CB-0042",
            "--office",
            "UBND-HAICHAU",
        ],
    )
    .await;
    sign_in(&browser, &clerk).await;
    browser.wait("#request-queue tbody tr", None).await;
    browser.check_accessible("rights-queue").await;
    browser.click("#request-queue .move").await;
    set(&browser, "#request-queue .next-state", "done").await;
    browser
        .click("#request-queue .move-form button[type=submit]")
        .await;
    let said = browser
        .wait("#request-queue .notice-success", None)
        .await
        .text()
        .await;
    assert!(said.contains("Đã xoá 1 giấy tờ"), "{said}");
    assert!(
        said.contains(&cccd) && said.contains("retention rule for cccd"),
        "{said}"
    );
    browser.screenshot("rights-clerk-done").await;
    let status = vault
        .get(&format!("/v1/documents/{land}"), &vault.clerk())
        .await
        .json();
    assert_eq!(status["status"], "erased");

    // ---- A restriction in force: sharing the citizen's papers is refused, and the clerk's
    // console says why in plain words, naming the restriction.
    let asked = vault
        .post(
            &format!("/v1/citizens/{CITIZEN_A}/requests"),
            &vault.citizen(CITIZEN_A),
            serde_json::json!({"kind": "restrict"}),
        )
        .await;
    assert_eq!(asked.status, axum::http::StatusCode::CREATED);
    let restriction = asked.json()["id"].as_str().unwrap().to_owned();
    let done = vault
        .post(
            &format!("/v1/requests/{restriction}"),
            &vault.clerk(),
            serde_json::json!({"state": "done"}),
        )
        .await;
    assert_eq!(done.status, axum::http::StatusCode::OK);
    browser.fill("input[name=nid]", CITIZEN_A).await;
    browser.click("#lookup").await;
    browser.click("#start-share").await;
    browser
        .fill("#share-dossier", "000.00.31.H40-261124-0042")
        .await;
    browser.fill("#share-purpose", "Đăng ký thường trú").await;
    browser.fill("#share-grantee", "CB-XL-07").await;
    browser.fill("#share-office", "STP-DANANG").await;
    browser.fill("#share-uses", "2").await;
    browser.click("#share-next").await;
    browser.wait("#share-summary", None).await;
    browser.click("#share-go").await;
    let refused = browser
        .wait(".notice-error", Some("hạn chế xử lý"))
        .await
        .text()
        .await;
    assert!(
        refused.contains(&restriction),
        "the notice names the restriction: {refused}"
    );
    browser.screenshot("rights-share-restricted").await;
    browser.check_accessible("rights-share-restricted").await;

    // ---- The auditor: a hold with no reason is refused at the field; one placed, then lifted.
    let auditor = link(
        &vault,
        addr,
        &["--role", "auditor", "--sub", "KT-01", "--office", "TTCP"],
    )
    .await;
    sign_in(&browser, &auditor).await;
    browser.wait("#place-hold", None).await;
    browser.fill("#hold-nid", CITIZEN_A).await;
    browser.click("#place-hold-go").await;
    browser.wait(".error-summary", None).await;
    browser.check_accessible("holds-errors").await;
    browser
        .fill("#hold-reason", "Thanh tra theo quyết định số 12")
        .await;
    browser.fill("#hold-case", "TTCP-2026-12").await;
    browser.click("#place-hold-go").await;
    let row = browser.wait("#holds tbody tr", None).await.text().await;
    assert!(row.contains("TTCP-2026-12"), "{row}");
    browser.screenshot("rights-holds").await;
    browser.check_accessible("rights-holds").await;
    browser.click("#holds .lift-hold").await;
    browser.wait("#holds-box .empty", None).await;
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM audit_entries WHERE action IN ('hold.place', 'hold.lift') AND outcome = 'allowed'")
            .await,
        2
    );
}
