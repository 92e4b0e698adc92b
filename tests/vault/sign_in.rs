//! Promise 11: a person signs in only as who their provider says they are. Against a real
//! OpenID provider (panva's oidc-provider, `tests/node/`, one for the whole run), its login
//! page driven over plain HTTP; forged answers come from a small provider made here
//! ([`fake`]), since a real one never signs them.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{CITIZEN_A, TestVault, png};

/// The test provider: its issuer and the client secret file both clients use.
pub struct RealProvider {
    pub issuer: String,
    pub secret_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _process: std::process::Child,
}

/// `npm ci` in `tests/node` (what `scripts/test` does first), for `cargo test` run alone on a
/// fresh clone. Once per process.
pub fn install_test_tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&root)
            .status()
            .expect("npm, to install the test tools in tests/node (Node 20 and npm are needed)");
        assert!(status.success(), "npm ci in tests/node failed");
    });
}

/// Starts the one provider of this run (installing its pinned packages first if needed).
pub fn provider() -> &'static RealProvider {
    static PROVIDER: OnceLock<RealProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        if !root.join("node_modules/oidc-provider").exists() {
            install_test_tools();
        }
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("client-secret");
        std::fs::write(&secret_file, "a-test-client-secret-of-no-value\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut process = std::process::Command::new("node")
            .arg(root.join("oidc-provider.mjs"))
            .arg(&secret_file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            // What the provider says goes beside the build, for when a test fails.
            .stderr(
                std::fs::File::create(concat!(env!("CARGO_TARGET_TMPDIR"), "/oidc-provider.log"))
                    .unwrap(),
            )
            .spawn()
            .expect("node, to run the test OpenID provider");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(process.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let issuer = line
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the test OpenID provider did not start: {line:?}"))
            .trim()
            .to_owned();
        RealProvider {
            issuer,
            secret_file,
            _dir: dir,
            _process: process,
        }
    })
}

/// Settings that sign staff in through the provider at `issuer`, as client `hoso-staff`.
fn staff_through(s: &mut hoso::config::Settings, issuer: &str) {
    s.sign_in.oidc_staff_issuer = Some(issuer.to_owned());
    s.sign_in.oidc_staff_client_id = Some("hoso-staff".into());
    s.sign_in.oidc_staff_client_secret_file = Some(provider().secret_file.clone());
}

/// A vault that signs staff and citizens in through the test provider; citizens need `vneid-2`.
pub async fn vault() -> TestVault {
    let p = provider();
    TestVault::with(|s| {
        staff_through(s, &p.issuer);
        s.sign_in.oidc_citizen_issuer = Some(p.issuer.clone());
        s.sign_in.oidc_citizen_client_id = Some("hoso-citizen".into());
        s.sign_in.oidc_citizen_client_secret_file = Some(p.secret_file.clone());
        s.sign_in.oidc_citizen_acr = vec!["vneid-2".into()];
    })
    .await
}

/// A browser's cookies, by name (the provider's are path-scoped, but names do not clash).
#[derive(Default)]
pub struct Jar(HashMap<String, String>);

