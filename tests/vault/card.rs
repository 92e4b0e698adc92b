//! The card reads itself: a CCCD's QR code read from a scan by `POST /v1/scans/read-card`.
//! The scans are made here: a QR drawn with the `qrcode` crate onto a card-sized image with
//! grain, turned a few degrees, saved as PNG or JPEG.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

use crate::common::TestVault;

const CARD: &str =
    "048090001234|201234567|Phạm Văn An|01021990|Nam|12 Lê Duẩn, Hải Châu, Đà Nẵng|15032021";

/// A grey card image `w`×`h` with `text`'s QR near its top right (4 px a module), grain, some
/// dark blocks where printing would be, turned by `degrees`.
fn card_image(text: &str, w: u32, h: u32, degrees: f64) -> image::GrayImage {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let modules = code.width() as u32;
    let colors = code.to_colors();
    let scale = 4;
    let (qx, qy) = (w - (modules + 8) * scale - 40, 60);
    let mut seed = 0x2545_f491_u32;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed % 24) as i32 - 12
    };
    let flat = image::GrayImage::from_fn(w, h, |x, y| {
        let inside =
            x >= qx && y >= qy && x < qx + (modules + 8) * scale && y < qy + (modules + 8) * scale;
        let base: i32 = if inside {
            let (mx, my) = ((x - qx) / scale, (y - qy) / scale);
            let dark = mx >= 4
                && my >= 4
                && mx < modules + 4
                && my < modules + 4
                && colors[((my - 4) * modules + (mx - 4)) as usize] == qrcode::Color::Dark;
            if dark { 25 } else { 235 }
        } else if (y / 30) % 3 == 1 && x > 60 && x < qx - 60 {
            70
        } else {
            215
        };
        image::Luma([(base + noise()).clamp(0, 255) as u8])
    });
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    image::GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
        let (sx, sy) = (cos * dx + sin * dy + cx, -sin * dx + cos * dy + cy);
        if sx < 0.0 || sy < 0.0 || sx >= f64::from(w) || sy >= f64::from(h) {
            image::Luma([200])
        } else {
            *flat.get_pixel(sx as u32, sy as u32)
        }
    })
}

fn png(image: &image::GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))
        .unwrap();
    out
}

fn jpeg(image: &image::GrayImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut out, quality,
        ))
        .unwrap();
    out
}

async fn read(vault: &TestVault, token: &str, body: Vec<u8>) -> crate::common::Reply {
    let request = Request::post("/v1/scans/read-card")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(body))
        .unwrap();
    vault.send(request).await
}

#[tokio::test]
async fn a_cccd_scan_reads_its_qr_as_png_and_as_a_turned_grainy_jpeg() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let entries = vault.count("SELECT COUNT(*) FROM audit_entries").await;
    for (what, bytes) in [
        ("png", png(&card_image(CARD, 1011, 638, 0.0))),
        (
            "jpeg, turned 3°",
            jpeg(&card_image(CARD, 1011, 638, 3.0), 75),
        ),
    ] {
        let reply = read(&vault, &clerk, bytes).await;
        reply.expect(StatusCode::OK);
        let v = reply.json();
        assert_eq!(v["found"], true, "{what}: {v}");
        assert_eq!(v["recognised"], true, "{what}: {v}");
        assert_eq!(
            v["fields"],
            json!({
                "national_id": "048090001234", "old_id": "201234567", "holder_name": "Phạm Văn An",
                "birth_date": "1990-02-01", "sex": "male", "address": "12 Lê Duẩn, Hải Châu, Đà Nẵng",
                "issued_on": "2021-03-15", "expires_on": null,
            }),
            "{what}"
        );
    }
    // Stored nothing, logged nothing; counted.
    assert_eq!(
        vault.count("SELECT COUNT(*) FROM audit_entries").await,
        entries
    );
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 0);
    let metrics = vault.get("/metrics", &vault.admin()).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("hoso_card_reads_total 2"));
}

/// More reads at once than the vault has readers (one per core): each waits its turn within
/// the read's time, and none is told every reader is busy.
#[tokio::test]
async fn more_reads_at_once_than_readers_each_wait_their_turn() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let scan = png(&card_image(CARD, 1011, 638, 0.0));
    let readers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reads = (0..3 * readers + 2).map(|_| read(&vault, &clerk, scan.clone()));
    for reply in futures_util::future::join_all(reads).await {
        reply.expect(StatusCode::OK);
        assert_eq!(reply.json()["recognised"], true);
    }
}

