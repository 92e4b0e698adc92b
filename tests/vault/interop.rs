//! hoso's checkpoints, signatures and proofs, checked by an independent implementation: Go's
//! `golang.org/x/mod/sumdb/note` and `.../tlog` (Debian's golang-go and
//! golang-golang-x-mod-dev, installed by scripts/test), through `tests/interop/tlog_check.go`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

const GO: &str = "/usr/bin/go";
const GOPATH: &str = "/usr/share/gocode";

/// Builds the Go checker once per test binary.
fn checker() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        assert!(
            Path::new(GO).exists(),
            "{GO} is missing: install Debian's golang-go (scripts/test does)"
        );
        assert!(
            Path::new(GOPATH)
                .join("src/golang.org/x/mod/sumdb/tlog")
                .exists(),
            "Go's x/mod is missing: install Debian's golang-golang-x-mod-dev (scripts/test does)"
        );
        let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop");
        std::fs::create_dir_all(&out_dir).unwrap();
        let binary = out_dir.join("tlog_check");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tlog_check.go");
        let out = std::process::Command::new(GO)
            .args(["build", "-o"])
            .arg(&binary)
            .arg(&source)
            .env("GO111MODULE", "off")
            .env("GOPATH", GOPATH)
            .env("GOCACHE", out_dir.join("go-cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("run go build");
        assert!(
            out.status.success(),
            "go build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    })
}

pub fn go_check(input: &Value) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(checker())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// What the Go checker is given for entry `seq`: the key, the `old` and `new` checkpoints, the
/// entry's leaf data and its inclusion proof in `new` (from the vault), and `consistency`.
pub async fn tlog_input(
    vault: &TestVault,
    key: &str,
    (old, new): (&str, &str),
    seq: i64,
    consistency: Value,
) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let size: i64 = new.lines().nth(1).unwrap().parse().unwrap();
    let inclusion = vault
        .get(
            &format!("/v1/audit/proof/inclusion?seq={seq}&size={size}"),
            "",
        )
        .await
        .json();
    let entry = hoso::db::audit::entry(&vault.state.vault.db.pool, seq)
        .await
        .unwrap()
        .unwrap();
    json!({
        "key": key,
        "old": old,
        "new": new,
        "index": seq - 1,
        "leaf_data": b64.encode(hoso::audit::entry_leaf_data(&entry).unwrap()),
        "leaf": inclusion["leaf_hash"],
        "inclusion": inclusion["hashes"],
        "consistency": consistency,
    })
}

#[tokio::test]
async fn go_sumdb_opens_hosos_checkpoints_and_checks_its_proofs() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let vault = TestVault::with(|s| s.checkpoint_every = 1).await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(96, 2000)).await;
    for _ in 0..4 {
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    vault.publish_checkpoint().await;
    let old = String::from_utf8(vault.get("/v1/audit/checkpoint", "").await.body.to_vec()).unwrap();
    let old_size: i64 = old.lines().nth(1).unwrap().parse().unwrap();
    for _ in 0..6 {
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    vault.publish_checkpoint().await;
    let reply = vault.get("/v1/audit/checkpoint", "").await;
    let key = reply.headers["hoso-log-key"].to_str().unwrap().to_owned();
    let new = String::from_utf8(reply.body.to_vec()).unwrap();
    let new_size: i64 = new.lines().nth(1).unwrap().parse().unwrap();
    assert!(new_size > old_size);

    let consistency = vault
        .get(
            &format!("/v1/audit/proof/consistency?from={old_size}&to={new_size}"),
            "",
        )
        .await
        .json();
    let input = tlog_input(&vault, &key, (&old, &new), 3, consistency["hashes"].clone()).await;
    let (ok, said) = go_check(&input);
    assert!(ok && said == "ok", "Go's sumdb refused hoso's log: {said}");

    // The same checker refuses what it should: a changed proof hash, a note signed by another key.
    let mut bent = input.clone();
    bent["consistency"][0] = json!(b64.encode([7u8; 32]));
    let (ok, said) = go_check(&bent);
    assert!(!ok && said.contains("CheckTree"), "{said}");
    let mut forged = input.clone();
    forged["new"] =
        json!(new.replace(&format!("\n{new_size}\n"), &format!("\n{}\n", new_size + 1)));
    let (ok, said) = go_check(&forged);
    assert!(!ok && said.contains("note.Open"), "{said}");
}
