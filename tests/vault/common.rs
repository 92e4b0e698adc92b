//! A vault on a real SQLite file, a real local object store and throwaway keys in a temp dir,
//! driven through the real router.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use hoso::app::{App, AppState};
use hoso::auth::{self, TokenRequest};
use hoso::config::{FaultPoint, Settings};
use hoso::domain::Role;

pub const CITIZEN_A: &str = "001099012345";
pub const CITIZEN_B: &str = "079203004567";

pub struct TestVault {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    router: Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.code(), code);
    }
}

/// Which backend pair the suite runs on: `HOSO_TEST_BACKEND` = `sqlite` (default: SQLite file +
/// local directory) or `postgres-s3` (PostgreSQL + an S3-compatible server, both required: the
/// suite fails, naming what is missing, rather than skip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    SqliteLocal,
    PostgresS3,
}

pub fn backend() -> Backend {
    match std::env::var("HOSO_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::SqliteLocal,
        Ok("postgres-s3") => Backend::PostgresS3,
        Ok(other) => {
            panic!("HOSO_TEST_BACKEND={other:?} is not a backend pair (sqlite, postgres-s3)")
        }
    }
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("HOSO_TEST_BACKEND=postgres-s3 needs {name}; run the suite through scripts/test, which starts PostgreSQL and Garage")
    })
}

/// A fresh, empty PostgreSQL database for one test.
async fn fresh_postgres_database() -> String {
    let server = std::env::var("HOSO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("hoso_t_{}", uuid::Uuid::now_v7().simple());
    sqlx::any::install_default_drivers();
    let mut admin =
        <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {server} is unreachable ({e}); the postgres-s3 suite needs it"
                )
            });
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{server}/{name}")
}

pub async fn settings(dir: &Path) -> Settings {
    let mut settings = Settings::embedded_in(dir);
    // The whole suite once more with the master keys in a SoftHSM2 token (scripts/test).
    match std::env::var("HOSO_TEST_KEY_STORE").as_deref() {
        Err(_) | Ok("") | Ok("files") => {}
        Ok("pkcs11") => crate::hsm::on_token(&mut settings),
        Ok(other) => panic!("HOSO_TEST_KEY_STORE={other:?} is not a key store (files, pkcs11)"),
    }
    if backend() == Backend::PostgresS3 {
        let bucket = required("HOSO_TEST_S3_BUCKET");
        let prefix = format!("t-{}", uuid::Uuid::now_v7().simple());
        settings.database_url = fresh_postgres_database().await.parse().unwrap();
        settings.storage_url = format!("s3://{bucket}/{prefix}").parse().unwrap();
    }
    settings
}

