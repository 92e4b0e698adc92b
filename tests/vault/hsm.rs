//! Promise 13 (first part): master keys in a hardware security module through PKCS#11 — a real
//! SoftHSM2 token that scripts/test makes (`SOFTHSM2_CONF`, token `hoso-test`). The KEK cannot
//! be read out of the token; a copy of `keys/` and the database without the token decrypts
//! nothing; a vault on files migrates to the token under live intakes and reads, losing
//! nothing; a wrong PIN, a missing module or token stops `serve` with one clear line.

use axum::http::StatusCode;

use crate::common::*;

/// The token scripts/test made, or a failure naming what is missing (never a skip).
pub fn token() -> (String, String, std::path::PathBuf) {
    let need = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the suite through scripts/test, which makes a SoftHSM2 token")
        })
    };
    (
        need("HOSO_TEST_PKCS11_MODULE"),
        need("HOSO_TEST_PKCS11_TOKEN"),
        need("HOSO_TEST_PKCS11_PIN_FILE").into(),
    )
}

/// Settings for the PKCS#11 store on the test token, with a label prefix of this vault's own.
pub fn on_token(s: &mut hoso::config::Settings) {
    if s.key_store == hoso::config::KeyStoreKind::Pkcs11 {
        return; // Already on the token, under this vault's own prefix.
    }
    let (module, label, pin_file) = token();
    s.key_store = hoso::config::KeyStoreKind::Pkcs11;
    s.pkcs11_module = Some(module.into());
    s.pkcs11_token_label = Some(label);
    s.pkcs11_pin_file = Some(pin_file);
    s.pkcs11_label_prefix = Some(format!("t{}", uuid::Uuid::now_v7().simple()));
}