impl Jar {
    fn take(&mut self, headers: &axum::http::HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty()
                || text.contains("Max-Age=0")
                || text.contains("expires=Thu, 01 Jan 1970")
            {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn location(headers: &axum::http::HeaderMap) -> String {
    headers[header::LOCATION].to_str().unwrap().to_owned()
}

/// The provider's side of a sign-in, as a browser goes through it: the authorization URL, its
/// login page, the form posted with `login`, and every redirect until the one back to hoso,
/// whose query is returned.
pub async fn at_provider(authorize: &str, login: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let issuer = &provider().issuer;
    let mut jar = Jar::default();
    let mut url = authorize.to_owned();
    let mut posted = false;
    for _ in 0..10 {
        if !url.starts_with(issuer.as_str()) {
            // Back at hoso's callback.
            assert!(url.contains("/callback?"), "{url}");
            return url.split_once('?').unwrap().1.to_owned();
        }
        let reply = http
            .get(&url)
            .header(header::COOKIE, jar.header())
            .send()
            .await
            .unwrap();
        let mut headers = axum::http::HeaderMap::new();
        for (k, v) in reply.headers() {
            headers.append(k.clone(), v.clone());
        }
        jar.take(&headers);
        if reply.status().is_redirection() {
            url = absolute(issuer, &location(&headers));
            continue;
        }
        let page = reply.text().await.unwrap();
        assert!(
            !posted,
            "the provider showed a page after the login: {page}"
        );
        assert!(
            page.contains("name=\"login\""),
            "the provider's login page: {page}"
        );
        let reply = http
            .post(&url)
            .header(header::COOKIE, jar.header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("login={login}&password=any"))
            .send()
            .await
            .unwrap();
        let mut headers = axum::http::HeaderMap::new();
        for (k, v) in reply.headers() {
            headers.append(k.clone(), v.clone());
        }
        jar.take(&headers);
        assert!(
            reply.status().is_redirection(),
            "login posted: {}",
            reply.status()
        );
        url = absolute(issuer, &location(&headers));
        posted = true;
    }
    panic!("too many redirects at the provider");
}

fn absolute(issuer: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{issuer}{location}")
    }
}

/// hoso's start of a sign-in: where it sends the browser, and the browser's sign-in cookie.
pub async fn start(vault: &TestVault, kind: &str) -> (String, String) {
    let reply = vault.get(&format!("/auth/{kind}/login"), "").await;
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (location(&reply.headers), cookie)
}

/// hoso's callback with `query`, from the browser holding `cookie`.
pub async fn callback(
    vault: &TestVault,
    kind: &str,
    query: &str,
    cookie: &str,
) -> crate::common::Reply {
    let request = Request::get(format!("/auth/{kind}/callback?{query}"))
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    vault.send(request).await
}

/// A whole sign-in as `login`: hoso's answer at the end.
pub async fn sign_in(vault: &TestVault, kind: &str, login: &str) -> crate::common::Reply {
    let (authorize, cookie) = start(vault, kind).await;
    let query = at_provider(&authorize, login).await;
    callback(vault, kind, &query, &cookie).await
}

/// The token a successful sign-in hands the console.
#[track_caller]
pub fn token_of(reply: &crate::common::Reply) -> String {
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let to = location(&reply.headers);
    to.strip_prefix("/#token=")
        .unwrap_or_else(|| panic!("{to}"))
        .to_owned()
}

/// The refusal page's code (its `data-code`).
#[track_caller]
pub fn refused_with(reply: &crate::common::Reply, status: StatusCode, code: &str) {
    let page = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status, status, "{page}");
    assert!(
        page.contains(&format!("data-code=\"{code}\"")),
        "{code}: {page}"
    );
    assert!(
        page.contains("lang=\"vi\"") && page.contains("href=\"/\""),
        "{page}"
    );
}

async fn sign_ins(vault: &TestVault, outcome: &str) -> i64 {
    vault
        .count(&format!(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'session.sign_in' AND outcome = '{outcome}'"
        ))
        .await
}

#[tokio::test]
async fn a_clerk_signs_in_through_the_provider_and_gets_a_session_of_their_role_and_office() {
    let vault = vault().await;
    let token = token_of(&sign_in(&vault, "staff", "lan.nguyen").await);
    let me = vault.get("/v1/me", &token).await;
    me.expect(StatusCode::OK);
    let me = me.json();
    assert_eq!(me["role"], "clerk");
    assert_eq!(me["sub"], "lan.nguyen");
    assert_eq!(me["office"], "UBND-HAICHAU");
    assert_eq!(me["signed_in_via"], "staff");
    // The session works at the desk, and is logged as the person's own sign-in.
    vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(sign_ins(&vault, "allowed").await, 1);
    let reason = vault
        .fetch_text("SELECT reason FROM audit_entries WHERE action = 'session.sign_in'")
        .await;
    assert!(
        reason.contains(&provider().issuer) && reason.contains("jti"),
        "{reason}"
    );
    assert_eq!(
        vault
            .fetch_text("SELECT actor FROM audit_entries WHERE action = 'session.sign_in'")
            .await,
        "lan.nguyen"
    );
}

#[tokio::test]
async fn a_citizen_signs_in_with_the_national_eid_and_sees_their_documents_and_who_read_them() {
    let vault = vault().await;
    vault.take_in("048090001234", "cccd", &png(1, 4000)).await;
    let token = token_of(&sign_in(&vault, "citizen", "cong.dan").await);
    let me = vault.get("/v1/me", &token).await.json();
    assert_eq!(me["role"], "citizen");
    assert_eq!(me["sub"], "048090001234");
    let docs = vault
        .get("/v1/citizens/048090001234/documents", &token)
        .await;
    docs.expect(StatusCode::OK);
    assert_eq!(docs.json()["documents"].as_array().unwrap().len(), 1);
    vault
        .get("/v1/citizens/048090001234/access-log", &token)
        .await
        .expect(StatusCode::OK);
    // Someone else's records stay closed.
    vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), &token)
        .await
        .expect(StatusCode::FORBIDDEN);
    // The sign-in names the citizen by blind index only.
    assert_eq!(sign_ins(&vault, "allowed").await, 1);
    let logged = vault
        .count(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'session.sign_in' \
             AND citizen_idx IS NOT NULL AND actor LIKE 'citizen:%' \
             AND reason NOT LIKE '%048090001234%' AND actor NOT LIKE '%048090001234%'",
        )
        .await;
    assert_eq!(logged, 1);
    // Promise 10 for what sign-in adds (its flow, the session row, the log): the database
    // holds the citizen's number nowhere in clear.
    assert!(!crate::common::contains(
        &vault.database_bytes(),
        b"048090001234"
    ));
}

