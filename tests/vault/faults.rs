//! What hoso stands on gives way under a real `hoso serve`: the disk fills. Whatever happens, no
//! read answers 200 without its audit entry committed, and the vault recovers by itself.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;
use crate::processes::{call, start_fleet_with, try_intake};

/// A small tmpfs of its own, so a test can fill a disk without touching the machine's.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "the full-disk test mounts a {mib} MiB tmpfs at {} and could not: it needs root \
             (or CAP_SYS_ADMIN), as CI and the test machines have",
            dir.path().display()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem refuses another byte.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 512, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// What the clients saw while the disk was full.
#[derive(Default)]
struct Seen {
    /// Responses by (what, status).
    statuses: BTreeMap<(&'static str, u16), u64>,
    longest: Duration,
}

impl Seen {
    fn note(&mut self, what: &'static str, status: u16, took: Duration) {
        *self.statuses.entry((what, status)).or_default() += 1;
        self.longest = self.longest.max(took);
    }

    fn ok(&self, what: &'static str) -> u64 {
        self.statuses.get(&(what, 200)).copied().unwrap_or(0)
    }
}

async fn create_grant(addr: SocketAddr, clerk: &str, doc_types: &[&str]) -> String {
    let body = json!({
        "national_id": CITIZEN_A, "doc_types": doc_types,
        "case_ref": "000.00.31.H40-261201-0001", "purpose": "Đăng ký kết hôn",
        "grantee": "binh.tran", "grantee_office": "STP-DANANG", "ttl_seconds": 3600, "max_uses": 1000,
    });
    let (status, reply) = call(
        addr,
        "POST",
        "/v1/grants",
        Some(clerk),
        Some(("application/json", body.to_string().into_bytes())),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    reply["token"].as_str().unwrap().to_owned()
}

/// Reads and intakes, mixed, until `until`.
async fn drive(
    addr: SocketAddr,
    clerk: &str,
    officer: &str,
    ids: &[String],
    until: Instant,
    seed: u64,
) -> Seen {
    let mut seen = Seen::default();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let id = &ids[n as usize % ids.len()];
        let content = format!("/v1/documents/{id}/content");
        let metadata = format!("/v1/documents/{id}");
        let list = format!("/v1/citizens/{CITIZEN_A}/documents");
        let reads: [(&'static str, &str, &str); 3] = [
            ("content", &content, officer),
            ("metadata", &metadata, clerk),
            ("list", &list, clerk),
        ];
        for (what, path, token) in reads {
            let start = Instant::now();
            let status = match call(addr, "GET", path, Some(token), None).await {
                Ok((status, _)) => status,
                Err(_) => 0,
            };
            seen.note(what, status, start.elapsed());
        }
        let start = Instant::now();
        let scan = pdf(seed * 1_000_000 + n, 96 * 1024);
        let status = match try_intake(addr, clerk, CITIZEN_A, "other", scan).await {
            Ok((status, reply)) => {
                if status == 507 {
                    assert_eq!(reply["error"]["code"], "insufficient_storage");
                }
                status
            }
            Err(_) => 0,
        };
        seen.note("intake", status, start.elapsed());
    }
    seen
}

async fn readyz(addr: SocketAddr) -> (u16, Value) {
    let (status, body) = call(addr, "GET", "/readyz", None, None).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_serves_an_unlogged_read_and_recovers_without_a_restart() {
    // The embedded default with database and store on one small filesystem (the default
    // layout), keys elsewhere.
    let disk = Tmpfs::mount(48);
    let keys = tempfile::tempdir().unwrap();
    let mut settings = hoso::config::Settings::embedded_in(disk.path());
    settings.keys_dir = keys.path().join("keys");
    let vault = TestVault::open(keys, settings).await;
    let min_free = (1 << 20).to_string();
    // Every refused write logs its cause; hundreds of them would drown the test output.
    let env = [
        ("HOSO_MIN_FREE_BYTES", min_free.as_str()),
        ("HOSO_LOG", "off"),
    ];
    let fleet = start_fleet_with(&vault, 1, &env).await;
    let addr = fleet.0[0].1;
    let clerk = vault.clerk();

    let mut ids = Vec::new();
    for (i, doc_type) in ["cccd", "passport", "birth_certificate"].iter().enumerate() {
        let (status, doc) = try_intake(addr, &clerk, CITIZEN_A, doc_type, pdf(i as u64, 200_000))
            .await
            .unwrap();
        assert_eq!(status, 201, "{doc}");
        ids.push(doc["id"].as_str().unwrap().to_owned());
    }
    let officer = create_grant(addr, &clerk, &["cccd", "passport", "birth_certificate"]).await;
    assert_eq!(readyz(addr).await.0, 200);

    // The disk fills.
    let filler = disk.fill();
    let (status, ready) = readyz(addr).await;
    assert_eq!(status, 503, "/readyz while the disk is full: {ready}");
    assert_eq!(ready["disk_full"], true, "{ready}");
    let during = drive(
        addr,
        &clerk,
        &officer,
        &ids,
        Instant::now() + Duration::from_secs(4),
        1,
    )
    .await;
    assert!(
        during
            .statuses
            .keys()
            .any(|(w, s)| *w == "intake" && *s == 507),
        "intakes on a full disk answer 507: {:?}",
        during.statuses
    );
    assert!(
        !during
            .statuses
            .keys()
            .any(|(w, s)| *w == "intake" && (200..300).contains(s)),
        "no intake is acknowledged on a full disk: {:?}",
        during.statuses
    );
    for (what, status) in during.statuses.keys() {
        assert!(
            *status == 200 || *status == 503 || *status == 507,
            "{what} answered {status} on a full disk: {:?}",
            during.statuses
        );
    }

    // Space comes back: writes work again within seconds, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let recovered = loop {
        let (status, _) = try_intake(addr, &clerk, CITIZEN_A, "diploma", pdf(77, 50_000))
            .await
            .unwrap();
        if status == 201 {
            break freed.elapsed();
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "intake still answers {status} 10 s after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(readyz(addr).await.0, 200, "/readyz after space was freed");
    let after = drive(
        addr,
        &clerk,
        &officer,
        &ids,
        Instant::now() + Duration::from_secs(1),
        2,
    )
    .await;
    for what in ["content", "metadata", "list", "intake"] {
        let expected = if what == "intake" { 201 } else { 200 };
        let all: u64 = after
            .statuses
            .iter()
            .filter(|((w, _), _)| *w == what)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            after.statuses.get(&(what, expected)).copied().unwrap_or(0),
            all,
            "after recovery every {what} succeeds: {:?}",
            after.statuses
        );
    }
    drop(fleet);

    // Every 200 read has its committed entry; grant uses match the logged reads exactly.
    let logged = |action: &str| {
        format!(
            "SELECT COUNT(*) FROM audit_entries WHERE action = '{action}' AND outcome = 'allowed'"
        )
    };
    let content_logged = vault.count(&logged("document.content")).await;
    let served = during.ok("content") + after.ok("content");
    assert!(
        content_logged >= served as i64,
        "{served} copies served, {content_logged} logged"
    );
    assert!(
        vault.count(&logged("document.read")).await
            >= (during.ok("metadata") + after.ok("metadata")) as i64
    );
    assert!(
        vault.count(&logged("document.list")).await
            >= (during.ok("list") + after.ok("list")) as i64
    );
    assert_eq!(
        vault.count("SELECT uses FROM grants").await,
        content_logged,
        "grant uses counted exactly"
    );
    let verify = hoso_cli(&vault, &["audit", "verify"]).await;
    assert!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let doctor = hoso_cli(&vault, &["doctor"]).await;
    assert!(
        doctor.status.success(),
        "doctor: {}{}",
        String::from_utf8_lossy(&doctor.stdout),
        String::from_utf8_lossy(&doctor.stderr)
    );
    println!(
        "full disk: during {:?}, longest request {:?}; writes back {recovered:?} after space was \
         freed; {served} copies served, {content_logged} logged",
        during.statuses, during.longest
    );
}

/// A full store refuses intakes (507). Reads need the store too in strict mode: no copy leaves
/// before a checkpoint covering its entry is written there, so they fail closed, with no byte
/// sent; without strict mode they keep being served. Space freed, everything works again.
#[tokio::test]
async fn a_full_store_refuses_intakes_and_strict_reads_but_serves_reads_without_strict_mode() {
    for strict in [true, false] {
        let disk = Tmpfs::mount(8);
        let vault = TestVault::with(|s| {
            s.storage_url = format!("file://{}", disk.path().join("storage").display())
                .parse()
                .unwrap();
            s.audit_strict = strict;
        })
        .await;
        let id = vault.take_in(CITIZEN_A, "cccd", &pdf(1, 100_000)).await;
        let filler = disk.fill();

        let reply = vault
            .intake(
                &vault.clerk(),
                CITIZEN_A,
                &metadata("passport"),
                &pdf(2, 100_000),
            )
            .await;
        reply.expect_error(
            axum::http::StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
        );
        let read = vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await;
        if strict {
            read.expect_error(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
            );
            assert!(
                !contains(&read.body, &pdf(1, 100_000)[..4096]),
                "no byte sent"
            );
        } else {
            // The database has room: reads are logged and served.
            read.expect(axum::http::StatusCode::OK);
        }

        std::fs::remove_file(filler).unwrap();
        vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await
            .expect(axum::http::StatusCode::OK);
        let reply = vault
            .intake(
                &vault.clerk(),
                CITIZEN_A,
                &metadata("passport"),
                &pdf(2, 100_000),
            )
            .await;
        reply.expect(axum::http::StatusCode::CREATED);
    }
}

/// Sends the head and the first `first` bytes of an intake's body now; the rest when told.
async fn upload_in_two_goes(
    addr: SocketAddr,
    token: &str,
    scan: &[u8],
    first: usize,
) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let meta = metadata("other").to_string();
    let (content_type, body) = multipart(&[
        ("metadata", meta.as_bytes(), "application/json"),
        ("file", scan, "application/pdf"),
    ]);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/citizens/{CITIZEN_A}/documents HTTP/1.1\r\nHost: hoso\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..first]).await.unwrap();
    (stream, body[first..].to_vec())
}