#[tokio::test]
async fn the_master_key_never_leaves_the_token_and_keys_without_it_decrypt_nothing() {
    let vault = TestVault::with(on_token).await;
    let scan = pdf(400, 90_000);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let wrapped = vault
        .fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", &id)
        .await;
    assert_eq!(wrapped.len(), 61, "a token's wrap carries its tag");
    assert_eq!(wrapped[0], b'P');
    let copy = vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await;
    copy.expect(StatusCode::OK);
    assert_eq!(copy.body.as_ref(), scan.as_slice());

    // The token refuses CKA_VALUE, and keeps the key unextractable.
    let keys = vault.state.vault.keys();
    let hsm = keys.hsm().expect("the PKCS#11 store is open");
    assert!(hsm.kek_value_is_sealed(1).unwrap());
    // So does a tool nobody here wrote: OpenSC's pkcs11-tool.
    let (module, label, pin_file) = token();
    let pin = std::fs::read_to_string(&pin_file).unwrap();
    let prefix = vault.state.settings.pkcs11_label_prefix.clone().unwrap();
    let kek_label = format!("{prefix}-kek-000001");
    let out = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            &module,
            "--token-label",
            &label,
            "--login",
            "--pin",
            pin.trim(),
        ])
        .args(["--read-object", "--type", "secrkey", "--label", &kek_label])
        .output()
        .expect("pkcs11-tool (opensc) runs: scripts/test installs it");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "pkcs11-tool read the KEK out: {said}"
    );
    assert!(said.contains("CKR_ATTRIBUTE_SENSITIVE"), "{said}");
    // Nor the blind-index key; and the token refuses CKA_VALUE of the signing keys' private
    // halves (pkcs11-tool does not try to read private keys at all).
    let index_label = format!("{prefix}-blind-index-hmac");
    let out = std::process::Command::new("pkcs11-tool")
        .args(["--module", &module, "--token-label", &label, "--login"])
        .args(["--pin", pin.trim(), "--read-object", "--type", "secrkey"])
        .args(["--label", &index_label])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "pkcs11-tool read the index key: {said}"
    );
    assert!(said.contains("CKR_ATTRIBUTE_SENSITIVE"), "{said}");
    assert!(hsm.index_value_is_sealed().unwrap());
    for purpose in ["token", "attestation", "audit", "export"] {
        assert!(hsm.signing_value_is_sealed(purpose).unwrap(), "{purpose}");
    }
    // Born on the token, the vault has no signing key and no blind-index key in keys/: what is
    // left there are the HMAC keys design.md names (the label prefix is a setting here).
    let mut files: Vec<String> = std::fs::read_dir(&vault.state.settings.keys_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["audit-chain.key", "erasure-ledger.key", "grant-seal.key"],
        "keys/ on the token"
    );

    // keys/ and the database, copied without the token: keys/ holds no master key at all, and
    // a vault on the copy does not start (nothing to decrypt with).
    let stolen = tempfile::tempdir().unwrap();
    let copy = stolen.path().join("keys");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&vault.state.settings.keys_dir)
        .unwrap()
        .flatten()
    {
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let kek_files = std::fs::read_dir(&copy)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("kek-"))
        .count();
    assert_eq!(kek_files, 0, "a master key reached keys/");
    let mut files = vault.state.settings.clone();
    files.key_store = hoso::config::KeyStoreKind::Files;
    files.keys_dir = copy;
    let refused = hoso::app::App::open(files, false).await;
    assert!(
        matches!(refused, Err(hoso::app::StartupError::Keys(_))),
        "a copy of keys/ and the database opened without the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_on_files_migrates_to_the_token_under_live_intakes_and_reads() {
    let vault = TestVault::with(|s| s.key_store = hoso::config::KeyStoreKind::Files).await;
    let mut docs = Vec::new();
    for n in 0..30u64 {
        let scan = pdf(500 + n, 4_000);
        docs.push((vault.take_in(CITIZEN_A, "diploma", &scan).await, scan));
    }
    let jwks_before = vault
        .get("/.well-known/jwks.json", &vault.clerk())
        .await
        .json();
    let vault = vault.restart(on_token).await;
    let s = vault.state.settings.clone();
    let migrate = std::thread::spawn(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"));
        command
            .args(["keys", "migrate", "--to", "pkcs11"])
            .env("HOSO_DATABASE_URL", s.database_url.expose())
            .env("HOSO_STORAGE_URL", s.storage_url.to_string())
            .env("HOSO_KEYS_DIR", &s.keys_dir)
            .env("HOSO_LOG", "warn");
        pkcs11_env(&mut command, &s);
        command.output().unwrap()
    });
    // Meanwhile the desk keeps taking papers in and reading them, until the migration is
    // done: some intakes are wrapped under the file key, the later ones in the token.
    let (mut under_file, mut in_token) = (0, 0);
    for n in 0..200u64 {
        if n >= 20 && migrate.is_finished() {
            break;
        }
        let scan = pdf(600 + n, 4_000);
        let id = vault.take_in(CITIZEN_B, "passport", &scan).await;
        let wrapped = vault
            .fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", &id)
            .await;
        if wrapped.len() == 60 {
            under_file += 1;
        } else {
            in_token += 1;
        }
        docs.push((id, scan));
        let (id, scan) = &docs[n as usize];
        let copy = vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await;
        copy.expect(StatusCode::OK);
        assert_eq!(copy.body.as_ref(), scan.as_slice());
    }
    let out = migrate.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        under_file > 0 && in_token > 0,
        "the intakes overlapped the migration: {under_file} under the file key, {in_token} in the token"
    );
    // Run again: nothing left to move (idempotent), and the file version is then unused.
    let again = hoso_cli(&vault, &["keys", "migrate", "--to", "pkcs11"]).await;
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    for (id, scan) in &docs {
        let copy = vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await;
        copy.expect(StatusCode::OK);
        assert_eq!(copy.body.as_ref(), scan.as_slice(), "{id}");
    }
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM documents WHERE length(wrapped_key) <> 61")
            .await,
        0,
        "every data key is wrapped in the token"
    );
    // The signing keys and the blind-index key moved too, as the same keys: the published
    // keys are the ones published before, every citizen's documents are found by the same
    // index, and keys/ holds neither any more.
    let vault = vault.restart(on_token).await;
    let jwks_after = vault
        .get("/.well-known/jwks.json", &vault.clerk())
        .await
        .json();
    assert_eq!(jwks_after, jwks_before, "the same keys are published");
    let listed = vault
        .get(
            &format!("/v1/citizens/{CITIZEN_B}/documents"),
            &vault.clerk(),
        )
        .await;
    listed.expect(StatusCode::OK);
    assert_eq!(
        listed.json()["documents"].as_array().map(Vec::len),
        Some(docs.len() - 30),
        "{}",
        listed.json()
    );
    let keys = vault.state.vault.keys();
    for key in [&keys.token, &keys.attestation, &keys.audit, &keys.export] {
        assert!(key.is_in_token(), "{}", key.kid());
    }
    for file in [
        "blind-index.key",
        "token-signing.p8",
        "attestation-signing.p8",
        "audit-signing.p8",
        "export-signing.p8",
    ] {
        assert!(
            !vault.state.settings.keys_dir.join(file).exists(),
            "{file} is still in keys/"
        );
    }
    let retired = hoso_cli(&vault, &["keys", "retire", "--version", "1"]).await;
    assert!(
        retired.status.success(),
        "{}",
        String::from_utf8_lossy(&retired.stderr)
    );
    assert!(
        !vault
            .state
            .settings
            .keys_dir
            .join("kek-000001.key")
            .exists()
    );
}

