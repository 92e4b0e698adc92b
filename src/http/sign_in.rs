//! Signing in through an identity provider, as the browser sees it: `/auth/{staff,citizen}/login`
//! sends it to the provider, `/auth/{kind}/callback` brings it back and on to the console with
//! hoso's token in the address's fragment (exactly as a sign-in link does), `/auth/providers`
//! tells the console's front door which buttons to show, and `POST /v1/me/sign-out` ends a
//! session. Whatever goes wrong ends on a plain page in Vietnamese and English with a way back,
//! never a JSON blob or a trace.
//!
//! The browser is bound to its sign-in by a cookie set at the start: fresh and random each
//! time, `HttpOnly`, `SameSite=Lax` (the provider's redirect back is a top-level GET, which Lax
//! lets through), a `__Host-` cookie when the console's address is https, gone after ten
//! minutes.
//! No request parameter can choose where a browser is sent: the provider's URL comes from its
//! metadata, the redirect URI and the console's address from the settings.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::SignInKind;
use crate::error::ApiError;
use crate::records::sign_in::{self, Callback, FLOW_SECONDS, Refusal, SignInError};

/// The sign-in cookie's name. Over https it is a `__Host-` cookie (Secure, this host only,
/// `Path=/`), which no other site or subdomain can plant; on plain http (one machine) it cannot
/// be, and lives on `/auth/` only.
fn cookie_name(state: &AppState) -> &'static str {
    if https(state) {
        "__Host-hoso-sign-in"
    } else {
        "hoso_sign_in"
    }
}

fn https(state: &AppState) -> bool {
    state.vault.console_url.starts_with("https://")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/providers", get(providers))
        .route("/auth/{kind}/login", get(login))
        .route("/auth/{kind}/callback", get(callback))
        .route("/v1/me/sign-out", post(sign_out))
}

fn kind(text: &str) -> Result<SignInKind, ApiError> {
    SignInKind::parse(text).ok_or(ApiError::NotFound)
}

/// Which sign-ins this vault offers (the console's front door shows a button for each).
async fn providers(State(state): State<AppState>) -> Json<serde_json::Value> {
    let sign_in = &state.vault.sign_in;
    Json(json!({
        "staff": sign_in.staff.is_some(),
        "citizen": sign_in.citizen.is_some(),
    }))
}

/// The browser's sign-in cookie, if it sent a well-formed one.
fn browser_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 43 && URL_SAFE_NO_PAD.decode(v).is_ok())
}

fn cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let name = cookie_name(state);
    let (path, secure) = if https(state) {
        ("/", "; Secure")
    } else {
        ("/auth/", "")
    };
    let text =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).expect("a cookie of base64url characters")
}

async fn login(
    State(state): State<AppState>,
    Path(kind_text): Path<String>,
) -> Result<Response, ApiError> {
    let kind = kind(&kind_text)?;
    // A fresh value at every start, never one the browser brought (which someone else could
    // have planted): a second sign-in started in another tab replaces the first.
    let browser = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>());
    match sign_in::start(&state.vault, kind, &browser).await {
        Ok(url) => {
            let mut response = redirect(&url);
            response
                .headers_mut()
                .insert(header::SET_COOKIE, cookie(&state, &browser, FLOW_SECONDS));
            Ok(response)
        }
        Err(e) => Ok(page(kind, &e)),
    }
}

async fn callback(
    State(state): State<AppState>,
    Path(kind_text): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = kind(&kind_text)?;
    // A malformed answer is treated as one with nothing in it: refused, logged.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let browser = browser_cookie(&headers, cookie_name(&state));
    let mut response = match sign_in::finish(&state.vault, kind, browser.as_deref(), query).await {
        // The console takes the token out of the fragment, keeps it for the tab and clears
        // the address bar; a fragment is never sent to a server.
        Ok(token) => redirect(&format!("/#token={token}")),
        Err(e) => page(kind, &e),
    };
    // The flow is over either way.
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(response)
}

