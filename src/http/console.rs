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
    ("csv.js", JS, include_bytes!("../../console/csv.js")),
    ("dom.js", JS, include_bytes!("../../console/dom.js")),
    ("i18n.js", JS, include_bytes!("../../console/i18n.js")),
    ("rules.js", JS, include_bytes!("../../console/rules.js")),
    ("views.js", JS, include_bytes!("../../console/views.js")),
    ("rights.js", JS, include_bytes!("../../console/rights.js")),
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

    /// The audit log's CSV, written by the console's own module, read back by Python's `csv`
    /// as a spreadsheet in a `,` locale and in a `;` locale (Vietnamese) would split it: no cell
    /// begins with a character that starts a formula.
    #[test]
    fn the_audit_csv_starts_no_cell_with_a_formula_in_either_locale() {
        let csv = node(
            r#"const { csvText } = await import('./console/csv.js');
               const reasons = ["Nhầm hồ sơ;=cmd|' /C calc'!A0", "=1+1", "+SUM(A1)", "-2", "@x",
                 "\ta", "\r=b", 'ok, =HYPERLINK("http://x")', "a\t\t=c", "tab\t+1", 'a,"=cmd', 'say "hi"'];
               const rows = reasons.map((reason, seq) => ({ seq, reason, actor: '=evil' }));
               process.stdout.write(csvText(['seq', 'actor', 'reason'], rows));"#,
        );
        let check = r#"
import csv, io, sys
text = sys.stdin.read()
bad = []
for delimiter in [",", ";"]:
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        bad += [(delimiter, cell) for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    # An importer that splits on the separator whatever the quotes.
    for line in text.splitlines():
        bad += [(delimiter + " naive", cell) for cell in line.split(delimiter)
                if cell.lstrip('"')[:1] in ("=", "+", "-", "@", "\t", "\r")]
rows = list(csv.reader(io.StringIO(text, newline="")))
assert len(rows) == 13 and rows[1][2] == "Nhầm hồ sơ;'=cmd|' /C calc'!A0", rows[:2]
assert rows[12][2] == 'say "hi"', rows[12]
print(bad)
"#;
        let mut python = std::process::Command::new("python3")
            .args(["-c", check])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is needed to read the CSV back");
        use std::io::Write;
        python
            .stdin
            .take()
            .unwrap()
            .write_all(csv.as_bytes())
            .unwrap();
        let out = python.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "{csv}");
    }
}