#[tokio::test]
async fn an_officer_signs_in_and_opens_a_grant_from_their_list_without_its_link() {
    let vault = vault().await;
    let doc = vault.take_in(CITIZEN_A, "cccd", &png(2, 4000)).await;
    let (grant, _link_token) = vault.grant(CITIZEN_A, &["cccd"], "binh.tran", 2).await;
    let token = token_of(&sign_in(&vault, "staff", "binh.tran").await);
    let list = vault.get("/v1/me/grants", &token).await;
    list.expect(StatusCode::OK);
    let grants = list.json()["grants"].as_array().unwrap().clone();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["grant_id"], grant.as_str());
    // Through the grant, by naming it; without naming it, nothing.
    let with_grant = |path: String| {
        Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("Hoso-Grant", grant.as_str())
            .body(Body::empty())
            .unwrap()
    };
    vault
        .send(with_grant(format!("/v1/grants/{grant}/documents")))
        .await
        .expect(StatusCode::OK);
    vault
        .send(with_grant(format!("/v1/documents/{doc}/content")))
        .await
        .expect(StatusCode::OK);
    vault
        .get(&format!("/v1/documents/{doc}/content"), &token)
        .await
        .expect(StatusCode::FORBIDDEN);
    // The same staff id at another office, and a clerk, see none of it.
    let elsewhere = vault.token(hoso::domain::Role::Officer, "binh.tran", Some("SO-TNMT"));
    assert_eq!(
        vault.get("/v1/me/grants", &elsewhere).await.json()["grants"],
        json!([])
    );
    let request = Request::get(format!("/v1/documents/{doc}/content"))
        .header(header::AUTHORIZATION, format!("Bearer {elsewhere}"))
        .header("Hoso-Grant", grant.as_str())
        .body(Body::empty())
        .unwrap();
    vault.send(request).await.expect(StatusCode::FORBIDDEN);
    vault
        .get("/v1/me/grants", &vault.clerk())
        .await
        .expect(StatusCode::FORBIDDEN);
    // Another officer's grant, named in the header: neither its scope nor its documents.
    let (others, _) = vault.grant(CITIZEN_A, &["cccd"], "someone.else", 2).await;
    for path in [
        format!("/v1/grants/{others}"),
        format!("/v1/grants/{others}/documents"),
    ] {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("Hoso-Grant", others.as_str())
            .body(Body::empty())
            .unwrap();
        vault.send(request).await.expect(StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn a_replayed_or_foreign_browser_callback_is_refused_and_logged() {
    let vault = vault().await;
    let (authorize, cookie) = start(&vault, "staff").await;
    let query = at_provider(&authorize, "lan.nguyen").await;
    // Another browser (no cookie, or another one) cannot finish it…
    let other = "hoso_sign_in=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    refused_with(
        &callback(&vault, "staff", &query, other).await,
        StatusCode::BAD_REQUEST,
        "sign_in_expired",
    );
    // …and the state is spent: the right browser cannot use it afterwards either.
    refused_with(
        &callback(&vault, "staff", &query, &cookie).await,
        StatusCode::BAD_REQUEST,
        "sign_in_expired",
    );
    // A fresh one used twice: once, then refused.
    let (authorize, cookie) = start(&vault, "staff").await;
    let query = at_provider(&authorize, "lan.nguyen").await;
    token_of(&callback(&vault, "staff", &query, &cookie).await);
    refused_with(
        &callback(&vault, "staff", &query, &cookie).await,
        StatusCode::BAD_REQUEST,
        "sign_in_expired",
    );
    // The staff callback does not take a citizen's state.
    let (authorize, cookie) = start(&vault, "citizen").await;
    let query = at_provider(&authorize, "cong.dan").await;
    refused_with(
        &callback(&vault, "staff", &query, &cookie).await,
        StatusCode::BAD_REQUEST,
        "sign_in_expired",
    );
    assert_eq!(sign_ins(&vault, "denied").await, 4);
    assert_eq!(sign_ins(&vault, "allowed").await, 1);
}

#[tokio::test]
async fn people_whose_claims_map_to_no_session_see_a_page_saying_why_and_are_logged() {
    let vault = vault().await;
    let cases = [
        ("staff", "khong.vaitro", "no_role"),
        ("staff", "vai.tro.la", "unknown_role"),
        ("staff", "van.phong.sai", "bad_office"),
        ("citizen", "cong.dan.muc1", "acr_too_low"),
        ("citizen", "cong.dan.sai", "bad_national_id"),
        ("staff", "no.such.person", "cancelled"),
    ];
    for (n, (kind, login, code)) in cases.iter().enumerate() {
        let reply = sign_in(&vault, kind, login).await;
        refused_with(&reply, StatusCode::FORBIDDEN, code);
        assert_eq!(sign_ins(&vault, "denied").await, n as i64 + 1, "{login}");
    }
    // The low assurance page names the level needed.
    let reply = sign_in(&vault, "citizen", "cong.dan.muc1").await;
    assert!(String::from_utf8_lossy(&reply.body).contains("vneid-2"));
    assert_eq!(sign_ins(&vault, "allowed").await, 0);
    // The refused citizen is named by blind index, never by number.
    let clear = vault
        .count("SELECT COUNT(*) FROM audit_entries WHERE reason LIKE '%048090005678%' OR actor LIKE '%048090005678%'")
        .await;
    assert_eq!(clear, 0);
}

#[tokio::test]
async fn signing_out_revokes_the_token_and_sends_the_browser_to_the_providers_end_session() {
    let vault = vault().await;
    let token = token_of(&sign_in(&vault, "staff", "lan.nguyen").await);
    let out = vault.post("/v1/me/sign-out", &token, json!({})).await;
    out.expect(StatusCode::OK);
    let next = out.json()["end_session_url"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with(&format!("{}/session/end?", provider().issuer)),
        "{next}"
    );
    assert!(next.contains("post_logout_redirect_uri="), "{next}");
    // The provider takes it (its sign-out confirmation page).
    let page = reqwest::get(&next).await.unwrap();
    assert_eq!(page.status(), 200);
    vault
        .get("/v1/me", &token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'session.sign_out'")
            .await,
        1
    );
    // A link's session signs out too, with nowhere else to go.
    let link = vault.clerk();
    let out = vault.post("/v1/me/sign-out", &link, json!({})).await;
    assert_eq!(out.json()["end_session_url"], Value::Null);
    vault
        .get("/v1/me", &link)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_provider_that_does_not_answer_is_said_so_within_seconds() {
    // A port nothing listens on, and one that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    for issuer in ["http://127.0.0.1:9".to_owned(), silent_url] {
        let vault = TestVault::with(|s| {
            staff_through(s, &issuer);
            s.sign_in.oidc_timeout_seconds = 2;
        })
        .await;
        let began = Instant::now();
        let reply = vault.get("/auth/staff/login", "").await;
        refused_with(
            &reply,
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unreachable",
        );
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{issuer}: {:?}",
            began.elapsed()
        );
    }
}

