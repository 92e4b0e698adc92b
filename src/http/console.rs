//! The web console: plain ES modules and one stylesheet under `console/`, embedded in the
//! binary and served at `/`, so a fresh `hoso serve` is the whole product, with no CDN and no
//! network at run time. It speaks only the public API, with the token in `Authorization`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::error::ApiError;

/// The console's own policy: scripts and styles only from these files (no inline script or
/// style, so an injected value cannot run), API calls only to this origin, scans previewed from
/// `blob:` URLs the page made itself, and never inside another site's frame.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; frame-src blob:; object-src 'none'; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every file of the console: name under `/console/`, media type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/style.css"),
    ),
    ("app.js", JS, include_bytes!("../../console/app.js")),
    ("api.js", JS, include_bytes!("../../console/api.js")),
    ("dom.js", JS, include_bytes!("../../console/dom.js")),
    ("i18n.js", JS, include_bytes!("../../console/i18n.js")),
    ("rules.js", JS, include_bytes!("../../console/rules.js")),
    ("views.js", JS, include_bytes!("../../console/views.js")),
    ("clerk.js", JS, include_bytes!("../../console/clerk.js")),
    ("officer.js", JS, include_bytes!("../../console/officer.js")),
    ("auditor.js", JS, include_bytes!("../../console/auditor.js")),
    ("citizen.js", JS, include_bytes!("../../console/citizen.js")),
];
const JS: &str = "text/javascript; charset=utf-8";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(name: &str) -> Response {
    let Some((_, media_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::NotFound.into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    // Revalidated on every load, so an upgraded binary's console is what people see.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use crate::domain::AuditAction;

    /// Runs an ES module under node, from the crate's root, and returns what it printed. The
    /// console's own modules are plain ES modules, so node imports them as the browser does.
    fn node(script: &str) -> String {
        let out = std::process::Command::new("node")
            .args(["--input-type=module", "-e", script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("node is needed to test the console's modules (Node.js 20 or later)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_console_knows_every_audit_action_in_both_languages() {
        let out = node(
            "globalThis.localStorage = { getItem: () => null, setItem: () => {} };
             const m = await import('./console/i18n.js');
             const keys = m.ACTIONS.map((a) => `action.${a}`);
             console.log(JSON.stringify({ actions: m.ACTIONS, missing: m.missingWords(keys) }));",
        );
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        let ours: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            out["actions"],
            serde_json::json!(ours),
            "console/i18n.js ACTIONS"
        );
        assert_eq!(out["missing"], serde_json::json!([]), "labels missing");
    }

    #[test]
    fn the_shared_rule_cases_hold_for_the_console() {
        let out = node(
            "import { readFileSync } from 'node:fs';
             const r = await import('./console/rules.js');
             const { cases } = JSON.parse(readFileSync('tests/rules_cases.json', 'utf8'));
             const check = { national_id: (c) => r.nationalIdProblem(c.input),
               code: (c) => r.codeProblem(c.input), text: (c) => r.textProblem(c.input, c.max) };
             const wrong = cases.filter((c) => (check[c.rule](c) === null) !== c.valid);
             console.log(JSON.stringify({ checked: cases.length, wrong }));",
        );
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(out["checked"].as_u64().unwrap() > 30, "{out}");
        assert_eq!(out["wrong"], serde_json::json!([]), "console/rules.js");
    }
}