async fn status_of(mut stream: tokio::net::TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    String::from_utf8_lossy(&reply)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_cuts_what_is_left_at_the_deadline() {
    let vault = TestVault::new().await;
    let env = [("HOSO_SHUTDOWN_GRACE_SECONDS", "2")];
    let mut fleet = start_fleet_with(&vault, 1, &env).await;
    let addr = fleet.0[0].1;
    let clerk = vault.clerk();

    // Two intakes in flight: one will finish during the grace period, one never will.
    let (finishing, rest) = upload_in_two_goes(addr, &clerk, &pdf(5, 300_000), 1000).await;
    let (stalled, _) = upload_in_two_goes(addr, &clerk, &pdf(6, 300_000), 1000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = fleet.0[0].0.id().to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, ready) = readyz(addr).await;
    assert_eq!(status, 503, "/readyz while draining: {ready}");
    assert_eq!(ready["draining"], true);
    let (status, body) = call(addr, "GET", "/v1/audit", Some(&vault.auditor()), None)
        .await
        .unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));

    // The finishing intake completes within the grace period.
    let finished = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut stream = finishing;
        stream.write_all(&rest).await.unwrap();
        status_of(stream).await
    });
    assert_eq!(
        finished.await.unwrap(),
        Some(201),
        "in-flight intake finished"
    );

    // The stalled one holds the process until the deadline, and not a second longer.
    let child = &mut fleet.0[0].0;
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        exited >= Duration::from_millis(1900) && exited <= Duration::from_secs(3),
        "exited {exited:?} after SIGTERM with a 2 s grace period"
    );
    assert_eq!(status_of(stalled).await, None, "the stalled intake was cut");

    // Nothing half-done: one document, its object present and sound.
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 1);
    let doctor = hoso_cli(&vault, &["doctor"]).await;
    assert!(
        doctor.status.success(),
        "{}",
        String::from_utf8_lossy(&doctor.stdout)
    );
    println!("SIGTERM: exited {exited:?} after the signal (grace 2 s)");
}

