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