impl TestVault {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(change: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path()).await;
        change(&mut s);
        Self::open(dir, s).await
    }

    pub async fn open(dir: tempfile::TempDir, settings: Settings) -> Self {
        let storage = settings.storage_url.clone();
        let state = AppState(Arc::new(App::open(settings, true).await.unwrap()));
        assert!(
            state.vault.blobs.ready().await,
            "the object store at {storage} is unreachable"
        );
        let router = hoso::http::app(state.clone());
        Self { dir, state, router }
    }

    /// The same vault directory opened again, as after a restart, with other settings.
    pub async fn restart(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut s = self.state.settings.clone();
        s.test_fault = None;
        change(&mut s);
        let dir = self.dir;
        drop(self.router);
        self.state.vault.db.pool.close().await;
        drop(self.state);
        Self::open(dir, s).await
    }

    /// After the database was rolled back under it: this process notices by itself (its log
    /// writer and readiness refuse, with the rollback alarm), and the insider restarts the
    /// vault, as after restoring a database; the fresh process knows no better.
    pub async fn noticed_then_restarted(self) -> Self {
        self.get("/v1/audit/verify", &self.auditor())
            .await
            .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        let ready = self.get("/readyz", "").await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        let alarm = ready.json()["audit_log_rolled_back"].clone();
        assert!(alarm.is_string(), "the alarm names the problem: {alarm}");
        self.restart(|_| {}).await
    }

    /// What `hoso audit verify` says of this vault: whether it exited 0, and what it printed
    /// (stdout, then how it exited and its stderr, for a failure's message). The auditor's way
    /// when the running vault refuses (its own rollback alarm).
    pub async fn cli_verify(&self) -> (bool, String) {
        let out = hoso_cli(self, &["audit", "verify"]).await;
        (
            out.status.success(),
            format!(
                "{}\n[{}] {}",
                String::from_utf8_lossy(&out.stdout),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn token(&self, role: Role, sub: &str, office: Option<&str>) -> String {
        let request = TokenRequest {
            role,
            sub,
            office,
            ttl_seconds: 3600,
            grant: None,
            via: None,
        };
        auth::issue(
            &self.state.vault.keys(),
            &self.state.vault.token_policy,
            request,
        )
        .unwrap()
        .0
    }

    pub fn clerk(&self) -> String {
        self.token(Role::Clerk, "clerk.lan", Some("UBND-HAICHAU"))
    }

    pub fn auditor(&self) -> String {
        self.token(Role::Auditor, "auditor.minh", Some("THANHTRA"))
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, "admin.hung", Some("SO-TTTT"))
    }

    pub fn citizen(&self, national_id: &str) -> String {
        self.token(Role::Citizen, national_id, None)
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        let request = Request::delete(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    pub async fn intake(
        &self,
        token: &str,
        national_id: &str,
        metadata: &Value,
        file: &[u8],
    ) -> Reply {
        let (content_type, body) = multipart(&[
            (
                "metadata",
                metadata.to_string().as_bytes(),
                "application/json",
            ),
            ("file", file, "application/pdf"),
        ]);
        let request = Request::post(format!("/v1/citizens/{national_id}/documents"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// Takes a document in as the desk clerk and returns its id.
    pub async fn take_in(&self, national_id: &str, doc_type: &str, file: &[u8]) -> String {
        let reply = self
            .intake(&self.clerk(), national_id, &metadata(doc_type), file)
            .await;
        reply.expect(StatusCode::CREATED);
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    pub async fn grant(
        &self,
        national_id: &str,
        doc_types: &[&str],
        grantee: &str,
        max_uses: i64,
    ) -> (String, String) {
        self.grant_for(national_id, doc_types, grantee, max_uses, 3600)
            .await
    }

    /// A grant that lives `ttl_seconds`.
    pub async fn grant_for(
        &self,
        national_id: &str,
        doc_types: &[&str],
        grantee: &str,
        max_uses: i64,
        ttl_seconds: i64,
    ) -> (String, String) {
        let reply = self
            .post(
                "/v1/grants",
                &self.clerk(),
                json!({
                    "national_id": national_id,
                    "doc_types": doc_types,
                    "case_ref": "000.00.31.H40-261124-0001",
                    "purpose": "Đăng ký kết hôn",
                    "grantee": grantee,
                    "grantee_office": "STP-DANANG",
                    "ttl_seconds": ttl_seconds,
                    "max_uses": max_uses,
                }),
            )
            .await;
        reply.expect(StatusCode::CREATED);
        let v = reply.json();
        (
            v["grant_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// What `hoso serve`'s checkpointer does every second: publishes a checkpoint of the log as
    /// it is now, if one is due (requests never publish).
    pub async fn publish_checkpoint(&self) {
        let vault = &self.state.vault;
        vault
            .checkpoints
            .publish_if_due(&vault.db, &vault.blobs, &vault.keys())
            .await
            .unwrap();
    }

    /// Runs SQL straight against the database file, as an intruder with file access would.
    pub async fn sql(&self, statement: &str) {
        sqlx::raw_sql(statement)
            .execute(&self.state.vault.db.pool)
            .await
            .unwrap();
    }

    pub async fn sql_blob(&self, statement: &str, blob: Vec<u8>, id: &str) {
        sqlx::query(statement)
            .bind(blob)
            .bind(id.to_owned())
            .execute(&self.state.vault.db.pool)
            .await
            .unwrap();
    }

    pub async fn fetch_blob(&self, statement: &str, id: &str) -> Vec<u8> {
        use sqlx::Row;
        let row = sqlx::query(statement)
            .bind(id.to_owned())
            .fetch_one(&self.state.vault.db.pool)
            .await
            .unwrap();
        row.try_get::<Vec<u8>, _>(0).unwrap()
    }

    pub async fn count(&self, statement: &str) -> i64 {
        use sqlx::Row;
        let row = sqlx::query(statement)
            .fetch_one(&self.state.vault.db.pool)
            .await
            .unwrap();
        row.try_get::<i64, _>(0).unwrap()
    }

    /// The one text value a query selects.
    pub async fn fetch_text(&self, statement: &str) -> String {
        use sqlx::Row;
        let row = sqlx::query(statement)
            .fetch_one(&self.state.vault.db.pool)
            .await
            .unwrap();
        row.try_get::<String, _>(0).unwrap()
    }

    /// A document's sealed body, as stored.
    pub async fn object(&self, id: &str) -> Vec<u8> {
        let key = hoso::blob::BlobStore::key_for(uuid::Uuid::parse_str(id).unwrap());
        self.raw_object(&key).await
    }

    /// Replaces a document's sealed body, as an intruder with storage access would.
    pub async fn set_object(&self, id: &str, bytes: Vec<u8>) {
        let key = hoso::blob::BlobStore::key_for(uuid::Uuid::parse_str(id).unwrap());
        self.put_raw_object(&key, bytes).await;
    }

    /// The bytes stored under `key`, as they are.
    pub async fn raw_object(&self, key: &str) -> Vec<u8> {
        let store = self.state.vault.blobs.object_store();
        let got = store
            .get(&object_store::path::Path::from(key))
            .await
            .unwrap();
        got.bytes().await.unwrap().to_vec()
    }

    /// Writes `bytes` under `key` behind the vault's back.
    pub async fn put_raw_object(&self, key: &str, bytes: Vec<u8>) {
        let store = self.state.vault.blobs.object_store();
        store
            .put(&object_store::path::Path::from(key), bytes.into())
            .await
            .unwrap();
    }

    /// Every object in this vault's store.
    pub async fn stored_keys(&self) -> Vec<String> {
        let listed = self.state.vault.blobs.list().await.unwrap();
        listed.into_iter().map(|(key, _)| key).collect()
    }

    /// Every byte the database holds, in a form a needle can be searched for in: the SQLite
    /// files as they are on disk, or a `pg_dump` of the PostgreSQL database (bytea in hex, so
    /// callers search for both a needle and its hex).
    pub fn database_bytes(&self) -> Vec<u8> {
        match backend() {
            Backend::SqliteLocal => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(self.path()).unwrap().flatten() {
                    if entry.file_name().to_string_lossy().starts_with("hoso.db") {
                        bytes.extend(std::fs::read(entry.path()).unwrap());
                    }
                }
                bytes
            }
            Backend::PostgresS3 => {
                let out = std::process::Command::new("pg_dump")
                    .args(["--data-only", self.state.settings.database_url.expose()])
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    out.status.success(),
                    "pg_dump: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
        }
    }

    /// Makes every append to the audit log fail, as a full disk or a lost connection would.
    pub async fn break_audit_log(&self) {
        match backend() {
            Backend::SqliteLocal => self.sql("CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk full'); END;").await,
            Backend::PostgresS3 => self.sql("CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql; CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION audit_down();").await,
        }
    }

    pub async fn mend_audit_log(&self) {
        let statement = match backend() {
            Backend::SqliteLocal => "DROP TRIGGER audit_down",
            Backend::PostgresS3 => "DROP TRIGGER audit_down ON audit_entries",
        };
        self.sql(statement).await;
    }

    pub fn fault(&self) -> Option<FaultPoint> {
        self.state.settings.test_fault
    }
}

pub fn metadata(doc_type: &str) -> Value {
    json!({
        "doc_type": doc_type,
        "doc_number": "079203004567",
        "holder_name": "Trần Thị Ánh Tuyết",
        "issued_on": "2021-04-15",
        "issued_by": "Cục Cảnh sát quản lý hành chính về trật tự xã hội",
        "expires_on": "2046-04-15",
    })
}

pub const BOUNDARY: &str = "hoso-test-boundary-7MA4YWxkTrZu0gW";

pub fn multipart(parts: &[(&str, &[u8], &str)]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, content, content_type) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let filename = if *name == "file" {
            "; filename=\"scan.pdf\""
        } else {
            ""
        };
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes(),
        );
        body.extend_from_slice(format!("Content-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// The start of an intake body whose `file` part stays open: the metadata part, then the file
/// part's headers and a PDF magic number. Streaming tests send the rest (or never do).
pub fn open_intake_body() -> Bytes {
    let (_, head) = multipart(&[(
        "metadata",
        metadata("cccd").to_string().as_bytes(),
        "application/json",
    )]);
    let head = &head[..head.len() - (BOUNDARY.len() + 6)]; // without the closing boundary
    let file_head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan.pdf\"\r\n\r\n%PDF-1.7\n"
    );
    Bytes::from([head, file_head.as_bytes()].concat())
}

/// An intake request as the desk clerk whose body is a stream, with no Content-Length.
pub fn streaming_intake(vault: &TestVault, body: Body) -> Request<Body> {
    Request::post(format!("/v1/citizens/{CITIZEN_A}/documents"))
        .header(header::AUTHORIZATION, format!("Bearer {}", vault.clerk()))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .unwrap()
}

/// A PDF-looking scan of `len` bytes whose content is unique to `seed`.
pub fn pdf(seed: u64, len: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn png(seed: u64, len: usize) -> Vec<u8> {
    let mut out = pdf(seed, len);
    out[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs the `hoso` binary against this vault's settings. It runs on a blocking thread so the
/// test's runtime keeps serving (and releasing pooled connections) meanwhile.
pub async fn hoso_cli(vault: &TestVault, args: &[&str]) -> std::process::Output {
    let s = &vault.state.settings;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"));
    command
        .args(args)
        .env("HOSO_DATABASE_URL", s.database_url.expose())
        .env("HOSO_STORAGE_URL", s.storage_url.to_string())
        .env("HOSO_KEYS_DIR", &s.keys_dir)
        .env("HOSO_LOG", "warn");
    pkcs11_env(&mut command, s);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The PKCS#11 store's settings for a `hoso` process, when the vault uses that store.
pub fn pkcs11_env(command: &mut std::process::Command, s: &Settings) {
    if s.key_store != hoso::config::KeyStoreKind::Pkcs11 {
        return;
    }
    command
        .env("HOSO_KEY_STORE", "pkcs11")
        .env("HOSO_PKCS11_MODULE", s.pkcs11_module.as_ref().unwrap())
        .env(
            "HOSO_PKCS11_TOKEN_LABEL",
            s.pkcs11_token_label.as_ref().unwrap(),
        )
        .env("HOSO_PKCS11_PIN_FILE", s.pkcs11_pin_file.as_ref().unwrap())
        .env(
            "HOSO_PKCS11_LABEL_PREFIX",
            s.pkcs11_label_prefix.as_ref().unwrap(),
        );
}

/// What a database administrator does to make the log look as it was at `keep` entries: the
/// later entries, tree nodes, checkpoints and notes deleted, the head they saved put back.
pub async fn roll_back(vault: &TestVault, keep: i64, head: &(String, String)) {
    vault
        .sql(&format!("DELETE FROM audit_entries WHERE seq > {keep}"))
        .await;
    for level in 0..40 {
        vault
            .sql(&format!(
                "DELETE FROM audit_tree WHERE level = {level} AND idx >= {}",
                keep >> level
            ))
            .await;
    }
    vault
        .sql(&format!("DELETE FROM audit_notes WHERE size > {keep}"))
        .await;
    vault
        .sql(&format!(
            "DELETE FROM audit_signed_heads WHERE seq > {keep}"
        ))
        .await;
    vault
        .sql(&format!(
            "UPDATE audit_head SET seq = {keep}, hash = '{}', signature = '{}'",
            head.0, head.1
        ))
        .await;
}

pub async fn saved_head(vault: &TestVault) -> (String, String) {
    (
        vault.fetch_text("SELECT hash FROM audit_head").await,
        vault.fetch_text("SELECT signature FROM audit_head").await,
    )
}
