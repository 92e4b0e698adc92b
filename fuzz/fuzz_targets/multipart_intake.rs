//! The whole intake path through the real router: any multipart body gives a 2xx, 4xx or a
//! clean error, never a panic or a 500.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, header};
use hoso::app::{App, AppState};
use hoso::http::app as router;
use hoso::auth::{TokenRequest, issue};
use hoso::config::Settings;
use hoso::domain::Role;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let mut settings = Settings::embedded_in(&dir);
        settings.max_upload_bytes = 64 * 1024;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = runtime.block_on(App::open(settings, true)).unwrap();
        let state = AppState(Arc::new(app));
        let request = TokenRequest { role: Role::Clerk, sub: "fuzz", office: Some("FUZZ"), ttl_seconds: 86_400, grant: None, via: None };
        let token = issue(&state.vault.keys(), &state.vault.token_policy, request).unwrap().0;
        Fixture { router: router(state), runtime, token }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let request = Request::post("/v1/citizens/001099012345/documents")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.token))
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=X")
        .body(Body::from(data.to_vec()))
        .unwrap();
    let response = f.runtime.block_on(f.router.clone().oneshot(request)).unwrap();
    assert!(!response.status().is_server_error(), "{}", response.status());
});