#[tokio::test]
async fn no_parameter_chooses_where_the_browser_goes() {
    let vault = vault().await;
    // A return address or redirect URI slipped into the start is ignored: the provider is told
    // hoso's own callback, and the end goes to the console itself.
    let reply = vault
        .get("/auth/staff/login?return_to=https://evil.example/&redirect_uri=https://evil.example/cb", "")
        .await;
    let to = location(&reply.headers);
    assert!(to.starts_with(&provider().issuer), "{to}");
    assert!(!to.contains("evil"), "{to}");
    let redirect = url::Url::parse(&to).unwrap();
    let redirect_uri = redirect
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1;
    assert!(
        redirect_uri.ends_with("/auth/staff/callback"),
        "{redirect_uri}"
    );
    assert!(
        redirect_uri.starts_with(&vault.state.vault.console_url),
        "{redirect_uri}"
    );
    // The provider refuses a redirect URI it does not know (its own check, seen from hoso's
    // side: no code is ever sent elsewhere).
    let evil = to.replace(
        &url::form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect::<String>(),
        "https%3A%2F%2Fevil.example%2Fcb",
    );
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&evil)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error(), "{}", answer.status());
    // The providers offered to the console's front door.
    let offered = vault.get("/auth/providers", "").await.json();
    assert_eq!(offered, json!({"staff": true, "citizen": true}));
    let plain = TestVault::new().await;
    assert_eq!(
        plain.get("/auth/providers", "").await.json(),
        json!({"staff": false, "citizen": false})
    );
    refused_with(
        &plain.get("/auth/staff/login", "").await,
        StatusCode::NOT_IMPLEMENTED,
        "not_configured",
    );
}

/// A provider made here, to answer what a real one never signs: a forged, expired or misdirected
/// ID token, `alg: none`, HS256 keyed with the provider's own public key. It serves discovery,
/// its keys and a token endpoint that answers whatever ID token the test sets, made from the
/// nonce hoso sent.
mod fake {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::{Value, json};

    /// How the next ID token is made from the claims a good one would carry.
    pub type Forge = Box<dyn Fn(&Provider, Value) -> String + Send + Sync>;

    pub struct Provider {
        pub issuer: String,
        /// The signing keys, by kid; the JWKS publishes `published` of them.
        pub keys: Mutex<Vec<(String, Ed25519KeyPair)>>,
        pub published: Mutex<usize>,
        pub forge: Mutex<Option<Forge>>,
        pub nonce: Mutex<String>,
        /// What its userinfo endpoint answers.
        pub userinfo: Mutex<Value>,
    }

    pub fn key(kid: &str) -> (String, Ed25519KeyPair) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        (
            kid.to_owned(),
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        )
    }

    impl Provider {
        /// A good ID token's claims for `hoso-staff`, as lan.nguyen the clerk.
        pub fn claims(&self) -> Value {
            let now = hoso::db::now_ms() / 1000;
            json!({
                "iss": self.issuer, "aud": "hoso-staff", "sub": "lan.nguyen",
                "iat": now, "exp": now + 300, "nonce": *self.nonce.lock().unwrap(),
                "hoso_role": "clerk", "hoso_office": "UBND-HAICHAU",
            })
        }

        /// Signs `claims` with the key `kid` (EdDSA), as a provider does.
        pub fn sign(&self, kid: &str, claims: &Value) -> String {
            self.sign_typ(kid, "JWT", claims)
        }

        /// [`Provider::sign`] with another `typ` (`at+jwt` for an RFC 9068 access token).
        pub fn sign_typ(&self, kid: &str, typ: &str, claims: &Value) -> String {
            let keys = self.keys.lock().unwrap();
            let (_, pair) = keys.iter().find(|(k, _)| k == kid).unwrap();
            let header = json!({"alg": "EdDSA", "typ": typ, "kid": kid});
            signed(&header, claims, |m| pair.sign(m).as_ref().to_vec())
        }

        pub fn public_key(&self, kid: &str) -> Vec<u8> {
            let keys = self.keys.lock().unwrap();
            keys.iter()
                .find(|(k, _)| k == kid)
                .unwrap()
                .1
                .public_key()
                .as_ref()
                .to_vec()
        }
    }

    /// header.claims.signature, with `sign` over the first two.
    pub fn signed(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let message = format!("{}.{}", part(header), part(claims));
        let signature = URL_SAFE_NO_PAD.encode(sign(message.as_bytes()));
        format!("{message}.{signature}")
    }

    pub async fn start() -> Arc<Provider> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let provider = Arc::new(Provider {
            issuer,
            keys: Mutex::new(vec![key("k1")]),
            published: Mutex::new(1),
            forge: Mutex::new(None),
            nonce: Mutex::new(String::new()),
            userinfo: Mutex::new(json!({})),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        provider
    }

    async fn discovery(State(p): State<Arc<Provider>>) -> Json<Value> {
        Json(json!({
            "issuer": p.issuer,
            "authorization_endpoint": format!("{}/auth", p.issuer),
            "token_endpoint": format!("{}/token", p.issuer),
            "jwks_uri": format!("{}/jwks", p.issuer),
            "userinfo_endpoint": format!("{}/userinfo", p.issuer),
        }))
    }

    async fn userinfo(State(p): State<Arc<Provider>>) -> Json<Value> {
        Json(p.userinfo.lock().unwrap().clone())
    }

    async fn jwks(State(p): State<Arc<Provider>>) -> Json<Value> {
        let published = *p.published.lock().unwrap();
        let keys = p.keys.lock().unwrap();
        let list: Vec<Value> = keys
            .iter()
            .take(published)
            .map(|(kid, pair)| {
                json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                       "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())})
            })
            .collect();
        Json(json!({ "keys": list }))
    }

    async fn token(State(p): State<Arc<Provider>>) -> Json<Value> {
        let claims = p.claims();
        let forge = p.forge.lock().unwrap();
        let id_token = match forge.as_ref() {
            Some(forge) => forge(&p, claims),
            None => p.sign("k1", &claims),
        };
        Json(json!({"access_token": "opaque", "token_type": "Bearer", "id_token": id_token}))
    }
}