#[tokio::test]
async fn variants_are_read_and_anything_else_is_said_plainly() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let eight = "048090001234||Lê Thị Hoa|19900201|Nữ||20210315|20360201";
    let v = read(&vault, &clerk, png(&card_image(eight, 1011, 638, 0.0)))
        .await
        .json();
    assert_eq!(
        (
            v["fields"]["birth_date"].as_str(),
            v["fields"]["expires_on"].as_str()
        ),
        (Some("1990-02-01"), Some("2036-02-01")),
        "{v}"
    );
    // Another QR, the 2024 card's back (layout not published), 10 kB of garbage, a bidi
    // control in the name: a QR was there, but it is not read as a CCCD.
    for text in [
        "https://dichvucong.gov.vn/p/home/dvc-tra-cuu-ho-so.html?ma=000.00.31.H40-261124-0042".to_owned(),
        "IDVNM0480900012348048090001234<<1\n9002011M3602017VNM<<<<<<<<<<<4\nPHAM<<VAN<AN<<<<<<<<<<<<<<<<".to_owned(),
        "x".repeat(1800),
        CARD.replace("Phạm", "Ph\u{202E}ạm"),
    ] {
        let v = read(&vault, &clerk, png(&card_image(&text, 1200, 900, 0.0))).await.json();
        assert_eq!(v, json!({"found": true, "recognised": false}), "{text:.40}");
    }
    // No QR at all.
    let blank = image::GrayImage::from_pixel(800, 500, image::Luma([220]));
    let v = read(&vault, &clerk, png(&blank)).await.json();
    assert_eq!(v, json!({"found": false}));
}

#[tokio::test]
async fn bad_scans_get_clear_answers_within_bounds() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    // A PDF: the QR is read from images only.
    let reply = read(
        &vault,
        &clerk,
        b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n".to_vec(),
    )
    .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("images only")
    );
    // A decompression bomb: a PNG whose header claims 100,000 × 100,000 pixels.
    let mut bomb = png(&image::GrayImage::from_pixel(8, 8, image::Luma([0])));
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let began = Instant::now();
    let reply = read(&vault, &clerk, bomb).await;
    reply.expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "refused from its header, not decoded"
    );
    // A truncated scan.
    let whole = png(&card_image(CARD, 1011, 638, 0.0));
    read(&vault, &clerk, whole[..whole.len() / 2].to_vec())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Over the size limit: 413 before the body is kept.
    let small = TestVault::with(|s| s.card_max_bytes = 1024).await;
    read(&small, &small.clerk(), whole.clone())
        .await
        .expect(StatusCode::PAYLOAD_TOO_LARGE);
    // Only clerks read cards.
    read(&vault, &vault.auditor(), whole.clone())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    read(&vault, &vault.citizen("048090001234"), whole)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn how_long_a_read_takes_for_an_a4_scan_and_a_phone_photo() {
    // Printed, not asserted: speed is measured, not tested. A 300-dpi A4 page with the card
    // on it, and a phone photo's 12 MP.
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    for (what, w, h) in [
        ("300-dpi A4", 2480, 3508),
        ("12 MP phone photo", 4000, 3000),
    ] {
        let bytes = jpeg(&card_image(CARD, w, h, 2.0), 85);
        let began = Instant::now();
        let v = read(&vault, &clerk, bytes).await.json();
        eprintln!("card read, {what}: {:?} ({v})", began.elapsed());
        assert_eq!(v["found"], true, "{what}: {v}");
    }
}

/// An intake of a CCCD whose scan carries `CARD`'s QR, typed as `typed` says.
fn typed(change: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut m = json!({
        "doc_type": "cccd",
        "doc_number": "048090001234",
        "holder_name": "Phạm Văn An",
        "issued_on": "2021-03-15",
        "issued_by": "Cục Cảnh sát QLHC về TTXH",
        "verified_against_original": true,
    });
    change(&mut m);
    m
}

#[tokio::test]
async fn intake_checks_a_cccds_typed_fields_against_its_qr_and_logs_an_override() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let scan = png(&card_image(CARD, 1011, 638, 1.0));
    let served = "048090001234";

    // One digit wrong: refused, the field named, the number never echoed; logged as refused.
    let reply = vault
        .intake(
            &clerk,
            served,
            &typed(|m| m["doc_number"] = json!("048090001284")),
            &scan,
        )
        .await;
    reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "card_mismatch");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("doc_number") && !message.contains("04809000"),
        "{message}"
    );
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 0);
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'document.intake' AND outcome = 'denied' AND reason = 'card_mismatch'")
            .await,
        1
    );
    // The card of someone else than the citizen served.
    let reply = vault
        .intake(&clerk, "079203004567", &typed(|_| {}), &scan)
        .await;
    reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "card_mismatch");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("national_id")
    );
    // …which no reason keeps: another citizen's card is never filed under this one.
    let with_reason = typed(|m| m["card_override"] = json!("Công dân nói đúng là thẻ của mình"));
    vault
        .intake(&clerk, "079203004567", &with_reason, &scan)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "card_mismatch");
    // A name typed in NFD with other spacing and case still matches.
    let nfd: String = unicode_normalization::UnicodeNormalization::nfd("phạm  văn AN").collect();
    let reply = vault
        .intake(
            &clerk,
            served,
            &typed(|m| m["holder_name"] = json!(nfd)),
            &scan,
        )
        .await;
    reply.expect(StatusCode::CREATED);
    let doc = reply.json();
    assert_eq!(doc["card_check"], "matched", "{doc}");
    // The attestation says so.
    let payload = doc["attestation"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["card_check"], "matched");
}

