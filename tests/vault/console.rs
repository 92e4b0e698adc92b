//! The console, as the people it is for use it: a real headless Chromium (WebDriver) driving a
//! real `hoso serve`. One story from the desk to the citizen, then the edges (hostile text,
//! sign-out, expiry, a phone-sized screen). Screenshots of the key screens go to
//! `target/console/`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{Browser, shots_dir};
use crate::common::*;
use crate::processes::*;

const CITIZEN: &str = "001203004567";
const DOSSIER: &str = "000.00.31.H40-261124-0042";
const XSS: &str = "<img src=x onerror=alert(1)>";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A real, viewable PNG (grey stripes on white, `seed` varies them), written with stored
/// (uncompressed) deflate blocks so the test needs no image library.
fn real_png(seed: u8, width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            let stripe = ((x / 12 + y / 40 + u32::from(seed)) % 5 == 0) || y % 50 < 3;
            raw.push(if stripe { 40 } else { 245 });
        }
    }
    let mut zlib = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65_535).enumerate() {
        let last = (i + 1) * 65_535 >= raw.len();
        zlib.push(u8::from(last));
        zlib.extend_from_slice(&(block.len() as u16).to_le_bytes());
        zlib.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A sign-in link from the CLI, as an administrator hands one out.
pub async fn link(vault: &TestVault, addr: std::net::SocketAddr, args: &[&str]) -> String {
    let public = format!("http://{addr}");
    let mut all = vec!["token", "issue", "--link", "--public-url", public.as_str()];
    all.extend_from_slice(args);
    let out = hoso_cli(vault, &all).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        link.starts_with(&format!("{public}/#token=")),
        "a sign-in link carries the token in its fragment: {link}"
    );
    link
}

/// Sets a form control's value (dates, selects) the way a picker would, with its events.
pub async fn set(browser: &Browser, css: &str, value: &str) {
    browser.wait(css, None).await;
    browser
        .js(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true})); \
             e.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([css, value]),
        )
        .await;
}

/// A document's details as a clerk types them into the intake form.
struct Paper<'a> {
    doc_type: &'a str,
    number: &'a str,
    holder: &'a str,
    issued_on: &'a str,
    issued_by: &'a str,
}

const CCCD: Paper = Paper {
    doc_type: "cccd",
    number: "001203004567",
    holder: "Nguyễn Thị Hồng Nhung",
    issued_on: "2021-03-15",
    issued_by: "Cục Cảnh sát QLHC về TTXH",
};

/// Opens the intake form, fills it in and chooses `file`; waits for the preview.
async fn fill_intake(browser: &Browser, paper: &Paper<'_>, file: &std::path::Path) {
    browser.click("#start-intake").await;
    set(browser, "#intake-type", paper.doc_type).await;
    browser.fill("#intake-number", paper.number).await;
    browser.fill("#intake-holder", paper.holder).await;
    set(browser, "#intake-issued-on", paper.issued_on).await;
    browser.fill("#intake-issued-by", paper.issued_by).await;
    browser
        .wait("#intake-file", None)
        .await
        .type_text(file.to_str().unwrap())
        .await;
    browser.wait("#intake-preview img", None).await;
}

async fn token_in_session(browser: &Browser) -> Value {
    browser
        .js("return sessionStorage.getItem('hoso.token');", json!([]))
        .await
}

/// Signs out whoever is signed in, then opens `link`.
pub async fn sign_in(browser: &Browser, link: &str) {
    browser.goto("about:blank").await;
    browser.goto(link).await;
    browser.wait("#who", None).await;
}

#[test]
fn clerk_officer_auditor_and_citizen_use_the_console_end_to_end() {
    crate::browser::run_story(story);
}