/// A PostgreSQL cluster of the test's own (initdb + pg_ctl) on a spare loopback port, so it can
/// be stopped and restarted without touching the shared server.
struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("the PostgreSQL fault test needs PostgreSQL's server binaries under /usr/lib/postgresql (Debian's postgresql package)");
    let mut found: Vec<PathBuf> = versions
        .flatten()
        .map(|v| v.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no {name} under /usr/lib/postgresql/*/bin"))
}

impl PgCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        let port = crate::processes::free_port().port();
        let cluster = Self { dir, port };
        let data = cluster.data();
        cluster.as_postgres(
            &pg_bin("initdb"),
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        cluster.pg_ctl(&["start", "-w", "-t", "30"]);
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_postgres(&self, program: &Path, args: &[&str]) {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let data = self.data();
        let mut all = vec!["-D", &data, "-l", &log, "-o", &options];
        all.extend_from_slice(args);
        self.as_postgres(&pg_bin("pg_ctl"), &all);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .args(["-D", &self.data(), "stop", "-m", "immediate"])
            .output();
    }
}

/// One response seen by a load driver.
struct Sample {
    at: Instant,
    what: &'static str,
    status: u16,
    took: Duration,
}

/// Reads and intakes until `stop`, recording every response and the ids of taken-in documents.
async fn load(
    addr: SocketAddr,
    clerk: String,
    officer: String,
    ids: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) -> (Vec<Sample>, Vec<String>) {
    let mut samples = Vec::new();
    let mut taken_in = Vec::new();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let id = &ids[n as usize % ids.len()];
        let start = Instant::now();
        let path = format!("/v1/documents/{id}/content");
        let status = call(addr, "GET", &path, Some(&officer), None)
            .await
            .map_or(0, |(s, _)| s);
        samples.push(Sample {
            at: start,
            what: "content",
            status,
            took: start.elapsed(),
        });
        let start = Instant::now();
        let scan = pdf(seed * 1_000_000 + n, 30_000);
        let (status, reply) = try_intake(addr, &clerk, CITIZEN_A, "other", scan)
            .await
            .unwrap_or((0, Value::Null));
        if status == 201 {
            taken_in.push(reply["id"].as_str().unwrap().to_owned());
        }
        samples.push(Sample {
            at: start,
            what: "intake",
            status,
            took: start.elapsed(),
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (samples, taken_in)
}

fn summary(samples: &[&Sample]) -> String {
    let mut by_status: BTreeMap<(&str, u16), u64> = BTreeMap::new();
    for s in samples {
        *by_status.entry((s.what, s.status)).or_default() += 1;
    }
    let longest = samples.iter().map(|s| s.took).max().unwrap_or_default();
    format!("{by_status:?}, longest {longest:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarts_and_stops_give_fast_503s_never_500s_and_lose_nothing() {
    let pg = PgCluster::start();
    let url = pg.url();
    let vault = TestVault::with(|s| {
        s.database_url = url.parse().unwrap();
        s.storage_url = format!("file://{}", s.keys_dir.with_file_name("storage").display())
            .parse()
            .unwrap();
    })
    .await;
    let fleet = start_fleet_with(&vault, 1, &[("HOSO_LOG", "off")]).await;
    let addr = fleet.0[0].1;
    let clerk = vault.clerk();
    let mut ids = Vec::new();
    for (i, doc_type) in ["cccd", "passport"].iter().enumerate() {
        let (status, doc) = try_intake(addr, &clerk, CITIZEN_A, doc_type, pdf(i as u64, 50_000))
            .await
            .unwrap();
        assert_eq!(status, 201, "{doc}");
        ids.push(doc["id"].as_str().unwrap().to_owned());
    }
    let officer = create_grant(addr, &clerk, &["cccd", "passport"]).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drivers: Vec<_> = (0..2)
        .map(|seed| {
            tokio::spawn(load(
                addr,
                clerk.clone(),
                officer.clone(),
                ids.clone(),
                stop.clone(),
                seed + 1,
            ))
        })
        .collect();

    let mut phases = Vec::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for mode in ["fast", "immediate"] {
        let start = Instant::now();
        pg.pg_ctl(&["restart", "-m", mode, "-w", "-t", "30"]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        phases.push((format!("restart -m {mode}"), start, Instant::now()));
    }
    let start = Instant::now();
    pg.pg_ctl(&["stop", "-m", "fast", "-w"]);
    let mut probes = Vec::new();
    while start.elapsed() < Duration::from_secs(15) {
        let probe = Instant::now();
        let (status, _) = readyz(addr).await;
        probes.push((status, probe.elapsed()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pg.pg_ctl(&["start", "-w", "-t", "30"]);
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    phases.push(("stopped 15 s".into(), start, Instant::now()));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut taken_in = Vec::new();
    for d in drivers {
        let (s, t) = d.await.unwrap();
        samples.extend(s);
        taken_in.extend(t);
    }

    for (name, from, to) in &phases {
        let during: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= *from && s.at < *to)
            .collect();
        println!("PostgreSQL {name}: {}", summary(&during));
    }
    for s in &samples {
        assert!(
            [200, 201, 503].contains(&s.status),
            "{} answered {} ({:?} into the test)",
            s.what,
            s.status,
            s.took
        );
        assert!(
            s.took < Duration::from_secs(4),
            "{} took {:?}",
            s.what,
            s.took
        );
    }
    assert!(
        probes
            .iter()
            .all(|(status, took)| *status == 503 && *took < Duration::from_millis(1500)),
        "/readyz while PostgreSQL is down answers 503 within a second: {probes:?}"
    );
    let recovered = samples
        .iter()
        .filter(|s| s.at >= back && s.what == "intake" && s.status == 201)
        .map(|s| s.at + s.took - back)
        .min()
        .expect("intakes succeed again after PostgreSQL is back");
    println!("PostgreSQL back: first intake acknowledged {recovered:?} after the restart");
    assert!(recovered < Duration::from_secs(3));

    // Nothing lost: every acknowledged intake reads; every served copy was logged.
    for id in &taken_in {
        let (status, _) = call(
            addr,
            "GET",
            &format!("/v1/documents/{id}"),
            Some(&clerk),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "acknowledged document {id} is there");
    }
    drop(fleet);
    let served = samples
        .iter()
        .filter(|s| s.what == "content" && s.status == 200)
        .count() as i64;
    let logged = vault
        .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'document.content' AND outcome = 'allowed'")
        .await;
    assert!(logged >= served, "{served} copies served, {logged} logged");
    assert_eq!(vault.count("SELECT uses FROM grants").await, logged);
    let verify = hoso_cli(&vault, &["audit", "verify"]).await;
    assert!(
        verify.status.success(),
        "{}: {}{}",
        verify.status,
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    println!(
        "PostgreSQL faults: {} intakes acknowledged, all present; {served} copies served, {logged} logged",
        taken_in.len()
    );
}

/// What the proxy between hoso and the object store does to the traffic it carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Weather {
    Clear = 0,
    /// Nothing listens: connections are refused, open ones are cut (the store is stopped).
    Down = 1,
    /// Each burst of traffic is held 200 ms (latency, not a trickle).
    Slow = 2,
    /// Answers stop after their first kilobyte, uploads after 8 KiB, and never resume.
    Stalled = 3,
}

/// A fault-injecting TCP proxy on loopback in front of `upstream`. The suite's tests share one
/// S3 server, so "the store is down" is played here: nothing listens on the endpoint any more
/// (connections are refused, those open are cut), exactly what a stopped server looks like to
/// hoso; "back" listens again on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    weather: std::sync::Arc<std::sync::atomic::AtomicU8>,
    accepting: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let weather = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
        let accepting = Some(accept(listener, upstream, weather.clone()));
        Self {
            addr,
            upstream,
            weather,
            accepting: std::sync::Mutex::new(accepting),
        }
    }

    async fn set(&self, weather: Weather) {
        self.weather
            .store(weather as u8, std::sync::atomic::Ordering::SeqCst);
        let running = self.accepting.lock().unwrap().take();
        match (weather, running) {
            (Weather::Down, Some(task)) => task.abort(),
            (Weather::Down, None) => {}
            (_, Some(task)) => *self.accepting.lock().unwrap() = Some(task),
            (_, None) => {
                let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
                let task = accept(listener, self.upstream, self.weather.clone());
                *self.accepting.lock().unwrap() = Some(task);
            }
        }
    }
}

fn accept(
    listener: tokio::net::TcpListener,
    upstream: SocketAddr,
    weather: std::sync::Arc<std::sync::atomic::AtomicU8>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let w = weather.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(cr, sw, w.clone(), false));
                pump(sr, cw, w, true).await;
                up.abort();
            });
        }
    })
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    weather: std::sync::Arc<std::sync::atomic::AtomicU8>,
    answers: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent_while_stalled = 0usize;
    let mut last = Instant::now();
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let now = weather.load(std::sync::atomic::Ordering::SeqCst);
        let mut piece = &buf[..n];
        if now == Weather::Down as u8 {
            return;
        } else if now == Weather::Slow as u8 {
            if last.elapsed() > Duration::from_millis(50) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else if now == Weather::Stalled as u8 {
            let limit: usize = if answers { 1024 } else { 8 * 1024 };
            let room = limit.saturating_sub(sent_while_stalled);
            piece = &piece[..piece.len().min(room)];
            sent_while_stalled += piece.len();
            if piece.is_empty() {
                // Hold the connection open and silent until the other side gives up.
                std::future::pending::<()>().await;
            }
        }
        if to.write_all(piece).await.is_err() {
            return;
        }
        last = Instant::now();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_slow_or_stalling_object_store_gives_prompt_503s_and_never_unauthenticated_bytes() {
    if backend() != Backend::PostgresS3 {
        println!(
            "the object-store fault test runs on the postgres-s3 pair (it needs the S3 server)"
        );
        return;
    }
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT names the S3 server");
    let upstream: SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("AWS_ENDPOINT is http://IP:PORT");
    let proxy = Proxy::start(upstream).await;
    let vault = TestVault::new().await;
    let through_proxy = format!("http://{}", proxy.addr);
    let env = [
        ("HOSO_S3_ENDPOINT", through_proxy.as_str()),
        ("HOSO_S3_ALLOW_HTTP", "true"),
        ("HOSO_LOG", "off"),
    ];
    let fleet = start_fleet_with(&vault, 1, &env).await;
    let addr = fleet.0[0].1;
    let clerk = vault.clerk();
    let mut ids = Vec::new();
    for (i, doc_type) in ["cccd", "passport"].iter().enumerate() {
        let (status, doc) = try_intake(addr, &clerk, CITIZEN_A, doc_type, pdf(i as u64, 200_000))
            .await
            .unwrap();
        assert_eq!(status, 201, "{doc}");
        ids.push(doc["id"].as_str().unwrap().to_owned());
    }
    let officer = create_grant(addr, &clerk, &["cccd", "passport"]).await;

    let mut all = Vec::new();
    let mut taken_in = Vec::new();
    for weather in [
        Weather::Down,
        Weather::Slow,
        Weather::Stalled,
        Weather::Clear,
    ] {
        proxy.set(weather).await;
        let probe = Instant::now();
        let (ready, _) = readyz(addr).await;
        let probe = probe.elapsed();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drivers: Vec<_> = (0..2)
            .map(|seed| {
                let seed = 10 * (weather as u64 + 1) + seed;
                tokio::spawn(load(
                    addr,
                    clerk.clone(),
                    officer.clone(),
                    ids.clone(),
                    stop.clone(),
                    seed,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut samples = Vec::new();
        for d in drivers {
            let (s, t) = d.await.unwrap();
            samples.extend(s);
            taken_in.extend(t);
        }
        let refs: Vec<&Sample> = samples.iter().collect();
        println!(
            "object store {weather:?}: /readyz {ready} in {probe:?}; {}",
            summary(&refs)
        );
        assert!(
            probe < Duration::from_millis(1500),
            "/readyz took {probe:?}"
        );
        match weather {
            // A stalled store still answers the probe's small HEAD: only bodies stall.
            Weather::Down => assert_eq!(ready, 503),
            Weather::Clear => {
                assert_eq!(ready, 200);
                assert!(
                    samples.iter().all(|s| s.status == 200 || s.status == 201),
                    "all well again once the store is: {}",
                    summary(&refs)
                );
            }
            Weather::Slow => assert!(
                samples.iter().all(|s| s.status == 200 || s.status == 201),
                "a slow store is slow, not failing: {}",
                summary(&refs)
            ),
            Weather::Stalled => assert!(
                samples.iter().all(|s| s.status == 503),
                "stalled bodies fail, each within the S3 timeout: {}",
                summary(&refs)
            ),
        }
        all.extend(samples);
    }
    for s in &all {
        // 500 would be integrity_error or internal_error: a store fault is neither.
        assert!(
            [200, 201, 503].contains(&s.status),
            "{} answered {}",
            s.what,
            s.status
        );
        assert!(
            s.took < Duration::from_secs(7),
            "{} took {:?}",
            s.what,
            s.took
        );
    }

    // Each acknowledged intake is there once; the sweep names only objects that exist.
    for id in &taken_in {
        let (status, _) = call(
            addr,
            "GET",
            &format!("/v1/documents/{id}"),
            Some(&clerk),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "acknowledged document {id} is there");
    }
    assert_eq!(
        vault.count("SELECT COUNT(*) FROM documents").await,
        (ids.len() + taken_in.len()) as i64
    );
    drop(fleet);
    let report = hoso::records::maintenance::sweep(&vault.state.vault, 0, false)
        .await
        .unwrap();
    for key in report.abandoned.objects.iter().chain(&report.orphans) {
        assert!(
            vault.state.vault.blobs.exists(key).await.unwrap(),
            "the sweep names {key}, which does not exist"
        );
    }
    let served = all
        .iter()
        .filter(|s| s.what == "content" && s.status == 200)
        .count() as i64;
    let logged = vault
        .count("SELECT COUNT(*) FROM audit_entries WHERE action = 'document.content' AND outcome = 'allowed'")
        .await;
    assert!(logged >= served, "{served} copies served, {logged} logged");
    println!(
        "object store faults: {} intakes acknowledged, all present once; sweep: {} objects of \
         unfinished intakes, {} intents without object, {} orphans",
        taken_in.len(),
        report.abandoned.objects.len(),
        report.abandoned.intents_without_object,
        report.orphans.len()
    );
}