#[tokio::test]
async fn a_clerk_keeps_fields_over_the_card_with_a_reason_which_is_logged() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let scan = jpeg(&card_image(CARD, 1011, 638, 2.0), 80);
    let reply = vault
        .intake(
            &clerk,
            "048090001234",
            &typed(|m| {
                m["issued_on"] = json!("2021-03-16");
                m["card_override"] = json!("Ngày cấp trên thẻ bị mờ; đối chiếu với sổ cấp");
            }),
            &scan,
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.json()["card_check"], "overridden");
    let reason = vault
        .fetch_text("SELECT reason FROM audit_entries WHERE action = 'document.intake' AND outcome = 'allowed'")
        .await;
    assert_eq!(
        reason,
        "card override (issued_on): Ngày cấp trên thẻ bị mờ; đối chiếu với sổ cấp"
    );
    // Another type is not checked, and a reason sent with it overrides nothing: it is not
    // logged as if it had.
    let reply = vault
        .intake(
            &clerk,
            "048090001234",
            &typed(|m| {
                m["doc_type"] = json!("passport");
                m["card_override"] = json!("không cần");
            }),
            &scan,
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert!(reply.json().get("card_check").is_none());
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let unreasoned = vault
        .count(&format!(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.intake' \
             AND document_id = '{id}' AND reason IS NULL"
        ))
        .await;
    assert_eq!(unreasoned, 1);
}

/// As a clerk does it, in a real headless Chromium on a real `hoso serve`: the CCCD scan fills
/// the form (each field marked as read from the card), a digit changed afterwards is named and
/// needs a reason, and the reason reaches the audit log.
#[test]
fn in_a_browser_a_cccd_scan_fills_the_form_and_a_changed_digit_needs_a_reason() {
    crate::browser::run_story(card_story);
}

async fn card_story() {
    use crate::browser::Browser;
    use crate::console::{link, sign_in};
    let vault = TestVault::new().await;
    let fleet = crate::processes::start_fleet(&vault, 1).await;
    let addr = fleet.0[0].1;
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path().join("cccd-mat-truoc.png");
    std::fs::write(&scan, png(&card_image(CARD, 1011, 638, 1.5))).unwrap();
    let browser = Browser::open().await;
    let clerk = link(
        &vault,
        addr,
        &[
            "--role",
            "clerk",
            "--sub",
            "CB-0009",
            "--office",
            "UBND-HAICHAU",
        ],
    )
    .await;
    sign_in(&browser, &clerk).await;
    browser.fill("input[name=nid]", "048090001234").await;
    browser.click("#lookup").await;
    browser.wait("h1", Some("048******234")).await;
    browser.click("#start-intake").await;
    browser
        .wait("#intake-file", None)
        .await
        .type_text(scan.to_str().unwrap())
        .await;
    browser.wait("#card-status", Some("Đã điền")).await;
    let values = browser
        .js(
            "return ['intake-number', 'intake-holder', 'intake-issued-on'].map(id => document.getElementById(id).value)\
             .concat([document.querySelectorAll('.from-card').length]);",
            json!([]),
        )
        .await;
    assert_eq!(
        values,
        json!(["048090001234", "Phạm Văn An", "2021-03-15", 3])
    );
    browser.screenshot("card-prefilled").await;
    browser.check_accessible("card-prefilled").await;

    // A digit changed after the card filled it: named, and sending needs a reason.
    browser
        .fill("#intake-issued-by", "Cục Cảnh sát QLHC về TTXH")
        .await;
    browser.fill("#intake-number", "048090001284").await;
    browser.click("#intake-checked").await;
    browser.click("#intake-send").await;
    browser.wait(".error-summary", Some("Ghi lý do")).await;
    browser.wait("#card-differs-list", Some("Số giấy tờ")).await;
    browser.check_accessible("card-differs").await;
    browser
        .fill(
            "#intake-card-override",
            "Số in trên thẻ bị mờ; đã đối chiếu với sổ cấp",
        )
        .await;
    browser.click("#intake-send").await;
    browser.wait(".notice-success", Some("Đã lưu")).await;
    let reason = vault
        .fetch_text("SELECT reason FROM audit_entries WHERE action = 'document.intake' AND outcome = 'allowed'")
        .await;
    assert_eq!(
        reason,
        "card override (doc_number): Số in trên thẻ bị mờ; đã đối chiếu với sổ cấp"
    );
    drop(fleet);
}