/// Signs the caller out: 200 with where the browser goes next (the provider's end-session
/// endpoint, or null).
async fn sign_out(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let next = sign_in::sign_out(&state.vault, &caller).await?;
    Ok(Json(json!({ "end_session_url": next })))
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The page a failed sign-in ends on: what happened and what to do, Vietnamese first.
fn page(kind: SignInKind, e: &SignInError) -> Response {
    let (status, vi, en) = words(kind, e);
    let html = format!(
        "<!doctype html>\n<html lang=\"vi\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Không đăng nhập được — hoso</title>\n\
         <link rel=\"stylesheet\" href=\"/console/style.css\">\n</head>\n<body>\n\
         <header class=\"bar\"><span class=\"brand\">hoso</span></header>\n\
         <main id=\"main\">\n<h1>Không đăng nhập được</h1>\n\
         <div class=\"notice notice-warning\" role=\"alert\" id=\"sign-in-error\" data-code=\"{code}\">\
         <p>{vi}</p></div>\n<p><a href=\"/\" id=\"back\">Quay lại trang đăng nhập</a></p>\n\
         <div lang=\"en\"><h2>Could not sign in</h2><p>{en}</p>\
         <p><a href=\"/\">Back to sign-in</a></p></div>\n</main>\n</body>\n</html>\n",
        code = e.code(),
        vi = escape(&vi),
        en = escape(&en),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; frame-ancestors 'none'"),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The status and the words, in Vietnamese and English, for each way a sign-in fails.
fn words(kind: SignInKind, e: &SignInError) -> (StatusCode, String, String) {
    let (who_vi, who_en) = match kind {
        SignInKind::Staff => (
            "hệ thống đăng nhập của cơ quan",
            "your agency's sign-in service",
        ),
        SignInKind::Citizen => ("hệ thống định danh điện tử", "the national eID service"),
    };
    let (status, vi, en): (StatusCode, String, String) = match e {
        // This vault does not offer that sign-in (RFC 9110 §15.6.2).
        SignInError::NotConfigured => (
            StatusCode::NOT_IMPLEMENTED,
            "Kho hồ sơ này chưa kết nối với hệ thống đăng nhập đó. Hãy dùng đường dẫn đăng nhập do quản trị viên cấp.".into(),
            "This vault is not connected to that sign-in service. Use a sign-in link from your administrator.".into(),
        ),
        SignInError::Unreachable => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} không trả lời. Hãy thử lại sau ít phút.", capital(who_vi)),
            format!("{} is not answering. Try again in a few minutes.", capital(who_en)),
        ),
        SignInError::ProviderFault => (
            StatusCode::BAD_GATEWAY,
            format!("{} trả lời không đúng. Hãy thử lại; nếu vẫn lỗi, báo cho quản trị viên.", capital(who_vi)),
            format!("{} gave an answer hoso cannot use. Try again; if it persists, tell your administrator.", capital(who_en)),
        ),
        SignInError::Cancelled => (
            StatusCode::FORBIDDEN,
            format!("Việc đăng nhập đã bị hủy hoặc bị {who_vi} từ chối."),
            format!("The sign-in was cancelled or refused by {who_en}."),
        ),
        SignInError::Expired => (
            StatusCode::BAD_REQUEST,
            "Phiên đăng nhập này đã hết hạn hoặc đã được dùng. Hãy bắt đầu đăng nhập lại.".into(),
            "This sign-in has expired or was already used. Start signing in again.".into(),
        ),
        SignInError::Invalid => (
            StatusCode::FORBIDDEN,
            format!("Không xác minh được thông tin đăng nhập từ {who_vi}. Việc này đã được ghi lại."),
            format!("The sign-in from {who_en} could not be verified. This has been recorded."),
        ),
        SignInError::Refused(refusal) => (StatusCode::FORBIDDEN, refusal_vi(refusal), refusal_en(refusal)),
        SignInError::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            "Có quá nhiều lượt đăng nhập lúc này. Hãy đợi một phút rồi thử lại.".into(),
            "Too many sign-ins right now. Wait a minute and try again.".into(),
        ),
        SignInError::Vault(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Kho hồ sơ tạm thời không phục vụ được. Hãy thử lại sau ít phút.".into(),
            "The vault is temporarily unavailable. Try again in a few minutes.".into(),
        ),
    };
    (status, vi, en)
}

fn refusal_vi(refusal: &Refusal) -> String {
    match refusal {
        Refusal::NoRole => "Tài khoản của bạn chưa được giao vai trò trong hoso. Hãy đề nghị quản trị viên của cơ quan giao vai trò (cán bộ một cửa, cán bộ xử lý, thanh tra hoặc quản trị).".into(),
        Refusal::UnknownRole => "Vai trò ghi trong tài khoản của bạn không phải vai trò của hoso. Hãy đề nghị quản trị viên của cơ quan sửa lại.".into(),
        Refusal::BadOffice => "Tài khoản của bạn không ghi mã cơ quan hợp lệ. Hãy đề nghị quản trị viên của cơ quan sửa lại.".into(),
        Refusal::BadStaffId => "Mã cán bộ trong tài khoản của bạn không hợp lệ. Hãy đề nghị quản trị viên của cơ quan sửa lại.".into(),
        Refusal::BadNationalId => "Tài khoản định danh không cho biết số định danh cá nhân 12 chữ số hợp lệ.".into(),
        Refusal::AcrTooLow(needed) => format!("Cần tài khoản định danh điện tử mức độ cao hơn (ít nhất {needed}). Hãy nâng mức tài khoản rồi đăng nhập lại."),
    }
}

fn refusal_en(refusal: &Refusal) -> String {
    match refusal {
        Refusal::NoRole => "Your account has no hoso role. Ask your agency's administrator to give you one (clerk, officer, auditor or admin).".into(),
        Refusal::UnknownRole => "The role in your account is not one of hoso's. Ask your agency's administrator to correct it.".into(),
        Refusal::BadOffice => "Your account does not carry a valid office code. Ask your agency's administrator to correct it.".into(),
        Refusal::BadStaffId => "The staff id in your account is not valid. Ask your agency's administrator to correct it.".into(),
        Refusal::BadNationalId => "The eID account did not give a valid 12-digit personal identification number.".into(),
        Refusal::AcrTooLow(needed) => format!("A higher eID assurance level is needed (at least {needed}). Raise your account's level and sign in again."),
    }
}

fn capital(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