/// A vault whose staff sign in through the fake provider.
async fn vault_with_fake(p: &fake::Provider) -> TestVault {
    TestVault::with(|s| staff_through(s, &p.issuer)).await
}

/// A sign-in through the fake provider whose token endpoint answers `forge`'s token.
async fn with_forged(
    vault: &TestVault,
    p: &fake::Provider,
    forge: Option<fake::Forge>,
) -> crate::common::Reply {
    *p.forge.lock().unwrap() = forge;
    let (authorize, cookie) = start(vault, "staff").await;
    let url = url::Url::parse(&authorize).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .unwrap()
            .1
            .into_owned()
    };
    assert_eq!(param("code_challenge_method"), "S256");
    *p.nonce.lock().unwrap() = param("nonce");
    let query = format!("code=c0de&state={}", param("state"));
    callback(vault, "staff", &query, &cookie).await
}

#[tokio::test]
async fn forged_misdirected_or_expired_id_tokens_give_no_session_and_a_log_entry() {
    let p = fake::start().await;
    let vault = vault_with_fake(&p).await;
    // The genuine article first, so each refusal below is the token's doing.
    token_of(&with_forged(&vault, &p, None).await);
    let now = hoso::db::now_ms() / 1000;
    let edit = |change: fn(&mut Value, i64)| -> Option<fake::Forge> {
        Some(Box::new(move |p: &fake::Provider, mut claims: Value| {
            change(&mut claims, now);
            p.sign("k1", &claims)
        }))
    };
    let cases: Vec<(&str, Option<fake::Forge>)> = vec![
        (
            "another issuer",
            edit(|c, _| c["iss"] = json!("https://sso.elsewhere.example")),
        ),
        (
            "another client",
            edit(|c, _| c["aud"] = json!("someone-else")),
        ),
        (
            "several audiences, no azp",
            edit(|c, _| c["aud"] = json!(["hoso-staff", "someone-else"])),
        ),
        (
            "azp of another client",
            edit(|c, _| c["azp"] = json!("someone-else")),
        ),
        (
            "expired",
            edit(|c, now| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600)
            }),
        ),
        (
            "issued in the future",
            edit(|c, now| c["iat"] = json!(now + 3600)),
        ),
        (
            "no iat",
            edit(|c, _| {
                c.as_object_mut().unwrap().remove("iat");
            }),
        ),
        (
            "no exp",
            edit(|c, _| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "another nonce",
            edit(|c, _| c["nonce"] = json!("not-the-one-sent")),
        ),
        (
            "no nonce",
            edit(|c, _| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
        ),
        (
            "alg none",
            Some(Box::new(|_: &fake::Provider, claims: Value| {
                fake::signed(&json!({"alg": "none", "typ": "JWT"}), &claims, |_| {
                    Vec::new()
                })
            })),
        ),
        (
            "HS256 keyed with the provider's public key",
            Some(Box::new(|p: &fake::Provider, claims: Value| {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &p.public_key("k1"));
                fake::signed(
                    &json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
                    &claims,
                    |m| ring::hmac::sign(&key, m).as_ref().to_vec(),
                )
            })),
        ),
        (
            "a key the provider does not publish",
            Some(Box::new(|_: &fake::Provider, claims: Value| {
                let (_, stranger) = fake::key("k1");
                use ring::signature::KeyPair as _;
                let _ = stranger.public_key();
                fake::signed(
                    &json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
                    &claims,
                    |m| stranger.sign(m).as_ref().to_vec(),
                )
            })),
        ),
        (
            "a flipped signature",
            Some(Box::new(|p: &fake::Provider, claims: Value| {
                let good = p.sign("k1", &claims);
                let (rest, sig) = good.rsplit_once('.').unwrap();
                let flipped = if sig.starts_with('A') {
                    sig.replacen('A', "B", 1)
                } else {
                    format!("A{}", &sig[1..])
                };
                format!("{rest}.{flipped}")
            })),
        ),
    ];
    let count = cases.len() as i64;
    for (what, forge) in cases {
        let reply = with_forged(&vault, &p, forge).await;
        let page = String::from_utf8_lossy(&reply.body);
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}: {page}");
        assert!(
            page.contains("data-code=\"sign_in_invalid\""),
            "{what}: {page}"
        );
    }
    assert_eq!(sign_ins(&vault, "denied").await, count);
    assert_eq!(sign_ins(&vault, "allowed").await, 1);
}