#[tokio::test]
async fn a_wrong_pin_module_or_token_stops_serve_with_one_clear_line() {
    let (module, label, pin_file) = token();
    let dir = tempfile::tempdir().unwrap();
    let wrong_pin = dir.path().join("wrong.pin");
    std::fs::write(&wrong_pin, "999999\n").unwrap();
    let pin = std::fs::read_to_string(&pin_file).unwrap();
    for (module, label, pin_path, says) in [
        (
            "/nonexistent/libnothing.so",
            label.as_str(),
            pin_file.clone(),
            "HOSO_PKCS11_MODULE",
        ),
        (
            module.as_str(),
            "no-such-token",
            pin_file.clone(),
            "HOSO_PKCS11_TOKEN_LABEL",
        ),
        (
            module.as_str(),
            label.as_str(),
            wrong_pin.clone(),
            "HOSO_PKCS11_PIN_FILE",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"))
            .arg("serve")
            .current_dir(dir.path())
            .env("HOSO_LISTEN", "127.0.0.1:0")
            .env("HOSO_KEY_STORE", "pkcs11")
            .env("HOSO_PKCS11_MODULE", module)
            .env("HOSO_PKCS11_TOKEN_LABEL", label)
            .env("HOSO_PKCS11_PIN_FILE", &pin_path)
            .env(
                "HOSO_PKCS11_LABEL_PREFIX",
                format!("t{}", uuid::Uuid::now_v7().simple()),
            )
            .env("HOSO_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{says}: {err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("hoso: "))
            .unwrap_or_default();
        assert!(line.contains(says), "{says}: {err}");
        assert!(
            !err.contains(pin.trim()) && !err.contains("999999"),
            "a PIN is never said"
        );
    }
}

/// The test token behind a PKCS#11 module of the test's own (`pkcs11_shim.c`, built here with
/// the system's C compiler) that passes every call to SoftHSM2 until told, by a file, to stop
/// answering or to answer that the token was removed: what a vault sees when its HSM hangs or
/// goes away.
struct Shim {
    dir: tempfile::TempDir,
    module: std::path::PathBuf,
}

impl Shim {
    fn build() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("shim.so");
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vault/pkcs11_shim.c");
        let out = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&module)
            .arg(source)
            .arg("-ldl")
            .output()
            .expect("a C compiler (cc), as Rust's linker needs anyway");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir, module }
    }

    /// What `hoso serve` needs to load the shim in front of the test token.
    fn env(&self) -> Vec<(&'static str, String)> {
        let (real, _, _) = token();
        vec![
            ("HOSO_PKCS11_MODULE", self.module.display().to_string()),
            ("HOSO_SHIM_MODULE", real),
            ("HOSO_SHIM_DIR", self.dir.path().display().to_string()),
        ]
    }

    /// `stall` (every call waits), `gone` (every call: CKR_DEVICE_REMOVED) or `torn` (taken by
    /// the next call, then CKR_GENERAL_ERROR until C_Initialize), on or off.
    fn set(&self, what: &str, on: bool) {
        let path = self.dir.path().join(what);
        if on {
            std::fs::write(path, b"").unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_stops_answering_or_goes_away_gives_503_and_the_vault_recovers() {
    use crate::processes::{call, start_fleet_with};
    use std::time::{Duration, Instant};
    let vault = TestVault::with(on_token).await;
    let scan = pdf(410, 20_000);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let shim = Shim::build();
    let mut env = shim.env();
    env.push(("HOSO_PKCS11_TIMEOUT_MS", "1000".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fleet = start_fleet_with(&vault, 1, &env).await;
    let addr = fleet.0[0].1;
    let clerk = vault.clerk();
    let path = format!("/v1/documents/{id}/content");
    served_again(addr, &path, &clerk, &scan, "through the shim").await;
    let ready = || async {
        let (status, body) = call(addr, "GET", "/readyz", None, None).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, body["keys"].clone())
    };

    // The token stops answering: each copy fails with 503 `unavailable` within the timeout,
    // and once every worker is stuck, at once; the balancer is told. Nothing hangs.
    shim.set("stall", true);
    let mut waits = Vec::new();
    while waits.len() < 40 {
        let started = Instant::now();
        let (status, body) = call(addr, "GET", &path, Some(&clerk), None).await.unwrap();
        waits.push(started.elapsed());
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        let said: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(said["error"]["code"], "unavailable", "{said}");
        if waits.last() < Some(&Duration::from_millis(300)) {
            break;
        }
    }
    assert!(
        waits.iter().all(|w| *w < Duration::from_secs(3)),
        "{waits:?}"
    );
    assert!(
        waits.last() < Some(&Duration::from_millis(300)),
        "never at once, though every worker is stuck: {waits:?}"
    );
    assert_eq!(ready().await, (503, serde_json::json!(false)));
    shim.set("stall", false);
    served_again(addr, &path, &clerk, &scan, "after the token answered again").await;
    assert_eq!(ready().await, (200, serde_json::json!(true)));

    // The token is taken out: 503 at once; put back: served again, without a restart.
    shim.set("gone", true);
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _) = call(addr, "GET", &path, Some(&clerk), None).await.unwrap();
        assert_eq!(status, 503);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert_eq!(ready().await, (503, serde_json::json!(false)));
    shim.set("gone", false);
    served_again(addr, &path, &clerk, &scan, "after the token came back").await;
    assert_eq!(ready().await, (200, serde_json::json!(true)));

    // The module's state breaks (SoftHSM2 after reading its token's files while another
    // process rewrote them): CKR_GENERAL_ERROR to every call until it is initialised again.
    // The copy is served all the same: the module is initialised again and the call tried once
    // more. (Past the second that must pass between two initialisations.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    shim.set("torn", true);
    let (status, body) = call(addr, "GET", &path, Some(&clerk), None).await.unwrap();
    assert!(
        !shim.dir.path().join("torn").exists(),
        "no call reached the module to break it"
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == scan, "the copy is the scan");
    assert_eq!(ready().await, (200, serde_json::json!(true)));

    // The metrics count the calls that timed out.
    let (status, metrics) = call(addr, "GET", "/metrics", Some(&vault.auditor()), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    let timed_out: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("hoso_hsm_operations_total") && l.contains("\"timeout\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(timed_out > 0, "{metrics}");
}

/// Waits (20 s at most) until the copy is served again, each refusal until then a 503.
async fn served_again(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    scan: &[u8],
    what: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = crate::processes::call(addr, "GET", path, Some(token), None)
            .await
            .unwrap();
        if status == 200 {
            assert!(body == scan, "{what}: the copy is the scan");
            return;
        }
        assert_eq!(status, 503, "{what}: {}", String::from_utf8_lossy(&body));
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not served again within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