async fn story() {
    let vault = TestVault::new().await;
    let fleet = start_fleet(&vault, 1).await;
    let addr = fleet.0[0].1;
    let dir = tempfile::tempdir().unwrap();
    let scan = real_png(1, 640, 400);
    let scan_path = dir.path().join("cccd-scan.png");
    std::fs::write(&scan_path, &scan).unwrap();
    let second = real_png(2, 480, 300);
    let second_path = dir.path().join("giay-khai-sinh.png");
    std::fs::write(&second_path, &second).unwrap();

    let browser = Browser::open().await;

    // Every word in both languages, and plain words for every error code the contract names.
    let contract =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    let codes: std::collections::BTreeSet<String> = contract
        .split("Refused: ")
        .skip(1)
        .flat_map(|rest| {
            rest.split('.')
                .next()
                .unwrap()
                .split(", ")
                .map(|c| c.trim_matches('`').to_owned())
        })
        .collect();
    assert!(
        codes.contains("grant_exhausted") && codes.len() >= 15,
        "{codes:?}"
    );
    let keys: Vec<String> = codes.iter().map(|c| format!("api.{c}")).collect();

    // ---- Clerk: sign in, look the citizen up, take in a scan with preview and progress.
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
    assert!(
        !browser.url().await.contains("token"),
        "the token leaves the address bar at once"
    );
    assert!(token_in_session(&browser).await.is_string());
    browser.wait("main h1", None).await;
    browser.check_accessible("clerk-lookup").await;
    let missing = browser
        .js(
            "return import('/console/i18n.js').then(m => [m.missingWords(), m.missingWords(arguments[0])]);",
            json!([keys]),
        )
        .await;
    assert_eq!(
        missing,
        json!([[], []]),
        "words missing in one language, or for an error code"
    );
    let who = browser.text("#who").await;
    assert!(
        who.contains("Cán bộ một cửa") && who.contains("CB-0042") && who.contains("UBND-HAICHAU"),
        "{who}"
    );

    // Checked while typed: a letter is refused before anything is sent.
    browser.fill("input[name=nid]", "00120300456a").await;
    browser.wait(".field-error", Some("chỉ gồm chữ số")).await;
    browser.fill("input[name=nid]", CITIZEN).await;
    browser.click("#lookup").await;
    browser.wait(".empty", Some("Chưa có giấy tờ")).await;

    fill_intake(&browser, &CCCD, &scan_path).await;
    let preview = browser.wait("#intake-preview img", None).await;
    let shown = browser
        .js(
            "const img = document.querySelector('#intake-preview img'); \
             return img.complete ? img.naturalWidth : 0;",
            json!([]),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut width = shown.as_u64().unwrap_or(0);
    while width == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        width = preview.property("naturalWidth").await.as_u64().unwrap_or(0);
    }
    assert_eq!(width, 640, "the chosen scan is previewed before it is sent");
    // Not ticked "checked against the original": the scan waits for that check.
    browser.screenshot("clerk-intake").await;
    browser.check_accessible("clerk-intake").await;
    // Record the progress bar's values as the upload runs.
    browser
        .js(
            "window.progressSeen = []; const bar = document.querySelector('#intake-progress'); \
             new MutationObserver(() => window.progressSeen.push(Number(bar.value))) \
               .observe(bar, {attributes: true});",
            json!([]),
        )
        .await;
    browser.click("#intake-send").await;
    browser
        .wait(".notice-success", Some("Đã lưu vào kho"))
        .await;
    let progress = browser.js("return window.progressSeen;", json!([])).await;
    assert_eq!(
        progress
            .as_array()
            .and_then(|p| p.last())
            .and_then(Value::as_f64),
        Some(100.0),
        "the progress bar reached 100%: {progress}"
    );
    browser.wait(".badge-pending", Some("Chờ đối chiếu")).await;

    // Verify it; the badge says so in words.
    browser.click("button.verify").await;
    browser.wait(".badge-verified", Some("Đã đối chiếu")).await;

    // The same scan again: the vault already has it.
    fill_intake(&browser, &CCCD, &scan_path).await;
    set(&browser, "#intake-supersedes", "").await;
    browser.click("#intake-send").await;
    browser
        .wait(".notice-info", Some("đã có trong kho, không lưu thêm"))
        .await;

    // A second document whose holder name is hostile markup: it must show as those characters.
    let birth = Paper {
        doc_type: "birth_certificate",
        number: "KS-2003-118",
        holder: XSS,
        issued_on: "2003-12-04",
        issued_by: "UBND phường Hải Châu I",
    };
    fill_intake(&browser, &birth, &second_path).await;
    browser.click("#intake-send").await;
    browser.wait("#documents", Some(XSS)).await;
    let injected = browser
        .js(
            "return document.querySelectorAll('#documents img').length;",
            json!([]),
        )
        .await;
    assert_eq!(injected, 0, "no element was made from the holder name");
    assert_eq!(browser.alert().await, None, "no script ran");
    browser.screenshot("clerk-documents").await;
    browser.check_accessible("clerk-documents").await;

    // Phone width: the same screen, one column.
    browser.resize(390, 844).await;
    browser.screenshot("clerk-phone").await;
    let overflow = browser
        .js(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            json!([]),
        )
        .await;
    assert_eq!(overflow, false, "nothing runs off a phone-width screen");
    browser.resize(1280, 800).await;

    // ---- Share for a dossier, check the answers, print the receipt.
    browser.click("#start-share").await;
    browser.fill("#share-dossier", "H40-0042").await;
    browser.click("#share-next").await;
    browser
        .wait(".error-summary", Some("XXX.XX.XX.XXX-YYMMDD-NNNN"))
        .await;
    browser.check_accessible("share-errors").await;
    browser.fill("#share-dossier", DOSSIER).await;
    browser.fill("#share-purpose", "Đăng ký thường trú").await;
    browser.fill("#share-grantee", "CB-XL-07").await;
    browser.fill("#share-office", "STP-DANANG").await;
    browser.fill("#share-uses", "2").await;
    browser.click("#share-type-birth_certificate").await; // untick: only the CCCD is shared
    browser.click("#share-next").await;
    let answers = browser.wait("#share-summary", None).await.text().await;
    browser.check_accessible("check-answers").await;
    assert!(
        answers.contains(DOSSIER) && answers.contains("Căn cước công dân"),
        "{answers}"
    );
    assert!(!answers.contains("Giấy khai sinh"), "{answers}");
    browser.click("#share-go").await;
    browser.wait("#receipt", None).await;
    browser.wait("#receipt-qr img", None).await;
    let receipt = browser.text("#receipt").await;
    assert!(
        receipt.contains(DOSSIER) && receipt.contains("STP-DANANG"),
        "{receipt}"
    );
    assert!(
        receipt.contains("001******567") && !receipt.contains(CITIZEN),
        "the receipt masks the CCCD: {receipt}"
    );
    let grant_id = vault.fetch_text("SELECT id FROM grants").await;
    assert!(receipt.contains(&grant_id), "{receipt}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shot = browser.screenshot("receipt").await;
    browser.check_accessible("receipt").await;
    let decoded = std::process::Command::new("zbarimg")
        .args(["--quiet", "--raw"])
        .arg(&shot)
        .output()
        .expect("zbarimg (Debian zbar-tools; scripts/test installs it)");
    assert_eq!(
        String::from_utf8_lossy(&decoded.stdout).trim(),
        format!("{DOSSIER}\n{grant_id}"),
        "the receipt's QR code carries the dossier code and grant id"
    );
    let pdf = browser.print_pdf().await;
    assert!(pdf.starts_with(b"%PDF"), "the receipt prints");
    std::fs::write(shots_dir().join("receipt.pdf"), &pdf).unwrap();
    browser
        .cdp("Emulation.setEmulatedMedia", json!({"media": "print"}))
        .await;
    let hidden = browser
        .js(
            "return ['#bar', '#receipt-print', '#officer-link', '#receipt-qr img'].map(s => \
               document.querySelector(s).checkVisibility());",
            json!([]),
        )
        .await;
    assert_eq!(
        hidden,
        json!([false, false, false, true]),
        "paper shows the receipt (and its QR code) only"
    );
    browser.screenshot("receipt-print").await;
    browser
        .cdp("Emulation.setEmulatedMedia", json!({"media": ""}))
        .await;
    let officer_link = browser
        .wait("#officer-link", None)
        .await
        .property("value")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(officer_link.starts_with(&format!("http://{addr}/#token=")));

    // ---- Officer: open the link, see the scope, view and download one copy (one use).
    sign_in(&browser, &officer_link).await;
    browser.wait("#uses-left", Some("Còn 2 lần")).await;
    assert_eq!(browser.text("#scope-dossier").await, DOSSIER);
    browser.click("button.open-copy").await;
    let copy = browser.wait("#copy", None).await;
    let digest = copy.property("dataset").await["sha256"].clone();
    assert_eq!(
        digest,
        json!(sha256_hex(&scan)),
        "the copy is the scan, byte for byte"
    );
    browser
        .wait("#signature.ok", Some("Chữ ký số của kho hợp lệ"))
        .await;
    browser
        .wait(
            "#copy",
            Some("đã được CB-0042 (UBND-HAICHAU) đối chiếu với bản chính"),
        )
        .await;
    browser.wait("#uses-left", Some("Còn 1 lần")).await;
    browser.wait("#copy img", None).await;
    browser.screenshot("officer-copy").await;
    browser.check_accessible("officer-copy").await;
    browser.click("#download").await;
    let (name, bytes) = browser.downloaded(".png").await;
    assert_eq!(
        bytes, scan,
        "the download is the scan, byte for byte ({name})"
    );
    assert!(name.starts_with("cccd-"), "{name}");
    assert_eq!(
        vault.count("SELECT uses FROM grants").await,
        1,
        "preview and download spent one use"
    );

    // The clerk revokes the grant while the officer's page is open: the next read is refused
    // in plain words.
    vault
        .delete(&format!("/v1/grants/{grant_id}"), &vault.clerk())
        .await
        .expect(axum::http::StatusCode::NO_CONTENT);
    browser.click("button.open-copy").await;
    browser
        .wait("#grant-state", Some("Quyền xem này đã bị thu hồi"))
        .await;
    browser.screenshot("officer-revoked").await;
    browser.check_accessible("officer-revoked").await;

    // ---- Auditor: the chain, the reads and the refusal, filters, CSV.
    let auditor = link(
        &vault,
        addr,
        &[
            "--role",
            "auditor",
            "--sub",
            "TT-01",
            "--office",
            "TTRA-DANANG",
        ],
    )
    .await;
    sign_in(&browser, &auditor).await;
    browser.wait("#chain-status", Some("Nguyên vẹn")).await;
    browser.wait("#entries", None).await;
    set(&browser, "#f-action", "document.content").await;
    browser.click("#f-apply").await;
    // The unfiltered table also has the refusal: wait for the filtered page itself.
    browser.wait("#count", Some("Đang hiện 2 mục")).await;
    let rows = browser
        .js(
            "return [...document.querySelectorAll('#entries tbody tr')].map(r => r.className);",
            json!([]),
        )
        .await;
    assert_eq!(
        rows,
        json!(["outcome-allowed", "outcome-denied"]),
        "the one copy read and the refused one"
    );
    browser.click("#check-chain").await;
    browser.wait("#chain-status", Some("Nguyên vẹn")).await;
    browser
        .click("#entries tbody tr.outcome-denied button")
        .await;
    browser.wait("#entry-detail", Some("grant_revoked")).await;
    browser.screenshot("auditor").await;
    browser.check_accessible("auditor").await;
    browser.click("#csv").await;
    let (_, csv) = browser.downloaded(".csv").await;
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "a header and the two filtered rows: {csv}");
    assert!(lines[0].starts_with(r#""seq","at","actor","role","office","action","outcome""#));
    assert!(
        lines[2].contains("denied") && lines[2].contains(DOSSIER),
        "{csv}"
    );

    // ---- Citizen: my documents, and who read them.
    let citizen = link(&vault, addr, &["--role", "citizen", "--sub", CITIZEN]).await;
    sign_in(&browser, &citizen).await;
    let reads = browser
        .wait("#reads", Some("STP-DANANG"))
        .await
        .text()
        .await;
    assert!(
        reads.contains(DOSSIER)
            && reads.contains("Đăng ký thường trú")
            && reads.contains("Lấy bản sao"),
        "{reads}"
    );
    assert!(browser.text("#who").await.contains("001******567"));
    browser.wait("#documents", Some(XSS)).await;
    browser.screenshot("citizen").await;
    browser.check_accessible("citizen").await;

    // ---- Sign out clears the session.
    browser.click("#signout").await;
    browser.wait("main", Some("Bạn đã đăng xuất")).await;
    browser.check_accessible("sign-in").await;
    assert_eq!(token_in_session(&browser).await, Value::Null);

    // ---- English, as a switch.
    browser.click("#lang").await;
    browser.wait("main h1", Some("Sign in")).await;
    browser.click("#lang").await;
    browser.wait("main h1", Some("Đăng nhập")).await;

    // ---- Expiry signs out by itself.
    let brief = link(
        &vault,
        addr,
        &[
            "--role",
            "clerk",
            "--sub",
            "CB-0042",
            "--office",
            "UBND-HAICHAU",
            "--ttl",
            "3s",
        ],
    )
    .await;
    sign_in(&browser, &brief).await;
    browser
        .wait("main", Some("Phiên đăng nhập đã hết hạn"))
        .await;
    assert_eq!(token_in_session(&browser).await, Value::Null);
    drop(fleet);
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_every_file_it_names() {
    let vault = TestVault::new().await;
    let page = vault.get("/", "").await;
    assert_eq!(page.status, axum::http::StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    // Every module the console imports is served.
    for file in [
        "app.js",
        "api.js",
        "dom.js",
        "i18n.js",
        "rules.js",
        "csv.js",
        "clerk.js",
        "officer.js",
        "auditor.js",
        "citizen.js",
        "rights.js",
        "style.css",
    ] {
        let reply = vault.get(&format!("/console/{file}"), "").await;
        assert_eq!(reply.status, axum::http::StatusCode::OK, "{file}");
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        assert!(
            !text.contains("innerHTML")
                && !text.contains("outerHTML")
                && !text.contains("insertAdjacentHTML"),
            "{file} builds no HTML from strings"
        );
        assert!(
            !text.contains("http://") || file == "i18n.js",
            "{file} loads nothing from elsewhere"
        );
    }
    vault
        .get("/console/nope.js", "")
        .await
        .expect_error(axum::http::StatusCode::NOT_FOUND, "not_found");
    // API answers are never stored by a browser and run nothing if opened as a page.
    let api = vault.get("/v1/me", &vault.clerk()).await;
    assert_eq!(api.headers["cache-control"], "no-store");
    assert!(
        api.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
}

// ---- The API the console needs, through the router.

use axum::http::StatusCode;

#[tokio::test]
async fn me_says_who_the_token_is_for_and_until_when() {
    let vault = TestVault::new().await;
    let me = vault.get("/v1/me", &vault.clerk()).await;
    me.expect(StatusCode::OK);
    let me = me.json();
    assert_eq!(me["role"], "clerk");
    assert_eq!(me["office"], "UBND-HAICHAU");
    assert_eq!(me["grant_id"], Value::Null);
    assert!(me["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(me["max_upload_bytes"].as_u64().unwrap() > 0);
    let citizen = vault.get("/v1/me", &vault.citizen(CITIZEN)).await.json();
    assert_eq!(citizen["sub"], CITIZEN, "told only to the citizen themself");
    vault
        .get("/v1/me", "not-a-token")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Nothing is read about anyone, so nothing is logged.
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM audit_entries WHERE action LIKE 'me%'")
            .await,
        0
    );
}

#[tokio::test]
async fn an_officer_sees_their_grants_scope_in_every_state_and_its_documents_while_it_lives() {
    let vault = TestVault::new().await;
    let doc = vault.take_in(CITIZEN, "cccd", &pdf(7, 2_000)).await;
    vault.take_in(CITIZEN, "passport", &pdf(8, 2_000)).await;
    let (grant, officer) = vault.grant(CITIZEN, &["cccd"], "CB-XL-07", 1).await;

    let scope = vault.get(&format!("/v1/grants/{grant}"), &officer).await;
    scope.expect(StatusCode::OK);
    let scope = scope.json();
    assert_eq!(scope["status"], "active");
    assert_eq!(scope["uses_left"], 1);
    assert_eq!(scope["doc_types"], json!(["cccd"]));
    assert!(
        scope.get("national_id").is_none() && scope.get("citizen_idx").is_none(),
        "nothing personal: {scope}"
    );

    let docs = vault
        .get(&format!("/v1/grants/{grant}/documents"), &officer)
        .await;
    docs.expect(StatusCode::OK);
    let docs = docs.json()["documents"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 1, "the granted type only: {docs:?}");
    assert_eq!(docs[0]["id"], doc.as_str());
    let logged = vault
        .count(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.list' \
             AND case_ref = '000.00.31.H40-261124-0001' AND citizen_idx IS NOT NULL",
        )
        .await;
    assert_eq!(
        logged, 1,
        "the listing is logged with its dossier and citizen"
    );

    // Another grant's scope, or a clerk's token on the documents route: refused, logged.
    let (other, _) = vault.grant(CITIZEN, &["passport"], "CB-XL-08", 1).await;
    vault
        .get(&format!("/v1/grants/{other}"), &officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "scope_denied");
    vault
        .get(&format!("/v1/grants/{other}/documents"), &officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "scope_denied");
    vault
        .get(&format!("/v1/grants/{grant}/documents"), &vault.clerk())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Used up: the scope still says why; the documents are no longer listed.
    vault
        .get(&format!("/v1/documents/{doc}/content"), &officer)
        .await
        .expect(StatusCode::OK);
    let scope = vault
        .get(&format!("/v1/grants/{grant}"), &officer)
        .await
        .json();
    assert_eq!(
        (scope["status"].clone(), scope["uses_left"].clone()),
        (json!("used_up"), json!(0))
    );
    vault
        .get(&format!("/v1/grants/{grant}/documents"), &officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "grant_exhausted");

    // Revoked outranks used up.
    vault
        .delete(&format!("/v1/grants/{grant}"), &vault.clerk())
        .await
        .expect(StatusCode::NO_CONTENT);
    let scope = vault
        .get(&format!("/v1/grants/{grant}"), &officer)
        .await
        .json();
    assert_eq!(scope["status"], "revoked");
}

#[tokio::test]
async fn a_citizens_grants_are_listed_for_the_desk_and_the_citizen_only() {
    let vault = TestVault::new().await;
    vault.take_in(CITIZEN, "cccd", &pdf(9, 2_000)).await;
    let (first, _) = vault.grant(CITIZEN, &["cccd"], "CB-XL-07", 2).await;
    let (second, _) = vault.grant(CITIZEN, &["cccd"], "CB-XL-09", 1).await;
    let path = format!("/v1/citizens/{CITIZEN}/grants");
    let list = vault.get(&path, &vault.clerk()).await;
    list.expect(StatusCode::OK);
    let ids: Vec<Value> = list.json()["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(second), json!(first)], "newest first");
    vault
        .get(&path, &vault.citizen(CITIZEN))
        .await
        .expect(StatusCode::OK);
    vault
        .get(&path, &vault.citizen("001099000001"))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(&path, &vault.auditor())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        vault.count("SELECT COUNT(*) FROM audit_entries WHERE action = 'grant.list' AND outcome = 'allowed'").await,
        2,
        "each listing is logged"
    );
}

#[tokio::test]
async fn the_receipt_qr_is_an_svg_for_the_desk_and_a_grant_links_to_the_console() {
    let vault = TestVault::new().await;
    vault.take_in(CITIZEN, "cccd", &pdf(10, 2_000)).await;
    let reply = vault
        .post(
            "/v1/grants",
            &vault.clerk(),
            json!({
                "national_id": CITIZEN, "doc_types": ["cccd"], "case_ref": DOSSIER,
                "purpose": "Đăng ký thường trú", "grantee": "CB-XL-07",
                "grantee_office": "STP-DANANG", "ttl_seconds": 600, "max_uses": 1,
            }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    let created = reply.json();
    let token = created["token"].as_str().unwrap();
    assert_eq!(
        created["link"],
        json!(format!("http://127.0.0.1:0/#token={token}")),
        "the link is the console's address (HOSO_PUBLIC_URL, default the listen address) and the token in the fragment"
    );
    let grant = created["grant_id"].as_str().unwrap();
    let qr = vault
        .get(&format!("/v1/grants/{grant}/qr"), &vault.clerk())
        .await;
    qr.expect(StatusCode::OK);
    assert_eq!(qr.headers["content-type"], "image/svg+xml");
    assert!(String::from_utf8_lossy(&qr.body).contains("<svg"));
    vault
        .get(&format!("/v1/grants/{grant}/qr"), token)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(
            "/v1/grants/0190a4b2-0000-7000-8000-000000000001/qr",
            &vault.clerk(),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_audit_log_filters_by_outcome_and_a_revoke_keeps_its_reason() {
    let vault = TestVault::new().await;
    let doc = vault.take_in(CITIZEN, "cccd", &pdf(11, 2_000)).await;
    vault
        .post(
            &format!("/v1/documents/{doc}/revoke"),
            &vault.clerk(),
            json!({"reason": "Công dân báo mất bản chính"}),
        )
        .await
        .expect(StatusCode::OK);
    vault
        .get(&format!("/v1/documents/{doc}/content"), &vault.auditor())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let denied = vault
        .get("/v1/audit?outcome=denied", &vault.auditor())
        .await;
    denied.expect(StatusCode::OK);
    let entries = denied.json()["entries"].as_array().unwrap().clone();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["outcome"] == "denied"),
        "{entries:?}"
    );
    vault
        .get("/v1/audit?outcome=maybe", &vault.auditor())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    let revoked = vault
        .get("/v1/audit?action=document.revoke", &vault.auditor())
        .await
        .json();
    assert_eq!(
        revoked["entries"][0]["reason"],
        "Công dân báo mất bản chính"
    );
    vault
        .post(
            &format!("/v1/documents/{doc}/revoke"),
            &vault.clerk(),
            json!({"why": "x"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_request");
}

/// The clerk's lookup → intake → share → receipt and the auditor's filter → detail → close,
/// with the keyboard alone (TAB, ENTER, SPACE, arrows; a file is chosen as a file dialog
/// does), asserting where focus lands after each step: on each new screen's heading or notice,
/// on an error summary, on the field a change link names, back on what opened a detail.
#[test]
fn a_keyboard_alone_takes_a_clerk_to_the_receipt_and_an_auditor_through_the_log() {
    crate::browser::run_story(keyboard_walk);
}

async fn keyboard_walk() {
    use crate::browser::keys::{DOWN, END, ENTER, SPACE, TAB};
    let vault = TestVault::new().await;
    let fleet = start_fleet(&vault, 1).await;
    let addr = fleet.0[0].1;
    let dir = tempfile::tempdir().unwrap();
    let scan_path = dir.path().join("giay-khai-sinh.png");
    std::fs::write(&scan_path, real_png(5, 320, 200)).unwrap();
    let browser = Browser::open().await;
    let clerk = link(
        &vault,
        addr,
        &[
            "--role",
            "clerk",
            "--sub",
            "CB-0007",
            "--office",
            "UBND-HAICHAU",
        ],
    )
    .await;
    sign_in(&browser, &clerk).await;
    let lands = |what: &'static str, css: &'static str| {
        let browser = &browser;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !browser.focus_is(css).await {
                assert!(
                    Instant::now() < deadline,
                    "after {what}, focus should be on {css} but is on {}",
                    browser.focused().await
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Lookup: a short number gives an error summary that takes focus and links to the field.
    lands("signing in", "h1").await;
    browser.press(TAB).await;
    assert!(
        browser.focus_is("input[name=nid]").await,
        "{}",
        browser.focused().await
    );
    browser.press(&CITIZEN[..11]).await;
    browser.press(ENTER).await;
    lands("a wrong number", ".error-summary").await;
    browser.press(TAB).await;
    browser.press(ENTER).await;
    lands("the summary's link", "input[name=nid]").await;
    browser.press(&CITIZEN[11..]).await;
    browser.press(ENTER).await;
    lands("looking up", "h1").await;
    assert!(browser.text("h1").await.contains("001******567"));

    // Intake.
    browser.tab_to("#start-intake", 10).await;
    browser.press(ENTER).await;
    lands("starting an intake", "h1").await;
    browser.tab_to("#intake-type", 5).await;
    browser.press(&DOWN.repeat(2)).await; // cccd → passport → birth certificate
    browser.press(TAB).await;
    browser.press("KS-2003-7").await;
    browser.press(TAB).await;
    browser.press("Tran Thi Mai").await;
    browser.press(TAB).await;
    // A date field takes its day, month and year as typed (in the browser's own order); TAB
    // may stop on its calendar button before the next field.
    browser.press("04122003").await;
    browser.tab_to("#intake-issued-by", 4).await;
    browser.press("UBND phuong Hai Chau I").await;
    browser.tab_to("#intake-file", 6).await;
    browser
        .wait("#intake-file", None)
        .await
        .type_text(scan_path.to_str().unwrap())
        .await;
    browser.tab_to("#intake-checked", 6).await;
    browser.press(SPACE).await;
    browser.tab_to("#intake-send", 4).await;
    browser.press(ENTER).await;
    lands("sending the scan", ".notice-success").await;
    assert!(browser.text("#documents").await.contains("KS-2003-7"));

    // Share, check the answers, change one of them, and print the receipt.
    browser.tab_to("#start-share", 20).await;
    browser.press(ENTER).await;
    lands("starting a share", "h1").await;
    browser.tab_to("#share-dossier", 4).await;
    browser.press(DOSSIER).await;
    browser.press(TAB).await;
    browser.press("Dang ky ket hon").await;
    browser.tab_to("#share-grantee", 6).await;
    browser.press("CB-XL-07").await;
    browser.press(TAB).await;
    browser.press("STP-DANANG").await;
    browser.tab_to("#share-next", 6).await;
    browser.press(ENTER).await;
    lands("checking the answers", "h1").await;
    browser.tab_to("#change-share-purpose", 10).await;
    browser.press(ENTER).await;
    lands("changing the purpose", "#share-purpose").await;
    browser.press(END).await;
    browser.press(" thuong tru").await;
    browser.tab_to("#share-next", 12).await;
    browser.press(ENTER).await;
    lands("checking again", "h1").await;
    assert!(
        browser
            .text("#share-summary")
            .await
            .contains("Dang ky ket hon thuong tru")
    );
    browser.tab_to("#share-go", 20).await;
    browser.press(ENTER).await;
    lands("sharing", "h1").await;
    browser.wait("#receipt", Some(DOSSIER)).await;

    // Auditor: filter, open an entry, close it: focus goes back to the entry's button.
    let auditor = link(
        &vault,
        addr,
        &[
            "--role", "auditor", "--sub", "TT-01", "--office", "THANHTRA",
        ],
    )
    .await;
    sign_in(&browser, &auditor).await;
    lands("signing in", "h1").await;
    browser.tab_to("#f-apply", 20).await;
    browser.press(ENTER).await;
    browser.wait("#count", Some("Đang hiện")).await;
    assert!(
        browser.focus_is("#f-apply").await,
        "applying a filter keeps focus on it"
    );
    browser.tab_to("#entries tbody button", 10).await;
    let opener = browser
        .js(
            "return document.activeElement.getAttribute('aria-label');",
            json!([]),
        )
        .await;
    browser.press(ENTER).await;
    lands("opening an entry", "#entry-detail").await;
    browser.tab_to("#close-detail", 3).await;
    browser.press(ENTER).await;
    lands("closing the entry", "#entries tbody button").await;
    let back = browser
        .js(
            "return document.activeElement.getAttribute('aria-label');",
            json!([]),
        )
        .await;
    assert_eq!(
        back, opener,
        "focus returns to the button that opened the entry"
    );
    drop(fleet);
}