#[tokio::test]
async fn a_provider_that_rotates_its_signing_key_is_followed_to_the_new_key() {
    let p = fake::start().await;
    let vault = vault_with_fake(&p).await;
    token_of(&with_forged(&vault, &p, None).await);
    // The provider adds a key, publishes it and signs with it: hoso's cached keys do not know
    // it, so it reads them again at once.
    p.keys.lock().unwrap().push(fake::key("k2"));
    *p.published.lock().unwrap() = 2;
    let reply = with_forged(
        &vault,
        &p,
        Some(Box::new(|p: &fake::Provider, claims: Value| {
            p.sign("k2", &claims)
        })),
    )
    .await;
    token_of(&reply);
    // A kid the provider never published: refused, and the keys are not read again within the
    // minute (a third key published now is not seen yet).
    p.keys.lock().unwrap().push(fake::key("k3"));
    let forged = with_forged(
        &vault,
        &p,
        Some(Box::new(|p: &fake::Provider, claims: Value| {
            p.sign("k3", &claims)
        })),
    )
    .await;
    refused_with(&forged, StatusCode::FORBIDDEN, "sign_in_invalid");
    *p.published.lock().unwrap() = 3;
    let soon = with_forged(
        &vault,
        &p,
        Some(Box::new(|p: &fake::Provider, claims: Value| {
            p.sign("k3", &claims)
        })),
    )
    .await;
    refused_with(&soon, StatusCode::FORBIDDEN, "sign_in_invalid");
}

/// As people do it: a real headless Chromium on a real `hoso serve`, through the provider's own
/// login page. The clerk signs in, signs out (the provider's end-session page, confirmed, brings
/// the browser back), then the officer signs in and opens a grant from their list.
#[test]
fn in_a_browser_staff_sign_in_through_the_providers_page_and_sign_out_through_it() {
    crate::browser::run_story(browser_story);
}

async fn browser_story() {
    use crate::browser::Browser;
    use crate::processes::start_fleet_with;
    let p = provider();
    let vault = vault().await;
    let doc = vault.take_in(CITIZEN_A, "cccd", &png(3, 4000)).await;
    let (grant, _) = vault.grant(CITIZEN_A, &["cccd"], "binh.tran", 3).await;
    let secret = p.secret_file.to_str().unwrap().to_owned();
    let env = [
        ("HOSO_OIDC_STAFF_ISSUER", p.issuer.as_str()),
        ("HOSO_OIDC_STAFF_CLIENT_ID", "hoso-staff"),
        ("HOSO_OIDC_STAFF_CLIENT_SECRET_FILE", secret.as_str()),
        ("HOSO_OIDC_CITIZEN_ISSUER", p.issuer.as_str()),
        ("HOSO_OIDC_CITIZEN_CLIENT_ID", "hoso-citizen"),
        ("HOSO_OIDC_CITIZEN_CLIENT_SECRET_FILE", secret.as_str()),
    ];
    let fleet = start_fleet_with(&vault, 1, &env).await;
    let console = format!("http://{}/", fleet.0[0].1);
    let browser = Browser::open().await;
    browser.goto("about:blank").await;
    browser.goto(&console).await;
    browser
        .wait("#signin-citizen", Some("định danh điện tử"))
        .await;
    browser.wait("#signin-staff", Some("cán bộ")).await;
    browser.screenshot("sign-in-front-door").await;
    browser.check_accessible("sign-in-front-door").await;

    // A refused sign-in ends on a plain page that passes the same checks.
    browser
        .goto(&format!(
            "{console}auth/staff/callback?state=not-one-of-ours"
        ))
        .await;
    browser.wait("#sign-in-error", None).await;
    browser.check_accessible("sign-in-refused").await;
    browser.click("#back").await;
    browser.wait("#signin-staff", None).await;
    browser.click("#signin-staff").await;
    browser.fill("#login", "lan.nguyen").await;
    browser.fill("#password", "any").await;
    browser.click("#submit").await;
    browser.wait("#who", Some("lan.nguyen")).await;
    browser.wait("#who", Some("UBND-HAICHAU")).await;
    assert!(
        !browser.url().await.contains("token"),
        "the token leaves the address bar"
    );
    browser.screenshot("signed-in-through-provider").await;
    browser.check_accessible("signed-in-through-provider").await;

    browser.click("#signout").await;
    browser.click("button[name=logout][value=yes]").await;
    // Back at the console, signed out there and at the provider.
    browser.wait("#signin-staff", None).await;
    assert!(
        browser.url().await.starts_with(&console),
        "{}",
        browser.url().await
    );
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'session.sign_out'")
            .await,
        1
    );

    // The officer: the provider asks who it is again (the clerk's session there has ended).
    browser.click("#signin-staff").await;
    browser.fill("#login", "binh.tran").await;
    browser.fill("#password", "any").await;
    browser.click("#submit").await;
    browser.wait("#who", Some("binh.tran")).await;
    browser
        .wait("#my-grants", Some("000.00.31.H40-261124-0001"))
        .await;
    browser.screenshot("officer-grants-list").await;
    browser.check_accessible("officer-grants-list").await;
    browser.click(".open-grant").await;
    browser
        .wait("#scope-dossier", Some("000.00.31.H40-261124-0001"))
        .await;
    browser.wait("#documents", None).await;
    let reads = vault
        .count(&format!(
            "SELECT COUNT(*) FROM audit_entries WHERE grant_id = '{grant}' AND actor = 'binh.tran' AND outcome = 'allowed'"
        ))
        .await;
    assert!(
        reads >= 1,
        "the officer's reads through the grant are logged as theirs"
    );

    // The admin (by link) sees the officer's session among the live ones and ends it.
    let admin = hoso::records::tokens::issue(
        &vault.state.vault,
        hoso::auth::TokenRequest {
            role: hoso::domain::Role::Admin,
            sub: "admin.hung",
            office: Some("SO-TTTT"),
            ttl_seconds: 600,
            grant: None,
            via: None,
        },
    )
    .await
    .unwrap();
    browser.goto("about:blank").await;
    browser.goto(&format!("{console}#token={admin}")).await;
    browser.wait("#session-list", Some("binh.tran")).await;
    browser.wait("#session-list", Some("Phiên của bạn")).await;
    browser
        .js(
            "document.getElementById('sessions').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.screenshot("admin-sessions").await;
    browser.check_accessible("admin-sessions").await;
    browser.click(".end-session").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.text("#sessions").await.contains("binh.tran") {
        assert!(
            Instant::now() < deadline,
            "the ended session leaves the list"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'token.revoke' AND reason LIKE '%session of binh.tran%'")
            .await,
        1
    );
    let _ = doc;
}

#[tokio::test]
async fn agency_systems_call_the_api_with_the_staff_providers_jwt_access_tokens() {
    let p = fake::start().await;
    let vault = vault_with_fake(&p).await;
    vault.take_in(CITIZEN_A, "cccd", &png(4, 4000)).await;
    let now = hoso::db::now_ms() / 1000;
    // What a provider issues a province's one-stop software by client credentials.
    let access = |change: &dyn Fn(&mut Value)| {
        let mut claims = json!({
            "iss": p.issuer, "aud": "hoso", "sub": "motcua-danang", "client_id": "motcua-danang",
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
            "hoso_role": "clerk", "hoso_office": "TTHCC-DANANG",
        });
        change(&mut claims);
        claims
    };
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    let good = p.sign_typ("k1", "at+jwt", &access(&|_| {}));
    let reply = vault.get(&path, &good).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.json()["documents"].as_array().unwrap().len(), 1);
    let me = vault.get("/v1/me", &good).await.json();
    assert_eq!(
        (
            me["role"].as_str(),
            me["sub"].as_str(),
            me["office"].as_str()
        ),
        (Some("clerk"), Some("motcua-danang"), Some("TTHCC-DANANG"))
    );
    // Logged as the agency system's own act.
    let listed = vault
        .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'document.list' AND actor = 'motcua-danang'")
        .await;
    assert_eq!(listed, 1);

    let refused = [
        (
            "an ID token, not an access token",
            p.sign("k1", &access(&|_| {})),
        ),
        (
            "for another audience",
            p.sign_typ("k1", "at+jwt", &access(&|c| c["aud"] = json!("hoso-staff"))),
        ),
        (
            "from another issuer",
            p.sign_typ(
                "k1",
                "at+jwt",
                &access(&|c| c["iss"] = json!("https://elsewhere.example")),
            ),
        ),
        (
            "expired",
            p.sign_typ(
                "k1",
                "at+jwt",
                &access(&|c| {
                    c["iat"] = json!(now - 7200);
                    c["exp"] = json!(now - 3600)
                }),
            ),
        ),
        (
            "without client_id",
            p.sign_typ(
                "k1",
                "at+jwt",
                &access(&|c| {
                    c.as_object_mut().unwrap().remove("client_id");
                }),
            ),
        ),
        (
            "alg none",
            fake::signed(
                &json!({"alg": "none", "typ": "at+jwt"}),
                &access(&|_| {}),
                |_| Vec::new(),
            ),
        ),
        ("opaque", "2YotnFZFEjr1zCsicMWpAA".to_owned()),
    ];
    for (what, token) in refused {
        let reply = vault.get(&path, &token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.code(), "unauthenticated", "{what}");
    }
    let opaque = vault.get(&path, "2YotnFZFEjr1zCsicMWpAA").await.json();
    assert!(
        opaque["error"]["message"]
            .as_str()
            .unwrap()
            .contains("opaque"),
        "{opaque}"
    );
    // Claims that give no role: refused as forbidden.
    let no_role = p.sign_typ(
        "k1",
        "at+jwt",
        &access(&|c| {
            c.as_object_mut().unwrap().remove("hoso_role");
        }),
    );
    vault
        .get(&path, &no_role)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    // A vault without a staff provider takes none.
    let plain = TestVault::new().await;
    plain
        .get(&path, &good)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn an_admin_sees_the_live_sessions_and_ends_one_at_once() {
    let vault = vault().await;
    let clerk = token_of(&sign_in(&vault, "staff", "lan.nguyen").await);
    let citizen = token_of(&sign_in(&vault, "citizen", "cong.dan").await);
    let link = hoso::records::tokens::issue(
        &vault.state.vault,
        hoso::auth::TokenRequest {
            role: hoso::domain::Role::Auditor,
            sub: "hoa.le",
            office: Some("THANHTRA-DN"),
            ttl_seconds: 600,
            grant: None,
            via: None,
        },
    )
    .await
    .unwrap();
    let signed_out = token_of(&sign_in(&vault, "staff", "binh.tran").await);
    vault
        .post("/v1/me/sign-out", &signed_out, json!({}))
        .await
        .expect(StatusCode::OK);

    let admin = vault.admin();
    let list = vault.get("/v1/sessions", &admin).await;
    list.expect(StatusCode::OK);
    let sessions = list.json()["sessions"].as_array().unwrap().clone();
    let who: Vec<(&str, &str)> = sessions
        .iter()
        .map(|s| (s["actor"].as_str().unwrap(), s["via"].as_str().unwrap()))
        .collect();
    assert_eq!(who.len(), 3, "{who:?}");
    assert!(
        who.contains(&("lan.nguyen", "staff")) && who.contains(&("hoa.le", "link")),
        "{who:?}"
    );
    assert!(
        who.iter()
            .any(|(a, v)| a.starts_with("citizen:") && *v == "citizen"),
        "{who:?}"
    );
    assert!(!String::from_utf8_lossy(&list.body).contains("048090001234"));

    // Ending the clerk's session refuses their token at once, logged naming whose it was.
    let jti = sessions
        .iter()
        .find(|s| s["actor"] == "lan.nguyen")
        .unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    vault
        .delete(&format!("/v1/sessions/{jti}"), &admin)
        .await
        .expect(StatusCode::NO_CONTENT);
    vault
        .get("/v1/me", &clerk)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    vault.get("/v1/me", &citizen).await.expect(StatusCode::OK);
    vault.get("/v1/me", &link).await.expect(StatusCode::OK);
    let after = vault.get("/v1/sessions", &admin).await.json();
    assert_eq!(after["sessions"].as_array().unwrap().len(), 2);
    let ended = vault
        .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'token.revoke' AND reason LIKE '%session of lan.nguyen%'")
        .await;
    assert_eq!(ended, 1);
    // Only admins see or end sessions; a session that is not one is not found.
    vault
        .get("/v1/sessions", &vault.clerk())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .delete(&format!("/v1/sessions/{jti}"), &vault.clerk())
        .await
        .expect(StatusCode::FORBIDDEN);
    vault
        .delete("/v1/sessions/0190a4b2-0000-7000-8000-00000000beef", &admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn claims_missing_from_the_id_token_are_read_from_userinfo_for_the_same_sub_only() {
    let p = fake::start().await;
    let vault = vault_with_fake(&p).await;
    // The ID token carries the role but no office; userinfo has the office (and tries to raise
    // the role, which it cannot: it only fills what the ID token lacks).
    let without_office: Option<fake::Forge> =
        Some(Box::new(|p: &fake::Provider, mut claims: Value| {
            claims.as_object_mut().unwrap().remove("hoso_office");
            p.sign("k1", &claims)
        }));
    *p.userinfo.lock().unwrap() =
        json!({"sub": "lan.nguyen", "hoso_office": "UBND-HAICHAU", "hoso_role": "admin"});
    let token = token_of(&with_forged(&vault, &p, without_office).await);
    let me = vault.get("/v1/me", &token).await.json();
    assert_eq!(
        (me["role"].as_str(), me["office"].as_str()),
        (Some("clerk"), Some("UBND-HAICHAU"))
    );
    // Userinfo about someone else is refused.
    *p.userinfo.lock().unwrap() = json!({"sub": "someone.else", "hoso_office": "UBND-HAICHAU"});
    let without_office: Option<fake::Forge> =
        Some(Box::new(|p: &fake::Provider, mut claims: Value| {
            claims.as_object_mut().unwrap().remove("hoso_office");
            p.sign("k1", &claims)
        }));
    refused_with(
        &with_forged(&vault, &p, without_office).await,
        StatusCode::FORBIDDEN,
        "sign_in_invalid",
    );
}

#[tokio::test]
async fn the_sign_in_cookie_is_secure_when_the_console_is_served_over_https() {
    let p = provider();
    let vault = TestVault::with(|s| {
        s.public_url = Some("https://hoso.haichau.example".into());
        staff_through(s, &p.issuer);
    })
    .await;
    let reply = vault.get("/auth/staff/login", "").await;
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("__Host-hoso-sign-in="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/;"),
        "{cookie}"
    );
    let to = location(&reply.headers);
    assert!(
        to.contains("redirect_uri=https%3A%2F%2Fhoso.haichau.example%2Fauth%2Fstaff%2Fcallback"),
        "{to}"
    );
}

#[tokio::test]
async fn a_callback_whose_iss_is_another_issuer_or_missing_is_refused() {
    // RFC 9207: the test provider advertises `iss` on its answers, so one that names another
    // issuer (a mix-up attack) or none at all is refused, logged.
    let vault = vault().await;
    let issuer =
        url::form_urlencoded::byte_serialize(provider().issuer.as_bytes()).collect::<String>();
    for change in ["swap", "drop"] {
        let (authorize, cookie) = start(&vault, "staff").await;
        let query = at_provider(&authorize, "lan.nguyen").await;
        assert!(query.contains(&format!("iss={issuer}")), "{query}");
        let query = match change {
            "swap" => query.replace(
                &format!("iss={issuer}"),
                "iss=https%3A%2F%2Fsso.elsewhere.example",
            ),
            _ => query
                .replace(&format!("&iss={issuer}"), "")
                .replace(&format!("iss={issuer}&"), ""),
        };
        assert!(query.contains("iss=") == (change == "swap"), "{query}");
        refused_with(
            &callback(&vault, "staff", &query, &cookie).await,
            StatusCode::FORBIDDEN,
            "sign_in_invalid",
        );
    }
    assert_eq!(sign_ins(&vault, "denied").await, 2);
    assert_eq!(sign_ins(&vault, "allowed").await, 0);
}

#[tokio::test]
async fn a_flood_of_sign_in_starts_is_answered_429_instead_of_filling_the_table() {
    let p = provider();
    // Within one minute (a run that straddles a minute's turn is made again).
    for _ in 0..2 {
        let vault = TestVault::with(|s| {
            staff_through(s, &p.issuer);
            s.sign_in.sign_in_starts_per_minute = 3;
        })
        .await;
        let minute = hoso::db::now_ms() / 60_000;
        let mut replies = Vec::new();
        for _ in 0..5 {
            replies.push(vault.get("/auth/staff/login", "").await);
        }
        if hoso::db::now_ms() / 60_000 != minute {
            continue;
        }
        let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
        assert_eq!(statuses[..3], [StatusCode::SEE_OTHER; 3], "{statuses:?}");
        for reply in &replies[3..] {
            refused_with(reply, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
        }
        assert_eq!(vault.count("SELECT COUNT(*) FROM sign_in_flows").await, 3);
        return;
    }
    panic!("two runs straddled a minute's turn");
}
